//! hilogd on sockets of its own in a thread of the test, reached through
//! the real writer, tracing layer and control client; other uids are
//! played by threads that change their credentials.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use accord_hilog::control::{Client, Filter, Request, Response};
use accord_hilog::daemon::{listen_at, Config, Daemon};
use accord_hilog::ring::Record;
use accord_hilog::writer::{Record as Out, SendError, Writer};
use accord_hilog::{Level, LogType};

const LONG: Duration = Duration::from_secs(60);

struct Hilogd {
    _dir: tempfile::TempDir,
    input: PathBuf,
    control: PathBuf,
}

fn start(cfg: Config) -> Hilogd {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let input = dir.path().join("hilogInput");
    let control = dir.path().join("hilogControl");
    let (i, c) = (listen_at(&input).unwrap(), listen_at(&control).unwrap());
    std::thread::spawn(move || {
        // Never the host's /data/log/hilog.
        let persist_dir = cfg.persist_dir.clone().filter(|p| p != Path::new(accord_hilog::persist::DIR));
        let mut d = Daemon::new(Config { kmsg: None, persist_dir, ..cfg }, i, c).unwrap();
        d.run().unwrap();
    });
    Hilogd { _dir: dir, input, control }
}

fn out<'a>(tag: &'a str, msg: &'a str) -> Out<'a> {
    Out { ty: LogType::Core, level: Level::Info, domain: 0xD003200, tag, msg: msg.as_bytes(), for_pid: 0 }
}

/// Every record matching `filter` now (a `-x` query).
fn dump(control: &Path, filter: Filter) -> Vec<Record> {
    query(control, filter, None, None).unwrap()
}

/// A client whose every wait is bounded by [`LONG`].
fn client(control: &Path) -> std::io::Result<Client> {
    let c = Client::connect(control)?;
    c.set_timeout(Some(LONG))?;
    Ok(c)
}

fn query(control: &Path, filter: Filter, head: Option<u64>, tail: Option<u64>) -> Result<Vec<Record>, String> {
    let mut c = client(control).map_err(|e| e.to_string())?;
    c.send(&Request::Query { filter, follow: false, head, tail }).map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    loop {
        match c.recv().map_err(|e| e.to_string())? {
            Some(Response::Records { records }) => all.extend(records),
            Some(Response::Lost { .. }) => {}
            Some(Response::End) => return Ok(all),
            Some(Response::Error { message }) => return Err(message),
            other => return Err(format!("{other:?}")),
        }
    }
}

/// Sends `r`, waiting while hilogd is behind (the socket full).
fn send_waiting(w: &Writer, r: &Out<'_>) {
    let t = Instant::now();
    while let Err(e) = w.send(r) {
        assert!(t.elapsed() < LONG, "{e:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn tag(t: &str) -> Filter {
    Filter { tags: vec![t.into()], ..Filter::default() }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < LONG, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on a thread acting as `uid`/`gid`.
fn as_uid<T: Send + 'static>(uid: u32, gid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    as_member(uid, gid, &[], f)
}

/// Runs `f` on a thread acting as `uid`/`gid` with supplementary `groups`.
fn as_member<T: Send + 'static>(uid: u32, gid: u32, groups: &[u32], f: impl FnOnce() -> T + Send + 'static) -> T {
    let groups = groups.to_vec();
    std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, gid, &groups).unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_line_written_is_found_by_tag_pid_level_domain_and_expression() {
    let d = start(Config::default());
    let w = Writer::new(&d.input);
    w.send(&out("alpha", "first line")).unwrap();
    w.send(&Out { level: Level::Error, ..out("alpha", "second line") }).unwrap();
    w.send(&out("beta", "other tag")).unwrap();
    wait_for("three lines", || dump(&d.control, tag("alpha")).len() == 2 && dump(&d.control, tag("beta")).len() == 1);
    let got = dump(&d.control, tag("alpha"));
    assert_eq!(got[0].msg, "first line");
    assert_eq!(got[0].pid, std::process::id(), "the pid is the kernel's");
    assert_eq!(got[0].ty, LogType::Core);
    assert_eq!(got[0].domain, 0xD003200);
    let errors = dump(&d.control, Filter { levels: vec![Level::Error], ..tag("alpha") });
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].msg, "second line");
    let by_re = dump(&d.control, Filter { regex: Some("^oth.r".into()), ..Filter::default() });
    assert_eq!(by_re.iter().map(|r| r.msg.as_str()).collect::<Vec<_>>(), ["other tag"]);
    let by_pid = dump(&d.control, Filter { pids: vec![std::process::id()], domains: vec![0x3200], ..Filter::default() });
    assert_eq!(by_pid.iter().filter(|r| r.tag != "hilogd").count(), 3);
    assert!(dump(&d.control, Filter { pids: vec![1], ..tag("alpha") }).is_empty());
    let head = query(&d.control, tag("alpha"), Some(1), None).unwrap();
    assert_eq!(head.iter().map(|r| r.msg.as_str()).collect::<Vec<_>>(), ["first line"]);
    let tail = query(&d.control, tag("alpha"), None, Some(1)).unwrap();
    assert_eq!(tail.iter().map(|r| r.msg.as_str()).collect::<Vec<_>>(), ["second line"]);
    let err = query(&d.control, Filter { regex: Some("(".into()), ..Filter::default() }, None, None).unwrap_err();
    assert!(err.contains("bad expression"), "{err}");
}

