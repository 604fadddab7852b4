//! What to do when a service exits: OpenHarmony's restart rules as a pure
//! function over the service's recent crash history, so they can be tested
//! without processes.
//!
//! - `ondemand` with sockets: watch its sockets again, start on the next
//!   connection, also after init stopped it. An exit that is a crash (a
//!   failure status or signal, or leaving a connection it never accepted)
//!   counts like any crash: the second and later crashes within the window
//!   re-watch only after a back-off ([`ondemand_backoff`]), and N crashes
//!   within T seconds mark it failed: its sockets then refuse clients;
//! - `ondemand` without sockets (a system ability process that samgr
//!   starts with `ohos.ctl.start`): leave it stopped; the next request
//!   starts it again, so an SA host that exits when idle stays down;
//! - stopped by init (stop command, `ohos.ctl.stop`, shutdown): nothing;
//! - `once`: nothing;
//! - `critical` and N exits within T seconds: reboot into panic mode;
//! - otherwise, N exits within T seconds (defaults 4 and 240): restart after
//!   a delay of T seconds, then count afresh;
//! - `period`: restart after `period` seconds;
//! - else restart now (running the `on-restart` job first).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::cfg::Service;

/// Default crash limit for services that are not critical.
pub const CRASH_COUNT: u32 = 4;
/// Default window for counting crashes, in seconds.
pub const CRASH_PERIOD_SECS: u32 = 240;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitAction {
    /// Leave it stopped.
    Stay,
    /// Start it again after `delay` (zero: now).
    Restart { delay: Duration },
    /// Watch its sockets; start on the next connection.
    Rewatch,
    /// An ondemand service crashed: watch its sockets again after `delay`.
    RewatchAfter { delay: Duration },
    /// An ondemand service crashed N times within T seconds: mark it
    /// failed and refuse its clients.
    Fail { count: u32, period_secs: u32 },
    /// A critical service crashed too often: orderly reboot into panic mode.
    Panic,
}

/// Exit times within the current window.
#[derive(Debug, Default, Clone)]
pub struct CrashHistory {
    exits: VecDeque<Instant>,
}

impl CrashHistory {
    pub fn count(&self) -> usize {
        self.exits.len()
    }

    fn record(&mut self, now: Instant, window: Duration) -> usize {
        self.exits.push_back(now);
        while let Some(first) = self.exits.front() {
            if now.duration_since(*first) > window {
                self.exits.pop_front();
            } else {
                break;
            }
        }
        self.exits.len()
    }

    pub fn clear(&mut self) {
        self.exits.clear();
    }
}

/// Decides what happens after `svc` exited at `now`. `stopped_by_init` is
/// true when init asked it to stop.
/// Back-off before an ondemand service's sockets are watched again after
/// its `n`-th crash in the window: none after the first, then 1, 2, 4 … s,
/// at most [`MAX_ONDEMAND_BACKOFF`].
pub fn ondemand_backoff(n: usize) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let secs = 1u64 << (n - 2).min(16);
    Duration::from_secs(secs).min(MAX_ONDEMAND_BACKOFF)
}

/// Longest back-off between re-activations of a crashing ondemand service.
pub const MAX_ONDEMAND_BACKOFF: Duration = Duration::from_secs(30);

/// How a service's exit is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exit {
    /// init asked it to stop.
    pub stopped_by_init: bool,
    /// Only for ondemand services with sockets: the exit is a crash (a
    /// failure status or a signal, or a connection left unaccepted). A
    /// clean idle exit is not.
    pub crashed: bool,
}

/// Decides what happens after `svc` exited at `now`. `stopped_by_init` is
/// true when init asked it to stop.
pub fn on_exit(svc: &Service, history: &mut CrashHistory, now: Instant, stopped_by_init: bool) -> ExitAction {
    on_exit_with(svc, history, now, Exit { stopped_by_init, crashed: !stopped_by_init })
}

