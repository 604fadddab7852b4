//! The fast call path: OpenHarmony's remote-object model
//! (`SendRequest(code, data) → reply`) on the D-Bus wire, without zbus's
//! per-message machinery.
//!
//! A [`Handler`] (the SA framework binds an SA's `RemoteObject` and the
//! caller samgr verified into one) is served by a thread of its own per
//! client connection (binder's model: the request wakes the thread
//! that answers it), with blocking reads of whole D-Bus messages into one
//! buffer; it answers each `org.accord.RemoteObject.SendRequest(u code, ay
//! data) → ay` (and `Peer.Ping`, `Introspectable.Introspect`) and writes
//! all the replies of one read back in one write. The price is one thread
//! (a few pages of memory) per client connection. [`RemoteProxy`] is its client:
//! the task that sends a request reads the replies itself when no other
//! task is reading, so a lone caller pays no task hand-off, and many
//! callers pipeline their requests on one connection.
//!
//! The wire is plain D-Bus (little-endian, version 1, SASL EXTERNAL), so
//! `dbus-send --peer=... org.accord.RemoteObject.SendRequest uint32:1
//! array:byte:1,2` works against a socket served this way.
//!
//! File descriptors pass both ways as D-Bus passes them: the handshake
//! negotiates them (`NEGOTIATE_UNIX_FD`), they cross with `SCM_RIGHTS`
//! (received close-on-exec), and each message takes as many of the
//! received ones, in order, as its `UNIX_FDS` header field says
//! ([`RemoteProxy::send_request_fds`], [`Handler::on_request_fds`]). The
//! payload names them by index ([`crate::fds`]). Bounds: at most
//! [`crate::fds::MAX_FDS`] per message and [`crate::fds::MAX_PENDING_FDS`]
//! received but unclaimed per connection; a message announcing more than
//! arrived, or descriptors no message claims, close the connection, and
//! every descriptor received on it is closed with it. Calls without
//! descriptors cost what they did (no allocation, no extra system call).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::fds::{MAX_FDS, MAX_PENDING_FDS};

pub const INTERFACE: &str = "org.accord.RemoteObject";
pub const METHOD: &str = "SendRequest";
/// Object path of every remote object on its connection.
pub const PATH: &str = "/org/accord/RemoteObject";
/// Largest message accepted (the D-Bus limit is 128 MiB; requests bigger
/// than 1 MiB belong in a [`crate::blob::Blob`]-style memfd). Checked on
/// the fixed header: the buffer only ever holds bytes that arrived.
pub const MAX_MESSAGE: usize = 4 << 20;
/// How long the server waits for a client to take its replies (a client
/// that sends and never reads): after that the connection is hung up and
/// its thread ends (`SO_SNDTIMEO`).
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long [`RemoteProxy::send_request`] waits for a reply by default
/// ([`RemoteProxy::with_timeout`] sets another).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Most bytes one read takes from a connection.
const READ_SIZE: usize = 64 * 1024;
/// Replies gathered for one write: past this the server writes before it
/// answers more of what it read.
const OUT_BATCH: usize = 256 * 1024;
/// OpenHarmony's `MessageOption::TF_ASYNC`: a one-way request, no reply
/// ([`RemoteProxy::send_oneway`]).
pub const TF_ASYNC: u32 = 0x01;

