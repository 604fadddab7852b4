//! `make bench` part: the cost of one call, side by side in one run:
//!
//! - (a)  raw Unix socket ping-pong between two processes (the floor);
//! - (b)  the same u32 → u32 method over a zbus peer-to-peer connection;
//! - (b') the same method on a real system ability through the SDK: a
//!   samgr process, an SA host process (`SaHost::publish`) and a client
//!   that did `Samgr::get::<Proxy>(id)`;
//! - (r)  the same call on the fast path: an SA published as a remote
//!   object (`accord_ipc::remote`, OpenHarmony's `SendRequest(code,
//!   data)` on the D-Bus wire without zbus), through samgr;
//! - (t)  the same call through a typed interface (`#[interface]`: a
//!   generated proxy and stub over the fast path, postcard-encoded), with
//!   16 KiB `serde_bytes` and ten-field struct variants;
//! - (c)  the same interface through Debian's dbus-daemon;
//!
//! each as p50/p99 with one client task and as calls/s with 1 and 16
//! concurrent client tasks; then 16 KiB echo calls (raw, zbus, SDK with
//! `serde_bytes::ByteBuf`), the latency of `GetSystemAbility` on a loaded
//! SA (with the handshake with the SA, and split in two), and the cold
//! on-demand load of an SA from a profile (samgr in this process, its
//! `Starter` spawning this binary as the SA process). It also reports how
//! much CPU other work took during the run (such runs are skewed) and
//! whether the SA host, samgr or the client leaked fds.
//!
//! Every server is a separate process (this binary re-run with `--serve-*`,
//! exiting when its stdin, a pipe from here, closes). Run it under
//! `taskset -c 0` for the pinned figures (children inherit the affinity).
//! `-- --variants [WORD]` instead runs the knob study of (b') against (a)
//! (server and client runtimes, per-call task spawn, property cache,
//! method timeout, proxy vs raw `call_method`, 16 KiB); WORD keeps only
//! the variants whose name holds it (to profile one).

use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_safwk::profile::Profile;
use accord_safwk::{Caller, Maker, Published, SaHost, Samgr, SystemAbility};
use serde_bytes::{ByteBuf, Bytes};
use zbus::interface;

/// Timed calls per latency figure (after `WARM` untimed ones).
const N: usize = 20_000;
/// Untimed calls before each timed series (each round).
const WARM: usize = 500;
/// The 1-task latency series run in this many interleaved rounds.
const ROUNDS: usize = 5;
/// Timed calls per variant of the knob study.
const N_VARIANT: usize = 10_000;
/// How long each calls/s figure runs.
const TPUT_TIME: Duration = Duration::from_millis(1_000);
const TASKS: usize = 16;
/// Client runtime for the 16-task figures.
const MULTI_WORKERS: usize = 2;
const BIG: usize = 16 * 1024;
const N_BIG: usize = 3_000;
const N_GET: usize = 300;
const COLD_RUNS: usize = 10;
const SA_ID: u32 = 9300;
/// The same calls on the fast path (a remote object).
const REMOTE_ID: u32 = 9302;
/// The typed interface's SA (t).
const TYPED_ID: u32 = 9303;
const COLD_SA_ID: u32 = 9301;
const CALC_PATH: &str = "/org/accord/Calc";

struct Calc;

#[interface(name = "org.accord.bench.Calc")]
impl Calc {
    fn add_one(&self, x: u32) -> u32 {
        x.wrapping_add(1)
    }
    fn echo(&self, b: ByteBuf) -> ByteBuf {
        b
    }
}

/// [`Calc`] with each call handled on the connection's object-server task
/// instead of a task spawned per call (a knob of the study).
struct CalcNoSpawn;

#[interface(name = "org.accord.bench.Calc", spawn = false)]
impl CalcNoSpawn {
    fn add_one(&self, x: u32) -> u32 {
        x.wrapping_add(1)
    }
    fn echo(&self, b: ByteBuf) -> ByteBuf {
        b
    }
}

#[zbus::proxy(interface = "org.accord.bench.Calc", default_service = "org.accord.bench", default_path = "/org/accord/Calc")]
trait CalcClient {
    fn add_one(&self, x: u32) -> zbus::Result<u32>;
    fn echo(&self, b: &Bytes) -> zbus::Result<ByteBuf>;
}

/// The benchmark's system ability: a fresh [`Calc`] per client.
struct CalcSa;

impl SystemAbility for CalcSa {
    type Interface = Calc;
    const PATH: &'static str = CALC_PATH;
    fn connect(self: &Arc<Self>, _caller: Caller) -> Calc {
        Calc
    }
}

struct CalcSaNoSpawn;

impl SystemAbility for CalcSaNoSpawn {
    type Interface = CalcNoSpawn;
    const PATH: &'static str = CALC_PATH;
    fn connect(self: &Arc<Self>, _caller: Caller) -> CalcNoSpawn {
        CalcNoSpawn
    }
}

// ---------------------------------------------------------------- helpers

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// (p50, p99) in µs.
fn pct(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

fn rt_current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("current_thread runtime")
}

fn rt_multi(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("multi_thread runtime")
}

/// Server side: exit when the bench (our stdin's writer) is gone, so no
/// server outlives it even if it is killed.
fn die_with_parent() {
    std::thread::spawn(|| {
        let mut b = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut b), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

fn log_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Children of the bench; all killed and reaped when this is dropped
/// (also on a panic).
#[derive(Clone, Default)]
struct Kids(Arc<Mutex<Vec<Child>>>);

impl Kids {
    fn add(&self, c: Child) -> u32 {
        let pid = c.id();
        self.0.lock().expect("kids lock").push(c);
        pid
    }
    /// Starts this binary with `args`; its pid.
    fn spawn_self(&self, args: &[&str]) -> u32 {
        let c = Command::new(std::env::current_exe().expect("current exe")).args(args).stdin(Stdio::piped()).spawn().expect("spawn a server child");
        self.add(c)
    }
    /// Whether every child started so far has exited.
    fn all_exited(&self) -> bool {
        self.0.lock().expect("kids lock").iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_))))
    }
    fn kill_all(&self) {
        let mut k = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Newest first: clients of a server (of dbus-daemon) go before it.
        for c in k.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        k.clear();
    }
}

struct KillOnDrop(Kids);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill_all();
    }
}

fn wait_for(path: &Path) {
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// "CPUs allowed: …, load average …" (other work on the machine skews figures).
fn cpus_and_load() -> String {
    let cpus = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|l| l.trim().to_owned()))
        .unwrap_or_else(|| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg").ok().map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|| "?".into());
    format!("CPUs allowed: {cpus}, load average at start {load}")
}

/// CPU time (clock ticks) used by the whole machine and by this process
/// with its reaped children: their difference over a run is what other
/// work took, which skews every figure.
fn ticks() -> (u64, u64) {
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.split_whitespace().skip(1).map(|v| v.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>()))
        // user nice system idle iowait irq softirq steal (guest time is in user)
        .map(|v| [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum())
        .unwrap_or(0);
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().skip(11).take(4).map(|v| v.parse::<u64>().unwrap_or(0)).sum()))
        .unwrap_or(0);
    (machine, own)
}

