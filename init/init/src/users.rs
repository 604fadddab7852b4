//! Names of users and groups, from `/etc/passwd` and `/etc/group`, as the
//! cfg's `uid`/`gid`/`chown`/`socket` fields use them.

use std::collections::HashMap;

use crate::cfg::Ident;

#[derive(Debug, Default, Clone)]
pub struct Users {
    users: HashMap<String, (u32, u32)>,
    groups: HashMap<String, u32>,
}

impl Users {
    /// Reads the system's files; missing files give an empty table (only
    /// numbers and `root` resolve then).
    pub fn load() -> Users {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Users::parse(&passwd, &group)
    }

    pub fn parse(passwd: &str, group: &str) -> Users {
        let mut users = HashMap::new();
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    users.insert(f[0].to_owned(), (uid, gid));
                }
            }
        }
        let mut groups = accord_param::dac::parse_id_file(group);
        users.entry("root".to_owned()).or_insert((0, 0));
        groups.entry("root".to_owned()).or_insert(0);
        Users { users, groups }
    }

    pub fn uid(&self, id: &Ident) -> Option<u32> {
        match id {
            Ident::Id(n) => Some(*n),
            Ident::Name(n) => self.users.get(n).map(|u| u.0).or_else(|| n.parse().ok()),
        }
    }

    /// The primary group of a user name, if known.
    pub fn primary_gid(&self, id: &Ident) -> Option<u32> {
        match id {
            Ident::Id(_) => None,
            Ident::Name(n) => self.users.get(n).map(|u| u.1),
        }
    }

    pub fn gid(&self, id: &Ident) -> Option<u32> {
        match id {
            Ident::Id(n) => Some(*n),
            Ident::Name(n) => self.groups.get(n).copied().or_else(|| n.parse().ok()),
        }
    }

    /// Resolves a name or number written as plain text (commands).
    pub fn uid_str(&self, s: &str) -> Option<u32> {
        self.uid(&Ident::Name(s.to_owned()))
    }

    pub fn gid_str(&self, s: &str) -> Option<u32> {
        self.gid(&Ident::Name(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let u = Users::parse("root:x:0:0::/:/bin/sh\nsystem:x:1000:1000::/:/bin/false\n", "root:x:0:\nsystem:x:1000:\nlog:x:1007:\n");
        assert_eq!(u.uid(&Ident::Name("system".into())), Some(1000));
        assert_eq!(u.uid(&Ident::Name("1234".into())), Some(1234));
        assert_eq!(u.uid(&Ident::Name("nobody".into())), None);
        assert_eq!(u.gid(&Ident::Name("log".into())), Some(1007));
        assert_eq!(u.gid(&Ident::Id(7)), Some(7));
        assert_eq!(u.primary_gid(&Ident::Name("system".into())), Some(1000));
    }
}
