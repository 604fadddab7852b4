//! From cfg text to [`Config`]: JSON syntax, field validation, imports,
//! merging. Problems become [`Diagnostic`]s; nothing here panics on input.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::types::*;

/// Most services one file may declare (OpenHarmony's limit).
pub const MAX_SERVICES_PER_FILE: usize = 100;
/// Longest service name, in bytes.
pub const MAX_SERVICE_NAME: usize = 32;
const MAX_IMPORT_DEPTH: usize = 8;
/// CPU numbers `cpucore` accepts (the size of the kernel's CPU set type).
pub const MAX_CPU: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in one file: where it is and what is wrong.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based line of the field (or of the syntax error), when known.
    pub line: Option<usize>,
    /// `column C` for syntax errors, else the JSON path of the field
    /// (`services[2] "foo".uid`); may be empty.
    pub location: String,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic without a line.
    pub fn new(severity: Severity, file: &Path, location: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity, file: file.to_owned(), line: None, location: location.into(), message: message.into() }
    }
}

/// `file:line: location: message`, leaving out what is unknown or empty.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, "{l}:")?;
        }
        if !self.location.is_empty() {
            if self.line.is_some() {
                f.write_str(" ")?;
            }
            write!(f, "{}:", self.location)?;
        }
        write!(f, " {}", self.message)
    }
}

struct Ctx<'a> {
    file: &'a Path,
    diags: &'a mut Vec<Diagnostic>,
    /// Line of each value by JSON path (see [`value_lines`]).
    lines: HashMap<String, usize>,
}

impl Ctx<'_> {
    fn push(&mut self, severity: Severity, location: impl Into<String>, message: impl Into<String>) {
        let location = location.into();
        let line = line_of(&self.lines, &location);
        self.diags.push(Diagnostic { severity, file: self.file.to_owned(), line, location, message: message.into() });
    }
    fn error(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, location, message);
    }
    fn warn(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, location, message);
    }
}

