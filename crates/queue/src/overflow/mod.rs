//! Single-producer single-consumer queue of `u64` values (offsets, indices) in which a full
//! queue never blocks the producer: it evicts the oldest value and gets it back, so it can
//! account for it (return a block to its pool, count a drop). This is the submission queue of
//! a subscriber under the drop-oldest policy (iceoryx2's "safely overflowing" queue).
//!
//! ```text
//!   slot:  [ stamp: AtomicU64 | value: AtomicU64 | line: AtomicU64 x (stride - 2) ]
//!          stride 2, 4 or 8 words (16, 32 or 64 bytes, aligned to their size), chosen when
//!          the queue is made; stamp & !INLINE_FLAG == p + 1  <=>  slot holds position p
//!   head:  CachePadded<AtomicU64>   next position to pop: CAS by the consumer (pop) and the
//!                                   producer (evict); stored by an exclusive consumer
//!   tail:  CachePadded<AtomicU64>   next position to push: stored by the producer only
//!   seen:  CachePadded<AtomicU64>   a recent `head`, stored by the consumer when it finds the
//!                                   queue empty: what the producer reads for room
//! ```
//!
//! Producer, to push position `t`: if `t - cached_head == capacity`, load `seen` (Acquire);
//! if it shows room, that is the new `cached_head`. Otherwise reload `head` (Acquire); if still
//! full, read the value of position `head` (it wrote it) and CAS `head` to `head + 1`: on
//! success that value is evicted and returned to the caller; on failure the consumer took it
//! and there is room. Then store the value (Relaxed), the stamp `t + 1` (Release) and `tail`.
//!
//! `seen` exists for latency: a producer that read `head` itself would take the consumer's
//! `head` line away from it, and the consumer's next claim would wait for that line to come
//! back. The consumer stores `seen` only when idle (a pop that finds nothing), so neither end
//! waits for the other's lines while a value is in flight. An honest `seen` is never above
//! `head` (the consumer stores a `head` it loaded); one that is out of range is ignored.
//!
//! Consumer, to pop: load `head` (Acquire) and the stamp of its slot (Acquire). A stamp below
//! `head + 1` is empty; above it, the producer evicted `head` and reused the slot, so reload
//! `head`. Otherwise read the value (Relaxed) and CAS `head` to `head + 1` (AcqRel): success
//! means nobody evicted the position, so the producer had not reused the slot (it writes
//! position `h + capacity` only after `head` passed `h`) and the value read is position `h`'s;
//! failure means it was evicted: start again. The value is an atomic because a consumer may
//! read it while the producer overwrites it (the CAS then fails and the read is discarded).
//!
//! An entry is a value, or an inline [`Line`] (`push_inline`, `pop_line_when`): a small message
//! itself, in the slot's words from `value` on, its stamp marked with [`INLINE_FLAG`]. Its
//! words travel as a value does: written (Relaxed) before the stamp's Release, read (Relaxed)
//! after its Acquire and before the claim, so a claim that succeeds proves the words read were
//! the position's own, never a torn mix with a later position's (loom-tests/overflow.rs checks
//! it). An inline entry reads as the value [`INLINE`]; a slot too narrow for a line keeps the
//! words that fit. The stride sets how dense the ring is: a stream of 8-byte messages in
//! 16-byte slots moves four to a cache line.
//!
//! `head` only grows, so its CAS has no ABA. The producer's `cached_head` and `seen` keep the
//! `head` line with the consumer except when the queue is really full.
//!
//! An **exclusive** consumer ([`Consumer::exclusive`]) has the producer's word that it takes
//! nothing back while the consumer runs: it pushes only where there is room and evicts only
//! once the consumer is gone. Nobody else then writes `head`, and a claim is a Release store
//! of `head + n` instead of the CAS (as the SPSC queue's pop): no atomic read-modify-write on
//! the path of each message, which on x86 also waits for the store buffer to drain.

mod heap;
on_shared_memory! {
    mod shared;
}

pub use heap::{Heap, new, new_strided};
on_shared_memory! {
    pub use shared::{OverflowSnapshot, Owned, OwnedOverflow, Shared, SharedOverflow};
}

