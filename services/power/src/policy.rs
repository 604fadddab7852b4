//! The idle policy as a pure function: from how long the user has been
//! idle, the timeouts in force and the running locks, what the display and
//! the system should be doing and when that next changes (OpenHarmony's
//! power state machine, without the doze states a device without an
//! always-on display does not have).
//!
//! - No SCREEN lock: the display is ON until `display_off - dim`, DIM until
//!   `display_off`, then OFF; a SCREEN lock keeps a display that is on ON
//!   (its release counts as activity, so the timers start again then), and
//!   does not turn on one that is off (that is a wake-up's job).
//! - `sleep` after the display went off the system suspends, unless a lock
//!   that keeps it awake (BACKGROUND and the others but SCREEN and
//!   PROXIMITY) is held, or the last attempt was refused by the kernel
//!   (not retried until the next activity: no loop of refused suspends).
//! - A forced suspend (`SuspendDevice`) turns the display off at once and
//!   suspends as soon as no lock keeps the system awake.
//! - A display that is off stays off until a wake-up: longer timeouts (a
//!   mode change, a restored override) do not turn it back on.

use std::time::Duration;

use crate::{DisplayState, PowerState};

/// The timeouts in force (the mode's, or an override).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Idle time to display off; `None`: never.
    pub display_off: Option<Duration>,
    /// How long before display off the display dims (0: no dim).
    pub dim: Duration,
    /// Time from display off to suspend; `None`: never.
    pub sleep: Option<Duration>,
}

/// What the decision depends on besides the timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inputs {
    /// Time since the last user activity.
    pub idle: Duration,
    /// A SCREEN lock is held.
    pub screen_lock: bool,
    /// The display is off now.
    pub display_off: bool,
    /// A lock that keeps the system awake is held.
    pub awake_lock: bool,
    /// A suspend was asked for since the last activity.
    pub forced: bool,
    /// The kernel refused the last suspend and nothing happened since.
    pub refused: bool,
}

/// What the device should be doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub display: DisplayState,
    /// Suspend the system now.
    pub suspend: bool,
    /// When (from now) the decision changes by itself, if nothing else
    /// happens; `None`: only an event changes it.
    pub next: Option<Duration>,
}

impl Decision {
    /// The power state this decision is.
    pub fn state(&self) -> PowerState {
        match (self.display, self.suspend) {
            (_, true) => PowerState::Sleep,
            (DisplayState::On, _) => PowerState::Awake,
            (DisplayState::Dim, _) => PowerState::Dim,
            _ => PowerState::Inactive,
        }
    }
}

