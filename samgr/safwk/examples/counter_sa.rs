//! A complete system ability and its client. `counter_sa` publishes SA
//! 9100 to samgr (at `SAMGR_SOCKET`, or the device's socket);
//! `counter_sa add N` calls it through samgr and prints the new total.

use std::sync::atomic::{AtomicU32, Ordering};

use accord_safwk::{interface, Caller};

#[interface(name = "org.example.Counter")]
pub trait Counter {
    /// Adds `n` to the shared total and returns it.
    fn add(&self, n: u32) -> u32;
    /// The uid samgr verified for the caller.
    fn caller_uid(&self, caller: &Caller) -> u32;
}

#[derive(Default)]
struct Total(AtomicU32);

impl Counter for Total {
    fn add(&self, n: u32) -> u32 {
        self.0.fetch_add(n, Ordering::Relaxed) + n
    }
    fn caller_uid(&self, caller: &Caller) -> u32 {
        caller.uid()
    }
    fn on_dump(&self, _args: &[String]) -> String {
        format!("total {}\n", self.0.load(Ordering::Relaxed))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if let Some(n) = std::env::args().nth(2) {
        let counter = accord_safwk::get_proxy::<CounterProxy>(9100).await?;
        println!("{}", counter.add(n.parse()?).await?);
        return Ok(());
    }
    Ok(accord_safwk::run_remote(9100, Total::default().into_remote()).await?)
}
