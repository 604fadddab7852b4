//! The demo SA (id 9001, outside OpenHarmony's well-known ids): a counter
//! that shows the SDK end to end: a typed interface (`#[interface]`),
//! per-caller identity, a permission-checked method with its own error,
//! byte payloads, a dump, and unloading when idle. Clients use
//! [`DemoProxy`]; stock D-Bus tools call `org.accord.Demo.AddOne`.

use std::sync::atomic::{AtomicU64, Ordering};

use accord_safwk::{interface, Caller};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub const ID: u32 = 9001;

/// What the demo SA answers.
#[interface(name = "org.accord.Demo")]
pub trait Demo {
    /// `x + 1` (wrapping); counts the call.
    fn add_one(&self, x: u32) -> u32;
    /// (uid, gid, pid) of the caller, as samgr verified it.
    fn whoami(&self, caller: &Caller) -> (u32, u32, i32);
    /// Returns `data`.
    fn echo(&self, data: ByteBuf) -> ByteBuf;
    /// Sets the call counter back to zero and returns what it was; needs
    /// ohos.permission.DEMO_RESET.
    fn reset(&self, caller: &Caller) -> Result<u64, DemoError>;
}

/// The demo SA's own errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DemoError {
    #[error("uid {0} lacks ohos.permission.DEMO_RESET")]
    PermissionDenied(u32),
}

/// The SA itself.
#[derive(Default)]
pub struct DemoSa {
    calls: AtomicU64,
}

impl Demo for DemoSa {
    fn add_one(&self, x: u32) -> u32 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        x.wrapping_add(1)
    }
    fn whoami(&self, caller: &Caller) -> (u32, u32, i32) {
        (caller.uid(), caller.gid(), caller.pid())
    }
    fn echo(&self, data: ByteBuf) -> ByteBuf {
        data
    }
    fn reset(&self, caller: &Caller) -> Result<u64, DemoError> {
        if !caller.has_permission("ohos.permission.DEMO_RESET") {
            return Err(DemoError::PermissionDenied(caller.uid()));
        }
        Ok(self.calls.swap(0, Ordering::Relaxed))
    }
    fn on_dump(&self, args: &[String]) -> String {
        let mut out = format!("demo SA {ID}: {} calls\n", self.calls.load(Ordering::Relaxed));
        if !args.is_empty() {
            out.push_str(&format!("args: {}\n", args.join(" ")));
        }
        out
    }
}
