//! wlr-layer-shell against hostile and clumsy system UI clients (root
//! here; apps never see the global): absurd sizes, margins and zones are
//! protocol errors or clamped, never a crash or windows larger than the
//! output; a lock screen (an exclusive layer) keeps the keyboard from new
//! and clicked windows; a bar gone in any order gives the space and the
//! keyboard back; churn leaks nothing; odd popup parents are survived.
//! (From an attacker's session against the first layer-shell.)

mod common;

use std::time::Duration;

use common::{shm_buffer, thread::CompositorThread, toplevel, Arg, Gone, RawClient};

const TOP: u32 = 1;
const BOTTOM: u32 = 2;
const LEFT: u32 = 4;
const RIGHT: u32 = 8;

struct G {
    compositor: u32,
    shm: u32,
    wm_base: u32,
    shell: u32,
}

fn bind(c: &mut RawClient) -> G {
    G { compositor: c.bind("wl_compositor", 4), shm: c.bind("wl_shm", 1), wm_base: c.bind("xdg_wm_base", 1), shell: c.bind("zwlr_layer_shell_v1", 4) }
}

/// wl_surface + zwlr_layer_surface_v1 on `layer` (not committed).
fn layer_surface(c: &mut RawClient, g: &G, layer: u32) -> (u32, u32) {
    let s = c.new_id();
    c.send(g.compositor, 0, &[Arg::U(s)]);
    let ls = c.new_id();
    c.send(g.shell, 0, &[Arg::U(ls), Arg::U(s), Arg::U(0), Arg::U(layer), Arg::S("attack")]);
    (s, ls)
}

