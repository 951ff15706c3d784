//! Subscribers and their samples, and the wait strategies of every blocking call.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::time::Duration;

use shmlane::notify::{Backoff, Blocking, BusySpin, Chosen};
use shmlane::{RawSample, RawSubscriber};

use crate::error::{Failure, guard, shmlane_error};
use crate::handle::{self, Handle, clear_out, hand_out};
use crate::slots::{Refused, Slots};
use crate::topic::shmlane_topic;
use crate::waitset::not_attached;

/// How a blocking call waits (a `SHMLANE_WAIT_*` value).
pub type shmlane_wait_strategy = u32;
/// Polls in a tight loop: the lowest latency, one core fully used (pin the thread).
pub const SHMLANE_WAIT_BUSY_SPIN: shmlane_wait_strategy = 0;
/// Spins, then yields, then sleeps on a futex: busy-poll latency for data that comes soon,
/// little CPU through long gaps.
pub const SHMLANE_WAIT_BACKOFF: shmlane_wait_strategy = 1;
/// Sleeps on a futex until woken: no CPU while idle, a wake-up's latency (microseconds).
pub const SHMLANE_WAIT_BLOCKING: shmlane_wait_strategy = 2;

/// A timeout (in nanoseconds) that never ends.
pub const SHMLANE_TIMEOUT_INFINITE: u64 = u64::MAX;

/// A `SHMLANE_WAIT_*` strategy, checked: one of the built-in strategies.
pub(crate) fn strategy_of(strategy: shmlane_wait_strategy) -> Result<Chosen, Failure> {
    match strategy {
        SHMLANE_WAIT_BUSY_SPIN => Ok(Chosen::BusySpin(BusySpin)),
        SHMLANE_WAIT_BACKOFF => Ok(Chosen::Backoff(Backoff::new())),
        SHMLANE_WAIT_BLOCKING => Ok(Chosen::Blocking(Blocking::new())),
        other => Err(Failure::new(
            shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
            format!("wait strategy {other} is unknown: use a SHMLANE_WAIT_* value (0 to 2)"),
        )),
    }
}

/// A timeout argument: `SHMLANE_TIMEOUT_INFINITE` is none.
pub(crate) fn timeout(timeout_ns: u64) -> Option<Duration> {
    (timeout_ns != SHMLANE_TIMEOUT_INFINITE).then(|| Duration::from_nanos(timeout_ns))
}

/// A topic's receiving end. Used by one thread at a time (it may move between threads, with
/// its samples); not shared by threads at once.
#[derive(Debug)]
pub struct shmlane_subscriber {
    magic: u64,
    /// Samples held, each borrowing `*inner`: emptied before `inner` is freed.
    samples: Slots<RawSample<'static>>,
    /// Wait sets it is attached to (it is not destroyed while any is).
    pub(crate) attached: Cell<u32>,
    /// From `Box::into_raw`, freed in `Drop`.
    inner: NonNull<RawSubscriber>,
}

handle::handle!(shmlane_subscriber, "subscriber", 0x5348_4c4e_5355_4253);

impl shmlane_subscriber {
    pub(crate) fn inner(&self) -> &'static RawSubscriber {
        // SAFETY: `inner` lives until `Drop`, which first drops every sample (the only holders
        // of this `'static` borrow besides calls that end before it).
        unsafe { self.inner.as_ref() }
    }
}

