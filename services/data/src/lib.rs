//! The data service: OpenHarmony's distributed data manager
//! (`distributeddata`, SA 1301, `DISTRIBUTED_KV_DATA_SERVICE_ABILITY_ID`),
//! which owns the single-version KV stores of every process and serves
//! them over IPC. This crate owns:
//!
//! - the SA's typed interface, [`KvDataService`] (written with
//!   `#[accord_safwk::interface]`, so gets and puts run on the fast path
//!   and `dbus-send --peer` sees the same methods), and its types;
//! - the service itself, [`KvService`]: one SQLite file per store
//!   ([`store`]), under `<root>/<uid>/<store>.db`;
//! - the `kv` console tool ([`cli`]).
//!
//! Isolation: a store belongs to the uid that calls, as samgr verified it
//! (the kernel's, never the client's say-so); one uid never names
//! another's store. Root and system (uid 1000) may name a store of any uid
//! as `<uid>:<store>` (OpenHarmony lets its system services do the same
//! through their own bundle's stores).
//!
//! Bounds (each a clear [`KvError`]): keys 1..=1 KiB, values up to 4 MiB
//! (bigger ones travel in a sealed memfd, [`accord_safwk::typed::Blob`],
//! checked before they are read), [`MAX_STORES_PER_UID`] stores per uid,
//! [`store::MAX_STORE_BYTES`] per store and [`DEFAULT_QUOTA`] of disk per
//! uid but root, pages of at most
//! [`store::PAGE_BYTES`]; a request is bounded by the fast path's message
//! and decoding budgets.
//!
//! Durability: every write is one SQLite transaction committed with
//! `synchronous=FULL` before the reply; an acknowledged write survives a
//! power cut.

pub mod cli;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use accord_safwk::typed::{Blob, Listener};
use accord_safwk::{interface, Caller};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use zbus::zvariant::Type;

use crate::store::Store;

/// SA id of the data service (OpenHarmony's `DISTRIBUTED_KV_DATA_SERVICE_ABILITY_ID`).
pub const ID: u32 = 1301;
/// Where the image keeps the stores (OpenHarmony's database directory of
/// the distributed data service).
pub const DEFAULT_ROOT: &str = "/data/service/el1/public/database/distributeddata/kv";
/// Most stores one uid may have.
pub const MAX_STORES_PER_UID: usize = 16;
/// Most bytes of store files (with their write-ahead logs) one uid other
/// than root may have on the data partition ([`KvService::with_quota`]
/// sets another): a write that finds the uid at it is
/// [`KvError::QuotaExceeded`]; deleting keys or a store gives room back.
pub const DEFAULT_QUOTA: u64 = 32 << 20;
/// Most stores kept open at once (idle ones are closed past it).
pub const MAX_OPEN: usize = 128;
/// Longest store name.
pub const MAX_STORE_NAME: usize = 128;
/// Most backups of one store.
pub const MAX_BACKUPS_PER_STORE: usize = 5;
/// Most observers of one store (OpenHarmony allows 8 per store).
pub const MAX_OBSERVERS_PER_STORE: usize = 8;
/// Most subscriptions one uid holds, over all stores.
pub const MAX_OBSERVERS_PER_UID: usize = 32;
/// Notifications waiting for one observer before newer ones are dropped
/// (and counted in the next one's `lost`).
pub const MAX_PENDING_NOTES: usize = 64;
/// Bytes of keys waiting for one observer (queued or being delivered)
/// before newer notifications are dropped (a key counts its length plus
/// 48, what its `String` costs).
pub const MAX_PENDING_BYTES: usize = 256 << 10;
/// Bytes of keys waiting (queued or being delivered) for all the
/// observers of one subscribing uid together: what a uid's slow observers
/// can make the service hold.
pub const MAX_PENDING_BYTES_PER_UID: usize = 1 << 20;

/// Most result sets one uid holds open (OpenHarmony's limit per store is
/// 8; here per uid, over all its stores).
pub const MAX_RESULT_SETS_PER_UID: usize = 8;
/// Most result sets open at once.
pub const MAX_RESULT_SETS: usize = 128;
/// A result set not read for this long is closed (its snapshot released),
/// so one whose client went away holds nothing for long.
pub const RESULT_SET_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// How often idle result sets are looked for.
const RESULT_SET_SWEEP: std::time::Duration = std::time::Duration::from_secs(15);

/// An entry of a store, with what a sync between devices needs: when it
/// was last written (ms since the epoch) and on which device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct Entry {
    pub key: String,
    pub value: ByteBuf,
    pub mtime_ms: i64,
    pub origin: String,
}

/// One change of a store's change log (a put, or a delete that deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct Change {
    /// Increases with every change of the store.
    pub seq: i64,
    pub key: String,
    pub deleted: bool,
    pub mtime_ms: i64,
    pub origin: String,
}

