//! What every queue in a segment shares: the descriptor at the start of its region, the
//! element contract ([`ZeroCopy`]), and the errors of attaching and claiming.

// Under loom only the in-memory protocol is built; the segment layout goes unused.
#![cfg_attr(feature = "loom", allow(dead_code))]

use std::io;
use std::mem::offset_of;

use shmlane_segment::Segment;
use shmlane_segment::{Fingerprint, LayoutError, OffsetError, Region, RegionLayout, RoleError};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Every queue region: the descriptor, two words of its own at 64 and 72, then `head` and
/// `tail` on their own cache lines (`INDICES_END` is where the kind's own layout continues).
pub(crate) const HEAD_AT: u64 = 128;
/// Bytes of one padded index (a cache line, or two on x86_64).
pub(crate) const PADDED: u64 =
    size_of::<crossbeam_utils::CachePadded<crate::sync::AtomicU64>>() as u64;
/// Where `tail` lives.
pub(crate) const TAIL_AT: u64 = HEAD_AT + PADDED;
/// End of the indices.
pub(crate) const INDICES_END: u64 = TAIL_AT + PADDED;

/// Bytes of the descriptor.
pub const DESCRIPTOR_LEN: u64 = size_of::<Descriptor>() as u64;
/// Where the descriptor's `magic` lives.
pub const MAGIC_AT: u64 = offset_of!(Descriptor, magic) as u64;
/// Where its `version` lives.
pub const VERSION_AT: u64 = offset_of!(Descriptor, version) as u64;
/// Where its `reserved0` lives.
pub const RESERVED0_AT: u64 = offset_of!(Descriptor, reserved0) as u64;
/// Where its `capacity` lives.
pub const CAPACITY_AT: u64 = offset_of!(Descriptor, capacity) as u64;
/// Where its element size lives.
pub const ELEMENT_SIZE_AT: u64 = offset_of!(Descriptor, element_size) as u64;
/// Where its element alignment lives.
pub const ELEMENT_ALIGN_AT: u64 = offset_of!(Descriptor, element_align) as u64;
/// Where its element fingerprint lives.
pub const FINGERPRINT_AT: u64 = offset_of!(Descriptor, fingerprint) as u64;
/// Where its `extra` words live.
pub const EXTRA_AT: u64 = offset_of!(Descriptor, extra) as u64;

/// Format version of every queue descriptor.
const VERSION: u32 = 2;
/// Largest capacity a descriptor may claim.
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;
/// Shared indices at or beyond this are corrupt: no queue gets there (2^63 values), and the
/// positions of a claimed end stay far from overflowing. Bit 63 is free for slot flags.
pub(crate) const MAX_POSITION: u64 = 1 << 63;

/// Plain data, safe to share by reference between processes: no pointers, every bit pattern
/// a valid value, no padding, no interior mutability (zerocopy's guarantees).
///
/// Every `Send + Sync + 'static` type with zerocopy's `FromBytes`, `IntoBytes`, `KnownLayout`
/// and `Immutable` has it; the shared queues also need `Copy`, as they move values in and out
/// by copy. It is shmlane's one element contract: `shmlane::ZeroCopy` is this trait,
/// re-exported by the facade.
pub trait ZeroCopy:
    FromBytes + IntoBytes + KnownLayout + Immutable + Send + Sync + 'static
{
}
impl<T: FromBytes + IntoBytes + KnownLayout + Immutable + Send + Sync + 'static> ZeroCopy for T {}

/// The descriptor at the start of a queue's region (64 bytes), read by copy and validated.
///
/// | offset | field | |
/// |---:|---|---|
/// | 0 | magic | `SHMLSPSC` or `SHMLMPMC` |
/// | 8 | version | 1 |
/// | 12 | reserved | zero |
/// | 16 | capacity | slots, a power of two |
/// | 24 | element size | `size_of::<T>()` |
/// | 32 | element align | `align_of::<T>()` |
/// | 40 | fingerprint | the caller's element fingerprint |
/// | 48 | extra | per kind: zero (SPSC); max producers, max consumers (MPMC) |
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct Descriptor {
    magic: [u8; 8],
    version: u32,
    reserved0: u32,
    pub(crate) capacity: u64,
    element_size: u64,
    element_align: u64,
    fingerprint: u64,
    pub(crate) extra: [u64; 2],
}

impl Descriptor {
    pub(crate) fn new<T>(
        magic: [u8; 8],
        capacity: u64,
        fingerprint: Fingerprint,
        extra: [u64; 2],
    ) -> Self {
        let element = (size_of::<T>() as u64, align_of::<T>() as u64);
        Self::with_element(magic, capacity, element, fingerprint, extra)
    }

    /// [`new`](Self::new) for an element of `(size, align)` given at run time.
    pub(crate) fn with_element(
        magic: [u8; 8],
        capacity: u64,
        (element_size, element_align): (u64, u64),
        fingerprint: Fingerprint,
        extra: [u64; 2],
    ) -> Self {
        Descriptor {
            magic,
            version: VERSION,
            reserved0: 0,
            capacity,
            element_size,
            element_align,
            fingerprint: fingerprint.get(),
            extra,
        }
    }

