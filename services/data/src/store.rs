//! One single-version KV store (OpenHarmony's `SingleKvStore`): a SQLite
//! file in WAL mode with `synchronous=FULL`, so a write the service
//! acknowledged survives a power cut (SQLite documents that NORMAL may
//! roll a committed transaction back).
//!
//! Tables: `entries(key, value, mtime, origin)` keyed by the key, and
//! `changes(seq, key, deleted, mtime, origin)`, the change log a sync
//! between devices reads ([`Store::changes`]); it keeps the last
//! [`CHANGES_KEPT`] changes. Every write is one transaction: the entry and
//! its change go together or not at all.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::{Change, Entry, KvError};

/// Longest key, in bytes (OpenHarmony's `Constant::MAX_KEY_LENGTH`).
pub const MAX_KEY: usize = 1024;
/// Largest value, in bytes (OpenHarmony's `Constant::MAX_VALUE_LENGTH`).
pub const MAX_VALUE: usize = 4 << 20;
/// Largest store file (SQLite's `max_page_count`): a write past it is
/// [`KvError::StoreFull`].
pub const MAX_STORE_BYTES: u64 = 64 << 20;
/// Changes kept in a store's change log (older ones are trimmed).
pub const CHANGES_KEPT: u64 = 10_000;
/// Most bytes of keys and values one page of [`Store::entries`] returns
/// (a page always has at least one entry).
pub const PAGE_BYTES: usize = 1 << 20;

/// An open store.
pub struct Store {
    conn: Connection,
    name: String,
    path: PathBuf,
    /// Its files were removed (`delete_store`): this handle is not to be
    /// used any more.
    pub deleted: bool,
    /// The change number past which the log is trimmed next (0: at the
    /// first write after opening).
    next_trim: i64,
}

/// Milliseconds since the epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Checks a key against OpenHarmony's rules: not empty, at most
/// [`MAX_KEY`] bytes.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidArgument("an empty key".into()));
    }
    if key.len() > MAX_KEY {
        return Err(KvError::KeyTooLong(key.len()));
    }
    Ok(())
}

/// Checks a value's size.
pub fn check_value(len: usize) -> Result<(), KvError> {
    if len > MAX_VALUE {
        return Err(KvError::ValueTooBig(len as u64));
    }
    Ok(())
}

