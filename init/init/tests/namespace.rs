//! Host integration tests: the real init as PID 1 in namespaces over a
//! temporary root (see `accord_testkit`). Each test boots its own init in
//! well under a second.

use std::time::Duration;

use accord_testkit::Fixture;

/// How long an awaited condition may take: generous, since a loaded
/// machine is slow; a condition that holds returns at once.
const WAIT: Duration = Duration::from_secs(30);

fn host_pids_in_ns(f: &Fixture) -> Vec<(i32, i32, char)> {
    f.processes()
}

fn host_pid(f: &Fixture, ns_pid: i32) -> i32 {
    f.host_pid(ns_pid).expect("process in namespace")
}

fn read(f: &Fixture, rel: &str) -> String {
    std::fs::read_to_string(f.path(rel)).unwrap_or_default()
}

#[test]
fn jobs_run_in_order_and_services_start_by_mode() {
    let cfg = r#"{
      "jobs": [
        {"name": "boot", "cmds": ["syncexec /data/mark boot"]},
        {"name": "pre-init", "cmds": ["syncexec /data/mark pre-init"]},
        {"name": "post-fs-data", "cmds": ["syncexec /data/mark post-fs-data", "mkdir /data/made 0750"]},
        {"name": "init", "cmds": ["syncexec /data/mark init", "hostname accord-test", "setparam test.from.cfg hello"]},
        {"name": "post-init", "cmds": ["syncexec /data/mark post-init"]}
      ],
      "services": [
        {"name": "late", "path": ["/bin/sleep", "1000"]},
        {"name": "early", "path": ["/bin/sleep", "1000"], "start-mode": "boot"},
        {"name": "manual", "path": ["/bin/sleep", "1000"], "start-mode": "condition"},
        {"name": "off", "path": ["/bin/sleep", "1000"], "disabled": 1}
      ]
    }"#;
    let mut f = Fixture::new(cfg, &[("data/mark", "#!/bin/sh\necho \"$1\" >> /data/order\n")]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.path("data/mark"), std::fs::Permissions::from_mode(0o755)).unwrap();
    f.boot();
    assert!(f.wait_param("startup.service.ctl.late", "running", WAIT), "log:\n{}", f.log_text());
    assert_eq!(read(&f, "data/order"), "pre-init\ninit\npost-init\npost-fs-data\nboot\n");
    let early: i32 = f.get("startup.service.ctl.early.pid").unwrap().parse().unwrap();
    let late: i32 = f.get("startup.service.ctl.late.pid").unwrap().parse().unwrap();
    assert!(early < late, "boot-mode service starts before normal ones ({early} vs {late})");
    assert_eq!(f.get("startup.service.ctl.manual").as_deref(), Some("idle"));
    assert_eq!(f.get("startup.service.ctl.off").as_deref(), Some("disabled"));
    assert_eq!(f.get("test.from.cfg").as_deref(), Some("hello"));
    assert_eq!(std::fs::metadata(f.path("data/made")).unwrap().permissions().mode() & 0o777, 0o750);
    // hostname was set inside the UTS namespace only.
    let pid = f.init_pid().unwrap();
    let out = std::process::Command::new("nsenter").args(["-t", &pid.to_string(), "-u", "hostname"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "accord-test");
    // start a condition service by control parameter, then stop it.
    let (rc, _, err) = f.begetctl(&["start_service", "manual"]);
    assert_eq!(rc, 0, "{err}");
    assert!(f.wait_param("startup.service.ctl.manual", "running", WAIT));
    let (rc, _, err) = f.begetctl(&["stop_service", "manual"]);
    assert_eq!(rc, 0, "{err}");
    assert!(f.wait_param("startup.service.ctl.manual", "stopped", WAIT));
    // dump_service shows them.
    let (rc, out, _) = f.begetctl(&["dump_service", "all"]);
    assert_eq!(rc, 0);
    for name in ["late", "early", "manual", "off"] {
        assert!(out.contains(name), "dump_service lacks {name}:\n{out}");
    }
}

