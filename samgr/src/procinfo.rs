//! What hidumper's system sections read from `/proc` (OpenHarmony's
//! `hidumper --mem`, `--cpuusage`, `-p` and `-c`): pure parsers over the
//! kernel's text, and readers over a `/proc` root given by the caller (the
//! tests give a tree of their own). Sizes are in kB, as the kernel gives
//! them; CPU time in clock ticks.

use std::io;
use std::path::Path;

/// Memory of one class of mappings of a process, kB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemRow {
    /// The mapping class: `native heap`, `stack`, `.so`, `binary`, `anon`,
    /// `memfd`, `dev`, `kernel`, `other file`, or `Total`.
    pub class: String,
    pub pss: u64,
    pub rss: u64,
    pub shared_clean: u64,
    pub shared_dirty: u64,
    pub private_clean: u64,
    pub private_dirty: u64,
    pub swap: u64,
}

impl MemRow {
    fn add(&mut self, o: &MemRow) {
        self.pss += o.pss;
        self.rss += o.rss;
        self.shared_clean += o.shared_clean;
        self.shared_dirty += o.shared_dirty;
        self.private_clean += o.private_clean;
        self.private_dirty += o.private_dirty;
        self.swap += o.swap;
    }

    /// Private (unshared) memory: what the process alone costs.
    pub fn uss(&self) -> u64 {
        self.private_clean + self.private_dirty
    }
}

/// The class of a mapping named `name` in a process whose binary is `exe`.
pub fn classify(name: &str, exe: &str) -> &'static str {
    match name {
        "" => "anon",
        "[heap]" => "native heap",
        "[vdso]" | "[vvar]" | "[vsyscall]" | "[vvar_vclock]" => "kernel",
        n if n.starts_with("[stack") => "stack",
        n if n.starts_with("[anon") => "anon",
        n if !exe.is_empty() && n == exe => "binary",
        n if n.starts_with("/memfd:") => "memfd",
        n if n.starts_with("/dev/") => "dev",
        n if n.ends_with(".so") || n.contains(".so.") => ".so",
        _ => "other file",
    }
}

/// The name of a mapping from its header line (`range perms offset dev
/// inode [name]`; the name may hold spaces, as `/memfd:x (deleted)`).
fn mapping_name(header: &str) -> &str {
    let mut rest = header;
    for _ in 0..5 {
        rest = rest.trim_start().split_once(char::is_whitespace).map(|(_, r)| r).unwrap_or("");
    }
    rest.trim()
}

/// Sums `smaps` text by mapping class; rows by PSS, largest first, then
/// the total.
pub fn parse_smaps(text: &str, exe: &str) -> (Vec<MemRow>, MemRow) {
    let mut rows: Vec<MemRow> = Vec::new();
    let mut cur: Option<MemRow> = None;
    let flush = |cur: &mut Option<MemRow>, rows: &mut Vec<MemRow>| {
        if let Some(m) = cur.take() {
            match rows.iter_mut().find(|r| r.class == m.class) {
                Some(r) => r.add(&m),
                None => rows.push(m),
            }
        }
    };
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(first) = it.next() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range perms offset dev inode [name].
            flush(&mut cur, &mut rows);
            let name = mapping_name(line);
            cur = Some(MemRow { class: classify(name, exe).to_owned(), ..MemRow::default() });
            continue;
        }
        let (Some(m), Some(v)) = (cur.as_mut(), it.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
        match first {
            "Rss:" => m.rss += v,
            "Pss:" => m.pss += v,
            "Shared_Clean:" => m.shared_clean += v,
            "Shared_Dirty:" => m.shared_dirty += v,
            "Private_Clean:" => m.private_clean += v,
            "Private_Dirty:" => m.private_dirty += v,
            "Swap:" => m.swap += v,
            _ => {}
        }
    }
    flush(&mut cur, &mut rows);
    rows.sort_by(|a, b| b.pss.cmp(&a.pss).then(a.class.cmp(&b.class)));
    let mut total = MemRow { class: "Total".into(), ..MemRow::default() };
    for r in &rows {
        total.add(r);
    }
    (rows, total)
}

/// The memory of process `pid` by mapping class.
///
/// # Errors
/// The process is gone, or its smaps may not be read.
pub fn mem(proc_root: &Path, pid: u32) -> io::Result<(Vec<MemRow>, MemRow)> {
    let dir = proc_root.join(pid.to_string());
    let text = std::fs::read_to_string(dir.join("smaps"))?;
    let exe = std::fs::read_link(dir.join("exe")).map(|p| p.display().to_string()).unwrap_or_default();
    Ok(parse_smaps(&text, &exe))
}

