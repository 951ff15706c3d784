//! The block pool over heap memory: `BlockPool::format` and `from_parts` on heap atomics, its
//! blocks a heap buffer laid out with a `Carver` and addressed through `Region::offset_of`, as a
//! segment's are. No segment is mapped, so these tests also run under Miri (`.ci/run`), which
//! cannot map one (no `shm_open`, `memfd_create` or file-backed `mmap`).
//!
//! The blocks' words are plain memory, written and read without synchronisation of their own:
//! only the pool's hand-over (the Release CAS in `free`, the Acquire CAS in `alloc`) orders one
//! owner's accesses before the next owner's, so under Miri a hand-over that failed to do so is
//! a data race that Miri reports.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::thread;

use shmlane_segment::{
    AllocError, BlockOffset, BlockPool, Carver, FreeError, HEADER_SIZE, PoolStats, Region,
    RegionLayout,
};

/// Bytes per block.
const BLOCK_SIZE: u64 = 64;
/// Words per block.
const WORDS: u64 = BLOCK_SIZE / 8;

/// A pool's shared words, on the heap, formatted (every block free).
struct PoolWords {
    head: AtomicU64,
    links: Vec<AtomicU32>,
    states: Vec<AtomicU32>,
}

impl PoolWords {
    fn new(count: usize) -> PoolWords {
        let words = PoolWords {
            head: AtomicU64::new(0),
            links: (0..count).map(|_| AtomicU32::new(0)).collect(),
            states: (0..count).map(|_| AtomicU32::new(0)).collect(),
        };
        BlockPool::format(&words.head, &words.links, &words.states);
        words
    }

    /// A view whose blocks are those of `blocks`.
    fn view(&self, blocks: &Blocks) -> BlockPool<'_> {
        let first_block = blocks.region.offset;
        BlockPool::from_parts(&self.head, &self.links, &self.states, first_block, BLOCK_SIZE)
            .unwrap()
    }
}

/// The blocks' bytes: a heap buffer of plain words standing for the region of a segment where
/// the blocks lie, indexed by segment offset.
struct Blocks {
    region: Region,
    words: Box<[UnsafeCell<u64>]>,
}

// SAFETY: a block's words are accessed only by the thread the pool handed that block to (the
// pool's contract, which these tests check: under Miri a violation is a reported data race).
unsafe impl Sync for Blocks {}

impl Blocks {
    /// Places `count` blocks after the header with a `Carver`, as a segment's layout would.
    fn new(count: u64) -> Blocks {
        let mut carver = Carver::new();
        // Something before the blocks, so they do not start right after the header.
        carver.place(RegionLayout { size: 24, align: 8 }).unwrap();
        let region = carver.place(RegionLayout { size: count * BLOCK_SIZE, align: 64 }).unwrap();
        assert!(region.offset >= HEADER_SIZE && region.offset.is_multiple_of(64));
        assert_eq!(carver.total_size(), region.end().unwrap());
        let words = (0..count * WORDS).map(|_| UnsafeCell::new(0)).collect();
        Blocks { region, words }
    }

    /// Word `i` of `block`, resolved through the region (bounds-checked, typed offset).
    fn word(&self, block: BlockOffset, i: u64) -> *mut u64 {
        let within = block.get().checked_sub(self.region.offset).expect("block before region");
        let offset = self.region.offset_of::<u64>(within + 8 * i).expect("word outside region");
        // The block's typed offset names its first byte.
        assert_eq!(block.typed::<[u8; BLOCK_SIZE as usize]>().get(), block.get());
        self.words[((offset.get() - self.region.offset) / 8) as usize].get()
    }

    /// Fills `block` with `value`; the caller owns the block.
    fn fill(&self, block: BlockOffset, value: u64) {
        for i in 0..WORDS {
            // SAFETY: the block is ours (handed out by the pool, not yet freed): no other
            // thread accesses its words.
            unsafe { self.word(block, i).write(value) };
        }
    }

    /// The one value `block` holds in every word; panics if its words differ (a torn
    /// hand-over, or overlapping blocks). The caller owns the block.
    fn value(&self, block: BlockOffset) -> u64 {
        // SAFETY: as in `fill`.
        let words: Vec<u64> = (0..WORDS).map(|i| unsafe { self.word(block, i).read() }).collect();
        assert!(words.iter().all(|&w| w == words[0]), "block {block:?} is torn: {words:?}");
        words[0]
    }
}

