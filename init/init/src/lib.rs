//! Accord's init: PID 1 of the standard system.
//!
//! Owns early boot (pseudo filesystems, console, modules), the
//! OpenHarmony-format configuration (`cfg`), jobs and their commands,
//! services and their restart policy, the parameter service (on the socket
//! `/dev/unix/socket/paramservice`), boot events and the boot trace, and
//! orderly shutdown. It must never panic or exit: every failure is logged
//! with the culprit's name and boot goes on.

pub mod cfg;
pub mod early;
pub mod kmod;
pub mod log;
pub mod restart;
pub mod runtime;
pub mod spawn;
pub mod trace;
pub mod ueventd;
pub mod users;
