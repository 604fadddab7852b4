//! The writer → hilogd packet: one `SOCK_SEQPACKET` packet per record.
//!
//! Layout (little-endian), [`HEADER`] bytes then the tag then the message:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version ([`VERSION`]) |
//! | 1 | 1 | log type ([`LogType`] number) |
//! | 2 | 1 | level ([`Level`] number) |
//! | 3 | 1 | tag length, ≤ [`MAX_TAG`] |
//! | 4 | 4 | domain |
//! | 8 | 4 | thread id (as the writer states it) |
//! | 12 | 4 | pid the record is for: honoured only from init (it relays its services' output); 0 otherwise |
//! | 16 | 4 | records this writer dropped since its last packet (its socket was full) |
//! | 20 | 8 | wall-clock time, ns since the epoch |
//!
//! The message is the rest of the packet, at most [`MAX_MSG`] bytes; bytes
//! that are not UTF-8 are replaced. The pid and uid the daemon keeps come
//! from the kernel (`SO_PEERCRED` of the connection), never from the packet,
//! except that init (pid 1, uid 0) may name the service it relays for.

use thiserror::Error;

use crate::{Level, LogType, MAX_MSG, MAX_TAG};

/// The packet format's version.
pub const VERSION: u8 = 1;
/// Bytes before the tag.
pub const HEADER: usize = 28;
/// Largest valid packet, in bytes.
pub const MAX_PACKET: usize = HEADER + MAX_TAG + MAX_MSG;

/// A decoded packet, borrowing its strings from the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input<'a> {
    pub ty: LogType,
    pub level: Level,
    pub domain: u32,
    pub tid: u32,
    pub for_pid: u32,
    pub dropped: u32,
    pub time_ns: u64,
    pub tag: std::borrow::Cow<'a, str>,
    pub msg: std::borrow::Cow<'a, str>,
}

/// Why a packet was refused (the daemon counts each as malformed).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("packet of {0} bytes is shorter than the {HEADER}-byte header")]
    Short(usize),
    #[error("packet version {0} is not {VERSION}")]
    Version(u8),
    #[error("log type {0} is unknown")]
    Type(u8),
    #[error("level {0} is unknown")]
    Level(u8),
    #[error("tag of {0} bytes is longer than {MAX_TAG}")]
    TagTooLong(usize),
    #[error("packet ends inside its tag")]
    TagCut,
    #[error("message of {0} bytes is longer than {MAX_MSG}")]
    MsgTooLong(usize),
}

/// The fields a writer sets; [`encode`] lays them out.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    pub ty: LogType,
    pub level: Level,
    pub domain: u32,
    pub tid: u32,
    pub for_pid: u32,
    pub dropped: u32,
    pub time_ns: u64,
    pub tag: &'a str,
    pub msg: &'a [u8],
}

impl<'a> Fields<'a> {
    /// A `core` INFO record with the given tag and message, every other
    /// field zero (the time too): what tests and benchmarks send.
    pub fn plain(tag: &'a str, msg: &'a [u8]) -> Fields<'a> {
        Fields { ty: LogType::Core, level: Level::Info, domain: 0, tid: 0, for_pid: 0, dropped: 0, time_ns: 0, tag, msg }
    }
}

