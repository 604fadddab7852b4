//! The shared-memory read path: init publishes world-readable parameters
//! in a memory-mapped table (`/dev/__parameters__/param_area`), so a `get`
//! is a hash lookup in the caller's own address space instead of a socket
//! round trip.
//!
//! Layout: a header, then `SLOTS` fixed-size records in an open-addressing
//! hash table (linear probing; records are never removed). Only init
//! writes; each record carries a sequence counter used as a seqlock: odd
//! while init rewrites the value, bumped to even when done. A reader
//! retries while the counter is odd or changed under it.
//!
//! What is not in the table — a parameter whose DAC rule hides it from
//! other users, a `const.*` value longer than a record holds, a table that
//! is full, or a name never set — is answered by the socket, so a miss
//! here always falls back to [`crate::Client`].

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// Where init publishes the table.
pub const AREA_PATH: &str = "/dev/__parameters__/param_area";

const MAGIC: u32 = 0x4d52_5041; // "APRM"
const VERSION: u32 = 1;
/// Number of records; a power of two.
pub const SLOTS: usize = 2048;
const NAME_CAP: usize = crate::name::NAME_MAX;
const VALUE_CAP: usize = crate::name::VALUE_MAX;
const HEADER: usize = 64;
/// seq u32, name_len u16, value_len u16, name, value.
const RECORD: usize = 8 + NAME_CAP + VALUE_CAP;
/// Size of the mapped file.
pub const AREA_SIZE: usize = HEADER + SLOTS * RECORD;

/// The table path clients use: `PARAM_AREA` from the environment if set.
pub fn area_path() -> PathBuf {
    std::env::var_os("PARAM_AREA").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(AREA_PATH))
}

fn hash(name: &[u8]) -> usize {
    // FNV-1a: small, good enough for parameter names.
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize
}

struct Map {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all concurrent access goes
// through atomics (seq) and volatile copies checked by the seqlock.
unsafe impl Send for Map {}
unsafe impl Sync for Map {}

impl Map {
    fn new(file: &File, len: usize, writable: bool) -> std::io::Result<Map> {
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: mapping a file we hold open, length checked by callers.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Map { ptr: ptr.cast(), len })
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds and 4-aligned (page-aligned base, aligned offsets).
        unsafe { &*(self.ptr.add(off) as *const AtomicU32) }
    }

    fn read_bytes(&self, off: usize, out: &mut [u8]) {
        debug_assert!(off + out.len() <= self.len);
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: in bounds; volatile because init may write concurrently
            // (the seqlock discards torn reads).
            *b = unsafe { std::ptr::read_volatile(self.ptr.add(off + i)) };
        }
    }

    fn write_bytes(&self, off: usize, data: &[u8]) {
        debug_assert!(off + data.len() <= self.len);
        for (i, b) in data.iter().enumerate() {
            // SAFETY: in bounds; only init (one thread) writes.
            unsafe { std::ptr::write_volatile(self.ptr.add(off + i), *b) };
        }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping what new() mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn record(slot: usize) -> usize {
    HEADER + slot * RECORD
}

/// init's side: creates the table and publishes values.
pub struct AreaWriter {
    map: Map,
    used: usize,
}

impl AreaWriter {
    /// Creates (or truncates) the table at `path`, world-readable.
    pub fn create(path: &Path) -> std::io::Result<AreaWriter> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o444).open(path)?;
        file.set_len(AREA_SIZE as u64)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))?;
        let map = Map::new(&file, AREA_SIZE, true)?;
        map.u32_at(4).store(VERSION, Ordering::Relaxed);
        map.u32_at(8).store(SLOTS as u32, Ordering::Relaxed);
        map.u32_at(0).store(MAGIC, Ordering::Release);
        Ok(AreaWriter { map, used: 0 })
    }

    /// Publishes `name = value`. Returns false when it does not fit (value
    /// too long for a record, or the table is 7/8 full); readers then ask
    /// the socket.
    pub fn publish(&mut self, name: &str, value: &str) -> bool {
        let (n, v) = (name.as_bytes(), value.as_bytes());
        if n.is_empty() || n.len() > NAME_CAP || v.len() > VALUE_CAP {
            return false;
        }
        let mut slot = hash(n) & (SLOTS - 1);
        let mut buf = [0u8; NAME_CAP];
        for _ in 0..SLOTS {
            let off = record(slot);
            let name_len = (self.map.u32_at(off + 4).load(Ordering::Relaxed) & 0xffff) as usize;
            if name_len == 0 {
                if self.used >= SLOTS / 8 * 7 {
                    return false;
                }
                self.used += 1;
                self.write_record(off, Some(n), v);
                return true;
            }
            self.map.read_bytes(off + 8, &mut buf[..name_len]);
            if &buf[..name_len] == n {
                self.write_record(off, None, v);
                return true;
            }
            slot = (slot + 1) & (SLOTS - 1);
        }
        false
    }

    fn write_record(&self, off: usize, new_name: Option<&[u8]>, value: &[u8]) {
        let seq = self.map.u32_at(off);
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let lens = self.map.u32_at(off + 4);
        let name_len = match new_name {
            Some(n) => {
                self.map.write_bytes(off + 8, n);
                n.len() as u32
            }
            None => lens.load(Ordering::Relaxed) & 0xffff,
        };
        self.map.write_bytes(off + 8 + NAME_CAP, value);
        lens.store(name_len | ((value.len() as u32) << 16), Ordering::Relaxed);
        seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

/// A client's read-only view of the table.
pub struct AreaReader {
    map: Map,
}

/// Result of a lookup in the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(String),
    /// Not published here: ask the parameter service.
    Miss,
}

