//! [`EventCount`]: "sleep until something changes" for a condition that lives elsewhere (a
//! queue's fill level, a flag), shared across processes. The design is folly's EventCount,
//! with the epoch and the waiter count in two words so the futex word stands alone.
//!
//! ```text
//! word     written by                     read by
//! epoch    notifier: +1 when it wakes     waiter: the key, and the futex compares it
//! waiters  waiter: +1 prepare, -1 done    notifier: zero means "no system call"
//! ```
//!
//! The protocol is a Dekker pair: each side writes its own word, then reads the other's, with
//! a SeqCst fence between. Where the kernel has `membarrier`, the notifier's fence is a
//! compiler fence and the waiter's is followed by a membarrier that stands for it (see
//! `barrier`): a stream of notifies with nobody asleep then costs no hardware fence.
//!
//! - Waiter: `waiters += 1`, fence, key = `epoch`; re-check the condition; if still unmet,
//!   sleep while `epoch == key`; `waiters -= 1`.
//! - Notifier: the caller changes the condition, fence, read `waiters`; if non-zero,
//!   `epoch += 1` and futex-wake.
//!
//! No lost wake-up: of the two fences, one comes first in their total order. If the waiter's
//! does, the notifier sees `waiters > 0`, bumps the epoch and wakes; the waiter's sleep
//! either sees the new epoch and returns, or is woken. If the notifier's does, the waiter's
//! re-check sees the changed condition and it does not sleep. If the waiter's key already
//! includes the bump, the bump's Release (read with Acquire) makes the change visible to the
//! re-check, again so it does not sleep.
//!
//! The words are shared with untrusted peers. A peer that corrupts them can cause spurious
//! wake-ups, extra system calls, or a missed wake-up (zeroing `waiters` while someone sleeps);
//! never memory unsafety. Waits take deadlines for that reason, and because a waiter killed
//! between prepare and done leaks one count (later notifies then make a system call: slower,
//! not wrong) and the 32-bit epoch can in theory wrap back to a sleeper's key.

use std::time::{Duration, Instant};

use super::barrier::{notifier_fence, sleep_deadline, waiter_fence};
use super::futex::{self, FutexWait, WaitQueue, Watched};
use super::sync::{AtomicU32, Ordering};

/// A cross-process event count: waiters sleep on a futex until a notifier signals a change.
///
/// It lives on the heap or inside a segment (on Linux it is `shmlane_segment::SharedView`;
/// all-zero bytes are an idle event count, so a fresh segment needs no initialisation). Wrap
/// it in `CachePadded` when it sits next to other hot data.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// use shmlane_notify::{EventCount, WaitOutcome};
///
/// let ready = AtomicBool::new(false);
/// let event = EventCount::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         ready.store(true, Ordering::Release);
///         event.notify_all();
///     });
///     while !ready.load(Ordering::Acquire) {
///         let wait = event.prepare_wait();
///         if ready.load(Ordering::Acquire) {
///             break; // dropping `wait` cancels it
///         }
///         wait.wait(Some(Duration::from_secs(5)));
///     }
/// });
/// ```
#[derive(Debug, Default)]
#[repr(C)]
pub struct EventCount {
    /// The futex word: bumped by a notify that found a waiter.
    epoch: AtomicU32,
    /// Waiters between `prepare_wait` and the end of their wait.
    waiters: AtomicU32,
    queue: WaitQueue,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// A notify happened after the wait was prepared (the condition may still be unmet for
    /// this waiter, e.g. another consumer took the item: re-check it).
    Notified,
    /// The deadline passed without a notify.
    TimedOut,
}

impl EventCount {
    on_shared_memory! {
        /// An idle event count.
        pub const fn new() -> Self {
            EventCount {
                epoch: AtomicU32::new(0),
                waiters: AtomicU32::new(0),
                queue: WaitQueue::new(),
            }
        }
    }

    in_model! {
        /// An idle event count.
        pub fn new() -> Self {
            Self::with_spurious_wakeups(0)
        }

        /// An idle event count whose first `spurious` futex waits return spuriously (loom
        /// only: real futexes do this unprompted).
        pub fn with_spurious_wakeups(spurious: usize) -> Self {
            EventCount {
                epoch: AtomicU32::new(0),
                waiters: AtomicU32::new(0),
                queue: WaitQueue::with_spurious_wakeups(spurious),
            }
        }
    }

