//! The in-memory parameter table with OpenHarmony's rules.

use std::collections::BTreeMap;

use crate::name::{validate_name, validate_value};
use crate::ParamError;

/// What a successful set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    /// The value differs from the previous one (or the name is new).
    pub changed: bool,
}

#[derive(Debug, Default, Clone)]
pub struct ParamStore {
    map: BTreeMap<String, String>,
}

impl ParamStore {
    pub fn new() -> ParamStore {
        ParamStore::default()
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
        self.map.range(prefix.to_owned()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
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
    fn list_and_persistent() {
        let mut s = ParamStore::new();
        for (k, v) in [("persist.b", "2"), ("persist.a", "1"), ("persistx", "no"), ("sys.a", "3")] {
            s.set(k, v).unwrap();
        }
        assert_eq!(s.persistent().collect::<Vec<_>>(), vec![("persist.a", "1"), ("persist.b", "2")]);
        assert_eq!(s.list("sys.").len(), 1);
        assert_eq!(s.list("").len(), 4);
        assert!(s.set("bad name", "x").is_err());
    }
}
