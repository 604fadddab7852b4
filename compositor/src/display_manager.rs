//! The display manager (SA 4607, OpenHarmony's `DisplayManagerService`),
//! hosted by render_service because the compositor owns the screen: the
//! displays and their state, and screenshots. The SA runs on its own
//! thread (a tokio runtime publishing to samgr, again after samgr
//! restarts); what it needs from the compositor goes through a calloop
//! channel ([`DisplayRequest`]) and comes back on a std channel.
//!
//! What a caller may cost: a screenshot needs `ohos.permission.CAPTURE_SCREEN`;
//! one is taken at a time (the SA's methods run one after the other on
//! its thread), each a copy of the screen and its PNG (a few MiB at
//! 1280x800, sent in a sealed memfd and freed when sent).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_display::{DisplayError, DisplayInfo, DisplayListenerProxy, DisplayManager, ScreenPower, ID, PERM_CAPTURE_SCREEN};
use accord_safwk::subscribers::Subscribers;
use accord_safwk::typed::{Blob, Listener};
use accord_safwk::Caller;
use smithay::reexports::calloop::channel::Sender;
use tracing::{info, warn};

use crate::Frame;

/// How long the SA waits for the compositor to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long before publishing is tried again when samgr is not there.
pub const RETRY: Duration = Duration::from_secs(2);

/// What the SA asks of the compositor's thread.
#[derive(Debug)]
pub enum DisplayRequest {
    /// Every display.
    Displays(std::sync::mpsc::Sender<Vec<DisplayInfo>>),
    /// A copy of display `id`'s screen.
    Capture(u64, std::sync::mpsc::Sender<Result<Frame, DisplayError>>),
}

/// The display listeners of a compositor: it tells them of each change
/// (`send`, never waiting), the SA adds and removes them.
pub type DisplayListeners = Arc<Subscribers<DisplayInfo>>;

/// A running compositor as the display manager SA holds it, usable from
/// any thread: [`DisplayRequest`]s to it, and the listeners it tells of
/// changes.
#[derive(Clone)]
pub struct DisplayRequestSender {
    requests: Sender<DisplayRequest>,
    listeners: DisplayListeners,
}

impl DisplayRequestSender {
    pub(crate) fn new(requests: Sender<DisplayRequest>, listeners: DisplayListeners) -> Self {
        DisplayRequestSender { requests, listeners }
    }
}

/// The SA: a handle on the compositor.
pub struct DisplayManagerSa {
    compositor: Mutex<DisplayRequestSender>,
    /// Where listeners' deliveries run (the runtime the SA was made on).
    rt: Option<tokio::runtime::Handle>,
}

impl DisplayManagerSa {
    /// The SA for the compositor behind `compositor`. Made inside a tokio
    /// runtime, it takes listeners (delivered on that runtime); made
    /// outside one, a subscription is refused as failed.
    pub fn new(compositor: DisplayRequestSender) -> Self {
        DisplayManagerSa { compositor: Mutex::new(compositor), rt: tokio::runtime::Handle::try_current().ok() }
    }

    fn handle(&self) -> Result<DisplayRequestSender, DisplayError> {
        Ok(self.compositor.lock().map_err(|_| DisplayError::Failed("compositor handle poisoned".into()))?.clone())
    }

    fn ask<T>(&self, make: impl FnOnce(std::sync::mpsc::Sender<T>) -> DisplayRequest) -> Result<T, DisplayError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = self.handle()?.requests.send(make(tx));
        sent.map_err(|_| DisplayError::Failed("the compositor is gone".into()))?;
        rx.recv_timeout(ANSWER_TIMEOUT).map_err(|_| DisplayError::Failed(format!("the compositor did not answer within {ANSWER_TIMEOUT:?}")))
    }
}

impl DisplayManager for DisplayManagerSa {
    fn displays(&self) -> Vec<DisplayInfo> {
        self.ask(DisplayRequest::Displays).unwrap_or_else(|e| {
            warn!("displays: {e}");
            Vec::new()
        })
    }

