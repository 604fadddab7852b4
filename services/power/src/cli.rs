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

const USAGE: &str = "usage: power-shell dump | setmode 600|601|602|603 | wakeup | suspend | lock | timeout -o MS | timeout -r | reason | reboot [REASON] | shutdown [REASON] | hold TYPE MS [NAME] | watch | battery | thermal";

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
    Down { reboot: bool, reason: String },
    Hold { kind: LockType, ms: u64, name: String },
    Watch,
    Battery,
    Thermal,
}

fn parse(rest: &[&str]) -> Option<Cmd> {
    Some(match *rest {
        ["dump"] | ["-a"] => Cmd::Dump,
        ["setmode", m] => Cmd::SetMode(PowerMode::from_code(m.parse().ok()?)?),
        ["wakeup"] => Cmd::Wakeup,
        ["suspend"] => Cmd::Suspend,
        ["lock"] => Cmd::Locks,
        ["timeout", "-o", ms] => Cmd::Override(ms.parse().ok()?),
        ["timeout", "-r"] => Cmd::Restore,
        ["reason"] => Cmd::Reason,
        ["reboot"] => Cmd::Down { reboot: true, reason: "power-shell".into() },
        ["shutdown"] => Cmd::Down { reboot: false, reason: "power-shell".into() },
        ["reboot", r] => Cmd::Down { reboot: true, reason: r.into() },
        ["shutdown", r] => Cmd::Down { reboot: false, reason: r.into() },
        ["hold", t, ms] => Cmd::Hold { kind: LockType::parse(t)?, ms: ms.parse().ok()?, name: "power-shell".into() },
        ["hold", t, ms, n] => Cmd::Hold { kind: LockType::parse(t)?, ms: ms.parse().ok()?, name: n.into() },
        ["watch"] => Cmd::Watch,
        ["battery"] => Cmd::Battery,
        ["thermal"] => Cmd::Thermal,
        _ => return None,
    })
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
    let Some(cmd) = parse(&rest) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let socket = accord_safwk::samgr_socket();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let samgr = Samgr::connect(&socket).await.with_context(|| format!("cannot reach samgr at {}", socket.display()))?;
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
                    writeln!(out, "previous boot: {} reason={} uid={} at={}", r.kind, r.reason, r.uid, r.unix_ms)?;
                }
            }
            Cmd::Down { reboot, reason } => {
                if reboot {
                    pm.reboot(&reason).await.map_err(why)?;
                } else {
                    pm.shutdown(&reason).await.map_err(why)?;
                }
                writeln!(out, "{}: asked of init (reason {reason})", if reboot { "reboot" } else { "shutdown" })?;
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
            Cmd::Battery | Cmd::Thermal => {}
        }
        out.flush()?;
        Ok(())
    })
}