use super::descriptor::MAX_POSITION;
use super::sync::{AtomicU64, Ordering};

/// Most words of a [`Line`]: what an inline entry carries (in a slot of 8 words, beside its
/// stamp, one word spare).
pub const LINE_WORDS: usize = 6;

/// The words of an inline entry ([`Producer::push_inline`], [`Consumer::pop_line_when`]): for
/// instance a small message itself, so that the consumer finds it in the slot it polls.
pub type Line = [u64; LINE_WORDS];

/// What a consumer reads as the value of an inline entry (its words come in the [`Line`]).
pub const INLINE: u64 = 0;

/// Bit of a stamp that marks the slot's words as an inline entry. Positions stay below it
/// (`MAX_POSITION`).
pub const INLINE_FLAG: u64 = 1 << 63;

/// Words per slot a queue may have: 2, 4 or 8 (16, 32 or 64 bytes).
pub const STRIDES: [usize; 3] = [2, 4, 8];

/// The narrowest slot (in words) that carries `line_words` words inline: the stamp, then the
/// words (at least one, the value). 2, 4 or 8 ([`STRIDES`]; more than [`LINE_WORDS`] words
/// get 8, which carries `LINE_WORDS`).
pub const fn stride_for(line_words: usize) -> usize {
    match line_words {
        0 | 1 => 2,
        2 | 3 => 4,
        _ => 8,
    }
}

/// One slot's words: the stamp, then the value or an inline entry's words.
#[derive(Clone, Copy)]
struct Slot<'a>(&'a [AtomicU64]);

impl<'a> Slot<'a> {
    #[inline(always)]
    fn stamp(self) -> &'a AtomicU64 {
        &self.0[0]
    }

    #[inline(always)]
    fn value(self) -> &'a AtomicU64 {
        &self.0[1]
    }

    /// The words an inline entry fills (from `value` on).
    #[inline(always)]
    fn line(self) -> &'a [AtomicU64] {
        &self.0[1..]
    }
}

/// The position a stamp names (its flag cleared).
#[inline(always)]
fn stamped(stamp: u64) -> u64 {
    stamp & !INLINE_FLAG
}

/// The shared words of a ring, wherever they live.
#[derive(Debug)]
pub struct Ring<'a> {
    /// The slots' words, `capacity << shift` of them.
    words: &'a [AtomicU64],
    /// log2 of the words per slot.
    shift: u32,
    head: &'a AtomicU64,
    tail: &'a AtomicU64,
    seen: &'a AtomicU64,
}

impl Ring<'_> {
    #[inline(always)]
    fn capacity(&self) -> u64 {
        (self.words.len() >> self.shift) as u64
    }

    #[inline(always)]
    fn slot(&self, position: u64) -> Slot<'_> {
        // Masked: in bounds whatever `position` is (capacity is a power of two).
        let at = ((position & (self.capacity() - 1)) as usize) << self.shift;
        Slot(&self.words[at..at + (1 << self.shift)])
    }

    /// Values in the ring (a snapshot, clamped to the capacity).
    fn len(&self) -> usize {
        // Acquire (both): pair with the ends' Release stores and CASes.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.capacity()) as usize
    }
}

mod sealed {
    /// Where a ring's slots and indices live: the heap or a segment.
    pub trait Storage {
        /// The shared words.
        fn ring(&self) -> super::Ring<'_>;
    }
}
use sealed::Storage;

/// The consumer's shared `head` is impossible: a peer corrupted the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the queue's consumer index is corrupt (head {head}, tail {tail}): reset the connection")]
pub struct Corrupt {
    /// The shared head.
    pub head: u64,
    /// The producer's tail.
    pub tail: u64,
}

/// Why [`Producer::try_push`] did not push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryPushError {
    /// The queue is full (the value was not pushed).
    #[error("the queue is full")]
    Full,
    /// The consumer's index is impossible.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// What a push writes into a slot.
#[derive(Clone, Copy)]
enum Entry<'a> {
    Value(u64),
    Inline(&'a [u64]),
}

/// The producing end.
#[derive(Debug)]
pub struct Producer<S: Storage> {
    storage: S,
    /// Next position to push; ours alone.
    tail: u64,
    /// Last `head` seen; reloaded only when the queue looks full.
    cached_head: u64,
}

