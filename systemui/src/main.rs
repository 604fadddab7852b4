//! `systemui`, `settings`, `terminal`, `bootanimation`: one binary, the
//! name it is run as picks the program (`accord_systemui::programs`).

use anyhow::bail;

fn main() -> anyhow::Result<()> {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&arg0).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match accord_systemui::programs::by_name(&name) {
        Some(main) => main(),
        None => {
            let names: Vec<&str> = accord_systemui::programs::PROGRAMS.iter().map(|(n, _)| *n).collect();
            bail!("run as {name:?}: this binary is {} (by the name it is run as: a link)", names.join(", "))
        }
    }
}
