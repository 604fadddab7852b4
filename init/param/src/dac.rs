//! Per-prefix permissions from OpenHarmony's `*.para.dac` files.
//!
//! A line `prefix = user:group:mode[:type]` gives the parameters under
//! `prefix` an owner, a group and a mode: three octal digits for owner,
//! group and others, each a sum of 4 (read), 2 (write) and 1 (watch). A
//! prefix ending in `.` covers every name that starts with it; any other
//! prefix covers that name and the names below it (`ohos.boot.sn` covers
//! `ohos.boot.sn` and `ohos.boot.sn.x`, not `ohos.boot.snx`), as
//! OpenHarmony's trie of labels does. The longest covering rule decides; `*`
//! is the default rule. Root (uid 0) may do anything.
//!
//! Following OpenHarmony's startup_init (`DAC_DEFAULT_MODE`), a name that no
//! rule covers belongs to root:root with mode 0774: others may read it,
//! never write or watch it. The file syntax is what OpenHarmony's
//! `SplitParamString` and `GetParamDacData` accept: `#` starts a comment
//! line, spaces around `=` and `:` are optional, the value may be in double
//! quotes, the name ends at the first blank. A rule whose user or group is
//! unknown is kept with its mode and the unknown owner matches nobody
//! ([`NOBODY`]), so it never falls back to a looser rule; a mode that is not
//! octal keeps the rule as 0000 (root only). Each such problem is reported
//! with the file and line it comes from.
//! `type` (`int`, `bool`, `string`) constrains the values a set may carry.

use std::collections::HashMap;

use crate::ParamError;

/// The id an unknown user or group resolves to: no process has it (the
/// kernel reserves `(uid_t)-1`), so a rule owned by it grants its owner or
/// group bits to nobody. OpenHarmony uses the same `-1`.
pub const NOBODY: u32 = u32::MAX;

/// Mode of a name no rule covers (OpenHarmony's `DAC_DEFAULT_MODE`).
pub const DEFAULT_MODE: u32 = 0o774;

/// Who is asking, from the socket's SO_PEERCRED and SO_PEERGROUPS: the
/// kernel's word, never the peer's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (see [`crate::cred::peer_groups`]).
    pub groups: Vec<u32>,
}

impl Caller {
    /// A caller in no group of any rule and owning nothing: "everyone".
    pub fn anyone() -> Caller {
        Caller { uid: NOBODY - 1, gid: NOBODY - 1, groups: Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Watch,
}

impl Op {
    fn bit(self) -> u32 {
        match self {
            Op::Read => 4,
            Op::Write => 2,
            Op::Watch => 1,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Watch => "watch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
    Int,
    Bool,
}

/// One DAC rule. `uid`/`gid` are [`NOBODY`] when the file named an
/// unknown user or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// "" for the `*` rule.
    pub prefix: String,
    pub uid: u32,
    pub gid: u32,
    /// Low nine bits: owner, group, others.
    pub mode: u32,
    pub value_type: ValueType,
}

/// The name whose rule decides a write of `value` to `name`. As in
/// OpenHarmony (`GetServiceCtrlInfo`), control parameters are checked
/// under `ohos.servicectrl.`: `ohos.ctl.start|stop|term = svc` as
/// `ohos.servicectrl.start|stop|term.svc`, `ohos.startup.powerctrl = v`
/// as `ohos.servicectrl.reboot.v`; other names as themselves.
pub fn write_key(name: &str, value: &str) -> std::borrow::Cow<'static, str> {
    match name {
        "ohos.ctl.start" | "ohos.ctl.stop" | "ohos.ctl.term" => format!("ohos.servicectrl.{}.{value}", &name["ohos.ctl.".len()..]).into(),
        "ohos.startup.powerctrl" => format!("ohos.servicectrl.reboot.{value}").into(),
        _ => name.to_owned().into(),
    }
}

/// The rule of names no rule covers: root:root, [`DEFAULT_MODE`].
pub static DEFAULT_RULE: Rule = Rule { prefix: String::new(), uid: 0, gid: 0, mode: DEFAULT_MODE, value_type: ValueType::String };

#[derive(Debug, Default, Clone)]
pub struct Dac {
    /// Longest prefix first.
    rules: Vec<Rule>,
}

/// `name → id` from /etc/passwd or /etc/group contents (third field).
pub fn parse_id_file(text: &str) -> HashMap<String, u32> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            let id = f.next()?.parse().ok()?;
            Some((name.to_owned(), id))
        })
        .collect()
}

