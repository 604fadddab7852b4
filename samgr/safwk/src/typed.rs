//! Typed system-ability interfaces: what [`crate::interface`] generates
//! code against (OpenHarmony's IDL, written as a Rust trait).
//!
//! ```ignore
//! #[accord_safwk::interface(name = "org.example.Counter")]
//! pub trait Counter {
//!     /// Adds `n` to the total and returns it.
//!     fn add(&self, n: u32) -> u32;
//!     fn take(&self, caller: &Caller, n: u32) -> Result<u32, CounterError>;
//!     #[oneway]
//!     fn note(&self, text: String);
//! }
//! ```
//!
//! gives the trait back (plus `on_idle`, `on_stop`, `on_dump` with default
//! bodies and `into_remote()`), `CounterProxy` (async methods of the same
//! names without the caller, on the remote-object fast path) and
//! `CounterStub` (the server side). Publish an implementation with
//! `host.publish_remote(ID, MyCounter::default().into_remote(), None)` or
//! [`crate::run_remote`]; a client does `samgr.get_proxy::<CounterProxy>(ID)`.
//! A method's first argument may be `caller: &Caller` (who samgr verified;
//! it is not sent by the client). Arguments are values, or shared borrows
//! without a named lifetime (`&str`, `&serde_bytes::Bytes`): those are
//! read where the request was received, not copied (OpenHarmony's
//! `ReadBuffer`), on the fast path and the D-Bus face alike.
//!
//! Results: a plain `T` comes back as `Result<T, RemoteError>`; a
//! `Result<T, E>` as `Result<T, CallError<E>>`, the SA's own error
//! ([`CallError::Sa`]) apart from the transport's ([`CallError::Ipc`],
//! with `is_dead()`). `#[oneway]` methods send no reply (OpenHarmony's
//! TF_ASYNC) and run in order with the connection's other requests.
//!
//! # File descriptors and blobs
//!
//! An argument or result (or a field of one) may be a file descriptor,
//! [`Fd`] (an `OwnedFd`), or a byte payload of any size, [`Blob`]:
//!
//! ```ignore
//! #[accord_safwk::interface(name = "org.example.Files")]
//! pub trait Files {
//!     /// Writes to the caller's pipe.
//!     fn write_to(&self, out: Fd, text: String) -> u32;
//!     fn open(&self, path: String) -> Result<Fd, FilesError>;
//!     fn digest(&self, data: Blob) -> Blob;
//! }
//! ```
//!
//! A descriptor crosses the socket itself (SCM_RIGHTS; the receiver's copy
//! is close-on-exec and closed when its `Fd` is dropped); the payload holds
//! its index in the message's list, as D-Bus's `h` does. The sender keeps
//! its own descriptor: the proxy sends a duplicate and drops the argument
//! when the call returns. A [`Blob`] up to 1 MiB travels inline, above in a
//! sealed memfd (a descriptor): the receiver checks it as it decodes
//! (sealed against writing, growing and shrinking, at most 128 MiB), so a
//! request with an unsealed memfd is refused with InvalidArgs naming the
//! argument ("shared payload is not sealed") before the method runs, and
//! a reply with one fails the call the same way. At most 16 descriptors go
//! in one message (`accord_ipc::fds::MAX_FDS`): more fail the call before
//! it is sent (a reply with more is an error for the client). Descriptor
//! bounds on the connection: see [`accord_ipc::remote`].
//!
//! The D-Bus face does not carry descriptors: a method with an `Fd`
//! argument answers `InvalidArgs` there ("a descriptor travels only on the
//! fast path"), one with an `Fd` result an error, and a `Blob` goes only
//! inline (its D-Bus form is `(ayah)`).
//!
//! # The wire
//!
//! A request is `SendRequest(code, data)`: `code` is the method's, derived
//! from its name (FNV-1a folded into 1..=0x00FF_FFFF, OpenHarmony's user
//! range) or pinned with `#[code = N]`, so codes do not move when methods
//! are reordered; `data` is one version byte ([`WIRE_VERSION`]) and the
//! arguments in order (an [`Fd`] as its `u32` index in the message's
//! descriptors, a [`Blob`] as its inline bytes and an optional index), in [postcard](https://docs.rs/postcard) (a compact,
//! non-self-describing serde format: varint integers, length-prefixed
//! bytes and strings; chosen for speed and size, see ARCHITECTURE.md). A
//! reply is a version byte and the result in postcard. An unknown code is
//! answered with `org.freedesktop.DBus.Error.UnknownMethod`, a body that
//! does not decode with `org.freedesktop.DBus.Error.InvalidArgs` naming
//! the method and argument, a method that panics with
//! `org.accord.Error.Panicked` (the host carries on).
//!
//! Decoding has a memory budget: each value costs its in-memory size (at
//! least a byte) and strings their length, at most 16 times the encoded
//! size plus 1 MiB (64 MiB in all); past it the argument is refused with
//! InvalidArgs ("decoding N bytes would take more than M bytes of
//! memory"). Ordinary values stay far inside it; a `Vec` of a lopsided
//! enum (one empty variant, one of kilobytes) is what it stops. A
//! [`Listener`] a non-root client sends counts against that uid's share
//! of listeners the process keeps (64, `accord_ipc::budget`) until it, or
//! the proxy it became, is dropped.
//!
//! # Evolving an interface (the rule)
//!
//! - Add methods freely (new codes; an old server answers UnknownMethod).
//! - Add an argument only at the end of a method, marked `#[added]`, of a
//!   type whose `Default` means "not given": an older client's request
//!   leaves it out and it arrives as the default. An older server ignores
//!   arguments it does not know, and logs once that it did.
//! - Extend a result only by fields at the end of the returned value (an
//!   older client reads what it knows and ignores the rest).
//! - Never reorder, remove or change the type of an argument or field;
//!   renaming a method changes its code unless it is pinned.
//!
//! # The D-Bus face
//!
//! Each method can also be called by name (CamelCase) with its D-Bus
//! signature (types implement `zvariant::Type` as well as serde's traits),
//! and `Introspect` lists them: `dbus-send --peer=... --print-reply
//! /org/accord/RemoteObject org.example.Counter.Add uint32:2` works. An
//! SA error `E` (it implements `Display`) is the D-Bus error
//! `<interface>.Error` with that text.