#[test]
fn killed_service_is_restarted_and_stopped_one_is_not() {
    let cfg = r#"{"services": [{"name": "victim", "path": ["/bin/sleep", "1000"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.victim", "running", WAIT));
    let old: i32 = f.get("startup.service.ctl.victim.pid").unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid(&f, old)), nix::sys::signal::Signal::SIGKILL).unwrap();
    let restarted = f.wait_until(WAIT, || {
        let p = f.get("startup.service.ctl.victim.pid").unwrap_or_default();
        p != old.to_string() && p != "0" && f.get("startup.service.ctl.victim").as_deref() == Some("running")
    });
    assert!(restarted, "victim not restarted; log:\n{}", f.log_text());
    assert!(f.log_text().contains("victim"), "exit is logged with the service name");
    // Stopped through init: it stays stopped.
    f.begetctl(&["service_control", "stop", "victim"]);
    assert!(f.wait_param("startup.service.ctl.victim", "stopped", WAIT));
    // init decides at the exit, in the same turn that sets "stopped": a
    // restart now would already show as "running", one later as a
    // scheduled restart in the log.
    assert_eq!(f.get("startup.service.ctl.victim").as_deref(), Some("stopped"));
    let log = f.log_text();
    assert_eq!(log.matches("restarting service victim").count(), 1, "only the crash restarted it; log:\n{log}");
    assert!(!log.contains("service victim crashes too often"), "no delayed restart was scheduled; log:\n{log}");
}

/// A start asked while the service is still stopping (its process takes
/// a moment to exit after SIGTERM) is carried out once it has stopped,
/// not dropped.
#[test]
fn a_start_during_a_stop_starts_it_again_once_stopped() {
    // It ignores SIGTERM for longer than init's grace for a control stop
    // (CONTROL_STOP_GRACE, 3 s, then SIGKILL): the start below comes well
    // within those seconds.
    let cfg = r#"{"services": [{"name": "slow", "path": ["/bin/sh", "-c", "trap 'sleep 20; exit 0' TERM; while :; do sleep 0.05; done"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.slow", "running", WAIT));
    let old = f.get("startup.service.ctl.slow.pid").unwrap();
    let (rc, _, err) = f.begetctl(&["stop_service", "slow"]);
    assert_eq!(rc, 0, "{err}");
    let (rc, _, err) = f.begetctl(&["start_service", "slow"]);
    assert_eq!(rc, 0, "{err}");
    // init acts on the control parameter after begetctl's set returns.
    let deferred = f.wait_until(WAIT, || f.log_text().contains("service slow is stopping: it starts again once it has stopped"));
    assert!(deferred, "the start was not deferred to the stop's end; log:\n{}", f.log_text());
    let again = f.wait_until(WAIT, || {
        let p = f.get("startup.service.ctl.slow.pid").unwrap_or_default();
        p != old && p != "0" && f.get("startup.service.ctl.slow").as_deref() == Some("running")
    });
    assert!(again, "the start asked while stopping was lost; log:\n{}", f.log_text());
}

#[test]
fn critical_service_crashing_requests_panic_reboot() {
    let cfg = r#"{
      "jobs": [{"name": "pre-init", "cmds": ["mkdir /data/log", "mkdir /data/log/startup"]}],
      "services": [
        {"name": "heart", "path": ["/bin/sh", "-c", "exit 3"], "critical": [1, 3, 60]},
        {"name": "bystander", "path": ["/bin/sh", "-c", "trap 'echo term > /data/bystander; exit 0' TERM; while :; do sleep 0.05; done"]}
      ]
    }"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    let st = f.wait_exit(WAIT).expect("init rebooted");
    assert_eq!(Fixture::exit_signal(&st), Some(libc::SIGHUP), "reboot(2) ends a pid namespace with SIGHUP; got {st:?}; log:\n{}", f.log_text());
    let record = read(&f, "data/log/startup/last_panic");
    assert!(record.starts_with("service=heart "), "panic recorded: {record:?}");
    assert_eq!(read(&f, "data/bystander").trim(), "term", "other services were stopped in order");
    assert!(f.log_text().contains("critical service heart"), "log:\n{}", f.log_text());
}

