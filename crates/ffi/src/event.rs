//! Events: payload-free notifications with ids, and listeners that sleep until one comes.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::ffi::c_char;
use std::ptr::NonNull;

use shmlane::{Event, Listener, Notifier};

use crate::error::{Failure, guard, shmlane_error};
use crate::handle::{self, Handle, clear_out, hand_out, optional, string};
use crate::node::shmlane_node;
use crate::subscriber::{shmlane_wait_strategy, strategy_of, timeout};
use crate::waitset::not_attached;

/// An event service's settings, fixed by its creator. Start from
/// `shmlane_event_config_default`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmlane_event_config {
    /// Listeners at once (1 to 64; default 8).
    pub max_listeners: u32,
    /// Event ids are below this (1 to 65536; default 64).
    pub max_event_id: u32,
}

/// An event service opened by name. Make notifiers and listeners from it; they outlive it.
/// Usable from any thread (`Send` and `Sync`).
#[derive(Debug)]
pub struct shmlane_event {
    magic: u64,
    event: Event,
}

handle::handle!(shmlane_event, "event", 0x5348_4c4e_4556_4e54);

/// Sends event ids to every listener. May be shared by threads (`Send` and `Sync`).
#[derive(Debug)]
pub struct shmlane_notifier {
    magic: u64,
    notifier: Notifier,
}

handle::handle!(shmlane_notifier, "notifier", 0x5348_4c4e_4e4f_5449);

/// Receives event ids. Used by one thread at a time (it may move between threads).
#[derive(Debug)]
pub struct shmlane_listener {
    magic: u64,
    /// From `Box::into_raw`, freed in `Drop`: a box of its own, so that a wait set's shared
    /// borrow of it is not covered by the `&mut` of this handle each call makes.
    listener: NonNull<Listener>,
    /// Wait sets it is attached to (it is not destroyed while any is).
    pub(crate) attached: Cell<u32>,
    /// Ids taken from the service that did not fit the caller's buffer yet.
    pending: BTreeSet<u32>,
}

handle::handle!(shmlane_listener, "listener", 0x5348_4c4e_4c49_5354);

impl shmlane_listener {
    pub(crate) fn inner(&self) -> &'static Listener {
        // SAFETY: `listener` lives until `Drop`; the wait sets that borrow it for `'static`
        // are detached before (destroy is refused while `attached` is not 0).
        unsafe { self.listener.as_ref() }
    }
}

impl Drop for shmlane_listener {
    fn drop(&mut self) {
        // SAFETY: from `Box::into_raw`; no wait set borrows it any more (see `inner`).
        drop(unsafe { Box::from_raw(self.listener.as_ptr()) });
    }
}

/// Writes the default event settings to `*out`.
///
/// # Safety
///
/// `out` is valid for a write of a `shmlane_event_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_event_config_default(
    out: *mut shmlane_event_config,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_event_config { max_listeners: 8, max_event_id: 64 }) };
        Ok(())
    })
}

/// Opens the event service `service`, creating it with `*config` (NULL: the defaults) if it
/// does not exist. On success `*out` is the service; on failure NULL.
///
/// # Safety
///
/// `node` is a live node; `service` a NUL-terminated string; `config` NULL or a readable
/// `shmlane_event_config`; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_event_open_or_create(
    node: *const shmlane_node,
    service: *const c_char,
    config: *const shmlane_event_config,
    out: *mut *mut shmlane_event,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live node by the caller's promise.
        let node = unsafe { handle::get(node, "node")? };
        // SAFETY: a string by the caller's promise.
        let service = unsafe { string(service, "service")? };
        let mut builder = node.node.event(service);
        // SAFETY: NULL or readable by the caller's promise.
        if let Some(config) = unsafe { optional(config) } {
            builder = builder.max_listeners(config.max_listeners).max_event_id(config.max_event_id);
        }
        let event = shmlane_event { magic: shmlane_event::MAGIC, event: builder.open_or_create()? };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(event, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys an event service handle (NULL: nothing). Its notifiers and listeners live on.
///
/// # Safety
///
/// `event` is NULL or an event service not yet destroyed, not in use by another thread, and
/// not used after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_event_destroy(event: *mut shmlane_event) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::destroy(event, "event", |_| Ok(())) })
}

/// Writes the service's `max_event_id` to `*out` (ids are below it).
///
/// # Safety
///
/// `event` is a live event service; `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_event_max_event_id(
    event: *const shmlane_event,
    out: *mut u32,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live event service by the caller's promise.
        let event = unsafe { handle::get(event, "event")? };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(event.event.max_event_id()) };
        Ok(())
    })
}

/// Makes a notifier of `event` (any number may exist). On success `*out` is the notifier; on
/// failure NULL.
///
/// # Safety
///
/// `event` is a live event service; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_notifier_create(
    event: *const shmlane_event,
    out: *mut *mut shmlane_notifier,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live event service by the caller's promise.
        let event = unsafe { handle::get(event, "event")? };
        let notifier =
            shmlane_notifier { magic: shmlane_notifier::MAGIC, notifier: event.event.notifier()? };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(notifier, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a notifier (NULL: nothing).
///
/// # Safety
///
/// `notifier` is NULL or a notifier not yet destroyed, not in use by another thread, and not
/// used after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_notifier_destroy(
    notifier: *mut shmlane_notifier,
) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::destroy(notifier, "notifier", |_| Ok(())) })
}