use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};
use zbus::zvariant;

pub use accord_ipc::blob::Blob;
pub use accord_ipc::fds::Fd;
pub use accord_ipc::remote::{RemoteError, RemoteProxy};

/// A listener object passed in a call (OpenHarmony's callback: an
/// `IRemoteObject` argument the service calls back). The sender wraps an
/// implementation of a typed interface (`Listener::new(obj.into_remote())`);
/// each time the listener is sent, the sender's process serves `obj` on a
/// fresh private socket pair and the other end travels as a descriptor.
/// The receiver turns it into that interface's proxy with
/// [`Listener::connect`] and calls it like any SA (its `died()` says the
/// sender went away). Declared in a method as `l: Listener<FooProxy>`.
///
/// The sender's object sees the sender itself as `caller` (the pair is
/// private to the one receiver); it is served until the receiver drops its
/// proxy or the sender's process exits. Fast path only: the D-Bus face
/// refuses it as it refuses any descriptor.
pub struct Listener<P> {
    state: ListenerState,
    _proxy: std::marker::PhantomData<fn() -> P>,
}

enum ListenerState {
    /// Made here: served when sent.
    Local(std::sync::Arc<dyn crate::RemoteObject>),
    /// Received: the end to connect to, and its place in its sender's
    /// listener budget (`None`: not counted, root or a reply).
    Received(OwnedFd, Option<accord_ipc::budget::Hold>),
}

impl<P: TypedProxy> Listener<P> {
    /// `obj` (a typed interface's `into_remote()`) as an argument. Sending
    /// it needs a tokio runtime (the serving runs there).
    pub fn new(obj: std::sync::Arc<dyn crate::RemoteObject>) -> Self {
        Listener { state: ListenerState::Local(obj), _proxy: std::marker::PhantomData }
    }

