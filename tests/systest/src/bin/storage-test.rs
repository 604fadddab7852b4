//! `storage-test ARCH` (`make storage-test`, in `make test` on x86_64): the
//! storage manager and daemon in QEMU, on a /data disk of the test's own
//! (`out/<arch>/storage-test/data.img`) and USB disks plugged in and
//! pulled out through QMP.
//!
//! 1. A blank disk is formatted at first boot and mounted; user 100's
//!    directories are there. A host-made ext4 stick appears MOUNTED with
//!    its file; a blank stick appears UNMOUNTED, refuses a mount, is
//!    formatted (vfat), mounted, written, ejected and pulled out
//!    (REMOVED); a stick pulled out while mounted and busy is BAD_REMOVAL
//!    and the console keeps answering. The shell uid may list but not
//!    format. Every change reaches `storage watch`.
//! 2. The primary superblock zeroed: e2fsck repairs from a backup, the
//!    file written in boot 1 is there; with the whole first MiB zeroed
//!    (it looks blank) the filesystem is rebuilt, not formatted (the same
//!    uuid).
//! 3. The whole disk overwritten: DAMAGED, said on the console, /data an
//!    empty read-only tmpfs (writes fail); `storage format data`, and
//! 4. the next boot mounts it clean.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use accord_systest::{repo_root, Qemu, Qmp, Report, PROMPT};
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;

const BOOT: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(120);

struct Machine {
    q: Qemu,
    qmp: Qmp,
}

fn boot(arch: &str, dir: &Path, n: u32) -> Result<Machine> {
    let sock = dir.join("qmp.sock");
    let _ = std::fs::remove_file(&sock);
    let extra = vec!["-qmp".to_owned(), format!("unix:{},server=on,wait=off", sock.display())];
    let mut q = Qemu::boot_with(arch, &dir.join(format!("boot{n}.log")), Some(&dir.join("data.img")), &extra)?;
    q.wait_for(PROMPT, BOOT)?;
    let qmp = Qmp::connect(&sock)?;
    Ok(Machine { q, qmp })
}

fn poweroff(m: &mut Machine) -> Result<()> {
    m.q.send("poweroff")?;
    m.q.wait_exit(Duration::from_secs(120))?;
    Ok(())
}

/// Runs `cmd`; its output if it exits 0.
fn ok(m: &mut Machine, cmd: &str) -> Result<String> {
    let (rc, out) = m.q.run(cmd, CMD)?;
    ensure!(rc == 0, "{cmd:?} exited {rc}:\n{out}");
    Ok(out)
}

/// Runs `cmd`, which must fail saying `why`.
fn refused(m: &mut Machine, cmd: &str, why: &str) -> Result<()> {
    let (rc, out) = m.q.run(cmd, CMD)?;
    ensure!(rc != 0 && out.contains(why), "{cmd:?} exited {rc}, expected a failure saying {why:?}:\n{out}");
    Ok(())
}