/// Expands `${name}` with `lookup`; unknown names expand to "" and are
/// pushed to `unknown`. Used for `import` paths and command arguments.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>, unknown: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find('}') {
            Some(j) => {
                let name = &rest[i + 2..i + 2 + j];
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => unknown.push(name.to_owned()),
                }
                rest = &rest[i + 3 + j..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The 1-based line where each value of (valid) JSON `text` starts, by
/// JSON path: `services[2].uid`, `jobs[0].cmds[3]`, `import[1]`. serde_json
/// keeps no positions, so this scans the text once.
fn value_lines(text: &str) -> HashMap<String, usize> {
    enum Frame {
        Obj { path: String, key: Option<String> },
        Arr { path: String, idx: usize },
    }
    fn value_path(stack: &[Frame]) -> Option<String> {
        match stack.last() {
            None => Some(String::new()),
            Some(Frame::Obj { key: None, .. }) => None,
            Some(Frame::Obj { path, key: Some(k) }) => Some(if path.is_empty() { k.clone() } else { format!("{path}.{k}") }),
            Some(Frame::Arr { path, idx }) => Some(format!("{path}[{idx}]")),
        }
    }
    let b = text.as_bytes();
    let mut out = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    while i < b.len() {
        match b[i] {
            b'\n' => line += 1,
            b',' => match stack.last_mut() {
                Some(Frame::Arr { idx, .. }) => *idx += 1,
                Some(Frame::Obj { key, .. }) => *key = None,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let raw = text.get(start..i.min(b.len())).unwrap_or("");
                match stack.last_mut() {
                    Some(Frame::Obj { key: key @ None, .. }) => {
                        *key = Some(serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or_else(|_| raw.to_owned()))
                    }
                    _ => {
                        if let Some(p) = value_path(&stack) {
                            out.entry(p).or_insert(line);
                        }
                    }
                }
            }
            b'{' | b'[' => {
                let path = value_path(&stack).unwrap_or_default();
                out.entry(path.clone()).or_insert(line);
                stack.push(if b[i] == b'{' { Frame::Obj { path, key: None } } else { Frame::Arr { path, idx: 0 } });
            }
            b'}' | b']' => {
                stack.pop();
            }
            c if c.is_ascii_whitespace() || c == b':' => {}
            _ => {
                if let Some(p) = value_path(&stack) {
                    out.entry(p).or_insert(line);
                }
                while i + 1 < b.len() && !matches!(b[i + 1], b',' | b'}' | b']' | b'\n' | b' ' | b'\t' | b'\r') {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    out
}

/// The line of a diagnostic's location (`services[0] "a".uid` → the line of
/// `services[0].uid`, else of its nearest parent that has one).
fn line_of(lines: &HashMap<String, usize>, location: &str) -> Option<usize> {
    // Drop the quoted names: ` "a"` after an index.
    let mut path = String::new();
    let mut chars = location.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' && chars.peek() == Some(&'"') {
            chars.next();
            while let Some(q) = chars.next() {
                match q {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            continue;
        }
        path.push(c);
    }
    let mut p = path.as_str();
    loop {
        if let Some(l) = lines.get(p) {
            return Some(*l);
        }
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one file's text into `cfg`; returns its imports, expanded.
pub fn parse_file_str(text: &str, file: &Path, cfg: &mut Config, diags: &mut Vec<Diagnostic>, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            diags.push(Diagnostic {
                severity: Severity::Error,
                file: file.to_owned(),
                line: Some(e.line()),
                location: format!("column {}", e.column()),
                message: format!("not valid JSON: {e}"),
            });
            return Vec::new();
        }
    };
    let mut cx = Ctx { file, diags, lines: value_lines(text) };
    let Value::Object(obj) = root else {
        cx.error("top level", format!("expected an object, found {}", kind(&root)));
        return Vec::new();
    };
    let mut imports = Vec::new();
    for (key, val) in &obj {
        match key.as_str() {
            "import" => match val {
                Value::Array(items) => {
                    for (i, it) in items.iter().enumerate() {
                        match it.as_str() {
                            Some(s) => {
                                let mut unknown = Vec::new();
                                let p = expand(s, lookup, &mut unknown);
                                for u in unknown {
                                    cx.warn(format!("import[{i}]"), format!("parameter {u} is not set; expanded to \"\""));
                                }
                                imports.push(PathBuf::from(p));
                            }
                            None => cx.error(format!("import[{i}]"), format!("expected a string, found {}", kind(it))),
                        }
                    }
                }
                other => cx.error("import", format!("expected an array, found {}", kind(other))),
            },
            "jobs" => match val {
                Value::Array(items) => {
                    for (i, it) in items.iter().enumerate() {
                        if let Some(job) = parse_job(&mut cx, i, it) {
                            merge_job(cfg, job);
                        }
                    }
                }
                other => cx.error("jobs", format!("expected an array, found {}", kind(other))),
            },
            "services" => match val {
                Value::Array(items) => {
                    if items.len() > MAX_SERVICES_PER_FILE {
                        cx.error("services", format!("{} services; at most {MAX_SERVICES_PER_FILE} per file, the rest are skipped", items.len()));
                    }
                    for (i, it) in items.iter().enumerate().take(MAX_SERVICES_PER_FILE) {
                        if let Some(svc) = parse_service(&mut cx, i, it) {
                            if let Some(pos) = cfg.services.iter().position(|s| s.name == svc.name) {
                                cx.warn(
                                    format!("services[{i}] {:?}", svc.name),
                                    format!("replaces the service of the same name from {}", cfg.services[pos].origin.display()),
                                );
                                cfg.services[pos] = svc;
                            } else {
                                cfg.services.push(svc);
                            }
                        }
                    }
                }
                other => cx.error("services", format!("expected an array, found {}", kind(other))),
            },
            other => cx.warn(other.to_owned(), "unknown top-level key; ignored"),
        }
    }
    imports
}

fn merge_job(cfg: &mut Config, job: Job) {
    match cfg.jobs.get_mut(&job.name) {
        Some(existing) => {
            if existing.condition.is_none() {
                existing.condition = job.condition;
            }
            existing.cmds.extend(job.cmds);
        }
        None => {
            cfg.jobs.insert(job.name.clone(), job);
        }
    }
}

fn parse_job(cx: &mut Ctx<'_>, i: usize, v: &Value) -> Option<Job> {
    let here = format!("jobs[{i}]");
    let Value::Object(o) = v else {
        cx.error(here, format!("expected an object, found {}", kind(v)));
        return None;
    };
    let name = match o.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => n.trim().to_owned(),
        _ => {
            cx.error(format!("{here}.name"), "a job needs a non-empty string name; job skipped");
            return None;
        }
    };
    let mut job = Job { name: name.clone(), condition: None, cmds: Vec::new() };
    for (k, val) in o {
        match k.as_str() {
            "name" => {}
            "condition" => match val.as_str() {
                Some(c) if !c.trim().is_empty() => job.condition = Some(c.trim().to_owned()),
                Some(_) => {}
                None => cx.error(format!("{here} {name:?}.condition"), format!("expected a string, found {}", kind(val))),
            },
            "cmds" => match val {
                Value::Array(cmds) => {
                    for (j, c) in cmds.iter().enumerate() {
                        let at = format!("{here} {name:?}.cmds[{j}]");
                        let Some(s) = c.as_str() else {
                            cx.error(at, format!("expected a string, found {}", kind(c)));
                            continue;
                        };
                        let mut words = s.split_ascii_whitespace();
                        let Some(word) = words.next() else {
                            cx.error(at, "empty command; skipped");
                            continue;
                        };
                        let test_hook = cfg!(debug_assertions) && word == "__accord_test_panic";
                        if !COMMANDS.contains(&word) && !test_hook {
                            cx.warn(at, format!("unknown command {word:?}; it will fail when the job runs"));
                        }
                        job.cmds.push(Cmd {
                            name: word.to_owned(),
                            args: words.map(str::to_owned).collect(),
                            origin: match line_of(&cx.lines, &format!("jobs[{i}].cmds[{j}]")) {
                                Some(l) => format!("{}:{l}: jobs[{i}].cmds[{j}]", cx.file.display()),
                                None => format!("{}:jobs[{i}].cmds[{j}]", cx.file.display()),
                            },
                        });
                    }
                }
                other => cx.error(format!("{here} {name:?}.cmds"), format!("expected an array of strings, found {}", kind(other))),
            },
            other => cx.warn(format!("{here} {name:?}.{other}"), "unknown job field; ignored"),
        }
    }
    Some(job)
}

fn as_flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|x| x != 0),
        Value::String(s) => match s.as_str() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

fn as_ident(v: &Value) -> Option<Ident> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.parse().map(Ident::Id).unwrap_or_else(|_| Ident::Name(s.clone()))),
        Value::Number(n) => n.as_u64().and_then(|x| u32::try_from(x).ok()).map(Ident::Id),
        _ => None,
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|x| u32::try_from(x).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Linux capability names (without the `CAP_` prefix).
const CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Security fields of OpenHarmony that have no meaning on Accord.
const UNSUPPORTED: &[&str] =
    &["apl", "d-caps", "permission", "permission_acls", "secon", "sandbox", "setuid", "ondemand-", "jobs-", "cgroup", "kernel_permission", "sched"];

fn parse_service(cx: &mut Ctx<'_>, i: usize, v: &Value) -> Option<Service> {
    let here = format!("services[{i}]");
    let Value::Object(o) = v else {
        cx.error(here, format!("expected an object, found {}", kind(v)));
        return None;
    };
    let name = match o.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(other) => {
            cx.error(format!("{here}.name"), format!("expected a string, found {}; service skipped", kind(other)));
            return None;
        }
        None => {
            cx.error(format!("{here}.name"), "missing; service skipped");
            return None;
        }
    };
    if name.is_empty() || name.len() > MAX_SERVICE_NAME || name.contains('/') || name.chars().any(char::is_whitespace) {
        cx.error(format!("{here}.name"), format!("{name:?} is not a valid service name (1..=32 bytes, no '/' or spaces); service skipped"));
        return None;
    }
    let at = |field: &str| format!("{here} {name:?}.{field}");
    let path: Vec<String> = match o.get("path") {
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(other) => {
            cx.error(at("path"), format!("expected a non-empty array of strings, found {}; service skipped", kind(other)));
            return None;
        }
        None => {
            cx.error(at("path"), "missing; service skipped");
            return None;
        }
    };
    let mut s = Service {
        name: name.clone(),
        path,
        uid: None,
        gid: Vec::new(),
        once: false,
        importance: 0,
        caps: None,
        critical: Critical::default(),
        cpucore: Vec::new(),
        start_mode: StartMode::Normal,
        ondemand: false,
        disabled: false,
        console: false,
        sockets: Vec::new(),
        writepid: Vec::new(),
        env: Vec::new(),
        jobs: ServiceJobs::default(),
        bootevents: Vec::new(),
        period_secs: None,
        origin: cx.file.to_owned(),
    };
    for (k, val) in o {
        let field = k.as_str();
        let bad = |cx: &mut Ctx<'_>, expected: &str| cx.error(at(field), format!("expected {expected}, found {}; ignored", kind(val)));
        match field {
            "name" | "path" => {}
            "uid" => match as_ident(val) {
                Some(id) => s.uid = Some(id),
                None => bad(cx, "a string or a number"),
            },
            "gid" => match val {
                Value::Array(a) => {
                    for g in a {
                        match as_ident(g) {
                            Some(id) => s.gid.push(id),
                            None => cx.error(at(field), format!("expected strings or numbers, found {}; entry ignored", kind(g))),
                        }
                    }
                }
                other => match as_ident(other) {
                    Some(id) => s.gid.push(id),
                    None => bad(cx, "a string, a number or an array of them"),
                },
            },
            "once" | "ondemand" | "disabled" | "console" => match as_flag(val) {
                Some(b) => match field {
                    "once" => s.once = b,
                    "ondemand" => s.ondemand = b,
                    "disabled" => s.disabled = b,
                    _ => s.console = b,
                },
                None => bad(cx, "0, 1 or a boolean"),
            },
            "importance" => match val.as_i64() {
                Some(n) if (-20..=19).contains(&n) => s.importance = n as i32,
                Some(n) => cx.error(at(field), format!("{n} is outside -20..=19; ignored")),
                None => bad(cx, "an integer"),
            },
            "caps" => match val {
                Value::Array(a) => {
                    let mut caps = Vec::new();
                    for c in a {
                        let name = match c {
                            Value::String(t) => t.trim().to_ascii_uppercase(),
                            Value::Number(n) => match n.as_u64().and_then(|x| CAPS.get(x as usize)) {
                                Some(t) => (*t).to_owned(),
                                None => {
                                    cx.error(at(field), format!("no capability number {n}; dropped"));
                                    continue;
                                }
                            },
                            other => {
                                cx.error(at(field), format!("expected capability names, found {}; dropped", kind(other)));
                                continue;
                            }
                        };
                        let bare = name.strip_prefix("CAP_").unwrap_or(&name);
                        if CAPS.contains(&bare) {
                            caps.push(format!("CAP_{bare}"));
                        } else {
                            cx.error(at(field), format!("unknown capability {name:?}; dropped"));
                        }
                    }
                    s.caps = Some(caps);
                }
                _ => bad(cx, "an array of capability names"),
            },
            "critical" => match val {
                Value::Array(a) => {
                    let nums: Vec<Option<u32>> = a.iter().map(as_u32).collect();
                    match nums.as_slice() {
                        [Some(en)] => s.critical.enabled = *en != 0,
                        [Some(en), Some(n), Some(t)] if *n > 0 && *t > 0 => s.critical = Critical { enabled: *en != 0, count: *n, period_secs: *t },
                        _ => bad(cx, "[enable, count, seconds] with positive numbers"),
                    }
                }
                other => match as_flag(other) {
                    Some(b) => s.critical.enabled = b,
                    None => bad(cx, "0, 1 or [enable, count, seconds]"),
                },
            },
            "cpucore" => match val {
                Value::Array(a) => {
                    for c in a {
                        match as_u32(c) {
                            Some(n) if n < MAX_CPU => s.cpucore.push(n),
                            _ => cx.error(at(field), format!("{c} is not a CPU number below {MAX_CPU}; dropped")),
                        }
                    }
                }
                _ => bad(cx, "an array of CPU numbers"),
            },
            "start-mode" => match val.as_str() {
                Some("boot") => s.start_mode = StartMode::Boot,
                Some("normal") => s.start_mode = StartMode::Normal,
                Some("condition") => s.start_mode = StartMode::Condition,
                Some(other) => cx.error(at(field), format!("{other:?} is not boot, normal or condition; ignored")),
                None => bad(cx, "a string"),
            },
            "socket" => match val {
                Value::Array(a) => {
                    for (j, sv) in a.iter().enumerate() {
                        if let Some(spec) = parse_socket(cx, &format!("{}[{j}]", at(field)), sv) {
                            s.sockets.push(spec);
                        }
                    }
                }
                _ => bad(cx, "an array of socket objects"),
            },
            "writepid" => match val {
                Value::Array(a) => {
                    for x in a {
                        match x.as_str() {
                            Some(p) => s.writepid.push(p.to_owned()),
                            None => cx.error(at(field), format!("expected paths, found {}; entry dropped", kind(x))),
                        }
                    }
                }
                Value::String(p) => s.writepid = vec![p.clone()],
                _ => bad(cx, "an array of paths"),
            },
            "env" => match val {
                Value::Array(a) => {
                    for e in a {
                        match e {
                            Value::Object(eo) => match (eo.get("name").and_then(Value::as_str), eo.get("value").and_then(Value::as_str)) {
                                (Some(n), Some(v)) if !n.is_empty() => s.env.push((n.to_owned(), v.to_owned())),
                                _ => cx.error(at(field), "expected {\"name\": ..., \"value\": ...}; entry ignored"),
                            },
                            Value::String(kv) => match kv.split_once('=') {
                                Some((n, v)) if !n.is_empty() => s.env.push((n.to_owned(), v.to_owned())),
                                _ => cx.error(at(field), format!("{kv:?} is not NAME=VALUE; ignored")),
                            },
                            other => cx.error(at(field), format!("expected objects or NAME=VALUE strings, found {}; ignored", kind(other))),
                        }
                    }
                }
                _ => bad(cx, "an array"),
            },
            "jobs" => match val {
                Value::Object(jo) => parse_service_jobs(cx, &at(field), jo, &mut s.jobs),
                _ => bad(cx, "an object of hook → job name"),
            },
            "bootevents" => {
                let names: Vec<String> = match val {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|x| {
                            if x.as_str().is_none() {
                                cx.error(at(field), format!("expected boot event names, found {}; entry dropped", kind(x)));
                            }
                            x.as_str().map(str::to_owned)
                        })
                        .collect(),
                    Value::String(one) => vec![one.clone()],
                    _ => {
                        bad(cx, "an array of boot event names");
                        Vec::new()
                    }
                };
                for n in names {
                    if n.starts_with("bootevent.") && n.len() > "bootevent.".len() {
                        s.bootevents.push(n);
                    } else {
                        cx.error(at(field), format!("{n:?} must start with \"bootevent.\"; dropped"));
                    }
                }
            }
            "period" => match as_u32(val) {
                Some(p) if p > 0 => s.period_secs = Some(p),
                _ => bad(cx, "a positive number of seconds"),
            },
            "file" => cx.warn(at(field), "init-opened files are not supported on Accord; ignored"),
            other if UNSUPPORTED.iter().any(|u| other == *u || (u.ends_with('-') && other.starts_with(u))) => {
                cx.warn(at(other), "not supported on Accord; ignored")
            }
            other => cx.warn(at(other), "unknown service field; ignored"),
        }
    }
    Some(s)
}

