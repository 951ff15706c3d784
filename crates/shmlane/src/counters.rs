//! Per-slot counters in shared memory, for monitors: each slot's counters are written only by
//! the process holding the slot, on a cache line of their own that nobody else writes, so a
//! count is a load and a store to a line already in the owner's cache (no read-modify-write,
//! no cache-line transfer on the data path); a monitor reads them by copy
//! ([`discovery::Counters`](crate::discovery::Counters)).

use shmlane_segment::SharedView;

use crate::sync::{AtomicU64, Ordering};

/// A slot's counters (publisher, subscriber or listener), on their own cache line pair.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct SlotCounters {
    /// Samples sent (publisher).
    pub(crate) sent: AtomicU64,
    /// Loans refused for want of a free block (publisher).
    pub(crate) loans_failed: AtomicU64,
    /// Samples received (subscriber).
    pub(crate) received: AtomicU64,
    /// Samples held now (subscriber; a gauge).
    pub(crate) held: AtomicU64,
    /// Waits for an rpc response that timed out (the client's response subscriber).
    pub(crate) timeouts: AtomicU64,
    /// Event notifications taken (listener).
    pub(crate) notifications: AtomicU64,
}

// SAFETY: a `#[repr(C)]` aggregate of atomics: every bit pattern is valid and every access is
// atomic.
unsafe impl SharedView for SlotCounters {}

/// The number of counters, in field order (what a monitor copies out).
pub(crate) const COUNTERS: usize = 6;

impl SlotCounters {
    /// Adds `n` to `counter`, which only this process writes: a load and a store, not an RMW.
    #[inline(always)]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed (both): a statistic, written by its owner alone; monitors read it with no
        // ordering against anything else.
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets the gauge `counter` to `value`.
    #[inline(always)]
    pub(crate) fn set(counter: &AtomicU64, value: u64) {
        // Relaxed: as in `add`.
        counter.store(value, Ordering::Relaxed);
    }
}
