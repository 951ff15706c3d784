//! The two fences of the event count's Dekker pair, made asymmetric where the kernel allows
//! it: the notifier's (on every send of a stream) becomes a compiler fence, and the waiter's
//! (only on the way to sleep) becomes `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which
//! makes every running thread of every process registered for it execute a full barrier
//! before it returns. The technique is folly's `asymmetricHeavyBarrier` and liburcu's, across
//! processes.
//!
//! Why no wake-up is lost: a notifier N stores the condition, then (compiler fence) loads
//! `waiters`; a waiter W adds to `waiters`, then issues the membarrier, then re-checks the
//! condition. The membarrier puts a full barrier B in N's instruction stream (an IPI if N
//! runs, its context switch if not). If N's load comes after B, it sees W's count (W's own
//! barrier before the IPIs made it visible) and wakes W. If it comes before B, so does N's
//! store, which B makes visible before the membarrier returns: W's re-check sees it and W
//! does not sleep.
//!
//! A process takes the light side only after its registration
//! (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`, Linux 4.16) succeeded, tried on its first
//! notify. Until then, and for good where the kernel or a seccomp filter refuses it, its
//! notifiers keep the full fence. A waiter always takes its full fence; where its membarrier
//! is refused it cannot reach a fence-less notifier, so this process's sleeps are then capped
//! at [`UNBARRIERED_SLICE`] and end as notified (a spurious wake-up, which every caller
//! re-checks): a wake-up may come up to that much late, but it comes.
//!
//! `SHMLANE_SYMMETRIC_FENCES=1` in the environment keeps the full fence on both sides (for
//! comparison, or where IPIs to busy cores cost more than a fence per notify).

use std::sync::atomic::{AtomicU8, Ordering as StdOrdering};
use std::time::{Duration, Instant};

use rustix::thread::{MembarrierCommand, membarrier};

use super::sync::{Ordering, fence};

/// The longest sleep of a process whose waiters could not issue the membarrier.
pub const UNBARRIERED_SLICE: Duration = Duration::from_millis(1);

/// This process's notifier side: not tried yet, light (registered), or full fences.
static NOTIFIER: AtomicU8 = AtomicU8::new(UNTRIED);
/// Whether a waiter of this process failed to issue the membarrier (its sleeps are capped).
static WAITER_UNBARRIERED: AtomicU8 = AtomicU8::new(0);
/// Set by [`refuse_membarrier_in_waiters`]: this process's waiters act as if it were refused.
static WAITER_REFUSED: AtomicU8 = AtomicU8::new(0);

const UNTRIED: u8 = 0;
const LIGHT: u8 = 1;
const FULL: u8 = 2;

/// The notifier's fence, between its change of the condition and its load of `waiters`.
#[inline(always)]
pub(crate) fn notifier_fence() {
    // Relaxed: our own registration's outcome; the kernel's state it stands for was set by
    // the registration's system call before the store.
    match NOTIFIER.load(StdOrdering::Relaxed) {
        // A compiler fence: the hardware barrier comes from a waiter's membarrier (above).
        LIGHT => std::sync::atomic::compiler_fence(Ordering::SeqCst),
        UNTRIED => {
            fence(Ordering::SeqCst);
            register();
        }
        _ => fence(Ordering::SeqCst),
    }
}

/// Registers this process for the membarrier once; full fences if it is refused or switched
/// off by `SHMLANE_SYMMETRIC_FENCES`.
#[cold]
fn register() {
    let off = std::env::var_os("SHMLANE_SYMMETRIC_FENCES").is_some_and(|v| v != "0");
    let light = !off && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    // Relaxed: see `notifier_fence`.
    NOTIFIER.store(if light { LIGHT } else { FULL }, StdOrdering::Relaxed);
}

/// Whether this process's notifiers skip the hardware fence (registered for the membarrier).
pub fn asymmetric_notify() -> bool {
    if NOTIFIER.load(StdOrdering::Relaxed) == UNTRIED {
        register();
    }
    NOTIFIER.load(StdOrdering::Relaxed) == LIGHT
}

/// The waiter's fence, between its addition to `waiters` and its re-check of the condition:
/// a full fence, then the membarrier that stands for every light notifier's.
#[inline]
pub(crate) fn waiter_fence() {
    fence(Ordering::SeqCst);
    // Relaxed: this process's own flags. Once refused (ENOSYS, EPERM: for good), the system
    // call is not tried again: every sleep is capped from then on anyway.
    if WAITER_UNBARRIERED.load(StdOrdering::Relaxed) != 0 {
        return;
    }
    let refused = WAITER_REFUSED.load(StdOrdering::Relaxed) != 0;
    if refused || membarrier(MembarrierCommand::GlobalExpedited).is_err() {
        // Relaxed: read only by this process's later sleeps, which cap themselves.
        WAITER_UNBARRIERED.store(1, StdOrdering::Relaxed);
    }
}

/// `deadline` for a sleep, capped at [`UNBARRIERED_SLICE`] from now if a waiter of this
/// process could not issue the membarrier; the flag says it was capped (a sleep that ends at
/// the cap counts as notified).
#[inline]
pub(crate) fn sleep_deadline(deadline: Option<Instant>) -> (Option<Instant>, bool) {
    // Relaxed: see `waiter_fence`.
    if WAITER_UNBARRIERED.load(StdOrdering::Relaxed) == 0 {
        return (deadline, false);
    }
    let cap = Instant::now() + UNBARRIERED_SLICE;
    match deadline {
        Some(deadline) if deadline <= cap => (Some(deadline), false),
        _ => (Some(cap), true),
    }
}

/// Makes this process's waiters skip the membarrier as if the kernel refused it (a seccomp
/// filter), so that tests can show the 1 ms cap keeps every wake-up. Not for production use.
#[doc(hidden)]
pub fn refuse_membarrier_in_waiters() {
    // Relaxed: see `waiter_fence`.
    WAITER_REFUSED.store(1, StdOrdering::Relaxed);
}
