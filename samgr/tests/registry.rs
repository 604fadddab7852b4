//! samgr with SA hosts and clients: add/get/check/list, the direct path,
//! and the caller identity an SA sees.

use std::time::Duration;

use accord_ipc::sa::{SaHost, Samgr};
use accord_ipc::Identity;

struct Echo {
    caller: Identity,
}

#[zbus::interface(name = "org.accord.test.Echo")]
impl Echo {
    fn add_one(&self, x: u32) -> u32 {
        x.wrapping_add(1)
    }
    fn caller_pid(&self) -> i32 {
        self.caller.pid
    }
}

#[zbus::proxy(interface = "org.accord.test.Echo", default_service = "org.accord.test", default_path = "/org/accord/test/Echo")]
trait EchoClient {
    fn add_one(&self, x: u32) -> zbus::Result<u32>;
    fn caller_pid(&self) -> zbus::Result<i32>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_get_check_list_and_the_direct_path() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let samgr_task = tokio::spawn(accord_samgr::serve(listener, accord_samgr::Registry::default()));

    let host = SaHost::connect(&sock).await.unwrap();
    host.publish(1500, "/org/accord/test/Echo", |caller| Echo { caller }).await.unwrap();

    let client = Samgr::connect(&sock).await.unwrap();
    assert!(client.check(1500).await.unwrap());
    assert!(!client.check(1501).await.unwrap());
    assert_eq!(client.list().await.unwrap(), vec![1500]);
    let err = client.get(1501).await.expect_err("unknown SA is an error").to_string();
    assert!(err.contains("1501") && err.contains("not registered"), "{err}");
    assert!(client.check(0).await.is_err(), "id 0 is refused");

    let conn = client.get(1500).await.unwrap();
    let echo = EchoClientProxy::new(&conn).await.unwrap();
    assert_eq!(echo.add_one(41).await.unwrap(), 42);
    assert_eq!(echo.caller_pid().await.unwrap(), std::process::id() as i32, "the SA sees the caller samgr verified");

    // A host that goes away takes its SAs with it; subscribers hear of it.
    use accord_ipc::sa::SaEvent;
    client.subscribe(1600).await.unwrap();
    client.subscribe(1500).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.unwrap();
    assert_eq!(ev, Some(SaEvent::Added(1500)), "an SA already present is reported at once");
    let host2 = SaHost::connect(&sock).await.unwrap();
    host2.publish(1600, "/org/accord/test/Echo", |caller| Echo { caller }).await.unwrap();
    assert!(client.check(1600).await.unwrap());
    let ev = tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.unwrap();
    assert_eq!(ev, Some(SaEvent::Added(1600)));
    drop(host2);
    let ev = tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.unwrap();
    assert_eq!(ev, Some(SaEvent::Removed(1600)));
    let mut gone = false;
    for _ in 0..100 {
        if !client.check(1600).await.unwrap() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "SA 1600 still listed after its host hung up");
    assert!(client.check(1500).await.unwrap(), "other hosts' SAs stay");

    // 256 subscriptions per caller (two held already).
    let other = Samgr::connect(&sock).await.unwrap();
    for id in 1..=256 {
        other.subscribe(2000 + id).await.unwrap();
    }
    let err = other.subscribe(9999).await.expect_err("the 257th subscription is refused").to_string();
    assert!(err.contains("256"), "{err}");

    // samgr is not on the call path: with samgr gone, the call still works.
    samgr_task.abort();
    drop(client);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(echo.add_one(1).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidumper_lists_what_the_real_samgr_binary_registered() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_samgr")).arg("--socket").arg(&sock).spawn().unwrap();
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish(3301, "/org/accord/test/Echo", |caller| Echo { caller }).await.unwrap();
    let hidumper = dir.path().join("hidumper");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_samgr"), &hidumper).unwrap();
    let run = |arg: &'static str| {
        let (h, s) = (hidumper.clone(), sock.clone());
        tokio::task::spawn_blocking(move || std::process::Command::new(h).arg(arg).env("SAMGR_SOCKET", s).output().unwrap())
    };
    let out = run("-ls").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row = text.lines().find(|l| l.starts_with("3301")).unwrap_or_else(|| panic!("no SA 3301 in:\n{text}"));
    assert!(row.contains("LOADED") && row.contains(&std::process::id().to_string()), "{row}");
    let bad = run("-x").await.unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("usage"));
    // The samgr client CLI (root here).
    for (op, want) in [("--check", "SA 3301: registered"), ("--get", "SA 3301: connected")] {
        let (h, s) = (env!("CARGO_BIN_EXE_samgr"), sock.clone());
        let out = tokio::task::spawn_blocking(move || std::process::Command::new(h).args([op, "3301"]).env("SAMGR_SOCKET", s).output().unwrap()).await.unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(want), "{op}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // With the samgr process killed, a connection it handed out still works.
    let conn = Samgr::connect(&sock).await.unwrap().get(3301).await.unwrap();
    daemon.kill().unwrap();
    let _ = daemon.wait();
    let echo = EchoClientProxy::new(&conn).await.unwrap();
    assert_eq!(echo.add_one(9).await.unwrap(), 10);
}

