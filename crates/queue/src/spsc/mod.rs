//! Single-producer single-consumer bounded queue.
//!
//! A ring of `capacity` (a power of two) slots. Positions are `u64` counters that never wrap
//! in practice (2^64 messages); position `p` lives in slot `p & (capacity - 1)`.
//!
//! ```text
//!   slot:  [ stamp: AtomicU64 | value: T ]       stamp == p + 1  <=>  slot holds position p
//!   head:  CachePadded<AtomicU64>                next position to pop   (written by the consumer)
//!   tail:  CachePadded<AtomicU64>                next position to push  (written by the producer)
//! ```
//!
//! Two ways for the consumer to learn what is ready, chosen by the storage
//! (`Storage::STAMPED`):
//!
//! - **Stamped** (in a segment): the producer, to push position `t`, writes the value, stores
//!   the slot's stamp `t + 1` (Release), then `tail = t + 1` (Release). The consumer, to pop
//!   position `h`, loads the stamp of slot `h` (Acquire); if it is `h + 1` the value is there:
//!   it reads it, then stores `head = h + 1` (Release). It never reads `tail` to pop: polling
//!   the slot it is about to read means one message moves one cache line from producer to
//!   consumer (FastForward, Vyukov), the lowest latency, and a producer killed between its
//!   stamp and its `tail` loses nothing. A stale stamp from an earlier lap is
//!   `h + 1 - k * capacity`, never `h + 1`, so stamps need no reset. `tail` serves `len` and
//!   `slots` only.
//! - **Indexed** (on the heap): no stamps. The producer writes the value, then `tail = t + 1`
//!   (Release); the consumer keeps `cached_tail` and loads `tail` (Acquire) only when it has
//!   caught up with it (Lamport's queue with cached indices, as rtrb). In a stream one load of
//!   `tail` reveals a batch, and the consumer never polls the line the producer is writing,
//!   which a caught-up stamped consumer does, stealing it once per value: between threads
//!   this moves 4-5× more values per second, for one more line transfer per message when the
//!   queue is idle.
//!
//! In both, the producer, to push position `t`: if `t - cached_head == capacity`, refreshes
//! `cached_head` from `head` (Acquire), and reports full if it still is.
//!
//! The producer owns `tail` and the consumer owns `head`: each keeps its own copy and never
//! trusts the shared one while running. The producer's `cached_head` is the rtrb technique:
//! `head` is read only when the cached value says full.
//!
//! In shared memory the other side may be corrupt: a `head` claiming more was consumed than
//! produced is reported (`PushError::Corrupt`), never used as an index; indices are always
//! masked.

mod heap;
on_shared_memory! {
    mod shared;
}

use std::fmt;
use std::marker::PhantomData;

pub use heap::{Heap, new, new_stamped};
on_shared_memory! {
    pub use shared::{Shared, SharedSpsc};

    pub use super::descriptor::{ClaimError, QueueError, ZeroCopy};
}

use std::mem::MaybeUninit;

pub use super::slot::Slot;
use super::slot::read_value;
use super::sync::{AtomicU64, Ordering, UnsafeCell};

/// A slot of an indexed ring: the value alone, so a cache line holds as many as fit (eight
/// `u64`s, where a stamped [`Slot`] holds four).
#[repr(transparent)]
pub struct Bare<T>(UnsafeCell<MaybeUninit<T>>);

// SAFETY: as for `Slot`: the ring's protocol (here `head` and `tail`, with Acquire/Release)
// gives the value to one end at a time, so values move between threads but are never shared.
unsafe impl<T: Send> Sync for Bare<T> {}

impl<T> fmt::Debug for Bare<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bare").finish_non_exhaustive()
    }
}

// The crate's `UnsafeCell` in the sealed trait's signature: nameable by nobody outside.
#[allow(private_interfaces)]
impl<T> RingSlot<T> for Slot<T> {
    const STAMPED: bool = true;

    fn empty() -> Self {
        Slot::new(0)
    }

    #[inline(always)]
    fn value(&self) -> &UnsafeCell<MaybeUninit<T>> {
        &self.value
    }

    #[inline(always)]
    fn stamp(&self) -> Option<&AtomicU64> {
        Some(&self.seq)
    }

    #[inline(always)]
    unsafe fn read(&self) -> T {
        // SAFETY: the caller's contract is `read_value`'s.
        self.value.with(|p| unsafe { read_value(p) })
    }
}

#[allow(private_interfaces)]
impl<T> RingSlot<T> for Bare<T> {
    const STAMPED: bool = false;

    fn empty() -> Self {
        Bare(UnsafeCell::new(MaybeUninit::uninit()))
    }

    #[inline(always)]
    fn value(&self) -> &UnsafeCell<MaybeUninit<T>> {
        &self.0
    }

