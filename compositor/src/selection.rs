//! Copy and paste: `wl_data_device_manager` (the clipboard, and drag and
//! drop) and `zwp_primary_selection_device_manager_v1` (the primary
//! selection, middle-click paste).
//!
//! A client sets a selection only while it has the keyboard (smithay
//! refuses it otherwise); the client that gets the keyboard is offered the
//! current selections ([`State::selection_focus`], called when the
//! keyboard focus changes). The data itself goes from client to client
//! through a pipe: the compositor never holds it.
//!
//! Drag and drop is carried out by smithay's grabs as they are: no drag
//! icon is drawn, and nothing in the compositor reacts to a drop.
//!
//! What a client can make the compositor hold is bounded: a source offers
//! at most [`MAX_MIME_TYPES_PER_SOURCE`] types of at most
//! [`MAX_MIME_TYPE_LEN`] bytes, a client has at most
//! [`MAX_SELECTION_SOURCES_PER_CLIENT`] sources and
//! [`MAX_SELECTION_DEVICES_PER_CLIENT`] devices at once; past any of them
//! the client gets a protocol error (and is disconnected).

use std::sync::atomic::{AtomicUsize, Ordering};

use smithay::{
    input::Seat,
    reexports::{
        wayland_protocols::wp::primary_selection::zv1::server::{
            zwp_primary_selection_device_manager_v1::{self as primary_manager, ZwpPrimarySelectionDeviceManagerV1},
            zwp_primary_selection_device_v1::{self as primary_device, ZwpPrimarySelectionDeviceV1},
            zwp_primary_selection_source_v1::{self as primary_source, ZwpPrimarySelectionSourceV1},
        },
        wayland_server::{
            backend::{ClientId, ObjectId},
            delegate_global_dispatch,
            protocol::{
                wl_data_device::{self, WlDataDevice},
                wl_data_device_manager::{self, WlDataDeviceManager},
                wl_data_source::{self, WlDataSource},
                wl_surface::WlSurface,
            },
            Client, DataInit, Dispatch, DisplayHandle, Resource,
        },
    },
    wayland::selection::{
        data_device::{
            set_data_device_focus, ClientDndGrabHandler, DataDeviceHandler, DataDeviceState, DataDeviceUserData, DataSourceUserData, ServerDndGrabHandler,
        },
        primary_selection::{
            set_primary_focus, PrimaryDeviceManagerGlobalData, PrimaryDeviceUserData, PrimarySelectionHandler, PrimarySelectionState, PrimarySourceUserData,
        },
        SelectionHandler,
    },
};
use tracing::debug;

use crate::state::{ClientState, State};

/// The most MIME types one data source (clipboard, drag or primary) may
/// offer; one more is a protocol error. Real clients offer a handful (a
/// browser about ten, an office suite about twenty).
pub const MAX_MIME_TYPES_PER_SOURCE: usize = 64;

/// The longest MIME type a source may offer, in bytes; a longer one is a
/// protocol error.
pub const MAX_MIME_TYPE_LEN: usize = 256;

/// The most data sources (clipboard and primary together) one client may
/// have at once; one more is a protocol error. With the two bounds above, a
/// client makes the compositor hold at most about 1 MiB of MIME types.
pub const MAX_SELECTION_SOURCES_PER_CLIENT: usize = 64;

/// The most data devices (clipboard and primary together) one client may
/// have at once (a client needs one of each per seat, and there is one
/// seat); one more is a protocol error.
pub const MAX_SELECTION_DEVICES_PER_CLIENT: usize = 16;

/// Per-client counts of selection objects ([`ClientState`]).
#[derive(Debug, Default)]
pub(crate) struct SelectionCounts {
    /// Live data sources (clipboard and primary).
    sources: AtomicUsize,
    /// Live data devices (clipboard and primary).
    devices: AtomicUsize,
}

/// The compositor's selection state: smithay's globals, the MIME types
/// offered per live source, and the devices gone since they were last
/// dropped from smithay's list (see [`State::forget_dead_devices`]).
#[derive(Debug)]
pub(crate) struct Selection {
    data_device: DataDeviceState,
    primary: PrimarySelectionState,
    /// Per live source, how many MIME types it offered so far.
    offered: std::collections::HashMap<ObjectId, usize>,
    dead_data_devices: Vec<WlDataDevice>,
    dead_primary_devices: Vec<ZwpPrimarySelectionDeviceV1>,
}

impl Selection {
    /// Creates the two globals.
    pub(crate) fn new(dh: &DisplayHandle) -> Selection {
        Selection {
            data_device: DataDeviceState::new::<State>(dh),
            primary: PrimarySelectionState::new::<State>(dh),
            offered: std::collections::HashMap::new(),
            dead_data_devices: Vec::new(),
            dead_primary_devices: Vec::new(),
        }
    }
}

