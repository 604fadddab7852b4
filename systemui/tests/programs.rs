//! The one binary is each program by the name it is run as; any other
//! name is refused, with the names it knows.

use std::{os::unix::process::CommandExt, process::Command};

#[test]
fn an_unknown_name_is_refused_with_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_systemui")).arg0("frobnicate").env_remove("WAYLAND_DISPLAY").output().expect("running systemui");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["\"frobnicate\"", "systemui", "settings", "terminal", "bootanimation"] {
        assert!(err.contains(name), "{name} not in {err:?}");
    }
}
