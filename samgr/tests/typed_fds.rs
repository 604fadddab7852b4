//! File descriptors and blobs as arguments and results of typed
//! interfaces (issue 8), through the real samgr: an fd argument the SA
//! writes to, an fd result, several in one call and in order, blobs of
//! 100 KiB (inline) and 3 MiB (a sealed memfd) both ways, an unsealed
//! memfd refused both ways, and the fast path's descriptor bounds under
//! attack (a request announcing more than it carries, descriptors no
//! message claims, more than a message may carry, as uid 2000), each
//! closing the connection and leaking nothing.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_safwk::typed::{Blob, CallError, Fd, RemoteError};
use accord_safwk::{interface, Caller, SaHost, Samgr};
use serde_bytes::ByteBuf;

mod common;
use common::closed_by_peer;

const DEADLINE: Duration = Duration::from_secs(30);
const ATTACKER: u32 = 2000;
const FILES: u32 = 2400;
const FORGED: u32 = 2401;

#[interface(name = "org.accord.test.Files")]
pub trait Files {
    /// Writes `text` to `out` (a pipe's write end); returns the bytes
    /// written.
    fn write_to(&self, out: Fd, text: String) -> u32;
    /// The read end of a pipe `text` was written to (and closed).
    fn open_reading(&self, text: String) -> Fd;
    /// Both back, swapped.
    fn swap(&self, a: Fd, b: Fd) -> (Fd, Fd);
    /// Whether the blob came shared, and its bytes back in a new blob.
    fn echo_blob(&self, b: Blob) -> Result<(bool, Blob), String>;
    #[oneway]
    fn note_to(&self, out: Fd, text: String);
}

/// `Files` as a forger writes it: `echo_blob`'s blob in its fast-path
/// form (inline bytes, zero or one descriptor index), so any descriptor
/// can be sent or returned as a blob.
#[interface(name = "org.accord.test.Files")]
pub trait FilesForged {
    fn echo_blob(&self, b: (ByteBuf, Vec<Fd>)) -> Result<(bool, (ByteBuf, Vec<Fd>)), String>;
}

struct Impl;

fn pipe_with(text: &str) -> OwnedFd {
    let (r, w) = nix::unistd::pipe().unwrap();
    std::fs::File::from(w).write_all(text.as_bytes()).unwrap();
    r
}

impl Files for Impl {
    fn write_to(&self, out: Fd, text: String) -> u32 {
        std::fs::File::from(out.0).write_all(text.as_bytes()).unwrap();
        text.len() as u32
    }
    fn open_reading(&self, text: String) -> Fd {
        Fd(pipe_with(&text))
    }
    fn swap(&self, a: Fd, b: Fd) -> (Fd, Fd) {
        (b, a)
    }
    fn echo_blob(&self, b: Blob) -> Result<(bool, Blob), String> {
        let shared = b.is_shared();
        let bytes = b.into_bytes().map_err(|e| e.to_string())?;
        Ok((shared, Blob::new(bytes).map_err(|e| e.to_string())?))
    }
    fn note_to(&self, out: Fd, text: String) {
        let _ = std::fs::File::from(out.0).write_all(text.as_bytes());
    }
}

/// Answers `echo_blob` with an unsealed memfd as the blob.
struct Forger;

fn unsealed_memfd(name: &std::ffi::CStr) -> OwnedFd {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(&[1; 4096]).unwrap();
    f.into()
}

impl FilesForged for Forger {
    fn echo_blob(&self, _b: (ByteBuf, Vec<Fd>)) -> Result<(bool, (ByteBuf, Vec<Fd>)), String> {
        Ok((true, (ByteBuf::new(), vec![Fd(unsealed_memfd(c"accord-forged"))])))
    }
}

