//! systemui's link to the system abilities, on a thread of its own with a
//! tokio runtime (the Wayland side stays a plain `poll` loop): it follows
//! the battery (SA 3302) and carries out the power menu's choices through
//! the power manager (SA 3301), both through samgr like any client. What
//! it learns is left in [`Services`] and announced by a byte on a pipe
//! the Wayland loop polls beside the compositor's socket.

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use accord_power::{BatteryInfo, PowerManagerProxy};
use tracing::{info, warn};

/// What the power menu offers (OpenHarmony's power dialog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// The screen off and the system to sleep (`suspend_device`).
    Suspend,
    /// Restart (`reboot`).
    Reboot,
    /// Power off (`shutdown`).
    Shutdown,
}

/// The reason the power manager records for the menu's reboots and
/// shutdowns (`power-shell reason` after the next boot).
pub const REASON: &str = "power menu";

/// How long a power manager call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The system abilities as the status bar sees them.
#[derive(Debug)]
pub struct Services {
    battery: Arc<Mutex<Option<BatteryInfo>>>,
    wake: OwnedFd,
    actions: tokio::sync::mpsc::UnboundedSender<PowerAction>,
}

impl Services {
    /// Starts the thread: the battery followed from now on (again after
    /// the battery service or samgr restarts), actions carried out as
    /// they are asked.
    pub fn start() -> std::io::Result<Services> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both are new descriptors of ours, each owned once.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let battery = Arc::new(Mutex::new(None));
        let (actions, mut asked) = tokio::sync::mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let seen = battery.clone();
        std::thread::Builder::new().name("samgr-client".into()).spawn(move || {
            let wake = move || {
                // A full pipe already says "look".
                // SAFETY: a one-byte write from a valid buffer.
                let _ = unsafe { libc::write(write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
            };
            rt.block_on(async move {
                let follow = accord_power::follow::battery(accord_safwk::samgr_socket(), "the status bar", |info| {
                    if let Ok(mut b) = seen.lock() {
                        *b = Some(info);
                    }
                    wake();
                    true
                });
                let act = async {
                    while let Some(action) = asked.recv().await {
                        if let Err(e) = carry_out(action).await {
                            warn!(?action, "the power menu's choice was not carried out: {e}");
                        }
                    }
                };
                tokio::join!(follow, act);
            });
        })?;
        Ok(Services { battery, wake: read, actions })
    }

    /// The descriptor that becomes readable when something changed.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the wake-up pipe (after it polled readable).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a valid buffer of that size; non-blocking.
        while unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// The battery as last reported (`None` before the battery service
    /// answered).
    pub fn battery(&self) -> Option<BatteryInfo> {
        self.battery.lock().ok().and_then(|b| b.clone())
    }

    /// Asks for `action` (carried out on the services' thread; a failure
    /// is logged).
    pub fn ask(&self, action: PowerAction) {
        info!(?action, "power menu");
        if self.actions.send(action).is_err() {
            warn!(?action, "the services' thread is gone: not carried out");
        }
    }
}

async fn carry_out(action: PowerAction) -> Result<(), String> {
    let samgr = accord_safwk::Samgr::connect(&accord_safwk::samgr_socket()).await.map_err(|e| format!("samgr: {e}"))?;
    let id = accord_power::ID;
    let pm = samgr.get_proxy::<PowerManagerProxy>(id).await.map_err(|e| format!("SA {id}: {e}"))?.with_timeout(CALL_TIMEOUT);
    let result = match action {
        PowerAction::Suspend => pm.suspend_device(REASON).await,
        PowerAction::Reboot => pm.reboot(REASON).await,
        PowerAction::Shutdown => pm.shutdown(REASON).await,
    };
    result.map_err(|e| format!("SA {id}: {e}"))
}
