//! Wait sets: one thread waits on many subscribers, listeners, rpc servers and clients at
//! once, on deadlines and on intervals (the facade's [`shmlane::WaitSet`]).

use std::cell::Cell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::time::Duration;

use shmlane::{Attachment, Ready, WaitError, WaitSet};

use crate::error::{Failure, guard, shmlane_error};
use crate::event::shmlane_listener;
use crate::handle::{self, Handle, clear_out, hand_out};
use crate::rpc::{shmlane_client, shmlane_server};
use crate::subscriber::{
    SHMLANE_TIMEOUT_INFINITE, shmlane_subscriber, shmlane_wait_strategy, strategy_of, timeout,
};

/// What a wait found (a `SHMLANE_READY_*` value).
pub type shmlane_ready_kind = u32;
/// Something is there to take from the attachment's source (it stays ready until taken).
pub const SHMLANE_READY_DATA: shmlane_ready_kind = 0;
/// The source's deadline passed with nothing from it (reported once per deadline; the next
/// is counted from then).
pub const SHMLANE_READY_MISSED: shmlane_ready_kind = 1;
/// The interval's period came round.
pub const SHMLANE_READY_TICK: shmlane_ready_kind = 2;

/// One attachment a wait found ready.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct shmlane_ready {
    /// The attachment, as its attach call wrote it (never 0).
    pub id: u64,
    /// A `SHMLANE_READY_*` value.
    pub kind: shmlane_ready_kind,
}

/// Waits on many sources, deadlines and intervals at once. Used by the thread that created
/// it only, the thread that uses its sources (it does not move between threads). A source
/// attached to it refuses to be destroyed (`SHMLANE_ERROR_BUSY`) until it is detached or the
/// wait set destroyed.
#[derive(Debug)]
pub struct shmlane_waitset {
    magic: u64,
    /// Attachments, each borrowing `*set`: emptied before `set` is freed.
    attached: Vec<Attached>,
    /// The id of the next attachment.
    next_id: u64,
    /// What a wait found that did not fit the caller's buffer: the next wait hands it first.
    pending: VecDeque<shmlane_ready>,
    /// From `Box::into_raw`, freed in `Drop`.
    set: NonNull<WaitSet<'static>>,
}

handle::handle!(shmlane_waitset, "wait set", 0x5348_4c4e_5741_4954);

#[derive(Debug)]
struct Attached {
    id: u64,
    attachment: Attachment<'static, 'static>,
    /// The source handle's count of wait sets (None for an interval). The handle outlives
    /// this: it refuses to be destroyed while its count is not 0.
    count: Option<NonNull<Cell<u32>>>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(count) = self.count {
            // SAFETY: the handle is alive (see `count`); one thread uses it and this set.
            let count = unsafe { count.as_ref() };
            count.set(count.get().saturating_sub(1));
        }
    }
}

impl Drop for shmlane_waitset {
    fn drop(&mut self) {
        // Detaches each (the attachments borrow `*set`).
        self.attached.clear();
        // SAFETY: from `Box::into_raw`; nothing borrows it any more (attachments dropped).
        drop(unsafe { Box::from_raw(self.set.as_ptr()) });
    }
}

impl shmlane_waitset {
    fn set(&self) -> &'static WaitSet<'static> {
        // SAFETY: `set` lives until `Drop`, which first drops every attachment (the only
        // holders of this `'static` borrow besides calls that end before it).
        unsafe { self.set.as_ref() }
    }

    /// Adds `attachment`, counting it in `count` (a live handle's, see `Attached::count`).
    fn add(
        &mut self,
        attachment: Attachment<'static, 'static>,
        count: Option<NonNull<Cell<u32>>>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(count) = count {
            // SAFETY: the caller's handle is alive; one thread uses it and this set.
            let count = unsafe { count.as_ref() };
            count.set(count.get() + 1);
        }
        self.attached.push(Attached { id, attachment, count });
        id
    }
}

