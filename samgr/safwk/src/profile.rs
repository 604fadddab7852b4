//! SA profiles: OpenHarmony's JSON description of the system abilities one
//! process hosts, read by samgr (to know what it can load and unload) and
//! by the host process (`sa_main <profile>`).
//!
//! ```json
//! {"process": "demo_sa",
//!  "systemability": [{
//!    "name": 4801, "libpath": "libdemo.z.so", "run-on-create": false,
//!    "distributed": false, "dump-level": 1, "depend": [3301],
//!    "depend-time-out": 5000, "permission": "ohos.permission.X",
//!    "stop-on-demand": {"unreferenced-unload": true, "delay": 20000}}]}
//! ```
//! `name` is the SA id (a number, or a string holding one). Keys are read
//! in both of OpenHarmony's spellings (`run-on-create` / `run_on_create`,
//! `dump-level` / `dump_level`, `depend-time-out` / `depend_time_out`, …:
//! `_` and `-` are the same); when a file has both, the `-` one counts.
//! As OpenHarmony's samgr (`parse_util.cpp`) does, keys that Accord does
//! not act on — OpenHarmony's own (`libpath`, `bootphase`,
//! `start-on-demand`, `recycle-strategy`, `min_hdi_proxy_version`,
//! `multi-instance`, `stop-on-demand.recycle-delaytime`, …) and unknown
//! ones — are kept in [`Profile::ignored`], for the loader to report once
//! with the file, and the SAs load. A value Accord acts on that has the
//! wrong type is an error naming the file and the field.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

/// Where the image keeps profiles.
pub const PROFILE_DIR: &str = "/system/profile";
/// OpenHarmony's idle-unload delay when a profile gives none.
pub const DEFAULT_UNLOAD_DELAY: Duration = Duration::from_secs(20);
/// The longest idle-unload delay OpenHarmony allows.
pub const MAX_UNLOAD_DELAY: Duration = Duration::from_secs(300);
/// How long a dependency may take to appear by default.
pub const DEFAULT_DEPEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest profile file read (OpenHarmony's `MAX_JSON_OBJECT_SIZE`, 50 KiB).
pub const MAX_PROFILE_BYTES: usize = 50 * 1024;
/// Longest `process`, `permission` and `capability` (OpenHarmony's
/// `MAX_JSON_STRING_LENGTH`; the process is also an init service name, 32).
pub const MAX_STRING: usize = 128;

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
}

/// One process and the SAs it hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub process: String,
    pub abilities: Vec<SaProfile>,
    /// Keys that were read past: each once, in the order first met.
    pub ignored: Vec<IgnoredKey>,
    /// The file it came from, as given to [`Profile::parse`].
    pub file: String,
}

/// A key of a profile that has no effect in Accord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// As written, with its place: `systemability.libpath`,
    /// `systemability.stop-on-demand.recycle-delaytime`, `kill-process`.
    pub key: String,
    /// OpenHarmony knows it (`true`) or nobody does (`false`, a typo or a
    /// newer key).
    pub known: bool,
}

impl std::fmt::Display for IgnoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.known {
            write!(f, "{}: not acted on by Accord; ignored", self.key)
        } else {
            write!(f, "{}: unknown key; ignored", self.key)
        }
    }
}

impl Profile {
    /// One line per ignored key, naming the file: what a loader logs.
    pub fn warnings(&self) -> impl Iterator<Item = String> + '_ {
        self.ignored.iter().map(move |k| format!("{}: {k}", self.file))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaProfile {
    pub id: u32,
    /// Published as soon as the process starts (else only when asked for).
    pub run_on_create: bool,
    pub distributed: bool,
    pub dump_level: u32,
    pub depend: Vec<u32>,
    pub depend_timeout: Duration,
    /// `Some(delay)`: unload after `delay` without clients.
    pub unload_after: Option<Duration>,
    /// A permission every getter must hold ("" for none; OpenHarmony's
    /// `permission`).
    pub permission: String,
    /// OpenHarmony's `capability` (published with the SA, not acted on).
    pub capability: String,
}

/// SA keys Accord acts on (canonical `-` spelling).
const ACTED_ON_SA: &[&str] = &["name", "run-on-create", "distributed", "dump-level", "depend", "depend-time-out", "stop-on-demand", "permission", "capability"];
/// SA keys OpenHarmony's samgr and safwk read that Accord does not act on.
const KNOWN_SA: &[&str] = &[
    "libpath",
    "bootphase",
    "auto-restart",
    "start-on-demand",
    "recycle-strategy",
    "extension",
    "cache-common-event",
    "critical",
    "in-process",
    "min-hdi-proxy-version",
    "multi-instance",
    "multiple-instance",
    "said",
    "load-priority",
    "allow-update",
];
/// `stop-on-demand` keys Accord does not act on.
const KNOWN_STOP: &[&str] =
    &["allow-update", "recycle-delaytime", "deviceonline", "settingswitch", "commonevent", "param", "timedevent", "longtimeunused-unload"];
/// Top-level keys OpenHarmony knows besides `process` and `systemability`.
const KNOWN_TOP: &[&str] = &["kill-process", "is-module-update", "sa-resource", "libpath"];

/// `_` and `-` are one character in profile keys.
fn canon(k: &str) -> String {
    k.replace('_', "-")
}

fn field_err(file: &str, at: String, what: &str) -> ProfileError {
    ProfileError::Invalid { file: file.to_owned(), msg: format!("{at}: {what}") }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A whole number in 0..=u32::MAX written as a float (`5000.0`).
fn whole(f: f64) -> Option<u32> {
    (f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f)).then_some(f as u32)
}

fn as_u32(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(n) => u32::try_from(n).ok(),
            None => n.as_f64().and_then(whole),
        },
        Value::String(s) => s.trim().parse().ok().or_else(|| s.trim().parse::<f64>().ok().and_then(whole)),
        _ => None,
    }
}