/// "other work on the machine: N CPUs on average" since `start`, plus a
/// warning when that is enough to skew the figures.
fn foreign_load(start: (u64, u64), since: Instant) -> String {
    let end = ticks();
    let foreign = end.0.saturating_sub(start.0).saturating_sub(end.1.saturating_sub(start.1));
    let cpus = foreign as f64 / 100.0 / since.elapsed().as_secs_f64();
    let warn = if cpus > 0.15 { "  WARNING: the machine was busy; these figures are skewed, run again when it is idle" } else { "" };
    format!("other work on the machine during the run: {cpus:.2} CPUs on average{warn}")
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

// ---------------------------------------------------------------- servers

/// Frames of `size` bytes (default 4): a 4-byte frame is a u32 answered
/// with u32 + 1, a bigger one is echoed.
fn serve_raw(sock: &str, size: &str) {
    let size: usize = size.parse().unwrap_or(4);
    let l = std::os::unix::net::UnixListener::bind(sock).expect("bind raw");
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            let mut b = vec![0u8; size];
            while s.read_exact(&mut b).is_ok() {
                if size == 4 {
                    let x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]).wrapping_add(1);
                    b.copy_from_slice(&x.to_le_bytes());
                }
                if s.write_all(&b).is_err() {
                    break;
                }
            }
        });
    }
}

/// `spawn`: "nospawn" serves [`CalcNoSpawn`] (knob study).
fn serve_p2p(sock: &str, spawn: &str) {
    let nospawn = spawn == "nospawn";
    rt_current().block_on(async {
        let l = tokio::net::UnixListener::bind(sock).expect("bind p2p");
        loop {
            let (s, _) = l.accept().await.expect("accept p2p");
            tokio::spawn(async move {
                let r = if nospawn { accord_ipc::serve(s, vec![(CALC_PATH, CalcNoSpawn)]).await } else { accord_ipc::serve(s, vec![(CALC_PATH, Calc)]).await };
                match r {
                    Ok(c) => accord_ipc::closed(&c).await,
                    Err(e) => eprintln!("p2p server: handshake: {e}"),
                }
            });
        }
    });
}

fn serve_bus(addr: &str) {
    rt_current().block_on(async {
        let c = zbus::connection::Builder::address(addr)
            .expect("address")
            .name("org.accord.bench")
            .expect("name")
            .serve_at(CALC_PATH, Calc)
            .expect("serve")
            .build()
            .await
            .expect("connect to dbus-daemon");
        let _keep = c;
        std::future::pending::<()>().await;
    });
}

fn serve_samgr(sock: &str) {
    rt_current().block_on(async {
        let l = tokio::net::UnixListener::bind(sock).expect("bind samgr");
        accord_samgr::serve(l, accord_samgr::Registry::default()).await;
    });
}

/// An SA host: `SaHost::connect` + `publish`. `rt`: current|multi;
/// `spawn`: spawn|nospawn (a task per call or not).
fn serve_sa(samgr: &str, id: u32, rt: &str, spawn: &str) {
    let rt = if rt == "multi" { rt_multi(MULTI_WORKERS) } else { rt_current() };
    rt.block_on(async {
        let host = SaHost::connect(Path::new(samgr)).await.expect("SA host: connect to samgr");
        let r = if spawn == "nospawn" { host.publish(id, CalcSaNoSpawn, None).await } else { host.publish(id, CalcSa, None).await };
        r.expect("SA host: publish");
        std::future::pending::<()>().await;
        drop(host);
    });
}

/// The bench's remote object: code 1 adds one to a u32, code 2 echoes.
struct CalcRemote;

impl accord_safwk::RemoteObject for CalcRemote {
    fn on_remote_request(&self, _: &Caller, code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), accord_ipc::remote::RemoteError> {
        match code {
            1 => {
                let x = u32::from_le_bytes(data.try_into().map_err(|_| accord_ipc::remote::RemoteError::failed("want a u32"))?);
                reply.extend_from_slice(&x.wrapping_add(1).to_le_bytes());
            }
            _ => reply.extend_from_slice(data),
        }
        Ok(())
    }
}

/// An SA host publishing [`CalcRemote`] (the fast path).
fn serve_remote(samgr: &str, id: u32) {
    rt_current().block_on(async {
        let host = SaHost::connect(Path::new(samgr)).await.expect("SA host: connect to samgr");
        host.publish_remote(id, Arc::new(CalcRemote), None).await.expect("SA host: publish_remote");
        std::future::pending::<()>().await;
        drop(host);
    });
}

/// A ten-field struct, for the typed interface's struct variant.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, zbus::zvariant::Type)]
pub struct Ten {
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: i16,
    f: i32,
    g: i64,
    h: f64,
    i: bool,
    j: String,
}

fn ten(n: u32) -> Ten {
    Ten {
        a: n as u8,
        b: n as u16,
        c: n,
        d: u64::from(n) << 20,
        e: -(n as i16),
        f: n as i32,
        g: -i64::from(n),
        h: f64::from(n) / 3.0,
        i: n.is_multiple_of(2),
        j: "ten".into(),
    }
}

/// The bench's typed interface (t): the same calls as [`CalcRemote`].
#[accord_safwk::interface(name = "org.accord.bench.Calc")]
pub trait TypedCalc {
    fn add_one(&self, x: u32) -> u32;
    fn echo(&self, b: ByteBuf) -> ByteBuf;
    /// The same echo with the argument borrowed (read where it arrived).
    fn echo_ref(&self, b: &Bytes) -> ByteBuf;
    fn ten(&self, t: Ten) -> Ten;
}

struct TypedCalcImpl;

impl TypedCalc for TypedCalcImpl {
    fn add_one(&self, x: u32) -> u32 {
        x.wrapping_add(1)
    }
    fn echo(&self, b: ByteBuf) -> ByteBuf {
        b
    }
    fn echo_ref(&self, b: &Bytes) -> ByteBuf {
        ByteBuf::from(b.to_vec())
    }
    fn ten(&self, t: Ten) -> Ten {
        t
    }
}

/// An SA host publishing [`TypedCalcImpl`].
fn serve_typed(samgr: &str, id: u32) {
    rt_current().block_on(async {
        let host = SaHost::connect(Path::new(samgr)).await.expect("SA host: connect to samgr");
        host.publish_remote(id, TypedCalcImpl.into_remote(), None).await.expect("SA host: publish typed");
        std::future::pending::<()>().await;
        drop(host);
    });
}

/// Latencies through the typed proxy: u32 calls, then 16 KiB echoes
/// (the argument owned, then borrowed) and ten-field structs, `n` of the
/// first and `n_big` of each other.
struct TypedLat {
    u: Vec<Duration>,
    big: Vec<Duration>,
    big_ref: Vec<Duration>,
    st: Vec<Duration>,
}

