//! `make bench`'s hilog figures, each a ratio against a floor measured in
//! the same run:
//!
//! - throughput: 4 writer threads, each with its own connection, log
//!   100-byte messages through the `tracing` layer to hilogd (flow control
//!   off, rings of 16 MiB) for 2 s as fast as they can, against the floor:
//!   the same 4 threads sending the same encoded packets to a reader that
//!   discards them. Both count what a full socket refused; the rate is what
//!   arrived per second, until the reader has taken everything.
//! - latency: a `tracing` event to the line reaching a follower (`hilog`'s
//!   query with follow), one at a time, p50/p99.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_hilog::control::{Client, Filter, Request, Response};
use accord_hilog::daemon::{listen_at, Config, Daemon};
use accord_hilog::writer::{Record, SendError, Writer};
use accord_hilog::{HilogLayer, Level, LogType};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

const WRITERS: usize = 4;
/// How long the writers write, each as fast as it can.
const RUN: Duration = Duration::from_secs(2);
const MSG: &str = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

struct Outcome {
    arrived: u64,
    refused: u64,
    secs: f64,
}

/// The floor: a reader that takes packets and throws them away.
fn floor(dir: &Path) -> Outcome {
    let path = dir.join("floor");
    let l = listen_at(&path).expect("listen");
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    std::thread::spawn(move || {
        let ep = Epoll::new(EpollCreateFlags::empty()).expect("epoll");
        ep.add(l.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::MAX)).expect("add");
        let mut conns: Vec<OwnedFd> = Vec::new();
        let mut evs = vec![EpollEvent::empty(); 16];
        let mut buf = vec![0u8; 8192];
        loop {
            let n = ep.wait(&mut evs, EpollTimeout::NONE).unwrap_or(0);
            for e in &evs[..n] {
                if e.data() == u64::MAX {
                    let fd = nix::sys::socket::accept4(l.as_raw_fd(), nix::sys::socket::SockFlag::SOCK_NONBLOCK).expect("accept");
                    // SAFETY: a new descriptor.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    ep.add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, conns.len() as u64)).expect("add");
                    conns.push(fd);
                    continue;
                }
                let fd = conns[e.data() as usize].as_raw_fd();
                for _ in 0..64 {
                    match nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            g.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    });
    let mut packet = Vec::new();
    accord_hilog::wire::encode(&accord_hilog::wire::Fields::plain("bench", MSG.as_bytes()), &mut packet);
    let t = Instant::now();
    let (sent, refused): (u64, u64) = (0..WRITERS)
        .map(|_| {
            let path = path.clone();
            let packet = packet.clone();
            std::thread::spawn(move || {
                let s = accord_hilog::writer::connect(&path).expect("connect");
                let (mut sent, mut refused) = (0u64, 0u64);
                let t = Instant::now();
                while t.elapsed() < RUN {
                    if nix::sys::socket::send(s.as_raw_fd(), &packet, nix::sys::socket::MsgFlags::MSG_DONTWAIT).is_err() {
                        refused += 1;
                    } else {
                        sent += 1;
                    }
                }
                (sent, refused)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap_or((0, 0)))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let want = sent;
    while got.load(Ordering::Relaxed) < want {
        std::thread::sleep(Duration::from_micros(200));
    }
    Outcome { arrived: want, refused, secs: t.elapsed().as_secs_f64() }
}

fn start_hilogd(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let input = dir.join(format!("{name}-in"));
    let control = dir.join(format!("{name}-ctl"));
    let (i, c) = (listen_at(&input).expect("listen"), listen_at(&control).expect("listen"));
    std::thread::spawn(move || {
        let cfg = Config { kmsg: None, flow_control: false, ring_size: accord_hilog::ring::MAX_SIZE, persist_dir: None, ..Config::default() };
        let mut d = Daemon::new(cfg, i, c).expect("daemon");
        let _ = d.run();
    });
    (input, control)
}

/// Through the tracing layer to hilogd.
fn through_hilog(dir: &Path) -> Outcome {
    let (input, control) = start_hilogd(dir, "tp");
    let t = Instant::now();
    let mut total = 0;
    for h in (0..WRITERS)
        .map(|_| {
            let input = input.clone();
            std::thread::spawn(move || {
                use tracing_subscriber::layer::SubscriberExt;
                let w: &'static Writer = Box::leak(Box::new(Writer::new(&input)));
                let sub = tracing_subscriber::registry().with(HilogLayer::with_writer(w, "bench", 0));
                let mut n = 0u64;
                tracing::subscriber::with_default(sub, || {
                    let t = Instant::now();
                    while t.elapsed() < RUN {
                        tracing::info!("{MSG}");
                        n += 1;
                    }
                });
                // One more record, sent until taken, carries the count of
                // what the socket refused.
                let end = Record { ty: LogType::Core, level: Level::Info, domain: 0, tag: "bench", msg: b"end", for_pid: 0 };
                while let Err(SendError::Full) = w.send(&end) {
                    std::thread::sleep(Duration::from_micros(100));
                }
                n + 1
            })
        })
        .collect::<Vec<_>>()
    {
        total += h.join().unwrap_or(0);
    }
    // Every record is in the rings or counted as refused (the writers are
    // one process: one line of hilogd's statistics).
    let pid = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut c = Client::connect(&control).expect("control");
        if let Ok(Response::Stats { stats }) = c.call(&Request::Stats) {
            if let Some(p) = stats.procs.iter().find(|p| p.pid == pid) {
                if p.lines + p.dropped_writer >= total || Instant::now() > deadline {
                    return Outcome { arrived: p.lines, refused: p.dropped_writer, secs: t.elapsed().as_secs_f64() };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn latency(dir: &Path) -> (Duration, Duration) {
    use tracing_subscriber::layer::SubscriberExt;
    let (input, control) = start_hilogd(dir, "lat");
    let mut f = Client::connect(&control).expect("control");
    f.send(&Request::Query { filter: Filter { tags: vec!["lat".into()], ..Filter::default() }, follow: true, head: None, tail: None }).expect("query");
    let w: &'static Writer = Box::leak(Box::new(Writer::new(&input)));
    let sub = tracing_subscriber::registry().with(HilogLayer::with_writer(w, "lat", 0));
    let mut samples = Vec::new();
    tracing::subscriber::with_default(sub, || {
        for i in 0..3000u32 {
            let t = Instant::now();
            tracing::info!("sample {i}");
            loop {
                match f.recv() {
                    Ok(Some(Response::Records { records })) if records.iter().any(|r| r.msg == format!("sample {i}")) => break,
                    Ok(Some(_)) => {}
                    other => panic!("follower: {other:?}"),
                }
            }
            if i >= 200 {
                samples.push(t.elapsed());
            }
        }
    });
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fl = floor(dir.path());
    let hl = through_hilog(dir.path());
    let rate = |o: &Outcome| o.arrived as f64 / o.secs;
    println!(
        "hilog throughput, {WRITERS} writers of 100 B messages for {} s: {:.0} msg/s ({:.1} MB/s), {} refused by a full socket (counted)",
        RUN.as_secs(),
        rate(&hl),
        rate(&hl) * 100.0 / 1e6,
        hl.refused
    );
    println!("  floor (same packets, discarded):      {:.0} msg/s ({:.1} MB/s), {} refused", rate(&fl), rate(&fl) * 100.0 / 1e6, fl.refused);
    println!("  ratio hilog/floor: {:.2}x (target >= 0.5x)", rate(&hl) / rate(&fl));
    let (p50, p99) = latency(dir.path());
    println!("hilog latency, tracing event -> follower: p50 {:.1} us, p99 {:.1} us", p50.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6);
}