#[test]
fn the_tracing_layer_sends_events_with_their_fields() {
    use tracing_subscriber::layer::SubscriberExt;
    let d = start(Config::default());
    let w: &'static Writer = Box::leak(Box::new(Writer::new(&d.input)));
    let sub = tracing_subscriber::registry().with(accord_hilog::HilogLayer::with_writer(w, "layered", 0x1234));
    tracing::subscriber::with_default(sub, || {
        tracing::warn!(volume = "usb-1", "volume {} added", 7);
        tracing::debug!("a debug line");
    });
    wait_for("two events", || dump(&d.control, tag("layered")).len() == 2);
    let got = dump(&d.control, tag("layered"));
    assert_eq!(got[0].msg, "volume 7 added volume=\"usb-1\"");
    assert_eq!(got[0].level, Level::Warn);
    assert_eq!(got[1].level, Level::Debug);
    assert_eq!(got[0].domain, 0x1234);
    let tid = got[0].tid;
    assert!(tid > 0);
}

#[test]
fn private_fields_are_hidden_while_privacy_is_on() {
    use tracing_subscriber::layer::SubscriberExt;
    let d = start(Config::default());
    let w: &'static Writer = Box::leak(Box::new(Writer::new(&d.input)));
    for on in [true, false] {
        let sub = tracing_subscriber::registry().with(accord_hilog::HilogLayer::with_writer(w, "private", 0).with_privacy(on));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(private.ssid = "home-net", channel = 6, private.psk = ?"s3cret", "joined");
        });
    }
    wait_for("two events", || dump(&d.control, tag("private")).len() == 2);
    let got: Vec<String> = dump(&d.control, tag("private")).into_iter().map(|r| r.msg).collect();
    assert_eq!(got, ["joined ssid=<private> channel=6 psk=<private>", "joined ssid=\"home-net\" channel=6 psk=\"s3cret\""]);
}

