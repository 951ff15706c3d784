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
//! resumes: with threads that is a preempted thread, which resumes. A killed process never
//! resumes: the shared-memory variant ([`SharedMpmc`]) recovers such slots (see
//! `shared.rs`). Its repairs add two more sequence states, written only by a repair:
//!
//! ```text
//!   seq == (p + 1) | SKIP    abandoned by a dead producer: consumers step over position p
//!   (a full slot whose consumer died is set straight back to p + capacity: its value is lost)
//! ```
//!
//! Positions stay below 2^63, so bit 63 (`SKIP`) never collides with a position.

mod shared;

use std::fmt;

use crossbeam_utils::CachePadded;

pub use shared::{Entry, MpmcConsumer, MpmcProducer, MpmcStats, SharedMpmc};

use super::descriptor::MAX_POSITION;
use super::slot::{Slot, read_value};
use super::sync::{AtomicU64, Ordering, spin_loop};

/// Tries of `len` at an instant when `tail` stood still.
const LEN_TRIES: u32 = 16;

/// Marks a slot a dead producer claimed and never filled (see the module docs).
const SKIP: u64 = 1 << 63;

/// The shared words of a ring, wherever they live.
pub(crate) struct Ring<'a, T> {
    slots: &'a [Slot<T>],
    head: &'a AtomicU64,
    tail: &'a AtomicU64,
}

/// What a ring's user adds around each operation: the shared-memory ends announce the
/// position they are claiming and repair slots abandoned by dead processes; heap queues (`()`)
/// do nothing.
pub(crate) trait Participant<T> {
    /// About to claim `position` (stored as `position + 1`; 0 means none).
    #[inline(always)]
    fn announce(&self, _position: u64) {}
    /// The claimed position is complete.
    #[inline(always)]
    fn done(&self) {}
    /// A producer found the slot for `position` still full. Returns true if it repaired the
    /// slot (abandoned by a dead consumer), so the push should retry.
    #[inline(always)]
    fn unstick_full(&self, _ring: &Ring<'_, T>, _position: u64) -> bool {
        false
    }
    /// A consumer found the slot for `position` not yet written. Returns true if it repaired
    /// the slot (abandoned by a dead producer), so the pop should retry.
    #[inline(always)]
    fn unstick_empty(&self, _ring: &Ring<'_, T>, _position: u64) -> bool {
        false
    }
}

impl<T> Participant<T> for () {}