impl Store {
    /// Opens (creating if `create`) the store `name` in file `path`. A
    /// file that is not a sound SQLite database is
    /// [`KvError::Corrupted`], named, and left as it is.
    pub fn open(path: &Path, name: &str, create: bool) -> Result<Store, KvError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen) if !create => KvError::NoSuchStore(name.to_owned()),
            _ => db_error(name, path, e),
        })?;
        let s = Store { conn, name: name.to_owned(), path: path.to_owned(), deleted: false, next_trim: 0 };
        s.setup().map_err(|e| s.error(e))?;
        Ok(s)
    }

    fn setup(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Pages freed by deletes go back to the disk (and the uid's share);
        // takes effect only on a new file, before anything is in it.
        self.conn.execute_batch("PRAGMA auto_vacuum=FULL;")?;
        let mode: String = self.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("store {} ({}): journal mode {mode}, not WAL", self.name, self.path.display());
        }
        self.conn.execute_batch("PRAGMA synchronous=FULL;")?;
        let page: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = MAX_STORE_BYTES / u64::try_from(page.max(512)).unwrap_or(4096);
        self.conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))?;
        let check: String = self.conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), Some(format!("quick_check: {check}"))));
        }
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, mtime INTEGER NOT NULL, origin TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, deleted INTEGER NOT NULL, mtime INTEGER NOT NULL, origin TEXT NOT NULL);",
        )
    }

    /// Closes the file (its log checkpointed and removed) and marks the
    /// handle deleted; it is not to be used any more.
    pub fn close(&mut self) {
        if let Ok(mem) = Connection::open_in_memory() {
            drop(std::mem::replace(&mut self.conn, mem));
        }
        self.deleted = true;
    }

    /// What a SQLite error means for this store.
    fn error(&self, e: rusqlite::Error) -> KvError {
        db_error(&self.name, &self.path, e)
    }

    /// Stores `value` under `key` (replacing what was there), durably:
    /// on disk when this returns.
    pub fn put(&mut self, key: &str, value: &[u8], origin: &str) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value.len())?;
        self.write(|tx, mtime| put_in(tx, key, value, mtime, origin))
    }

    /// Stores every entry in one transaction (all or none).
    pub fn put_batch(&mut self, entries: &[(String, &[u8])], origin: &str) -> Result<(), KvError> {
        for (k, v) in entries {
            check_key(k)?;
            check_value(v.len())?;
        }
        self.write(|tx, mtime| {
            for (k, v) in entries {
                put_in(tx, k, v, mtime, origin)?;
            }
            Ok(())
        })
    }

    /// Deletes `key`; whether it was there.
    pub fn delete(&mut self, key: &str, origin: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let mut gone = false;
        self.write(|tx, mtime| {
            gone = delete_in(tx, key, mtime, origin)?;
            Ok(())
        })?;
        Ok(gone)
    }

    /// Deletes every key in one transaction; the keys that were there.
    pub fn delete_batch(&mut self, keys: &[String], origin: &str) -> Result<Vec<String>, KvError> {
        for k in keys {
            check_key(k)?;
        }
        let mut gone = Vec::new();
        self.write(|tx, mtime| {
            for k in keys {
                if delete_in(tx, k, mtime, origin)? {
                    gone.push(k.clone());
                }
            }
            Ok(())
        })?;
        Ok(gone)
    }

    /// Runs `f` in one immediate transaction and commits it (then trims
    /// the change log now and then).
    fn write(&mut self, f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> rusqlite::Result<()>) -> Result<(), KvError> {
        let next_trim = self.next_trim;
        let r = (|| {
            let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            f(&tx, now_ms())?;
            // Trimmed in steps of a thousand, not at every write: the
            // newest change's number is known without a query.
            let last = tx.last_insert_rowid();
            let trimmed = last >= next_trim;
            if trimmed {
                tx.execute("DELETE FROM changes WHERE seq <= ?1", params![last - CHANGES_KEPT as i64])?;
            }
            tx.commit()?;
            Ok(if trimmed { last + 1000 } else { next_trim })
        })();
        self.next_trim = r.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        self.conn.query_row("SELECT value FROM entries WHERE key = ?1", params![key], |r| r.get(0)).optional().map_err(|e| self.error(e))
    }

    /// Entries whose key starts with `prefix`, in key order, those after
    /// key `after` if given: at most `limit` of them and about
    /// [`PAGE_BYTES`] (at least one, if any is left). The next page starts
    /// after the last key of this one.
    pub fn entries(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<Entry>, KvError> {
        let r = (|| {
            let mut st = self
                .conn
                .prepare_cached("SELECT key, value, mtime, origin FROM entries WHERE key GLOB ?1 AND (?2 IS NULL OR key > ?2) ORDER BY key LIMIT ?3")?;
            let mut rows = st.query(params![glob_prefix(prefix), after, limit.clamp(1, 100_000)])?;
            page_of(&mut rows)
        })();
        r.map_err(|e| self.error(e))
    }

    /// Changes after sequence number `after`, oldest first, at most
    /// `limit` and about [`PAGE_BYTES`].
    pub fn changes(&self, after: i64, limit: u32) -> Result<Vec<Change>, KvError> {
        let r = (|| -> rusqlite::Result<Vec<Change>> {
            let mut st = self.conn.prepare_cached("SELECT seq, key, deleted, mtime, origin FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let mut rows = st.query(params![after, limit.clamp(1, 100_000)])?;
            let (mut out, mut bytes) = (Vec::new(), 0usize);
            while let Some(r) = rows.next()? {
                let c = Change { seq: r.get(0)?, key: r.get(1)?, deleted: r.get(2)?, mtime_ms: r.get(3)?, origin: r.get(4)? };
                bytes += c.key.len() + c.origin.len() + 32;
                out.push(c);
                if bytes >= PAGE_BYTES {
                    break;
                }
            }
            Ok(out)
        })();
        r.map_err(|e| self.error(e))
    }

    /// Writes a copy of the store as it is now to `dest` (SQLite's
    /// `VACUUM INTO` a file beside it, synced, renamed over `dest`, the
    /// directory synced): `dest` is the old copy or the new one, never
    /// half of one.
    pub fn backup_into(&self, dest: &Path) -> Result<(), KvError> {
        let tmp = dest.with_extension("bak-tmp");
        let _ = std::fs::remove_file(&tmp);
        let io = |e: std::io::Error, p: &Path| KvError::Storage(format!("backup of {}: {}: {e}", self.name, p.display()));
        let tmp_str = tmp.to_str().ok_or_else(|| KvError::Storage(format!("{} is not UTF-8", tmp.display())))?;
        self.conn.execute("VACUUM INTO ?1", params![tmp_str]).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.error(e)
        })?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io(e, &tmp))?;
        std::fs::rename(&tmp, dest).map_err(|e| io(e, dest))?;
        if let Some(dir) = dest.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(e, dir))?;
        }
        Ok(())
    }

    /// Makes the store's entries those of the backup `src`, in one
    /// transaction: keys not in the backup are deleted, keys whose value
    /// differs are put, each with its change-log record (so a sync sees a
    /// restore as the changes it is). A backup that is not a sound store is
    /// [`KvError::Corrupted`] naming it, and the store is left as it was.
    /// Returns the keys that changed.
    pub fn restore_from(&mut self, src: &Path, origin: &str) -> Result<Vec<String>, KvError> {
        let bad = |why: String| KvError::Corrupted { store: self.name.clone(), why: format!("backup {}: {why}", src.display()) };
        {
            let b = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(|e| bad(e.to_string()))?;
            let check: String = b.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| bad(e.to_string()))?;
            if check != "ok" {
                return Err(bad(check));
            }
            b.query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0)).map_err(|e| bad(e.to_string()))?;
        }
        let src_str = src.to_str().ok_or_else(|| KvError::Storage(format!("{} is not UTF-8", src.display())))?;
        self.conn.execute("ATTACH DATABASE ?1 AS b", params![src_str]).map_err(|e| self.error(e))?;
        let before: Result<i64, KvError> = self.conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| r.get(0)).map_err(|e| self.error(e));
        let r = before.and_then(|before| {
            self.write(|tx, mtime| {
                tx.execute(
                    "INSERT INTO changes(key, deleted, mtime, origin) SELECT key, 1, ?1, ?2 FROM entries WHERE key NOT IN (SELECT key FROM b.entries)",
                    params![mtime, origin],
                )?;
                tx.execute("DELETE FROM entries WHERE key NOT IN (SELECT key FROM b.entries)", [])?;
                tx.execute(
                    "INSERT INTO changes(key, deleted, mtime, origin) SELECT s.key, 0, ?1, ?2 FROM b.entries s LEFT JOIN entries m ON m.key = s.key WHERE m.key IS NULL OR m.value IS NOT s.value",
                    params![mtime, origin],
                )?;
                tx.execute(
                    "INSERT OR REPLACE INTO entries(key, value, mtime, origin) SELECT s.key, s.value, ?1, ?2 FROM b.entries s LEFT JOIN entries m ON m.key = s.key WHERE m.key IS NULL OR m.value IS NOT s.value",
                    params![mtime, origin],
                )?;
                Ok(())
            })?;
            let mut st = self.conn.prepare("SELECT key FROM changes WHERE seq > ?1 ORDER BY seq").map_err(|e| self.error(e))?;
            let keys = st.query_map(params![before], |r| r.get(0)).and_then(|m| m.collect()).map_err(|e| self.error(e));
            keys
        });
        let detached = self.conn.execute("DETACH DATABASE b", []);
        let keys = r?;
        detached.map_err(|e| self.error(e))?;
        Ok(keys)
    }

    /// How many entries the store holds.
    pub fn count(&self) -> Result<u64, KvError> {
        self.conn.query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(|e| self.error(e))
    }
}

