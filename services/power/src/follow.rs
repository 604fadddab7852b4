//! Following the power manager's display state (the compositor's screen
//! power, the display power manager's backlight) or the battery (the
//! status bar) from another SA or process: subscribe through samgr as any client does, apply the
//! current state, then every change; when the power manager is not there
//! yet or goes away, subscribe again every [`RETRY`], so a restart of
//! either side heals by itself. Notifications lost (a listener that fell
//! behind) make it read the state again.

use std::path::PathBuf;
use std::time::Duration;

use accord_safwk::typed::Listener;
use accord_safwk::Samgr;
use tracing::{info, warn};

use crate::{
    BatteryInfo, BatteryListener, BatteryServiceProxy, DisplayState, LockInfo, PowerListener, PowerManagerProxy, PowerMode, PowerState, BATTERY_ID, ID,
};

/// How long to wait before subscribing again.
pub const RETRY: Duration = Duration::from_secs(2);

/// What the listener passes on: the display state, or "read it again".
enum Seen {
    Display(DisplayState),
    Lost,
}

struct Follower(tokio::sync::mpsc::UnboundedSender<Seen>);

impl PowerListener for Follower {
    fn on_state(&self, _state: PowerState, display: DisplayState, lost: u32) {
        if lost > 0 {
            let _ = self.0.send(Seen::Lost);
        }
        let _ = self.0.send(Seen::Display(display));
    }
    fn on_mode(&self, _mode: PowerMode, lost: u32) {
        if lost > 0 {
            let _ = self.0.send(Seen::Lost);
        }
    }
    fn on_lock(&self, _lock: LockInfo, _held: bool, lost: u32) {
        if lost > 0 {
            let _ = self.0.send(Seen::Lost);
        }
    }
}

/// Why following stopped.
enum Stop {
    /// `apply` said to stop: for good.
    Done,
    /// The service could not be reached, or refused: try again.
    Retry(String),
}

/// One SA followed: [`Followed::once`] subscribes and follows until the
/// SA goes (`Ok`), `apply` says to stop, or something fails.
trait Followed {
    /// The SA, for the log.
    const ID: u32;
    async fn once(&mut self, samgr: &Samgr) -> Result<(), Stop>;
}

/// Follows `f` for ever: again every [`RETRY`] after its SA went away or
/// could not be reached, until `apply` says to stop. `what` names the
/// follower in the log.
async fn follow_for_ever<F: Followed>(samgr: &std::path::Path, what: &str, mut f: F) {
    let mut said = false;
    loop {
        let result = match Samgr::connect(samgr).await {
            Ok(s) => f.once(&s).await,
            Err(e) => Err(Stop::Retry(format!("samgr: {e}"))),
        };
        match result {
            Ok(()) => {
                info!("{what}: SA {} went away; following again when it is back", F::ID);
                said = false;
            }
            Err(Stop::Done) => return,
            Err(Stop::Retry(e)) => {
                if !said {
                    warn!("{what} cannot follow SA {} yet ({e}); trying again every {RETRY:?}", F::ID);
                    said = true;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

struct DisplayFollower<A>(A);

impl<A: FnMut(DisplayState) -> bool + Send> Followed for DisplayFollower<A> {
    const ID: u32 = ID;

    async fn once(&mut self, samgr: &Samgr) -> Result<(), Stop> {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.map_err(|e| Stop::Retry(format!("SA {ID}: {e}")))?.with_timeout(Duration::from_secs(30));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        pm.subscribe(Listener::new(Follower(tx).into_remote())).await.map_err(|e| Stop::Retry(format!("subscribing to SA {ID}: {e}")))?;
        let mut apply = |display: DisplayState| if (self.0)(display) { Ok(()) } else { Err(Stop::Done) };
        apply(pm.status().await.map_err(|e| Stop::Retry(format!("SA {ID} status: {e}")))?.display)?;
        info!("following the power manager's display state (SA {ID})");
        loop {
            tokio::select! {
                seen = rx.recv() => match seen {
                    Some(Seen::Display(d)) => apply(d)?,
                    Some(Seen::Lost) => apply(pm.status().await.map_err(|e| Stop::Retry(format!("SA {ID} status: {e}")))?.display)?,
                    None => return Ok(()),
                },
                () = pm.died() => return Ok(()),
            }
        }
    }
}

/// Calls `apply` with the power manager's display state now and at every
/// change, for ever, until `apply` returns `false`. `what` names the
/// follower in the log.
pub async fn display_state(samgr: PathBuf, what: &str, apply: impl FnMut(DisplayState) -> bool + Send) {
    follow_for_ever(&samgr, what, DisplayFollower(apply)).await
}

/// What the battery listener passes on: the battery, read again when
/// notifications were lost.
struct BatteryWatcher(tokio::sync::mpsc::UnboundedSender<Option<BatteryInfo>>);

impl BatteryListener for BatteryWatcher {
    fn on_battery(&self, info: BatteryInfo, lost: u32) {
        let _ = self.0.send(if lost > 0 { None } else { Some(info) });
    }
}

struct BatteryFollower<A>(A);

impl<A: FnMut(BatteryInfo) -> bool + Send> Followed for BatteryFollower<A> {
    const ID: u32 = BATTERY_ID;

    async fn once(&mut self, samgr: &Samgr) -> Result<(), Stop> {
        let id = BATTERY_ID;
        let battery = samgr.get_proxy::<BatteryServiceProxy>(id).await.map_err(|e| Stop::Retry(format!("SA {id}: {e}")))?.with_timeout(Duration::from_secs(30));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        battery.subscribe(Listener::new(BatteryWatcher(tx).into_remote())).await.map_err(|e| Stop::Retry(format!("subscribing to SA {id}: {e}")))?;
        let mut apply = |info: BatteryInfo| if (self.0)(info) { Ok(()) } else { Err(Stop::Done) };
        apply(battery.info().await.map_err(|e| Stop::Retry(format!("SA {id} info: {e}")))?)?;
        info!("following the battery (SA {id})");
        loop {
            tokio::select! {
                seen = rx.recv() => match seen {
                    Some(Some(info)) => apply(info)?,
                    Some(None) => apply(battery.info().await.map_err(|e| Stop::Retry(format!("SA {id} info: {e}")))?)?,
                    None => return Ok(()),
                },
                () = battery.died() => return Ok(()),
            }
        }
    }
}

/// Calls `apply` with the battery (SA 3302) now and at every change (of
/// capacity, level, status, health or plug), for ever, until `apply`
/// returns `false`; again after the battery service restarts. `what`
/// names the follower in the log.
pub async fn battery(samgr: PathBuf, what: &str, apply: impl FnMut(BatteryInfo) -> bool + Send) {
    follow_for_ever(&samgr, what, BatteryFollower(apply)).await
}
