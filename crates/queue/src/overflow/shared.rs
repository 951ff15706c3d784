//! The overflowing ring inside a segment, between processes.
//!
//! Layout of the queue's region (offsets from its start; aligned to 128):
//!
//! | offset   | content                                                          |
//! |----------|------------------------------------------------------------------|
//! | 0        | descriptor: magic `SHMLOVFL`, version, capacity, element: a slot (64 bytes, aligned to 64), fingerprint |
//! | 128      | `head`, on its own cache line                                    |
//! | 128 + P  | `tail`, on its own cache line (P = `size_of::<CachePadded<u64>>()`) |
//! | 128 + 2P | `seen`, on its own cache line                                    |
//! | 128 + 3P | `capacity` slots of 64 bytes (stamp, value, six line words)      |
//!
//! The queue has no role words: whoever owns the connection it belongs to (in shmlane, the
//! publisher and subscriber slots of a topic, each a `RoleClaim`) guarantees one producer and
//! one consumer at a time. A producer that takes over resumes after the later of `head` and
//! `tail` and any stamped slots beyond, as the SPSC queue does.

use std::mem::offset_of;

use std::sync::Arc;

use shmlane_segment::{
    Fingerprint, LayoutError, Offset, Region, RegionLayout, Segment, SegmentRef,
};
use zerocopy::IntoBytes;

use super::{Consumer, Corrupt, IndexSlot, Producer, Ring, Storage};
use super::super::descriptor::{
    Descriptor, HEAD_AT, INDICES_END, MAX_POSITION, PADDED, QueueError, TAIL_AT, check_capacity,
    check_region,
};
use crate::raw::RawLayout;
use super::super::sync::{AtomicU64, Ordering};

const MAGIC: [u8; 8] = *b"SHMLOVFL";
const SEEN_AT: u64 = INDICES_END;
const SLOTS_AT: u64 = SEEN_AT + PADDED;

/// An overflowing queue inside a segment, before an end is taken.
///
/// ```
/// use shmlane_queue::overflow::SharedOverflow;
/// use shmlane_segment::{Carver, Fingerprint, Segment};
///
/// const OFFSETS: Fingerprint = Fingerprint::new("doc.sample offsets");
/// let mut carver = Carver::new();
/// let region = carver.place(SharedOverflow::layout(2)?)?;
/// let segment = Segment::builder(format!("doc-overflow-{}", std::process::id()))
///     .size(carver.total_size())
///     .create_with(|s| {
///         SharedOverflow::init_in(s, region, 2, OFFSETS)?;
///         Ok(())
///     })?;
/// let queue = SharedOverflow::attach(&segment, region, OFFSETS)?;
/// let (mut tx, mut rx) = (queue.producer()?, queue.consumer()?);
/// for offset in [10, 20, 30] {
///     if let Some(dropped) = tx.push(offset)? {
///         assert_eq!(dropped, 10); // give its block back to the pool
///     }
/// }
/// assert_eq!(rx.pop(), Some(20));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SharedOverflow<'seg> {
    slots: &'seg [IndexSlot],
    head: &'seg AtomicU64,
    tail: &'seg AtomicU64,
    seen: &'seg AtomicU64,
}

/// A queue's state copied out by [`SharedOverflow::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverflowSnapshot {
    /// Number of slots.
    pub capacity: u64,
    /// The values queued when read, oldest first.
    pub values: Vec<u64>,
}

/// Segment storage for one end.
#[derive(Debug)]
pub struct Shared<'seg>(SharedOverflow<'seg>);

impl Storage for Shared<'_> {
    #[inline(always)]
    fn ring(&self) -> Ring<'_> {
        Ring { slots: self.0.slots, head: self.0.head, tail: self.0.tail, seen: self.0.seen }
    }
}

impl<'seg> SharedOverflow<'seg> {
    /// The region a queue of `capacity` slots needs; place it with a `Carver`.
    pub fn layout(capacity: u64) -> Result<RegionLayout, QueueError> {
        check_capacity(capacity)?;
        let size = (size_of::<IndexSlot>() as u64)
            .checked_mul(capacity)
            .and_then(|bytes| SLOTS_AT.checked_add(bytes))
            .ok_or(LayoutError::Overflow)?;
        Ok(RegionLayout { size, align: 128 })
    }

