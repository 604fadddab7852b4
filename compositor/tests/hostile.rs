//! Hostile clients against the headless compositor: whatever they send,
//! the compositor does not crash or panic, and other clients keep being
//! served.

mod common;

use std::{
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use accord_compositor::{state::MAX_SURFACES_PER_CLIENT, MAX_CLIENTS_PER_UID};
use common::{memfd, popup, positioner, shm_buffer, thread::CompositorThread, toplevel, Arg, Gone, RawClient, DEADLINE};

/// A headless compositor on its own thread, stopped and joined on drop
/// (a panic in it fails the test).
struct Harness {
    t: CompositorThread,
}

impl Harness {
    fn start() -> Harness {
        Harness { t: CompositorThread::start(320, 240, "wl") }
    }

    fn socket(&self) -> PathBuf {
        self.t.socket()
    }

    /// A fresh client still gets answers.
    fn assert_serving(&self) {
        let mut c = RawClient::connect(&self.socket());
        assert!(c.globals.contains_key("wl_compositor"), "a new client got no globals");
        c.roundtrip().expect("a new client's round trip");
    }

    fn frames_rendered(&self) -> u64 {
        self.t.with(|c| c.frames_rendered())
    }
}

struct Globals {
    compositor: u32,
    shm: u32,
    wm_base: u32,
}

fn bind_all(c: &mut RawClient) -> Globals {
    Globals { compositor: c.bind("wl_compositor", 4), shm: c.bind("wl_shm", 1), wm_base: c.bind("xdg_wm_base", 1) }
}

/// Waits for a frame callback on `surface` (asked for here, then a commit).
fn wait_frame_done(c: &mut RawClient, surface: u32) -> Result<(), Gone> {
    let cb = c.new_id();
    c.send(surface, 3, &[Arg::U(cb)]);
    c.send(surface, 6, &[]);
    c.wait_for(|e| e.object == cb && e.opcode == 0).map(|_| ())
}

/// A well-behaved client: a toplevel with a buffer that fits its pool.
struct GoodClient {
    c: RawClient,
    surface: u32,
    buffer: u32,
}

impl GoodClient {
    fn start(h: &Harness) -> GoodClient {
        let mut c = RawClient::connect(&h.socket());
        let g = bind_all(&mut c);
        let t = toplevel(&mut c, g.compositor, g.wm_base);
        let b = shm_buffer(&mut c, g.shm, 64, 64);
        GoodClient { c, surface: t.surface, buffer: b.buffer }
    }

    /// Draws once more and waits for the frame callback.
    fn draw(&mut self) -> Result<(), Gone> {
        self.c.send(self.surface, 1, &[Arg::U(self.buffer), Arg::I(0), Arg::I(0)]);
        self.c.send(self.surface, 2, &[Arg::I(0), Arg::I(0), Arg::I(64), Arg::I(64)]);
        wait_frame_done(&mut self.c, self.surface)
    }
}

/// A pool that claims more bytes than its file has, and a buffer in the
/// part past the file's end: reading it is SIGBUS. The compositor must
/// neither crash nor stop drawing for everyone else: another client's
/// window keeps being drawn and keeps getting frame callbacks.
#[test]
fn a_pool_bigger_than_its_file_does_not_stop_the_compositor() {
    let h = Harness::start();
    let mut c = RawClient::connect(&h.socket());
    let g = bind_all(&mut c);
    let t = toplevel(&mut c, g.compositor, g.wm_base);
    let fd = memfd(4096);
    let pool = c.new_id();
    c.send(g.shm, 0, &[Arg::U(pool), Arg::Fd(fd.as_raw_fd()), Arg::I(16 << 20)]);
    drop(fd);
    let buffer = c.new_id();
    // 256x256 XRGB8888 (format 1) at 1 MiB: all of it past the file.
    c.send(pool, 0, &[Arg::U(buffer), Arg::I(1 << 20), Arg::I(256), Arg::I(256), Arg::I(1024), Arg::U(1)]);
    c.send(t.surface, 1, &[Arg::U(buffer), Arg::I(0), Arg::I(0)]);
    c.send(t.surface, 2, &[Arg::I(0), Arg::I(0), Arg::I(256), Arg::I(256)]);
    c.send(t.surface, 6, &[]);
    // Cut off or not, the client's round trip ends.
    let _ = c.roundtrip();

    // Another client, its window on top: its frames are drawn (the first
    // may be lost to the failed one; five in all).
    let mut good = GoodClient::start(&h);
    let before = h.frames_rendered();
    let start = Instant::now();
    while h.frames_rendered() < before + 5 {
        assert!(start.elapsed() < DEADLINE, "the good client's frames were not rendered: {} of 5", h.frames_rendered() - before);
        good.draw().expect("the good client's frame callback");
    }
    // The client whose buffer could not be read was cut off.
    assert!(matches!(c.roundtrip(), Err(Gone::Disconnected(_))), "the client with the bad buffer was not disconnected");
    h.assert_serving();
}

/// Objects destroyed in odd orders, wrong serials, popups whose parent is
/// gone: protocol errors at most, never a crash; others still served.
#[test]
fn odd_destruction_orders_and_wrong_serials() {
    let h = Harness::start();
    type Attack = fn(&mut RawClient, &Globals);
    let attacks: &[(&str, Attack)] = &[
        ("buffer destroyed while attached", |c, g| {
            let t = toplevel(c, g.compositor, g.wm_base);
            let b = shm_buffer(c, g.shm, 256, 256);
            c.send(b.pool, 1, &[]);
            c.send(t.surface, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
            c.send(b.buffer, 0, &[]);
            let _ = wait_frame_done(c, t.surface);
            c.send(t.surface, 6, &[]);
            let _ = c.roundtrip();
        }),
        ("xdg_surface before its toplevel", |c, g| {
            let t = toplevel(c, g.compositor, g.wm_base);
            c.send(t.xdg_surface, 0, &[]);
            c.send(t.surface, 6, &[]);
            let _ = c.roundtrip();
        }),
        ("wl_surface before its xdg_surface", |c, g| {
            let t = toplevel(c, g.compositor, g.wm_base);
            c.send(t.surface, 0, &[]);
            c.send(t.toplevel, 0, &[]);
            c.send(t.xdg_surface, 0, &[]);
            let _ = c.roundtrip();
        }),
        ("ack_configure with wrong serials", |c, g| {
            let t = toplevel(c, g.compositor, g.wm_base);
            for serial in [0, 1, u32::MAX, 0x7fff_ffff] {
                c.send(t.xdg_surface, 4, &[Arg::U(serial)]);
            }
            let _ = c.roundtrip();
        }),
        ("popup whose parent is gone", |c, g| {
            let parent = toplevel(c, g.compositor, g.wm_base);
            let positioner = positioner(c, g.wm_base);
            let (surface, _, popup) = popup(c, g.compositor, g.wm_base, parent.xdg_surface, positioner);
            let _ = c.roundtrip();
            c.send(parent.toplevel, 0, &[]);
            c.send(parent.xdg_surface, 0, &[]);
            c.send(parent.surface, 0, &[]);
            c.send(surface, 6, &[]);
            let _ = c.roundtrip();
            c.send(popup, 1, &[Arg::U(0), Arg::U(0)]);
            let _ = c.roundtrip();
        }),
        ("popup with a null parent and one with itself as parent", |c, g| {
            let positioner = positioner(c, g.wm_base);
            let _ = popup(c, g.compositor, g.wm_base, 0, positioner);
            let _ = c.roundtrip();
            // Its own xdg_surface as the parent.
            let surface = c.new_id();
            c.send(g.compositor, 0, &[Arg::U(surface)]);
            let xs = c.new_id();
            c.send(g.wm_base, 2, &[Arg::U(xs), Arg::U(surface)]);
            let own = c.new_id();
            c.send(xs, 2, &[Arg::U(own), Arg::U(xs), Arg::U(positioner)]);
            let _ = c.roundtrip();
        }),
        ("wm_base destroyed with surfaces alive", |c, g| {
            let _t = toplevel(c, g.compositor, g.wm_base);
            c.send(g.wm_base, 0, &[]);
            let _ = c.roundtrip();
        }),
        ("pool of size 0, negative, and a buffer overflowing", |c, g| {
            let fd = memfd(4096);
            let pool = c.new_id();
            c.send(g.shm, 0, &[Arg::U(pool), Arg::Fd(fd.as_raw_fd()), Arg::I(4096)]);
            let buffer = c.new_id();
            c.send(pool, 0, &[Arg::U(buffer), Arg::I(i32::MAX), Arg::I(i32::MAX), Arg::I(i32::MAX), Arg::I(i32::MAX), Arg::U(1)]);
            let _ = c.roundtrip();
        }),
        ("a pool with a descriptor that cannot be mapped", |c, g| {
            let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
            let pool = c.new_id();
            c.send(g.shm, 0, &[Arg::U(pool), Arg::Fd(a.as_raw_fd()), Arg::I(4096)]);
            let _ = c.roundtrip();
        }),
        ("subsurface cycles", |c, g| {
            let sub = c.bind("wl_subcompositor", 1);
            let a = c.new_id();
            c.send(g.compositor, 0, &[Arg::U(a)]);
            let b = c.new_id();
            c.send(g.compositor, 0, &[Arg::U(b)]);
            let ab = c.new_id();
            c.send(sub, 1, &[Arg::U(ab), Arg::U(b), Arg::U(a)]);
            let ba = c.new_id();
            c.send(sub, 1, &[Arg::U(ba), Arg::U(a), Arg::U(b)]);
            let _ = c.roundtrip();
        }),
        ("a subsurface of itself", |c, g| {
            let sub = c.bind("wl_subcompositor", 1);
            let a = c.new_id();
            c.send(g.compositor, 0, &[Arg::U(a)]);
            let aa = c.new_id();
            c.send(sub, 1, &[Arg::U(aa), Arg::U(a), Arg::U(a)]);
            let _ = c.roundtrip();
        }),
        ("the pool's file shrunk after the commit", |c, g| {
            let t = toplevel(c, g.compositor, g.wm_base);
            let b = shm_buffer(c, g.shm, 256, 256);
            c.send(t.surface, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
            c.send(t.surface, 2, &[Arg::I(0), Arg::I(0), Arg::I(256), Arg::I(256)]);
            let _ = wait_frame_done(c, t.surface);
            // SAFETY: ftruncate on a descriptor this test owns.
            unsafe { libc::ftruncate(b.fd.as_raw_fd(), 0) };
            c.send(t.surface, 2, &[Arg::I(0), Arg::I(0), Arg::I(256), Arg::I(256)]);
            let _ = wait_frame_done(c, t.surface);
        }),
    ];
    for (name, attack) in attacks {
        let mut c = RawClient::connect(&h.socket());
        let g = bind_all(&mut c);
        attack(&mut c, &g);
        drop(c);
        eprintln!("{name}: held");
        h.assert_serving();
    }
}

/// A client that sends requests and never reads its events: the
/// compositor's buffer for it is bounded (it is cut off), memory does not
/// grow without end, others are served meanwhile.
#[test]
fn a_client_that_never_reads_is_cut_off() {
    let h = Harness::start();
    let mut c = RawClient::connect(&h.socket());
    let rss_before = common::rss_kib("self");
    c.stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    // wl_display.sync: two events each, none read.
    let mut sent = 0u32;
    let start = Instant::now();
    let mut cut_off = false;
    while start.elapsed() < DEADLINE {
        let id = c.new_id();
        if c.try_send(1, 0, &[Arg::U(id)]).is_err() {
            cut_off = true;
            break;
        }
        sent += 1;
        if sent.is_multiple_of(10_000) {
            h.assert_serving();
        }
    }
    let grown = common::rss_kib("self").saturating_sub(rss_before);
    eprintln!("sent {sent} syncs, cut off: {cut_off}, RSS grew {grown} KiB");
    assert!(grown < 64 * 1024, "RSS grew {grown} KiB for {sent} unread syncs");
    h.assert_serving();
}

/// Thousands of toplevels from one client: memory per window stays
/// modest and the compositor keeps serving others.
#[test]
fn more_surfaces_than_the_bound_disconnect_the_client() {
    let h = Harness::start();
    let mut c = RawClient::connect(&h.socket());
    let g = bind_all(&mut c);
    // Toplevels up to the bound are fine.
    for _ in 0..MAX_SURFACES_PER_CLIENT {
        let surface = c.new_id();
        c.send(g.compositor, 0, &[Arg::U(surface)]);
        let xs = c.new_id();
        c.send(g.wm_base, 2, &[Arg::U(xs), Arg::U(surface)]);
        let tl = c.new_id();
        c.send(xs, 1, &[Arg::U(tl)]);
        c.send(surface, 6, &[]);
    }
    c.roundtrip().expect("round trip with as many toplevels as allowed");
    // One more surface: a protocol error on it, then the end.
    let surface = c.new_id();
    c.send(g.compositor, 0, &[Arg::U(surface)]);
    match c.roundtrip() {
        Err(Gone::Disconnected(events)) => {
            assert!(events.iter().any(|e| e.object == 1 && e.opcode == 0 && e.u32_at(0) == surface), "no error on the surface: {events:?}")
        }
        other => panic!("surface {} was accepted: {other:?}", MAX_SURFACES_PER_CLIENT + 1),
    }
    h.assert_serving();
}

/// Pools and buffers made and destroyed again and again (a client that
/// resizes its window) are not counted against it once gone.
#[test]
fn pools_and_buffers_destroyed_are_not_counted() {
    let h = Harness::start();
    let mut c = RawClient::connect(&h.socket());
    let g = bind_all(&mut c);
    for i in 0..4 * accord_compositor::state::MAX_SHM_OBJECTS_PER_CLIENT {
        let b = shm_buffer(&mut c, g.shm, 16, 16);
        c.send(b.pool, 1, &[]);
        c.send(b.buffer, 0, &[]);
        if i.is_multiple_of(64) {
            c.roundtrip().unwrap_or_else(|e| panic!("cut off after {i} pools made and destroyed: {e:?}"));
        }
    }
    c.roundtrip().expect("round trip");
}

/// Positioner values near i32's ends overflowed smithay's placement
/// arithmetic (a panic with overflow checks): past ±2^20 they are a
/// protocol error, and a popup placed with the largest allowed ones is
/// drawn without trouble.
#[test]
fn positioner_values_out_of_range_are_a_protocol_error() {
    let h = Harness::start();
    for (opcode, args) in [
        (6u16, vec![Arg::I(i32::MIN), Arg::I(i32::MIN)]),
        (1, vec![Arg::I(i32::MAX), Arg::I(10)]),
        (2, vec![Arg::I(0), Arg::I(i32::MIN + 1), Arg::I(5), Arg::I(5)]),
    ] {
        let mut c = RawClient::connect(&h.socket());
        let g = bind_all(&mut c);
        let positioner = c.new_id();
        c.send(g.wm_base, 1, &[Arg::U(positioner)]);
        let _ = c.try_send(positioner, opcode, &args);
        match c.roundtrip() {
            Err(Gone::Disconnected(events)) => {
                assert!(events.iter().any(|e| e.object == 1 && e.opcode == 0 && e.u32_at(0) == positioner), "no error on the positioner: {events:?}");
            }
            other => panic!("opcode {opcode} out of range was accepted: {other:?}"),
        }
    }
    let mut c = RawClient::connect(&h.socket());
    let g = bind_all(&mut c);
    let t = toplevel(&mut c, g.compositor, g.wm_base);
    let p = positioner(&mut c, g.wm_base);
    let max = 1 << 20;
    c.send(p, 6, &[Arg::I(-max), Arg::I(-max)]);
    c.send(p, 1, &[Arg::I(max), Arg::I(max)]);
    c.send(p, 2, &[Arg::I(-max), Arg::I(-max), Arg::I(max), Arg::I(max)]);
    popup(&mut c, g.compositor, g.wm_base, t.xdg_surface, p);
    c.roundtrip().expect("a popup at the edge of the range is fine");
    h.assert_serving();
}

/// Connects `n` clients as `uid` (from a thread with those credentials:
/// the compositor reads them from the socket); each is the stream and
/// whether it was served (a registry round trip) or closed at once.
fn clients_as(uid: u32, socket: &std::path::Path, n: usize) -> Vec<(std::os::unix::net::UnixStream, bool)> {
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, uid, &[]).expect("tests run as root");
        (0..n)
            .map(|_| {
                let stream = std::os::unix::net::UnixStream::connect(&socket).expect("connecting");
                let mut c = RawClient::from_stream(stream.try_clone().expect("dup"));
                let served = c.roundtrip().is_ok();
                (stream, served)
            })
            .collect()
    })
    .join()
    .expect("the client thread")
}

