//! The fast path's bounds: a client that sends and never reads its replies
//! cannot pin the server's thread (write deadline, then hang-up); a header
//! announcing 128 MiB is refused on the header; the client's calls have a
//! deadline that leaves the connection usable; one-way requests
//! (OpenHarmony's TF_ASYNC) get no reply and run in order.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use accord_ipc::remote::{RemoteError, RemoteProxy};

const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Obj {
    oneways: AtomicU32,
    /// Code 5 waits until this is true.
    gate: (Mutex<bool>, Condvar),
}

impl Obj {
    fn on_request(&self, code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), RemoteError> {
        match code {
            1 => reply.extend_from_slice(data),
            5 => {
                let mut open = self.gate.0.lock().unwrap();
                while !*open {
                    open = self.gate.1.wait(open).unwrap();
                }
                reply.push(5);
            }
            6 => {
                self.oneways.fetch_add(1, Ordering::SeqCst);
            }
            7 => reply.extend_from_slice(&self.oneways.load(Ordering::SeqCst).to_le_bytes()),
            _ => return Err(RemoteError::failed("no such code")),
        }
        Ok(())
    }
}

/// A served socket pair: the server's result, and the client end.
fn served(obj: Arc<Obj>, write_timeout: Duration) -> (tokio::task::JoinHandle<Result<(), RemoteError>>, std::os::unix::net::UnixStream) {
    let (s, c) = std::os::unix::net::UnixStream::pair().unwrap();
    s.set_nonblocking(true).unwrap();
    let s = tokio::net::UnixStream::from_std(s).unwrap();
    let handler = move |code: u32, data: &[u8], reply: &mut Vec<u8>| obj.on_request(code, data, reply);
    let task = tokio::spawn(accord_ipc::remote::serve_with_timeout(s, handler, nix::unistd::getuid().as_raw(), write_timeout));
    (task, c)
}

/// The raw handshake; what follows is messages.
fn authenticate(c: &mut std::os::unix::net::UnixStream) {
    let uid: String = nix::unistd::getuid().as_raw().to_string().bytes().map(|b| format!("{b:02x}")).collect();
    c.write_all(format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        assert_eq!(c.read(&mut b).unwrap(), 1);
        line.push(b[0]);
    }
    assert!(line.starts_with(b"OK "));
}