#[derive(Debug, Error)]
pub enum RemoteError {
    #[error("remote object: {0}")]
    Io(#[from] std::io::Error),
    #[error("remote object: malformed message: {0}")]
    Malformed(&'static str),
    #[error("remote object: authentication: {0}")]
    Auth(String),
    /// The object answered with an error.
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
    #[error("remote object: the connection is closed")]
    Dead,
    /// No reply within the call's deadline (the connection stays usable;
    /// a late reply is dropped).
    #[error("remote object: no reply within {} ms", .0.as_millis())]
    TimedOut(std::time::Duration),
    /// A budget of [`crate::budget`] was exceeded: the connection ends.
    #[error("remote object: {0}")]
    Limit(String),
}

impl RemoteError {
    /// The SA is gone: get it again.
    pub fn is_dead(&self) -> bool {
        matches!(self, RemoteError::Dead)
            || matches!(self, RemoteError::Io(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof))
    }

    /// An error for a client, with a D-Bus error name.
    pub fn failed(message: impl Into<String>) -> RemoteError {
        RemoteError::Remote { name: "org.accord.Error.Failed".into(), message: message.into() }
    }
}

/// What answers the requests of one connection: OpenHarmony's
/// `IRemoteStub::OnRemoteRequest`, with everything else (who the caller
/// is, the SA's life cycle) left to whoever builds it (the SA framework,
/// `accord-safwk`). A closure `Fn(code, data, reply)` is one.
pub trait Handler: Send + 'static {
    /// Answers request `code` with `data` by appending to `reply`. Runs
    /// inline in the connection's loop: return quickly. An `Err` goes back
    /// to the client as a D-Bus error ([`RemoteError::Remote`] keeps its
    /// name).
    fn on_request(&self, code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), RemoteError>;

    /// [`Handler::on_request`] with the request's descriptors (`fds`, in
    /// order; those the handler does not keep are closed) and room for
    /// the reply's (`reply_fds`, at most [`MAX_FDS`]: more turn the reply
    /// into an error). Every request comes here; the default drops the
    /// descriptors and calls [`Handler::on_request`].
    fn on_request_fds(&self, code: u32, data: &[u8], fds: Vec<OwnedFd>, reply: &mut Vec<u8>, reply_fds: &mut Vec<OwnedFd>) -> Result<(), RemoteError> {
        let _ = (fds, reply_fds);
        self.on_request(code, data, reply)
    }

    /// A call of `interface.member` other than `SendRequest` (a typed
    /// interface's D-Bus face): `None` if the handler has no such method
    /// (the client gets UnknownMethod), else the reply body written to
    /// `reply` and its D-Bus signature, or an error for the client.
    /// `body` is the message body, `signature` its signature.
    fn on_dbus_call(&self, interface: &str, member: &str, signature: &str, body: &[u8], reply: &mut Vec<u8>) -> Option<Result<String, RemoteError>> {
        let _ = (interface, member, signature, body, reply);
        None
    }

    /// `<interface>` elements `Introspect` lists besides the fast path's.
    fn introspect(&self) -> String {
        String::new()
    }
}

impl<F> Handler for F
where
    F: Fn(u32, &[u8], &mut Vec<u8>) -> Result<(), RemoteError> + Send + 'static,
{
    fn on_request(&self, code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), RemoteError> {
        self(code, data, reply)
    }
}

// --- D-Bus message encoding (little endian, only what this path needs) ---

const CALL: u8 = 1;
const RETURN: u8 = 2;
const ERROR: u8 = 3;
const NO_REPLY: u8 = 0x1;

fn pad(buf: &mut Vec<u8>, align: usize) {
    while buf.len() & (align - 1) != 0 {
        buf.push(0);
    }
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// One header field holding a string-like value (`o`, `s` or `g`).
fn field_str(buf: &mut Vec<u8>, code: u8, sig: u8, v: &str) {
    pad(buf, 8);
    buf.extend_from_slice(&[code, 1, sig, 0]);
    if sig == b'g' {
        buf.push(v.len() as u8);
    } else {
        put_u32(buf, v.len() as u32);
    }
    buf.extend_from_slice(v.as_bytes());
    buf.push(0);
}

fn field_u32(buf: &mut Vec<u8>, code: u8, v: u32) {
    pad(buf, 8);
    buf.extend_from_slice(&[code, 1, b'u', 0]);
    put_u32(buf, v);
}

/// Appends a whole message: `fields` writes the header fields, `body` the
/// body (starting 8-aligned, as D-Bus wants).
fn message(out: &mut Vec<u8>, kind: u8, flags: u8, serial: u32, fields: impl FnOnce(&mut Vec<u8>), body: impl FnOnce(&mut Vec<u8>)) {
    // D-Bus aligns within a message, and a message may end anywhere: one
    // that follows an odd-sized one in the same buffer (replies batched
    // per read) is built apart, since `pad` aligns to the buffer's start.
    if out.len() & 7 != 0 {
        let mut apart = Vec::with_capacity(256);
        message(&mut apart, kind, flags, serial, fields, body);
        out.extend_from_slice(&apart);
        return;
    }
    let start = out.len();
    out.extend_from_slice(&[b'l', kind, flags, 1]);
    put_u32(out, 0); // body length, patched below
    put_u32(out, serial);
    put_u32(out, 0); // header fields length, patched below
    let f0 = out.len();
    fields(out);
    let flen = (out.len() - f0) as u32;
    out[start + 12..start + 16].copy_from_slice(&flen.to_le_bytes());
    pad(out, 8);
    let b0 = out.len();
    body(out);
    let blen = (out.len() - b0) as u32;
    out[start + 4..start + 8].copy_from_slice(&blen.to_le_bytes());
}

/// An `ay` value at the body start.
fn body_bytes(out: &mut Vec<u8>, data: &[u8]) {
    put_u32(out, data.len() as u32);
    out.extend_from_slice(data);
}

/// What the loop needs of a parsed message.
#[derive(Debug, Default)]
struct Msg<'a> {
    kind: u8,
    flags: u8,
    serial: u32,
    reply_serial: Option<u32>,
    path: &'a str,
    interface: &'a str,
    member: &'a str,
    error_name: &'a str,
    signature: &'a str,
    /// The `UNIX_FDS` header field: descriptors that came with it.
    unix_fds: u32,
    body: &'a [u8],
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Total length of the message at the start of `b`, once its fixed
/// header is there.
fn message_len(b: &[u8]) -> Result<Option<usize>, RemoteError> {
    if b.len() < 16 {
        return Ok(None);
    }
    if b[0] != b'l' || b[3] != 1 {
        return Err(RemoteError::Malformed("not a little-endian D-Bus 1 message"));
    }
    let body = rd_u32(b, 4).unwrap_or(0) as usize;
    let fields = rd_u32(b, 12).unwrap_or(0) as usize;
    let total = (16 + fields).div_ceil(8) * 8 + body;
    if total > MAX_MESSAGE {
        return Err(RemoteError::Malformed("message above the size limit"));
    }
    Ok(Some(total))
}

/// Parses a whole message (as `message_len` measured it).
fn parse(b: &[u8]) -> Result<Msg<'_>, RemoteError> {
    let bad = RemoteError::Malformed;
    let mut m = Msg { kind: b[1], flags: b[2], serial: rd_u32(b, 8).ok_or(bad("header"))?, ..Msg::default() };
    let flen = rd_u32(b, 12).ok_or(bad("header"))? as usize;
    let end = 16 + flen;
    let mut at = 16;
    while at < end {
        at = at.div_ceil(8) * 8;
        if at + 4 > end {
            return Err(bad("header field"));
        }
        let (code, siglen) = (b[at], b[at + 1] as usize);
        let sig = b.get(at + 2..at + 2 + siglen).ok_or(bad("header field signature"))?;
        at += 3 + siglen; // code, len, sig, NUL
        match sig {
            b"o" | b"s" => {
                at = at.div_ceil(4) * 4;
                let n = rd_u32(b, at).ok_or(bad("string length"))? as usize;
                let s = std::str::from_utf8(b.get(at + 4..at + 4 + n).ok_or(bad("string"))?).map_err(|_| bad("string is not UTF-8"))?;
                at += 4 + n + 1;
                match code {
                    1 => m.path = s,
                    2 => m.interface = s,
                    3 => m.member = s,
                    4 => m.error_name = s,
                    _ => {}
                }
            }
            b"g" => {
                let n = *b.get(at).ok_or(bad("signature"))? as usize;
                let s = std::str::from_utf8(b.get(at + 1..at + 1 + n).ok_or(bad("signature"))?).map_err(|_| bad("signature"))?;
                at += 1 + n + 1;
                if code == 8 {
                    m.signature = s;
                }
            }
            b"u" => {
                at = at.div_ceil(4) * 4;
                let v = rd_u32(b, at).ok_or(bad("u32 field"))?;
                at += 4;
                match code {
                    5 => m.reply_serial = Some(v),
                    9 => m.unix_fds = v,
                    _ => {}
                }
            }
            _ => return Err(bad("unexpected header field type")),
        }
    }
    let body_at = end.div_ceil(8) * 8;
    m.body = b.get(body_at..).ok_or(bad("body"))?;
    Ok(m)
}

/// `ay` at `at` of `body`.
fn get_bytes(body: &[u8], at: usize) -> Option<&[u8]> {
    let n = rd_u32(body, at)? as usize;
    body.get(at + 4..at + 4 + n)
}

/// A string (`s`) at the start of `body`.
fn get_str(body: &[u8]) -> Option<&str> {
    let n = rd_u32(body, 0)? as usize;
    std::str::from_utf8(body.get(4..4 + n)?).ok()
}

/// A `SendRequest(code, data)` call (`flags`: [`NO_REPLY`] for one-way)
/// carrying `fds` descriptors.
fn request(out: &mut Vec<u8>, serial: u32, code: u32, data: &[u8], flags: u8, fds: u32) {
    let r: Result<(), std::convert::Infallible> = request_with(
        out,
        serial,
        code,
        flags,
        |b| {
            b.extend_from_slice(data);
            Ok(())
        },
        |_| fds,
    );
    let Ok(()) = r;
}

/// A `SendRequest` call whose data `encode` appends straight to `out`
/// (the message buffer, empty: nothing is copied afterwards); `fds` tells
/// how many descriptors the encoded value carries, known only once it is
/// encoded: the `UNIX_FDS` header field is then put in (a move of the
/// body, for messages with descriptors only).
fn request_with<R, E>(
    out: &mut Vec<u8>,
    serial: u32,
    code: u32,
    flags: u8,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<R, E>,
    fds: impl FnOnce(&R) -> u32,
) -> Result<R, E> {
    // Alignment is counted from the message's start (see `message`).
    if out.len() & 7 != 0 {
        let mut apart = Vec::with_capacity(256);
        let r = request_with(&mut apart, serial, code, flags, encode, fds)?;
        out.extend_from_slice(&apart);
        return Ok(r);
    }
    let start = out.len();
    out.extend_from_slice(&[b'l', CALL, flags, 1]);
    put_u32(out, 0); // body length, patched below
    put_u32(out, serial);
    put_u32(out, 0); // header fields length, patched below
    field_str(out, 1, b'o', PATH);
    field_str(out, 2, b's', INTERFACE);
    field_str(out, 3, b's', METHOD);
    field_str(out, 8, b'g', "uay");
    let flen = out.len() - start - 16;
    pad(out, 8);
    let b0 = out.len();
    put_u32(out, code);
    put_u32(out, 0); // the data's length, patched below
    let r = encode(out)?;
    let dlen = (out.len() - b0 - 8) as u32;
    out[b0 + 4..b0 + 8].copy_from_slice(&dlen.to_le_bytes());
    let blen = (out.len() - b0) as u32;
    out[start + 4..start + 8].copy_from_slice(&blen.to_le_bytes());
    let n = fds(&r);
    let flen = if n == 0 {
        flen
    } else {
        // The field is 8 bytes at an 8-aligned place (where the body
        // starts now), so the body stays aligned after it.
        let mut field = Vec::with_capacity(8);
        field_u32(&mut field, 9, n);
        out.splice(b0..b0, field);
        b0 - start - 16 + 8
    };
    out[start + 12..start + 16].copy_from_slice(&(flen as u32).to_le_bytes());
    Ok(r)
}

fn reply_error(out: &mut Vec<u8>, serial: u32, reply_to: u32, name: &str, text: &str) {
    message(
        out,
        ERROR,
        NO_REPLY,
        serial,
        |f| {
            field_str(f, 4, b's', name);
            field_u32(f, 5, reply_to);
            field_str(f, 8, b'g', "s");
        },
        |b| {
            put_u32(b, text.len() as u32);
            b.extend_from_slice(text.as_bytes());
            b.push(0);
        },
    );
}

fn reply_return(out: &mut Vec<u8>, serial: u32, reply_to: u32, sig: &str, fds: u32, body: impl FnOnce(&mut Vec<u8>)) {
    message(
        out,
        RETURN,
        NO_REPLY,
        serial,
        |f| {
            field_u32(f, 5, reply_to);
            if !sig.is_empty() {
                field_str(f, 8, b'g', sig);
            }
            if fds != 0 {
                field_u32(f, 9, fds);
            }
        },
        body,
    );
}

const INTROSPECTION: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
 <interface name="org.accord.RemoteObject">
  <method name="SendRequest"><arg name="code" type="u" direction="in"/><arg name="data" type="ay" direction="in"/><arg name="reply" type="ay" direction="out"/></method>
 </interface>
 <interface name="org.freedesktop.DBus.Peer"><method name="Ping"/></interface>
 <interface name="org.freedesktop.DBus.Introspectable"><method name="Introspect"><arg type="s" direction="out"/></method></interface>
</node>
"#;

// --- SASL -----------------------------------------------------------------

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Waits until `fd` (the client's connection) takes more bytes. The
/// connection is registered for reading only (a registration for writing
/// would wake this thread each time the server drains a request); this
/// registers a duplicate of it for writing, only while a write waits.
async fn writable(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: `fd` is the connection, open for as long as its proxy.
    let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    // SAFETY: the OwnedFd is ours and stays open as long as the AsyncFd.
    let io = unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }.map_err(std::io::Error::from)?;
    let _ready = io.writable().await?;
    Ok(())
}

/// One receive on the client's connection, appending at most
/// [`READ_SIZE`] bytes to `buf` (straight into its spare capacity).
/// Cancel-safe: bytes and descriptors are only taken in the synchronous
/// part. A read that came back short without descriptors emptied the
/// socket (a Unix stream read without `SO_PASSCRED` glues every queued
/// byte up to one that carries descriptors), so the readiness is
/// dropped at once and the next read waits for the next wake-up instead
/// of trying a `recvmsg` that would fail with `EAGAIN`.
async fn recv_io(io: &AsyncFd<std::os::unix::net::UnixStream>, buf: &mut Vec<u8>, fds: &mut VecDeque<OwnedFd>) -> std::io::Result<usize> {
    loop {
        let mut g = io.readable().await?;
        let before = fds.len();
        match g.try_io(|s| crate::fds::recv_append(s.as_raw_fd(), buf, READ_SIZE, fds)) {
            Ok(Ok(n)) => {
                if n > 0 && n < READ_SIZE && fds.len() == before {
                    g.clear_ready();
                }
                return Ok(n);
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

/// One receive on the tokio read half (`recvmsg`: descriptors that come
/// go to `fds`). Cancel-safe: bytes and descriptors are only taken in the
/// synchronous part.
async fn recv_async(r: &OwnedReadHalf, buf: &mut [u8], fds: &mut VecDeque<OwnedFd>) -> std::io::Result<usize> {
    let s: &UnixStream = r.as_ref();
    loop {
        s.readable().await?;
        match s.try_io(Interest::READABLE, || crate::fds::recv(s.as_raw_fd(), buf, fds)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Reads one `\r\n`-terminated line into `line`, keeping any bytes after
/// it in `buf` (and descriptors that came with them in `fds`).
async fn read_line(r: &mut OwnedReadHalf, buf: &mut Vec<u8>, fds: &mut VecDeque<OwnedFd>) -> Result<String, RemoteError> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        if buf.len() > 4096 {
            return Err(RemoteError::Auth("line too long".into()));
        }
        let mut chunk = [0u8; 512];
        let n = recv_async(r, &mut chunk, fds).await?;
        if n == 0 {
            return Err(RemoteError::Dead);
        }
        check_pending(fds)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What the server's handshake leaves: bytes that followed BEGIN (the
/// first messages), descriptors that came with them, and whether the
/// client negotiated descriptors.
struct Opened {
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    fds_agreed: bool,
}

/// Server side of the handshake: EXTERNAL for `uid` only (any uid when
/// `None`: a private pair, see [`serve_private`]); descriptors if the
/// client asks (`NEGOTIATE_UNIX_FD`). Returns the bytes and descriptors
/// that followed BEGIN.
async fn sasl_server(r: &mut OwnedReadHalf, w: &mut OwnedWriteHalf, uid: Option<u32>) -> Result<Opened, RemoteError> {
    let mut buf = Vec::new();
    let mut fds = VecDeque::new();
    let mut fds_agreed = false;
    // The credentials byte.
    while buf.is_empty() {
        let mut b = [0u8; 256];
        let n = recv_async(r, &mut b, &mut fds).await?;
        if n == 0 {
            return Err(RemoteError::Dead);
        }
        check_pending(&fds)?;
        buf.extend_from_slice(&b[..n]);
    }
    if buf[0] != 0 {
        return Err(RemoteError::Auth("no credentials byte".into()));
    }
    buf.remove(0);
    let guid = format!("{:032x}", u128::from(std::process::id()) << 64 | u128::from(uid.unwrap_or(u32::MAX)) << 32 | 0xacc0);
    let expected = uid.map(|u| hex(&u.to_string()));
    let accepts = |id: &str| match &expected {
        Some(e) => id == e,
        None => !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_hexdigit()),
    };
    // SASL's states: BEGIN only after OK; DATA only after a bare AUTH
    // EXTERNAL; an empty DATA (the peer's credentials) only on a private
    // pair, where no uid is expected.
    let (mut authed, mut asked) = (false, false);
    loop {
        let line = read_line(r, &mut buf, &mut fds).await?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("AUTH"), Some("EXTERNAL"), Some(id)) if !authed && accepts(id) => {
                authed = true;
                w.write_all(format!("OK {guid}\r\n").as_bytes()).await?
            }
            (Some("AUTH"), Some("EXTERNAL"), None) if !authed => {
                asked = true;
                w.write_all(b"DATA\r\n").await?
            }
            (Some("DATA"), Some(id), None) if asked && !authed && accepts(id) => {
                authed = true;
                w.write_all(format!("OK {guid}\r\n").as_bytes()).await?
            }
            (Some("DATA"), None, None) if asked && !authed && expected.is_none() => {
                authed = true;
                w.write_all(format!("OK {guid}\r\n").as_bytes()).await?
            }
            (Some("BEGIN"), None, None) if !authed => return Err(RemoteError::Auth("BEGIN before authentication".into())),
            (Some("NEGOTIATE_UNIX_FD"), None, None) if authed => {
                fds_agreed = true;
                w.write_all(b"AGREE_UNIX_FD\r\n").await?
            }
            (Some("BEGIN"), None, None) => return Ok(Opened { buf, fds, fds_agreed }),
            (Some("AUTH" | "DATA"), ..) => w.write_all(b"REJECTED EXTERNAL\r\n").await?,
            (Some("CANCEL"), ..) if !authed => {
                asked = false;
                w.write_all(b"REJECTED EXTERNAL\r\n").await?
            }
            _ => w.write_all(b"ERROR unknown command\r\n").await?,
        }
    }
}

// --- descriptors -----------------------------------------------------------

/// Received descriptors no whole message has claimed yet: at most
/// [`MAX_PENDING_FDS`].
fn check_pending(fds: &VecDeque<OwnedFd>) -> Result<(), RemoteError> {
    if fds.len() > MAX_PENDING_FDS {
        return Err(RemoteError::Malformed("more descriptors received than messages claim"));
    }
    Ok(())
}

/// The descriptors message `m` announces, from the front of `fds` (they
/// came with its first bytes, so they are there once it is whole).
fn claim(m: &Msg<'_>, fds: &mut VecDeque<OwnedFd>) -> Result<Vec<OwnedFd>, RemoteError> {
    let n = m.unix_fds as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    if n > MAX_FDS {
        return Err(RemoteError::Malformed("a message announces more descriptors than one may carry"));
    }
    if n > fds.len() {
        return Err(RemoteError::Malformed("a message announces more descriptors than arrived"));
    }
    Ok(fds.drain(..n).collect())
}

/// After the whole messages of a read were taken: descriptors left while
/// no message is half-read belong to none.
fn check_unclaimed(buf: &[u8], fds: &VecDeque<OwnedFd>) -> Result<(), RemoteError> {
    if buf.is_empty() && !fds.is_empty() {
        return Err(RemoteError::Malformed("descriptors arrived that no message claims"));
    }
    check_pending(fds)
}

// --- server ---------------------------------------------------------------

/// Replies' descriptors: (offset in the output of the reply they go with,
/// the descriptors).
type OutFds = Vec<(usize, Vec<OwnedFd>)>;

/// Answers the requests of one connection.
struct Answerer<H> {
    handler: H,
    serial: u32,
    reply: Vec<u8>,
    reply_fds: Vec<OwnedFd>,
    /// The data of the last reply appended to `out`, not copied there:
    /// its header and length are in `out`, the bytes follow in one
    /// `writev`. Set only while nothing follows it in `out`.
    tail: Option<Vec<u8>>,
}

impl<H: Handler> Answerer<H> {
    /// Answers every whole message at the start of `buf` (and drops them
    /// from it) with the descriptors of `fds` they announce, appending the
    /// replies to `out` and their descriptors to `out_fds`.
    fn answer(&mut self, buf: &mut Vec<u8>, fds: &mut VecDeque<OwnedFd>, out: &mut Vec<u8>, out_fds: &mut OutFds) -> Result<(), RemoteError> {
        let mut used = 0;
        while let Some(len) = message_len(&buf[used..])? {
            if buf.len() - used < len || out.len() >= OUT_BATCH {
                // Not whole yet, or enough replies for one write (the
                // rest are answered after it: a client pipelining small
                // calls cannot make the replies of a whole read pile up).
                break;
            }
            let m = parse(&buf[used..used + len])?;
            used += len;
            let mine = claim(&m, fds)?;
            if m.kind != CALL {
                continue;
            }
            let wants_reply = m.flags & NO_REPLY == 0;
            self.serial = self.serial.wrapping_add(1).max(1);
            let serial = self.serial;
            self.flush_tail(out);
            let mark = out.len();
            match (m.interface, m.member) {
                (INTERFACE | "", METHOD) if m.signature == "uay" => {
                    let code = rd_u32(m.body, 0).ok_or(RemoteError::Malformed("code"))?;
                    let data = get_bytes(m.body, 4).ok_or(RemoteError::Malformed("data"))?;
                    self.reply.clear();
                    self.reply_fds.clear();
                    match self.handler.on_request_fds(code, data, mine, &mut self.reply, &mut self.reply_fds) {
                        Ok(()) if self.reply_fds.len() > MAX_FDS => {
                            self.reply_fds.clear();
                            let text = format!("the reply carries more than {MAX_FDS} descriptors");
                            reply_error(out, serial, m.serial, "org.freedesktop.DBus.Error.LimitsExceeded", &text)
                        }
                        Ok(()) if wants_reply && self.reply_fds.is_empty() && self.reply.len() >= TAKE_BUFFER => {
                            // Big: the data goes out from where the handler
                            // wrote it (see `tail`).
                            let data = std::mem::take(&mut self.reply);
                            reply_return(out, serial, m.serial, "ay", 0, |b| put_u32(b, data.len() as u32));
                            let body = (4 + data.len()) as u32;
                            out[mark + 4..mark + 8].copy_from_slice(&body.to_le_bytes());
                            self.tail = Some(data);
                        }
                        Ok(()) => {
                            let reply = &self.reply;
                            let n = self.reply_fds.len();
                            if n != 0 && wants_reply {
                                out_fds.push((out.len(), std::mem::take(&mut self.reply_fds)));
                            }
                            reply_return(out, serial, m.serial, "ay", n as u32, |b| body_bytes(b, reply))
                        }
                        Err(RemoteError::Remote { name, message }) => reply_error(out, serial, m.serial, &name, &message),
                        Err(e) => reply_error(out, serial, m.serial, "org.accord.Error.Failed", &e.to_string()),
                    }
                    // Descriptors of a reply not sent (an error, one way)
                    // are closed now.
                    self.reply_fds.clear();
                }
                ("org.freedesktop.DBus.Peer" | "", "Ping") => reply_return(out, serial, m.serial, "", 0, |_| {}),
                ("org.freedesktop.DBus.Introspectable" | "", "Introspect") => {
                    let more = self.handler.introspect();
                    let xml = INTROSPECTION
                        .replace(" <interface name=\"org.freedesktop.DBus.Peer\">", &format!("{more} <interface name=\"org.freedesktop.DBus.Peer\">"));
                    reply_return(out, serial, m.serial, "s", 0, |b| {
                        put_u32(b, xml.len() as u32);
                        b.extend_from_slice(xml.as_bytes());
                        b.push(0);
                    })
                }
                (i, mb) => {
                    self.reply.clear();
                    match self.handler.on_dbus_call(i, mb, m.signature, m.body, &mut self.reply) {
                        Some(Ok(sig)) => {
                            let reply = &self.reply;
                            reply_return(out, serial, m.serial, &sig, 0, |b| b.extend_from_slice(reply))
                        }
                        Some(Err(RemoteError::Remote { name, message })) => reply_error(out, serial, m.serial, &name, &message),
                        Some(Err(e)) => reply_error(out, serial, m.serial, "org.accord.Error.Failed", &e.to_string()),
                        None => {
                            let text = format!("no method {i}.{mb} with signature {:?} at {}", m.signature, m.path);
                            reply_error(out, serial, m.serial, "org.freedesktop.DBus.Error.UnknownMethod", &text);
                        }
                    }
                }
            }
            if !wants_reply {
                out.truncate(mark);
            }
        }
        buf.drain(..used);
        check_unclaimed(buf, fds)
    }

    /// Appends the deferred reply data to `out` (something follows it).
    fn flush_tail(&mut self, out: &mut Vec<u8>) {
        if let Some(mut t) = self.tail.take() {
            out.extend_from_slice(&t);
            t.clear();
            self.reply = t;
        }
    }
}

/// Serves `handler` to one client on `stream` until the client goes away.
/// The handshake expects `client_uid` (the uid samgr verified: on a socket
/// pair samgr made, SO_PEERCRED names samgr, not the client). After
/// the handshake the connection gets a thread of its own with blocking
/// reads, as binder's worker threads do: a request then wakes exactly
/// the thread that answers it, with no event loop in between.
/// Replies the client does not take within [`WRITE_TIMEOUT`] end the
/// connection ([`RemoteError::TimedOut`]); a message above
/// [`MAX_MESSAGE`] ends it too ([`RemoteError::Malformed`]).
pub async fn serve<H: Handler>(stream: UnixStream, handler: H, client_uid: u32) -> Result<(), RemoteError> {
    serve_with_timeout(stream, handler, client_uid, WRITE_TIMEOUT).await
}

/// [`serve`] with another write deadline than [`WRITE_TIMEOUT`].
pub async fn serve_with_timeout<H: Handler>(stream: UnixStream, handler: H, client_uid: u32, write_timeout: std::time::Duration) -> Result<(), RemoteError> {
    serve_as(stream, handler, Some(client_uid), write_timeout).await
}

/// [`serve`] on one end of a socket pair this process made and handed to
/// one peer (a listener object passed in a call): the pair is private to
/// that peer, so the handshake takes whatever uid it states (SO_PEERCRED
/// of a pair names this process, not the peer, and the peer's uid is not
/// known here).
pub async fn serve_private<H: Handler>(stream: UnixStream, handler: H) -> Result<(), RemoteError> {
    serve_as(stream, handler, None, WRITE_TIMEOUT).await
}

async fn serve_as<H: Handler>(stream: UnixStream, handler: H, client_uid: Option<u32>, write_timeout: std::time::Duration) -> Result<(), RemoteError> {
    let (mut r, mut w) = stream.into_split();
    let opened = match tokio::time::timeout(crate::HANDSHAKE_TIMEOUT, sasl_server(&mut r, &mut w, client_uid)).await {
        Ok(r) => r?,
        Err(_) => return Err(RemoteError::Auth(format!("no handshake within {} s", crate::HANDSHAKE_TIMEOUT.as_secs()))),
    };
    let stream = r.reunite(w).map_err(|_| RemoteError::Malformed("stream halves"))?.into_std()?;
    stream.set_nonblocking(false)?;
    // A client that never reads cannot pin this thread: a write that
    // cannot go on for WRITE_TIMEOUT fails, and the connection ends.
    stream.set_write_timeout(Some(write_timeout))?;
    // Dropping this future (the host withdrew the SA, the task was
    // aborted) ends the connection: the guard shuts the socket down, and
    // the thread's blocking read returns.
    struct Hangup(std::os::unix::net::UnixStream);
    impl Drop for Hangup {
        fn drop(&mut self) {
            let _ = self.0.shutdown(std::net::Shutdown::Both);
        }
    }
    let _hangup = Hangup(stream.try_clone()?);
    let (done_tx, done_rx) = oneshot::channel();
    let answerer = Answerer { handler, serial: 0, reply: Vec::with_capacity(256), reply_fds: Vec::new(), tail: None };
    std::thread::Builder::new().name("remote-object".into()).spawn(move || {
        crate::budget::set_sender(client_uid);
        let charge = crate::budget::Charge::new(client_uid);
        let _ = done_tx.send(serve_blocking(stream, opened, answerer, write_timeout, charge));
    })?;
    done_rx.await.unwrap_or(Err(RemoteError::Dead))
}

/// Gives back the room a big message took in a read buffer once little
/// is left in it (an idle connection keeps about two reads' worth).
fn give_back_room(buf: &mut Vec<u8>) {
    if buf.capacity() > 4 * READ_SIZE && buf.len() <= READ_SIZE {
        buf.shrink_to(2 * READ_SIZE);
    }
}

/// Writes `head` then `tail` with as few `writev`s as the socket takes.
fn write_both(stream: &mut std::os::unix::net::UnixStream, head: &[u8], tail: &[u8]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut parts = [IoSlice::new(head), IoSlice::new(tail)];
    let mut left = &mut parts[..];
    while !left.is_empty() {
        match stream.write_vectored(left) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `out`, each reply's descriptors (`out_fds`) with its first
/// byte.
fn write_replies(stream: &mut std::os::unix::net::UnixStream, out: &[u8], out_fds: &mut OutFds) -> std::io::Result<()> {
    use std::io::Write;
    if out_fds.is_empty() {
        return stream.write_all(out);
    }
    let mut at = 0;
    let starts: Vec<usize> = out_fds.iter().map(|(start, _)| *start).chain([out.len()]).collect();
    for (i, (start, fds)) in out_fds.drain(..).enumerate() {
        stream.write_all(&out[at..start])?;
        let end = starts[i + 1];
        let n = crate::fds::send(stream.as_raw_fd(), &out[start..end], &fds)?;
        drop(fds);
        stream.write_all(&out[start + n..end])?;
        at = end;
    }
    stream.write_all(&out[at..])
}

fn serve_blocking<H: Handler>(
    mut stream: std::os::unix::net::UnixStream,
    opened: Opened,
    mut a: Answerer<H>,
    write_timeout: std::time::Duration,
    mut charge: crate::budget::Charge,
) -> Result<(), RemoteError> {
    let Opened { mut buf, mut fds, fds_agreed } = opened;
    let mut out = Vec::with_capacity(4096);
    let mut out_fds = OutFds::new();
    loop {
        if !fds_agreed && !fds.is_empty() {
            return Err(RemoteError::Malformed("descriptors on a connection that did not negotiate them"));
        }
        a.answer(&mut buf, &mut fds, &mut out, &mut out_fds)?;
        let tail = a.tail.take();
        if !out.is_empty() {
            let written = match &tail {
                Some(t) if out_fds.is_empty() => write_both(&mut stream, &out, t),
                Some(t) => {
                    out.extend_from_slice(t);
                    write_replies(&mut stream, &out, &mut out_fds)
                }
                None => write_replies(&mut stream, &out, &mut out_fds),
            };
            if let Err(e) = written {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Err(match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => RemoteError::TimedOut(write_timeout),
                    _ => e.into(),
                });
            }
            out.clear();
            out_fds.clear();
        }
        if let Some(mut t) = tail {
            // Its room serves the next reply.
            t.clear();
            a.reply = t;
        }
        // Room a big reply or batch took is given back.
        if out.capacity() > 2 * OUT_BATCH {
            out.shrink_to(OUT_BATCH);
        }
        if a.reply.capacity() > OUT_BATCH {
            a.reply.shrink_to(4096);
        }
        // Whole requests left unanswered (the batch was full): answer
        // them before reading more.
        if matches!(message_len(&buf), Ok(Some(len)) if len <= buf.len()) {
            continue;
        }
        // What is left is a request not yet whole: give back the room a
        // bigger one took, and charge the client's uid what is held.
        give_back_room(&mut buf);
        charge.set(buf.len(), fds.len()).map_err(RemoteError::Limit)?;
        // Read straight into the buffer's tail, uninitialised (nothing
        // can cancel a blocking read half-way here); descriptors go to
        // `fds`, and dropping it on an error closes them.
        let n = crate::fds::recv_append(stream.as_raw_fd(), &mut buf, READ_SIZE, &mut fds);
        let n = match n {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(RemoteError::Malformed("more descriptors received than messages claim")),
            Err(e) => return Err(e.into()),
        };
        check_pending(&fds)?;
        if n == 0 {
            return Ok(());
        }
        charge.set(buf.len(), fds.len()).map_err(RemoteError::Limit)?;
    }
}

// --- client ---------------------------------------------------------------

struct Reader {
    /// The uid this connection's buffered bytes are charged to (a kept
    /// listener's sender), if any.
    charge: Option<crate::budget::Charge>,
    /// Bytes received and not yet parsed (a read appends to it only in
    /// its synchronous part, so a cancelled read leaves it whole).
    buf: Vec<u8>,
    /// Received descriptors no whole reply has claimed yet.
    fds: VecDeque<OwnedFd>,
}

type Outcome = Result<ReplyData, RemoteError>;

/// A reply's data and descriptors ([`RemoteProxy::send_request_with`]).
/// A big reply the calling task read itself is not copied out of the
/// buffer it was read into: this holds that buffer and where the data is.
#[derive(Debug)]
pub struct ReplyData {
    buf: Vec<u8>,
    data: std::ops::Range<usize>,
    fds: Vec<OwnedFd>,
}

/// Replies at least this big are handed over in their read buffer.
const TAKE_BUFFER: usize = 4096;

impl ReplyData {
    fn whole(buf: Vec<u8>, fds: Vec<OwnedFd>) -> ReplyData {
        ReplyData { data: 0..buf.len(), buf, fds }
    }

    /// The reply's bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data.clone()]
    }

    /// The descriptors that came with it, in order (taken: a second call
    /// returns none).
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds)
    }

    /// The bytes (copied out only if they sit inside a bigger buffer) and
    /// the descriptors.
    pub fn into_parts(mut self) -> (Vec<u8>, Vec<OwnedFd>) {
        let fds = std::mem::take(&mut self.fds);
        if self.data == (0..self.buf.len()) {
            (self.buf, fds)
        } else {
            (self.buf[self.data].to_vec(), fds)
        }
    }
}

struct Shared {
    /// The connection (non-blocking, registered with the runtime).
    io: AsyncFd<std::os::unix::net::UnixStream>,
    /// Held while one whole message is written.
    writer: tokio::sync::Mutex<()>,
    /// The read state, held by whichever caller is reading now.
    reader: tokio::sync::Mutex<Reader>,
    /// Calls waiting for their reply, by serial: who to hand it to, and
    /// until when ([`keep_deadlines`] ends those past it).
    waiting: Mutex<HashMap<u32, Waiter>>,
    /// When the deadline keeper looks next, in nanoseconds since
    /// `epoch` (`u64::MAX`: it is parked until a call wakes it). Written
    /// with `waiting` locked, so a call that starts sees it current.
    sweep_at: AtomicU64,
    /// Wakes the deadline keeper (a call due before `sweep_at`, or the
    /// connection's end).
    sweep: Arc<tokio::sync::Notify>,
    epoch: Instant,
    /// Small requests of calls that found another task writing, left
    /// for it to write with its own (see [`RemoteProxy::send_call`]).
    queue: Mutex<Vec<u8>>,
    serial: AtomicU32,
    dead: std::sync::atomic::AtomicBool,
    /// The server agreed to descriptors (`AGREE_UNIX_FD`).
    fds_agreed: bool,
    /// What this connection's existence is charged to (a listener kept
    /// for the uid that sent it), freed with the last clone.
    charged: Mutex<Option<crate::budget::Hold>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The deadline keeper ends with the connection.
        self.sweep.notify_one();
    }
}

/// A call waiting for its reply.
struct Waiter {
    tx: oneshot::Sender<Outcome>,
    deadline: Instant,
    timeout: Duration,
}

/// Marks the connection dead unless [`Whole::done`] says the write it
/// guards ended well: a write cut short (its caller gave up half-way)
/// leaves half a message on the stream, so the connection is dead for
/// everyone.
struct Whole<'a>(&'a RemoteProxy, bool);

impl Whole<'_> {
    fn done(mut self, ok: bool) {
        self.1 = ok;
    }
}