/// The consuming end.
#[derive(Debug)]
pub struct Consumer<S: Storage> {
    storage: S,
    /// The `head` last stored in `seen` (`u64::MAX` before the first store).
    published: u64,
    /// Whether claims store `head` rather than CAS it ([`exclusive`](Self::exclusive)).
    exclusive: bool,
}

impl<S: Storage> Producer<S> {
    fn start(storage: S, tail: u64, head: u64) -> Self {
        Producer { storage, tail, cached_head: head }
    }

    /// Pushes `value`; if the queue was full, evicts the oldest value and returns it
    /// ([`INLINE`] for an inline entry).
    #[inline]
    pub fn push(&mut self, value: u64) -> Result<Option<u64>, Corrupt> {
        self.push_entry(Entry::Value(value))
    }

    /// Pushes an inline entry of the words of `line` (at most the slot's stride - 1 of them are
    /// kept: [`stride_for`]; the slot's other words keep what they held), for
    /// [`Consumer::pop_line_when`], which reads it as the value [`INLINE`]. Evicts as
    /// [`push`](Self::push) does.
    #[inline]
    pub fn push_inline(&mut self, line: &[u64]) -> Result<Option<u64>, Corrupt> {
        self.push_entry(Entry::Inline(line))
    }

    #[inline(always)]
    fn push_entry(&mut self, entry: Entry<'_>) -> Result<Option<u64>, Corrupt> {
        let mut evicted = None;
        if self.full_by_cache() {
            evicted = self.make_room()?;
        }
        self.write(entry);
        Ok(evicted)
    }

    /// [`try_push`](Self::try_push) of an inline entry (see [`push_inline`](Self::push_inline)).
    #[inline]
    pub fn try_push_inline(&mut self, line: &[u64]) -> Result<(), TryPushError> {
        self.try_push_entry(Entry::Inline(line))
    }

    #[inline(always)]
    fn try_push_entry(&mut self, entry: Entry<'_>) -> Result<(), TryPushError> {
        if self.full_by_cache() && self.free()? == 0 {
            return Err(TryPushError::Full);
        }
        self.write(entry);
        Ok(())
    }

    /// Whether a push would find room without evicting: by the producer's cached view of the
    /// consumer while that shows room, so a producer that asks before every push reads the
    /// consumer's lines only when the queue looks full (as `try_push` does).
    #[inline]
    pub fn has_room(&mut self) -> Result<bool, Corrupt> {
        Ok(!self.full_by_cache() || self.free()? > 0)
    }

    /// Pushes `value` if there is room, without evicting.
    #[inline]
    pub fn try_push(&mut self, value: u64) -> Result<(), TryPushError> {
        self.try_push_entry(Entry::Value(value))
    }

    /// Takes the oldest value out of the queue, as a consumer would (to reclaim the values
    /// queued for a consumer that died).
    ///
    /// Each lost race means the consumer took a value, so more than a ring's worth of them
    /// is a peer rewriting `head`: `Corrupt`, not a loop without end.
    pub fn evict(&mut self) -> Result<Option<u64>, Corrupt> {
        for _ in 0..=self.storage.ring().capacity() {
            // Acquire: pairs with the consumer's AcqRel CAS of `head`.
            let head = self.storage.ring().head.load(Ordering::Acquire);
            self.check(head)?;
            if head == self.tail {
                self.cached_head = head;
                return Ok(None);
            }
            if let Some(value) = self.take(head) {
                return Ok(Some(value));
            }
        }
        Err(Corrupt { head: self.cached_head, tail: self.tail })
    }

    /// Values in the queue (a snapshot).
    pub fn len(&self) -> usize {
        self.storage.ring().len()
    }

