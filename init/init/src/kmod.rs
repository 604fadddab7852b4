//! Loading kernel modules: `insmod` of one file, and module names resolved
//! through `modules.dep` (what `modprobe` does), including the lists in
//! `/etc/modules-load.d/*.conf`.
//!
//! Debian ships modules as `.ko.xz`; `finit_module` with
//! `MODULE_INIT_COMPRESSED_FILE` lets the kernel decompress them itself.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use thiserror::Error;

const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

#[derive(Debug, Error)]
pub enum KmodError {
    #[error("module file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("loading {path} failed: {source}")]
    Load { path: PathBuf, source: std::io::Error },
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("reading {path}: {source}")]
    Dep { path: PathBuf, source: std::io::Error },
}

/// Loads one module file with the given parameters. An already loaded
/// module is not an error.
pub fn insmod(path: &Path, params: &str) -> Result<(), KmodError> {
    insmod_with(path, params, false)
}

/// [`insmod`]; `force` (the cfg's `insmod <file> -f`) makes the kernel
/// ignore the module's version magic and symbol versions, as OpenHarmony's
/// `-f` does.
pub fn insmod_with(path: &Path, params: &str, force: bool) -> Result<(), KmodError> {
    let file = File::open(path).map_err(|source| KmodError::Open { path: path.to_owned(), source })?;
    let params = CString::new(params.replace('\0', "")).unwrap_or_default();
    let compressed = path.extension().is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
    let mut flags = if compressed { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    if force {
        // MODULE_INIT_IGNORE_MODVERSIONS | MODULE_INIT_IGNORE_VERMAGIC
        flags |= 1 | 2;
    }
    // SAFETY: finit_module reads the fd and the NUL-terminated params string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), flags) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EEXIST) {
            return Ok(());
        }
        return Err(KmodError::Load { path: path.to_owned(), source: err });
    }
    Ok(())
}

/// The module directory of the running kernel, `/lib/modules/<release>`.
pub fn module_dir() -> PathBuf {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

/// Module names are compared with `-` and `_` treated alike, as modprobe does.
fn canon(name: &str) -> String {
    name.replace('-', "_")
}

/// `modules.dep` parsed: module name → (file, dependencies' files).
#[derive(Debug, Default)]
pub struct ModDep {
    dir: PathBuf,
    by_name: HashMap<String, (String, Vec<String>)>,
}

impl ModDep {
    pub fn load(dir: &Path) -> Result<ModDep, KmodError> {
        let path = dir.join("modules.dep");
        let text = std::fs::read_to_string(&path).map_err(|source| KmodError::Dep { path: path.clone(), source })?;
        Ok(ModDep::parse(dir, &text))
    }

    pub fn parse(dir: &Path, text: &str) -> ModDep {
        let mut by_name = HashMap::new();
        for line in text.lines() {
            let Some((file, deps)) = line.split_once(':') else { continue };
            let file = file.trim();
            let base = file.rsplit('/').next().unwrap_or(file);
            let name = base.split('.').next().unwrap_or(base);
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            by_name.insert(canon(name), (file.to_owned(), deps));
        }
        ModDep { dir: dir.to_owned(), by_name }
    }

    /// Files to load for `name`, dependencies first (modules.dep lists a
    /// module's dependencies so that the last one must be loaded first).
    pub fn resolve(&self, name: &str) -> Result<Vec<PathBuf>, KmodError> {
        let (file, deps) = self.by_name.get(&canon(name)).ok_or_else(|| KmodError::Unknown(name.to_owned()))?;
        let mut out: Vec<PathBuf> = deps.iter().rev().map(|d| self.dir.join(d)).collect();
        out.push(self.dir.join(file));
        Ok(out)
    }
}

/// Loads `name` and its dependencies. `loaded` remembers files already
/// loaded in this batch.
pub fn modprobe(dep: &ModDep, name: &str, params: &str, loaded: &mut HashSet<PathBuf>) -> Result<(), KmodError> {
    let files = dep.resolve(name)?;
    let last = files.len().saturating_sub(1);
    for (i, f) in files.into_iter().enumerate() {
        if loaded.contains(&f) {
            continue;
        }
        insmod(&f, if i == last { params } else { "" })?;
        loaded.insert(f);
    }
    Ok(())
}

/// The `*.conf` files under `/etc/modules-load.d` in name order, each with
/// its module names (`#` starts a comment). Each file is a load group.
pub fn modules_load_groups(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(&f).ok()?;
            let names: Vec<String> = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).map(str::to_owned).collect();
            (!names.is_empty()).then_some((f, names))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_dependencies_first() {
        let text = "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz\n\
                    kernel/fs/jbd2/jbd2.ko.xz:\n\
                    kernel/drivers/char/hw_random/virtio-rng.ko.xz:\n";
        let d = ModDep::parse(Path::new("/m"), text);
        let files = d.resolve("ext4").unwrap();
        assert_eq!(
            files,
            vec![
                PathBuf::from("/m/kernel/lib/crc16.ko.xz"),
                PathBuf::from("/m/kernel/fs/mbcache.ko.xz"),
                PathBuf::from("/m/kernel/fs/jbd2/jbd2.ko.xz"),
                PathBuf::from("/m/kernel/fs/ext4/ext4.ko.xz"),
            ]
        );
        // '-' and '_' are the same in module names.
        assert!(d.resolve("virtio_rng").is_ok());
        assert!(matches!(d.resolve("nope"), Err(KmodError::Unknown(_))));
    }
}