#[test]
fn ondemand_service_starts_on_first_connection_and_is_watched_again() {
    let cfg = r#"{
      "services": [{
        "name": "lazy", "path": ["/bin/sh", "-c", "echo \"fd=$OHOS_SOCKET_lazysock\" >> /data/lazy; sleep 0.2"],
        "ondemand": true,
        "socket": [{"name": "lazysock", "family": "AF_UNIX", "type": "SOCK_STREAM", "protocol": "default", "permissions": "0660", "uid": "system", "gid": "system"}]
      }]
    }"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    // Boot is over (every boot-time service was started before this is
    // set), and the socket service was not among them.
    assert!(f.wait_param("bootevent.boot.completed", "true", WAIT), "log:\n{}", f.log_text());
    assert_ne!(f.get("startup.service.ctl.lazy").as_deref(), Some("running"));
    assert_eq!(read(&f, "data/lazy"), "");
    let pid = f.init_pid().unwrap();
    let sock = format!("/proc/{pid}/root/dev/unix/socket/lazysock");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::metadata(&sock).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    let _c1 = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    assert!(f.wait_until(WAIT, || read(&f, "data/lazy").lines().count() == 1), "log:\n{}", f.log_text());
    assert!(read(&f, "data/lazy").starts_with("fd="), "socket fd handed over in OHOS_SOCKET_lazysock");
    // It exits after 0.2 s; init watches the socket again. The first
    // connection is still queued, so it starts again at once; a second
    // round proves it was re-armed.
    assert!(f.wait_until(WAIT, || read(&f, "data/lazy").lines().count() >= 2), "log:\n{}", f.log_text());
}

#[test]
fn persist_params_survive_a_reboot_and_const_is_write_once() {
    let cfg = r#"{"jobs": [{"name": "post-fs-data", "cmds": ["load_persist_params"]}]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/test.para", "const.test.model = accord-1\npersist.test.default=from-file\n")]);
    f.boot();
    let c = f.client();
    assert_eq!(c.get("const.test.model").unwrap(), "accord-1");
    // load_persist_params has run once the file holds the .para default;
    // from then on an acknowledged persist.* set is on disk.
    assert!(f.wait_until(WAIT, || read(&f, "data/service/el1/startup/parameters/persist_parameters").contains("persist.test.default=from-file")));
    c.set("persist.test.v", "42").unwrap();
    assert!(c.set("const.test.model", "other").is_err(), "const.* is write-once");
    let saved = read(&f, "data/service/el1/startup/parameters/persist_parameters");
    assert!(saved.contains("persist.test.v=42"), "saved file: {saved:?}");
    let (rc, _, err) = f.begetctl(&["reboot"]);
    assert_eq!(rc, 0, "{err}");
    let st = f.wait_exit(WAIT).expect("init rebooted");
    assert_eq!(Fixture::exit_signal(&st), Some(libc::SIGHUP));
    // Second boot on the same root.
    let mut f2 = Fixture::reuse(f);
    f2.boot();
    // The socket answers before post-fs-data has loaded the file: wait.
    assert!(f2.wait_param("persist.test.v", "42", WAIT), "log:\n{}", f2.log_text());
}

#[test]
fn orphans_are_reaped() {
    let cfg = r#"{"services": [{"name": "parent", "path": ["/bin/sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.1 &); done; exec sleep 1000"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.parent", "running", WAIT));
    // The orphans sleep 0.1 s, then exit to init, which must reap them:
    // init and the parent (plus, briefly, a shell) are all that may stay.
    let reaped = f.wait_until(WAIT, || {
        let procs = host_pids_in_ns(&f);
        procs.iter().all(|p| p.2 != 'Z') && procs.len() <= 3
    });
    assert!(reaped, "orphans finished and were reaped: {:?}", host_pids_in_ns(&f));
}

