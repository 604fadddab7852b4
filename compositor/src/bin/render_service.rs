//! `render_service [--headless WxH] [--socket NAME] [--socket-group GROUP] [--system-ui-uid USER]...`:
//! Accord's Wayland compositor. Without `--headless` it drives the first
//! DRM card with a connected display and reads the input devices in
//! `/dev/input`. The socket (default `wayland-0`) goes in
//! `$XDG_RUNTIME_DIR`, or in `/run/render_service` when that is unset.
//! Members of `--socket-group` may connect (the socket is 0660 in that
//! group; without it only the compositor's uid and root can); clients of
//! a `--system-ui-uid` (and root) may use wlr-layer-shell. Users and groups
//! are names (from `/etc/passwd`, `/etc/group`) or numbers.

use accord_compositor::{Compositor, SocketConfig, DEFAULT_SOCKET_NAME};
use anyhow::{bail, Context};
use tracing::info;

struct Args {
    headless: Option<(u32, u32)>,
    socket: String,
    system_ui: Vec<u32>,
    socket_group: Option<u32>,
}

const USAGE: &str = "usage: render_service [--headless WxH] [--socket NAME] [--socket-group GROUP] [--system-ui-uid USER]...";

/// A user's uid: `name` looked up in the user database (nix's
/// getpwnam_r), or a number.
fn uid_of(name: &str) -> anyhow::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let user = nix::unistd::User::from_name(name).with_context(|| format!("user {name:?}"))?;
    Ok(user.with_context(|| format!("no user {name:?} (in /etc/passwd)"))?.uid.as_raw())
}

/// A group's gid: `name` looked up in the group database, or a number.
fn gid_of(name: &str) -> anyhow::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let group = nix::unistd::Group::from_name(name).with_context(|| format!("group {name:?}"))?;
    Ok(group.with_context(|| format!("no group {name:?} (in /etc/group)"))?.gid.as_raw())
}

fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s.split_once('x').with_context(|| format!("size {s:?} is not WxH"))?;
    Ok((w.parse().with_context(|| format!("width in {s:?}"))?, h.parse().with_context(|| format!("height in {s:?}"))?))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args { headless: None, socket: DEFAULT_SOCKET_NAME.into(), system_ui: Vec::new(), socket_group: None };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--headless" => parsed.headless = Some(parse_size(&args.next().context("--headless needs WxH")?)?),
            "--socket" => {
                let name = args.next().context("--socket needs a name")?;
                if name.is_empty() || name.contains('/') {
                    bail!("socket name {name:?} must be a plain file name");
                }
                parsed.socket = name;
            }
            "--system-ui-uid" => {
                let user = args.next().context("--system-ui-uid needs a user")?;
                parsed.system_ui.push(uid_of(&user).context("--system-ui-uid")?);
            }
            "--socket-group" => {
                let group = args.next().context("--socket-group needs a group")?;
                parsed.socket_group = Some(gid_of(&group).context("--socket-group")?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(parsed)
}

/// How often a display that is not there yet (its driver still loading, or
/// its node not yet given to the graphics group) is looked for again.
const DISPLAY_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

fn main() -> anyhow::Result<()> {
    // OpenHarmony's graphics domain.
    accord_hilog::init_tracing("render_service", 0xD001400);
    let args = parse_args(std::env::args().skip(1))?;
    let socket = SocketConfig::from_env(&args.socket)?;
    let compositor = match args.headless {
        Some((w, h)) => Compositor::headless(w, h, &socket)?,
        None => {
            // At boot the GPU's module may still be loading: wait for a
            // display instead of exiting (and being restarted) in a loop.
            let mut said = false;
            loop {
                match Compositor::drm(&socket) {
                    Ok(c) => break c,
                    Err(e @ (accord_compositor::Error::NoDisplay(_) | accord_compositor::Error::Drm { .. })) => {
                        if !said {
                            tracing::warn!("no display to drive yet ({e}); looking again every {DISPLAY_RETRY:?}");
                            said = true;
                        }
                        std::thread::sleep(DISPLAY_RETRY);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    info!(socket = %compositor.socket_path().display(), "render_service running");
    // Headless, there is no screen to power or to wait for.
    let mut announced = args.headless.is_some();
    let mut compositor = compositor;
    compositor.allow_system_ui(&args.system_ui);
    if let Some(gid) = args.socket_group {
        compositor.share_socket(gid)?;
    }
    if !announced {
        // The display manager (SA 4607) lives here, beside the screen,
        // and the screen's power follows the power manager.
        accord_compositor::display_manager::spawn(compositor.display_requests(), compositor.screen_power())?;
        // The device's own keyboards, pointers and touch screens.
        compositor.set_keyboard_config(accord_compositor::input::KeyboardConfig::from_params());
        compositor.watch_input(std::path::Path::new(INPUT_DIR));
    }
    loop {
        compositor.dispatch(None)?;
        if !announced && compositor.frames_rendered() > 0 {
            // The boot waits for the first frame on the screen, and its
            // time goes into the boot trace (ohos.boot.time.render_service.ready).
            announced = true;
            if let Err(e) = accord_param::client::set(FIRST_FRAME_EVENT, "true") {
                tracing::warn!("cannot set {FIRST_FRAME_EVENT}: {e}");
            }
        }
    }
}

/// Where the kernel's evdev nodes are.
const INPUT_DIR: &str = "/dev/input";

/// The boot event set once the first frame is on the screen.
const FIRST_FRAME_EVENT: &str = "bootevent.render_service.ready";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let a = parse(&[]).unwrap();
        assert_eq!((a.headless, a.socket.as_str()), (None, "wayland-0"));
        let a = parse(&["--headless", "800x600", "--socket", "wl-x", "--system-ui-uid", "1099", "--system-ui-uid", "root", "--socket-group", "root"]).unwrap();
        assert_eq!((a.headless, a.socket.as_str(), a.system_ui, a.socket_group), (Some((800, 600)), "wl-x", vec![1099, 0], Some(0)));
        for bad in [
            &["--headless"][..],
            &["--system-ui-uid"],
            &["--system-ui-uid", "no-such-user-here"],
            &["--socket-group", "no-such-group-here"],
            &["--headless", "800"],
            &["--headless", "ax2"],
            &["--socket", ""],
            &["--socket", "../x"],
            &["x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
