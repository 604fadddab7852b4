//! Preferences: OpenHarmony's `@ohos.data.preferences` for Rust processes.
//!
//! A preferences file is a small, named set of typed values ([`Value`]:
//! int, float, bool, string, string array, bytes) that a process keeps in a
//! directory of its own. [`Preferences::open`] loads it (one shared instance
//! per file in a process, as OpenHarmony's `getPreferences` does); `put`,
//! `delete` and `clear` change the copy in memory; [`Preferences::flush`]
//! makes the changes durable and then tells the observers
//! ([`Preferences::observe`]) which keys changed.
//!
//! # On disk
//! `<dir>/<name>.prefs` holds a header (magic `ACPREFS\0`, format version,
//! CRC-32 and length of the body) and the body (postcard: the map of keys to
//! values). A flush writes `<name>.prefs.tmp`, syncs it, turns the current
//! file into the backup `<name>.prefs.bak` (a hard link, renamed in place),
//! renames the new file over `<name>.prefs` and syncs the directory: at every
//! moment of a power cut the file is either the old or the new version,
//! never a mix. A file that is torn or damaged anyway (its CRC or length
//! does not match) is not used: the backup is loaded instead with a warning
//! ([`Preferences::recovered`] says so), and a damaged file whose backup is
//! damaged too is [`PrefsError::Corrupted`], naming both; never a silent
//! reset to empty. A damaged file is never made the backup.
//!
//! # Limits (OpenHarmony's)
//! Keys 1..=[`MAX_KEY`] bytes; a value's string or bytes at most
//! [`MAX_VALUE`] bytes; a file at most [`MAX_FILE`] bytes.
//!
//! # Processes
//! One process owns a file at a time: opening takes an exclusive `flock` on
//! `<name>.prefs.lock`, and a second process gets [`PrefsError::Locked`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use serde::{Deserialize, Serialize};
use tracing::warn;

/// Longest key, in bytes (OpenHarmony's `MAX_KEY_LENGTH`).
pub const MAX_KEY: usize = 1024;
/// Largest string or byte value, in bytes (OpenHarmony's
/// `MAX_VALUE_LENGTH`, 16 MiB); for a string array, the sum of its strings.
pub const MAX_VALUE: usize = 16 << 20;
/// Largest file a flush writes or a load reads, in bytes.
pub const MAX_FILE: u64 = 64 << 20;

const MAGIC: &[u8; 8] = b"ACPREFS\0";
/// The body's format; a newer one is refused with [`PrefsError::Corrupted`]
/// naming the version rather than misread.
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8;