/// The data service's errors (OpenHarmony's `Status` codes where one fits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    /// `INVALID_ARGUMENT`: an empty key, a bad page size, …
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A store name that is not 1–128 of `[A-Za-z0-9_.-]` starting with a
    /// letter or digit (so never `..`, never a path).
    #[error("{0:?} is not a store name (1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit)")]
    InvalidStoreName(String),
    /// `KEY_NOT_FOUND`.
    #[error("no key {0:?}")]
    NotFound(String),
    /// `STORE_NOT_FOUND`: read from a store never written.
    #[error("no store {0:?}")]
    NoSuchStore(String),
    /// `INVALID_KEY` (longer than 1 KiB).
    #[error("the key is {0} bytes; at most 1024")]
    KeyTooLong(usize),
    /// `INVALID_VALUE` (bigger than 4 MiB).
    #[error("the value is {0} bytes; at most 4194304")]
    ValueTooBig(u64),
    /// The uid has [`MAX_STORES_PER_UID`] stores already.
    #[error("uid {0} has {MAX_STORES_PER_UID} stores already")]
    TooManyStores(u32),
    /// The store reached its size limit.
    #[error("store {0:?} is full (64 MiB)")]
    StoreFull(String),
    /// The data partition is full: nothing was written.
    #[error("disk full, nothing written: {0}")]
    DiskFull(String),
    /// The store's file is damaged; it is left as it is for repair.
    #[error("store {store:?} is damaged: {why}")]
    Corrupted { store: String, why: String },
    /// The uid's stores take its whole share of the data partition.
    #[error("uid {uid}'s stores take {used} bytes, its share is {quota}: delete keys or a store")]
    QuotaExceeded { uid: u32, used: u64, quota: u64 },
    /// The store has [`MAX_OBSERVERS_PER_STORE`] observers, or the uid
    /// [`MAX_OBSERVERS_PER_UID`] subscriptions.
    #[error("too many observers: {0}")]
    TooManyObservers(String),
    /// The store has [`MAX_BACKUPS_PER_STORE`] backups already.
    #[error("store {0:?} has {MAX_BACKUPS_PER_STORE} backups already: delete one")]
    TooManyBackups(String),
    /// No backup of that name.
    #[error("no backup {0:?}")]
    NoSuchBackup(String),
    /// The uid holds [`MAX_RESULT_SETS_PER_UID`] result sets (or the
    /// service [`MAX_RESULT_SETS`]): close one.
    #[error("too many result sets: {0}")]
    TooManyResultSets(String),
    /// No open result set of that id for this uid (never opened, closed,
    /// or closed after [`RESULT_SET_IDLE`] unused).
    #[error("no result set {0} (closed, or idle for 60 s)")]
    NoSuchResultSet(u64),
    /// The observer given to `subscribe` could not be reached (its
    /// handshake failed or the uid has too many under way): not subscribed.
    #[error("the observer cannot be called: {0}")]
    ObserverFailed(String),
    /// `PERMISSION_DENIED`: naming another uid's store.
    #[error("uid {0} may not open another uid's store")]
    PermissionDenied(u32),
    /// A storage error not listed above.
    #[error("{0}")]
    Storage(String),
}

