//! A complete system ability: `cargo run -p accord-ipc --example counter_sa`
//! publishes SA 9100 to the samgr at `SAMGR_SOCKET` (or the device's
//! socket); clients call it with `samgr::get::<CounterProxy>(9100)`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use accord_safwk::{Caller, SystemAbility};

#[derive(Default)]
struct Counter {
    total: AtomicU32,
}

struct CounterIface {
    sa: Arc<Counter>,
    caller: Caller,
}

#[zbus::interface(name = "org.example.Counter")]
impl CounterIface {
    /// Adds `n` to the shared total and returns it.
    fn add(&self, n: u32) -> u32 {
        self.sa.total.fetch_add(n, Ordering::Relaxed) + n
    }
    /// The uid samgr verified for this caller.
    fn caller_uid(&self) -> u32 {
        self.caller.uid()
    }
}

impl SystemAbility for Counter {
    type Interface = CounterIface;
    const PATH: &'static str = "/org/example/Counter";

    fn connect(self: &Arc<Self>, caller: Caller) -> CounterIface {
        CounterIface { sa: self.clone(), caller }
    }
    fn on_dump(&self, _args: &[String]) -> String {
        format!("total {}\n", self.total.load(Ordering::Relaxed))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    Ok(accord_safwk::run(9100, Counter::default()).await?)
}
