//! A socket peer's credentials, as the kernel recorded them.
//!
//! The parameter DAC (and samgr's policy) decide on who connected, never on
//! what a peer says about itself, and never on `/proc/<pid>` read after the
//! fact (the pid may have exited and been reused, or changed groups).

use std::os::fd::{AsRawFd, BorrowedFd};

/// The supplementary groups of the process that connected the Unix socket
/// `fd` (its peer), as they were when it called `connect(2)` (or made the
/// socket pair): the kernel's `SO_PEERGROUPS`. The primary gid is not
/// included (it is SO_PEERCRED's). At most `NGROUPS_MAX` (65,536) ids.
///
/// Errors: the `getsockopt(2)` error, e.g. `ENOTSOCK`, or `ENOPROTOOPT`
/// on a kernel before 4.13 or a socket that is not a connected Unix socket.
pub fn peer_groups(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes; the kernel writes at most that.
        let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len) };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        // ERANGE: `len` now says how much is needed (bounded by NGROUPS_MAX).
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn own_groups_through_a_socketpair() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut mine = vec![0 as libc::gid_t; 65_536];
        // SAFETY: the buffer holds 65,536 gids.
        let n = unsafe { libc::getgroups(mine.len() as libc::c_int, mine.as_mut_ptr()) };
        assert!(n >= 0);
        mine.truncate(n as usize);
        let mut got = peer_groups(a.as_fd()).unwrap();
        got.sort();
        mine.sort();
        assert_eq!(got, mine);
    }

    #[test]
    fn not_a_socket_is_an_error() {
        let f = std::fs::File::open("/").unwrap();
        assert!(peer_groups(f.as_fd()).is_err());
    }
}