/// samgr in this process on a socket uid 2000 may reach (it may get the
/// test SAs), with a host publishing `Impl` as 2400 and `Forger` as 2401.
async fn setup() -> (tempfile::TempDir, PathBuf, SaHost) {
    let (dir, sock) =
        common::open_samgr(r#"{"rules": [{"ids": "2400-2401", "register": {"uids": []}, "get": {"uids": [2000]}}]}"#, "fds.json", Default::default());
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish_remote(FILES, Impl.into_remote(), None).await.unwrap();
    host.publish_remote(FORGED, Forger.into_remote(), None).await.unwrap();
    (dir, sock, host)
}

/// Reads `fd` to its end (off the runtime).
async fn read_all(fd: OwnedFd) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    })
    .await
    .unwrap()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fds_and_blobs_go_both_ways_through_samgr() {
    let (_dir, sock, _host) = setup().await;
    let samgr = Samgr::connect(&sock).await.unwrap();
    let f = samgr.get_proxy::<FilesProxy>(FILES).await.unwrap();

    // An fd argument: the SA writes to our pipe.
    let (r, w) = nix::unistd::pipe().unwrap();
    assert_eq!(f.write_to(Fd(w), "hello".into()).await.unwrap(), 5);
    assert_eq!(read_all(r).await, "hello", "the SA wrote to our pipe, and nobody holds its write end any more");
    // One way, in order with the connection's other calls.
    let (r, w) = nix::unistd::pipe().unwrap();
    f.note_to(Fd(w), "noted".into()).await.unwrap();
    assert_eq!(read_all(r).await, "noted");

    // An fd result.
    let fd = f.open_reading("world".into()).await.unwrap();
    assert_eq!(read_all(fd.0).await, "world");

    // Several in one call, each to its index.
    let (r1, w1) = nix::unistd::pipe().unwrap();
    let (r2, w2) = nix::unistd::pipe().unwrap();
    let (x, y) = f.swap(Fd(w1), Fd(w2)).await.unwrap();
    std::fs::File::from(x.0).write_all(b"to 2").unwrap();
    std::fs::File::from(y.0).write_all(b"to 1").unwrap();
    assert_eq!((read_all(r1).await, read_all(r2).await), ("to 1".to_owned(), "to 2".to_owned()));

    // Blobs both ways: 3 MiB in a sealed memfd, 100 KiB inline.
    for (n, shared) in [(3 << 20, true), (100 << 10, false)] {
        let b = Blob::new(data(n)).unwrap();
        assert_eq!(b.is_shared(), shared);
        let (came_shared, back) = f.echo_blob(b).await.unwrap();
        assert_eq!((came_shared, back.is_shared()), (shared, shared), "{n} bytes");
        assert_eq!(back.into_bytes().unwrap(), data(n), "{n} bytes");
    }

    // Many tasks on one connection, each with its own descriptors.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let text = format!("task {t} call {i}");
                let fd = f.open_reading(text.clone()).await.unwrap();
                assert_eq!(read_all(fd.0).await, text);
                let (r, w) = nix::unistd::pipe().unwrap();
                assert_eq!(f.write_to(Fd(w), text.clone()).await.unwrap() as usize, text.len());
                assert_eq!(read_all(r).await, text);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // Exactly as many as a message may carry go; those the method does
    // not take are closed.
    let (r1, w1) = nix::unistd::pipe().unwrap();
    let (r2, w2) = nix::unistd::pipe().unwrap();
    let mut d = Vec::new();
    let mut fds = accord_safwk::typed::encode_request_fds(&(&Fd(w1), &Fd(w2)), &mut d).unwrap();
    fds.extend((2..accord_ipc::fds::MAX_FDS).map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap())));
    let (reply, back) = f.remote().send_request_fds(FilesProxy::CODE_SWAP, &d, fds).await.unwrap();
    let (x, y): (Fd, Fd) = accord_safwk::typed::decode_reply_fds(&reply, back).unwrap();
    drop((x, y));
    assert_eq!((read_all(r1).await, read_all(r2).await), (String::new(), String::new()), "every copy of the write ends is closed");

    // More than a message may carry is refused before anything is sent.
    let many: Vec<OwnedFd> = (0..=accord_ipc::fds::MAX_FDS).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect();
    let e = f.remote().send_request_fds(FilesProxy::CODE_SWAP, &[1], many).await.unwrap_err();
    assert!(e.to_string().contains("more descriptors than one message may carry"), "{e}");
    assert_eq!(read_all(f.open_reading("still".into()).await.unwrap().0).await, "still", "and the connection goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsealed_memfd_is_refused_both_ways() {
    let (_dir, sock, _host) = setup().await;
    let samgr = Samgr::connect(&sock).await.unwrap();
    // A request whose blob is an unsealed memfd: refused before the method
    // runs, naming the argument and why.
    let forger = samgr.get_proxy::<FilesForgedProxy>(FILES).await.unwrap();
    let e = forger.echo_blob((ByteBuf::new(), vec![Fd(unsealed_memfd(c"accord-unsealed"))])).await.unwrap_err();
    match &e {
        CallError::Ipc(RemoteError::Remote { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs");
            assert!(message.contains("EchoBlob") && message.contains("`b`") && message.contains("not sealed"), "{message}");
        }
        other => panic!("want InvalidArgs, got {other:?}"),
    }
    // A descriptor index the request does not carry.
    let e = forger.remote().send_request(FilesForgedProxy::CODE_ECHO_BLOB, &[1, 0, 1, 0]).await.unwrap_err();
    assert!(e.to_string().contains("descriptor 0 named, but the message carries 0"), "{e}");
    // A reply whose blob is an unsealed memfd: the client refuses it.
    let f = samgr.get_proxy::<FilesProxy>(FORGED).await.unwrap();
    let e = f.echo_blob(Blob::new(vec![1; 10]).unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("not sealed"), "{e}");
    // Refusals are answers: the connections go on.
    let f = samgr.get_proxy::<FilesProxy>(FILES).await.unwrap();
    assert_eq!(read_all(f.open_reading("on".into()).await.unwrap().0).await, "on");
}

// --- raw requests ---------------------------------------------------------------

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn pad(b: &mut Vec<u8>, align: usize) {
    while !b.len().is_multiple_of(align) {
        b.push(0);
    }
}

/// A `SendRequest(code, data)` whose header announces `unix_fds`
/// descriptors.
fn raw_request(serial: u32, code: u32, data: &[u8], unix_fds: u32) -> Vec<u8> {
    let mut f = Vec::new();
    for (c, sig, v) in [(1u8, b'o', "/org/accord/RemoteObject"), (2, b's', "org.accord.RemoteObject"), (3, b's', "SendRequest")] {
        pad(&mut f, 8);
        f.extend_from_slice(&[c, 1, sig, 0]);
        f.extend_from_slice(&(v.len() as u32).to_le_bytes());
        f.extend_from_slice(v.as_bytes());
        f.push(0);
    }
    pad(&mut f, 8);
    f.extend_from_slice(&[8, 1, b'g', 0, 3]);
    f.extend_from_slice(b"uay\0");
    pad(&mut f, 8);
    f.extend_from_slice(&[9, 1, b'u', 0]);
    f.extend_from_slice(&unix_fds.to_le_bytes());
    let mut body = code.to_le_bytes().to_vec();
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    let mut m = vec![b'l', 1, 0, 1];
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(&serial.to_le_bytes());
    m.extend_from_slice(&(f.len() as u32).to_le_bytes());
    m.extend_from_slice(&f);
    pad(&mut m, 8);
    m.extend_from_slice(&body);
    m
}

/// A raw connection to SA `id` (through samgr, as this uid) that has done
/// the handshake with descriptors agreed.
async fn raw_sa(sock: &Path, id: u32) -> UnixStream {
    let conn = accord_ipc::connect(tokio::net::UnixStream::connect(sock).await.unwrap()).await.unwrap();
    let samgr = accord_safwk::SystemAbilityManagerProxy::new(&conn).await.unwrap();
    let fd: OwnedFd = samgr.get_system_ability(id).await.expect("may get the SA").into();
    tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::from(fd);
        s.set_nonblocking(false).unwrap();
        let uid = nix::unistd::getuid().as_raw().to_string();
        s.write_all(format!("\0AUTH EXTERNAL {}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n", hex(&uid)).as_bytes()).unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"AGREE_UNIX_FD\r\n") {
            let mut b = [0u8; 256];
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "handshake: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        s
    })
    .await
    .unwrap()
}

