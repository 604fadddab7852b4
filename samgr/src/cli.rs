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
use std::fmt::Write as _;

use anyhow::{bail, ensure, Context, Result};

const USAGE: &str = "usage: samgr [--socket PATH] [--policy FILE] [--profiles DIR]     run the registry
       samgr --check ID | --get ID | --load ID | --unload ID | --list | --procs";
const HIDUMPER_USAGE: &str = "usage: hidumper -ls                 list system abilities
       hidumper -s ID [-a \"ARGS\"]    print system ability ID's dump
       hidumper --mem [PID]          a process's memory by mapping class (kB); without PID, every process's PSS
       hidumper --cpuusage [PID]     CPU use over the next second, of all and per process
       hidumper -p [PID]             processes: pid, ppid, uid, state, threads, RSS, command
       hidumper -c                   system information: parameters, kernel, uptime, load, memory";

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
        Some("-h" | "--help") => {
            println!("{HIDUMPER_USAGE}");
            Ok(())
        }
        Some("--mem") => dump_mem(args.get(1)),
        Some("--cpuusage") => dump_cpu(args.get(1)),
        Some("-p") => dump_procs(args.get(1)),
        Some("-c") => dump_system(),
        _ => bail!("{HIDUMPER_USAGE}"),
    }
}

const PROC: &str = "/proc";

/// Prints `text`; a reader that went away (`| head`) is not an error.
fn emit(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn parse_pid(arg: &str) -> Result<u32> {
    arg.parse().map_err(|_| anyhow::anyhow!("{arg:?} is not a pid"))
}

/// `hidumper --mem [PID]`.
fn dump_mem(pid: Option<&String>) -> Result<()> {
    let mut o = String::new();
    use crate::procinfo;
    let proc = std::path::Path::new(PROC);
    match pid {
        Some(p) => {
            let pid = parse_pid(p)?;
            let (rows, total) = procinfo::mem(proc, pid).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!("no process {pid}"),
                std::io::ErrorKind::PermissionDenied => anyhow::anyhow!("no permission to read the memory of pid {pid} (its owner or root only)"),
                _ => anyhow::anyhow!("memory of pid {pid}: {e}"),
            })?;
            let name = procinfo::process(proc, pid).map(|p| p.stat.comm).unwrap_or_default();
            writeln!(o, "memory of pid {pid} ({name}), kB")?;
            writeln!(
                o,
                "{:<12} {:>8} {:>8} {:>12} {:>12} {:>13} {:>13} {:>8}",
                "class", "PSS", "RSS", "SharedClean", "SharedDirty", "PrivateClean", "PrivateDirty", "Swap"
            )?;
            for r in rows.iter().chain(std::iter::once(&total)) {
                writeln!(
                    o,
                    "{:<12} {:>8} {:>8} {:>12} {:>12} {:>13} {:>13} {:>8}",
                    r.class, r.pss, r.rss, r.shared_clean, r.shared_dirty, r.private_clean, r.private_dirty, r.swap
                )?;
            }
        }
        None => {
            writeln!(o, "{:>7} {:>8} {:>8} {:>8}  name", "pid", "PSS kB", "USS kB", "RSS kB")?;
            let mut all: Vec<_> = procinfo::processes(proc)
                .into_iter()
                .filter_map(|p| procinfo::mem(proc, p.stat.pid).ok().map(|(_, t)| (p, t)))
                .filter(|(_, t)| t.rss > 0)
                .collect();
            all.sort_by_key(|(_, t)| std::cmp::Reverse(t.pss));
            for (p, t) in &all {
                writeln!(o, "{:>7} {:>8} {:>8} {:>8}  {}", p.stat.pid, t.pss, t.uss(), t.rss, p.stat.comm)?;
            }
            writeln!(o, "{:>7} {:>8}", "total", all.iter().map(|(_, t)| t.pss).sum::<u64>())?;
        }
    }
    emit(&o);
    Ok(())
}

/// `hidumper --cpuusage [PID]`.
fn dump_cpu(pid: Option<&String>) -> Result<()> {
    let mut o = String::new();
    let pid = pid.map(|p| parse_pid(p)).transpose()?;
    let u = crate::procinfo::cpu_usage(std::path::Path::new(PROC), std::time::Duration::from_secs(1)).context("CPU use")?;
    writeln!(o, "total CPU use over 1 s: {:.1}% of {} CPUs", u.total, std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))?;
    writeln!(o, "{:>7} {:>8}  name  (per process: % of one CPU)", "pid", "CPU %")?;
    let mut shown = 0;
    for (p, name, pct) in &u.procs {
        if pid.is_some_and(|want| want != *p) || (pid.is_none() && (shown >= 20 || *pct <= 0.0)) {
            continue;
        }
        writeln!(o, "{p:>7} {pct:>8.1}  {name}")?;
        shown += 1;
    }
    if let Some(want) = pid {
        ensure!(u.procs.iter().any(|(p, _, _)| *p == want), "no process {want}");
    }
    emit(&o);
    Ok(())
}

/// `hidumper -p [PID]`.
fn dump_procs(pid: Option<&String>) -> Result<()> {
    let mut o = String::new();
    use crate::procinfo;
    let proc = std::path::Path::new(PROC);
    let list = match pid {
        Some(p) => {
            let pid = parse_pid(p)?;
            vec![procinfo::process(proc, pid).with_context(|| format!("no process {pid}"))?]
        }
        None => procinfo::processes(proc),
    };
    // SAFETY: sysconf has no preconditions.
    let page_kb = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64) / 1024;
    writeln!(o, "{:>7} {:>7} {:>6} {:>1} {:>7} {:>8}  command", "pid", "ppid", "uid", "S", "threads", "RSS kB")?;
    for p in list {
        let cmd = if p.cmdline.is_empty() { format!("[{}]", p.stat.comm) } else { p.cmdline };
        writeln!(o, "{:>7} {:>7} {:>6} {:>1} {:>7} {:>8}  {cmd}", p.stat.pid, p.stat.ppid, p.uid, p.stat.state, p.stat.threads, p.stat.rss_pages * page_kb)?;
    }
    emit(&o);
    Ok(())
}

/// `hidumper -c`.
fn dump_system() -> Result<()> {
    let mut o = String::new();
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_else(|e| format!("({p}: {e})"));
    writeln!(o, "-- device --")?;
    for name in ["const.product.name", "const.product.brand", "const.build.version", "const.ohos.apiversion", "bootevent.boot.completed"] {
        let v = accord_param::client::get(name).unwrap_or_else(|e| format!("({e})"));
        writeln!(o, "{name} = {v}")?;
    }
    writeln!(o, "-- kernel --")?;
    writeln!(o, "release {}", read("/proc/sys/kernel/osrelease"))?;
    writeln!(o, "version {}", read("/proc/sys/kernel/version"))?;
    writeln!(o, "hostname {}", read("/proc/sys/kernel/hostname"))?;
    writeln!(o, "-- running --")?;
    let up: f64 = read("/proc/uptime").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    writeln!(o, "uptime {:.0} s", up)?;
    writeln!(o, "load {}", read("/proc/loadavg"))?;
    let mem = read("/proc/meminfo");
    for key in ["MemTotal:", "MemFree:", "MemAvailable:", "Cached:", "SwapTotal:"] {
        if let Some(l) = mem.lines().find(|l| l.starts_with(key)) {
            writeln!(o, "{l}")?;
        }
    }
    writeln!(o, "processes {}", crate::procinfo::processes(std::path::Path::new(PROC)).len())?;
    emit(&o);
    Ok(())
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