/// The data service's interface (SA [`ID`]): the KV part of OpenHarmony's
/// `DistributedKvDataManager` and `SingleKvStore`, on one connection.
/// Store names are the caller's own (see the crate doc).
#[interface(name = "ohos.distributedkv.KvStoreDataService")]
pub trait KvDataService {
    /// Stores `value` under `key` in `store` (created on first write),
    /// durably: on disk when this returns.
    fn put(&self, caller: &Caller, store: &str, key: &str, value: Blob) -> Result<(), KvError>;
    /// The value under `key` ([`KvError::NotFound`] if none).
    fn get(&self, caller: &Caller, store: &str, key: &str) -> Result<Blob, KvError>;
    /// Deletes `key`; whether it was there.
    fn delete(&self, caller: &Caller, store: &str, key: &str) -> Result<bool, KvError>;
    /// Stores every entry in one transaction (all or none).
    fn put_batch(&self, caller: &Caller, store: &str, entries: Vec<(String, ByteBuf)>) -> Result<(), KvError>;
    /// Deletes every key in one transaction; how many were there.
    fn delete_batch(&self, caller: &Caller, store: &str, keys: Vec<String>) -> Result<u32, KvError>;
    /// A page of the entries whose key starts with `prefix`, in key order,
    /// after key `after` (the last of the previous page; "" for the first
    /// page: no key is empty); at most `limit` entries and about 1 MiB. An
    /// empty page is the end.
    fn entries(&self, caller: &Caller, store: &str, prefix: &str, after: &str, limit: u32) -> Result<Vec<Entry>, KvError>;
    /// The change log after sequence number `after` (at most `limit`).
    fn changes(&self, caller: &Caller, store: &str, after: i64, limit: u32) -> Result<Vec<Change>, KvError>;
    /// The caller's stores, sorted.
    fn stores(&self, caller: &Caller) -> Result<Vec<String>, KvError>;
    /// Deletes the store and its files; whether it existed.
    fn delete_store(&self, caller: &Caller, store: &str) -> Result<bool, KvError>;
    /// Calls `observer` back with the keys of every write committed to
    /// `store` from now on (OpenHarmony's `SubscribeKvStore`), in commit
    /// order, until it is unsubscribed, its process goes, or a notification
    /// fails or goes unanswered for 30 s (the call deadline; the service
    /// logs why); returns the subscription's id. The store need not exist yet. At most
    /// [`MAX_OBSERVERS_PER_STORE`] per store and [`MAX_OBSERVERS_PER_UID`]
    /// per subscribing uid ([`KvError::TooManyObservers`]).
    fn subscribe(&self, caller: &Caller, store: &str, observer: Listener<KvObserverProxy>) -> Result<u64, KvError>;
    /// Ends a subscription of the caller's uid; whether it was there.
    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, KvError>;
    /// Copies `store` as it is now into its backup `name` (replacing a
    /// backup of that name; OpenHarmony's `backup`). Backups count against
    /// the uid's share of the disk; at most [`MAX_BACKUPS_PER_STORE`] per
    /// store ([`KvError::TooManyBackups`]); they outlive `delete_store`.
    fn backup(&self, caller: &Caller, store: &str, name: &str) -> Result<(), KvError>;
    /// Makes `store`'s entries those of its backup `name`, in one
    /// transaction written to the change log and told to observers;
    /// returns how many keys changed ([`KvError::NoSuchBackup`],
    /// [`KvError::Corrupted`] for a damaged backup: the store is untouched).
    fn restore(&self, caller: &Caller, store: &str, name: &str) -> Result<u32, KvError>;
    /// The names of `store`'s backups, sorted.
    fn backups(&self, caller: &Caller, store: &str) -> Result<Vec<String>, KvError>;
    /// Deletes `store`'s backup `name`; whether it existed.
    fn delete_backup(&self, caller: &Caller, store: &str, name: &str) -> Result<bool, KvError>;
    /// Opens a result set (OpenHarmony's `GetResultSet`): the entries of
    /// `store` whose key starts with `prefix`, as they are now, read page
    /// by page with [`KvDataService::result_set_entries`] whatever is
    /// written meanwhile. Returns its id and how many entries it has. At
    /// most [`MAX_RESULT_SETS_PER_UID`] per uid
    /// ([`KvError::TooManyResultSets`]); closed by `close_result_set` or
    /// after [`RESULT_SET_IDLE`] unread.
    fn result_set(&self, caller: &Caller, store: &str, prefix: &str) -> Result<(u64, u64), KvError>;
    /// Entries of result set `id` from `position` (0-based, key order): at
    /// most `limit` and about 1 MiB; empty past the end.
    fn result_set_entries(&self, caller: &Caller, id: u64, position: u64, limit: u32) -> Result<Vec<Entry>, KvError>;
    /// Closes result set `id` (OpenHarmony's `CloseResultSet`); whether it
    /// was open.
    fn close_result_set(&self, caller: &Caller, id: u64) -> Result<bool, KvError>;
}

/// What a subscriber implements (OpenHarmony's `KvStoreObserver`).
#[interface(name = "ohos.distributedkv.KvStoreObserver")]
pub trait KvObserver {
    /// One committed write to `store` changed `keys` (put or deleted; a
    /// batch gives them all). `lost`: notifications dropped before this one
    /// because this observer fell behind (more than
    /// [`MAX_PENDING_NOTES`] or [`MAX_PENDING_BYTES`] of keys waiting); when
    /// it is not 0, read the store again.
    fn on_change(&self, store: String, keys: Vec<String>, lost: u32);
}

/// An open store, shared by the connections using it.
type Shared = Arc<Mutex<Store>>;

/// The data service: see the crate doc.
pub struct KvService {
    root: PathBuf,
    origin: String,
    open: Mutex<HashMap<(u32, String), Shared>>,
    /// Held while a store is opened, created or deleted (so a uid's store
    /// count holds, and no handle outlives its files).
    opening: Mutex<()>,
    quota: u64,
    /// One writer at a time per uid, so its share holds however many
    /// connections write at once (a write may pass it by one value).
    writers: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
    observers: Arc<Observers>,
    /// Where observers are called back (the runtime `new` ran in).
    rt: Option<tokio::runtime::Handle>,
    /// Shared with the sweep that closes idle ones.
    result_sets: Arc<Mutex<HashMap<u64, Arc<ResultSet>>>>,
    next_result_set: std::sync::atomic::AtomicU64,
    /// Milliseconds a result set may stay unread (shared with the sweep).
    result_set_idle: Arc<std::sync::atomic::AtomicU64>,
}

