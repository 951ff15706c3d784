//! The overflowing ring inside a segment, between processes.
//!
//! Layout of the queue's region (offsets from its start; aligned to 128):
//!
//! | offset   | content                                                          |
//! |----------|------------------------------------------------------------------|
//! | 0        | descriptor: magic `SHMLOVFL`, version, capacity, element: a slot (S = 16, 32 or 64 bytes, aligned to S), fingerprint |
//! | 128      | `head`, on its own cache line                                    |
//! | 128 + P  | `tail`, on its own cache line (P = `size_of::<CachePadded<u64>>()`) |
//! | 128 + 2P | `seen`, on its own cache line                                    |
//! | 128 + 3P | `capacity` slots of S bytes (stamp, value, S / 8 - 2 line words) |
//!
//! The queue has no role words: whoever owns the connection it belongs to (in shmlane, the
//! publisher and subscriber slots of a topic, each a `RoleClaim`) guarantees one producer and
//! one consumer at a time. A producer that takes over resumes after the later of `head` and
//! `tail` and any stamped slots beyond, as the SPSC queue does.

use std::sync::Arc;

use shmlane_segment::{
    Fingerprint, LayoutError, Offset, Region, RegionLayout, Segment, SegmentRef,
};
use zerocopy::IntoBytes;

use super::{Consumer, Corrupt, INLINE, INLINE_FLAG, Producer, Ring, STRIDES, Storage};
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
    /// The slots' words, `capacity << shift` of them.
    words: &'seg [AtomicU64],
    /// log2 of the words per slot.
    shift: u32,
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
        let q = &self.0;
        Ring { words: q.words, shift: q.shift, head: q.head, tail: q.tail, seen: q.seen }
    }
}

impl<'seg> SharedOverflow<'seg> {
    /// The region a queue of `capacity` slots of 64 bytes needs; place it with a `Carver`.
    pub fn layout(capacity: u64) -> Result<RegionLayout, QueueError> {
        Self::layout_strided(capacity, 8)
    }

    /// The region a queue of `capacity` slots of `stride` words (2, 4 or 8: [`STRIDES`])
    /// needs.
    pub fn layout_strided(capacity: u64, stride: usize) -> Result<RegionLayout, QueueError> {
        check_capacity(capacity)?;
        let slot = slot_bytes(stride)?;
        let size = slot
            .checked_mul(capacity)
            .and_then(|bytes| SLOTS_AT.checked_add(bytes))
            .ok_or(LayoutError::Overflow)?;
        Ok(RegionLayout { size, align: 128 })
    }

    /// Where the words of a queue of `capacity` slots of 64 bytes live in its region, for
    /// tests.
    #[doc(hidden)]
    pub fn raw_layout(capacity: u64) -> Result<RawLayout, QueueError> {
        Self::raw_layout_strided(capacity, 8)
    }

    /// [`raw_layout`](Self::raw_layout) for slots of `stride` words.
    #[doc(hidden)]
    pub fn raw_layout_strided(capacity: u64, stride: usize) -> Result<RawLayout, QueueError> {
        let size = Self::layout_strided(capacity, stride)?.size;
        Ok(RawLayout {
            seen: Some(SEEN_AT),
            slot_size: slot_bytes(stride)?,
            ..RawLayout::of_slots::<[u64; 2]>(size, SLOTS_AT, 8)
        })
    }

    /// Writes a fresh, empty queue of slots of 64 bytes into `region` (while creating the
    /// segment).
    pub fn init_in(
        segment: &'seg Segment,
        region: Region,
        capacity: u64,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        Self::init_in_strided(segment, region, capacity, 8, fingerprint)
    }

    /// [`init_in`](Self::init_in) with slots of `stride` words (2, 4 or 8: [`STRIDES`]).
    pub fn init_in_strided(
        segment: &'seg Segment,
        region: Region,
        capacity: u64,
        stride: usize,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        check_region(Self::layout_strided(capacity, stride)?, region)?;
        let slot = slot_bytes(stride)?;
        let descriptor =
            Descriptor::with_element(MAGIC, capacity, (slot, slot), fingerprint, [0; 2]);
        segment.write_bytes(region.offset, descriptor.as_bytes())?;
        let queue = Self::view(segment, region, capacity, stride)?;
        queue.reset();
        Ok(queue)
    }

