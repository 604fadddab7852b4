//! Per-prefix permissions from OpenHarmony's `*.para.dac` files.
//!
//! A line `prefix = user:group:mode[:type]` gives the parameters whose names
//! start with `prefix` an owner, a group and a mode: three octal digits for
//! owner, group and others, each a sum of 4 (read), 2 (write) and 1
//! (watch). The longest matching prefix decides; `*` is the default rule.
//! Root (uid 0) may do anything; a name no rule covers is open to all.
//! `type` (`int`, `bool`, `string`) constrains the values a set may carry.

use std::collections::HashMap;

use crate::ParamError;

/// Who is asking, from the socket's SO_PEERCRED (plus supplementary groups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub value_type: ValueType,
}

#[derive(Debug, Default, Clone)]
pub struct Dac {
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

impl Dac {
    /// Parses DAC text; returns the rules and one message per bad line
    /// ("line N: ..."). `passwd`/`group` are the files' contents.
    pub fn parse(text: &str, passwd: &str, group: &str) -> (Dac, Vec<String>) {
        let users = parse_id_file(passwd);
        let groups = parse_id_file(group);
        let id = |s: &str, table: &HashMap<String, u32>| -> Option<u32> { s.parse().ok().or_else(|| table.get(s).copied()).or((s == "root").then_some(0)) };
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}: {raw:?}", i + 1);
            let Some((prefix, spec)) = line.split_once('=') else {
                problems.push(bad("expected `prefix = user:group:mode`"));
                continue;
            };
            let prefix = prefix.trim();
            let f: Vec<&str> = spec.trim().split(':').map(str::trim).collect();
            if f.len() < 3 || f.len() > 4 {
                problems.push(bad("expected user:group:mode[:type]"));
                continue;
            }
            let Some(uid) = id(f[0], &users) else {
                problems.push(bad(&format!("unknown user {:?}", f[0])));
                continue;
            };
            let Some(gid) = id(f[1], &groups) else {
                problems.push(bad(&format!("unknown group {:?}", f[1])));
                continue;
            };
            let Ok(mode) = u32::from_str_radix(f[2], 8) else {
                problems.push(bad(&format!("mode {:?} is not octal", f[2])));
                continue;
            };
            let value_type = match f.get(3).copied() {
                None | Some("string") => ValueType::String,
                Some("int") => ValueType::Int,
                Some("bool") => ValueType::Bool,
                Some(t) => {
                    problems.push(bad(&format!("unknown type {t:?}")));
                    continue;
                }
            };
            let prefix = if prefix == "*" { String::new() } else { prefix.to_owned() };
            rules.push(Rule { prefix, uid, gid, mode: mode & 0o777, value_type });
        }
        // Longest prefix first, so the first match is the one that decides.
        rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        (Dac { rules }, problems)
    }

    pub fn rule_for(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| name.starts_with(&r.prefix))
    }

    /// May `caller` do `op` on `name`?
    pub fn check(&self, name: &str, caller: &Caller, op: Op) -> Result<(), ParamError> {
        if caller.uid == 0 {
            return Ok(());
        }
        let Some(rule) = self.rule_for(name) else { return Ok(()) };
        let bits = if caller.uid == rule.uid {
            rule.mode >> 6
        } else if caller.gid == rule.gid || caller.groups.contains(&rule.gid) {
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
        let Some(rule) = self.rule_for(name) else { return Ok(()) };
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

    const PASSWD: &str = "root:x:0:0::/:/bin/sh\nsystem:x:1000:1000::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nsystem:x:1000:\nlog:x:1007:\n";

    fn dac() -> Dac {
        let text = "# comment\n* = root:root:0775\nsys. = system:system:0770\nsys.open. = root:root:0777\nsys.log. = root:log:0760:int\nflag. = root:root:0777:bool\n";
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
    fn no_rule_means_open() {
        let (d, _) = Dac::parse("sys. = root:root:0700\n", PASSWD, GROUP);
        assert!(d.check("other.x", &who(5, 5, &[]), Op::Write).is_ok());
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
    fn bad_lines_are_reported_and_skipped() {
        let (d, p) = Dac::parse("a. = nobody:root:0777\nb. = root:root:9\nc. root\nd. = root:root:0700:float\ne. = 1000:1000:0700\n", PASSWD, GROUP);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("line 1:") && p[0].contains("nobody"));
        assert_eq!(d.rule_for("e.x").map(|r| r.uid), Some(1000));
    }
}
