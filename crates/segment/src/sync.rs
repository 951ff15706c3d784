//! The atomics of this crate's code over shared memory: always std's, whose layout a segment
//! holds. The lock-free protocols (`pool/free_list.rs`, `role/claim.rs`) take their atomics
//! from their parent's `sync`, so `crate::model` (feature `loom`) compiles them a second
//! time over loom's without changing anything here.

pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
