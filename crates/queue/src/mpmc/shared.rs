//! The MPMC ring inside a segment, between processes, with recovery from processes killed in
//! the middle of an operation.
//!
//! Layout of the queue's region (offsets from its start; aligned to `max(128, slot align)`;
//! P = `size_of::<CachePadded<AtomicU64>>()`):
//!
//! | offset               | content                                                   |
//! |----------------------|-----------------------------------------------------------|
//! | 0                    | descriptor (`extra` = max producers, max consumers)        |
//! | 64                   | `lost`: values dropped when a dead consumer's slot was repaired |
//! | 72                   | `skipped`: positions skipped because a dead producer never filled them |
//! | 128                  | `head`, own cache line                                     |
//! | 128 + P              | `tail`, own cache line                                     |
//! | 128 + 2P             | entries, one cache line each: producers, then consumers: `[role word, announced position + 1]` |
//! | after the entries    | `capacity` slots                                           |
//!
//! Every producer and consumer holds an entry (a `RoleClaim` on its role word). Before its
//! CAS on `tail` (`head`) it stores the position it is claiming, plus one, in its entry
//! (Relaxed); the CAS is Release, so anyone who loads `tail` (`head`) with Acquire and sees
//! the position claimed also sees the announcement. After its `seq` store it clears it.
//!
//! A slot stuck for `patience` consecutive polls at one position is checked:
//! - consumer side, `seq == p` and `tail > p`: claimed, never written. If no live producer
//!   announces `p`, its producer died in between: CAS `seq` to `(p + 1) | SKIP`; consumers
//!   step over it (`skipped` counts it).
//! - producer side, `seq == q + 1` (`q = p - capacity`) and `head > q`: claimed by a consumer,
//!   never released. If no live consumer announces `q`, that consumer died: CAS `seq` to `p`;
//!   the value is lost (`lost` counts it).
//!
//! Only proof of death repairs: a live owner that is merely slow (or stopped) keeps its
//! announcement, and the slot waits for it. Delivery is exactly-once while no process dies;
//! a consumer killed between claiming and finishing loses that one value (at-most-once).

// Under loom only the in-memory protocol is built; the segment layout goes unused.
#![cfg_attr(feature = "loom", allow(dead_code, unused_imports))]

use std::cell::Cell;
use std::fmt;

use crossbeam_utils::CachePadded;
use shmlane_segment::{LayoutError, Liveness, RegionLayout, RoleOwner};

use super::super::descriptor::{
    ClaimError, HEAD_AT, INDICES_END, MAX_POSITION, QueueError, TAIL_AT, ZeroCopy, check_capacity,
};
use super::super::slot::Slot;
use super::super::spsc::PopError;
use super::super::sync::{AtomicU64, Ordering, RoleClaim};
use super::{Participant, Ring, SKIP};

on_shared_memory! {
    use std::mem::offset_of;

    use shmlane_segment::{Fingerprint, Offset, Region, Segment};
    use zerocopy::IntoBytes;

    use super::super::descriptor::{Descriptor, check_region};
    use crate::raw::{RawEntries, RawLayout};
}

const MAGIC: [u8; 8] = *b"SHMLMPMC";
const LOST_AT: u64 = 64;
const SKIPPED_AT: u64 = 72;
const ENTRIES_AT: u64 = INDICES_END;
/// Largest number of producers (or consumers) a queue may declare.
const MAX_PARTICIPANTS: u64 = 1024;
/// Polls of one stuck position before a slow path checks for a dead owner.
const DEFAULT_PATIENCE: u32 = 4096;

/// One participant: `[role word, announced position + 1]`, on its own cache line.
pub type Entry = CachePadded<[AtomicU64; 2]>;

/// An MPMC queue inside a segment, before an end is claimed.
pub struct SharedMpmc<'seg, T> {
    slots: &'seg [Slot<T>],
    head: &'seg AtomicU64,
    tail: &'seg AtomicU64,
    producers: &'seg [Entry],
    consumers: &'seg [Entry],
    lost: &'seg AtomicU64,
    skipped: &'seg AtomicU64,
    patience: u32,
}

impl<T> Clone for SharedMpmc<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMpmc<'_, T> {}

/// Repair counters (both zero while no process died mid-operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpmcStats {
    /// Values lost because the consumer that claimed them died before finishing.
    pub lost: u64,
    /// Positions skipped because the producer that claimed them died before writing.
    pub skipped: u64,
}

