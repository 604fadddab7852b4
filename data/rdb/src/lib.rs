//! The relational store: OpenHarmony's `RdbStore` on SQLite, for a process
//! keeping tables in its own directory.
//!
//! [`RdbStore::open`] takes a [`StoreConfig`] (the file, its security level,
//! the journal and sync modes: WAL with `synchronous=FULL` unless asked
//! otherwise, so a committed write survives a power cut), a schema version
//! and an [`OpenCallback`] that creates or upgrades the schema inside one
//! transaction (`PRAGMA user_version` holds the version). Then:
//! [`RdbStore::execute`] for raw SQL with bound arguments, `insert`,
//! `batch_insert` (one transaction), `update` and `delete` with
//! [`RdbPredicates`], `query` and `query_sql` giving a [`ResultSet`] that
//! reads in pages, [`RdbStore::transaction`], and `backup`/`restore` through
//! SQLite's online backup API.
//!
//! # Connections
//! One writer (a mutex: writes take turns) and up to
//! [`StoreConfig::readers`] read-only connections (four by default, as
//! OpenHarmony) that queries take from a pool; with WAL, reads never wait
//! for the writer. A [`ResultSet`] holds its reader, and a read
//! transaction on it (so every page comes from the same snapshot), until
//! it is dropped.
//!
//! # Errors
//! [`RdbError`], each naming the store's file: a damaged file is
//! `Corrupted`, a full disk `DiskFull`; identifiers that are not
//! `[A-Za-z_][A-Za-z0-9_]*` are refused before any SQL is made.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::backup::Backup;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode, OpenFlags, ToSql};
use tracing::{debug, info};

mod predicates;
mod result_set;

pub use predicates::RdbPredicates;
pub use result_set::ResultSet;

/// How long a connection waits for a lock another connection holds (the
/// writer during a checkpoint, a reader in DELETE journal mode) before
/// the call fails with [`RdbError::Sqlite`] (SQLITE_BUSY).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows a [`ResultSet`] page holds at most.
pub const PAGE_ROWS: usize = 256;
/// Bytes of values a [`ResultSet`] page holds at most (a page has at least
/// one row).
pub const PAGE_BYTES: usize = 1 << 20;

/// One value of a column (OpenHarmony's `ValueObject`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn size(&self) -> usize {
        match self {
            Value::Null | Value::Integer(_) | Value::Real(_) => 8,
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        if let Value::Integer(v) = self {
            Some(*v)
        } else {
            None
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        if let Value::Text(v) = self {
            Some(v)
        } else {
            None
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$v(v.into())
            }
        }
    )*};
}
value_from!(i64 => Integer, i32 => Integer, u32 => Integer, f64 => Real, bool => Integer,
            &str => Text, String => Text, Vec<u8> => Blob, &[u8] => Blob);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Integer(v),
            ValueRef::Real(v) => Value::Real(v),
            // SQLite may hold text that is not UTF-8 (written by another
            // program): kept, with U+FFFD for the bad bytes.
            ValueRef::Text(v) => Value::Text(match std::str::from_utf8(v) {
                Ok(s) => s.to_owned(),
                Err(_) => String::from_utf8_lossy(v).into_owned(),
            }),
            ValueRef::Blob(v) => Value::Blob(v.to_vec()),
        }
    }
}

/// Column values for an insert or update (OpenHarmony's `ValuesBucket`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValuesBucket(Vec<(String, Value)>);

impl ValuesBucket {
    pub fn new() -> ValuesBucket {
        ValuesBucket::default()
    }

