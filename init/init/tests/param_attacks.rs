//! The parameter service under attack from an unprivileged local user:
//! uid 2000 (group 2000, not in group system) against the real init as
//! PID 1 in namespaces (see `accord_testkit`). Each test asserts that the bound
//! or rule holds and that root is still served afterwards.

use std::time::Duration;

use accord_param::proto::ErrorKind;
use accord_param::ParamError;
use accord_testkit::Fixture;

const SEC: Duration = Duration::from_secs(1);
/// The attacker: shell (2000:2000), in no other group.
const UID: u32 = 2000;

fn denied(r: Result<(), ParamError>, name: &str) {
    match r {
        Err(ParamError::Server { kind: ErrorKind::PermissionDenied, message }) => assert!(message.contains(name), "the refusal names {name}: {message}"),
        other => panic!("set of {name} by uid {UID} must be refused, got {other:?}"),
    }
}

/// Root still gets and sets: init is alive and serving.
fn root_still_served(f: &Fixture, tag: &str) {
    let c = f.client();
    c.set(&format!("test.alive.{tag}"), "yes").expect("root set after the attack");
    assert_eq!(c.get(&format!("test.alive.{tag}")).expect("root get after the attack"), "yes");
}

/// Shared case dac-uncovered-names-open-to-all: a DAC set without a `*`
/// rule (like OpenHarmony's ohos.para.dac) leaves names no rule covers to
/// OpenHarmony's default root:root 0774: others read, never write.
#[test]
fn uncovered_names_are_not_writable_by_others() {
    let cfg = r#"{"services": [{"name": "demo", "path": ["/bin/sleep", "1000"]}]}"#;
    let dac = "# any product DAC file without a \"*\" rule, e.g. OpenHarmony's own ohos.para.dac\nconst.product. = root:root:0775\n";
    let mut f = Fixture::new(cfg, &[("etc/param/ohos.para.dac", dac), ("etc/param/ohos.para", "const.product.name=Accord\npersist.sys.greeting=hello\n")]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.demo", "running", 10 * SEC), "log:\n{}", f.log_text());
    let c = f.client_as(UID, UID);
    denied(c.set("ohos.ctl.stop", "demo"), "ohos.ctl.stop");
    denied(c.set("persist.sys.greeting", "pwned"), "persist.sys.greeting");
    denied(c.set("ohos.startup.powerctrl", "shutdown"), "ohos.startup.powerctrl");
    denied(c.set("any.new.name", "x"), "any.new.name");
    // Reads stay open (others' 4), so do the covered rule's.
    assert_eq!(c.get("const.product.name").unwrap(), "Accord");
    assert_eq!(c.get("persist.sys.greeting").unwrap(), "hello");
    assert_eq!(f.get("startup.service.ctl.demo").as_deref(), Some("running"), "demo was not stopped");
    root_still_served(&f, "uncovered");
    // Root may: the stop goes through.
    f.client().set("ohos.ctl.stop", "demo").unwrap();
    assert!(f.wait_param("startup.service.ctl.demo", "stopped", 10 * SEC));
}

/// Shared case dac-unknown-group-drops-rule: a rule naming a group that
/// /etc/group lacks is kept with its mode, so the serial number does not
/// fall back to the readable `*` rule; the warning names file and line.
#[test]
fn rule_with_unknown_group_is_kept_and_names_file_and_line() {
    let files = [
        ("etc/param/ohos.para.dac", "* = root:root:0775\n"),
        ("system/etc/param/private.para.dac", "ohos.boot.sn = root:deviceprivate:0750\n"),
        ("etc/param/sn.para", "ohos.boot.sn=SN-0042\n"),
    ];
    let mut f = Fixture::new(r#"{"services": []}"#, &files);
    f.boot();
    let c = f.client_as(UID, UID);
    match c.get("ohos.boot.sn") {
        Err(ParamError::Server { kind: ErrorKind::PermissionDenied, message }) => assert!(message.contains("ohos.boot.sn"), "{message}"),
        other => panic!("uid {UID} must not read the serial number: {other:?}"),
    }
    assert!(c.list("ohos.boot.").unwrap().iter().all(|(k, _)| k != "ohos.boot.sn"), "list hides it too");
    assert_eq!(f.get("ohos.boot.sn").as_deref(), Some("SN-0042"));
    let named = |l: &str| l.lines().any(|l| l.contains("/system/etc/param/private.para.dac:1") && l.contains("deviceprivate"));
    assert!(f.wait_until(20 * SEC, || named(&f.log_text())), "warning names file, line and group:\n{}", f.log_text());
    root_still_served(&f, "unknown-group");
}

/// Supplementary groups come from the kernel (SO_PEERGROUPS at connect):
/// a uid in group log gets `log`'s bits, the same uid without it does not.
/// The connecting thread's credentials are gone by the time it sets (the
/// thread has exited), which does not matter; `/proc/<pid>/status` of the
/// test process would name root's groups instead.
#[test]
fn supplementary_groups_come_from_so_peergroups() {
    let dac = "* = root:root:0775\ntest.grp. = root:log:0770\n";
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para.dac", dac)]);
    f.boot();
    let member = f.client_as_groups(UID, UID, &[1007]);
    member.set("test.grp.a", "1").expect("a member of group log may write test.grp.*");
    assert_eq!(member.get("test.grp.a").unwrap(), "1");
    let outsider = f.client_as(UID, UID);
    denied(outsider.set("test.grp.a", "2"), "test.grp.a");
    assert!(outsider.get("test.grp.a").is_err());
    assert_eq!(f.get("test.grp.a").as_deref(), Some("1"));
    root_still_served(&f, "groups");
}

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use accord_param::proto::{encode_frame, read_frame, Request, Response};

fn send(s: &mut UnixStream, req: &Request) {
    s.write_all(&encode_frame(req)).expect("send a request");
}

fn recv(s: &mut UnixStream) -> Response {
    s.set_read_timeout(Some(30 * SEC)).expect("timeout");
    read_frame::<Response>(s).expect("a reply").expect("a reply, not EOF")
}

/// Polls init's counters until `cond` holds (generous deadline).
fn wait_stats(f: &Fixture, what: &str, cond: impl Fn(&std::collections::HashMap<String, u64>) -> bool) {
    let mut last = Default::default();
    let ok = f.wait_until(30 * SEC, || {
        last = f.stats();
        cond(&last)
    });
    assert!(ok, "{what}: stats {last:?}");
}

/// A client that sends endless bytes behind a pending `Wait` is dropped
/// once it has more than MAX_INBUF buffered; init does not buffer it all.
#[test]
fn endless_bytes_after_a_pending_wait_drop_the_client() {
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para.dac", "* = root:root:0775\n")]);
    f.boot();
    let mut s = f.connect_as(UID, UID, &[]).unwrap();
    send(&mut s, &Request::Wait { name: "test.never".into(), pattern: "x".into(), timeout_ms: 3_600_000 });
    wait_stats(&f, "the wait is pending", |s| s["waits"] == 1);
    s.set_write_timeout(Some(30 * SEC)).unwrap();
    let chunk = vec![b'{'; 64 * 1024];
    let mut sent = 0usize;
    let err = loop {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break e,
        }
        assert!(sent < 64 << 20, "init took {sent} bytes without dropping the client");
    };
    assert!(matches!(err.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset), "dropped, not blocked: {err} after {sent} bytes");
    let st = f.stats();
    assert_eq!((st["dropped_input"], st["waits"], st["wait_timers"], st["buffered_in"]), (1, 0, 0, 0), "{st:?}");
    assert!(f.wait_until(30 * SEC, || f.log_text().contains("behind a pending request")), "the log says why:\n{}", f.log_text());
    root_still_served(&f, "endless");
}

/// A client flooding requests without pause does not starve others: it
/// gets a read budget per loop turn, root's requests go through meanwhile.
#[test]
fn a_flooding_client_does_not_starve_root() {
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para", "test.pub=1\n")]);
    f.boot();
    let s = f.connect_as(UID, UID, &[]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut w = s.try_clone().unwrap();
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        let burst: Vec<u8> = (0..512).flat_map(|_| encode_frame(&Request::Get { name: "test.pub".into() })).collect();
        while !stop_w.load(std::sync::atomic::Ordering::Relaxed) {
            if w.write_all(&burst).is_err() {
                break;
            }
        }
    });
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    let c = f.client();
    for i in 0..200 {
        c.set("test.root.progress", &i.to_string()).expect("root set while flooded");
        assert_eq!(c.get("test.root.progress").unwrap(), i.to_string());
    }
    assert_eq!(f.stats()["dropped_input"], 0, "a pipelining client is slowed down (back-pressure), not dropped");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    reader.join().unwrap();
    root_still_served(&f, "flood");
}