/// Runs `cmd` every half second until its output holds every one of
/// `want` (60 s at most).
fn until(m: &mut Machine, cmd: &str, want: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out) = m.q.run(cmd, CMD)?;
        if want.iter().all(|w| out.contains(w)) {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!("{cmd:?} never showed {want:?}; last:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The line of `storage volumes` for volume `id`.
fn volume_line(table: &str, id: &str) -> Option<String> {
    table.lines().find(|l| l.split_whitespace().next() == Some(id)).map(str::to_owned)
}

fn plug(m: &mut Machine, id: &str, img: &Path) -> Result<()> {
    m.qmp.execute("blockdev-add", json!({"node-name": format!("n{id}"), "driver": "raw", "file": {"driver": "file", "filename": img}}))?;
    m.qmp.execute("device_add", json!({"driver": "usb-storage", "id": id, "drive": format!("n{id}")}))?;
    Ok(())
}

fn pull(m: &mut Machine, id: &str) -> Result<()> {
    m.qmp.execute("device_del", json!({"id": id}))?;
    Ok(())
}

fn host(cmd: &mut std::process::Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("{cmd:?}"))?;
    ensure!(st.success(), "{cmd:?} failed: {st}");
    Ok(())
}

/// What the boot step said of /data on the console ("" if nothing).
fn data_line(m: &Machine) -> String {
    m.q.transcript().lines().find(|l| l.contains("storage: /data:")).unwrap_or_default().to_owned()
}

/// The uuid of the filesystem on /data, from the boot step's outcome.
fn data_uuid(m: &mut Machine) -> Result<String> {
    let js = ok(m, "cat /run/storage/data.json")?;
    let v: serde_json::Value = serde_json::from_str(js.trim()).with_context(|| format!("{js:?}"))?;
    let u = v.get("uuid").and_then(|u| u.as_str()).unwrap_or_default().to_owned();
    ensure!(u.len() == 36, "no uuid in {js}");
    Ok(u)
}

/// Boot 1; returns the uuid of the filesystem it made on /data.
fn first_boot(arch: &str, dir: &Path, r: &mut Report) -> Result<String> {
    let mut m = boot(arch, dir, 1)?;
    r.check("a blank /data disk is formatted at first boot and mounted", {
        let line = data_line(&m);
        if line.contains("blank disk (first boot): formatted as ext4") && line.ends_with("mounted") {
            Ok(())
        } else {
            Err(anyhow::anyhow!("console said {line:?}"))
        }
    });
    r.check(
        "storage volumes lists the data partition EMULATED MOUNTED",
        (|| {
            let t = until(&mut m, "storage volumes", &["data "])?;
            let l = volume_line(&t, "data").unwrap_or_default();
            ensure!(l.contains("EMULATED") && l.contains("MOUNTED") && l.contains("/dev/vda") && l.contains("/data"), "{t}");
            Ok(())
        })(),
    );
    r.check(
        "user 100's directories are made with their modes",
        (|| {
            let out = ok(&mut m, "stat -c '%a %U %n' /data/app/el1/100/base /data/app/el2/100/database /data/service/el1/100 /data/service/el2/100")?;
            ensure!(out.lines().filter(|l| l.starts_with("711 root ")).count() == 4, "{out}");
            ok(&mut m, "echo kept > /data/marker && sync")?;
            Ok(())
        })(),
    );
    ok(&mut m, "(storage watch > /tmp/watch.log 2>&1 &)")?;
    until(&mut m, "cat /tmp/watch.log", &["watching volumes"])?;

    r.check(
        "a host-made ext4 USB disk appears and is mounted with its files",
        (|| {
            plug(&mut m, "u1", &dir.join("stick-ext4.img"))?;
            let t = until(&mut m, "storage volumes", &["/mnt/data/external/vol-8-0"])?;
            let l = volume_line(&t, "vol-8-0").unwrap_or_default();
            ensure!(l.contains("EXTERNAL") && l.contains("MOUNTED") && l.contains("ext4"), "{t}");
            let out = ok(&mut m, "cat /mnt/data/external/vol-8-0/greeting.txt")?;
            ensure!(out.contains("hello from the host"), "{out}");
            Ok(())
        })(),
    );
    r.check(
        "a blank USB disk is UNMOUNTED, refuses a mount, is formatted vfat, mounted and written",
        (|| {
            plug(&mut m, "u2", &dir.join("stick-blank.img"))?;
            let t = until(&mut m, "storage volumes", &["vol-8-16"])?;
            ensure!(volume_line(&t, "vol-8-16").unwrap_or_default().contains("UNMOUNTED"), "{t}");
            refused(&mut m, "storage mount vol-8-16", "format it")?;
            let out = ok(&mut m, "storage format vol-8-16 vfat")?;
            ensure!(out.contains("formatted as vfat"), "{out}");
            let out = ok(&mut m, "storage mount vol-8-16")?;
            ensure!(out.contains("MOUNTED on /mnt/data/external/vol-8-16"), "{out}");
            ok(&mut m, "echo written > /mnt/data/external/vol-8-16/note.txt && cat /mnt/data/external/vol-8-16/note.txt")?;
            let df = ok(&mut m, "storage df")?;
            ensure!(df.contains("vol-8-16") && df.contains("vol-8-0") && df.contains("data "), "{df}");
            Ok(())
        })(),
    );
    r.check(
        "the shell uid lists volumes but may not format or unmount",
        (|| {
            ok(&mut m, "su shell -s /bin/sh -c 'storage volumes'")?;
            refused(&mut m, "su shell -s /bin/sh -c 'storage format vol-8-16 ext4'", "lacks ohos.permission.MOUNT_FORMAT_MANAGER")?;
            refused(&mut m, "su shell -s /bin/sh -c 'storage unmount vol-8-16'", "lacks ohos.permission.MOUNT_UNMOUNT_MANAGER")?;
            Ok(())
        })(),
    );
    r.check(
        "eject, then pulling the disk out, is REMOVED",
        (|| {
            let out = ok(&mut m, "storage eject vol-8-16")?;
            ensure!(out.contains("UNMOUNTED") && out.contains("safe to remove"), "{out}");
            pull(&mut m, "u2")?;
            until(&mut m, "cat /tmp/watch.log", &["vol-8-16 REMOVED"])?;
            let t = ok(&mut m, "storage volumes")?;
            ensure!(volume_line(&t, "vol-8-16").is_none(), "{t}");
            Ok(())
        })(),
    );
    r.check(
        "a busy volume is not unmounted; pulled out while mounted it is BAD_REMOVAL, no hang",
        (|| {
            ok(&mut m, "(cd /mnt/data/external/vol-8-0 && exec sleep 100000 &)")?;
            refused(&mut m, "storage unmount vol-8-0", "busy")?;
            pull(&mut m, "u1")?;
            until(&mut m, "cat /tmp/watch.log", &["vol-8-0 BAD_REMOVAL"])?;
            let t = ok(&mut m, "storage volumes")?;
            ensure!(volume_line(&t, "vol-8-0").is_none() && volume_line(&t, "data").is_some(), "{t}");
            ok(&mut m, "pkill sleep; true")?;
            Ok(())
        })(),
    );
    r.check(
        "storage watch saw each change in order",
        (|| {
            let w = ok(&mut m, "cat /tmp/watch.log")?;
            let want = ["vol-8-0 CHECKING", "vol-8-0 MOUNTED", "vol-8-16 UNMOUNTED", "vol-8-16 MOUNTED", "vol-8-16 REMOVED", "vol-8-0 BAD_REMOVAL"];
            let mut at = 0;
            for s in want {
                let Some(p) = w[at..].find(s) else { bail!("{s:?} missing or out of order in:\n{w}") };
                at += p;
            }
            Ok(())
        })(),
    );
    r.check(
        "hidumper -s 5003 shows the manager linked and the volumes",
        (|| {
            let out = ok(&mut m, "hidumper -s 5003")?;
            ensure!(out.contains("linked to the daemon") && out.contains("data ") && out.contains("subscribers: 1"), "{out}");
            Ok(())
        })(),
    );
    let uuid = data_uuid(&mut m)?;
    poweroff(&mut m)?;
    Ok(uuid)
}

fn main() -> ExitCode {
    let arch = std::env::args().nth(1).unwrap_or_else(|| "x86_64".into());
    let mut r = Report::default();
    if let Err(e) = run(&arch, &mut r) {
        println!("FAIL - storage-test stopped: {e:#}");
        r.failed += 1;
    }
    r.finish()
}

fn run(arch: &str, r: &mut Report) -> Result<()> {
    let dir: PathBuf = repo_root().join("out").join(arch).join("storage-test");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data.img");
    let _ = std::fs::remove_file(&data);
    host(std::process::Command::new("truncate").args(["-s", "128M"]).arg(&data))?;
    let blank = dir.join("stick-blank.img");
    let _ = std::fs::remove_file(&blank);
    host(std::process::Command::new("truncate").args(["-s", "32M"]).arg(&blank))?;
    let files = dir.join("stick-files");
    let _ = std::fs::remove_dir_all(&files);
    std::fs::create_dir_all(&files)?;
    std::fs::write(files.join("greeting.txt"), "hello from the host\n")?;
    host(std::process::Command::new("mkfs.ext4").args(["-q", "-F", "-L", "stick", "-d"]).arg(&files).arg(dir.join("stick-ext4.img")).arg("32M"))?;

    let t0 = Instant::now();
    let uuid = first_boot(arch, &dir, r)?;

    // 2. The primary superblock zeroed.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&data)?;
        f.write_all_at(&[0u8; 1024], 1024)?;
        f.sync_all()?;
    }
    let mut m = boot(arch, &dir, 2)?;
    r.check(
        "a zeroed superblock is repaired from a backup and the data is there",
        (|| {
            let line = data_line(&m);
            ensure!(line.contains("repaired") && line.ends_with("mounted"), "console said {line:?}");
            let out = ok(&mut m, "cat /data/marker")?;
            ensure!(out.contains("kept"), "{out}");
            Ok(())
        })(),
    );
    poweroff(&mut m)?;

    // 2b. The whole first MiB zeroed: a blank start, a filesystem behind.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&data)?;
        f.write_all_at(&vec![0u8; 1 << 20], 0)?;
        f.sync_all()?;
    }
    let mut m = boot(arch, &dir, 5)?;
    r.check(
        "a disk whose first MiB was zeroed is rebuilt from a backup, not formatted",
        (|| {
            let line = data_line(&m);
            ensure!(line.contains("rebuilt from a backup superblock") && line.ends_with("mounted"), "console said {line:?}");
            // What lived in the zeroed MiB is gone (e2fsck keeps what it
            // can in lost+found); the filesystem is the same one.
            let now = data_uuid(&mut m)?;
            ensure!(now == uuid, "the filesystem is {now}, was {uuid}: it was formatted");
            Ok(())
        })(),
    );
    poweroff(&mut m)?;

    // 3. The whole disk overwritten.
    {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut chunk = vec![0u8; 1 << 20];
        let mut out = Vec::with_capacity(128 << 20);
        for _ in 0..128 {
            rng.fill(&mut chunk);
            out.extend_from_slice(&chunk);
        }
        std::fs::write(&data, out)?;
    }
    let mut m = boot(arch, &dir, 3)?;
    r.check(
        "a disk of garbage is DAMAGED, said on the console, /data read-only and empty",
        (|| {
            let line = data_line(&m);
            ensure!(line.contains("DAMAGED and not mounted") && line.contains("storage format data"), "console said {line:?}");
            refused(&mut m, "touch /data/x", "Read-only file system")?;
            let t = until(&mut m, "storage volumes", &["data "])?;
            ensure!(volume_line(&t, "data").unwrap_or_default().contains("DAMAGED"), "{t}");
            // And why, under the table.
            ensure!(t.lines().any(|l| l.trim_start().starts_with("data: ") && l.contains("storage format data")), "{t}");
            let out = ok(&mut m, "storage format data")?;
            ensure!(out.contains("reboot"), "{out}");
            Ok(())
        })(),
    );
    poweroff(&mut m)?;
    let mut m = boot(arch, &dir, 4)?;
    r.check(
        "after storage format data, the next boot mounts it clean",
        (|| {
            let line = data_line(&m);
            ensure!(line.contains("checked: clean") && line.ends_with("mounted"), "console said {line:?}");
            ok(&mut m, "touch /data/x")?;
            Ok(())
        })(),
    );
    poweroff(&mut m)?;
    println!("# storage-test: 5 boots in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}
