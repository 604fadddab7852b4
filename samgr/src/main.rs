//! The `samgr` daemon. init creates its socket (`socket` in samgr's cfg)
//! and passes it as `OHOS_SOCKET_samgr`; `--socket PATH` binds one itself.

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

fn main() -> Result<()> {
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
