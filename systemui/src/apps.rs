//! The installed applications, as the launcher lists them: freedesktop
//! desktop-entry files (`*.desktop`) in `/system/applications`, each
//! naming the init service that runs the application
//! (`X-Accord-Service`, a service named `app.<something>` with its own
//! unprivileged uid in its cfg). Starting one sets `ohos.ctl.start`, as
//! `begetctl start_service` does; the parameter DAC lets the system UI's
//! group start `app.*` services and nothing else.

use std::path::{Path, PathBuf};

use tracing::warn;

/// Where the desktop entries are (`$ACCORD_APPLICATIONS` overrides it).
pub const APPLICATIONS_DIR: &str = "/system/applications";

/// The most entries listed; the rest are left out with a warning.
pub const MAX_APPS: usize = 64;

/// The largest desktop file read, in bytes.
pub const MAX_FILE: u64 = 64 * 1024;

/// The prefix every application's service name has.
pub const SERVICE_PREFIX: &str = "app.";

/// One application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// What the launcher shows (`Name`).
    pub name: String,
    /// The init service that runs it (`X-Accord-Service`).
    pub service: String,
}

/// Why a desktop file was left out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("no [Desktop Entry] group")]
    NoGroup,
    #[error("not an application (Type={0:?})")]
    NotApplication(String),
    #[error("no Name")]
    NoName,
    #[error("no X-Accord-Service, or one not starting with {SERVICE_PREFIX:?} (1..=32 bytes, no '/' or spaces): {0:?}")]
    BadService(String),
    /// `NoDisplay=true` or `Hidden=true`: not for the launcher.
    #[error("hidden")]
    Hidden,
}

/// Reads one desktop entry (the keys of its `[Desktop Entry]` group;
/// comments, other groups and localised keys are ignored).
pub fn parse(text: &str) -> Result<App, EntryError> {
    let mut in_group = false;
    let mut seen_group = false;
    let (mut name, mut service, mut kind, mut hidden) = (None, None, None, false);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            in_group = line == "[Desktop Entry]";
            seen_group |= in_group;
            continue;
        }
        if !in_group {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "Name" => name = Some(value.to_owned()),
            "Type" => kind = Some(value.to_owned()),
            "X-Accord-Service" => service = Some(value.to_owned()),
            "NoDisplay" | "Hidden" if value == "true" => hidden = true,
            _ => {}
        }
    }
    if !seen_group {
        return Err(EntryError::NoGroup);
    }
    match kind.as_deref() {
        Some("Application") => {}
        other => return Err(EntryError::NotApplication(other.unwrap_or_default().to_owned())),
    }
    if hidden {
        return Err(EntryError::Hidden);
    }
    let name = name.filter(|n| !n.is_empty()).ok_or(EntryError::NoName)?;
    let service = service.unwrap_or_default();
    let valid = service.len() > SERVICE_PREFIX.len()
        && service.len() <= 32
        && service.starts_with(SERVICE_PREFIX)
        && !service.contains('/')
        && !service.chars().any(char::is_whitespace);
    if !valid {
        return Err(EntryError::BadService(service));
    }
    Ok(App { name, service })
}

/// The directory the entries are read from.
pub fn dir() -> PathBuf {
    std::env::var_os("ACCORD_APPLICATIONS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(APPLICATIONS_DIR))
}

/// The applications in `dir`, sorted by name; files that are not valid
/// entries are left out with a warning naming the file and why.
pub fn installed(dir: &Path) -> Vec<App> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            warn!(dir = %dir.display(), %e, "no applications");
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "desktop")).collect();
    paths.sort();
    let mut apps = Vec::new();
    for path in paths {
        if apps.len() == MAX_APPS {
            warn!(dir = %dir.display(), "more than {MAX_APPS} applications: the rest are not listed");
            break;
        }
        let text = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE => {
                warn!(file = %path.display(), size = m.len(), "a desktop file over {MAX_FILE} bytes: left out");
                continue;
            }
            _ => std::fs::read_to_string(&path),
        };
        match text.map_err(|e| e.to_string()).and_then(|t| parse(&t).map_err(|e| e.to_string())) {
            Ok(app) => apps.push(app),
            Err(e) if e == EntryError::Hidden.to_string() => {}
            Err(e) => warn!(file = %path.display(), "desktop file left out: {e}"),
        }
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    apps
}

/// Asks init to start `app`'s service (the `ohos.ctl.start` control
/// parameter); init runs it with the uid and groups of its cfg.
pub fn start(app: &App) -> Result<(), String> {
    accord_param::client::set("ohos.ctl.start", &app.service).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_entries() {
        let ok = "# c\n[Desktop Entry]\nType=Application\nName=Shared memory demo\nName[de]=x\nX-Accord-Service = app.shmdemo\n[Desktop Action x]\nName=y\n";
        assert_eq!(parse(ok), Ok(App { name: "Shared memory demo".into(), service: "app.shmdemo".into() }));
        assert_eq!(parse("Type=Application\nName=x"), Err(EntryError::NoGroup));
        assert_eq!(parse("[Desktop Entry]\nType=Link\nName=x\nX-Accord-Service=app.x"), Err(EntryError::NotApplication("Link".into())));
        assert_eq!(parse("[Desktop Entry]\nType=Application\nX-Accord-Service=app.x"), Err(EntryError::NoName));
        for bad in ["render_service", "app.", "app.a/b", "app.a b", &format!("app.{}", "x".repeat(40))] {
            assert_eq!(parse(&format!("[Desktop Entry]\nType=Application\nName=x\nX-Accord-Service={bad}")), Err(EntryError::BadService(bad.into())), "{bad}");
        }
        assert_eq!(parse("[Desktop Entry]\nType=Application\nName=x\nX-Accord-Service=app.x\nNoDisplay=true"), Err(EntryError::Hidden));
    }

    #[test]
    fn installed_reads_sorts_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |name: &str, service: &str| format!("[Desktop Entry]\nType=Application\nName={name}\nX-Accord-Service={service}\n");
        std::fs::write(dir.path().join("b.desktop"), entry("Zeta", "app.z")).unwrap();
        std::fs::write(dir.path().join("a.desktop"), entry("Alpha", "app.a")).unwrap();
        std::fs::write(dir.path().join("bad.desktop"), entry("Bad", "init")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), entry("Text", "app.t")).unwrap();
        std::fs::write(dir.path().join("huge.desktop"), "x".repeat(MAX_FILE as usize + 1)).unwrap();
        let names: Vec<String> = installed(dir.path()).into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["Alpha", "Zeta"]);
        assert!(installed(&dir.path().join("none")).is_empty());
    }
}
