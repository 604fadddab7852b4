//! OpenHarmony's fstab format, as `mount_fstab <file>` reads it (the format
//! of startup_init's fs_manager):
//!
//! ```text
//! # <src>                               <mnt point> <type> <mnt flags and options> <fs_mgr flags>
//! /dev/block/by-name/system             /usr        ext4   ro,barrier=1            wait,required
//! ```
//!
//! One entry per line, fields separated by spaces or tabs; blank lines and
//! lines starting with `#` are skipped. A line with fewer than five fields is
//! skipped with an error naming the file and line (OpenHarmony skips it with
//! a warning). Mount options are split on `,`: the ones that are mount flags
//! (`ro`, `nosuid`, …) become flags, the rest the filesystem's data string.
//! fs_mgr flags Accord does not act on are kept and warned about.
//!
//! Pure: the caller reads the file.

use std::path::Path;

use super::parse::{Diagnostic, Severity};

/// Longest fstab accepted, in bytes (OpenHarmony's fstabs are a few KiB).
pub const MAX_FSTAB_BYTES: usize = 64 * 1024;
/// Most entries one fstab may hold; the rest are skipped with an error.
pub const MAX_FSTAB_ENTRIES: usize = 256;

/// fs_mgr flags OpenHarmony defines.
pub const FS_MGR_FLAGS: &[&str] = &["check", "wait", "required", "nofail", "hvb", "fsprojquota", "fscasefold", "fscompression", "fsdedup", "formattable"];

/// One fstab line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// 1-based line number in the file.
    pub line: usize,
    /// The device or source (`/dev/block/by-name/system`, `tmpfs`, `none`).
    pub source: String,
    /// Where it is mounted; always an absolute path.
    pub mount_point: String,
    /// The filesystem type as `/proc/filesystems` names it.
    pub fs_type: String,
    /// The mount options, split on `,` (flags and filesystem data alike).
    pub options: Vec<String>,
    /// The fs_mgr flags, split on `,`.
    pub fs_mgr_flags: Vec<String>,
}

impl FstabEntry {
    /// Whether the fs_mgr flags include `flag` (`wait`, `nofail`, …).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.fs_mgr_flags.iter().any(|f| f == flag)
    }
}