/// Signals the event `id` (below the service's `max_event_id`, else
/// `SHMLANE_ERROR_BAD_EVENT_ID`) to every listener; `*listeners` (if not NULL) is how many
/// listener slots are held. An id signalled twice before a listener takes it is seen once.
///
/// # Safety
///
/// `notifier` is a live notifier (threads may share it); `listeners` NULL or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_notifier_notify(
    notifier: *const shmlane_notifier,
    id: u32,
    listeners: *mut usize,
) -> shmlane_error {
    guard(|| {
        // SAFETY: a live notifier by the caller's promise (shared use is fine: it is `Sync`).
        let notifier = unsafe { handle::get(notifier, "notifier")? };
        let count = notifier.notifier.notify(id)?;
        if !listeners.is_null() {
            // SAFETY: non-NULL, valid by the caller's promise.
            unsafe { listeners.write(count) };
        }
        Ok(())
    })
}

/// Makes a listener of `event` (taking a free listener slot); it sees the ids signalled from
/// now on. On success `*out` is the listener; on failure NULL.
///
/// # Safety
///
/// `event` is a live event service; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_listener_create(
    event: *const shmlane_event,
    out: *mut *mut shmlane_listener,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live event service by the caller's promise.
        let event = unsafe { handle::get(event, "event")? };
        let listener = shmlane_listener {
            magic: shmlane_listener::MAGIC,
            listener: NonNull::from(Box::leak(Box::new(event.event.listener()?))),
            attached: Cell::new(0),
            pending: BTreeSet::new(),
        };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(listener, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a listener (NULL: nothing), giving its slot back. Refused with
/// `SHMLANE_ERROR_BUSY` while it is attached to a wait set (detach it first).
///
/// # Safety
///
/// `listener` is NULL or a listener not yet destroyed, not in use by another thread, and not
/// used after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_listener_destroy(
    listener: *mut shmlane_listener,
) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe {
        handle::destroy(listener, "listener", |listener| {
            not_attached(&listener.attached, "listener")
        })
    })
}

/// Moves up to `capacity` pending ids (ascending) to `ids`, keeping the rest for the next
/// call, and writes how many it moved to `*count`.
///
/// # Safety
///
/// `ids` is valid for writes of `capacity` ids (NULL only if `capacity` is 0); `count` valid
/// for a write.
unsafe fn hand_ids(
    listener: &mut shmlane_listener,
    ids: *mut u32,
    capacity: usize,
    count: *mut usize,
) {
    let mut moved = 0;
    while moved < capacity {
        let Some(id) = listener.pending.pop_first() else { break };
        // SAFETY: `moved < capacity`: within the caller's buffer.
        unsafe { ids.add(moved).write(id) };
        moved += 1;
    }
    // SAFETY: the caller's promise.
    unsafe { count.write(moved) };
}

/// Checks the buffer arguments of the take functions.
fn check_buffer(ids: *mut u32, capacity: usize, count: *mut usize) -> Result<(), Failure> {
    handle::out(count, "count")?;
    if ids.is_null() && capacity > 0 {
        return Err(Failure::null("ids (with a capacity above 0)"));
    }
    Ok(())
}

/// Takes the pending event ids without blocking: up to `capacity` of them (ascending) into
/// `ids`, their number into `*count` (0: none pending). Ids that did not fit are kept for the
/// next call.
///
/// # Safety
///
/// `listener` is a live listener used by this thread alone; `ids` valid for writes of
/// `capacity` ids (NULL only if `capacity` is 0); `count` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_listener_try_take(
    listener: *mut shmlane_listener,
    ids: *mut u32,
    capacity: usize,
    count: *mut usize,
) -> shmlane_error {
    guard(|| {
        check_buffer(ids, capacity, count)?;
        // SAFETY: a live listener, this thread's alone, by the caller's promise.
        let listener = unsafe { handle::get_mut(listener, "listener")? };
        let taken = listener.inner().try_take();
        listener.pending.extend(taken);
        // SAFETY: buffers checked above and valid by the caller's promise.
        unsafe { hand_ids(listener, ids, capacity, count) };
        Ok(())
    })
}

/// Waits with `strategy` (a `SHMLANE_WAIT_*` value) until at least one event id is pending,
/// up to `timeout_ns` nanoseconds (`SHMLANE_TIMEOUT_INFINITE`: no limit), then takes them as
/// `shmlane_listener_try_take` does. Fails with `SHMLANE_ERROR_TIMEOUT` if none came in time.
///
/// # Safety
///
/// As `shmlane_listener_try_take`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_listener_wait(
    listener: *mut shmlane_listener,
    strategy: shmlane_wait_strategy,
    timeout_ns: u64,
    ids: *mut u32,
    capacity: usize,
    count: *mut usize,
) -> shmlane_error {
    guard(|| {
        check_buffer(ids, capacity, count)?;
        let mut strategy = strategy_of(strategy)?;
        // SAFETY: a live listener, this thread's alone, by the caller's promise.
        let listener = unsafe { handle::get_mut(listener, "listener")? };
        if listener.pending.is_empty() {
            let taken = listener.inner().wait(&mut strategy, timeout(timeout_ns))?;
            listener.pending.extend(taken);
        }
        // SAFETY: buffers checked above and valid by the caller's promise.
        unsafe { hand_ids(listener, ids, capacity, count) };
        Ok(())
    })
}