impl<'seg, T: ZeroCopy + Copy> SharedMpmc<'seg, T> {
    /// The region a queue of `capacity` slots and the given participant limits needs.
    pub fn layout(
        capacity: u64,
        max_producers: u64,
        max_consumers: u64,
    ) -> Result<RegionLayout, QueueError> {
        check_capacity(capacity)?;
        if capacity < 2 {
            // With one slot "full for p" and "free for p + 1" coincide (see `mpmc`).
            return Err(QueueError::BadCapacity(capacity));
        }
        check_participants(max_producers, max_consumers)?;
        let slots_at = Self::slots_at(max_producers + max_consumers);
        let size = (size_of::<Slot<T>>() as u64)
            .checked_mul(capacity)
            .and_then(|bytes| slots_at.checked_add(bytes))
            .ok_or(LayoutError::Overflow)?;
        Ok(RegionLayout { size, align: (align_of::<Slot<T>>() as u64).max(128) })
    }

    on_shared_memory! {
    /// Where the words of a queue of `capacity` slots and the given participant limits live in
    /// its region, for tests.
    #[doc(hidden)]
    pub fn raw_layout(
        capacity: u64,
        max_producers: u64,
        max_consumers: u64,
    ) -> Result<RawLayout, QueueError> {
        let size = Self::layout(capacity, max_producers, max_consumers)?.size;
        let count = max_producers + max_consumers;
        let slots = Self::slots_at(count);
        Ok(RawLayout {
            repairs: Some([LOST_AT, SKIPPED_AT]),
            entries: Some(RawEntries {
                at: ENTRIES_AT,
                size: size_of::<Entry>() as u64,
                count,
                announcement: size_of::<AtomicU64>() as u64,
            }),
            ..RawLayout::of_slots::<Slot<T>>(size, slots, offset_of!(Slot<T>, value))
        })
    }
    }

    fn slots_at(entries: u64) -> u64 {
        (ENTRIES_AT + entries * size_of::<Entry>() as u64)
            .next_multiple_of(align_of::<Slot<T>>() as u64)
    }

    on_shared_memory! {
    /// Writes a fresh, empty queue into `region` (while creating the segment).
    pub fn init_in(
        segment: &'seg Segment,
        region: Region,
        capacity: u64,
        max_producers: u64,
        max_consumers: u64,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        check_region(Self::layout(capacity, max_producers, max_consumers)?, region)?;
        let extra = [max_producers, max_consumers];
        let descriptor = Descriptor::new::<T>(MAGIC, capacity, fingerprint, extra);
        segment.write_bytes(region.offset, descriptor.as_bytes())?;
        let queue = Self::view(segment, region, capacity, max_producers, max_consumers)?;
        for (position, slot) in queue.slots.iter().enumerate() {
            // Relaxed: the segment's `Ready` publication orders these for every opener.
            slot.seq.store(position as u64, Ordering::Relaxed);
        }
        let entries = queue.producers.iter().chain(queue.consumers).flat_map(|e| e.iter());
        for word in entries.chain([queue.head, queue.tail, queue.lost, queue.skipped]) {
            // Relaxed: as above.
            word.store(0, Ordering::Relaxed);
        }
        Ok(queue)
    }
    }

    on_shared_memory! {
    /// Attaches to a queue another process initialised, validating its descriptor.
    pub fn attach(
        segment: &'seg Segment,
        region: Region,
        fingerprint: Fingerprint,
    ) -> Result<Self, QueueError> {
        let d = Descriptor::read_checked::<T>(segment, region, MAGIC, fingerprint)?;
        let [max_producers, max_consumers] = d.extra;
        check_region(Self::layout(d.capacity, max_producers, max_consumers)?, region)?;
        Self::view(segment, region, d.capacity, max_producers, max_consumers)
    }
    }