/// Sends `msg` with `fds` attached in one sendmsg.
fn send_with_fds(s: &UnixStream, msg: &[u8], fds: &[OwnedFd]) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let n = sendmsg::<()>(s.as_raw_fd(), &[std::io::IoSlice::new(msg)], &[ControlMessage::ScmRights(&raw)], MsgFlags::empty(), None).unwrap();
    (&*s).write_all(&msg[n..]).unwrap();
}

/// Memfds named `name` this process holds (what a leak would leave).
fn held(name: &str) -> usize {
    let want = format!("/memfd:{name} ");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with(&want))
        .count()
}

/// Waits until this process holds no memfd named `name`.
async fn none_held(name: &str) {
    let end = Instant::now() + DEADLINE;
    while held(name) != 0 {
        assert!(Instant::now() < end, "{} descriptors named {name} are still open: leaked", held(name));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn probes(name: &std::ffi::CStr, n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap()).collect()
}

/// A request announcing 3 descriptors and carrying 1, and one carrying a
/// descriptor it does not announce: each closes the connection, and the
/// descriptors the SA received are closed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_announcing_more_fds_than_sent_is_hung_up_on_without_leaks() {
    let (_dir, sock, _host) = setup().await;
    for (name, announced, sent) in [(c"accord-probe-more", 3u32, 1usize), (c"accord-probe-unclaimed", 0, 2), (c"accord-probe-over", 17, 17)] {
        let mut s = raw_sa(&sock, FILES).await;
        // A valid request with descriptors first: answered.
        let mut d = Vec::new();
        let (r, w) = nix::unistd::pipe().unwrap();
        let fds = accord_safwk::typed::encode_request_fds(&(&Fd(w), &"ok".to_owned()), &mut d).unwrap();
        send_with_fds(&s, &raw_request(1, FilesProxy::CODE_WRITE_TO, &d, 1), &fds);
        drop(fds);
        assert_eq!(read_all(r).await, "ok");
        let ps = probes(name, sent);
        assert_eq!(held(name.to_str().unwrap()), sent, "the probes are seen");
        send_with_fds(&s, &raw_request(2, FilesProxy::CODE_WRITE_TO, &d, announced), &ps);
        drop(ps);
        let closed = tokio::task::spawn_blocking(move || closed_by_peer(&mut s)).await.unwrap();
        assert!(closed, "{name:?}: announced {announced}, sent {sent}: the SA hangs up");
        none_held(name.to_str().unwrap()).await;
    }
    // The SA goes on serving others.
    let samgr = Samgr::connect(&sock).await.unwrap();
    let f = samgr.get_proxy::<FilesProxy>(FILES).await.unwrap();
    assert_eq!(read_all(f.open_reading("fine".into()).await.unwrap().0).await, "fine");
}

