//! A size limit on incoming D-Bus messages, checked on the fixed header
//! before the message is read (zbus allocates a message's whole announced
//! length, up to D-Bus's 128 MiB, as soon as it has read the 16-byte
//! header: one such header must not cost 128 MiB of a server's memory).
//!
//! [`Limited`] is the server end of a Unix stream for zbus: it passes
//! bytes and descriptors through, follows the SASL lines up to `BEGIN`,
//! then every message header, and fails the read that completes a header
//! announcing more than its limit. zbus then closes the connection.

use std::io;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use zbus::connection::socket::{ReadHalf, Socket, Split};

/// Longest SASL line accepted before `BEGIN` (the D-Bus reference
/// implementation's limit is 16 KiB for the whole handshake).
pub const MAX_AUTH_LINE: usize = 16 << 10;

/// The server end of a stream whose incoming messages are at most `max`
/// bytes (header, padding and body).
#[derive(Debug)]
pub struct Limited {
    stream: UnixStream,
    max: usize,
}

impl Limited {
    pub fn new(stream: UnixStream, max: usize) -> Limited {
        Limited { stream, max }
    }
}

impl Socket for Limited {
    type ReadHalf = LimitedRead;
    type WriteHalf = OwnedWriteHalf;
    fn split(self) -> Split<LimitedRead, OwnedWriteHalf> {
        let (r, w) = self.stream.into_split();
        Split::new(LimitedRead { inner: r, framing: Framing::new(self.max) }, w)
    }
}

/// Where the stream is.
#[derive(Debug)]
enum Phase {
    /// Before the credentials byte.
    Start,
    /// In the SASL lines; the current line so far.
    Auth(Vec<u8>),
    /// Messages: the header bytes so far, or the bytes left of a message.
    Header(usize),
    Rest(usize),
}

/// Follows the byte stream a server reads from a client.
#[derive(Debug)]
pub struct Framing {
    phase: Phase,
    header: [u8; 16],
    max: usize,
}

impl Framing {
    pub fn new(max: usize) -> Framing {
        Framing { phase: Phase::Start, header: [0; 16], max }
    }

    /// Before `BEGIN` (no message may have started yet).
    pub fn in_handshake(&self) -> bool {
        matches!(self.phase, Phase::Start | Phase::Auth(_))
    }

    /// Takes in the next bytes the client sent; an error when they break
    /// the limit (or are not D-Bus).
    pub fn feed(&mut self, mut b: &[u8]) -> io::Result<()> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        while !b.is_empty() {
            match &mut self.phase {
                Phase::Start => {
                    if b[0] != 0 {
                        return Err(bad(format!("the handshake starts with byte {:#04x}, not NUL", b[0])));
                    }
                    b = &b[1..];
                    self.phase = Phase::Auth(Vec::new());
                }
                Phase::Auth(line) => {
                    let Some(i) = b.iter().position(|c| *c == b'\n') else {
                        line.extend_from_slice(b);
                        if line.len() > MAX_AUTH_LINE {
                            return Err(bad(format!("handshake line above {MAX_AUTH_LINE} bytes")));
                        }
                        return Ok(());
                    };
                    line.extend_from_slice(&b[..i]);
                    b = &b[i + 1..];
                    if line.len() > MAX_AUTH_LINE {
                        return Err(bad(format!("handshake line above {MAX_AUTH_LINE} bytes")));
                    }
                    // Lines end in CR LF (a bare LF also trips zbus 5's
                    // handshake parser into a panic).
                    let Some(text) = line.strip_suffix(b"\r") else {
                        return Err(bad("a handshake line ends in LF without CR".into()));
                    };
                    if text == b"BEGIN" {
                        self.phase = Phase::Header(0);
                    } else {
                        line.clear();
                    }
                }
                Phase::Header(have) => {
                    let n = (16 - *have).min(b.len());
                    self.header[*have..*have + n].copy_from_slice(&b[..n]);
                    *have += n;
                    b = &b[n..];
                    if *have == 16 {
                        let total = announced(&self.header).ok_or_else(|| bad("not a D-Bus message header".into()))?;
                        if total > self.max {
                            return Err(bad(format!("a message of {total} bytes is above the {}-byte limit", self.max)));
                        }
                        self.phase = Phase::Rest(total - 16);
                    }
                }
                Phase::Rest(left) => {
                    let n = (*left).min(b.len());
                    *left -= n;
                    b = &b[n..];
                    if *left == 0 {
                        self.phase = Phase::Header(0);
                    }
                }
            }
        }
        if let Phase::Rest(0) = self.phase {
            self.phase = Phase::Header(0);
        }
        Ok(())
    }
}

/// The whole length a D-Bus fixed header announces (saturating; `None`
/// for an unknown byte order).
pub fn announced(h: &[u8; 16]) -> Option<usize> {
    let u = |at: usize| {
        let b = [h[at], h[at + 1], h[at + 2], h[at + 3]];
        match h[0] {
            b'l' => Some(u32::from_le_bytes(b) as usize),
            b'B' => Some(u32::from_be_bytes(b) as usize),
            _ => None,
        }
    };
    let (body, fields) = (u(4)?, u(12)?);
    Some((16usize.saturating_add(fields)).div_ceil(8).saturating_mul(8).saturating_add(body))
}

