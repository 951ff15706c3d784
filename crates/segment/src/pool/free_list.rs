//! The free list of a [`BlockPool`](super::BlockPool): a Treiber stack over shared atomics
//! (the bit table of its head and the protocol are drawn in the parent module).
//!
//! With the `loom` feature this file is compiled twice: here over std's atomics (what
//! segments use) and in `crate::model` over loom's, so the models check this very code.

use std::fmt;

use super::sync::{AtomicU32, AtomicU64, Ordering};
use super::{AllocError, BlockOffset, FreeError, PoolError, PoolStats};
use crate::offset::LayoutError;

/// "No block": the empty free list, and the end of the chain.
pub(super) const NIL: u32 = u32::MAX;
pub(super) const FREE: u32 = 0;
pub(super) const ALLOCATED: u32 = 1;

pub(super) fn pack(tag: u32, index: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

/// A view of a block pool: the shared atomics plus the geometry, validated once.
pub struct BlockPool<'a> {
    pub(super) free_head: &'a AtomicU64,
    pub(super) links: &'a [AtomicU32],
    pub(super) states: &'a [AtomicU32],
    first_block: u64,
    block_size: u64,
}

impl fmt::Debug for BlockPool<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockPool")
            .field("capacity", &self.links.len())
            .field("block_size", &self.block_size)
            .field("first_block", &self.first_block)
            .finish()
    }
}

impl<'a> BlockPool<'a> {
    /// Builds a pool view over existing atomics: `links` and `states` hold one word per block,
    /// and block `i` starts at `first_block + i * block_size` in the segment. The atomics must
    /// have been set up by [`format`](Self::format) (by any process).
    pub fn from_parts(
        free_head: &'a AtomicU64,
        links: &'a [AtomicU32],
        states: &'a [AtomicU32],
        first_block: u64,
        block_size: u64,
    ) -> Result<Self, PoolError> {
        if links.len() != states.len() {
            return Err(PoolError::BadConfig("links and states differ in length"));
        }
        check_geometry(block_size, links.len() as u64)?;
        block_size
            .checked_mul(links.len() as u64)
            .and_then(|bytes| first_block.checked_add(bytes))
            .ok_or(PoolError::Layout(LayoutError::Overflow))?;
        Ok(BlockPool { free_head, links, states, first_block, block_size })
    }

    /// Puts every block on the free list (block 0 first). Only for a pool nobody uses yet.
    pub fn format(free_head: &AtomicU64, links: &[AtomicU32], states: &[AtomicU32]) {
        let count = links.len() as u32;
        for (i, (link, state)) in links.iter().zip(states).enumerate() {
            let next = i as u32 + 1;
            // Relaxed: published by the Release store of the head below.
            link.store(if next < count { next } else { NIL }, Ordering::Relaxed);
            // Relaxed: as above.
            state.store(FREE, Ordering::Relaxed);
        }
        let first = if count == 0 { NIL } else { 0 };
        // Release: pairs with the Acquire load/CAS in `alloc`, publishing links and states.
        free_head.store(pack(0, first), Ordering::Release);
    }

