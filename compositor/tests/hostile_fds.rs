//! One client must not be able to take all of the compositor's file
//! descriptors: render_service runs with the kernel's default soft limit
//! of 1024 (what init gives services), a client holds shm pools (one
//! descriptor each in the compositor) up to that limit, and another
//! client must still be served.

mod common;

use std::{
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{fd_count, frames_requested, memfd, popup, positioner, shm_buffer, spawn_simple_shm, Arg, Gone, KillOnDrop, RawClient, DEADLINE};

const LIMIT: u64 = 1024;

#[test]
fn one_client_cannot_take_every_descriptor_with_pools() {
    attack(false);
}

/// The same with buffers keeping their pools' files open after the pools
/// are destroyed.
#[test]
fn one_client_cannot_take_every_descriptor_with_buffers() {
    attack(true);
}

/// render_service, headless, at RLIMIT_NOFILE [`LIMIT`]: the process,
/// its pid, its socket.
fn spawn_service(dir: &Path) -> (KillOnDrop, String, PathBuf) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_render_service"));
    command
        .args(["--headless", "320x240", "--socket", "wl"])
        .env("XDG_RUNTIME_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("render_service.log")).expect("log"));
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: LIMIT, rlim_max: 4096 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut service = KillOnDrop(command.spawn().expect("spawning render_service"));
    let pid = service.0.id().to_string();
    let socket = dir.join("wl");
    let start = Instant::now();
    // The socket's file appears at bind(), before listen(): a connection
    // then is refused. The service says "listening" once it listens.
    let log = dir.join("render_service.log");
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("listening") {
        assert!(service.0.try_wait().expect("try_wait").is_none(), "render_service exited");
        assert!(start.elapsed() < DEADLINE, "render_service never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    (service, pid, socket)
}

/// Clients connect until render_service cannot accept more (every
/// descriptor taken) and a few more wait: it must not spin on the
/// listening socket meanwhile.
#[test]
fn a_full_descriptor_table_does_not_make_it_spin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut service, pid, socket) = spawn_service(dir.path());
    let mut clients = Vec::new();
    let start = Instant::now();
    while (fd_count(&pid) as u64) < LIMIT {
        clients.push(std::os::unix::net::UnixStream::connect(&socket).expect("connecting"));
        // Accepted before the next (so the count above is right).
        while fd_count(&pid) < clients.len() {
            assert!(start.elapsed() < DEADLINE, "connections not accepted");
            std::thread::yield_now();
        }
    }
    for _ in 0..10 {
        clients.push(std::os::unix::net::UnixStream::connect(&socket).expect("connecting"));
    }
    let before = common::cpu_ticks(&pid);
    let measured = Instant::now();
    while measured.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = common::cpu_ticks(&pid) - before;
    assert!(service.0.try_wait().expect("try_wait").is_none(), "render_service exited");
    // A core busy for 3 s is 300 ticks (at 100 Hz).
    assert!(used < 60, "render_service used {used} CPU ticks in 3 s with {} clients waiting to be accepted", 10);
    // Descriptors free again: clients are accepted again.
    clients.truncate(clients.len() / 2);
    let mut c = RawClient::connect(&socket);
    c.roundtrip().expect("a client after descriptors were freed");
}

fn attack(destroy_pools: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut service, pid, socket) = spawn_service(dir.path());

    // The attacker: pools until the compositor is at its limit (or the
    // attacker is cut off, which is fine).
    let mut c = RawClient::connect(&socket);
    let shm = c.bind("wl_shm", 1);
    let mut pools = 0;
    let mut cut_off = false;
    while (fd_count(&pid) as u64) < LIMIT {
        let fd = memfd(4096);
        let pool = c.new_id();
        if c.try_send(shm, 0, &[Arg::U(pool), Arg::Fd(fd.as_raw_fd()), Arg::I(4096)]).is_err() {
            cut_off = true;
            break;
        }
        pools += 1;
        if destroy_pools {
            let buffer = c.new_id();
            let made = c.try_send(pool, 0, &[Arg::U(buffer), Arg::I(0), Arg::I(16), Arg::I(16), Arg::I(64), Arg::U(1)]);
            if made.and_then(|()| c.try_send(pool, 1, &[])).is_err() {
                cut_off = true;
                break;
            }
        }
        if let Err(Gone::Disconnected(_)) = c.roundtrip() {
            cut_off = true;
            break;
        }
        assert!(pools < 10 * LIMIT, "{pools} pools and the compositor has only {} descriptors", fd_count(&pid));
    }
    eprintln!("{pools} pools, compositor at {} descriptors, attacker cut off: {cut_off}", fd_count(&pid));

    // Another client is served: weston-simple-shm gets frame callbacks.
    let (mut client, client_log) = spawn_simple_shm(dir.path(), "wl");
    let cpu_before = common::cpu_ticks(&pid);
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&client_log).unwrap_or_default();
        if frames_requested(&text) >= 10 {
            break;
        }
        if let Ok(Some(status)) = client.0.try_wait() {
            panic!(
                "weston-simple-shm exited ({status}) while another client holds {pools} pools; cpu used meanwhile {} ticks; its log:\n{}",
                common::cpu_ticks(&pid) - cpu_before,
                text.lines().rev().take(5).collect::<Vec<_>>().join("\n")
            );
        }
        assert!(service.0.try_wait().expect("try_wait").is_none(), "render_service exited");
        assert!(
            start.elapsed() < DEADLINE,
            "weston-simple-shm not served in {DEADLINE:?} while another client holds {pools} pools; render_service used {} CPU ticks meanwhile",
            common::cpu_ticks(&pid) - cpu_before
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(c);
}

