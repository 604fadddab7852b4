//! `hilog -w`: the persisting job, writing the rings to rotating files
//! under `/data/log/hilog` (OpenHarmony's log persister).
//!
//! The job is a reader like any other (a cursor into the rings), so it
//! starts with what the rings hold and never slows a writer. Lines are
//! written as `hilog` prints them to `<name>.<NNN>.<YYYYMMDD-HHMMSS>`; a
//! file that reaches the job's size is closed and compressed to `.gz` on a
//! thread of its own, and only the newest `count` files are kept. The job's
//! settings are saved in [`JOB_FILE`], so it carries on after a reboot
//! (hilogd finds the file once `/data` is mounted). A write error (a full
//! disk) stops the job and says why in the log and in `hilog -w query`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ring::{Record, Store};
use crate::LogType;

/// Where the files go.
pub const DIR: &str = "/data/log/hilog";
/// The saved job settings, in [`DIR`].
pub const JOB_FILE: &str = "persist.json";
/// Smallest file size (`-l`), bytes.
pub const MIN_FILE: u64 = 64 * 1024;
/// Largest file size, bytes.
pub const MAX_FILE: u64 = 512 * 1024 * 1024;
/// Default file size, bytes.
pub const DEFAULT_FILE: u64 = 4 * 1024 * 1024;
/// Most files kept (`-n`).
pub const MAX_FILES: u32 = 1000;
/// Default number of files kept.
pub const DEFAULT_FILES: u32 = 10;
/// Bytes gathered before a write.
const FLUSH_AT: usize = 64 * 1024;

/// A job's settings (what `hilog -w start` was given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// File name prefix: letters, digits, `_` and `-`, at most 32 bytes.
    pub name: String,
    /// Size at which a file is rotated, bytes.
    pub file_size: u64,
    /// Files kept (the newest).
    pub files: u32,
    /// Compress rotated files with gzip.
    pub compress: bool,
    /// Types written (empty: app, core, init).
    pub types: Vec<LogType>,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec { name: "hilog".into(), file_size: DEFAULT_FILE, files: DEFAULT_FILES, compress: true, types: Vec::new() }
    }
}

impl Spec {
    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the setting that is out of bounds.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 32 || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("file name {:?}: 1-32 letters, digits, _ or -", self.name));
        }
        if !(MIN_FILE..=MAX_FILE).contains(&self.file_size) {
            return Err(format!("file size {}: {}K..{}M", self.file_size, MIN_FILE / 1024, MAX_FILE >> 20));
        }
        if !(2..=MAX_FILES).contains(&self.files) {
            return Err(format!("number of files {}: 2..{MAX_FILES}", self.files));
        }
        Ok(())
    }

    fn types(&self) -> Vec<LogType> {
        if self.types.is_empty() {
            crate::control::DEFAULT_TYPES.to_vec()
        } else {
            self.types.clone()
        }
    }
}

/// What `hilog -w query` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub running: bool,
    pub spec: Option<Spec>,
    /// The file being written.
    pub current: Option<String>,
    /// Lines written since the job (re)started.
    pub lines: u64,
    /// Why the job stopped, if it stopped on an error.
    pub error: Option<String>,
}

/// A running job.
#[derive(Debug)]
pub struct Job {
    dir: PathBuf,
    spec: Spec,
    types: Vec<LogType>,
    cursor: u64,
    reported: [u64; 4],
    file: Option<(File, PathBuf, u64)>,
    index: u32,
    buf: Vec<u8>,
    lines: u64,
}

fn stamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (y, m, d) = crate::cli::civil(now.div_euclid(86_400));
    let t = now.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", t / 3600, t / 60 % 60, t % 60)
}

/// The index of a job file `<name>.<NNN>.<stamp>[.gz]`.
fn index_of(name: &str, file: &str) -> Option<u32> {
    let rest = file.strip_prefix(name)?.strip_prefix('.')?;
    let (n, _) = rest.split_once('.')?;
    n.parse().ok()
}

/// Every file of the job's in `dir` (finished, being written, being
/// compressed), by index, oldest first.
fn file_groups(dir: &Path, name: &str) -> std::collections::BTreeMap<u32, Vec<PathBuf>> {
    let mut groups: std::collections::BTreeMap<u32, Vec<PathBuf>> = Default::default();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Some(i) = e.file_name().to_str().and_then(|f| index_of(name, f)) {
                groups.entry(i).or_default().push(e.path());
            }
        }
    }
    groups
}

/// The job's files in `dir`, oldest first: (index, path), one per index
/// (the compressed one once it is complete).
pub fn files(dir: &Path, name: &str) -> Vec<(u32, PathBuf)> {
    file_groups(dir, name)
        .into_iter()
        .filter_map(|(i, mut paths)| {
            paths.retain(|p| !p.to_string_lossy().ends_with(".tmp"));
            paths.sort_by_key(|p| !p.to_string_lossy().ends_with(".gz"));
            paths.into_iter().next().map(|p| (i, p))
        })
        .collect()
}