impl Drop for Whole<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fail_all(&RemoteError::Dead);
        }
    }
}

/// When a call (or a one-way write) must be done, and the timeout that
/// set it (for [`RemoteError::TimedOut`]).
#[derive(Clone, Copy)]
struct Due {
    at: Instant,
    timeout: Duration,
}

/// Requests up to this size are left for a task already writing (it
/// writes them with its own in one system call); bigger ones, and those
/// with descriptors, wait for the connection themselves.
const COMBINE: usize = 4096;

/// Ends the calls on a connection whose deadline passed (their callers
/// get [`RemoteError::TimedOut`]). One such task per connection, in
/// place of a timer per call: it sleeps until the earliest deadline and
/// parks while no call waits; a call due sooner than it looks wakes it.
/// It ends when the connection is dropped.
async fn keep_deadlines(conn: std::sync::Weak<Shared>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let next = {
            let Some(sh) = conn.upgrade() else { return };
            let now = Instant::now();
            let mut waiting = crate::lock(&sh.waiting);
            let late: Vec<u32> = waiting.iter().filter(|(_, w)| w.deadline <= now).map(|(s, _)| *s).collect();
            for serial in late {
                if let Some(w) = waiting.remove(&serial) {
                    let _ = w.tx.send(Err(RemoteError::TimedOut(w.timeout)));
                }
            }
            let next = waiting.values().map(|w| w.deadline).min();
            sh.sweep_at.store(next.map_or(u64::MAX, |t| since(sh.epoch, t)), Ordering::Release);
            next
        };
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// `t` in nanoseconds since `epoch` (0 before it, `u64::MAX - 1` at most).
fn since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX - 1).min(u64::MAX - 1)
}