/// A chain of popups, each the parent of the next, a thousand deep: the
/// work per popup grew with the depth (72 s of CPU for a thousand, and a
/// stack overflow in-process before 5000) until popups were capped at
/// MAX_POPUP_DEPTH (16): the client is cut off at the 17th, render_service
/// lives and serves others.
#[test]
fn a_deep_chain_of_popups_is_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut service, _pid, socket) = spawn_service(dir.path());
    let mut c = RawClient::connect(&socket);
    let compositor = c.bind("wl_compositor", 4);
    let shm = c.bind("wl_shm", 1);
    let wm_base = c.bind("xdg_wm_base", 1);
    let mut parent = common::toplevel(&mut c, compositor, wm_base).xdg_surface;
    let positioner = positioner(&mut c, wm_base);
    let buffer = shm_buffer(&mut c, shm, 10, 10).buffer;
    let start = Instant::now();
    let mut cut_at = None;
    for i in 0..DEPTH {
        let (surface, xs, _) = popup(&mut c, compositor, wm_base, parent, positioner);
        let configure = match c.wait_for(|e| e.object == xs && e.opcode == 0) {
            Ok(e) => e,
            Err(e) => {
                assert!(service.0.try_wait().expect("try_wait").is_none(), "render_service died at popup {i} ({:?} in)", start.elapsed());
                eprintln!("cut off at popup {i}: {e:?}");
                cut_at = Some(i);
                break;
            }
        };
        c.send(xs, 4, &[Arg::U(configure.u32_at(0))]);
        c.send(surface, 1, &[Arg::U(buffer), Arg::I(0), Arg::I(0)]);
        c.send(surface, 6, &[]);
        parent = xs;
        assert!(start.elapsed() < DEADLINE, "only {i} nested popups in {DEADLINE:?}");
    }
    assert_eq!(cut_at, Some(16), "the 17th nested popup is refused");
    let _ = c.roundtrip();
    assert!(service.0.try_wait().expect("try_wait").is_none(), "render_service died");
    let mut other = RawClient::connect(&socket);
    other.roundtrip().expect("another client's round trip");
}

const DEPTH: u32 = 1000;
