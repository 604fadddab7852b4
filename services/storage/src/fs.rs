//! Filesystems on block devices: what a device holds (probed from its
//! first bytes, as blkid does), and running the tools that check and make
//! them (Debian's `e2fsck`, `mke2fs`, `fsck.fat`, `mkfs.fat` in the image).
//!
//! Probing reads at most [`PROBE_BYTES`] from the start of the device and
//! never trusts what it reads: every field is bounds-checked, a label or
//! uuid that is not printable is shown escaped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bytes read from the start of a device to tell what it holds (also the
/// span that must be all zeros for a device to count as blank).
pub const PROBE_BYTES: usize = 1 << 20;

/// What a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// ext2/3/4 (magic 0xEF53 at byte 1080); `journal`: it has one (ext3/4).
    Ext { uuid: String, label: String, journal: bool },
    /// FAT12/16/32 (a boot sector naming FAT and ending 0x55AA).
    Fat { uuid: String, label: String },
    /// Only zeros in the first [`PROBE_BYTES`]: never formatted (or wiped).
    Blank,
    /// Something else: a partition table, another filesystem, or damage.
    Unknown,
}

impl Content {
    /// The filesystem type as `mount(2)` names it ("" when there is none).
    pub fn fs_type(&self) -> &'static str {
        match self {
            Content::Ext { .. } => "ext4",
            Content::Fat { .. } => "vfat",
            Content::Blank | Content::Unknown => "",
        }
    }
}

/// Reads what `dev` holds.
///
/// # Errors
/// The device cannot be opened or read.
pub fn probe(dev: &Path) -> std::io::Result<Content> {
    let mut f = std::fs::File::open(dev)?;
    let mut buf = Vec::with_capacity(PROBE_BYTES);
    (&mut f).take(PROBE_BYTES as u64).read_to_end(&mut buf)?;
    Ok(probe_bytes(&buf))
}

/// What the first bytes of a device say it holds (see [`probe`]).
pub fn probe_bytes(b: &[u8]) -> Content {
    // ext: the superblock at 1024; magic at +56, feature_compat at +92
    // (has_journal = 0x4), uuid at +104, label at +120 (16 bytes each).
    if b.len() >= 1024 + 136 && b[1024 + 56..1024 + 58] == [0x53, 0xEF] {
        let sb = &b[1024..];
        let compat = u32::from_le_bytes([sb[92], sb[93], sb[94], sb[95]]);
        return Content::Ext { uuid: uuid_string(&sb[104..120]), label: text(&sb[120..136]), journal: compat & 0x4 != 0 };
    }
    if b.len() >= 512 && b[510] == 0x55 && b[511] == 0xAA {
        // FAT32 names its type at 0x52 (serial 0x43, label 0x47); FAT12/16
        // at 0x36 (serial 0x27, label 0x2B).
        for (kind, serial, label) in [(0x52, 0x43, 0x47), (0x36, 0x27, 0x2B)] {
            if b[kind..kind + 3] == *b"FAT" {
                let s = u32::from_le_bytes([b[serial], b[serial + 1], b[serial + 2], b[serial + 3]]);
                let mut name = text(&b[label..label + 11]);
                if name == "NO NAME" {
                    name.clear();
                }
                return Content::Fat { uuid: format!("{:04X}-{:04X}", s >> 16, s & 0xFFFF), label: name };
            }
        }
    }
    if b.iter().all(|&x| x == 0) {
        return Content::Blank;
    }
    Content::Unknown
}

fn uuid_string(u: &[u8]) -> String {
    let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A label field: up to the first NUL, trailing spaces dropped, anything
/// not printable ASCII escaped.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s: String = b[..end].iter().flat_map(|&c| std::ascii::escape_default(c)).map(char::from).collect();
    s.trim_end().to_owned()
}

/// Where the filesystem tools are (the image's `/sbin`; tests point
/// elsewhere).
#[derive(Debug, Clone)]
pub struct Tools {
    pub dir: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Tools { dir: PathBuf::from("/sbin") }
    }
}

/// How a filesystem check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Nothing to fix.
    Clean,
    /// Errors were found and fixed (`how`: which pass fixed them).
    Repaired { how: String },
    /// Errors are left, or the checker could not run: do not mount.
    Failed { why: String },
}

/// A tool's run: its exit code (None: killed by a signal) and the last
/// lines of what it printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub tail: String,
}

/// Most bytes of a tool's output kept (its last lines name the problem;
/// a tool that prints without end costs no more than this).
const OUTPUT_KEPT: usize = 16 << 10;

