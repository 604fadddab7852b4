//! The `samgr` daemon and its command-line client: the edge of the
//! `samgr` binary (and of the image's multi-call `sa_main`, which links
//! it), hence `anyhow`.
//!
//! Daemon: init creates its socket (`socket` in samgr's cfg) and passes it
//! as `OHOS_SOCKET_samgr`; `--socket PATH` binds one itself. `--policy
//! PATH` (default /etc/samgr/policy.json, if present) says who may register
//! and get which SAs; `--profiles DIR` (default /system/profile) holds the
//! SA profiles samgr may load on demand. A broken policy stops samgr (it
//! must not open everything); a broken profile is reported and skipped.
//!
//! Client: `samgr --check|--get|--load|--unload ID`, `samgr --list`,
//! `samgr --procs`. Run as `hidumper` (a link to this binary): `hidumper
//! -ls` lists SAs, `hidumper -s ID [-a "ARGS"]` prints an SA's dump.
//! `SAMGR_SOCKET` overrides samgr's socket path for the clients.

use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use accord_safwk::Samgr;
use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: samgr [--socket PATH] [--policy FILE] [--profiles DIR]     run the registry
       samgr --check ID | --get ID | --load ID | --unload ID | --list | --procs";
const HIDUMPER_USAGE: &str = "usage: hidumper -ls                 list system abilities
       hidumper -s ID [-a \"ARGS\"]    print system ability ID's dump";

fn listener(args: &[String]) -> Result<std::os::unix::net::UnixListener> {
    if let Some(path) = opt(args, "--socket")? {
        let _ = std::fs::remove_file(&path);
        return std::os::unix::net::UnixListener::bind(&path).with_context(|| format!("bind {path}"));
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

/// The value after `flag`, if `flag` is given.
fn opt(args: &[String], flag: &str) -> Result<Option<String>> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => Ok(Some(args.get(i + 1).with_context(|| format!("{flag} needs a value"))?.clone())),
    }
}

fn parse_id(s: &str) -> Result<u32> {
    s.parse().with_context(|| format!("{s:?} is not an SA id"))
}

/// Runs `f` against the running samgr on a small runtime.
fn with_samgr<T>(f: impl AsyncFnOnce(&Samgr) -> Result<T>) -> Result<T> {
    let socket = accord_safwk::samgr_socket();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let samgr = Samgr::connect(&socket).await.with_context(|| format!("cannot reach samgr at {}", socket.display()))?;
        f(&samgr).await
    })
}

fn hidumper(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("-ls") => with_samgr(async |samgr| {
            let list = samgr.dump().await?;
            println!("{:<10} {:<11} {:<20} {:>8} {:>8}", "SA id", "state", "process", "pid", "uid");
            for sa in list {
                let (pid, uid) = if sa.state == "LOADED" { (sa.pid.to_string(), sa.uid.to_string()) } else { ("-".into(), "-".into()) };
                let process = if sa.process.is_empty() { "-" } else { &sa.process };
                println!("{:<10} {:<11} {:<20} {:>8} {:>8}", sa.id, sa.state, process, pid, uid);
            }
            Ok(())
        }),
        Some("-s") => {
            let id = parse_id(args.get(1).context(HIDUMPER_USAGE)?)?;
            let dump_args: Vec<String> = match opt(args, "-a")? {
                Some(a) => a.split_whitespace().map(str::to_owned).collect(),
                None => Vec::new(),
            };
            with_samgr(async |samgr| {
                let text = samgr.dump_sa(id, dump_args).await.with_context(|| format!("dump of SA {id}"))?;
                print!("{text}");
                if !text.ends_with('\n') && !text.is_empty() {
                    println!();
                }
                Ok(())
            })
        }
        _ => bail!("{HIDUMPER_USAGE}"),
    }
}