/// A client of a remote object (a [`Handler`] served by [`serve`]); cheap to clone, usable from many tasks.
/// Each call has a deadline ([`CALL_TIMEOUT`] unless
/// [`RemoteProxy::with_timeout`] says otherwise).
#[derive(Clone)]
pub struct RemoteProxy {
    shared: Arc<Shared>,
    timeout: std::time::Duration,
}

impl RemoteProxy {
    /// Authenticates on `stream` (a connection samgr handed out).
    /// The handshake must end within [`crate::HANDSHAKE_TIMEOUT`] (a server
    /// that never answers is an error, not a hang).
    pub async fn connect(stream: UnixStream) -> Result<RemoteProxy, RemoteError> {
        match tokio::time::timeout(crate::HANDSHAKE_TIMEOUT, Self::handshake(stream)).await {
            Ok(r) => r,
            Err(_) => Err(RemoteError::Auth(format!("no handshake within {} s", crate::HANDSHAKE_TIMEOUT.as_secs()))),
        }
    }

    async fn handshake(stream: UnixStream) -> Result<RemoteProxy, RemoteError> {
        let (mut r, mut w) = stream.into_split();
        let uid = nix::unistd::geteuid().as_raw().to_string();
        w.write_all(format!("\0AUTH EXTERNAL {}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n", hex(&uid)).as_bytes()).await?;
        let mut buf = Vec::new();
        let mut fds = VecDeque::new();
        let line = read_line(&mut r, &mut buf, &mut fds).await?;
        if !line.starts_with("OK ") {
            return Err(RemoteError::Auth(line));
        }
        // AGREE_UNIX_FD, or ERROR from a server without descriptors.
        let fds_agreed = read_line(&mut r, &mut buf, &mut fds).await? == "AGREE_UNIX_FD";
        if !fds.is_empty() {
            return Err(RemoteError::Auth("descriptors during the handshake".into()));
        }
        let std = r.reunite(w).map_err(|_| RemoteError::Malformed("stream halves"))?.into_std()?;
        // SAFETY: a std UnixStream owns its descriptor and keeps that one
        // open until it is dropped, with the AsyncFd that holds it.
        let io = unsafe { AsyncFd::register_with_interest(std, Interest::READABLE) }.map_err(std::io::Error::from)?;
        let sweep = Arc::new(tokio::sync::Notify::new());
        let shared = Arc::new(Shared {
            io,
            writer: tokio::sync::Mutex::new(()),
            reader: tokio::sync::Mutex::new(Reader { charge: None, buf, fds }),
            waiting: Mutex::default(),
            sweep_at: AtomicU64::new(u64::MAX),
            sweep: sweep.clone(),
            epoch: Instant::now(),
            queue: Mutex::default(),
            serial: AtomicU32::new(1),
            dead: std::sync::atomic::AtomicBool::new(false),
            fds_agreed,
            charged: Mutex::new(None),
        });
        tokio::spawn(keep_deadlines(Arc::downgrade(&shared), sweep));
        Ok(RemoteProxy { shared, timeout: CALL_TIMEOUT })
    }

