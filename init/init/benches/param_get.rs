//! `make bench` part: parameter get latency against the real init (PID 1 in
//! namespaces, as in the integration tests), side by side with the floor of
//! a raw Unix socket ping-pong measured in the same run.
//!
//! Prints p50/p99 in microseconds and the ratio to the floor. Needs root
//! (namespaces), like the integration tests.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const N: usize = 20_000;

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
    let mut f = fixture::Fixture::new(cfg, &[("etc/param/b.para", "const.bench.name=accord\n")]);
    f.boot();
    let client = f.client();
    for _ in 0..1000 {
        let _ = client.get("const.bench.name");
    }
    let (f50, f99) = floor();
    let mut samples = Vec::with_capacity(N);
    for _ in 0..N {
        let t0 = Instant::now();
        let v = client.get("const.bench.name").expect("get");
        samples.push(t0.elapsed());
        assert_eq!(v, "accord");
    }
    let (g50, g99) = percentiles(samples);
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS")) {
        println!("  init RSS at idle (host build, glibc): {}", rss.trim_start_matches("VmRSS:").trim());
    }
}
