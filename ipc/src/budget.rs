//! What the fast-path connections of one server process may hold for
//! their clients between reads, per non-root uid and for all of them:
//! bytes of requests not yet whole (a client can send 4 MiB less one
//! byte and stop) and received descriptors no whole request has claimed
//! yet. The connection caps of an SA host bound how many connections a
//! uid has; this bounds what those connections cost: without it 256
//! connections of one uid could hold 1 GiB and 8,192 descriptors.
//!
//! Every server connection of [`crate::remote::serve`] charges its uid
//! after each read; a read that takes its uid (or everyone) past a
//! budget ends that connection with [`crate::remote::RemoteError::Limit`]
//! naming the bound, and what it held is freed. Root is not counted
//! (system services are trusted to pace themselves). OpenHarmony's binder
//! bounds the same thing with its per-process transaction buffer (1 MiB
//! of async space).

use std::collections::HashMap;
use std::sync::Mutex;

/// The budgets; [`set_limits`] changes them for the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of unfinished requests one non-root uid may have this
    /// process hold, over all its connections.
    pub bytes_per_uid: usize,
    /// Received, unclaimed descriptors one non-root uid may have this
    /// process hold.
    pub fds_per_uid: usize,
    /// The same bytes for all non-root uids together.
    pub bytes_total: usize,
    /// The same descriptors for all non-root uids together.
    pub fds_total: usize,
    /// Listener objects ([`Hold`]) a non-root uid sent that this process
    /// keeps (each is a connection back to the sender: a descriptor).
    pub listeners_per_uid: usize,
    /// The same for all non-root uids together.
    pub listeners_total: usize,
}

impl Default for Limits {
    /// 16 MiB and 128 descriptors per uid (four largest messages; four
    /// connections' worth of pending descriptors), 64 MiB and 1,024 for
    /// all; 64 listeners per uid, 1,024 for all.
    fn default() -> Limits {
        Limits { bytes_per_uid: 16 << 20, fds_per_uid: 128, bytes_total: 64 << 20, fds_total: 1024, listeners_per_uid: 64, listeners_total: 1024 }
    }
}

#[derive(Default)]
struct Ledger {
    limits: Option<Limits>,
    /// (bytes, descriptors) held per uid.
    per_uid: HashMap<u32, (usize, usize)>,
    total: (usize, usize),
    listeners: HashMap<u32, usize>,
    listeners_total: usize,
}

static LEDGER: Mutex<Option<Ledger>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Ledger) -> R) -> R {
    let mut g = LEDGER.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Ledger::default))
}

/// Sets the budgets of this process (what is held already stays held; a
/// connection over a lowered budget ends at its next read).
pub fn set_limits(limits: Limits) {
    with(|l| l.limits = Some(limits));
}

/// The budgets in force.
pub fn limits() -> Limits {
    with(|l| l.limits.unwrap_or_default())
}

/// (bytes, descriptors) uid `uid`'s connections hold now.
pub fn held(uid: u32) -> (usize, usize) {
    with(|l| l.per_uid.get(&uid).copied().unwrap_or_default())
}

/// Listener objects uid `uid` sent that this process keeps now.
pub fn listeners_held(uid: u32) -> usize {
    with(|l| l.listeners.get(&uid).copied().unwrap_or_default())
}

