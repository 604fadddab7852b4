//! Suspend through `/sys/power` (OpenHarmony's `SuspendController` on
//! Linux): read `wakeup_count`, write the same number back (the kernel
//! refuses it if a wake-up event came in since: the suspend is abandoned,
//! not raced), then write the state. The write returns after the system
//! resumed, or fails with what the kernel said (`EBUSY`, a device that
//! refused to suspend, …): the caller reports it and does not retry in a
//! loop.
//!
//! The root is configurable so host tests run on a fake tree (where the
//! write of the state returns at once).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a suspend did not happen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SuspendError {
    /// A wake-up event came in between reading and writing `wakeup_count`.
    #[error("a wake-up event came in (wakeup_count moved on): abandoned")]
    WakeupPending,
    /// The kernel offers no suspend state (or not the configured one).
    #[error("{0}")]
    NotOffered(String),
    /// Reading or writing a file failed: the file and the error.
    #[error("{file}: {why}")]
    Io { file: String, why: String },
}

/// Where `/sys/power` is and which state to write.
#[derive(Debug, Clone)]
pub struct Suspender {
    root: PathBuf,
    wanted: String,
}

impl Suspender {
    /// `root` is `/sys/power` (or a fake tree); `wanted` is the config's
    /// `suspend_state`.
    pub fn new(root: impl Into<PathBuf>, wanted: &str) -> Suspender {
        Suspender { root: root.into(), wanted: wanted.into() }
    }

    /// The state that will be written: the configured one if the kernel
    /// lists it; for `auto`, `mem` if listed, else `freeze`.
    ///
    /// # Errors
    /// `state` unreadable, or it lists none of those.
    pub fn state(&self) -> Result<String, SuspendError> {
        let file = self.root.join("state");
        let offered = std::fs::read_to_string(&file).map_err(|e| SuspendError::Io { file: file.display().to_string(), why: e.to_string() })?;
        let offered: Vec<&str> = offered.split_whitespace().collect();
        let pick = match self.wanted.as_str() {
            "auto" => ["mem", "freeze"].into_iter().find(|s| offered.contains(s)),
            w => offered.iter().copied().find(|s| *s == w),
        };
        pick.map(str::to_owned).ok_or_else(|| SuspendError::NotOffered(format!("the kernel offers [{}], not {}", offered.join(" "), self.wanted)))
    }

    /// Suspends the system; returns (the state written) once it resumed.
    /// Blocks: run it on a thread of its own.
    ///
    /// # Errors
    /// See [`SuspendError`].
    pub fn suspend(&self) -> Result<String, SuspendError> {
        let state = self.state()?;
        let count_file = self.root.join("wakeup_count");
        let io = |f: &Path, e: std::io::Error| SuspendError::Io { file: f.display().to_string(), why: e.to_string() };
        // Reading blocks while wake-up events are being handled, and
        // gives the count of those handled so far.
        let count = std::fs::read_to_string(&count_file).map_err(|e| io(&count_file, e))?;
        let count = count.trim();
        match std::fs::OpenOptions::new().write(true).truncate(true).open(&count_file).and_then(|mut f| f.write_all(count.as_bytes())) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Err(SuspendError::WakeupPending),
            Err(e) => return Err(io(&count_file, e)),
        }
        let state_file = self.root.join("state");
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&state_file)
            .and_then(|mut f| f.write_all(state.as_bytes()))
            .map_err(|e| io(&state_file, e))?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(state: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("state"), state).unwrap();
        std::fs::write(d.path().join("wakeup_count"), "7\n").unwrap();
        d
    }

    #[test]
    fn auto_prefers_mem_then_freeze() {
        let d = tree("freeze mem disk\n");
        assert_eq!(Suspender::new(d.path(), "auto").state().unwrap(), "mem");
        let d = tree("freeze\n");
        assert_eq!(Suspender::new(d.path(), "auto").state().unwrap(), "freeze");
        let e = Suspender::new(d.path(), "mem").state().unwrap_err();
        assert_eq!(e.to_string(), "the kernel offers [freeze], not mem");
        let d = tree("\n");
        assert!(matches!(Suspender::new(d.path(), "auto").state(), Err(SuspendError::NotOffered(_))));
    }

    #[test]
    fn suspend_writes_the_count_back_then_the_state() {
        let d = tree("freeze\n");
        assert_eq!(Suspender::new(d.path(), "auto").suspend().unwrap(), "freeze");
        assert_eq!(std::fs::read_to_string(d.path().join("wakeup_count")).unwrap(), "7");
        assert_eq!(std::fs::read_to_string(d.path().join("state")).unwrap(), "freeze");
    }

    #[test]
    fn a_missing_tree_names_the_file() {
        let e = Suspender::new("/nonexistent/power", "auto").suspend().unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/power/state: "), "{e}");
    }
}
