//! Files of parameters: the `persist.*` store under /data (written
//! atomically) and `.para` defaults.

use std::io::Write;
use std::path::Path;

/// `(name, value)` pairs in file order.
pub type Entries = Vec<(String, String)>;

/// Parses `name=value` lines; `#` starts a comment line; whitespace around
/// the name and value is trimmed. Returns the entries and one message per
/// bad line.
pub fn parse_defaults(text: &str) -> (Entries, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                let k = k.trim();
                if let Err(e) = crate::name::validate_name(k) {
                    problems.push(format!("line {}: {e}", i + 1));
                    continue;
                }
                entries.push((k.to_owned(), v.trim().to_owned()));
            }
            None => problems.push(format!("line {}: expected name=value: {raw:?}", i + 1)),
        }
    }
    (entries, problems)
}

/// Reads a persist file (same `name=value` format).
pub fn load(path: &Path) -> std::io::Result<(Entries, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    Ok(parse_defaults(&text))
}

/// Writes `entries` to `path` so that a crash leaves either the old or the
/// new file: temp file in the same directory, fsync, rename, fsync the dir.
pub fn save_atomic(path: &Path, entries: &[(String, String)]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        let mut buf = String::new();
        for (k, v) in entries {
            buf.push_str(k);
            buf.push('=');
            buf.push_str(v);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_with_comments_and_bad_lines() {
        let (e, p) = parse_defaults("# c\nconst.a = 1\n\npersist.b=x=y\nno equals\nbad name=1\n");
        assert_eq!(e, vec![("const.a".into(), "1".into()), ("persist.b".into(), "x=y".into())]);
        assert_eq!(p.len(), 2);
        assert!(p[0].starts_with("line 5"));
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
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