fn put_in(tx: &rusqlite::Transaction<'_>, key: &str, value: &[u8], mtime: i64, origin: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO entries(key, value, mtime, origin) VALUES (?1, ?2, ?3, ?4)")?.execute(params![key, value, mtime, origin])?;
    tx.prepare_cached("INSERT INTO changes(key, deleted, mtime, origin) VALUES (?1, 0, ?2, ?3)")?.execute(params![key, mtime, origin])?;
    Ok(())
}

fn delete_in(tx: &rusqlite::Transaction<'_>, key: &str, mtime: i64, origin: &str) -> rusqlite::Result<bool> {
    let n = tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?.execute(params![key])?;
    if n > 0 {
        tx.prepare_cached("INSERT INTO changes(key, deleted, mtime, origin) VALUES (?1, 1, ?2, ?3)")?.execute(params![key, mtime, origin])?;
    }
    Ok(n > 0)
}

/// A GLOB pattern matching keys that start with `prefix` (its `*`, `?`
/// and `[` taken literally). SQLite uses the key's index for it.
/// Entries from rows of (key, value, mtime, origin) until they run out or
/// hold [`PAGE_BYTES`] (at least one, if any).
fn page_of(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Vec<Entry>> {
    let (mut out, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.next()? {
        let e = Entry { key: row.get(0)?, value: serde_bytes::ByteBuf::from(row.get::<_, Vec<u8>>(1)?), mtime_ms: row.get(2)?, origin: row.get(3)? };
        bytes += e.key.len() + e.value.len();
        out.push(e);
        if bytes >= PAGE_BYTES {
            break;
        }
    }
    Ok(out)
}

fn glob_prefix(prefix: &str) -> String {
    let mut g = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        match c {
            '*' | '?' | '[' => {
                g.push('[');
                g.push(c);
                g.push(']');
            }
            c => g.push(c),
        }
    }
    g.push('*');
    g
}

/// A SQLite error as the KV error a client sees, naming the store.
fn db_error(name: &str, path: &Path, e: rusqlite::Error) -> KvError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            KvError::Corrupted { store: name.to_owned(), why: format!("{} is damaged: {e}", path.display()) }
        }
        Some(ErrorCode::DiskFull) => {
            // SQLITE_FULL: the disk, or the store's own page limit.
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if size + (1 << 20) >= MAX_STORE_BYTES {
                KvError::StoreFull(name.to_owned())
            } else {
                KvError::DiskFull(format!("store {name}: {e}"))
            }
        }
        _ => KvError::Storage(format!("store {name}: {e}")),
    }
}