    /// Whether the queue holds nothing (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.storage.ring().capacity() as usize
    }

    #[inline]
    fn full_by_cache(&self) -> bool {
        self.tail.wrapping_sub(self.cached_head) >= self.storage.ring().capacity()
    }

    /// Free slots per `seen` if it shows room, else per the shared `head`; refreshes the
    /// cache.
    fn free(&mut self) -> Result<u64, Corrupt> {
        let ring = self.storage.ring();
        // Acquire: pairs with the consumer's Release store of `seen`: its reads of the slots
        // below `seen` happen before our overwrite of them.
        let seen = ring.seen.load(Ordering::Acquire);
        if seen > self.cached_head && seen <= self.tail && self.tail - seen < ring.capacity() {
            self.cached_head = seen;
            return Ok(ring.capacity() - (self.tail - seen));
        }
        // Acquire: pairs with the consumer's AcqRel CAS of `head`: its read of a slot happens
        // before our overwrite of it.
        let head = ring.head.load(Ordering::Acquire);
        let used = self.check(head)?;
        self.cached_head = head;
        Ok(ring.capacity() - used)
    }

    /// Frees one slot, evicting the oldest value if the queue is really full.
    #[cold]
    fn make_room(&mut self) -> Result<Option<u64>, Corrupt> {
        // As in `evict`: more lost races than the ring holds is a peer rewriting `head`.
        for _ in 0..=self.storage.ring().capacity() {
            // When `free` finds no room, `cached_head` is the shared `head` it just loaded.
            if self.free()? > 0 {
                return Ok(None);
            }
            if let Some(value) = self.take(self.cached_head) {
                return Ok(Some(value));
            }
        }
        Err(Corrupt { head: self.cached_head, tail: self.tail })
    }

    /// Claims position `head` with a CAS; its value if we won (the consumer did not take it),
    /// [`INLINE`] for an inline entry.
    fn take(&mut self, head: u64) -> Option<u64> {
        let ring = self.storage.ring();
        let slot = ring.slot(head);
        // Relaxed (both): this producer (or the one it took over from, synchronised at attach)
        // wrote them, and nobody else writes them before `head` passes the position.
        let inline = slot.stamp().load(Ordering::Relaxed) & INLINE_FLAG != 0;
        let value = if inline { INLINE } else { slot.value().load(Ordering::Relaxed) };
        // AcqRel: Acquire pairs with the consumer's Release CAS (its reads of earlier slots
        // happen before our reuse of them); Release orders our value read before the reuse of
        // this slot. Failure Relaxed: the caller reloads `head` with Acquire.
        let won =
            ring.head.compare_exchange(head, head + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok();
        if won {
            shmlane_segment::crash_point!("queue.overflow.evict.taken");
        }
        self.cached_head = head + u64::from(won);
        won.then_some(value)
    }

    /// `tail - head`, if it is possible: the consumer is never ahead of the producer's tail
    /// (a new producer starts at or after the shared `head`), nor more than a ring behind.
    fn check(&self, head: u64) -> Result<u64, Corrupt> {
        match self.tail.checked_sub(head) {
            Some(used) if used <= self.storage.ring().capacity() => Ok(used),
            _ => Err(Corrupt { head, tail: self.tail }),
        }
    }

    #[inline(always)]
    fn write(&mut self, entry: Entry<'_>) {
        let ring = self.storage.ring();
        let slot = ring.slot(self.tail);
        let flag = match entry {
            Entry::Value(value) => {
                // Relaxed: published by the stamp store below.
                slot.value().store(value, Ordering::Relaxed);
                0
            }
            Entry::Inline(line) => {
                for (word, value) in slot.line().iter().zip(line) {
                    // Relaxed: published by the stamp store below, as a value is.
                    word.store(*value, Ordering::Relaxed);
                }
                INLINE_FLAG
            }
        };
        shmlane_segment::crash_point!("queue.overflow.push.written");
        // Release: publishes the value or words; pairs with the consumer's Acquire stamp load.
        slot.stamp().store((self.tail + 1) | flag, Ordering::Release);
        shmlane_segment::crash_point!("queue.overflow.push.stamped");
        self.tail += 1;
        // Release: pairs with the Acquire loads of `tail` in `len`.
        ring.tail.store(self.tail, Ordering::Release);
        if self.full_by_cache() {
            // The next push would reload `head` before writing: reload it now, after this
            // value is on its way, so that the load's cache miss is not on the next push's
            // path. A corrupt `head` is reported by that push.
            let _ = self.free();
        }
    }
}

