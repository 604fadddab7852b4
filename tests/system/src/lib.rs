//! Whole-system tests of Accord that run without QEMU: the real init as
//! PID 1 in namespaces with samgr and `sa_main` (`tests/samgr_on_demand.rs`),
//! and 1,000 concurrent clients against the real samgr
//! (`tests/samgr_load.rs`). The crate has no code of its own; the binaries
//! under test are the workspace's, found by `accord_testkit::workspace_bin`.
