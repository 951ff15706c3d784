//! Multi-producer multi-consumer bounded queue (Vyukov's array queue, as crossbeam's
//! `ArrayQueue`), on the heap.
//!
//! A ring of `capacity` (a power of two) slots, each with a sequence word; `tail` and `head`
//! are shared position counters on their own cache lines. For position `p` in slot
//! `p & (capacity - 1)`:
//!
//! ```text
//!   seq == p                 free: a producer at position p may write it
//!   seq == p + 1             full: a consumer at position p may read it
//!   seq == p + capacity      free again, for the producer one lap later
//! ```
//!
//! The capacity is at least 2, or the last two states would coincide (loom found this).
//!
//! A producer reads `tail = p` and the slot's `seq` (Acquire). If `seq == p` it claims the
//! position with a CAS on `tail`, writes the value and stores `seq = p + 1` (Release). If
//! `seq < p` the slot still holds the previous lap's value: the queue is full. Otherwise another
//! producer got there first: reload `tail` and retry. Consumers mirror this on `head`, storing
//! `seq = p + capacity` after reading. The CASes on `tail`/`head` only hand out positions; the
//! data is handed over by the slot's `seq` (Release/Acquire), so the CASes are Relaxed.
//!
//! Progress: lock-free for claiming positions, but a producer (consumer) that stops between
//! its CAS and its `seq` store blocks consumers (producers) at that position until it
//! resumes: with threads that is a preempted thread, which resumes. A killed process would
//! never resume, which is why the shared-memory variant (not built yet) needs recovery.

use std::fmt;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering, UnsafeCell};

struct Slot<T> {
    seq: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded MPMC queue; share it with `Arc`.
///
/// ```
/// let queue = shmlane_queue::mpmc::Queue::<u32>::new(4);
/// queue.try_push(1).unwrap();
/// assert_eq!(queue.try_pop(), Some(1));
/// assert_eq!(queue.try_pop(), None);
/// ```
pub struct Queue<T> {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    slots: Box<[Slot<T>]>,
}

// SAFETY: a slot's value is accessed only by the one producer or consumer that claimed its
// position (by CAS) and found the matching `seq` (Acquire), so values move between threads but
// are never shared: `T: Send` suffices for both.
unsafe impl<T: Send> Sync for Queue<T> {}
// SAFETY: as above; the queue owns its values.
unsafe impl<T: Send> Send for Queue<T> {}

impl<T> Queue<T> {
    /// A queue of at least `capacity` slots (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize) -> Self {
        // At least 2: with one slot, "full for p" (p + 1) and "free for p + 1" (p + capacity)
        // would be the same sequence value, and a producer could overwrite an unread value.
        let capacity = capacity.max(2).next_power_of_two();
        Queue {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            slots: (0..capacity as u64)
                .map(|i| Slot {
                    seq: AtomicU64::new(i),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
        }
    }

    fn slot(&self, position: u64) -> &Slot<T> {
        &self.slots[(position & (self.slots.len() as u64 - 1)) as usize]
    }

    /// Pushes a value, or gives it back if the queue is full.
    pub fn try_push(&self, value: T) -> Result<(), T> {
        // Relaxed: only a guess at the next position; the slot's `seq` decides.
        let mut position = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(position);
            // Acquire: pairs with the consumer's Release store of `seq = p + capacity`, so its
            // read of the previous value happens before our write.
            let seq = slot.seq.load(Ordering::Acquire);
            let lag = seq.wrapping_sub(position) as i64;
            if lag == 0 {
                // Relaxed: the CAS only hands out the position (see module docs).
                match self.tail.compare_exchange_weak(
                    position,
                    position + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.value.with_mut(|p| {
                            // SAFETY: we claimed `position` and its slot is free (seq == p):
                            // no one else accesses the value until our `seq` store.
                            unsafe { (*p).write(value) };
                        });
                        // Release: publishes the value; pairs with the consumer's Acquire.
                        slot.seq.store(position + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => position = current,
                }
            } else if lag < 0 {
                return Err(value);
            } else {
                // Relaxed: as above.
                position = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the oldest value, if any.
    pub fn try_pop(&self) -> Option<T> {
        // Relaxed: only a guess at the next position; the slot's `seq` decides.
        let mut position = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(position);
            // Acquire: pairs with the producer's Release store of `seq = p + 1`.
            let seq = slot.seq.load(Ordering::Acquire);
            let lag = seq.wrapping_sub(position + 1) as i64;
            if lag == 0 {
                // Relaxed: the CAS only hands out the position.
                match self.head.compare_exchange_weak(
                    position,
                    position + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let value = slot.value.with(|p| {
                            // SAFETY: we claimed `position` and its value is written (seq ==
                            // p + 1); no producer reuses the slot before our `seq` store.
                            unsafe { (*p).assume_init_read() }
                        });
                        // Release: pairs with the next lap's producer Acquire load.
                        slot.seq.store(position + self.slots.len() as u64, Ordering::Release);
                        return Some(value);
                    }
                    Err(current) => position = current,
                }
            } else if lag < 0 {
                return None;
            } else {
                // Relaxed: as above.
                position = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Values in the queue (a snapshot; racy under concurrent use).
    pub fn len(&self) -> usize {
        loop {
            // SeqCst: one total order for the three loads, so `head` is read at an instant when
            // `tail` had this value (as crossbeam's `ArrayQueue::len`).
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                return tail.wrapping_sub(head).min(self.slots.len() as u64) as usize;
            }
        }
    }

    /// Whether the queue is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() == self.slots.len()
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` means every other access happened before.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        for position in head..tail {
            self.slot(position).value.with_mut(|p| {
                // SAFETY: positions in head..tail were pushed and not popped (no operation is
                // in flight: we hold `&mut self`).
                unsafe { (*p).assume_init_drop() }
            });
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("capacity", &self.slots.len()).finish_non_exhaustive()
    }
}
