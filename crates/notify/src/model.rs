//! The event count, its futex edge and the wait strategies compiled a second time over loom's
//! atomics, with the futex a Mutex + Condvar model that can wake spuriously, for the models in
//! `loom-tests/` (feature `loom`). The files are the ones the crate runs, minus what
//! `on_shared_memory!` wraps and plus what `in_model!` wraps, so a change to them is a change
//! to what loom checks; the rest of the crate, and its public API, are the same with or
//! without the feature.

/// Drops the real-futex and shared-memory items from this instance.
macro_rules! on_shared_memory {
    ($($item:tt)*) => {};
}

/// Keeps the loom-only items (the futex model, spurious wake-ups) in this instance.
macro_rules! in_model {
    ($($item:tt)*) => { $($item)* };
}

/// loom's atomics and spin hints, where the std build has `crate::sync`.
mod sync {
    pub(crate) use loom::hint::spin_loop;
    pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};
    pub(crate) use loom::sync::{Mutex, MutexGuard};
    pub(crate) use loom::thread::yield_now;
}

/// The model's fences: both halves of the Dekker pair full (see `symmetric_barrier.rs`).
/// (`asymmetric_notify` there is the crate's answer off Linux; the model has no use for it.)
#[allow(clippy::duplicate_mod, dead_code)]
#[path = "symmetric_barrier.rs"]
mod barrier;

// The second instance is the point (see above): clippy's duplicate_mod warns against exactly it.
#[allow(clippy::duplicate_mod)]
#[path = "event_count.rs"]
mod event_count;
#[allow(clippy::duplicate_mod)]
#[path = "futex.rs"]
mod futex;
#[allow(clippy::duplicate_mod)]
#[path = "reactor.rs"]
pub mod reactor;
#[allow(clippy::duplicate_mod)]
#[path = "strategy/mod.rs"]
pub mod strategy;

pub use event_count::{EventCount, PreparedWait, WaitOutcome, wait_any};
pub use strategy::{
    AnyOf, Backoff, Blocking, BusySpin, Chosen, Periodic, TimedOut, UnknownStrategy, WaitStrategy,
    Yield,
};
