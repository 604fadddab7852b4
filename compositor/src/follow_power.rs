//! Screen power follows the power manager (SA 3301): its display state
//! OFF turns the screen off, ON and DIM (no backlight to dim here) turn
//! it on. The compositor subscribes as any client does, through samgr;
//! when the power manager is not there yet or goes away, it subscribes
//! again every [`RETRY`], so a restart of either side heals by itself.

use std::time::Duration;

use accord_power::{DisplayState, LockInfo, PowerListener, PowerManagerProxy, PowerMode, PowerState, ID};
use accord_safwk::typed::Listener;
use accord_safwk::Samgr;
use tracing::{info, warn};

use crate::{ScreenPower, ScreenPowerSender};

/// How long to wait before subscribing again.
pub const RETRY: Duration = Duration::from_secs(2);

/// What the listener passes on: the display state, or "read it again"
/// (notifications were lost).
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

fn screen_for(display: DisplayState) -> ScreenPower {
    match display {
        DisplayState::Off | DisplayState::Suspend => ScreenPower::Off,
        DisplayState::On | DisplayState::Dim => ScreenPower::On,
    }
}

/// Why following stopped.
enum Stop {
    /// The compositor is gone: stop for good.
    Gone,
    /// The power manager could not be reached, or refused: try again.
    Retry(String),
}

/// Subscribes, applies the current state, then every change until the
/// power manager goes away (`Ok`) or following must stop.
async fn follow_once(screen: &ScreenPowerSender) -> Result<(), Stop> {
    let samgr = Samgr::connect(&accord_safwk::samgr_socket()).await.map_err(|e| Stop::Retry(format!("samgr: {e}")))?;
    let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.map_err(|e| Stop::Retry(format!("SA {ID}: {e}")))?.with_timeout(Duration::from_secs(30));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    pm.subscribe(Listener::new(Follower(tx).into_remote())).await.map_err(|e| Stop::Retry(format!("subscribing to SA {ID}: {e}")))?;
    let apply = |display: DisplayState| screen.send(screen_for(display)).map_err(|_| Stop::Gone);
    apply(pm.status().await.map_err(|e| Stop::Retry(format!("SA {ID} status: {e}")))?.display)?;
    info!("screen power follows the power manager (SA {ID})");
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

/// Starts a thread that keeps the screen's power in step with the power
/// manager until the compositor (the receiving end of `screen`) is gone.
///
/// # Errors
/// The thread could not be started.
pub fn spawn(screen: ScreenPowerSender) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("follow-power".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                warn!("screen power will not follow the power manager: no runtime: {e}");
                return;
            }
        };
        rt.block_on(async move {
            let mut said = false;
            loop {
                match follow_once(&screen).await {
                    Ok(()) => {
                        info!("the power manager went away: the screen stays as it is until it is back");
                        said = false;
                    }
                    Err(Stop::Gone) => return,
                    Err(Stop::Retry(e)) => {
                        if !said {
                            warn!("screen power cannot follow the power manager yet ({e}); trying again every {RETRY:?}");
                            said = true;
                        }
                    }
                }
                tokio::time::sleep(RETRY).await;
            }
        });
    })
}