    /// Announces a waiter and takes its key. Re-check the condition after this: if it is met,
    /// drop the result (that cancels); if not, call [`PreparedWait::wait`].
    #[inline]
    pub fn prepare_wait(&self) -> PreparedWait<'_> {
        self.announce();
        // The waiter half of the Dekker pair with the fence in `has_waiters`: a SeqCst fence,
        // and the membarrier that stands for a light notifier's (see `barrier`).
        waiter_fence();
        self.prepared()
    }

    /// [`prepare_wait`](Self::prepare_wait) on each of `events`, with one waiter fence for
    /// all (a wait on many sources pays one membarrier, not one per source).
    pub fn prepare_waits<'e>(events: &[&'e EventCount]) -> Vec<PreparedWait<'e>> {
        events.iter().for_each(|event| event.announce());
        // As in `prepare_wait`, after every announcement and before every key and re-check.
        waiter_fence();
        events.iter().map(|event| event.prepared()).collect()
    }

    /// A waiter's first step: counts it in `waiters`.
    #[inline]
    fn announce(&self) {
        // Relaxed: the waiter fence after it orders it before the caller's re-check.
        self.waiters.fetch_add(1, Ordering::Relaxed);
    }

    /// A waiter's step after the fence: its key.
    #[inline]
    fn prepared(&self) -> PreparedWait<'_> {
        // Acquire: pairs with the Release bump in `wake`, so a key that includes a bump also
        // sees the change made before it.
        let key = self.epoch.load(Ordering::Acquire);
        PreparedWait { event: self, key }
    }

    /// Wakes one waiter, if any sleeps. Call it after changing the condition. With no waiter
    /// it makes no system call (a fence, or where this process registered for `membarrier`
    /// only a compiler fence, and a load).
    #[inline]
    pub fn notify_one(&self) {
        if self.has_waiters() {
            self.wake(1);
        }
    }

    /// Wakes every waiter, if any sleeps. Call it after changing the condition. With no waiter
    /// it makes no system call (a fence and a load).
    #[inline]
    pub fn notify_all(&self) {
        if self.has_waiters() {
            self.wake(u32::MAX);
        }
    }

    /// Waiters between `prepare_wait` and the end of their wait, as last seen (a hint: it
    /// includes waiters of killed processes, and a peer can write any value).
    pub fn waiters(&self) -> u32 {
        // Relaxed: a statistic.
        self.waiters.load(Ordering::Relaxed)
    }

    #[inline]
    fn has_waiters(&self) -> bool {
        // The notifier half of the Dekker pair with the fence in `prepare_wait` (a SeqCst
        // fence, or a compiler fence where waiters' membarriers stand for it: see `barrier`);
        // orders the caller's change of the condition before the load below.
        notifier_fence();
        // Relaxed: ordered by the fence above.
        self.waiters.load(Ordering::Relaxed) != 0
    }

    #[cold]
    fn wake(&self, count: u32) {
        // Release: pairs with the Acquire key load in `prepare_wait` and the epoch check in
        // `wait_until`, publishing the caller's change to whoever sees the new epoch.
        self.epoch.fetch_add(1, Ordering::Release);
        self.queue.wake(&self.epoch, count);
    }
}

on_shared_memory! {
    // SAFETY: two `AtomicU32`s (every bit pattern valid, written only atomically) and a
    // zero-sized `WaitQueue` (the kernel keeps futex queues); `#[repr(C)]`, no padding.
    #[cfg(target_os = "linux")]
    unsafe impl shmlane_segment::SharedView for EventCount {}
}

/// A waiter announced by [`EventCount::prepare_wait`]. Wait on it, or drop it to cancel.
#[derive(Debug)]
#[must_use = "dropping a PreparedWait cancels it; re-check the condition, then call wait"]
pub struct PreparedWait<'a> {
    event: &'a EventCount,
    /// The epoch when the wait was prepared: the futex sleeps while it is unchanged.
    key: u32,
}

impl<'a> PreparedWait<'a> {
    /// Whether the event count was notified since the wait was prepared.
    pub(crate) fn is_notified(&self) -> bool {
        // Acquire: pairs with the Release bump in `wake`.
        self.event.epoch.load(Ordering::Acquire) != self.key
    }

    /// The event count and the key to sleep while its epoch holds (the reactor's).
    pub(crate) fn event_and_key(&self) -> (&'a EventCount, u32) {
        (self.event, self.key)
    }
}

impl EventCount {
    /// Whether the epoch of the event count at `event` still holds `key`.
    ///
    /// # Safety
    ///
    /// `event` points to a live event count.
    pub(crate) unsafe fn epoch_is(event: *const EventCount, key: u32) -> bool {
        // SAFETY: live, by the caller's promise.
        // Acquire: pairs with the Release bump in `wake`, as a waiter's own check does.
        unsafe { &*event }.epoch.load(Ordering::Acquire) == key
    }