/// Appends the packet for `f` to `out` (cleared first). A tag longer than
/// [`MAX_TAG`] or a message longer than [`MAX_MSG`] is cut (tags on a
/// character boundary).
pub fn encode(f: &Fields<'_>, out: &mut Vec<u8>) {
    out.clear();
    let tag = crate::truncate_utf8(f.tag, MAX_TAG);
    let msg = &f.msg[..f.msg.len().min(MAX_MSG)];
    out.push(VERSION);
    out.push(f.ty as u8);
    out.push(f.level as u8);
    out.push(tag.len() as u8);
    out.extend_from_slice(&f.domain.to_le_bytes());
    out.extend_from_slice(&f.tid.to_le_bytes());
    out.extend_from_slice(&f.for_pid.to_le_bytes());
    out.extend_from_slice(&f.dropped.to_le_bytes());
    out.extend_from_slice(&f.time_ns.to_le_bytes());
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(msg);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Decodes one packet. Never panics, whatever the bytes.
pub fn decode(b: &[u8]) -> Result<Input<'_>, WireError> {
    if b.len() < HEADER {
        return Err(WireError::Short(b.len()));
    }
    if b[0] != VERSION {
        return Err(WireError::Version(b[0]));
    }
    let ty = LogType::from_u8(b[1]).ok_or(WireError::Type(b[1]))?;
    let level = Level::from_u8(b[2]).ok_or(WireError::Level(b[2]))?;
    let tag_len = b[3] as usize;
    if tag_len > MAX_TAG {
        return Err(WireError::TagTooLong(tag_len));
    }
    if b.len() < HEADER + tag_len {
        return Err(WireError::TagCut);
    }
    let msg = &b[HEADER + tag_len..];
    if msg.len() > MAX_MSG {
        return Err(WireError::MsgTooLong(msg.len()));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[20..28]);
    // Trailing newlines are the writer's line ends, not content.
    let mut msg = msg;
    while let [rest @ .., b'\n' | b'\r'] = msg {
        msg = rest;
    }
    Ok(Input {
        ty,
        level,
        domain: u32_at(b, 4),
        tid: u32_at(b, 8),
        for_pid: u32_at(b, 12),
        dropped: u32_at(b, 16),
        time_ns: u64::from_le_bytes(t),
        tag: String::from_utf8_lossy(&b[HEADER..HEADER + tag_len]),
        msg: String::from_utf8_lossy(msg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields<'a>(tag: &'a str, msg: &'a [u8]) -> Fields<'a> {
        Fields { ty: LogType::Core, level: Level::Warn, domain: 0xD001234, tid: 7, for_pid: 0, dropped: 3, time_ns: 42, tag, msg }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&fields("storage", b"volume added\n"), &mut buf);
        let i = decode(&buf).unwrap();
        assert_eq!((i.ty, i.level, i.domain, i.tid, i.dropped, i.time_ns), (LogType::Core, Level::Warn, 0xD001234, 7, 3, 42));
        assert_eq!(i.tag, "storage");
        assert_eq!(i.msg, "volume added");
    }

    #[test]
    fn long_fields_are_cut_by_the_writer_and_refused_by_the_reader() {
        let mut buf = Vec::new();
        let tag = "t".repeat(40);
        let msg = vec![b'x'; MAX_MSG + 100];
        encode(&fields(&tag, &msg), &mut buf);
        assert_eq!(buf.len(), MAX_PACKET);
        let i = decode(&buf).unwrap();
        assert_eq!(i.tag.len(), MAX_TAG);
        assert_eq!(i.msg.len(), MAX_MSG);
        buf.push(b'y');
        assert_eq!(decode(&buf), Err(WireError::MsgTooLong(MAX_MSG + 1)));
        let mut bad = buf.clone();
        bad[3] = 33;
        assert_eq!(decode(&bad), Err(WireError::TagTooLong(33)));
        assert_eq!(decode(&buf[..10]), Err(WireError::Short(10)));
        bad = buf.clone();
        bad[0] = 9;
        assert_eq!(decode(&bad), Err(WireError::Version(9)));
        bad = buf.clone();
        bad[1] = 2;
        assert_eq!(decode(&bad), Err(WireError::Type(2)));
        bad = buf.clone();
        bad[2] = 9;
        assert_eq!(decode(&bad), Err(WireError::Level(9)));
        assert_eq!(decode(&buf[..HEADER + 5]), Err(WireError::TagCut));
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
        }

        #[test]
        fn what_is_encoded_decodes(tag in "[a-z_]{0,40}", msg in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = Vec::new();
            encode(&fields(&tag, &msg), &mut buf);
            let i = decode(&buf).unwrap();
            prop_assert_eq!(i.tag.as_ref(), crate::truncate_utf8(&tag, MAX_TAG));
        }
    }
}