    /// The receiver's proxy on the sender's object. A listener made in this
    /// process (not received) has nothing to connect to: an error. The
    /// handshake must end within 10 s, and at most
    /// [`MAX_LISTENER_HANDSHAKES`] run at once in a process (more fail at
    /// once): a sender that never answers costs its receiver a descriptor
    /// for 10 s at most, and cannot pile them up.
    pub async fn connect(self) -> Result<P, RemoteError> {
        let (fd, hold) = match self.state {
            ListenerState::Received(fd, hold) => (fd, hold),
            ListenerState::Local(_) => return Err(RemoteError::failed("this listener was made here, not received: send it to connect to it")),
        };
        /// The uid it is counted for (per uid), and whether it is counted
        /// in the process's pool.
        struct InFlight(Option<u32>, bool);
        impl Drop for InFlight {
            fn drop(&mut self) {
                if self.1 {
                    LISTENER_HANDSHAKES.fetch_sub(1, Ordering::AcqRel);
                }
                if let Some(uid) = self.0 {
                    let mut per = HANDSHAKES_PER_UID.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(n) = per.get_mut(&uid) {
                        *n -= 1;
                        if *n == 0 {
                            per.remove(&uid);
                        }
                    }
                }
            }
        }
        let limits = |message: String| {
            warn!("a listener refused: {message}");
            RemoteError::Remote { name: "org.freedesktop.DBus.Error.LimitsExceeded".into(), message }
        };
        let uid = hold.as_ref().map(|h| h.uid());
        if let Some(uid) = uid {
            // One uid's silent listeners cannot take every slot.
            let mut per = HANDSHAKES_PER_UID.lock().unwrap_or_else(|p| p.into_inner());
            let n = per.entry(uid).or_default();
            if *n >= MAX_LISTENER_HANDSHAKES_PER_UID {
                return Err(limits(format!("uid {uid} has {MAX_LISTENER_HANDSHAKES_PER_UID} listener handshakes under way in this process, its share")));
            }
            *n += 1;
        }
        // Root's and system's listeners (and those that came in replies,
        // counted for nobody) are not in the pool other uids can fill: a
        // crowd of uids with silent listeners cannot shut them out.
        let pooled = uid.is_some_and(|u| u != SYSTEM_UID);
        let in_flight = InFlight(uid, pooled);
        if pooled && LISTENER_HANDSHAKES.fetch_add(1, Ordering::AcqRel) >= MAX_LISTENER_HANDSHAKES {
            drop(in_flight);
            return Err(limits(format!("{MAX_LISTENER_HANDSHAKES} listener handshakes already under way in this process")));
        }
        let _in_flight = in_flight;
        let proxy = RemoteProxy::connect(accord_ipc::stream_from_fd(fd)?).await?;
        if let Some(hold) = hold {
            proxy.charge(hold).await;
        }
        Ok(P::from_remote(proxy))
    }
}

impl<P> std::fmt::Debug for Listener<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.state {
            ListenerState::Local(_) => "Listener(local)",
            ListenerState::Received(..) => "Listener(received)",
        })
    }
}

impl<P> Serialize for Listener<P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let theirs = match &self.state {
            ListenerState::Local(obj) => {
                let rt = tokio::runtime::Handle::try_current().map_err(|_| S::Error::custom("a listener is sent from within a tokio runtime"))?;
                let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(S::Error::custom)?;
                ours.set_nonblocking(true).map_err(S::Error::custom)?;
                let obj = obj.clone();
                rt.spawn(async move {
                    // Ends when the receiver hangs up, or at once if this
                    // message is never sent (its end is then closed).
                    match tokio::net::UnixStream::from_std(ours) {
                        Ok(stream) => {
                            if let Err(e) = crate::host::serve_listener(stream, obj).await {
                                tracing::debug!("listener connection ended: {e}");
                            }
                        }
                        Err(e) => warn!("cannot serve a listener: {e}"),
                    }
                });
                OwnedFd::from(theirs)
            }
            // Passed on: the receiver of this message gets the same sender.
            ListenerState::Received(fd, _) => fd.try_clone().map_err(S::Error::custom)?,
        };
        Fd(theirs).serialize(s)
    }
}

impl<'de, P> serde::Deserialize<'de> for Listener<P> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fd = Fd::deserialize(d)?;
        // Kept in this process on behalf of the uid whose request this is:
        // counted against that uid's share (the descriptor closes on a
        // refusal).
        let hold = match accord_ipc::budget::sender() {
            Some(uid) => Some(accord_ipc::budget::Hold::listener(uid).map_err(|e| serde::de::Error::custom(accord_ipc::fds::note_error(e)))?),
            None => None,
        };
        Ok(Listener { state: ListenerState::Received(fd.into_inner(), hold), _proxy: std::marker::PhantomData })
    }
}

