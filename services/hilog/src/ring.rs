//! hilogd's memory: one ring buffer per log type, each bounded in bytes.
//!
//! Every record gets a sequence number from one counter shared by the
//! rings, so readers merge the types in arrival order and keep their place
//! with a single number (their cursor) whatever is overwritten meanwhile.
//! When a ring is full its oldest records go first; a reader whose cursor
//! falls behind what a ring still holds is told how many it missed.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Level, LogType};

/// Default size of each ring (OpenHarmony's 256 KiB).
pub const DEFAULT_SIZE: usize = 256 * 1024;
/// Smallest size `hilog -G` may set.
pub const MIN_SIZE: usize = 64 * 1024;
/// Largest size `hilog -G` may set.
pub const MAX_SIZE: usize = 16 * 1024 * 1024;
/// What a record costs a ring besides its tag and message, in bytes: its
/// fixed fields and the ring's slot (88), and the allocator's share of its
/// two strings (measured: a ring of tiny records took about 120 bytes
/// each).
pub const RECORD_OVERHEAD: usize = 128;

/// One log record as hilogd keeps it and sends it to readers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in arrival order, shared by all types (starts at 1).
    pub seq: u64,
    /// Wall-clock time, ns since the epoch.
    pub time_ns: u64,
    pub ty: LogType,
    pub level: Level,
    pub domain: u32,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub tag: String,
    pub msg: String,
}

impl Record {
    /// Bytes the record counts against its ring.
    pub fn cost(&self) -> usize {
        RECORD_OVERHEAD + self.tag.len() + self.msg.len()
    }
}

/// One type's ring.
#[derive(Debug)]
pub struct Ring {
    recs: VecDeque<Record>,
    used: usize,
    cap: usize,
    /// Records overwritten because the ring was full, since start.
    pub evicted: u64,
    /// The highest sequence number overwritten or cleared (0: none).
    pub gone_upto: u64,
}

impl Ring {
    /// An empty ring of `cap` bytes.
    pub fn new(cap: usize) -> Ring {
        Ring { recs: VecDeque::new(), used: 0, cap, evicted: 0, gone_upto: 0 }
    }

    /// Capacity in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether the ring holds nothing.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    fn push(&mut self, r: Record) {
        self.used += r.cost();
        self.recs.push_back(r);
        self.trim();
    }

    fn trim(&mut self) {
        while self.used > self.cap {
            match self.recs.pop_front() {
                Some(old) => {
                    self.used -= old.cost();
                    self.evicted += 1;
                    self.gone_upto = old.seq;
                }
                None => break,
            }
        }
    }

    /// Sets the capacity, dropping the oldest records that no longer fit.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
        self.trim();
        self.recs.shrink_to_fit();
    }

    /// Drops every record (`hilog -r`).
    pub fn clear(&mut self) {
        if let Some(last) = self.recs.back() {
            self.gone_upto = last.seq;
        }
        self.recs.clear();
        self.recs.shrink_to_fit();
        self.used = 0;
    }

    /// Index of the first record after `seq`.
    fn after(&self, seq: u64) -> usize {
        self.recs.partition_point(|r| r.seq <= seq)
    }
}

/// The rings of all types and the sequence counter.
#[derive(Debug)]
pub struct Store {
    rings: [Ring; 4],
    next: u64,
}

impl Default for Store {
    fn default() -> Store {
        Store::new(DEFAULT_SIZE)
    }
}

impl Store {
    /// Rings of `size` bytes each.
    pub fn new(size: usize) -> Store {
        Store { rings: [Ring::new(size), Ring::new(size), Ring::new(size), Ring::new(size)], next: 1 }
    }

    /// The ring of type `t`.
    pub fn ring(&self, t: LogType) -> &Ring {
        &self.rings[t.index()]
    }

    /// The ring of type `t`, to resize or clear.
    pub fn ring_mut(&mut self, t: LogType) -> &mut Ring {
        &mut self.rings[t.index()]
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Adds a record (its `seq` is set here) and returns its number.
    pub fn push(&mut self, mut r: Record) -> u64 {
        let seq = self.next;
        self.next += 1;
        r.seq = seq;
        self.rings[r.ty.index()].push(r);
        seq
    }

    /// Records of `types` that a reader at `cursor` can no longer get
    /// (overwritten or cleared) and has not been told of: an upper bound
    /// (sequence numbers are shared, so a gap counts every type's records),
    /// 0 when none. `reported` keeps, per type, what was told already.
    pub fn lost_since(&self, types: &[LogType], cursor: u64, reported: &mut [u64; 4]) -> u64 {
        let mut lost = 0;
        for t in types {
            let gone = self.rings[t.index()].gone_upto;
            let from = cursor.max(reported[t.index()]);
            if gone > from {
                lost += gone - from;
                reported[t.index()] = gone;
            }
        }
        lost
    }

    /// Walks the records of `types` after `cursor` in sequence order,
    /// calling `f` on each until it returns false; returns the sequence
    /// number of the last record `f` accepted (or `cursor`). Records `f`
    /// skips by returning true are passed over.
    pub fn walk(&self, types: &[LogType], cursor: u64, mut f: impl FnMut(&Record) -> bool) -> u64 {
        let mut idx: Vec<(usize, usize)> = types.iter().map(|t| (t.index(), self.rings[t.index()].after(cursor))).collect();
        let mut last = cursor;
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (k, (ring, i)) in idx.iter().enumerate() {
                if let Some(r) = self.rings[*ring].recs.get(*i) {
                    if best.is_none_or(|(_, s)| r.seq < s) {
                        best = Some((k, r.seq));
                    }
                }
            }
            let Some((k, _)) = best else { return last };
            let (ring, i) = idx[k];
            let r = &self.rings[ring].recs[i];
            if !f(r) {
                return last;
            }
            last = r.seq;
            idx[k].1 += 1;
        }
    }

