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
//! Producer, to push position `t`: if `t - cached_head == capacity`, refresh `cached_head` from
//! `head` (Acquire), and report full if it still is. Write the value, store the slot's stamp
//! `t + 1` (Release), then `tail = t + 1` (Release).
//!
//! Consumer, to pop position `h`: load the stamp of slot `h` (Acquire); if it is `h + 1` the
//! value is there: read it, then store `head = h + 1` (Release). The consumer never reads
//! `tail` to pop: polling the slot it is about to read means one message moves one cache line
//! from producer to consumer (FastForward, Vyukov). A stale stamp from an earlier lap is
//! `h + 1 - k * capacity`, never `h + 1`, so stamps need no reset. `tail` serves `len` and
//! `slots` only.
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

pub use heap::{Heap, new};
on_shared_memory! {
    pub use shared::{Shared, SharedSpsc};

    pub use super::descriptor::{ClaimError, QueueError, ZeroCopy};
}

pub use super::slot::Slot;
use super::slot::read_value;
use super::sync::{AtomicU64, Ordering};

/// The shared words of a ring, wherever they live.
#[derive(Debug)]
pub struct Ring<'a, T> {
    slots: &'a [Slot<T>],
    head: &'a AtomicU64,
    tail: &'a AtomicU64,
}

impl<T> Ring<'_, T> {
    fn capacity(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, position: u64) -> &Slot<T> {
        // Masked: in bounds whatever `position` is (capacity is a power of two).
        &self.slots[(position & (self.capacity() - 1)) as usize]
    }
}

mod sealed {
    /// Where a ring's slots and indices live: the heap or a segment.
    pub trait Storage<T> {
        /// The shared words.
        fn ring(&self) -> super::Ring<'_, T>;
    }
}
use sealed::Storage;

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
        slot.value.with_mut(|p| {
            // SAFETY: `reserve` proved the slot free: the consumer's Release store of a head
            // beyond this slot's previous position happened before our Acquire load of it.
            unsafe { (*p).write(value) };
        });
        // Release: publishes the value; pairs with the consumer's Acquire load of the stamp.
        slot.seq.store(self.tail + 1, Ordering::Release);
        shmlane_segment::crash_point!("queue.spsc.push.stamped");
        self.tail += 1;
        // Release: pairs with the Acquire loads of `tail` in `len`/`slots`.
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
        for (i, item) in items[..count].iter().enumerate() {
            let position = self.tail + i as u64;
            let slot = ring.slot(position);
            slot.value.with_mut(|p| {
                // SAFETY: `reserve` proved `count` slots from `tail` free, as in `try_push`.
                unsafe { (*p).write(*item) };
            });
            // Release: publishes this value; pairs with the consumer's Acquire stamp load.
            slot.seq.store(position + 1, Ordering::Release);
            shmlane_segment::crash_point!("queue.spsc.push_slice.stamped");
        }
        self.tail += count as u64;
        // Release: pairs with the Acquire loads of `tail` in `len`/`slots`.
        ring.tail.store(self.tail, Ordering::Release);
        count
    }
}

impl<T, S: Storage<T>> Consumer<T, S> {
    fn start(storage: S, head: u64) -> Self {
        Consumer { storage, head, _values: PhantomData }
    }

    /// Pops the oldest value.
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        let ring = self.storage.ring();
        let slot = ring.slot(self.head);
        // Acquire: pairs with the producer's Release store of the stamp, making the value
        // written before it visible.
        if slot.seq.load(Ordering::Acquire) != self.head + 1 {
            return Err(PopError::Empty);
        }
        let value = slot.value.with(|p| {
            // SAFETY: the stamp says the producer wrote this position's value, and it will not
            // overwrite it before our Release store of a head beyond it (below).
            unsafe { read_value(p) }
        });
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
        let ring = self.storage.ring();
        // Acquire: pairs with the producer's Release stamp store, as in `try_pop`.
        ring.slot(self.head).seq.load(Ordering::Acquire) != self.head + 1
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.storage.ring().slots.len()
    }

    /// Whether `position`'s value is in its slot (Acquire, as in `try_pop`).
    fn ready(ring: &Ring<'_, T>, position: u64) -> bool {
        // Acquire: pairs with the producer's Release stamp store.
        ring.slot(position).seq.load(Ordering::Acquire) == position + 1
    }
}

impl<T: Copy, S: Storage<T>> Consumer<T, S> {
    /// Pops up to `out.len()` values in order, committing them with one `head` store; returns
    /// how many were popped. It never trusts the producer's `tail`: the producer stamps slots
    /// in position order, each with Release, so when the stamp of the last wanted position is
    /// there (Acquire), every earlier value is too: one stamp load per batch. Otherwise it
    /// checks stamps one by one up to the first missing.
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize {
        let ring = self.storage.ring();
        let wanted = (out.len() as u64).min(ring.capacity());
        let count = if wanted > 0 && Self::ready(&ring, self.head + wanted - 1) {
            wanted
        } else {
            (0..wanted).take_while(|&i| Self::ready(&ring, self.head + i)).count() as u64
        };
        for (i, out) in out[..count as usize].iter_mut().enumerate() {
            *out = ring.slot(self.head + i as u64).value.with(|p| {
                // SAFETY: the stamp of this position, or of a later one (Acquire), says its
                // value is written, and the producer cannot reuse the slot before our head
                // store below.
                unsafe { read_value(p) }
            });
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
        if !Self::ready(&ring, self.head) {
            return Err(PopError::Empty);
        }
        Ok(ring.slot(self.head).value.with(|p| {
            // SAFETY: written (stamp checked) and not reusable before our next head store.
            unsafe { read_value(p) }
        }))
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