impl<P> zvariant::Type for Listener<P> {
    const SIGNATURE: &'static zvariant::Signature = &zvariant::Signature::Fd;
}

/// Most [`Listener::connect`] handshakes under way at once in a process
/// for listeners of uids other than root and system (each of which has
/// only its per-uid share, [`MAX_LISTENER_HANDSHAKES_PER_UID`]).
pub const MAX_LISTENER_HANDSHAKES: usize = 64;

/// OpenHarmony's system uid.
const SYSTEM_UID: u32 = 1000;

static LISTENER_HANDSHAKES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Most [`Listener::connect`] handshakes under way at once for listeners
/// one non-root uid sent.
pub const MAX_LISTENER_HANDSHAKES_PER_UID: usize = 8;

static HANDSHAKES_PER_UID: std::sync::Mutex<std::collections::BTreeMap<u32, usize>> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The encoding's version: the first byte of every request and reply.
pub const WIRE_VERSION: u8 = 1;

/// A proxy made by [`crate::interface`].
pub trait TypedProxy: Sized {
    /// The D-Bus interface name.
    const INTERFACE: &'static str;
    /// Wraps an authenticated fast-path connection.
    fn from_remote(remote: RemoteProxy) -> Self;
}

/// Why a call of a method returning `Result<T, E>` failed.
#[derive(Debug)]
pub enum CallError<E> {
    /// The SA answered with its own error.
    Sa(E),
    /// The call did not complete: the SA is gone ([`CallError::is_dead`]),
    /// the deadline passed, the request was refused.
    Ipc(RemoteError),
}

impl<E> CallError<E> {
    /// The SA is gone: get it again to go on.
    pub fn is_dead(&self) -> bool {
        matches!(self, CallError::Ipc(e) if e.is_dead())
    }
}

impl<E: std::fmt::Display> std::fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Sa(e) => e.fmt(f),
            CallError::Ipc(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Sa(e) => Some(e),
            CallError::Ipc(e) => Some(e),
        }
    }
}

fn invalid_args(message: String) -> RemoteError {
    RemoteError::Remote { name: "org.freedesktop.DBus.Error.InvalidArgs".into(), message }
}

/// Writes a request's data: the version byte, then `args` (a tuple).
pub fn encode_request<T: Serialize + ?Sized>(args: &T, out: &mut Vec<u8>) -> Result<(), RemoteError> {
    out.push(WIRE_VERSION);
    postcard::to_io(args, &mut *out).map(|_| ()).map_err(|e| RemoteError::Malformed(postcard_what(&e)))
}

fn postcard_what(e: &postcard::Error) -> &'static str {
    match e {
        postcard::Error::SerializeSeqLengthUnknown => "a sequence of unknown length cannot be encoded",
        postcard::Error::SerdeSerCustom => {
            "the value cannot be encoded (more than 16 descriptors in one message, a descriptor that cannot be duplicated, a blob of several)"
        }
        _ => "the value cannot be encoded",
    }
}

/// [`encode_request`] of arguments that may hold descriptors ([`Fd`], a
/// shared [`Blob`]): returns them, in index order, for
/// [`RemoteProxy::send_request_fds`].
pub fn encode_request_fds<T: Serialize + ?Sized>(args: &T, out: &mut Vec<u8>) -> Result<Vec<OwnedFd>, RemoteError> {
    let (r, fds) = accord_ipc::fds::encode_with(|| encode_request(args, out));
    r.map(|()| fds)
}

/// [`encode_reply`] of a result that may hold descriptors: returns them.
pub fn encode_reply_fds<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<Vec<OwnedFd>, RemoteError> {
    let (r, fds) = accord_ipc::fds::encode_with(|| encode_reply(v, out));
    r.map(|()| fds)
}

/// Runs `f` (the decoding of a request's arguments) with the request's
/// descriptors at hand; those no argument took are closed.
pub fn decode_with<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    accord_ipc::fds::decode_with(fds, f)
}

/// [`decode_reply`] of a reply that came with descriptors.
pub fn decode_reply_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, RemoteError> {
    accord_ipc::fds::decode_with(fds, || decode_reply(bytes))
}

