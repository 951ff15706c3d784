//! Relative addressing inside a segment: typed offsets, regions and the carve-out layout.
//!
//! Each process maps a segment at its own address, so structures refer to each other by byte
//! offsets from the segment start. A [`Carver`] places regions one after another with the
//! alignment they ask for when a segment is laid out; the same sequence of `place` calls gives
//! the same offsets in every process. Resolving an offset checks bounds and alignment against
//! the mapping ([`Segment::get`](crate::Segment::get)).

use std::marker::PhantomData;
use std::{fmt, mem};

/// Bytes reserved for the segment header at offset 0; user regions start here.
pub const HEADER_SIZE: u64 = 128;

/// A byte offset from the start of a segment to a `T`.
pub struct Offset<T> {
    raw: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T> Offset<T> {
    /// Wraps a raw offset; it is checked only when resolved.
    pub const fn new(raw: u64) -> Self {
        Offset { raw, _type: PhantomData }
    }

    /// The raw byte offset.
    pub const fn get(self) -> u64 {
        self.raw
    }
}

impl<T> Clone for Offset<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Offset<T> {}
impl<T> PartialEq for Offset<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl<T> Eq for Offset<T> {}
impl<T> fmt::Debug for Offset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset<{}>({:#x})", std::any::type_name::<T>(), self.raw)
    }
}

/// Size and alignment a structure needs inside a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionLayout {
    /// Bytes needed.
    pub size: u64,
    /// Required alignment of the first byte (a power of two).
    pub align: u64,
}

/// A placed byte range of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Offset of the first byte from the segment start.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Region {
    /// One past the last byte, if that does not overflow.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }

    /// The offset `at` bytes into the region, checked against its end.
    pub fn offset_of<T>(&self, at: u64) -> Result<Offset<T>, OffsetError> {
        let out_of_bounds = OffsetError::OutOfBounds {
            offset: self.offset.saturating_add(at),
            len: mem::size_of::<T>() as u64,
            segment_len: self.end().unwrap_or(u64::MAX),
        };
        let end = at.checked_add(mem::size_of::<T>() as u64).ok_or(out_of_bounds)?;
        if end > self.len {
            return Err(out_of_bounds);
        }
        // The region may be bogus (read from shared memory): the value must end below 2^64.
        self.offset.checked_add(end).ok_or(out_of_bounds)?;
        Ok(Offset::new(self.offset + at))
    }
}

/// Why a layout could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// An alignment was zero or not a power of two.
    #[error("alignment {0} is not a power of two; use 1, 2, 4, 8, ...")]
    BadAlignment(u64),
    /// The layout does not fit in 64-bit offsets (or in the address space).
    #[error("layout overflows 64-bit offsets; use smaller sizes or counts")]
    Overflow,
}

/// Why an offset could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    /// The range does not lie inside the segment.
    #[error(
        "offset {offset:#x} (+{len} bytes) lies outside the segment of {segment_len} bytes: \
         the offset is corrupt or belongs to another segment"
    )]
    OutOfBounds {
        /// Offset asked for.
        offset: u64,
        /// Bytes that had to fit.
        len: u64,
        /// Mapped length.
        segment_len: u64,
    },
    /// The offset is not aligned for the type.
    #[error("offset {offset:#x} is not aligned to {align}: the offset is corrupt")]
    Misaligned {
        /// Offset asked for.
        offset: u64,
        /// Required alignment.
        align: u64,
    },
    /// A write or a shared view was asked of the segment's header, which only the segment
    /// itself writes.
    #[error(
        "offset {offset:#x} lies in the segment's {HEADER_SIZE}-byte header, which is not the          caller's to write: place data with a Carver, which starts after the header"
    )]
    InHeader {
        /// Offset asked for.
        offset: u64,
    },
    /// A write or a mutable view was asked of a read-only mapping.
    #[error("the segment is mapped read-only; open it read-write to change it")]
    ReadOnly,
}

