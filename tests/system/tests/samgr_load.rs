//! Load: 1,000 concurrent client connections (10 processes × 100) get the
//! demo SA through the real samgr and call it while one client process in
//! ten is killed mid-call (after two rounds without kills). No call may get a wrong reply, the survivors
//! finish, and samgr's descriptors and memory come back to their baseline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use accord_sa_main::demo::DemoProxy;
use accord_safwk::Samgr;

const PROCS: usize = 10;
const PER_PROC: usize = 100;
const CALLS: u32 = 10;
/// How many connections samgr may still be closing when a baseline is read.
const STRAGGLERS: usize = 8;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Waits (30 s at most) until `pid` holds at most `n` descriptors.
fn wait_fds_at_most(pid: u32, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fds(pid) > n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// A client process; it makes its first call on every connection, then
/// waits for `go` to exist before the rest (so all 1,000 connections are
/// up at once, whatever the machine's speed).
fn client(sock: &Path, go: &Path, conns: usize, slow: bool) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "load_client", "--nocapture", "--test-threads=1"])
        .env("ACCORD_LOAD_SOCKET", sock)
        .env("ACCORD_LOAD_GO", go)
        .env("ACCORD_LOAD_CONNS", conns.to_string())
        .env("ACCORD_LOAD_SLOW", if slow { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn thousand_clients_with_ten_percent_killed_mid_call() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let profile = dir.path().join("demo_sa.json");
    std::fs::write(&profile, r#"{"process": "demo_sa", "systemability": [{"name": 9001, "run-on-create": true}]}"#).unwrap();
    let samgr = Kill(
        Command::new(accord_testkit::workspace_bin("samgr", "accord-samgr"))
            .arg("--socket")
            .arg(&sock)
            .arg("--policy")
            .arg("/nonexistent")
            .arg("--profiles")
            .arg(dir.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let samgr_pid = samgr.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "samgr never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The host's log goes to a file, shown if it never registers.
    let host_log = dir.path().join("sa_main.log");
    let _host = Kill(
        Command::new(accord_testkit::workspace_bin("sa_main", "accord-sa-main"))
            .arg(&profile)
            .env("SAMGR_SOCKET", &sock)
            .stdout(std::fs::File::create(&host_log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("sa_main.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    // Asked in-process, each attempt bounded, the last answer kept: a
    // failure says what samgr said (or that it did not answer).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(5), async { Samgr::connect(&sock).await?.check(9001).await }).await {
                Ok(Ok(true)) => None,
                Ok(Ok(false)) => Some("samgr says: not registered".to_owned()),
                Ok(Err(e)) => Some(format!("samgr error: {e}")),
                Err(_) => Some("samgr did not answer within 5 s".to_owned()),
            }
        });
        let Some(last) = last else { break };
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&host_log).unwrap_or_default();
            let err = std::fs::read_to_string(dir.path().join("sa_main.err")).unwrap_or_default();
            panic!("SA 9001 never registered ({last}); sa_main wrote:\n{log}{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(rt);

    // Three rounds of the same shape: 1,000 connections held at once, then
    // the calls. The first two, without kills, set the baseline (the
    // allocator keeps the pages it grew into at the peak); the third kills
    // one client process mid-call and must leave samgr where it was.
    let (fd_start, rss_start) = (fds(samgr_pid), rss_kib(samgr_pid));
    let go = dir.path().join("go");
    for _ in 0..2 {
        let r = round(&sock, &go, samgr_pid, false);
        assert_eq!(r.calls, PROCS as u64 * PER_PROC as u64 * u64::from(CALLS), "every call got its right reply");
    }
    // `fd_start` may still count the registration check's
    // connection (samgr closes it when it sees the hang-up), so "back to
    // where it started" is "not above it", waited for.
    assert!(
        wait_fds_at_most(samgr_pid, fd_start),
        "samgr's descriptors return to where they started after 2,000 connections ({} > {fd_start})",
        fds(samgr_pid)
    );
    let (fd0, rss0) = (fds(samgr_pid), rss_kib(samgr_pid));

    let r = round(&sock, &go, samgr_pid, true);
    assert_eq!(r.calls, (PROCS as u64 - 1) * PER_PROC as u64 * u64::from(CALLS), "every survivor's call got its right reply");
    // The baseline may still count a few connections samgr had not yet
    // closed when it was read (the registration check's, round 2's last):
    // at most STRAGGLERS. The peak is read once every client reported all
    // its connections up, so it counts the 1,000.
    assert!(
        r.peak + STRAGGLERS >= fd0 + PER_PROC * PROCS,
        "samgr held the 1,000 connections at once (peak {} fds, baseline {fd0}, up to {STRAGGLERS} of it closing)",
        r.peak
    );

    let back = wait_fds_at_most(samgr_pid, fd0);
    let (fd1, rss1) = (fds(samgr_pid), rss_kib(samgr_pid));
    println!(
        "samgr: start {fd_start} fds {rss_start} KiB; after rounds 1-2 {fd0} fds {rss0} KiB; round 3 peak {} fds, after {fd1} fds {rss1} KiB; {} calls checked",
        r.peak, r.calls
    );
    assert!(back, "samgr's descriptors return to baseline ({fd1} > {fd0})");
    // Leaking what 1,000 connections hold would be megabytes.
    assert!(rss1 <= rss0 + rss0 / 5 + 2048, "samgr's memory returns to baseline: {rss0} KiB -> {rss1} KiB");
}

struct Round {
    /// Most descriptors samgr held while the clients waited for `go`.
    peak: usize,
    /// Calls answered correctly, summed over the surviving clients.
    calls: u64,
}

/// One round: PROCS client processes connect PER_PROC times each and hold
/// the connections until every one is up (samgr's descriptors show it),
/// then make their calls; with `kill`, the first (slow) client is killed
/// while its calls are under way.
fn round(sock: &Path, go: &Path, samgr_pid: u32, kill: bool) -> Round {
    let _ = std::fs::remove_file(go);
    if let Ok(d) = std::fs::read_dir(go.parent().expect("go has a directory")) {
        for e in d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().contains(".ready.")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let base = fds(samgr_pid);
    let mut kids: Vec<Child> = (0..PROCS).map(|i| client(sock, go, PER_PROC, kill && i == 0)).collect();
    let victim = kill.then(|| Kill(kids.remove(0)));
    // Every client says when all its connections are up (a file
    // `<go>.ready.<pid>`); samgr's descriptors are read then.
    let ready = |kids: usize| {
        let dir = go.parent().expect("go has a directory");
        let prefix = format!("{}.ready.", go.file_name().and_then(|n| n.to_str()).unwrap_or("go"));
        std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).count()).unwrap_or(0) >= kids
    };
    let expected = kids.len() + usize::from(victim.is_some());
    let mut peak = base;
    let t = Instant::now();
    while !ready(expected) {
        assert!(t.elapsed() < Duration::from_secs(180), "the clients never all connected");
        std::thread::sleep(Duration::from_millis(20));
        peak = peak.max(fds(samgr_pid));
    }
    peak = peak.max(fds(samgr_pid));
    std::fs::write(go, "").unwrap();
    if let Some(mut victim) = victim {
        // The slow client spends ~450 ms in its calls; this lands in them
        // on an idle machine (on a loaded one it may land before them,
        // which the assertions do not depend on).
        std::thread::sleep(Duration::from_millis(150));
        victim.0.kill().unwrap();
        let _ = victim.0.wait();
    }
    let mut calls = 0u64;
    for k in kids {
        let out = k.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a surviving client failed:\n{text}");
        calls += text
            .lines()
            .find_map(|l| l.split_once("CALLS ").map(|x| x.1))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no CALLS line:\n{text}"));
    }
    Round { peak, calls }
}

/// One client process, a helper run by the test above (ignored on its
/// own): `ACCORD_LOAD_CONNS` connections, each getting the SA and making
/// `CALLS` checked calls.
#[tokio::test(flavor = "current_thread")]
#[ignore = "helper process of thousand_clients_with_ten_percent_killed_mid_call"]
async fn load_client() {
    let sock = PathBuf::from(std::env::var_os("ACCORD_LOAD_SOCKET").expect("load_client is a helper: ACCORD_LOAD_SOCKET"));
    let n: usize = std::env::var("ACCORD_LOAD_CONNS").expect("ACCORD_LOAD_CONNS").parse().expect("ACCORD_LOAD_CONNS is a number");
    let slow = std::env::var("ACCORD_LOAD_SLOW").as_deref() == Ok("1");
    let go = PathBuf::from(std::env::var_os("ACCORD_LOAD_GO").expect("ACCORD_LOAD_GO"));
    // A few gets at a time per process (40 in all): samgr gives a host 4 s
    // to take each connection, and a thousand at once on a loaded 2-CPU
    // machine with debug builds can miss that; the point here is holding
    // and using 1,000 connections, not the latency of a thundering herd.
    let gets = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let up = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..n {
        let (sock, go, gets, up) = (sock.clone(), go.clone(), gets.clone(), up.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gets.acquire_owned().await.expect("semaphore");
            let samgr = Samgr::connect(&sock).await.expect("connect to samgr");
            let demo = samgr.get_proxy::<DemoProxy>(9001).await.expect("get SA 9001");
            assert_eq!(demo.add_one(c as u32).await.expect("first call"), c as u32 + 1, "wrong reply");
            drop(permit);
            // The last one up tells the test.
            if up.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
                std::fs::write(format!("{}.ready.{}", go.display(), std::process::id()), "").expect("ready file");
            }
            let mut ok = 1u64;
            while !go.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for i in 1..CALLS {
                let x = (c as u32) * 1000 + i;
                assert_eq!(demo.add_one(x).await.expect("call"), x + 1, "wrong reply");
                ok += 1;
                if slow {
                    // Stay mid-call long enough to be killed.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client task");
    }
    println!("CALLS {total}");
}
