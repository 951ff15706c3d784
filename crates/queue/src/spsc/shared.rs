//! The SPSC ring inside a segment, between processes, for plain-data values.
//!
//! Layout of the queue's region (offsets from its start; aligned to `max(128, slot align)`):
//!
//! | offset   | content                                                              |
//! |----------|----------------------------------------------------------------------|
//! | 0        | descriptor: magic, version, capacity, element size/align, fingerprint |
//! | 64       | producer role word (see `shmlane_segment::RoleClaim`)                |
//! | 72       | consumer role word                                                   |
//! | 128      | `head`, on its own cache line                                        |
//! | 128 + P  | `tail`, on its own cache line (P = `size_of::<CachePadded<u64>>()`)   |
//! | 128 + 2P | `capacity` slots                                                     |
//!
//! One producer and one consumer process may hold the queue at a time; a role whose owner is
//! proven dead is taken over. A producer killed after writing a slot's stamp but before
//! storing `tail` published that message (the consumer polls stamps, so it may even have popped
//! it, leaving `head` ahead of `tail`); its successor continues after the later of the two
//! indices and any stamped slots beyond, so nothing is lost or duplicated. A
//! consumer killed after reading a value but before storing `head` leaves that value to its
//! successor, which reads it again: across a consumer crash, delivery is at-least-once.

use std::io;

use crossbeam_utils::CachePadded;
use shmlane_segment::{
    Fingerprint, LayoutError, Offset, OffsetError, Region, RegionLayout, RoleClaim, RoleError,
    RoleOwner, Segment, SharedView,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Consumer, Producer, Ring, Slot, Storage};
use crate::sync::{AtomicU64, Ordering};

const MAGIC: [u8; 8] = *b"SHMLSPSC";
const VERSION: u32 = 1;
const PRODUCER_ROLE_AT: u64 = 64;
const CONSUMER_ROLE_AT: u64 = 72;
const HEAD_AT: u64 = 128;
const PADDED: u64 = size_of::<CachePadded<AtomicU64>>() as u64;
const TAIL_AT: u64 = HEAD_AT + PADDED;
const SLOTS_AT: u64 = TAIL_AT + PADDED;
/// Largest capacity a descriptor may claim.
const MAX_CAPACITY: u64 = 1 << 32;
/// Shared indices at or beyond this are corrupt: no queue gets there (2^63 values), and the
/// positions of a claimed end stay far from overflowing.
const MAX_POSITION: u64 = 1 << 63;

/// The descriptor at the start of the region, read by copy and validated.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Descriptor {
    magic: [u8; 8],
    version: u32,
    reserved0: u32,
    capacity: u64,
    element_size: u64,
    element_align: u64,
    fingerprint: u64,
    reserved: [u64; 2],
}

const _: () = assert!(size_of::<Descriptor>() as u64 <= PRODUCER_ROLE_AT);

// SAFETY: a slot is an atomic stamp plus a cell of `T: FromBytes` (every bit pattern valid,
// `MaybeUninit` in any case), so any bytes a peer writes are a valid `Slot<T>`; the value is
// accessed only through raw pointers under the stamp protocol, by copy.
unsafe impl<T: FromBytes + Send> SharedView for Slot<T> {}

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
         place it with `SharedSpsc::layout`"
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
    #[error("no SPSC queue at this offset (bad magic): initialise it with `SharedSpsc::init_in`")]
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
    /// Our own identity could not be read (`/proc/self/stat`).
    #[error("cannot identify this process to claim the role: {0}")]
    Identity(#[source] io::Error),
}

/// Values that can travel through shared memory: plain bytes, no pointers, every bit pattern
/// valid, no padding (zerocopy's guarantees).
pub trait Plain: FromBytes + IntoBytes + KnownLayout + Immutable + Copy + Send + Sync {}
impl<T: FromBytes + IntoBytes + KnownLayout + Immutable + Copy + Send + Sync> Plain for T {}

/// An SPSC queue inside a segment, before a role is claimed.
#[derive(Debug)]
pub struct SharedSpsc<'seg, T> {
    slots: &'seg [Slot<T>],
    head: &'seg AtomicU64,
    tail: &'seg AtomicU64,
    producer_role: &'seg AtomicU64,
    consumer_role: &'seg AtomicU64,
}

/// Segment storage for one end, holding that end's role until dropped.
#[derive(Debug)]
pub struct Shared<'seg, T> {
    slots: &'seg [Slot<T>],
    head: &'seg AtomicU64,
    tail: &'seg AtomicU64,
    _role: RoleClaim<'seg>,
}

impl<T> Storage<T> for Shared<'_, T> {
    #[inline(always)]
    fn ring(&self) -> Ring<'_, T> {
        Ring { slots: self.slots, head: self.head, tail: self.tail }
    }
}

