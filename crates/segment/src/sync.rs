//! The one switch between std atomics and loom's (as in tokio's `loom` module).
//!
//! Every atomic this crate operates on comes from here, so `--features loom` swaps them all.

#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Only for code loom does not build (reading a header out of a file).
#[cfg(not(feature = "loom"))]
pub(crate) use core::sync::atomic::fence;
#[cfg(not(feature = "loom"))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