/// The arguments of a request, after its version byte.
pub fn open_request<'a>(data: &'a [u8], interface: &str) -> Result<&'a [u8], RemoteError> {
    // One decoding budget for all the arguments.
    crate::budgeted::open_request(data.len());
    match data.split_first() {
        Some((&WIRE_VERSION, rest)) => Ok(rest),
        Some((v, _)) => Err(invalid_args(format!("{interface}: request in wire version {v}; this server speaks {WIRE_VERSION}"))),
        None => Err(invalid_args(format!("{interface}: empty request (no version byte)"))),
    }
}

/// Decodes the next argument (it may borrow from the request: `&str`,
/// `&serde_bytes::Bytes` are read in place, not copied).
pub fn arg<'a, T: Deserialize<'a>>(rest: &mut &'a [u8], interface: &str, member: &str, name: &str) -> Result<T, RemoteError> {
    match crate::budgeted::take_arg::<T>(rest) {
        Ok((v, tail)) => {
            *rest = tail;
            Ok(v)
        }
        Err(e) => Err(invalid_args(format!("{interface}.{member}: argument `{name}`: {}", de_why(&e)))),
    }
}

/// What a decoding error says, with the value's own words when it
/// refused (a descriptor not there, an unsealed memfd).
fn de_why(e: &postcard::Error) -> String {
    match e {
        postcard::Error::SerdeDeCustom => accord_ipc::fds::take_error().unwrap_or_else(|| e.to_string()),
        _ => e.to_string(),
    }
}

/// Decodes an `#[added]` argument: its default when an older client left
/// it out.
pub fn added_arg<'a, T: Deserialize<'a> + Default>(rest: &mut &'a [u8], interface: &str, member: &str, name: &str) -> Result<T, RemoteError> {
    if rest.is_empty() {
        return Ok(T::default());
    }
    arg(rest, interface, member, name)
}

/// After the arguments this server knows: bytes left are arguments of a
/// newer client's, ignored (logged once per method).
pub fn end_args(rest: &[u8], interface: &str, member: &str, warned: &AtomicBool) {
    if !rest.is_empty() && !warned.swap(true, Ordering::Relaxed) {
        warn!("{interface}.{member}: {} bytes of arguments this version does not know were ignored (a newer client); logged once", rest.len());
    }
}

/// Runs a method, turning a panic into an error for its client (the host
/// carries on serving).
pub fn guard<R>(interface: &str, member: &str, f: impl FnOnce() -> R) -> Result<R, RemoteError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let why = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "a panic".into());
        error!("{interface}.{member} panicked: {why}");
        RemoteError::Remote { name: "org.accord.Error.Panicked".into(), message: format!("{interface}.{member} panicked: {why}") }
    })
}

/// Writes a reply: the version byte, then `v`.
pub fn encode_reply<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), RemoteError> {
    out.push(WIRE_VERSION);
    postcard::to_io(v, &mut *out).map(|_| ()).map_err(|e| RemoteError::Malformed(postcard_what(&e)))
}

/// Reads a reply; bytes after the value (a newer server's extension) are
/// ignored.
pub fn decode_reply<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RemoteError> {
    // What a reply carries is not the served client's to pay for (a
    // listener in it came from the SA this thread called).
    accord_ipc::budget::with_sender(None, || decode_reply_as_is(bytes))
}

fn decode_reply_as_is<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RemoteError> {
    match bytes.split_first() {
        Some((&WIRE_VERSION, rest)) => crate::budgeted::take::<T>(rest).map(|(v, _)| v).map_err(|e| match e {
            // A value of the result refused (an unsealed memfd, a
            // descriptor that did not come): say why.
            postcard::Error::SerdeDeCustom => invalid_args(format!("the reply: {}", de_why(&e))),
            _ => RemoteError::Malformed("reply does not decode as the method's result"),
        }),
        Some(_) => Err(RemoteError::Malformed("reply in another wire version")),
        None => Err(RemoteError::Malformed("empty reply")),
    }
}

/// The answer to a code no method has.
pub fn unknown_code(interface: &str, code: u32) -> RemoteError {
    RemoteError::Remote {
        name: "org.freedesktop.DBus.Error.UnknownMethod".into(),
        message: format!("{interface} has no method with request code {code} (a newer client, or another interface?)"),
    }
}

// --- the D-Bus face -----------------------------------------------------------