impl<'seg, T: Plain> SharedSpsc<'seg, T> {
    /// The region a queue of `capacity` slots needs; place it with a `Carver`.
    pub fn layout(capacity: u64) -> Result<RegionLayout, QueueError> {
        if !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
            return Err(QueueError::BadCapacity(capacity));
        }
        let slot = size_of::<Slot<T>>() as u64;
        let align = (align_of::<Slot<T>>() as u64).max(128);
        let slots_at = SLOTS_AT.next_multiple_of(align_of::<Slot<T>>() as u64);
        let size = slot
            .checked_mul(capacity)
            .and_then(|bytes| slots_at.checked_add(bytes))
            .ok_or(LayoutError::Overflow)?;
        Ok(RegionLayout { size, align })
    }

    /// Writes a fresh, empty queue into `region` (while creating the segment).
    pub fn init_in(
        segment: &'seg Segment,
        region: Region,
        capacity: u64,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        let layout = Self::layout(capacity)?;
        check_region(layout, region)?;
        let descriptor = Descriptor {
            magic: MAGIC,
            version: VERSION,
            reserved0: 0,
            capacity,
            element_size: size_of::<T>() as u64,
            element_align: align_of::<T>() as u64,
            fingerprint: fingerprint.get(),
            reserved: [0; 2],
        };
        segment.write_bytes(region.offset, descriptor.as_bytes())?;
        let queue = Self::view(segment, region, capacity)?;
        for slot in queue.slots {
            // Relaxed: the segment's `Ready` publication orders these for every opener.
            slot.stamp.store(0, Ordering::Relaxed);
        }
        for word in [queue.head, queue.tail, queue.producer_role, queue.consumer_role] {
            // Relaxed: as above.
            word.store(0, Ordering::Relaxed);
        }
        Ok(queue)
    }

    /// Attaches to a queue another process initialised, validating its descriptor.
    pub fn attach(
        segment: &'seg Segment,
        region: Region,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        let mut bytes = [0u8; size_of::<Descriptor>()];
        segment.read_bytes(region.offset, &mut bytes)?;
        let d: Descriptor = zerocopy::transmute!(bytes);
        if d.magic != MAGIC {
            return Err(QueueError::BadMagic);
        }
        if d.version != VERSION {
            return Err(QueueError::UnsupportedVersion(d.version));
        }
        if d.reserved0 != 0 || d.reserved != [0; 2] {
            return Err(QueueError::Corrupt);
        }
        let (size, align) = (size_of::<T>() as u64, align_of::<T>() as u64);
        if (d.element_size, d.element_align) != (size, align) {
            return Err(QueueError::ElementMismatch {
                size,
                align,
                found_size: d.element_size,
                found_align: d.element_align,
            });
        }
        if d.fingerprint != fingerprint.get() {
            return Err(QueueError::FingerprintMismatch {
                expected: fingerprint.get(),
                found: d.fingerprint,
            });
        }
        check_region(Self::layout(d.capacity)?, region)?;
        Self::view(segment, region, d.capacity)
    }

    /// Claims the producer role (taking it over from a dead producer) and returns the
    /// producing end. The role is released when the producer drops.
    pub fn producer(&self) -> Result<Producer<T, Shared<'seg, T>>, ClaimError> {
        let storage = self.claim(self.producer_role)?;
        // Acquire: pairs with the Release stores of the previous ends.
        let head = self.head.load(Ordering::Acquire);
        // A producer that died between a stamp and its `tail` store published those slots, and
        // the consumer may have popped some (`head` past `tail`): continue after all of them.
        let mut tail = self.checked_tail(head)?.max(head);
        let ring = storage.ring();
        while tail.wrapping_sub(head) < ring.capacity()
            && Consumer::<T, Shared<'seg, T>>::ready(&ring, tail)
        {
            tail += 1;
        }
        // Release: pairs with Acquire loads of `tail` (`len`, `slots`).
        self.tail.store(tail, Ordering::Release);
        Ok(Producer::start(storage, tail, head))
    }

    /// Claims the consumer role (taking it over from a dead consumer) and returns the
    /// consuming end. The role is released when the consumer drops.
    pub fn consumer(&self) -> Result<Consumer<T, Shared<'seg, T>>, ClaimError> {
        let storage = self.claim(self.consumer_role)?;
        // Acquire: pairs with the previous consumer's Release store of `head`.
        let head = self.head.load(Ordering::Acquire);
        self.checked_tail(head)?;
        Ok(Consumer::start(storage, head))
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Values in the queue (a snapshot, clamped to the capacity).
    pub fn len(&self) -> usize {
        // Acquire: pairs with the ends' Release index stores.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.slots.len() as u64) as usize
    }

    /// Whether the queue holds nothing (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn claim(&self, role: &'seg AtomicU64) -> Result<Shared<'seg, T>, ClaimError> {
        let me = RoleOwner::current().map_err(ClaimError::Identity)?;
        // Fresh or taken over, both ends resume from the shared indices (see the module docs).
        let (claim, _) = RoleClaim::claim(role, me)?;
        Ok(Shared { slots: self.slots, head: self.head, tail: self.tail, _role: claim })
    }

    /// The shared tail, if it is consistent with `head`: at most `capacity` apart (`head` is
    /// ahead when the consumer popped slots a dead producer stamped), and below `MAX_POSITION`.
    fn checked_tail(&self, head: u64) -> Result<u64, ClaimError> {
        // Acquire: pairs with the producer's Release store of `tail`.
        let tail = self.tail.load(Ordering::Acquire);
        if tail.abs_diff(head) > self.slots.len() as u64 || head.max(tail) >= MAX_POSITION {
            return Err(ClaimError::Corrupt { head, tail });
        }
        Ok(tail)
    }

    fn view(segment: &'seg Segment, region: Region, capacity: u64) -> Result<Self, QueueError> {
        let at = |relative: u64| region.offset.checked_add(relative).ok_or(LayoutError::Overflow);
        let word = |relative| -> Result<&'seg AtomicU64, QueueError> {
            Ok(segment.get(Offset::<AtomicU64>::new(at(relative)?))?)
        };
        let slots_at = SLOTS_AT.next_multiple_of(align_of::<Slot<T>>() as u64);
        Ok(SharedSpsc {
            slots: segment.get_slice(Offset::new(at(slots_at)?), capacity)?,
            head: word(HEAD_AT)?,
            tail: word(TAIL_AT)?,
            producer_role: word(PRODUCER_ROLE_AT)?,
            consumer_role: word(CONSUMER_ROLE_AT)?,
        })
    }
}

fn check_region(layout: RegionLayout, region: Region) -> Result<(), QueueError> {
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
