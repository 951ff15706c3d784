//! The queues compiled a second time over loom's atomics and cells, for the models in
//! `loom-tests/` (feature `loom`). The files are the ones the crate runs on shared memory
//! (`slot.rs`, `spsc/`, `overflow/`, `mpmc/`), minus what `on_shared_memory!` wraps (the
//! segment-backed constructors), so a change to them is a change to what loom checks; the rest
//! of the crate, and its public API, are the same with or without the feature.

/// Drops the segment-backed items from this instance (see the crate root's definition).
macro_rules! on_shared_memory {
    ($($item:tt)*) => {};
}

/// loom's atomics, `Arc` and cells, where the std build has `crate::sync`.
mod sync {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::hint::spin_loop;
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
    /// Role claims over the same atomics (the segment crate's loom instance).
    pub(crate) use shmlane_segment::model::RoleClaim;
}

use crate::descriptor;

// The second instance is the point (see above): clippy's duplicate_mod warns against exactly it.
#[allow(clippy::duplicate_mod)]
#[path = "slot.rs"]
mod slot;

#[allow(clippy::duplicate_mod)]
#[path = "mpmc/mod.rs"]
pub mod mpmc;
#[allow(clippy::duplicate_mod)]
#[path = "overflow/mod.rs"]
pub mod overflow;
#[allow(clippy::duplicate_mod)]
#[path = "spsc/mod.rs"]
pub mod spsc;
