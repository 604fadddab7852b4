//! SA profiles: OpenHarmony's JSON description of the system abilities one
//! process hosts, read by samgr (to know what it can load and unload) and
//! by the host process (`sa_main <profile>`).
//!
//! ```json
//! {"process": "demo_sa",
//!  "systemability": [{
//!    "name": 4801, "libpath": "libdemo.z.so", "run-on-create": false,
//!    "distributed": false, "dump-level": 1, "depend": [3301],
//!    "depend-time-out": 5000,
//!    "stop-on-demand": {"unreferenced-unload": true, "delay": 20000}}]}
//! ```
//! `name` is the SA id (a number, or a string holding one). Fields
//! OpenHarmony has and Accord does not act on (`libpath`, `bootphase`,
//! `start-on-demand`'s events, `recycle-strategy`, …) are accepted and
//! reported by [`Profile::ignored`]; anything else is an error naming the
//! file and the field.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
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
    /// Fields that were recognised but have no effect in Accord.
    pub ignored: Vec<String>,
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
}

const KNOWN_SA: &[&str] = &[
    "name", "libpath", "run-on-create", "distributed", "dump-level", "depend", "depend-time-out", "start-on-demand", "stop-on-demand",
    "bootphase", "auto-restart", "recycle-strategy", "cache-common-event", "extension", "permission", "critical", "in-process",
];
const ACTED_ON_SA: &[&str] = &["name", "run-on-create", "distributed", "dump-level", "depend", "depend-time-out", "stop-on-demand"];

#[derive(Deserialize)]
struct RawProfile {
    process: String,
    systemability: Vec<serde_json::Map<String, Value>>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

fn field_err(file: &str, at: String, what: &str) -> ProfileError {
    ProfileError::Invalid { file: file.to_owned(), msg: format!("{at}: {what}") }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Profile {
    /// Parses profile text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = serde_json::from_str(text).map_err(|e| ProfileError::Invalid { file: file.to_owned(), msg: e.to_string() })?;
        if raw.process.is_empty() || raw.process.len() > 32 || raw.process.contains(['/', ' ', '\0']) {
            return Err(field_err(file, "process".into(), &format!("{:?} is not a service name (1-32 bytes, no '/' or space)", raw.process)));
        }
        let mut ignored: Vec<String> = raw.other.keys().map(|k| k.to_string()).collect();
        let mut abilities = Vec::new();
        for (i, sa) in raw.systemability.iter().enumerate() {
            let at = |k: &str| format!("systemability[{i}].{k}");
            for k in sa.keys() {
                if !KNOWN_SA.contains(&k.as_str()) {
                    return Err(field_err(file, at(k), "unknown field"));
                }
                if !ACTED_ON_SA.contains(&k.as_str()) && !ignored.contains(k) {
                    ignored.push(k.clone());
                }
            }
            let id = sa.get("name").and_then(as_u32).ok_or_else(|| field_err(file, at("name"), "must be an SA id (a number)"))?;
            if id == 0 || id > crate::sa::MAX_SA_ID {
                return Err(field_err(file, at("name"), &format!("SA id {id} is outside 1..={}", crate::sa::MAX_SA_ID)));
            }
            if abilities.iter().any(|a: &SaProfile| a.id == id) {
                return Err(field_err(file, at("name"), &format!("SA {id} is listed twice")));
            }
            let flag = |k: &str| -> Result<bool, ProfileError> {
                match sa.get(k) {
                    None => Ok(false),
                    Some(v) => as_bool(v).ok_or_else(|| field_err(file, at(k), "must be true or false")),
                }
            };
            let run_on_create = flag("run-on-create")?;
            let distributed = flag("distributed")?;
            let dump_level = match sa.get("dump-level") {
                None => 1,
                Some(v) => as_u32(v).ok_or_else(|| field_err(file, at("dump-level"), "must be a number"))?,
            };
            let depend = match sa.get("depend") {
                None => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(j, v)| as_u32(v).ok_or_else(|| field_err(file, format!("{}[{j}]", at("depend")), "must be an SA id")))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(field_err(file, at("depend"), "must be a list of SA ids")),
            };
            let depend_timeout = match sa.get("depend-time-out") {
                None => DEFAULT_DEPEND_TIMEOUT,
                Some(v) => Duration::from_millis(u64::from(as_u32(v).ok_or_else(|| field_err(file, at("depend-time-out"), "must be milliseconds"))?)),
            };
            let unload_after = match sa.get("stop-on-demand") {
                None => None,
                Some(Value::Object(o)) => {
                    let mut unref = false;
                    let mut delay = DEFAULT_UNLOAD_DELAY;
                    for (k, v) in o {
                        match k.as_str() {
                            "unreferenced-unload" => unref = as_bool(v).ok_or_else(|| field_err(file, format!("{}.{k}", at("stop-on-demand")), "must be true or false"))?,
                            "delay" => {
                                let ms = as_u32(v).ok_or_else(|| field_err(file, format!("{}.{k}", at("stop-on-demand")), "must be milliseconds"))?;
                                delay = Duration::from_millis(u64::from(ms));
                                if delay > MAX_UNLOAD_DELAY {
                                    return Err(field_err(file, format!("{}.{k}", at("stop-on-demand")), &format!("{ms} ms is above the 300000 ms limit")));
                                }
                            }
                            "allow-update" | "param" | "commonevent" | "timedevent" | "longtimeunused-unload" => {
                                let name = format!("stop-on-demand.{k}");
                                if !ignored.contains(&name) {
                                    ignored.push(name);
                                }
                            }
                            _ => return Err(field_err(file, format!("{}.{k}", at("stop-on-demand")), "unknown field")),
                        }
                    }
                    unref.then_some(delay)
                }
                Some(_) => return Err(field_err(file, at("stop-on-demand"), "must be an object")),
            };
            abilities.push(SaProfile { id, run_on_create, distributed, dump_level, depend, depend_timeout, unload_after });
        }
        if abilities.is_empty() {
            return Err(field_err(file, "systemability".into(), "lists no system ability"));
        }
        Ok(Profile { process: raw.process, abilities, ignored })
    }

    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let file = path.display().to_string();
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
        assert!(p.ignored.contains(&"libpath".to_owned()) && p.ignored.contains(&"bootphase".to_owned()), "{:?}", p.ignored);
    }

    #[test]
    fn errors_name_file_and_field() {
        for (text, want) in [
            (r#"{"process": "x", "systemability": [{"name": "abc"}]}"#, "systemability[0].name"),
            (r#"{"process": "x", "systemability": [{"name": 0}]}"#, "outside"),
            (r#"{"process": "x", "systemability": [{"name": 5, "run-on-creat": true}]}"#, "systemability[0].run-on-creat: unknown field"),
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
                prop::collection::vec((prop::sample::select(vec!["name", "run-on-create", "stop-on-demand", "unreferenced-unload", "delay", "depend", "depend-time-out", "process", "systemability", "x"]), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }
}
