//! The parameter service under attack from an unprivileged local user:
//! uid 2000 (group 2000, not in group system) against the real init as
//! PID 1 in namespaces (see `fixture`). Each test asserts that the bound
//! or rule holds and that root is still served afterwards.

mod fixture;

use std::time::Duration;

use accord_param::proto::ErrorKind;
use accord_param::ParamError;
use fixture::Fixture;

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
