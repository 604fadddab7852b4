//! The in-memory parameter table with OpenHarmony's rules.

use std::collections::{BTreeMap, HashMap};

use crate::name::{validate_name, validate_value};
use crate::ParamError;

/// What a successful set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    /// The value differs from the previous one (or the name is new).
    pub changed: bool,
}

/// Most parameters the store holds that clients created (init's own,
/// from `.para` files, cfg and its state, are not counted against it).
pub const MAX_CLIENT_PARAMS: usize = 8192;
/// Most parameters one non-root uid may create: its share, so one user
/// cannot take the whole table. Root is bound by [`MAX_CLIENT_PARAMS`] only.
pub const MAX_PARAMS_PER_UID: usize = 1024;

/// Who sets a parameter, for the creation caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setter {
    /// init itself (defaults, cfg, state): not counted.
    Init,
    /// A client of the parameter service with this uid.
    Client(u32),
}

#[derive(Debug, Default, Clone)]
pub struct ParamStore {
    map: BTreeMap<String, String>,
    /// Parameters created by clients, per uid.
    created: HashMap<u32, usize>,
    created_total: usize,
}

impl ParamStore {
    pub fn new() -> ParamStore {
        ParamStore::default()
    }

    /// Like [`ParamStore::set`], but a client creating a new name is held
    /// to [`MAX_CLIENT_PARAMS`] and, unless root, [`MAX_PARAMS_PER_UID`].
    /// Changing an existing name is never refused by the caps.
    /// Errors: those of `set`, and [`ParamError::LimitReached`] naming the
    /// parameter, the uid and the cap.
    pub fn set_by(&mut self, name: &str, value: &str, setter: Setter) -> Result<SetOutcome, ParamError> {
        if let (Setter::Client(uid), false) = (setter, self.map.contains_key(name)) {
            validate_name(name)?;
            validate_value(name, value)?;
            let mine = self.created.get(&uid).copied().unwrap_or(0);
            let why = if self.created_total >= MAX_CLIENT_PARAMS {
                Some(format!("the parameter table holds its maximum of {MAX_CLIENT_PARAMS} client-created parameters"))
            } else if uid != 0 && mine >= MAX_PARAMS_PER_UID {
                Some(format!("uid {uid} has created its share of {MAX_PARAMS_PER_UID} parameters"))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ParamError::LimitReached { name: name.to_owned(), why });
            }
            let out = self.set(name, value)?;
            *self.created.entry(uid).or_insert(0) += 1;
            self.created_total += 1;
            return Ok(out);
        }
        self.set(name, value)
    }

    /// How many parameters clients have created (all uids).
    pub fn created_by_clients(&self) -> usize {
        self.created_total
    }

    /// Sets `name`: checks name and value, and refuses to change a `const.*`
    /// parameter once it has a value (setting the same value again is fine).
    pub fn set(&mut self, name: &str, value: &str) -> Result<SetOutcome, ParamError> {
        validate_name(name)?;
        validate_value(name, value)?;
        match self.map.get(name) {
            Some(old) if old == value => Ok(SetOutcome { changed: false }),
            Some(_) if name.starts_with("const.") => Err(ParamError::ReadOnly { name: name.to_owned() }),
            _ => {
                self.map.insert(name.to_owned(), value.to_owned());
                Ok(SetOutcome { changed: true })
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// Every parameter whose name starts with `prefix` ("" for all), sorted.
    pub fn list(&self, prefix: &str) -> Vec<(String, String)> {
        self.list_after(prefix, None).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// The parameters under `prefix` whose name sorts after `after` (all
    /// of them for `None`), in name order: one page of a list goes on
    /// from where the last ended.
    pub fn list_after<'a>(&'a self, prefix: &'a str, after: Option<&str>) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        self.map.range((start, Bound::Unbounded)).take_while(move |(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The `persist.*` parameters.
    pub fn persistent(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.range("persist.".to_owned()..).take_while(|(k, _)| k.starts_with("persist.")).map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_is_write_once() {
        let mut s = ParamStore::new();
        assert!(s.set("const.a", "1").unwrap().changed);
        assert!(!s.set("const.a", "1").unwrap().changed);
        assert!(matches!(s.set("const.a", "2"), Err(ParamError::ReadOnly { .. })));
        assert_eq!(s.get("const.a"), Some("1"));
        assert!(s.set("sys.a", "1").unwrap().changed);
        assert!(s.set("sys.a", "2").unwrap().changed);
    }

    #[test]
    fn per_uid_share_and_total_cap() {
        let mut s = ParamStore::new();
        for i in 0..MAX_PARAMS_PER_UID {
            s.set_by(&format!("u.{i}"), "1", Setter::Client(2000)).unwrap();
        }
        let e = s.set_by("u.more", "1", Setter::Client(2000)).unwrap_err();
        assert!(matches!(e, ParamError::LimitReached { .. }), "{e}");
        assert!(e.to_string().contains("u.more") && e.to_string().contains("2000"), "{e}");
        // Changing an existing name is fine; others and root still create.
        s.set_by("u.0", "2", Setter::Client(2000)).unwrap();
        s.set_by("v.0", "1", Setter::Client(2001)).unwrap();
        s.set_by("r.0", "1", Setter::Client(0)).unwrap();
        s.set_by("i.0", "1", Setter::Init).unwrap();
        assert_eq!(s.created_by_clients(), MAX_PARAMS_PER_UID + 2);
        for i in 0..(MAX_CLIENT_PARAMS - s.created_by_clients()) {
            s.set_by(&format!("r.x{i}"), "1", Setter::Client(0)).unwrap();
        }
        assert!(s.set_by("r.last", "1", Setter::Client(0)).is_err(), "root is bound by the total");
        assert!(s.set_by("i.last", "1", Setter::Init).is_ok(), "init's own sets are not");
    }

    #[test]
    fn list_and_persistent() {
        let mut s = ParamStore::new();
        for (k, v) in [("persist.b", "2"), ("persist.a", "1"), ("persistx", "no"), ("sys.a", "3")] {
            s.set(k, v).unwrap();
        }
        assert_eq!(s.persistent().collect::<Vec<_>>(), vec![("persist.a", "1"), ("persist.b", "2")]);
        assert_eq!(s.list("sys.").len(), 1);
        assert_eq!(s.list("").len(), 4);
        let names = |prefix, after| s.list_after(prefix, after).map(|(k, _)| k.to_owned()).collect::<Vec<_>>();
        let every = names("", None);
        assert_eq!(names("", Some(every[1].as_str())), every[2..].to_vec(), "after the cursor, not at it");
        assert_eq!(names("sys.", Some("a")), names("sys.", None), "a cursor before the prefix starts at the prefix");
        assert!(names("", Some(every[3].as_str())).is_empty());
        assert!(s.set("bad name", "x").is_err());
    }
}