/// Which counter of [`SelectionCounts`].
#[derive(Debug, Clone, Copy)]
enum Slot {
    Source,
    Device,
}

fn counter(counts: &SelectionCounts, slot: Slot) -> (&AtomicUsize, usize) {
    match slot {
        Slot::Source => (&counts.sources, MAX_SELECTION_SOURCES_PER_CLIENT),
        Slot::Device => (&counts.devices, MAX_SELECTION_DEVICES_PER_CLIENT),
    }
}

/// Counts one more source or device for `client`; past the bound, a
/// protocol error on `resource` and `false`.
fn take_slot(client: &Client, resource: &impl Resource, slot: Slot) -> bool {
    let Some(data) = client.get_data::<ClientState>() else { return true };
    let (count, max) = counter(&data.selection, slot);
    if count.fetch_add(1, Ordering::Relaxed) >= max {
        count.fetch_sub(1, Ordering::Relaxed);
        debug!(?slot, max, "a client past its selection objects' bound: disconnected");
        resource.post_error(0u32, format!("more than {max} data {slot:?}s (out of memory for this client)").to_lowercase());
        return false;
    }
    true
}

/// A source or device of `client` is gone.
fn release_slot(state: &State, client: ClientId, slot: Slot) {
    if let Ok(data) = state.display_handle.backend_handle().get_client_data(client) {
        if let Some(data) = data.downcast_ref::<ClientState>() {
            let (count, _) = counter(&data.selection, slot);
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

/// Counts one more MIME type `mime` offered by `source`; `false` (after a
/// protocol error on `source`, with `code`) if it is too long or one too
/// many.
fn take_offer(state: &mut State, source: &impl Resource, mime: &str, code: u32) -> bool {
    if mime.len() > MAX_MIME_TYPE_LEN {
        debug!(len = mime.len(), "a MIME type too long: client disconnected");
        source.post_error(code, format!("MIME types are at most {MAX_MIME_TYPE_LEN} bytes"));
        return false;
    }
    let n = state.selection.offered.entry(source.id()).or_insert(0);
    if *n >= MAX_MIME_TYPES_PER_SOURCE {
        debug!("a source offering too many MIME types: client disconnected");
        source.post_error(code, format!("a source offers at most {MAX_MIME_TYPES_PER_SOURCE} MIME types"));
        return false;
    }
    *n += 1;
    true
}

impl State {
    /// The keyboard went to `focused` (or nowhere): its client is offered
    /// the current clipboard and primary selections.
    pub(crate) fn selection_focus(&mut self, seat: &Seat<State>, focused: Option<&WlSurface>) {
        let client = focused.and_then(|s| self.display_handle.get_client(s.id()).ok());
        set_data_device_focus(&self.display_handle, seat, client.clone());
        set_primary_focus(&self.display_handle, seat, client);
    }

    /// smithay keeps each data device in its seat's list until the client
    /// sends `release` (a destructor clients need not send, and a
    /// disconnected one never does): each would stay forever. The devices
    /// gone since the last call are released here on their behalf, through
    /// smithay's own `release` handling (which uses neither `client` nor
    /// `init`, any live request's will do). Called before a new device is
    /// made, so the list holds at most the live devices and those gone
    /// since the last one was made.
    fn forget_dead_devices(&mut self, client: &Client, dh: &DisplayHandle, init: &mut DataInit<'_, State>) {
        for device in std::mem::take(&mut self.selection.dead_data_devices) {
            if let Some(data) = device.data::<DataDeviceUserData>() {
                <DataDeviceState as Dispatch<WlDataDevice, DataDeviceUserData, State>>::request(
                    self,
                    client,
                    &device,
                    wl_data_device::Request::Release,
                    data,
                    dh,
                    init,
                );
            }
        }
        for device in std::mem::take(&mut self.selection.dead_primary_devices) {
            if let Some(data) = device.data::<PrimaryDeviceUserData>() {
                <PrimarySelectionState as Dispatch<ZwpPrimarySelectionDeviceV1, PrimaryDeviceUserData, State>>::request(
                    self,
                    client,
                    &device,
                    primary_device::Request::Destroy,
                    data,
                    dh,
                    init,
                );
            }
        }
    }
}

impl SelectionHandler for State {
    type SelectionUserData = ();
}

impl DataDeviceHandler for State {
    fn data_device_state(&self) -> &DataDeviceState {
        &self.selection.data_device
    }
}

// Drag and drop: smithay's defaults (nothing to do at start or drop).
impl ClientDndGrabHandler for State {}
impl ServerDndGrabHandler for State {}

impl PrimarySelectionHandler for State {
    fn primary_selection_state(&self) -> &PrimarySelectionState {
        &self.selection.primary
    }
}

// wl_data_device_manager as smithay does it (`delegate_data_device!`),
// with what a client makes the compositor hold bounded.
delegate_global_dispatch!(State: [WlDataDeviceManager: ()] => DataDeviceState);

impl Dispatch<WlDataDeviceManager, ()> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        manager: &WlDataDeviceManager,
        request: wl_data_device_manager::Request,
        data: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        match &request {
            wl_data_device_manager::Request::CreateDataSource { .. } if !take_slot(client, manager, Slot::Source) => return,
            wl_data_device_manager::Request::GetDataDevice { .. } => {
                if !take_slot(client, manager, Slot::Device) {
                    return;
                }
                state.forget_dead_devices(client, dh, init);
            }
            _ => {}
        }
        <DataDeviceState as Dispatch<WlDataDeviceManager, (), State>>::request(state, client, manager, request, data, dh, init);
    }
}

impl Dispatch<WlDataDevice, DataDeviceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        device: &WlDataDevice,
        request: wl_data_device::Request,
        data: &DataDeviceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        <DataDeviceState as Dispatch<WlDataDevice, DataDeviceUserData, State>>::request(state, client, device, request, data, dh, init);
    }

    fn destroyed(state: &mut Self, client: ClientId, device: &WlDataDevice, _data: &DataDeviceUserData) {
        release_slot(state, client, Slot::Device);
        state.selection.dead_data_devices.push(device.clone());
    }
}

