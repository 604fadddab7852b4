//! `make bench` part: the data service (SA 1301) against the same store
//! used in-process, side by side in one run (issue 9's ratios):
//!
//! - durable put (one key per transaction, `synchronous=FULL`) through the
//!   service vs [`accord_data::store::Store::put`] in this process, the same
//!   SQLite code and pragmas;
//! - get through the service (p50) vs an in-process get, and gets/s with
//!   16 tasks sharing one connection;
//! - a batch put of 10,000 entries in one transaction, through the
//!   service.
//!
//! samgr and the SA host run in this process (the calls still cross a
//! socket pair to the host's per-connection thread, as in the image); the
//! stores live in a temporary directory on this machine's disk.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_data::store::Store;
use accord_data::{KvDataService, KvDataServiceProxy, KvService, ID};
use accord_safwk::typed::Blob;
use accord_safwk::{SaHost, Samgr};
use serde_bytes::ByteBuf;

const PUTS: usize = 200;
const GETS: usize = 5_000;
const TASKS: usize = 16;
const TPUT_TIME: Duration = Duration::from_secs(1);
const BATCH: usize = 10_000;

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

async fn proxy(sock: &Path) -> KvDataServiceProxy {
    Samgr::connect(sock).await.expect("samgr").get_proxy::<KvDataServiceProxy>(ID).await.expect("SA 1301")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("samgr");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (_host, kv) = rt.block_on(async {
        tokio::spawn(accord_samgr::serve(tokio::net::UnixListener::bind(&sock).expect("bind"), accord_samgr::Registry::default()));
        let host = SaHost::connect(&sock).await.expect("host");
        host.publish_remote(ID, KvService::new(&dir.path().join("kv"), "bench").expect("service").into_remote(), None).await.expect("publish");
        let kv = proxy(&sock).await;
        (host, kv)
    });
    let mut local = Store::open(&dir.path().join("local.db"), "local", true).expect("local store");
    let value = vec![0x5au8; 100];

    // Durable puts, interleaved in rounds so the disk's moods hit both.
    let (mut svc_put, mut loc_put) = (Vec::new(), Vec::new());
    for round in 0..4 {
        for i in 0..PUTS / 4 {
            let key = format!("k{round}-{i}");
            let t = Instant::now();
            rt.block_on(kv.put("bench", &key, Blob::new(value.clone()).expect("blob"))).expect("service put");
            svc_put.push(t.elapsed());
            let t = Instant::now();
            local.put(&key, &value, "bench").expect("local put");
            loc_put.push(t.elapsed());
        }
    }
    let (sp, lp) = (p50(svc_put), p50(loc_put));

    // Gets.
    let (mut svc_get, mut loc_get) = (Vec::with_capacity(GETS), Vec::with_capacity(GETS));
    for i in 0..GETS {
        let key = format!("k{}-{}", i % 4, i % (PUTS / 4));
        let t = Instant::now();
        let v = rt.block_on(kv.get("bench", &key)).expect("service get");
        svc_get.push(t.elapsed());
        assert_eq!(v.into_bytes().expect("bytes").len(), value.len());
        let t = Instant::now();
        let v = local.get(&key).expect("local get");
        loc_get.push(t.elapsed());
        assert!(v.is_some());
    }
    let (sg, lg) = (p50(svc_get), p50(loc_get));

    // 16 tasks on one connection.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (kv, done, stop) = (kv.clone(), done.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        kv.get("bench", &format!("k{}-{}", i % 4, i % (PUTS / 4))).await.expect("get");
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(TPUT_TIME).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("task");
        }
    });
    let gets_per_s = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();

    // One batch of 10,000.
    let batch: Vec<(String, ByteBuf)> = (0..BATCH).map(|i| (format!("batch/{i:05}"), ByteBuf::from(value.clone()))).collect();
    let t = Instant::now();
    rt.block_on(kv.put_batch("batch", batch)).expect("batch put");
    let batch_ms = t.elapsed().as_secs_f64() * 1e3;

    println!("data service (SA 1301) vs the same store in-process, one run ({} CPUs)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("durable put, 100-byte value, {PUTS} puts  service p50 {sp:>8.1} us   in-process {lp:>8.1} us   {:.2}x (target <= 1.2x)", sp / lp);
    println!("get, {GETS} gets                        service p50 {sg:>8.1} us   in-process {lg:>8.1} us   {:.2}x", sg / lg);
    println!("gets/s, {TASKS} tasks on one connection   {gets_per_s:>9.0} (target >= 50k)");
    println!("batch put of {BATCH} entries, one transaction: {batch_ms:.1} ms");
}
