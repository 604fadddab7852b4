//! `hilogd`, and `hilog` when run under that name (one small binary: the
//! daemon has no runtime and no IPC framework, so it stays cheap to keep
//! running).
//!
//! hilogd takes its two listening sockets from init (`OHOS_SOCKET_hilogInput`
//! and `OHOS_SOCKET_hilogControl`, declared in its cfg), or binds them
//! itself with `--input PATH --control PATH` (and `--no-kmsg`) for a run
//! outside init.

use std::path::Path;

use accord_hilog::daemon::{listen_at, socket_from_init, Config, Daemon};
use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.first().and_then(|a| a.rsplit('/').next()) == Some("hilog") {
        return accord_hilog::cli::main(args);
    }
    let mut cfg = Config::default();
    let (mut input, mut control) = (socket_from_init("hilogInput"), socket_from_init("hilogControl"));
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut path = || it.next().map(Path::new).with_context(|| format!("{a} needs a path"));
        match a.as_str() {
            "--input" => input = Some(listen_at(path()?).context("input socket")?),
            "--control" => control = Some(listen_at(path()?).context("control socket")?),
            "--kmsg" => cfg.kmsg = Some(path()?.to_owned()),
            "--no-kmsg" => cfg.kmsg = None,
            "--rate" => cfg.rate = it.next().and_then(|v| v.parse().ok()).context("--rate takes lines per second")?,
            other => bail!("unknown argument {other:?} (usage: hilogd [--input PATH --control PATH] [--kmsg PATH | --no-kmsg] [--rate N])"),
        }
    }
    let (Some(input), Some(control)) = (input, control) else {
        bail!("hilogd: no sockets: run it from init (hilogd.cfg) or give --input and --control");
    };
    let mut d = Daemon::new(cfg, input, control).context("hilogd")?;
    d.serve().context("hilogd: epoll failed")?;
    Ok(())
}
