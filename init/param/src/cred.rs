//! Credentials of the peer of a Unix socket, from the kernel.

use std::os::fd::{AsRawFd, BorrowedFd};

/// The supplementary groups of the process at the other end of a connected
/// Unix socket, as the kernel recorded them when it connected
/// (`SO_PEERGROUPS`, Linux ≥ 4.13): never read from /proc after the fact,
/// so a peer that changes its groups or exits later cannot change the
/// answer. At most `NGROUPS_MAX` (65,536) groups.
///
/// Errors: the `getsockopt` error (`ENOTCONN` for an unconnected socket,
/// `ENOPROTOOPT` on a kernel without the option).
pub fn peer_groups(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has `len` writable bytes; the kernel writes at most that many.
        let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len) };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = std::io::Error::last_os_error();
        // ERANGE: `len` now holds the size needed.
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(e);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    #[test]
    fn a_socket_pair_reports_our_own_groups() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut want: Vec<u32> = vec![0; 65_536];
        // SAFETY: the buffer holds 65,536 gids.
        let n = unsafe { libc::getgroups(want.len() as i32, want.as_mut_ptr()) };
        assert!(n >= 0);
        want.truncate(n as usize);
        let mut got = super::peer_groups(a.as_fd()).unwrap();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}