    /// A queue over atomics the caller owns, formatted empty (for the loom models: loom's
    /// atomics cannot live in a segment).
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        slots: &'seg [Slot<T>],
        head: &'seg AtomicU64,
        tail: &'seg AtomicU64,
        producers: &'seg [Entry],
        consumers: &'seg [Entry],
        lost: &'seg AtomicU64,
        skipped: &'seg AtomicU64,
    ) -> Self {
        SharedMpmc {
            slots,
            head,
            tail,
            producers,
            consumers,
            lost,
            skipped,
            patience: DEFAULT_PATIENCE,
        }
    }

    /// Polls of one stuck position before checking for a dead owner (default 4096). Lower
    /// values recover sooner and cost more `/proc` reads while the queue is merely busy.
    pub fn with_patience(mut self, polls: u32) -> Self {
        self.patience = polls.max(1);
        self
    }

    /// Claims a free producer entry (or one whose owner is dead).
    pub fn producer(&self) -> Result<MpmcProducer<'seg, T>, ClaimError> {
        Ok(MpmcProducer(self.end(self.producers)?))
    }

    /// Claims a free consumer entry (or one whose owner is dead).
    pub fn consumer(&self) -> Result<MpmcConsumer<'seg, T>, ClaimError> {
        Ok(MpmcConsumer(self.end(self.consumers)?))
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Values in the queue (a snapshot).
    pub fn len(&self) -> usize {
        self.ring().len()
    }

    /// Whether the queue is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Repairs so far.
    pub fn stats(&self) -> MpmcStats {
        // Relaxed: counters for inspection.
        MpmcStats {
            lost: self.lost.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn ring(&self) -> Ring<'seg, T> {
        Ring { slots: self.slots, head: self.head, tail: self.tail }
    }

    fn end(&self, entries: &'seg [Entry]) -> Result<End<'seg, T>, ClaimError> {
        // Acquire: pairs with the Release CASes of the ends.
        let (head, tail) = (self.head.load(Ordering::Acquire), self.tail.load(Ordering::Acquire));
        if head.max(tail) >= MAX_POSITION || head.abs_diff(tail) > self.slots.len() as u64 {
            return Err(ClaimError::Corrupt { head, tail });
        }
        let me = RoleOwner::current().map_err(ClaimError::Identity)?;
        for entry in entries {
            if let Ok((claim, _)) = RoleClaim::claim(&entry[0], me) {
                // A dead predecessor's announcement is void: repairs ignore dead owners, and
                // we announce afresh. Relaxed: only we write it from now on.
                entry[1].store(0, Ordering::Relaxed);
                return Ok(End { queue: *self, entry, _role: claim, stuck: Cell::new((0, 0)) });
            }
        }
        Err(ClaimError::NoFreeEntry { max: entries.len() as u64 })
    }

    on_shared_memory! {
    fn view(
        segment: &'seg Segment,
        region: Region,
        capacity: u64,
        max_producers: u64,
        max_consumers: u64,
    ) -> Result<Self, QueueError> {
        let at = |relative: u64| region.offset.checked_add(relative).ok_or(LayoutError::Overflow);
        let word = |relative| -> Result<&'seg AtomicU64, QueueError> {
            Ok(segment.get(Offset::<AtomicU64>::new(at(relative)?))?)
        };
        let entries: &'seg [Entry] =
            segment.get_slice(Offset::new(at(ENTRIES_AT)?), max_producers + max_consumers)?;
        let (producers, consumers) = entries.split_at(max_producers as usize);
        let slots_at = Self::slots_at(max_producers + max_consumers);
        Ok(SharedMpmc {
            slots: segment.get_slice(Offset::new(at(slots_at)?), capacity)?,
            head: word(HEAD_AT)?,
            tail: word(TAIL_AT)?,
            producers,
            consumers,
            lost: word(LOST_AT)?,
            skipped: word(SKIPPED_AT)?,
            patience: DEFAULT_PATIENCE,
        })
    }
    }
}

fn check_participants(max_producers: u64, max_consumers: u64) -> Result<(), QueueError> {
    let valid = 1..=MAX_PARTICIPANTS;
    if !valid.contains(&max_producers) || !valid.contains(&max_consumers) {
        return Err(QueueError::Corrupt);
    }
    Ok(())
}

/// What both kinds of end hold: the queue, the entry and its role.
struct End<'seg, T> {
    queue: SharedMpmc<'seg, T>,
    entry: &'seg Entry,
    _role: RoleClaim<&'seg AtomicU64>,
    /// `(position, polls)`: how long the current position has looked stuck.
    stuck: Cell<(u64, u32)>,
}

impl<T> End<'_, T> {
    /// Counts a stuck poll at `position`; true once patience runs out (then starts over).
    fn out_of_patience(&self, position: u64) -> bool {
        let (at, polls) = self.stuck.get();
        let polls = if at == position { polls + 1 } else { 1 };
        let exhausted = polls >= self.queue.patience;
        self.stuck.set((position, if exhausted { 0 } else { polls }));
        exhausted
    }

    /// Whether no live participant in `entries` announces `position`.
    fn abandoned(entries: &[Entry], position: u64) -> bool {
        entries.iter().all(|entry| {
            // Acquire: pairs with the participant's announcement, made visible by our Acquire
            // load of the index its CAS moved (see the module docs).
            let announced = entry[1].load(Ordering::Acquire);
            // Acquire: the owner of that announcement.
            let owner = RoleOwner::from_raw(entry[0].load(Ordering::Acquire));
            announced != position + 1 || owner.is_none_or(|o| o.liveness() == Liveness::Dead)
        })
    }
}