/// Places regions in a segment, bump-allocator style, from the end of the header.
///
/// ```
/// use shmlane_segment::{Carver, RegionLayout};
/// let mut carver = Carver::new();
/// let a = carver.place(RegionLayout { size: 10, align: 8 }).unwrap();
/// let b = carver.place(RegionLayout { size: 64, align: 64 }).unwrap();
/// assert_eq!(b.offset % 64, 0);
/// assert!(b.offset >= a.offset + 10);
/// assert!(carver.total_size() >= b.offset + 64);
/// ```
#[derive(Clone, Debug)]
pub struct Carver {
    cursor: u64,
}

impl Carver {
    /// Starts right after the segment header.
    pub fn new() -> Self {
        Carver { cursor: HEADER_SIZE }
    }

    /// Places the next region at the first offset aligned as asked.
    pub fn place(&mut self, layout: RegionLayout) -> Result<Region, LayoutError> {
        let offset = align_up(self.cursor, layout.align)?;
        let end = offset.checked_add(layout.size).ok_or(LayoutError::Overflow)?;
        self.cursor = end;
        Ok(Region { offset, len: layout.size })
    }

    /// The segment size that holds everything placed so far.
    pub fn total_size(&self) -> u64 {
        self.cursor
    }
}

impl Default for Carver {
    fn default() -> Self {
        Self::new()
    }
}

/// Rounds `value` up to a multiple of `align` (a power of two).
pub(crate) fn align_up(value: u64, align: u64) -> Result<u64, LayoutError> {
    if !align.is_power_of_two() {
        return Err(LayoutError::BadAlignment(align));
    }
    value.checked_add(align - 1).map(|v| v & !(align - 1)).ok_or(LayoutError::Overflow)
}

/// Types that may be viewed through a shared reference in memory that other processes write.
///
/// # Safety
/// Every bit pattern must be a valid value, and every byte that another process may write
/// while the reference lives must be either inside an atomic (accessed through its own API)
/// or behind an `UnsafeCell` whose contents the implementing type only reads through raw
/// pointers, by copy (volatile, so each byte is read once) and never through a reference:
/// atomics, `#[repr(C)]` aggregates of atomics, and ring slots (an atomic stamp beside an
/// `UnsafeCell<MaybeUninit<T: FromBytes>>`). Plain integers do not qualify (a shared `&u64`
/// to bytes a peer writes asserts they do not change).
pub unsafe trait SharedView: Sync {}

mod shared_view_impls {
    use super::SharedView;
    use core::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64};

    // SAFETY: atomics accept every bit pattern and are designed for concurrent access; their
    // layout equals that of the integer, so peers in other processes see the same bytes.
    unsafe impl SharedView for AtomicU8 {}
    // SAFETY: as above.
    unsafe impl SharedView for AtomicU16 {}
    // SAFETY: as above.
    unsafe impl SharedView for AtomicU32 {}
    // SAFETY: as above.
    unsafe impl SharedView for AtomicU64 {}
    // SAFETY: as above.
    unsafe impl SharedView for AtomicI32 {}
    // SAFETY: as above.
    unsafe impl SharedView for AtomicI64 {}
    // SAFETY: an array of shared-view values is one too: no padding, element-wise validity.
    unsafe impl<T: SharedView, const N: usize> SharedView for [T; N] {}
    // SAFETY: `CachePadded` only adds alignment and padding around a shared-view value; the
    // padding bytes are never read as values.
    unsafe impl<T: SharedView> SharedView for crossbeam_utils::CachePadded<T> {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carver_aligns_and_detects_overflow() {
        let mut carver = Carver::new();
        let r = carver.place(RegionLayout { size: 1, align: 4096 }).unwrap();
        assert_eq!(r.offset, 4096);
        assert_eq!(
            carver.place(RegionLayout { size: 1, align: 3 }),
            Err(LayoutError::BadAlignment(3))
        );
        assert_eq!(
            carver.place(RegionLayout { size: u64::MAX, align: 1 }),
            Err(LayoutError::Overflow)
        );
    }

    #[test]
    fn region_offsets_stay_inside() {
        let region = Region { offset: 128, len: 16 };
        assert_eq!(region.offset_of::<u64>(8).unwrap().get(), 136);
        assert!(region.offset_of::<u64>(9).is_err());
        assert!(region.offset_of::<u64>(u64::MAX).is_err());
    }
}
