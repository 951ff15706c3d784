//! A block pool on heap-allocated loom atomics, with one loom-tracked cell per block.
//!
//! The cells let loom check the pool's handoff: an owner writes its block without
//! synchronisation of its own, so if two threads ever held one block at once, or if `free`
//! and `alloc` did not order the previous owner's writes before the next owner's, loom reports
//! a data race.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicU64};
use shmlane_segment::model::{AllocError, BlockOffset, BlockPool};

/// Offset of block 0 in the pretend segment.
pub const FIRST_BLOCK: u64 = 4096;
/// Bytes per block.
pub const BLOCK_SIZE: u64 = 64;

/// The pool's shared words plus the blocks' contents.
#[derive(Debug)]
pub struct HeapPool {
    head: AtomicU64,
    links: Vec<AtomicU32>,
    states: Vec<AtomicU32>,
    blocks: Vec<UnsafeCell<usize>>,
}

impl HeapPool {
    /// A formatted pool of `count` free blocks.
    pub fn new(count: usize) -> HeapPool {
        let pool = HeapPool {
            head: AtomicU64::new(0),
            links: (0..count).map(|_| AtomicU32::new(0)).collect(),
            states: (0..count).map(|_| AtomicU32::new(0)).collect(),
            blocks: (0..count).map(|_| UnsafeCell::new(0)).collect(),
        };
        BlockPool::format(&pool.head, &pool.links, &pool.states);
        pool
    }

    /// The pool view over the shared words.
    pub fn pool(&self) -> BlockPool<'_> {
        BlockPool::from_parts(&self.head, &self.links, &self.states, FIRST_BLOCK, BLOCK_SIZE)
            .expect("fixture geometry is valid")
    }

    /// Allocates a block and writes `owner` into it, then checks it reads back: the write is
    /// unsynchronised, so loom flags any overlap with another owner.
    pub fn take(&self, owner: usize) -> Result<BlockOffset, AllocError> {
        let block = self.pool().alloc()?;
        let cell = &self.blocks[self.index(block)];
        cell.with_mut(|p| {
            // SAFETY: the pool gave this block to us alone; loom checks exactly that claim.
            unsafe { *p = owner }
        });
        // SAFETY: as above; nobody else may write the block until we free it.
        assert_eq!(cell.with(|p| unsafe { *p }), owner, "another owner wrote our block");
        Ok(block)
    }

    /// Clears a block we own and frees it.
    pub fn give_back(&self, block: BlockOffset) {
        self.blocks[self.index(block)].with_mut(|p| {
            // SAFETY: we still own the block; it returns to the pool only below.
            unsafe { *p = 0 }
        });
        self.pool().free(block).expect("freeing an owned block succeeds");
    }

    fn index(&self, block: BlockOffset) -> usize {
        ((block.get() - FIRST_BLOCK) / BLOCK_SIZE) as usize
    }
}
