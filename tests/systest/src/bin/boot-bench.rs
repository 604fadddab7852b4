//! `make bench` part: boots the image N times (default 5) under TCG and
//! prints the median wall time from QEMU's start to init's start, to
//! `bootevent.boot.completed` and to the shell prompt, the userland share
//! (completed − init start), and the time from `poweroff` to QEMU's exit.
//! Also init's RSS at idle, the proportional set size (PSS: shared pages
//! divided among the processes sharing them) of samgr and of the data
//! service's process after a `kv put`, and the image size.
//!
//! Guest times come from init's own boot-time parameters (µs since the
//! kernel started); the kernel's start is placed on the host clock by
//! reading /proc/uptime through the console.

use std::time::{Duration, Instant};

use accord_systest::{repo_root, Qemu, PROMPT};
use anyhow::{ensure, Context, Result};

struct Sample {
    init: f64,
    completed: f64,
    prompt: f64,
    poweroff: f64,
    rss_kb: u64,
    samgr_pss_kb: u64,
    data_pss_kb: u64,
    storage_pss_kb: u64,
    hilogd_pss_kb: u64,
    /// powermgr (SAs 3301-3303), PSS and USS.
    power_pss_kb: u64,
    power_uss_kb: u64,
    /// render_service at idle (the background on the screen), PSS and USS.
    render_pss_kb: u64,
    render_uss_kb: u64,
    /// The first frame on the screen (bootevent.render_service.ready),
    /// host ms since QEMU started; 0 when the image has no render_service.
    first_frame: f64,
    /// The status bar sent to the compositor (bootevent.systemui.ready),
    /// host ms since QEMU started; 0 without a system UI.
    ui_ready: f64,
    /// systemui at idle (the bar on the screen), PSS.
    systemui_pss_kb: u64,
    /// Private (unshared) memory of the data service and the two storage
    /// SAs together: what running them costs beyond the shared binary.
    uss_kb: u64,
    /// The boot step's check (and mount) of /data, ms.
    data_check_ms: u64,
    data_total_ms: u64,
}

/// `Pss:` of a process, in kB, from its smaps_rollup.
fn pss(q: &mut Qemu, pid_cmd: &str) -> Result<u64> {
    let (rc, out) = q.run(&format!("grep '^Pss:' /proc/$({pid_cmd})/smaps_rollup"), Duration::from_secs(20))?;
    ensure!(rc == 0, "no smaps_rollup for `{pid_cmd}`: {out}");
    out.split_whitespace().nth(1).context("Pss")?.parse().context("Pss value")
}

