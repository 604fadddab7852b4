//! Who may register and who may get which system abilities, and who holds
//! which named permission.
//!
//! `/etc/samgr/policy.json`:
//! ```json
//! {"rules": [
//!   {"ids": "3300-3399", "register": {"uids": [1000]}, "get": {"uids": [1000, 2000], "gids": [1007]}}
//! ],
//!  "permissions": {"ohos.permission.REBOOT": {"uids": [1000]}}}
//! ```
//! The first rule whose id range holds the SA decides. The policy denies by
//! default: an id no rule covers, a rule without a `register` or `get`
//! section, and a missing policy file all mean root only. Root may do
//! anything. A caller is allowed when its uid is listed, or its primary
//! group or one of its supplementary groups (from the kernel,
//! SO_PEERGROUPS) is. `"list": {...}` says who besides root may list SAs
//! and SA processes (`hidumper -ls`, `ListSystemAbilities`,
//! `GetRunningSystemProcess`).
//!
//! samgr enforces the rules; an SA checks a permission for one of its
//! methods with [`crate::sa::Caller::check_permission`], which reads the
//! same file. A permission nobody is granted is held by root alone.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Who {
    #[serde(default)]
    pub uids: Vec<u32>,
    #[serde(default)]
    pub gids: Vec<u32>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRule {
    ids: String,
    register: Option<Who>,
    get: Option<Who>,
}

/// Who asks: the kernel's uid, primary gid and supplementary groups.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
}

impl Who {
    fn admits(&self, s: &Subject<'_>) -> bool {
        self.uids.contains(&s.uid) || self.gids.contains(&s.gid) || s.groups.iter().any(|g| self.gids.contains(g))
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub first: u32,
    pub last: u32,
    pub register: Option<Who>,
    pub get: Option<Who>,
}

#[derive(Debug, Default, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub permissions: std::collections::BTreeMap<String, Who>,
    /// Who besides root may list SAs and processes.
    pub list: Option<Who>,
    pub source: String,
}

/// Where the image keeps the policy.
pub const POLICY_PATH: &str = "/etc/samgr/policy.json";

#[derive(Debug, Clone, Copy)]
pub enum Action {
    Register,
    Get,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    permissions: std::collections::BTreeMap<String, Who>,
    list: Option<Who>,
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let n = s.trim().parse().ok()?;
            (n, n)
        }
    };
    (a <= b).then_some((a, b))
}