impl Job {
    /// Starts a job in `dir` from the first record the rings hold, saving
    /// its settings so it resumes after a restart.
    ///
    /// # Errors
    /// The settings' or the directory's problem.
    pub fn start(dir: &Path, spec: Spec, save: bool) -> Result<Job, String> {
        spec.check()?;
        if save {
            let tmp = dir.join(format!("{JOB_FILE}.tmp"));
            let body = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
            std::fs::write(&tmp, body)
                .and_then(|_| File::open(&tmp)?.sync_all())
                .and_then(|_| std::fs::rename(&tmp, dir.join(JOB_FILE)))
                .map_err(|e| format!("cannot save the job in {}: {e}", dir.display()))?;
        }
        let index = files(dir, &spec.name).last().map(|(i, _)| i + 1).unwrap_or(0) % 1000;
        let job = Job { dir: dir.to_owned(), types: spec.types(), spec, cursor: 0, reported: [0; 4], file: None, index, buf: Vec::new(), lines: 0 };
        // Files left by an earlier run (a restart, a reboot) are closed ones:
        // kept to the job's count and compressed like any rotated file.
        job.prune();
        if job.spec.compress {
            let plain: Vec<PathBuf> = files(dir, &job.spec.name).into_iter().map(|(_, p)| p).filter(|p| !p.to_string_lossy().ends_with(".gz")).collect();
            if !plain.is_empty() {
                let _ = std::thread::Builder::new().name("hilog-gzip".into()).spawn(move || {
                    for p in plain {
                        let _ = compress(&p);
                    }
                });
            }
        }
        Ok(job)
    }

    /// Keeps the newest `files - 1` closed files (the one being written or
    /// about to be makes `files`). An index is one file however many names
    /// it has for a moment (plain, `.gz.tmp`, `.gz`).
    fn prune(&self) {
        let all = file_groups(&self.dir, &self.spec.name);
        let excess = all.len().saturating_sub(self.spec.files as usize - 1);
        for (_, paths) in all.into_iter().take(excess) {
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// The job saved in `dir`, if any.
    pub fn saved(dir: &Path) -> Option<Spec> {
        serde_json::from_slice(&std::fs::read(dir.join(JOB_FILE)).ok()?).ok()
    }

    /// Stops the job for good: its saved settings are removed.
    pub fn forget(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(JOB_FILE));
    }

    /// The job's settings.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Lines written.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The file being written.
    pub fn current(&self) -> Option<String> {
        self.file.as_ref().map(|(_, p, _)| p.display().to_string())
    }

    /// Takes what the rings hold past the cursor; writes when enough has
    /// gathered or `flush`.
    ///
    /// # Errors
    /// A write error (the job should stop).
    pub fn pump(&mut self, store: &Store, flush: bool) -> Result<(), String> {
        let n = store.lost_since(&self.types, self.cursor, &mut self.reported);
        if n > 0 {
            let _ = writeln!(self.buf, "hilog: up to {n} lines were overwritten before the persister wrote them");
        }
        let buf = &mut self.buf;
        let mut n = 0;
        self.cursor = store.walk(&self.types, self.cursor, |r: &Record| {
            buf.extend_from_slice(crate::cli::format_record(r).as_bytes());
            buf.push(b'\n');
            n += 1;
            true
        });
        self.lines += n;
        if self.buf.len() >= FLUSH_AT || (flush && !self.buf.is_empty()) {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> Result<(), String> {
        if self.file.is_none() {
            let path = self.dir.join(format!("{}.{:03}.{}", self.spec.name, self.index, stamp()));
            let f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some((f, path, len));
        }
        let Some((f, path, len)) = self.file.as_mut() else { return Ok(()) };
        f.write_all(&self.buf).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        *len += self.buf.len() as u64;
        self.buf.clear();
        if *len >= self.spec.file_size {
            self.rotate();
        }
        Ok(())
    }

    /// Closes the current file (compressing it on a thread) and keeps only
    /// the newest files.
    fn rotate(&mut self) {
        if let Some((f, path, _)) = self.file.take() {
            let _ = f.sync_all();
            drop(f);
            if self.spec.compress {
                let _ = std::thread::Builder::new().name("hilog-gzip".into()).spawn(move || {
                    let _ = compress(&path);
                });
            }
        }
        self.index = (self.index + 1) % 1000;
        self.prune();
    }

    /// Writes what is gathered and syncs the file (the job stops or hilogd
    /// exits).
    pub fn finish(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.write();
        }
        if let Some((f, _, _)) = &self.file {
            let _ = f.sync_all();
        }
    }
}

/// Compresses `path` to `path.gz` and removes it.
///
/// # Errors
/// The file system's.
pub fn compress(path: &Path) -> std::io::Result<()> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", path.display()));
    let mut src = File::open(path)?;
    let out = File::create(&tmp)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut src, &mut enc)?;
    enc.finish()?.sync_all()?;
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)
}
