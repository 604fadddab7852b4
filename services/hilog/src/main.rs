//! `hilogd`, and `hilog` when run under that name. The image runs both as
//! links to `sa_main` (its processes share that binary's pages); this
//! binary is the same two programs for a host.
//!
//! hilogd takes its two listening sockets from init (`OHOS_SOCKET_hilogInput`
//! and `OHOS_SOCKET_hilogControl`, declared in its cfg), or binds them
//! itself with `--input PATH --control PATH` (and `--no-kmsg`) for a run
//! outside init.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.first().and_then(|a| a.rsplit('/').next()) == Some("hilog") {
        return accord_hilog::cli::main(args);
    }
    accord_hilog::daemon::main(args)
}