    /// Attaches to a queue another process initialised, validating its descriptor.
    pub fn attach(
        segment: &'seg Segment,
        region: Region,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        let (d, stride) = read_descriptor(segment, region, fingerprint)?;
        check_region(Self::layout_strided(d.capacity, stride)?, region)?;
        Self::view(segment, region, d.capacity, stride)
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
        for stamp in self.words.iter().step_by(1 << self.shift) {
            // Relaxed: whoever hands the connection on next publishes these (a role claim, or
            // the segment's `Ready` state).
            stamp.store(0, Ordering::Relaxed);
        }
        for index in [self.head, self.tail, self.seen] {
            // Relaxed: as above.
            index.store(0, Ordering::Relaxed);
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.words.len() >> self.shift
    }

    /// Words per slot.
    pub fn stride(&self) -> usize {
        1 << self.shift
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
        let (d, stride) = read_descriptor(segment, region, fingerprint)?;
        check_region(Self::layout_strided(d.capacity, stride)?, region)?;
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
        let slot_size = slot_bytes(stride)?;
        let mut values = Vec::new();
        for position in head..tail.max(head) {
            let slot = SLOTS_AT + (position & (d.capacity - 1)) * slot_size;
            // A slot holds `position` only if stamped for it (see the module's protocol); an
            // inline entry reads as `INLINE`.
            let stamp = word(slot)?;
            if stamp & !INLINE_FLAG == position + 1 {
                values.push(if stamp & INLINE_FLAG != 0 { INLINE } else { word(slot + 8)? });
            }
        }
        Ok(OverflowSnapshot { capacity: d.capacity, values })
    }

    fn view(
        segment: &'seg Segment,
        region: Region,
        capacity: u64,
        stride: usize,
    ) -> Result<Self, QueueError> {
        let at = |relative: u64| region.offset.checked_add(relative).ok_or(LayoutError::Overflow);
        let word = |relative| -> Result<&'seg AtomicU64, QueueError> {
            Ok(segment.get(Offset::<AtomicU64>::new(at(relative)?))?)
        };
        let words = capacity.checked_mul(stride as u64).ok_or(LayoutError::Overflow)?;
        Ok(SharedOverflow {
            words: segment.get_slice(Offset::new(at(SLOTS_AT)?), words)?,
            shift: stride.trailing_zeros(),
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
    words: SegmentRef<[AtomicU64]>,
    shift: u32,
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
        let (head, tail, seen) = (&queue.head, &queue.tail, &queue.seen);
        Ring { words: &queue.words, shift: queue.shift, head, tail, seen }
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
        let queue = SharedOverflow::attach(segment, region, fingerprint)?;
        let (capacity, stride) = (queue.capacity() as u64, queue.stride());
        let (at, shift) = ((region, capacity, stride), queue.shift);
        Ok(OwnedOverflow {
            words: SegmentRef::try_map(segment, |s| Self::part(s, at).map(|q| q.words))?,
            shift,
            head: SegmentRef::try_map(segment, |s| Self::part(s, at).map(|q| q.head))?,
            tail: SegmentRef::try_map(segment, |s| Self::part(s, at).map(|q| q.tail))?,
            seen: SegmentRef::try_map(segment, |s| Self::part(s, at).map(|q| q.seen))?,
        })
    }

    /// The validated queue in `segment` (the parts are taken one by one, each as a borrow of
    /// the segment).
    fn part(
        segment: &Segment,
        (region, capacity, stride): (Region, u64, usize),
    ) -> Result<SharedOverflow<'_>, QueueError> {
        SharedOverflow::view(segment, region, capacity, stride)
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
        self.words.len() >> self.shift
    }

    /// Words per slot.
    pub fn stride(&self) -> usize {
        1 << self.shift
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
    while tail - head < ring.capacity()
        && ring.slot(tail).stamp().load(Ordering::Acquire) & !INLINE_FLAG == tail + 1
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

/// Bytes of a slot of `stride` words, if `stride` is one of [`STRIDES`].
fn slot_bytes(stride: usize) -> Result<u64, QueueError> {
    if STRIDES.contains(&stride) {
        Ok(stride as u64 * 8)
    } else {
        Err(QueueError::Corrupt)
    }
}

/// The validated descriptor of the queue in `region`, and its slots' stride in words.
fn read_descriptor(
    segment: &Segment,
    region: Region,
    fingerprint: Fingerprint,
) -> Result<(Descriptor, usize), QueueError> {
    let d = Descriptor::read_element(segment, region, MAGIC, fingerprint)?;
    if d.extra != [0; 2] {
        return Err(QueueError::Corrupt);
    }
    // A slot is 2, 4 or 8 words, aligned to its size.
    let (size, align) = d.element();
    let stride = STRIDES
        .into_iter()
        .find(|&stride| (size, align) == (stride as u64 * 8, stride as u64 * 8))
        .ok_or(QueueError::ElementMismatch { size: 64, align: 64, found_size: size, found_align: align })?;
    Ok((d, stride))
}