#[test]
fn param_cli_and_dac_for_non_root_callers() {
    let cfg = r#"{
      "jobs": [{"name": "pre-init", "cmds": ["mkdir /data/dac 0777"]}],
      "services": [{
        "name": "unpriv", "uid": "system", "gid": ["system", "log"], "once": 1,
        "path": ["/bin/sh", "-c", "param set test.open.a 1; echo open=$? >> /data/dac/r; param set test.locked.a 1 2>>/data/dac/err; echo locked=$? >> /data/dac/r; param set test.grp.a 1; echo grp=$? >> /data/dac/r; param get test.secret.a >/dev/null 2>>/data/dac/err; echo secret=$? >> /data/dac/r; id -u >> /data/dac/r"]
      }]
    }"#;
    let dac = "test.open. = root:root:0777\ntest.locked. = root:root:0775\ntest.grp. = root:log:0770\ntest.secret. = root:root:0770\n";
    let mut f = Fixture::new(cfg, &[("etc/param/test.para.dac", dac), ("etc/param/t.para", "test.secret.a=s\n")]);
    f.boot();
    assert!(f.wait_until(WAIT, || read(&f, "data/dac/r").lines().count() == 5), "log:\n{}", f.log_text());
    assert_eq!(read(&f, "data/dac/r"), "open=0\nlocked=1\ngrp=0\nsecret=1\n1000\n");
    let err = read(&f, "data/dac/err");
    assert!(err.contains("test.locked.a") && err.to_lowercase().contains("permission"), "clear denial message: {err}");
    // The CLI from the host (root).
    let (rc, _, _) = f.begetctl(&["param", "set", "test.cli", "v1"]);
    assert_eq!(rc, 0);
    let (rc, out, _) = f.begetctl(&["param", "get", "test.cli"]);
    assert_eq!((rc, out.trim()), (0, "v1"));
    let (rc, _, err) = f.begetctl(&["param", "get", "test.nope"]);
    assert_eq!(rc, 1);
    assert!(err.contains("test.nope"), "{err}");
    let long = "x".repeat(200);
    let (rc, _, err) = f.begetctl(&["param", "set", "test.long", &long]);
    assert_ne!(rc, 0);
    assert!(err.contains("test.long"), "{err}");
    let (rc, _, err) = f.begetctl(&["param", "wait", "test.never", "1", "1"]);
    assert_ne!(rc, 0, "wait times out");
    assert!(err.to_lowercase().contains("time"), "{err}");
    let (rc, out, _) = f.begetctl(&["param", "ls", "-r", "test."]);
    assert_eq!(rc, 0);
    assert!(out.contains("test.cli") && out.contains("v1"), "{out}");
}

#[test]
fn wait_watch_and_param_triggers() {
    let cfg = r#"{"jobs": [
        {"name": "param:test.trigger=go", "cmds": ["setparam test.triggered yes"]},
        {"name": "param:test.both", "condition": "test.a=1 && (test.b=x* || test.c=*)", "cmds": ["setparam test.both.fired 1"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    let c = f.client();
    let waiter = {
        let sock = f.socket();
        std::thread::spawn(move || accord_param::client::Client::connect_to(&sock).unwrap().wait("test.later", "ready", WAIT))
    };
    // `watch` returns once init has acknowledged it.
    let mut watch = f.client().watch("test.w.").unwrap();
    c.set("test.w.one", "1").unwrap();
    c.set("test.later", "ready").unwrap();
    assert!(waiter.join().unwrap().is_ok(), "wait returns when the value arrives");
    let ev = watch.next().expect("watch event").expect("watch ok");
    assert_eq!(ev, ("test.w.one".to_string(), "1".to_string()));
    c.set("test.trigger", "go").unwrap();
    assert_eq!(c.get("test.triggered").unwrap(), "yes");
    c.set("test.a", "1").unwrap();
    assert!(c.get_opt("test.both.fired").unwrap().is_none());
    c.set("test.b", "xyz").unwrap();
    assert_eq!(c.get("test.both.fired").unwrap(), "1");
}

#[test]
fn bootevents_complete_the_boot_and_write_a_trace() {
    let cfg = r#"{
      "jobs": [{"name": "pre-init", "cmds": ["mkdir /data/log", "mkdir /data/log/startup"]}],
      "services": [
        {"name": "ev1", "path": ["/bin/sh", "-c", "sleep 0.2; param set bootevent.ev1.ready true; exec sleep 1000"], "bootevents": ["bootevent.ev1.ready"]},
        {"name": "ev2", "path": ["/bin/sh", "-c", "param set bootevent.ev2.ready true; exec sleep 1000"], "bootevents": "bootevent.ev2.ready"}
      ]
    }"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("bootevent.boot.completed", "true", WAIT), "log:\n{}", f.log_text());
    let t1: u64 = f.get("ohos.boot.time.ev1.ready").unwrap().parse().unwrap();
    let t2: u64 = f.get("ohos.boot.time.ev2.ready").unwrap().parse().unwrap();
    let done: u64 = f.get("ohos.boot.time.boot.completed").unwrap().parse().unwrap();
    assert!(t2 <= done && t1 <= done && t1 > 0);
    let trace: serde_json::Value = serde_json::from_str(&read(&f, "data/log/startup/bootup.trace")).expect("trace is JSON");
    let events = trace["traceEvents"].as_array().unwrap();
    let names: Vec<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.contains(&"pre-init") && names.contains(&"ev1") && names.contains(&"ev2"), "{names:?}");
    assert!(events.iter().all(|e| e["ph"] == "X" && e["ts"].as_u64().is_some()));
}

