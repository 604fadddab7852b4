//! `datawriter`: the device side of the power-cut system test
//! (`tests/systest`'s `power-cut`). The test image links it to the
//! multi-call `sa_main` (`/system/bin/datawriter`, from the test overlay);
//! the product image does not.
//!
//! ```text
//! datawriter run GEN     write until killed; one line per acknowledged write
//! datawriter check       what survived, and whether the files are sound
//! datawriter full GEN    fill /data, then write each kind until it fails
//! datawriter recovered GEN   after space was freed: one write of each kind (i = 0)
//! ```
//!
//! `run` repeats, for i = 0, 1, …: a KV put through the data service
//! (SA 1301, store `powercut`, key `g<GEN>-<i>`), a relational insert
//! (`/data/local/powercut/acks.db`, one row per transaction), a preference
//! put and flush (`powercut`, key `g<GEN>` = i) and a persist parameter
//! (`persist.powercut.g<GEN>` = i); after each is acknowledged it prints
//! `ACK <kv|rdb|pref|param> <GEN> <i>`. The host kills QEMU at a random
//! moment, boots again and runs `check`, which prints
//! `HAVE <kind> <GEN> <count> <max>` for every generation it finds and
//! `INTEGRITY <file> ok|<problems>`; every acknowledged write must be there.
//!
//! `full` fills the data partition with one file (`/data/filler`,
//! allocated to the last block, root's reserve included), then writes each
//! kind (8 KiB values) until it fails, printing `ACK` lines as `run` does and
//! `FULL <kind> <error>` for the failure, then reads an acknowledged KV entry
//! back (`READ kv ok (<key>)`). The host removes the filler and runs `recovered`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use accord_data::{KvDataServiceProxy, ID};
use accord_preferences::Preferences;
use accord_rdb::{OpenCallback, RdbError, RdbPredicates, RdbStore, StoreConfig, Transaction, Value, ValuesBucket};
use accord_safwk::typed::{Blob, CallError};
use accord_safwk::Samgr;
use anyhow::{bail, ensure, Context, Result};

const DIR: &str = "/data/local/powercut";
const STORE: &str = "powercut";
const USAGE: &str = "usage: datawriter run GEN | check | full GEN | recovered GEN";
/// The file that fills the data partition for `full`.
const FILLER: &str = "/data/filler";
/// Writes of each kind `full` tries before it calls the disk not full.
const FULL_TRIES: u64 = 4000;
/// Padding after `v<i>` in `full`'s values, so the disk fills sooner.
const PAD: usize = 8 << 10;

struct Schema;

impl OpenCallback for Schema {
    fn on_create(&self, tx: &Transaction<'_>) -> Result<(), RdbError> {
        tx.execute("CREATE TABLE acks(gen INTEGER, i INTEGER, payload TEXT, PRIMARY KEY(gen, i))", &[])?;
        Ok(())
    }
}

fn kv_err<E: std::fmt::Display>(e: CallError<E>) -> anyhow::Error {
    match e {
        CallError::Sa(e) => anyhow::anyhow!("data service: {e}"),
        CallError::Ipc(e) => anyhow::anyhow!("data service (SA {ID}): {e}"),
    }
}