/// Private memory of a process (USS: Private_Clean + Private_Dirty), in kB.
fn uss(q: &mut Qemu, pid_cmd: &str) -> Result<u64> {
    let (rc, out) = q.run(&format!("grep '^Private' /proc/$({pid_cmd})/smaps_rollup"), Duration::from_secs(20))?;
    ensure!(rc == 0, "no smaps_rollup for `{pid_cmd}`: {out}");
    out.lines().map(|l| l.split_whitespace().nth(1).context("Private")?.parse::<u64>().context("Private value")).sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn one(arch: &str, i: usize) -> Result<Sample> {
    let log = repo_root().join("out").join(arch).join(format!("boot-bench-{i}.log"));
    let mut q = Qemu::boot(arch, &log)?;
    let prompt = q.wait_for(accord_systest::PROMPT, Duration::from_secs(120))?;
    let (rc, _) = q.run("param wait bootevent.boot.completed true 30", Duration::from_secs(40))?;
    ensure!(rc == 0, "boot did not complete");
    let (_, out) = q.run("param get ohos.boot.time.init; param get ohos.boot.time.boot.completed; grep VmRSS /proc/1/status", Duration::from_secs(20))?;
    let lines: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    ensure!(lines.len() >= 3, "unexpected output {out:?}");
    let init_us: f64 = lines[0].parse()?;
    let done_us: f64 = lines[1].parse()?;
    let rss_kb: u64 = lines[2].split_whitespace().nth(1).context("rss")?.parse()?;
    // The data service started on demand by one call, then idle.
    let (rc, out) = q.run("kv put bench k v", Duration::from_secs(40))?;
    ensure!(rc == 0, "kv put: {out}");
    let data_pss_kb = pss(&mut q, "hidumper -ls | awk '$1 == 1301 {print $4}'")?;
    let samgr_pss_kb = pss(&mut q, "pidof samgr")?;
    let hilogd_pss_kb = pss(&mut q, "pidof hilogd")?;
    // powermgr is a boot service: waited for (its SAs LOADED), unless the
    // image has no powermgr service (an overlay that takes it out, to
    // measure the boot without it): then 0.
    let (rc, _) = q.run("grep -q powermgr /etc/init/powermgr.cfg", Duration::from_secs(20))?;
    let (power_pss_kb, power_uss_kb) = if rc == 0 {
        let (rc, out) =
            q.run("i=0; until hidumper -ls | grep -q '^3303 *LOADED'; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done", Duration::from_secs(60))?;
        ensure!(rc == 0, "powermgr never loaded SA 3303: {out}");
        (pss(&mut q, "hidumper -ls | awk '$1 == 3301 {print $4}'")?, uss(&mut q, "hidumper -ls | awk '$1 == 3301 {print $4}'")?)
    } else {
        println!("# no powermgr service in this image");
        (0, 0)
    };
    let (rc, ff) = q.run("param get ohos.boot.time.render_service.ready", Duration::from_secs(20))?;
    let first_frame_us: Option<f64> = if rc == 0 { ff.trim().parse().ok() } else { None };
    let (render_pss_kb, render_uss_kb) =
        if first_frame_us.is_some() { (pss(&mut q, "pidof render_service")?, uss(&mut q, "pidof render_service")?) } else { (0, 0) };
    let (rc, ui) = q.run("param get ohos.boot.time.systemui.ready", Duration::from_secs(20))?;
    let ui_ready_us: Option<f64> = if rc == 0 { ui.trim().parse().ok() } else { None };
    let systemui_pss_kb = if ui_ready_us.is_some() { pss(&mut q, "pidof systemui")? } else { 0 };
    let storage_pss_kb = pss(&mut q, "hidumper -ls | awk '$1 == 5003 {print $4}'")? + pss(&mut q, "hidumper -ls | awk '$1 == 5002 {print $4}'")?;
    let mut uss_kb = 0;
    for id in [1301, 5003, 5002] {
        uss_kb += uss(&mut q, &format!("hidumper -ls | awk '$1 == {id} {{print $4}}'"))?;
    }
    let (rc, js) = q.run("cat /run/storage/data.json", Duration::from_secs(20))?;
    ensure!(rc == 0, "no /run/storage/data.json: {js}");
    let field = |name: &str| -> Result<u64> {
        let at = js.find(&format!("\"{name}\":")).with_context(|| format!("{name} in {js}"))? + name.len() + 3;
        js[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().with_context(|| format!("{name} in {js}"))
    };
    let (data_check_ms, data_total_ms) = (field("check_ms")?, field("total_ms")?);
    // The guest clock against the host's: the uptime read is the last thing
    // the command does, so its output arrives right after it is taken.
    let (_, up) = q.run("cat /proc/uptime", Duration::from_secs(20))?;
    let now = Instant::now();
    let uptime_s: f64 = up.split_whitespace().next().context("uptime")?.parse()?;
    // Host time at which the guest's clock read zero.
    let kernel_start = ms(now.duration_since(q.started)) - uptime_s * 1000.0;
    let t_off = Instant::now();
    q.send("poweroff")?;
    let (st, exited) = q.wait_exit(Duration::from_secs(30))?;
    ensure!(st.success(), "QEMU exited with {st}");
    let _ = PROMPT;
    Ok(Sample {
        init: kernel_start + init_us / 1000.0,
        completed: kernel_start + done_us / 1000.0,
        first_frame: first_frame_us.map(|us| kernel_start + us / 1000.0).unwrap_or(0.0),
        ui_ready: ui_ready_us.map(|us| kernel_start + us / 1000.0).unwrap_or(0.0),
        systemui_pss_kb,
        render_pss_kb,
        render_uss_kb,
        prompt: ms(prompt.duration_since(q.started)),
        poweroff: ms(exited.duration_since(t_off)),
        rss_kb,
        samgr_pss_kb,
        data_pss_kb,
        storage_pss_kb,
        hilogd_pss_kb,
        power_pss_kb,
        power_uss_kb,
        uss_kb,
        data_check_ms,
        data_total_ms,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let arch = std::env::args().nth(1).unwrap_or_else(|| "aarch64".into());
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut samples = Vec::new();
    for i in 0..n {
        let s = one(&arch, i).with_context(|| format!("boot {i}"))?;
        println!(
            "boot {i}: init {:7.0} ms  completed {:7.0} ms  prompt {:7.0} ms  userland {:5.0} ms  poweroff {:5.0} ms",
            s.init,
            s.completed,
            s.prompt,
            s.completed - s.init,
            s.poweroff
        );
        samples.push(s);
    }
    let col = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    println!("median of {n} ({arch}, TCG), wall time since QEMU started:");
    println!("  init starts            {:7.0} ms", col(|s| s.init));
    println!("  boot.completed         {:7.0} ms", col(|s| s.completed));
    println!("  shell prompt           {:7.0} ms", col(|s| s.prompt));
    println!("  userland share         {:7.0} ms  (completed - init start)", col(|s| s.completed - s.init));
    println!(
        "  first frame            {:7.0} ms  (render_service's first frame on the screen, after init start; 0: no render_service)",
        col(|s| if s.first_frame > 0.0 { s.first_frame - s.init } else { 0.0 })
    );
    println!(
        "  status bar on screen   {:7.0} ms  (systemui's bar sent to the compositor, after init start: the launcher's button is there; 0: no system UI)",
        col(|s| if s.ui_ready > 0.0 { s.ui_ready - s.init } else { 0.0 })
    );
    println!("  poweroff -> QEMU exit  {:7.0} ms", col(|s| s.poweroff));
    println!("  init VmRSS at idle     {:7} kB", samples.iter().map(|s| s.rss_kb).max().unwrap_or(0));
    println!("  samgr PSS at idle      {:7} kB", samples.iter().map(|s| s.samgr_pss_kb).max().unwrap_or(0));
    println!(
        "  hilogd PSS at idle     {:7} kB  (issue 10's target: with power, battery and thermal <= 2560 kB)",
        samples.iter().map(|s| s.hilogd_pss_kb).max().unwrap_or(0)
    );
    println!(
        "  powermgr PSS at idle   {:7} kB  (SAs 3301-3303 in one process; USS {} kB; with hilogd: {} kB)",
        samples.iter().map(|s| s.power_pss_kb).max().unwrap_or(0),
        samples.iter().map(|s| s.power_uss_kb).max().unwrap_or(0),
        samples.iter().map(|s| s.power_pss_kb + s.hilogd_pss_kb).max().unwrap_or(0)
    );
    println!(
        "  render_service PSS     {:7} kB  (idle, the background on the screen; USS {} kB; issue 11's target: <= 8192 kB)",
        samples.iter().map(|s| s.render_pss_kb).max().unwrap_or(0),
        samples.iter().map(|s| s.render_uss_kb).max().unwrap_or(0)
    );
    println!(
        "  systemui PSS           {:7} kB  (idle, the bar on the screen; with render_service: {} kB; issue 11's target for both: <= 24576 kB)",
        samples.iter().map(|s| s.systemui_pss_kb).max().unwrap_or(0),
        samples.iter().map(|s| s.systemui_pss_kb + s.render_pss_kb).max().unwrap_or(0)
    );
    println!(
        "  data service PSS       {:7} kB  (SA 1301's process after one kv put; issue 9's target: with the storage manager <= 2560 kB)",
        samples.iter().map(|s| s.data_pss_kb).max().unwrap_or(0)
    );
    println!(
        "  storage PSS            {:7} kB  (the manager, 5003, and the daemon, 5002, together)",
        samples.iter().map(|s| s.storage_pss_kb).max().unwrap_or(0)
    );
    println!(
        "  data + storage USS     {:7} kB  (private memory of SAs 1301, 5003 and 5002; the rest of their PSS is the shared sa_main binary)",
        samples.iter().map(|s| s.uss_kb).max().unwrap_or(0)
    );
    println!("  /data check at boot    {:7.0} ms  (e2fsck -p; {:.0} ms to mounted)", col(|s| s.data_check_ms as f64), col(|s| s.data_total_ms as f64));
    let out = repo_root().join("out").join(&arch);
    for f in ["initramfs.img", "vmlinuz"] {
        if let Ok(m) = std::fs::metadata(out.join(f)) {
            println!("  {f:<22} {:7} KiB", m.len() / 1024);
        }
    }
    Ok(())
}
