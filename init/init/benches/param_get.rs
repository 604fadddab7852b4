//! `make bench` part: parameter get latency against the real init (PID 1 in
//! namespaces, as in the integration tests), side by side with the floor of
//! a raw Unix socket ping-pong measured in the same run; then `persist.*`
//! set throughput, coalesced batches against the former one-file-rewrite
//! per set, and root's `param get` latency and init's RSS while 1,000
//! unprivileged clients hold connections.
//!
//! Prints p50/p99 in microseconds and the ratio to the floor. Needs root
//! (namespaces), like the integration tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const N: usize = 20_000;

/// p50/p99 of N socket gets of `const.bench.name` on `client`.
fn get_latency(client: &accord_param::client::Client) -> (f64, f64) {
    let mut samples = Vec::with_capacity(N);
    for _ in 0..N {
        let t0 = Instant::now();
        let v = client.get("const.bench.name").expect("get");
        samples.push(t0.elapsed());
        assert_eq!(v, "accord");
    }
    percentiles(samples)
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

/// Raw round trip of 64 bytes between two threads over a socketpair.
fn floor() -> (f64, f64) {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..N {
            if b.read_exact(&mut buf).is_err() {
                return;
            }
            let _ = b.write_all(&buf);
        }
    });
    let mut buf = [7u8; 64];
    let mut samples = Vec::with_capacity(N);
    for _ in 0..N {
        let t0 = Instant::now();
        a.write_all(&buf).expect("write");
        a.read_exact(&mut buf).expect("read");
        samples.push(t0.elapsed());
    }
    let _ = t.join();
    percentiles(samples)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("param_get bench: needs root for namespaces; skipped");
        return;
    }
    let cfg = r#"{"services": []}"#;
    let mut f = accord_testkit::Fixture::new(cfg, &[("etc/param/b.para", "const.bench.name=accord\n")]);
    f.boot();
    let client = f.client();
    for _ in 0..1000 {
        let _ = client.get("const.bench.name");
    }
    let (f50, f99) = floor();
    let (g50, g99) = get_latency(&client);
    let mut connect_samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t0 = Instant::now();
        let c = f.client();
        let _ = c.get("const.bench.name");
        connect_samples.push(t0.elapsed());
    }
    let (c50, c99) = percentiles(connect_samples);
    let area_path = format!("/proc/{}/root/dev/__parameters__/param_area", f.init_pid().expect("pid"));
    let area = accord_param::area::AreaReader::open_at(std::path::Path::new(&area_path)).expect("map the parameter area");
    let mut area_samples = Vec::with_capacity(N);
    for _ in 0..N {
        let t0 = Instant::now();
        let v = area.get("const.bench.name");
        area_samples.push(t0.elapsed());
        assert_eq!(v, accord_param::area::Lookup::Found("accord".into()));
    }
    let (a50, a99) = percentiles(area_samples);
    println!("param get latency ({N} calls, same run)");
    println!("  floor: unix socket ping-pong   p50 {f50:7.1} us  p99 {f99:7.1} us");
    println!("  param get (connected client)   p50 {g50:7.1} us  p99 {g99:7.1} us  ratio p50 {:.2}x floor", g50 / f50);
    println!("  param get (connect + get)      p50 {c50:7.1} us  p99 {c99:7.1} us  ratio p50 {:.2}x floor", c50 / f50);
    println!("  param get (shared-memory table)  p50 {a50:7.2} us  p99 {a99:7.2} us  ratio p50 {:.3}x floor", a50 / f50);
    let pid = f.init_pid().expect("init pid");
    println!("  init RSS at idle (host build, glibc): {}", rss(pid));
    drop(f);
    persist_throughput();
    held_connections();
}

fn rss(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS")).map(|l| l.trim_start_matches("VmRSS:").trim().to_owned()).unwrap_or_else(|| "?".into())
}

/// `persist.*` sets per second: the former way (the whole file rewritten
/// and fsynced twice on PID 1's loop for every set, measured here with the
/// same write on the same file system) beside init's coalesced batches,
/// one client and 16 clients at once.
fn persist_throughput() {
    const SETS: usize = 200;
    let cfg = r#"{"jobs": [{"name": "post-fs-data", "cmds": ["load_persist_params"]}]}"#;
    let defaults: String = (0..20).map(|i| format!("persist.bench.base{i}=value-{i}\n")).collect();
    let mut f = accord_testkit::Fixture::new(cfg, &[("etc/param/b.para", &defaults)]);
    f.boot();
    let c = f.client();
    // Former: one rewrite (temp file, fsync, rename, fsync dir) per set.
    let old_path = f.path("data/bench-old/persist_parameters");
    let mut entries: Vec<(String, String)> = (0..21).map(|i| (format!("persist.bench.base{i}"), format!("value-{i}"))).collect();
    let t0 = Instant::now();
    for i in 0..SETS {
        entries[20].1 = i.to_string();
        accord_param::persist::save_atomic(&old_path, &entries).expect("save");
    }
    let old = SETS as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for i in 0..SETS {
        c.set("persist.bench.one", &i.to_string()).expect("persist set");
    }
    let one = SETS as f64 / t0.elapsed().as_secs_f64();
    let before = stat(&c, "persist_batches");
    let t0 = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let c = f.client();
            std::thread::spawn(move || {
                for i in 0..SETS / 4 {
                    c.set(&format!("persist.bench.t{t}"), &i.to_string()).expect("persist set");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let many_sets = 16 * (SETS / 4);
    let many = many_sets as f64 / t0.elapsed().as_secs_f64();
    let batches = stat(&c, "persist_batches") - before;
    println!("persist.* set throughput (each set acknowledged once on disk; same file system, same run)");
    println!("  former: file rewrite + 2 fsyncs per set on the loop  {old:8.0} sets/s");
    println!("  coalesced, 1 client (a batch per set)               {one:8.0} sets/s  ({:.2}x)", one / old);
    println!("  coalesced, 16 clients                               {many:8.0} sets/s  ({:.2}x; {many_sets} sets in {batches} batches)", many / old);
}

fn stat(c: &accord_param::Client, name: &str) -> u64 {
    c.stats().expect("stats").into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or(0)
}

/// Root's `param get` and init's RSS while 1,000 clients of uid 2000 hold
/// connections (each made one request, so init holds their state).
fn held_connections() {
    accord_testkit::Fixture::raise_own_nofile();
    let mut f = accord_testkit::Fixture::new(r#"{"services": []}"#, &[("etc/param/b.para", "const.bench.name=accord\n")]);
    f.boot();
    let pid = f.init_pid().expect("init pid");
    let idle = rss(pid);
    let mut conns = f.connect_many_as(2000, 2000, &[], 1000).expect("1000 connections as uid 2000");
    for s in &mut conns {
        s.write_all(&accord_param::proto::encode_frame(&accord_param::proto::Request::Get { name: "const.bench.name".into() })).expect("request");
    }
    for s in &mut conns {
        let r = accord_param::proto::read_frame::<accord_param::proto::Response>(s).expect("reply");
        assert!(matches!(r, Some(accord_param::proto::Response::Value { .. })), "{r:?}");
    }
    let client = f.client();
    let (g50, g99) = get_latency(&client);
    println!("1,000 unprivileged clients holding connections");
    println!("  root param get (connected)  p50 {g50:7.1} us  p99 {g99:7.1} us");
    println!("  init RSS: {} (idle: {idle}; host build, glibc)", rss(pid));
    drop(conns);
}