/// The fields of `/proc/<pid>/stat` hidumper shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// User + system CPU time, ticks.
    pub cpu_ticks: u64,
    pub threads: u32,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat` (the name in parentheses may hold spaces and
/// parentheses: it ends at the last `)`).
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12) … num_threads(17) … rss(21).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        ppid: num(1)? as u32,
        cpu_ticks: num(11)? + num(12)?,
        threads: num(17)? as u32,
        rss_pages: num(21)?,
    })
}

/// A process as `hidumper -p` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub stat: Stat,
    pub uid: u32,
    /// The command line, arguments joined by spaces (empty for kernel
    /// threads).
    pub cmdline: String,
}

/// Every process under `proc_root` (those that vanish while read are
/// skipped), by pid.
pub fn processes(proc_root: &Path) -> Vec<Process> {
    let Ok(rd) = std::fs::read_dir(proc_root) else { return Vec::new() };
    let mut v: Vec<Process> = rd
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            process(proc_root, pid)
        })
        .collect();
    v.sort_by_key(|p| p.stat.pid);
    v
}

/// One process, if it is there.
pub fn process(proc_root: &Path, pid: u32) -> Option<Process> {
    let dir = proc_root.join(pid.to_string());
    let stat = parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let cmdline = std::fs::read(dir.join("cmdline"))
        .map(|b| b.split(|&c| c == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    Some(Process { stat, uid, cmdline })
}

/// `/proc/stat`'s first line → (busy ticks, all ticks) of all CPUs.
pub fn parse_cpu_total(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let all: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((all - idle, all))
}

/// Usage over an interval, from two samples.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuUsage {
    /// Share of all CPUs busy, percent.
    pub total: f64,
    /// Per process: (pid, name, percent of one CPU), busiest first.
    pub procs: Vec<(u32, String, f64)>,
}

/// Samples `/proc`, waits `interval`, samples again.
///
/// # Errors
/// `/proc/stat` cannot be read.
pub fn cpu_usage(proc_root: &Path, interval: std::time::Duration) -> io::Result<CpuUsage> {
    let sample = || -> io::Result<((u64, u64), Vec<Stat>)> {
        let t = parse_cpu_total(&std::fs::read_to_string(proc_root.join("stat"))?).ok_or_else(|| io::Error::other("unreadable /proc/stat"))?;
        Ok((t, processes(proc_root).into_iter().map(|p| p.stat).collect()))
    };
    let ((b0, a0), p0) = sample()?;
    std::thread::sleep(interval);
    let ((b1, a1), p1) = sample()?;
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let all = a1.saturating_sub(a0).max(1) as f64;
    let total = 100.0 * b1.saturating_sub(b0) as f64 / all;
    let mut procs: Vec<(u32, String, f64)> = p1
        .iter()
        .filter_map(|s| {
            let before = p0.iter().find(|o| o.pid == s.pid)?;
            let d = s.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
            // Ticks of all CPUs in the interval / ncpu = ticks of one CPU.
            Some((s.pid, s.comm.clone(), 100.0 * d * ncpu / all))
        })
        .collect();
    procs.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
    Ok(CpuUsage { total, procs })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5601b61c5000-5601b61c7000 r--p 00000000 fe:00 247030                     /system/bin/hilogd
Rss:                   8 kB
Pss:                   8 kB
Shared_Clean:          0 kB
Private_Clean:         8 kB
5601b7000000-5601b7021000 rw-p 00000000 00:00 0                          [heap]
Rss:                  12 kB
Pss:                  12 kB
Private_Dirty:        12 kB
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
Rss:                   4 kB
Pss:                   4 kB
Private_Dirty:         4 kB
Swap:                  4 kB
7f0000002000-7f0000010000 r-xp 00000000 fe:00 11                         /lib/ld-linux-x86-64.so.2
Rss:                  40 kB
Pss:                  10 kB
Shared_Clean:         40 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                   8 kB
Pss:                   8 kB
Private_Dirty:         8 kB
7f0000020000-7f0000021000 rw-s 00000000 00:01 5                          /memfd:blob (deleted)
Rss:                   4 kB
Pss:                   2 kB
Shared_Dirty:          4 kB
";

    #[test]
    fn smaps_sums_by_class() {
        let (rows, total) = parse_smaps(SMAPS, "/system/bin/hilogd");
        let get = |c: &str| rows.iter().find(|r| r.class == c).cloned().unwrap_or_else(|| panic!("no {c}: {rows:?}"));
        assert_eq!(get("native heap").pss, 12);
        assert_eq!(get("binary").private_clean, 8);
        assert_eq!((get("anon").pss, get("anon").swap), (4, 4));
        assert_eq!((get(".so").rss, get(".so").pss, get(".so").shared_clean), (40, 10, 40));
        assert_eq!(get("stack").pss, 8);
        assert_eq!(get("memfd").shared_dirty, 4);
        assert_eq!((total.pss, total.rss, total.uss()), (44, 76, 32));
        assert_eq!(rows[0].class, "native heap");
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let s =
            parse_stat("812 (sa_main (x) y) S 1 812 812 0 -1 4194560 1096 0 0 0 37 21 0 0 20 0 3 0 950 12345678 567 18446744073709551615 1 1 0 0 0 0 0 0 0")
                .unwrap();
        assert_eq!((s.pid, s.comm.as_str(), s.state, s.ppid, s.cpu_ticks, s.threads, s.rss_pages), (812, "sa_main (x) y", 'S', 1, 58, 3, 567));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S").is_none());
    }

    #[test]
    fn cpu_totals() {
        assert_eq!(parse_cpu_total("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2 3 4\n"), Some((15, 100)));
        assert!(parse_cpu_total("intr 1 2").is_none());
    }

    #[test]
    fn this_process_reads_through() {
        let me = std::process::id();
        let (rows, total) = mem(Path::new("/proc"), me).unwrap();
        assert!(total.pss > 0 && !rows.is_empty());
        let p = process(Path::new("/proc"), me).unwrap();
        assert_eq!(p.stat.pid, me);
        assert!(processes(Path::new("/proc")).iter().any(|p| p.stat.pid == me));
    }
}
