//! What several of samgr's tests share: a system ability that does
//! nothing but answer, and its proxy.

// Each test binary uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;

use accord_safwk::{Caller, SystemAbility};

/// An SA whose interface answers `ping` with 7 and `groups` with the
/// caller's supplementary groups, as samgr told the host.
pub struct Nop;

pub struct NopIface {
    caller: Caller,
}

#[zbus::interface(name = "org.accord.test.Nop")]
impl NopIface {
    fn ping(&self) -> u32 {
        7
    }
    /// The caller's supplementary groups, as the SA was told them.
    fn groups(&self) -> Vec<u32> {
        self.caller.groups().to_vec()
    }
}

impl SystemAbility for Nop {
    type Interface = NopIface;
    const PATH: &'static str = "/org/accord/test/Nop";
    fn connect(self: &Arc<Self>, caller: Caller) -> NopIface {
        NopIface { caller }
    }
}

#[zbus::proxy(interface = "org.accord.test.Nop", default_service = "org.accord.test", default_path = "/org/accord/test/Nop")]
pub trait NopClient {
    fn ping(&self) -> zbus::Result<u32>;
    fn groups(&self) -> zbus::Result<Vec<u32>>;
}