/// Runs `datawriter` with `args` (`args[0]` is the program name).
pub fn main(args: Vec<String>) -> Result<()> {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match *rest {
        ["run", gen] => {
            let gen: u32 = gen.parse().context(USAGE)?;
            rt.block_on(run(gen))
        }
        ["check"] => rt.block_on(check()),
        ["full", gen] => {
            let gen: u32 = gen.parse().context(USAGE)?;
            rt.block_on(full(gen))
        }
        ["recovered", gen] => {
            let gen: u32 = gen.parse().context(USAGE)?;
            rt.block_on(recovered(gen))
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn kv() -> Result<KvDataServiceProxy> {
    let socket = accord_safwk::samgr_socket();
    let samgr = Samgr::connect(&socket).await.with_context(|| format!("samgr at {}", socket.display()))?;
    samgr.get_proxy::<KvDataServiceProxy>(ID).await.with_context(|| format!("data service (SA {ID})"))
}

fn open_local() -> Result<(RdbStore, std::sync::Arc<Preferences>)> {
    std::fs::create_dir_all(DIR).with_context(|| DIR.to_owned())?;
    let rdb = RdbStore::open(&StoreConfig::new(Path::new(DIR).join("acks.db")), 1, &Schema)?;
    let prefs = Preferences::open(Path::new(DIR), "powercut")?;
    Ok((rdb, prefs))
}

async fn run(gen: u32) -> Result<()> {
    let kv = kv().await?;
    let (rdb, prefs) = open_local()?;
    if let Some(why) = prefs.recovered() {
        println!("NOTE preferences recovered: {why}");
    }
    let params = accord_param::Client::connect().context("the parameter service")?;
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        step(&kv, &rdb, &prefs, &params, &mut out, gen, i).await?;
    }
    Ok(())
}

/// Write `i` of generation `gen` to each store, each acknowledged on `out`
/// once the store returned.
async fn step(
    kv: &KvDataServiceProxy,
    rdb: &RdbStore,
    prefs: &Preferences,
    params: &accord_param::Client,
    out: &mut impl Write,
    gen: u32,
    i: u64,
) -> Result<()> {
    kv.put(STORE, &format!("g{gen}-{i}"), Blob::new(format!("v{i}").into_bytes())?).await.map_err(kv_err)?;
    writeln!(out, "ACK kv {gen} {i}")?;
    rdb.insert("acks", &ValuesBucket::new().put("gen", gen).put("i", i as i64).put("payload", format!("v{i}")))?;
    writeln!(out, "ACK rdb {gen} {i}")?;
    prefs.put(&format!("g{gen}"), i as i64)?;
    prefs.flush()?;
    writeln!(out, "ACK pref {gen} {i}")?;
    params.set(&format!("persist.powercut.g{gen}"), &i.to_string())?;
    writeln!(out, "ACK param {gen} {i}")?;
    out.flush()?;
    Ok(())
}

/// Allocates every free block of /data to [`FILLER`]; returns its size.
fn fill_disk() -> Result<u64> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(FILLER).context(FILLER)?;
    let mut size: i64 = 0;
    let mut chunk: i64 = 1 << 30;
    while chunk >= 4096 {
        // SAFETY: fallocate on a descriptor this function owns.
        if unsafe { libc::fallocate(f.as_raw_fd(), 0, size, chunk) } == 0 {
            size += chunk;
        } else {
            chunk /= 2;
        }
    }
    f.sync_all().context(FILLER)?;
    Ok(size as u64)
}

fn padded(i: u64) -> String {
    let mut v = format!("v{i}");
    v.push_str(&".".repeat(PAD));
    v
}

async fn full(gen: u32) -> Result<()> {
    let kv = kv().await?;
    let (rdb, prefs) = open_local()?;
    let params = accord_param::Client::connect().context("the parameter service")?;
    let filled = fill_disk()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "FILLED {filled}")?;
    let mut i = 0;
    loop {
        if i == FULL_TRIES {
            bail!("kv: {FULL_TRIES} puts and the disk is not full");
        }
        match kv.put(STORE, &format!("g{gen}-{i}"), Blob::new(padded(i).into_bytes())?).await {
            Ok(()) => writeln!(out, "ACK kv {gen} {i}")?,
            Err(e) => {
                writeln!(out, "FULL kv {}", kv_err(e))?;
                break;
            }
        }
        i += 1;
    }
    // Reads are still served: the first entry there, by get.
    let first = kv.entries(STORE, "g", "", 1).await.map_err(kv_err)?;
    let Some(e) = first.first() else { bail!("kv: no entry to read back") };
    let v = kv.get(STORE, &e.key).await.map_err(kv_err)?.map()?;
    let i = parse_gen(&e.key, "g").map_or(-1, |(_, i)| i);
    ensure!(value_is(&v, i), "kv read {} back as {} bytes that are not its value", e.key, v.len());
    writeln!(out, "READ kv ok ({})", e.key)?;
    for i in 0..=FULL_TRIES {
        if i == FULL_TRIES {
            bail!("rdb: {FULL_TRIES} inserts and the disk is not full");
        }
        match rdb.insert("acks", &ValuesBucket::new().put("gen", gen).put("i", i as i64).put("payload", padded(i))) {
            Ok(_) => writeln!(out, "ACK rdb {gen} {i}")?,
            Err(e) => {
                writeln!(out, "FULL rdb {e}")?;
                break;
            }
        }
    }
    for i in 0..=FULL_TRIES {
        if i == FULL_TRIES {
            bail!("pref: {FULL_TRIES} flushes and the disk is not full");
        }
        prefs.put(&format!("g{gen}"), i as i64)?;
        match prefs.flush() {
            Ok(()) => writeln!(out, "ACK pref {gen} {i}")?,
            Err(e) => {
                writeln!(out, "FULL pref {e}")?;
                break;
            }
        }
    }
    // The parameter service keeps persist values in memory and writes
    // them in batches: a set is refused once a batch fails.
    for i in 0..=FULL_TRIES {
        if i == FULL_TRIES {
            writeln!(out, "NOTE param: {FULL_TRIES} sets accepted on a full disk")?;
            break;
        }
        match params.set(&format!("persist.powercut.g{gen}"), &i.to_string()) {
            Ok(()) => writeln!(out, "ACK param {gen} {i}")?,
            Err(e) => {
                writeln!(out, "FULL param {e}")?;
                break;
            }
        }
    }
    writeln!(out, "DONE")?;
    Ok(())
}