    /// Sets `column` (a later put of the same column replaces it).
    pub fn put(mut self, column: &str, value: impl Into<Value>) -> ValuesBucket {
        let value = value.into();
        match self.0.iter_mut().find(|(c, _)| c == column) {
            Some(slot) => slot.1 = value,
            None => self.0.push((column.to_owned(), value)),
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// OpenHarmony's data security levels: S1 (low) to S4 (critical). A store
/// keeps the level it was created with; opening it with a lower one is
/// [`RdbError::SecurityLevelDowngrade`] (a level may be raised). Sync
/// between devices will use it to choose which devices may hold the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecurityLevel {
    S1 = 1,
    S2 = 2,
    S3 = 3,
    S4 = 4,
}

/// The journal (SQLite's `journal_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// Write-ahead log: readers do not wait for the writer (the default).
    Wal,
    /// A rollback journal deleted at commit.
    Delete,
}

/// When commits reach the disk (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Every commit is synced: survives a power cut (the default).
    Full,
    /// With WAL, a power cut may roll back the last commits (never damage).
    Normal,
}

/// How to open a store (OpenHarmony's `StoreConfig`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub security_level: SecurityLevel,
    pub journal: Journal,
    pub sync: Sync,
    /// Read-only connections for queries, 1..=16 (default 4).
    pub readers: usize,
}

impl StoreConfig {
    /// A store in the file `path` (its directory must exist): S1, WAL,
    /// `synchronous=FULL`, four readers.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig { path: path.into(), security_level: SecurityLevel::S1, journal: Journal::Wal, sync: Sync::Full, readers: 4 }
    }
    pub fn security_level(mut self, level: SecurityLevel) -> Self {
        self.security_level = level;
        self
    }
    pub fn journal(mut self, journal: Journal) -> Self {
        self.journal = journal;
        self
    }
    pub fn sync(mut self, sync: Sync) -> Self {
        self.sync = sync;
        self
    }
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n.clamp(1, 16);
        self
    }
}

/// What can go wrong; the variants that concern the file name it.
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("{0:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 128 bytes)")]
    InvalidIdentifier(String),
    #[error("predicates: {0}")]
    InvalidPredicates(String),
    #[error("an insert or update with no values")]
    EmptyBucket,
    #[error("{path}: damaged ({why})")]
    Corrupted { path: PathBuf, why: String },
    #[error("{0}: the disk is full")]
    DiskFull(PathBuf),
    #[error("{path}: created at security level S{stored}, opened as S{asked}")]
    SecurityLevelDowngrade { path: PathBuf, stored: u8, asked: u8 },
    #[error("{path}: schema version {stored} is newer than {asked} and on_downgrade refused it")]
    VersionTooNew { path: PathBuf, stored: u32, asked: u32 },
    #[error("{path}: {why}")]
    Callback { path: PathBuf, why: String },
    #[error("{path}: all {readers} readers stayed taken for 10 s (result sets still open?)")]
    NoReader { path: PathBuf, readers: usize },
    #[error("{0}: the store's own methods were called inside its transaction (use the Transaction given to the closure)")]
    Reentrant(PathBuf),
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Checks a table or column name; only these reach SQL text, quoted.
pub fn check_identifier(name: &str) -> Result<(), RdbError> {
    let mut chars = name.chars();
    let ok = name.len() <= 128 && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(RdbError::InvalidIdentifier(name.to_owned()))
    }
}

pub(crate) fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// Maps a SQLite error to ours, naming the store's file.
pub(crate) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> RdbError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => RdbError::Corrupted { path: path.to_owned(), why: e.to_string() },
        Some(ErrorCode::DiskFull) => RdbError::DiskFull(path.to_owned()),
        _ => RdbError::Sqlite { path: path.to_owned(), source: e },
    }
}