/// Connections: uid 2000 gets its share (1024) and no more; another uid
/// and root still connect; when the attacker leaves, nothing is left.
#[test]
fn connections_are_capped_per_uid() {
    Fixture::raise_own_nofile();
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para", "test.pub=1\n")]);
    f.boot();
    let mut conns = f.connect_many_as(UID, UID, &[], 1100).expect("connect (the kernel queues them)");
    let (mut served, mut refused) = (0, 0);
    for s in &mut conns {
        // A refused connection is closed already: the write may fail, the
        // refusal is still there to read.
        let _ = s.write_all(&encode_frame(&Request::Get { name: "test.pub".into() }));
        match recv(s) {
            Response::Value { .. } => served += 1,
            Response::Error { kind: ErrorKind::ResourceLimit, message } => {
                assert!(message.contains("uid 2000") && message.contains("1024"), "{message}");
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((served, refused), (1024, 76));
    assert!(f.client_as(2001, 2001).get("test.pub").is_ok(), "another uid still connects");
    root_still_served(&f, "conns");
    drop(conns);
    wait_stats(&f, "the attacker's connections are gone", |s| s["clients"] == 1);
}

/// The total cap: four uids holding their shares fill the non-root part
/// of the 4096 connections; a fifth uid is refused, root is not.
#[test]
fn connections_are_capped_in_total_with_room_for_root() {
    Fixture::raise_own_nofile();
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para", "test.pub=1\n")]);
    f.boot();
    let cap = f.stats()["client_cap"] as usize;
    assert_eq!(cap, 4096, "init raised RLIMIT_NOFILE far enough for the full cap");
    let mut held = Vec::new();
    for uid in 3000..3004 {
        let mut conns = f.connect_many_as(uid, uid, &[], 1024).expect("connect");
        // One round trip each: the connection is accepted (or refused).
        for s in &mut conns {
            let _ = s.write_all(&encode_frame(&Request::Get { name: "test.pub".into() }));
            let _ = recv(s);
        }
        held.extend(conns);
    }
    // 1 root stats client came and went; 4 * 1024 tried, 4096 - 64 fit.
    wait_stats(&f, "the non-root part is full", |s| s["clients"] == (cap - 64) as u64 + 1);
    let mut late = f.connect_as(3004, 3004, &[]).unwrap();
    let _ = late.write_all(&encode_frame(&Request::Get { name: "test.pub".into() }));
    match recv(&mut late) {
        Response::Error { kind: ErrorKind::ResourceLimit, message } => assert!(message.contains("non-root"), "{message}"),
        other => panic!("a fifth uid must be refused: {other:?}"),
    }
    root_still_served(&f, "total");
    drop(held);
    wait_stats(&f, "all gone", |s| s["clients"] == 1);
}

/// Running out of descriptors: init's RLIMIT_NOFILE is lowered to 64 from
/// outside and uid 2000 opens 100 connections. accept(2) fails with EMFILE;
/// the listener rests instead of waking the loop at once (each pause is
/// logged once, a spinning loop would log without end), and when the
/// attacker leaves, root is served again.
#[test]
fn running_out_of_descriptors_does_not_spin() {
    let mut f = Fixture::new(r#"{"services": []}"#, &[]);
    f.boot();
    let pid = f.init_pid().unwrap();
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: reading another process's limit into a valid struct.
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) }, 0);
    // The soft limit only: it can go back up without privileges.
    let lim = libc::rlimit { rlim_cur: 64, rlim_max: old.rlim_max };
    // SAFETY: setting another process's limit with a valid struct (we are root).
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) }, 0, "prlimit: {}", std::io::Error::last_os_error());
    let conns = f.connect_many_as(UID, UID, &[], 100).expect("connect (queued by the kernel)");
    let paused = |l: &str| l.lines().filter(|l| l.contains("parameter service: accept:")).count();
    assert!(f.wait_until(30 * SEC, || paused(&f.log_text()) >= 1), "init noticed EMFILE:\n{}", f.log_text());
    drop(conns);
    let raise = libc::rlimit { rlim_cur: old.rlim_cur, rlim_max: old.rlim_max };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &raise, std::ptr::null_mut()) }, 0, "prlimit: {}", std::io::Error::last_os_error());
    root_still_served(&f, "emfile");
    let st = f.stats();
    let lines = paused(&f.log_text());
    assert!(st["accept_pauses"] >= 1 && lines as u64 <= st["accept_pauses"] && lines < 1000, "one line per pause, no spinning: {lines} lines, {st:?}");
}