    /// Walks the records of `types` before `before` from the newest back,
    /// calling `f` until it returns false.
    pub fn walk_back(&self, types: &[LogType], before: u64, mut f: impl FnMut(&Record) -> bool) {
        let mut idx: Vec<(usize, usize)> = types.iter().map(|t| (t.index(), self.rings[t.index()].recs.partition_point(|r| r.seq < before))).collect();
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (k, (ring, i)) in idx.iter().enumerate() {
                if *i > 0 {
                    let r = &self.rings[*ring].recs[*i - 1];
                    if best.is_none_or(|(_, s)| r.seq > s) {
                        best = Some((k, r.seq));
                    }
                }
            }
            let Some((k, _)) = best else { return };
            idx[k].1 -= 1;
            let (ring, i) = idx[k];
            if !f(&self.rings[ring].recs[i]) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(ty: LogType, msg: &str) -> Record {
        Record { seq: 0, time_ns: 0, ty, level: Level::Info, domain: 0, pid: 1, tid: 1, uid: 0, tag: "t".into(), msg: msg.into() }
    }

    #[test]
    fn types_merge_in_arrival_order() {
        let mut s = Store::new(MIN_SIZE);
        s.push(rec(LogType::Core, "a"));
        s.push(rec(LogType::Kmsg, "b"));
        s.push(rec(LogType::Core, "c"));
        s.push(rec(LogType::App, "d"));
        let mut got = Vec::new();
        let last = s.walk(&[LogType::Core, LogType::App, LogType::Kmsg], 0, |r| {
            got.push(r.msg.clone());
            true
        });
        assert_eq!(got, ["a", "b", "c", "d"]);
        assert_eq!(last, 4);
        got.clear();
        s.walk(&[LogType::Core], 1, |r| {
            got.push(r.msg.clone());
            true
        });
        assert_eq!(got, ["c"]);
        got.clear();
        s.walk_back(&[LogType::Core, LogType::App], u64::MAX, |r| {
            got.push(r.msg.clone());
            got.len() < 2
        });
        assert_eq!(got, ["d", "c"]);
    }

    #[test]
    fn a_full_ring_drops_its_oldest_and_readers_hear_of_it() {
        let mut s = Store::new(MIN_SIZE);
        let big = "x".repeat(1000);
        for _ in 0..200 {
            s.push(rec(LogType::Core, &big));
        }
        let r = s.ring(LogType::Core);
        assert!(r.used() <= MIN_SIZE, "{}", r.used());
        assert!(r.evicted > 0);
        assert_eq!(r.evicted as usize + r.len(), 200);
        let mut told = [0; 4];
        assert!(s.lost_since(&[LogType::Core], 0, &mut told) > 0);
        assert_eq!(s.lost_since(&[LogType::Core], 0, &mut told), 0, "told once");
        assert_eq!(s.lost_since(&[LogType::Core], 199, &mut [0; 4]), 0);
        assert_eq!(s.lost_since(&[LogType::App], 0, &mut [0; 4]), 0);
        // Stopping part way returns the last accepted record.
        let mut n = 0;
        let last = s.walk(&[LogType::Core], 0, |_| {
            n += 1;
            n <= 3
        });
        assert_eq!(last, r.gone_upto + 3);
    }

    #[test]
    fn clear_and_resize() {
        let mut s = Store::new(MAX_SIZE);
        for _ in 0..10 {
            s.push(rec(LogType::App, "y"));
        }
        s.ring_mut(LogType::App).clear();
        assert!(s.ring(LogType::App).is_empty());
        assert!(s.lost_since(&[LogType::App], 0, &mut [0; 4]) > 0);
        for _ in 0..2000 {
            s.push(rec(LogType::App, &"z".repeat(100)));
        }
        s.ring_mut(LogType::App).set_cap(MIN_SIZE);
        assert!(s.ring(LogType::App).used() <= MIN_SIZE);
    }
}
