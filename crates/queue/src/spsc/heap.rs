//! The SPSC ring on the heap, for any `T: Send`, between threads of one process.

use std::fmt;

use crossbeam_utils::CachePadded;

use super::super::sync::{Arc, AtomicU64, Ordering};
use super::{Bare, Consumer, PopError, Producer, Ring, RingSlot, Slot, Storage};

/// Heap storage shared by one producer and one consumer. Its slot kind `L` chooses how the
/// consumer learns what is ready (see the [module documentation](super)): [`Bare`], indexed
/// (what [`new`] gives), or [`Slot`], stamped as in a segment ([`new_stamped`], to measure or
/// model the stamped protocol between threads).
pub struct Heap<T, L: RingSlot<T> = Bare<T>>(Arc<HeapRing<T, L>>);

struct HeapRing<T, L: RingSlot<T>> {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    /// The ring's slots, `start..start + capacity` of `allocated`: the ring starts on a
    /// 128-byte boundary (a line pair), when the slot size allows, so no line of it is shared
    /// with another allocation.
    allocated: Box<[L]>,
    start: usize,
    capacity: usize,
    _values: std::marker::PhantomData<T>,
}

impl<T, L: RingSlot<T>> Storage<T> for Heap<T, L> {
    type Slot = L;

    #[inline(always)]
    fn ring(&self) -> Ring<'_, T, L> {
        Ring::new(self.0.slots(), &self.0.head, &self.0.tail)
    }
}

impl<T, L: RingSlot<T>> fmt::Debug for Heap<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap").field("capacity", &self.0.capacity).finish()
    }
}

/// Creates a queue of at least `capacity` slots (rounded up to a power of two, at least 1).
///
/// ```
/// let (mut producer, mut consumer) = shmlane_queue::spsc::new::<u64>(4);
/// producer.try_push(7).unwrap();
/// assert_eq!(consumer.try_pop(), Ok(7));
/// ```
pub fn new<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    with_storage(capacity)
}

/// [`new`] with the stamped protocol of a segment's queue: one line per message when idle, but
/// a caught-up consumer polls the line the producer is writing. For measurements and models.
#[doc(hidden)]
pub fn new_stamped<T: Send>(capacity: usize) -> Ends<T, Slot<T>> {
    with_storage(capacity)
}

/// The two ends of a heap ring of slot kind `L`.
pub type Ends<T, L> = (Producer<T, Heap<T, L>>, Consumer<T, Heap<T, L>>);

fn with_storage<T: Send, L: RingSlot<T>>(capacity: usize) -> Ends<T, L> {
    let capacity = capacity.max(1).next_power_of_two();
    // Up to 128 bytes of spare slots on each side of the ring, to start it on a 128-byte
    // boundary and keep other allocations off its first and last lines.
    let size = size_of::<L>();
    let spare = if size > 0 && 128usize.is_multiple_of(size) { 128 / size } else { 0 };
    let allocated: Box<[L]> = (0..capacity + 2 * spare).map(|_| L::empty()).collect();
    let misaligned = (allocated.as_ptr() as usize) % 128;
    let start = match misaligned {
        0 => 0,
        _ if spare > 0 && (128 - misaligned).is_multiple_of(size) => (128 - misaligned) / size,
        // Slots that cannot land on the boundary: the spare slots after still keep the
        // neighbours off the last line.
        _ => 0,
    };
    let ring = Arc::new(HeapRing {
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        allocated,
        start,
        capacity,
        _values: std::marker::PhantomData,
    });
    (Producer::start(Heap(ring.clone()), 0, 0), Consumer::start(Heap(ring), 0))
}

impl<T, L: RingSlot<T>> Consumer<T, Heap<T, L>> {
    /// The oldest value, without popping it.
    pub fn peek(&self) -> Result<&T, PopError> {
        let ring = self.storage.ring();
        if !self.peek_ready(&ring) {
            return Err(PopError::Empty);
        }
        Ok(ring.slot(self.head).value().with(|p| {
            // SAFETY: initialised (stamp or `tail` checked with Acquire), and it stays in place until
            // this consumer pops it, which needs the `&mut self` our borrow excludes.
            unsafe { (*p).assume_init_ref() }
        }))
    }
}

impl<T, L: RingSlot<T>> HeapRing<T, L> {
    fn slots(&self) -> &[L] {
        &self.allocated[self.start..self.start + self.capacity]
    }
}

impl<T, L: RingSlot<T>> Drop for HeapRing<T, L> {
    fn drop(&mut self) {
        // Both ends are gone (this is the last `Arc`): drop what was pushed and never popped.
        // Relaxed: the `Arc` drop synchronised with both ends' last operations.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mask = self.capacity as u64 - 1;
        let slots = &self.allocated[self.start..self.start + self.capacity];
        for position in head..tail {
            slots[(position & mask) as usize].value().with_mut(|p| {
                // SAFETY: positions in head..tail were pushed and not popped, so initialised,
                // and nobody else can access them any more.
                unsafe { (*p).assume_init_drop() }
            });
        }
    }
}
