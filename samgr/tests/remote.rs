//! The fast path: a remote object (OpenHarmony's `SendRequest(code,
//! data)`) published through samgr, called from many tasks at once, its
//! errors, its death, and stock `dbus-send` against it.

use std::sync::Arc;
use std::time::Duration;

use accord_ipc::remote::RemoteError;
use accord_safwk::RemoteObject;
use accord_safwk::{Caller, SaHost, Samgr};
use accord_samgr::Registry;

struct Calc;

impl RemoteObject for Calc {
    fn on_remote_request(&self, caller: &Caller, code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), RemoteError> {
        match code {
            1 => {
                let x = u32::from_le_bytes(data.try_into().map_err(|_| RemoteError::failed("want 4 bytes"))?);
                reply.extend_from_slice(&x.wrapping_add(1).to_le_bytes());
            }
            2 => reply.extend_from_slice(&caller.pid().to_le_bytes()),
            3 => reply.extend_from_slice(data),
            _ => return Err(RemoteError::Remote { name: "org.accord.Error.UnknownCode".into(), message: format!("no request {code}") }),
        }
        Ok(())
    }
    fn on_dump(&self, args: &[String]) -> String {
        format!("calc {}", args.join(" "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_objects_through_samgr() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let _samgr = tokio::spawn(accord_samgr::serve(tokio::net::UnixListener::bind(&sock).unwrap(), Registry::default()));
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish_remote(2100, Arc::new(Calc), None).await.unwrap();
    let client = Samgr::connect(&sock).await.unwrap();
    let calc = client.get_remote(2100).await.unwrap();
    assert_eq!(client.dump_sa(2100, vec!["x".into()]).await.unwrap(), "calc x", "hooks reach a remote object");
    assert_eq!(calc.send_request(1, &41u32.to_le_bytes()).await.unwrap(), 42u32.to_le_bytes());
    assert_eq!(calc.send_request(2, &[]).await.unwrap(), (std::process::id() as i32).to_le_bytes(), "the SA sees the caller samgr verified");
    let big = vec![9u8; 100_000];
    assert_eq!(calc.send_request(3, &big).await.unwrap(), big);
    match calc.send_request(77, &[]).await {
        Err(RemoteError::Remote { name, message }) => assert!(name == "org.accord.Error.UnknownCode" && message.contains("77"), "{name}: {message}"),
        other => panic!("want the SA's error, got {other:?}"),
    }
    // Many tasks on one connection: every reply goes to its own caller.
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let calc = calc.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..300u32 {
                let x = t * 100_000 + i;
                assert_eq!(calc.send_request(1, &x.to_le_bytes()).await.unwrap(), (x + 1).to_le_bytes(), "task {t} call {i}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_dbus_send_calls_a_remote_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calc.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let servers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = servers.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let who = accord_ipc::peer_identity(&s).unwrap();
            s2.lock().unwrap().push(tokio::spawn(accord_safwk::serve_remote(s, Arc::new(Calc), Caller::new(who))));
        }
    });
    let addr = format!("--peer=unix:path={}", path.display());
    let send = |args: Vec<String>| tokio::task::spawn_blocking(move || std::process::Command::new("dbus-send").args(&args).output().expect("dbus-send"));
    let out = send(vec![
        addr.clone(),
        "--print-reply".into(),
        "/org/accord/RemoteObject".into(),
        "org.accord.RemoteObject.SendRequest".into(),
        "uint32:1".into(),
        "array:byte:41,0,0,0".into(),
    ])
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("array of bytes") && text.contains("2a 00 00 00"), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let out = send(vec![addr.clone(), "--print-reply".into(), "/org/accord/RemoteObject".into(), "org.freedesktop.DBus.Peer.Ping".into()]).await.unwrap();
    assert!(out.status.success(), "Ping: {}", String::from_utf8_lossy(&out.stderr));
    let out = send(vec![addr.clone(), "--print-reply".into(), "/org/accord/RemoteObject".into(), "org.freedesktop.DBus.Introspectable.Introspect".into()])
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("SendRequest"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = send(vec![
        addr.clone(),
        "--print-reply".into(),
        "/org/accord/RemoteObject".into(),
        "org.accord.RemoteObject.SendRequest".into(),
        "uint32:9".into(),
        "array:byte:".into(),
    ])
    .await
    .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no request 9"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = send(vec![addr, "--print-reply".into(), "/org/accord/RemoteObject".into(), "org.accord.Nope.Nothing".into()]).await.unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("UnknownMethod"), "{}", String::from_utf8_lossy(&out.stderr));

    // Our own client on the same socket; then the server goes away: calls
    // fail at once with a "dead" error. An aborted task drops its future
    // (which hangs the connection up) before its handle resolves, so the
    // server is gone once the handles are awaited.
    let calc = accord_ipc::remote::RemoteProxy::connect(tokio::net::UnixStream::connect(&path).await.unwrap()).await.unwrap();
    assert_eq!(calc.send_request(1, &1u32.to_le_bytes()).await.unwrap(), 2u32.to_le_bytes());
    let tasks: Vec<_> = servers.lock().unwrap().drain(..).collect();
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
    let e = tokio::time::timeout(Duration::from_secs(30), calc.send_request(1, &1u32.to_le_bytes())).await.expect("no hang").expect_err("the server is gone");
    assert!(e.is_dead(), "{e:?}");
    assert!(calc.send_request(1, &[0; 4]).await.unwrap_err().is_dead(), "and stays dead");
}

/// "The SA is gone" for connections already handed out: once the host
/// that published an SA is dropped, no call on a connection to it is
/// answered; the hang-up happens inside the drop, before samgr hears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_host_hangs_up_its_clients_before_the_drop_returns() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let _samgr = tokio::spawn(accord_samgr::serve(tokio::net::UnixListener::bind(&sock).unwrap(), Registry::default()));
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish_remote(2101, Arc::new(Calc), None).await.unwrap();
    let client = Samgr::connect(&sock).await.unwrap();
    let calcs = [client.get_remote(2101).await.unwrap(), client.get_remote(2101).await.unwrap()];
    for c in &calcs {
        assert_eq!(c.send_request(1, &1u32.to_le_bytes()).await.unwrap(), 2u32.to_le_bytes());
    }
    client.subscribe(2101).await.unwrap();
    assert_eq!(client.next_event().await, Some(accord_safwk::SaEvent::Added(2101)));
    drop(host);
    for c in &calcs {
        let e = tokio::time::timeout(Duration::from_secs(30), c.send_request(1, &1u32.to_le_bytes())).await.expect("no hang").expect_err("the SA is gone");
        assert!(e.is_dead(), "{e:?}");
    }
    // samgr hears it too (after the clients were hung up).
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), client.next_event()).await.expect("samgr is told"), Some(accord_safwk::SaEvent::Removed(2101)));
    assert!(!client.check(2101).await.unwrap());
}
