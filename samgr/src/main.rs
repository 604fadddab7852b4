//! The `samgr` daemon. init creates its socket (`socket` in samgr's cfg)
//! and passes it as `OHOS_SOCKET_samgr`; `--socket PATH` binds one itself.
//!
//! Run as `hidumper` (a link to this binary) it is the client tool:
//! `hidumper -ls` lists registered system abilities. `SAMGR_SOCKET`
//! overrides samgr's socket path for it.

use std::os::fd::FromRawFd;

use anyhow::{bail, Context, Result};

fn listener() -> Result<std::os::unix::net::UnixListener> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--socket") {
        let path = args.get(i + 1).context("--socket needs a path")?;
        let _ = std::fs::remove_file(path);
        return std::os::unix::net::UnixListener::bind(path).with_context(|| format!("bind {path}"));
    }
    match std::env::var("OHOS_SOCKET_samgr") {
        Ok(fd) => {
            let fd: i32 = fd.parse().context("OHOS_SOCKET_samgr is not a descriptor number")?;
            // SAFETY: init handed us this listening socket for our own use.
            Ok(unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) })
        }
        Err(_) => bail!("no socket: run from init (OHOS_SOCKET_samgr) or pass --socket PATH"),
    }
}

fn hidumper(args: &[String]) -> Result<()> {
    let socket = std::env::var_os("SAMGR_SOCKET").map(std::path::PathBuf::from).unwrap_or_else(|| accord_ipc::sa::SAMGR_SOCKET.into());
    match args.first().map(String::as_str) {
        Some("-ls") => {}
        _ => bail!("usage: hidumper -ls   (list system abilities)"),
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let samgr = accord_ipc::sa::Samgr::connect(&socket).await.with_context(|| format!("cannot reach samgr at {}", socket.display()))?;
        let list = samgr.dump().await?;
        println!("{:<10} {:<10} {:>8} {:>8}", "SA id", "state", "pid", "uid");
        for (id, state, pid, uid) in list {
            println!("{id:<10} {state:<10} {pid:>8} {uid:>8}");
        }
        Ok(())
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| a.rsplit('/').next() == Some("hidumper")) {
        return hidumper(&args[1..]);
    }
    tracing_subscriber::fmt().with_target(false).without_time().with_ansi(false).init();
    let l = listener()?;
    l.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let l = tokio::net::UnixListener::from_std(l)?;
        // Clients may connect from now on (init created the socket before
        // starting us, so early ones were queued): samgr is ready.
        if std::env::var_os("OHOS_SOCKET_samgr").is_some() {
            if let Err(e) = accord_param::client::set("bootevent.samgr.ready", "true") {
                tracing::warn!("cannot set bootevent.samgr.ready: {e}");
            }
        }
        accord_samgr::serve(l, accord_samgr::Registry::default()).await;
        Ok(())
    })
}
