//! `power-shell`: OpenHarmony's power tool (the image links it to the
//! multi-call `sa_main`), through the power manager (SA 3301) and, for
//! `battery` and `thermal`, SAs 3302 and 3303.
//!
//! ```text
//! power-shell dump                 state, mode, timeouts, suspends, locks
//! power-shell setmode 600|601|602|603
//! power-shell wakeup               display on (activity)
//! power-shell suspend              display off and suspend when no lock holds it
//! power-shell lock                 the running locks
//! power-shell timeout -o MS | -r   override the display-off time / restore it
//! power-shell reason               how the previous boot ended
//! power-shell reboot|shutdown [REASON]
//! power-shell hold TYPE MS [NAME]  take a running lock for MS ms (it goes with this process)
//! power-shell watch                print each state, mode and lock change
//! power-shell battery | thermal
//! power-shell display [-s LEVEL | -o LEVEL | -r]   brightness (0..=255): show, set, override, restore
//! ```
//! Exit status 2 for usage, 1 for a refused or failed operation (what the
//! SA said on stderr).

use std::io::Write;
use std::time::Duration;

use accord_safwk::typed::{CallError, Listener};
use accord_safwk::Samgr;
use anyhow::{Context, Result};

use crate::{
    BatteryServiceProxy, DisplayState, LockInfo, LockType, PowerError, PowerListener, PowerManagerProxy, PowerMode, PowerState, ThermalManagerProxy,
    BATTERY_ID, ID, THERMAL_ID,
};

const USAGE: &str = "usage: power-shell dump | setmode 600|601|602|603 | wakeup | suspend | lock | timeout -o MS | timeout -r | reason | reboot [REASON] | shutdown [REASON] | hold TYPE MS [NAME] | watch | battery | thermal | display [-s LEVEL | -o LEVEL | -r]
  TYPE: SCREEN, BACKGROUND, PHONE, NOTIFICATION, AUDIO, SPORT, NAVIGATION, TASK, PROXIMITY_SCREEN_CONTROL; timeout -o -1: never";

fn why(e: CallError<PowerError>) -> anyhow::Error {
    match e {
        CallError::Sa(e) => anyhow::anyhow!("{e}"),
        CallError::Ipc(e) => anyhow::anyhow!("power manager (SA {ID}): {e}"),
    }
}

enum Cmd {
    Dump,
    SetMode(PowerMode),
    Wakeup,
    Suspend,
    Locks,
    Override(i64),
    Restore,
    Reason,
    Down {
        reboot: bool,
        reason: String,
    },
    Hold {
        kind: LockType,
        ms: u64,
        name: String,
    },
    Watch,
    Battery,
    Thermal,
    /// `display`: show (None), set, override or restore the brightness.
    Display(Option<Brightness>),
}

#[derive(Debug, PartialEq, Eq)]
enum Brightness {
    Set(u32),
    Override(u32),
    Restore,
}

