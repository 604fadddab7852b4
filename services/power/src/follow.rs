//! Following the power manager's display state from another SA or
//! process (the compositor's screen power, the display power manager's
//! backlight): subscribe through samgr as any client does, apply the
//! current state, then every change; when the power manager is not there
//! yet or goes away, subscribe again every [`RETRY`], so a restart of
//! either side heals by itself. Notifications lost (a listener that fell
//! behind) make it read the state again.

use std::path::PathBuf;
use std::time::Duration;

use accord_safwk::typed::Listener;
use accord_safwk::Samgr;
use tracing::{info, warn};

use crate::{DisplayState, LockInfo, PowerListener, PowerManagerProxy, PowerMode, PowerState, ID};

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
    /// The power manager could not be reached, or refused: try again.
    Retry(String),
}

async fn follow_once(samgr: &std::path::Path, apply: &mut (dyn FnMut(DisplayState) -> bool + Send)) -> Result<(), Stop> {
    let samgr = Samgr::connect(samgr).await.map_err(|e| Stop::Retry(format!("samgr: {e}")))?;
    let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.map_err(|e| Stop::Retry(format!("SA {ID}: {e}")))?.with_timeout(Duration::from_secs(30));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    pm.subscribe(Listener::new(Follower(tx).into_remote())).await.map_err(|e| Stop::Retry(format!("subscribing to SA {ID}: {e}")))?;
    let mut apply = |display: DisplayState| if apply(display) { Ok(()) } else { Err(Stop::Done) };
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

/// Calls `apply` with the power manager's display state now and at every
/// change, for ever, until `apply` returns `false`. `what` names the
/// follower in the log.
pub async fn display_state(samgr: PathBuf, what: &str, mut apply: impl FnMut(DisplayState) -> bool + Send) {
    let mut said = false;
    loop {
        match follow_once(&samgr, &mut apply).await {
            Ok(()) => {
                info!("{what}: the power manager went away; following again when it is back");
                said = false;
            }
            Err(Stop::Done) => return,
            Err(Stop::Retry(e)) => {
                if !said {
                    warn!("{what} cannot follow the power manager yet ({e}); trying again every {RETRY:?}");
                    said = true;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