/// [`on_exit`] with the ondemand crash judgement.
pub fn on_exit_with(svc: &Service, history: &mut CrashHistory, now: Instant, exit: Exit) -> ExitAction {
    let stopped_by_init = exit.stopped_by_init;
    let (limit, period) = if svc.critical.enabled { (svc.critical.count.max(1), svc.critical.period_secs) } else { (CRASH_COUNT, CRASH_PERIOD_SECS) };
    let window = Duration::from_secs(u64::from(period));
    // An ondemand service goes back to waiting for a connection (or for
    // the next start request), whether it exited by itself or was stopped
    // (e.g. unloaded when idle).
    if svc.ondemand {
        if svc.sockets.is_empty() {
            return ExitAction::Stay;
        }
        if stopped_by_init || !exit.crashed {
            return ExitAction::Rewatch;
        }
        let n = history.record(now, window);
        if n >= limit as usize {
            history.clear();
            if svc.critical.enabled {
                return ExitAction::Panic;
            }
            return ExitAction::Fail { count: limit, period_secs: period };
        }
        let delay = ondemand_backoff(n);
        return if delay.is_zero() { ExitAction::Rewatch } else { ExitAction::RewatchAfter { delay } };
    }
    if stopped_by_init || svc.once {
        return ExitAction::Stay;
    }
    let n = history.record(now, window);
    if n >= limit as usize {
        history.clear();
        if svc.critical.enabled {
            return ExitAction::Panic;
        }
        return ExitAction::Restart { delay: window };
    }
    if let Some(p) = svc.period_secs {
        return ExitAction::Restart { delay: Duration::from_secs(u64::from(p)) };
    }
    ExitAction::Restart { delay: Duration::ZERO }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfg::{Critical, SocketSpec, SocketType};

    fn svc() -> Service {
        Service {
            name: "s".into(),
            path: vec!["/bin/true".into()],
            uid: None,
            gid: vec![],
            once: false,
            importance: 0,
            caps: None,
            critical: Critical::default(),
            cpucore: vec![],
            start_mode: Default::default(),
            ondemand: false,
            disabled: false,
            console: false,
            sockets: vec![],
            writepid: vec![],
            env: vec![],
            jobs: Default::default(),
            bootevents: vec![],
            period_secs: None,
            origin: "/etc/init.cfg".into(),
        }
    }

    #[test]
    fn stopped_by_init_stays() {
        let mut h = CrashHistory::default();
        assert_eq!(on_exit(&svc(), &mut h, Instant::now(), true), ExitAction::Stay);
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn once_stays() {
        let mut s = svc();
        s.once = true;
        assert_eq!(on_exit(&s, &mut CrashHistory::default(), Instant::now(), false), ExitAction::Stay);
    }

    #[test]
    fn ondemand_rewatches_with_sockets_and_stays_down_without() {
        let mut s = svc();
        s.ondemand = true;
        let now = Instant::now();
        assert_eq!(on_exit(&s, &mut CrashHistory::default(), now, false), ExitAction::Stay, "an SA host started by samgr stays down");
        s.sockets.push(SocketSpec { name: "x".into(), sock_type: SocketType::Stream, permissions: 0o660, uid: None, gid: None, passcred: false });
        assert_eq!(on_exit(&s, &mut CrashHistory::default(), now, false), ExitAction::Rewatch);
    }

    #[test]
    fn crashing_ondemand_socket_service_backs_off_then_fails() {
        let mut s = svc();
        s.ondemand = true;
        s.sockets.push(SocketSpec { name: "x".into(), sock_type: SocketType::Stream, permissions: 0o660, uid: None, gid: None, passcred: false });
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        let crash = Exit { stopped_by_init: false, crashed: true };
        // Clean idle exits and stops by init are not crashes.
        for i in 0..10 {
            assert_eq!(on_exit_with(&s, &mut h, t0 + Duration::from_millis(i), Exit::default()), ExitAction::Rewatch);
            assert_eq!(on_exit_with(&s, &mut h, t0, Exit { stopped_by_init: true, crashed: true }), ExitAction::Rewatch);
        }
        assert_eq!(h.count(), 0);
        assert_eq!(on_exit_with(&s, &mut h, t0, crash), ExitAction::Rewatch);
        assert_eq!(on_exit_with(&s, &mut h, t0, crash), ExitAction::RewatchAfter { delay: Duration::from_secs(1) });
        assert_eq!(on_exit_with(&s, &mut h, t0, crash), ExitAction::RewatchAfter { delay: Duration::from_secs(2) });
        assert_eq!(on_exit_with(&s, &mut h, t0, crash), ExitAction::Fail { count: 4, period_secs: 240 });
        assert_eq!(ondemand_backoff(100), MAX_ONDEMAND_BACKOFF);
        // A critical one reboots into panic mode instead.
        s.critical = Critical { enabled: true, count: 2, period_secs: 10 };
        assert_eq!(on_exit_with(&s, &mut h, t0, crash), ExitAction::Rewatch);
        assert_eq!(on_exit_with(&s, &mut h, t0, crash), ExitAction::Panic);
    }

    #[test]
    fn plain_service_restarts_then_is_delayed_after_four_crashes() {
        let s = svc();
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        for i in 0..3 {
            let a = on_exit(&s, &mut h, t0 + Duration::from_secs(i), false);
            assert_eq!(a, ExitAction::Restart { delay: Duration::ZERO });
        }
        let a = on_exit(&s, &mut h, t0 + Duration::from_secs(3), false);
        assert_eq!(a, ExitAction::Restart { delay: Duration::from_secs(240) });
        // Counting starts afresh.
        let a = on_exit(&s, &mut h, t0 + Duration::from_secs(4), false);
        assert_eq!(a, ExitAction::Restart { delay: Duration::ZERO });
    }

    #[test]
    fn crashes_outside_the_window_do_not_count() {
        let s = svc();
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            let a = on_exit(&s, &mut h, t0 + Duration::from_secs(i * 100), false);
            assert_eq!(a, ExitAction::Restart { delay: Duration::ZERO }, "exit {i}");
        }
    }

    #[test]
    fn critical_panics_after_n_within_t() {
        let mut s = svc();
        s.critical = Critical { enabled: true, count: 2, period_secs: 10 };
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        assert_eq!(on_exit(&s, &mut h, t0, false), ExitAction::Restart { delay: Duration::ZERO });
        assert_eq!(on_exit(&s, &mut h, t0 + Duration::from_secs(5), false), ExitAction::Panic);
    }

    #[test]
    fn critical_outside_window_restarts() {
        let mut s = svc();
        s.critical = Critical { enabled: true, count: 2, period_secs: 10 };
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        assert_eq!(on_exit(&s, &mut h, t0, false), ExitAction::Restart { delay: Duration::ZERO });
        assert_eq!(on_exit(&s, &mut h, t0 + Duration::from_secs(11), false), ExitAction::Restart { delay: Duration::ZERO });
    }

    #[test]
    fn periodic_service_waits_its_period() {
        let mut s = svc();
        s.period_secs = Some(30);
        assert_eq!(on_exit(&s, &mut CrashHistory::default(), Instant::now(), false), ExitAction::Restart { delay: Duration::from_secs(30) });
    }
}