#[test]
fn a_follower_gets_new_lines_and_a_stalled_one_costs_nothing_to_others() {
    // This test's flood is about readers, not the rate limit.
    let d = start(Config { flow_control: false, ..Config::default() });
    let w = Writer::new(&d.input);
    // A follower that never reads.
    let stalled = client(&d.control).unwrap();
    stalled.send(&Request::Query { filter: Filter::default(), follow: true, head: None, tail: None }).unwrap();
    let mut f = client(&d.control).unwrap();
    f.send(&Request::Query { filter: tag("follow"), follow: true, head: None, tail: None }).unwrap();
    // Enough to fill the stalled reader's socket many times over.
    let big = "y".repeat(2000);
    for i in 0..3000 {
        loop {
            match w.send(&out("bulk", &big)) {
                Ok(()) => break,
                Err(SendError::Full) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("{i}: {e:?}"),
            }
        }
    }
    send_waiting(&w, &out("follow", "after the flood"));
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < LONG, "the follower never got its line");
        match f.recv().unwrap() {
            Some(Response::Records { records }) if records.iter().any(|r| r.msg == "after the flood") => break,
            Some(_) => {}
            None => panic!("hilogd closed the follower"),
        }
    }
    // The stalled reader, read at last, hears it missed lines.
    let mut stalled = stalled;
    let mut lost = false;
    let t = Instant::now();
    while !lost {
        assert!(t.elapsed() < LONG);
        match stalled.recv().unwrap() {
            Some(Response::Lost { count }) => lost = count > 0,
            Some(Response::Records { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_flooding_process_is_limited_and_told_and_another_still_gets_through() {
    let d = start(Config { rate: 200, ..Config::default() });
    let input = d.input.clone();
    // The flooder is another process as far as hilogd knows: a child.
    let flood = std::thread::spawn(move || {
        let w = Writer::new(&input);
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(3) {
            let _ = w.send(&out("flooder", "spam spam spam"));
            n += 1;
        }
        n
    });
    // The quiet writer is another process: this test binary again, running
    // only `quiet_writer_helper`.
    let st = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "quiet_writer_helper", "--nocapture", "--test-threads=1"])
        .env("HILOG_TEST_QUIET_INPUT", &d.input)
        .status()
        .unwrap();
    assert!(st.success());
    let sent = flood.join().unwrap();
    wait_for("all quiet lines", || dump(&d.control, tag("quiet")).len() == 20);
    let flooded = dump(&d.control, tag("flooder"));
    let kept = flooded.iter().filter(|r| r.msg == "spam spam spam").count() as u64;
    assert!(kept < sent, "kept {kept} of {sent}: no limit");
    wait_for("the drop announcement", || {
        dump(&d.control, tag("flooder")).iter().any(|r| r.level == Level::Warn && r.msg.contains("over its limit of 200 lines/s"))
    });
    let mut c = client(&d.control).unwrap();
    let Response::Stats { stats } = c.call(&Request::Stats).unwrap() else { panic!() };
    let p = stats.procs.iter().find(|p| p.tag == "flooder").unwrap();
    assert!(p.dropped_rate > 0, "{p:?}");
}

/// Not a test on its own: the quiet process of the flooding test.
#[test]
fn quiet_writer_helper() {
    let Some(input) = std::env::var_os("HILOG_TEST_QUIET_INPUT") else { return };
    let w = Writer::new(input);
    for i in 0..20 {
        let t = Instant::now();
        while let Err(e) = w.send(&out("quiet", &format!("quiet line {i}"))) {
            assert!(t.elapsed() < LONG, "line {i}: {e:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn malformed_and_oversized_packets_are_dropped_and_counted() {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let d = start(Config::default());
    let s = accord_hilog::writer::connect(&d.input).unwrap();
    send(s.as_raw_fd(), b"garbage", MsgFlags::empty()).unwrap();
    send(s.as_raw_fd(), &vec![1u8; accord_hilog::wire::MAX_PACKET + 10], MsgFlags::empty()).unwrap();
    let mut ok = Vec::new();
    accord_hilog::wire::encode(&accord_hilog::wire::Fields::plain("after", b"still served"), &mut ok);
    send(s.as_raw_fd(), &ok, MsgFlags::empty()).unwrap();
    wait_for("the good packet", || dump(&d.control, tag("after")).len() == 1);
    let mut c = client(&d.control).unwrap();
    let Response::Stats { stats } = c.call(&Request::Stats).unwrap() else { panic!() };
    assert_eq!(stats.malformed, 2);
    // Garbage on the control socket: an error naming it, then the
    // connection closes; hilogd serves on.
    let raw = accord_hilog::writer::connect(&d.control).unwrap();
    send(raw.as_raw_fd(), b"{not json", MsgFlags::empty()).unwrap();
    let mut buf = vec![0u8; 4096];
    let t = Instant::now();
    let n = loop {
        match nix::sys::socket::recv(raw.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EAGAIN) if t.elapsed() < LONG => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    };
    assert!(String::from_utf8_lossy(&buf[..n]).contains("unreadable request"));
    assert!(c.call(&Request::Stats).is_ok());
}

#[test]
fn only_init_names_the_pid_and_the_type_and_apps_log_as_apps() {
    let me = std::process::id();
    let d = start(Config { relay_pid: me, ..Config::default() });
    let w = Writer::new(&d.input);
    w.send(&Out { ty: LogType::Init, for_pid: 4242, ..out("relayed", "from init") }).unwrap();
    let input = d.input.clone();
    as_uid(2001, 2001, move || {
        let w = Writer::new(&input);
        w.send(&Out { ty: LogType::Init, for_pid: 4242, ..out("forged", "not init") }).unwrap();
    });
    let input = d.input.clone();
    as_uid(10010, 10010, move || {
        let w = Writer::new(&input);
        w.send(&Out { ty: LogType::Core, ..out("app", "an app") }).unwrap();
    });
    wait_for("three lines", || {
        dump(&d.control, Filter { types: LogType::ALL.to_vec(), tags: vec!["relayed".into(), "forged".into(), "app".into()], ..Filter::default() }).len() == 3
    });
    let all = dump(&d.control, Filter { types: LogType::ALL.to_vec(), ..Filter::default() });
    let r = all.iter().find(|r| r.tag == "relayed").unwrap();
    assert_eq!((r.pid, r.tid, r.ty), (4242, 4242, LogType::Init));
    let f = all.iter().find(|r| r.tag == "forged").unwrap();
    assert_eq!((f.pid, f.ty, f.uid), (me, LogType::Core, 2001));
    let a = all.iter().find(|r| r.tag == "app").unwrap();
    assert_eq!((a.ty, a.uid), (LogType::App, 10010));
}

#[test]
fn who_may_read_and_manage_is_the_kernels_word() {
    let d = start(Config::default());
    Writer::new(&d.input).send(&out("secret", "a line")).unwrap();
    wait_for("the line", || dump(&d.control, tag("secret")).len() == 1);
    let c = d.control.clone();
    let stranger = as_uid(2001, 2001, move || query(&c, tag("secret"), None, None));
    assert!(stranger.unwrap_err().contains("may not read"));
    let c = d.control.clone();
    let shell = as_uid(2000, 2000, move || query(&c, tag("secret"), None, None));
    assert_eq!(shell.unwrap().len(), 1);
    let c = d.control.clone();
    let (read, clear) = as_uid(1036, accord_hilog::LOG_GID, move || {
        let read = query(&c, tag("secret"), None, None);
        let clear = client(&c).unwrap().call(&Request::Clear { types: vec![] });
        (read, clear)
    });
    assert_eq!(read.unwrap().len(), 1);
    // A member of group log through a supplementary group reads too.
    let c = d.control.clone();
    let member = as_member(1000, 1000, &[accord_hilog::LOG_GID], move || query(&c, tag("secret"), None, None));
    assert_eq!(member.unwrap().len(), 1);
    match clear.unwrap() {
        Response::Error { message } => assert!(message.contains("may not change"), "{message}"),
        other => panic!("the log group cleared the buffers: {other:?}"),
    }
    assert_eq!(dump(&d.control, tag("secret")).len(), 1);
    // A bad size is refused; a good one is taken; clear empties.
    let mut c = client(&d.control).unwrap();
    assert!(matches!(c.call(&Request::BufferSize { types: vec![LogType::Core], set: Some(1000) }).unwrap(), Response::Error { .. }));
    let Response::Sizes { sizes } = c.call(&Request::BufferSize { types: vec![LogType::Core], set: Some(128 * 1024) }).unwrap() else { panic!() };
    assert_eq!(sizes[0].1, 128 * 1024);
    assert!(matches!(c.call(&Request::Clear { types: vec![LogType::Core] }).unwrap(), Response::Done { .. }));
    assert!(dump(&d.control, tag("secret")).is_empty());
}

#[test]
fn writers_and_readers_are_bounded_per_uid() {
    let d = start(Config { writers_per_uid: 4, readers_per_uid: 2, ..Config::default() });
    let (input, control) = (d.input.clone(), d.control.clone());
    let (writers, reader_err) = as_uid(2000, 2000, move || {
        use std::os::fd::AsRawFd;
        // Eight writers, one record each: four are over the bound.
        let mut buf = Vec::new();
        accord_hilog::wire::encode(&accord_hilog::wire::Fields::plain("bounded", b"x"), &mut buf);
        let ws: Vec<_> = (0..8)
            .map(|_| {
                let w = accord_hilog::writer::connect(&input).unwrap();
                nix::sys::socket::send(w.as_raw_fd(), &buf, nix::sys::socket::MsgFlags::MSG_NOSIGNAL).unwrap();
                w
            })
            .collect();
        let readers: Vec<_> = (0..2).map(|_| client(&control).unwrap()).collect();
        let mut third = client(&control).unwrap();
        let r = third.recv();
        drop(readers);
        (ws, r)
    });
    // The four kept writers' records are stored; the four refused ones are
    // read and counted, not stored (five connections refused: the four
    // writers and the third reader).
    wait_for("the refused writers counted", || {
        let mut c = client(&d.control).unwrap();
        matches!(c.call(&Request::Stats), Ok(Response::Stats { stats }) if stats.refused_connections == 5 && stats.refused_records == 4)
    });
    let writers_ok = dump(&d.control, tag("bounded")).len();
    drop(writers);
    assert_eq!(writers_ok, 4, "writers kept for one uid");
    match reader_err {
        Ok(Some(Response::Error { message })) => assert!(message.contains("too many readers"), "{message}"),
        other => panic!("third reader: {other:?}"),
    }
}

#[test]
fn persisting_rotates_compresses_keeps_n_files_and_resumes_after_a_restart() {
    use accord_hilog::control::PersistAction;
    use accord_hilog::persist::{files, Spec};
    let logdir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(logdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = start(Config { flow_control: false, persist_dir: Some(logdir.path().to_owned()), ..Config::default() });
    let w = Writer::new(&d.input);
    w.send(&out("early", "before the job")).unwrap();
    wait_for("the early line", || dump(&d.control, tag("early")).len() == 1);
    // Not for a stranger.
    let c = d.control.clone();
    let refused = as_uid(2001, 2001, move || client(&c).unwrap().call(&Request::Persist { action: PersistAction::Start(Spec::default()) }).unwrap());
    assert!(matches!(refused, Response::Error { .. }), "{refused:?}");
    let mut c = client(&d.control).unwrap();
    let spec = Spec { name: "t".into(), file_size: 64 * 1024, files: 3, compress: true, types: vec![] };
    let Response::Persist { status } = c.call(&Request::Persist { action: PersistAction::Start(spec.clone()) }).unwrap() else { panic!() };
    assert!(status.running);
    // What the rings held before the job is written too; then enough for
    // several rotations.
    let line = "z".repeat(500);
    for i in 0..1000 {
        send_waiting(&w, &out("bulk", &format!("{i} {line}")));
    }
    send_waiting(&w, &out("last", "the last line"));
    let dir = logdir.path().to_owned();
    wait_for("3 files, the older gzip'd, the last line written", || {
        let f = files(&dir, "t");
        f.len() == 3
            && f[..2].iter().all(|(_, p)| p.extension().is_some_and(|e| e == "gz"))
            && std::fs::read_to_string(&f[2].1).is_ok_and(|s| s.contains("I C03200/last: the last line"))
    });
    // The first files went: only the newest are kept.
    assert!(files(&dir, "t")[0].0 >= 2);
    let gz = &files(&dir, "t")[0].1;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap()), &mut text).unwrap();
    assert!(text.lines().all(|l| l.contains("/bulk: ") || l.contains("overwritten")), "{}", &text[..200]);
    // A new hilogd on the same directory resumes the job.
    let d2 = start(Config { persist_dir: Some(logdir.path().to_owned()), ..Config::default() });
    Writer::new(&d2.input).send(&out("second", "after the restart")).unwrap();
    wait_for("the resumed job writes", || files(&dir, "t").iter().any(|(_, p)| std::fs::read_to_string(p).is_ok_and(|s| s.contains("after the restart"))));
    let mut c2 = client(&d2.control).unwrap();
    // A bad request changes nothing: the running job goes on.
    let bad = c2.call(&Request::Persist { action: PersistAction::Start(Spec { files: 1, ..Spec::default() }) }).unwrap();
    assert!(matches!(bad, Response::Error { ref message } if message.contains("number of files")), "{bad:?}");
    let Response::Persist { status } = c2.call(&Request::Persist { action: PersistAction::Query }).unwrap() else { panic!() };
    assert!(status.running && status.spec.is_some_and(|s| s.name == "t"), "a refused start stopped the job");
    let Response::Persist { status } = c2.call(&Request::Persist { action: PersistAction::Stop }).unwrap() else { panic!() };
    assert!(!status.running);
    assert!(!dir.join(accord_hilog::persist::JOB_FILE).exists());
    let bad = c2.call(&Request::Persist { action: PersistAction::Start(Spec { name: "../x".into(), ..Spec::default() }) }).unwrap();
    assert!(matches!(bad, Response::Error { message } if message.contains("file name")));
}

#[test]
fn a_costly_expression_is_refused_or_served_in_slices_while_others_are_served() {
    let d = start(Config { flow_control: false, ..Config::default() });
    let w = Writer::new(&d.input);
    let big = "w".repeat(4000);
    for _ in 0..20 {
        send_waiting(&w, &out("big", &big));
    }
    wait_for("the records", || {
        let mut c = client(&d.control).unwrap();
        matches!(c.call(&Request::Stats), Ok(Response::Stats { stats }) if stats.types.iter().any(|t| t.ty == LogType::Core && t.lines >= 20))
    });
    // A repetition of repetitions compiles too big: refused, not run.
    let err = query(&d.control, Filter { regex: Some(r"(?:\w{0,255}){0,255}z".into()), ..Filter::default() }, None, None).unwrap_err();
    assert!(err.contains("bad expression"), "{err}");
    // An allowed but slow one, from a log-group reader that then goes away,
    // and a follower with it: both are served in slices.
    let c = d.control.clone();
    as_uid(1036, accord_hilog::LOG_GID, move || {
        for follow in [false, true] {
            let slow = client(&c).unwrap();
            slow.send(&Request::Query { filter: Filter { regex: Some(r"(?:\w{1,20}){1,3}z".into()), ..Filter::default() }, follow, head: None, tail: Some(3) })
                .unwrap();
            std::mem::forget(slow);
        }
    });
    // Meanwhile every other client is answered.
    for i in 0..5 {
        let mut c = client(&d.control).unwrap();
        assert!(matches!(c.call(&Request::Stats).unwrap(), Response::Stats { .. }), "stats call {i}");
        send_waiting(&w, &out("meanwhile", &format!("line {i}")));
    }
    let mut seen = Vec::new();
    let t = Instant::now();
    while seen.len() != 5 {
        if t.elapsed() > LONG {
            let mut c = client(&d.control).unwrap();
            panic!("the lines written meanwhile: {seen:?}; {:?}", c.call(&Request::Stats));
        }
        seen = dump(&d.control, tag("meanwhile")).into_iter().map(|r| r.msg).collect();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn those_who_may_not_read_take_no_reader_slot_and_hear_why() {
    let d = start(Config { readers_per_uid: 2, readers: 4, ..Config::default() });
    let c = d.control.clone();
    let answers = as_uid(3001, 3001, move || {
        let mut held = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..10 {
            let mut r = client(&c).unwrap();
            answers.push(r.call(&Request::Stats).map_err(|e| e.to_string()));
            held.push(r);
        }
        answers
    });
    for a in answers {
        match a {
            Ok(Response::Error { message }) => assert!(message.contains("may not read"), "{message}"),
            other => panic!("a stranger's reader: {other:?}"),
        }
    }
    // Root is still served.
    assert!(dump(&d.control, Filter::default()).iter().any(|r| r.tag == "hilogd"));
    // Over the bound, the error says so (not a reset connection).
    let c = d.control.clone();
    let third = as_uid(2000, 2000, move || {
        let held: Vec<_> = (0..2).map(|_| client(&c).unwrap()).collect();
        let mut third = client(&c).unwrap();
        let r = third.call(&Request::Stats).map_err(|e| e.to_string());
        drop(held);
        r
    });
    match third {
        Ok(Response::Error { message }) => assert!(message.contains("too many readers"), "{message}"),
        other => panic!("third reader: {other:?}"),
    }
}

#[test]
fn empty_packets_and_refused_writers_are_counted_not_lost() {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let d = start(Config { writers_per_uid: 1, ..Config::default() });
    let mut ok = Vec::new();
    accord_hilog::wire::encode(&accord_hilog::wire::Fields::plain("after-empty", b"kept"), &mut ok);
    let input = d.input.clone();
    as_uid(2002, 2002, move || {
        let s = accord_hilog::writer::connect(&input).unwrap();
        send(s.as_raw_fd(), b"", MsgFlags::empty()).unwrap();
        for _ in 0..3 {
            send(s.as_raw_fd(), &ok, MsgFlags::empty()).unwrap();
        }
        // A second connection of this uid is over its bound of one.
        let refused = accord_hilog::writer::connect(&input).unwrap();
        for _ in 0..5 {
            send(refused.as_raw_fd(), &ok, MsgFlags::empty()).unwrap();
        }
        std::mem::forget(s);
        std::mem::forget(refused);
    });
    wait_for("the three packets after the empty one", || dump(&d.control, tag("after-empty")).len() == 3);
    wait_for("the refused writer's records counted", || {
        let mut c = client(&d.control).unwrap();
        matches!(c.call(&Request::Stats), Ok(Response::Stats { stats }) if stats.malformed == 1 && stats.refused_records == 5 && stats.refused_connections == 1)
    });
}