async fn recovered(gen: u32) -> Result<()> {
    let kv = kv().await?;
    let (rdb, prefs) = open_local()?;
    let params = accord_param::Client::connect().context("the parameter service")?;
    let mut out = std::io::stdout().lock();
    // A generation of its own (the host passes the next one).
    step(&kv, &rdb, &prefs, &params, &mut out, gen, 0).await?;
    writeln!(out, "DONE")?;
    Ok(())
}

/// Per generation: (count, max) of what is there.
type Have = BTreeMap<u32, (u64, i64)>;

fn report(out: &mut impl Write, kind: &str, have: &Have) -> Result<()> {
    for (gen, (count, max)) in have {
        writeln!(out, "HAVE {kind} {gen} {count} {max}")?;
    }
    Ok(())
}

fn integrity(out: &mut impl Write, path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).with_context(|| path.display().to_string())?;
    let mut st = c.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    writeln!(out, "INTEGRITY {} {}", path.display(), lines.join("; "))?;
    Ok(())
}

/// Whether `v` is write `i`'s value: `v<i>`, padded with dots by `full`.
fn value_is(v: &[u8], i: i64) -> bool {
    let head = format!("v{i}");
    v.starts_with(head.as_bytes()) && v[head.len()..].iter().all(|&b| b == b'.')
}

fn parse_gen(key: &str, prefix: &str) -> Option<(u32, i64)> {
    let rest = key.strip_prefix(prefix)?;
    let (g, i) = rest.split_once('-').unwrap_or((rest, "0"));
    Some((g.parse().ok()?, i.parse().ok()?))
}

async fn check() -> Result<()> {
    let mut out = std::io::stdout().lock();
    // The files first, before the data service opens its store again.
    let kv_file = Path::new(accord_data::DEFAULT_ROOT).join("0").join(format!("{STORE}.db"));
    integrity(&mut out, &kv_file)?;
    integrity(&mut out, &Path::new(DIR).join("acks.db"))?;

    let kv = kv().await?;
    let mut have = Have::new();
    let mut after = String::new();
    loop {
        let page = match kv.entries(STORE, "g", &after, 1024).await {
            Ok(p) => p,
            Err(CallError::Sa(accord_data::KvError::NoSuchStore(_))) => Vec::new(),
            Err(e) => return Err(kv_err(e)),
        };
        let Some(last) = page.last() else { break };
        after = last.key.clone();
        for e in &page {
            let Some((g, i)) = parse_gen(&e.key, "g") else { bail!("a stray key {:?}", e.key) };
            if !value_is(&e.value, i) {
                bail!("kv {}: value {:?}", e.key, String::from_utf8_lossy(&e.value));
            }
            let h = have.entry(g).or_insert((0, -1));
            h.0 += 1;
            h.1 = h.1.max(i);
        }
    }
    report(&mut out, "kv", &have)?;

    let (rdb, prefs) = open_local()?;
    let mut have = Have::new();
    let mut rs = rdb.query(&RdbPredicates::new("acks").order_by_asc("gen").order_by_asc("i"), &["gen", "i", "payload"])?;
    while let Some(row) = rs.next_row()? {
        let (Some(g), Some(i)) = (row[0].as_i64(), row[1].as_i64()) else { bail!("a bad row {row:?}") };
        if !matches!(&row[2], Value::Text(t) if value_is(t.as_bytes(), i)) {
            bail!("rdb ({g}, {i}): payload {:?}", row[2]);
        }
        let h = have.entry(u32::try_from(g)?).or_insert((0, -1));
        h.0 += 1;
        h.1 = h.1.max(i);
    }
    drop(rs);
    report(&mut out, "rdb", &have)?;

    if let Some(why) = prefs.recovered() {
        writeln!(out, "NOTE preferences recovered: {why}")?;
    }
    let mut have = Have::new();
    for (k, v) in prefs.all() {
        let (Some((g, _)), accord_preferences::Value::Int(i)) = (parse_gen(&k, "g"), v) else { bail!("a stray preference {k:?}") };
        have.insert(g, (1, i));
    }
    report(&mut out, "pref", &have)?;

    let mut have = Have::new();
    let params = accord_param::Client::connect().context("the parameter service")?;
    for (k, v) in params.list("persist.powercut.")? {
        let Some((g, _)) = parse_gen(&k, "persist.powercut.g") else { bail!("a stray parameter {k}") };
        have.insert(g, (1, v.parse().with_context(|| format!("{k}={v}"))?));
    }
    report(&mut out, "param", &have)?;
    writeln!(out, "CHECKED")?;
    Ok(())
}
