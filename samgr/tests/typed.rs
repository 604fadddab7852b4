//! Typed interfaces (`#[accord_safwk::interface]`) through the real
//! samgr: every argument kind, the SA's own errors, one-way calls, a
//! method that panics, death, version skew both ways, and stock
//! `dbus-send` calling a generated method by name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use accord_safwk::typed::{CallError, RemoteError};
use accord_safwk::{interface, Caller, SaHost, Samgr};
use accord_samgr::Registry;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use zbus::zvariant::Type;

const DEADLINE: Duration = Duration::from_secs(30);

/// A struct of ten fields of every scalar kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct Ten {
    pub a: u8,
    pub b: u16,
    pub c: u32,
    pub d: u64,
    pub e: i16,
    pub f: i32,
    pub g: i64,
    pub h: f64,
    pub i: bool,
    pub j: String,
}

/// The SA's own error type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    #[error("no key {0:?}")]
    NotFound(String),
    #[error("uid {0} may not read it")]
    Denied(u32),
}

#[interface(name = "org.accord.test.Kinds")]
pub trait Kinds {
    /// Returns its argument.
    fn echo_ten(&self, t: Ten) -> Ten;
    fn echo_bytes(&self, b: ByteBuf) -> ByteBuf;
    /// Borrowed arguments: read where the request was received.
    fn measure(&self, name: &str, b: &serde_bytes::Bytes) -> (String, u32);
    fn join(&self, head: String, parts: Vec<String>, counts: HashMap<String, u32>) -> String;
    fn nothing(&self);
    fn get(&self, caller: &Caller, key: String) -> Result<String, KvError>;
    fn who(&self, caller: &Caller) -> (u32, i32);
    #[oneway]
    fn bump(&self, by: u32);
    fn bumped(&self) -> u32;
    fn boom(&self, why: String) -> u32;
    /// `b` came in a later version of the interface.
    fn sum(&self, a: u32, #[added] b: u32) -> u32;
    /// Only in the newer version.
    #[code = 77]
    fn fresh(&self) -> u32;
}

/// The same interface as an older build knew it: no `b` in `sum`, no
/// `fresh`.
#[interface(name = "org.accord.test.Kinds")]
pub trait KindsV1 {
    fn sum(&self, a: u32) -> u32;
    fn bumped(&self) -> u32;
}

#[derive(Default)]
struct Impl {
    bumps: AtomicU32,
}

impl Kinds for Impl {
    fn echo_ten(&self, t: Ten) -> Ten {
        t
    }
    fn echo_bytes(&self, b: ByteBuf) -> ByteBuf {
        b
    }
    fn measure(&self, name: &str, b: &serde_bytes::Bytes) -> (String, u32) {
        (format!("{name}:{}", b.len()), b.iter().map(|&x| u32::from(x)).sum())
    }
    fn join(&self, head: String, parts: Vec<String>, counts: HashMap<String, u32>) -> String {
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        format!("{head}:{}:{counts:?}", parts.join(","))
    }
    fn nothing(&self) {}
    fn get(&self, caller: &Caller, key: String) -> Result<String, KvError> {
        match key.as_str() {
            "secret" if caller.uid() != 12345 => Err(KvError::Denied(caller.uid())),
            "a" => Ok("1".into()),
            _ => Err(KvError::NotFound(key)),
        }
    }
    fn who(&self, caller: &Caller) -> (u32, i32) {
        (caller.uid(), caller.pid())
    }
    fn bump(&self, by: u32) {
        self.bumps.fetch_add(by, Ordering::SeqCst);
    }
    fn bumped(&self) -> u32 {
        self.bumps.load(Ordering::SeqCst)
    }
    fn boom(&self, why: String) -> u32 {
        panic!("{why}")
    }
    fn sum(&self, a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
    fn fresh(&self) -> u32 {
        1
    }
    fn on_dump(&self, _args: &[String]) -> String {
        format!("bumps {}", self.bumps.load(Ordering::SeqCst))
    }
}

struct Old;

impl KindsV1 for Old {
    fn sum(&self, a: u32) -> u32 {
        a
    }
    fn bumped(&self) -> u32 {
        0
    }
}

fn ten(k: u8) -> Ten {
    Ten { a: k, b: u16::MAX, c: 1 << 31, d: u64::MAX - u64::from(k), e: i16::MIN, f: -5, g: i64::MIN + 1, h: -0.5, i: true, j: format!("ten {k} ünïcödé") }
}

/// samgr in this process, with a host publishing `Impl` as 2300 and
/// `Old` as 2301.
async fn setup() -> (tempfile::TempDir, std::path::PathBuf, SaHost) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    tokio::spawn(accord_samgr::serve(tokio::net::UnixListener::bind(&sock).unwrap(), Registry::default()));
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish_remote(2300, Impl::default().into_remote(), None).await.unwrap();
    host.publish_remote(2301, Old.into_remote(), None).await.unwrap();
    (dir, sock, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_argument_kind_errors_and_oneway_calls_through_samgr() {
    let (_dir, sock, _host) = setup().await;
    let samgr = Samgr::connect(&sock).await.unwrap();
    let k = samgr.get_proxy::<KindsProxy>(2300).await.unwrap();

    assert_eq!(k.echo_ten(ten(3)).await.unwrap(), ten(3));
    let big = ByteBuf::from(vec![7u8; 3 << 20]);
    assert_eq!(k.echo_bytes(big.clone()).await.unwrap(), big, "3 MiB inline");
    assert_eq!(k.measure("three", serde_bytes::Bytes::new(&[1, 2, 3])).await.unwrap(), ("three:3".to_owned(), 6));
    assert_eq!(k.measure("big", serde_bytes::Bytes::new(&big)).await.unwrap(), ("big:3145728".to_owned(), 7 * (3 << 20)), "3 MiB read in place");
    let counts = HashMap::from([("x".to_owned(), 2u32), ("y".to_owned(), 0)]);
    assert_eq!(k.join("h".into(), vec!["p".into(), "q".into()], counts).await.unwrap(), r#"h:p,q:[("x", 2), ("y", 0)]"#);
    k.nothing().await.unwrap();

    // The SA's own error, typed; the transport's apart.
    assert_eq!(k.get("a".into()).await.unwrap(), "1");
    match k.get("zz".into()).await {
        Err(CallError::Sa(KvError::NotFound(key))) => assert_eq!(key, "zz"),
        other => panic!("want the SA's NotFound, got {other:?}"),
    }
    let me = nix::unistd::getuid().as_raw();
    assert!(matches!(k.get("secret".into()).await, Err(CallError::Sa(KvError::Denied(uid))) if uid == me));
    assert_eq!(k.who().await.unwrap(), (me, std::process::id() as i32), "the caller samgr verified");

    // One-way calls run in order with the connection's other requests.
    for _ in 0..100 {
        k.bump(2).await.unwrap();
    }
    assert_eq!(k.bumped().await.unwrap(), 200);
    assert_eq!(samgr.dump_sa(2300, vec![]).await.unwrap(), "bumps 200", "hooks reach a typed SA");

    // A panicking method: an error for its client; the host carries on.
    match k.boom("on purpose".into()).await {
        Err(RemoteError::Remote { name, message }) => assert!(name == "org.accord.Error.Panicked" && message.contains("on purpose"), "{name}: {message}"),
        other => panic!("want Panicked, got {other:?}"),
    }
    assert_eq!(k.bumped().await.unwrap(), 200, "the same connection still serves");
    let again = samgr.get_proxy::<KindsProxy>(2300).await.unwrap();
    assert_eq!(again.sum(1, 2).await.unwrap(), 3, "and so do new ones");

    // Many tasks on one connection, each reply to its own caller.
    let mut tasks = Vec::new();
    for t in 0..16u8 {
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u8 {
                assert_eq!(k.echo_ten(ten(t.wrapping_mul(50).wrapping_add(i))).await.unwrap(), ten(t.wrapping_mul(50).wrapping_add(i)));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_clients_and_new_servers_and_the_reverse() {
    let (_dir, sock, _host) = setup().await;
    let samgr = Samgr::connect(&sock).await.unwrap();
    // An old client of the new server: `b` it does not know arrives as 0.
    let old_client = samgr.get_proxy::<KindsV1Proxy>(2300).await.unwrap();
    assert_eq!(old_client.sum(5).await.unwrap(), 5);
    // A new client of the old server: the old server ignores `b`; a method
    // it lacks is a clear error, and the connection goes on.
    let new_client = samgr.get_proxy::<KindsProxy>(2301).await.unwrap();
    assert_eq!(new_client.sum(5, 7).await.unwrap(), 5);
    match new_client.fresh().await {
        Err(RemoteError::Remote { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.UnknownMethod");
            assert!(message.contains("org.accord.test.Kinds") && message.contains("77"), "{message}");
        }
        other => panic!("want UnknownMethod, got {other:?}"),
    }
    assert_eq!(new_client.bumped().await.unwrap(), 0);
    // Codes come from names, so both builds agree without sharing code.
    assert_eq!(KindsProxy::CODE_SUM, KindsV1Proxy::CODE_SUM);
    assert_eq!(KindsProxy::CODE_FRESH, 77);
}

/// The console tools reach a typed SA as any other: `samgr --get` (a
/// D-Bus ping on the SA's connection) and the SA's dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_tools_reach_a_typed_sa() {
    let (_dir, sock, _host) = setup().await;
    let run = |args: &[&str]| {
        let (sock, args) = (sock.clone(), args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_samgr")).args(&args).env("SAMGR_SOCKET", sock).output().expect("samgr")
        })
    };
    let out = run(&["--get", "2300"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("SA 2300: connected"), "{text}");
    let samgr = Samgr::connect(&sock).await.unwrap();
    let k = samgr.get_proxy::<KindsProxy>(2300).await.unwrap();
    k.bump(5).await.unwrap();
    assert_eq!(k.bumped().await.unwrap(), 5);
    assert_eq!(samgr.dump_sa(2300, vec![]).await.unwrap(), "bumps 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_sa_that_goes_away_is_seen_as_dead() {
    let (_dir, sock, host) = setup().await;
    let samgr = Samgr::connect(&sock).await.unwrap();
    let k = samgr.get_proxy::<KindsProxy>(2300).await.unwrap();
    assert_eq!(k.fresh().await.unwrap(), 1);
    drop(host);
    tokio::time::timeout(DEADLINE, k.died()).await.expect("died() resolves once the host is gone");
    let e = k.get("a".into()).await.unwrap_err();
    assert!(e.is_dead(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_dbus_send_calls_generated_methods_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinds.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let obj = Impl::default().into_remote();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let who = accord_ipc::peer_identity(&s).unwrap();
            tokio::spawn(accord_safwk::serve_remote(s, obj.clone(), Caller::new(who)));
        }
    });
    let addr = format!("--peer=unix:path={}", path.display());
    let send = |args: &[&str]| {
        let mut all = vec![addr.clone(), "--print-reply".into(), "/org/accord/RemoteObject".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || std::process::Command::new("dbus-send").args(&all).output().expect("dbus-send"))
    };
    let text = |o: &std::process::Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));

    let out = send(&["org.accord.test.Kinds.Sum", "uint32:40", "uint32:2"]).await.unwrap();
    assert!(out.status.success() && text(&out).contains("uint32 42"), "{}", text(&out));
    let out = send(&["org.accord.test.Kinds.Measure", "string:m", "array:byte:1,2,3"]).await.unwrap();
    assert!(out.status.success() && text(&out).contains("string \"m:3\"") && text(&out).contains("uint32 6"), "{}", text(&out));
    let out = send(&["org.accord.test.Kinds.Get", "string:a"]).await.unwrap();
    assert!(out.status.success() && text(&out).contains("string \"1\""), "{}", text(&out));
    let out = send(&["org.accord.test.Kinds.Get", "string:zz"]).await.unwrap();
    assert!(!out.status.success() && text(&out).contains("org.accord.test.Kinds.Error") && text(&out).contains("no key \"zz\""), "{}", text(&out));
    let out = send(&["org.accord.test.Kinds.Sum", "string:x"]).await.unwrap();
    assert!(!out.status.success() && text(&out).contains("InvalidArgs") && text(&out).contains("\"uu\""), "{}", text(&out));
    let out = send(&["org.accord.test.Kinds.Boom", "string:bang"]).await.unwrap();
    assert!(!out.status.success() && text(&out).contains("Panicked"), "{}", text(&out));
    let out = send(&["org.accord.test.Kinds.Bumped"]).await.unwrap();
    assert!(out.status.success() && text(&out).contains("uint32 0"), "after a panic it still serves: {}", text(&out));

    // Introspection lists the real methods with their signatures.
    let out = send(&["org.freedesktop.DBus.Introspectable.Introspect"]).await.unwrap();
    let xml = text(&out);
    assert!(xml.contains(r#"<interface name="org.accord.test.Kinds">"#), "{xml}");
    assert!(
        xml.contains(
            r#"<method name="Sum"><arg name="a" type="u" direction="in"/><arg name="b" type="u" direction="in"/><arg type="u" direction="out"/></method>"#
        ),
        "{xml}"
    );
    assert!(xml.contains(r#"<method name="EchoTen"><arg name="t" type="(yqutnixdbs)" direction="in"/><arg type="(yqutnixdbs)" direction="out"/>"#), "{xml}");
    assert!(
        xml.contains(
            r#"<method name="Bump"><arg name="by" type="u" direction="in"/><annotation name="org.freedesktop.DBus.Method.NoReply" value="true"/></method>"#
        ),
        "{xml}"
    );
    assert!(xml.contains("SendRequest"), "the fast path is still listed: {xml}");
}

// --- listener objects ------------------------------------------------------------

/// What a subscriber hears (the client implements it).
#[interface(name = "org.accord.test.Events")]
pub trait Events {
    #[oneway]
    fn changed(&self, key: String, n: u32);
}

/// An SA that calls its subscribers back.
#[interface(name = "org.accord.test.Topics")]
pub trait Topics {
    /// Sends `count` changes of `key` to `listener`, then waits for it to go away.
    fn subscribe(&self, key: String, count: u32, listener: accord_safwk::typed::Listener<EventsProxy>) -> bool;
    /// Subscribers whose process went away.
    fn gone(&self) -> u32;
}

struct Notifier {
    rt: tokio::runtime::Handle,
    gone: std::sync::Arc<AtomicU32>,
}

impl Topics for Notifier {
    fn subscribe(&self, key: String, count: u32, listener: accord_safwk::typed::Listener<EventsProxy>) -> bool {
        let gone = self.gone.clone();
        self.rt.spawn(async move {
            let events = listener.connect().await.expect("the listener's handshake");
            for n in 0..count {
                events.changed(key.clone(), n).await.expect("a notification");
            }
            events.died().await;
            gone.fetch_add(1, Ordering::SeqCst);
        });
        true
    }
    fn gone(&self) -> u32 {
        self.gone.load(Ordering::SeqCst)
    }
}

struct Collect(tokio::sync::mpsc::UnboundedSender<(String, u32)>);

impl Events for Collect {
    fn changed(&self, key: String, n: u32) {
        let _ = self.0.send((key, n));
    }
}

/// A client passes a listener object; the SA calls it back in order, on
/// a connection of its own, and hears when the client's process is gone.
/// The subscriber runs as a child process (this binary, helper
/// `helper_subscriber`) so that its death is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sa_calls_a_listener_back_and_hears_when_it_goes() {
    let (_dir, sock, host) = setup().await;
    let gone = std::sync::Arc::new(AtomicU32::new(0));
    host.publish_remote(2302, Notifier { rt: tokio::runtime::Handle::current(), gone: gone.clone() }.into_remote(), None).await.unwrap();

    // In this process: three changes, in order.
    let samgr = Samgr::connect(&sock).await.unwrap();
    let topics = samgr.get_proxy::<TopicsProxy>(2302).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    assert!(topics.subscribe("k".into(), 3, accord_safwk::typed::Listener::new(Collect(tx).into_remote())).await.unwrap());
    for n in 0..3 {
        let got = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("a notification in time");
        assert_eq!(got, Some(("k".to_owned(), n)));
    }

    // A subscriber process that exits: the SA's listener proxy dies.
    let out = tokio::task::spawn_blocking({
        let sock = sock.clone();
        move || {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "helper_subscriber", "--nocapture", "--test-threads=1"])
                .env("ACCORD_TYPED_SOCK", sock)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let end = std::time::Instant::now() + DEADLINE;
    while topics.gone().await.unwrap() < 1 {
        assert!(std::time::Instant::now() < end, "the SA never heard that the subscriber's process went away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Helper: subscribes, takes two notifications and exits.
#[test]
#[ignore = "helper of an_sa_calls_a_listener_back_and_hears_when_it_goes"]
fn helper_subscriber() {
    let sock = std::path::PathBuf::from(std::env::var_os("ACCORD_TYPED_SOCK").expect("a helper: run by an_sa_calls_a_listener_back_and_hears_when_it_goes"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let samgr = Samgr::connect(&sock).await.unwrap();
        let topics = samgr.get_proxy::<TopicsProxy>(2302).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        assert!(topics.subscribe("child".into(), 2, accord_safwk::typed::Listener::new(Collect(tx).into_remote())).await.unwrap());
        for n in 0..2 {
            let got = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("a notification in time");
            assert_eq!(got, Some(("child".to_owned(), n)));
        }
    });
    // The process exits: its listener goes with it.
}

/// A listener made here cannot be connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_listener_is_not_a_proxy() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let l = accord_safwk::typed::Listener::<EventsProxy>::new(Collect(tx).into_remote());
    let e = l.connect().await.unwrap_err().to_string();
    assert!(e.contains("made here"), "{e}");
}

// --- the codec under property tests ---------------------------------------------

mod props {
    use super::*;
    use accord_safwk::typed::{decode_reply, encode_request};
    use accord_safwk::RemoteObject;
    use proptest::prelude::*;

    fn stub() -> KindsStub<Impl> {
        KindsStub(std::sync::Arc::new(Impl::default()))
    }

    fn caller() -> Caller {
        Caller::new(accord_safwk::Identity { uid: 2000, gid: 2000, pid: 1 })
    }

    fn any_ten() -> impl Strategy<Value = Ten> {
        let ints = (any::<u8>(), any::<u16>(), any::<u32>(), any::<u64>(), any::<i16>(), any::<i32>(), any::<i64>());
        (ints, -1e300f64..1e300, any::<bool>(), ".{0,40}").prop_map(|((a, b, c, d, e, f, g), h, i, j)| Ten { a, b, c, d, e, f, g, h, i, j })
    }

    /// A valid request of some method, with its code.
    fn any_request() -> impl Strategy<Value = (u32, Vec<u8>)> {
        let enc = |args: &dyn erased::Encode| {
            let mut d = Vec::new();
            args.encode(&mut d);
            d
        };
        prop_oneof![
            any_ten().prop_map(move |t| (KindsProxy::CODE_ECHO_TEN, enc(&(t,)))),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(move |b| (KindsProxy::CODE_ECHO_BYTES, enc(&(ByteBuf::from(b),)))),
            (".{0,20}", proptest::collection::vec(".{0,8}", 0..5), proptest::collection::hash_map(".{0,8}", any::<u32>(), 0..4))
                .prop_map(move |(h, p, c)| (KindsProxy::CODE_JOIN, enc(&(h, p, c)))),
            ".{0,20}".prop_map(move |k| (KindsProxy::CODE_GET, enc(&(k,)))),
            (".{0,20}", proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(move |(n, b)| (KindsProxy::CODE_MEASURE, enc(&(n, serde_bytes::ByteBuf::from(b))))),
            (any::<u32>(), any::<u32>()).prop_map(move |(a, b)| (KindsProxy::CODE_SUM, enc(&(a / 2, b / 2)))),
        ]
    }

    mod erased {
        pub trait Encode {
            fn encode(&self, out: &mut Vec<u8>);
        }
        impl<T: serde::Serialize> Encode for T {
            fn encode(&self, out: &mut Vec<u8>) {
                accord_safwk::typed::encode_request(self, out).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any value of the argument types comes back as it went.
        #[test]
        fn any_value_round_trips(t in any_ten(), bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let s = stub();
            let mut d = Vec::new();
            encode_request(&(&t,), &mut d).unwrap();
            let mut reply = Vec::new();
            s.on_remote_request(&caller(), KindsProxy::CODE_ECHO_TEN, &d, &mut reply).unwrap();
            prop_assert_eq!(decode_reply::<Ten>(&reply).unwrap(), t);
            let b = ByteBuf::from(bytes);
            let mut d = Vec::new();
            encode_request(&(&b,), &mut d).unwrap();
            reply.clear();
            s.on_remote_request(&caller(), KindsProxy::CODE_ECHO_BYTES, &d, &mut reply).unwrap();
            prop_assert_eq!(decode_reply::<ByteBuf>(&reply).unwrap(), b);
        }

        /// The D-Bus face under garbage: any body under any of the
        /// methods' names and signatures is answered or refused, never a
        /// panic.
        #[test]
        fn the_dbus_face_never_panics(member in prop::sample::select(vec!["Sum", "Get", "EchoTen", "Join", "EchoBytes", "Measure", "Nothing", "Bump", "Nope"]), signature in prop::sample::select(vec!["", "u", "uu", "s", "say", "(yqutnixdbs)", "ay", "sasa{su}", "v"]), body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = stub();
            let mut reply = Vec::new();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.on_dbus_call(&caller(), "org.accord.test.Kinds", member, signature, &body, &mut reply)));
            prop_assert!(r.is_ok(), "no panic");
        }

        /// A valid request cut short or with bytes changed is answered or
        /// refused with a named error; the stub never panics.
        #[test]
        fn truncated_or_mutated_requests_are_clear_errors((code, data) in any_request(), cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
            let s = stub();
            let mut reply = Vec::new();
            prop_assert!(s.on_remote_request(&caller(), code, &data, &mut reply).is_ok(), "the valid request is served");
            let mut bad = data[..cut.index(data.len() + 1)].to_vec();
            for (at, v) in &flips {
                if !bad.is_empty() {
                    let i = at.index(bad.len());
                    bad[i] ^= v | 1;
                }
            }
            reply.clear();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.on_remote_request(&caller(), code, &bad, &mut reply)));
            prop_assert!(r.is_ok(), "no panic");
            if let Ok(Err(e)) = r {
                let text = e.to_string();
                prop_assert!(
                    matches!(&e, RemoteError::Remote { name, .. } if name == "org.freedesktop.DBus.Error.InvalidArgs") && text.contains("org.accord.test.Kinds"),
                    "a named error: {e:?}"
                );
            }
        }
    }
}