    fn screenshot(&self, caller: &Caller, id: u64) -> Result<Blob, DisplayError> {
        if !caller.has_permission(PERM_CAPTURE_SCREEN) {
            return Err(DisplayError::PermissionDenied { uid: caller.uid(), permission: PERM_CAPTURE_SCREEN.into() });
        }
        let frame = self.ask(|tx| DisplayRequest::Capture(id, tx))??;
        let png = encode_png(&frame)?;
        info!(uid = caller.uid(), display = id, bytes = png.len(), "screenshot taken");
        Blob::new(png).map_err(|e| DisplayError::Failed(format!("sending the image: {e}")))
    }

    fn subscribe(&self, caller: &Caller, listener: Listener<DisplayListenerProxy>) -> Result<u64, DisplayError> {
        let rt = self.rt.as_ref().ok_or_else(|| DisplayError::Failed("the display manager has no runtime for listeners".into()))?;
        let listeners = self.handle()?.listeners;
        let id = listeners.add(rt, caller, listener, DisplayListenerProxy::remote, |p, display, lost| async move { p.on_change(display, lost).await })?;
        info!(uid = caller.uid(), id, "display listener added");
        Ok(id)
    }

    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, DisplayError> {
        Ok(self.handle()?.listeners.remove(caller.uid(), id))
    }

    fn on_dump(&self, _args: &[String]) -> String {
        let listeners = self.handle().map(|h| h.listeners.len()).unwrap_or(0);
        format!("{}{listeners} display listeners\n", accord_display::displays_text(&self.displays()))
    }
}

/// `frame` as a PNG (8-bit RGB, fast compression).
pub fn encode_png(frame: &Frame) -> Result<Vec<u8>, DisplayError> {
    let mut out = Vec::new();
    let mut rgb = Vec::with_capacity(frame.pixels.len() * 3);
    for p in &frame.pixels {
        rgb.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, *p as u8]);
    }
    let failed = |e: png::EncodingError| DisplayError::Failed(format!("encoding the PNG: {e}"));
    let mut enc = png::Encoder::new(&mut out, frame.width, frame.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(failed)?;
    writer.write_image_data(&rgb).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// Publishes the SA for as long as the process runs; publishing is tried
/// again every [`RETRY`] while samgr is not there.
pub async fn publish(compositor: DisplayRequestSender) {
    loop {
        let obj = DisplayManagerSa::new(compositor.clone()).into_remote();
        match accord_safwk::run_remote(ID, obj).await {
            Ok(()) => info!("display manager (SA {ID}) withdrawn"),
            Err(e) => warn!("display manager (SA {ID}): {e}; publishing again in {RETRY:?}"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// render_service's one thread for samgr: it publishes the display
/// manager and keeps the screen's power in step with the power manager
/// ([`crate::follow_power`]), on one runtime (a screenshot being encoded
/// delays a screen power change by that long, no more).
///
/// # Errors
/// The thread could not be started.
pub fn spawn(compositor: DisplayRequestSender, screen: crate::ScreenPowerSender) -> std::io::Result<()> {
    std::thread::Builder::new().name("samgr-client".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                warn!("no runtime for the display manager and screen power: {e}");
                return;
            }
        };
        rt.block_on(async move {
            tokio::join!(publish(compositor), crate::follow_power::follow(screen));
        });
    })?;
    Ok(())
}

/// The [`DisplayInfo`] of the output described by `info`.
pub(crate) fn display_info(info: &crate::state::OutputInfo, on: bool) -> DisplayInfo {
    let dpi = if info.physical_mm.0 > 0 { (f64::from(info.size.0) * 25.4 / f64::from(info.physical_mm.0)).round() as u32 } else { 0 };
    DisplayInfo {
        id: 0,
        name: info.name.clone(),
        width: info.size.0.max(0) as u32,
        height: info.size.1.max(0) as u32,
        refresh_mhz: info.refresh_mhz.max(0) as u32,
        dpi,
        rotation: 0,
        power: if on { ScreenPower::On } else { ScreenPower::Off },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip() {
        let frame = Frame { width: 3, height: 2, pixels: vec![0x102030, 0xffffff, 0, 0x010203, 0xa0b0c0, 0x1b2b45] };
        let png = encode_png(&frame).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        let back: Vec<u32> = buf[..info.buffer_size()].chunks_exact(3).map(|p| u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2])).collect();
        assert_eq!(back, frame.pixels);
    }
}