/// Refuses to destroy a source handle attached to a wait set.
pub(crate) fn not_attached(attached: &Cell<u32>, what: &str) -> Result<(), Failure> {
    match attached.get() {
        0 => Ok(()),
        n => Err(Failure::new(
            shmlane_error::SHMLANE_ERROR_BUSY,
            format!(
                "the {what} is attached to {n} wait sets: detach it (shmlane_waitset_detach) or \
                 destroy the wait sets first"
            ),
        )),
    }
}

/// Makes an empty wait set. On success `*out` is the wait set; on failure NULL.
///
/// # Safety
///
/// `out` is valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_create(out: *mut *mut shmlane_waitset) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        let set = NonNull::from(Box::leak(Box::new(WaitSet::new())));
        let waitset = shmlane_waitset {
            magic: shmlane_waitset::MAGIC,
            attached: Vec::new(),
            next_id: 1,
            pending: VecDeque::new(),
            set,
        };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(waitset, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a wait set (NULL: nothing), detaching everything attached to it.
///
/// # Safety
///
/// `waitset` is NULL or a wait set not yet destroyed, used by this thread alone, and not used
/// after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_destroy(waitset: *mut shmlane_waitset) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::destroy(waitset, "wait set", |_| Ok(())) })
}

/// A deadline argument: `SHMLANE_TIMEOUT_INFINITE` is none, 0 is refused.
fn deadline(deadline_ns: u64) -> Result<Option<Duration>, Failure> {
    match deadline_ns {
        0 => Err(Failure::new(
            shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
            "a deadline of 0 ns would always be missed: give a positive one, or \
             SHMLANE_TIMEOUT_INFINITE for none",
        )),
        SHMLANE_TIMEOUT_INFINITE => Ok(None),
        ns => Ok(Some(Duration::from_nanos(ns))),
    }
}

/// A handle that can be attached to a wait set.
pub(crate) trait Attachable: Handle {
    /// What the wait set waits on.
    type Source: shmlane::waitset::Source + 'static;
    /// The handle's source, borrowed until the handle is destroyed.
    fn source(&self) -> &'static Self::Source;
    /// Where the handle counts its wait sets. Taken from the handle's pointer (not from a
    /// reference, which the handle's next `&mut` would outdate), so it stays usable.
    ///
    /// # Safety
    ///
    /// `this` points to a live `Self`.
    unsafe fn count(this: *mut Self) -> *mut Cell<u32>;
}

macro_rules! attachable {
    ($type:ty, $source:ty) => {
        impl Attachable for $type {
            type Source = $source;
            fn source(&self) -> &'static $source {
                self.inner()
            }
            unsafe fn count(this: *mut Self) -> *mut Cell<u32> {
                // SAFETY: the caller's promise; no reference is made.
                unsafe { &raw mut (*this).attached }
            }
        }
    };
}
attachable!(shmlane_subscriber, shmlane::RawSubscriber);
attachable!(shmlane_listener, shmlane::Listener);
attachable!(shmlane_server, shmlane::RawServer);
attachable!(shmlane_client, shmlane::RawClient);

/// Attaches the source of handle `source` (checked as a `H`) to `waitset`.
///
/// # Safety
///
/// As the `shmlane_waitset_attach_*` functions.
unsafe fn attach<H: Attachable>(
    waitset: *mut shmlane_waitset,
    source: *mut H,
    what: &str,
    deadline_ns: u64,
    id: *mut u64,
) -> Result<(), Failure> {
    let id_out = handle::out(id, "id")?;
    // SAFETY: `id` is valid by the caller's promise.
    unsafe { id_out.write(0) };
    let within = deadline(deadline_ns)?;
    // SAFETY: a live wait set, this thread's alone, by the caller's promise.
    let waitset = unsafe { handle::get_mut(waitset, "waitset")? };
    // SAFETY: a live handle used by this thread, by the caller's promise.
    let handle = unsafe { handle::get(source.cast_const(), what)? };
    // SAFETY: checked live just above.
    let count = NonNull::new(unsafe { H::count(source) });
    let source = handle.source();
    let set = waitset.set();
    let attachment = match within {
        None => set.attach(source),
        Some(within) => set.attach_deadline(source, within),
    };
    let new = waitset.add(attachment, count);
    // SAFETY: as above.
    unsafe { id_out.write(new) };
    Ok(())
}