/// Parses fstab `text` read from `file`. Never panics; every skipped line or
/// unknown flag is a diagnostic carrying its line.
pub fn parse_fstab(text: &str, file: &Path) -> (Vec<FstabEntry>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    let mut diag =
        |severity, line: usize, message: String| diags.push(Diagnostic { severity, file: file.to_owned(), line: Some(line), location: String::new(), message });
    if text.len() > MAX_FSTAB_BYTES {
        diag(Severity::Error, 1, format!("{} bytes; at most {MAX_FSTAB_BYTES} are read", text.len()));
    }
    let mut end = text.len().min(MAX_FSTAB_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (i, raw) in text[..end].lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
        if fields.len() < 5 {
            diag(
                Severity::Error,
                line,
                format!("{} fields; an entry is <src> <mount point> <type> <mount options> <fs_mgr flags>; line skipped", fields.len()),
            );
            continue;
        }
        if fields.len() > 5 {
            diag(Severity::Warning, line, format!("{} fields; the ones after the fifth are ignored", fields.len()));
        }
        if !fields[1].starts_with('/') {
            diag(Severity::Error, line, format!("mount point {:?} is not an absolute path; line skipped", fields[1]));
            continue;
        }
        if out.len() >= MAX_FSTAB_ENTRIES {
            diag(Severity::Error, line, format!("more than {MAX_FSTAB_ENTRIES} entries; the rest are skipped"));
            break;
        }
        let split = |s: &str| s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        let fs_mgr_flags = split(fields[4]);
        for f in &fs_mgr_flags {
            let name = f.split('=').next().unwrap_or(f);
            if !FS_MGR_FLAGS.contains(&name) {
                diag(Severity::Warning, line, format!("unknown fs_mgr flag {f:?}; ignored"));
            }
        }
        out.push(FstabEntry {
            line,
            source: fields[0].to_owned(),
            mount_point: fields[1].to_owned(),
            fs_type: fields[2].to_owned(),
            options: split(fields[3]),
            fs_mgr_flags,
        });
    }
    (out, diags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(t: &str) -> (Vec<FstabEntry>, Vec<String>) {
        let (e, d) = parse_fstab(t, Path::new("/vendor/etc/fstab.qemu"));
        (e, d.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn openharmony_shaped_fstab() {
        let (e, d) = parse(
            "# fstab for the qemu board\n\
             \n\
             /dev/block/platform/soc/by-name/system  /usr   ext4  ro,barrier=1          wait,required\n\
             \t/dev/block/by-name/userdata\t/data\tf2fs\tnosuid,nodev,noatime,fscrypt=2:aes-256-cts:aes-256-xts\twait,check,fsprojquota,reservedsize=1G\n\
             none /config configfs nodev,noexec,nosuid defaults\n\
             /dev/vdb /short ext4 rw\n\
             /dev/vdc relative ext4 rw wait\n",
        );
        assert_eq!(e.len(), 3, "{d:?}");
        assert_eq!(e[0].line, 3);
        assert_eq!(e[0].mount_point, "/usr");
        assert_eq!(e[0].options, vec!["ro", "barrier=1"]);
        assert!(e[0].has_flag("required") && e[0].has_flag("wait"));
        assert_eq!(e[1].fs_type, "f2fs");
        assert_eq!(e[2].line, 5);
        assert!(d.iter().any(|m| m == "/vendor/etc/fstab.qemu:4: unknown fs_mgr flag \"reservedsize=1G\"; ignored"), "{d:?}");
        assert!(d.iter().any(|m| m == "/vendor/etc/fstab.qemu:5: unknown fs_mgr flag \"defaults\"; ignored"), "{d:?}");
        assert!(d.iter().any(|m| m.starts_with("/vendor/etc/fstab.qemu:6: 4 fields")), "{d:?}");
        assert!(d.iter().any(|m| m.starts_with("/vendor/etc/fstab.qemu:7: mount point \"relative\"")), "{d:?}");
    }

    #[test]
    fn limits() {
        let many: String = (0..300).map(|i| format!("/dev/x{i} /m{i} ext4 rw wait\n")).collect();
        let (e, d) = parse(&many);
        assert_eq!(e.len(), MAX_FSTAB_ENTRIES);
        assert!(d.iter().any(|m| m.contains("more than 256 entries")));
        let huge = "é".repeat(MAX_FSTAB_BYTES);
        let (e, d) = parse(&huge);
        assert!(e.is_empty());
        assert!(d[0].contains("at most 65536 are read"));
    }

    /// Lines built from fstab-shaped pieces, then mutated.
    fn arb_line() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("/dev/block/by-name/system".to_string()),
            Just("/data".to_string()),
            Just("ext4".to_string()),
            Just("ro,barrier=1".to_string()),
            Just("wait,required,nofail".to_string()),
            Just("#".to_string()),
            Just(",,,".to_string()),
            Just("=".to_string()),
            "[a-z/=,#]{0,12}",
            any::<String>(),
        ];
        (proptest::collection::vec(word, 0..8), prop_oneof![Just(" "), Just("\t"), Just("  \t ")]).prop_map(|(w, sep)| w.join(sep))
    }

    proptest! {
        #[test]
        fn generated_fstabs_never_panic_and_diagnostics_name_a_line(lines in proptest::collection::vec(arb_line(), 0..20)) {
            let text = lines.join("\n");
            let (entries, diags) = parse_fstab(&text, Path::new("/f"));
            for e in &entries {
                prop_assert!(e.line >= 1 && e.line <= lines.len().max(1));
                prop_assert!(e.mount_point.starts_with('/'));
            }
            for d in &diags {
                prop_assert!(d.line.is_some_and(|l| l >= 1));
                prop_assert_eq!(&d.file, Path::new("/f"));
            }
        }
    }
}