/// A well-formed `SendRequest(code, data)` (built by zbus, so the test
/// does not share the codec it tests).
fn request(serial: u32, code: u32, data: &[u8]) -> Vec<u8> {
    let m = zbus::Message::method_call(accord_ipc::remote::PATH, accord_ipc::remote::METHOD)
        .unwrap()
        .interface(accord_ipc::remote::INTERFACE)
        .unwrap()
        .serial(std::num::NonZeroU32::new(serial).unwrap())
        .build(&(code, serde_bytes::Bytes::new(data)))
        .unwrap();
    m.data().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_pin_the_server_thread() {
    let (task, mut c) = served(Arc::new(Obj::default()), Duration::from_millis(300));
    // Requests with big replies, never reading: the server's writes fill
    // the socket, then its write deadline ends the connection.
    let writer = std::thread::spawn(move || {
        authenticate(&mut c);
        c.set_write_timeout(Some(DEADLINE)).unwrap();
        let data = vec![7u8; 64 << 10];
        for serial in 1.. {
            if c.write_all(&request(serial, 1, &data)).is_err() {
                return serial;
            }
        }
        unreachable!()
    });
    let r = tokio::time::timeout(DEADLINE, task).await.expect("the server gave up on the client").unwrap();
    assert!(matches!(r, Err(RemoteError::TimedOut(_))), "{r:?}");
    let sent = tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
    assert!(sent > 1, "the client's writes end once the server hung up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_announcing_128_mib_ends_the_connection_at_once() {
    let (task, mut c) = served(Arc::new(Obj::default()), Duration::from_secs(10));
    let mut h = vec![b'l', 1, 0, 1];
    h.extend_from_slice(&(128u32 << 20).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    let c = tokio::task::spawn_blocking(move || {
        authenticate(&mut c);
        c.write_all(&h).unwrap();
        c
    })
    .await
    .unwrap();
    let r = tokio::time::timeout(DEADLINE, task).await.expect("refused without waiting for the body").unwrap();
    assert!(matches!(r, Err(RemoteError::Malformed(m)) if m.contains("size limit")), "{r:?}");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_have_a_deadline_and_one_way_requests_get_no_reply() {
    let obj = Arc::new(Obj::default());
    let (_task, c) = served(obj.clone(), Duration::from_secs(10));
    c.set_nonblocking(true).unwrap();
    let proxy = RemoteProxy::connect(tokio::net::UnixStream::from_std(c).unwrap()).await.unwrap();
    assert_eq!(proxy.send_request(1, b"hi").await.unwrap(), b"hi");

    // Code 5 does not answer until the gate opens: the call's deadline
    // passes, and the connection stays usable.
    let short = proxy.with_timeout(Duration::from_millis(200));
    let e = short.send_request(5, &[]).await.expect_err("no reply in time");
    assert!(matches!(e, RemoteError::TimedOut(_)) && !e.is_dead(), "{e:?}");
    *obj.gate.0.lock().unwrap() = true;
    obj.gate.1.notify_all();
    assert_eq!(proxy.send_request(1, b"after").await.unwrap(), b"after", "the late reply went nowhere; the next call gets its own");

    // One-way requests: no reply, in order with the others.
    for _ in 0..3 {
        proxy.send_oneway(6, &[]).await.unwrap();
    }
    assert_eq!(proxy.send_request(7, &[]).await.unwrap(), 3u32.to_le_bytes());
    assert_eq!(accord_ipc::remote::TF_ASYNC, 1);
}

/// The handshake's states hold: BEGIN without authentication, a wrong
/// uid, or an empty DATA (the peer's own say-so) when a uid is expected
/// end the connection before any request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_serves_nobody_unauthenticated() {
    let me = nix::unistd::getuid().as_raw();
    let hex = |u: u32| u.to_string().bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let openings = [
        "\0BEGIN\r\n".to_owned(),
        format!("\0AUTH EXTERNAL {}\r\nDATA\r\nBEGIN\r\n", hex(me + 1)),
        "\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n".to_owned(),
        format!("\0NEGOTIATE_UNIX_FD\r\nAUTH EXTERNAL {}\r\nBEGIN\r\n", hex(me + 1)),
    ];
    for opening in openings {
        let (s, mut c) = std::os::unix::net::UnixStream::pair().unwrap();
        s.set_nonblocking(true).unwrap();
        let s = tokio::net::UnixStream::from_std(s).unwrap();
        let task = tokio::spawn(accord_ipc::remote::serve(
            s,
            |_: u32, _: &[u8], r: &mut Vec<u8>| -> Result<(), RemoteError> {
                r.push(1);
                Ok(())
            },
            me,
        ));
        // The server may hang up before all of it is written.
        let mut bytes = opening.as_bytes().to_vec();
        bytes.extend(request(1, 1, b"x"));
        let _ = c.write_all(&bytes);
        let r = tokio::time::timeout(DEADLINE, task).await.expect("the server ends").unwrap();
        assert!(matches!(r, Err(RemoteError::Auth(_))), "{opening:?}: {r:?}");
    }
}

/// A server that never answers the handshake is an error within the
/// handshake deadline, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_an_error_not_a_hang() {
    let (s, c) = tokio::net::UnixStream::pair().unwrap();
    let r = tokio::time::timeout(DEADLINE, RemoteProxy::connect(c)).await.expect("connect returns");
    assert!(matches!(r, Err(RemoteError::Auth(ref m)) if m.contains("no handshake")), "{:?}", r.err());
    drop(s);
}

/// Calls their callers gave up on leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_leave_no_waiter() {
    let obj = Arc::new(Obj::default());
    let (_task, c) = served(obj.clone(), Duration::from_secs(10));
    c.set_nonblocking(true).unwrap();
    let p = RemoteProxy::connect(tokio::net::UnixStream::from_std(c).unwrap()).await.unwrap();
    // Code 5 blocks until the gate opens: none of these is answered.
    for _ in 0..50 {
        let call = p.send_request(5, &[]);
        let _ = tokio::time::timeout(Duration::from_millis(1), call).await;
    }
    assert_eq!(p.pending_calls(), 0, "every abandoned call dropped its waiter");
    *obj.gate.0.lock().unwrap() = true;
    obj.gate.1.notify_all();
}

/// A request bigger than the socket's buffer waits for room (the client's
/// connection is registered for reading only; a write that cannot go on
/// waits on a registration of its own) and is answered whole; many tasks
/// pipelining on one connection each get their own reply, whichever of
/// them reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_requests_wait_for_room_and_pipelined_replies_reach_their_callers() {
    let obj = Arc::new(Obj::default());
    let (_task, c) = served(obj.clone(), Duration::from_secs(10));
    c.set_nonblocking(true).unwrap();
    let p = RemoteProxy::connect(tokio::net::UnixStream::from_std(c).unwrap()).await.unwrap();
    // The server thread sits in code 5 until the gate opens, so the 3 MiB
    // that follow cannot all fit in the socket: the write must wait.
    let gated = tokio::spawn({
        let p = p.clone();
        async move { p.send_request(5, &[]).await }
    });
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let echo = tokio::spawn({
        let (p, big) = (p.clone(), big.clone());
        async move { p.send_request(1, &big).await }
    });
    let opener = tokio::spawn({
        let obj = obj.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            *obj.gate.0.lock().unwrap() = true;
            obj.gate.1.notify_all();
        }
    });
    assert_eq!(tokio::time::timeout(DEADLINE, gated).await.unwrap().unwrap().unwrap(), [5]);
    assert!(tokio::time::timeout(DEADLINE, echo).await.unwrap().unwrap().unwrap() == big, "the 3 MiB came back whole");
    opener.await.unwrap();

    let tasks: Vec<_> = (0..16u32)
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move {
                for i in 0..200u32 {
                    let data = [t.to_le_bytes(), i.to_le_bytes()].concat();
                    assert_eq!(p.send_request(1, &data).await.unwrap(), data, "task {t} call {i} got someone else's reply");
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(DEADLINE, t).await.unwrap().unwrap();
    }
    assert_eq!(p.pending_calls(), 0);
}

/// The same on a current_thread runtime (one thread both writes and
/// reads, so a write waiting for room must not keep the reply it waits
/// behind from being read by another task).
#[tokio::test(flavor = "current_thread")]
async fn pipelined_calls_on_one_thread() {
    let obj = Arc::new(Obj::default());
    *obj.gate.0.lock().unwrap() = true;
    let (_task, c) = served(obj.clone(), Duration::from_secs(10));
    c.set_nonblocking(true).unwrap();
    let p = RemoteProxy::connect(tokio::net::UnixStream::from_std(c).unwrap()).await.unwrap();
    let big: Vec<u8> = vec![7; 2 << 20];
    let mut calls = Vec::new();
    for t in 0..8u32 {
        let (p, big) = (p.clone(), big.clone());
        calls.push(tokio::spawn(async move {
            for i in 0..50u32 {
                let data = if i % 10 == 0 { big.clone() } else { [t.to_le_bytes(), i.to_le_bytes()].concat() };
                assert!(p.send_request(1, &data).await.unwrap() == data, "task {t} call {i}");
            }
        }));
    }
    for c in calls {
        tokio::time::timeout(DEADLINE, c).await.unwrap().unwrap();
    }
}
