//! The atomics and spin hints of the crate as it runs: std's. The event count, the futex edge
//! and the strategies take them from their parent's `sync`, so `model` (feature `loom`)
//! compiles the same files over loom's.

pub(crate) use core::sync::atomic::{AtomicU32, Ordering, fence};
pub(crate) use std::hint::spin_loop;
pub(crate) use std::sync::{Mutex, MutexGuard};
pub(crate) use std::thread::yield_now;
