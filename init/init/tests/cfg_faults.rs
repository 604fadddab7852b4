//! Bad or unusual cfg input never leaves init worse off (issue 7, parts 3
//! and 5): each test boots the real init as PID 1 in namespaces (see
//! `fixture`) with a cfg in the shape that used to hurt it, and checks the
//! behaviour a user sees. Every wait polls a condition with a generous
//! deadline; no test measures elapsed time.

use std::time::Duration;

use accord_testkit::Fixture;

const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until init's log contains `needle`; panics with the log if not.
fn wait_log(f: &Fixture, needle: &str) {
    assert!(f.wait_until(DEADLINE, || f.log_text().contains(needle)), "log never showed {needle:?}; log:\n{}", f.log_text());
}

/// The `Cap*:` lines a service printed to its output (forwarded to the log).
fn cap_line(log: &str, service: &str, set: &str) -> Option<String> {
    log.lines().filter(|l| l.contains(service)).find_map(|l| l.split(&format!("{set}:")).nth(1).map(|v| v.trim().to_owned()))
}

#[test]
fn root_service_with_caps_starts_with_exactly_those_caps() {
    // CAP_NET_BIND_SERVICE is capability 10: mask 0x400. Named and numeric
    // spellings must behave the same.
    let cfg = r#"{"services": [
      {"name": "capsname", "path": ["/bin/sh", "-c", "grep Cap /proc/self/status; exec sleep 100000"], "caps": ["NET_BIND_SERVICE"]},
      {"name": "capsnum", "path": ["/bin/sh", "-c", "grep Cap /proc/self/status; exec sleep 100000"], "caps": [10]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    for svc in ["capsname", "capsnum"] {
        assert!(f.wait_param(&format!("startup.service.ctl.{svc}"), "running", DEADLINE), "{svc} did not start; log:\n{}", f.log_text());
        assert!(f.wait_until(DEADLINE, || cap_line(&f.log_text(), svc, "CapAmb").is_some()), "{svc} printed no caps; log:\n{}", f.log_text());
        let log = f.log_text();
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(cap_line(&log, svc, set).as_deref(), Some("0000000000000400"), "{svc} {set}; log:\n{log}");
        }
    }
    assert!(!f.log_text().contains("cannot run /bin/sh"), "{}", f.log_text());
}

#[test]
fn missing_binary_with_caps_is_still_an_exec_error() {
    // The child reports a failed setup step through its own pipe; a setup
    // that succeeded must not turn an exec failure into a setup one.
    let cfg = r#"{"services": [{"name": "nobin", "path": ["/system/bin/not_here"], "caps": ["NET_BIND_SERVICE"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.nobin", "error", DEADLINE), "log:\n{}", f.log_text());
    wait_log(&f, "service nobin: cannot run /system/bin/not_here");
    assert!(!f.log_text().contains("failed in the child before exec"), "{}", f.log_text());
}

#[test]
fn absurd_numbers_in_commands_are_errors_naming_file_and_command() {
    let cfg = r#"{"jobs": [{"name": "init", "cmds": [
        "sleep nan", "sleep inf", "sleep -1", "sleep 1e300", "sleep many",
        "wait /dev/never_there inf", "wait /dev/never_there NaN", "wait /dev/never_there -5", "wait /dev/never_there 1e9",
        "mkdir /data/m 77777777777",
        "export ${unset.name} v", "export A=B v",
        "setparam test.after.numbers done"
    ]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("test.after.numbers", "done", DEADLINE), "log:\n{}", f.log_text());
    // The log reaches the test through a pipe: wait for each line.
    for (j, word) in ["nan", "inf", "-1", "1e300", "many"].iter().enumerate() {
        wait_log(&f, &format!("/etc/init.cfg:2: jobs[0].cmds[{j}]: sleep {word}: sleep: \"{word}\""));
    }
    for (j, word) in ["inf", "NaN", "-5", "1e9"].iter().enumerate() {
        wait_log(&f, &format!("/etc/init.cfg:3: jobs[0].cmds[{}]: wait /dev/never_there {word}: wait: timeout \"{word}\"", j + 5));
    }
    wait_log(&f, "/etc/init.cfg:4: jobs[0].cmds[9]: mkdir");
    wait_log(&f, "/etc/init.cfg:5: jobs[0].cmds[10]: export ${unset.name} v: export: \"\" is not a valid variable name");
    wait_log(&f, "/etc/init.cfg:5: jobs[0].cmds[11]: export A=B v: export: \"A=B\" is not a valid variable name");
    assert!(!f.log_text().contains("panicked"), "{}", f.log_text());
}