    /// The element's `(size, align)` as recorded (checked by [`read_element`](Self::read_element)'s caller).
    pub(crate) fn element(&self) -> (u64, u64) {
        (self.element_size, self.element_align)
    }

    /// Copies the descriptor out of the region and checks everything but `capacity` and
    /// `extra`, which the queue kind checks.
    pub(crate) fn read_checked<T>(
        segment: &Segment,
        region: Region,
        magic: [u8; 8],
        fingerprint: Fingerprint,
    ) -> Result<Descriptor, QueueError> {
        let d = Self::read_element(segment, region, magic, fingerprint)?;
        let (size, align) = (size_of::<T>() as u64, align_of::<T>() as u64);
        if (d.element_size, d.element_align) != (size, align) {
            return Err(QueueError::ElementMismatch {
                size,
                align,
                found_size: d.element_size,
                found_align: d.element_align,
            });
        }
        Ok(d)
    }

    /// [`read_checked`](Self::read_checked) but for the element, which the caller checks (a
    /// kind whose element is chosen at run time).
    pub(crate) fn read_element(
        segment: &Segment,
        region: Region,
        magic: [u8; 8],
        fingerprint: Fingerprint,
    ) -> Result<Descriptor, QueueError> {
        let mut bytes = [0u8; size_of::<Descriptor>()];
        segment.read_bytes(region.offset, &mut bytes)?;
        let d: Descriptor = zerocopy::transmute!(bytes);
        if d.magic != magic {
            return Err(QueueError::BadMagic);
        }
        if d.version != VERSION {
            return Err(QueueError::UnsupportedVersion(d.version));
        }
        if d.reserved0 != 0 {
            return Err(QueueError::Corrupt);
        }
        if d.fingerprint != fingerprint.get() {
            return Err(QueueError::FingerprintMismatch {
                expected: fingerprint.get(),
                found: d.fingerprint,
            });
        }
        Ok(d)
    }
}

pub(crate) fn check_capacity(capacity: u64) -> Result<(), QueueError> {
    if !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
        return Err(QueueError::BadCapacity(capacity));
    }
    Ok(())
}

/// Errors from laying out, initialising or attaching a shared queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The capacity is not a power of two between 1 and 2^32.
    #[error("capacity {0} is invalid: use a power of two between 1 and 2^32")]
    BadCapacity(u64),
    /// The layout overflows.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The region is too small or misaligned for the queue.
    #[error(
        "the queue needs {needed} bytes aligned to {align}, the region at {offset:#x} has {len}: \
         place it with the queue's `layout`"
    )]
    BadRegion {
        /// Bytes needed.
        needed: u64,
        /// Alignment needed.
        align: u64,
        /// Region offset.
        offset: u64,
        /// Region length.
        len: u64,
    },
    /// The region is outside the segment, or the segment is read-only.
    #[error("cannot use the queue region: {0}")]
    Offset(#[from] OffsetError),
    /// No queue was initialised here.
    #[error(
        "no queue of this kind at this offset (bad magic): initialise it with the queue's \
         `init_in`, and attach with the same queue type"
    )]
    BadMagic,
    /// Another queue format.
    #[error("queue format version {0} is not supported: use the same shmlane everywhere")]
    UnsupportedVersion(u32),
    /// The queue holds another element type.
    #[error(
        "the queue holds elements of {found_size} bytes aligned to {found_align}, not \
         {size}/{align}: every process must use the same element type"
    )]
    ElementMismatch {
        /// Our element size.
        size: u64,
        /// Our element alignment.
        align: u64,
        /// Size in the descriptor.
        found_size: u64,
        /// Alignment in the descriptor.
        found_align: u64,
    },
    /// The element fingerprint differs.
    #[error("element fingerprint {found:#x} differs from {expected:#x}: use the same type version")]
    FingerprintMismatch {
        /// Ours.
        expected: u64,
        /// In the descriptor.
        found: u64,
    },
    /// The descriptor's reserved bytes are not zero.
    #[error("the queue descriptor is corrupt (reserved bytes set): recreate the queue")]
    Corrupt,
}

/// Errors from claiming the producer or consumer role.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// A live process holds the role.
    #[error(transparent)]
    Taken(#[from] RoleError),
    /// The queue's shared indices are impossible.
    #[error("the queue's indices are corrupt (head {head}, tail {tail}): recreate the queue")]
    Corrupt {
        /// Shared head.
        head: u64,
        /// Shared tail.
        tail: u64,
    },
    /// Every participant entry of the queue is held by a live process.
    #[error(
        "all {max} participant entries are held by live processes: raise the maximum when creating the queue"
    )]
    NoFreeEntry {
        /// Entries of that kind.
        max: u64,
    },
    /// Our own identity could not be read (`/proc/self/stat`).
    #[error("cannot identify this process to claim the role: {0}")]
    Identity(#[source] io::Error),
}

pub(crate) fn check_region(layout: RegionLayout, region: Region) -> Result<(), QueueError> {
    if region.len < layout.size || !region.offset.is_multiple_of(layout.align) {
        return Err(QueueError::BadRegion {
            needed: layout.size,
            align: layout.align,
            offset: region.offset,
            len: region.len,
        });
    }
    Ok(())
}