    /// Where the words of a queue of `capacity` slots live in its region, for tests.
    #[doc(hidden)]
    pub fn raw_layout(capacity: u64) -> Result<RawLayout, QueueError> {
        let size = Self::layout(capacity)?.size;
        let value = offset_of!(IndexSlot, value);
        Ok(RawLayout {
            seen: Some(SEEN_AT),
            ..RawLayout::of_slots::<IndexSlot>(size, SLOTS_AT, value)
        })
    }

    /// Writes a fresh, empty queue into `region` (while creating the segment).
    pub fn init_in(
        segment: &'seg Segment,
        region: Region,
        capacity: u64,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        check_region(Self::layout(capacity)?, region)?;
        let descriptor = Descriptor::new::<IndexSlot>(MAGIC, capacity, fingerprint, [0; 2]);
        segment.write_bytes(region.offset, descriptor.as_bytes())?;
        let queue = Self::view(segment, region, capacity)?;
        queue.reset();
        Ok(queue)
    }

    /// Attaches to a queue another process initialised, validating its descriptor.
    pub fn attach(
        segment: &'seg Segment,
        region: Region,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        let d = Descriptor::read_checked::<IndexSlot>(segment, region, MAGIC, fingerprint)?;
        if d.extra != [0; 2] {
            return Err(QueueError::Corrupt);
        }
        check_region(Self::layout(d.capacity)?, region)?;
        Self::view(segment, region, d.capacity)
    }

    /// The producing end, resuming after every value a previous producer published. The
    /// caller guarantees it is the only producer.
    pub fn producer(&self) -> Result<Producer<Shared<'seg>>, Corrupt> {
        resume_producer(Shared(*self))
    }

    /// The consuming end. The caller guarantees it is the only consumer.
    pub fn consumer(&self) -> Result<Consumer<Shared<'seg>>, Corrupt> {
        resume_consumer(Shared(*self))
    }

    /// Empties the queue and forgets every stamp (for a connection that starts over: no end
    /// may be in use).
    pub fn reset(&self) {
        for slot in self.slots {
            // Relaxed: whoever hands the connection on next publishes these (a role claim, or
            // the segment's `Ready` state).
            slot.stamp.store(0, Ordering::Relaxed);
        }
        for index in [self.head, self.tail, self.seen] {
            // Relaxed: as above.
            index.store(0, Ordering::Relaxed);
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Values in the queue (a snapshot, clamped to the capacity).
    pub fn len(&self) -> usize {
        Shared(*self).ring().len()
    }

    /// Whether the queue holds nothing (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the state of the queue in `region` out of `segment`, which may be mapped
    /// read-only (for inspection tools). Touches nothing: every word is read by copy, and a
    /// queue in use may move while it is read, so the result is an estimate. Fails on an
    /// invalid descriptor or impossible indices.
    pub fn snapshot(
        segment: &Segment,
        region: Region,
        fingerprint: Fingerprint,
    ) -> Result<OverflowSnapshot, QueueError> {
        let d = Descriptor::read_checked::<IndexSlot>(segment, region, MAGIC, fingerprint)?;
        if d.extra != [0; 2] {
            return Err(QueueError::Corrupt);
        }
        check_region(Self::layout(d.capacity)?, region)?;
        let word = |relative: u64| -> Result<u64, QueueError> {
            let at = region.offset.checked_add(relative).ok_or(LayoutError::Overflow)?;
            let mut bytes = [0u8; 8];
            segment.read_bytes(at, &mut bytes)?;
            Ok(u64::from_ne_bytes(bytes))
        };
        let (head, tail) = (word(HEAD_AT)?, word(TAIL_AT)?);
        if tail.abs_diff(head) > d.capacity || head.max(tail) >= MAX_POSITION {
            return Err(QueueError::Corrupt);
        }
        let slot_size = size_of::<IndexSlot>() as u64;
        let mut values = Vec::new();
        for position in head..tail.max(head) {
            let slot = SLOTS_AT + (position & (d.capacity - 1)) * slot_size;
            // A slot holds `position` only if stamped for it (see the module's protocol).
            if word(slot)? == position + 1 {
                values.push(word(slot + 8)?);
            }
        }
        Ok(OverflowSnapshot { capacity: d.capacity, values })
    }

    fn view(segment: &'seg Segment, region: Region, capacity: u64) -> Result<Self, QueueError> {
        let at = |relative: u64| region.offset.checked_add(relative).ok_or(LayoutError::Overflow);
        let word = |relative| -> Result<&'seg AtomicU64, QueueError> {
            Ok(segment.get(Offset::<AtomicU64>::new(at(relative)?))?)
        };
        Ok(SharedOverflow {
            slots: segment.get_slice(Offset::new(at(SLOTS_AT)?), capacity)?,
            head: word(HEAD_AT)?,
            tail: word(TAIL_AT)?,
            seen: word(SEEN_AT)?,
        })
    }
}

