//! The overflowing ring on the heap, between threads of one process (and under loom).

use std::fmt;

use crossbeam_utils::CachePadded;

use super::super::sync::{Arc, AtomicU64};
use super::{Consumer, IndexSlot, Producer, Ring, Storage};

/// Heap storage shared by one producer and one consumer.
pub struct Heap(Arc<HeapRing>);

struct HeapRing {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    seen: CachePadded<AtomicU64>,
    slots: Box<[IndexSlot]>,
}

impl Storage for Heap {
    #[inline(always)]
    fn ring(&self) -> Ring<'_> {
        Ring { slots: &self.0.slots, head: &self.0.head, tail: &self.0.tail, seen: &self.0.seen }
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap").field("capacity", &self.0.slots.len()).finish()
    }
}

/// Creates a queue of at least `capacity` slots (rounded up to a power of two, at least 1).
///
/// ```
/// let (mut producer, mut consumer) = shmlane_queue::overflow::new(2);
/// assert_eq!(producer.push(1), Ok(None));
/// assert_eq!(producer.push(2), Ok(None));
/// assert_eq!(producer.push(3), Ok(Some(1))); // full: the oldest comes back
/// assert_eq!(consumer.pop(), Some(2));
/// ```
pub fn new(capacity: usize) -> (Producer<Heap>, Consumer<Heap>) {
    let capacity = capacity.max(1).next_power_of_two();
    let ring = Arc::new(HeapRing {
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        seen: CachePadded::new(AtomicU64::new(0)),
        slots: (0..capacity).map(|_| IndexSlot::empty()).collect(),
    });
    (Producer::start(Heap(ring.clone()), 0, 0), Consumer::start(Heap(ring)))
}