async fn typed_lat(p: &TypedCalcProxy, n: usize, n_big: usize) -> TypedLat {
    for i in 0..WARM as u32 {
        p.add_one(i).await.expect("typed warm-up");
    }
    let mut l = TypedLat { u: Vec::with_capacity(n), big: Vec::with_capacity(n_big), big_ref: Vec::with_capacity(n_big), st: Vec::with_capacity(n_big) };
    for i in 0..n as u32 {
        let t = Instant::now();
        let r = p.add_one(i).await.expect("typed call");
        l.u.push(t.elapsed());
        assert_eq!(r, i.wrapping_add(1));
    }
    let payload = ByteBuf::from(vec![0x5a; BIG]);
    for _ in 0..n_big {
        // The caller's own buffer, handed over (the raw figures send a
        // buffer they hold, uncopied, too).
        let arg = payload.clone();
        let t = Instant::now();
        let r = p.echo(arg).await.expect("typed echo");
        l.big.push(t.elapsed());
        assert_eq!(r.len(), BIG);
    }
    for _ in 0..n_big {
        let t = Instant::now();
        let r = p.echo_ref(Bytes::new(&payload)).await.expect("typed echo, borrowed");
        l.big_ref.push(t.elapsed());
        assert_eq!(r.len(), BIG);
    }
    for i in 0..n_big as u32 {
        let v = ten(i);
        let arg = v.clone();
        let t = Instant::now();
        let r = p.ten(arg).await.expect("typed struct");
        l.st.push(t.elapsed());
        assert_eq!(r, v);
    }
    l
}

async fn typed_tput(p: &TypedCalcProxy, tasks: usize) -> f64 {
    tput(p, tasks, |p, n| async move { assert_eq!(p.add_one(n).await.expect("typed call"), n.wrapping_add(1)) }).await
}

async fn typed_for(samgr: &Path, id: u32) -> TypedCalcProxy {
    samgr_connect(samgr).await.get_proxy::<TypedCalcProxy>(id).await.expect("get typed proxy")
}

async fn remote_call(p: &accord_ipc::remote::RemoteProxy, x: u32) -> u32 {
    let r = p.send_request(1, &x.to_le_bytes()).await.expect("remote call");
    u32::from_le_bytes(r.as_slice().try_into().expect("4-byte reply"))
}

async fn remote_lat(p: &accord_ipc::remote::RemoteProxy, n: usize) -> Vec<Duration> {
    for i in 0..WARM as u32 {
        remote_call(p, i).await;
    }
    let mut v = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let t = Instant::now();
        let r = remote_call(p, i).await;
        v.push(t.elapsed());
        assert_eq!(r, i.wrapping_add(1));
    }
    v
}

async fn remote_big_lat(p: &accord_ipc::remote::RemoteProxy, n: usize) -> Vec<Duration> {
    let payload = vec![0x5a; BIG];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = p.send_request(2, &payload).await.expect("remote echo");
        v.push(t.elapsed());
        assert_eq!(r.len(), BIG);
    }
    v
}

async fn remote_tput(p: &accord_ipc::remote::RemoteProxy, tasks: usize) -> f64 {
    tput(p, tasks, |p, n| async move { assert_eq!(remote_call(&p, n).await, n.wrapping_add(1)) }).await
}

async fn remote_for(samgr: &Path, id: u32) -> accord_ipc::remote::RemoteProxy {
    samgr_connect(samgr).await.get_remote(id).await.expect("get remote object")
}

/// A profile's process, as `sa_main` runs one: exits when its SA unloads.
fn serve_sa_profile(samgr: &str, profile: &str) {
    let text = std::fs::read_to_string(profile).expect("read profile");
    let profile = Profile::parse(&text, profile).expect("parse profile");
    let make: Maker = Box::new(|| Published::new(CalcSa));
    rt_current().block_on(async {
        accord_safwk::run_profile_at(Path::new(samgr), &profile, vec![(COLD_SA_ID, make)]).await.expect("run_profile_at");
    });
}

// ---------------------------------------------------------------- clients

fn raw_connect(sock: &Path) -> StdStream {
    for _ in 0..200 {
        if let Ok(s) = StdStream::connect(sock) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("cannot connect to {}", sock.display());
}

fn raw_lat(s: &mut StdStream, n: usize) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    let mut b = [0u8; 4];
    for i in 0..(n + WARM) as u32 {
        let t = Instant::now();
        s.write_all(&i.to_le_bytes()).expect("write");
        s.read_exact(&mut b).expect("read");
        if i as usize >= WARM {
            v.push(t.elapsed());
        }
        assert_eq!(u32::from_le_bytes(b), i.wrapping_add(1));
    }
    v
}

/// Calls/s of `threads` threads, each on a connection of its own.
fn raw_tput(sock: &Path, threads: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns: Vec<StdStream> = (0..threads).map(|_| raw_connect(sock)).collect();
    let start = Instant::now();
    let hs: Vec<_> = conns
        .drain(..)
        .map(|mut s| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut n, mut b) = (0u64, [0u8; 4]);
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(&(n as u32).to_le_bytes()).expect("write");
                    s.read_exact(&mut b).expect("read");
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(TPUT_TIME);
    stop.store(true, Ordering::Relaxed);
    let total: u64 = hs.into_iter().map(|h| h.join().expect("raw client thread")).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

/// Round trips of a `BIG`-byte frame echoed by `--serve-raw SOCK BIG`.
fn raw_big_lat(s: &mut StdStream, n: usize) -> Vec<Duration> {
    let out: Vec<u8> = (0..BIG).map(|i| i as u8).collect();
    let mut back = vec![0u8; BIG];
    let mut v = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let t = Instant::now();
        s.write_all(&out).expect("write");
        s.read_exact(&mut back).expect("read");
        if i >= 200 {
            v.push(t.elapsed());
        }
    }
    assert_eq!(back, out);
    v
}

/// `n` timed 16 KiB `Echo` calls (after 200 untimed ones).
async fn big_lat(p: &CalcClientProxy<'_>, n: usize) -> Vec<Duration> {
    let buf: Vec<u8> = (0..BIG).map(|i| i as u8).collect();
    let payload = Bytes::new(&buf);
    for _ in 0..200 {
        p.echo(payload).await.expect("16 KiB warm-up");
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = p.echo(payload).await.expect("16 KiB call");
        v.push(t.elapsed());
        assert_eq!(r.len(), BIG);
    }
    v
}

/// `n` timed calls of `f` (after `WARM` untimed ones); `f(i)` must give `i + 1`.
async fn lat<F, Fut>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = u32>,
{
    for i in 0..WARM as u32 {
        assert_eq!(f(i).await, i.wrapping_add(1));
    }
    let mut v = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let t = Instant::now();
        let r = f(i).await;
        v.push(t.elapsed());
        assert_eq!(r, i.wrapping_add(1));
    }
    v
}

async fn proxy_lat(p: &CalcClientProxy<'_>, n: usize) -> Vec<Duration> {
    lat(n, |i| async move { p.add_one(i).await.expect("call") }).await
}

/// Calls/s of `tasks` tasks sharing `p`'s connection, on the current runtime.
async fn proxy_tput(p: &CalcClientProxy<'static>, tasks: usize) -> f64 {
    for i in 0..200 {
        p.add_one(i).await.expect("warm-up call");
    }
    tput(p, tasks, |p, n| async move { assert_eq!(p.add_one(n).await.expect("call"), n.wrapping_add(1)) }).await
}

