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

use std::mem::offset_of;

use shmlane_segment::{
    Fingerprint, LayoutError, Offset, Region, RegionLayout, RoleClaim, RoleOwner, Segment,
};
use zerocopy::IntoBytes;

use super::{Consumer, Producer, Ring, Slot, Storage};
use super::super::descriptor::{
    ClaimError, Descriptor, HEAD_AT, INDICES_END, MAX_POSITION, QueueError, TAIL_AT, ZeroCopy,
    check_capacity, check_region,
};
use crate::raw::RawLayout;
use super::super::sync::{AtomicU64, Ordering};

const MAGIC: [u8; 8] = *b"SHMLSPSC";
const PRODUCER_ROLE_AT: u64 = 64;
const CONSUMER_ROLE_AT: u64 = 72;
const SLOTS_AT: u64 = INDICES_END;
const _: () = assert!(size_of::<Descriptor>() as u64 <= PRODUCER_ROLE_AT);

/// An SPSC queue inside a segment, before a role is claimed.
///
/// ```
/// use shmlane_queue::spsc::SharedSpsc;
/// use shmlane_segment::{Carver, Fingerprint, Segment};
///
/// const TICKS: Fingerprint = Fingerprint::new("doc.tick").with_u64(1);
/// let mut carver = Carver::new();
/// let region = carver.place(SharedSpsc::<u64>::layout(1024)?)?;
/// let segment = Segment::builder(format!("doc-spsc-{}", std::process::id()))
///     .size(carver.total_size())
///     .create_with(|s| {
///         SharedSpsc::<u64>::init_in(s, region, 1024, TICKS)?;
///         Ok(())
///     })?;
///
/// // In the producer process (one at a time; a dead producer's role is taken over):
/// let mut tx = SharedSpsc::<u64>::attach(&segment, region, TICKS)?.producer()?;
/// tx.try_push(42)?;
/// // In the consumer process:
/// let mut rx = SharedSpsc::<u64>::attach(&segment, region, TICKS)?.consumer()?;
/// assert_eq!(rx.try_pop(), Ok(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    _role: RoleClaim<&'seg AtomicU64>,
}

impl<T> Storage<T> for Shared<'_, T> {
    /// Stamped: one line per message, and a producer's death between its stamp and its
    /// `tail` loses nothing (see the module documentation).
    type Slot = Slot<T>;

    #[inline(always)]
    fn ring(&self) -> Ring<'_, T, Slot<T>> {
        Ring::new(self.slots, self.head, self.tail)
    }
}

impl<'seg, T: ZeroCopy + Copy> SharedSpsc<'seg, T> {
    /// The region a queue of `capacity` slots needs; place it with a `Carver`.
    pub fn layout(capacity: u64) -> Result<RegionLayout, QueueError> {
        check_capacity(capacity)?;
        let slot = size_of::<Slot<T>>() as u64;
        let align = (align_of::<Slot<T>>() as u64).max(128);
        let slots_at = SLOTS_AT.next_multiple_of(align_of::<Slot<T>>() as u64);
        let size = slot
            .checked_mul(capacity)
            .and_then(|bytes| slots_at.checked_add(bytes))
            .ok_or(LayoutError::Overflow)?;
        Ok(RegionLayout { size, align })
    }

    /// Where the words of a queue of `capacity` slots live in its region, for tests.
    #[doc(hidden)]
    pub fn raw_layout(capacity: u64) -> Result<RawLayout, QueueError> {
        let size = Self::layout(capacity)?.size;
        let slots = SLOTS_AT.next_multiple_of(align_of::<Slot<T>>() as u64);
        Ok(RawLayout {
            roles: Some([PRODUCER_ROLE_AT, CONSUMER_ROLE_AT]),
            ..RawLayout::of_slots::<Slot<T>>(size, slots, offset_of!(Slot<T>, value))
        })
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
        let descriptor = Descriptor::new::<T>(MAGIC, capacity, fingerprint, [0; 2]);
        segment.write_bytes(region.offset, descriptor.as_bytes())?;
        let queue = Self::view(segment, region, capacity)?;
        for slot in queue.slots {
            // Relaxed: the segment's `Ready` publication orders these for every opener.
            slot.seq.store(0, Ordering::Relaxed);
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
        let d = Descriptor::read_checked::<T>(segment, region, MAGIC, fingerprint)?;
        if d.extra != [0; 2] {
            return Err(QueueError::Corrupt);
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
