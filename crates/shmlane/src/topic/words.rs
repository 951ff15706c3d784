//! The packed words of a topic: which block a publisher lends ([`BlockId`]), what a
//! submission or completion queue carries ([`QueuedBlock`]), and who holds a block
//! ([`Holders`], private to its publisher). Drawn once here; everything else goes through these
//! types.
//!
//! ```text
//!  QueuedBlock (u64, in the queues)
//!  63                  32 31        24 23                      0
//! +----------------------+------------+-------------------------+
//! |  payload generation  |    pool    |  index within the pool  |
//! +----------------------+------------+-------------------------+
//!                         \_________ BlockId (u32) ___________/
//! ```
//!
//! The generation is the publisher slot's holder count: a value of another generation names
//! another holder's payload segments. Pool 0 is the base pool; pools 1 to 255 are added for
//! larger slices. A word read from a queue is anything a peer wrote: every field is checked
//! against what it names before use (the publisher's `Pools::contains`, the subscriber's
//! mapped geometry).
//!
//! ```text
//!  Holders (u64, in the publisher's private block table)
//!  63        62                                               0
//! +---------+--------------------------------------------------+
//! | history |  subscriber slots 62 ... 0 (one bit per slot)    |
//! +---------+--------------------------------------------------+
//! ```
//!
//! A subscriber's bit is set while the block is queued for it or in its hands; the history bit
//! while the block is one of the last `history` sent. A block is free when no bit is set (and it
//! is not on loan). Subscriber slots are below [`MAX_PARTICIPANTS`](super::MAX_PARTICIPANTS),
//! 63, so they never reach the history bit.

use shmlane_queue::overflow::{LINE_WORDS, Line};
use zerocopy::IntoBytes;

use crate::payload::ZeroCopy;

/// Bits of a block id that index within its pool.
const INDEX_BITS: u32 = 24;
/// Most blocks in one pool.
pub(crate) const MAX_BLOCKS: u64 = 1 << INDEX_BITS;
/// Most pools: the base and 255 added ones.
pub(crate) const MAX_POOLS: usize = 256;

/// One block of a publisher: `pool << 24 | index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BlockId(u32);

impl BlockId {
    /// Block `index` of pool `pool` (`pool < MAX_POOLS`, `index < MAX_BLOCKS`).
    #[inline]
    pub(crate) fn new(pool: usize, index: u32) -> BlockId {
        debug_assert!(pool < MAX_POOLS && u64::from(index) < MAX_BLOCKS);
        BlockId((pool as u32) << INDEX_BITS | index)
    }

    /// The pool it belongs to (below [`MAX_POOLS`] by construction).
    #[inline]
    pub(crate) fn pool(self) -> usize {
        (self.0 >> INDEX_BITS) as usize
    }

    /// Its index within the pool (below [`MAX_BLOCKS`] by construction).
    #[inline]
    pub(crate) fn index(self) -> usize {
        (self.0 & ((1 << INDEX_BITS) - 1)) as usize
    }
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pool(), self.index())
    }
}

// An inline entry reads as a word of generation 0.
const _: () = assert!(shmlane_queue::overflow::INLINE >> 32 == 0);

/// A queued sample: a block of one payload generation (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueuedBlock(u64);

impl QueuedBlock {
    /// Whether the sample travels inline: the queue reads an inline entry as the word
    /// [`overflow::INLINE`](shmlane_queue::overflow::INLINE), of payload generation 0, which no
    /// publisher has (generations start at 1); so is any word a peer wrote whose generation is 0.
    #[inline]
    pub(crate) fn is_inline(self) -> bool {
        self.generation() == 0
    }

    /// `block` of payload generation `generation`.
    #[inline]
    pub(crate) fn new(generation: u32, block: BlockId) -> QueuedBlock {
        QueuedBlock(u64::from(generation) << 32 | u64::from(block.0))
    }

    /// A word as read from a queue (any value: its fields are checked where they are used).
    #[inline]
    pub(crate) fn from_raw(raw: u64) -> QueuedBlock {
        QueuedBlock(raw)
    }

    /// The word to push into a queue.
    #[inline]
    pub(crate) fn to_raw(self) -> u64 {
        self.0
    }

    /// The payload generation it names.
    #[inline]
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The block it names.
    #[inline]
    pub(crate) fn block(self) -> BlockId {
        BlockId(self.0 as u32)
    }
}

/// Most bytes of a `T` whose samples travel inline, in the subscriber's queue slot, instead of
/// through a payload block (if its alignment is at most 8): the six words of a
/// [`Line`](shmlane_queue::overflow::LINE_WORDS), in a slot of one cache line with its stamp.
/// Smaller types take narrower slots: up to 8 bytes 16-byte slots (four to a cache line), up
/// to 24 bytes 32-byte slots.
pub const INLINE_MAX: usize = LINE_WORDS * 8;

/// Whether samples of `T` travel inline: at most [`INLINE_MAX`] bytes, aligned to at most 8
/// (the line words' alignment, so a `T` is read and written in place in a [`Line`]).
#[inline(always)]
pub(crate) const fn inline<T>() -> bool {
    size_of::<T>() <= INLINE_MAX && align_of::<T>() <= align_of::<Line>()
}