#[test]
fn malformed_cfg_is_reported_and_boot_goes_on() {
    let cfg = r#"{"services": [
        {"name": "good", "path": ["/bin/sleep", "1000"]},
        {"name": "bad-uid", "path": ["/bin/sleep", "1000"], "uid": {"x": 1}},
        {"name": "no-such-binary", "path": ["/nonexistent/daemon"]},
        {"name": "unknown-user", "path": ["/bin/sleep", "1000"], "uid": "nobody-here"}
    ], "jobs": [{"name": "init", "cmds": ["frobnicate now", "mkdir"]}]}"#;
    let mut f = Fixture::new(
        cfg,
        &[
            ("etc/init/broken.cfg", "{\"services\": [ {\"name\": \"x\",, } ]}"),
            ("etc/init/ok.cfg", r#"{"services": [{"name": "second", "path": ["/bin/sleep", "1000"]}]}"#),
        ],
    );
    f.boot();
    assert!(f.wait_param("startup.service.ctl.second", "running", WAIT), "log:\n{}", f.log_text());
    assert!(f.wait_param("startup.service.ctl.good", "running", WAIT));
    assert_eq!(f.get("startup.service.ctl.no-such-binary").as_deref(), Some("error"));
    assert_eq!(f.get("startup.service.ctl.unknown-user").as_deref(), Some("error"));
    let log = f.log_text();
    assert!(log.contains("/etc/init/broken.cfg") && log.contains("line 1"), "syntax error names file and position:\n{log}");
    assert!(log.contains("bad-uid") && log.contains("uid"), "field error names the service and field:\n{log}");
    assert!(log.contains("frobnicate"), "unknown command is reported:\n{log}");
    assert!(log.contains("nobody-here"), "unknown user is reported:\n{log}");
    assert!(log.contains("/nonexistent/daemon"), "missing executable is reported:\n{log}");
}