/// An open result set.
struct ResultSet {
    uid: u32,
    /// Closed once unread this long.
    idle: std::time::Duration,
    snapshot: Mutex<store::Snapshot>,
    last_used: Mutex<std::time::Instant>,
}

/// A store as the service names it: (owner uid, name).
type StoreKey = (u32, String);

/// The subscriptions, by store.
#[derive(Default)]
struct Observers {
    next_id: std::sync::atomic::AtomicU64,
    subs: Mutex<HashMap<StoreKey, Vec<Arc<Sub>>>>,
    /// Bytes queued for each subscribing uid's observers (taken inside
    /// `subs`' lock, never the other way round).
    pending_by_uid: Mutex<HashMap<u32, usize>>,
}

/// What a notification of `keys` counts against the queues' bounds: what
/// it holds in memory (each key's bytes, its `String` and the allocator's
/// share, and the `Vec`).
fn note_bytes(keys: &[String]) -> usize {
    64 + keys.iter().map(|k| k.len() + 48).sum::<usize>()
}

/// One subscription: its queue of notifications and what it dropped.
struct Sub {
    id: u64,
    /// The subscribing uid.
    uid: u32,
    tx: tokio::sync::mpsc::Sender<Vec<String>>,
    /// Bytes of keys queued and not yet delivered.
    pending: std::sync::atomic::AtomicUsize,
    lost: std::sync::atomic::AtomicU32,
    /// Told when the subscription is ended by `unsubscribe`.
    end: tokio::sync::Notify,
}

impl Observers {
    /// Queues `keys` for every observer of the store, never waiting: a
    /// full queue drops the notification and counts it. Called with the
    /// store's lock held, so queues fill in commit order.
    fn notify(&self, uid: u32, name: &str, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let subs = accord_safwk::lock(&self.subs);
        let Some(list) = subs.get(&(uid, name.to_owned())) else { return };
        let bytes = note_bytes(keys);
        let mut by_uid = accord_safwk::lock(&self.pending_by_uid);
        for sub in list {
            use std::sync::atomic::Ordering::Relaxed;
            let uid_total = by_uid.get(&sub.uid).copied().unwrap_or(0);
            let fits = sub.pending.load(Relaxed) + bytes <= MAX_PENDING_BYTES && uid_total + bytes <= MAX_PENDING_BYTES_PER_UID;
            if fits && sub.tx.try_send(keys.to_vec()).is_ok() {
                sub.pending.fetch_add(bytes, Relaxed);
                *by_uid.entry(sub.uid).or_default() += bytes;
            } else {
                sub.lost.fetch_add(1, Relaxed);
            }
        }
    }

    /// `bytes` of `uid`'s queue were delivered or dropped.
    fn release(&self, uid: u32, bytes: usize) {
        let mut by_uid = accord_safwk::lock(&self.pending_by_uid);
        if let Some(n) = by_uid.get_mut(&uid) {
            *n = n.saturating_sub(bytes);
            if *n == 0 {
                by_uid.remove(&uid);
            }
        }
    }

    fn remove(&self, key: &StoreKey, id: u64) -> Option<Arc<Sub>> {
        let mut subs = accord_safwk::lock(&self.subs);
        let list = subs.get_mut(key)?;
        let at = list.iter().position(|s| s.id == id)?;
        let sub = list.remove(at);
        if list.is_empty() {
            subs.remove(key);
        }
        Some(sub)
    }
}

/// Checks a backup's name: the rule of store names, said of a backup.
fn check_backup_name(name: &str) -> Result<(), KvError> {
    if valid_store_name(name) {
        Ok(())
    } else {
        Err(KvError::InvalidArgument(format!("{name:?} is not a backup name (1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit)")))
    }
}