/// Splits one line of a `.para` or `.para.dac` file the way OpenHarmony's
/// `SplitParamString` does: leading blanks skipped, `#` at the start is a
/// comment, the name is what precedes the first `=` up to its first blank,
/// the value is trimmed and loses one pair of surrounding double quotes.
/// `Ok(None)` for blank and comment lines; `Err` says what is wrong.
pub fn split_line(raw: &str) -> Result<Option<(&str, &str)>, &'static str> {
    let line = raw.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let Some((name, value)) = line.split_once('=') else { return Err("expected `name = value`") };
    let name = name.split(char::is_whitespace).next().unwrap_or("");
    if name.is_empty() {
        return Err("empty name before `=`");
    }
    let mut value = value.trim();
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        value = &value[1..value.len() - 1];
    }
    Ok(Some((name, value)))
}

/// Does a rule for `prefix` cover `name`? (see the module docs)
fn covers(prefix: &str, name: &str) -> bool {
    if prefix.is_empty() || prefix.ends_with('.') {
        return name.starts_with(prefix);
    }
    name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

impl Dac {
    /// Parses one DAC file's text; returns the rules and one message per
    /// problem ("line N: ..."). `passwd`/`group` are the files' contents.
    pub fn parse(text: &str, passwd: &str, group: &str) -> (Dac, Vec<String>) {
        let mut dac = Dac::default();
        let problems = dac.add_file("", text, passwd, group);
        (dac, problems)
    }

    /// Adds the rules of one file, named `origin` in messages
    /// (`origin:N: ...`, or `line N: ...` when `origin` is empty). A later
    /// rule for the same prefix replaces an earlier one. Returns the
    /// problems found; every line with a prefix and a `user:group:mode`
    /// shape yields a rule, however wrong its parts (see the module docs).
    pub fn add_file(&mut self, origin: &str, text: &str, passwd: &str, group: &str) -> Vec<String> {
        let users = parse_id_file(passwd);
        let groups = parse_id_file(group);
        let id = |s: &str, table: &HashMap<String, u32>| -> Option<u32> { s.parse().ok().or_else(|| table.get(s).copied()).or((s == "root").then_some(0)) };
        let mut problems = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let at = if origin.is_empty() { format!("line {}", i + 1) } else { format!("{origin}:{}", i + 1) };
            let bad = |why: &str| format!("{at}: {why}: {:?}", raw.trim());
            let (prefix, spec) = match split_line(raw) {
                Ok(None) => continue,
                Ok(Some(p)) => p,
                Err(why) => {
                    problems.push(bad(&format!("{why}; line ignored")));
                    continue;
                }
            };
            // A trailing comment after the spec is tolerated.
            let spec = spec.split(" #").next().unwrap_or("").split("\t#").next().unwrap_or("");
            let f: Vec<&str> = spec.split(':').map(str::trim).collect();
            if f.len() < 3 {
                problems.push(bad("expected user:group:mode[:type]; line ignored"));
                continue;
            }
            let uid = id(f[0], &users).unwrap_or_else(|| {
                problems.push(bad(&format!("unknown user {:?}: the rule is kept and its owner bits apply to nobody", f[0])));
                NOBODY
            });
            let gid = id(f[1], &groups).unwrap_or_else(|| {
                problems.push(bad(&format!("unknown group {:?}: the rule is kept and its group bits apply to nobody", f[1])));
                NOBODY
            });
            let mode = match u32::from_str_radix(f[2], 8) {
                Ok(m) if m <= 0o7777 => m & 0o777,
                _ => {
                    problems.push(bad(&format!("mode {:?} is not an octal mode: the rule is kept as 0000 (root only)", f[2])));
                    0
                }
            };
            let value_type = match f.get(3).copied() {
                None | Some("string") | Some("") => ValueType::String,
                Some("int") => ValueType::Int,
                Some("bool") => ValueType::Bool,
                Some(t) => {
                    problems.push(bad(&format!("unknown type {t:?}: taken as string")));
                    ValueType::String
                }
            };
            if f.len() > 4 {
                problems.push(bad("fields after the type are ignored"));
            }
            let prefix = if prefix == "*" { String::new() } else { prefix.to_owned() };
            let rule = Rule { prefix, uid, gid, mode, value_type };
            match self.rules.iter_mut().find(|r| r.prefix == rule.prefix) {
                Some(old) => *old = rule,
                None => self.rules.push(rule),
            }
        }
        // Longest prefix first, so the first covering rule decides.
        self.rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        problems
    }

    /// Every rule, longest prefix first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule that decides for `name` ([`DEFAULT_RULE`] when none covers it).
    pub fn rule_for(&self, name: &str) -> &Rule {
        self.rules.iter().find(|r| covers(&r.prefix, name)).unwrap_or(&DEFAULT_RULE)
    }

    /// May `caller` do `op` on `name`? Root may do anything; otherwise the
    /// owner bits apply to the rule's uid, the group bits to a caller whose
    /// primary or supplementary groups hold the rule's gid, the others
    /// bits to everyone else. Errors: [`ParamError::PermissionDenied`].
    pub fn check(&self, name: &str, caller: &Caller, op: Op) -> Result<(), ParamError> {
        if caller.uid == 0 {
            return Ok(());
        }
        let rule = self.rule_for(name);
        let bits = if caller.uid == rule.uid {
            rule.mode >> 6
        } else if rule.gid != NOBODY && (caller.gid == rule.gid || caller.groups.contains(&rule.gid)) {
            rule.mode >> 3
        } else {
            rule.mode
        } & 7;
        if bits & op.bit() != 0 {
            Ok(())
        } else {
            Err(ParamError::PermissionDenied { name: name.to_owned(), op: op.verb().to_owned() })
        }
    }

    /// Does `value` fit the type the rule for `name` declares?
    pub fn check_type(&self, name: &str, value: &str) -> Result<(), ParamError> {
        let rule = self.rule_for(name);
        let ok = match rule.value_type {
            ValueType::String => true,
            ValueType::Int => value.parse::<i64>().is_ok(),
            ValueType::Bool => matches!(value, "true" | "false" | "1" | "0"),
        };
        if ok {
            Ok(())
        } else {
            let expected = match rule.value_type {
                ValueType::Int => "int",
                ValueType::Bool => "bool",
                ValueType::String => "string",
            };
            Err(ParamError::TypeMismatch { name: name.to_owned(), expected: expected.to_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PASSWD: &str = "root:x:0:0::/:/bin/sh\nsystem:x:1000:1000::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nsystem:x:1000:\nlog:x:1007:\n";

    fn dac() -> Dac {
        let text =
            "# comment\n* = root:root:0775\nsys. = system:system:0770\nsys.open. = root:root:0777\nsys.log. = root:log:0760:int\nflag. = root:root:0777:bool\n";
        let (d, p) = Dac::parse(text, PASSWD, GROUP);
        assert!(p.is_empty(), "{p:?}");
        d
    }

    fn who(uid: u32, gid: u32, groups: &[u32]) -> Caller {
        Caller { uid, gid, groups: groups.to_vec() }
    }

    #[test]
    fn longest_prefix_and_mode_bits() {
        let d = dac();
        let other = who(2000, 2000, &[]);
        let system = who(1000, 1000, &[]);
        assert!(d.check("sys.x", &system, Op::Write).is_ok());
        assert!(d.check("sys.x", &other, Op::Read).is_err());
        assert!(d.check("sys.open.x", &other, Op::Write).is_ok());
        assert!(d.check("any.thing", &other, Op::Read).is_ok());
        assert!(d.check("any.thing", &other, Op::Write).is_err());
        assert!(d.check("any.thing", &other, Op::Watch).is_ok());
        // Supplementary group gets the group bits (6 = read+write, no watch).
        let logger = who(2000, 2000, &[1007]);
        assert!(d.check("sys.log.level", &logger, Op::Write).is_ok());
        assert!(d.check("sys.log.level", &logger, Op::Watch).is_err());
        assert!(d.check("sys.x", &who(0, 0, &[]), Op::Write).is_ok(), "root may do anything");
        let msg = d.check("sys.x", &other, Op::Write).unwrap_err().to_string();
        assert!(msg.contains("sys.x") && msg.contains("permission denied"), "{msg}");
    }

    #[test]
    fn uncovered_names_get_openharmonys_default_0774() {
        // No `*` rule, as in OpenHarmony's own ohos.para.dac.
        let (d, p) = Dac::parse("const.product. = root:root:0775\n", PASSWD, GROUP);
        assert!(p.is_empty(), "{p:?}");
        let other = who(2000, 2000, &[]);
        for name in ["ohos.ctl.stop", "persist.sys.x", "ohos.startup.powerctrl", "other.x"] {
            assert!(d.check(name, &other, Op::Write).is_err(), "{name} must not be writable by others");
            assert!(d.check(name, &other, Op::Read).is_ok(), "{name} is readable by others");
            assert!(d.check(name, &other, Op::Watch).is_err(), "0774 gives others no watch bit");
            assert!(d.check(name, &who(0, 0, &[]), Op::Write).is_ok());
        }
        assert_eq!(d.rule_for("other.x"), &DEFAULT_RULE);
        // The root group gets the group bits of the default (7).
        assert!(d.check("other.x", &who(5, 0, &[]), Op::Write).is_ok());
    }

    #[test]
    fn unknown_owner_keeps_the_rule_and_matches_nobody() {
        let text = "* = root:root:0775\nohos.boot.sn = root:deviceprivate:0750\nsvc. = samgr:root:0700\n";
        let (d, p) = Dac::parse(text, PASSWD, GROUP);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("line 2:") && p[0].contains("deviceprivate"), "{p:?}");
        assert!(p[1].starts_with("line 3:") && p[1].contains("samgr"), "{p:?}");
        let other = who(2000, 2000, &[]);
        assert!(d.check("ohos.boot.sn", &other, Op::Read).is_err(), "the serial number stays private");
        assert_eq!(d.rule_for("ohos.boot.sn").mode, 0o750);
        assert!(d.check("svc.x", &other, Op::Read).is_err());
        // Nobody gets the unknown owner's bits, not even a caller with id -1 in its groups.
        assert!(d.check("ohos.boot.sn", &who(2000, 2000, &[NOBODY]), Op::Read).is_err());
        assert!(d.check("ohos.boot.sn", &who(0, 0, &[]), Op::Read).is_ok());
    }

    #[test]
    fn a_name_rule_covers_its_subtree_only() {
        let (d, _) = Dac::parse("* = root:root:0777\nohos.boot.sn = root:root:0700\n", PASSWD, GROUP);
        let other = who(2000, 2000, &[]);
        assert!(d.check("ohos.boot.sn", &other, Op::Read).is_err());
        assert!(d.check("ohos.boot.sn.part", &other, Op::Read).is_err());
        assert!(d.check("ohos.boot.snx", &other, Op::Read).is_ok());
    }

    #[test]
    fn control_parameters_are_checked_under_servicectrl() {
        let (d, _) = Dac::parse("* = root:root:0777\nohos.servicectrl. = root:1050:0775\nohos.servicectrl.reboot. = root:1051:0775\n", PASSWD, GROUP);
        assert_eq!(write_key("ohos.ctl.start", "demo"), "ohos.servicectrl.start.demo");
        assert_eq!(write_key("ohos.ctl.term", "demo"), "ohos.servicectrl.term.demo");
        assert_eq!(write_key("ohos.startup.powerctrl", "reboot,shutdown"), "ohos.servicectrl.reboot.reboot,shutdown");
        assert_eq!(write_key("sys.x", "1"), "sys.x");
        let ctl = |v: &str| write_key("ohos.ctl.stop", v).into_owned();
        assert!(d.check(&ctl("demo"), &who(2000, 2000, &[]), Op::Write).is_err());
        assert!(d.check(&ctl("demo"), &who(2000, 2000, &[1050]), Op::Write).is_ok());
        let power = write_key("ohos.startup.powerctrl", "shutdown").into_owned();
        assert!(d.check(&power, &who(2000, 2000, &[1050]), Op::Write).is_err(), "servicectrl is not powerctrl");
        assert!(d.check(&power, &who(2000, 2000, &[1051]), Op::Write).is_ok());
    }

    #[test]
    fn types() {
        let d = dac();
        assert!(d.check_type("sys.log.level", "12").is_ok());
        assert!(matches!(d.check_type("sys.log.level", "high"), Err(ParamError::TypeMismatch { .. })));
        assert!(d.check_type("flag.x", "true").is_ok());
        assert!(d.check_type("flag.x", "maybe").is_err());
        assert!(d.check_type("sys.y", "anything").is_ok());
    }

    #[test]
    fn bad_lines_are_reported_and_fail_closed() {
        let (d, p) = Dac::parse("a. = nobody:root:0777\nb. = root:root:9\nc. root\nd. = root:root:0700:float\ne. = 1000:1000:0700\nf. = root\n", PASSWD, GROUP);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].starts_with("line 1:") && p[0].contains("nobody"));
        assert!(p[1].starts_with("line 2:") && p[1].contains("\"9\""));
        assert!(p[2].starts_with("line 3:"));
        assert!(p[3].starts_with("line 4:") && p[3].contains("float"));
        assert!(p[4].starts_with("line 6:"));
        assert_eq!(d.rule_for("e.x").uid, 1000);
        assert_eq!(d.rule_for("a.x").uid, NOBODY);
        assert_eq!(d.rule_for("b.x").mode, 0, "a bad mode keeps the rule, root only");
        assert_eq!(d.rule_for("d.x").value_type, ValueType::String);
        assert_eq!(d.rule_for("c.x"), &DEFAULT_RULE);
    }

    #[test]
    fn warnings_name_the_file_and_line() {
        let mut d = Dac::default();
        let p = d.add_file("/system/etc/param/private.para.dac", "# c\nohos.boot.sn = root:deviceprivate:0750\n", PASSWD, GROUP);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("/system/etc/param/private.para.dac:2: unknown group \"deviceprivate\""), "{p:?}");
    }

    #[test]
    fn later_rule_for_the_same_prefix_wins() {
        let mut d = Dac::default();
        d.add_file("a", "x. = root:root:0777\n", PASSWD, GROUP);
        d.add_file("b", "x. = root:root:0700\n", PASSWD, GROUP);
        assert_eq!(d.rule_for("x.y").mode, 0o700);
    }

    /// Lines in the shapes OpenHarmony's own DAC files use (startup_init's
    /// ohos.para.dac, and those samgr, powermgr, hiview ship).
    #[test]
    fn openharmony_shapes() {
        let passwd = "root:x:0:0:::\nsystem:x:1000:1000:::\nparamwatcher:x:1101:1101:::\n";
        let group = "root:x:0:\nsystem:x:1000:\nservicectrl:x:1050:\npowerctrl:x:1051:\nparamwatcher:x:1101:\n";
        let text = "\
# Copyright header
#   indented comment

ohos.servicectrl.           = system:servicectrl:0775
ohos.servicectrl.reboot.    = system:powerctrl:0775
bootevent.param_watcher.started                 = paramwatcher:paramwatcher:0775
startup.service.ctl.        = system:servicectrl:0775:int
persist.init.bootevent.enable         = root:root:0775:bool
const.product.udid          = root:deviceprivate:0750
persist.window.boot. = root:system:0775
debug.bytrace.   = root:system:0775
quoted.         = \"root:system:0770\"
\tspaced.name   =   root : system : 0770 : int
packed.=root:root:0700
";
        let (d, p) = Dac::parse(text, passwd, group);
        assert_eq!(p.len(), 1, "only the unknown group is reported: {p:?}");
        assert!(p[0].starts_with("line 9:"), "{p:?}");
        assert_eq!(d.rule_for("ohos.servicectrl.start.demo").gid, 1050);
        assert_eq!(d.rule_for("ohos.servicectrl.reboot.x").gid, 1051);
        assert_eq!(d.rule_for("startup.service.ctl.x").value_type, ValueType::Int);
        assert_eq!(d.rule_for("persist.init.bootevent.enable").value_type, ValueType::Bool);
        assert_eq!(d.rule_for("quoted.a").mode, 0o770);
        assert_eq!((d.rule_for("spaced.name").gid, d.rule_for("spaced.name").value_type), (1000, ValueType::Int));
        assert_eq!(d.rule_for("packed.x").mode, 0o700);
        assert_eq!(d.rule_for("bootevent.param_watcher.started").uid, 1101);
    }

    /// One generated line: its text, the rule it must give (if any), and
    /// how many problems it must report.
    type GenLine = (String, Option<Rule>, usize);

    fn ws() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), Just(" ".to_owned()), Just("   ".to_owned()), Just("\t".to_owned()), Just(" \t ".to_owned())]
    }

    /// Structure-aware DAC lines in the shapes OpenHarmony's files use,
    /// with faults injected: unknown owners, bad modes, unknown types.
    fn dac_line() -> impl Strategy<Value = GenLine> {
        let prefix = "[a-z]{1,6}(\\.[a-z_]{1,6}){0,2}\\.?";
        let user = prop_oneof![Just(("root", 0u32, 0usize)), Just(("system", 1000, 0)), Just(("1234", 1234, 0)), Just(("nouser", NOBODY, 1))];
        let group = prop_oneof![Just(("root", 0u32, 0usize)), Just(("log", 1007, 0)), Just(("55", 55, 0)), Just(("nogroup_x", NOBODY, 1))];
        let mode = prop_oneof![(0u32..0o1000).prop_map(|m| (format!("0{m:o}"), m, 0usize)), Just(("9x".to_owned(), 0, 1)), Just(("".to_owned(), 0, 1))];
        let ty = prop_oneof![
            Just(("".to_owned(), ValueType::String, 0usize)),
            Just((":int".to_owned(), ValueType::Int, 0)),
            Just((":bool".to_owned(), ValueType::Bool, 0)),
            Just((":string".to_owned(), ValueType::String, 0)),
            Just((":float".to_owned(), ValueType::String, 1))
        ];
        let rule = (prefix, user, group, mode, ty, ws(), ws(), ws(), any::<bool>()).prop_map(|(p, u, g, m, t, a, b, c, quoted)| {
            let spec = format!("{}:{c}{}{c}:{}{}", u.0, g.0, m.0, t.0);
            let spec = if quoted { format!("\"{spec}\"") } else { spec };
            let text = format!("{a}{p}{b}={c}{spec}{a}");
            let rule = Rule { prefix: p, uid: u.1, gid: g.1, mode: m.1, value_type: t.1 };
            (text, Some(rule), u.2 + g.2 + m.2 + t.2)
        });
        prop_oneof![
            6 => rule,
            1 => (ws(), ".{0,40}").prop_map(|(w, c)| (format!("{w}#{c}").replace(['\n', '\r'], " "), None, 0)),
            1 => ws().prop_map(|w| (w, None, 0)),
            1 => "[a-z.]{1,10}".prop_map(|p| (format!("{p} root root 0775"), None, 1)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn generated_dac_files_parse_as_intended(lines in proptest::collection::vec(dac_line(), 0..40)) {
            let text: String = lines.iter().map(|(t, _, _)| format!("{t}\n")).collect();
            let (d, problems) = Dac::parse(&text, PASSWD, GROUP);
            let mut want: HashMap<String, Rule> = HashMap::new();
            for (_, r, _) in &lines {
                if let Some(r) = r {
                    want.insert(r.prefix.clone(), r.clone());
                }
            }
            let expected_problems: usize = lines.iter().map(|(_, _, p)| p).sum();
            prop_assert_eq!(problems.len(), expected_problems, "{:?}\n{}", problems, text);
            prop_assert_eq!(d.rules().len(), want.len());
            for r in d.rules() {
                prop_assert_eq!(Some(r), want.get(&r.prefix), "{}", text);
            }
            // Longest first, so the first covering rule decides.
            prop_assert!(d.rules().windows(2).all(|w| w[0].prefix.len() >= w[1].prefix.len()));
        }

        #[test]
        fn arbitrary_dac_text_never_panics(text in ".{0,400}") {
            let (d, _) = Dac::parse(&text, PASSWD, GROUP);
            let _ = d.check("a.b", &who(2000, 2000, &[]), Op::Write);
        }
    }

    #[test]
    fn split_line_follows_openharmony() {
        assert_eq!(split_line("  # c"), Ok(None));
        assert_eq!(split_line(""), Ok(None));
        assert_eq!(split_line("a.b = \"x y\" "), Ok(Some(("a.b", "x y"))));
        assert_eq!(split_line("a.b=\"x"), Ok(Some(("a.b", "\"x"))));
        assert_eq!(split_line("a.b junk = v"), Ok(Some(("a.b", "v"))));
        assert_eq!(split_line("a=b=c"), Ok(Some(("a", "b=c"))));
        assert_eq!(split_line("a = v # not a comment"), Ok(Some(("a", "v # not a comment"))));
        assert!(split_line("no equals").is_err());
        assert!(split_line(" = v").is_err());
    }
}