/// A [`SharedOverflow`] that keeps its segment mapped (it holds the segment's `Arc`): its ends
/// can be stored in a handle that owns its share of the segment, with no borrow to carry.
#[derive(Debug, Clone)]
pub struct OwnedOverflow {
    slots: SegmentRef<[IndexSlot]>,
    head: SegmentRef<AtomicU64>,
    tail: SegmentRef<AtomicU64>,
    seen: SegmentRef<AtomicU64>,
}

/// Segment storage for one end that keeps the segment mapped ([`OwnedOverflow`]).
#[derive(Debug)]
pub struct Owned(OwnedOverflow);

impl Storage for Owned {
    #[inline(always)]
    fn ring(&self) -> Ring<'_> {
        let queue = &self.0;
        Ring { slots: &queue.slots, head: &queue.head, tail: &queue.tail, seen: &queue.seen }
    }
}

impl OwnedOverflow {
    /// Attaches to a queue another process initialised, validating its descriptor, as
    /// [`SharedOverflow::attach`] does.
    pub fn attach(
        segment: &Arc<Segment>,
        region: Region,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        let capacity = SharedOverflow::attach(segment, region, fingerprint)?.capacity() as u64;
        Ok(OwnedOverflow {
            slots: SegmentRef::try_map(segment, |s| {
                Self::part(s, region, capacity).map(|q| q.slots)
            })?,
            head: SegmentRef::try_map(segment, |s| {
                Self::part(s, region, capacity).map(|q| q.head)
            })?,
            tail: SegmentRef::try_map(segment, |s| {
                Self::part(s, region, capacity).map(|q| q.tail)
            })?,
            seen: SegmentRef::try_map(segment, |s| {
                Self::part(s, region, capacity).map(|q| q.seen)
            })?,
        })
    }

    /// The validated queue in `segment` (the parts are taken one by one, each as a borrow of
    /// the segment).
    fn part(
        segment: &Segment,
        region: Region,
        capacity: u64,
    ) -> Result<SharedOverflow<'_>, QueueError> {
        SharedOverflow::view(segment, region, capacity)
    }

    /// The producing end, as [`SharedOverflow::producer`].
    pub fn producer(&self) -> Result<Producer<Owned>, Corrupt> {
        resume_producer(Owned(self.clone()))
    }

    /// The consuming end, as [`SharedOverflow::consumer`].
    pub fn consumer(&self) -> Result<Consumer<Owned>, Corrupt> {
        resume_consumer(Owned(self.clone()))
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// The producing end over `storage`, resuming after every value a previous producer
/// published. The caller guarantees it is the only producer.
fn resume_producer<S: Storage>(storage: S) -> Result<Producer<S>, Corrupt> {
    let ring = storage.ring();
    // Acquire: pairs with the previous ends' Release stores and CASes.
    let head = ring.head.load(Ordering::Acquire);
    let mut tail = checked_tail(&ring, head)?.max(head);
    // A producer that died between a stamp and its `tail` store published that slot.
    // Acquire: pairs with its Release stamp store.
    while tail - head < ring.capacity() && ring.slot(tail).stamp.load(Ordering::Acquire) == tail + 1
    {
        tail += 1;
    }
    // Release: pairs with Acquire loads of `tail` (`len`).
    ring.tail.store(tail, Ordering::Release);
    Ok(Producer::start(storage, tail, head))
}

/// The consuming end over `storage`. The caller guarantees it is the only consumer.
fn resume_consumer<S: Storage>(storage: S) -> Result<Consumer<S>, Corrupt> {
    let ring = storage.ring();
    // Acquire: pairs with the previous ends' Release stores and CASes.
    let head = ring.head.load(Ordering::Acquire);
    checked_tail(&ring, head)?;
    Ok(Consumer::start(storage))
}

/// The shared tail, if consistent with `head` (see `SharedSpsc`).
fn checked_tail(ring: &Ring<'_>, head: u64) -> Result<u64, Corrupt> {
    // Acquire: pairs with the producer's Release store of `tail`.
    let tail = ring.tail.load(Ordering::Acquire);
    if tail.abs_diff(head) > ring.capacity() || head.max(tail) >= MAX_POSITION {
        return Err(Corrupt { head, tail });
    }
    Ok(tail)
}