    #[inline(always)]
    fn stamp(&self) -> Option<&AtomicU64> {
        None
    }

    #[inline(always)]
    unsafe fn read(&self) -> T {
        // SAFETY: the caller's contract: a written value the protocol gives us; only this
        // process's threads reach a heap ring, so the value cannot change under the read.
        self.0.with(|p| unsafe { (*p).assume_init_read() })
    }
}

/// The shared words of a ring, wherever they live.
#[derive(Debug)]
pub struct Ring<'a, T, L = Slot<T>> {
    slots: &'a [L],
    head: &'a AtomicU64,
    tail: &'a AtomicU64,
    _values: PhantomData<T>,
}

impl<'a, T, L: RingSlot<T>> Ring<'a, T, L> {
    /// The ring over `slots` (a power of two of them) and the two indices.
    fn new(slots: &'a [L], head: &'a AtomicU64, tail: &'a AtomicU64) -> Self {
        Ring { slots, head, tail, _values: PhantomData }
    }

    fn capacity(&self) -> u64 {
        self.slots.len() as u64
    }

    #[inline(always)]
    fn slot(&self, position: u64) -> &L {
        // Masked: in bounds whatever `position` is (capacity is a power of two).
        &self.slots[(position & (self.capacity() - 1)) as usize]
    }

    /// The slots of positions `from..from + count` (`count` at most the capacity), as the
    /// two runs of consecutive slots they occupy (the second empty unless they wrap), so a
    /// batch is copied run by run.
    #[inline(always)]
    fn runs(&self, from: u64, count: usize) -> [&[L]; 2] {
        let start = (from & (self.capacity() - 1)) as usize;
        let count = count.min(self.slots.len());
        let (wrapped, tail) = self.slots.split_at(start);
        let first = count.min(tail.len());
        [&tail[..first], &wrapped[..count - first]]
    }
}

mod sealed {
    /// Where a ring's slots and indices live: the heap or a segment.
    pub trait Storage<T> {
        /// Its slots: stamped or bare.
        type Slot: super::RingSlot<T>;
        /// Whether the consumer polls per-slot stamps (true) or the producer's `tail` (false):
        /// see the module documentation.
        const STAMPED: bool = <Self::Slot as super::RingSlot<T>>::STAMPED;
        /// The shared words.
        fn ring(&self) -> super::Ring<'_, T, Self::Slot>;
    }

    /// The slot kinds of a ring: stamped ([`Slot`](super::Slot)) or bare
    /// ([`Bare`](super::Bare)).
    // Sealed (this module is private), so the crate's `UnsafeCell` never reaches a user.
    #[allow(private_interfaces)]
    pub trait RingSlot<T> {
        /// Whether the consumer polls stamps (see the module documentation).
        const STAMPED: bool;
        /// An empty slot.
        fn empty() -> Self;
        /// The value's cell.
        fn value(&self) -> &super::UnsafeCell<super::MaybeUninit<T>>;
        /// The stamp, if the slot has one.
        fn stamp(&self) -> Option<&super::AtomicU64>;
        /// A copy of the value: one volatile copy in a stamped slot (a segment's, which a
        /// peer may be writing: see `read_value`), a plain read in a bare one (the heap's,
        /// which the compiler may then batch).
        ///
        /// # Safety
        /// The ring's protocol gives the slot's written value to the caller now.
        unsafe fn read(&self) -> T;
    }
}
use sealed::{RingSlot, Storage};

/// Why a push did not happen; the value comes back.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError<T> {
    /// The queue is full: pop on the other side, or retry.
    #[error("the queue is full")]
    Full(T),
    /// The consumer's shared index is impossible (shared memory corrupted by a peer).
    #[error("the consumer's index is corrupt: recreate the queue")]
    Corrupt(T),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(value) | PushError::Corrupt(value) => value,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Corrupt(_) => "Corrupt(..)",
        })
    }
}

/// Why a pop returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// Nothing to pop yet.
    #[error("the queue is empty")]
    Empty,
}

/// The producing end.
pub struct Producer<T, S: Storage<T> = Heap<T>> {
    storage: S,
    /// Next position to push; ours alone.
    tail: u64,
    /// Last `head` seen; refreshed only when the queue looks full.
    cached_head: u64,
    _values: PhantomData<T>,
}

/// The consuming end.
pub struct Consumer<T, S: Storage<T> = Heap<T>> {
    storage: S,
    /// Next position to pop; ours alone.
    head: u64,
    /// Last `tail` seen (indexed storage only); refreshed only when `head` reaches it.
    cached_tail: u64,
    _values: PhantomData<T>,
}

impl<T, S: Storage<T>> Producer<T, S> {
    fn start(storage: S, tail: u64, head: u64) -> Self {
        Producer { storage, tail, cached_head: head, _values: PhantomData }
    }