/// A read snapshot of a store's entries under a prefix (OpenHarmony's
/// `KvStoreResultSet`): its own read-only connection holding one read
/// transaction, so every page comes from the same moment whatever is
/// written meanwhile. While it is open, the store's write-ahead log cannot
/// be checkpointed past it (it grows with the writes made meanwhile).
pub struct Snapshot {
    conn: Connection,
    name: String,
    path: PathBuf,
    glob: String,
    /// Entries in the snapshot.
    pub count: u64,
}

impl Snapshot {
    /// Opens a snapshot of the entries of store `name` (file `path`) whose
    /// key starts with `prefix`.
    ///
    /// # Errors
    /// No such store, or SQLite's error named with the store.
    pub fn open(path: &Path, name: &str, prefix: &str) -> Result<Snapshot, KvError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen) => KvError::NoSuchStore(name.to_owned()),
            _ => db_error(name, path, e),
        })?;
        let glob = glob_prefix(prefix);
        let r = (|| -> rusqlite::Result<u64> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch("BEGIN")?;
            // The first read fixes the snapshot.
            let n: i64 = conn.query_row("SELECT count(*) FROM entries WHERE key GLOB ?1", params![glob], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })();
        let count = r.map_err(|e| db_error(name, path, e))?;
        Ok(Snapshot { conn, name: name.to_owned(), path: path.to_owned(), glob, count })
    }

    /// The entries from `position` (0-based, in key order): at most
    /// `limit` and about [`PAGE_BYTES`] (at least one if any is left);
    /// empty past the end.
    pub fn entries(&self, position: u64, limit: u32) -> Result<Vec<Entry>, KvError> {
        let r = (|| {
            let mut st = self.conn.prepare_cached("SELECT key, value, mtime, origin FROM entries WHERE key GLOB ?1 ORDER BY key LIMIT ?2 OFFSET ?3")?;
            let offset = i64::try_from(position).unwrap_or(i64::MAX);
            let mut rows = st.query(params![self.glob, limit.clamp(1, 100_000), offset])?;
            page_of(&mut rows)
        })();
        r.map_err(|e| db_error(&self.name, &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_batch_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        assert!(matches!(Store::open(&p, "s", false), Err(KvError::NoSuchStore(_))), "not created by a read");
        let mut s = Store::open(&p, "s", true).unwrap();
        s.put("a", b"1", "here").unwrap();
        s.put("a", b"2", "here").unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(s.get("zz").unwrap(), None);
        let batch: Vec<(String, &[u8])> = (0..50).map(|i| (format!("p*{i:03}"), &b"v"[..])).collect();
        s.put_batch(&batch, "here").unwrap();
        let page = s.entries("p*", None, 20).unwrap();
        assert_eq!(page.len(), 20);
        assert_eq!(page[0].key, "p*000");
        let next = s.entries("p*", Some(&page[19].key), 100).unwrap();
        assert_eq!((next.len(), next[0].key.as_str()), (30, "p*020"));
        assert!(s.entries("p?", None, 10).unwrap().is_empty(), "glob characters are literal");
        assert!(s.delete("a", "here").unwrap());
        assert!(!s.delete("a", "here").unwrap());
        assert_eq!(s.delete_batch(&["p*000".into(), "nope".into()], "here").unwrap(), ["p*000"]);
        assert_eq!(s.count().unwrap(), 49);
        let ch = s.changes(0, 1000).unwrap();
        assert_eq!(ch.len(), 2 + 50 + 1 + 1, "every put and every delete that deleted");
        assert!(ch.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(ch[ch.len() - 1].deleted && ch[ch.len() - 1].key == "p*000");
        drop(s);
        let s = Store::open(&p, "s", false).unwrap();
        assert_eq!(s.count().unwrap(), 49, "on disk");
    }

    #[test]
    fn the_change_log_keeps_its_last_ten_thousand_in_steps_of_a_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db"), "s", true).unwrap();
        let batch = |from: usize, n: usize| -> Vec<(String, &'static [u8])> { (from..from + n).map(|i| (format!("k{i}"), &b"v"[..])).collect() };
        let logged = |s: &Store| s.conn.query_row("SELECT count(*), min(seq) FROM changes", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).unwrap();
        s.put_batch(&batch(0, 12_000), "x").unwrap();
        assert_eq!(logged(&s), (10_000, 2_001), "trimmed at the first write");
        s.put_batch(&batch(12_000, 500), "x").unwrap();
        assert_eq!(logged(&s).0, 10_500, "not at every write");
        s.put_batch(&batch(12_500, 600), "x").unwrap();
        assert_eq!(logged(&s), (10_000, 3_101), "a thousand on");
        assert_eq!(s.changes(3_100, 1).unwrap()[0].seq, 3_101, "read from where a sync stopped");
    }

    #[test]
    fn limits_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db"), "s", true).unwrap();
        assert!(matches!(s.put(&"k".repeat(MAX_KEY + 1), b"", "x"), Err(KvError::KeyTooLong(1025))));
        assert!(matches!(s.put("", b"", "x"), Err(KvError::InvalidArgument(_))));
        let big = vec![0u8; MAX_VALUE + 1];
        assert!(matches!(s.put("k", &big, "x"), Err(KvError::ValueTooBig(_))));
        s.put(&"k".repeat(MAX_KEY), &big[..MAX_VALUE], "x").unwrap();
        let bad: Vec<(String, &[u8])> = vec![("ok".into(), b"1"), ("".into(), b"2")];
        assert!(s.put_batch(&bad, "x").is_err());
        assert_eq!(s.get("ok").unwrap(), None, "a refused batch writes nothing");
    }

    #[test]
    fn a_damaged_file_is_named_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        std::fs::write(&p, vec![0x5a; 64 * 1024]).unwrap();
        match Store::open(&p, "s", false) {
            Err(KvError::Corrupted { store, why }) => assert!(store == "s" && why.contains("s.db"), "{why}"),
            Err(e) => panic!("want Corrupted, got {e}"),
            Ok(_) => panic!("want Corrupted, got a store"),
        }
        assert_eq!(std::fs::read(&p).unwrap(), vec![0x5a; 64 * 1024], "left as it was");
    }
}