#[test]
fn a_panicking_command_leaves_no_state_behind() {
    // Each set of test.panic runs a job whose first command panics (a
    // debug-build-only hook). Job nesting is capped at 8: had the panics
    // leaked nesting depth, the later job could not run.
    let cfg = r#"{"jobs": [
        {"name": "param:test.panic=*", "cmds": ["__accord_test_panic", "setparam test.panic.after ${test.panic}"]},
        {"name": "param:test.later=*", "cmds": ["setparam test.later.ran yes"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    let c = f.client();
    for i in 0..12 {
        c.set("test.panic", &i.to_string()).expect("set test.panic");
        // The rest of the job ran after the panicking command.
        assert!(f.wait_param("test.panic.after", &i.to_string(), DEADLINE), "round {i}; log:\n{}", f.log_text());
    }
    c.set("test.later", "1").expect("set test.later");
    assert!(f.wait_param("test.later.ran", "yes", DEADLINE), "log:\n{}", f.log_text());
    wait_log(&f, "/etc/init.cfg:2: jobs[0].cmds[0]: __accord_test_panic : the command panicked");
}

#[test]
fn boot_stage_in_a_trigger_condition_runs_at_the_stage_and_on_later_changes() {
    // OpenHarmony's USB cfg shape: a job named and conditioned on a boot
    // stage combined with a parameter.
    let cfg = r#"{"jobs": [
        {"name": "init", "cmds": ["setparam test.edge.usb early"]},
        {"name": "post-fs", "cmds": ["setparam test.usbjob.at.postfs x${test.edge.usbjob}"]},
        {"name": "boot && param:test.edge.usb=*", "condition": "boot && test.edge.usb=*", "cmds": ["setparam test.edge.usbjob ran-${test.edge.usb}"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    // At `boot` the parameter already matched: the job ran then, not before.
    assert!(f.wait_param("test.edge.usbjob", "ran-early", DEADLINE), "log:\n{}", f.log_text());
    assert_eq!(f.get("test.usbjob.at.postfs").as_deref(), Some("x"), "the job ran before boot; log:\n{}", f.log_text());
    // A later change runs it again.
    f.client().set("test.edge.usb", "hdc").expect("set");
    assert!(f.wait_param("test.edge.usbjob", "ran-hdc", DEADLINE), "log:\n{}", f.log_text());
    assert!(!f.log_text().contains("bad condition"), "{}", f.log_text());
}

#[test]
fn boot_events_of_failed_or_unstarted_services_do_not_block_boot_completion() {
    // failev cannot start; lazy is ondemand and never started; manual is a
    // condition service nobody starts; good sets its event.
    let cfg = r#"{"services": [
      {"name": "failev", "path": ["/system/bin/not_here_either"], "bootevents": ["bootevent.failev.ready"]},
      {"name": "lazy", "path": ["/bin/sleep", "100000"], "ondemand": true, "bootevents": ["bootevent.lazy.ready"]},
      {"name": "manual", "path": ["/bin/sleep", "100000"], "start-mode": "condition", "bootevents": ["bootevent.manual.ready"]},
      {"name": "good", "path": ["/bin/sh", "-c", "/system/bin/param set bootevent.good.ready true; exec sleep 100000"], "bootevents": ["bootevent.good.ready"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("bootevent.boot.completed", "true", DEADLINE), "log:\n{}", f.log_text());
    assert!(f.get("ohos.boot.time.good.ready").is_some());
    wait_log(&f, "service failev failed: its boot events bootevent.failev.ready will not come");
    wait_log(&f, "boot completes without boot events of services that failed or were never started: bootevent.failev.ready, bootevent.lazy.ready, bootevent.manual.ready");
}

#[test]
fn missing_boot_events_are_named_with_their_services_after_the_timeout() {
    // Only events nobody sets, so what the timeout names does not depend on
    // how fast other services are.
    let cfg = r#"{"services": [
      {"name": "slowpoke", "path": ["/bin/sleep", "100000"], "bootevents": ["bootevent.slowpoke.ready", "bootevent.slowpoke.other"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/timeout.para", "const.startup.bootevent.timeout=1\n")]);
    f.boot();
    wait_log(&f, "bootevent.boot.completed has not come 1 s after the boot sequence; still waiting for: bootevent.slowpoke.ready (service slowpoke), bootevent.slowpoke.other (service slowpoke)");
    assert_eq!(f.get("bootevent.boot.completed"), None);
    // The events still complete the boot when they come.
    let c = f.client();
    c.set("bootevent.slowpoke.ready", "true").expect("set");
    c.set("bootevent.slowpoke.other", "true").expect("set");
    assert!(f.wait_param("bootevent.boot.completed", "true", DEADLINE), "log:\n{}", f.log_text());
}

#[test]
fn mounting_a_type_the_kernel_lacks_fails_at_once_naming_the_command() {
    // No module loader runs in the fixture, so nothing can still provide
    // the type: the mount fails with ENODEV and the job goes on.
    let cfg = r#"{"jobs": [{"name": "post-fs", "cmds": ["mount accordnofs none /config nodev noexec nosuid", "setparam test.after.mount done"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("test.after.mount", "done", DEADLINE), "log:\n{}", f.log_text());
    wait_log(
        &f,
        "/etc/init.cfg:1: jobs[0].cmds[0]: mount accordnofs none /config nodev noexec nosuid: mount accordnofs none on /config: the kernel has no filesystem type \"accordnofs\" and no module loader is running (ENODEV)",
    );
}

/// Connects to a socket init made, from the host side.
fn connect_service_socket(f: &Fixture, name: &str) -> std::io::Result<std::os::unix::net::UnixStream> {
    let pid = f.init_pid().expect("init runs");
    std::os::unix::net::UnixStream::connect(format!("/proc/{pid}/root/dev/unix/socket/{name}"))
}

/// Whether a pending client got hung up on (EOF or reset) rather than left
/// waiting: reads with a generous timeout.
fn hung_up(mut s: std::os::unix::net::UnixStream) -> Result<(), String> {
    use std::io::Read;
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        other => Err(format!("the pending client was left waiting: {other:?}")),
    }
}

#[test]
fn ondemand_service_that_never_accepts_backs_off_then_fails_and_refuses_clients() {
    let cfg = r#"{"services": [
     {"name": "noaccept", "path": ["/bin/sh", "-c", "echo x >> /data/noaccept.count; exit 0"], "ondemand": true,
      "socket": [{"name": "noaccept", "family": "AF_UNIX", "type": "SOCK_STREAM", "permissions": "0666"}]},
     {"name": "sockmissing", "path": ["/system/bin/not_here"], "ondemand": true,
      "socket": [{"name": "sockmissing", "family": "AF_UNIX", "type": "SOCK_STREAM", "permissions": "0666"}]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_until(DEADLINE, || f.log_text().contains("service noaccept waits for its first connection")), "{}", f.log_text());
    let pending = connect_service_socket(&f, "noaccept").expect("connect noaccept");
    assert!(f.wait_param("startup.service.ctl.noaccept", "error", DEADLINE), "log:\n{}", f.log_text());
    // Four starts (the crash limit), not a storm.
    let starts = std::fs::read_to_string(f.path("data/noaccept.count")).unwrap_or_default().lines().count();
    assert_eq!(starts, 4, "log:\n{}", f.log_text());
    wait_log(&f, "service noaccept crashed 4 times within 240 s without serving its sockets: marked failed");
    let (rc, out, err) = f.begetctl(&["dump_service", "noaccept"]);
    assert_eq!(rc, 0, "{err}");
    let row = out.lines().find(|l| l.starts_with("noaccept")).unwrap_or_default().to_owned();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.get(1).copied(), Some("error"), "{out}");
    assert_eq!(cols.get(3).copied(), Some("3"), "restart count in dump_service:\n{out}");
    hung_up(pending).unwrap();
    let e = connect_service_socket(&f, "noaccept").expect_err("a failed service's socket must refuse");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

    // A socket service whose binary is missing refuses at once too.
    let pending = connect_service_socket(&f, "sockmissing").expect("connect sockmissing");
    assert!(f.wait_param("startup.service.ctl.sockmissing", "error", DEADLINE), "log:\n{}", f.log_text());
    hung_up(pending).unwrap();
    let e = connect_service_socket(&f, "sockmissing").expect_err("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    // Starting it by hand makes the socket afresh (and fails again, saying so).
    let (rc, _, _) = f.begetctl(&["start_service", "noaccept"]);
    assert_eq!(rc, 0);
    assert!(f.wait_until(DEADLINE, || std::fs::read_to_string(f.path("data/noaccept.count")).unwrap_or_default().lines().count() == 5), "{}", f.log_text());
}

#[test]
fn service_pid_is_published_on_start_and_cleared_on_exit() {
    // samgr checks a registering process against this parameter, so it must
    // be the process init started, and must not outlive it.
    let cfg = r#"{"services": [{"name": "pidsvc", "path": ["/bin/sleep", "100000"], "once": true}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.pidsvc", "running", DEADLINE), "log:\n{}", f.log_text());
    let ns_pid: i32 = f.get("startup.service.ctl.pidsvc.pid").expect("pid published").parse().expect("a number");
    let host = f.host_pid(ns_pid).expect("the published pid is a live process in init's namespace");
    let cmdline = std::fs::read_to_string(format!("/proc/{host}/cmdline")).unwrap_or_default();
    assert!(cmdline.starts_with("/bin/sleep"), "pid {ns_pid} is not the service: {cmdline:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(host), nix::sys::signal::Signal::SIGKILL).expect("kill");
    assert!(f.wait_param("startup.service.ctl.pidsvc", "stopped", DEADLINE), "log:\n{}", f.log_text());
    assert_eq!(f.get("startup.service.ctl.pidsvc.pid").as_deref(), Some("0"));
}

/// Makes `rel` in the fixture's root an executable script.
fn script(f: &Fixture, rel: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(f.path(rel), format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(f.path(rel), std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn syncexec_reads_a_chatty_commands_output_and_reports_its_status() {
    // ~300 KiB of output, several pipe buffers: without a reader the
    // command blocks or dies of SIGPIPE before it writes its marker.
    let cfg = r#"{"jobs": [{"name": "init", "cmds": ["syncexec /data/chatty", "setparam test.after.chatty done"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    script(&f, "data/chatty", "i=0\nwhile [ $i -lt 6000 ]; do echo \"chatty line $i ..........................................\"; i=$((i+1)); done\necho finished > /data/chatty.done\nexit 3");
    f.boot();
    assert!(f.wait_param("test.after.chatty", "done", DEADLINE), "log:\n{}", f.log_text());
    // syncexec waited: the marker was written before the next command ran.
    assert_eq!(std::fs::read_to_string(f.path("data/chatty.done")).unwrap_or_default(), "finished\n");
    wait_log(&f, "chatty line 5999");
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[0]: syncexec /data/chatty: exit status 3");
}

#[test]
fn syncexec_waits_through_the_loop_so_init_serves_meanwhile() {
    // The command waits for a parameter that only the test sets: init must
    // answer the command's own `param get`s and the test's set while the
    // syncexec is pending.
    let cfg = r#"{"jobs": [{"name": "init", "cmds": ["syncexec /data/waiter", "setparam test.after.waiter done"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    script(&f, "data/waiter", "until [ \"$(/system/bin/param get test.go 2>/dev/null)\" = 1 ]; do sleep 0.05; done\necho seen > /data/waiter.done");
    f.boot();
    f.client().set("test.go", "1").expect("init serves a set while syncexec waits");
    assert!(f.wait_param("test.after.waiter", "done", DEADLINE), "log:\n{}", f.log_text());
    assert_eq!(std::fs::read_to_string(f.path("data/waiter.done")).unwrap_or_default(), "seen\n");
}

#[test]
fn syncexec_past_its_deadline_is_killed_and_named() {
    let cfg = r#"{"jobs": [{"name": "init", "cmds": ["syncexec /bin/sleep 100000", "setparam test.after.sleeper done"]}]}"#;
    let mut f = Fixture::new(cfg, &[("etc/param/sync.para", "const.startup.syncexec.timeout=1\n")]);
    f.boot();
    assert!(f.wait_param("test.after.sleeper", "done", DEADLINE), "log:\n{}", f.log_text());
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[0]: syncexec /bin/sleep 100000: did not finish within 1 s; killed");
    // No sleep process is left behind.
    assert!(f.wait_until(DEADLINE, || f
        .processes()
        .iter()
        .all(|(host, _, _)| !std::fs::read_to_string(format!("/proc/{host}/cmdline")).unwrap_or_default().starts_with("/bin/sleep"))));
}

#[test]
fn mount_fstab_mounts_entries_and_names_bad_lines() {
    let fstab = "# OpenHarmony-style fstab\n\
                 tmpfs /data/mnt1 tmpfs nosuid,nodev,size=1m,mode=0750 wait\n\
                 /dev/vdz /data/short ext4 rw\n\
                 none /data/opt accordnofs rw nofail\n\
                 none /data/req accordnofs rw wait,required\n\
                 tmpfs /data/mnt2 tmpfs ro defaults\n";
    let cfg = r#"{"jobs": [{"name": "post-fs", "cmds": ["mount_fstab /etc/fstab.test", "setparam test.after.fstab done"]}]}"#;
    let mut f = Fixture::new(cfg, &[("etc/fstab.test", fstab)]);
    f.boot();
    assert!(f.wait_param("test.after.fstab", "done", DEADLINE), "log:\n{}", f.log_text());
    let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", f.init_pid().expect("init"))).expect("mounts");
    let m1 = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/data/mnt1")).unwrap_or_else(|| panic!("/data/mnt1 not mounted:\n{mounts}"));
    assert!(m1.contains(" tmpfs ") && m1.contains("nosuid") && m1.contains("nodev") && m1.contains("mode=750"), "{m1}");
    let m2 = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/data/mnt2")).unwrap_or_else(|| panic!("/data/mnt2 not mounted:\n{mounts}"));
    assert!(m2.split_whitespace().nth(3).is_some_and(|o| o.split(',').any(|x| x == "ro")), "{m2}");
    wait_log(&f, "/etc/fstab.test:3: 4 fields");
    wait_log(&f, "/etc/fstab.test:4: mount accordnofs none on /data/opt");
    wait_log(&f, "(nofail)");
    wait_log(&f, "/etc/fstab.test:5: mount accordnofs none on /data/req");
    wait_log(&f, "(a required partition)");
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[0]: mount_fstab /etc/fstab.test: 2 of the entries in /etc/fstab.test failed");
}

#[test]
fn chmoddir_changes_a_tree_without_following_links() {
    let cfg =
        r#"{"jobs": [{"name": "post-fs-data", "cmds": ["chmoddir 0750 /data/tree", "chmoddir 0750 /data/tree/a/file", "setparam test.after.chmoddir done"]}]}"#;
    let mut f = Fixture::new(cfg, &[("data/tree/a/b/deep", "x"), ("data/tree/a/file", "y"), ("data/outside", "z")]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.path("data/outside"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink("/data/outside", f.path("data/tree/link")).unwrap();
    f.boot();
    assert!(f.wait_param("test.after.chmoddir", "done", DEADLINE), "log:\n{}", f.log_text());
    for p in ["data/tree", "data/tree/a", "data/tree/a/b", "data/tree/a/b/deep", "data/tree/a/file"] {
        assert_eq!(std::fs::metadata(f.path(p)).unwrap().permissions().mode() & 0o7777, 0o750, "{p}");
    }
    assert_eq!(std::fs::metadata(f.path("data/outside")).unwrap().permissions().mode() & 0o7777, 0o644, "followed a symlink");
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[1]: chmoddir 0750 /data/tree/a/file: chmoddir /data/tree/a/file: not a directory");
}

#[test]
fn commands_accepted_but_not_carried_out_say_so() {
    let cfg = r#"{"jobs": [{"name": "init", "cmds": ["bootchart start", "setloglevel 4", "mkswap /dev/zram0", "restorecon /data", "no_such_command x", "setparam test.after.unsupported done"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("test.after.unsupported", "done", DEADLINE), "log:\n{}", f.log_text());
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[0]: bootchart start: bootchart is not supported on Accord");
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[1]: setloglevel 4: not supported");
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[2]: mkswap /dev/zram0: swap is not supported");
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[3]: restorecon /data: SELinux");
    wait_log(&f, "/etc/init.cfg:1: jobs[0].cmds[4]: no_such_command x: unknown command");
}

#[test]
fn reboot_mode_goes_to_the_kernel_with_restart2() {
    let mut f = Fixture::new(r#"{"services": [{"name": "s", "path": ["/bin/sleep", "100000"]}]}"#, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.s", "running", DEADLINE));
    let (rc, _, err) = f.begetctl(&["reboot", "sideways"]);
    assert_ne!(rc, 0);
    assert!(err.contains("unknown reboot mode \"sideways\""), "{err}");
    let (rc, _, err) = f.begetctl(&["reboot", "updater"]);
    assert_eq!(rc, 0, "{err}");
    let st = f.wait_exit(DEADLINE).expect("init rebooted");
    assert_eq!(Fixture::exit_signal(&st), Some(libc::SIGHUP), "RESTART2 ends a pid namespace with SIGHUP; log:\n{}", f.log_text());
    wait_log(&f, "calling reboot(2) RESTART2 \"updater\"");
}

#[test]
fn sleep_and_wait_in_a_job_do_not_stop_init_serving() {
    // The boot job sleeps (then waits for a file the test never makes);
    // meanwhile a client's set is answered and its param job runs, seeing
    // that the boot job has not finished.
    let cfg = r#"{"jobs": [
        {"name": "init", "cmds": ["sleep 30", "wait /data/never 30", "setparam test.after.sleep done"]},
        {"name": "param:test.ping=*", "cmds": ["setparam test.pong x${test.after.sleep}"]}
    ]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    f.client().set("test.ping", "1").expect("init serves a set while a job sleeps");
    assert!(f.wait_param("test.pong", "x", DEADLINE), "log:\n{}", f.log_text());
    assert_eq!(f.get("test.after.sleep"), None);
}

#[test]
fn a_clients_requests_keep_their_order_while_its_job_waits() {
    // Two requests on one connection: a set whose job sleeps, then a get of
    // what that job sets after its sleep. init serves others meanwhile, but
    // this client's get must be answered after its set's job finished.
    use accord_param::proto::{encode_frame, FrameDecoder, Request, Response};
    use std::io::{Read, Write};
    let cfg = r#"{"jobs": [{"name": "param:test.slow=*", "cmds": ["setparam test.slow.started yes", "sleep 2", "setparam test.slow.done yes"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    let mut s = std::os::unix::net::UnixStream::connect(f.socket()).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(&encode_frame(&Request::Set { name: "test.slow".into(), value: "1".into() })).expect("send set");
    // Another client is served while the job sleeps…
    assert!(f.wait_param("test.slow.started", "yes", DEADLINE), "log:\n{}", f.log_text());
    assert_eq!(f.client().get_opt("test.slow.done").expect("served meanwhile"), None);
    // …but this client's next request waits for its set to finish.
    s.write_all(&encode_frame(&Request::Get { name: "test.slow.done".into() })).expect("send get");
    let mut dec = FrameDecoder::default();
    let mut replies = Vec::new();
    let mut buf = [0u8; 4096];
    while replies.len() < 2 {
        let n = s.read(&mut buf).expect("reply");
        assert!(n > 0, "init hung up");
        dec.push(&buf[..n]);
        while let Some(frame) = dec.next_frame().expect("frame") {
            replies.push(serde_json::from_slice::<Response>(&frame).expect("response"));
        }
    }
    assert!(matches!(replies[0], Response::Ok), "{replies:?}");
    assert!(matches!(&replies[1], Response::Value { value } if value == "yes"), "{replies:?}");
}

#[test]
fn a_failing_setup_step_is_named_not_blamed_on_exec() {
    // setgid(4294967295) is EINVAL: the child fails before exec, and the
    // error names that step.
    let cfg = r#"{"services": [{"name": "badgid", "path": ["/bin/sleep", "100000"], "uid": 2000, "gid": [4294967295], "caps": ["NET_BIND_SERVICE"]}]}"#;
    let mut f = Fixture::new(cfg, &[]);
    f.boot();
    assert!(f.wait_param("startup.service.ctl.badgid", "error", DEADLINE), "log:\n{}", f.log_text());
    wait_log(&f, "service badgid: setgid failed in the child before exec: Invalid argument");
    assert!(!f.log_text().contains("service badgid: cannot run"), "{}", f.log_text());
}