impl Drop for shmlane_subscriber {
    fn drop(&mut self) {
        self.samples.clear();
        // SAFETY: from `Box::into_raw`; nothing borrows it any more (samples cleared above).
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

/// A received sample, read in place in shared memory: `bytes` bytes at `data` (`len`
/// elements). Give it back with `shmlane_subscriber_release`, which zeroes the struct; `data`
/// must not be read after that. `token` and `owner` name it to its subscriber: do not change
/// them. A receive that finds nothing writes a sample with `data` NULL.
///
/// The bytes are written by the publishing process: a reader that does not trust it copies
/// them out once and validates the copy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmlane_sample {
    /// The bytes, read-only, aligned for the topic's type (NULL: no sample).
    pub data: *const c_void,
    /// `len` × the type's size.
    pub bytes: usize,
    /// Elements (at least 1 in a sample).
    pub len: usize,
    /// Which sample of its subscriber this is (0 when none, or once released).
    pub token: u64,
    /// Which subscriber received it.
    pub owner: u64,
}

impl shmlane_sample {
    pub(crate) const NONE: shmlane_sample =
        shmlane_sample { data: std::ptr::null(), bytes: 0, len: 0, token: 0, owner: 0 };
}

/// Stores a received sample in `samples` and describes it.
#[inline]
pub(crate) fn lend<'s>(
    samples: &mut Slots<RawSample<'s>>,
    sample: RawSample<'s>,
) -> shmlane_sample {
    let owner = samples.owner();
    match samples.insert(sample) {
        Ok((token, sample)) => {
            let bytes: &[u8] = sample;
            shmlane_sample {
                data: bytes.as_ptr().cast(),
                bytes: bytes.len(),
                len: sample.len(),
                token,
                owner,
            }
        }
        // The callers check for room before they receive; were there none, the sample is
        // given back here and nothing is lost but the message.
        Err(_) => shmlane_sample::NONE,
    }
}

/// The error of a full sample table (checked before a receive, so none is lost).
pub(crate) fn too_many_held(held: usize) -> Failure {
    Failure::new(
        shmlane_error::SHMLANE_ERROR_TOO_MANY_HELD,
        format!(
            "{held} samples are held, the most the topic allows (max_held): release some first"
        ),
    )
}

/// Releases the sample (or request, response) `*sample` names from `samples`, dropping it in
/// place, and zeroes `*sample`.
///
/// # Safety
///
/// `sample` is valid for reads and writes of a `shmlane_sample`.
pub(crate) unsafe fn release_sample<T>(
    samples: &mut Slots<T>,
    sample: NonNull<shmlane_sample>,
    what: &str,
) -> Result<(), Failure> {
    // SAFETY: the caller's promise; `token` and `owner` are plain words.
    let (token, owner) = unsafe { ((*sample.as_ptr()).token, (*sample.as_ptr()).owner) };
    samples.remove(owner, token).map_err(|refused| refused_sample(refused, what))?;
    // SAFETY: as above.
    unsafe { sample.write(shmlane_sample::NONE) };
    Ok(())
}

/// The error of a release `Slots` refused (off the hot path).
#[cold]
fn refused_sample(refused: Refused, what: &str) -> Failure {
    match refused {
        Refused::Foreign => Failure::new(
            shmlane_error::SHMLANE_ERROR_FOREIGN,
            format!("the {what} came from another handle: release it with that one"),
        ),
        Refused::Released => Failure::new(
            shmlane_error::SHMLANE_ERROR_RELEASED,
            format!("the {what} was released already (or is no {what}: data NULL, token 0)"),
        ),
    }
}

/// Makes a subscriber of `topic` (taking a free subscriber slot); it sees what is sent from
/// now on (and the topic's history). On success `*out` is the subscriber; on failure NULL.
///
/// # Safety
///
/// `topic` is a live topic; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_create(
    topic: *const shmlane_topic,
    out: *mut *mut shmlane_subscriber,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live topic by the caller's promise.
        let topic = unsafe { handle::get(topic, "topic")? };
        let samples = Slots::new(topic.topic.config().max_held);
        let inner = NonNull::from(Box::leak(Box::new(topic.topic.subscriber()?)));
        let subscriber = shmlane_subscriber {
            magic: shmlane_subscriber::MAGIC,
            samples,
            attached: Cell::new(0),
            inner,
        };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(subscriber, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a subscriber (NULL: nothing), giving its slot back. Refused with
/// `SHMLANE_ERROR_BUSY` while samples are held (release them first) or while it is attached
/// to a wait set (detach it first).
///
/// # Safety
///
/// `subscriber` is NULL or a subscriber not yet destroyed, not in use by another thread, and
/// not used after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_destroy(
    subscriber: *mut shmlane_subscriber,
) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe {
            handle::destroy(subscriber, "subscriber", |subscriber| match subscriber.samples.out() {
                0 => not_attached(&subscriber.attached, "subscriber"),
                n => Err(Failure::new(
                    shmlane_error::SHMLANE_ERROR_BUSY,
                    format!("the subscriber holds {n} samples: release them first"),
                )),
            })
        }
    })
}

