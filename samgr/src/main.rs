//! The `samgr` binary: see [`accord_samgr::cli`].

fn main() -> anyhow::Result<()> {
    accord_samgr::cli::main(std::env::args().collect())
}