impl<S: Storage> Consumer<S> {
    fn start(storage: S) -> Self {
        Consumer { storage, published: u64::MAX, exclusive: false }
    }

    /// This end with claims that store `head` instead of racing the producer for it with a
    /// CAS, for a producer that takes nothing back while this end runs: it pushes only where
    /// there is room (`try_push`, or `push` after [`Producer::has_room`] showed room) and
    /// [`evict`](Producer::evict)s only once this consumer is gone for good. It saves an atomic
    /// read-modify-write per claim.
    ///
    /// A producer that evicts anyway (a broken or hostile peer) can make this end take a value
    /// it also took back, read an entry's words torn, or move `head` back (which the producer
    /// reports as [`Corrupt`]): wrong values, never undefined behaviour.
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Claims positions `head..head + n`, whose slots the caller read: `Err` with the shared
    /// `head` if the producer evicted meanwhile (never for an exclusive end).
    #[inline(always)]
    fn advance(exclusive: bool, ring: &Ring<'_>, head: u64, n: u64) -> Result<(), u64> {
        if exclusive {
            // Release: orders our reads of the claimed slots before the producer's reuse of
            // them (it loads `head` and `seen` with Acquire). The producer does not write
            // `head` while we run, so there is no race to lose.
            ring.head.store(head + n, Ordering::Release);
            return Ok(());
        }
        // AcqRel: Release orders our reads of the slots before the producer's reuse of them
        // (it loads `head` with Acquire); Acquire pairs with its eviction CAS. Success means
        // nobody evicted the positions, so the producer reused none of their slots (it writes
        // position `h + capacity` only after `head` passed `h`). Failure Acquire: the new
        // head, as the first load.
        ring.head.compare_exchange(head, head + n, Ordering::AcqRel, Ordering::Acquire).map(|_| ())
    }

    /// Pops the oldest value.
    #[inline]
    pub fn pop(&mut self) -> Option<u64> {
        self.pop_hinted(|_| ())
    }

    /// [`pop`](Self::pop), calling `hint` with each value read just before claiming it: a
    /// hint only (the claim may fail and another value be read), for instance to prefetch what
    /// the value names while the claim's atomic instruction runs.
    #[inline]
    pub fn pop_hinted(&mut self, mut hint: impl FnMut(u64)) -> Option<u64> {
        self.pop_when(|value| {
            hint(value);
            true
        })
    }

    /// [`pop_hinted`](Self::pop_hinted) that takes the oldest value only if `ready` says so
    /// when it sees it (before the claim): `None` without claiming anything otherwise, so the
    /// caller can get ready for it (map what it names) and pop again.
    #[inline]
    pub fn pop_when(&mut self, ready: impl FnMut(u64) -> bool) -> Option<u64> {
        let mut out = [(0, [0; LINE_WORDS])];
        (self.pop_lines_when(ready, 0, &mut out) == 1).then_some(out[0].0)
    }

    /// [`pop_when`](Self::pop_when) that, for an inline entry (the value [`INLINE`]), also
    /// copies the first `words` of its [`Line`] (what [`Producer::push_inline`] wrote; those
    /// beyond the slot's stride - 1 stay zero); the rest of the returned line is zeros. The
    /// words are read before the claim and are the entry's own if the claim succeeds: a slot
    /// the producer reuses meanwhile makes the claim fail (it evicted the position first).
    #[inline]
    pub fn pop_line_when(
        &mut self,
        ready: impl FnMut(u64) -> bool,
        words: usize,
    ) -> Option<(u64, Line)> {
        let mut out = [(0, [0; LINE_WORDS])];
        (self.pop_lines_when(ready, words, &mut out) == 1).then_some(out[0])
    }

