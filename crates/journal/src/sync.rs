//! The atomics of the journal as it runs: std's. The protocol module (`publish`) takes them
//! from its parent's `sync`, so `model` (feature `loom`) compiles the same file over loom's.
//! Every other module takes its atomics from here too, so the crate has one place where they
//! come from.

pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