#[test]
fn garbage_on_the_param_socket_does_not_hurt_init() {
    use std::io::{Read, Write};
    let mut f = Fixture::new(r#"{"services": []}"#, &[]);
    f.boot();
    let sock = f.socket();
    for junk in [&b"\xff\xff\xff\xff"[..], b"\x05\x00\x00\x00hello", b"\x02\x00\x00\x00{}", b""] {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(junk).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    f.client().set("test.after.garbage", "fine").unwrap();
    assert_eq!(f.get("test.after.garbage").as_deref(), Some("fine"));
}

#[test]
fn poweroff_signal_stops_services_and_powers_off() {
    let cfg = r#"{"services": [
        {"name": "first", "path": ["/bin/sh", "-c", "trap 'echo first >> /data/stops; exit 0' TERM; echo first >> /data/ready; while :; do sleep 0.05; done"]},
        {"name": "second", "path": ["/bin/sh", "-c", "trap 'echo second >> /data/stops; exit 0' TERM; echo second >> /data/ready; while :; do sleep 0.05; done"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    // Both shells have set their traps.
    assert!(f.wait_until(WAIT, || read(&f, "data/ready").lines().count() == 2), "log:\n{}", f.log_text());
    // busybox `poweroff` sends SIGUSR2 to PID 1.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(f.init_pid().unwrap()), nix::sys::signal::Signal::SIGUSR2).unwrap();
    let st = f.wait_exit(WAIT).expect("powered off");
    assert_eq!(Fixture::exit_signal(&st), Some(libc::SIGINT), "RB_POWER_OFF ends a pid namespace with SIGINT; log:\n{}", f.log_text());
    let stops = read(&f, "data/stops");
    assert_eq!(stops.lines().count(), 2, "both services got SIGTERM: {stops:?}");
}

#[test]
fn shared_table_serves_world_readable_params_only() {
    use accord_param::area::{AreaReader, Lookup};
    let dac = "test.hidden. = root:root:0770\n";
    let mut f = Fixture::new(r#"{"services": []}"#, &[("etc/param/t.para.dac", dac), ("etc/param/t.para", "test.pub.a=1\ntest.hidden.a=2\n")]);
    f.boot();
    let pid = f.init_pid().unwrap();
    let area = AreaReader::open_at(std::path::Path::new(&format!("/proc/{pid}/root/dev/__parameters__/param_area"))).expect("area mapped");
    assert_eq!(area.get("test.pub.a"), Lookup::Found("1".into()));
    assert_eq!(area.get("test.hidden.a"), Lookup::Miss, "restricted values stay behind the socket's DAC check");
    assert_eq!(f.get("test.hidden.a").as_deref(), Some("2"));
    f.client().set("test.pub.a", "changed").unwrap();
    assert_eq!(area.get("test.pub.a"), Lookup::Found("changed".into()), "a set is visible at once");
    // Boot times are public too: the cheap way to poll them.
    assert!(matches!(area.get("ohos.boot.time.init"), Lookup::Found(_)));
}

#[test]
fn cfg_commands_do_what_they_say() {
    let cfg = r#"{"jobs": [{"name": "init", "cmds": [
        "mkdir /data/d 0751 system log",
        "write /data/d/f hello world",
        "copy /data/d/f /data/d/g",
        "chmod 0600 /data/d/g",
        "chown shell shell /data/d/g",
        "symlink /data/d/f /data/d/link",
        "write /data/d/gone x",
        "rm /data/d/gone",
        "mkdir /data/d/empty",
        "rmdir /data/d/empty",
        "export ACCORD_TEST_VAR exported",
        "setparam test.expanded pre-${const.test.base}-post",
        "mount tmpfs tmpfs /data/mnt nosuid size=1m",
        "write /data/mnt/inside 1",
        "umount /data/mnt",
        "setrlimit RLIMIT_NOFILE 4096 4096",
        "wait /data/d/f 1",
        "exec /bin/sh -c \"echo bg\"",
        "frobnicate"
    ]}],
    "services": [{"name": "envcheck", "once": 1, "path": ["/bin/sh", "-c", "echo \"$ACCORD_TEST_VAR $(ulimit -n)\" > /data/env"]}]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/t.para", "const.test.base=B\n")]);
    f.boot();
    assert!(f.wait_until(WAIT, || !read(&f, "data/env").is_empty()), "log:\n{}", f.log_text());
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = std::fs::metadata(f.path("data/d")).unwrap();
    assert_eq!((d.permissions().mode() & 0o777, d.uid(), d.gid()), (0o751, 1000, 1007));
    assert_eq!(read(&f, "data/d/f"), "hello world");
    let g = std::fs::metadata(f.path("data/d/g")).unwrap();
    assert_eq!((g.permissions().mode() & 0o777, g.uid(), g.gid()), (0o600, 2000, 2000));
    assert_eq!(std::fs::read_link(f.path("data/d/link")).unwrap(), std::path::PathBuf::from("/data/d/f"));
    assert!(!f.path("data/d/gone").exists() && !f.path("data/d/empty").exists());
    assert!(!f.path("data/mnt/inside").exists(), "the file went away with the unmounted tmpfs");
    assert_eq!(f.get("test.expanded").as_deref(), Some("pre-B-post"));
    assert_eq!(read(&f, "data/env").trim(), "exported 4096", "export and setrlimit reach services");
    assert!(f.log_text().contains("unknown command \"frobnicate\""), "log:\n{}", f.log_text());
}

#[test]
fn credentials_caps_and_hooks_apply_to_services() {
    let cfg = r#"{
      "jobs": [
        {"name": "pre-init", "cmds": ["mkdir /data/c 0777"]},
        {"name": "capd_pre", "cmds": ["write /data/c/pre yes"]},
        {"name": "capd_started", "cmds": ["setparam test.hook.started yes"]}
      ],
      "services": [{
        "name": "capd", "uid": "system", "gid": ["system", "log"], "caps": ["NET_BIND_SERVICE"], "importance": 5,
        "writepid": ["/data/c/pid"], "env": [{"name": "WHO", "value": "capd"}],
        "jobs": {"pre-start": "capd_pre", "on-start": "capd_started"},
        "path": ["/bin/sh", "-c", "grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status > /data/c/status; echo \"$WHO $(cut -d' ' -f19 /proc/self/stat)\" > /data/c/env; exec sleep 1000"]
      }]
    }"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_until(WAIT, || read(&f, "data/c/env").lines().count() == 1), "log:\n{}", f.log_text());
    let st = read(&f, "data/c/status");
    let field = |k: &str| st.lines().find(|l| l.starts_with(k)).map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")).unwrap_or_default();
    assert_eq!(field("Uid:"), "1000 1000 1000 1000");
    assert_eq!(field("Gid:"), "1000 1000 1000 1000");
    assert_eq!(field("Groups:"), "1007");
    // CAP_NET_BIND_SERVICE is bit 10.
    assert_eq!(field("CapEff:"), "0000000000000400");
    assert_eq!(field("CapBnd:"), "0000000000000400");
    assert_eq!(field("CapAmb:"), "0000000000000400");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(read(&f, "data/c/env").trim(), "capd 5", "env and nice value");
    assert_eq!(read(&f, "data/c/pre"), "yes", "pre-start job ran");
    assert_eq!(f.get("test.hook.started").as_deref(), Some("yes"), "on-start job ran");
    assert_eq!(read(&f, "data/c/pid").trim(), f.get("startup.service.ctl.capd.pid").unwrap());
}

#[test]
fn sigterm_reboots_and_runs_the_reboot_job() {
    let cfg = r#"{"jobs": [{"name": "reboot", "cmds": ["write /data/reboot-job ran"]}],
                 "services": [{"name": "s", "path": ["/bin/sleep", "1000"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.s", "running", WAIT));
    // busybox `reboot` sends SIGTERM to PID 1.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(f.init_pid().unwrap()), nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = f.wait_exit(WAIT).expect("rebooted");
    assert_eq!(Fixture::exit_signal(&st), Some(libc::SIGHUP), "log:\n{}", f.log_text());
    assert_eq!(read(&f, "data/reboot-job"), "ran");
}

/// init raises its own descriptor limit for its clients; services start
/// with the limit init was given, or what `setrlimit RLIMIT_NOFILE` in a
/// cfg says for the services started after it.
#[test]
fn services_get_the_descriptor_limit_init_was_given() {
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let cfg = r#"{
      "jobs": [{"name": "post-init", "cmds": ["start before", "wait /data/before.done 30", "setrlimit RLIMIT_NOFILE 200 300", "start after"]}],
      "services": [
        {"name": "before", "path": ["/bin/sh", "-c", "echo $(ulimit -Sn) $(ulimit -Hn) > /data/before; touch /data/before.done; exec sleep 1000"], "start-mode": "condition"},
        {"name": "after", "path": ["/bin/sh", "-c", "echo $(ulimit -Sn) $(ulimit -Hn) > /data/after; exec sleep 1000"], "start-mode": "condition"}
      ]
    }"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_until(WAIT, || read(&f, "data/after").lines().count() == 1), "log:\n{}", f.log_text());
    assert_eq!(read(&f, "data/before").trim(), format!("{soft} {hard}"), "the limit init was started with");
    assert_eq!(read(&f, "data/after").trim(), "200 300", "the cfg's setrlimit");
    let init = f.init_pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{init}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let init_soft: u64 = line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).unwrap();
    assert!(init_soft >= hard, "init keeps its own raised limit (at least the hard limit it was given, {hard}): {line}");
}

/// Lists and service dumps far larger than one frame (64 KiB) come whole,
/// page by page, with the connection still in step afterwards; a caller
/// sees only what it may read, on every page.
#[test]
fn lists_larger_than_a_frame_come_whole_in_pages() {
    let value = "v".repeat(90);
    let mut para = String::new();
    for i in 0..1500 {
        para.push_str(&format!("test.big.open.{i:04}={value}\ntest.big.secret.{i:04}={value}\n"));
    }
    let dac = "test.big.open. = root:root:0777\ntest.big.secret. = root:root:0770\n";
    // 400 services, 100 a file (a cfg file's limit).
    let cfgs: Vec<(String, String)> = (0..4)
        .map(|k| {
            let services: Vec<String> =
                (0..100).map(|i| format!(r#"{{"name": "svc{k}{i:02}", "path": ["/bin/sleep", "{}"], "start-mode": "condition"}}"#, "1".repeat(60))).collect();
            (format!("etc/init/svc{k}.cfg"), format!(r#"{{"services": [{}]}}"#, services.join(",")))
        })
        .collect();
    let mut files = vec![("etc/param/big.para", para.as_str()), ("etc/param/big.para.dac", dac)];
    files.extend(cfgs.iter().map(|(p, c)| (p.as_str(), c.as_str())));
    let mut f = Fixture::new("{}", &files);
    f.boot();
    assert!(f.wait_until(WAIT, || f.get("test.big.secret.1499").is_some()), "log:\n{}", f.log_text());

    let root = f.client();
    let all = root.list("test.big.").expect("a 330 KB list");
    assert_eq!(all.len(), 3000);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in name order, no repeats");
    assert!(all.iter().all(|(_, v)| *v == value));
    assert_eq!(root.get("test.big.open.0007").unwrap(), value, "the connection is still in step");
    let svcs = root.dump_services(None).expect("400 services");
    assert_eq!(svcs.iter().filter(|s| s.name.starts_with("svc")).count(), 400, "{:?} log:\n{}", svcs.iter().map(|s| &s.name).collect::<Vec<_>>(), f.log_text());
    assert_eq!(root.dump_services(Some("svc399")).unwrap().len(), 1);

    let user = f.client_as(2000, 2000);
    let seen = user.list("test.big.").expect("uid 2000 lists");
    assert_eq!(seen.len(), 1500);
    assert!(seen.iter().all(|(k, _)| k.starts_with("test.big.open.")), "never a name it may not read");
    assert_eq!(user.list("test.big.secret.").unwrap(), vec![]);

    let (rc, out, err) = f.begetctl(&["param", "ls", "test.big."]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("test.big.")).count(), 3000);
}

/// A service asked for (samgr's on-demand load, begetctl) while the data
/// partition is still being prepared is held until `post-fs-data` has run,
/// then started; a `boot` service asked for then starts at once. The
/// `fs` job here waits for a gate the test opens.
#[test]
fn starts_asked_before_post_fs_data_wait_for_it() {
    let cfg = r#"{
      "jobs": [
        {"name": "fs", "cmds": ["syncexec /data/gate"]},
        {"name": "post-fs-data", "cmds": ["mkdir /data/ready 0755"]}
      ],
      "services": [
        {"name": "needs_data", "path": ["/bin/sh", "-c", "test -d /data/ready && exec sleep 1000"], "start-mode": "condition"},
        {"name": "cancelled", "path": ["/bin/sleep", "1000"], "start-mode": "condition"},
        {"name": "early", "path": ["/bin/sleep", "1000"], "start-mode": "boot", "disabled": 1}
      ]
    }"#;
    let gate = "#!/bin/sh\nwhile [ ! -e /data/open ]; do sleep 0.05; done\n";
    let mut f = Fixture::new(cfg, &[("data/gate", gate)]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.path("data/gate"), std::fs::Permissions::from_mode(0o755)).unwrap();
    f.boot();
    for name in ["needs_data", "cancelled", "early"] {
        let (rc, _, err) = f.begetctl(&["start_service", name]);
        assert_eq!(rc, 0, "{err}");
    }
    let held = |name: &str| format!("service {name}: start asked before post-fs-data: held");
    assert!(f.wait_until(WAIT, || f.log_text().contains(&held("needs_data")) && f.log_text().contains(&held("cancelled"))), "log:\n{}", f.log_text());
    assert!(!f.log_text().contains(&held("early")), "a boot service was held:\n{}", f.log_text());
    assert!(f.wait_param("startup.service.ctl.early", "running", WAIT), "log:\n{}", f.log_text());
    assert!(!std::fs::exists(f.path("data/ready")).unwrap(), "post-fs-data ran before the gate opened");
    assert_ne!(f.get("startup.service.ctl.needs_data").as_deref(), Some("running"));
    let (rc, _, err) = f.begetctl(&["stop_service", "cancelled"]);
    assert_eq!(rc, 0, "{err}");
    assert!(f.wait_until(WAIT, || f.log_text().contains("service cancelled: its held start is cancelled")), "log:\n{}", f.log_text());

    std::fs::write(f.path("data/open"), "").unwrap();
    assert!(f.wait_param("startup.service.ctl.needs_data", "running", WAIT), "log:\n{}", f.log_text());
    // It saw /data prepared (it exits at once otherwise), and stays up.
    assert!(f.log_text().contains("service needs_data: post-fs-data has run: starting it as asked"), "log:\n{}", f.log_text());
    assert_ne!(f.get("startup.service.ctl.cancelled").as_deref(), Some("running"));
}