thread_local! {
    static SENDER: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The non-root uid whose requests this thread answers (set on a
/// fast-path server connection's thread), for charging what a request
/// leaves behind in this process (a received listener: [`Hold`]).
/// `None` elsewhere, and for root.
pub fn sender() -> Option<u32> {
    SENDER.with(|s| s.get())
}

pub(crate) fn set_sender(uid: Option<u32>) {
    SENDER.with(|s| s.set(uid.filter(|&u| u != 0)));
}

/// Runs `f` with [`sender`] saying `uid`, then restores it: a reply this
/// thread decodes while it serves uid X came from whoever was called,
/// not from X (`None`: charge nobody).
pub fn with_sender<R>(uid: Option<u32>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SENDER.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(sender());
    set_sender(uid);
    f()
}

/// One listener object a uid sent, kept by this process; dropping it (the
/// listener, or the proxy it became) gives the uid its place back.
#[derive(Debug)]
pub struct Hold {
    uid: u32,
}

impl Hold {
    /// The uid charged.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// A place for one more listener of `uid`'s; `Err` names the budget
    /// it would exceed.
    pub fn listener(uid: u32) -> Result<Hold, String> {
        with(|l| {
            let lim = l.limits.unwrap_or_default();
            let mine = l.listeners.get(&uid).copied().unwrap_or_default();
            if mine >= lim.listeners_per_uid {
                return Err(format!("uid {uid} has {mine} listeners kept in this process, its share"));
            }
            if l.listeners_total >= lim.listeners_total {
                return Err(format!("this process keeps {} listeners of other uids, its limit", l.listeners_total));
            }
            l.listeners.insert(uid, mine + 1);
            l.listeners_total += 1;
            Ok(Hold { uid })
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        with(|l| {
            if let Some(n) = l.listeners.get_mut(&self.uid) {
                *n -= 1;
                if *n == 0 {
                    l.listeners.remove(&self.uid);
                }
            }
            l.listeners_total = l.listeners_total.saturating_sub(1);
        });
    }
}

/// What one connection holds, charged to its uid; dropping it frees it.
#[derive(Debug)]
pub(crate) struct Charge {
    /// `None`: not counted (root, a private pair).
    uid: Option<u32>,
    bytes: usize,
    fds: usize,
}

impl Charge {
    pub(crate) fn new(uid: Option<u32>) -> Charge {
        Charge { uid: uid.filter(|&u| u != 0), bytes: 0, fds: 0 }
    }

    /// Records that the connection now holds `bytes` and `fds`; `Err`
    /// names the budget it took its uid (or everyone) past. A refused
    /// connection ends, so what it holds is let go at once, in the same
    /// turn of the ledger: another connection of the uid reading at the
    /// same moment is not refused for bytes that are about to go.
    pub(crate) fn set(&mut self, bytes: usize, fds: usize) -> Result<(), String> {
        let Some(uid) = self.uid else { return Ok(()) };
        if (bytes, fds) == (self.bytes, self.fds) {
            return Ok(());
        }
        let (old_b, old_f) = (self.bytes, self.fds);
        let r = with(|l| {
            let lim = l.limits.unwrap_or_default();
            let mine = l.per_uid.entry(uid).or_default();
            mine.0 = mine.0 - old_b + bytes;
            mine.1 = mine.1 - old_f + fds;
            let (mb, mf) = *mine;
            l.total.0 = l.total.0 - old_b + bytes;
            l.total.1 = l.total.1 - old_f + fds;
            let grew = bytes > old_b || fds > old_f;
            let verdict = if !grew {
                Ok(())
            } else if mb > lim.bytes_per_uid {
                Err(format!("uid {uid} holds {mb} bytes of unfinished requests in this process, past its share of {}", lim.bytes_per_uid))
            } else if mf > lim.fds_per_uid {
                Err(format!("uid {uid} holds {mf} unclaimed descriptors in this process, past its share of {}", lim.fds_per_uid))
            } else if l.total.0 > lim.bytes_total {
                Err(format!("clients hold {} bytes of unfinished requests in this process, past the limit of {}", l.total.0, lim.bytes_total))
            } else if l.total.1 > lim.fds_total {
                Err(format!("clients hold {} unclaimed descriptors in this process, past the limit of {}", l.total.1, lim.fds_total))
            } else {
                Ok(())
            };
            if verdict.is_err() {
                if let Some(mine) = l.per_uid.get_mut(&uid) {
                    mine.0 -= bytes;
                    mine.1 -= fds;
                }
                l.total.0 -= bytes;
                l.total.1 -= fds;
            }
            if l.per_uid.get(&uid) == Some(&(0, 0)) {
                l.per_uid.remove(&uid);
            }
            verdict
        });
        (self.bytes, self.fds) = if r.is_ok() { (bytes, fds) } else { (0, 0) };
        r
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let _ = self.set(0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_past_its_share_is_refused_and_dropping_frees_it() {
        // uids of their own: the ledger is the process's.
        let mut a = Charge::new(Some(70_001));
        let mut b = Charge::new(Some(70_001));
        let lim = limits();
        assert!(a.set(lim.bytes_per_uid - 10, 3).is_ok());
        let e = b.set(11, 0).unwrap_err();
        assert!(e.contains("uid 70001") && e.contains("share"), "{e}");
        assert_eq!(held(70_001), (lim.bytes_per_uid - 10, 3), "the refused connection holds nothing any more");
        assert!(b.set(5, 0).is_ok(), "within the share again");
        assert!(a.set(1, 3).is_ok(), "shrinking is never refused");
        assert_eq!(held(70_001), (6, 3));
        drop(a);
        drop(b);
        assert_eq!(held(70_001), (0, 0));
        let holds: Vec<Hold> = (0..limits().listeners_per_uid).map(|_| Hold::listener(70_002).unwrap()).collect();
        let e = Hold::listener(70_002).unwrap_err();
        assert!(e.contains("uid 70002") && e.contains("share"), "{e}");
        drop(holds);
        assert_eq!(listeners_held(70_002), 0);
        assert!(Hold::listener(70_002).is_ok());
        let mut root = Charge::new(Some(0));
        assert!(root.set(usize::MAX / 2, 1 << 20).is_ok(), "root is not counted");
        assert_eq!(held(0), (0, 0));
    }
}
