//! `power-cut ARCH ROUNDS [SEED]` (`make test` runs 20 rounds on x86_64,
//! `make soak-power` 200): power cuts against every store that acknowledges
//! writes.
//!
//! Each round boots the test image on a /data disk of its own
//! (`out/<arch>/power-cut/data.img`, made fresh for the run), checks what
//! the rounds before left (`datawriter check`: every acknowledged write is
//! there, no gaps, `PRAGMA integrity_check` ok on the KV store and the
//! relational store), starts `datawriter run <round>` on the console (KV puts
//! through the data service, relational inserts, preference flushes,
//! persist parameters; one `ACK` line after each is acknowledged) and
//! kills QEMU with SIGKILL at a random moment after its first
//! acknowledgement. A last boot checks the last round. The seed (printed;
//! pass it back to replay the same moments) picks the moments.
//!
//! What SIGKILL of QEMU models: the guest loses everything it had not
//! handed to its virtual disk (page cache, the disk queue); what QEMU had
//! written to the image file stays (the host does not crash), as with a
//! disk that honours its flushes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use accord_systest::{repo_root, Qemu, PROMPT};
use anyhow::{bail, ensure, Context, Result};

const BOOT: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(120);
/// Longest wait after the round's first acknowledgement before the cut.
const MAX_DELAY_MS: u64 = 2500;
const KINDS: [&str; 4] = ["kv", "rdb", "pref", "param"];

/// (kind, generation) -> the highest acknowledged i.
type Acked = BTreeMap<(String, u32), i64>;

/// Every complete `ACK kind gen i` line of `text` for generation `gen`.
fn acks(text: &str, gen: u32, into: &mut Acked) {
    // The last line may be cut by the kill: only lines that ended count.
    let complete = text.rfind('\n').map_or("", |n| &text[..n]);
    for line in complete.lines() {
        let f: Vec<&str> = line.trim().split(' ').collect();
        if let ["ACK", kind, g, i] = f[..] {
            if let (Ok(g), Ok(i)) = (g.parse::<u32>(), i.parse::<i64>()) {
                if g == gen && KINDS.contains(&kind) {
                    let e = into.entry((kind.to_owned(), g)).or_insert(-1);
                    *e = (*e).max(i);
                }
            }
        }
    }
}

/// Runs `datawriter check` and compares it with what was acknowledged.
fn check(q: &mut Qemu, acked: &Acked) -> Result<String> {
    let (rc, out) = q.run("datawriter check", CMD)?;
    ensure!(rc == 0 && out.contains("CHECKED"), "datawriter check exited {rc}:\n{out}");
    let mut have: BTreeMap<(String, u32), (u64, i64)> = BTreeMap::new();
    let mut files = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.trim().splitn(3, ' ').collect();
        match f[..] {
            ["INTEGRITY", file, result] => {
                ensure!(result == "ok", "integrity_check of {file}: {result}");
                files += 1;
            }
            ["HAVE", kind, rest] => {
                let n: Vec<&str> = rest.split(' ').collect();
                let [g, count, max] = n[..] else { bail!("bad line {line:?}") };
                have.insert((kind.to_owned(), g.parse()?), (count.parse()?, max.parse()?));
            }
            _ => {}
        }
    }
    for ((kind, g), (count, max)) in &have {
        if kind == "kv" || kind == "rdb" {
            ensure!(*count as i64 == max + 1, "{kind} generation {g}: {count} writes up to {max}: one in between was lost");
        }
    }
    for ((kind, g), i) in acked {
        let Some((_, max)) = have.get(&(kind.clone(), *g)) else { bail!("{kind} generation {g}: nothing there, {} writes were acknowledged", i + 1) };
        ensure!(max >= i, "{kind} generation {g}: acknowledged up to {i}, only {max} there");
    }
    if !acked.is_empty() {
        ensure!(files == 2, "integrity was checked on {files} files, not the KV and the relational store:\n{out}");
    }
    Ok(out)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAIL - power cuts: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arch = args.get(1).context("usage: power-cut ARCH ROUNDS [SEED]")?.clone();
    let rounds: u32 = args.get(2).map_or(Ok(20), |r| r.parse()).context("ROUNDS")?;
    let seed: u64 = match args.get(3) {
        Some(s) => s.parse().context("SEED")?,
        None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1,
    };
    println!("power-cut: {rounds} rounds on {arch}, seed {seed}");
    // fastrand: small, seedable, so a run replays from its seed.
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = repo_root().join("out").join(&arch).join("power-cut");
    std::fs::create_dir_all(&dir)?;
    let img = dir.join("data.img");
    let _ = std::fs::remove_file(&img);
    let empty = tempfile_dir(&dir)?;
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "data", "-E", "root_owner=0:0", "-d"])
        .arg(&empty)
        .arg(&img)
        .arg("256M")
        .stdout(std::process::Stdio::null())
        .status()
        .context("mkfs.ext4")?;
    ensure!(st.success(), "mkfs.ext4 {} failed", img.display());
    let _ = std::fs::remove_dir(&empty);

    let mut acked = Acked::new();
    for round in 0..=rounds {
        let log = dir.join(format!("round-{round}.log"));
        let mut q = Qemu::boot_with_data(&arch, &log, Some(&img))?;
        q.wait_for(PROMPT, BOOT).with_context(|| format!("round {round}: boot after the cut"))?;
        let report = check(&mut q, &acked).with_context(|| format!("round {round}: after the cut (console: {})", log.display()))?;
        if round == rounds {
            let total: i64 = acked.values().map(|i| i + 1).sum();
            println!("ok - {rounds} power cuts: all {total} acknowledged writes kept, integrity ok");
            let _ = report;
            disk_full(q, &arch, &dir, rounds, &mut acked)?;
            return Ok(());
        }
        q.send(&format!("datawriter run {round}"))?;
        q.wait_for(&format!("ACK kv {round} 0\n"), CMD).with_context(|| format!("round {round}: the writer's first write"))?;
        let delay = rng.u64(0..=MAX_DELAY_MS);
        std::thread::sleep(Duration::from_millis(delay));
        q.kill()?;
        let before = acked.len();
        acks(&q.transcript(), round, &mut acked);
        let got: Vec<String> = KINDS.iter().map(|k| format!("{k} {}", acked.get(&(k.to_string(), round)).map_or(0, |i| i + 1))).collect();
        println!("round {round}: cut {delay} ms after the first write; acknowledged: {}", got.join(", "));
        ensure!(acked.len() > before, "round {round}: no acknowledgement parsed");
    }
    Ok(())
}

