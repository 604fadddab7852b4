//! presentation-time (`wp_presentation`): when a client's content update
//! reached the screen, on `CLOCK_MONOTONIC`.
//!
//! After each frame every mapped window's and layer surface's committed
//! feedback requests are taken (one output: every mapped surface counts
//! as in the frame, as for frame callbacks; one covered by another window
//! is told too). The headless backend presents them at once, with the
//! time the frame was drawn. The DRM backend presents them at the page
//! flip's event, with the kernel's timestamp and vblank sequence
//! (`vsync`, `hw_clock`, `hw_completion`); a frame that changed nothing
//! on screen queues no flip and presents at once. A flip lost to a
//! timeout or a screen turned off discards them. A content update
//! replaced before it was drawn is discarded (smithay's cached state).
//!
//! A client asks for at most [`MAX_FEEDBACKS_PER_COMMIT`] feedbacks on one
//! surface before committing; one more is a protocol error.

use std::time::Duration;

use smithay::{
    desktop::{layer_map_for_output, utils::OutputPresentationFeedback},
    reexports::{
        wayland_protocols::wp::presentation_time::server::{
            wp_presentation::{self, WpPresentation},
            wp_presentation_feedback::{Kind, WpPresentationFeedback},
        },
        wayland_server::{delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch, DisplayHandle, Resource},
    },
    utils::{Clock, Monotonic},
    wayland::{
        compositor::with_states,
        presentation::{PresentationFeedbackCachedState, PresentationFeedbackState, PresentationState, Refresh},
    },
};
use tracing::debug;

use crate::state::State;

/// The most presentation feedbacks a client may ask for on one surface
/// before it commits; one more is a protocol error (each is an object the
/// compositor keeps until the content update is presented or discarded).
pub const MAX_FEEDBACKS_PER_COMMIT: usize = 16;

/// The global, the clock, and the feedback of a frame waiting for its
/// page flip.
#[derive(Debug)]
pub(crate) struct Presentation {
    _state: PresentationState,
    clock: Clock<Monotonic>,
    /// The feedback of the frame whose page flip is queued (DRM).
    waiting: Option<OutputPresentationFeedback>,
    /// Frames presented by the headless backend (its sequence numbers).
    headless_seq: u64,
}

impl Presentation {
    /// Creates the `wp_presentation` global (`CLOCK_MONOTONIC`).
    pub(crate) fn new(dh: &DisplayHandle) -> Presentation {
        let clock = Clock::<Monotonic>::new();
        Presentation { _state: PresentationState::new::<State>(dh, clock.id() as u32), clock, waiting: None, headless_seq: 0 }
    }
}

/// When a page flip completed, as the kernel said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flip {
    /// The flip's time on `CLOCK_MONOTONIC`, `None` if the kernel gave
    /// none (or gave it on another clock).
    pub(crate) time: Option<Duration>,
    /// The vblank sequence number.
    pub(crate) sequence: u64,
}

impl State {
    /// The output's refresh period.
    fn refresh(&self) -> Refresh {
        match self.output.current_mode().map(|m| m.refresh) {
            Some(mhz) if mhz > 0 => Refresh::fixed(Duration::from_nanos(1_000_000_000_000 / mhz as u64)),
            _ => Refresh::Unknown,
        }
    }

    /// Takes the feedback requests of every mapped surface (the frame
    /// just drawn shows them).
    fn take_feedback(&self) -> OutputPresentationFeedback {
        let output = &self.output;
        let mut feedback = OutputPresentationFeedback::new(output);
        for window in self.space.elements() {
            window.take_presentation_feedback(&mut feedback, |_, _| Some(output.clone()), |_, _| Kind::empty());
        }
        for layer in layer_map_for_output(output).layers() {
            layer.take_presentation_feedback(&mut feedback, |_, _| Some(output.clone()), |_, _| Kind::empty());
        }
        feedback
    }

    /// A frame was drawn: `flip_queued` if it waits for a page flip
    /// ([`State::flip_presented`] presents it), else it is on screen now.
    pub(crate) fn frame_feedback(&mut self, flip_queued: bool) {
        let mut feedback = self.take_feedback();
        if flip_queued {
            if let Some(mut lost) = self.presentation.waiting.replace(feedback) {
                lost.discarded();
            }
        } else {
            self.presentation.headless_seq += 1;
            let now = self.presentation.clock.now();
            feedback.presented(now, self.refresh(), self.presentation.headless_seq, Kind::empty());
        }
    }

    /// The queued page flip completed ([`Flip`]): its frame's feedback is
    /// presented.
    pub(crate) fn flip_presented(&mut self, flip: Flip) {
        let Some(mut feedback) = self.presentation.waiting.take() else { return };
        let refresh = self.refresh();
        match flip.time {
            Some(time) => feedback.presented::<_, Monotonic>(time, refresh, flip.sequence, Kind::Vsync | Kind::HwClock | Kind::HwCompletion),
            None => {
                let now = self.presentation.clock.now();
                feedback.presented(now, refresh, flip.sequence, Kind::Vsync | Kind::HwCompletion)
            }
        }
    }

    /// The queued page flip will not come (lost, or the screen went off):
    /// its frame's feedback is discarded.
    pub(crate) fn flip_lost(&mut self) {
        if let Some(mut feedback) = self.presentation.waiting.take() {
            feedback.discarded();
        }
    }
}

// wp_presentation as smithay does it (`delegate_presentation!`), with the
// feedbacks per commit bounded.
delegate_global_dispatch!(State: [WpPresentation: u32] => PresentationState);
delegate_dispatch!(State: [WpPresentationFeedback: ()] => PresentationFeedbackState);

impl Dispatch<WpPresentation, u32> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        presentation: &WpPresentation,
        request: wp_presentation::Request,
        data: &u32,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let wp_presentation::Request::Feedback { surface, .. } = &request {
            let pending = with_states(surface, |states| states.cached_state.get::<PresentationFeedbackCachedState>().pending().callbacks.len());
            if pending >= MAX_FEEDBACKS_PER_COMMIT {
                debug!("a client asking for too many presentation feedbacks: disconnected");
                // The protocol defines no error for this: code 0, the
                // message saying why.
                presentation.post_error(0u32, format!("at most {MAX_FEEDBACKS_PER_COMMIT} presentation feedbacks per surface and commit"));
                return;
            }
        }
        <PresentationState as Dispatch<WpPresentation, u32, State>>::request(state, client, presentation, request, data, dh, init);
    }
}