    /// Takes a free block. Lock-free.
    pub fn alloc(&self) -> Result<BlockOffset, AllocError> {
        let count = self.links.len() as u32;
        // Acquire: pairs with the Release CAS in `free` (and the store in `format`), so the
        // link read below is the one written before that block was pushed.
        let mut head = self.free_head.load(Ordering::Acquire);
        let index = loop {
            let (tag, index) = unpack(head);
            if index == NIL {
                return Err(AllocError::Exhausted { capacity: count });
            }
            let link = self
                .links
                .get(index as usize)
                .ok_or(AllocError::Corrupted("head names a block beyond the pool"))?;
            // Relaxed: ordered after the Acquire that produced `head`. If the block was popped
            // and pushed again since, the value may be newer, but then the tag changed and the
            // CAS below fails.
            let next = link.load(Ordering::Relaxed);
            if next != NIL && next >= count {
                // A stale read cannot produce this: links only ever hold valid indices.
                return Err(AllocError::Corrupted("a link names a block beyond the pool"));
            }
            // Acquire on success: pairs with the Release CAS of the `free` that pushed this
            // block, so this thread sees everything its previous owner wrote into it. (The CAS
            // itself continues the head's release sequence, so later poppers still synchronise
            // with earlier pushers.) Acquire on failure: the new `head` is used like the load.
            match self.free_head.compare_exchange_weak(
                head,
                pack(tag.wrapping_add(1), next),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break index,
                Err(actual) => head = actual,
            }
        };
        // Relaxed: the block is ours alone now (off the list); the head's Acquire ordered us
        // after the `free` that set FREE. Single-location RMWs are totally ordered anyway.
        match self.states[index as usize].swap(ALLOCATED, Ordering::Relaxed) {
            FREE => Ok(self.offset_of(index)),
            _ => Err(AllocError::Corrupted("a block on the free list was marked allocated")),
        }
    }

    /// Returns a block. Rejects offsets that are not blocks of this pool and double frees.
    pub fn free(&self, block: BlockOffset) -> Result<(), FreeError> {
        let offset = block.get();
        let index = self.index_of(offset).ok_or(FreeError::Foreign(offset))?;
        // Relaxed: the state is a guard against double frees; the data handoff to the next
        // owner is ordered by the Release CAS on the head below.
        match self.states[index as usize].compare_exchange(
            ALLOCATED,
            FREE,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {}
            Err(FREE) => return Err(FreeError::DoubleFree(offset)),
            Err(_) => return Err(FreeError::Corrupted(offset)),
        }
        // Relaxed: the value only seeds the CAS loop, which publishes with Release.
        let mut head = self.free_head.load(Ordering::Relaxed);
        loop {
            let (tag, top) = unpack(head);
            // Relaxed: published by the Release CAS below; no popper can see this block until
            // that CAS succeeds.
            self.links[index as usize].store(top, Ordering::Relaxed);
            // Release: pairs with the Acquire CAS in `alloc`, handing over the link, the state
            // and every write the caller made to the block. Failure is Relaxed: just retry.
            match self.free_head.compare_exchange_weak(
                head,
                pack(tag.wrapping_add(1), index),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => head = actual,
            }
        }
    }

    /// Number of blocks.
    pub fn capacity(&self) -> u32 {
        self.links.len() as u32
    }

    /// Bytes per block.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Whether `offset` is the start of one of this pool's blocks.
    pub fn contains(&self, offset: BlockOffset) -> bool {
        self.index_of(offset.get()).is_some()
    }

    /// Counts allocated blocks by scanning the state words (for inspection, not hot paths).
    pub fn stats(&self) -> PoolStats {
        let allocated = self
            .states
            .iter()
            // Relaxed: a statistics snapshot, ordered with nothing.
            .filter(|s| s.load(Ordering::Relaxed) != FREE)
            .count();
        PoolStats { capacity: self.capacity(), allocated: allocated as u32 }
    }

    fn offset_of(&self, index: u32) -> BlockOffset {
        // Cannot overflow: `from_parts` checked the end of the last block.
        BlockOffset::from_raw(self.first_block + u64::from(index) * self.block_size)
    }

    fn index_of(&self, offset: u64) -> Option<u32> {
        let relative = offset.checked_sub(self.first_block)?;
        if relative % self.block_size != 0 {
            return None;
        }
        let index = relative / self.block_size;
        (index < self.links.len() as u64).then_some(index as u32)
    }
}

/// Checks block size and count (alignment is checked by the layout).
pub(super) fn check_geometry(block_size: u64, count: u64) -> Result<(), PoolError> {
    if block_size == 0 {
        return Err(PoolError::BadConfig("block size is zero"));
    }
    if count == 0 || count >= u64::from(NIL) {
        return Err(PoolError::BadConfig("block count must be between 1 and 2^32 - 2"));
    }
    Ok(())
}