    /// Charges this connection to `hold`'s uid for as long as any clone
    /// of the proxy lives ([`crate::budget::Hold`]), and what it buffers
    /// (a reply not yet whole) to that uid's byte budget: a read past the
    /// budget ends the connection ([`RemoteError::Limit`]).
    pub async fn charge(&self, hold: crate::budget::Hold) {
        // What the connection buffers is that uid's too.
        self.shared.reader.lock().await.charge = Some(crate::budget::Charge::new(Some(hold.uid())));
        *crate::lock(&self.shared.charged) = Some(hold);
    }

    /// The same connection with calls that wait at most `timeout` for
    /// their reply.
    pub fn with_timeout(&self, timeout: std::time::Duration) -> RemoteProxy {
        RemoteProxy { shared: self.shared.clone(), timeout }
    }

    /// Sends request `code` with `data` one way (OpenHarmony's
    /// [`TF_ASYNC`]): returns once it is written; the object runs it in
    /// order with the connection's other requests and sends no reply.
    pub async fn send_oneway(&self, code: u32, data: &[u8]) -> Result<(), RemoteError> {
        self.send_oneway_fds(code, data, Vec::new()).await
    }

    /// [`RemoteProxy::send_oneway`] with descriptors (at most
    /// [`MAX_FDS`]); they are closed here once sent.
    pub async fn send_oneway_fds(&self, code: u32, data: &[u8], fds: Vec<OwnedFd>) -> Result<(), RemoteError> {
        self.check_fds(&fds)?;
        let mut msg = Vec::with_capacity(96 + data.len());
        let serial = self.shared.serial.fetch_add(1, Ordering::Relaxed).max(1);
        request(&mut msg, serial, code, data, NO_REPLY, fds.len() as u32);
        self.oneway(msg, fds).await
    }

    /// [`RemoteProxy::send_oneway_fds`] with the data written by `encode`
    /// straight into the outgoing message (it returns the descriptors
    /// the data names, sent with it).
    pub async fn send_oneway_with(&self, code: u32, encode: impl FnOnce(&mut Vec<u8>) -> Result<Vec<OwnedFd>, RemoteError>) -> Result<(), RemoteError> {
        let mut msg = Vec::with_capacity(256);
        let serial = self.shared.serial.fetch_add(1, Ordering::Relaxed).max(1);
        let fds = request_with(&mut msg, serial, code, NO_REPLY, encode, |f| f.len() as u32)?;
        self.check_fds(&fds)?;
        self.oneway(msg, fds).await
    }

    async fn oneway(&self, msg: Vec<u8>, fds: Vec<OwnedFd>) -> Result<(), RemoteError> {
        if self.shared.dead.load(Ordering::Acquire) {
            return Err(RemoteError::Dead);
        }
        self.write(&msg, &fds, self.due()).await
    }

