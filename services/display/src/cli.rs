//! `snapshot_display`: OpenHarmony's screenshot tool (the image links it
//! to the multi-call `sa_main`), through the display manager (SA 4607).
//!
//! ```text
//! snapshot_display [-i DISPLAY_ID] [-f FILE]   the screen as a PNG (default /data/snapshot_<seconds>.png)
//! snapshot_display -l                          the displays
//! ```
//! Exit status 2 for usage, 1 for a refused or failed operation (what the
//! SA said on stderr).

use std::io::Write;
use std::path::PathBuf;

use accord_safwk::typed::CallError;
use accord_safwk::Samgr;
use anyhow::{Context, Result};

use crate::{DisplayError, DisplayManagerProxy, ID};

const USAGE: &str = "usage: snapshot_display [-i DISPLAY_ID] [-f FILE.png] | -l";

#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    List,
    Snapshot { id: u64, file: Option<PathBuf> },
}

fn parse(rest: &[&str]) -> Result<Cmd, String> {
    let (mut id, mut file, mut list) = (0u64, None, false);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match *a {
            "-l" => list = true,
            "-i" => id = it.next().and_then(|v| v.parse().ok()).ok_or("-i needs a display id (a number)")?,
            "-f" => file = Some(PathBuf::from(it.next().ok_or("-f needs a file name")?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if list {
        if file.is_some() {
            return Err("-l takes no -f".into());
        }
        return Ok(Cmd::List);
    }
    Ok(Cmd::Snapshot { id, file })
}

fn why(e: CallError<DisplayError>) -> anyhow::Error {
    match e {
        CallError::Sa(e) => anyhow::anyhow!("{e}"),
        CallError::Ipc(e) => anyhow::anyhow!("display manager (SA {ID}): {e}"),
    }
}

/// Runs `snapshot_display` with `args` (argv, program name first).
pub fn main(args: Vec<String>) -> Result<()> {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cmd = accord_safwk::command_or_usage("snapshot_display", USAGE, parse(&rest));
    accord_safwk::with_samgr(async |samgr: Samgr| -> Result<()> {
        let dm = samgr.get_proxy::<DisplayManagerProxy>(ID).await.with_context(|| format!("display manager (SA {ID})"))?;
        match cmd {
            Cmd::List => {
                let displays = dm.displays().await?;
                std::io::stdout().lock().write_all(crate::displays_text(&displays).as_bytes())?;
            }
            Cmd::Snapshot { id, file } => {
                let png = dm.screenshot(id).await.map_err(why)?.into_bytes().context("reading the image")?;
                let file = file.unwrap_or_else(|| {
                    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    PathBuf::from(format!("/data/snapshot_{secs}.png"))
                });
                std::fs::write(&file, &png).with_context(|| format!("writing {}", file.display()))?;
                println!("{}: {} bytes", file.display(), png.len());
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]), Ok(Cmd::Snapshot { id: 0, file: None }));
        assert_eq!(parse(&["-i", "1", "-f", "/tmp/a.png"]), Ok(Cmd::Snapshot { id: 1, file: Some("/tmp/a.png".into()) }));
        assert_eq!(parse(&["-l"]), Ok(Cmd::List));
        for bad in [&["-i"][..], &["-i", "x"], &["-f"], &["-l", "-f", "a"], &["what"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
