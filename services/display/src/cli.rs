//! `snapshot_display`: OpenHarmony's screenshot tool (the image links it
//! to the multi-call `sa_main`), through the display manager (SA 4607).
//!
//! ```text
//! snapshot_display [-i DISPLAY_ID] [-f FILE]   the screen as a PNG (default /data/snapshot_<seconds>.png)
//! snapshot_display -l                          the displays
//! snapshot_display -w [COUNT]                  the displays, then each change as it comes
//!                                              (COUNT changes, or until interrupted)
//! ```
//! Exit status 2 for usage, 1 for a refused or failed operation (what the
//! SA said on stderr).

use std::io::Write;
use std::path::PathBuf;

use accord_safwk::typed::CallError;
use accord_safwk::Samgr;
use anyhow::{Context, Result};

use accord_safwk::typed::Listener;

use crate::{DisplayError, DisplayInfo, DisplayListener, DisplayManagerProxy, ID};

const USAGE: &str = "usage: snapshot_display [-i DISPLAY_ID] [-f FILE.png] | -l | -w [COUNT]";

#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    List,
    Snapshot {
        id: u64,
        file: Option<PathBuf>,
    },
    /// Print changes; stop after this many (`None`: never).
    Watch(Option<u64>),
}

fn parse(rest: &[&str]) -> Result<Cmd, String> {
    if rest.first() == Some(&"-w") {
        return match rest[1..] {
            [] => Ok(Cmd::Watch(None)),
            [n] => n.parse().map(|n| Cmd::Watch(Some(n))).map_err(|_| format!("-w takes a count of changes, not {n:?}")),
            _ => Err("-w takes at most a count".into()),
        };
    }
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

/// The listener `-w` registers: each change goes to the printing loop.
struct Printer(tokio::sync::mpsc::UnboundedSender<(DisplayInfo, u32)>);

impl DisplayListener for Printer {
    fn on_change(&self, display: DisplayInfo, lost: u32) {
        let _ = self.0.send((display, lost));
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
            Cmd::Watch(count) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                dm.subscribe(Listener::new(Printer(tx).into_remote())).await.map_err(why)?;
                let mut out = std::io::stdout().lock();
                out.write_all(crate::displays_text(&dm.displays().await?).as_bytes())?;
                out.flush()?;
                let mut seen = 0u64;
                while count.is_none_or(|c| seen < c) {
                    tokio::select! {
                        change = rx.recv() => {
                            let Some((display, lost)) = change else { break };
                            if lost > 0 {
                                writeln!(out, "lost {lost}")?;
                            }
                            out.write_all(crate::displays_text(std::slice::from_ref(&display)).as_bytes())?;
                            out.flush()?;
                            seen += 1;
                        }
                        () = dm.died() => anyhow::bail!("the display manager (SA {ID}) went away"),
                    }
                }
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
        assert_eq!(parse(&["-w"]), Ok(Cmd::Watch(None)));
        assert_eq!(parse(&["-w", "2"]), Ok(Cmd::Watch(Some(2))));
        for bad in [&["-w", "x"][..], &["-w", "1", "2"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        for bad in [&["-i"][..], &["-i", "x"], &["-f"], &["-l", "-f", "a"], &["what"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
