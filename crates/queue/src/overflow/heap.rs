//! The overflowing ring on the heap, between threads of one process (and under loom).

use std::fmt;

use crossbeam_utils::CachePadded;

use super::super::sync::{Arc, AtomicU64};
use super::{Consumer, Producer, Ring, Storage, stride_for};

/// Heap storage shared by one producer and one consumer.
pub struct Heap(Arc<HeapRing>);

struct HeapRing {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    seen: CachePadded<AtomicU64>,
    words: Box<[AtomicU64]>,
    shift: u32,
}

impl Storage for Heap {
    #[inline(always)]
    fn ring(&self) -> Ring<'_> {
        let ring = &self.0;
        let (head, tail, seen) = (&ring.head, &ring.tail, &ring.seen);
        Ring { words: &ring.words, shift: ring.shift, head, tail, seen }
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let capacity = self.0.words.len() >> self.0.shift;
        f.debug_struct("Heap").field("capacity", &capacity).finish()
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
    new_strided(capacity, stride_for(super::LINE_WORDS))
}

/// [`new`] with slots of `stride` words (2, 4 or 8, [`stride_for`](super::stride_for); others
/// are rounded up to one of these): an inline entry keeps `stride - 1` words.
pub fn new_strided(capacity: usize, stride: usize) -> (Producer<Heap>, Consumer<Heap>) {
    let capacity = capacity.max(1).next_power_of_two();
    let stride = stride_for(stride.saturating_sub(1));
    let ring = Arc::new(HeapRing {
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        seen: CachePadded::new(AtomicU64::new(0)),
        words: (0..capacity * stride).map(|_| AtomicU64::new(0)).collect(),
        shift: stride.trailing_zeros(),
    });
    (Producer::start(Heap(ring.clone()), 0, 0), Consumer::start(Heap(ring)))
}