impl Dispatch<WlDataSource, DataSourceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        source: &WlDataSource,
        request: wl_data_source::Request,
        data: &DataSourceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let wl_data_source::Request::Offer { mime_type } = &request {
            if !take_offer(state, source, mime_type, wl_data_source::Error::InvalidSource as u32) {
                return;
            }
        }
        <DataDeviceState as Dispatch<WlDataSource, DataSourceUserData, State>>::request(state, client, source, request, data, dh, init);
    }

    fn destroyed(state: &mut Self, client: ClientId, source: &WlDataSource, data: &DataSourceUserData) {
        state.selection.offered.remove(&source.id());
        release_slot(state, client.clone(), Slot::Source);
        <DataDeviceState as Dispatch<WlDataSource, DataSourceUserData, State>>::destroyed(state, client, source, data);
    }
}

// zwp_primary_selection as smithay does it (`delegate_primary_selection!`),
// bounded the same way.
delegate_global_dispatch!(State: [ZwpPrimarySelectionDeviceManagerV1: PrimaryDeviceManagerGlobalData] => PrimarySelectionState);

impl Dispatch<ZwpPrimarySelectionDeviceManagerV1, ()> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        manager: &ZwpPrimarySelectionDeviceManagerV1,
        request: primary_manager::Request,
        data: &(),
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        match &request {
            primary_manager::Request::CreateSource { .. } if !take_slot(client, manager, Slot::Source) => return,
            primary_manager::Request::GetDevice { .. } => {
                if !take_slot(client, manager, Slot::Device) {
                    return;
                }
                state.forget_dead_devices(client, dh, init);
            }
            _ => {}
        }
        <PrimarySelectionState as Dispatch<ZwpPrimarySelectionDeviceManagerV1, (), State>>::request(state, client, manager, request, data, dh, init);
    }
}

impl Dispatch<ZwpPrimarySelectionDeviceV1, PrimaryDeviceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        device: &ZwpPrimarySelectionDeviceV1,
        request: primary_device::Request,
        data: &PrimaryDeviceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        <PrimarySelectionState as Dispatch<ZwpPrimarySelectionDeviceV1, PrimaryDeviceUserData, State>>::request(state, client, device, request, data, dh, init);
    }

    fn destroyed(state: &mut Self, client: ClientId, device: &ZwpPrimarySelectionDeviceV1, _data: &PrimaryDeviceUserData) {
        release_slot(state, client, Slot::Device);
        state.selection.dead_primary_devices.push(device.clone());
    }
}

impl Dispatch<ZwpPrimarySelectionSourceV1, PrimarySourceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        source: &ZwpPrimarySelectionSourceV1,
        request: primary_source::Request,
        data: &PrimarySourceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        // The protocol defines no error for the source: code 0, its
        // message saying why.
        if let primary_source::Request::Offer { mime_type } = &request {
            if !take_offer(state, source, mime_type, 0) {
                return;
            }
        }
        <PrimarySelectionState as Dispatch<ZwpPrimarySelectionSourceV1, PrimarySourceUserData, State>>::request(state, client, source, request, data, dh, init);
    }

    fn destroyed(state: &mut Self, client: ClientId, source: &ZwpPrimarySelectionSourceV1, data: &PrimarySourceUserData) {
        state.selection.offered.remove(&source.id());
        release_slot(state, client.clone(), Slot::Source);
        <PrimarySelectionState as Dispatch<ZwpPrimarySelectionSourceV1, PrimarySourceUserData, State>>::destroyed(state, client, source, data);
    }
}
