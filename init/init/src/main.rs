//! The `init` binary: PID 1; run under the name `ueventd` (a link), the
//! device-permission daemon of [`accord_init::ueventd`].

use accord_init::runtime::{Init, Paths};
use tracing::{error, info};

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name().is_some_and(|n| n == "ueventd") {
        std::process::exit(accord_init::ueventd::main());
    }
    if std::process::id() != 1 {
        eprintln!("init: must run as PID 1 (this is pid {}); use `begetctl` to talk to the running init", std::process::id());
        std::process::exit(1);
    }
    let report = accord_init::early::setup();
    accord_init::log::init();
    info!("accord init {} starting", env!("CARGO_PKG_VERSION"));
    accord_init::early::log_report(&report);
    let paths = Paths::default();
    // Modules first: probing devices takes longest, and runs in parallel.
    let mut loaders = accord_init::runtime::spawn_module_loaders(&paths.modules_load_dir);
    loop {
        match Init::new(paths.clone()) {
            Ok(mut init) => {
                init.adopt_module_loaders(std::mem::take(&mut loaders));
                init.run();
            }
            Err(e) => {
                // Only a kernel without epoll/signalfd gets here; PID 1
                // must not exit, so keep trying slowly.
                error!("cannot set up the event loop: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
        }
    }
}
