//! Files of parameters: the `persist.*` store under /data (written
//! atomically) and `.para` defaults.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `(name, value)` pairs in file order.
pub type Entries = Vec<(String, String)>;

/// Parses a `.para` defaults file as OpenHarmony's `SplitParamString`
/// does ([`crate::dac::split_line`]): `#` at the start of a line is a
/// comment, blanks around `=` are optional, the name ends at its first
/// blank, the value is trimmed and loses one pair of surrounding double
/// quotes (`const.product.name="OpenHarmony 3.2"`), a `#` inside a value is
/// part of it. Like OpenHarmony, a line with an empty value and names under
/// `ctl.` are skipped. Returns the entries and one message per skipped line,
/// as `origin:N: ...` (`line N: ...` when `origin` is empty).
pub fn parse_defaults(origin: &str, text: &str) -> (Entries, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = if origin.is_empty() { format!("line {}", i + 1) } else { format!("{origin}:{}", i + 1) };
        match crate::dac::split_line(raw) {
            Ok(None) => {}
            Err(why) => problems.push(format!("{at}: {why}: {:?}", raw.trim())),
            Ok(Some((k, v))) => {
                if let Err(e) = crate::name::validate_name(k) {
                    problems.push(format!("{at}: {e}"));
                } else if v.is_empty() {
                    problems.push(format!("{at}: {k} has an empty value; line ignored"));
                } else if k.starts_with("ctl.") {
                    problems.push(format!("{at}: {k}: control parameters are not defaults; line ignored"));
                } else {
                    entries.push((k.to_owned(), v.to_owned()));
                }
            }
        }
    }
    (entries, problems)
}

/// Parses the persist file: `name=value` lines written by [`save_atomic`],
/// the value verbatim (no quote stripping, so any value round-trips).
pub fn parse_persist(origin: &str, text: &str) -> (Entries, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if crate::name::validate_name(k).is_ok() => entries.push((k.to_owned(), v.to_owned())),
            _ => problems.push(format!("{origin}:{}: not a `name=value` line; skipped", i + 1)),
        }
    }
    (entries, problems)
}

/// Reads a persist file (same `name=value` format).
pub fn load(path: &Path) -> std::io::Result<(Entries, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    Ok(parse_persist(&path.display().to_string(), &text))
}

/// A persist file write made ready in advance: paths as C strings and the
/// bytes, so that [`Prepared::write`] allocates nothing and can run in a
/// child forked from a multi-threaded or PID 1 process.
#[derive(Debug)]
pub struct Prepared {
    tmp: CString,
    path: CString,
    dir: CString,
    data: Vec<u8>,
}

/// Mode of the persist file: root only (it may hold restricted values).
pub const FILE_MODE: u32 = 0o600;