    /// [`pop_line_when`](Self::pop_line_when) for up to `out.len()` consecutive positions
    /// from the oldest, with one claim: copies each one's value and, for an inline entry, the
    /// first `words` of its line into `out` (zeros for a value; the rest of each line untouched) until a position not yet pushed, one whose
    /// value `ready` refuses, or the end of `out`; returns how many were claimed (0: nothing
    /// ready). One claim instead of one per value, and the slots' lines are read back to back,
    /// so their cache misses overlap.
    #[inline(always)]
    pub fn pop_lines_when(
        &mut self,
        ready: impl FnMut(u64) -> bool,
        words: usize,
        out: &mut [(u64, Line)],
    ) -> usize {
        // Each kind of end gets its own copy of the loop.
        if self.exclusive {
            self.pop_lines::<true>(ready, words, out)
        } else {
            self.pop_lines::<false>(ready, words, out)
        }
    }

    /// [`pop_lines_when`](Self::pop_lines_when) for an end that is `EXCLUSIVE` or not.
    #[inline(always)]
    fn pop_lines<const EXCLUSIVE: bool>(
        &mut self,
        mut ready: impl FnMut(u64) -> bool,
        words: usize,
        out: &mut [(u64, Line)],
    ) -> usize {
        let ring = self.storage.ring();
        // Acquire: pairs with the producer's AcqRel eviction CAS.
        let mut head = ring.head.load(Ordering::Acquire);
        'claim: loop {
            let mut n = 0;
            while n < out.len() {
                let position = head + n as u64;
                // No queue gets near 2^63 positions: a larger one was written by a corrupting
                // peer, and `position + 1` below must not overflow.
                if position >= MAX_POSITION {
                    break;
                }
                let slot = ring.slot(position);
                // Acquire: pairs with the producer's Release stamp store.
                let stamp = slot.stamp().load(Ordering::Acquire);
                if stamped(stamp) != position + 1 {
                    if n == 0 {
                        match Self::not_ready::<EXCLUSIVE>(&ring, &mut self.published, head, stamp)
                        {
                            Some(now) => {
                                head = now;
                                continue 'claim;
                            }
                            None => return 0,
                        }
                    }
                    break;
                }
                let inline = stamp & INLINE_FLAG != 0;
                // Relaxed: after the stamp's Acquire; the claim below proves these were
                // position `position`'s.
                let value = if inline { INLINE } else { slot.value().load(Ordering::Relaxed) };
                if !ready(value) {
                    break;
                }
                let (to, line) = &mut out[n];
                *to = value;
                if inline {
                    for (word, shared) in line.iter_mut().zip(slot.line()).take(words) {
                        // Relaxed (each): as the value's load.
                        *word = shared.load(Ordering::Relaxed);
                    }
                } else {
                    // A value comes without words (also one a peer made look like `INLINE`).
                    line.iter_mut().take(words).for_each(|word| *word = 0);
                }
                n += 1;
            }
            if n == 0 {
                return 0;
            }
            // Every position claimed at once (the producer reuses none of their slots before
            // `head` passes it).
            match Self::advance(EXCLUSIVE, &ring, head, n as u64) {
                Ok(()) => return n,
                Err(now) => head = now,
            }
        }
    }

    /// The slot of position `head` has `stamp`, not `head + 1`: `None` if that means the queue
    /// is empty (published in `seen`; `published` is the consumer's last such store), else the
    /// `head` to start again from (the producer evicted `head` and reused the slot).
    #[inline]
    fn not_ready<const EXCLUSIVE: bool>(
        ring: &Ring<'_>,
        published: &mut u64,
        head: u64,
        stamp: u64,
    ) -> Option<u64> {
        // Below: not written yet. Above: the producer evicted `head` and reused the slot, so
        // `head` has moved; if it has not, the stamp is corrupt: empty. Nobody else moves an
        // exclusive end's `head`: it is the one just loaded.
        // Acquire: pairs with the producer's AcqRel eviction CAS.
        let now = if EXCLUSIVE { head } else { ring.head.load(Ordering::Acquire) };
        if stamped(stamp) < head + 1 || now == head {
            if now != *published {
                // Release: our reads of the slots below `now` happen before the producer's
                // overwrite of them (it loads `seen` with Acquire).
                ring.seen.store(now, Ordering::Release);
                *published = now;
            }
            return None;
        }
        Some(now)
    }

    /// Values in the queue (a snapshot).
    pub fn len(&self) -> usize {
        self.storage.ring().len()
    }

    /// Whether the queue holds nothing (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.storage.ring().capacity() as usize
    }
}