impl Policy {
    /// Parses policy text; errors name the rule and what is wrong.
    pub fn parse(text: &str, source: &str) -> Result<Policy, String> {
        let raw: RawPolicy = serde_json::from_str(text).map_err(|e| format!("{source}: {e}"))?;
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let (first, last) = parse_range(&r.ids).ok_or_else(|| format!("{source}: rules[{i}].ids: {:?} is not N or N-M", r.ids))?;
            rules.push(Rule { first, last, register: r.register, get: r.get });
        }
        Ok(Policy { rules, permissions: raw.permissions, list: raw.list, source: source.to_owned() })
    }

    /// Reads `path`; a missing file is the empty policy: root only.
    pub fn load(path: &Path) -> Result<Policy, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => Policy::parse(&t, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Ok, or why not (naming the caller, the SA and the rule or its
    /// absence).
    pub fn check(&self, id: u32, s: &Subject<'_>, action: Action) -> Result<(), String> {
        if s.uid == 0 {
            return Ok(());
        }
        let verb = match action {
            Action::Register => "register",
            Action::Get => "get",
        };
        let (uid, gid) = (s.uid, s.gid);
        let Some((i, rule)) = self.rules.iter().enumerate().find(|(_, r)| (r.first..=r.last).contains(&id)) else {
            return Err(format!("uid {uid} (gid {gid}) may not {verb} SA {id} (no rule of policy {:?} covers it: root only)", self.source));
        };
        let who = match action {
            Action::Register => &rule.register,
            Action::Get => &rule.get,
        };
        match who {
            Some(w) if w.admits(s) => Ok(()),
            Some(_) => Err(format!("uid {uid} (gid {gid}) may not {verb} SA {id} (policy {} rules[{i}])", self.source)),
            None => Err(format!("uid {uid} (gid {gid}) may not {verb} SA {id} (policy {} rules[{i}] has no {verb} section: root only)", self.source)),
        }
    }

    /// Whether `s` may list SAs and processes: root, or `list` admits it.
    pub fn may_list(&self, s: &Subject<'_>) -> bool {
        s.uid == 0 || self.list.as_ref().is_some_and(|w| w.admits(s))
    }
}

impl Policy {
    /// Whether `s` holds `permission`: root always does; anyone else when
    /// the permission lists its uid, gid or one of its groups.
    pub fn has_permission(&self, permission: &str, s: &Subject<'_>) -> bool {
        s.uid == 0 || self.permissions.get(permission).is_some_and(|w| w.admits(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32) -> Subject<'static> {
        Subject { uid, gid, groups: &[] }
    }

    #[test]
    fn rules_decide_in_order_and_root_passes() {
        let p = Policy::parse(
            r#"{"rules": [{"ids": "3301", "get": {"uids": [2000]}}, {"ids": "3300-3399", "register": {"uids": [1000]}, "get": {"gids": [1007]}}]}"#,
            "test",
        )
        .unwrap();
        assert!(p.check(3301, &who(2000, 2000), Action::Get).is_ok());
        assert!(p.check(3301, &who(1000, 1007), Action::Get).is_err(), "first matching rule decides");
        assert!(p.check(3302, &who(1000, 1007), Action::Get).is_ok());
        assert!(p.check(3302, &who(2000, 2000), Action::Get).is_err());
        assert!(p.check(3302, &who(1000, 1000), Action::Register).is_ok());
        let e = p.check(3302, &who(2000, 2000), Action::Register).unwrap_err();
        assert!(e.contains("uid 2000") && e.contains("register SA 3302") && e.contains("rules[1]"), "{e}");
        assert!(p.check(3302, &who(0, 0), Action::Register).is_ok());
        let e = p.check(10, &who(5, 5), Action::Register).unwrap_err();
        assert!(e.contains("no rule") && e.contains("root only"), "an id no rule covers is root's: {e}");
        let e = p.check(3301, &who(1000, 1000), Action::Register).unwrap_err();
        assert!(e.contains("no register section"), "a rule without the section is root's: {e}");
        assert!(p.check(10, &who(0, 0), Action::Get).is_ok());
    }

    #[test]
    fn supplementary_groups_count_and_an_empty_policy_is_root_only() {
        let p = Policy::parse(r#"{"rules": [{"ids": "1-99", "register": {"gids": [1007]}, "get": {"gids": [1007]}}], "list": {"gids": [1007]}}"#, "t").unwrap();
        let member = Subject { uid: 2000, gid: 2000, groups: &[5, 1007] };
        assert!(p.check(5, &member, Action::Get).is_ok() && p.check(5, &member, Action::Register).is_ok() && p.may_list(&member));
        assert!(p.check(5, &who(2000, 2000), Action::Get).is_err() && !p.may_list(&who(2000, 2000)));
        let none = Policy::load(Path::new("/nonexistent/policy.json")).unwrap();
        assert!(none.check(5, &who(1000, 1000), Action::Get).is_err() && !none.may_list(&who(1000, 1000)));
        assert!(none.check(5, &who(0, 0), Action::Register).is_ok() && none.may_list(&who(0, 0)));
    }

    #[test]
    fn permissions_are_granted_by_uid_or_gid_and_root_holds_all() {
        let p = Policy::parse(r#"{"permissions": {"ohos.permission.REBOOT": {"uids": [1000], "gids": [1007]}}}"#, "t").unwrap();
        assert!(p.has_permission("ohos.permission.REBOOT", &who(1000, 1000)));
        assert!(p.has_permission("ohos.permission.REBOOT", &who(2000, 1007)));
        assert!(p.has_permission("ohos.permission.REBOOT", &Subject { uid: 2000, gid: 2000, groups: &[1007] }));
        assert!(!p.has_permission("ohos.permission.REBOOT", &who(2000, 2000)));
        assert!(!p.has_permission("ohos.permission.OTHER", &who(1000, 1000)));
        assert!(p.has_permission("ohos.permission.OTHER", &who(0, 0)));
    }

    #[test]
    fn bad_policies_are_errors() {
        let e = Policy::parse(r#"{"rules": [{"ids": "1", "gte": {}}]}"#, "p.json").unwrap_err();
        assert!(e.contains("p.json") && e.contains("gte"), "a misspelt field is named: {e}");
        assert!(Policy::parse("{", "x").is_err());
        let e = Policy::parse(r#"{"rules": [{"ids": "9-1"}]}"#, "p.json").unwrap_err();
        assert!(e.contains("rules[0].ids"), "{e}");
    }
}