impl<T> Ring<'_, T> {
    fn capacity(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, position: u64) -> &Slot<T> {
        // Masked: in bounds whatever `position` is (capacity is a power of two).
        &self.slots[(position & (self.capacity() - 1)) as usize]
    }

    fn push(&self, value: T, who: &impl Participant<T>) -> Result<(), T> {
        // Relaxed: only a guess at the next position; the slot's `seq` decides.
        let mut position = self.tail.load(Ordering::Relaxed);
        // Whether we announced a position this call: then a failure must withdraw it, or it
        // would shield a dead peer's slot at that position from repair.
        let mut announced = false;
        let fail = |value, announced| {
            if announced {
                who.done();
            }
            Err(value)
        };
        loop {
            if position >= MAX_POSITION {
                // A corrupt `tail` (no ring gets there): refuse, rather than overflow.
                return fail(value, announced);
            }
            let slot = self.slot(position);
            // Acquire: pairs with the consumer's Release store of `seq = p + capacity`, so its
            // read of the previous value happens before our write.
            let seq = slot.seq.load(Ordering::Acquire);
            let lag = seq.wrapping_sub(position) as i64;
            if lag == 0 {
                who.announce(position);
                announced = true;
                // Release on success: whoever sees this `tail` (Acquire) also sees our
                // announcement. The value itself is handed over by `seq`, not by the CAS.
                match self.tail.compare_exchange_weak(
                    position,
                    position + 1,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        shmlane_segment::crash_point!("queue.mpmc.push.claimed");
                        slot.value.with_mut(|p| {
                            // SAFETY: we claimed `position` and its slot is free (seq == p):
                            // no one else accesses the value until our `seq` store.
                            unsafe { (*p).write(value) };
                        });
                        shmlane_segment::crash_point!("queue.mpmc.push.written");
                        // Release: publishes the value; pairs with the consumer's Acquire.
                        slot.seq.store(position + 1, Ordering::Release);
                        who.done();
                        return Ok(());
                    }
                    Err(current) => position = current,
                }
            } else if lag < 0 {
                if !who.unstick_full(self, position) {
                    return fail(value, announced);
                }
                // Relaxed: as above.
                position = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer took this position: wait a beat for `tail` to show it.
                spin_loop();
                // Relaxed: as above.
                let current = self.tail.load(Ordering::Relaxed);
                if current == position {
                    // Cannot happen in a sound ring: whoever moved `seq` past `position` did so
                    // after `tail` moved past it, which our Acquire load of `seq` makes
                    // visible. A corrupt `seq` word (shared memory): give up, do not spin.
                    return fail(value, announced);
                }
                position = current;
            }
        }
    }

    fn pop(&self, who: &impl Participant<T>) -> Option<T> {
        // Relaxed: only a guess at the next position; the slot's `seq` decides.
        let mut position = self.head.load(Ordering::Relaxed);
        // As in `push`: a failure withdraws an announcement made in this call.
        let mut announced = false;
        let fail = |announced| {
            if announced {
                who.done();
            }
            None
        };
        loop {
            if position >= MAX_POSITION {
                // A corrupt `head` (no ring gets there): refuse, rather than overflow.
                return fail(announced);
            }
            let slot = self.slot(position);
            // Acquire: pairs with the producer's Release store of `seq = p + 1` (or a repair's).
            let seq = slot.seq.load(Ordering::Acquire);
            let skipped = seq == (position + 1) | SKIP;
            let lag = seq.wrapping_sub(position + 1) as i64;
            if lag == 0 || skipped {
                who.announce(position);
                announced = true;
                // Release on success: whoever sees this `head` (Acquire) also sees our
                // announcement. The value is handed over by `seq`.
                match self.head.compare_exchange_weak(
                    position,
                    position + 1,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        shmlane_segment::crash_point!("queue.mpmc.pop.claimed");
                        let value = (!skipped).then(|| {
                            slot.value.with(|p| {
                                // SAFETY: we claimed `position` and its value is written
                                // (seq == p + 1); no producer reuses the slot before our
                                // `seq` store.
                                unsafe { read_value(p) }
                            })
                        });
                        shmlane_segment::crash_point!("queue.mpmc.pop.read");
                        // Release: pairs with the next lap's producer Acquire load.
                        slot.seq.store(position + self.capacity(), Ordering::Release);
                        who.done();
                        match value {
                            Some(value) => return Some(value),
                            None => position += 1,
                        }
                    }
                    Err(current) => position = current,
                }
            } else if lag < 0 {
                if !who.unstick_empty(self, position) {
                    return fail(announced);
                }
                // Relaxed: as above.
                position = self.head.load(Ordering::Relaxed);
            } else {
                // Another consumer took this position: wait a beat for `head` to show it.
                spin_loop();
                // Relaxed: as above.
                let current = self.head.load(Ordering::Relaxed);
                if current == position {
                    // Cannot happen in a sound ring: whoever moved `seq` past `position` did so
                    // after `head` moved past it, which our Acquire load of `seq` makes
                    // visible. A corrupt `seq` word (shared memory): give up, do not spin.
                    return fail(announced);
                }
                position = current;
            }
        }
    }

    /// Values in the queue (a snapshot).
    fn len(&self) -> usize {
        // A bounded number of tries: producers that keep pushing (or a peer rewriting `tail`)
        // cannot keep us here; the last reading is as good an estimate as any.
        let mut estimate = 0;
        for _ in 0..LEN_TRIES {
            // SeqCst: one total order for the three loads, so `head` is read at an instant when
            // `tail` had this value (as crossbeam's `ArrayQueue::len`).
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            estimate = tail.saturating_sub(head).min(self.capacity()) as usize;
            if self.tail.load(Ordering::SeqCst) == tail {
                break;
            }
        }
        estimate
    }
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
            slots: (0..capacity as u64).map(Slot::new).collect(),
        }
    }

    fn ring(&self) -> Ring<'_, T> {
        Ring { slots: &self.slots, head: &self.head, tail: &self.tail }
    }

    /// Pushes a value, or gives it back if the queue is full.
    pub fn try_push(&self, value: T) -> Result<(), T> {
        self.ring().push(value, &())
    }

    /// Pops the oldest value, if any.
    pub fn try_pop(&self) -> Option<T> {
        self.ring().pop(&())
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Values in the queue (a snapshot; racy under concurrent use).
    pub fn len(&self) -> usize {
        self.ring().len()
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
            self.ring().slot(position).value.with_mut(|p| {
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
