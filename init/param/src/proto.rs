//! The wire protocol between clients and init's parameter service.
//!
//! A stream Unix socket carries frames: a little-endian `u32` length, then
//! that many bytes of JSON. Each request gets one response, in order;
//! `Watch` additionally makes the server push `Changed` frames. Decoding
//! never panics: garbage, oversized or truncated input is a
//! [`ParamError::Protocol`].

use std::io::{Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ParamError;

/// Largest frame body accepted, in bytes.
pub const MAX_FRAME: usize = 64 * 1024;

/// Most bytes of items one `List`/`Services` reply carries: the rest
/// comes in further pages (`more`), so a reply always fits in
/// [`MAX_FRAME`] whatever the number of parameters or services.
pub const PAGE_BUDGET: usize = MAX_FRAME - 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Get {
        name: String,
    },
    Set {
        name: String,
        value: String,
    },
    /// Readable parameters whose name starts with `prefix`, in name
    /// order, from the first after `after` (a page: see
    /// [`Response::List`]).
    List {
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// Returns once `name` matches `pattern` (`*` globs), or `Timeout`.
    Wait {
        name: String,
        pattern: String,
        timeout_ms: u64,
    },
    /// Subscribes this connection to changes under `prefix`.
    Watch {
        prefix: String,
    },
    /// Writes `persist.*` parameters to disk now.
    Save,
    /// Services known to init (all, or one by name), from the `skip`th
    /// on (a page: see [`Response::Services`]).
    DumpServices {
        name: Option<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        skip: usize,
    },
    /// The service's resource counters (root only): `Response::Stats`.
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidName,
    ValueTooLong,
    InvalidValue,
    PermissionDenied,
    NotFound,
    ReadOnly,
    TypeMismatch,
    Timeout,
    Protocol,
    Internal,
    /// A bound was reached: connections, parameters, buffered input.
    ResourceLimit,
}

/// What init knows about one service (`begetctl dump_service`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub state: String,
    pub pid: Option<i32>,
    pub path: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub start_mode: String,
    pub critical: bool,
    pub ondemand: bool,
    pub once: bool,
    pub restarts: u32,
    pub sockets: Vec<String>,
    pub bootevents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Value {
        value: String,
    },
    /// One page of a `List`: `more` says there are entries after the
    /// last one (ask again with `after` = its name).
    List {
        entries: Vec<(String, String)>,
        #[serde(default)]
        more: bool,
    },
    Changed {
        name: String,
        value: String,
    },
    /// One page of a `DumpServices`: `more` says there are services
    /// after these (ask again with `skip` += their number).
    Services {
        services: Vec<ServiceInfo>,
        #[serde(default)]
        more: bool,
    },
    /// `(counter, value)` pairs, e.g. `("clients", 3)`.
    Stats {
        stats: Vec<(String, u64)>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The first items of `items` whose encoding fits in [`PAGE_BUDGET`]
/// bytes (at least one, so every page makes progress), and whether any
/// are left.
pub fn page<T: Serialize>(items: impl IntoIterator<Item = T>) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    let mut used = 0;
    for item in items {
        // +1: the comma between items.
        let n = serde_json::to_vec(&item).map(|v| v.len()).unwrap_or(0) + 1;
        if !out.is_empty() && used + n > PAGE_BUDGET {
            return (out, true);
        }
        used += n;
        out.push(item);
    }
    (out, false)
}

/// Serializes `msg` into one frame.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain types cannot fail.
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ParamError> {
    w.write_all(&encode_frame(msg))?;
    Ok(())
}

/// Reads one frame; `None` on a clean end of stream before a frame starts.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, ParamError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ParamError::Protocol("connection closed inside a frame header".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        // Skipped without being held (the stream stays in step: the next
        // frame is read whole), and refused.
        let skipped = std::io::copy(&mut r.take(n as u64), &mut std::io::sink())?;
        if skipped < n as u64 {
            return Err(ParamError::Protocol("connection closed inside a frame".into()));
        }
        return Err(ParamError::Protocol(format!("frame of {n} bytes exceeds the {MAX_FRAME}-byte limit (skipped)")));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ParamError::Protocol("connection closed inside a frame".into()),
        _ => e.into(),
    })?;
    decode(&body).map(Some)
}

/// Parses a frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ParamError> {
    serde_json::from_slice(body).map_err(|e| ParamError::Protocol(format!("malformed message: {e}")))
}

