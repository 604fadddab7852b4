//! `sa_main <profile.json>`: runs the system abilities of one SA profile
//! (OpenHarmony's host process). Rust has no `dlopen` of SAs in a static
//! image, so the SAs this binary can host are linked in and picked by id
//! from the profile; a service with its own binary calls
//! [`accord_safwk::run_profile`] the same way.
//!
//! init starts it (the profile's `process` is an `ondemand` service whose
//! path is `sa_main <profile>`) when samgr asks; it exits when it holds no
//! SA any more (all unloaded when idle).
//!
//! Run as `samgr` or `hidumper` (links in the image) it is those: one
//! static binary instead of two that are mostly the same zbus and tokio.

use std::path::Path;

use accord_sa_main::demo::{self, Demo};
use accord_safwk::profile::Profile;
use accord_safwk::{Maker, Published};
use anyhow::{Context, Result};

/// Every SA this binary can host.
fn makers() -> Vec<(u32, Maker)> {
    vec![(demo::ID, Box::new(|| Ok(Published::remote(demo::DemoSa::default().into_remote()))))]
}

fn main() -> Result<()> {
    // The image ships one binary for samgr, hidumper and sa_main (they
    // share nearly all their code): argv[0] picks.
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| matches!(a.rsplit('/').next(), Some("samgr" | "hidumper"))) {
        return accord_samgr::cli::main(args);
    }
    let path = args.get(1).context("usage: sa_main <profile.json>")?;
    tracing_subscriber::fmt().with_target(false).without_time().with_ansi(false).init();
    let profile = Profile::load(Path::new(path))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(accord_safwk::run_profile(&profile, makers())).with_context(|| format!("process {}", profile.process))?;
    tracing::info!("process {}: no SA left, exiting", profile.process);
    Ok(())
}