/// Runs `tool` (in [`Tools::dir`]) with `args`, stdin closed, keeping the
/// last [`OUTPUT_KEPT`] bytes of what it prints (stdout and stderr, in
/// the order written).
///
/// # Errors
/// The tool cannot be started (it is named in the message).
pub fn run(tools: &Tools, tool: &str, args: &[&str]) -> Result<Run, String> {
    use std::io::Read;
    let path = tools.dir.join(tool);
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let writer2 = writer.try_clone().map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let mut child = Command::new(&path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_KEPT {
                    kept.drain(..kept.len() - OUTPUT_KEPT);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let status = child.wait().map_err(|e| format!("{}: {e}", path.display()))?;
    let all = String::from_utf8_lossy(&kept);
    let lines: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" | ");
    Ok(Run { code: status.code(), tail })
}

/// Checks the ext filesystem on `dev`: first `e2fsck -p` (preen: fixes
/// what is safe to fix unattended), and if that leaves errors, `e2fsck -f
/// -y` (answers yes to every repair; orphaned files land in
/// `lost+found`). Exit codes as e2fsck(8): 0 clean, 1 and 2 fixed, 4 and
/// up left or failed.
pub fn check_ext(tools: &Tools, dev: &Path) -> CheckOutcome {
    let dev = dev.to_string_lossy();
    let preen = match run(tools, "e2fsck", &["-p", &dev]) {
        Ok(r) => r,
        Err(why) => return CheckOutcome::Failed { why },
    };
    match preen.code {
        Some(0) => return CheckOutcome::Clean,
        Some(1..=3) => return CheckOutcome::Repaired { how: format!("e2fsck -p: {}", preen.tail) },
        Some(c) if c & 8 != 0 => return CheckOutcome::Failed { why: format!("e2fsck could not check it (exit {c}): {}", preen.tail) },
        _ => {}
    }
    tracing::warn!("{dev}: e2fsck -p left errors ({}); repairing with e2fsck -f -y", preen.tail);
    match run(tools, "e2fsck", &["-f", "-y", &dev]) {
        Ok(Run { code: Some(0..=3), tail, .. }) => CheckOutcome::Repaired { how: format!("e2fsck -f -y: {tail}") },
        Ok(r) => CheckOutcome::Failed { why: format!("e2fsck -f -y could not repair it (exit {:?}): {}", r.code, r.tail) },
        Err(why) => CheckOutcome::Failed { why },
    }
}

/// Repairs an ext filesystem whose primary superblock is gone, from the
/// first backup superblock e2fsck can open (`e2fsck -f -y -b <block> -B
/// <size>`: block 8193 for 1 KiB blocks, 16384 for 2 KiB, 32768 for 4
/// KiB); e2fsck then writes the primary back. On a disk with no ext
/// filesystem every try fails and nothing is written.
pub fn check_ext_backup(tools: &Tools, dev: &Path) -> CheckOutcome {
    let dev = dev.to_string_lossy();
    let mut tried = Vec::new();
    for (block, size) in [("8193", "1024"), ("16384", "2048"), ("32768", "4096")] {
        match run(tools, "e2fsck", &["-f", "-y", "-b", block, "-B", size, &dev]) {
            Ok(Run { code: Some(0..=3), tail, .. }) => return CheckOutcome::Repaired { how: format!("e2fsck -f -y -b {block}: {tail}") },
            Ok(r) => tried.push(format!("-b {block}: exit {:?}", r.code)),
            Err(why) => return CheckOutcome::Failed { why },
        }
    }
    CheckOutcome::Failed { why: format!("no backup superblock e2fsck could use ({})", tried.join(", ")) }
}

/// Checks the FAT filesystem on `dev` with `fsck.fat -a` (repairs
/// automatically). Exit codes as fsck.fat(8): 0 clean, 1 errors (fixed
/// with `-a`), other values failed.
pub fn check_fat(tools: &Tools, dev: &Path) -> CheckOutcome {
    let dev = dev.to_string_lossy();
    match run(tools, "fsck.fat", &["-a", "-w", &dev]) {
        Ok(Run { code: Some(0), .. }) => CheckOutcome::Clean,
        Ok(Run { code: Some(1), tail, .. }) => CheckOutcome::Repaired { how: format!("fsck.fat -a: {tail}") },
        Ok(r) => CheckOutcome::Failed { why: format!("fsck.fat failed (exit {:?}): {}", r.code, r.tail) },
        Err(why) => CheckOutcome::Failed { why },
    }
}

/// Checks whatever `content` says `dev` holds.
pub fn check(tools: &Tools, dev: &Path, content: &Content) -> CheckOutcome {
    match content {
        Content::Ext { .. } => check_ext(tools, dev),
        Content::Fat { .. } => check_fat(tools, dev),
        Content::Blank => CheckOutcome::Failed { why: "it holds no filesystem (blank)".into() },
        Content::Unknown => CheckOutcome::Failed { why: "it holds no filesystem Accord knows (ext4, vfat)".into() },
    }
}

/// Filesystems [`format`] makes.
pub const FORMATS: &[&str] = &["ext4", "vfat"];

/// Makes a new, empty `fs_type` filesystem (one of [`FORMATS`]) on `dev`
/// labelled `label`: everything on it is lost.
///
/// # Errors
/// An unknown type, or the tool failed (its last lines in the message).
pub fn format(tools: &Tools, dev: &Path, fs_type: &str, label: &str) -> Result<(), String> {
    let dev = dev.to_string_lossy();
    let r = match fs_type {
        // root_owner: the new root directory belongs to root, not to the
        // uid formatting (mke2fs' default is the caller).
        "ext4" => run(tools, "mke2fs", &["-q", "-F", "-t", "ext4", "-L", label, "-E", "root_owner=0:0", &dev])?,
        "vfat" => {
            let label: String = label.chars().filter(char::is_ascii_alphanumeric).take(11).collect::<String>().to_ascii_uppercase();
            run(tools, "mkfs.fat", &["-n", if label.is_empty() { "NO NAME" } else { &label }, &dev])?
        }
        other => return Err(format!("cannot format as {other:?}: Accord makes {}", FORMATS.join(", "))),
    };
    match r.code {
        Some(0) => Ok(()),
        c => Err(format!("formatting {dev} as {fs_type} failed (exit {c:?}): {}", r.tail)),
    }
}

/// Total and free bytes of the filesystem mounted at `path` (free as an
/// unprivileged user sees it).
pub fn sizes(path: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size() as u64;
    Some((s.blocks() as u64 * frag, s.blocks_available() as u64 * frag))
}

/// The size of the block device whose sysfs directory is `sys_block`, in
/// bytes (0 if unknown).
pub fn device_bytes(sys_block: &Path) -> u64 {
    std::fs::read_to_string(sys_block.join("size")).ok().and_then(|s| s.trim().parse::<u64>().ok()).map_or(0, |sectors| sectors * 512)
}

/// `v` with its sizes now: the filesystem's when mounted, else the
/// device's size (from sysfs under `class_block`) and nothing free.
pub fn with_sizes(mut v: crate::Volume, class_block: &Path) -> crate::Volume {
    let mounted = if v.state == crate::VolumeState::Mounted && !v.path.is_empty() { sizes(Path::new(&v.path)) } else { None };
    match mounted {
        Some((total, free)) => {
            v.total_bytes = total;
            v.free_bytes = free;
        }
        None => {
            let name = v.device.rsplit('/').next().unwrap_or_default();
            v.total_bytes = if name.is_empty() { 0 } else { device_bytes(&class_block.join(name)) };
            v.free_bytes = 0;
        }
    }
    v
}

/// The mounts of this process's namespace: (device numbers, mount point,
/// source), from `/proc/self/mountinfo`.
fn mounts() -> Vec<((u32, u32), String, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            let dash = f.iter().position(|x| *x == "-")?;
            Some(((maj.parse().ok()?, min.parse().ok()?), unescape(f.get(4)?), unescape(f.get(dash + 2)?)))
        })
        .collect()
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)))
            .then(|| b[i + 1..i + 4].iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(c) = code {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the block device `major:minor` is mounted (the first place), if
/// it is.
pub fn mount_point_of(major: u32, minor: u32) -> Option<String> {
    mounts().into_iter().find(|(dev, _, _)| *dev == (major, minor)).map(|(_, mp, _)| mp)
}

/// What is mounted on `path` (its source, `/dev/vda`), if anything.
pub fn source_mounted_on(path: &Path) -> Option<String> {
    let want = path.to_string_lossy();
    mounts().into_iter().rev().find(|(_, mp, _)| *mp == want).map(|(_, _, src)| src)
}

/// Whether the kernel lists filesystem `name` in `/proc/filesystems`,
/// waiting up to `timeout` for it (init loads the modules in parallel with
/// the boot's first steps).
pub fn wait_fs_type(name: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let listed = std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.lines().any(|l| l.split_whitespace().last() == Some(name)));
        if listed || Instant::now() >= deadline {
            return listed;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An image file of `mb` MiB (a block device stand-in for the tools).
    fn image(dir: &Path, name: &str, mb: u64) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().set_len(mb << 20).unwrap();
        p
    }

    #[test]
    fn formats_probes_and_checks_ext4_and_vfat() {
        let dir = tempfile::tempdir().unwrap();
        let tools = Tools::default();
        let img = image(dir.path(), "a.img", 32);
        assert_eq!(probe(&img).unwrap(), Content::Blank);
        assert!(matches!(check(&tools, &img, &Content::Blank), CheckOutcome::Failed { .. }));
        format(&tools, &img, "ext4", "stick").unwrap();
        let c = probe(&img).unwrap();
        let Content::Ext { uuid, label, journal } = &c else { panic!("{c:?}") };
        assert_eq!((label.as_str(), *journal, uuid.len()), ("stick", true, 36));
        assert_eq!(check(&tools, &img, &c), CheckOutcome::Clean);
        format(&tools, &img, "vfat", "my stick!").unwrap();
        let c = probe(&img).unwrap();
        let Content::Fat { uuid, label } = &c else { panic!("{c:?}") };
        assert_eq!((label.as_str(), uuid.len()), ("MYSTICK", 9));
        assert_eq!(check(&tools, &img, &c), CheckOutcome::Clean);
        let e = format(&tools, &img, "ntfs", "x").unwrap_err();
        assert!(e.contains("ext4, vfat"), "{e}");
    }

    #[test]
    fn a_damaged_ext4_is_repaired_and_a_lost_superblock_comes_from_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let tools = Tools::default();
        let img = image(dir.path(), "b.img", 32);
        format(&tools, &img, "ext4", "b").unwrap();
        // The root directory's inode cleared and the filesystem marked as
        // having errors (as the kernel does when it finds one; a clean
        // mark is trusted by a preen): preening stops, -y repairs.
        for cmd in ["clri <2>", "ssv state 2"] {
            let st = Command::new("/sbin/debugfs").args(["-w", "-R", cmd]).arg(&img).output().unwrap();
            assert!(st.status.success(), "{st:?}");
        }
        match check_ext(&tools, &img) {
            CheckOutcome::Repaired { how } => assert!(how.contains("-f -y"), "{how}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(check_ext(&tools, &img), CheckOutcome::Clean);
        // The primary superblock zeroed: not ext any more to a probe.
        {
            use std::os::unix::fs::FileExt;
            std::fs::OpenOptions::new().write(true).open(&img).unwrap().write_all_at(&[0u8; 1024], 1024).unwrap();
        }
        assert_eq!(probe(&img).unwrap(), Content::Unknown);
        assert!(matches!(check_ext_backup(&tools, &img), CheckOutcome::Repaired { .. }));
        assert!(matches!(probe(&img).unwrap(), Content::Ext { .. }));
        assert_eq!(check_ext(&tools, &img), CheckOutcome::Clean);
    }

    #[test]
    fn garbage_is_unknown_and_no_backup_is_found_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("g.img");
        let mut rng_bytes = vec![0u8; 16 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in rng_bytes.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::write(&img, &rng_bytes).unwrap();
        assert_eq!(probe(&img).unwrap(), Content::Unknown);
        let CheckOutcome::Failed { why } = check_ext_backup(&Tools::default(), &img) else { panic!("repaired garbage") };
        assert!(why.contains("no backup superblock"), "{why}");
        // Nothing was written.
        assert_eq!(std::fs::read(&img).unwrap(), rng_bytes);
    }

    #[test]
    fn a_missing_tool_is_named() {
        let tools = Tools { dir: "/nonexistent".into() };
        let CheckOutcome::Failed { why } = check_ext(&tools, Path::new("/dev/null")) else { panic!() };
        assert!(why.contains("/nonexistent/e2fsck"), "{why}");
    }

    proptest! {
        #[test]
        fn probing_any_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..4096), magic in any::<bool>(), fat in any::<bool>()) {
            let mut b = b;
            if magic && b.len() >= 1024 + 136 {
                b[1080] = 0x53;
                b[1081] = 0xEF;
            }
            if fat && b.len() >= 512 {
                b[510] = 0x55;
                b[511] = 0xAA;
                b[0x36..0x39].copy_from_slice(b"FAT");
            }
            let _ = probe_bytes(&b);
        }
    }
}
