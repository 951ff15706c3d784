//! Cross-process wake-ups for shmlane: the path a consumer sleeps on when busy polling would
//! waste a core (audio callbacks, quiet market hours), woken in microseconds.
//!
//! - [`EventCount`]: a futex event count on the heap or inside a segment. A waiter announces
//!   itself, re-checks its condition (a queue is empty), then sleeps; a notifier changes the
//!   condition, then notifies. No wake-up is lost, and a notify with nobody asleep makes no
//!   system call.
//! - [`strategy`]: how to wait for a poll to succeed, behind one trait ([`WaitStrategy`]):
//!   busy-spin, yield, backoff, blocking, and [`Periodic`], which learns the period of
//!   periodic traffic and parks until just before the next arrival.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::{Duration, Instant};
//! use shmlane_notify::{Blocking, EventCount, WaitStrategy};
//!
//! let mailbox = AtomicU64::new(0);
//! let signal = EventCount::new();
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         mailbox.store(42, Ordering::Release); // change the condition...
//!         signal.notify_one(); // ...then notify
//!     });
//!     let deadline = Instant::now() + Duration::from_secs(5);
//!     let poll = || match mailbox.load(Ordering::Acquire) {
//!         0 => None,
//!         value => Some(value),
//!     };
//!     assert_eq!(Blocking::new().wait_for(&signal, Some(deadline), poll), Ok(42));
//! });
//! ```
//!
//! Linux is the target: waits use `FUTEX_WAIT` on shared (not process-private) futexes, so the
//! notifier and the waiter may be different processes mapping one segment. Other Unix systems
//! build with a fallback in which a wait polls the word with sleeps of 50 µs to 1 ms (the
//! strategies keep their behaviour; wake-up latency is that of the sleep). With the `loom`
//! feature the crate also builds `model` (hidden): the event count and the strategies compiled
//! a second time over loom's atomics, with the futex a Mutex + Condvar model that can wake
//! spuriously (see `loom-tests/event_count.rs`); nothing else changes.

/// Keeps the items it wraps in the crate as it runs (on real futexes, in shared memory), and
/// drops them from `model`, which compiles the same files over loom (and swaps the macros).
macro_rules! on_shared_memory {
    ($($item:tt)*) => { $($item)* };
}

/// The reverse of `on_shared_memory!`: items only the loom instance (`model`) has.
#[allow(unused_macros)]
macro_rules! in_model {
    ($($item:tt)*) => {};
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod barrier;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "symmetric_barrier.rs"]
mod barrier;
mod event_count;
mod futex;
#[cfg(feature = "loom")]
#[doc(hidden)]
pub mod model;
pub mod reactor;
pub mod strategy;
mod sync;

pub use barrier::asymmetric_notify;
#[cfg(any(target_os = "linux", target_os = "android"))]
#[doc(hidden)]
pub use barrier::refuse_membarrier_in_waiters;
pub use event_count::{EventCount, PreparedWait, WaitOutcome, wait_any};
pub use futex::WAITV_MAX;
pub use strategy::{
    AnyOf, Backoff, Blocking, BusySpin, Chosen, MIN_ADAPTIVE_SPINS, Periodic, TimedOut,
    UnknownStrategy, WaitStrategy, Yield,
};
