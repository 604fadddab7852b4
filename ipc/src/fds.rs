//! File descriptors on the fast path ([`crate::remote`]): how they cross
//! the socket (`SCM_RIGHTS`, close-on-exec on receipt) and how a message's
//! payload names them (an index into the message's descriptor list, as
//! D-Bus's `h` does).
//!
//! Encoding and decoding a payload that holds descriptors ([`Fd`], a
//! shared [`crate::blob::Blob`]) happens inside a context:
//! [`encode_with`] collects the descriptors the value names (each one a
//! duplicate, so the value keeps its own) and [`decode_with`] hands a
//! received message's descriptors to the values decoded from it (each
//! index taken once). Outside a context an [`Fd`] does not encode or decode
//! (the D-Bus face of a typed interface refuses it).
//!
//! Bounds: a message carries at most [`MAX_FDS`] descriptors, and a
//! connection holds at most [`MAX_PENDING_FDS`] received ones that no whole
//! message has claimed yet; past either the connection is closed and every
//! descriptor it received is closed with it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zbus::zvariant;

/// Most descriptors one message may carry (D-Bus allows 253 per message
/// by default; a remote object needs a handful).
pub const MAX_FDS: usize = 16;
/// Most received descriptors a connection holds before whole messages
/// claim them (two messages' worth).
pub const MAX_PENDING_FDS: usize = 2 * MAX_FDS;

/// Control-message space for [`MAX_PENDING_FDS`] descriptors (8-aligned).
const CMSG_WORDS: usize = 40;

/// One `recvmsg` into `buf`: received descriptors (close-on-exec) are
/// appended to `fds`. More descriptors than fit in one receive's control
/// buffer ([`MAX_PENDING_FDS`]; the kernel closes the rest) is an error
/// (`InvalidData`), after the ones that fit were put in `fds` (so dropping
/// `fds` closes them).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8], fds: &mut VecDeque<OwnedFd>) -> io::Result<usize> {
    // SAFETY: `buf` is `buf.len()` writable bytes.
    unsafe { recv_raw(fd, buf.as_mut_ptr(), buf.len(), fds) }
}

/// [`recv`] of at most `max` bytes appended to `buf` (read straight into
/// its spare capacity: nothing is zeroed or copied first). `buf` grows
/// only by what arrived.
pub(crate) fn recv_append(fd: RawFd, buf: &mut Vec<u8>, max: usize, fds: &mut VecDeque<OwnedFd>) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    // SAFETY: the spare capacity is at least `max` writable bytes; the
    // kernel initialises the first `n` it reports, and only those are
    // added to the length.
    unsafe {
        let n = recv_raw(fd, spare.as_mut_ptr().cast(), max, fds)?;
        buf.set_len(buf.len() + n);
        Ok(n)
    }
}

/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize, fds: &mut VecDeque<OwnedFd>) -> io::Result<usize> {
    use nix::libc;
    let mut cmsg = [0u64; CMSG_WORDS];
    let space = libc::CMSG_SPACE((MAX_PENDING_FDS * std::mem::size_of::<RawFd>()) as u32) as usize;
    debug_assert!(space <= std::mem::size_of_val(&cmsg));
    loop {
        let mut iov = libc::iovec { iov_base: ptr.cast(), iov_len: len };
        // msghdr is plain data; all-zero is a valid value.
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cmsg.as_mut_ptr().cast();
        mh.msg_controllen = space as _;
        // SAFETY: the iovec and control buffer outlive the call and their
        // lengths are theirs.
        let n = libc::recvmsg(fd, &mut mh, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // Walking the control buffer the kernel filled, with the libc
        // macros, within msg_controllen; SCM_RIGHTS data is an array of
        // descriptors that are now ours.
        {
            let mut c = libc::CMSG_FIRSTHDR(&mh);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                    for i in 0..len / std::mem::size_of::<RawFd>() {
                        let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        fds.push_back(OwnedFd::from_raw_fd(raw));
                    }
                }
                c = libc::CMSG_NXTHDR(&mh, c);
            }
        }
        if mh.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "more descriptors in one receive than a connection may hold"));
        }
        return Ok(n as usize);
    }
}

