//! The one switch between std and loom (as in tokio's `loom` module): every atomic, fence and
//! spin hint this crate uses comes from here, so `--features loom` swaps them all. The futex
//! itself is swapped in [`futex`](crate::futex).

#[cfg(feature = "loom")]
pub(crate) use loom::hint::spin_loop;
#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};
#[cfg(feature = "loom")]
pub(crate) use loom::thread::yield_now;

#[cfg(not(feature = "loom"))]
pub(crate) use core::sync::atomic::{AtomicU32, Ordering, fence};
#[cfg(not(feature = "loom"))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(feature = "loom"))]
pub(crate) use std::thread::yield_now;
