//! The programs of the `systemui` binary, each a `main` picked by the name
//! it is run as (argv[0]'s file name): `systemui`, `settings`, `terminal`
//! and `bootanimation`.

pub mod bootanimation;
pub mod settings;
pub mod systemui;
pub mod terminal;

/// A program's entry point: errors are reported by the caller (anyhow's
/// chain on stderr, which init hands to hilog) with a non-zero exit.
pub type Main = fn() -> anyhow::Result<()>;

/// Every program, by the name it is run as.
pub const PROGRAMS: [(&str, Main); 4] =
    [("systemui", systemui::main), ("settings", settings::main), ("terminal", terminal::main), ("bootanimation", bootanimation::main)];

/// The program called `name` (argv[0]'s file name), if there is one.
pub fn by_name(name: &str) -> Option<Main> {
    PROGRAMS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}
