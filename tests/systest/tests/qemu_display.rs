//! `rootfs/qemu.sh`'s choice of where the screen goes (ACCORD_DISPLAY),
//! read from its `--print` output against a stand-in QEMU that lists the
//! display backends it is told to: a window only in a graphical session
//! and with GTK or SDL, VNC on loopback only, the serial console always
//! on the terminal, and clear errors for what cannot be done.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

/// `qemu.sh x86_64 --print` with `env`, a QEMU that has `backends`, and
/// no graphical session unless `env` gives one: (success, the command's
/// arguments or the error).
fn print(env: &[(&str, &str)], backends: &[&str]) -> (bool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    // The image files qemu.sh checks for.
    let out = dir.path().join("out/x86_64");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["vmlinuz", "initramfs.img", "data.img"] {
        std::fs::write(out.join(f), b"").unwrap();
    }
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("qemu-system-x86_64");
    let list: String = backends.iter().map(|b| format!("{b}\n")).collect();
    std::fs::write(
        &fake,
        format!("#!/bin/sh\n[ \"$1 $2\" = \"-display help\" ] && printf 'Available display backend types:\\nnone\\n{}'\nexit 0\n", list.replace('\n', "\\n")),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new(repo.join("rootfs/qemu.sh"))
        .args(["x86_64", "--print"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("ACCORD_DISPLAY")
        .env_remove("ACCORD_VNC_DISPLAY")
        .env("ACCORD_OUT_DIR", dir.path().join("out"))
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = if o.status.success() { String::from_utf8_lossy(&o.stdout).into_owned() } else { String::from_utf8_lossy(&o.stderr).into_owned() };
    (o.status.success(), text.lines().map(str::to_owned).collect())
}

/// Whether `args` holds `a` directly followed by `b`.
fn pair(args: &[String], a: &str, b: &str) -> bool {
    args.windows(2).any(|w| w[0] == a && w[1] == b)
}

#[test]
fn a_window_only_in_a_graphical_session_with_a_qemu_that_has_one() {
    // No session: the serial console only, even with GTK there.
    let (ok, args) = print(&[], &["gtk"]);
    assert!(ok && args.contains(&"-nographic".to_owned()) && !args.contains(&"-display".to_owned()), "{args:?}");
    // A session and GTK: a GTK window, the console still on the terminal.
    let (ok, args) = print(&[("DISPLAY", ":0")], &["gtk", "sdl"]);
    assert!(ok && pair(&args, "-display", "gtk") && pair(&args, "-serial", "mon:stdio") && !args.contains(&"-nographic".to_owned()), "{args:?}");
    // Wayland and only SDL: SDL.
    let (ok, args) = print(&[("WAYLAND_DISPLAY", "wayland-0")], &["sdl"]);
    assert!(ok && pair(&args, "-display", "sdl"), "{args:?}");
    // A session but neither: the console only.
    let (ok, args) = print(&[("DISPLAY", ":0")], &["curses"]);
    assert!(ok && args.contains(&"-nographic".to_owned()), "{args:?}");
    // none wins over everything.
    let (ok, args) = print(&[("DISPLAY", ":0"), ("ACCORD_DISPLAY", "none")], &["gtk"]);
    assert!(ok && args.contains(&"-nographic".to_owned()), "{args:?}");
}

#[test]
fn vnc_listens_on_loopback_only() {
    let (ok, args) = print(&[("ACCORD_DISPLAY", "vnc")], &[]);
    assert!(ok && pair(&args, "-vnc", "127.0.0.1:0") && pair(&args, "-display", "none") && pair(&args, "-serial", "mon:stdio"), "{args:?}");
    let (ok, args) = print(&[("ACCORD_DISPLAY", "vnc"), ("ACCORD_VNC_DISPLAY", "7")], &[]);
    assert!(ok && pair(&args, "-vnc", "127.0.0.1:7"), "{args:?}");
    // Anything but a display number is refused (no other address, no options).
    for bad in ["0.0.0.0:0", "1,password=off", "100", "-1"] {
        let (ok, err) = print(&[("ACCORD_DISPLAY", "vnc"), ("ACCORD_VNC_DISPLAY", bad)], &[]);
        assert!(!ok && err.join("\n").contains("ACCORD_VNC_DISPLAY"), "{bad:?}: {err:?}");
    }
}

#[test]
fn what_cannot_be_done_is_said() {
    let (ok, err) = print(&[("ACCORD_DISPLAY", "window")], &["gtk"]);
    assert!(!ok && err.join("\n").contains("no graphical session"), "{err:?}");
    let (ok, err) = print(&[("ACCORD_DISPLAY", "window"), ("DISPLAY", ":0")], &[]);
    assert!(!ok && err.join("\n").contains("qemu-system-gui"), "{err:?}");
    let (ok, err) = print(&[("ACCORD_DISPLAY", "tv")], &[]);
    assert!(!ok && err.join("\n").contains("expected auto, window, vnc or none"), "{err:?}");
}