fn parse_service_jobs(cx: &mut Ctx<'_>, at: &str, o: &Map<String, Value>, jobs: &mut ServiceJobs) {
    for (k, v) in o {
        let Some(name) = v.as_str().map(str::to_owned) else {
            cx.error(format!("{at}.{k}"), format!("expected a job name, found {}; ignored", kind(v)));
            continue;
        };
        match k.as_str() {
            "on-boot" => jobs.on_boot = Some(name),
            "pre-start" => jobs.pre_start = Some(name),
            "on-start" => jobs.on_start = Some(name),
            "on-stop" => jobs.on_stop = Some(name),
            "on-restart" => jobs.on_restart = Some(name),
            other => cx.warn(format!("{at}.{other}"), "unknown hook; ignored"),
        }
    }
}

fn parse_socket(cx: &mut Ctx<'_>, at: &str, v: &Value) -> Option<SocketSpec> {
    let Value::Object(o) = v else {
        cx.error(at, format!("expected an object, found {}; socket skipped", kind(v)));
        return None;
    };
    let name = match o.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && !n.contains('/') && n.len() <= 64 => n.to_owned(),
        _ => {
            cx.error(format!("{at}.name"), "missing or invalid socket name; socket skipped");
            return None;
        }
    };
    match o.get("family").and_then(Value::as_str) {
        // AF_LOCAL is the POSIX name of AF_UNIX (appspawn's cfg uses it).
        None | Some("AF_UNIX" | "AF_LOCAL") => {}
        Some(f) => {
            cx.error(format!("{at}.family"), format!("{f:?}: only AF_UNIX is supported; socket skipped"));
            return None;
        }
    }
    let sock_type = match o.get("type").and_then(Value::as_str) {
        None | Some("SOCK_STREAM") => SocketType::Stream,
        Some("SOCK_DGRAM") => SocketType::Dgram,
        Some("SOCK_SEQPACKET") => SocketType::SeqPacket,
        Some(t) => {
            cx.error(format!("{at}.type"), format!("{t:?} is not SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET; socket skipped"));
            return None;
        }
    };
    let permissions = match o.get("permissions") {
        None => 0o660,
        Some(Value::String(p)) => match u32::from_str_radix(p, 8) {
            Ok(m) if m <= 0o7777 => m,
            _ => {
                cx.error(format!("{at}.permissions"), format!("{p:?} is not an octal mode; 0660 used"));
                0o660
            }
        },
        Some(Value::Number(n)) => n.as_u64().and_then(|x| u32::try_from(x).ok()).filter(|m| *m <= 0o7777).unwrap_or(0o660),
        Some(other) => {
            cx.error(format!("{at}.permissions"), format!("expected an octal string, found {}; 0660 used", kind(other)));
            0o660
        }
    };
    match o.get("protocol") {
        None => {}
        Some(Value::String(p)) if p == "default" || p == "0" || p.is_empty() => {}
        Some(Value::Number(n)) if n.as_u64() == Some(0) => {}
        Some(other) => cx.warn(format!("{at}.protocol"), format!("{other} is not used for AF_UNIX sockets; ignored")),
    }
    let mut passcred = false;
    if let Some(opts) = o.get("option") {
        let list: Vec<&str> = match opts {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => vec![s.as_str()],
            _ => Vec::new(),
        };
        for opt in list {
            match opt {
                "SOCKET_OPTION_PASSCRED" => passcred = true,
                other => cx.warn(format!("{at}.option"), format!("{other:?} is not supported; ignored")),
            }
        }
    }
    for k in o.keys() {
        if !["name", "family", "type", "protocol", "permissions", "uid", "gid", "option"].contains(&k.as_str()) {
            cx.warn(format!("{at}.{k}"), "unknown socket field; ignored");
        }
    }
    Some(SocketSpec { name, sock_type, permissions, uid: o.get("uid").and_then(as_ident), gid: o.get("gid").and_then(as_ident), passcred })
}

