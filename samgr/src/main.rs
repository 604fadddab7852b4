//! The `samgr` daemon. init creates its socket (`socket` in samgr's cfg)
//! and passes it as `OHOS_SOCKET_samgr`; `--socket PATH` binds one itself.
//!
//! `--policy PATH` (default /etc/samgr/policy.json, if present) says who
//! may register and get which SAs. As a client: `samgr --check ID` and
//! `samgr --get ID` ask the running samgr.
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
    let socket = samgr_socket();
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

fn samgr_socket() -> std::path::PathBuf {
    std::env::var_os("SAMGR_SOCKET").map(std::path::PathBuf::from).unwrap_or_else(|| accord_ipc::sa::SAMGR_SOCKET.into())
}

/// `samgr --check ID` / `samgr --get ID`.
fn client(op: &str, id: &str) -> Result<()> {
    let id: u32 = id.parse().with_context(|| format!("{id:?} is not an SA id"))?;
    let socket = samgr_socket();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let samgr = accord_ipc::sa::Samgr::connect(&socket).await.with_context(|| format!("cannot reach samgr at {}", socket.display()))?;
        if op == "--check" {
            let present = samgr.check(id).await?;
            println!("SA {id}: {}", if present { "registered" } else { "not registered" });
            if !present {
                std::process::exit(1);
            }
        } else {
            // `get` returns after the D-Bus handshake with the SA itself.
            let _conn = samgr.get(id).await.with_context(|| format!("get SA {id}"))?;
            println!("SA {id}: connected");
        }
        Ok(())
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| a.rsplit('/').next() == Some("hidumper")) {
        return hidumper(&args[1..]);
    }
    if let (Some(op), Some(id)) = (args.get(1), args.get(2)) {
        if op == "--check" || op == "--get" {
            return client(op, id);
        }
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
        let policy_path = args.iter().position(|a| a == "--policy").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from).unwrap_or_else(|| "/etc/samgr/policy.json".into());
        // A broken policy file must not open everything: refuse to start
        // (init restarts us, and the message names the file and field).
        let policy = accord_samgr::policy::Policy::load(&policy_path).map_err(anyhow::Error::msg)?;
        accord_samgr::serve(l, accord_samgr::Registry::with_policy(policy)).await;
        Ok(())
    })
}
