//! The DRM/KMS backend: the device's display, driven directly.
//!
//! How the display is chosen: every `/dev/dri/card*` is tried in numeric
//! order (never a hard-coded `card0`); on each, the connectors are probed
//! and the first connected one with at least one mode is used, with its
//! preferred mode (the first listed if none is marked preferred) and the
//! first CRTC one of its encoders can drive. The first card that yields
//! all three is kept; why each other card was passed over is logged.
//!
//! Two dumb buffers (XRGB8888, linear) are allocated, each exported as a
//! dmabuf (PRIME) for the pixman renderer to draw into and added as a DRM
//! framebuffer for scan-out. The first frame is committed with a modeset,
//! later ones page-flipped; a frame is drawn only when something changed,
//! paced by the compositor's frame timer and the page-flip event.

use std::{
    fs::OpenOptions,
    os::fd::OwnedFd,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use smithay::{
    backend::{
        allocator::{
            dmabuf::{AsDmabuf, Dmabuf},
            dumb::{DumbAllocator, DumbBuffer},
            Allocator, Fourcc, Modifier,
        },
        drm::{
            dumb::{framebuffer_from_dumb_buffer, DumbFramebuffer},
            DrmDevice, DrmDeviceFd, DrmError, DrmEvent, DrmEventTime, DrmSurface, PlaneConfig, PlaneState,
        },
        renderer::{damage::OutputDamageTracker, pixman::PixmanRenderer, Bind},
    },
    desktop::{Space, Window},
    output::Output,
    reexports::{
        calloop::LoopHandle,
        drm::control::{connector, crtc, Device as ControlDevice, Mode, ModeTypeFlags},
    },
    utils::{DeviceFd, Rectangle, Transform},
};
use tracing::{debug, info, warn};

use crate::{
    render::{read_back, render_space, Cursor},
    state::{OutputInfo, RenderStatus, State},
    Error,
};

/// How long a page flip may stay unanswered before it is taken as lost
/// and the next frame is drawn anyway.
pub const FLIP_TIMEOUT: Duration = Duration::from_millis(500);

/// Where DRM devices are looked for.
pub const DRI_DIR: &str = "/dev/dri";

struct Slot {
    dmabuf: Dmabuf,
    framebuffer: DumbFramebuffer,
    _buffer: DumbBuffer,
    /// The frame number whose content the buffer holds; 0: none.
    rendered_at: u64,
}

/// One display on one DRM device, double-buffered with dumb buffers.
pub struct DrmBackend {
    _device: DrmDevice,
    surface: DrmSurface,
    renderer: PixmanRenderer,
    tracker: OutputDamageTracker,
    slots: [Slot; 2],
    next: usize,
    frame_no: u64,
    modeset_done: bool,
    flip_pending: Option<Instant>,
    info: OutputInfo,
}

impl std::fmt::Debug for DrmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrmBackend").field("output", &self.info).finish_non_exhaustive()
    }
}

/// The card nodes in `/dev/dri`, in numeric order (`card0`, `card1`, ..., `card10`).
fn card_nodes() -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(DRI_DIR) {
        Ok(e) => e,
        // No GPU driver loaded (yet): no card.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { context: format!("listing {DRI_DIR}"), source }),
    };
    let mut cards: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let n = name.strip_prefix("card")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    cards.sort();
    Ok(cards.into_iter().map(|(_, p)| p).collect())
}