impl AreaReader {
    /// Maps the table at [`area_path`].
    pub fn open() -> std::io::Result<AreaReader> {
        AreaReader::open_at(&area_path())
    }

    pub fn open_at(path: &Path) -> std::io::Result<AreaReader> {
        let file = File::open(path)?;
        if file.metadata()?.len() < AREA_SIZE as u64 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "parameter area too small"));
        }
        let map = Map::new(&file, AREA_SIZE, false)?;
        if map.u32_at(0).load(Ordering::Acquire) != MAGIC || map.u32_at(4).load(Ordering::Relaxed) != VERSION {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a parameter area of this version"));
        }
        Ok(AreaReader { map })
    }

    /// Looks `name` up without a system call.
    pub fn get(&self, name: &str) -> Lookup {
        let n = name.as_bytes();
        if n.is_empty() || n.len() > NAME_CAP {
            return Lookup::Miss;
        }
        let mut slot = hash(n) & (SLOTS - 1);
        let mut name_buf = [0u8; NAME_CAP];
        let mut value_buf = [0u8; VALUE_CAP];
        for _ in 0..SLOTS {
            let off = record(slot);
            let seq = self.map.u32_at(off);
            let mut spins = 0u32;
            loop {
                let s1 = seq.load(Ordering::Acquire);
                if s1 % 2 == 1 {
                    spins += 1;
                    if spins > 10_000 {
                        return Lookup::Miss;
                    }
                    std::hint::spin_loop();
                    continue;
                }
                let lens = self.map.u32_at(off + 4).load(Ordering::Relaxed);
                let (name_len, value_len) = ((lens & 0xffff) as usize, (lens >> 16) as usize);
                if name_len == 0 {
                    return Lookup::Miss;
                }
                if name_len > NAME_CAP || value_len > VALUE_CAP {
                    return Lookup::Miss;
                }
                self.map.read_bytes(off + 8, &mut name_buf[..name_len]);
                let is_it = &name_buf[..name_len] == n;
                if is_it {
                    self.map.read_bytes(off + 8 + NAME_CAP, &mut value_buf[..value_len]);
                }
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) != s1 {
                    continue;
                }
                if !is_it {
                    break;
                }
                return match std::str::from_utf8(&value_buf[..value_len]) {
                    Ok(v) => Lookup::Found(v.to_owned()),
                    Err(_) => Lookup::Miss,
                };
            }
            slot = (slot + 1) & (SLOTS - 1);
        }
        Lookup::Miss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_update_and_miss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("area");
        let mut w = AreaWriter::create(&path).unwrap();
        let r = AreaReader::open_at(&path).unwrap();
        assert_eq!(r.get("a.b"), Lookup::Miss);
        assert!(w.publish("a.b", "1"));
        assert_eq!(r.get("a.b"), Lookup::Found("1".into()));
        assert!(w.publish("a.b", "a longer value"));
        assert_eq!(r.get("a.b"), Lookup::Found("a longer value".into()));
        assert!(w.publish("a.b", ""));
        assert_eq!(r.get("a.b"), Lookup::Found("".into()));
        assert!(!w.publish("const.big", &"x".repeat(200)), "too long for a record");
        assert_eq!(r.get("const.big"), Lookup::Miss);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o444);
    }

    #[test]
    fn many_names_collide_and_stay_findable_until_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("area");
        let mut w = AreaWriter::create(&path).unwrap();
        let r = AreaReader::open_at(&path).unwrap();
        let mut published = 0;
        for i in 0..SLOTS {
            if w.publish(&format!("p.{i}"), &i.to_string()) {
                published += 1;
            }
        }
        assert_eq!(published, SLOTS / 8 * 7, "stops at 7/8 full");
        for i in 0..published {
            assert_eq!(r.get(&format!("p.{i}")), Lookup::Found(i.to_string()));
        }
        assert_eq!(r.get(&format!("p.{}", SLOTS - 1)), Lookup::Miss);
        // Updates of existing names still work when full.
        assert!(w.publish("p.0", "zero"));
        assert_eq!(r.get("p.0"), Lookup::Found("zero".into()));
    }

    #[test]
    fn readers_never_see_torn_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("area");
        let mut w = AreaWriter::create(&path).unwrap();
        w.publish("t.v", &"a".repeat(90));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let p = path.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let r = AreaReader::open_at(&p).unwrap();
                    let mut seen = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Lookup::Found(v) = r.get("t.v") {
                            let first = v.as_bytes()[0];
                            assert!(v.bytes().all(|b| b == first), "torn read: {v}");
                            seen += 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        for i in 0..20_000 {
            let c = if i % 2 == 0 { "b" } else { "a" };
            w.publish("t.v", &c.repeat(if i % 3 == 0 { 40 } else { 90 }));
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    }

    #[test]
    fn garbage_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("area");
        std::fs::write(&path, vec![0u8; AREA_SIZE]).unwrap();
        assert!(AreaReader::open_at(&path).is_err());
        std::fs::write(&path, b"short").unwrap();
        assert!(AreaReader::open_at(&path).is_err());
    }
}