/// Whether `name` is a store name (see [`KvError::InvalidStoreName`]).
pub fn valid_store_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b.len() <= MAX_STORE_NAME && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl KvService {
    /// A service keeping its stores under `root` (created if missing;
    /// the image's is [`DEFAULT_ROOT`]); `origin` names this device in
    /// entries and changes. Made inside a tokio runtime, it calls its
    /// observers back there (outside one, `subscribe` is refused).
    pub fn new(root: &Path, origin: &str) -> std::io::Result<KvService> {
        std::fs::create_dir_all(root)?;
        let rt = tokio::runtime::Handle::try_current().ok();
        let result_sets: Arc<Mutex<HashMap<u64, Arc<ResultSet>>>> = Arc::default();
        let result_set_idle = Arc::new(std::sync::atomic::AtomicU64::new(RESULT_SET_IDLE.as_millis() as u64));
        if let Some(rt) = &rt {
            // Every 15 s (or the idle time, if shorter), result sets unread
            // for their idle time are closed (their client may be gone);
            // ends with the service.
            let sets = Arc::downgrade(&result_sets);
            let idle = result_set_idle.clone();
            rt.spawn(async move {
                loop {
                    let ms = idle.load(std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(RESULT_SET_SWEEP.min(std::time::Duration::from_millis(ms.max(10)))).await;
                    let Some(sets) = sets.upgrade() else { return };
                    accord_safwk::lock(&sets).retain(|_, rs| accord_safwk::lock(&rs.last_used).elapsed() < rs.idle);
                }
            });
        }
        Ok(KvService {
            root: root.to_owned(),
            origin: origin.to_owned(),
            open: Mutex::default(),
            opening: Mutex::default(),
            quota: DEFAULT_QUOTA,
            writers: Mutex::default(),
            observers: Arc::default(),
            rt,
            result_sets,
            next_result_set: Default::default(),
            result_set_idle,
        })
    }

    /// The same with result sets closed after `idle` unread (tests).
    pub fn with_result_set_idle(self, idle: std::time::Duration) -> KvService {
        self.result_set_idle.store(idle.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Closes the result sets unread for longer than the idle time.
    fn reap_result_sets(&self) {
        accord_safwk::lock(&self.result_sets).retain(|_, rs| accord_safwk::lock(&rs.last_used).elapsed() < rs.idle);
    }

    /// The same with another per-uid share of the disk, in bytes.
    pub fn with_quota(mut self, bytes: u64) -> KvService {
        self.quota = bytes;
        self
    }

    /// Runs write `f` to `store` as the uid's only writer, if the uid is
    /// not at its share (root has none).
    fn write<T>(&self, caller: &Caller, store: &str, f: impl FnOnce(&mut Store) -> Result<T, KvError>) -> Result<T, KvError> {
        let (uid, _) = Self::resolve(caller, store)?;
        let turn = accord_safwk::lock(&self.writers).entry(uid).or_default().clone();
        let _turn = accord_safwk::lock(&turn);
        self.check_quota(uid)?;
        self.with(caller, store, true, f)
    }

    /// Refuses a write of a uid at its share (root has none).
    fn check_quota(&self, uid: u32) -> Result<(), KvError> {
        if uid == 0 {
            return Ok(());
        }
        let used: u64 =
            std::fs::read_dir(self.uid_dir(uid)).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()).unwrap_or(0);
        if used >= self.quota {
            return Err(KvError::QuotaExceeded { uid, used, quota: self.quota });
        }
        Ok(())
    }

    /// The uid and name a caller's store name means.
    fn resolve(caller: &Caller, store: &str) -> Result<(u32, String), KvError> {
        let (uid, name) = match store.split_once(':') {
            Some((u, n)) => {
                let uid: u32 = u.parse().map_err(|_| KvError::InvalidStoreName(store.to_owned()))?;
                if uid != caller.uid() && !matches!(caller.uid(), 0 | 1000) {
                    return Err(KvError::PermissionDenied(caller.uid()));
                }
                (uid, n)
            }
            None => (caller.uid(), store),
        };
        if !valid_store_name(name) {
            return Err(KvError::InvalidStoreName(store.to_owned()));
        }
        Ok((uid, name.to_owned()))
    }

    fn uid_dir(&self, uid: u32) -> PathBuf {
        self.root.join(uid.to_string())
    }

    /// The open store, opening it (creating it if `create`) when needed.
    fn store(&self, caller: &Caller, store: &str, create: bool) -> Result<Shared, KvError> {
        let (uid, name) = Self::resolve(caller, store)?;
        let key = (uid, name.clone());
        if let Some(s) = accord_safwk::lock(&self.open).get(&key) {
            return Ok(s.clone());
        }
        // Opening, creating and deleting stores take turns (a store is
        // never opened while its files are being removed).
        let _opening = accord_safwk::lock(&self.opening);
        if let Some(s) = accord_safwk::lock(&self.open).get(&key) {
            return Ok(s.clone());
        }
        let dir = self.uid_dir(uid);
        let path = dir.join(format!("{name}.db"));
        if !path.exists() {
            if !create {
                return Err(KvError::NoSuchStore(store.to_owned()));
            }
            if let Err(e) = std::fs::create_dir(&dir) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(KvError::Storage(format!("{}: {e}", dir.display())));
                }
            }
            if Self::names_in(&dir).len() >= MAX_STORES_PER_UID {
                return Err(KvError::TooManyStores(uid));
            }
        }
        let opened = Arc::new(Mutex::new(Store::open(&path, &name, create)?));
        let mut open = accord_safwk::lock(&self.open);
        if open.len() >= MAX_OPEN {
            // Close the idle ones (nobody holds them but the map).
            open.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Ok(open.entry(key).or_insert(opened).clone())
    }

    /// Where backup `name` of a uid's store lives: beside its stores, as
    /// `<store>~<name>.bak` (`~` is in no name, so the split is one).
    fn backup_path(&self, uid: u32, store: &str, name: &str) -> PathBuf {
        self.uid_dir(uid).join(format!("{store}~{name}.bak"))
    }

    /// The names of a store's backups, sorted.
    fn backup_names(&self, uid: u32, store: &str) -> Vec<String> {
        let prefix = format!("{store}~");
        let mut names: Vec<String> = std::fs::read_dir(self.uid_dir(uid))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix(&prefix)?.strip_suffix(".bak").map(str::to_owned))
                    .filter(|n| valid_store_name(n))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The store names in a uid's directory, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".db").map(str::to_owned)).filter(|n| valid_store_name(n)).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn with<T>(&self, caller: &Caller, store: &str, create: bool, f: impl FnOnce(&mut Store) -> Result<T, KvError>) -> Result<T, KvError> {
        // A handle taken just before its store was deleted is dropped and
        // the store looked up again (a write never lands in a removed file).
        loop {
            let s = self.store(caller, store, create)?;
            let mut s = accord_safwk::lock(&s);
            if !s.deleted {
                return f(&mut s);
            }
        }
    }
}

