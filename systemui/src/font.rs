//! Where the system fonts are: OpenHarmony keeps its fonts in
//! `/system/fonts`; a Debian host (tests) has DejaVu in
//! `/usr/share/fonts`.

use std::path::PathBuf;

/// The proportional font files looked for (the status bar, the
/// launcher), first found wins: `$ACCORD_FONT`, then these.
pub const FONT_PATHS: [&str; 2] = ["/system/fonts/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"];

/// The monospaced font files looked for (the terminal), first found wins:
/// `$ACCORD_MONO_FONT`, then these.
pub const MONO_FONT_PATHS: [&str; 2] = ["/system/fonts/DejaVuSansMono.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"];

/// The first readable proportional font file and its bytes; `None` when
/// there is none (text is then not drawn, and the caller says so).
pub fn load() -> Option<(PathBuf, Vec<u8>)> {
    first_of("ACCORD_FONT", &FONT_PATHS)
}

/// The first readable monospaced font file and its bytes; `None` when
/// there is none.
pub fn load_mono() -> Option<(PathBuf, Vec<u8>)> {
    first_of("ACCORD_MONO_FONT", &MONO_FONT_PATHS)
}

fn first_of(var: &str, paths: &[&str]) -> Option<(PathBuf, Vec<u8>)> {
    let from_env = std::env::var_os(var).map(PathBuf::from);
    from_env.into_iter().chain(paths.iter().map(PathBuf::from)).find_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
}