/// Waits and their timers die with their client: 1000 connections each
/// with a pending `Wait`, and one connection with 1000 `Wait`s queued,
/// leave nothing once they disconnect.
#[test]
fn waits_and_timers_die_with_their_client() {
    Fixture::raise_own_nofile();
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para.dac", "* = root:root:0775\n")]);
    f.boot();
    let mut conns = f.connect_many_as(UID, UID, &[], 1000).unwrap();
    let wait = Request::Wait { name: "test.never".into(), pattern: "x".into(), timeout_ms: u64::MAX };
    for s in &mut conns {
        send(s, &wait);
    }
    let mut one = f.connect_as(2001, 2001, &[]).unwrap();
    let many: Vec<u8> = (0..1000).flat_map(|_| encode_frame(&wait)).collect();
    one.write_all(&many).unwrap();
    wait_stats(&f, "1001 waits pending", |s| s["waits"] == 1001 && s["wait_timers"] == 1001);
    drop(conns);
    drop(one);
    wait_stats(&f, "nothing left", |s| s["clients"] == 1 && s["waits"] == 0 && s["wait_timers"] == 0 && s["buffered_in"] == 0);
    root_still_served(&f, "waits");
}

/// The number of parameters has a per-uid share: uid 2000 creates names
/// until refused (1024), with a clear error; it may still change its
/// own, and another uid and root still create.
#[test]
fn parameter_creation_has_a_per_uid_share() {
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para.dac", "* = root:root:0775\ntest.open. = root:root:0777\n")]);
    f.boot();
    let c = f.client_as(UID, UID);
    let mut created = 0;
    let err = loop {
        match c.set(&format!("test.open.n{created}"), "v") {
            Ok(()) => created += 1,
            Err(e) => break e,
        }
        assert!(created <= 5000, "no cap");
    };
    assert_eq!(created, 1024);
    match &err {
        ParamError::Server { kind: ErrorKind::ResourceLimit, message } => {
            assert!(message.contains("test.open.n1024") && message.contains("uid 2000"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    c.set("test.open.n0", "changed").expect("changing its own names is fine");
    f.client_as(2001, 2001).set("test.open.other", "v").expect("another uid has its own share");
    root_still_served(&f, "params");
    assert_eq!(f.stats()["params_by_clients"], 1024 + 2);
}

/// Waking waiters is iterative: a chain of 2000 clients, each waiting for
/// its parameter and then setting the next one, unwinds through the ready
/// queue; every client gets both answers in order.
#[test]
fn a_chain_of_waiters_unwinds_without_recursion() {
    Fixture::raise_own_nofile();
    const N: usize = 2000;
    let mut f = Fixture::new(r#"{"services": []}"#, &[]);
    f.boot();
    let mut conns: Vec<UnixStream> = (0..N).map(|_| UnixStream::connect(f.socket()).unwrap()).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        let mut b = encode_frame(&Request::Wait { name: format!("test.chain.{i}"), pattern: "1".into(), timeout_ms: 600_000 });
        b.extend(encode_frame(&Request::Set { name: format!("test.chain.{}", i + 1), value: "1".into() }));
        s.write_all(&b).unwrap();
    }
    wait_stats(&f, "all waiting", |s| s["waits"] == N as u64);
    f.client().set("test.chain.0", "1").unwrap();
    assert!(f.wait_param(&format!("test.chain.{N}"), "1", 30 * SEC), "the chain unwound");
    for s in &mut conns {
        assert_eq!(recv(s), Response::Ok, "the wait");
        assert_eq!(recv(s), Response::Ok, "the set");
    }
    root_still_served(&f, "chain");
}

/// A `Watch` delivers only what the watcher may read: uid 2000 watching
/// `test.w.` sees the public change, never the root-only one set before it.
#[test]
fn watch_delivers_only_readable_changes() {
    let dac = "* = root:root:0775\ntest.w. = root:root:0775\ntest.w.secret. = root:root:0770\n";
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para.dac", dac)]);
    f.boot();
    let mut watch = f.client_as(UID, UID).watch("test.w.").expect("others may watch test.w.");
    let c = f.client();
    c.set("test.w.secret.pin", "1234").unwrap();
    c.set("test.w.pub.a", "1").unwrap();
    let ev = watch.next().expect("an event").expect("ok");
    assert_eq!(ev, ("test.w.pub.a".to_string(), "1".to_string()), "the root-only change was not delivered first");
    root_still_served(&f, "watch");
}

/// `persist.*` sets are acknowledged only once on disk, share batches
/// (one fsync pair per batch, written by a forked child off the loop), and
/// the file is root's only (0600).
#[test]
fn persist_sets_are_durable_when_acked_coalesced_and_root_only() {
    let cfg = r#"{"jobs": [{"name": "post-fs-data", "cmds": ["load_persist_params"]}]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/t.para.dac", "* = root:root:0775\npersist.test. = root:root:0777\n")]);
    f.boot();
    assert!(f.wait_until(30 * SEC, || f.stats()["persist_batches"] == 0 && f.log_text().contains("persistent parameters")));
    let file = f.path("data/service/el1/startup/parameters/persist_parameters");
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let c = f.client_as(UID, UID);
            let file = file.clone();
            std::thread::spawn(move || {
                for j in 0..25 {
                    c.set(&format!("persist.test.t{t}"), &j.to_string()).expect("persist set");
                    let text = std::fs::read_to_string(&file).expect("the file exists once a set is acknowledged");
                    assert!(text.lines().any(|l| l == format!("persist.test.t{t}={j}")), "acked value {t}={j} is on disk");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = f.stats();
    assert_eq!(st["persist_sets"], 400, "{st:?}");
    assert!(st["persist_batches"] >= 1 && st["persist_batches"] <= 400 && st["persist_failures"] == 0, "{st:?}");
    eprintln!("400 persist sets from 16 clients in {} batches", st["persist_batches"]);
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!((md.mode() & 0o777, md.uid()), (0o600, 0), "root only");
    root_still_served(&f, "persist");
}

/// Control parameters are checked under OpenHarmony's `ohos.servicectrl.*`
/// names: only root and group servicectrl (1050) stop a service, only
/// powerctrl (1051) powers off; system (uid 1000) without them cannot.
#[test]
fn control_parameters_and_the_service_list_need_the_servicectrl_group() {
    let cfg = r#"{"services": [{"name": "demo", "path": ["/bin/sleep", "1000"]}]}"#;
    let dac = "* = root:root:0775\nohos.ctl. = root:1050:0775\nohos.startup.powerctrl = root:1051:0775\nohos.servicectrl. = root:1050:0775\nohos.servicectrl.reboot. = root:1051:0775\n";
    let mut f = Fixture::new(cfg, &[("etc/param/ohos.para.dac", dac)]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.demo", "running", 10 * SEC));
    denied(f.client_as(UID, UID).set("ohos.ctl.stop", "demo"), "ohos.ctl.stop");
    denied(f.client_as(1000, 1000).set("ohos.ctl.stop", "demo"), "ohos.servicectrl.stop.demo");
    denied(f.client_as_groups(UID, UID, &[1050]).set("ohos.startup.powerctrl", "shutdown"), "ohos.startup.powerctrl");
    assert_eq!(f.get("startup.service.ctl.demo").as_deref(), Some("running"));
    // Listing services (argv, users, pids) is under the same control.
    match f.client_as(UID, UID).dump_services(None) {
        Err(ParamError::Server { kind: ErrorKind::PermissionDenied, message }) => assert!(message.contains("ohos.servicectrl.dump"), "{message}"),
        other => panic!("uid {UID} must not list services: {other:?}"),
    }
    let listed = f.client_as_groups(UID, UID, &[1050]).dump_services(None).expect("group servicectrl may list services");
    assert!(listed.iter().any(|s| s.name == "demo"), "{listed:?}");
    f.client_as_groups(UID, UID, &[1050]).set("ohos.ctl.stop", "demo").expect("group servicectrl may stop a service");
    assert!(f.wait_param("startup.service.ctl.demo", "stopped", 10 * SEC));
    assert!(f.client().dump_services(Some("demo")).expect("root lists services").iter().any(|s| s.name == "demo"));
    root_still_served(&f, "ctl");
}

/// A boot event is set only by the process of the service declaring it
/// (or root): service b (uid 2000) cannot set a's event, nor can another
/// uid-2000 client; a's own process can.
#[test]
fn a_boot_event_is_set_only_by_its_service() {
    let cfg = r#"{"services": [
        {"name": "b", "uid": "shell", "gid": ["shell"], "once": 1, "ondemand": true, "bootevents": ["bootevent.b.ready"],
         "path": ["/system/bin/param", "set", "bootevent.a.ready", "true"]},
        {"name": "a", "uid": "shell", "gid": ["shell"], "once": 1, "ondemand": true, "bootevents": ["bootevent.a.ready"],
         "path": ["/system/bin/param", "set", "bootevent.a.ready", "true"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/t.para.dac", "* = root:root:0775\nbootevent. = root:root:0777:bool\n")]);
    f.boot();
    // Started after boot, not at it: a fork by a concurrent test may still
    // hold the copied binary open for writing while the fixture boots
    // (exec would fail with ETXTBSY).
    f.client().set("ohos.ctl.start", "b").unwrap();
    let refused = |l: &str| l.lines().any(|l| l.contains("bootevent.a.ready") && l.contains("only the process of a"));
    assert!(f.wait_until(30 * SEC, || refused(&f.log_text())), "b was refused:\n{}", f.log_text());
    assert!(
        f.wait_until(30 * SEC, || f.log_text().lines().any(|l| l.contains("service b") && l.contains("exit status 1"))),
        "b's param set failed:\n{}",
        f.log_text()
    );
    assert_eq!(f.get("bootevent.a.ready"), None);
    denied(f.client_as(UID, UID).set("bootevent.a.ready", "true"), "bootevent.a.ready");
    denied(f.client_as(UID, UID).set("bootevent.undeclared", "true"), "bootevent.undeclared");
    f.client().set("ohos.ctl.start", "a").unwrap();
    assert!(f.wait_param("bootevent.a.ready", "true", 30 * SEC), "a's own process sets it:\n{}", f.log_text());
    root_still_served(&f, "bootevent");
}

// --- pid reuse ------------------------------------------------------------------

/// Forks a process into init's PID namespace (setns applies to children,
/// so through an intermediate process) that runs `child` and exits with
/// its code; returns the intermediate's pid, for [`wait_in_ns`]. Both
/// close `close` first (this test's ends of pipes). Between fork and exit
/// only async-signal-safe system calls: `child` must not allocate.
fn spawn_in_ns(f: &Fixture, close: &[std::os::fd::RawFd], child: impl FnOnce() -> i32) -> libc::pid_t {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/proc/{}/ns/pid", f.init_pid().expect("init runs"))).expect("init's pid namespace");
    // SAFETY: the children make only system calls (no allocation, no locks)
    // and leave with _exit.
    unsafe {
        let outer = libc::fork();
        assert!(outer >= 0, "fork: {}", std::io::Error::last_os_error());
        if outer == 0 {
            for fd in close {
                libc::close(*fd);
            }
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) != 0 {
                libc::_exit(101);
            }
            let inner = libc::fork();
            if inner < 0 {
                libc::_exit(102);
            }
            if inner == 0 {
                libc::_exit(child());
            }
            let mut st = 0;
            if libc::waitpid(inner, &mut st, 0) != inner || !libc::WIFEXITED(st) {
                libc::_exit(103);
            }
            libc::_exit(libc::WEXITSTATUS(st));
        }
        outer
    }
}

/// Waits for a [`spawn_in_ns`] process (and so its child) to be gone;
/// returns the child's exit code.
fn wait_in_ns(outer: libc::pid_t) -> i32 {
    let mut st = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    assert_eq!(unsafe { libc::waitpid(outer, &mut st, 0) }, outer, "waitpid: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(st), "status {st:#x}");
    libc::WEXITSTATUS(st)
}

/// Now, in the clock ticks of `/proc/<pid>/stat`'s start times.
fn ticks_now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointers; CLOCK_BOOTTIME is what start times count.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // SAFETY: a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) / (1_000_000_000 / hz)
}

/// Shared case pid-reuse-bootevent: SO_PEERCRED's pid is the pid at
/// connect(2). A uid-2000 process in init's namespace connects (the socket
/// stays with this test), then exits; its pid is given to the next process
/// of the namespace (`ns_last_pid`), which is service s's, declaring
/// `bootevent.s.ready`. The old connection has s's pid but is not s's
/// process (another start time): its set of s's boot event is refused.
#[test]
fn a_connection_whose_pid_went_to_a_service_is_not_that_service() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let cfg = r#"{"services": [
        {"name": "s", "uid": "shell", "gid": ["shell"], "ondemand": true, "bootevents": ["bootevent.s.ready"], "path": ["/bin/sleep", "1000"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/t.para.dac", "* = root:root:0775\nbootevent. = root:root:0777:bool\n")]);
    f.boot();
    // Everything the forked children use is made before the fork.
    let dir = std::fs::File::open(f.socket().parent().expect("socket dir")).expect("open the socket's directory as root");
    let path = format!("/proc/self/fd/{}/paramservice", dir.as_raw_fd());
    // SAFETY: a zeroed sockaddr_un is valid; the path fits (checked).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    assert!(path.len() < addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(path.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: plain system calls creating descriptors we own.
    let (sock, pid_pipe, go_pipe) = unsafe {
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(s >= 0);
        let (mut p, mut g) = ([0; 2], [0; 2]);
        assert_eq!(libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(g.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let own = |fd| OwnedFd::from_raw_fd(fd);
        (own(s), (own(p[0]), own(p[1])), (own(g[0]), own(g[1])))
    };
    wait_stats(&f, "no client but this one", |s| s["clients"] == 1);
    let (fd, pid_w, go_r) = (sock.as_raw_fd(), pid_pipe.1.as_raw_fd(), go_pipe.0.as_raw_fd());
    // The attacker: connects this test's socket as uid 2000, says its pid,
    // and exits when told (or when this test is gone).
    let attacker = spawn_in_ns(&f, &[pid_pipe.0.as_raw_fd(), go_pipe.1.as_raw_fd()], move || {
        // SAFETY: system calls on descriptors and memory made before the fork.
        unsafe {
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                || libc::syscall(libc::SYS_setresgid, UID, UID, UID) != 0
                || libc::syscall(libc::SYS_setresuid, UID, UID, UID) != 0
            {
                return 1;
            }
            if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t) != 0 {
                return 2;
            }
            let me = libc::getpid();
            if libc::write(pid_w, (&me as *const libc::pid_t).cast(), 4) != 4 {
                return 3;
            }
            let mut b = 0u8;
            libc::read(go_r, (&mut b as *mut u8).cast(), 1);
        }
        0
    });
    drop(pid_pipe.1);
    let mut pid_bytes = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::from(pid_pipe.0), &mut pid_bytes).expect("the attacker's pid (it connected)");
    let pid = i32::from_ne_bytes(pid_bytes);
    // init has accepted it (and so recorded who it is) while it lives.
    wait_stats(&f, "the attacker's connection is accepted", |s| s["clients"] == 2);
    std::io::Write::write_all(&mut std::fs::File::from(go_pipe.1), b"x").expect("tell the attacker to exit");
    assert_eq!(wait_in_ns(attacker), 0, "the attacker ran");
    // Gone; a process started from the next clock tick on has another start time.
    let gone = ticks_now();
    assert!(f.wait_until(30 * SEC, || ticks_now() > gone), "the clock moves");
    // The namespace's next pid is the attacker's: s gets it.
    let last = format!("{}", pid - 1);
    let writer = spawn_in_ns(&f, &[], move || {
        // SAFETY: system calls on a static path and a buffer made before the fork.
        unsafe {
            let fd = libc::open(c"/proc/sys/kernel/ns_last_pid".as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, last.as_ptr().cast(), last.len()) != last.len() as isize {
                return 1;
            }
        }
        0
    });
    assert_eq!(wait_in_ns(writer), 0, "ns_last_pid written: {}", std::io::Error::last_os_error());
    f.client().set("ohos.ctl.start", "s").unwrap();
    assert!(
        f.wait_param("startup.service.ctl.s.pid", &pid.to_string(), 30 * SEC),
        "s runs as the attacker's old pid {pid}: {:?}",
        f.get("startup.service.ctl.s.pid")
    );
    // The attacker's connection (uid 2000, pid = s's pid) sets s's event.
    let c = accord_param::client::Client::from_stream(UnixStream::from(sock)).expect("client");
    match c.set("bootevent.s.ready", "true") {
        Err(ParamError::Server { kind: ErrorKind::PermissionDenied, message }) => {
            assert!(message.contains("bootevent.s.ready") && message.contains("not the process that connected"), "{message}")
        }
        other => panic!("a connection made by another process than s's must not set s's boot event: {other:?}"),
    }
    assert_eq!(f.get("bootevent.s.ready"), None);
    drop(dir);
    root_still_served(&f, "pid-reuse");
}

// --- watchers that never read ---------------------------------------------------------

/// A `VmXxx:` line of `/proc/<pid>/status`, in KiB.
fn vm_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("init's status");
    let line = status.lines().find_map(|l| l.strip_prefix(field).and_then(|l| l.strip_prefix(':'))).unwrap_or_else(|| panic!("{field} in {status}"));
    line.trim().trim_end_matches("kB").trim().parse().expect("a number of kB")
}

/// Shared case watchers-never-read: 200 uid-2000 connections each watch
/// a name uid 2000 may read and never read again; root sets it 6,000
/// times (without a bound on the notifications each watcher would hold
/// ~1.4 MiB). init's peak RSS stays small (the notifications queued for a
/// connection that only gets notifications are bounded by 64 KiB, those of
/// a uid by 4 MiB), every watcher is hung up (EOF or ECONNRESET once
/// drained), and root is still served.
#[test]
fn watchers_that_never_read_are_hung_up_and_init_stays_small() {
    const N: usize = 200;
    const SETS: usize = 6000;
    /// init's peak RSS bound, MiB: unfixed, it went past 200.
    const PEAK_MIB: u64 = 48;
    Fixture::raise_own_nofile();
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para.dac", "* = root:root:0775\n")]);
    f.boot();
    let init = f.init_pid().expect("init runs");
    let mut conns = f.connect_many_as(UID, UID, &[], N).expect("connect");
    for s in &mut conns {
        send(s, &Request::Watch { prefix: "test.flood.".into() });
        assert_eq!(recv(s), Response::Ok, "uid {UID} may watch test.flood.");
    }
    let booted = vm_kib(init, "VmHWM");
    // Long name and value: ~230-byte notifications.
    let name = format!("test.flood.{}", "n".repeat(accord_param::name::NAME_MAX - "test.flood.".len()));
    let c = f.client();
    for i in 0..SETS {
        c.set(&name, &format!("{i:0>96}")).expect("root sets while nobody reads");
    }
    let (peak, rss) = (vm_kib(init, "VmHWM"), vm_kib(init, "VmRSS"));
    eprintln!("init: peak RSS {booted} KiB after boot, {peak} KiB after the flood (now {rss} KiB)");
    assert!(peak < PEAK_MIB << 10, "init's peak RSS {peak} KiB (after boot {booted} KiB) is over {PEAK_MIB} MiB");
    // Every watcher is hung up: what was written to its socket, then EOF.
    let mut buf = vec![0u8; 1 << 16];
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(30 * SEC)).unwrap();
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) => break None,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = end {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "watcher {i} was hung up, not left waiting: {e}");
        }
    }
    wait_stats(&f, "the watchers are gone and their output with them", |s| {
        // Left: root's client and this stats one.
        s["clients"] == 2 && s["dropped_output"] == N as u64 && s["buffered_out"] == 0 && s["buffered_out_non_root"] == 0
    });
    let said = |l: &str| l.lines().any(|l| l.contains("uid 2000 does not read its output") && l.contains("hanging up"));
    assert!(f.wait_until(30 * SEC, || said(&f.log_text())), "the log names uid and bound:\n{}", f.log_text());
    assert_eq!(c.get(&name).expect("root's get is answered"), format!("{:0>96}", SETS - 1));
    root_still_served(&f, "watchers");
}
