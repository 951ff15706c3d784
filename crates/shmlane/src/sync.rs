//! The atomics of the facade: std's, whose layout the segments hold, and the role claims over
//! them. The protocols in their own files (`topic/handoff.rs`) take them from their parent's
//! `sync`, so `model` (feature `loom`) compiles the same files over loom's.

pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub(crate) use shmlane_segment::RoleClaim;