/// One typed value (OpenHarmony's `ValueType`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    StringArray(Vec<String>),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Value {
    /// Bytes of payload counted against [`MAX_VALUE`].
    fn size(&self) -> usize {
        match self {
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => 8,
            Value::String(s) => s.len(),
            Value::StringArray(a) => a.iter().map(String::len).sum(),
            Value::Bytes(b) => b.len(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::String(v)
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Value {
        Value::StringArray(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}

/// What can go wrong; each names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    #[error("preferences name {0:?} is not [A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}")]
    InvalidName(String),
    #[error("an empty key")]
    EmptyKey,
    #[error("key of {0} bytes is longer than {MAX_KEY}")]
    KeyTooLong(usize),
    #[error("value of {len} bytes for key {key:?} is larger than {MAX_VALUE}")]
    ValueTooBig { key: String, len: usize },
    #[error("{0}: the preferences would take more than {MAX_FILE} bytes")]
    FileTooBig(PathBuf),
    #[error("{0}: open in another process")]
    Locked(PathBuf),
    #[error("{path}: damaged ({why}) and its backup cannot be used ({backup})")]
    Corrupted { path: PathBuf, why: String, backup: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PrefsError + '_ {
    move |source| PrefsError::Io { path: path.to_owned(), source }
}

/// A registered change observer, for [`Preferences::unobserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

type Observer = Arc<dyn Fn(&str) + Send + Sync>;

struct State {
    values: BTreeMap<String, Value>,
    /// Keys changed since the last successful flush.
    changed: BTreeSet<String>,
    /// The file on disk is sound (so a flush may make it the backup).
    main_ok: bool,
}

/// One preferences file, open in this process. Cheap to share: `open`
/// hands out the same `Arc` for the same file.
pub struct Preferences {
    path: PathBuf,
    backup: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    state: Mutex<State>,
    /// Held while writing, so flushes reach the disk in order.
    flushing: Mutex<()>,
    observers: Mutex<(u64, Vec<(ObserverId, Observer)>)>,
    recovered: Option<String>,
    /// The `flock` that makes this process the file's owner.
    lock: Option<File>,
}

/// The files open in this process, so one file has one instance.
fn open_files() -> MutexGuard<'static, HashMap<PathBuf, Weak<Preferences>>> {
    static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<Preferences>>>> = LazyLock::new(Mutex::default);
    OPEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks a preferences name: it becomes a file name, never a path.
pub fn check_name(name: &str) -> Result<(), PrefsError> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PrefsError::InvalidName(name.to_owned()))
    }
}

fn check_key(key: &str) -> Result<(), PrefsError> {
    if key.is_empty() {
        return Err(PrefsError::EmptyKey);
    }
    if key.len() > MAX_KEY {
        return Err(PrefsError::KeyTooLong(key.len()));
    }
    Ok(())
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Encodes the map as a whole file: header and body.
fn encode(values: &BTreeMap<String, Value>) -> Result<Vec<u8>, String> {
    let body = postcard::to_stdvec(values).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a whole file; the error says what is wrong with it.
fn decode(bytes: &[u8]) -> Result<BTreeMap<String, Value>, String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(format!("not a preferences file ({} bytes, no header)", bytes.len()));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    let format = word(8);
    if format != FORMAT {
        return Err(format!("format {format}, this library reads {FORMAT}"));
    }
    let crc = word(12);
    let len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let body = &bytes[HEADER..];
    if body.len() as u64 != len {
        return Err(format!("torn: {} bytes of a {len}-byte body", body.len()));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let values: BTreeMap<String, Value> = postcard::from_bytes(body).map_err(|e| format!("body: {e}"))?;
    for (k, v) in &values {
        if check_key(k).is_err() || v.size() > MAX_VALUE {
            return Err(format!("key {k:?} or its value is out of bounds"));
        }
    }
    Ok(values)
}

/// Reads and decodes `path`: `Ok(None)` when there is no such file.
fn load(path: &Path) -> Result<Option<BTreeMap<String, Value>>, String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut bytes = Vec::new();
    f.take(MAX_FILE + HEADER as u64 + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE + HEADER as u64 {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    decode(&bytes).map(Some)
}

impl Preferences {
    /// Opens (or starts, if it has no file yet) the preferences `name` in
    /// `dir`, which must exist. Within a process the same file gives the
    /// same instance. Errors: [`PrefsError::InvalidName`], `Locked` (another
    /// process has it open), `Corrupted` (the file and its backup are both
    /// damaged: nothing is reset; [`delete`] starts over), `Io`.
    pub fn open(dir: &Path, name: &str) -> Result<Arc<Preferences>, PrefsError> {
        check_name(name)?;
        let dir = dir.canonicalize().map_err(io_err(dir))?;
        let path = dir.join(format!("{name}.prefs"));
        let lock_path = dir.join(format!("{name}.prefs.lock"));
        let started = std::time::Instant::now();
        let (mut open, lock_file) = loop {
            let open = open_files();
            if let Some(p) = open.get(&path).and_then(Weak::upgrade) {
                return Ok(p);
            }
            let lock_file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&lock_path).map_err(io_err(&lock_path))?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break (open, lock_file);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(PrefsError::Io { path: lock_path, source: e });
            }
            // An instance of this process being dropped still holds the
            // lock until its `Drop` takes it out of the table: wait for
            // that (it is quick); anyone else's lock is `Locked`.
            let dying = open.get(&path).is_some_and(|w| w.strong_count() == 0);
            if !dying || started.elapsed() > std::time::Duration::from_secs(5) {
                return Err(PrefsError::Locked(path));
            }
            drop(open);
            std::thread::yield_now();
        };
        let backup = dir.join(format!("{name}.prefs.bak"));
        let (values, main_ok, recovered) = match load(&path) {
            Ok(Some(v)) => (v, true, None),
            Ok(None) => match load(&backup) {
                Ok(None) => (BTreeMap::new(), false, None),
                Ok(Some(v)) => {
                    let why = format!("{}: missing; loaded its backup {}", path.display(), backup.display());
                    warn!("{why}");
                    (v, false, Some(why))
                }
                Err(b) => {
                    return Err(PrefsError::Corrupted { path, why: "missing".into(), backup: b });
                }
            },
            Err(why) => match load(&backup) {
                Ok(Some(v)) => {
                    let why = format!("{}: {why}; loaded its backup {}", path.display(), backup.display());
                    warn!("{why}");
                    (v, false, Some(why))
                }
                Ok(None) => return Err(PrefsError::Corrupted { path, why, backup: "there is none".into() }),
                Err(b) => return Err(PrefsError::Corrupted { path, why, backup: b }),
            },
        };
        let prefs = Arc::new(Preferences {
            tmp: dir.join(format!("{name}.prefs.tmp")),
            path: path.clone(),
            backup,
            dir,
            state: Mutex::new(State { values, changed: BTreeSet::new(), main_ok }),
            flushing: Mutex::new(()),
            observers: Mutex::new((0, Vec::new())),
            recovered,
            lock: Some(lock_file),
        });
        open.insert(path, Arc::downgrade(&prefs));
        Ok(prefs)
    }

    /// The file this instance reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the backup was loaded instead of the file, if it was.
    pub fn recovered(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Value> {
        lock(&self.state).values.get(key).cloned()
    }

    /// The int value of `key`, or `default` when it is absent or not an int
    /// (as OpenHarmony's `get` with a default of another type).
    pub fn get_int(&self, key: &str, default: i64) -> i64 {
        match lock(&self.state).values.get(key) {
            Some(Value::Int(v)) => *v,
            _ => default,
        }
    }

    /// The float value of `key`, or `default`.
    pub fn get_float(&self, key: &str, default: f64) -> f64 {
        match lock(&self.state).values.get(key) {
            Some(Value::Float(v)) => *v,
            _ => default,
        }
    }

    /// The bool value of `key`, or `default`.
    pub fn get_bool(&self, key: &str, default: bool) -> bool {
        match lock(&self.state).values.get(key) {
            Some(Value::Bool(v)) => *v,
            _ => default,
        }
    }

    /// The string value of `key`, or `default`.
    pub fn get_string(&self, key: &str, default: &str) -> String {
        match lock(&self.state).values.get(key) {
            Some(Value::String(v)) => v.clone(),
            _ => default.to_owned(),
        }
    }

    /// Every key and value (OpenHarmony's `getAll`).
    pub fn all(&self) -> BTreeMap<String, Value> {
        lock(&self.state).values.clone()
    }

    /// Whether `key` has a value.
    pub fn has(&self, key: &str) -> bool {
        lock(&self.state).values.contains_key(key)
    }

    /// Sets `key` in memory ([`Preferences::flush`] makes it durable).
    /// Errors: `EmptyKey`, `KeyTooLong`, `ValueTooBig`.
    pub fn put(&self, key: &str, value: impl Into<Value>) -> Result<(), PrefsError> {
        check_key(key)?;
        let value = value.into();
        if value.size() > MAX_VALUE {
            return Err(PrefsError::ValueTooBig { key: key.to_owned(), len: value.size() });
        }
        let mut s = lock(&self.state);
        if s.values.get(key) != Some(&value) {
            s.values.insert(key.to_owned(), value);
            s.changed.insert(key.to_owned());
        }
        Ok(())
    }

    /// Removes `key` in memory; removing an absent key is no change.
    pub fn delete(&self, key: &str) {
        let mut s = lock(&self.state);
        if s.values.remove(key).is_some() {
            s.changed.insert(key.to_owned());
        }
    }

    /// Removes every key in memory.
    pub fn clear(&self) {
        let mut s = lock(&self.state);
        let keys: Vec<String> = s.values.keys().cloned().collect();
        s.changed.extend(keys);
        s.values.clear();
    }

    /// Changes not flushed yet, by key.
    pub fn pending(&self) -> usize {
        lock(&self.state).changed.len()
    }

    /// Writes the changes made since the last flush to disk, durably (see
    /// the module doc), then calls each observer once per changed key. With
    /// nothing changed it writes nothing. On an error (`FileTooBig`, `Io`,
    /// e.g. a full disk) the file on disk is the last flushed version, the
    /// changes stay in memory and the next flush tries again.
    pub fn flush(&self) -> Result<(), PrefsError> {
        let _turn = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let (bytes, changed, main_ok) = {
            let mut s = lock(&self.state);
            if s.changed.is_empty() {
                return Ok(());
            }
            let bytes = encode(&s.values).map_err(|e| PrefsError::Io { path: self.path.clone(), source: io::Error::other(e) })?;
            (bytes, std::mem::take(&mut s.changed), s.main_ok)
        };
        let written = if bytes.len() as u64 > MAX_FILE + HEADER as u64 { Err(PrefsError::FileTooBig(self.path.clone())) } else { self.write(&bytes, main_ok) };
        if let Err(e) = written {
            let mut s = lock(&self.state);
            s.changed.extend(changed);
            return Err(e);
        }
        lock(&self.state).main_ok = true;
        // Observers are called after the turn is given back, so one may
        // flush (or put) itself.
        drop(_turn);
        let observers: Vec<Observer> = self.observers.lock().unwrap_or_else(|p| p.into_inner()).1.iter().map(|(_, o)| o.clone()).collect();
        for key in &changed {
            for o in &observers {
                o(key);
            }
        }
        Ok(())
    }

    fn write(&self, bytes: &[u8], main_ok: bool) -> Result<(), PrefsError> {
        let tmp = &self.tmp;
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(tmp).map_err(io_err(tmp))?;
        let r = f.write_all(bytes).and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = r {
            let _ = fs::remove_file(tmp);
            return Err(PrefsError::Io { path: tmp.clone(), source: e });
        }
        if main_ok {
            // The sound current file becomes the backup: a link under a
            // temporary name, renamed over the old backup.
            let bak_tmp = self.backup.with_extension("bak.tmp");
            let _ = fs::remove_file(&bak_tmp);
            match fs::hard_link(&self.path, &bak_tmp) {
                Ok(()) => fs::rename(&bak_tmp, &self.backup).map_err(io_err(&self.backup))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(PrefsError::Io { path: bak_tmp, source: e }),
            }
        }
        fs::rename(tmp, &self.path).map_err(io_err(&self.path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err(&self.dir))
    }

    /// Calls `observer` with each key a flush made durable (OpenHarmony's
    /// `on('change')`), on the flushing thread.
    pub fn observe(&self, observer: impl Fn(&str) + Send + Sync + 'static) -> ObserverId {
        let mut o = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        o.0 += 1;
        let id = ObserverId(o.0);
        o.1.push((id, Arc::new(observer)));
        id
    }

    /// Removes an observer (`off('change')`); false if it was not there.
    pub fn unobserve(&self, id: ObserverId) -> bool {
        let mut o = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        let before = o.1.len();
        o.1.retain(|(i, _)| *i != id);
        o.1.len() != before
    }
}

impl Drop for Preferences {
    fn drop(&mut self) {
        let n = lock(&self.state).changed.len();
        if n > 0 {
            warn!("{}: closed with {n} unflushed changes; they are not kept", self.path.display());
        }
        // Out of the table and the lock let go together, under the table's
        // mutex: an `open` of this file sees either this instance or no
        // lock of this process.
        let mut open = open_files();
        if open.get(&self.path).is_some_and(|w| w.strong_count() == 0) {
            open.remove(&self.path);
        }
        drop(self.lock.take());
    }
}

/// Removes the preferences `name` in `dir` from disk, its backup with it
/// (OpenHarmony's `deletePreferences`; the empty `.lock` file stays). Refused with `Locked` while it is
/// open, in this process or another.
pub fn delete(dir: &Path, name: &str) -> Result<(), PrefsError> {
    check_name(name)?;
    let dir = dir.canonicalize().map_err(io_err(dir))?;
    let path = dir.join(format!("{name}.prefs"));
    // Held to the end: no open of this file in this process meanwhile.
    let open = open_files();
    if open.get(&path).is_some_and(|w| w.strong_count() > 0) {
        return Err(PrefsError::Locked(path));
    }
    let lock_path = dir.join(format!("{name}.prefs.lock"));
    let lock_file = match File::open(&lock_path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(PrefsError::Io { path: lock_path, source: e }),
    };
    if let Some(f) = &lock_file {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(PrefsError::Locked(path));
        }
    }
    // The lock file stays: removing it would let a process that opened it
    // just before lock a file nobody else can find any more, while a third
    // creates a new one (two owners).
    for p in [path.clone(), dir.join(format!("{name}.prefs.bak")), dir.join(format!("{name}.prefs.tmp"))] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(PrefsError::Io { path: p, source: e }),
        }
    }
    let synced = File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir));
    drop(open);
    synced
}

#[cfg(test)]
mod tests;