fn dbus_ctxt() -> zvariant::serialized::Context {
    zvariant::serialized::Context::new_dbus(zvariant::LE, 0)
}

/// `T`'s D-Bus signature.
pub fn signature_of<T: zvariant::Type>() -> String {
    T::SIGNATURE.to_string()
}

/// Checks that a call of a method without arguments has none.
pub fn dbus_no_args(signature: &str, interface: &str, member: &str) -> Result<(), RemoteError> {
    if signature.is_empty() {
        Ok(())
    } else {
        Err(invalid_args(format!("{interface}.{member} takes no arguments, not {signature:?}")))
    }
}

/// A D-Bus body to decode arguments from ([`dbus_args`]; kept by the
/// caller, so arguments may borrow from it).
pub fn dbus_body(body: &[u8]) -> zvariant::serialized::Data<'_, 'static> {
    zvariant::serialized::Data::new(body, dbus_ctxt())
}

/// Decodes a D-Bus body ([`dbus_body`]) of signature `signature` as the
/// tuple `T` (whose values may borrow from the body: `&str`,
/// `&serde_bytes::Bytes`).
pub fn dbus_args<'d, T: Deserialize<'d> + zvariant::Type>(
    data: &'d zvariant::serialized::Data<'_, '_>,
    signature: &str,
    interface: &str,
    member: &str,
) -> Result<T, RemoteError> {
    let want = T::SIGNATURE.to_string_no_parens();
    if signature != want {
        return Err(invalid_args(format!("{interface}.{member} takes {want:?}, not {signature:?}")));
    }
    data.deserialize::<T>().map(|(v, _)| v).map_err(|e| invalid_args(format!("{interface}.{member}: {e}")))
}

/// Writes `v` as a D-Bus reply body; returns its signature.
pub fn dbus_reply<T: Serialize + zvariant::Type>(v: &T, out: &mut Vec<u8>) -> Result<String, RemoteError> {
    let data = zvariant::to_bytes(dbus_ctxt(), v).map_err(|_| RemoteError::Malformed("the result has no D-Bus form"))?;
    out.extend_from_slice(data.bytes());
    Ok(T::SIGNATURE.to_string())
}

/// [`dbus_reply`] of a method's `Result`: an SA error is the D-Bus error
/// `<interface>.Error` with its text.
pub fn dbus_reply_result<T: Serialize + zvariant::Type, E: std::fmt::Display>(
    r: Result<T, E>,
    interface: &str,
    out: &mut Vec<u8>,
) -> Result<String, RemoteError> {
    match r {
        Ok(v) => dbus_reply(&v, out),
        Err(e) => Err(RemoteError::Remote { name: format!("{interface}.Error"), message: e.to_string() }),
    }
}