/// The read half of [`Limited`].
#[derive(Debug)]
pub struct LimitedRead {
    inner: OwnedReadHalf,
    framing: Framing,
}

#[async_trait::async_trait]
impl ReadHalf for LimitedRead {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
        let (n, fds) = self.inner.recvmsg(buf).await?;
        if !fds.is_empty() && self.framing.in_handshake() {
            // D-Bus passes descriptors only with messages, after BEGIN;
            // zbus would keep these until the handshake ends. Closed here.
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} descriptors sent during the handshake", fds.len())));
        }
        self.framing.feed(&buf[..n])?;
        Ok((n, fds))
    }

    fn can_pass_unix_fd(&self) -> bool {
        true
    }

    async fn peer_credentials(&mut self) -> io::Result<zbus::fdo::ConnectionCredentials> {
        self.inner.peer_credentials().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(body: u32, fields: u32) -> Vec<u8> {
        let mut h = vec![b'l', 1, 0, 1];
        h.extend_from_slice(&body.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&fields.to_le_bytes());
        h
    }

    #[test]
    fn a_header_above_the_limit_fails_the_read_that_completes_it() {
        let mut f = Framing::new(1024);
        f.feed(b"\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n").unwrap();
        // One message (16-byte header, 8 bytes of fields, 100 of body), in pieces.
        let mut m = header(100, 8);
        m.extend_from_slice(&[0; 8 + 100]);
        for c in m.chunks(7) {
            f.feed(c).unwrap();
        }
        let big = header(128 << 20, 0);
        f.feed(&big[..10]).unwrap();
        let e = f.feed(&big[10..]).unwrap_err();
        assert!(e.to_string().contains("134217744 bytes is above the 1024-byte limit"), "{e}");
    }

    #[test]
    fn begin_and_the_first_messages_in_one_read() {
        let mut f = Framing::new(64);
        let mut b = b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n".to_vec();
        b.extend(header(8, 0));
        b.extend([0; 8]);
        b.extend(header(4096, 0));
        assert!(f.feed(&b).is_err());
        assert!(Framing::new(64).feed(&[&b"\0"[..], &[b'A'; MAX_AUTH_LINE + 1]].concat()).is_err(), "endless handshake line");
    }

    #[test]
    fn handshakes_zbus_would_choke_on_are_refused() {
        assert!(Framing::new(64).feed(b"\n").is_err(), "no NUL first");
        assert!(Framing::new(64).feed(b"\0\n").is_err(), "a bare LF");
        assert!(Framing::new(64).feed(b"\0AUTH EXTERNAL 30\n").is_err(), "a line without CR");
        let mut f = Framing::new(64);
        f.feed(b"\0AUTH EXTERNAL 30\r\n").unwrap();
        assert!(f.in_handshake());
        f.feed(b"BEGIN\r\n").unwrap();
        assert!(!f.in_handshake());
    }

    /// Descriptors sent before `BEGIN` fail the read that brings them (and
    /// are closed with it), so zbus never holds them.
    #[tokio::test(flavor = "current_thread")]
    async fn descriptors_during_the_handshake_fail_the_read() {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;
        use zbus::connection::socket::Socket;
        let (a, b) = UnixStream::pair().unwrap();
        let b = b.into_std().unwrap();
        let raw = b.as_raw_fd();
        let fds = [raw; 8];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(raw, &[IoSlice::new(b"\0")], &cmsg, nix::sys::socket::MsgFlags::empty(), None).unwrap();
        let (mut read, _write) = Limited::new(a, 1024).split().take();
        let mut buf = [0u8; 64];
        let e = zbus::connection::socket::ReadHalf::recvmsg(&mut read, &mut buf).await.unwrap_err();
        assert!(e.to_string().contains("8 descriptors sent during the handshake"), "{e}");
    }

    proptest::proptest! {
        /// Any split of a valid stream passes; the verdict never depends on
        /// how the bytes were cut.
        #[test]
        fn splits_do_not_matter(sizes in proptest::collection::vec(0u32..300, 1..6), cuts in proptest::collection::vec(1usize..40, 1..30)) {
            let mut s = b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n".to_vec();
            for n in &sizes {
                s.extend(header(*n, 0));
                s.extend(vec![0; *n as usize]);
            }
            let whole = Framing::new(200).feed(&s).is_ok();
            proptest::prop_assert_eq!(whole, sizes.iter().all(|n| 16 + *n as usize <= 200));
            let mut f = Framing::new(200);
            let mut rest = &s[..];
            let mut ok = true;
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let n = (*c).min(rest.len());
                if f.feed(&rest[..n]).is_err() { ok = false; break; }
                rest = &rest[n..];
            }
            proptest::prop_assert_eq!(ok, whole);
        }
    }
}
