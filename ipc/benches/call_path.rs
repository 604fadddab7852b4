//! `make bench` part: the round trip of one u32 → u32 call, side by side in
//! one run: (a) raw Unix socket ping-pong between two processes (the
//! floor), (b) the same method over a zbus peer-to-peer connection, (c) the
//! same interface through Debian's dbus-daemon. Each server is a separate
//! process (this binary re-run with `--serve-*`). Run it under
//! `taskset -c 0` for the pinned figures (children inherit the affinity).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zbus::interface;

const N: usize = 20_000;

struct Calc;

#[interface(name = "org.accord.bench.Calc")]
impl Calc {
    fn add_one(&self, x: u32) -> u32 {
        x.wrapping_add(1)
    }
}

#[zbus::proxy(interface = "org.accord.bench.Calc", default_service = "org.accord.bench", default_path = "/org/accord/Calc")]
trait CalcClient {
    fn add_one(&self, x: u32) -> zbus::Result<u32>;
}

fn pct(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn serve_raw(sock: &str) {
    let l = std::os::unix::net::UnixListener::bind(sock).expect("bind");
    let (mut s, _) = l.accept().expect("accept");
    let mut b = [0u8; 4];
    while s.read_exact(&mut b).is_ok() {
        let x = u32::from_le_bytes(b).wrapping_add(1);
        if s.write_all(&x.to_le_bytes()).is_err() {
            break;
        }
    }
}

fn serve_p2p(sock: &str) {
    rt().block_on(async {
        let l = tokio::net::UnixListener::bind(sock).expect("bind");
        let (s, _) = l.accept().await.expect("accept");
        let c = accord_ipc::serve(s, vec![("/org/accord/Calc", Calc)]).await.expect("serve");
        accord_ipc::closed(&c).await;
    });
}

fn serve_bus(addr: &str) {
    rt().block_on(async {
        let c = zbus::connection::Builder::address(addr)
            .expect("address")
            .name("org.accord.bench")
            .expect("name")
            .serve_at("/org/accord/Calc", Calc)
            .expect("serve")
            .build()
            .await
            .expect("connect to dbus-daemon");
        let _ = c;
        std::future::pending::<()>().await;
    });
}

fn spawn_self(args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().expect("exe")).args(args).stdin(Stdio::null()).spawn().expect("spawn server")
}

fn wait_for(path: &std::path::Path) {
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

async fn zbus_calls(p: &CalcClientProxy<'_>) -> Vec<Duration> {
    for i in 0..1000 {
        p.add_one(i).await.expect("warm-up call");
    }
    let mut v = Vec::with_capacity(N);
    for i in 0..N as u32 {
        let t = Instant::now();
        let r = p.add_one(i).await.expect("call");
        v.push(t.elapsed());
        assert_eq!(r, i + 1);
    }
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve-raw") => return serve_raw(&args[2]),
        Some("--serve-p2p") => return serve_p2p(&args[2]),
        Some("--serve-bus") => return serve_bus(&args[2]),
        _ => {}
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut children = Vec::new();

    // (a) floor
    let raw = dir.path().join("raw.sock");
    children.push(spawn_self(&["--serve-raw", raw.to_str().unwrap_or_default()]));
    wait_for(&raw);
    let mut s = StdStream::connect(&raw).expect("connect raw");
    let mut floor = Vec::with_capacity(N);
    let mut b = [0u8; 4];
    for i in 0..(N + 1000) as u32 {
        let t = Instant::now();
        s.write_all(&i.to_le_bytes()).expect("write");
        s.read_exact(&mut b).expect("read");
        if i >= 1000 {
            floor.push(t.elapsed());
        }
    }
    let (a50, a99) = pct(floor);

    // (b) zbus p2p
    let p2p = dir.path().join("p2p.sock");
    children.push(spawn_self(&["--serve-p2p", p2p.to_str().unwrap_or_default()]));
    wait_for(&p2p);
    let (b50, b99) = rt().block_on(async {
        let s = tokio::net::UnixStream::connect(&p2p).await.expect("connect p2p");
        let c = accord_ipc::connect(s).await.expect("p2p handshake");
        let p = CalcClientProxy::builder(&c).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("proxy");
        pct(zbus_calls(&p).await)
    });

    // (c) dbus-daemon
    let conf = dir.path().join("bus.conf");
    let bus_sock = dir.path().join("bus.sock");
    std::fs::write(
        &conf,
        format!(
            "<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
            bus_sock.display()
        ),
    )
    .expect("bus conf");
    let bus = Command::new("dbus-daemon").arg(format!("--config-file={}", conf.display())).arg("--nofork").stdin(Stdio::null()).stderr(Stdio::null()).spawn();
    let bus_result = match bus {
        Err(e) => {
            println!("  (c) dbus-daemon: not available ({e})");
            None
        }
        Ok(bus) => {
            children.push(bus);
            wait_for(&bus_sock);
            let addr = format!("unix:path={}", bus_sock.display());
            children.push(spawn_self(&["--serve-bus", &addr]));
            Some(rt().block_on(async {
                let c = zbus::connection::Builder::address(addr.as_str()).expect("addr").build().await.expect("bus client");
                let p = CalcClientProxy::builder(&c).cache_properties(zbus::proxy::CacheProperties::No).build().await.expect("proxy");
                for _ in 0..200 {
                    if p.add_one(0).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                pct(zbus_calls(&p).await)
            }))
        }
    };

    println!("u32 -> u32 call round trip, {N} calls each, same run:");
    println!("  (a) raw unix socket (floor)  p50 {a50:6.1} us  p99 {a99:6.1} us");
    println!("  (b) zbus peer-to-peer        p50 {b50:6.1} us  p99 {b99:6.1} us  {:.2}x floor", b50 / a50);
    if let Some((c50, c99)) = bus_result {
        println!("  (c) via dbus-daemon          p50 {c50:6.1} us  p99 {c99:6.1} us  {:.2}x floor; (b)/(c) = {:.2}", c50 / a50, b50 / c50);
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