/// Attaches a subscriber: a wait reports `SHMLANE_READY_DATA` while a sample is queued for
/// it, and, with a deadline (`deadline_ns`; `SHMLANE_TIMEOUT_INFINITE`: none),
/// `SHMLANE_READY_MISSED` when none came for that long. Writes the attachment's id to `*id`.
///
/// # Safety
///
/// `waitset` is a live wait set and `subscriber` a live subscriber, both used by this thread
/// alone; `id` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_attach_subscriber(
    waitset: *mut shmlane_waitset,
    subscriber: *mut shmlane_subscriber,
    deadline_ns: u64,
    id: *mut u64,
) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe { attach(waitset, subscriber, "subscriber", deadline_ns, id) }
    })
}

/// Attaches a listener: ready while an event id is pending for it (as
/// `shmlane_waitset_attach_subscriber`).
///
/// # Safety
///
/// As `shmlane_waitset_attach_subscriber`, with a live listener.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_attach_listener(
    waitset: *mut shmlane_waitset,
    listener: *mut shmlane_listener,
    deadline_ns: u64,
    id: *mut u64,
) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe { attach(waitset, listener, "listener", deadline_ns, id) }
    })
}

/// Attaches an rpc server: ready while a request is queued for it (as
/// `shmlane_waitset_attach_subscriber`).
///
/// # Safety
///
/// As `shmlane_waitset_attach_subscriber`, with a live server.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_attach_server(
    waitset: *mut shmlane_waitset,
    server: *mut shmlane_server,
    deadline_ns: u64,
    id: *mut u64,
) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe { attach(waitset, server, "server", deadline_ns, id) }
    })
}

/// Attaches an rpc client: ready while a response is queued for it (as
/// `shmlane_waitset_attach_subscriber`).
///
/// # Safety
///
/// As `shmlane_waitset_attach_subscriber`, with a live client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_attach_client(
    waitset: *mut shmlane_waitset,
    client: *mut shmlane_client,
    deadline_ns: u64,
    id: *mut u64,
) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe { attach(waitset, client, "client", deadline_ns, id) }
    })
}

/// Attaches an interval: a wait reports `SHMLANE_READY_TICK` every `every_ns` nanoseconds
/// (more than 0; a period fallen behind by more than one is skipped, not reported twice).
/// Writes the attachment's id to `*id`.
///
/// # Safety
///
/// `waitset` is a live wait set used by this thread alone; `id` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_attach_interval(
    waitset: *mut shmlane_waitset,
    every_ns: u64,
    id: *mut u64,
) -> shmlane_error {
    guard(|| {
        let id_out = handle::out(id, "id")?;
        // SAFETY: valid by the caller's promise.
        unsafe { id_out.write(0) };
        if every_ns == 0 || every_ns == SHMLANE_TIMEOUT_INFINITE {
            return Err(Failure::new(
                shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
                format!("an interval of {every_ns} ns never or always ticks: give a period"),
            ));
        }
        // SAFETY: a live wait set, this thread's alone, by the caller's promise.
        let waitset = unsafe { handle::get_mut(waitset, "waitset")? };
        let attachment = waitset.set().attach_interval(Duration::from_nanos(every_ns));
        let new = waitset.add(attachment, None);
        // SAFETY: as above.
        unsafe { id_out.write(new) };
        Ok(())
    })
}