fn drm_err(context: &'static str) -> impl FnOnce(DrmError) -> Error {
    move |source| Error::Drm { context, source }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// The display found on a card: connector, mode, CRTC.
struct Display {
    connector: connector::Info,
    mode: Mode,
    crtc: crtc::Handle,
}

fn find_display(fd: &DrmDeviceFd, card: &Path) -> Result<Display, Error> {
    let resources = fd.resource_handles().map_err(io_err(format!("{}: reading resources", card.display())))?;
    let mut passed = Vec::new();
    for &handle in resources.connectors() {
        let info = match fd.get_connector(handle, true) {
            Ok(info) => info,
            Err(err) => {
                passed.push(format!("connector {handle:?}: {err}"));
                continue;
            }
        };
        let name = format!("{}-{}", info.interface().as_str(), info.interface_id());
        if info.state() != connector::State::Connected {
            passed.push(format!("{name} not connected"));
            continue;
        }
        let preferred = info.modes().iter().find(|m| m.mode_type().contains(ModeTypeFlags::PREFERRED));
        let Some(&mode) = preferred.or_else(|| info.modes().first()) else {
            passed.push(format!("{name} has no modes"));
            continue;
        };
        let crtc = info.encoders().iter().filter_map(|&e| fd.get_encoder(e).ok()).flat_map(|encoder| resources.filter_crtcs(encoder.possible_crtcs())).next();
        let Some(crtc) = crtc else {
            passed.push(format!("{name}: no CRTC can drive it"));
            continue;
        };
        return Ok(Display { connector: info, mode, crtc });
    }
    if passed.is_empty() {
        passed.push("no connectors".into());
    }
    Err(Error::NoDisplay(format!("{}: {}", card.display(), passed.join(", "))))
}

impl DrmBackend {
    /// Opens the first card with a connected display (see the module doc)
    /// and registers its page-flip events on `handle`.
    pub(crate) fn open(handle: &LoopHandle<'static, State>) -> Result<Self, Error> {
        let cards = card_nodes()?;
        if cards.is_empty() {
            return Err(Error::NoDisplay(format!("no card* node in {DRI_DIR}")));
        }
        let mut reasons = Vec::new();
        for card in cards {
            match Self::open_card(&card, handle) {
                Ok(backend) => return Ok(backend),
                Err(err) => {
                    info!(card = %card.display(), %err, "card not used");
                    reasons.push(err.to_string());
                }
            }
        }
        Err(Error::NoDisplay(reasons.join("; ")))
    }

    fn open_card(card: &Path, handle: &LoopHandle<'static, State>) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(card)
            .map_err(io_err(format!("opening {}", card.display())))?;
        let fd = DrmDeviceFd::new(DeviceFd::from(OwnedFd::from(file)));
        let display = find_display(&fd, card)?;
        let Display { connector, mode, crtc } = display;
        let name = format!("{}-{}", connector.interface().as_str(), connector.interface_id());
        let (width, height) = (mode.size().0 as i32, mode.size().1 as i32);
        info!(
            card = %card.display(),
            connector = %name,
            mode = %format!("{width}x{height}@{}", mode.vrefresh()),
            ?crtc,
            "display chosen"
        );

        let (mut device, notifier) = DrmDevice::new(fd.clone(), true).map_err(drm_err("opening the device"))?;
        info!(atomic = device.is_atomic(), "DRM device ready");
        let surface = device.create_surface(crtc, mode, &[connector.handle()]).map_err(drm_err("creating the surface"))?;

        let mut allocator = DumbAllocator::new(fd.clone());
        let mut make_slot = || -> Result<Slot, Error> {
            let buffer = allocator
                .create_buffer(width as u32, height as u32, Fourcc::Xrgb8888, &[Modifier::Linear])
                .map_err(|source| Error::Buffer { context: "creating", source })?;
            let dmabuf = buffer.export().map_err(|source| Error::Buffer { context: "exporting as dmabuf", source })?;
            let framebuffer =
                framebuffer_from_dumb_buffer(&fd, &buffer, true).map_err(|e| Error::Drm { context: "adding a framebuffer", source: DrmError::Access(e) })?;
            Ok(Slot { dmabuf, framebuffer, _buffer: buffer, rendered_at: 0 })
        };
        let slots = [make_slot()?, make_slot()?];

        let renderer = PixmanRenderer::new()?;
        let tracker = OutputDamageTracker::new((width, height), 1.0, Transform::Normal);
        let refresh_mhz = i32::try_from(mode.vrefresh()).unwrap_or(60).saturating_mul(1000);
        let (mm_w, mm_h) = connector.size().unwrap_or((0, 0));
        let info = OutputInfo {
            name,
            make: "Accord".into(),
            model: format!("{}", card.display()),
            size: (width, height),
            refresh_mhz: if refresh_mhz > 0 { refresh_mhz } else { 60_000 },
            physical_mm: (mm_w as i32, mm_h as i32),
        };

        handle
            .insert_source(notifier, |event, metadata, state: &mut State| match event {
                DrmEvent::VBlank(_crtc) => {
                    if let crate::state::Backend::Drm(b) = &mut state.backend {
                        b.flip_pending = None;
                    }
                    let flip = crate::presentation::Flip {
                        time: metadata.as_ref().and_then(|m| match m.time {
                            DrmEventTime::Monotonic(t) => Some(t),
                            DrmEventTime::Realtime(_) => None,
                        }),
                        sequence: metadata.as_ref().map_or(0, |m| u64::from(m.sequence)),
                    };
                    state.flip_presented(flip);
                    state.frame_done();
                }
                DrmEvent::Error(err) => warn!(%err, "DRM device error"),
            })
            .map_err(|e| Error::EventLoop(e.error))?;

        Ok(DrmBackend { _device: device, surface, renderer, tracker, slots, next: 0, frame_no: 0, modeset_done: false, flip_pending: None, info })
    }

    pub(crate) fn output_info(&self) -> OutputInfo {
        self.info.clone()
    }

    /// Screen power (called on a change only; no frame is asked for while
    /// off): off disables the CRTC (the display goes dark, as DPMS off); on
    /// sets the mode again with the next frame, drawn whole.
    ///
    /// # Errors
    /// The kernel refused to turn the CRTC off (it stays on, and drawn).
    pub(crate) fn set_power(&mut self, on: bool) -> Result<(), Error> {
        if on {
            self.modeset_done = false;
            self.flip_pending = None;
            for slot in &mut self.slots {
                slot.rendered_at = 0;
            }
            info!("screen on");
        } else {
            self.surface.clear().map_err(drm_err("turning the CRTC off"))?;
            self.flip_pending = None;
            info!("screen off (CRTC disabled)");
        }
        Ok(())
    }

    pub(crate) fn render(&mut self, space: &Space<Window>, output: &Output, cursor: Option<&Cursor>) -> Result<RenderStatus, Error> {
        if let Some(since) = self.flip_pending {
            if since.elapsed() < FLIP_TIMEOUT {
                return Ok(RenderStatus::Busy);
            }
            warn!(timeout = ?FLIP_TIMEOUT, "no page-flip event: taking it as lost");
            self.flip_pending = None;
        }
        let (width, height) = self.info.size;
        let slot = &mut self.slots[self.next];
        self.frame_no += 1;
        let age = if slot.rendered_at == 0 { 0 } else { (self.frame_no - slot.rendered_at) as usize };
        let damaged = {
            let mut target = self.renderer.bind(&mut slot.dmabuf)?;
            match render_space(&mut self.renderer, &mut target, age, space, output, cursor, &mut self.tracker) {
                Ok(damaged) => damaged,
                Err(err) => {
                    // Partly drawn: its content is unknown.
                    slot.rendered_at = 0;
                    return Err(err);
                }
            }
        };
        if !damaged {
            return Ok(RenderStatus::Rendered { damaged: false });
        }
        slot.rendered_at = self.frame_no;

        let plane = PlaneState {
            handle: self.surface.plane(),
            config: Some(PlaneConfig {
                src: Rectangle::from_size((width, height).into()).to_f64(),
                dst: Rectangle::from_size((width, height).into()),
                transform: Transform::Normal,
                alpha: 1.0,
                damage_clips: None,
                fb: *slot.framebuffer.as_ref(),
                fence: None,
            }),
        };
        if self.modeset_done {
            self.surface.page_flip([plane], true).map_err(drm_err("page flip"))?;
        } else {
            self.surface.commit([plane], true).map_err(drm_err("first commit (modeset)"))?;
            info!(width, height, "first frame committed with modeset");
            self.modeset_done = true;
        }
        debug!(frame = self.frame_no, buffer = self.next, age, "frame queued");
        self.flip_pending = Some(Instant::now());
        self.next ^= 1;
        Ok(RenderStatus::Rendered { damaged: true })
    }

    /// A copy of the buffer on the screen (the last frame queued), `None`
    /// before the first.
    pub(crate) fn capture(&mut self) -> Result<Option<crate::Frame>, Error> {
        if !self.modeset_done {
            return Ok(None);
        }
        let (width, height) = self.info.size;
        let slot = &mut self.slots[self.next ^ 1];
        let target = self.renderer.bind(&mut slot.dmabuf)?;
        read_back(&mut self.renderer, &target, width, height).map(Some)
    }
}
