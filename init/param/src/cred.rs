//! A socket peer's credentials, as the kernel recorded them.
//!
//! The parameter DAC (and samgr's policy) decide on who connected, never on
//! what a peer says about itself, and never on `/proc/<pid>` read after the
//! fact (the pid may have exited and been reused, or changed groups). Where
//! a decision rests on the pid itself (the process of a service), the
//! pid's [`start_time`] taken at accept must still match: the connecting
//! process may have exited and its pid gone to another.

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

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`, in
/// clock ticks since boot), or None when there is no such process (or
/// `pid` is not positive).
///
/// With the pid it names one process: a pid is reused only by a process
/// started later. A server records it when it accepts a connection (for
/// SO_PEERCRED's pid) and, before trusting that pid again, checks that
/// the process holding it now is the one that connected
/// ([`same_process`]): the connecting process may have exited and its pid
/// gone to another.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may itself hold spaces and `)`, so the
/// fields are counted after the last `)`.
pub fn parse_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // After the name: field 3 (state) is the first, so 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether the process holding `pid` now is the one whose start time was
/// recorded as `recorded` (when the connection was accepted). A pid that
/// had no process then (`None`) or has none now is never the same.
pub fn same_process(pid: i32, recorded: Option<u64>) -> bool {
    match (recorded, start_time(pid)) {
        (Some(then), Some(now)) => then == now,
        _ => false,
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
    fn start_time_is_counted_after_the_last_parenthesis() {
        let line = b"4242 (a) b (c) d)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n";
        assert_eq!(parse_start_time(line), Some(987_654));
        let plain = b"1 (init) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 7 1 1 1\n";
        assert_eq!(parse_start_time(plain), Some(7));
        // A name that looks like the fields that follow it.
        let tricky = b"9 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20) R 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 1 1\n";
        assert_eq!(parse_start_time(tricky), Some(55));
    }

    #[test]
    fn a_truncated_or_garbled_stat_has_no_start_time() {
        assert_eq!(parse_start_time(b"12 (no close paren S 1 2 3"), None);
        assert_eq!(parse_start_time(b"12 (short) S 1 2 3\n"), None);
        assert_eq!(parse_start_time(b"12 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber 1\n"), None);
        assert_eq!(parse_start_time(b""), None);
    }

    #[test]
    fn own_start_time_and_same_process() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("this process has a start time");
        assert!(same_process(me, Some(t)));
        assert!(!same_process(me, Some(t + 1)), "another start time is another process");
        assert!(!same_process(me, None), "nothing recorded at accept: never the same");
        assert_eq!(start_time(0), None);
        assert_eq!(start_time(-5), None);
        // A pid with no process: pid_max is at most 2^22.
        assert_eq!(start_time(i32::MAX), None);
        assert!(!same_process(i32::MAX, Some(t)));
    }

    #[test]
    fn not_a_socket_is_an_error() {
        let f = std::fs::File::open("/").unwrap();
        assert!(peer_groups(f.as_fd()).is_err());
    }
}
