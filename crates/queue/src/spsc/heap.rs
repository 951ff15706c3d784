//! The SPSC ring on the heap, for any `T: Send`, between threads of one process.

use std::fmt;

use crossbeam_utils::CachePadded;

use super::super::sync::{Arc, AtomicU64, Ordering};
use super::{Consumer, PopError, Producer, Ring, Slot, Storage};

/// Heap storage shared by one producer and one consumer.
pub struct Heap<T>(Arc<HeapRing<T>>);

struct HeapRing<T> {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    slots: Box<[Slot<T>]>,
}

impl<T> Storage<T> for Heap<T> {
    #[inline(always)]
    fn ring(&self) -> Ring<'_, T> {
        Ring { slots: &self.0.slots, head: &self.0.head, tail: &self.0.tail }
    }
}

impl<T> fmt::Debug for Heap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap").field("capacity", &self.0.slots.len()).finish()
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
    let capacity = capacity.max(1).next_power_of_two();
    let ring = Arc::new(HeapRing {
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        slots: (0..capacity).map(|_| Slot::new(0)).collect(),
    });
    (Producer::start(Heap(ring.clone()), 0, 0), Consumer::start(Heap(ring), 0))
}

impl<T> Consumer<T, Heap<T>> {
    /// The oldest value, without popping it.
    pub fn peek(&self) -> Result<&T, PopError> {
        let ring = self.storage.ring();
        if !Self::ready(&ring, self.head) {
            return Err(PopError::Empty);
        }
        Ok(ring.slot(self.head).value.with(|p| {
            // SAFETY: initialised (stamp checked with Acquire), and it stays in place until
            // this consumer pops it, which needs the `&mut self` our borrow excludes.
            unsafe { (*p).assume_init_ref() }
        }))
    }
}

impl<T> Drop for HeapRing<T> {
    fn drop(&mut self) {
        // Both ends are gone (this is the last `Arc`): drop what was pushed and never popped.
        // Relaxed: the `Arc` drop synchronised with both ends' last operations.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mask = self.slots.len() as u64 - 1;
        for position in head..tail {
            self.slots[(position & mask) as usize].value.with_mut(|p| {
                // SAFETY: positions in head..tail were pushed and not popped, so initialised,
                // and nobody else can access them any more.
                unsafe { (*p).assume_init_drop() }
            });
        }
    }
}