/// Commits, waits for the configure, acks it, attaches a w x h buffer, commits.
fn map(c: &mut RawClient, g: &G, s: u32, ls: u32) -> Result<(u32, u32), Gone> {
    c.send(s, 6, &[]);
    let e = c.wait_for(|e| e.object == ls && e.opcode == 0)?;
    let (w, h) = (e.u32_at(1), e.u32_at(2));
    c.send(ls, 6, &[Arg::U(e.u32_at(0))]);
    let (bw, bh) = (w.clamp(1, 512) as i32, h.clamp(1, 512) as i32);
    let b = shm_buffer(c, g.shm, bw, bh);
    std::mem::forget(b.fd);
    c.send(s, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
    c.send(s, 2, &[Arg::I(0), Arg::I(0), Arg::I(bw), Arg::I(bh)]);
    c.send(s, 6, &[]);
    c.roundtrip()?;
    Ok((w, h))
}

fn serving(t: &CompositorThread) -> bool {
    if t.is_finished() {
        return false;
    }
    let mut c = RawClient::connect(&t.socket());
    c.roundtrip().is_ok()
}

type Case = fn(&mut RawClient, &G) -> String;

/// Runs each case as a root client of a compositor of its own; after
/// it the compositor must still serve and keep app windows inside the
/// output.
fn run_cases(cases: &[(&str, Case)]) {
    let mut bad = Vec::new();
    for (name, case) in cases {
        let t = CompositorThread::start(320, 240, "wl");
        let mut c = RawClient::connect(&t.socket());
        let g = bind(&mut c);
        // A client the compositor has cut off may find its connection
        // closed while it still sends: that is an outcome, not a failure.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut c, &g)))
            .unwrap_or_else(|_| "cut off (the connection closed while the client sent)".to_owned());
        let ok = serving(&t);
        let area = if ok { Some(t.with(|c| c.window_area())) } else { None };
        eprintln!("CASE {name}: client {}; compositor serving: {ok}; window_area {area:?}", result.chars().take(200).collect::<String>());
        let inside = area.is_some_and(|(x, y, w, h)| x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 320 && y + h <= 240);
        if !ok || !inside {
            bad.push(format!("{name}: serving {ok}, window area {area:?}"));
            if !ok {
                std::mem::forget(t);
            }
        }
    }
    assert!(bad.is_empty(), "compositor died or gave windows more than the output on: {bad:#?}");
}

#[test]
fn absurd_layer_surfaces() {
    let cases: &[(&str, Case)] = &[
        ("size u32::MAX x u32::MAX, no anchors", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(u32::MAX), Arg::U(u32::MAX)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("size 0x2147483648 anchored top", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(0x8000_0000), Arg::U(0x8000_0000)]);
            c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("size 0x0 no anchors", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(0), Arg::U(0)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("exclusive zone i32::MAX top, once", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(0), Arg::U(20)]);
            c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
            c.send(ls, 2, &[Arg::I(i32::MAX)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("exclusive zone i32::MAX top, twice", |c, g| {
            let mut out = String::new();
            for _ in 0..2 {
                let (s, ls) = layer_surface(c, g, 2);
                c.send(ls, 0, &[Arg::U(0), Arg::U(20)]);
                c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
                c.send(ls, 2, &[Arg::I(i32::MAX)]);
                let r = map(c, g, s, ls);
                out += &format!("{r:?} ");
                if r.is_err() {
                    // Cut off at the first (the bound).
                    break;
                }
            }
            out
        }),
        ("exclusive zone i32::MIN", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(0), Arg::U(20)]);
            c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
            c.send(ls, 2, &[Arg::I(i32::MIN)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("margins i32::MAX, all anchors", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 1, &[Arg::U(TOP | BOTTOM | LEFT | RIGHT)]);
            c.send(ls, 3, &[Arg::I(i32::MAX), Arg::I(i32::MAX), Arg::I(i32::MAX), Arg::I(i32::MAX)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("margins i32::MIN, all anchors", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 1, &[Arg::U(TOP | BOTTOM | LEFT | RIGHT)]);
            c.send(ls, 3, &[Arg::I(i32::MIN), Arg::I(i32::MIN), Arg::I(i32::MIN), Arg::I(i32::MIN)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("margin top i32::MAX with exclusive zone 10", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(0), Arg::U(20)]);
            c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
            c.send(ls, 2, &[Arg::I(10)]);
            c.send(ls, 3, &[Arg::I(i32::MAX), Arg::I(0), Arg::I(0), Arg::I(0)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("negative margin left -1000 with exclusive zone 10 (left bar)", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(20), Arg::U(0)]);
            c.send(ls, 1, &[Arg::U(TOP | BOTTOM | LEFT)]);
            c.send(ls, 2, &[Arg::I(10)]);
            c.send(ls, 3, &[Arg::I(0), Arg::I(0), Arg::I(0), Arg::I(-1000)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("anchor 0xffffffff", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 1, &[Arg::U(u32::MAX)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("get_layer_surface layer 99", |c, g| {
            let (s, ls) = layer_surface(c, g, 99);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("set_layer 99 and u32::MAX", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(10), Arg::U(10)]);
            c.send(ls, 8, &[Arg::U(99)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("keyboard interactivity 7", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(10), Arg::U(10)]);
            c.send(ls, 4, &[Arg::U(7)]);
            format!("{:?}", map(c, g, s, ls))
        }),
        ("ack_configure wrong serial, commit before configure with buffer", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(10), Arg::U(10)]);
            let b = shm_buffer(c, g.shm, 10, 10);
            std::mem::forget(b.fd);
            c.send(s, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
            c.send(s, 6, &[]);
            c.send(ls, 6, &[Arg::U(12345)]);
            format!("{:?}", c.roundtrip().map(|_| ()))
        }),
        ("two layer surfaces on one wl_surface", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(0), Arg::U(30)]);
            c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
            c.send(ls, 2, &[Arg::I(30)]);
            let r1 = map(c, g, s, ls);
            let ls2 = c.new_id();
            c.send(g.shell, 0, &[Arg::U(ls2), Arg::U(s), Arg::U(0), Arg::U(3), Arg::S("second")]);
            c.send(ls2, 0, &[Arg::U(10), Arg::U(10)]);
            c.send(s, 6, &[]);
            let r2 = c.roundtrip().map(|_| ());
            c.send(ls, 7, &[]);
            let r3 = c.roundtrip().map(|_| ());
            c.send(s, 6, &[]);
            c.send(ls2, 7, &[]);
            c.send(s, 0, &[]);
            let r4 = c.roundtrip().map(|_| ());
            format!("{r1:?} {r2:?} {r3:?} {r4:?}")
        }),
        ("wl_surface destroyed before its layer surface, then commit-free requests", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(0), Arg::U(30)]);
            c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
            c.send(ls, 2, &[Arg::I(30)]);
            let r1 = map(c, g, s, ls);
            c.send(s, 0, &[]);
            let r2 = c.roundtrip().map(|_| ());
            c.send(ls, 0, &[Arg::U(5), Arg::U(5)]);
            c.send(ls, 6, &[Arg::U(1)]);
            let r3 = c.roundtrip().map(|_| ());
            c.send(ls, 7, &[]);
            let r4 = c.roundtrip().map(|_| ());
            format!("{r1:?} {r2:?} {r3:?} {r4:?}")
        }),
    ];
    run_cases(cases);
}

mod kb {
    use super::*;
    use accord_compositor::input::evdev::{EV_KEY, KEY_A};
    use common::input::{keyboard, App, Harness};

    /// A root client with an overlay layer surface asking for the keyboard
    /// (`exclusive`, as a lock screen would): (client, globals, surface, layer, wl_keyboard).
    fn lock_screen(h: &Harness) -> (RawClient, G, u32, u32, u32) {
        let mut c = RawClient::connect(&h.socket());
        c.history = Some(Vec::new());
        let g = bind(&mut c);
        let seat = c.bind("wl_seat", 5);
        let kbd = c.new_id();
        c.send(seat, 1, &[Arg::U(kbd)]);
        let (s, ls) = layer_surface(&mut c, &g, 3);
        c.send(ls, 0, &[Arg::U(100), Arg::U(50)]);
        c.send(ls, 4, &[Arg::U(1)]);
        map(&mut c, &g, s, ls).expect("lock screen mapped");
        c.roundtrip().unwrap();
        assert!(c.history.as_ref().unwrap().iter().any(|e| e.object == kbd && e.opcode == 1 && e.u32_at(1) == s), "the lock screen got no keyboard");
        (c, g, s, ls, kbd)
    }

    /// Keys typed while an exclusive overlay (lock screen) is up must go to it,
    /// not to an app that maps a new window meanwhile.
    #[test]
    fn a_new_app_window_does_not_take_the_keyboard_from_an_exclusive_layer() {
        let h = Harness::start();
        let mut dev = h.device("kbd", keyboard());
        let (mut lock, _g, _s, _ls, lock_kbd) = lock_screen(&h);
        // An app maps a window while the lock screen is up.
        let mut app = App::start(&h, 2);
        dev.frame(&[(EV_KEY, KEY_A, 1), (EV_KEY, KEY_A, 0)]);
        std::thread::sleep(Duration::from_millis(200));
        let _ = lock.roundtrip();
        let app_kb = app.keyboard;
        app.c.roundtrip().expect("app served");
        let app_keys = app.c.history.as_ref().unwrap().iter().filter(|e| e.object == app_kb && e.opcode == 3).count();
        let lock_keys = lock.history.as_ref().unwrap().iter().filter(|e| e.object == lock_kbd && e.opcode == 3).count();
        assert_eq!((app_keys, lock_keys), (0, 2), "keys typed on the lock screen reached the app");
    }

    /// The exclusive layer's wl_surface destroyed first (its layer surface kept):
    /// the keyboard goes back to the app window.
    #[test]
    fn keyboard_after_an_exclusive_layers_surface_is_destroyed_first() {
        let h = Harness::start();
        let mut dev = h.device("kbd", keyboard());
        let mut app = App::start(&h, 2);
        app.wait_keyboard_enter();
        let (mut lock, _g, s, _ls, _kbd) = lock_screen(&h);
        lock.send(s, 0, &[]);
        lock.roundtrip().expect("served");
        std::thread::sleep(Duration::from_millis(100));
        dev.frame(&[(EV_KEY, KEY_A, 1), (EV_KEY, KEY_A, 0)]);
        let kb = app.keyboard;
        let got = app.c.wait_for(|e| e.object == kb && e.opcode == 3);
        assert!(got.is_ok(), "keys go nowhere after the exclusive layer's wl_surface went: {got:?}");
    }

    /// The same, the lock screen's client disconnecting.
    #[test]
    fn keyboard_after_an_exclusive_layers_client_dies() {
        let h = Harness::start();
        let mut dev = h.device("kbd", keyboard());
        let mut app = App::start(&h, 2);
        app.wait_keyboard_enter();
        let (lock, ..) = lock_screen(&h);
        drop(lock);
        std::thread::sleep(Duration::from_millis(100));
        dev.frame(&[(EV_KEY, KEY_A, 1), (EV_KEY, KEY_A, 0)]);
        let kb = app.keyboard;
        assert!(app.c.wait_for(|e| e.object == kb && e.opcode == 3).is_ok());
    }
}

/// The last xdg_toplevel.configure's (width, height) in `events`.
fn last_toplevel_size(events: &[common::Event], toplevel: u32) -> Option<(i32, i32)> {
    events.iter().rev().find(|e| e.object == toplevel && e.opcode == 0).map(|e| (e.u32_at(0) as i32, e.u32_at(1) as i32))
}

/// A bar's wl_surface destroyed before its layer surface: the area comes
/// back and the app window is told.
#[test]
fn a_bars_wl_surface_destroyed_first_gives_the_space_back() {
    let t = CompositorThread::start(320, 240, "wl");
    let mut app = RawClient::connect(&t.socket());
    app.history = Some(Vec::new());
    let ag = bind(&mut app);
    let tl = toplevel(&mut app, ag.compositor, ag.wm_base);
    let mut bar = RawClient::connect(&t.socket());
    let g = bind(&mut bar);
    let (s, ls) = layer_surface(&mut bar, &g, 2);
    c_bar(&mut bar, ls);
    map(&mut bar, &g, s, ls).expect("bar");
    app.roundtrip().unwrap();
    assert_eq!(last_toplevel_size(app.history.as_ref().unwrap(), tl.toplevel), Some((320, 210)));
    bar.send(s, 0, &[]);
    bar.roundtrip().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    app.roundtrip().unwrap();
    let area = t.with(|c| c.window_area());
    let told = last_toplevel_size(app.history.as_ref().unwrap(), tl.toplevel);
    // And once the layer surface object goes too.
    bar.send(ls, 7, &[]);
    bar.roundtrip().unwrap();
    app.roundtrip().unwrap();
    let told_after = last_toplevel_size(app.history.as_ref().unwrap(), tl.toplevel);
    assert_eq!((area, told, told_after), ((0, 0, 320, 240), Some((320, 240)), Some((320, 240))), "the window keeps the bar's space");
}

fn c_bar(c: &mut RawClient, ls: u32) {
    c.send(ls, 0, &[Arg::U(0), Arg::U(30)]);
    c.send(ls, 1, &[Arg::U(TOP | LEFT | RIGHT)]);
    c.send(ls, 2, &[Arg::I(30)]);
}

/// Sizes sent to app windows and to layer surfaces when exclusive zones eat the output.
#[test]
fn exclusive_zones_that_eat_the_output() {
    let t = CompositorThread::start(320, 240, "wl");
    let mut app = RawClient::connect(&t.socket());
    app.history = Some(Vec::new());
    let ag = bind(&mut app);
    let tl = toplevel(&mut app, ag.compositor, ag.wm_base);
    let mut c = RawClient::connect(&t.socket());
    c.history = Some(Vec::new());
    let g = bind(&mut c);
    // A left bar whose zone is wider than the output.
    let (s, ls) = layer_surface(&mut c, &g, 2);
    c.send(ls, 0, &[Arg::U(20), Arg::U(0)]);
    c.send(ls, 1, &[Arg::U(TOP | BOTTOM | LEFT)]);
    c.send(ls, 2, &[Arg::I(400)]);
    eprintln!("left bar: {:?}", map(&mut c, &g, s, ls));
    // Then a top bar like systemui's (exclusive, anchored left+right, width 0).
    let (s2, ls2) = layer_surface(&mut c, &g, 2);
    c_bar(&mut c, ls2);
    let r = map(&mut c, &g, s2, ls2);
    app.roundtrip().unwrap();
    eprintln!(
        "top bar configured {r:?} (as i32: {:?}); area {:?}; app told {:?}",
        r.as_ref().map(|(w, h)| (*w as i32, *h as i32)),
        t.with(|c| c.window_area()),
        last_toplevel_size(app.history.as_ref().unwrap(), tl.toplevel)
    );
    assert!(serving(&t));
    let (w, _) = r.unwrap();
    assert!(w <= 320, "a layer surface was configured wider than the output: {w} ({} as i32)", w as i32);
    assert_eq!(t.with(|c| c.window_area()), (0, 0, 320, 240), "app windows get the whole output when zones eat it");
}

/// 1000 layer surfaces created, mapped and destroyed; and 300 clients doing so and leaving.
#[test]
fn layer_surface_churn_does_not_leak() {
    let t = CompositorThread::start(320, 240, "wl");
    let pid = "self";
    let mut c = RawClient::connect(&t.socket());
    let g = bind(&mut c);
    let b = shm_buffer(&mut c, g.shm, 320, 30);
    let round = |c: &mut RawClient, g: &G, buffer: u32| {
        let (s, ls) = layer_surface(c, g, 2);
        c_bar(c, ls);
        c.send(s, 6, &[]);
        let e = c.wait_for(|e| e.object == ls && e.opcode == 0).unwrap();
        c.send(ls, 6, &[Arg::U(e.u32_at(0))]);
        c.send(s, 1, &[Arg::U(buffer), Arg::I(0), Arg::I(0)]);
        c.send(s, 6, &[]);
        c.send(ls, 7, &[]);
        c.send(s, 0, &[]);
    };
    for _ in 0..100 {
        round(&mut c, &g, b.buffer);
    }
    c.roundtrip().unwrap();
    let (fd0, rss0) = (common::fd_count(pid), common::rss_kib(pid));
    for i in 0..1000 {
        round(&mut c, &g, b.buffer);
        if i % 100 == 0 {
            c.roundtrip().unwrap();
        }
    }
    c.roundtrip().unwrap();
    let (fd1, rss1) = (common::fd_count(pid), common::rss_kib(pid));
    for _ in 0..300 {
        let mut c2 = RawClient::connect(&t.socket());
        let g2 = bind(&mut c2);
        let b2 = shm_buffer(&mut c2, g2.shm, 320, 30);
        let (s, ls) = layer_surface(&mut c2, &g2, 2);
        c_bar(&mut c2, ls);
        c2.send(s, 6, &[]);
        let e = c2.wait_for(|e| e.object == ls && e.opcode == 0).unwrap();
        c2.send(ls, 6, &[Arg::U(e.u32_at(0))]);
        c2.send(s, 1, &[Arg::U(b2.buffer), Arg::I(0), Arg::I(0)]);
        c2.send(s, 6, &[]);
        c2.roundtrip().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut c3 = RawClient::connect(&t.socket());
    c3.roundtrip().unwrap();
    let (fd2, rss2) = (common::fd_count(pid), common::rss_kib(pid));
    let area = t.with(|c| c.window_area());
    eprintln!("fds {fd0} -> {fd1} -> {fd2}; rss KiB {rss0} -> {rss1} -> {rss2}; area {area:?}");
    assert!(fd2 <= fd0 + 4, "descriptors leak");
    assert_eq!(area, (0, 0, 320, 240));
}

/// Popups of layer surfaces with odd parents.
#[test]
fn layer_popups_with_weird_parents() {
    let cases: &[(&str, Case)] = &[
        ("get_popup with a popup that has an xdg parent", |c, g| {
            let (s, ls) = layer_surface(c, g, 2);
            c.send(ls, 0, &[Arg::U(50), Arg::U(50)]);
            let _ = map(c, g, s, ls);
            let parent = toplevel(c, g.compositor, g.wm_base);
            let pos = common::positioner(c, g.wm_base);
            let (ps, _pxs, popup) = common::popup(c, g.compositor, g.wm_base, parent.xdg_surface, pos);
            c.send(ls, 5, &[Arg::U(popup)]);
            c.send(ps, 6, &[]);
            let r = c.roundtrip().map(|_| ());
            c.send(ls, 7, &[]);
            c.send(s, 0, &[]);
            c.send(ps, 6, &[]);
            format!("{r:?} {:?}", c.roundtrip().map(|_| ()))
        }),
        ("get_popup twice, then layer destroyed, popup committed", |c, g| {
            let (s, ls) = layer_surface(c, g, 3);
            c.send(ls, 0, &[Arg::U(50), Arg::U(50)]);
            let _ = map(c, g, s, ls);
            let pos = common::positioner(c, g.wm_base);
            let (ps, pxs, popup) = common::popup(c, g.compositor, g.wm_base, 0, pos);
            c.send(ls, 5, &[Arg::U(popup)]);
            c.send(ls, 5, &[Arg::U(popup)]);
            c.send(ps, 6, &[]);
            let e = c.wait_for(|e| e.object == pxs && e.opcode == 0);
            if let Ok(e) = e {
                c.send(pxs, 4, &[Arg::U(e.u32_at(0))]);
            }
            let b = shm_buffer(c, g.shm, 10, 10);
            c.send(ps, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
            c.send(ps, 6, &[]);
            let r = c.roundtrip().map(|_| ());
            c.send(s, 0, &[]);
            c.send(ps, 6, &[]);
            let r2 = c.roundtrip().map(|_| ());
            c.send(ls, 7, &[]);
            c.send(ps, 6, &[]);
            format!("{r:?} {r2:?} {:?}", c.roundtrip().map(|_| ()))
        }),
        ("get_popup before the layer surface is configured; with a toplevel's xdg_popup id 0", |c, g| {
            let (_s, ls) = layer_surface(c, g, 3);
            let pos = common::positioner(c, g.wm_base);
            let (ps, _pxs, popup) = common::popup(c, g.compositor, g.wm_base, 0, pos);
            c.send(ls, 5, &[Arg::U(popup)]);
            c.send(ps, 6, &[]);
            let r = c.roundtrip().map(|_| ());
            c.send(ls, 5, &[Arg::U(0)]);
            format!("{r:?} {:?}", c.roundtrip().map(|_| ()))
        }),
        ("popup destroyed then get_popup with its id", |c, g| {
            let (s, ls) = layer_surface(c, g, 3);
            c.send(ls, 0, &[Arg::U(50), Arg::U(50)]);
            let _ = map(c, g, s, ls);
            let pos = common::positioner(c, g.wm_base);
            let (_ps, _pxs, popup) = common::popup(c, g.compositor, g.wm_base, 0, pos);
            c.send(popup, 0, &[]);
            c.send(ls, 5, &[Arg::U(popup)]);
            format!("{:?}", c.roundtrip().map(|_| ()))
        }),
        ("popup of a layer whose wl_surface is gone", |c, g| {
            let (s, ls) = layer_surface(c, g, 3);
            c.send(ls, 0, &[Arg::U(50), Arg::U(50)]);
            let _ = map(c, g, s, ls);
            c.send(s, 0, &[]);
            let pos = common::positioner(c, g.wm_base);
            let (ps, _pxs, popup) = common::popup(c, g.compositor, g.wm_base, 0, pos);
            c.send(ls, 5, &[Arg::U(popup)]);
            c.send(ps, 6, &[]);
            format!("{:?}", c.roundtrip().map(|_| ()))
        }),
        ("17 popups nested under a layer popup", |c, g| {
            let (s, ls) = layer_surface(c, g, 3);
            c.send(ls, 0, &[Arg::U(50), Arg::U(50)]);
            let _ = map(c, g, s, ls);
            let pos = common::positioner(c, g.wm_base);
            let (_ps, mut pxs, popup) = common::popup(c, g.compositor, g.wm_base, 0, pos);
            c.send(ls, 5, &[Arg::U(popup)]);
            for _ in 0..40 {
                let (_s, x, _p) = common::popup(c, g.compositor, g.wm_base, pxs, pos);
                pxs = x;
            }
            format!("{:?}", c.roundtrip().map(|_| ()))
        }),
    ];
    run_cases(cases);
}
