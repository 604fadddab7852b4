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
//! The first rule whose id range holds the SA decides; a missing `register`
//! or `get` means anyone; root may do anything; an id no rule covers is
//! open. A caller is allowed when its uid is listed or its gid is.
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
        Ok(Policy { rules, permissions: raw.permissions, source: source.to_owned() })
    }

    /// Reads `path`; a missing file is an open policy.
    pub fn load(path: &Path) -> Result<Policy, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => Policy::parse(&t, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Ok, or why not.
    pub fn check(&self, id: u32, uid: u32, gid: u32, action: Action) -> Result<(), String> {
        if uid == 0 {
            return Ok(());
        }
        let Some((i, rule)) = self.rules.iter().enumerate().find(|(_, r)| (r.first..=r.last).contains(&id)) else { return Ok(()) };
        let who = match action {
            Action::Register => &rule.register,
            Action::Get => &rule.get,
        };
        match who {
            None => Ok(()),
            Some(w) if w.uids.contains(&uid) || w.gids.contains(&gid) => Ok(()),
            Some(_) => {
                let verb = match action {
                    Action::Register => "register",
                    Action::Get => "get",
                };
                Err(format!("uid {uid} (gid {gid}) may not {verb} SA {id} (policy {} rules[{i}])", self.source))
            }
        }
    }
}

impl Policy {
    /// Whether `uid`/`gid` holds `permission`: root always does; anyone
    /// else when the permission lists its uid or gid.
    pub fn has_permission(&self, permission: &str, uid: u32, gid: u32) -> bool {
        uid == 0 || self.permissions.get(permission).is_some_and(|w| w.uids.contains(&uid) || w.gids.contains(&gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_decide_in_order_and_root_passes() {
        let p = Policy::parse(
            r#"{"rules": [{"ids": "3301", "get": {"uids": [2000]}}, {"ids": "3300-3399", "register": {"uids": [1000]}, "get": {"gids": [1007]}}]}"#,
            "test",
        )
        .unwrap();
        assert!(p.check(3301, 2000, 2000, Action::Get).is_ok());
        assert!(p.check(3301, 1000, 1007, Action::Get).is_err(), "first matching rule decides");
        assert!(p.check(3302, 1000, 1007, Action::Get).is_ok());
        assert!(p.check(3302, 2000, 2000, Action::Get).is_err());
        assert!(p.check(3302, 1000, 1000, Action::Register).is_ok());
        let e = p.check(3302, 2000, 2000, Action::Register).unwrap_err();
        assert!(e.contains("uid 2000") && e.contains("register SA 3302") && e.contains("rules[1]"), "{e}");
        assert!(p.check(3302, 0, 0, Action::Register).is_ok());
        assert!(p.check(10, 5, 5, Action::Register).is_ok(), "uncovered ids are open");
    }

    #[test]
    fn permissions_are_granted_by_uid_or_gid_and_root_holds_all() {
        let p = Policy::parse(r#"{"permissions": {"ohos.permission.REBOOT": {"uids": [1000], "gids": [1007]}}}"#, "t").unwrap();
        assert!(p.has_permission("ohos.permission.REBOOT", 1000, 1000));
        assert!(p.has_permission("ohos.permission.REBOOT", 2000, 1007));
        assert!(!p.has_permission("ohos.permission.REBOOT", 2000, 2000));
        assert!(!p.has_permission("ohos.permission.OTHER", 1000, 1000));
        assert!(p.has_permission("ohos.permission.OTHER", 0, 0));
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