/// `name=value\n` lines, the persist file's bytes.
pub fn encode(entries: &[(String, String)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(entries.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in entries {
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(v.as_bytes());
        buf.push(b'\n');
    }
    buf
}

impl Prepared {
    /// Creates the directory of `path` if needed and prepares a write of
    /// `entries`. Errors: directory creation, or a path with a NUL byte.
    pub fn new(path: &Path, entries: &[(String, String)]) -> std::io::Result<Prepared> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        tmp_name.push(".tmp");
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
        Ok(Prepared { tmp: c(&dir.join(tmp_name))?, path: c(path)?, dir: c(dir)?, data: encode(entries) })
    }

    /// Writes so that a crash or power loss leaves the old or the new file,
    /// and the new one once this returns `Ok`: temp file (mode 0600) in the
    /// same directory, fsync, rename, fsync of the directory. Allocates
    /// nothing. Errors: the errno of the failing system call.
    pub fn write(&self) -> Result<(), i32> {
        // SAFETY: plain system calls on NUL-terminated paths and a valid buffer.
        unsafe {
            let errno = || *libc::__errno_location();
            let fd = libc::open(self.tmp.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, FILE_MODE);
            if fd < 0 {
                return Err(errno());
            }
            let mut r = libc::fchmod(fd, FILE_MODE);
            let mut off = 0;
            while r == 0 && off < self.data.len() {
                let n = libc::write(fd, self.data[off..].as_ptr().cast(), self.data.len() - off);
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                if n <= 0 {
                    r = -1;
                    break;
                }
                off += n as usize;
            }
            if r == 0 {
                r = libc::fsync(fd);
            }
            let e = errno();
            libc::close(fd);
            if r != 0 {
                return Err(if e == 0 { libc::EIO } else { e });
            }
            if libc::rename(self.tmp.as_ptr(), self.path.as_ptr()) != 0 {
                return Err(errno());
            }
            let d = libc::open(self.dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
            if d < 0 {
                return Err(errno());
            }
            let r = libc::fsync(d);
            let e = errno();
            libc::close(d);
            if r != 0 {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Writes `entries` to `path` durably ([`Prepared::write`]), mode 0600.
pub fn save_atomic(path: &Path, entries: &[(String, String)]) -> std::io::Result<()> {
    Prepared::new(path, entries)?.write().map_err(std::io::Error::from_raw_os_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_with_comments_and_bad_lines() {
        let (e, p) = parse_defaults("t.para", "# c\nconst.a = 1\n\npersist.b=x=y\nno equals\nbad/name=1\n");
        assert_eq!(e, vec![("const.a".into(), "1".into()), ("persist.b".into(), "x=y".into())]);
        assert_eq!(p.len(), 2);
        assert!(p[0].starts_with("t.para:5:"), "{p:?}");
        assert!(p[1].starts_with("t.para:6:"), "{p:?}");
    }

    /// Shapes from OpenHarmony's own `.para` files (startup_init's
    /// ohos.para and ohos.startup.para, product files).
    #[test]
    fn openharmony_para_shapes() {
        let text = "\
# Copyright (c) 2021 Huawei Device Co., Ltd.
const.product.name=\"OpenHarmony 3.2\"
const.product.software.version=OpenHarmony 7.0.0.39
  const.indented = yes
const.build.characteristics = default
persist.sys.usb.config=hdc
persist.init.bootevent.enable=true
hw_sc.build.os.version=5.0.0
const.sharp=a#b
const.quote.inner=say \"hi\"
empty.value=
ctl.start=foo
const.ohos.fullname=OpenHarmony-5.0.0.1
";
        let (e, p) = parse_defaults("ohos.para", text);
        let get = |k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("const.product.name"), Some("OpenHarmony 3.2"));
        assert_eq!(get("const.product.software.version"), Some("OpenHarmony 7.0.0.39"));
        assert_eq!(get("const.indented"), Some("yes"));
        assert_eq!(get("const.build.characteristics"), Some("default"));
        assert_eq!(get("hw_sc.build.os.version"), Some("5.0.0"));
        assert_eq!(get("const.sharp"), Some("a#b"));
        assert_eq!(get("const.quote.inner"), Some("say \"hi\""));
        assert_eq!(get("empty.value"), None);
        assert_eq!(get("ctl.start"), None);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("ohos.para:11:") && p[1].starts_with("ohos.para:12:"), "{p:?}");
    }

    use proptest::prelude::*;

    /// One generated `.para` line: text, the entry it must give, problems.
    fn para_line() -> impl Strategy<Value = (String, Option<(String, String)>, usize)> {
        let ws = prop_oneof![Just(""), Just(" "), Just("\t"), Just("  ")];
        let name = "(const|persist|sys|hw_sc)(\\.[a-z0-9_]{1,8}){1,3}";
        let value = "[A-Za-z0-9 ._#=,:-]{0,40}".prop_map(|v| v.trim().to_owned());
        let entry = (ws.clone(), name, ws.clone(), ws.clone(), value, any::<bool>()).prop_map(|(a, n, b, c, v, q)| {
            let shown = if q { format!("\"{v}\"") } else { v.clone() };
            let text = format!("{a}{n}{b}={c}{shown}{a}");
            if v.is_empty() {
                (text, None, 1)
            } else {
                (text, Some((n, v)), 0)
            }
        });
        prop_oneof![
            6 => entry,
            1 => (ws.clone(), "[ -~]{0,30}").prop_map(|(w, c)| (format!("{w}#{c}"), None, 0)),
            1 => ws.prop_map(|w| (w.to_owned(), None, 0)),
            1 => "[a-z.]{1,12}".prop_map(|n| (n, None, 1)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn generated_para_files_parse_as_openharmony_does(lines in proptest::collection::vec(para_line(), 0..30)) {
            let text: String = lines.iter().map(|(t, _, _)| format!("{t}\n")).collect();
            let (entries, problems) = parse_defaults("g.para", &text);
            let want: Vec<(String, String)> = lines.iter().filter_map(|(_, e, _)| e.clone()).collect();
            prop_assert_eq!(entries, want, "{}", text);
            prop_assert_eq!(problems.len(), lines.iter().map(|(_, _, p)| p).sum::<usize>(), "{:?}", problems);
            prop_assert!(problems.iter().all(|p| p.starts_with("g.para:")));
        }
    }

    #[test]
    fn persist_values_round_trip_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let entries = vec![("persist.q".to_string(), "\"quoted\"".to_string()), ("persist.s".to_string(), " spaced ".to_string())];
        save_atomic(&path, &entries).unwrap();
        assert_eq!(load(&path).unwrap().0, entries);
    }

    #[test]
    fn atomic_save_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/persist_parameters");
        let entries = vec![("persist.a".to_string(), "1".to_string()), ("persist.b".to_string(), "two words".to_string())];
        save_atomic(&path, &entries).unwrap();
        let (back, problems) = load(&path).unwrap();
        assert!(problems.is_empty());
        assert_eq!(back, entries);
        save_atomic(&path, &entries[..1]).unwrap();
        assert_eq!(load(&path).unwrap().0.len(), 1);
        // No temp file left behind, and root only.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