/// `samgr --check ID` etc.; exit status 1 for "not registered".
fn client(op: &str, arg: Option<&String>) -> Result<()> {
    let id = || parse_id(arg.context(USAGE)?);
    match op {
        "--check" => {
            let id = id()?;
            let present = with_samgr(async |s| Ok(s.check(id).await?))?;
            println!("SA {id}: {}", if present { "registered" } else { "not registered" });
            if !present {
                std::process::exit(1);
            }
            Ok(())
        }
        "--get" => {
            let id = id()?;
            // Loads the SA if needed, then pings it over the direct
            // connection (org.freedesktop.DBus.Peer, which every SA answers).
            with_samgr(async |s| {
                let conn = s.get_connection(id).await.with_context(|| format!("get SA {id}"))?;
                let peer = zbus::fdo::PeerProxy::builder(&conn)
                    .destination("org.accord.sa")?
                    .path("/")?
                    .cache_properties(zbus::proxy::CacheProperties::No)
                    .build()
                    .await?;
                peer.ping().await.with_context(|| format!("SA {id} did not answer a ping"))?;
                Ok(())
            })?;
            println!("SA {id}: connected");
            Ok(())
        }
        "--load" => {
            let id = id()?;
            with_samgr(async |s| s.load(id).await.with_context(|| format!("load SA {id}")))?;
            println!("SA {id}: loaded");
            Ok(())
        }
        "--unload" => {
            let id = id()?;
            with_samgr(async |s| s.unload(id).await.with_context(|| format!("unload SA {id}")))?;
            println!("SA {id}: unloaded");
            Ok(())
        }
        "--list" => with_samgr(async |s| {
            for (id, state) in s.list().await? {
                println!("{id} {state}");
            }
            Ok(())
        }),
        "--procs" => with_samgr(async |s| {
            println!("{:<20} {:>8} {:>8}", "process", "pid", "uid");
            for p in s.running_processes().await? {
                println!("{:<20} {:>8} {:>8}", p.name, p.pid, p.uid);
            }
            Ok(())
        }),
        _ => bail!("{USAGE}"),
    }
}

fn daemon(args: &[String]) -> Result<()> {
    let policy_path = opt(args, "--policy")?.map(PathBuf::from).unwrap_or_else(|| accord_safwk::policy::POLICY_PATH.into());
    let profile_dir = opt(args, "--profiles")?.map(PathBuf::from).unwrap_or_else(|| accord_safwk::profile::PROFILE_DIR.into());
    // A broken policy file must not open everything: refuse to start
    // (init restarts us, and the message names the file and field).
    let policy = accord_safwk::policy::Policy::load(&policy_path).map_err(anyhow::Error::msg)?;
    let mut profiles = Vec::new();
    for p in accord_safwk::profile::Profile::load_dir(&profile_dir) {
        match p {
            Ok(p) => {
                // Once per key and file: the host that reads the same file
                // keeps quiet about it.
                for w in p.warnings() {
                    tracing::warn!("SA profile {w}");
                }
                profiles.push(p);
            }
            Err(e) => tracing::warn!("SA profile skipped: {e}"),
        }
    }
    // One connection per client and per SA host.
    accord_ipc::raise_fd_limit();
    let l = listener(args)?;
    l.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let l = tokio::net::UnixListener::from_std(l)?;
        tracing::info!("samgr: {} profiles, {} SAs on demand", profiles.len(), profiles.iter().map(|p| p.abilities.len()).sum::<usize>());
        // Clients may connect from now on (init created the socket before
        // starting us, so early ones were queued): samgr is ready.
        if std::env::var_os("OHOS_SOCKET_samgr").is_some() {
            if let Err(e) = accord_param::client::set("bootevent.samgr.ready", "true") {
                tracing::warn!("cannot set bootevent.samgr.ready: {e}");
            }
        }
        crate::serve(l, crate::Registry::new(policy, profiles, Arc::new(crate::InitStarter))).await;
        Ok(())
    })
}

/// Runs as `samgr` (daemon or client) or, when `args[0]` ends in
/// `hidumper`, as hidumper.
pub fn main(args: Vec<String>) -> Result<()> {
    if args.first().is_some_and(|a| a.rsplit('/').next() == Some("hidumper")) {
        return hidumper(&args[1..]);
    }
    match args.get(1).map(String::as_str) {
        Some(op @ ("--check" | "--get" | "--load" | "--unload" | "--list" | "--procs")) => return client(op, args.get(2)),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => {}
    }
    // OpenHarmony's samgr logs under domain 0xD001800.
    accord_hilog::init_tracing("samgr", 0xD001800);
    daemon(&args)
}