    /// Pushes a value, or gives it back if the queue is full.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), PushError<T>> {
        match self.reserve(1) {
            Ok(0) => return Err(PushError::Full(value)),
            Ok(_) => {}
            Err(()) => return Err(PushError::Corrupt(value)),
        }
        let ring = self.storage.ring();
        let slot = ring.slot(self.tail);
        slot.value().with_mut(|p| {
            // SAFETY: `reserve` proved the slot free: the consumer's Release store of a head
            // beyond this slot's previous position happened before our Acquire load of it.
            unsafe { (*p).write(value) };
        });
        if let Some(stamp) = slot.stamp() {
            // Release: publishes the value; pairs with the consumer's Acquire load of the stamp.
            stamp.store(self.tail + 1, Ordering::Release);
            shmlane_segment::crash_point!("queue.spsc.push.stamped");
        }
        self.tail += 1;
        // Release: pairs with the Acquire loads of `tail` in `len`/`slots`, and (indexed) with
        // the consumer's, which publish the value to it.
        ring.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Free slots, refreshing the view of the consumer's progress.
    pub fn slots(&mut self) -> usize {
        self.reserve(usize::MAX).unwrap_or(0)
    }

    /// Whether no slot is free.
    pub fn is_full(&mut self) -> bool {
        self.slots() == 0
    }

    /// Values in the queue, as far as the producer can tell (a snapshot).
    pub fn len(&mut self) -> usize {
        self.capacity() - self.slots()
    }

    /// Whether the queue looks empty from the producer's side (a snapshot).
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.storage.ring().slots.len()
    }

    /// Returns how many of `wanted` slots are free (refreshing the cached head only if the
    /// cached view has fewer), or `Err` if the consumer's shared head is impossible.
    #[inline]
    fn reserve(&mut self, wanted: usize) -> Result<usize, ()> {
        let capacity = self.storage.ring().capacity();
        let free = capacity - self.tail.wrapping_sub(self.cached_head).min(capacity);
        if free >= wanted as u64 {
            return Ok(free as usize);
        }
        // Acquire: pairs with the consumer's Release store of `head`, so its reads of the slots
        // it consumed happen before we overwrite them.
        let head = self.storage.ring().head.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > capacity {
            return Err(());
        }
        self.cached_head = head;
        Ok((capacity - used) as usize)
    }
}

impl<T: Copy, S: Storage<T>> Producer<T, S> {
    /// Pushes as many leading items of `items` as fit, committing them with one `tail` store;
    /// returns how many were pushed.
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        let count = self.reserve(items.len()).unwrap_or(0).min(items.len());
        let ring = self.storage.ring();
        let (mut items, mut position) = (&items[..count], self.tail);
        for run in ring.runs(self.tail, count) {
            let (now, rest) = items.split_at(run.len());
            for (slot, item) in run.iter().zip(now) {
                slot.value().with_mut(|p| {
                    // SAFETY: `reserve` proved `count` slots from `tail` free, as in
                    // `try_push`.
                    unsafe { (*p).write(*item) };
                });
                if let Some(stamp) = slot.stamp() {
                    // Release: publishes this value; pairs with the consumer's Acquire stamp
                    // load.
                    stamp.store(position + 1, Ordering::Release);
                    shmlane_segment::crash_point!("queue.spsc.push_slice.stamped");
                }
                position += 1;
            }
            items = rest;
        }
        self.tail += count as u64;
        // Release: pairs with the Acquire loads of `tail` in `len`/`slots`, and (indexed) with
        // the consumer's, which publish the whole batch to it.
        ring.tail.store(self.tail, Ordering::Release);
        count
    }
}

impl<T, S: Storage<T>> Consumer<T, S> {
    fn start(storage: S, head: u64) -> Self {
        Consumer { storage, head, cached_tail: head, _values: PhantomData }
    }

