//! [`SegmentRef`]: a shared reference into a segment that keeps the segment mapped, for
//! handles that own their share of it (an `Arc<Segment>`) instead of borrowing it.
//!
//! Invariant: the pointer was a `&T` borrowed from the very `Segment` the `Arc` holds (the
//! constructors take it from a closure that can only return a borrow of its argument), and a
//! segment's mapping neither moves nor shrinks while the segment lives.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use super::Segment;

/// A `&T` into a segment, without a lifetime: it holds the `Arc` that keeps the segment mapped.
/// Derefs to `T` at the cost of a `&T` (one pointer load); cloning it clones the `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use shmlane_segment::{Carver, Offset, RegionLayout, Segment, SegmentRef};
///
/// let mut carver = Carver::new();
/// let region = carver.place(RegionLayout { size: 8, align: 8 })?;
/// let segment = Segment::builder(format!("doc-ref-{}", std::process::id()))
///     .size(carver.total_size())
///     .create()?;
/// let counter: SegmentRef<AtomicU64> =
///     SegmentRef::try_map(&Arc::new(segment), |s| s.get(Offset::new(region.offset)))?;
/// counter.fetch_add(1, Ordering::Relaxed); // no borrow of the segment to carry around
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SegmentRef<T: ?Sized> {
    ptr: NonNull<T>,
    segment: Arc<Segment>,
}

impl<T: ?Sized + Sync> SegmentRef<T> {
    /// The reference `view` resolves in `segment` (a [`Segment::get`], a field of one, ...),
    /// kept with the segment.
    pub fn try_map<E>(
        segment: &Arc<Segment>,
        view: impl for<'s> FnOnce(&'s Segment) -> Result<&'s T, E>,
    ) -> Result<Self, E> {
        let ptr = NonNull::from(view(segment)?);
        Ok(SegmentRef { ptr, segment: Arc::clone(segment) })
    }

    /// A reference to a part of this one (a field, an element), kept with the same segment.
    pub fn project<U: ?Sized + Sync>(
        &self,
        part: impl for<'t> FnOnce(&'t T) -> &'t U,
    ) -> SegmentRef<U> {
        SegmentRef { ptr: NonNull::from(part(self)), segment: Arc::clone(&self.segment) }
    }

    /// The segment it points into.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }
}

impl<T: ?Sized> Deref for SegmentRef<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: `ptr` came from a `&T` borrowed from `*self.segment` (the constructors' closures
        // can return nothing else that is not `'static`), and the segment's mapping stays where it
        // is while our `Arc` keeps the segment alive; the `&T` was shared, and so is this one.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized> Clone for SegmentRef<T> {
    fn clone(&self) -> Self {
        SegmentRef { ptr: self.ptr, segment: Arc::clone(&self.segment) }
    }
}

// SAFETY: a `SegmentRef<T>` is a `&T` plus an `Arc<Segment>`: sending it sends a shared
// reference, sound when `T: Sync` (as `&T: Send` is), and `Segment` is `Send + Sync`.
unsafe impl<T: ?Sized + Sync> Send for SegmentRef<T> {}
// SAFETY: as for `Send`: sharing it shares a `&T`, sound when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for SegmentRef<T> {}

impl<T: ?Sized + fmt::Debug> fmt::Debug for SegmentRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentRef")
            .field("segment", self.segment.name())
            .field("value", &&**self)
            .finish()
    }
}