/// One method as `Introspect` lists it.
pub struct MethodInfo {
    /// D-Bus member name.
    pub name: &'static str,
    /// (name, D-Bus signature) of each argument.
    pub args: Vec<(&'static str, String)>,
    /// The result's signature (`None`: no value).
    pub out: Option<String>,
    pub oneway: bool,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The `<interface>` element of `interface` with `methods`.
pub fn introspect_xml(interface: &str, methods: &[MethodInfo]) -> String {
    let mut x = format!(" <interface name=\"{}\">\n", xml_escape(interface));
    for m in methods {
        let _ = write!(x, "  <method name=\"{}\">", xml_escape(m.name));
        for (n, t) in &m.args {
            let _ = write!(x, "<arg name=\"{}\" type=\"{}\" direction=\"in\"/>", xml_escape(n), xml_escape(t));
        }
        if let Some(t) = &m.out {
            let _ = write!(x, "<arg type=\"{}\" direction=\"out\"/>", xml_escape(t));
        }
        if m.oneway {
            x.push_str("<annotation name=\"org.freedesktop.DBus.Method.NoReply\" value=\"true\"/>");
        }
        x.push_str("</method>\n");
    }
    x.push_str(" </interface>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AnyProxy(#[allow(dead_code)] RemoteProxy);
    impl TypedProxy for AnyProxy {
        const INTERFACE: &'static str = "org.x.Any";
        fn from_remote(remote: RemoteProxy) -> Self {
            AnyProxy(remote)
        }
    }

    /// A listener in a request is charged to the uid the thread serves;
    /// one in a reply (from an SA this thread called) is not.
    #[test]
    fn listeners_are_charged_to_who_sent_them() {
        let (_ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut r = Vec::new();
        let fds = encode_reply_fds(&Fd(theirs.into()), &mut r).unwrap();
        let (_ours2, theirs2) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut q = Vec::new();
        let qfds = encode_request_fds(&(&Fd(theirs2.into()),), &mut q).unwrap();
        accord_ipc::budget::with_sender(Some(70_003), || {
            let from_reply = decode_reply_fds::<Listener<AnyProxy>>(&r, fds).unwrap();
            assert_eq!(accord_ipc::budget::listeners_held(70_003), 0, "a reply's listener is not the served uid's");
            let from_request: Listener<AnyProxy> = decode_with(qfds, || {
                let mut rest = open_request(&q, "org.x.I").unwrap();
                arg(&mut rest, "org.x.I", "M", "l").unwrap()
            });
            assert_eq!(accord_ipc::budget::listeners_held(70_003), 1, "a request's listener is");
            drop((from_reply, from_request));
        });
        assert_eq!(accord_ipc::budget::listeners_held(70_003), 0);
        assert_eq!(accord_ipc::budget::sender(), None, "restored");
    }

    #[test]
    fn requests_and_replies_round_trip_and_refuse_other_versions() {
        let mut d = Vec::new();
        encode_request(&(&7u32, &"hi".to_owned(), &vec![1u8, 2]), &mut d).unwrap();
        assert_eq!(d[0], WIRE_VERSION);
        let mut rest = open_request(&d, "i").unwrap();
        assert_eq!(arg::<u32>(&mut rest, "i", "M", "a").unwrap(), 7);
        assert_eq!(arg::<String>(&mut rest, "i", "M", "b").unwrap(), "hi");
        assert_eq!(arg::<Vec<u8>>(&mut rest, "i", "M", "c").unwrap(), vec![1, 2]);
        assert!(rest.is_empty());
        // An #[added] argument an older client left out.
        assert_eq!(added_arg::<u64>(&mut rest, "i", "M", "d").unwrap(), 0);
        let e = open_request(&[9, 1], "org.x.I").unwrap_err().to_string();
        assert!(e.contains("wire version 9"), "{e}");
        let e = arg::<String>(&mut &[5u8, b'a'][..], "org.x.I", "Say", "text").unwrap_err().to_string();
        assert!(e.contains("org.x.I.Say") && e.contains("`text`"), "{e}");

        let mut r = Vec::new();
        encode_reply(&Ok::<u32, String>(5), &mut r).unwrap();
        assert_eq!(decode_reply::<Result<u32, String>>(&r).unwrap(), Ok(5));
        // A newer server's longer result: the known prefix is read.
        let mut longer = Vec::new();
        encode_reply(&(5u32, 6u32), &mut longer).unwrap();
        assert_eq!(decode_reply::<u32>(&longer).unwrap(), 5);
        assert!(decode_reply::<u32>(&[]).is_err());
    }

    #[test]
    fn a_panic_is_an_error_for_the_client() {
        let e = guard("org.x.I", "Boom", || -> u32 { panic!("on purpose") }).unwrap_err();
        assert!(matches!(&e, RemoteError::Remote { name, message } if name == "org.accord.Error.Panicked" && message.contains("on purpose")), "{e:?}");
    }

    #[test]
    fn the_dbus_face_decodes_by_signature() {
        let mut body = Vec::new();
        let sig = dbus_reply(&(3u32, "x".to_owned()), &mut body).unwrap();
        assert_eq!(sig, "(us)");
        let data = dbus_body(&body);
        let (a, b): (u32, &str) = dbus_args(&data, "us", "i", "M").unwrap();
        assert_eq!((a, b), (3, "x"));
        let e = dbus_args::<(u32, String)>(&dbus_body(&body), "u", "org.x.I", "M").unwrap_err().to_string();
        assert!(e.contains("org.x.I.M takes \"us\""), "{e}");
        let xml = introspect_xml("org.x.I", &[MethodInfo { name: "Add", args: vec![("n", "u".into())], out: Some("u".into()), oneway: false }]);
        assert!(xml.contains(r#"<method name="Add"><arg name="n" type="u" direction="in"/><arg type="u" direction="out"/></method>"#), "{xml}");
    }
}
