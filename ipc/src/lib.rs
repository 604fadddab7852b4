//! Accord's IPC layer: D-Bus wire protocol (zbus), used peer to peer.
//!
//! Owns how two processes get a D-Bus connection without a bus daemon:
//! [`serve`] makes the server end of a Unix stream a zbus p2p connection
//! exporting objects, [`connect`] makes the client end, and
//! [`peer_identity`] gives a server the kernel-verified uid/gid/pid of the
//! process on the other end (SO_PEERCRED, never anything the peer says).
//!
//! This crate is the wire and nothing of samgr's: the SA framework
//! (OpenHarmony's safwk: the `SystemAbility` trait, SA hosts, the samgr
//! client, SA profiles and policy) is `accord-safwk` in `samgr/safwk`,
//! built on this.
//!
//! - [`limit`]: message sizes checked on each fixed header, before a
//!   byte of the body is allocated.
//! - [`blob`]: byte payloads that move to a sealed memfd above 1 MiB.
//! - [`remote`]: the fast path, OpenHarmony's remote objects
//!   (`SendRequest(code, data)`) on the D-Bus wire without zbus.
//! - [`fds`]: file descriptors on the fast path (`SCM_RIGHTS`, bounded
//!   per message and per connection) and [`fds::Fd`], a descriptor as a
//!   typed argument.

pub mod blob;
pub mod budget;
pub mod fds;
pub mod limit;
pub mod remote;

use std::os::fd::AsFd;

use thiserror::Error;
use tokio::net::UnixStream;
use zbus::connection::Builder;

/// What can go wrong on a connection.
#[derive(Debug, Error)]
pub enum IpcError {
    #[error("D-Bus connection: {0}")]
    Zbus(#[from] zbus::Error),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer credentials: {0}")]
    Creds(nix::Error),
}

impl IpcError {
    /// The other side is gone (its process died or it hung up): dial or
    /// get the service again to go on.
    pub fn is_dead(&self) -> bool {
        match self {
            IpcError::Zbus(e) => is_dead(e),
            IpcError::Io(e) => io_is_dead(e),
            IpcError::Creds(_) => false,
        }
    }
}

/// Whether a zbus call failed because the other side is gone (its
/// process died or closed the connection).
pub fn is_dead(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::InputOutput(io) if io_is_dead(io))
}

fn io_is_dead(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected)
}

/// The kernel's word on who is at the other end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// SO_PEERCRED of a connected Unix socket.
pub fn peer_identity(sock: &impl AsFd) -> Result<Identity, IpcError> {
    let c = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials).map_err(IpcError::Creds)?;
    Ok(Identity { uid: c.uid(), gid: c.gid(), pid: c.pid() })
}

/// Serves `objects` (path, interface) on the server end of a p2p stream.
/// Returns once the D-Bus handshake with the client is done.
pub async fn serve<I>(stream: UnixStream, objects: Vec<(&str, I)>) -> Result<zbus::Connection, IpcError>
where
    I: zbus::object_server::Interface,
{
    serve_for(stream, objects, None).await
}

/// Largest message an SA's zbus connection reads: a [`blob::Blob`]'s
/// inline bytes ([`blob::INLINE_MAX`], 1 MiB) and room for the rest.
pub const MAX_SA_MESSAGE: usize = 2 << 20;

/// How long a client may take over the D-Bus handshake before the server
/// hangs up (a connection that never authenticates holds nothing for long).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`serve`] on a stream whose SO_PEERCRED does not name the client (a
/// socket pair samgr made): the D-Bus EXTERNAL handshake then expects
/// `client_uid`, the uid samgr verified, instead of the socket's.
/// Incoming messages are limited to [`MAX_SA_MESSAGE`] bytes.
pub async fn serve_for<I>(stream: UnixStream, objects: Vec<(&str, I)>, client_uid: Option<u32>) -> Result<zbus::Connection, IpcError>
where
    I: zbus::object_server::Interface,
{
    serve_limited(stream, objects, client_uid, MAX_SA_MESSAGE).await
}

/// [`serve_for`] reading messages of at most `max_message` bytes (checked
/// on each fixed header, before zbus allocates the message: see
/// [`limit`]); a bigger one closes the connection. The handshake must end
/// within [`HANDSHAKE_TIMEOUT`] (else `TimedOut`).
pub async fn serve_limited<I>(stream: UnixStream, objects: Vec<(&str, I)>, client_uid: Option<u32>, max_message: usize) -> Result<zbus::Connection, IpcError>
where
    I: zbus::object_server::Interface,
{
    let guid = zbus::Guid::generate();
    let mut b = Builder::socket(limit::Limited::new(stream, max_message)).server(guid)?.p2p();
    if let Some(uid) = client_uid {
        b = b.user_id(uid);
    }
    for (path, obj) in objects {
        b = b.serve_at(path, obj)?;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, b.build()).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(IpcError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no D-Bus handshake within {} s", HANDSHAKE_TIMEOUT.as_secs())))),
    }
}

/// Resolves when the peer has closed `conn` (its socket reached EOF).
/// zbus's own close event: no message stream, so waiting costs nothing
/// per message.
pub async fn closed(conn: &zbus::Connection) {
    conn.closed().await
}

/// Locks `m`, going on with the data when a panic poisoned it: the
/// mutexes of the SDK and samgr guard plain tables whose every update is
/// one step, so a panic elsewhere leaves nothing half-written, and a
/// system service keeps serving rather than panicking in turn.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lets this process hold as many descriptors as its hard limit allows
/// (servers hold one connection per client).
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// A tokio stream on a socket descriptor passed over D-Bus (samgr's
/// socket pairs).
pub fn stream_from_fd(fd: std::os::fd::OwnedFd) -> std::io::Result<UnixStream> {
    let s = std::os::unix::net::UnixStream::from(fd);
    s.set_nonblocking(true)?;
    UnixStream::from_std(s)
}

/// The client end of a p2p stream.
pub async fn connect(stream: UnixStream) -> Result<zbus::Connection, IpcError> {
    Ok(Builder::unix_stream(stream).p2p().build().await?)
}
