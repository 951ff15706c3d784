//! Bounded lock-free queues for shmlane: the hot path between two pinned processes.
//!
//! - [`spsc`]: single producer, single consumer. One message moves one cache line from the
//!   producer to the consumer: the consumer polls the slot's own stamp, not the producer's
//!   index. On the heap for any `T: Send` ([`spsc::new`]), or inside a segment for plain data
//!   ([`spsc::SharedSpsc`]), where one producer and one consumer process may attach at a time
//!   and the role of a dead one can be taken over.
//! - [`overflow`]: single producer, single consumer, of `u64` values, where a full queue
//!   evicts its oldest value back to the producer instead of refusing the push: the
//!   drop-oldest submission queue of a subscriber.
//! - [`mpmc`]: multi-producer multi-consumer (Vyukov's array queue), on the heap
//!   ([`mpmc::Queue`]) or inside a segment ([`mpmc::SharedMpmc`]), where a slot abandoned by a
//!   producer or consumer killed mid-operation is repaired once its owner is proven dead.
//!
//! With the `loom` feature the atomics and cells come from loom; the queues are then built on
//! heap-allocated atomics only (segments cannot hold loom atomics).
#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod descriptor;
pub mod mpmc;
pub mod overflow;
#[cfg(not(feature = "loom"))]
#[doc(hidden)]
pub mod raw;
mod slot;
pub mod spsc;
mod sync;

pub use descriptor::{ClaimError, Plain, QueueError};