/// One `sendmsg` of (a prefix of) `data` with `fds` attached to its first
/// byte; returns how many bytes went.
pub(crate) fn send(fd: RawFd, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    if fds.is_empty() {
        // Plain send: no message header to copy in.
        loop {
            // SAFETY: `data` is `data.len()` readable bytes.
            let n = unsafe { nix::libc::send(fd, data.as_ptr().cast(), data.len(), nix::libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(fd, &[io::IoSlice::new(data)], cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

// --- the descriptors of the message being encoded or decoded ---------------

thread_local! {
    static ENCODING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static DECODING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps `why` (a value's refusal to decode) for [`take_error`], for
/// formats whose errors drop custom messages (postcard); returns it.
pub fn note_error(why: String) -> String {
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(why.clone()));
    why
}

/// The last refusal [`note_error`] kept on this thread.
pub fn take_error() -> Option<String> {
    LAST_ERROR.with(|l| l.borrow_mut().take())
}

/// Runs `f` (an encoder) collecting the descriptors the values it encodes
/// name; returns its result and them, in index order.
pub fn encode_with<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    struct Restore(Option<Vec<OwnedFd>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            ENCODING.with(|e| *e.borrow_mut() = prev);
        }
    }
    let prev = ENCODING.with(|e| e.borrow_mut().replace(Vec::new()));
    let restore = Restore(prev);
    let r = f();
    let fds = ENCODING.with(|e| e.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (r, fds)
}

/// Runs `f` (a decoder) with `fds` (a received message's) for the values
/// it decodes to take by index; descriptors no value took are closed.
pub fn decode_with<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Vec<Option<OwnedFd>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            DECODING.with(|d| *d.borrow_mut() = prev);
        }
    }
    let prev = DECODING.with(|d| d.borrow_mut().replace(fds.into_iter().map(Some).collect()));
    let _restore = Restore(prev);
    // A refusal noted by an earlier decode is not this one's.
    LAST_ERROR.with(|l| l.borrow_mut().take());
    f()
}

/// Whether an encoder runs inside [`encode_with`].
pub fn encoding() -> bool {
    ENCODING.with(|e| e.borrow().is_some())
}

/// Whether a decoder runs inside [`decode_with`].
pub fn decoding() -> bool {
    DECODING.with(|d| d.borrow().is_some())
}

/// Adds a duplicate of `fd` to the message being encoded; returns its
/// index.
pub fn attach(fd: BorrowedFd<'_>) -> Result<u32, String> {
    ENCODING.with(|e| {
        let mut e = e.borrow_mut();
        let Some(list) = e.as_mut() else { return Err("a descriptor travels only on the fast path (SendRequest), not on the D-Bus face".to_owned()) };
        if list.len() >= MAX_FDS {
            return Err(format!("more than {MAX_FDS} descriptors in one message"));
        }
        list.push(fd.try_clone_to_owned().map_err(|e| format!("duplicating a descriptor: {e}"))?);
        Ok((list.len() - 1) as u32)
    })
}

/// Takes descriptor `index` of the message being decoded.
pub fn take(index: u32) -> Result<OwnedFd, String> {
    DECODING.with(|d| {
        let mut d = d.borrow_mut();
        let Some(list) = d.as_mut() else { return Err("a descriptor travels only on the fast path (SendRequest), not on the D-Bus face".to_owned()) };
        let n = list.len();
        match list.get_mut(index as usize) {
            None => Err(format!("descriptor {index} named, but the message carries {n}")),
            Some(slot) => slot.take().ok_or_else(|| format!("descriptor {index} named twice")),
        }
    })
}

/// A file descriptor as an argument or result of a typed interface: on the
/// wire an index into the message's descriptors (see the module doc).
#[derive(Debug)]
pub struct Fd(pub OwnedFd);

impl Fd {
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd(fd)
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> OwnedFd {
        fd.0
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(attach(self.0.as_fd()).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fd, D::Error> {
        if !decoding() {
            return Err(serde::de::Error::custom("a descriptor travels only on the fast path (SendRequest), not on the D-Bus face"));
        }
        let i = u32::deserialize(d)?;
        take(i).map(Fd).map_err(|e| serde::de::Error::custom(note_error(e)))
    }
}

impl zvariant::Type for Fd {
    const SIGNATURE: &'static zvariant::Signature = &zvariant::Signature::Fd;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_cross_a_socket_in_order_and_close_on_exec() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        assert_eq!(send(a.as_raw_fd(), b"xy", &[r, w]).unwrap(), 2);
        let mut got = VecDeque::new();
        let mut buf = [0u8; 8];
        assert_eq!(recv(b.as_raw_fd(), &mut buf, &mut got).unwrap(), 2);
        assert_eq!(got.len(), 2);
        for fd in &got {
            let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert!(flags & nix::libc::FD_CLOEXEC != 0);
        }
        nix::unistd::write(&got[1], b"!").unwrap();
        let mut one = [0u8; 1];
        nix::unistd::read(got[0].as_raw_fd(), &mut one).unwrap();
        assert_eq!(&one, b"!");
    }

    #[test]
    fn more_than_a_receive_may_hold_is_an_error_and_the_rest_are_ours() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let many: Vec<OwnedFd> = (0..MAX_PENDING_FDS + 5).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect();
        send(a.as_raw_fd(), b"x", &many).unwrap();
        let mut got = VecDeque::new();
        let e = recv(b.as_raw_fd(), &mut [0u8; 8], &mut got).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(got.len() <= MAX_PENDING_FDS);
    }

    #[test]
    fn indices_name_descriptors_once_and_only_in_a_context() {
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let (idx, fds) = encode_with(|| (attach(fd.as_fd()).unwrap(), attach(fd.as_fd()).unwrap()));
        assert_eq!((idx, fds.len()), ((0, 1), 2));
        assert!(attach(fd.as_fd()).is_err(), "no context");
        decode_with(fds, || {
            assert!(take(1).is_ok());
            assert!(take(1).unwrap_err().contains("twice"));
            assert!(take(7).unwrap_err().contains("carries 2"));
        });
        assert!(!decoding());
        let (r, fds) = encode_with(|| (0..=MAX_FDS).map(|_| attach(fd.as_fd())).collect::<Vec<_>>());
        assert_eq!(fds.len(), MAX_FDS);
        assert!(r[MAX_FDS].as_ref().unwrap_err().contains("more than"));
    }
}
