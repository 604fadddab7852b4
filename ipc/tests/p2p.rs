//! Peer-to-peer D-Bus between real processes and threads: typed calls,
//! verified caller identity, and the stock `dbus-send --peer` tool against
//! our endpoint.

use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use zbus::interface;

/// Answers with the identity the kernel gave for its connection.
struct Echo {
    who: Option<accord_ipc::Identity>,
}

#[interface(name = "org.accord.test.Echo")]
impl Echo {
    fn add_one(&self, x: u32) -> u32 {
        x.wrapping_add(1)
    }

    fn who_am_i(&self) -> zbus::fdo::Result<(u32, i32)> {
        let id = self.who.ok_or_else(|| zbus::fdo::Error::Failed("no SO_PEERCRED".into()))?;
        Ok((id.uid, id.pid))
    }
}

#[zbus::proxy(interface = "org.accord.test.Echo", default_service = "org.accord.test.Echo", default_path = "/org/accord/Echo")]
trait EchoClient {
    fn add_one(&self, x: u32) -> zbus::Result<u32>;
    fn who_am_i(&self) -> zbus::Result<(u32, i32)>;
}

#[tokio::test(flavor = "current_thread")]
async fn typed_calls_and_caller_identity_over_a_socketpair() {
    let (a, b) = UnixStream::pair().unwrap();
    let who = accord_ipc::peer_identity(&a).ok();
    let server = tokio::spawn(async move { accord_ipc::serve(a, vec![("/org/accord/Echo", Echo { who })]).await });
    let client = accord_ipc::connect(b).await.unwrap();
    let _server = server.await.unwrap().unwrap();
    let proxy = EchoClientProxy::new(&client).await.unwrap();
    assert_eq!(proxy.add_one(41).await.unwrap(), 42);
    let (uid, pid) = proxy.who_am_i().await.unwrap();
    assert_eq!(uid, nix::unistd::getuid().as_raw());
    assert_eq!(pid, std::process::id() as i32);
}

#[tokio::test(flavor = "current_thread")]
async fn stock_dbus_send_talks_to_our_endpoint() {
    if std::process::Command::new("dbus-send").arg("--help").output().is_err() {
        panic!("dbus-send is missing: install package dbus (rootfs/setup-host.sh does)");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            if let Ok(c) = accord_ipc::serve(s, vec![("/org/accord/Echo", Echo { who: None })]).await {
                conns.push(c);
            }
        }
    });
    let addr = format!("--peer=unix:path={}", path.display());
    let run = |args: Vec<String>| tokio::task::spawn_blocking(move || std::process::Command::new("dbus-send").args(&args).output().unwrap());
    let out =
        run(vec![addr.clone(), "--print-reply".into(), "/org/accord/Echo".into(), "org.accord.test.Echo.AddOne".into(), "uint32:41".into()]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("uint32 42"), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let out = run(vec![addr.clone(), "--print-reply".into(), "/org/accord/Echo".into(), "org.freedesktop.DBus.Peer.Ping".into()]).await.unwrap();
    assert!(out.status.success(), "Peer.Ping: {}", String::from_utf8_lossy(&out.stderr));
    let out =
        run(vec![addr.clone(), "--print-reply".into(), "/org/accord/Echo".into(), "org.freedesktop.DBus.Introspectable.Introspect".into()]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("org.accord.test.Echo") && text.contains("AddOne"), "{text}");
    // Garbage on the socket does not take the server down.
    tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let _ = s.write_all(b"\0AUTH GARBAGE\r\n\xff\xfe garbage");
            // The server has dealt with it once it hangs up.
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    })
    .await
    .unwrap();
    let out = run(vec![addr, "--print-reply".into(), "/org/accord/Echo".into(), "org.accord.test.Echo.AddOne".into(), "uint32:1".into()]).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("uint32 2"));
}