/// The decision for `t` and `i`.
pub fn decide(t: &Timeouts, i: &Inputs) -> Decision {
    let may_suspend = !i.awake_lock && !i.refused;
    if i.forced {
        return Decision { display: DisplayState::Off, suspend: may_suspend, next: None };
    }
    if i.screen_lock && !i.display_off {
        return Decision { display: DisplayState::On, suspend: false, next: None };
    }
    let Some(off) = t.display_off else {
        // Never off by itself; one that is off stays off until woken.
        let display = if i.display_off { DisplayState::Off } else { DisplayState::On };
        return Decision { display, suspend: false, next: None };
    };
    let dim_at = off.saturating_sub(t.dim);
    // A display that is off stays off until a wake-up (longer timeouts
    // from a mode change or a restored override do not turn it on).
    if !i.display_off {
        if i.idle < dim_at {
            return Decision { display: DisplayState::On, suspend: false, next: Some(dim_at - i.idle) };
        }
        if i.idle < off {
            return Decision { display: DisplayState::Dim, suspend: false, next: Some(off - i.idle) };
        }
    }
    let Some(sleep) = t.sleep else {
        return Decision { display: DisplayState::Off, suspend: false, next: None };
    };
    let sleep_at = off.saturating_add(sleep);
    if i.idle < sleep_at {
        return Decision { display: DisplayState::Off, suspend: false, next: Some(sleep_at - i.idle) };
    }
    Decision { display: DisplayState::Off, suspend: may_suspend, next: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    const T: Timeouts = Timeouts { display_off: Some(Duration::from_secs(30)), dim: Duration::from_secs(5), sleep: Some(Duration::from_secs(10)) };

    fn at(idle: u64) -> Decision {
        decide(&T, &Inputs { idle: ms(idle), ..Inputs::default() })
    }

    #[test]
    fn idle_goes_on_dim_off_sleep_with_the_next_change_named() {
        assert_eq!(at(0), Decision { display: DisplayState::On, suspend: false, next: Some(ms(25_000)) });
        assert_eq!(at(24_999).next, Some(ms(1)));
        assert_eq!(at(25_000), Decision { display: DisplayState::Dim, suspend: false, next: Some(ms(5_000)) });
        assert_eq!(at(30_000), Decision { display: DisplayState::Off, suspend: false, next: Some(ms(10_000)) });
        assert_eq!(at(30_000).state(), PowerState::Inactive);
        assert_eq!(at(40_000), Decision { display: DisplayState::Off, suspend: true, next: None });
        assert_eq!(at(40_000).state(), PowerState::Sleep);
        assert_eq!(at(25_000).state(), PowerState::Dim);
        assert_eq!(at(1).state(), PowerState::Awake);
    }

    #[test]
    fn locks_hold_what_they_hold() {
        let screen = Inputs { idle: ms(99_000), screen_lock: true, ..Inputs::default() };
        assert_eq!(decide(&T, &screen), Decision { display: DisplayState::On, suspend: false, next: None });
        // Taken while the display is off, it does not turn it on.
        let off = Inputs { idle: ms(99_000), screen_lock: true, display_off: true, ..Inputs::default() };
        assert_eq!(decide(&T, &off), Decision { display: DisplayState::Off, suspend: true, next: None });
        let bg = Inputs { idle: ms(99_000), awake_lock: true, ..Inputs::default() };
        assert_eq!(decide(&T, &bg), Decision { display: DisplayState::Off, suspend: false, next: None });
        // A background lock does not keep the display on.
        let bg_early = Inputs { idle: ms(26_000), awake_lock: true, ..Inputs::default() };
        assert_eq!(decide(&T, &bg_early).display, DisplayState::Dim);
    }

    #[test]
    fn forced_suspend_turns_off_now_and_waits_for_awake_locks() {
        let f = Inputs { idle: ms(0), forced: true, screen_lock: true, ..Inputs::default() };
        assert_eq!(decide(&T, &f), Decision { display: DisplayState::Off, suspend: true, next: None });
        let held = Inputs { forced: true, awake_lock: true, ..Inputs::default() };
        assert_eq!(decide(&T, &held), Decision { display: DisplayState::Off, suspend: false, next: None });
    }

    #[test]
    fn a_refused_suspend_is_not_retried() {
        let r = Inputs { idle: ms(99_000), refused: true, ..Inputs::default() };
        assert_eq!(decide(&T, &r), Decision { display: DisplayState::Off, suspend: false, next: None });
        let rf = Inputs { forced: true, refused: true, ..Inputs::default() };
        assert!(!decide(&T, &rf).suspend);
    }

    #[test]
    fn an_off_display_stays_off_until_woken() {
        // Longer timeouts (a mode change, a restored override) do not turn
        // it on; the suspend still counts from the last activity.
        let off = Inputs { idle: ms(5_000), display_off: true, ..Inputs::default() };
        assert_eq!(decide(&T, &off), Decision { display: DisplayState::Off, suspend: false, next: Some(ms(35_000)) });
        let off = Inputs { idle: ms(40_000), display_off: true, ..Inputs::default() };
        assert_eq!(decide(&T, &off), Decision { display: DisplayState::Off, suspend: true, next: None });
        let t = Timeouts { display_off: None, ..T };
        assert_eq!(decide(&t, &Inputs { display_off: true, ..Inputs::default() }).display, DisplayState::Off);
    }

    #[test]
    fn never_means_never() {
        let t = Timeouts { display_off: None, ..T };
        assert_eq!(decide(&t, &Inputs { idle: ms(u32::MAX as u64), ..Inputs::default() }).display, DisplayState::On);
        let t = Timeouts { sleep: None, ..T };
        assert_eq!(decide(&t, &Inputs { idle: ms(u32::MAX as u64), ..Inputs::default() }), Decision { display: DisplayState::Off, suspend: false, next: None });
        // A dim time longer than the display-off time dims at once.
        let t = Timeouts { dim: Duration::from_secs(60), ..T };
        assert_eq!(decide(&t, &Inputs::default()).display, DisplayState::Dim);
    }
}