/// Calls/s of `tasks` tasks, each making checked calls `call(client, n)`
/// for [`TPUT_TIME`].
async fn tput<C, F, Fut>(client: &C, tasks: usize, call: F) -> f64
where
    C: Clone + Send + 'static,
    F: Fn(C, u32) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let hs: Vec<_> = (0..tasks)
        .map(|_| {
            let (c, stop, call) = (client.clone(), stop.clone(), call.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    call(c.clone(), n).await;
                    n = n.wrapping_add(1);
                }
                u64::from(n)
            })
        })
        .collect();
    tokio::time::sleep(TPUT_TIME).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in hs {
        total += h.await.expect("client task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[derive(Clone)]
enum Target {
    P2p(PathBuf),
    Sdk(PathBuf, u32),
    Bus(String),
}

async fn samgr_connect(sock: &Path) -> Samgr {
    for _ in 0..200 {
        if let Ok(s) = Samgr::connect(sock).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot reach samgr at {}", sock.display());
}

async fn wait_registered(samgr: &Samgr, id: u32) {
    for _ in 0..500 {
        if samgr.check(id).await.expect("CheckSystemAbility") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("SA {id} never registered");
}

/// A fresh connection to `t` (made on the current runtime) and its proxy.
async fn proxy_for(t: &Target) -> CalcClientProxy<'static> {
    let conn = match t {
        Target::P2p(sock) => {
            let s = tokio::net::UnixStream::connect(sock).await.expect("connect p2p");
            accord_ipc::connect(s).await.expect("p2p handshake")
        }
        Target::Sdk(samgr, id) => {
            let samgr = samgr_connect(samgr).await;
            let remote = samgr.get::<CalcClientProxy>(*id).await.expect("Samgr::get");
            return (*remote).clone();
        }
        Target::Bus(addr) => {
            let c = zbus::connection::Builder::address(addr.as_str()).expect("bus address").build().await.expect("bus client");
            let p = CalcClientProxy::builder(&c).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("proxy");
            // The server may not own its name yet.
            for _ in 0..200 {
                if p.add_one(0).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return p;
        }
    };
    CalcClientProxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("proxy")
}

struct Row {
    name: &'static str,
    p50: f64,
    p99: f64,
    tput1: f64,
    tput16: f64,
}

// ---------------------------------------------------------------- cold load

/// samgr's `Starter` for the cold-load figure: spawns this binary as the
/// profile's process.
struct SelfStarter {
    samgr: PathBuf,
    profile: PathBuf,
    kids: Kids,
}

impl accord_samgr::Starter for SelfStarter {
    fn start(&self, _process: &str) -> Result<(), String> {
        let c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(["--serve-sa-profile", s(&self.samgr), s(&self.profile)])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the SA process: {e}"))?;
        self.kids.add(c);
        Ok(())
    }
    fn stopped(&self, _process: &str) -> Option<bool> {
        Some(self.kids.all_exited())
    }
}

/// Cold on-demand loads: samgr runs in this process (on a thread and
/// runtime of its own) so its `Starter` can spawn the SA process. Returns
/// the get-from-NOT_LOADED-to-first-reply times and the unload-to-exit times.
fn cold_loads(dir: &Path) -> (Vec<Duration>, Vec<Duration>) {
    let sock = dir.join("cold-samgr.sock");
    let profile = dir.join("bench_sa.json");
    std::fs::write(&profile, format!(r#"{{"process": "bench_sa", "systemability": [{{"name": {COLD_SA_ID}, "run-on-create": false}}]}}"#))
        .expect("write profile");
    let kids = Kids::default();
    let _guard = KillOnDrop(kids.clone());
    let parsed = Profile::load(&profile).expect("bench profile");
    let starter = SelfStarter { samgr: sock.clone(), profile, kids: kids.clone() };
    let registry = accord_samgr::Registry::new(Default::default(), vec![parsed], Arc::new(starter));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let samgr_sock = sock.clone();
    let samgr_thread = std::thread::spawn(move || {
        rt_current().block_on(async move {
            let l = tokio::net::UnixListener::bind(&samgr_sock).expect("bind in-process samgr");
            tokio::select! {
                _ = accord_samgr::serve(l, registry) => {}
                _ = stop_rx => {}
            }
        })
    });
    let r = rt_current().block_on(async {
        let samgr = samgr_connect(&sock).await;
        let (mut load, mut exit) = (Vec::new(), Vec::new());
        for _ in 0..COLD_RUNS {
            assert!(!samgr.check(COLD_SA_ID).await.expect("check"), "SA {COLD_SA_ID} is loaded before the cold get");
            let t = Instant::now();
            let remote = samgr.get::<CalcClientProxy>(COLD_SA_ID).await.expect("cold Samgr::get");
            assert_eq!(remote.add_one(41).await.expect("first call"), 42);
            load.push(t.elapsed());
            drop(remote);
            // The host refuses while it still counts our connection: retry.
            let t = Instant::now();
            loop {
                match samgr.unload(COLD_SA_ID).await {
                    Ok(()) => break,
                    Err(_) if t.elapsed() < Duration::from_secs(5) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Err(e) => panic!("unload SA {COLD_SA_ID}: {e}"),
                }
            }
            loop {
                if !samgr.check(COLD_SA_ID).await.expect("check") && kids.all_exited() {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(5), "SA process still up 5 s after the unload");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            exit.push(t.elapsed());
        }
        (load, exit)
    });
    let _ = stop_tx.send(());
    samgr_thread.join().expect("samgr thread");
    r
}

// ---------------------------------------------------------------- main run

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    if arg(1).starts_with("--serve-") {
        die_with_parent();
        log_warnings();
        match arg(1) {
            "--serve-raw" => serve_raw(arg(2), arg(3)),
            "--serve-p2p" => serve_p2p(arg(2), arg(3)),
            "--serve-bus" => serve_bus(arg(2)),
            "--serve-samgr" => serve_samgr(arg(2)),
            "--serve-sa" => serve_sa(arg(2), arg(3).parse().expect("SA id"), arg(4), arg(5)),
            "--serve-sa-profile" => serve_sa_profile(arg(2), arg(3)),
            "--serve-remote" => serve_remote(arg(2), arg(3).parse().expect("SA id")),
            "--serve-typed" => serve_typed(arg(2), arg(3).parse().expect("SA id")),
            other => panic!("unknown mode {other}"),
        }
        return;
    }
    log_warnings();
    if let Some(i) = args.iter().position(|a| a == "--variants") {
        return variants(args.get(i + 1).filter(|a| !a.starts_with("--")).cloned());
    }
    if args.iter().any(|a| a == "--fast-path") {
        return fast_path();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kids = Kids::default();
    let _guard = KillOnDrop(kids.clone());
    let cpus = cpus_and_load();
    let (t0, started) = (ticks(), Instant::now());

    // Servers: every one a child process, all up before any figure.
    let raw = dir.path().join("raw.sock");
    kids.spawn_self(&["--serve-raw", s(&raw)]);
    let raw_big = dir.path().join("raw-big.sock");
    kids.spawn_self(&["--serve-raw", s(&raw_big), &BIG.to_string()]);
    let p2p = dir.path().join("p2p.sock");
    kids.spawn_self(&["--serve-p2p", s(&p2p)]);
    let samgr_sock = dir.path().join("samgr.sock");
    let samgr_pid = kids.spawn_self(&["--serve-samgr", s(&samgr_sock)]);
    for p in [&raw, &raw_big, &p2p, &samgr_sock] {
        wait_for(p);
    }
    let host_pid = kids.spawn_self(&["--serve-sa", s(&samgr_sock), &SA_ID.to_string(), "current", "spawn"]);
    kids.spawn_self(&["--serve-remote", s(&samgr_sock), &REMOTE_ID.to_string()]);
    kids.spawn_self(&["--serve-typed", s(&samgr_sock), &TYPED_ID.to_string()]);
    rt_current().block_on(async {
        let samgr = samgr_connect(&samgr_sock).await;
        wait_registered(&samgr, SA_ID).await;
        wait_registered(&samgr, REMOTE_ID).await;
        wait_registered(&samgr, TYPED_ID).await;
    });
    let bus_sock = dir.path().join("bus.sock");
    let conf = dir.path().join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            "<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
            bus_sock.display()
        ),
    )
    .expect("bus conf");
    let bus = Command::new("dbus-daemon").arg(format!("--config-file={}", conf.display())).arg("--nofork").stdin(Stdio::null()).stderr(Stdio::null()).spawn();
    let bus = match bus {
        Err(e) => {
            println!("(c) dbus-daemon: not available ({e})");
            None
        }
        Ok(bus) => {
            kids.add(bus);
            wait_for(&bus_sock);
            let addr = format!("unix:path={}", bus_sock.display());
            kids.spawn_self(&["--serve-bus", &addr]);
            Some(Target::Bus(addr))
        }
    };
    let p2p_t = Target::P2p(p2p.clone());
    let sdk = Target::Sdk(samgr_sock.clone(), SA_ID);

    // 1 client task: p50/p99 over ROUNDS interleaved rounds (so a slow
    // phase of the machine hits every variant alike), then calls/s.
    let (mut la, mut lb, mut lbp, mut lc, mut lr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ba, mut bb, mut bbp, mut br) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut lt, mut bt, mut btr, mut st) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (t1b, t1bp, t1c, t1r, t1t) = rt_current().block_on(async {
        let pr = remote_for(&samgr_sock, REMOTE_ID).await;
        let pt = typed_for(&samgr_sock, TYPED_ID).await;
        let mut rs = raw_connect(&raw);
        let mut rbs = raw_connect(&raw_big);
        let (pb, pbp) = (proxy_for(&p2p_t).await, proxy_for(&sdk).await);
        let pc = match &bus {
            Some(t) => Some(proxy_for(t).await),
            None => None,
        };
        for _ in 0..ROUNDS {
            la.extend(raw_lat(&mut rs, N / ROUNDS));
            lb.extend(proxy_lat(&pb, N / ROUNDS).await);
            lbp.extend(proxy_lat(&pbp, N / ROUNDS).await);
            lr.extend(remote_lat(&pr, N / ROUNDS).await);
            if let Some(pc) = &pc {
                lc.extend(proxy_lat(pc, N / ROUNDS).await);
            }
            ba.extend(raw_big_lat(&mut rbs, N_BIG / ROUNDS));
            bb.extend(big_lat(&pb, N_BIG / ROUNDS).await);
            bbp.extend(big_lat(&pbp, N_BIG / ROUNDS).await);
            br.extend(remote_big_lat(&pr, N_BIG / ROUNDS).await);
            let l = typed_lat(&pt, N / ROUNDS, N_BIG / ROUNDS).await;
            lt.extend(l.u);
            bt.extend(l.big);
            btr.extend(l.big_ref);
            st.extend(l.st);
        }
        let t1c = match &pc {
            Some(pc) => proxy_tput(pc, 1).await,
            None => 0.0,
        };
        (proxy_tput(&pb, 1).await, proxy_tput(&pbp, 1).await, t1c, remote_tput(&pr, 1).await, typed_tput(&pt, 1).await)
    });
    // 16 client tasks: a multi_thread runtime, one fresh connection each.
    let tput16 = |t: &Target| rt_multi(MULTI_WORKERS).block_on(async { proxy_tput(&proxy_for(t).await, TASKS).await });
    let row = |name, v: Vec<Duration>, tput1, tput16| {
        let (p50, p99) = pct(v);
        Row { name, p50, p99, tput1, tput16 }
    };
    let a = row("(a)  raw unix socket (floor)", la, raw_tput(&raw, 1), raw_tput(&raw, TASKS));
    let b = row("(b)  zbus peer-to-peer", lb, t1b, tput16(&p2p_t));
    let bp = row("(b') Accord SA via SDK", lbp, t1bp, tput16(&sdk));
    let r16 = rt_multi(MULTI_WORKERS).block_on(async { remote_tput(&remote_for(&samgr_sock, REMOTE_ID).await, TASKS).await });
    let rr = row("(r)  Accord remote object", lr, t1r, r16);
    let t16 = rt_multi(MULTI_WORKERS).block_on(async { typed_tput(&typed_for(&samgr_sock, TYPED_ID).await, TASKS).await });
    let tt = row("(t)  Accord typed interface", lt, t1t, t16);
    let ((bt50, bt99), (btr50, btr99), (st50, st99)) = (pct(bt), pct(btr), pct(st));
    let c = bus.as_ref().map(|t| row("(c)  via dbus-daemon", lc, t1c, tput16(t)));
    let ((ab50, ab99), (bb50, bb99), (big50, big99), (br50, br99)) = (pct(ba), pct(bb), pct(bbp), pct(br));

    // GetSystemAbility, leak probe (same SA host).
    let me = std::process::id();
    let fds_before = (fd_count(host_pid), fd_count(samgr_pid), fd_count(me), threads(host_pid));
    let ((get50, get99), get_call50, get_shake50) = rt_current().block_on(async {
        let samgr = samgr_connect(&samgr_sock).await;
        for _ in 0..20 {
            drop(samgr.get_connection(SA_ID).await.expect("GetSystemAbility warm-up"));
        }
        let mut g = Vec::with_capacity(N_GET);
        for _ in 0..N_GET {
            let t = Instant::now();
            let c = samgr.get_connection(SA_ID).await.expect("GetSystemAbility");
            g.push(t.elapsed());
            drop(c);
        }
        drop(samgr);
        // The same in two steps: samgr's answer (an fd), then the D-Bus
        // handshake with the SA on it.
        let own = accord_ipc::connect(tokio::net::UnixStream::connect(&samgr_sock).await.expect("dial samgr")).await.expect("samgr handshake");
        let mgr = accord_safwk::SystemAbilityManagerProxy::builder(&own).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("samgr proxy");
        let (mut call, mut shake) = (Vec::with_capacity(N_GET), Vec::with_capacity(N_GET));
        for _ in 0..N_GET {
            let t = Instant::now();
            let fd: std::os::fd::OwnedFd = mgr.get_system_ability(SA_ID).await.expect("GetSystemAbility").into();
            call.push(t.elapsed());
            let t = Instant::now();
            let std_stream = StdStream::from(fd);
            std_stream.set_nonblocking(true).expect("nonblocking");
            let c = accord_ipc::connect(tokio::net::UnixStream::from_std(std_stream).expect("tokio stream")).await.expect("SA handshake");
            shake.push(t.elapsed());
            drop(c);
        }
        drop((mgr, own));
        tokio::time::sleep(Duration::from_millis(300)).await;
        (pct(g), pct(call).0, pct(shake).0)
    });
    let fds_after = (fd_count(host_pid), fd_count(samgr_pid), fd_count(me), threads(host_pid));

    let (cold, unload) = cold_loads(dir.path());
    kids.kill_all();
    let load = foreign_load(t0, started);

    // ------------------------------------------------------------ report
    println!("IPC call path, one run ({cpus}). Each server is its own process on a current_thread");
    println!(
        "tokio runtime. 1 task: current_thread client, {N} timed calls (p50/p99) in {ROUNDS} interleaved rounds, then {} s of calls.",
        TPUT_TIME.as_secs_f64()
    );
    println!("16 tasks: multi_thread client runtime ({MULTI_WORKERS} workers), 16 tasks sharing one connection;");
    println!("raw floor: 1 resp. 16 client threads, one connection each, a server thread per connection.");
    println!();
    println!("u32 -> u32                        p50 us   p99 us  p50 x floor   calls/s 1 task   calls/s 16 tasks");
    let rows: Vec<&Row> = [Some(&a), Some(&b), Some(&bp), Some(&rr), Some(&tt), c.as_ref()].into_iter().flatten().collect();
    for r in &rows {
        println!(
            "{:<32} {:>7.1}  {:>7.1}  {:>10.2}x  {:>9.0} ({:.2}x)  {:>9.0} ({:.2}x)",
            r.name,
            r.p50,
            r.p99,
            r.p50 / a.p50,
            r.tput1,
            r.tput1 / a.tput1,
            r.tput16,
            r.tput16 / a.tput16
        );
    }
    println!();
    println!("16 KiB echo (ByteBuf -> ByteBuf), {N_BIG} calls, 1 task     p50 us   p99 us  x 16 KiB floor  x own u32 p50");
    println!("(a)  raw unix socket, 16 KiB frames (floor)           {ab50:>7.1}  {ab99:>7.1}  {:>13.2}x  {:>12.2}x", 1.0, ab50 / a.p50);
    println!("(b)  zbus peer-to-peer                                {bb50:>7.1}  {bb99:>7.1}  {:>13.2}x  {:>12.2}x", bb50 / ab50, bb50 / b.p50);
    println!("(b') Accord SA via SDK                                {big50:>7.1}  {big99:>7.1}  {:>13.2}x  {:>12.2}x", big50 / ab50, big50 / bp.p50);
    println!("(r)  Accord remote object (bytes -> bytes)            {br50:>7.1}  {br99:>7.1}  {:>13.2}x  {:>12.2}x", br50 / ab50, br50 / rr.p50);
    println!("(t)  Accord typed interface (ByteBuf -> ByteBuf)      {bt50:>7.1}  {bt99:>7.1}  {:>13.2}x  {:>12.2}x", bt50 / ab50, bt50 / tt.p50);
    println!("(t)  the same, argument borrowed (&Bytes -> ByteBuf)  {btr50:>7.1}  {btr99:>7.1}  {:>13.2}x  {:>12.2}x", btr50 / ab50, btr50 / tt.p50);
    println!("(t)  ten-field struct -> struct, {N_BIG} calls            {st50:>7.1}  {st99:>7.1}  {:>13}   {:>12.2}x", "", st50 / tt.p50);
    println!();
    println!("GetSystemAbility, loaded SA      {get50:>7.1}  {get99:>7.1}   ({N_GET} x Samgr::get_connection incl. the D-Bus handshake with the SA)");
    println!("  of which (p50, measured apart): samgr's GetSystemAbility call {get_call50:.1} us, the D-Bus handshake with the SA {get_shake50:.1} us");
    let (c50, _) = pct(cold.clone());
    let (u50, _) = pct(unload.clone());
    let ms = |d: Option<&Duration>| d.map(|d| d.as_secs_f64() * 1e3).unwrap_or(f64::NAN);
    println!(
        "cold on-demand load             p50 {:.1} ms  min {:.1} ms  max {:.1} ms  ({COLD_RUNS} runs: get at NOT_LOADED -> process spawned -> first reply)",
        c50 / 1e3,
        ms(cold.iter().min()),
        ms(cold.iter().max())
    );
    println!("  (unload -> process exited: p50 {:.1} ms; samgr ran in the bench process for this figure)", u50 / 1e3);
    println!(
        "leak probe after {} connections to the SA: SA host fds {} -> {}, threads {} -> {}; samgr fds {} -> {}; client fds {} -> {}",
        2 * N_GET + 21,
        fds_before.0,
        fds_after.0,
        fds_before.3,
        fds_after.3,
        fds_before.1,
        fds_after.1,
        fds_before.2,
        fds_after.2
    );
    println!("{load}");
    println!();
    let met = |ok: bool| if ok { "MET" } else { "NOT MET" };
    println!("targets:");
    println!("  (b') p50 <= 1.5x (a) p50       {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", bp.p50, 1.5 * a.p50, bp.p50 / a.p50, met(bp.p50 <= 1.5 * a.p50));
    match &c {
        Some(c) => println!(
            "  (b') p50 <= 0.33x (c) p50      {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}",
            bp.p50,
            0.33 * c.p50,
            bp.p50 / c.p50,
            met(bp.p50 <= 0.33 * c.p50)
        ),
        None => println!("  (b') p50 <= 0.33x (c) p50      NOT CHECKED (no dbus-daemon)"),
    }
    println!("  (b') >= 100k calls/s, 16 tasks {:>7.0} calls/s                    {}", bp.tput16, met(bp.tput16 >= 100_000.0));
    println!("  16 KiB p50 <= 2x u32 (b') p50  {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", big50, 2.0 * bp.p50, big50 / bp.p50, met(big50 <= 2.0 * bp.p50));
    println!("  the same targets on the fast path (r), an SA published as a remote object:");
    println!("  (r)  p50 <= 1.5x (a) p50       {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", rr.p50, 1.5 * a.p50, rr.p50 / a.p50, met(rr.p50 <= 1.5 * a.p50));
    if let Some(c) = &c {
        println!("  (r)  p50 <= 0.33x (c) p50      {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", rr.p50, 0.33 * c.p50, rr.p50 / c.p50, met(rr.p50 <= 0.33 * c.p50));
    }
    println!("  (r)  >= 100k calls/s, 16 tasks {:>7.0} calls/s                    {}", rr.tput16, met(rr.tput16 >= 100_000.0));
    println!("  16 KiB p50 <= 2x u32 (r) p50   {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", br50, 2.0 * rr.p50, br50 / rr.p50, met(br50 <= 2.0 * rr.p50));
    println!("  typed interfaces (t), the generated proxy and stub:");
    println!("  (t)  p50 <= 1.25x (a) p50      {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", tt.p50, 1.25 * a.p50, tt.p50 / a.p50, met(tt.p50 <= 1.25 * a.p50));
    println!("  (t)  p99 <= 1.5x (a) p99       {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", tt.p99, 1.5 * a.p99, tt.p99 / a.p99, met(tt.p99 <= 1.5 * a.p99));
    println!("  (t)  >= 250k calls/s, 16 tasks {:>7.0} calls/s                    {}", tt.tput16, met(tt.tput16 >= 250_000.0));
    println!(
        "  (t)  16 KiB p50 <= 1.5x u32    {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}  (ByteBuf argument)",
        bt50,
        1.5 * tt.p50,
        bt50 / tt.p50,
        met(bt50 <= 1.5 * tt.p50)
    );
    println!(
        "  (t)  16 KiB p50 <= 1.5x u32    {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}  (&Bytes argument)",
        btr50,
        1.5 * tt.p50,
        btr50 / tt.p50,
        met(btr50 <= 1.5 * tt.p50)
    );
    println!("  (t)  struct p50 <= 1.3x u32    {:>7.1} us vs {:>7.1} us  ({:.2}x)  {}", st50, 1.3 * tt.p50, st50 / tt.p50, met(st50 <= 1.3 * tt.p50));
    println!("  (t)  p50 vs untyped (r)        {:>7.1} us vs {:>7.1} us  ({:.2}x)", tt.p50, rr.p50, tt.p50 / rr.p50);
}

/// `-- --fast-path`: only the u32 call on (a), (r) and (t), one task,
/// rounds interleaved; a quick loop for work on the fast path.
fn fast_path() {
    let cpus = cpus_and_load();
    let dir = tempfile::tempdir().expect("tempdir");
    let kids = Kids::default();
    let _guard = KillOnDrop(kids.clone());
    let raw = dir.path().join("raw.sock");
    kids.spawn_self(&["--serve-raw", s(&raw)]);
    let samgr_sock = dir.path().join("samgr.sock");
    kids.spawn_self(&["--serve-samgr", s(&samgr_sock)]);
    for p in [&raw, &samgr_sock] {
        wait_for(p);
    }
    kids.spawn_self(&["--serve-remote", s(&samgr_sock), &REMOTE_ID.to_string()]);
    kids.spawn_self(&["--serve-typed", s(&samgr_sock), &TYPED_ID.to_string()]);
    let (la, lr, lt, lrb, ltb, ltbr) = rt_current().block_on(async {
        let samgr = samgr_connect(&samgr_sock).await;
        wait_registered(&samgr, REMOTE_ID).await;
        wait_registered(&samgr, TYPED_ID).await;
        let pr = remote_for(&samgr_sock, REMOTE_ID).await;
        let pt = typed_for(&samgr_sock, TYPED_ID).await;
        let mut rs = raw_connect(&raw);
        let (mut la, mut lr, mut lt) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ltb, mut ltbr, mut lrb) = (Vec::new(), Vec::new(), Vec::new());
        // ACCORD_FAST_ONLY=a|r|t|rb|tb runs only that one (to profile it); the
        // others then report the first call's figures.
        let only = std::env::var("ACCORD_FAST_ONLY").unwrap_or_default();
        let run = |w: &str| only.is_empty() || only == w;
        for _ in 0..ROUNDS {
            la.extend(raw_lat(&mut rs, if run("a") { N / ROUNDS } else { 1 }));
            lr.extend(remote_lat(&pr, if run("r") { N / ROUNDS } else { 1 }).await);
            let l = typed_lat(&pt, if run("t") { N / ROUNDS } else { 1 }, if run("tb") { N_BIG / ROUNDS } else { 1 }).await;
            lt.extend(l.u);
            ltb.extend(l.big);
            ltbr.extend(l.big_ref);
            lrb.extend(remote_big_lat(&pr, if run("rb") { N_BIG / ROUNDS } else { 1 }).await);
        }
        (la, lr, lt, lrb, ltb, ltbr)
    });
    let (a50, a99) = pct(la);
    let (r50, r99) = pct(lr);
    let (t50, t99) = pct(lt);
    println!("{cpus}");
    println!("(a) floor  p50 {a50:>6.1} us  p99 {a99:>6.1} us");
    println!("(r) raw    p50 {r50:>6.1} us  p99 {r99:>6.1} us  {:.2}x  {:.2}x", r50 / a50, r99 / a99);
    println!("(t) typed  p50 {t50:>6.1} us  p99 {t99:>6.1} us  {:.2}x  {:.2}x", t50 / a50, t99 / a99);
    let t16 = rt_multi(MULTI_WORKERS).block_on(async { typed_tput(&typed_for(&samgr_sock, TYPED_ID).await, TASKS).await });
    let r16 = rt_multi(MULTI_WORKERS).block_on(async { remote_tput(&remote_for(&samgr_sock, REMOTE_ID).await, TASKS).await });
    println!("16 tasks on one connection: (r) {r16:.0} calls/s, (t) {t16:.0} calls/s");
    let (rb50, _) = pct(lrb);
    let (tb50, _) = pct(ltb);
    let (tbr50, _) = pct(ltbr);
    println!(
        "16 KiB echo: (r) p50 {rb50:>6.1} us ({:.2}x its u32), (t) p50 {tb50:>6.1} us ({:.2}x its u32), borrowed {tbr50:>6.1} us ({:.2}x)",
        rb50 / r50,
        tb50 / t50,
        tbr50 / t50
    );
}

// ---------------------------------------------------------------- knob study

const VARIANT_ROUNDS: usize = 3;

#[derive(Clone, Copy)]
enum ClientRt {
    Current,
    /// multi_thread runtime with n workers, the loop in `block_on` (as in
    /// `#[tokio::main]`'s body).
    MultiBlockOn(usize),
    /// The same, the loop in a spawned task (on a worker).
    MultiSpawned(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum CallKind {
    /// The SDK's: `Samgr::get_connection`, proxy without property cache.
    Proxy,
    /// zbus' default proxy (CacheProperties::Lazily).
    CachedProxy,
    /// A connection built with `method_timeout(25 s)` on GetSystemAbility's fd.
    MethodTimeout,
    /// `Connection::call_method`, no proxy.
    CallMethod,
    /// The SDK's proxy, 16 KiB `Echo` instead of `AddOne`.
    Echo16K,
}

/// p50 (µs) of `n` calls to `t` made as `call` says.
async fn variant_p50(t: Target, call: CallKind, n: usize) -> f64 {
    let conn = match (&t, call) {
        (Target::Sdk(sock, id), CallKind::MethodTimeout) => {
            let own = accord_ipc::connect(tokio::net::UnixStream::connect(sock).await.expect("dial samgr")).await.expect("samgr handshake");
            let mgr =
                accord_safwk::SystemAbilityManagerProxy::builder(&own).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("samgr proxy");
            let fd: std::os::fd::OwnedFd = mgr.get_system_ability(*id).await.expect("GetSystemAbility").into();
            let std_stream = StdStream::from(fd);
            std_stream.set_nonblocking(true).expect("nonblocking");
            zbus::connection::Builder::unix_stream(tokio::net::UnixStream::from_std(std_stream).expect("tokio stream"))
                .p2p()
                .method_timeout(Duration::from_secs(25))
                .build()
                .await
                .expect("SA handshake")
        }
        (Target::Sdk(sock, id), _) => samgr_connect(sock).await.get_connection(*id).await.expect("Samgr::get_connection"),
        (Target::P2p(sock), _) => accord_ipc::connect(tokio::net::UnixStream::connect(sock).await.expect("connect p2p")).await.expect("p2p handshake"),
        (Target::Bus(_), _) => panic!("the knob study does not cover dbus-daemon"),
    };
    let v = match call {
        CallKind::CallMethod => {
            lat(n, |i| {
                let conn = &conn;
                async move {
                    let m = conn.call_method(None::<&str>, CALC_PATH, Some("org.accord.bench.Calc"), "AddOne", &(i,)).await.expect("call_method");
                    m.body().deserialize::<u32>().expect("reply body")
                }
            })
            .await
        }
        CallKind::Echo16K => {
            let p = CalcClientProxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("proxy");
            let buf: Vec<u8> = (0..BIG).map(|i| i as u8).collect();
            lat(n, |i| {
                let (p, payload) = (&p, Bytes::new(&buf));
                async move {
                    assert_eq!(p.echo(payload).await.expect("16 KiB call").len(), BIG);
                    i.wrapping_add(1)
                }
            })
            .await
        }
        CallKind::CachedProxy => proxy_lat(&CalcClientProxy::builder(&conn).build().await.expect("caching proxy"), n).await,
        CallKind::Proxy | CallKind::MethodTimeout => {
            proxy_lat(&CalcClientProxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("proxy"), n).await
        }
    };
    pct(v).0
}

/// `-- --variants`: p50 of (b') under cheap knobs, against (a) and (b) in
/// the same run; every variant runs once per round, rounds interleaved,
/// and the median of its round p50s is reported (with min..max).
fn variants(filter: Option<String>) {
    let cpus = cpus_and_load();
    let (t0, started) = (ticks(), Instant::now());
    let dir = tempfile::tempdir().expect("tempdir");
    let kids = Kids::default();
    let _guard = KillOnDrop(kids.clone());
    let raw = dir.path().join("raw.sock");
    kids.spawn_self(&["--serve-raw", s(&raw)]);
    let p2p = dir.path().join("p2p.sock");
    kids.spawn_self(&["--serve-p2p", s(&p2p)]);
    let p2p_nospawn = dir.path().join("p2p-nospawn.sock");
    kids.spawn_self(&["--serve-p2p", s(&p2p_nospawn), "nospawn"]);
    let samgr_sock = dir.path().join("samgr.sock");
    kids.spawn_self(&["--serve-samgr", s(&samgr_sock)]);
    wait_for(&raw);
    wait_for(&p2p);
    wait_for(&p2p_nospawn);
    wait_for(&samgr_sock);
    let hosts = [(9310u32, "current", "spawn"), (9311, "multi", "spawn"), (9312, "current", "nospawn"), (9313, "multi", "nospawn")];
    for (id, rt, sp) in hosts {
        kids.spawn_self(&["--serve-sa", s(&samgr_sock), &id.to_string(), rt, sp]);
    }
    rt_current().block_on(async {
        let samgr = samgr_connect(&samgr_sock).await;
        for (id, _, _) in hosts {
            wait_registered(&samgr, id).await;
        }
    });
    let sdk = |id: u32| Some(Target::Sdk(samgr_sock.clone(), id));
    let mut list: Vec<(String, Option<Target>, ClientRt, CallKind)> = vec![
        ("(a)  raw unix socket (floor)".into(), None, ClientRt::Current, CallKind::Proxy),
        ("(b)  plain zbus p2p, server spawn per call".into(), Some(Target::P2p(p2p.clone())), ClientRt::Current, CallKind::Proxy),
        ("(b)  plain zbus p2p, server no spawn per call".into(), Some(Target::P2p(p2p_nospawn.clone())), ClientRt::Current, CallKind::Proxy),
    ];
    for (id, rt, sp) in hosts {
        let what = if sp == "spawn" { "spawn per call" } else { "no spawn per call" };
        let base = if id == 9310 { "  [baseline]" } else { "" };
        list.push((format!("(b') server {rt}_thread, {what}{base}"), sdk(id), ClientRt::Current, CallKind::Proxy));
    }
    for w in [1, 2] {
        list.push((format!("(b') client multi_thread {w} worker(s), loop in block_on"), sdk(9310), ClientRt::MultiBlockOn(w), CallKind::Proxy));
        list.push((format!("(b') client multi_thread {w} worker(s), loop in a task"), sdk(9310), ClientRt::MultiSpawned(w), CallKind::Proxy));
    }
    list.push(("(b') proxy with property cache (zbus default)".into(), sdk(9310), ClientRt::Current, CallKind::CachedProxy));
    list.push(("(b') connection with method_timeout 25 s".into(), sdk(9310), ClientRt::Current, CallKind::MethodTimeout));
    list.push(("(b') Connection::call_method, no proxy".into(), sdk(9310), ClientRt::Current, CallKind::CallMethod));
    list.push(("(b') no-spawn host + call_method client".into(), sdk(9312), ClientRt::Current, CallKind::CallMethod));
    list.push(("(b') 16 KiB echo, baseline host".into(), sdk(9310), ClientRt::Current, CallKind::Echo16K));
    list.push(("(b') 16 KiB echo, no-spawn host".into(), sdk(9312), ClientRt::Current, CallKind::Echo16K));
    // `--variants WORD`: only the floor and the variants whose name holds WORD
    // (to profile one of them).
    if let Some(word) = &filter {
        let mut first = true;
        list.retain(|(name, ..)| std::mem::take(&mut first) || name.contains(word.as_str()));
    }
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); list.len()];
    for _ in 0..VARIANT_ROUNDS {
        for (i, (_, target, rt, call)) in list.iter().enumerate() {
            let p50 = match target.clone() {
                None => pct(raw_lat(&mut raw_connect(&raw), N_VARIANT)).0,
                Some(t) => {
                    let call = *call;
                    let fut = async move { variant_p50(t, call, N_VARIANT).await };
                    match rt {
                        ClientRt::Current => rt_current().block_on(fut),
                        ClientRt::MultiBlockOn(w) => rt_multi(*w).block_on(fut),
                        ClientRt::MultiSpawned(w) => rt_multi(*w).block_on(async { tokio::spawn(fut).await.expect("client task") }),
                    }
                }
            };
            p50s[i].push(p50);
        }
    }
    // 16 tasks (multi_thread client, one connection) against each host.
    let mut tputs = Vec::new();
    if filter.is_none() {
        for (id, rt, sp) in hosts {
            let t = Target::Sdk(samgr_sock.clone(), id);
            let v = rt_multi(MULTI_WORKERS).block_on(async { proxy_tput(&proxy_for(&t).await, TASKS).await });
            tputs.push((format!("(b') server {rt}_thread, {}", if sp == "spawn" { "spawn per call" } else { "no spawn per call" }), v));
        }
    }
    kids.kill_all();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (floor, _, _) = median(&p50s[0]);
    println!("knob study: u32 -> u32 p50 in us, median of {VARIANT_ROUNDS} interleaved rounds of {N_VARIANT} calls (min..max), {cpus}");
    println!("baseline (b') = SDK get, server current_thread + a task spawned per call (zbus default), client current_thread, no property cache");
    for (i, (name, ..)) in list.iter().enumerate() {
        let (m, lo, hi) = median(&p50s[i]);
        println!("  {name:<62} {m:>6.1}  ({lo:>5.1}..{hi:>5.1})  {:.2}x floor", m / floor);
    }
    println!("{}", foreign_load(t0, started));
    if !tputs.is_empty() {
        println!("calls/s, {TASKS} tasks on a multi_thread client ({MULTI_WORKERS} workers) sharing one connection:");
        for (name, v) in tputs {
            println!("  {name:<62} {v:>8.0}");
        }
    }
}
