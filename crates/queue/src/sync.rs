//! The one switch between std and loom for atomics, `Arc` and cells (as in tokio's `loom`).

#[cfg(feature = "loom")]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(feature = "loom")]
pub(crate) use loom::hint::spin_loop;
#[cfg(feature = "loom")]
pub(crate) use loom::sync::Arc;
#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
/// Role claims over the same atomics as the rest (the segment crate's loom instance).
#[cfg(feature = "loom")]
pub(crate) use shmlane_segment::model::RoleClaim;

#[cfg(not(feature = "loom"))]
pub(crate) use shmlane_segment::RoleClaim;
#[cfg(not(feature = "loom"))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::Arc;
#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// `std`'s `UnsafeCell` with loom's closure API, so one code path serves both.
#[cfg(not(feature = "loom"))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(feature = "loom"))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