impl KvDataService for KvService {
    fn put(&self, caller: &Caller, store: &str, key: &str, value: Blob) -> Result<(), KvError> {
        store::check_key(key)?;
        // A shared value is mapped, not copied, and its size checked first.
        let value = value.map().map_err(|e| KvError::InvalidArgument(format!("the value: {e}")))?;
        store::check_value(value.len())?;
        let (uid, name) = Self::resolve(caller, store)?;
        self.write(caller, store, |s| {
            s.put(key, &value, &self.origin)?;
            self.observers.notify(uid, &name, &[key.to_owned()]);
            Ok(())
        })
    }

    fn get(&self, caller: &Caller, store: &str, key: &str) -> Result<Blob, KvError> {
        let v = self.with(caller, store, false, |s| s.get(key))?.ok_or_else(|| KvError::NotFound(key.to_owned()))?;
        Blob::new(v).map_err(|e| KvError::Storage(format!("the value of {key:?}: {e}")))
    }

    fn delete(&self, caller: &Caller, store: &str, key: &str) -> Result<bool, KvError> {
        let (uid, name) = Self::resolve(caller, store)?;
        let deleted = self.with(caller, store, false, |s| {
            let gone = s.delete(key, &self.origin)?;
            if gone {
                self.observers.notify(uid, &name, &[key.to_owned()]);
            }
            Ok(gone)
        });
        match deleted {
            Err(KvError::NoSuchStore(_)) => Ok(false),
            r => r,
        }
    }

    fn put_batch(&self, caller: &Caller, store: &str, entries: Vec<(String, ByteBuf)>) -> Result<(), KvError> {
        let (uid, name) = Self::resolve(caller, store)?;
        let entries: Vec<(String, &[u8])> = entries.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect();
        self.write(caller, store, |s| {
            s.put_batch(&entries, &self.origin)?;
            let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
            self.observers.notify(uid, &name, &keys);
            Ok(())
        })
    }

    fn delete_batch(&self, caller: &Caller, store: &str, keys: Vec<String>) -> Result<u32, KvError> {
        let (uid, name) = Self::resolve(caller, store)?;
        let deleted = self.with(caller, store, false, |s| {
            // Only the keys that were there changed.
            let gone = s.delete_batch(&keys, &self.origin)?;
            self.observers.notify(uid, &name, &gone);
            Ok(u32::try_from(gone.len()).unwrap_or(u32::MAX))
        });
        match deleted {
            Err(KvError::NoSuchStore(_)) => Ok(0),
            r => r,
        }
    }

    fn entries(&self, caller: &Caller, store: &str, prefix: &str, after: &str, limit: u32) -> Result<Vec<Entry>, KvError> {
        if limit == 0 {
            return Err(KvError::InvalidArgument("a page of 0 entries".into()));
        }
        self.with(caller, store, false, |s| s.entries(prefix, (!after.is_empty()).then_some(after), limit))
    }

    fn changes(&self, caller: &Caller, store: &str, after: i64, limit: u32) -> Result<Vec<Change>, KvError> {
        self.with(caller, store, false, |s| s.changes(after, limit))
    }

    fn stores(&self, caller: &Caller) -> Result<Vec<String>, KvError> {
        Ok(Self::names_in(&self.uid_dir(caller.uid())))
    }