/// The disk-full part, on the image the rounds filled: /data is filled to
/// the last block, each kind is written until it fails (a clear error),
/// acknowledged KV entries still read; the filler is removed and each kind
/// writes again; a reboot keeps everything acknowledged.
fn disk_full(mut q: Qemu, arch: &str, dir: &Path, gen: u32, acked: &mut Acked) -> Result<()> {
    let (rc, out) = q.run(&format!("datawriter full {gen}"), Duration::from_secs(900))?;
    ensure!(rc == 0 && out.contains("DONE"), "datawriter full exited {rc}:\n{out}");
    acks(&out, gen, acked);
    let line = |kind: &str| out.lines().find_map(|l| l.strip_prefix(&format!("FULL {kind} "))).map(str::to_owned);
    let kv = line("kv").context("the KV puts never failed")?;
    ensure!(kv.contains("disk full"), "KV on a full disk: {kv}");
    ensure!(out.contains("READ kv ok"), "KV reads on a full disk:\n{out}");
    let rdb = line("rdb").context("the relational inserts never failed")?;
    ensure!(rdb.contains("disk is full") && rdb.contains("acks.db"), "relational store on a full disk: {rdb}");
    let pref = line("pref").context("the preference flushes never failed")?;
    ensure!(pref.contains("No space left") && pref.contains("powercut.prefs"), "preferences on a full disk: {pref}");
    let param = line("param").unwrap_or_else(|| "every set accepted".into());
    let count = |kind: &str| acked.get(&(kind.to_owned(), gen)).map_or(0, |i| i + 1);
    println!(
        "disk full: acknowledged kv {}, rdb {}, pref {}, param {} before the errors:\n  kv: {kv}\n  rdb: {rdb}\n  pref: {pref}\n  param: {param}",
        count("kv"),
        count("rdb"),
        count("pref"),
        count("param")
    );
    let (rc, o) = q.run("rm /data/filler && sync", CMD)?;
    ensure!(rc == 0, "rm /data/filler: {o}");
    let (rc, o) = q.run(&format!("datawriter recovered {}", gen + 1), CMD)?;
    ensure!(rc == 0 && o.contains("DONE"), "writes after space was freed failed ({rc}):\n{o}");
    acks(&o, gen + 1, acked);
    check(&mut q, acked).context("after space was freed")?;
    q.send("poweroff")?;
    let (st, _) = q.wait_exit(Duration::from_secs(60))?;
    ensure!(st.success(), "QEMU exited with {st}");
    let log = dir.join("after-full.log");
    let mut q = Qemu::boot_with_data(arch, &log, Some(&dir.join("data.img")))?;
    q.wait_for(PROMPT, BOOT)?;
    check(&mut q, acked).with_context(|| format!("after a reboot following the full disk (console: {})", log.display()))?;
    q.send("poweroff")?;
    let (st, _) = q.wait_exit(Duration::from_secs(60))?;
    ensure!(st.success(), "QEMU exited with {st}");
    println!("ok - a full disk: clear errors, reads served, writes again once space was freed, all acknowledged writes kept");
    Ok(())
}

/// An empty directory for mkfs.ext4's `-d` (an empty root).
fn tempfile_dir(parent: &Path) -> Result<std::path::PathBuf> {
    let d = parent.join("empty-root");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d)?;
    Ok(d)
}