/// Takes the next sample from any publisher if one is queued, without blocking or a system
/// call. `*sample` is the sample, or has `data` NULL if none was queued (still `SHMLANE_OK`).
///
/// # Safety
///
/// `subscriber` is a live subscriber used by this thread alone; `sample` valid for a write of
/// a `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_receive(
    subscriber: *mut shmlane_subscriber,
    sample: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(sample, "sample")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_sample::NONE) };
        // SAFETY: a live subscriber, this thread's alone, by the caller's promise.
        let subscriber = unsafe { handle::get_mut(subscriber, "subscriber")? };
        if !subscriber.samples.has_room() {
            return Err(too_many_held(subscriber.samples.out()));
        }
        let inner = subscriber.inner();
        // The sample is made in its entry of the table (a move there would copy it).
        let owner = subscriber.samples.owner();
        if let Some((token, sample)) =
            subscriber.samples.insert_with(|slot| inner.receive_into(slot))?
        {
            let bytes: &[u8] = sample;
            let lent = shmlane_sample {
                data: bytes.as_ptr().cast(),
                bytes: bytes.len(),
                len: sample.len(),
                token,
                owner,
            };
            // SAFETY: as above.
            unsafe { out.write(lent) };
        }
        Ok(())
    })
}

/// Waits with `strategy` (a `SHMLANE_WAIT_*` value) for the next sample, up to `timeout_ns`
/// nanoseconds (`SHMLANE_TIMEOUT_INFINITE`: no limit), and writes it to `*sample`. Fails with
/// `SHMLANE_ERROR_TIMEOUT` if none came in time.
///
/// # Safety
///
/// `subscriber` is a live subscriber used by this thread alone; `sample` valid for a write of
/// a `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_receive_wait(
    subscriber: *mut shmlane_subscriber,
    strategy: shmlane_wait_strategy,
    timeout_ns: u64,
    sample: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(sample, "sample")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_sample::NONE) };
        let mut strategy = strategy_of(strategy)?;
        // SAFETY: a live subscriber, this thread's alone, by the caller's promise.
        let subscriber = unsafe { handle::get_mut(subscriber, "subscriber")? };
        if !subscriber.samples.has_room() {
            return Err(too_many_held(subscriber.samples.out()));
        }
        let received = subscriber.inner().receive_with(&mut strategy, timeout(timeout_ns))?;
        // SAFETY: as above.
        unsafe { out.write(lend(&mut subscriber.samples, received)) };
        Ok(())
    })
}

/// Gives a sample back (its block returns to its publisher) and zeroes `*sample`. A sample
/// released twice (or a stale copy of one) gives `SHMLANE_ERROR_RELEASED`; one of another
/// subscriber `SHMLANE_ERROR_FOREIGN`.
///
/// # Safety
///
/// `subscriber` is a live subscriber used by this thread alone; `sample` valid for reads and
/// writes of a `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_release(
    subscriber: *mut shmlane_subscriber,
    sample: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let sample = handle::out(sample, "sample")?;
        // SAFETY: a live subscriber, this thread's alone, by the caller's promise.
        let subscriber = unsafe { handle::get_mut(subscriber, "subscriber")? };
        // SAFETY: `sample` is readable and writable by the caller's promise.
        unsafe { release_sample(&mut subscriber.samples, sample, "sample")? };
        Ok(())
    })
}

/// Writes to `*out` how many samples were dropped for this subscriber (evicted by
/// `SHMLANE_OVERFLOW_DROP_OLDEST` before it read them).
///
/// # Safety
///
/// `subscriber` is a live subscriber used by this thread alone; `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_drops(
    subscriber: *mut shmlane_subscriber,
    out: *mut u64,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live subscriber, this thread's alone, by the caller's promise.
        let subscriber = unsafe { handle::get_mut(subscriber, "subscriber")? };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(subscriber.inner().drops()) };
        Ok(())
    })
}

/// Writes to `*out` how many samples this subscriber holds (received, not yet released).
///
/// # Safety
///
/// `subscriber` is a live subscriber used by this thread alone; `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_held(
    subscriber: *mut shmlane_subscriber,
    out: *mut u32,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live subscriber, this thread's alone, by the caller's promise.
        let subscriber = unsafe { handle::get_mut(subscriber, "subscriber")? };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(subscriber.inner().held()) };
        Ok(())
    })
}