/// Creates, upgrades or downgrades the schema when a store is opened; each
/// runs in the transaction that then sets `user_version`, so a failure
/// leaves the store as it was.
pub trait OpenCallback {
    /// The store is new (version 0): create the tables of `version`.
    fn on_create(&self, tx: &Transaction<'_>) -> Result<(), RdbError>;
    /// The store has version `old` < `new`.
    fn on_upgrade(&self, tx: &Transaction<'_>, old: u32, new: u32) -> Result<(), RdbError> {
        let _ = (tx, old, new);
        Ok(())
    }
    /// The store has version `old` > `new`: refused unless overridden.
    fn on_downgrade(&self, tx: &Transaction<'_>, old: u32, new: u32) -> Result<(), RdbError> {
        Err(RdbError::VersionTooNew { path: tx.path.to_owned(), stored: old, asked: new })
    }
}

/// The readers' pool, shared with the result sets holding one.
pub(crate) struct Pool {
    path: PathBuf,
    max: usize,
    idle: Mutex<(Vec<Connection>, usize)>,
    freed: Condvar,
}

impl Pool {
    /// A reader: an idle one, a new one while fewer than `max` are open,
    /// else the next one given back within [`BUSY_TIMEOUT`]
    /// ([`RdbError::NoReader`]: every reader is held, e.g. by result sets
    /// this thread keeps).
    pub(crate) fn take(self: &Arc<Pool>) -> Result<Connection, RdbError> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut g = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = g.0.pop() {
                return Ok(c);
            }
            if g.1 < self.max {
                g.1 += 1;
                drop(g);
                return open_reader(&self.path).inspect_err(|_| {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(RdbError::NoReader { path: self.path.clone(), readers: self.max });
            }
            g = self.freed.wait_timeout(g, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    pub(crate) fn give_back(&self, c: Connection) {
        let mut g = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_autocommit() {
            g.0.push(c);
        } else {
            // A reader left inside a transaction is not reused.
            g.1 -= 1;
        }
        self.freed.notify_one();
    }
}

fn open_reader(path: &Path) -> Result<Connection, RdbError> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sql_err(path))?;
    strict(&c).map_err(sql_err(path))?;
    c.busy_timeout(BUSY_TIMEOUT).map_err(sql_err(path))?;
    Ok(c)
}

/// Turns off SQLite's "double-quoted string" fallback: a quoted name that
/// is no column is an error, never the string literal it would otherwise
/// become (a misspelt column in a predicate would match every row).
fn strict(c: &Connection) -> rusqlite::Result<()> {
    use rusqlite::config::DbConfig;
    c.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    c.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    Ok(())
}

/// An open store. `Send + Sync`: share it with an `Arc`.
pub struct RdbStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    pool: Arc<Pool>,
}

/// A transaction on the writer (see [`RdbStore::transaction`]); also what
/// [`OpenCallback`] gets.
pub struct Transaction<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

const META: &str = "accord_rdb_meta";

thread_local! {
    /// The stores whose transaction this thread is running.
    static IN_TRANSACTION: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks a store as in a transaction on this thread while it lives (a
/// panic included).
struct InTransaction(usize);

impl InTransaction {
    fn enter(store: &RdbStore) -> InTransaction {
        let me = store as *const RdbStore as usize;
        IN_TRANSACTION.with(|t| t.borrow_mut().push(me));
        InTransaction(me)
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        IN_TRANSACTION.with(|t| {
            let mut t = t.borrow_mut();
            if let Some(i) = t.iter().rposition(|x| *x == self.0) {
                t.remove(i);
            }
        });
    }
}

impl RdbStore {
    /// Opens (creating it if needed) the store `config.path` at schema
    /// `version` (≥ 1), running `callback` as its version asks. Errors:
    /// `Corrupted` (not a sound database: left as it is), `SecurityLevelDowngrade`,
    /// `VersionTooNew`, the callback's own, `Sqlite`/`Io`.
    pub fn open(config: &StoreConfig, version: u32, callback: &dyn OpenCallback) -> Result<RdbStore, RdbError> {
        let path = config.path.clone();
        let e = sql_err(&config.path);
        let existed = path.exists();
        let writer = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(&e)?;
        strict(&writer).map_err(&e)?;
        if !existed {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|source| RdbError::Io { path: path.clone(), source })?;
        }
        writer.busy_timeout(BUSY_TIMEOUT).map_err(&e)?;
        let journal = match config.journal {
            Journal::Wal => "WAL",
            Journal::Delete => "DELETE",
        };
        let mode: String = writer.query_row(&format!("PRAGMA journal_mode={journal}"), [], |r| r.get(0)).map_err(&e)?;
        if !mode.eq_ignore_ascii_case(journal) {
            return Err(RdbError::Callback { path, why: format!("journal mode {journal} refused (SQLite kept {mode})") });
        }
        let sync = match config.sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        writer.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;")).map_err(&e)?;
        let store = RdbStore {
            writer: Mutex::new(writer),
            pool: Arc::new(Pool { path: path.clone(), max: config.readers.clamp(1, 16), idle: Mutex::new((Vec::new(), 0)), freed: Condvar::new() }),
            path,
        };
        store.transaction(|tx| {
            tx.conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {META}(name TEXT PRIMARY KEY, value) WITHOUT ROWID")).map_err(sql_err(tx.path))?;
            let asked = config.security_level as u8;
            let stored: Option<u8> = tx
                .conn
                .query_row(&format!("SELECT value FROM {META} WHERE name='security_level'"), [], |r| r.get(0))
                .map(Some)
                .or_else(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })
                .map_err(sql_err(tx.path))?;
            match stored {
                Some(s) if s > asked => {
                    return Err(RdbError::SecurityLevelDowngrade { path: tx.path.to_owned(), stored: s, asked });
                }
                Some(s) if s == asked => {}
                _ => {
                    tx.conn.execute(&format!("INSERT OR REPLACE INTO {META} VALUES('security_level', ?1)"), [asked]).map_err(sql_err(tx.path))?;
                }
            }
            let old = tx.version()?;
            if old == 0 {
                callback.on_create(tx)?;
            } else if old < version {
                info!("{}: upgrading schema {old} -> {version}", tx.path.display());
                callback.on_upgrade(tx, old, version)?;
            } else if old > version {
                callback.on_downgrade(tx, old, version)?;
            }
            if old != version {
                tx.conn.pragma_update(None, "user_version", version).map_err(sql_err(tx.path))?;
            }
            Ok(())
        })?;
        debug!("{}: open, schema {version}", store.path.display());
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer; [`RdbError::Reentrant`] inside this store's own
    /// transaction on this thread (waiting would deadlock).
    fn writer(&self) -> Result<MutexGuard<'_, Connection>, RdbError> {
        let me = self as *const RdbStore as usize;
        if IN_TRANSACTION.with(|t| t.borrow().contains(&me)) {
            return Err(RdbError::Reentrant(self.path.clone()));
        }
        Ok(self.writer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` in one transaction on the writer: committed if it returns
    /// `Ok` (durably, under `Sync::Full`), rolled back if it returns `Err`
    /// or panics. Inside `f`, write through the `Transaction` it is given:
    /// the store's own methods there are [`RdbError::Reentrant`] (they
    /// would wait for the writer `f` holds).
    pub fn transaction<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, RdbError>) -> Result<T, RdbError> {
        let mut w = self.writer()?;
        let tx = w.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_err(&self.path))?;
        let _inside = InTransaction::enter(self);
        let out = f(&Transaction { conn: &tx, path: &self.path })?;
        tx.commit().map_err(sql_err(&self.path))?;
        Ok(out)
    }

    /// Runs SQL with bound `args` on the writer (one statement; DDL or
    /// DML); returns the rows it changed.
    pub fn execute(&self, sql: &str, args: &[Value]) -> Result<usize, RdbError> {
        Transaction { conn: &*self.writer()?, path: &self.path }.execute(sql, args)
    }

    /// Inserts a row; returns its rowid.
    pub fn insert(&self, table: &str, values: &ValuesBucket) -> Result<i64, RdbError> {
        Transaction { conn: &*self.writer()?, path: &self.path }.insert(table, values)
    }

    /// Inserts rows in one transaction (all or none); returns how many.
    pub fn batch_insert(&self, table: &str, rows: &[ValuesBucket]) -> Result<usize, RdbError> {
        self.transaction(|tx| {
            for r in rows {
                tx.insert(table, r)?;
            }
            Ok(rows.len())
        })
    }

    /// Sets `values` on the rows `predicates` match; returns how many.
    pub fn update(&self, values: &ValuesBucket, predicates: &RdbPredicates) -> Result<usize, RdbError> {
        Transaction { conn: &*self.writer()?, path: &self.path }.update(values, predicates)
    }

    /// Deletes the rows `predicates` match; returns how many.
    pub fn delete(&self, predicates: &RdbPredicates) -> Result<usize, RdbError> {
        Transaction { conn: &*self.writer()?, path: &self.path }.delete(predicates)
    }

    /// The rows `predicates` match, `columns` of them (all when empty), in
    /// pages (see [`ResultSet`]).
    pub fn query(&self, predicates: &RdbPredicates, columns: &[&str]) -> Result<ResultSet, RdbError> {
        let (sql, args, limit, offset) = predicates.select(columns)?;
        ResultSet::start(self.pool.clone(), sql, args, limit, offset)
    }

    /// The rows of a SELECT with bound `args`, in pages.
    pub fn query_sql(&self, sql: &str, args: &[Value]) -> Result<ResultSet, RdbError> {
        ResultSet::start(self.pool.clone(), format!("SELECT * FROM ({sql})"), args.to_vec(), None, 0)
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn version(&self) -> Result<u32, RdbError> {
        Transaction { conn: &*self.writer()?, path: &self.path }.version()
    }

    /// Copies the store, consistent as of one moment, to `dest` (replaced
    /// atomically: written beside it, synced, renamed).
    pub fn backup(&self, dest: &Path) -> Result<(), RdbError> {
        if dest.canonicalize().ok().is_some_and(|d| self.path.canonicalize().is_ok_and(|p| p == d)) {
            return Err(RdbError::Io {
                path: dest.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "a backup cannot replace the store itself"),
            });
        }
        let tmp = dest.with_extension("backup-tmp");
        let _ = fs::remove_file(&tmp);
        let de = sql_err(dest);
        {
            let w = self.writer()?;
            let mut out = Connection::open(&tmp).map_err(&de)?;
            Backup::new(&w, &mut out).map_err(&de)?.run_to_completion(256, Duration::ZERO, None).map_err(&de)?;
            out.pragma_update(None, "journal_mode", "DELETE").map_err(&de)?;
        }
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(|source| RdbError::Io { path: tmp.clone(), source })?;
        fs::rename(&tmp, dest).map_err(|source| RdbError::Io { path: dest.to_owned(), source })?;
        if let Some(dir) = dest.parent() {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            File::open(dir).and_then(|d| d.sync_all()).map_err(|source| RdbError::Io { path: dir.to_owned(), source })?;
        }
        Ok(())
    }

    /// Replaces the store's contents with the backup `src`, after checking
    /// it is a sound database (a damaged or missing one is refused and the
    /// store is left as it was).
    pub fn restore(&self, src: &Path) -> Result<(), RdbError> {
        let se = sql_err(src);
        let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(&se)?;
        let check: String = from.query_row("PRAGMA integrity_check(1)", [], |r| r.get(0)).map_err(&se)?;
        if check != "ok" {
            return Err(RdbError::Corrupted { path: src.to_owned(), why: check });
        }
        let mut w = self.writer()?;
        Backup::new(&from, &mut w).map_err(sql_err(&self.path))?.run_to_completion(256, Duration::from_millis(10), None).map_err(sql_err(&self.path))?;
        info!("{}: restored from {}", self.path.display(), src.display());
        Ok(())
    }

    /// `PRAGMA integrity_check` on the store: `Ok` or the problems found.
    pub fn integrity_check(&self) -> Result<Result<(), String>, RdbError> {
        let w = self.writer()?;
        let mut st = w.prepare("PRAGMA integrity_check").map_err(sql_err(&self.path))?;
        let lines: Vec<String> = st.query_map([], |r| r.get(0)).and_then(|m| m.collect()).map_err(sql_err(&self.path))?;
        Ok(if lines == ["ok"] { Ok(()) } else { Err(lines.join("; ")) })
    }
}

impl Transaction<'_> {
    /// See [`RdbStore::execute`].
    pub fn execute(&self, sql: &str, args: &[Value]) -> Result<usize, RdbError> {
        let mut st = self.conn.prepare_cached(sql).map_err(sql_err(self.path))?;
        st.execute(params_from_iter(args)).map_err(sql_err(self.path))
    }

    /// See [`RdbStore::insert`].
    pub fn insert(&self, table: &str, values: &ValuesBucket) -> Result<i64, RdbError> {
        check_identifier(table)?;
        if values.is_empty() {
            return Err(RdbError::EmptyBucket);
        }
        let mut cols = String::new();
        let mut marks = String::new();
        for (i, (c, _)) in values.0.iter().enumerate() {
            check_identifier(c)?;
            if i > 0 {
                cols.push_str(", ");
                marks.push_str(", ");
            }
            cols.push_str(&quote(c));
            marks.push('?');
        }
        let sql = format!("INSERT INTO {}({cols}) VALUES({marks})", quote(table));
        let mut st = self.conn.prepare_cached(&sql).map_err(sql_err(self.path))?;
        st.execute(params_from_iter(values.0.iter().map(|(_, v)| v))).map_err(sql_err(self.path))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// See [`RdbStore::update`].
    pub fn update(&self, values: &ValuesBucket, predicates: &RdbPredicates) -> Result<usize, RdbError> {
        if values.is_empty() {
            return Err(RdbError::EmptyBucket);
        }
        let (w, args) = predicates.write_clause()?;
        let mut sets = Vec::with_capacity(values.0.len());
        for (c, _) in &values.0 {
            check_identifier(c)?;
            sets.push(format!("{} = ?", quote(c)));
        }
        let sql = format!("UPDATE {} SET {}{w}", quote(predicates.table()), sets.join(", "));
        let all = values.0.iter().map(|(_, v)| v).chain(args.iter());
        let mut st = self.conn.prepare_cached(&sql).map_err(sql_err(self.path))?;
        st.execute(params_from_iter(all)).map_err(sql_err(self.path))
    }

    /// See [`RdbStore::delete`].
    pub fn delete(&self, predicates: &RdbPredicates) -> Result<usize, RdbError> {
        let (w, args) = predicates.write_clause()?;
        let sql = format!("DELETE FROM {}{w}", quote(predicates.table()));
        let mut st = self.conn.prepare_cached(&sql).map_err(sql_err(self.path))?;
        st.execute(params_from_iter(args)).map_err(sql_err(self.path))
    }

    /// Every row `predicates` match, read now, inside this transaction
    /// (the caller's own memory: use [`RdbStore::query`] for large sets).
    pub fn query_all(&self, predicates: &RdbPredicates, columns: &[&str]) -> Result<Vec<Vec<Value>>, RdbError> {
        let (mut sql, args, limit, offset) = predicates.select(columns)?;
        // Numbers of ours, not bound (see the result set's pages).
        sql.push_str(&format!(" LIMIT {} OFFSET {offset}", limit.unwrap_or(-1)));
        let mut st = self.conn.prepare_cached(&sql).map_err(sql_err(self.path))?;
        let n = st.column_count();
        let rows = st
            .query_map(params_from_iter(&args), |r| (0..n).map(|i| r.get_ref(i).map(Value::from)).collect())
            .and_then(|m| m.collect())
            .map_err(sql_err(self.path))?;
        Ok(rows)
    }

    /// The schema version.
    pub fn version(&self) -> Result<u32, RdbError> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_err(self.path))
    }
}

#[cfg(test)]
mod tests;