/// One uid may have MAX_CLIENTS_PER_UID clients: the next is closed at
/// once, other uids still get in, and a client that leaves makes room.
#[test]
fn clients_per_uid_are_bounded() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start();
    std::fs::set_permissions(h.t.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(h.socket(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut first = clients_as(2001, &h.socket(), MAX_CLIENTS_PER_UID + 1);
    let served = first.iter().filter(|(_, ok)| *ok).count();
    assert_eq!(served, MAX_CLIENTS_PER_UID, "uid 2001's clients served");
    assert!(!first[MAX_CLIENTS_PER_UID].1, "the client past the bound was served");
    assert!(clients_as(2002, &h.socket(), 1)[0].1, "another uid was refused");
    h.assert_serving();
    // One of 2001's leaves: once the compositor has seen it go, 2001 gets in again.
    first.truncate(MAX_CLIENTS_PER_UID - 1);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut again = clients_as(2001, &h.socket(), 1);
        if again[0].1 {
            break;
        }
        again.clear();
        assert!(Instant::now() < deadline, "uid 2001 never got in again after one of its clients left");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The interfaces a client of `uid` is shown.
fn globals_as(uid: u32, socket: &std::path::Path) -> Vec<String> {
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, uid, &[]).expect("tests run as root");
        RawClient::connect(&socket).globals.into_keys().collect()
    })
    .join()
    .expect("the client thread")
}