    fn delete_store(&self, caller: &Caller, store: &str) -> Result<bool, KvError> {
        let (uid, name) = Self::resolve(caller, store)?;
        let _opening = accord_safwk::lock(&self.opening);
        // Out of the map, then closed under its lock before its files go
        // (SQLite removes its log by name when it closes): a call that took
        // the handle before waits for this, finds it deleted and looks again.
        let open = accord_safwk::lock(&self.open).remove(&(uid, name.clone()));
        if let Some(s) = &open {
            accord_safwk::lock(s).close();
        }
        let base = self.uid_dir(uid).join(format!("{name}.db"));
        let existed = base.exists();
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", base.display()));
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(KvError::Storage(format!("{}: {e}", p.display())));
                }
            }
        }
        Ok(existed)
    }

    fn subscribe(&self, caller: &Caller, store: &str, observer: Listener<KvObserverProxy>) -> Result<u64, KvError> {
        use std::sync::atomic::Ordering::Relaxed;
        let key = Self::resolve(caller, store)?;
        let Some(rt) = &self.rt else {
            return Err(KvError::Storage("this service was made outside a tokio runtime: it cannot call observers".into()));
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(MAX_PENDING_NOTES);
        let sub = Arc::new(Sub {
            id: self.observers.next_id.fetch_add(1, Relaxed) + 1,
            uid: caller.uid(),
            tx,
            pending: Default::default(),
            lost: Default::default(),
            end: tokio::sync::Notify::new(),
        });
        {
            let mut subs = accord_safwk::lock(&self.observers.subs);
            let held = subs.values().flatten().filter(|s| s.uid == caller.uid()).count();
            if held >= MAX_OBSERVERS_PER_UID {
                return Err(KvError::TooManyObservers(format!("uid {} holds {held} subscriptions", caller.uid())));
            }
            let list = subs.entry(key.clone()).or_default();
            if list.len() >= MAX_OBSERVERS_PER_STORE {
                return Err(KvError::TooManyObservers(format!("store {store:?} has {} observers", list.len())));
            }
            list.push(sub.clone());
        }
        let observers = self.observers.clone();
        let id = sub.id;
        // The handshake with the observer's process ends before the reply,
        // so an id is given only for an observer that can be called.
        let (connected_tx, connected) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let name = key.1.clone();
            let ended = async {
                let proxy = match observer.connect().await {
                    Ok(p) => {
                        let _ = connected_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = connected_tx.send(Err(e.to_string()));
                        return Ok(());
                    }
                };
                loop {
                    let keys = tokio::select! {
                        k = rx.recv() => match k { Some(k) => k, None => return Ok(()) },
                        () = proxy.died() => return Ok(()),
                        () = sub.end.notified() => return Ok(()),
                    };
                    // The note's bytes stay counted until its call is
                    // over: a note in flight is held as much as a queued one.
                    let bytes = note_bytes(&keys);
                    let lost = sub.lost.swap(0, Relaxed);
                    let answered = tokio::select! {
                        r = proxy.on_change(name.clone(), keys, lost) => r,
                        () = proxy.died() => return Ok(()),
                        () = sub.end.notified() => return Ok(()),
                    };
                    sub.pending.fetch_sub(bytes, Relaxed);
                    observers.release(sub.uid, bytes);
                    answered?;
                }
            };
            let r: Result<(), accord_ipc::remote::RemoteError> = ended.await;
            if let Err(e) = r {
                tracing::info!("observer {id} of {}:{}: {e}; subscription ended", key.0, key.1);
            }
            // Out of the list first (no notification is queued after),
            // then what is still queued is given back.
            observers.remove(&key, id);
            drop(rx);
            observers.release(sub.uid, sub.pending.swap(0, Relaxed));
        });
        // Typed methods run on the connection's own thread (listeners come
        // only through the fast path), never on the runtime: waiting here
        // does not stop the handshake. Its own deadline is 10 s.
        match connected.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(KvError::ObserverFailed(e)),
            Err(_) => Err(KvError::ObserverFailed("no handshake with the observer".into())),
        }
    }

    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, KvError> {
        let key = {
            let subs = accord_safwk::lock(&self.observers.subs);
            subs.iter().find(|(_, l)| l.iter().any(|s| s.id == id && s.uid == caller.uid())).map(|(k, _)| k.clone())
        };
        let Some(key) = key else { return Ok(false) };
        let sub = self.observers.remove(&key, id);
        if let Some(sub) = &sub {
            sub.end.notify_one();
        }
        Ok(sub.is_some())
    }

    fn backup(&self, caller: &Caller, store: &str, name: &str) -> Result<(), KvError> {
        let (uid, sname) = Self::resolve(caller, store)?;
        check_backup_name(name)?;
        let path = self.backup_path(uid, &sname, name);
        if !path.exists() && self.backup_names(uid, &sname).len() >= MAX_BACKUPS_PER_STORE {
            return Err(KvError::TooManyBackups(store.to_owned()));
        }
        // A backup is a write of the uid's share: its turn, its quota.
        let turn = accord_safwk::lock(&self.writers).entry(uid).or_default().clone();
        let _turn = accord_safwk::lock(&turn);
        self.check_quota(uid)?;
        self.with(caller, store, false, |s| s.backup_into(&path))
    }

    fn restore(&self, caller: &Caller, store: &str, name: &str) -> Result<u32, KvError> {
        let (uid, sname) = Self::resolve(caller, store)?;
        check_backup_name(name)?;
        let path = self.backup_path(uid, &sname, name);
        if !path.is_file() {
            return Err(KvError::NoSuchBackup(name.to_owned()));
        }
        self.write(caller, store, |s| {
            let keys = s.restore_from(&path, &self.origin)?;
            self.observers.notify(uid, &sname, &keys);
            Ok(u32::try_from(keys.len()).unwrap_or(u32::MAX))
        })
    }

    fn backups(&self, caller: &Caller, store: &str) -> Result<Vec<String>, KvError> {
        let (uid, sname) = Self::resolve(caller, store)?;
        Ok(self.backup_names(uid, &sname))
    }

    fn delete_backup(&self, caller: &Caller, store: &str, name: &str) -> Result<bool, KvError> {
        let (uid, sname) = Self::resolve(caller, store)?;
        check_backup_name(name)?;
        let path = self.backup_path(uid, &sname, name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(KvError::Storage(format!("{}: {e}", path.display()))),
        }
    }

    fn result_set(&self, caller: &Caller, store: &str, prefix: &str) -> Result<(u64, u64), KvError> {
        use std::sync::atomic::Ordering::Relaxed;
        let (uid, name) = Self::resolve(caller, store)?;
        self.reap_result_sets();
        {
            let sets = accord_safwk::lock(&self.result_sets);
            let held = sets.values().filter(|r| r.uid == caller.uid()).count();
            if held >= MAX_RESULT_SETS_PER_UID {
                return Err(KvError::TooManyResultSets(format!("uid {} holds {held}", caller.uid())));
            }
            if sets.len() >= MAX_RESULT_SETS {
                return Err(KvError::TooManyResultSets(format!("the service holds {}", sets.len())));
            }
        }
        // The store must exist (and be sound) before a snapshot of it.
        self.with(caller, store, false, |_| Ok(()))?;
        let path = self.uid_dir(uid).join(format!("{name}.db"));
        let snapshot = store::Snapshot::open(&path, &name, prefix)?;
        let count = snapshot.count;
        let id = self.next_result_set.fetch_add(1, Relaxed) + 1;
        let idle = std::time::Duration::from_millis(self.result_set_idle.load(Relaxed));
        let rs = Arc::new(ResultSet { uid: caller.uid(), idle, snapshot: Mutex::new(snapshot), last_used: Mutex::new(std::time::Instant::now()) });
        let mut sets = accord_safwk::lock(&self.result_sets);
        // Counted again: another connection of the uid may have opened one.
        if sets.values().filter(|r| r.uid == caller.uid()).count() >= MAX_RESULT_SETS_PER_UID || sets.len() >= MAX_RESULT_SETS {
            return Err(KvError::TooManyResultSets(format!("uid {}", caller.uid())));
        }
        sets.insert(id, rs);
        Ok((id, count))
    }

    fn result_set_entries(&self, caller: &Caller, id: u64, position: u64, limit: u32) -> Result<Vec<Entry>, KvError> {
        if limit == 0 {
            return Err(KvError::InvalidArgument("a page of 0 entries".into()));
        }
        let rs = {
            let sets = accord_safwk::lock(&self.result_sets);
            sets.get(&id).filter(|r| r.uid == caller.uid()).cloned().ok_or(KvError::NoSuchResultSet(id))?
        };
        {
            let mut used = accord_safwk::lock(&rs.last_used);
            if used.elapsed() >= rs.idle {
                drop(used);
                accord_safwk::lock(&self.result_sets).remove(&id);
                return Err(KvError::NoSuchResultSet(id));
            }
            *used = std::time::Instant::now();
        }
        let page = accord_safwk::lock(&rs.snapshot).entries(position, limit);
        *accord_safwk::lock(&rs.last_used) = std::time::Instant::now();
        page
    }

    fn close_result_set(&self, caller: &Caller, id: u64) -> Result<bool, KvError> {
        let mut sets = accord_safwk::lock(&self.result_sets);
        if sets.get(&id).is_some_and(|r| r.uid == caller.uid()) {
            sets.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }

    fn on_dump(&self, _args: &[String]) -> String {
        let open = accord_safwk::lock(&self.open);
        let observers: usize = accord_safwk::lock(&self.observers.subs).values().map(Vec::len).sum();
        let mut out = format!("data service (SA {ID}): stores under {}, {} open, {observers} observers\n", self.root.display(), open.len());
        out.push_str(&format!("result sets: {} open\n", accord_safwk::lock(&self.result_sets).len()));
        let mut uids: Vec<u32> =
            std::fs::read_dir(&self.root).map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default();
        uids.sort();
        for uid in uids {
            out.push_str(&format!("uid {uid}: {}\n", Self::names_in(&self.uid_dir(uid)).join(" ")));
        }
        out
    }
}