/// Detaches the attachment `id` (its source may be destroyed once no wait set holds it).
/// Fails with `SHMLANE_ERROR_NOT_FOUND` for an id this wait set does not hold (detached
/// already, or another set's).
///
/// # Safety
///
/// `waitset` is a live wait set used by this thread alone.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_detach(
    waitset: *mut shmlane_waitset,
    id: u64,
) -> shmlane_error {
    guard(|| {
        // SAFETY: a live wait set, this thread's alone, by the caller's promise.
        let waitset = unsafe { handle::get_mut(waitset, "waitset")? };
        let at = waitset.attached.iter().position(|a| a.id == id).ok_or_else(|| {
            Failure::new(
                shmlane_error::SHMLANE_ERROR_NOT_FOUND,
                format!("attachment {id} is not in this wait set: detached already, or never"),
            )
        })?;
        drop(waitset.attached.remove(at));
        waitset.pending.retain(|ready| ready.id != id);
        Ok(())
    })
}

/// Writes to `*count` how many attachments the wait set has.
///
/// # Safety
///
/// `waitset` is a live wait set used by this thread alone; `count` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_len(
    waitset: *const shmlane_waitset,
    count: *mut usize,
) -> shmlane_error {
    guard(|| {
        let count = handle::out(count, "count")?;
        // SAFETY: a live wait set by the caller's promise.
        let waitset = unsafe { handle::get(waitset, "waitset")? };
        // SAFETY: valid by the caller's promise.
        unsafe { count.write(waitset.attached.len()) };
        Ok(())
    })
}

/// Waits with `strategy` until an attachment is ready, up to `timeout_ns` nanoseconds
/// (`SHMLANE_TIMEOUT_INFINITE`: no limit), and writes up to `capacity` (at least 1) of what is
/// ready to `ready`, in attachment order, and how many to `*count`. What does not fit is
/// handed by the next wait at once (a `SHMLANE_READY_DATA` of it may have been taken by
/// then: a receive finds nothing). Fails with `SHMLANE_ERROR_TIMEOUT` if nothing was ready in
/// time, `SHMLANE_ERROR_INVALID_ARGUMENT` if nothing is attached. A ready source stays ready
/// until what is queued for it is taken: take it before waiting again.
///
/// # Safety
///
/// `waitset` is a live wait set used by this thread alone; `ready` valid for writes of
/// `capacity` `shmlane_ready`s; `count` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_waitset_wait(
    waitset: *mut shmlane_waitset,
    strategy: shmlane_wait_strategy,
    timeout_ns: u64,
    ready: *mut shmlane_ready,
    capacity: usize,
    count: *mut usize,
) -> shmlane_error {
    guard(|| {
        let count = handle::out(count, "count")?;
        // SAFETY: valid by the caller's promise.
        unsafe { count.write(0) };
        let ready = handle::out(ready, "ready")?;
        if capacity == 0 {
            return Err(Failure::new(
                shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
                "the ready buffer has capacity 0: give room for at least one",
            ));
        }
        let mut strategy = strategy_of(strategy)?;
        // SAFETY: a live wait set, this thread's alone, by the caller's promise.
        let waitset = unsafe { handle::get_mut(waitset, "waitset")? };
        if waitset.pending.is_empty() {
            let found = waitset.set().wait(&mut strategy, timeout(timeout_ns)).map_err(|e| {
                let code = match e {
                    WaitError::TimedOut(_) => shmlane_error::SHMLANE_ERROR_TIMEOUT,
                    _ => shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
                };
                Failure::new(code, e.to_string())
            })?;
            for found in found {
                let (kind, of) = match found {
                    Ready::Data(of) => (SHMLANE_READY_DATA, of),
                    Ready::Missed(of) => (SHMLANE_READY_MISSED, of),
                    Ready::Tick(of) => (SHMLANE_READY_TICK, of),
                };
                let attached = waitset.attached.iter().find(|a| a.attachment.id() == of);
                if let Some(attached) = attached {
                    waitset.pending.push_back(shmlane_ready { id: attached.id, kind });
                }
            }
        }
        let mut written = 0;
        while written < capacity {
            let Some(next) = waitset.pending.pop_front() else { break };
            // SAFETY: `written < capacity`: within the caller's buffer.
            unsafe { ready.as_ptr().add(written).write(next) };
            written += 1;
        }
        // SAFETY: as above.
        unsafe { count.write(written) };
        Ok(())
    })
}