impl<T> Participant<T> for End<'_, T> {
    #[inline(always)]
    fn announce(&self, position: u64) {
        // Relaxed: published by the Release CAS that follows (see the module docs).
        self.entry[1].store(position + 1, Ordering::Relaxed);
    }

    #[inline(always)]
    fn done(&self) {
        // Release: a repairer that reads the cleared word (Acquire) also sees our `seq` store
        // before it, so its repair CAS fails. With Relaxed, C11 (and a weakly ordered CPU)
        // allows the clear to show first and the repair to skip a slot we just filled. loom
        // cannot exhibit that reordering (it runs each thread's stores in program order), so
        // this rests on the C11 argument, not on a model.
        self.entry[1].store(0, Ordering::Release);
    }

    fn unstick_full(&self, ring: &Ring<'_, T>, position: u64) -> bool {
        let capacity = ring.capacity();
        if position < capacity || !self.out_of_patience(position) {
            return false;
        }
        let previous = position - capacity;
        // Acquire: pairs with the consumers' Release CAS on `head` (their announcements).
        if ring.head.load(Ordering::Acquire) <= previous {
            return false; // Really full: nobody claimed the previous lap's value yet.
        }
        let slot = ring.slot(position);
        // Acquire: as in `push`.
        let seq = slot.seq.load(Ordering::Acquire);
        if seq & !SKIP != previous + 1 || !Self::abandoned(self.queue.consumers, previous) {
            // Released meanwhile (the caller's next poll sees it), or a live consumer owns it.
            return false;
        }
        // AcqRel: one repairer wins; Release publishes the freed slot to producers.
        let won =
            slot.seq.compare_exchange(seq, position, Ordering::AcqRel, Ordering::Relaxed).is_ok();
        if won && seq & SKIP == 0 {
            // Relaxed: a counter.
            self.queue.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "shmlane_queue",
                position,
                "released an MPMC slot a dead consumer had claimed: its value is lost"
            );
        }
        true
    }

    fn unstick_empty(&self, ring: &Ring<'_, T>, position: u64) -> bool {
        if !self.out_of_patience(position) {
            return false;
        }
        // Acquire: pairs with the producers' Release CAS on `tail` (their announcements).
        let tail = ring.tail.load(Ordering::Acquire);
        if tail <= position {
            return false; // Really empty: nobody claimed this position.
        }
        if tail - position > ring.capacity() {
            // Corrupt: `seq <= position` means `head <= position`, and `tail - head` never
            // exceeds the capacity. Skipping on would run through up to 2^63 positions.
            return false;
        }
        let slot = ring.slot(position);
        // Acquire: as in `pop`.
        let seq = slot.seq.load(Ordering::Acquire);
        if seq != position || !Self::abandoned(self.queue.producers, position) {
            // Written meanwhile (the caller's next poll sees it), or a live producer owns it.
            return false;
        }
        // AcqRel: one repairer wins; Release publishes the skip mark to consumers.
        if slot
            .seq
            .compare_exchange(seq, (position + 1) | SKIP, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: a counter.
            self.queue.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "shmlane_queue",
                position,
                "skipped an MPMC slot a dead producer had claimed and never written"
            );
        }
        true
    }
}

/// A producing end of a [`SharedMpmc`]; its entry is released on drop.
pub struct MpmcProducer<'seg, T>(End<'seg, T>);

/// A consuming end of a [`SharedMpmc`]; its entry is released on drop.
pub struct MpmcConsumer<'seg, T>(End<'seg, T>);

impl<T: ZeroCopy + Copy> MpmcProducer<'_, T> {
    /// Pushes a value, or gives it back if the queue is full.
    pub fn try_push(&mut self, value: T) -> Result<(), T> {
        self.0.queue.ring().push(value, &self.0)
    }
}

impl<T: ZeroCopy + Copy> MpmcConsumer<'_, T> {
    /// Pops the oldest value available.
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        self.0.queue.ring().pop(&self.0).ok_or(PopError::Empty)
    }
}

impl<T> fmt::Debug for SharedMpmc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMpmc")
            .field("capacity", &self.slots.len())
            .field("producers", &self.producers.len())
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for MpmcProducer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcProducer").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for MpmcConsumer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcConsumer").finish_non_exhaustive()
    }
}
