//! Where the system font is: OpenHarmony keeps its fonts in
//! `/system/fonts`; a Debian host (tests) has DejaVu in
//! `/usr/share/fonts`.

use std::path::PathBuf;

/// The font files looked for, first found wins: `$ACCORD_FONT`, then
/// these.
pub const FONT_PATHS: [&str; 2] = ["/system/fonts/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"];

/// The first readable font file and its bytes; `None` when there is none
/// (text is then not drawn, and the caller says so).
pub fn load() -> Option<(PathBuf, Vec<u8>)> {
    let from_env = std::env::var_os("ACCORD_FONT").map(PathBuf::from);
    from_env.into_iter().chain(FONT_PATHS.iter().map(PathBuf::from)).find_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
}