    on_shared_memory! {
        /// Where the futex word of the event count at `event` is, without reading it.
        ///
        /// # Safety
        ///
        /// `event` points to a live event count (the address is computed within it).
        pub(crate) unsafe fn epoch_ptr(event: *const EventCount) -> *const AtomicU32 {
            // SAFETY: in bounds of a live event count, by the caller's promise; no read.
            unsafe { std::ptr::addr_of!((*event).epoch) }
        }
    }

    in_model! {
        /// The futex word and its sleepers, to sleep on with others (the reactor's model).
        pub(crate) fn watched(&self, key: u32) -> Watched<'_> {
            Watched { word: &self.epoch, expected: key, queue: &self.queue }
        }
    }
}

impl PreparedWait<'_> {
    /// Sleeps until a notify after [`prepare_wait`](EventCount::prepare_wait), or until
    /// `timeout` (none: no limit) has passed.
    pub fn wait(self, timeout: Option<Duration>) -> WaitOutcome {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.wait_until(deadline)
    }

    /// Sleeps until a notify after [`prepare_wait`](EventCount::prepare_wait), or until
    /// `deadline` (none: no limit).
    pub fn wait_until(self, deadline: Option<Instant>) -> WaitOutcome {
        let epoch = &self.event.epoch;
        loop {
            // Acquire: pairs with the Release bump in `wake`.
            if epoch.load(Ordering::Acquire) != self.key {
                return WaitOutcome::Notified;
            }
            let (until, capped) = sleep_deadline(deadline);
            match self.event.queue.wait(epoch, self.key, until) {
                FutexWait::Woken | FutexWait::Changed => continue,
                // A notify this process's waiters could not fence against may have been
                // missed: the caller re-checks (a spurious wake-up).
                FutexWait::TimedOut if capped => return WaitOutcome::Notified,
                FutexWait::TimedOut => {
                    // Acquire: as above; a notify that raced the deadline still counts.
                    return if epoch.load(Ordering::Acquire) != self.key {
                        WaitOutcome::Notified
                    } else {
                        WaitOutcome::TimedOut
                    };
                }
            }
        }
    }
}

/// Sleeps until a notify on any of `waits` after it was prepared, or until `deadline` (none:
/// no limit): one system call for many event counts (a WaitSet's sleep). Each wait keeps the
/// no-lost-wake-up guarantee of [`PreparedWait::wait`]: prepare every wait, re-check every
/// condition, then call this.
///
/// On Linux 5.16 and later it is one `futex_waitv` for up to [`WAITV_MAX`](crate::WAITV_MAX)
/// event counts. With more, on older kernels (`ENOSYS`, remembered) and on other Unix it polls
/// the epochs with growing sleeps, 50 µs to 1 ms: a wake-up then costs up to that sleep.
/// With no waits it sleeps until `deadline` (none: it returns at once, as notified).
pub fn wait_any(waits: &[PreparedWait<'_>], deadline: Option<Instant>) -> WaitOutcome {
    if waits.is_empty() {
        let Some(deadline) = deadline else { return WaitOutcome::Notified };
        sleep_until(deadline);
        return WaitOutcome::TimedOut;
    }
    let watched: Vec<Watched<'_>> = waits
        .iter()
        .map(|w| Watched { word: &w.event.epoch, expected: w.key, queue: &w.event.queue })
        .collect();
    loop {
        // Acquire: pairs with the Release bump in `wake`, as in `wait_until`.
        if waits.is_empty() || waits.iter().any(|w| w.event.epoch.load(Ordering::Acquire) != w.key)
        {
            return WaitOutcome::Notified;
        }
        let (until, capped) = sleep_deadline(deadline);
        if futex::wait_any(&watched, until) == FutexWait::TimedOut {
            if capped {
                return WaitOutcome::Notified;
            }
            // Acquire: as above; a notify that raced the deadline still counts.
            let notified = waits.iter().any(|w| w.event.epoch.load(Ordering::Acquire) != w.key);
            return if notified { WaitOutcome::Notified } else { WaitOutcome::TimedOut };
        }
    }
}

on_shared_memory! {
    /// Sleeps until `deadline`.
    fn sleep_until(deadline: Instant) {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
}

in_model! {
    /// A timer may fire at any moment (as `WaitQueue::wait` with a deadline models it): now.
    fn sleep_until(_deadline: Instant) {}
}

impl Drop for PreparedWait<'_> {
    fn drop(&mut self) {
        // Relaxed (both): the count is only a hint to notifiers; an extra notify system call
        // while it is stale is harmless. Saturating: a peer that zeroed the count must not
        // leave it at `u32::MAX`, which would make every later notify a system call.
        let _ = self
            .event
            .waiters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}