/// wlr-layer-shell (status bars, overlays over every app) is the system
/// UI's: shown to root and to the uids given to allow_system_ui, hidden
/// from every other uid, whose attempt to bind it anyway is a protocol
/// error.
#[test]
fn layer_shell_is_shown_to_the_system_ui_only() {
    use std::os::unix::fs::PermissionsExt;
    const LAYER_SHELL: &str = "zwlr_layer_shell_v1";
    let h = Harness::start();
    std::fs::set_permissions(h.t.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(h.socket(), std::fs::Permissions::from_mode(0o777)).unwrap();
    h.t.with(|c| c.allow_system_ui(&[2003]));
    assert!(globals_as(2003, &h.socket()).iter().any(|g| g == LAYER_SHELL), "the system UI's uid does not see layer-shell");
    assert!(RawClient::connect(&h.socket()).globals.contains_key(LAYER_SHELL), "root does not see layer-shell");
    let app = globals_as(2001, &h.socket());
    assert!(app.iter().any(|g| g == "xdg_wm_base"), "{app:?}");
    assert!(!app.iter().any(|g| g == LAYER_SHELL), "an app's uid sees layer-shell: {app:?}");
    // Binding it by its number anyway (as root learnt it) is refused.
    let name = RawClient::connect(&h.socket()).globals[LAYER_SHELL].0;
    let socket = h.socket();
    let refused = std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(2001, 2001, &[]).expect("tests run as root");
        let mut c = RawClient::connect(&socket);
        let id = c.new_id();
        let registry = c.registry;
        c.send(registry, 0, &[Arg::U(name), Arg::S(LAYER_SHELL), Arg::U(4), Arg::U(id)]);
        c.roundtrip()
    })
    .join()
    .expect("the client thread");
    assert!(matches!(refused, Err(Gone::Disconnected(_))), "an app bound layer-shell: {refused:?}");
    h.assert_serving();
}

/// With share_socket(gid), members of the group connect; other uids get
/// no connection at all (the socket is 0660: connect needs write).
#[test]
fn only_the_socket_group_connects() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let h = Harness::start();
    std::fs::set_permissions(h.t.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    h.t.with(|c| c.share_socket(2005)).expect("share_socket");
    let meta = std::fs::metadata(h.socket()).unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o777), (2005, 0o660));
    let try_as = |uid: u32, groups: &'static [u32]| {
        let socket = h.socket();
        std::thread::spawn(move || {
            accord_testkit::become_on_this_thread(uid, uid, groups).expect("tests run as root");
            std::os::unix::net::UnixStream::connect(&socket).map(|s| RawClient::from_stream(s).roundtrip().is_ok())
        })
        .join()
        .expect("the client thread")
    };
    assert!(matches!(try_as(2001, &[2005]), Ok(true)), "a member of the group was not served");
    let outsider = try_as(2001, &[]);
    assert_eq!(outsider.as_ref().map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::PermissionDenied), "{outsider:?}");
    h.assert_serving();
}
