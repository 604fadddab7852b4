//! samgr (the real binary, the image's policy and profiles) fuzzed by uid
//! 2000: well-formed calls of every method with arbitrary arguments,
//! mutations of them (bytes set, cuts, length fields rewritten), headers
//! announcing bodies above and just below the limit, and connections held
//! open meanwhile. Afterwards the registry holds nothing uid 2000 was not
//! allowed to put there, samgr's memory stayed bounded while the
//! connections were held, and it still serves root and uid 2000.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use accord_safwk::Samgr;
use proptest::prelude::*;

mod common;

const DEADLINE: Duration = Duration::from_secs(30);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Anonymous resident memory (the binary's own pages, which a debug build
/// faults in as more code runs, do not count).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("RssAnon:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The helper is waited for on the way out; a failed assertion before that
// ends the test process, and its child with its stdin.
#[allow(clippy::zombie_processes)]
async fn samgr_under_the_shipped_policy_survives_uid_2000() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("samgr");
    let files = workspace().join("rootfs/files");
    let samgr = Daemon(
        Command::new(env!("CARGO_BIN_EXE_samgr"))
            .arg("--socket")
            .arg(&sock)
            .arg("--policy")
            .arg(files.join("etc/samgr/policy.json"))
            .arg("--profiles")
            .arg(files.join("system/profile"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = std::time::Instant::now() + DEADLINE;
    while UnixStream::connect(&sock).is_err() {
        assert!(std::time::Instant::now() < end, "samgr listens");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = rss_kib(samgr.0.id());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_fuzz_samgr", "--nocapture", "--test-threads=1"])
        .env("ACCORD_FUZZ_SOCK", &sock)
        .uid(2000)
        .gid(2000)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut child, out) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the helper ended before holding its connections");
            if line.trim_end().ends_with("HOLDING") {
                return (child, out);
            }
        }
    })
    .await
    .unwrap();
    // The helper holds its share of connections, many of them with a
    // message under way: samgr's memory stays bounded, root is served.
    // The bound: 256 connections of one uid, each allowed a 64 KiB message
    // under way plus zbus's own buffers, about 250 KiB a connection as
    // measured (63 MiB in all before samgr logged through hilog's layer,
    // 65 MiB since); a limit not enforced shows as far more.
    let held = rss_kib(samgr.0.id());
    assert!(held < before + 96 * 1024, "samgr grew from {before} KiB to {held} KiB");
    let root = Samgr::connect(&sock).await.unwrap();
    assert!(root.list().await.is_ok());
    child.stdin.take();
    let status = tokio::task::spawn_blocking(move || {
        let mut out = out;
        let _ = std::io::copy(&mut out, &mut std::io::sink());
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "the uid 2000 fuzzer failed: {status}");

    // Nothing uid 2000 did stuck: the image's profile SAs, not loaded
    // (their processes cannot start here), and nothing registered.
    let mut want: Vec<(u32, String)> = accord_safwk::profile::Profile::load_dir(&files.join("system/profile"))
        .into_iter()
        .flat_map(|p| p.expect("the image's profiles load").abilities)
        .map(|sa| (sa.id, "NOT_LOADED".to_owned()))
        .collect();
    want.sort();
    assert!(!want.is_empty());
    common::until_listed(&root, &want, "registry after the fuzz").await;
    assert!(root.running_processes().await.unwrap().is_empty());
}

const MEMBERS: &[&str] = &[
    "AddSystemAbility",
    "RemoveSystemAbility",
    "GetSystemAbility",
    "CheckSystemAbility",
    "ListSystemAbilities",
    "DumpSystemAbilities",
    "LoadSystemAbility",
    "UnloadSystemAbility",
    "SubscribeSystemAbility",
    "UnsubscribeSystemAbility",
    "GetRunningSystemProcess",
    "AddSystemProcess",
    "ReportLoadFailure",
    "DumpSystemAbility",
    "Nope",
];

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A raw connection through the handshake, as this uid.
fn raw(sock: &Path) -> Option<UnixStream> {
    let mut c = UnixStream::connect(sock).ok()?;
    c.set_read_timeout(Some(DEADLINE)).ok()?;
    c.write_all(format!("\0AUTH EXTERNAL {}\r\nBEGIN\r\n", hex(&nix::unistd::getuid().as_raw().to_string())).as_bytes()).ok()?;
    let mut b = [0u8; 128];
    let n = c.read(&mut b).ok()?;
    b[..n].starts_with(b"OK ").then_some(c)
}

fn header(body: u32) -> Vec<u8> {
    let mut h = vec![b'l', 1, 0, 1];
    h.extend_from_slice(&body.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

/// Helper (uid 2000): the fuzzer itself.
#[test]
#[ignore = "helper of samgr_under_the_shipped_policy_survives_uid_2000"]
fn helper_fuzz_samgr() {
    let sock = PathBuf::from(std::env::var_os("ACCORD_FUZZ_SOCK").expect("run by samgr_under_the_shipped_policy_survives_uid_2000"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let held_cell: std::cell::RefCell<Vec<UnixStream>> = Default::default();
    let cfg = ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(cfg, |(member in proptest::sample::select(MEMBERS), n in prop_oneof![Just(9001u32), Just(0), Just(u32::MAX), any::<u32>()], s in ".{0,40}",
                    v in proptest::collection::vec(".{0,8}", 0..4), at in any::<proptest::sample::Index>(), byte in any::<u8>(), how in 0u8..5, hold in any::<bool>())| {
        let path = "/org/accord/samgr";
        let iface = "org.accord.SystemAbilityManager";
        let b = || zbus::Message::method_call(path, member).unwrap().interface(iface).unwrap();
        let msgs: Vec<zbus::Message> = [b().build(&(n,)), b().build(&(n, (true, n, s.as_str(), s.as_str()))), b().build(&(s.as_str(),)), b().build(&(n, v.clone())), b().build(&(n, s.as_str()))]
            .into_iter().flatten().collect();
        // Well-formed calls on a zbus connection, then one that must be
        // answered (samgr went through the others).
        rt.block_on(async {
            let conn = accord_ipc::connect(tokio::net::UnixStream::connect(&sock).await.unwrap()).await.unwrap();
            for m in &msgs {
                let _ = tokio::time::timeout(DEADLINE, conn.send(m)).await;
            }
            let p = accord_safwk::SystemAbilityManagerProxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.unwrap();
            let r = tokio::time::timeout(DEADLINE, p.check_system_ability(9001)).await;
            assert!(matches!(r, Ok(Ok(_))), "samgr answers after {member}: {r:?}");
        });
        // The same, mutated, on a raw connection.
        if let Some(mut c) = raw(&sock) {
            let mut b = msgs[at.index(msgs.len())].data().to_vec();
            let i = at.index(b.len());
            match how {
                0 => b[i] = byte,
                1 => b.truncate(i),
                2 => b[4..8].copy_from_slice(&(128u32 << 20).to_le_bytes()),
                3 => b[12..16].copy_from_slice(&u32::from(byte).wrapping_mul(0x0101_0101).to_le_bytes()),
                _ => b = [header(60 << 10), vec![byte; 1000]].concat(),
            }
            let _ = c.write_all(&b);
            // Above the limit: samgr hangs up without waiting for a body.
            if how == 2 {
                let mut r = [0u8; 4096];
                let end = std::time::Instant::now() + DEADLINE;
                loop {
                    match c.read(&mut r) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => prop_assert!(std::time::Instant::now() < end, "samgr keeps a connection announcing 128 MiB"),
                    }
                }
            } else if hold && held_cell.borrow().len() < 200 {
                held_cell.borrow_mut().push(c);
            }
        }
    });
    let mut held = held_cell.into_inner();
    // Fill up the share with connections that announced 60 KiB and sent
    // 1,000 bytes of it.
    while held.len() < 250 {
        match raw(&sock) {
            Some(mut c) => {
                c.write_all(&[header(60 << 10), vec![0; 1000]].concat()).unwrap();
                held.push(c);
            }
            None => break,
        }
    }
    rt.block_on(async {
        let c = Samgr::connect(&sock).await.expect("uid 2000 still gets a connection within its share");
        assert!(!c.check(9001).await.expect("uid 2000 may check 9001"));
    });
    println!("HOLDING");
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    drop(held);
}
