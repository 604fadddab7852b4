//! Subscribers of one SA (OpenHarmony's callbacks registered with a
//! service): bounded per uid and in all, each with a bounded queue of
//! notifications delivered in order by a task of its own that waits for
//! each reply. A listener that falls behind loses the newer notifications,
//! counted in the next one's `lost`; the SA never waits for a listener. A
//! subscription ends with [`Subscribers::remove`], when its listener's
//! process goes, or when a call to it fails.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_ipc::remote::{RemoteError, RemoteProxy};

use crate::typed::{Listener, TypedProxy};
use crate::Caller;

/// How long a subscribe waits for the listener's handshake.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// A bound was reached (per uid or in all), named.
    #[error("too many: {0}")]
    TooMany(String),
    /// The listener cannot be reached (no handshake, refused).
    #[error("{0}")]
    Failed(String),
}

/// A [`Subscribers`] table's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Subscriptions one uid holds.
    pub per_uid: usize,
    /// Subscriptions held in all by uids other than root and system
    /// (which have only their per-uid share).
    pub total: usize,
    /// Notifications queued for one listener before newer ones are
    /// dropped and counted.
    pub pending: usize,
}

struct Sub<E> {
    id: u64,
    uid: u32,
    tx: tokio::sync::mpsc::Sender<E>,
    lost: AtomicU32,
    end: tokio::sync::Notify,
}

/// One SA's subscribers of events `E`.
pub struct Subscribers<E> {
    what: &'static str,
    bounds: Bounds,
    subs: Mutex<Vec<Arc<Sub<E>>>>,
    next: AtomicU64,
}

impl<E: Clone + Send + 'static> Subscribers<E> {
    /// `what` names them in logs and errors ("power listeners").
    pub fn new(what: &'static str, bounds: Bounds) -> Self {
        Subscribers { what, bounds, subs: Mutex::default(), next: AtomicU64::new(0) }
    }

    /// Adds `listener` for `caller` and starts its delivery on `rt`:
    /// `deliver(proxy, event, lost)` makes each call. Returns the
    /// subscription's id once the listener answered its handshake.
    ///
    /// # Errors
    /// [`SubscribeError::TooMany`] past the uid's share or the total (root
    /// and system have only their own share); [`SubscribeError::Failed`]
    /// when the listener cannot be reached.
    pub fn add<P, F, Fut>(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        caller: &Caller,
        listener: Listener<P>,
        remote: fn(&P) -> &RemoteProxy,
        deliver: F,
    ) -> Result<u64, SubscribeError>
    where
        P: TypedProxy + Clone + Send + Sync + 'static,
        F: Fn(P, E, u32) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), RemoteError>> + Send,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel(self.bounds.pending.max(1));
        let sub = Arc::new(Sub {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            uid: caller.uid(),
            tx,
            lost: AtomicU32::new(0),
            end: tokio::sync::Notify::new(),
        });
        {
            let mut subs = crate::lock(&self.subs);
            let held = subs.iter().filter(|s| s.uid == caller.uid()).count();
            if held >= self.bounds.per_uid {
                return Err(SubscribeError::TooMany(format!("uid {} holds {held} {}, its share", caller.uid(), self.what)));
            }
            if subs.len() >= self.bounds.total && !matches!(caller.uid(), 0 | 1000) {
                return Err(SubscribeError::TooMany(format!("{} {} held in all", subs.len(), self.what)));
            }
            subs.push(sub.clone());
        }
        let this = self.clone();
        let id = sub.id;
        let (connected_tx, connected) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let ended = async {
                let proxy = match listener.connect().await {
                    Ok(p) => {
                        let _ = connected_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = connected_tx.send(Err(e.to_string()));
                        return Ok(());
                    }
                };
                let r = remote(&proxy).clone();
                loop {
                    let e = tokio::select! {
                        e = rx.recv() => match e { Some(e) => e, None => return Ok(()) },
                        () = r.died() => return Ok(()),
                        () = sub.end.notified() => return Ok(()),
                    };
                    let lost = sub.lost.swap(0, Ordering::Relaxed);
                    tokio::select! {
                        res = deliver(proxy.clone(), e, lost) => res?,
                        () = r.died() => return Ok(()),
                        () = sub.end.notified() => return Ok(()),
                    }
                }
            };
            let r: Result<(), RemoteError> = ended.await;
            if let Err(e) = r {
                tracing::info!("{} subscription {id}: {e}; ended", this.what);
            }
            crate::lock(&this.subs).retain(|s| s.id != id);
        });
        match connected.recv_timeout(HANDSHAKE) {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(SubscribeError::Failed(format!("the listener cannot be called: {e}"))),
            Err(_) => Err(SubscribeError::Failed("no handshake with the listener".into())),
        }
    }

    /// Ends subscription `id` of `uid`; whether it was there.
    pub fn remove(&self, uid: u32, id: u64) -> bool {
        let mut subs = crate::lock(&self.subs);
        let Some(at) = subs.iter().position(|s| s.id == id && s.uid == uid) else { return false };
        let sub = subs.remove(at);
        sub.end.notify_one();
        true
    }

    /// Queues `e` for every subscriber (never waits: a full queue counts
    /// it as lost).
    pub fn send(&self, e: &E) {
        for s in crate::lock(&self.subs).iter() {
            if s.tx.try_send(e.clone()).is_err() {
                s.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        crate::lock(&self.subs).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