fn as_str<'a>(v: &'a Value, file: &str, at: String) -> Result<&'a str, ProfileError> {
    let s = v.as_str().ok_or_else(|| field_err(file, at.clone(), "must be a string"))?;
    if s.len() > MAX_STRING {
        return Err(field_err(file, at, &format!("is longer than {MAX_STRING} bytes")));
    }
    Ok(s)
}

/// The keys of one JSON object by canonical name, the `-` spelling first;
/// records the ignored ones (`place` prefixes them) in `ignored`.
struct Keys<'a> {
    map: std::collections::BTreeMap<String, (&'a str, &'a Value)>,
}

impl<'a> Keys<'a> {
    fn new(obj: &'a serde_json::Map<String, Value>, place: &str, acted: &[&str], known: &[&str], ignored: &mut Vec<IgnoredKey>) -> Keys<'a> {
        let mut map: std::collections::BTreeMap<String, (&'a str, &'a Value)> = std::collections::BTreeMap::new();
        let mut note = |key: String, known: bool| {
            if !ignored.iter().any(|k| k.key == key) {
                ignored.push(IgnoredKey { key, known });
            }
        };
        for (k, v) in obj {
            let c = canon(k);
            let at = if place.is_empty() { k.clone() } else { format!("{place}.{k}") };
            if acted.contains(&c.as_str()) {
                match map.get(&c) {
                    // Both spellings: the `-` one counts, the other is noted.
                    Some((prev, _)) if !prev.contains('_') => note(at, true),
                    Some((prev, _)) => {
                        note(if place.is_empty() { (*prev).to_owned() } else { format!("{place}.{prev}") }, true);
                        map.insert(c, (k.as_str(), v));
                    }
                    None => {
                        map.insert(c, (k.as_str(), v));
                    }
                }
            } else {
                note(at, known.contains(&c.as_str()));
            }
        }
        Keys { map }
    }

    /// The value and the key as written.
    fn get(&self, canonical: &str) -> Option<(&'a str, &'a Value)> {
        self.map.get(canonical).copied()
    }
}

impl Profile {
    /// Parses profile text; `file` names it in errors and warnings.
    pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
        if text.len() > MAX_PROFILE_BYTES {
            return Err(field_err(file, "file".into(), &format!("{} bytes is above the {MAX_PROFILE_BYTES}-byte limit", text.len())));
        }
        let root: Value = serde_json::from_str(text).map_err(|e| ProfileError::Invalid { file: file.to_owned(), msg: e.to_string() })?;
        let Value::Object(root) = root else { return Err(field_err(file, "(top)".into(), "must be a JSON object")) };
        let mut ignored = Vec::new();
        let top = Keys::new(&root, "", &["process", "systemability"], KNOWN_TOP, &mut ignored);
        let (_, process) = top.get("process").ok_or_else(|| field_err(file, "process".into(), "missing"))?;
        let process = process.as_str().ok_or_else(|| field_err(file, "process".into(), "must be a string"))?;
        if process.is_empty() || process.len() > 32 || process.contains(['/', ' ', '\0']) {
            return Err(field_err(file, "process".into(), &format!("{process:?} is not a service name (1-32 bytes, no '/' or space)")));
        }
        let sas = match top.get("systemability") {
            Some((_, Value::Array(a))) => a,
            Some(_) => return Err(field_err(file, "systemability".into(), "must be a list")),
            None => return Err(field_err(file, "systemability".into(), "missing")),
        };
        let mut abilities = Vec::new();
        for (i, sa) in sas.iter().enumerate() {
            let at = |k: &str| format!("systemability[{i}].{k}");
            let Value::Object(sa) = sa else { return Err(field_err(file, format!("systemability[{i}]"), "must be an object")) };
            let keys = Keys::new(sa, "systemability", ACTED_ON_SA, KNOWN_SA, &mut ignored);
            let (_, name) = keys.get("name").ok_or_else(|| field_err(file, at("name"), "missing (the SA id)"))?;
            let id = as_u32(name).ok_or_else(|| field_err(file, at("name"), "must be an SA id (a number)"))?;
            if id == 0 || id > crate::MAX_SA_ID {
                return Err(field_err(file, at("name"), &format!("SA id {id} is outside 1..={}", crate::MAX_SA_ID)));
            }
            if abilities.iter().any(|a: &SaProfile| a.id == id) {
                return Err(field_err(file, at("name"), &format!("SA {id} is listed twice")));
            }
            let flag = |k: &str| -> Result<bool, ProfileError> {
                match keys.get(k) {
                    None | Some((_, Value::Null)) => Ok(false),
                    Some((w, v)) => as_bool(v).ok_or_else(|| field_err(file, at(w), "must be true or false")),
                }
            };
            let run_on_create = flag("run-on-create")?;
            let distributed = flag("distributed")?;
            let dump_level = match keys.get("dump-level") {
                None | Some((_, Value::Null)) => 1,
                Some((w, v)) => as_u32(v).ok_or_else(|| field_err(file, at(w), "must be a number"))?,
            };
            let depend = match keys.get("depend") {
                None | Some((_, Value::Null)) => Vec::new(),
                Some((w, Value::Array(a))) => a
                    .iter()
                    .enumerate()
                    .map(|(j, v)| as_u32(v).ok_or_else(|| field_err(file, format!("{}[{j}]", at(w)), "must be an SA id")))
                    .collect::<Result<_, _>>()?,
                // OpenHarmony's xml-era profiles give one id as a string.
                Some((w, v)) => vec![as_u32(v).ok_or_else(|| field_err(file, at(w), "must be a list of SA ids"))?],
            };
            let depend_timeout = match keys.get("depend-time-out") {
                None | Some((_, Value::Null)) => DEFAULT_DEPEND_TIMEOUT,
                // 0 means the default, as in OpenHarmony.
                Some((w, v)) => match as_u32(v).ok_or_else(|| field_err(file, at(w), "must be milliseconds"))? {
                    0 => DEFAULT_DEPEND_TIMEOUT,
                    ms => Duration::from_millis(u64::from(ms)),
                },
            };
            let string = |k: &str| -> Result<String, ProfileError> {
                match keys.get(k) {
                    None | Some((_, Value::Null)) => Ok(String::new()),
                    Some((w, v)) => as_str(v, file, at(w)).map(str::to_owned),
                }
            };
            let permission = string("permission")?;
            let capability = string("capability")?;
            let unload_after = match keys.get("stop-on-demand") {
                None | Some((_, Value::Null)) => None,
                Some((w, Value::Object(o))) => {
                    let stop = Keys::new(o, &format!("systemability.{w}"), &["unreferenced-unload", "delay"], KNOWN_STOP, &mut ignored);
                    let unref = match stop.get("unreferenced-unload") {
                        None => false,
                        Some((k, v)) => as_bool(v).ok_or_else(|| field_err(file, format!("{}.{k}", at(w)), "must be true or false"))?,
                    };
                    let delay = match stop.get("delay") {
                        None => DEFAULT_UNLOAD_DELAY,
                        Some((k, v)) => {
                            let ms = as_u32(v).ok_or_else(|| field_err(file, format!("{}.{k}", at(w)), "must be milliseconds"))?;
                            let delay = Duration::from_millis(u64::from(ms));
                            if delay > MAX_UNLOAD_DELAY {
                                return Err(field_err(file, format!("{}.{k}", at(w)), &format!("{ms} ms is above the 300000 ms limit")));
                            }
                            delay
                        }
                    };
                    unref.then_some(delay)
                }
                Some((w, _)) => return Err(field_err(file, at(w), "must be an object")),
            };
            abilities.push(SaProfile { id, run_on_create, distributed, dump_level, depend, depend_timeout, unload_after, permission, capability });
        }
        if abilities.is_empty() {
            return Err(field_err(file, "systemability".into(), "lists no system ability"));
        }
        Ok(Profile { process: process.to_owned(), abilities, ignored, file: file.to_owned() })
    }

    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let file = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ProfileError::Io { file: file.clone(), source })?;
        if meta.len() > MAX_PROFILE_BYTES as u64 {
            return Err(field_err(&file, "file".into(), &format!("{} bytes is above the {MAX_PROFILE_BYTES}-byte limit", meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io { file: file.clone(), source })?;
        Profile::parse(&text, &file)
    }

    /// Every `*.json` under `dir`, in name order. A broken profile is
    /// returned as an error next to the good ones, so one bad file does not
    /// hide the others.
    pub fn load_dir(dir: &Path) -> Vec<Result<Profile, ProfileError>> {
        let mut paths: Vec<_> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(source) => return vec![Err(ProfileError::Io { file: dir.display().to_string(), source })],
        };
        paths.sort();
        paths.iter().map(|p| Profile::load(p)).collect()
    }

    pub fn ability(&self, id: u32) -> Option<&SaProfile> {
        self.abilities.iter().find(|a| a.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openharmony_shape_parses() {
        let p = Profile::parse(
            r#"{"process": "demo_sa", "systemability": [
                {"name": 4801, "libpath": "libdemo.z.so", "run-on-create": false, "distributed": false, "dump-level": 1,
                 "depend": [3301], "depend-time-out": 3000, "bootphase": "OtherStartPhase",
                 "stop-on-demand": {"unreferenced-unload": true, "delay": 2000}},
                {"name": "4802", "run-on-create": true}]}"#,
            "demo.json",
        )
        .unwrap();
        assert_eq!(p.process, "demo_sa");
        assert_eq!(p.abilities.len(), 2);
        let a = &p.abilities[0];
        assert_eq!((a.id, a.run_on_create, a.depend.clone(), a.depend_timeout), (4801, false, vec![3301], Duration::from_secs(3)));
        assert_eq!(a.unload_after, Some(Duration::from_secs(2)));
        let b = p.ability(4802).unwrap();
        assert!(b.run_on_create && b.unload_after.is_none());
        let mut keys: Vec<&str> = p.ignored.iter().map(|k| k.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["systemability.bootphase", "systemability.libpath"], "each once");
        assert!(p.warnings().all(|w| w.starts_with("demo.json: systemability.")), "{:?}", p.warnings().collect::<Vec<_>>());
    }

    #[test]
    fn errors_name_file_and_field() {
        for (text, want) in [
            (r#"{"process": "x", "systemability": [{"name": "abc"}]}"#, "systemability[0].name"),
            (r#"{"process": "x", "systemability": [{"name": 0}]}"#, "outside"),
            (r#"{"process": "x", "systemability": [{"name": 5, "run-on-create": "maybe"}]}"#, "systemability[0].run-on-create: must be true or false"),
            (r#"{"process": "x", "systemability": [{"name": 5, "dump_level": []}]}"#, "systemability[0].dump_level: must be a number"),
            (r#"{"process": "x", "systemability": [{"name": 5, "permission": 3}]}"#, "systemability[0].permission: must be a string"),
            (r#"{"process": "x", "systemability": [7]}"#, "systemability[0]: must be an object"),
            (r#"[1]"#, "must be a JSON object"),
            (r#"{"process": "x", "systemability": [{"name": 5}, {"name": 5}]}"#, "listed twice"),
            (r#"{"process": "x", "systemability": [{"name": 5, "stop-on-demand": {"delay": 900000, "unreferenced-unload": true}}]}"#, "300000"),
            (r#"{"process": "a/b", "systemability": [{"name": 5}]}"#, "process"),
            (r#"{"process": "x", "systemability": []}"#, "no system ability"),
            (r#"{"process": "x""#, "EOF"),
        ] {
            let e = Profile::parse(text, "p.json").unwrap_err().to_string();
            assert!(e.starts_with("p.json: ") && e.contains(want), "{text}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,300}") {
            let _ = Profile::parse(&s, "fuzz.json");
        }

        #[test]
        fn arbitrary_json_values_never_panic(v in arb_json()) {
            let _ = Profile::parse(&v.to_string(), "fuzz.json");
            let wrapped = serde_json::json!({"process": "p", "systemability": [v]});
            let _ = Profile::parse(&wrapped.to_string(), "fuzz.json");
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9-]{0,12}".prop_map(Value::String),
            prop::sample::select(vec!["name", "run-on-create", "stop-on-demand", "delay", "depend", "4801"]).prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "name",
                            "run-on-create",
                            "stop-on-demand",
                            "unreferenced-unload",
                            "delay",
                            "depend",
                            "depend-time-out",
                            "process",
                            "systemability",
                            "x"
                        ]),
                        inner
                    ),
                    0..5
                )
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }
}