/// Incremental frame splitter for a non-blocking reader (init's loop).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame body, if one has arrived. An announced
    /// length above [`MAX_FRAME`] is an error (the stream cannot be resynced).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ParamError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let n = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if n > MAX_FRAME {
            return Err(ParamError::Protocol(format!("frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")));
        }
        if self.buf.len() < 4 + n {
            return Ok(None);
        }
        let body = self.buf[4..4 + n].to_vec();
        self.buf.drain(..4 + n);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_through_the_decoder() {
        let reqs = vec![
            Request::Get { name: "a.b".into() },
            Request::Set { name: "a".into(), value: "v".into() },
            Request::Wait { name: "x".into(), pattern: "*".into(), timeout_ms: 5 },
            Request::DumpServices { name: None, skip: 0 },
            Request::List { prefix: "a.".into(), after: Some("a.b".into()) },
            Request::Save,
        ];
        let mut d = FrameDecoder::new();
        for r in &reqs {
            let bytes = encode_frame(r);
            // Deliver byte by byte.
            for b in bytes {
                d.push(&[b]);
            }
        }
        for r in &reqs {
            let body = d.next_frame().unwrap().unwrap();
            assert_eq!(&decode::<Request>(&body).unwrap(), r);
        }
        assert!(d.next_frame().unwrap().is_none());
    }

    #[test]
    fn pages_fit_in_a_frame_and_always_move_forward() {
        let entries: Vec<(String, String)> = (0..5000).map(|i| (format!("a.b.{i:05}"), "\u{1}".repeat(90))).collect();
        let (first, more) = page(entries.iter().cloned());
        assert!(more && !first.is_empty() && first.len() < entries.len());
        let reply = encode_frame(&Response::List { entries: first, more });
        assert!(reply.len() - 4 <= MAX_FRAME, "{} bytes", reply.len());
        let (few, more) = page(entries[..3].iter().cloned());
        assert_eq!((few.len(), more), (3, false));
        // One item over the budget still goes alone: progress.
        let (one, more) = page(["x".repeat(PAGE_BUDGET * 2), "y".into()]);
        assert_eq!((one.len(), more), (1, true));
    }

    #[test]
    fn an_oversized_frame_is_skipped_and_the_next_one_read() {
        let mut bytes = ((MAX_FRAME + 10) as u32).to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_FRAME + 10));
        bytes.extend(encode_frame(&Response::Ok));
        let mut r = &bytes[..];
        let e = read_frame::<Response>(&mut r).unwrap_err().to_string();
        assert!(e.contains("exceeds"), "{e}");
        assert_eq!(read_frame::<Response>(&mut r).unwrap(), Some(Response::Ok));
    }

    #[test]
    fn blocking_reader_round_trip_and_errors() {
        let resp = Response::Error { kind: ErrorKind::NotFound, message: "parameter x not found".into() };
        let bytes = encode_frame(&resp);
        assert_eq!(read_frame::<Response>(&mut &bytes[..]).unwrap(), Some(resp));
        assert_eq!(read_frame::<Response>(&mut &b""[..]).unwrap(), None);
        assert!(read_frame::<Response>(&mut &b"\x01\x00"[..]).is_err());
        assert!(read_frame::<Response>(&mut &b"\x05\x00\x00\x00{"[..]).is_err());
        assert!(read_frame::<Response>(&mut &b"\xff\xff\xff\xff"[..]).is_err());
        assert!(read_frame::<Response>(&mut &b"\x02\x00\x00\x00{}"[..]).is_err());
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut d = FrameDecoder::new();
        d.push(&((MAX_FRAME as u32) + 1).to_le_bytes());
        assert!(d.next_frame().is_err());
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z]{1,8}(\\.[a-z0-9_]{1,8}){0,3}", ".{0,120}"]
    }

    /// Every request kind, with plausible and implausible fields.
    fn request_strategy() -> impl Strategy<Value = Request> {
        prop_oneof![
            name_strategy().prop_map(|name| Request::Get { name }),
            (name_strategy(), ".{0,130}").prop_map(|(name, value)| Request::Set { name, value }),
            (name_strategy(), proptest::option::of(name_strategy())).prop_map(|(prefix, after)| Request::List { prefix, after }),
            (name_strategy(), "[a-z*]{0,12}", any::<u64>()).prop_map(|(name, pattern, timeout_ms)| Request::Wait { name, pattern, timeout_ms }),
            name_strategy().prop_map(|prefix| Request::Watch { prefix }),
            Just(Request::Save),
            Just(Request::Stats),
            (proptest::option::of(name_strategy()), 0usize..4).prop_map(|(name, skip)| Request::DumpServices { name, skip }),
        ]
    }

    /// How a valid frame is damaged.
    #[derive(Debug, Clone)]
    enum Mutation {
        /// Flip bits of the body at (index, mask); the length stays right.
        FlipBody(Vec<(usize, u8)>),
        /// Cut the body to this many bytes and fix the length to match.
        TruncateBody(usize),
        /// Cut the frame (header included) short, length unchanged.
        TruncateFrame(usize),
        /// Announce another length: a small change (desync) or a huge one.
        AddLen(i64),
        SetLen(u32),
        /// Replace a body byte with one that JSON finds hard.
        Poke(usize, u8),
    }

    fn mutation_strategy() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            proptest::collection::vec((any::<usize>(), 1u8..), 1..4).prop_map(Mutation::FlipBody),
            any::<usize>().prop_map(Mutation::TruncateBody),
            any::<usize>().prop_map(Mutation::TruncateFrame),
            (-8i64..8).prop_map(Mutation::AddLen),
            prop_oneof![Just(u32::MAX), Just(MAX_FRAME as u32 + 1), Just(128 << 20), any::<u32>()].prop_map(Mutation::SetLen),
            (any::<usize>(), prop_oneof![Just(b'"'), Just(b'\\'), Just(b'{'), Just(b'}'), Just(0u8), Just(0xff)]).prop_map(|(i, b)| Mutation::Poke(i, b)),
        ]
    }

    fn mutate(frame: &[u8], m: &Mutation) -> Vec<u8> {
        let mut f = frame.to_vec();
        let body_len = f.len() - 4;
        let set_len = |f: &mut Vec<u8>, n: u32| f[..4].copy_from_slice(&n.to_le_bytes());
        match m {
            Mutation::FlipBody(flips) => {
                for (i, mask) in flips {
                    if body_len > 0 {
                        f[4 + i % body_len] ^= mask;
                    }
                }
            }
            Mutation::TruncateBody(n) => {
                let keep = if body_len == 0 { 0 } else { n % body_len };
                f.truncate(4 + keep);
                set_len(&mut f, keep as u32);
            }
            Mutation::TruncateFrame(n) => f.truncate(n % f.len()),
            Mutation::AddLen(d) => set_len(&mut f, (body_len as i64 + d).clamp(0, u32::MAX as i64) as u32),
            Mutation::SetLen(n) => set_len(&mut f, *n),
            Mutation::Poke(i, b) => {
                if body_len > 0 {
                    f[4 + i % body_len] = *b;
                }
            }
        }
        f
    }

    /// Feeds `bytes` in `chunk`-sized pieces, decoding what comes out, and
    /// checks the decoder's bounds. Returns the bodies that reached the
    /// JSON decoder.
    fn drive(bytes: &[u8], chunk: usize) -> usize {
        let mut d = FrameDecoder::new();
        let mut reached = 0;
        let mut pushed = 0;
        for c in bytes.chunks(chunk.max(1)) {
            d.push(c);
            pushed += c.len();
            loop {
                match d.next_frame() {
                    Ok(Some(body)) => {
                        assert!(body.len() <= MAX_FRAME);
                        reached += 1;
                        let _ = decode::<Request>(&body);
                    }
                    Ok(None) => break,
                    // The stream cannot be resynced: a server drops the client.
                    Err(_) => return reached,
                }
            }
            // Nothing is reserved for an announced length: the decoder holds
            // at most what was pushed.
            assert!(d.buffered() <= pushed);
        }
        reached
    }

    /// The mutations get past the length check most of the time (the old
    /// tests of random bytes almost never did), and a huge announced length
    /// is refused before anything is allocated for it.
    #[test]
    fn mutated_valid_frames_reach_the_json_decoder() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut total, mut reached) = (0, 0);
        for _ in 0..1000 {
            let req = request_strategy().new_tree(&mut runner).unwrap().current();
            let m = mutation_strategy().new_tree(&mut runner).unwrap().current();
            let bytes = mutate(&encode_frame(&req), &m);
            total += 1;
            reached += drive(&bytes, bytes.len()).min(1);
        }
        assert!(reached * 2 > total, "only {reached} of {total} mutated frames reached the JSON decoder");
        let mut d = FrameDecoder::new();
        d.push(&(128u32 << 20).to_le_bytes());
        d.push(b"{\"op\":\"save\"}");
        assert!(d.next_frame().is_err());
        assert_eq!(d.buffered(), 4 + 13, "nothing reserved for the announced 128 MiB");
        let huge = [&(128u32 << 20).to_le_bytes()[..], b"{}"].concat();
        assert!(read_frame::<Request>(&mut &huge[..]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn valid_frames_of_every_kind_round_trip(req in request_strategy(), chunk in 1usize..64) {
            let bytes = encode_frame(&req);
            let mut d = FrameDecoder::new();
            let mut got = None;
            for c in bytes.chunks(chunk) {
                d.push(c);
                if let Some(body) = d.next_frame().unwrap() {
                    got = Some(decode::<Request>(&body).unwrap());
                }
            }
            prop_assert_eq!(got, Some(req));
        }
    }

    proptest! {
        #[test]
        fn mutated_frames_never_panic(
            reqs in proptest::collection::vec((request_strategy(), mutation_strategy(), any::<bool>()), 1..8),
            chunk in 1usize..4096,
        ) {
            // A stream of valid and mutated frames, as a client would send.
            let bytes: Vec<u8> = reqs.iter().flat_map(|(r, m, damage)| if *damage { mutate(&encode_frame(r), m) } else { encode_frame(r) }).collect();
            drive(&bytes, chunk);
            let _ = read_frame::<Request>(&mut &bytes[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut d = FrameDecoder::new();
            for c in &chunks {
                d.push(c);
                while let Ok(Some(body)) = d.next_frame() {
                    let _ = decode::<Request>(&body);
                }
            }
            let all: Vec<u8> = chunks.concat();
            let _ = read_frame::<Request>(&mut &all[..]);
        }

        #[test]
        fn arbitrary_json_never_panics(s in ".{0,200}") {
            let _ = decode::<Request>(s.as_bytes());
            let _ = decode::<Response>(s.as_bytes());
        }
    }
}