// --- the bounds attacked by an unprivileged uid -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_fds_than_a_message_or_a_connection_may_hold_close_it() {
    let (_dir, sock, _host) = setup().await;
    let mut child = common::as_uid(ATTACKER, "helper_flood_fds", &sock).stdin(Stdio::null()).stdout(Stdio::inherit()).stderr(Stdio::inherit()).spawn().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "the uid {ATTACKER} helper failed: {status}");
    // Nothing the attacker sent is still open here, and root is served.
    none_held("accord-flood").await;
    let samgr = Samgr::connect(&sock).await.unwrap();
    let f = samgr.get_proxy::<FilesProxy>(FILES).await.unwrap();
    assert_eq!(read_all(f.open_reading("served".into()).await.unwrap().0).await, "served");
}

/// Helper (uid 2000): a request announcing and carrying 17 descriptors
/// (one over a message's bound), 40 descriptors with one byte (over a
/// connection's pending bound), and 20 with a request announcing 20;
/// the SA must hang up on each.
#[test]
#[ignore = "helper of more_fds_than_a_message_or_a_connection_may_hold_close_it"]
fn helper_flood_fds() {
    let sock = PathBuf::from(std::env::var_os("ACCORD_ATTACK_SOCK").expect("run by more_fds_than_a_message_or_a_connection_may_hold_close_it"));
    assert_eq!(nix::unistd::getuid().as_raw(), ATTACKER);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let d = [1u8, 0];
        for (announced, sent, whole) in [(17u32, 17usize, true), (0, 40, false), (20, 20, true), (16, 16, false)] {
            let mut s = raw_sa(&sock, FILES).await;
            let ps = probes(c"accord-flood", sent);
            let msg = raw_request(1, FilesProxy::CODE_SWAP, &d, announced);
            // Whole: the request; else its first bytes only (the
            // descriptors wait for a message that never completes, or
            // are more than a connection may hold).
            send_with_fds(&s, if whole { &msg } else { &msg[..1] }, &ps);
            drop(ps);
            if announced == 16 {
                // 16 pending for a half message are within the bound, and
                // so are 32: one more goes past it.
                send_with_fds(&s, &msg[1..2], &probes(c"accord-flood", 16));
                send_with_fds(&s, &msg[2..3], &probes(c"accord-flood", 1));
            }
            let closed = tokio::task::spawn_blocking(move || closed_by_peer(&mut s)).await.unwrap();
            assert!(closed, "announced {announced}, sent {sent}: the SA hangs up");
        }
    });
}

// --- the stub under property tests -------------------------------------------------

