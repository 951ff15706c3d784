//! Bounded lock-free queues for shmlane: the hot path between two pinned processes.
//!
//! - [`spsc`]: single producer, single consumer. Inside a segment for plain data
//!   ([`spsc::SharedSpsc`]), one message moves one cache line from the producer to the
//!   consumer: the consumer polls the slot's own stamp, not the producer's index; one producer
//!   and one consumer process may attach at a time and the role of a dead one can be taken
//!   over. On the heap for any `T: Send` ([`spsc::new`]), the consumer reads the producer's
//!   index when it has caught up (rtrb's protocol), which streams faster between threads.
//! - [`overflow`]: single producer, single consumer, of `u64` values, where a full queue
//!   evicts its oldest value back to the producer instead of refusing the push: the
//!   drop-oldest submission queue of a subscriber.
//! - [`mpmc`]: multi-producer multi-consumer (Vyukov's array queue), on the heap
//!   ([`mpmc::Queue`]) or inside a segment ([`mpmc::SharedMpmc`]), where a slot abandoned by a
//!   producer or consumer killed mid-operation is repaired once its owner is proven dead.
//!
//! With the `loom` feature the crate also builds `model` (hidden): the queues' source compiled
//! a second time over loom's atomics and cells, on heap-allocated atomics only (segments cannot
//! hold loom atomics); nothing else changes.

/// Keeps the items it wraps in the crate as it runs on shared memory, and drops them from
/// `model`, which compiles the same files over loom's atomics (and redefines this macro).
macro_rules! on_shared_memory {
    ($($item:tt)*) => { $($item)* };
}

mod descriptor;
#[cfg(feature = "loom")]
#[doc(hidden)]
pub mod model;
pub mod mpmc;
pub mod overflow;
#[doc(hidden)]
pub mod raw;
mod slot;
pub mod spsc;
mod sync;

pub use descriptor::{ClaimError, QueueError, ZeroCopy};