#[test]
fn every_block_lies_in_the_region_and_is_handed_out_once() {
    const COUNT: u64 = 5;
    let blocks = Blocks::new(COUNT);
    let words = PoolWords::new(COUNT as usize);
    let pool = words.view(&blocks);
    assert_eq!((pool.capacity(), pool.block_size()), (COUNT as u32, BLOCK_SIZE));

    let taken: Vec<BlockOffset> = (0..COUNT).map(|_| pool.alloc().unwrap()).collect();
    assert_eq!(pool.alloc(), Err(AllocError::Exhausted { capacity: COUNT as u32 }));
    assert_eq!(pool.stats(), PoolStats { capacity: COUNT as u32, allocated: COUNT as u32 });
    // Every block is inside the region, and no two overlap: each keeps what was written to it.
    for (n, &block) in taken.iter().enumerate() {
        assert!(pool.contains(block));
        assert_eq!((block.get() - blocks.region.offset) % BLOCK_SIZE, 0);
        blocks.fill(block, 100 + n as u64);
    }
    for (n, &block) in taken.iter().enumerate() {
        assert_eq!(blocks.value(block), 100 + n as u64);
    }

    // Offsets that are not blocks of this pool are refused, and so is a second free.
    let first = blocks.region.offset;
    for foreign in [0, first - BLOCK_SIZE, first + 8, blocks.region.end().unwrap(), u64::MAX] {
        assert!(!pool.contains(BlockOffset::from_raw(foreign)));
        assert_eq!(pool.free(BlockOffset::from_raw(foreign)), Err(FreeError::Foreign(foreign)));
    }
    pool.free(taken[2]).unwrap();
    assert_eq!(pool.free(taken[2]), Err(FreeError::DoubleFree(taken[2].get())));
    // The freed block comes back next (the free list is a stack), with its contents intact.
    assert_eq!(pool.alloc(), Ok(taken[2]));
    assert_eq!(blocks.value(taken[2]), 102);
    for &block in &taken {
        pool.free(block).unwrap();
    }
    assert_eq!(pool.stats().allocated, 0);
}

#[test]
fn threads_hand_blocks_to_each_other_only_through_the_pool() {
    // Fewer blocks than threads, so threads wait for each other's blocks and find the pool
    // exhausted. Under Miri a few dozen rounds per thread: every block changes hands many
    // times, and Miri checks each hand-over.
    const THREADS: u64 = if cfg!(miri) { 3 } else { 4 };
    const ROUNDS: u64 = if cfg!(miri) { 40 } else { 20_000 };
    const COUNT: u64 = 2;
    let blocks = Blocks::new(COUNT);
    let words = PoolWords::new(COUNT as usize);
    let pool = words.view(&blocks);

    thread::scope(|scope| {
        for thread in 1..=THREADS {
            let (pool, blocks) = (&pool, &blocks);
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    let block = loop {
                        match pool.alloc() {
                            Ok(block) => break block,
                            Err(AllocError::Exhausted { .. }) => thread::yield_now(),
                            Err(corrupt) => panic!("{corrupt}"),
                        }
                    };
                    // Whole values of a previous owner (or the initial zeros).
                    let before = blocks.value(block);
                    let (owner, owner_round) = (before >> 32, before & 0xffff_ffff);
                    assert!(before == 0 || (owner <= THREADS && owner_round < ROUNDS));
                    let value = (thread << 32) | round;
                    blocks.fill(block, value);
                    thread::yield_now();
                    assert_eq!(blocks.value(block), value, "block {block:?} changed under us");
                    pool.free(block).unwrap();
                }
            });
        }
    });
    assert_eq!(pool.stats(), PoolStats { capacity: COUNT as u32, allocated: 0 });
    // Every block is back on the free list, each once.
    let mut again: Vec<u64> = (0..COUNT).map(|_| pool.alloc().unwrap().get()).collect();
    again.sort();
    let first = blocks.region.offset;
    assert_eq!(again, (0..COUNT).map(|i| first + i * BLOCK_SIZE).collect::<Vec<_>>());
}