    /// Pops the oldest value.
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        let ring = self.storage.ring();
        let ready = if S::STAMPED {
            Self::ready(&ring, self.head)
        } else {
            Self::indexed_ready(self.head, &mut self.cached_tail, &ring, 1) == 1
        };
        if !ready {
            return Err(PopError::Empty);
        }
        // SAFETY: the stamp or `tail` (Acquire, above) says the producer wrote this position's
        // value, and it will not overwrite it before our Release store of a head beyond it
        // (below).
        let value = unsafe { ring.slot(self.head).read() };
        shmlane_segment::crash_point!("queue.spsc.pop.read");
        self.head += 1;
        // Release: pairs with the producer's Acquire load of `head`: our read of the slot
        // happens before its next write there.
        ring.head.store(self.head, Ordering::Release);
        Ok(value)
    }

    /// Values ready to pop (a snapshot).
    pub fn slots(&self) -> usize {
        let ring = self.storage.ring();
        // Acquire: pairs with the producer's Release store of `tail`. Saturating: we may have
        // popped a stamped slot before the producer stored `tail`. Clamped: a corrupt tail in
        // shared memory must not claim more than the ring holds.
        let tail = ring.tail.load(Ordering::Acquire);
        tail.saturating_sub(self.head).min(ring.capacity()) as usize
    }

    /// Values ready to pop (a snapshot); the same as [`slots`](Self::slots).
    pub fn len(&self) -> usize {
        self.slots()
    }

    /// Whether nothing is ready to pop.
    pub fn is_empty(&self) -> bool {
        !self.peek_ready(&self.storage.ring())
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.storage.ring().slots.len()
    }

    /// Whether `position`'s value is in its slot (stamped storage; Acquire, as in `try_pop`).
    #[inline(always)]
    fn ready(ring: &Ring<'_, T, S::Slot>, position: u64) -> bool {
        // Acquire: pairs with the producer's Release stamp store. (A bare slot has no stamp:
        // never asked, as only stamped storage calls this.)
        ring.slot(position).stamp().is_some_and(|s| s.load(Ordering::Acquire) == position + 1)
    }

    /// How many of the next `wanted` positions are ready (indexed storage), loading `tail`
    /// only if `cached_tail` shows fewer.
    /// (`head` and `cached_tail` are the consumer's, passed apart from the borrowed ring.)
    #[inline(always)]
    fn indexed_ready(
        head: u64,
        cached_tail: &mut u64,
        ring: &Ring<'_, T, S::Slot>,
        wanted: u64,
    ) -> u64 {
        if cached_tail.wrapping_sub(head) >= wanted {
            return wanted;
        }
        // Acquire: pairs with the producer's Release store of `tail`, which it made after
        // writing every value below it. Clamped: a heap producer never gets ahead by more than
        // the ring, but the count must not exceed it whatever the word says.
        *cached_tail = ring.tail.load(Ordering::Acquire);
        cached_tail.wrapping_sub(head).min(ring.capacity()).min(wanted)
    }

    /// Whether the value at `head` is ready, for `&self`: loads `tail` without caching it.
    fn peek_ready(&self, ring: &Ring<'_, T, S::Slot>) -> bool {
        if S::STAMPED {
            Self::ready(ring, self.head)
        } else {
            // Acquire: pairs with the producer's Release store of `tail`, as above.
            self.cached_tail != self.head || ring.tail.load(Ordering::Acquire) != self.head
        }
    }
}

impl<T: Copy, S: Storage<T>> Consumer<T, S> {
    /// Pops up to `out.len()` values in order, committing them with one `head` store; returns
    /// how many were popped. Indexed: what `cached_tail` (or one load of `tail`) shows. Stamped,
    /// it never trusts the producer's `tail`: the producer stamps slots in position order, each
    /// with Release, so when the stamp of the last wanted position is there (Acquire), every
    /// earlier value is too: one stamp load per batch. Otherwise it checks stamps one by one
    /// up to the first missing.
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize {
        let ring = self.storage.ring();
        let wanted = (out.len() as u64).min(ring.capacity());
        let count = if !S::STAMPED {
            Self::indexed_ready(self.head, &mut self.cached_tail, &ring, wanted)
        } else if wanted > 0 && Self::ready(&ring, self.head + wanted - 1) {
            wanted
        } else {
            (0..wanted).take_while(|&i| Self::ready(&ring, self.head + i)).count() as u64
        };
        let mut out = &mut out[..count as usize];
        for run in ring.runs(self.head, count as usize) {
            let (now, rest) = out.split_at_mut(run.len());
            for (out, slot) in now.iter_mut().zip(run) {
                // SAFETY: the stamp of this position or of a later one, or `tail` (Acquire),
                // says its value is written, and the producer cannot reuse the slot before our
                // head store below.
                *out = unsafe { slot.read() };
            }
            out = rest;
        }
        if count > 0 {
            self.head += count;
            // Release: pairs with the producer's Acquire load of `head`, as in `try_pop`.
            ring.head.store(self.head, Ordering::Release);
        }
        count as usize
    }

    /// A copy of the oldest value, without popping it.
    pub fn peek_copy(&self) -> Result<T, PopError> {
        let ring = self.storage.ring();
        if !self.peek_ready(&ring) {
            return Err(PopError::Empty);
        }
        // SAFETY: written (stamp or `tail` checked) and not reusable before our next head
        // store.
        Ok(unsafe { ring.slot(self.head).read() })
    }
}

impl<T, S: Storage<T>> fmt::Debug for Producer<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").field("tail", &self.tail).finish_non_exhaustive()
    }
}

impl<T, S: Storage<T>> fmt::Debug for Consumer<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("head", &self.head).finish_non_exhaustive()
    }
}