mod props {
    use super::*;
    use accord_safwk::RemoteObject;
    use proptest::prelude::*;

    fn caller() -> Caller {
        Caller::new(accord_safwk::Identity { uid: 2000, gid: 2000, pid: 1 })
    }

    fn devnull() -> OwnedFd {
        std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap().into()
    }

    /// A valid request with descriptors, its code and how many it carries.
    fn any_request() -> impl Strategy<Value = (u32, Vec<u8>, usize)> {
        prop_oneof![
            ".{0,20}".prop_map(|t| enc(FilesProxy::CODE_WRITE_TO, &(Fd(devnull()), t))),
            ".{0,20}".prop_map(|t| enc(FilesProxy::CODE_OPEN_READING, &(t,))),
            Just(()).prop_map(|_| enc(FilesProxy::CODE_SWAP, &(Fd(devnull()), Fd(devnull())))),
            proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| enc(FilesProxy::CODE_ECHO_BLOB, &(Blob::new(b).unwrap(),))),
        ]
    }

    fn enc<T: serde::Serialize>(code: u32, args: &T) -> (u32, Vec<u8>, usize) {
        let mut d = Vec::new();
        let fds = accord_safwk::typed::encode_request_fds(args, &mut d).unwrap();
        (code, d, fds.len())
    }

    /// The D-Bus face carries no descriptors: a method with an fd
    /// argument refuses with InvalidArgs saying so, one with an fd result
    /// fails; the others still answer.
    #[test]
    fn the_dbus_face_refuses_descriptors_clearly() {
        let s = FilesStub(Arc::new(Impl));
        let ctxt = zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0);
        let w = devnull();
        let body = zbus::zvariant::to_bytes(ctxt, &(zbus::zvariant::Fd::from(&w), "x")).unwrap();
        let mut reply = Vec::new();
        let e = s.on_dbus_call(&caller(), "org.accord.test.Files", "WriteTo", "hs", body.bytes(), &mut reply).unwrap().unwrap_err();
        assert!(
            matches!(&e, RemoteError::Remote { name, message } if name == "org.freedesktop.DBus.Error.InvalidArgs" && message.contains("only on the fast path")),
            "{e:?}"
        );
        let body = zbus::zvariant::to_bytes(ctxt, &("x",)).unwrap();
        assert!(s.on_dbus_call(&caller(), "org.accord.test.Files", "OpenReading", "s", body.bytes(), &mut reply).unwrap().is_err());
        let body = zbus::zvariant::to_bytes(ctxt, &(Blob::new(vec![5; 10]).unwrap(),)).unwrap();
        reply.clear();
        let sig = s.on_dbus_call(&caller(), "org.accord.test.Files", "EchoBlob", "(ayah)", body.bytes(), &mut reply).unwrap().unwrap();
        assert_eq!(sig, "(b(ayah))", "an inline blob goes both ways on the D-Bus face");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A valid request with descriptors, cut short or with bytes
        /// changed, and given fewer or more descriptors than it names:
        /// answered or refused with InvalidArgs, never a panic.
        #[test]
        fn mutated_requests_with_fds_never_panic(
            (code, data, nfds) in any_request(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            extra in 0usize..3,
            fewer in any::<bool>(),
        ) {
            let s = FilesStub(Arc::new(Impl));
            let (mut reply, mut rfds) = (Vec::new(), Vec::new());
            let fds = (0..nfds).map(|_| devnull()).collect();
            prop_assert!(s.on_remote_request_fds(&caller(), code, &data, fds, &mut reply, &mut rfds).is_ok(), "the valid request is served");
            let mut bad = data[..cut.index(data.len() + 1)].to_vec();
            for (at, v) in &flips {
                if !bad.is_empty() {
                    let i = at.index(bad.len());
                    bad[i] ^= v | 1;
                }
            }
            let n = if fewer { nfds.saturating_sub(1) } else { nfds + extra };
            let fds: Vec<OwnedFd> = (0..n).map(|_| devnull()).collect();
            reply.clear();
            rfds.clear();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.on_remote_request_fds(&caller(), code, &bad, fds, &mut reply, &mut rfds)));
            prop_assert!(r.is_ok(), "no panic");
            if let Ok(Err(e)) = r {
                prop_assert!(matches!(&e, RemoteError::Remote { name, .. } if name == "org.freedesktop.DBus.Error.InvalidArgs" || name == "org.accord.Error.Panicked"), "a named error: {e:?}");
            }
        }
    }
}