    /// The deadline of a call or write starting now.
    fn due(&self) -> Due {
        let now = Instant::now();
        // A timeout past what an Instant holds is one with no end.
        let at = now.checked_add(self.timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        Due { at, timeout: self.timeout }
    }

    /// Whether `fds` may go in one request on this connection.
    fn check_fds(&self, fds: &[OwnedFd]) -> Result<(), RemoteError> {
        if fds.len() > MAX_FDS {
            return Err(RemoteError::Malformed("more descriptors than one message may carry"));
        }
        if !fds.is_empty() && !self.shared.fds_agreed {
            return Err(RemoteError::Malformed("the server does not take descriptors"));
        }
        Ok(())
    }

    /// Writes one whole message, `fds` with its first byte, once the
    /// connection is free (and what other calls left for its writer).
    async fn write(&self, msg: &[u8], fds: &[OwnedFd], due: Due) -> Result<(), RemoteError> {
        // A waiter the lock was handed to but that is dropped before it
        // runs (its deadline, its caller's select) may leave requests in
        // the queue that the last holder left for it: a task of its own
        // writes them then.
        struct Orphans<'a>(&'a RemoteProxy, bool);
        impl Drop for Orphans<'_> {
            fn drop(&mut self) {
                if self.1 && !self.0.is_dead() && !crate::lock(&self.0.shared.queue).is_empty() {
                    // (Dropped outside a runtime, there is nobody to spawn on: the
                    // queued calls then end at their deadlines.)
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        let p = self.0.clone();
                        rt.spawn(async move { p.flush_queue(p.due()).await });
                    }
                }
            }
        }
        let mut orphans = Orphans(self, true);
        let w = match tokio::time::timeout_at(due.at.into(), self.shared.writer.lock()).await {
            Ok(w) => w,
            Err(_) => return Err(RemoteError::TimedOut(due.timeout)),
        };
        orphans.1 = false;
        self.write_locked(w, msg, fds, due).await
    }

    /// Writes the request of a call. A small one without descriptors
    /// that finds another task writing is left for it (it writes what
    /// was left with its own, so calls made at once from many tasks
    /// share their system calls); otherwise it is written here.
    async fn send_call(&self, msg: &[u8], fds: &[OwnedFd], due: Due) -> Result<(), RemoteError> {
        if fds.is_empty() && msg.len() <= COMBINE {
            if let Ok(w) = self.shared.writer.try_lock() {
                return self.write_locked(w, msg, fds, due).await;
            }
            crate::lock(&self.shared.queue).extend_from_slice(msg);
            // The writer may have let go before it looked again.
            return self.flush_queue(due).await;
        }
        self.write(msg, fds, due).await
    }

    /// Holding the connection (`_w`), writes what other calls left, then
    /// `msg`; then writes whatever was left meanwhile, unless another
    /// task holds the connection by then (it will).
    async fn write_locked(&self, w: tokio::sync::MutexGuard<'_, ()>, msg: &[u8], fds: &[OwnedFd], due: Due) -> Result<(), RemoteError> {
        let left = std::mem::take(&mut *crate::lock(&self.shared.queue));
        let whole = Whole(self, false);
        let r = if left.is_empty() {
            self.send_all(msg, fds, due).await
        } else if fds.is_empty() && msg.len() <= COMBINE {
            let mut all = left;
            all.extend_from_slice(msg);
            self.send_all(&all, &[], due).await
        } else {
            match self.send_all(&left, &[], due).await {
                Ok(()) => self.send_all(msg, fds, due).await,
                Err(e) => Err(e),
            }
        };
        whole.done(r.is_ok());
        drop(w);
        r?;
        self.flush_queue(due).await
    }

    /// Writes what calls left for the writer, if the connection is free
    /// (if not, its holder writes it when it lets go).
    async fn flush_queue(&self, due: Due) -> Result<(), RemoteError> {
        loop {
            if crate::lock(&self.shared.queue).is_empty() {
                return Ok(());
            }
            let Ok(w) = self.shared.writer.try_lock() else { return Ok(()) };
            let left = std::mem::take(&mut *crate::lock(&self.shared.queue));
            let whole = Whole(self, false);
            let r = self.send_all(&left, &[], due).await;
            whole.done(r.is_ok());
            drop(w);
            r?;
        }
    }

    /// Sends all of `msg`, `fds` with its first byte, waiting for room
    /// until `due`.
    async fn send_all(&self, msg: &[u8], fds: &[OwnedFd], due: Due) -> Result<(), RemoteError> {
        let fd = self.shared.io.as_raw_fd();
        let (mut at, mut fds) = (0, fds);
        while at < msg.len() {
            match crate::fds::send(fd, &msg[at..], fds) {
                Ok(n) => {
                    at += n;
                    fds = &[];
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => match tokio::time::timeout_at(due.at.into(), writable(fd)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(RemoteError::TimedOut(due.timeout)),
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sends request `code` with `data` and waits for the reply, at most
    /// the proxy's timeout (then [`RemoteError::TimedOut`]).
    pub async fn send_request(&self, code: u32, data: &[u8]) -> Result<Vec<u8>, RemoteError> {
        self.send_request_fds(code, data, Vec::new()).await.map(|(reply, _)| reply)
    }

    /// [`RemoteProxy::send_request`] with descriptors both ways: `fds` (at
    /// most [`MAX_FDS`], closed here once sent) go with the request, and
    /// the reply's come back, in order, with its bytes. Without
    /// descriptors it costs what `send_request` does.
    pub async fn send_request_fds(&self, code: u32, data: &[u8], fds: Vec<OwnedFd>) -> Result<(Vec<u8>, Vec<OwnedFd>), RemoteError> {
        self.check_fds(&fds)?;
        let serial = self.shared.serial.fetch_add(1, Ordering::Relaxed).max(1);
        let mut msg = Vec::with_capacity(96 + data.len());
        request(&mut msg, serial, code, data, 0, fds.len() as u32);
        self.call(serial, msg, fds).await.map(ReplyData::into_parts)
    }

    /// [`RemoteProxy::send_request_fds`] with the data written by `encode`
    /// straight into the outgoing message, not copied into it afterwards
    /// (a typed proxy encodes its arguments this way); `encode` returns
    /// the descriptors the data names, sent with it. The reply's data is
    /// read in place ([`ReplyData::data`]), not copied out of the read
    /// buffer when it is big.
    pub async fn send_request_with(&self, code: u32, encode: impl FnOnce(&mut Vec<u8>) -> Result<Vec<OwnedFd>, RemoteError>) -> Result<ReplyData, RemoteError> {
        let serial = self.shared.serial.fetch_add(1, Ordering::Relaxed).max(1);
        let mut msg = Vec::with_capacity(256);
        let fds = request_with(&mut msg, serial, code, 0, encode, |f| f.len() as u32)?;
        self.check_fds(&fds)?;
        self.call(serial, msg, fds).await
    }

    /// Runs the call of request `msg` (serial `serial`): at most the
    /// proxy's timeout ([`keep_deadlines`] ends it), then
    /// [`RemoteError::TimedOut`]; a late reply finds no waiter and is
    /// dropped.
    async fn call(&self, serial: u32, msg: Vec<u8>, fds: Vec<OwnedFd>) -> Outcome {
        let sh = &self.shared;
        if sh.dead.load(Ordering::Acquire) {
            return Err(RemoteError::Dead);
        }
        let (tx, rx) = oneshot::channel();
        let due = self.due();
        let deadline = due.at;
        let wake = {
            let mut waiting = crate::lock(&sh.waiting);
            waiting.insert(serial, Waiter { tx, deadline, timeout: self.timeout });
            since(sh.epoch, deadline) < sh.sweep_at.load(Ordering::Acquire)
        };
        if wake {
            sh.sweep.notify_one();
        }
        // However this call ends (its reply, an error, its deadline, or
        // its caller dropping it: a select), its waiter goes.
        struct Unwait<'a>(&'a Shared, u32);
        impl Drop for Unwait<'_> {
            fn drop(&mut self) {
                crate::lock(&self.0.waiting).remove(&self.1);
            }
        }
        let _unwait = Unwait(sh, serial);
        // Dropped before `_unwait` (which drops the sender): a receiver
        // gone first is not woken by its sender's drop, so a call that
        // read its own reply does not wake its own task for nothing.
        let mut rx = rx;
        // Not cut short by the reply: the task may be writing other
        // calls' requests with its own (it stops at its deadline only if
        // the connection has no room: the connection is dead then).
        let written = self.send_call(&msg, &fds, due).await;
        drop(fds);
        written?;
        // The deadline (or the connection's end) comes through `rx`.
        loop {
            // Either someone else reads our reply, or we take the reader.
            tokio::select! {
                biased;
                r = &mut rx => return r.unwrap_or(Err(RemoteError::Dead)),
                mut reader = sh.reader.lock() => {
                    if let Ok(r) = rx.try_recv() {
                        return r;
                    }
                    let read = tokio::select! {
                        biased;
                        r = &mut rx => return r.unwrap_or(Err(RemoteError::Dead)),
                        read = self.read_some(&mut reader, Some(serial)) => read,
                    };
                    match read {
                        Ok(Some(r)) => return r,
                        Ok(None) => {}
                        Err(e) => {
                            self.fail_all(&e);
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Reads at least one message and hands every whole reply to its
    /// waiter. On an error (the connection is then dead) the descriptors
    /// and bytes received and not handed on are let go at once, and with
    /// them their charge.
    async fn read_some(&self, rd: &mut Reader, mine: Option<u32>) -> Result<Option<Outcome>, RemoteError> {
        let r = self.read_replies(rd, mine).await;
        if r.is_err() {
            rd.fds.clear();
            rd.buf = Vec::new();
            rd.charge = None;
        }
        r
    }

    /// [`RemoteProxy::read_some`]: the reply to serial `mine` (the reading
    /// call's own) is returned, not sent to its waiter.
    async fn read_replies(&self, rd: &mut Reader, mine: Option<u32>) -> Result<Option<Outcome>, RemoteError> {
        loop {
            let mut handed = false;
            let mut own = None;
            let mut used = 0;
            while let Some(len) = message_len(&rd.buf[used..])? {
                if rd.buf.len() - used < len {
                    break;
                }
                let m = parse(&rd.buf[used..used + len])?;
                used += len;
                let fds = claim(&m, &mut rd.fds)?;
                // A server sends replies and nothing else on the fast path.
                let Some(to) = m.reply_serial else { return Err(RemoteError::Malformed("a message that is not a reply, from the server")) };
                let r = match m.kind {
                    RETURN => match get_bytes(m.body, 0) {
                        // The caller's own big reply, last in the buffer:
                        // the buffer itself is handed over (no copy).
                        Some(b) if Some(to) == mine && b.len() >= TAKE_BUFFER && used == rd.buf.len() => {
                            let start = b.as_ptr() as usize - rd.buf.as_ptr() as usize;
                            let data = start..start + b.len();
                            let buf = std::mem::take(&mut rd.buf);
                            used = 0;
                            Ok(ReplyData { buf, data, fds })
                        }
                        Some(b) => Ok(ReplyData::whole(b.to_vec(), fds)),
                        None => Err(RemoteError::Malformed("reply body")),
                    },
                    ERROR => Err(RemoteError::Remote { name: m.error_name.to_owned(), message: get_str(m.body).unwrap_or("").to_owned() }),
                    _ => return Err(RemoteError::Malformed("a message that is not a reply, from the server")),
                };
                handed = true;
                if Some(to) == mine {
                    own = Some(r);
                } else if let Some(w) = crate::lock(&self.shared.waiting).remove(&to) {
                    let _ = w.tx.send(r);
                }
            }
            rd.buf.drain(..used);
            give_back_room(&mut rd.buf);
            check_unclaimed(&rd.buf, &rd.fds)?;
            if let Some(c) = &mut rd.charge {
                c.set(rd.buf.len(), rd.fds.len()).map_err(RemoteError::Limit)?;
            }
            if handed {
                return Ok(own);
            }
            let n = match recv_io(&self.shared.io, &mut rd.buf, &mut rd.fds).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(RemoteError::Malformed("more descriptors received than messages claim")),
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(RemoteError::Dead);
            }
            if !self.shared.fds_agreed && !rd.fds.is_empty() {
                return Err(RemoteError::Malformed("descriptors on a connection that did not negotiate them"));
            }
            check_pending(&rd.fds)?;
            if let Some(c) = &mut rd.charge {
                c.set(rd.buf.len(), rd.fds.len()).map_err(RemoteError::Limit)?;
            }
        }
    }

    /// Resolves when the connection is dead: the server hung up (its SA
    /// was withdrawn, its process died) or a call found it broken. While
    /// this waits it reads the connection, handing replies to their
    /// callers, so calls made meanwhile still complete.
    pub async fn died(&self) {
        let sh = &self.shared;
        loop {
            if sh.dead.load(Ordering::Acquire) {
                return;
            }
            let mut reader = sh.reader.lock().await;
            if sh.dead.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = self.read_some(&mut reader, None).await {
                self.fail_all(&e);
                return;
            }
        }
    }

    /// Calls waiting for their reply now (a diagnostic: a call whose caller
    /// gave up is not counted).
    pub fn pending_calls(&self) -> usize {
        crate::lock(&self.shared.waiting).len()
    }

    /// Whether the connection is known to be dead (see [`RemoteProxy::died`]).
    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::Acquire)
    }

    fn fail_all(&self, _why: &RemoteError) {
        self.shared.dead.store(true, Ordering::Release);
        // Whoever reads or writes it next learns at once.
        let _ = self.shared.io.get_ref().shutdown(std::net::Shutdown::Both);
        crate::lock(&self.shared.queue).clear();
        for (_, w) in crate::lock(&self.shared.waiting).drain() {
            let _ = w.tx.send(Err(RemoteError::Dead));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_the_parser() {
        let mut b = Vec::new();
        request(&mut b, 7, 42, b"hello", 0, 0);
        assert_eq!(message_len(&b).unwrap(), Some(b.len()));
        let m = parse(&b).unwrap();
        assert_eq!((m.kind, m.serial, m.path, m.interface, m.member, m.signature), (CALL, 7, PATH, INTERFACE, METHOD, "uay"));
        assert_eq!((rd_u32(m.body, 0), get_bytes(m.body, 4)), (Some(42), Some(&b"hello"[..])));
    }

    /// A request whose descriptors are known only once its data is
    /// encoded gets its `UNIX_FDS` field put in before the body, which
    /// stays 8-aligned and whole.
    #[test]
    fn a_request_encoded_in_place_carries_its_descriptor_count() {
        for (data, fds) in [(&b""[..], 0u32), (b"hello", 0), (b"hello", 2), (b"0123456789abcdefg", 16)] {
            let mut b = Vec::new();
            let r: Result<u32, RemoteError> = request_with(
                &mut b,
                9,
                3,
                0,
                |out| {
                    out.extend_from_slice(data);
                    Ok(fds)
                },
                |n| *n,
            );
            assert_eq!(r.unwrap(), fds);
            assert_eq!(message_len(&b).unwrap(), Some(b.len()));
            let m = parse(&b).unwrap();
            assert_eq!((m.kind, m.serial, m.interface, m.member, m.signature, m.unix_fds), (CALL, 9, INTERFACE, METHOD, "uay", fds));
            assert_eq!((rd_u32(m.body, 0), get_bytes(m.body, 4)), (Some(3), Some(data)));
            assert_eq!((b.len() - m.body.len()) % 8, 0, "the body starts 8-aligned");
            let mut whole = Vec::new();
            message(
                &mut whole,
                CALL,
                0,
                9,
                |f| {
                    field_str(f, 1, b'o', PATH);
                    field_str(f, 2, b's', INTERFACE);
                    field_str(f, 3, b's', METHOD);
                    field_str(f, 8, b'g', "uay");
                    if fds != 0 {
                        field_u32(f, 9, fds);
                    }
                },
                |body| {
                    put_u32(body, 3);
                    body_bytes(body, data);
                },
            );
            assert_eq!(whole, b, "the same bytes as a message built with its fields known first");
        }
    }

    /// Memfds named `name` this process holds.
    fn held(name: &str) -> usize {
        let want = format!("/memfd:{name} ");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with(&want))
            .count()
    }

    /// A server that answers a request with a reply announcing 3
    /// descriptors and carrying 1, and one carrying 2 it does not
    /// announce: the client's call fails, its connection is dead, and
    /// the descriptors it received are closed.
    #[test]
    fn a_reply_with_descriptors_it_does_not_announce_kills_the_client_connection() {
        use std::io::{Read, Write};
        for (name, announced, sent) in [(c"accord-remote-more", 3u32, 1usize), (c"accord-remote-unclaimed", 0, 2)] {
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let (sent_tx, sent_rx) = std::sync::mpsc::channel();
            let server = std::thread::spawn(move || {
                fake_handshake(&mut b);
                let mut req = vec![0u8; 16];
                b.read_exact(&mut req).unwrap();
                let len = message_len(&req).unwrap().unwrap();
                req.resize(len, 0);
                b.read_exact(&mut req[16..]).unwrap();
                let serial = parse(&req).unwrap().serial;
                let mut out = Vec::new();
                reply_return(&mut out, 1, serial, "ay", announced, |body| body_bytes(body, b"x"));
                let probes: Vec<OwnedFd> =
                    (0..sent).map(|_| nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap()).collect();
                let n = crate::fds::send(b.as_raw_fd(), &out, &probes).unwrap();
                drop(probes);
                b.write_all(&out[n..]).unwrap();
                // The server's own copies are closed.
                sent_tx.send(()).unwrap();
                // Hold the socket open until the client hangs up.
                let _ = b.read(&mut [0u8; 64]);
            });
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                a.set_nonblocking(true).unwrap();
                let p = RemoteProxy::connect(UnixStream::from_std(a).unwrap()).await.unwrap();
                assert!(p.shared.fds_agreed);
                let e = p.send_request(1, b"").await.unwrap_err();
                assert!(matches!(e, RemoteError::Malformed(_)), "{e:?}");
                assert!(p.is_dead());
                sent_rx.recv().unwrap();
                assert_eq!(held(name.to_str().unwrap()), 0, "{name:?}: closed while the proxy lives on");
                drop(p);
            });
            drop(rt);
            server.join().unwrap();
            assert_eq!(held(name.to_str().unwrap()), 0, "{name:?}: no descriptor leaked");
        }
    }

    fn echo(code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), RemoteError> {
        if code == 0 {
            return Err(RemoteError::failed("code 0"));
        }
        reply.extend_from_slice(data);
        Ok(())
    }

    /// Big replies leave their data where the handler wrote it (a tail
    /// written after the rest) only when nothing follows them; the bytes
    /// that go out are the same replies either way.
    #[test]
    fn a_big_reply_is_sent_from_where_it_was_written() {
        let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        for order in [[&big[..], b"small"], [b"small", &big[..]], [&big[..], &big[..]]] {
            let mut buf = Vec::new();
            for (i, d) in order.iter().enumerate() {
                request(&mut buf, i as u32 + 1, 1, d, 0, 0);
            }
            let mut a = answerer();
            let (mut out, mut out_fds) = (Vec::new(), OutFds::new());
            a.answer(&mut buf, &mut VecDeque::new(), &mut out, &mut out_fds).unwrap();
            let deferred = a.tail.is_some();
            assert_eq!(deferred, order[1].len() >= TAKE_BUFFER, "deferred only when last and big");
            if let Some(t) = a.tail.take() {
                out.extend_from_slice(&t);
            }
            let mut at = 0;
            for (i, d) in order.iter().enumerate() {
                let len = message_len(&out[at..]).unwrap().unwrap();
                let m = parse(&out[at..at + len]).unwrap();
                assert_eq!((m.kind, m.reply_serial, get_bytes(m.body, 0)), (RETURN, Some(i as u32 + 1), Some(&d[..])));
                at += len;
            }
            assert_eq!(at, out.len());
        }
    }

    /// A call due sooner than one already waiting is ended at its own
    /// deadline (the connection's deadline keeper is woken for it, though
    /// it sleeps until the later one's), the later call still gets its
    /// reply, and the keeper ends with the connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sooner_deadline_is_kept_beside_a_later_one_and_the_keeper_goes_with_the_connection() {
        const DEADLINE: Duration = Duration::from_secs(30);
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let g = gate.clone();
        // Code 5 holds the server until the gate opens.
        let handler = move |code: u32, data: &[u8], reply: &mut Vec<u8>| {
            if code == 5 {
                let mut open = g.0.lock().unwrap();
                while !*open {
                    open = g.1.wait(open).unwrap();
                }
            }
            reply.extend_from_slice(data);
            Ok(())
        };
        let (s, c) = UnixStream::pair().unwrap();
        let server = tokio::spawn(serve(s, handler, nix::unistd::getuid().as_raw()));
        let proxy = RemoteProxy::connect(c).await.unwrap();
        let long = proxy.with_timeout(Duration::from_secs(3600));
        let waiting = tokio::spawn(async move { long.send_request(5, b"late").await });
        // The keeper has seen the long call: it sleeps until its deadline.
        tokio::time::timeout(DEADLINE, async {
            while proxy.shared.sweep_at.load(Ordering::Acquire) == u64::MAX {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the keeper looked");
        let e = tokio::time::timeout(DEADLINE, proxy.with_timeout(Duration::from_millis(100)).send_request(1, b"x"))
            .await
            .expect("the short call ended at its own deadline, not the long one's")
            .expect_err("no reply in time");
        assert!(matches!(e, RemoteError::TimedOut(_)), "{e:?}");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        assert_eq!(tokio::time::timeout(DEADLINE, waiting).await.expect("the long call's reply").unwrap().unwrap(), b"late");
        drop(proxy);
        // The server ends (with an error if the short call's late reply
        // was still unread when the client closed: ECONNRESET).
        let ended = tokio::time::timeout(DEADLINE, server).await.expect("the server saw the client go").unwrap();
        assert!(matches!(&ended, Ok(()) | Err(RemoteError::Io(_))), "{ended:?}");
        tokio::time::timeout(DEADLINE, async {
            while metrics.num_alive_tasks() > before {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the deadline keeper ended with its connection");
    }

    /// The server's side of a handshake, by hand (descriptors agreed).
    fn fake_handshake(b: &mut std::os::unix::net::UnixStream) {
        use std::io::{Read, Write};
        let mut got = Vec::new();
        while !got.ends_with(b"BEGIN\r\n") {
            let mut c = [0u8; 256];
            let n = b.read(&mut c).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&c[..n]);
        }
        b.write_all(b"OK 00000000000000000000000000000000\r\nAGREE_UNIX_FD\r\n").unwrap();
    }

    /// What a charged connection (a kept listener) buffers is its uid's:
    /// five servers of one uid each sending 3.5 MiB of a reply they never
    /// finish pass its 16 MiB; exactly one connection is cut, and all is
    /// given back when they go.
    #[test]
    fn what_a_charged_connection_buffers_is_its_uid_s() {
        use std::io::Write;
        const UID: u32 = 70_011;
        const PART: usize = 3_500_000;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        let gone = Arc::new(Mutex::new(gone));
        let mut servers = Vec::new();
        let mut proxies = Vec::new();
        for _ in 0..5 {
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let gone = gone.clone();
            servers.push(std::thread::spawn(move || {
                fake_handshake(&mut b);
                let mut out = Vec::new();
                reply_return(&mut out, 1, 99, "ay", 0, |body| body_bytes(body, &vec![0; PART + 100]));
                // The cut one's write fails half-way: that is the bound.
                let _ = b.write_all(&out[..PART]);
                let _ = gone.lock().unwrap().recv();
            }));
            a.set_nonblocking(true).unwrap();
            let p = rt.block_on(async {
                let p = RemoteProxy::connect(UnixStream::from_std(a).unwrap()).await.unwrap();
                p.charge(crate::budget::Hold::listener(UID).unwrap()).await;
                p
            });
            let watcher = rt.spawn({
                let p = p.clone();
                async move { p.died().await }
            });
            proxies.push((p, watcher));
        }
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let settled = || proxies.iter().filter(|(p, _)| p.is_dead()).count() == 1 && crate::budget::held(UID).0 == 4 * PART;
        while !settled() {
            assert!(
                std::time::Instant::now() < end,
                "never one cut and the rest held: {} cut, held {:?} (want 1 and {})",
                proxies.iter().filter(|(p, _)| p.is_dead()).count(),
                crate::budget::held(UID),
                4 * PART
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(crate::budget::listeners_held(UID), 5);
        drop(go);
        for (p, w) in proxies {
            rt.block_on(w).unwrap();
            drop(p);
        }
        for s in servers {
            s.join().unwrap();
        }
        assert_eq!((crate::budget::held(UID), crate::budget::listeners_held(UID)), ((0, 0), 0));
    }

    /// A task writing the requests other calls left for it is not cut
    /// short by its own reply (that would leave half a message and kill
    /// the connection): one big request blocks the connection, a hundred
    /// small ones queue behind it, the server answers the big one and
    /// reads no more, so its writer is still flushing the hundred when
    /// its reply comes; then every call is answered.
    #[test]
    fn a_writer_flushing_others_requests_outlives_its_own_reply() {
        use std::io::{Read, Write};
        const SMALL: usize = 3900;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        // A small send buffer, so the queued requests (390 KB) can never
        // all fit in the socket while the server does not read: the
        // writer must still be flushing when its reply comes (found by
        // make flake-hunt: with the default buffer it once finished first).
        nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::SndBuf, &(32 * 1024)).unwrap();
        let (read_first, first_read) = std::sync::mpsc::channel::<()>();
        let (go_on, gone_on) = std::sync::mpsc::channel::<()>();
        // The server reads nothing until the hundred are queued: were it
        // to read, a fast machine could write the whole big request, and
        // drain the queue, before the hundred were all there (CI once).
        let (start, started) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            fake_handshake(&mut b);
            started.recv().unwrap();
            let mut buf = Vec::new();
            let mut answered = 0;
            let mut released = false;
            loop {
                while let Some(len) = message_len(&buf).unwrap() {
                    if buf.len() < len {
                        break;
                    }
                    let (serial, data) = {
                        let m = parse(&buf[..len]).unwrap();
                        let body = m.body;
                        (m.serial, get_bytes(body, 4).unwrap().len())
                    };
                    buf.drain(..len);
                    let mut out = Vec::new();
                    reply_return(&mut out, 1000 + serial, serial, "ay", 0, |body| body_bytes(body, &(data as u32).to_le_bytes()));
                    b.write_all(&out).unwrap();
                    answered += 1;
                    if answered == 1 && !released {
                        // The big one is answered: read nothing more until
                        // the test has seen its writer take the queue.
                        read_first.send(()).unwrap();
                        gone_on.recv().unwrap();
                        released = true;
                    }
                }
                if answered == 101 {
                    return;
                }
                let mut c = vec![0u8; 64 * 1024];
                let n = b.read(&mut c).unwrap();
                assert!(n > 0, "the client hung up after {answered} answers");
                buf.extend_from_slice(&c[..n]);
            }
        });
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            a.set_nonblocking(true).unwrap();
            let p = RemoteProxy::connect(UnixStream::from_std(a).unwrap()).await.unwrap();
            let until = |what: &'static str, cond: Box<dyn Fn() -> bool + Send>| async move {
                tokio::time::timeout(std::time::Duration::from_secs(30), async {
                    while !cond() {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("never: {what}"))
            };
            let big = tokio::spawn({
                let p = p.clone();
                async move { p.send_request(1, &vec![1u8; 3 << 20]).await }
            });
            let q = p.clone();
            until("the big request holds the connection", Box::new(move || q.pending_calls() == 1 && q.shared.writer.try_lock().is_err())).await;
            let small: Vec<_> = (0..100)
                .map(|_| {
                    let p = p.clone();
                    tokio::spawn(async move { p.send_request(1, &[2u8; SMALL]).await })
                })
                .collect();
            let q = p.clone();
            until("a hundred small requests queued", Box::new(move || crate::lock(&q.shared.queue).len() >= 100 * SMALL)).await;
            start.send(()).unwrap();
            tokio::task::spawn_blocking(move || first_read.recv().unwrap()).await.unwrap();
            // The big call's reply was read and handed over, while its
            // writer took the queue to write it.
            let q = p.clone();
            until(
                "the big call answered while its writer flushes",
                Box::new(move || q.pending_calls() == 100 && crate::lock(&q.shared.queue).is_empty() && q.shared.writer.try_lock().is_err()),
            )
            .await;
            assert!(!p.is_dead(), "the connection lives");
            go_on.send(()).unwrap();
            assert_eq!(big.await.unwrap().unwrap(), (3u32 << 20).to_le_bytes());
            for s in small {
                assert_eq!(s.await.unwrap().unwrap(), (SMALL as u32).to_le_bytes());
            }
        });
        drop(rt);
        server.join().unwrap();
    }

    /// A server sends replies and nothing else: a call (or signal) from
    /// it kills the client connection instead of piling up unread.
    #[test]
    fn a_message_from_the_server_that_is_no_reply_kills_the_client_connection() {
        use std::io::{Read, Write};
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            fake_handshake(&mut b);
            let mut out = Vec::new();
            request(&mut out, 1, 9, &[0; 1000], 0, 0);
            b.write_all(&out).unwrap();
            let _ = b.read(&mut [0u8; 64]);
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            a.set_nonblocking(true).unwrap();
            let p = RemoteProxy::connect(UnixStream::from_std(a).unwrap()).await.unwrap();
            let e = p.send_request(1, b"").await.unwrap_err();
            assert!(matches!(e, RemoteError::Malformed(_)), "{e:?}");
            assert!(p.is_dead());
        });
        drop(rt);
        server.join().unwrap();
    }

    /// A client pipelining thousands of small calls in one read gets its
    /// replies in batches: the server never gathers much more than
    /// OUT_BATCH before writing (what it read waits in `buf`).
    #[test]
    fn replies_are_written_in_bounded_batches() {
        let mut buf = Vec::new();
        for i in 0..20_000u32 {
            request(&mut buf, i + 1, 1, b"12345678", 0, 0);
        }
        let total = buf.len();
        let mut a = answerer();
        let (mut out, mut out_fds) = (Vec::new(), OutFds::new());
        a.answer(&mut buf, &mut VecDeque::new(), &mut out, &mut out_fds).unwrap();
        assert!(out.len() >= OUT_BATCH && out.len() < OUT_BATCH + 1024, "{} bytes of replies at once", out.len());
        assert!(!buf.is_empty() && buf.len() < total, "the rest waits for the next batch");
        let mut answered = 0;
        while !buf.is_empty() {
            out.clear();
            a.answer(&mut buf, &mut VecDeque::new(), &mut out, &mut out_fds).unwrap();
            assert!(out.len() < OUT_BATCH + 1024);
            answered += 1;
        }
        assert!(answered > 1);
    }

    fn answerer() -> Answerer<impl Handler> {
        Answerer { handler: echo, serial: 0, reply: Vec::new(), reply_fds: Vec::new(), tail: None }
    }

    /// A valid frame of any kind this path speaks, and what it holds.
    #[derive(Debug, Clone)]
    enum Frame {
        Request { serial: u32, code: u32, data: Vec<u8>, oneway: bool },
        Return { serial: u32, to: u32, data: Vec<u8> },
        Error { serial: u32, to: u32, name: String, text: String },
    }

    impl Frame {
        fn encode(&self, out: &mut Vec<u8>) {
            match self {
                Frame::Request { serial, code, data, oneway } => request(out, *serial, *code, data, if *oneway { NO_REPLY } else { 0 }, 0),
                Frame::Return { serial, to, data } => reply_return(out, *serial, *to, "ay", 0, |b| body_bytes(b, data)),
                Frame::Error { serial, to, name, text } => reply_error(out, *serial, *to, name, text),
            }
        }
    }

    fn frame() -> impl proptest::strategy::Strategy<Value = Frame> {
        use proptest::prelude::*;
        let data = proptest::collection::vec(any::<u8>(), 0..600);
        prop_oneof![
            (1u32.., any::<u32>(), data.clone(), any::<bool>()).prop_map(|(serial, code, data, oneway)| Frame::Request { serial, code, data, oneway }),
            (1u32.., 1u32.., data).prop_map(|(serial, to, data)| Frame::Return { serial, to, data }),
            (1u32.., 1u32.., "[a-zA-Z.]{1,40}", ".{0,60}").prop_map(|(serial, to, name, text)| Frame::Error { serial, to, name, text }),
        ]
    }

    /// A change to a valid stream: a byte set, a cut, a length field
    /// rewritten (the header's body or fields length, or an `ay` length).
    #[derive(Debug, Clone)]
    enum Mutation {
        Set(proptest::sample::Index, u8),
        Cut(proptest::sample::Index),
        Length(proptest::sample::Index, u8, u32),
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<proptest::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
            any::<proptest::sample::Index>().prop_map(Mutation::Cut),
            (any::<proptest::sample::Index>(), 0u8..3, prop_oneof![Just(u32::MAX), Just(128 << 20), Just(MAX_MESSAGE as u32), 0u32..2048])
                .prop_map(|(i, w, v)| Mutation::Length(i, w, v)),
        ]
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(Some(n)) = message_len(&b) {
                if n <= b.len() {
                    let _ = parse(&b[..n]);
                }
            }
        }

        /// Valid frames parse to exactly what was encoded, one after the
        /// other in one buffer; the server answers every request that
        /// wants an answer, in order.
        #[test]
        fn valid_frames_round_trip(frames in proptest::collection::vec(frame(), 1..6)) {
            let mut b = Vec::new();
            for f in &frames {
                f.encode(&mut b);
            }
            let mut at = 0;
            for f in &frames {
                let n = message_len(&b[at..]).unwrap().unwrap();
                let m = parse(&b[at..at + n]).unwrap();
                match f {
                    Frame::Request { serial, code, data, oneway } => {
                        proptest::prop_assert_eq!((m.kind, m.serial, m.member, m.signature, m.flags & NO_REPLY != 0), (CALL, *serial, METHOD, "uay", *oneway));
                        proptest::prop_assert_eq!((rd_u32(m.body, 0), get_bytes(m.body, 4)), (Some(*code), Some(&data[..])));
                    }
                    Frame::Return { serial, to, data } => {
                        proptest::prop_assert_eq!((m.kind, m.serial, m.reply_serial, get_bytes(m.body, 0)), (RETURN, *serial, Some(*to), Some(&data[..])));
                    }
                    Frame::Error { serial, to, name, text } => {
                        proptest::prop_assert_eq!((m.kind, m.serial, m.reply_serial, m.error_name, get_str(m.body)), (ERROR, *serial, Some(*to), name.as_str(), Some(text.as_str())));
                    }
                }
                at += n;
            }
            proptest::prop_assert_eq!(at, b.len());
            let mut out = Vec::new();
            let mut buf = b.clone();
            answerer().answer(&mut buf, &mut VecDeque::new(), &mut out, &mut OutFds::new()).unwrap();
            proptest::prop_assert!(buf.is_empty());
            let wanted: Vec<u32> = frames.iter().filter_map(|f| match f { Frame::Request { serial, oneway: false, .. } => Some(*serial), _ => None }).collect();
            let mut got = Vec::new();
            let mut at = 0;
            while let Some(n) = message_len(&out[at..]).unwrap() {
                got.push(parse(&out[at..at + n]).unwrap().reply_serial.unwrap());
                at += n;
            }
            proptest::prop_assert_eq!(got, wanted);
        }

        /// Mutated valid streams, fed to the server's loop and the client's
        /// parser in arbitrary pieces: errors, never a panic, and never a
        /// buffer that holds more than arrived.
        #[test]
        fn mutated_frames_never_panic(frames in proptest::collection::vec(frame(), 1..4), muts in proptest::collection::vec(mutation(), 1..4), piece in 1usize..200) {
            let mut b = Vec::new();
            for f in &frames {
                f.encode(&mut b);
            }
            for m in &muts {
                if b.is_empty() {
                    break;
                }
                match m {
                    Mutation::Set(i, v) => { let i = i.index(b.len()); b[i] = *v; }
                    Mutation::Cut(i) => { let i = i.index(b.len()); b.truncate(i); }
                    Mutation::Length(i, which, v) => {
                        if b.len() >= 16 {
                            let at = match which { 0 => 4, 1 => 12, _ => i.index(b.len() - 3) };
                            let at = at.min(b.len() - 4);
                            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                        }
                    }
                }
            }
            let mut a = answerer();
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for chunk in b.chunks(piece) {
                buf.extend_from_slice(chunk);
                if a.answer(&mut buf, &mut VecDeque::new(), &mut out, &mut OutFds::new()).is_err() {
                    break;
                }
                proptest::prop_assert!(buf.len() <= b.len());
            }
            let mut at = 0;
            while at < b.len() {
                match message_len(&b[at..]) {
                    Ok(Some(n)) if n <= b.len() - at => { let _ = parse(&b[at..at + n]); at += n.max(1); }
                    _ => break,
                }
            }
        }

        /// Requests announcing descriptors, mutated, fed in pieces with
        /// some descriptors: an error or answers, never a panic, and
        /// never more descriptors held than arrived.
        #[test]
        fn mutated_frames_with_fds_never_panic(
            reqs in proptest::collection::vec((proptest::prelude::any::<u32>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), 0u32..4), 1..4),
            muts in proptest::collection::vec(mutation(), 0..3),
            piece in 1usize..200,
            given in 0usize..10,
        ) {
            let mut b = Vec::new();
            for (i, (code, data, n)) in reqs.iter().enumerate() {
                request(&mut b, i as u32 + 1, *code, data, 0, *n);
            }
            for m in &muts {
                match m {
                    Mutation::Set(i, v) => { let i = i.index(b.len()); b[i] = *v; }
                    Mutation::Cut(i) => { let i = i.index(b.len()); b.truncate(i.max(1)); }
                    Mutation::Length(..) => {}
                }
            }
            let mut fds: VecDeque<OwnedFd> = (0..given).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect();
            let mut a = answerer();
            let (mut buf, mut out, mut out_fds) = (Vec::new(), Vec::new(), OutFds::new());
            for chunk in b.chunks(piece) {
                buf.extend_from_slice(chunk);
                if a.answer(&mut buf, &mut fds, &mut out, &mut out_fds).is_err() {
                    break;
                }
                proptest::prop_assert!(fds.len() <= given && out_fds.is_empty());
            }
        }
    }
}
