//! What to do when a service exits: OpenHarmony's restart rules as a pure
//! function over the service's recent crash history, so they can be tested
//! without processes.
//!
//! - `ondemand` with sockets: watch its sockets again, start on the next
//!   connection, also after init stopped it;
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
pub fn on_exit(svc: &Service, history: &mut CrashHistory, now: Instant, stopped_by_init: bool) -> ExitAction {
    // An ondemand service goes back to waiting for a connection (or for
    // the next start request), whether it exited by itself or was stopped
    // (e.g. unloaded when idle).
    if svc.ondemand {
        return if svc.sockets.is_empty() { ExitAction::Stay } else { ExitAction::Rewatch };
    }
    if stopped_by_init || svc.once {
        return ExitAction::Stay;
    }
    let (limit, period) = if svc.critical.enabled {
        (svc.critical.count.max(1), svc.critical.period_secs)
    } else {
        (CRASH_COUNT, CRASH_PERIOD_SECS)
    };
    let window = Duration::from_secs(u64::from(period));
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
        s.sockets.push(SocketSpec {
            name: "x".into(),
            sock_type: SocketType::Stream,
            permissions: 0o660,
            uid: None,
            gid: None,
            passcred: false,
        });
        assert_eq!(on_exit(&s, &mut CrashHistory::default(), now, false), ExitAction::Rewatch);
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
        assert_eq!(
            on_exit(&s, &mut CrashHistory::default(), Instant::now(), false),
            ExitAction::Restart { delay: Duration::from_secs(30) }
        );
    }
}