/// The command, or why the line is not one (printed above the usage).
fn parse(rest: &[&str]) -> Result<Cmd, String> {
    let mode = |m: &str| {
        m.parse()
            .ok()
            .and_then(PowerMode::from_code)
            .ok_or_else(|| format!("{m:?} is not a mode: 600 normal, 601 power save, 602 performance, 603 extreme power save"))
    };
    let kind = |t: &str| {
        LockType::parse(t).ok_or_else(|| format!("{t:?} is not a lock type: {}", LockType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")))
    };
    let ms = |v: &str| v.parse::<u64>().map_err(|_| format!("{v:?} is not a number of milliseconds"));
    let level = |v: &str| v.parse::<u32>().ok().filter(|l| *l <= 255).ok_or_else(|| format!("{v:?} is not a brightness (0..=255)"));
    Ok(match *rest {
        ["dump"] | ["-a"] => Cmd::Dump,
        ["setmode", m] => Cmd::SetMode(mode(m)?),
        ["wakeup"] => Cmd::Wakeup,
        ["suspend"] => Cmd::Suspend,
        ["lock"] => Cmd::Locks,
        ["timeout", "-o", v] => Cmd::Override(v.parse().map_err(|_| format!("{v:?} is not a number of milliseconds (-1: never)"))?),
        ["timeout", "-r"] => Cmd::Restore,
        ["reason"] => Cmd::Reason,
        ["reboot"] => Cmd::Down { reboot: true, reason: "power-shell".into() },
        ["shutdown"] => Cmd::Down { reboot: false, reason: "power-shell".into() },
        ["reboot", r] => Cmd::Down { reboot: true, reason: r.into() },
        ["shutdown", r] => Cmd::Down { reboot: false, reason: r.into() },
        ["hold", t, v] => Cmd::Hold { kind: kind(t)?, ms: ms(v)?, name: "power-shell".into() },
        ["hold", t, v, n] => Cmd::Hold { kind: kind(t)?, ms: ms(v)?, name: n.into() },
        ["watch"] => Cmd::Watch,
        ["battery"] => Cmd::Battery,
        ["thermal"] => Cmd::Thermal,
        ["display"] => Cmd::Display(None),
        ["display", "-s", l] => Cmd::Display(Some(Brightness::Set(level(l)?))),
        ["display", "-o", l] => Cmd::Display(Some(Brightness::Override(level(l)?))),
        ["display", "-r"] => Cmd::Display(Some(Brightness::Restore)),
        _ => return Err(String::new()),
    })
}

/// `unix_ms` as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

enum Seen {
    State(PowerState, DisplayState, u32),
    Mode(PowerMode, u32),
    Lock(LockInfo, bool, u32),
}

struct Printer(tokio::sync::mpsc::UnboundedSender<Seen>);

impl PowerListener for Printer {
    fn on_state(&self, state: PowerState, display: DisplayState, lost: u32) {
        let _ = self.0.send(Seen::State(state, display, lost));
    }
    fn on_mode(&self, mode: PowerMode, lost: u32) {
        let _ = self.0.send(Seen::Mode(mode, lost));
    }
    fn on_lock(&self, lock: LockInfo, held: bool, lost: u32) {
        let _ = self.0.send(Seen::Lock(lock, held, lost));
    }
}

/// Runs `power-shell` with `args` (`args[0]` is the program name).
pub fn main(args: Vec<String>) -> Result<()> {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cmd = accord_safwk::command_or_usage("power-shell", USAGE, parse(&rest));
    // `power-shell dump | head`: a reader that went away is not an error.
    match run(cmd) {
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => Ok(()),
        r => r,
    }
}

fn run(cmd: Cmd) -> Result<()> {
    accord_safwk::with_samgr(async |samgr: Samgr| -> Result<()> {
        let mut out = std::io::stdout().lock();
        match cmd {
            Cmd::Battery => {
                let b = samgr.get_proxy::<BatteryServiceProxy>(BATTERY_ID).await.with_context(|| format!("battery service (SA {BATTERY_ID})"))?;
                write!(out, "{}", crate::battery_text(&b.info().await?))?;
                return Ok(());
            }
            Cmd::Thermal => {
                let t = samgr.get_proxy::<ThermalManagerProxy>(THERMAL_ID).await.with_context(|| format!("thermal manager (SA {THERMAL_ID})"))?;
                write!(out, "{}", crate::thermal_text(&t.info().await?))?;
                return Ok(());
            }
            Cmd::Display(ref what) => {
                let d = samgr
                    .get_proxy::<crate::DisplayPowerMgrProxy>(crate::DISPLAY_POWER_ID)
                    .await
                    .with_context(|| format!("display power manager (SA {})", crate::DISPLAY_POWER_ID))?;
                let why = |e: CallError<PowerError>| match e {
                    CallError::Sa(e) => anyhow::anyhow!("{e}"),
                    CallError::Ipc(e) => anyhow::anyhow!("display power manager (SA {}): {e}", crate::DISPLAY_POWER_ID),
                };
                match what {
                    None => {}
                    Some(Brightness::Set(l)) => d.set_brightness(*l).await.map_err(why)?,
                    Some(Brightness::Override(l)) => d.override_brightness(*l).await.map_err(why)?,
                    Some(Brightness::Restore) => d.restore_brightness().await.map_err(why)?,
                }
                write!(out, "{}", crate::brightness_text(&d.brightness().await?))?;
                return Ok(());
            }
            _ => {}
        }
        // Shutdown callbacks have a few seconds each.
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.with_context(|| format!("power manager (SA {ID})"))?.with_timeout(Duration::from_secs(30));
        match cmd {
            Cmd::Dump => {
                write!(out, "{}", crate::power::dump_text(&pm.status().await?, &pm.shutdown_reason().await?))?;
                write!(out, "{}", crate::power::locks_text(&pm.locks().await?))?;
            }
            Cmd::SetMode(m) => {
                pm.set_mode(m).await.map_err(why)?;
                writeln!(out, "power mode set to {} ({})", m.code(), m.name())?;
            }
            Cmd::Wakeup => {
                pm.wakeup_device("power-shell").await.map_err(why)?;
                writeln!(out, "wakeup: display on")?;
            }
            Cmd::Suspend => {
                pm.suspend_device("power-shell").await.map_err(why)?;
                writeln!(out, "suspend: under way (power-shell dump says how it went)")?;
            }
            Cmd::Locks => write!(out, "{}", crate::power::locks_text(&pm.locks().await?))?,
            Cmd::Override(ms) => {
                pm.override_timeout(ms).await.map_err(why)?;
                writeln!(out, "display-off time overridden: {ms} ms")?;
            }
            Cmd::Restore => {
                pm.restore_timeout().await.map_err(why)?;
                writeln!(out, "display-off time restored to the mode's")?;
            }
            Cmd::Reason => {
                let r = pm.shutdown_reason().await?;
                if r.kind.is_empty() {
                    writeln!(out, "previous boot: unknown (did not end through the power manager)")?;
                } else {
                    writeln!(out, "previous boot: {} reason={:?} uid={} at {}", r.kind, r.reason, r.uid, utc(r.unix_ms))?;
                }
            }
            Cmd::Down { reboot, reason } => {
                // Said first: once init has it, this process is stopped
                // with the others.
                writeln!(out, "{}: running the shutdown callbacks, then asking init (reason {reason:?})", if reboot { "reboot" } else { "shutdown" })?;
                out.flush()?;
                if reboot {
                    pm.reboot(&reason).await.map_err(why)?;
                } else {
                    pm.shutdown(&reason).await.map_err(why)?;
                }
                writeln!(out, "{}: asked of init", if reboot { "reboot" } else { "shutdown" })?;
            }
            Cmd::Hold { kind, ms, name } => {
                let id = pm.lock(&name, kind, ms).await.map_err(why)?;
                writeln!(out, "holding running lock {id} ({}) for {ms} ms", kind.name())?;
                out.flush()?;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    () = pm.died() => anyhow::bail!("the power manager (SA {ID}) went away"),
                }
                pm.unlock(id).await.map_err(why)?;
                writeln!(out, "let go of running lock {id}")?;
            }
            Cmd::Watch => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                pm.subscribe(Listener::new(Printer(tx).into_remote())).await.map_err(why)?;
                let s = pm.status().await?;
                writeln!(out, "state {} display {} mode {}", s.state.name(), s.display.name(), s.mode.code())?;
                out.flush()?;
                loop {
                    tokio::select! {
                        seen = rx.recv() => {
                            let Some(seen) = seen else { break };
                            let lost = match &seen {
                                Seen::State(.., l) | Seen::Mode(_, l) | Seen::Lock(_, _, l) => *l,
                            };
                            if lost > 0 {
                                writeln!(out, "lost {lost}")?;
                            }
                            match seen {
                                Seen::State(s, d, _) => writeln!(out, "state {} display {}", s.name(), d.name())?,
                                Seen::Mode(m, _) => writeln!(out, "mode {} ({})", m.code(), m.name())?,
                                Seen::Lock(l, held, _) => writeln!(out, "lock {} {} {} {} pid {}", l.id, if held { "taken" } else { "released" }, l.kind.name(), l.name, l.pid)?,
                            }
                            out.flush()?;
                        }
                        () = pm.died() => anyhow::bail!("the power manager (SA {ID}) went away"),
                    }
                }
            }
            Cmd::Battery | Cmd::Thermal | Cmd::Display(_) => {}
        }
        out.flush()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_line_says_why() {
        assert!(parse(&["setmode", "604"]).err().unwrap().contains("600 normal"));
        assert!(parse(&["hold", "FOO", "1"]).err().unwrap().contains("BACKGROUND"));
        assert!(parse(&["hold", "SCREEN", "-5"]).err().unwrap().contains("milliseconds"));
        assert_eq!(parse(&["nonsense"]).err().unwrap(), "");
        assert!(matches!(parse(&["timeout", "-o", "-1"]), Ok(Cmd::Override(-1))));
        assert!(matches!(parse(&["display", "-s", "255"]), Ok(Cmd::Display(Some(Brightness::Set(255))))));
        assert!(matches!(parse(&["display", "-o", "0"]), Ok(Cmd::Display(Some(Brightness::Override(0))))));
        assert!(matches!(parse(&["display", "-r"]), Ok(Cmd::Display(Some(Brightness::Restore)))));
        assert!(parse(&["display", "-s", "256"]).err().unwrap().contains("0..=255"));
    }

    #[test]
    fn times_read_as_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_025_669_026), "2026-11-30 08:01:09 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