/// Loads `root_cfg` and its imports, then every `*.cfg` in `dirs`.
pub fn load(root_cfg: &Path, dirs: &[PathBuf], lookup: &dyn Fn(&str) -> Option<String>) -> (Config, Vec<Diagnostic>) {
    let mut cfg = Config::default();
    let mut diags = Vec::new();
    let mut seen = HashSet::new();
    load_file(root_cfg, true, 0, &mut cfg, &mut diags, &mut seen, lookup);
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cfg")).collect();
        files.sort();
        for f in files {
            load_file(&f, true, 0, &mut cfg, &mut diags, &mut seen, lookup);
        }
    }
    (cfg, diags)
}

fn load_file(
    path: &Path,
    required: bool,
    depth: usize,
    cfg: &mut Config,
    diags: &mut Vec<Diagnostic>,
    seen: &mut HashSet<PathBuf>,
    lookup: &dyn Fn(&str) -> Option<String>,
) {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if !seen.insert(key) {
        return;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            if required {
                diags.push(Diagnostic::new(Severity::Error, path, "", format!("cannot read: {e}")));
            }
            return;
        }
    };
    let imports = parse_file_str(&text, path, cfg, diags, lookup);
    for imp in imports {
        if depth + 1 > MAX_IMPORT_DEPTH {
            diags.push(Diagnostic::new(Severity::Error, path, "import", format!("imports nest deeper than {MAX_IMPORT_DEPTH}; {} skipped", imp.display())));
            continue;
        }
        load_file(&imp, true, depth + 1, cfg, diags, seen, lookup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> (Config, Vec<Diagnostic>) {
        let mut cfg = Config::default();
        let mut d = Vec::new();
        parse_file_str(text, Path::new("/etc/init.cfg"), &mut cfg, &mut d, &none);
        (cfg, d)
    }

    fn msgs(d: &[Diagnostic]) -> Vec<String> {
        d.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_full_service() {
        let (cfg, d) = parse(
            r#"{"services": [{
              "name": "foo", "path": ["/bin/foo", "-v"], "uid": "system", "gid": ["system", 1007],
              "once": 1, "importance": -5, "caps": ["NET_ADMIN", "CAP_SYS_TIME"], "critical": [1, 2, 30],
              "cpucore": [0, 1], "start-mode": "boot", "ondemand": true, "disabled": 0, "console": false,
              "socket": [{"name": "foo", "family": "AF_UNIX", "type": "SOCK_SEQPACKET", "protocol": "default", "permissions": "0600", "uid": "system", "gid": "system", "option": ["SOCKET_OPTION_PASSCRED"]}],
              "writepid": ["/dev/cpuset/foo"], "env": [{"name": "A", "value": "1"}, "B=2"],
              "jobs": {"on-start": "services:foo_start", "on-restart": "foo_restart"},
              "bootevents": ["bootevent.foo.ready"], "period": 60, "apl": "system_core"
            }]}"#,
        );
        assert!(d.iter().all(|x| x.severity == Severity::Warning), "{:?}", msgs(&d));
        let s = &cfg.services[0];
        assert_eq!(s.path, vec!["/bin/foo", "-v"]);
        assert_eq!(s.uid, Some(Ident::Name("system".into())));
        assert_eq!(s.gid, vec![Ident::Name("system".into()), Ident::Id(1007)]);
        assert!(s.once && s.ondemand && !s.disabled && !s.console);
        assert_eq!(s.importance, -5);
        assert_eq!(s.caps, Some(vec!["CAP_NET_ADMIN".to_string(), "CAP_SYS_TIME".to_string()]));
        assert_eq!(s.critical, Critical { enabled: true, count: 2, period_secs: 30 });
        assert_eq!(s.start_mode, StartMode::Boot);
        assert_eq!(s.sockets[0].sock_type, SocketType::SeqPacket);
        assert_eq!(s.sockets[0].permissions, 0o600);
        assert!(s.sockets[0].passcred);
        assert_eq!(s.env, vec![("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert_eq!(s.jobs.on_start.as_deref(), Some("services:foo_start"));
        assert_eq!(s.bootevents, vec!["bootevent.foo.ready"]);
        assert_eq!(s.period_secs, Some(60));
        assert!(msgs(&d).iter().any(|m| m.contains("apl") && m.contains("not supported")));
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let (cfg, d) = parse("{\n  \"services\": [,]\n}");
        assert!(cfg.services.is_empty());
        assert_eq!(d.len(), 1);
        assert!(d[0].to_string().starts_with("/etc/init.cfg:2: column 16: not valid JSON"), "{}", d[0]);
    }

    #[test]
    fn bad_fields_name_service_and_field_and_keep_the_rest() {
        let (cfg, d) = parse(
            r#"{"services": [{"name": "a", "path": ["/a"], "uid": {"x": 1}, "importance": 40, "caps": ["FLY"]}, {"name": "b"}, {"path": ["/c"]}, {"name": "has space", "path": ["/d"]}]}"#,
        );
        assert_eq!(cfg.services.len(), 1);
        let m = msgs(&d);
        assert!(m.iter().any(|x| x.starts_with("/etc/init.cfg:1: services[0] \"a\".uid: expected a string or a number, found an object")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("services[0] \"a\".importance: 40 is outside")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("unknown capability \"FLY\"")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("services[1] \"b\".path: missing")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("services[2].name: missing")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("\"has space\" is not a valid service name")), "{m:?}");
        assert_eq!(cfg.services[0].uid, None);
        assert_eq!(cfg.services[0].caps, Some(vec![]));
    }

    #[test]
    fn entries_of_the_wrong_kind_are_named_not_dropped_silently() {
        let (cfg, d) = parse(
            r#"{"services": [{"name": "a", "path": ["/a"], "cpucore": [0, -1, "x", 5000, 3], "writepid": ["/p", 7], "bootevents": ["bootevent.a.ready", {}],
                "socket": [{"name": "s", "protocol": "NETLINK_ROUTE"}]}]}"#,
        );
        let s = &cfg.services[0];
        assert_eq!(s.cpucore, vec![0, 3]);
        assert_eq!(s.writepid, vec!["/p"]);
        assert_eq!(s.bootevents, vec!["bootevent.a.ready"]);
        let m = msgs(&d);
        assert!(m.iter().any(|x| x.contains("\"a\".cpucore: -1 is not a CPU number below 1024")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("\"a\".cpucore: 5000 is not a CPU number")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("\"a\".writepid: expected paths, found a number")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("\"a\".bootevents: expected boot event names, found an object")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("socket[0].protocol: \"NETLINK_ROUTE\" is not used for AF_UNIX sockets; ignored")), "{m:?}");
    }

    #[test]
    fn jobs_merge_across_files_and_commands_split() {
        let mut cfg = Config::default();
        let mut d = Vec::new();
        parse_file_str(
            r#"{"jobs": [{"name": "post-fs-data", "cmds": ["mkdir /data/a 0770 system system", "  "]}]}"#,
            Path::new("/a.cfg"),
            &mut cfg,
            &mut d,
            &none,
        );
        parse_file_str(
            r#"{"jobs": [{"name": "post-fs-data", "condition": "x=1", "cmds": ["start foo"]}, {"name": "boot", "cmds": [7]}]}"#,
            Path::new("/b.cfg"),
            &mut cfg,
            &mut d,
            &none,
        );
        let j = &cfg.jobs["post-fs-data"];
        assert_eq!(j.cmds.len(), 2);
        assert_eq!(j.cmds[0].name, "mkdir");
        assert_eq!(j.cmds[0].args, vec!["/data/a", "0770", "system", "system"]);
        assert_eq!(j.cmds[0].origin, "/a.cfg:1: jobs[0].cmds[0]");
        assert_eq!(j.cmds[1].origin, "/b.cfg:1: jobs[0].cmds[0]");
        assert_eq!(j.condition.as_deref(), Some("x=1"));
        let m = msgs(&d);
        assert!(m.iter().any(|x| x.contains("empty command")), "{m:?}");
        assert!(m.iter().any(|x| x.starts_with("/b.cfg:1: jobs[1] \"boot\".cmds[0]: expected a string")), "{m:?}");
    }

    #[test]
    fn duplicate_service_replaces_with_warning() {
        let (cfg, d) = parse(r#"{"services": [{"name": "a", "path": ["/one"]}, {"name": "a", "path": ["/two"]}]}"#);
        assert_eq!(cfg.services.len(), 1);
        assert_eq!(cfg.services[0].path, vec!["/two"]);
        assert!(d.iter().any(|x| x.severity == Severity::Warning && x.message.contains("replaces")));
    }

    #[test]
    fn too_many_services() {
        let list: Vec<String> = (0..105).map(|i| format!(r#"{{"name": "s{i}", "path": ["/x"]}}"#)).collect();
        let (cfg, d) = parse(&format!(r#"{{"services": [{}]}}"#, list.join(",")));
        assert_eq!(cfg.services.len(), 100);
        assert!(d.iter().any(|x| x.severity == Severity::Error && x.message.contains("at most 100")));
    }

    #[test]
    fn load_follows_imports_once_with_params_and_reads_dirs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("init")).unwrap();
        std::fs::write(
            p.join("init.cfg"),
            format!(r#"{{"import": ["{0}/${{prod}}.cfg", "{0}/missing.cfg", "{0}/init.cfg"], "jobs": [{{"name": "init", "cmds": ["a"]}}]}}"#, p.display()),
        )
        .unwrap();
        std::fs::write(p.join("acme.cfg"), format!(r#"{{"import": ["{0}/init.cfg"], "jobs": [{{"name": "init", "cmds": ["b"]}}]}}"#, p.display())).unwrap();
        std::fs::write(p.join("init/20-z.cfg"), r#"{"jobs": [{"name": "init", "cmds": ["d"]}]}"#).unwrap();
        std::fs::write(p.join("init/10-y.cfg"), r#"{"jobs": [{"name": "init", "cmds": ["c"]}]}"#).unwrap();
        std::fs::write(p.join("init/notes.txt"), "not a cfg").unwrap();
        let lookup = |n: &str| (n == "prod").then(|| "acme".to_string());
        let (cfg, d) = load(&p.join("init.cfg"), &[p.join("init"), p.join("absent")], &lookup);
        let order: Vec<&str> = cfg.jobs["init"].cmds.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(order, vec!["a", "b", "c", "d"]);
        let errors: Vec<&Diagnostic> = d.iter().filter(|x| x.severity == Severity::Error).collect();
        assert_eq!(errors.len(), 1, "{:?}", msgs(&d));
        assert!(errors[0].to_string().contains("missing.cfg") && errors[0].message.contains("cannot read"));
        // The made-up command words are warned about, each with its file.
        assert!(
            d.iter().any(|x| x.severity == Severity::Warning && x.to_string().contains("20-z.cfg:1: jobs[0] \"init\".cmds[0]: unknown command \"d\"")),
            "{:?}",
            msgs(&d)
        );
        let (_, d) = load(&p.join("nope.cfg"), &[], &lookup);
        assert_eq!(d[0].severity, Severity::Error);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn arbitrary_json_values_never_panic(v in arb_json()) {
            let text = serde_json::json!({"services": [v.clone()], "jobs": [v.clone()], "import": v}).to_string();
            let _ = parse(&text);
        }
    }

    /// Values a cfg field may hold, valid or mutated: wrong types, huge and
    /// negative numbers, non-finite spellings, deep nesting.
    fn arb_field_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![Just(0i64), Just(1), Just(-1), Just(19), Just(-21), Just(240), Just(i64::MAX), Just(i64::MIN)].prop_map(Value::from),
            prop_oneof![Just(1e308f64), Just(-1e308), Just(0.5), Just(4294967296.0)].prop_map(Value::from),
            Just(Value::from(u64::MAX)),
            prop_oneof![
                Just("nan"),
                Just("inf"),
                Just("-inf"),
                Just("NaN"),
                Just("1e309"),
                Just("-1"),
                Just("0"),
                Just("1"),
                Just("true"),
                Just("0660"),
                Just("0999"),
                Just("system"),
                Just("root"),
                Just("NET_BIND_SERVICE"),
                Just("CAP_FLY"),
                Just("boot"),
                Just("condition"),
                Just("bootevent.x.ready"),
                Just("bootevent."),
                Just(""),
                Just("${unset.param}"),
                Just("a b\tc"),
                Just("é\u{0}")
            ]
            .prop_map(|s| Value::String(s.to_owned())),
            (0usize..200).prop_map(|depth| {
                let mut v = Value::Array(vec![]);
                for _ in 0..depth {
                    v = Value::Array(vec![v]);
                }
                v
            }),
            proptest::collection::vec(prop_oneof![Just(Value::from(1)), Just(Value::from("x")), Just(Value::from(1e300)), Just(Value::Null)], 0..5)
                .prop_map(Value::Array),
            Just(serde_json::json!([1, 4, 240])),
            Just(serde_json::json!([1, -1, "inf"])),
            Just(serde_json::json!([{"name": "s", "family": "AF_LOCAL", "type": "SOCK_SEQPACKET", "permissions": "0660", "option": ["SOCK_CLOEXEC"]}])),
            Just(serde_json::json!([{"name": "a/b", "permissions": 1e10}])),
            Just(serde_json::json!({"on-start": "j", "on-fly": 1})),
            Just(serde_json::json!([{"name": "E", "value": "1"}, "F=2", "=3", 4])),
        ]
    }

    const SERVICE_FIELDS: &[&str] = &[
        "name",
        "path",
        "uid",
        "gid",
        "once",
        "importance",
        "caps",
        "critical",
        "cpucore",
        "start-mode",
        "ondemand",
        "disabled",
        "console",
        "socket",
        "writepid",
        "env",
        "jobs",
        "bootevents",
        "period",
        "file",
        "secon",
        "apl",
        "sandbox",
        "setuid",
        "d-caps",
        "saspawn",
        "zzz",
    ];

    fn arb_service() -> impl Strategy<Value = Value> {
        let name = prop_oneof![Just(Value::from("svc")), Just(Value::from("x".repeat(40))), Just(Value::from("bad name")), Just(Value::from(7))];
        let path = prop_oneof![
            Just(serde_json::json!(["/bin/true", "-v"])),
            Just(serde_json::json!([])),
            Just(serde_json::json!("/bin/true")),
            Just(serde_json::json!([1]))
        ];
        let fields = proptest::collection::vec((prop::sample::select(SERVICE_FIELDS), arb_field_value()), 0..10);
        (name, path, fields).prop_map(|(name, path, fields)| {
            let mut o = Map::new();
            o.insert("name".into(), name);
            o.insert("path".into(), path);
            for (k, v) in fields {
                o.insert(k.to_owned(), v);
            }
            Value::Object(o)
        })
    }

    fn arb_cmd() -> impl Strategy<Value = String> {
        let word = prop::sample::select(vec![
            "sleep",
            "wait",
            "mkdir",
            "chmod",
            "chmoddir",
            "mount",
            "mount_fstab",
            "setparam",
            "trigger",
            "start",
            "syncexec",
            "setrlimit",
            "mknode",
            "bootchart",
            "fly_away",
            "",
        ]);
        let arg =
            prop::sample::select(vec!["nan", "inf", "-1", "1e309", "99999999999999999999", "0755", "/dev/x", "${a.b}", "RLIMIT_NICE", "unlimited", "boot"]);
        (word, proptest::collection::vec(arg, 0..4)).prop_map(|(w, a)| format!("{w} {}", a.join(" ")))
    }

    fn arb_job() -> impl Strategy<Value = Value> {
        let name = prop::sample::select(vec!["init", "boot", "param:a.b=1", "param:", "boot && param:x=*", "param:a=1 && param:b=2", "services:svc", ""]);
        let condition = prop_oneof![
            Just(None),
            Just(Some("boot && x=*")),
            Just(Some("post-fs-data || (a=1 && b=)")),
            Just(Some("bootx")),
            Just(Some("a=1 &")),
            Just(Some("((((")),
        ];
        (name, condition, proptest::collection::vec(arb_cmd(), 0..6)).prop_map(|(n, c, cmds)| {
            let mut o = serde_json::json!({"name": n, "cmds": cmds});
            if let Some(c) = c {
                o["condition"] = Value::from(c);
            }
            o
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Structure-aware: cfg-shaped files with mutated fields never panic,
        /// every diagnostic of a parsed file carries a line inside the file,
        /// and a field's diagnostic points at the line holding that key.
        #[test]
        fn generated_cfgs_never_panic_and_diagnostics_name_file_and_line(
            services in proptest::collection::vec(arb_service(), 0..4),
            jobs in proptest::collection::vec(arb_job(), 0..4),
        ) {
            let text = serde_json::to_string_pretty(&serde_json::json!({"services": services, "jobs": jobs})).expect("json");
            let (cfg, d) = parse(&text);
            let lines: Vec<&str> = text.lines().collect();
            for x in &d {
                prop_assert_eq!(&x.file, Path::new("/etc/init.cfg"));
                let Some(l) = x.line else { return Err(TestCaseError::fail(format!("no line: {x}"))) };
                prop_assert!(l >= 1 && l <= lines.len(), "{} outside 1..={}", x, lines.len());
                let last = x.location.rsplit('.').next().unwrap_or("");
                if x.location.contains('.') && !last.contains('[') && !last.is_empty() {
                    prop_assert!(lines[l - 1].contains(&format!("\"{last}\"")), "{} points at {:?}", x, lines[l - 1]);
                }
            }
            for s in &cfg.services {
                prop_assert!((-20..=19).contains(&s.importance));
                prop_assert!(!s.path.is_empty());
                prop_assert!(s.period_secs != Some(0));
                prop_assert!(!s.critical.enabled || (s.critical.count > 0 && s.critical.period_secs > 0));
            }
            for job in cfg.jobs.values() {
                let _ = crate::cfg::condition::job_trigger(job);
            }
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z/ ._-]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            let keys = prop_oneof![
                Just("name".to_string()),
                Just("path".to_string()),
                Just("uid".to_string()),
                Just("gid".to_string()),
                Just("caps".to_string()),
                Just("critical".to_string()),
                Just("socket".to_string()),
                Just("env".to_string()),
                Just("jobs".to_string()),
                Just("cmds".to_string()),
                Just("bootevents".to_string()),
                "[a-z-]{1,8}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