/// Line words an inline `T` fills (the words a send writes and a receive copies).
#[inline(always)]
pub(crate) const fn line_words<T>() -> usize {
    size_of::<T>().div_ceil(8)
}

/// `value`'s bytes in a slot's line words (zero-padded).
#[inline]
pub(crate) fn to_line<T: ZeroCopy>(value: &T) -> Line {
    let mut line: Line = [0; LINE_WORDS];
    let bytes = value.as_bytes();
    // `inline::<T>()` callers only: `T` fits; a larger one copies what fits (never reached).
    let n = bytes.len().min(INLINE_MAX);
    line.as_mut_bytes()[..n].copy_from_slice(&bytes[..n]);
    line
}

/// The `T` at the start of `line` (any words: every bit pattern is a `T`).
///
/// Only for `T` with [`inline::<T>()`](inline): it fits and is aligned, which the compiler
/// knows, so the check below folds away.
#[inline]
pub(crate) fn line_ref<T: ZeroCopy>(line: &Line) -> &T {
    match T::ref_from_prefix(line.as_bytes()) {
        Ok((value, _)) => value,
        Err(_) => unreachable!("only an inline T is read from a line"),
    }
}

/// [`line_ref`], writable (a `T` has no padding, so the words stay initialised bytes).
#[inline]
pub(crate) fn line_mut<T: ZeroCopy>(line: &mut Line) -> &mut T {
    match T::mut_from_prefix(line.as_mut_bytes()) {
        Ok((value, _)) => value,
        Err(_) => unreachable!("only an inline T is written in a line"),
    }
}

/// Who holds a block: a set of subscriber slots, and the history mark (see the module's
/// table). The publisher also uses it for a plain set of subscriber slots (those found not
/// draining their queues during a send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Holders(u64);

impl Holders {
    /// Nobody.
    pub(crate) const NONE: Holders = Holders(0);
    /// The history mark alone.
    pub(crate) const HISTORY: Holders = Holders(1 << 63);

    /// Subscriber slot `s` alone (`s < MAX_PARTICIPANTS`).
    #[inline]
    pub(crate) fn subscriber(s: usize) -> Holders {
        debug_assert!(s < super::MAX_PARTICIPANTS as usize);
        Holders(1 << s)
    }

    /// Whether every holder of `other` is one of these.
    #[inline]
    pub(crate) fn contains(self, other: Holders) -> bool {
        self.0 & other.0 == other.0
    }

    /// Adds the holders of `other`.
    #[inline]
    pub(crate) fn insert(&mut self, other: Holders) {
        self.0 |= other.0;
    }

    /// Removes the holders of `other`.
    #[inline]
    pub(crate) fn remove(&mut self, other: Holders) {
        self.0 &= !other.0;
    }

    /// Whether nobody holds it.
    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a subscriber holds it (the history mark aside).
    #[inline]
    pub(crate) fn has_subscriber(self) -> bool {
        self.0 & !Holders::HISTORY.0 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_at_their_limits() {
        for (generation, pool, index) in
            [(1, 0, 0), (u32::MAX, MAX_POOLS - 1, MAX_BLOCKS as u32 - 1)]
        {
            let word = QueuedBlock::new(generation, BlockId::new(pool, index));
            let read = QueuedBlock::from_raw(word.to_raw());
            assert_eq!(read.generation(), generation);
            assert_eq!((read.block().pool(), read.block().index()), (pool, index as usize));
        }
    }

    #[test]
    fn holders_keep_subscribers_and_history_apart_at_their_limits() {
        let last = super::super::MAX_PARTICIPANTS as usize - 1;
        let mut holders = Holders::NONE;
        assert!(holders.is_empty() && !holders.has_subscriber());
        holders.insert(Holders::HISTORY);
        assert!(!holders.is_empty() && !holders.has_subscriber());
        assert_eq!(holders, Holders::HISTORY);
        for s in [0, last] {
            assert!(!holders.contains(Holders::subscriber(s)));
            holders.insert(Holders::subscriber(s));
            assert!(holders.contains(Holders::subscriber(s)) && holders.has_subscriber());
        }
        // The same bits as before: slot `s` is bit `s`, the history bit 63.
        assert_eq!(holders, Holders(1 << 63 | 1 << last | 1));
        assert_ne!(Holders::subscriber(last), Holders::HISTORY);
        holders.remove(Holders::subscriber(0));
        holders.remove(Holders::subscriber(last));
        assert_eq!(holders, Holders::HISTORY);
        holders.remove(Holders::HISTORY);
        assert!(holders.is_empty());
    }

    #[test]
    fn any_raw_word_splits_into_fields_in_range() {
        let word = QueuedBlock::from_raw(u64::MAX);
        assert_eq!(word.generation(), u32::MAX);
        assert!(word.block().pool() < MAX_POOLS);
        assert!((word.block().index() as u64) < MAX_BLOCKS);
    }
}
