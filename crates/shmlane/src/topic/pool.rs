//! A publisher's payload blocks: the base segment, sized for the topic's `max_slice_len`, and
//! segments added on demand for larger slices, each for one size class (a power-of-two number
//! of elements). A block is named by a [`BlockId`] (pool 0 is the base); a queued value is a
//! [`QueuedBlock`](super::words::QueuedBlock).
//!
//! Per block, private to the publisher: its [`Holders`] (a bit per subscriber slot that has it
//! queued or in hand, and the history mark) and whether it is loaned. A block is free when both
//! are empty.

use std::ptr::NonNull;

use shmlane_segment::{Carver, CreateError, RegionLayout, Segment, SegmentName};
use zerocopy::IntoBytes;

use super::layout::{BLOCK_ALIGN, DATA_HEADER_AT, DATA_MAGIC, DataHeader, TAG_AT, VERSION};
use super::words::{BlockId, Holders, MAX_POOLS};
use super::{DATA_FINGERPRINT, OpenTopic};
use crate::error::PublishError;
use crate::node::Node;

/// Blocks in a pool added for a size class (it adds another when they are all in use).
const GROWTH_BLOCKS: u64 = 2;

/// How a publisher's payload blocks are used ([`Publisher::block_counts`](super::Publisher::block_counts)).
/// Every block is in exactly one of four states, so `free + loaned + held + history == total`
/// unless the accounting is broken (a block lost, or freed twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCounts {
    /// Blocks in every pool (the base pool and those added for large slices).
    pub total: u64,
    /// Blocks on the free lists, ready to be loaned.
    pub free: u64,
    /// Blocks on loan, not yet sent.
    pub loaned: u64,
    /// Blocks queued for or held by at least one subscriber (maybe in the history too).
    pub held: u64,
    /// Blocks kept for the history alone.
    pub history: u64,
}

impl BlockCounts {
    /// Whether every block is counted exactly once.
    pub fn is_consistent(&self) -> bool {
        self.free + self.loaned + self.held + self.history == self.total
    }
}

/// One payload segment and the state of its blocks.
#[derive(Debug)]
struct Pool {
    /// Keeps the mapping `first` points into.
    data: Segment,
    /// The first block in `data`'s mapping; `holders.len()` blocks of `block_size` bytes
    /// follow it, in bounds (checked at creation).
    first: FirstBlock,
    /// The offset of the first block in `data`.
    blocks_at: u64,
    block_size: u64,
    elements_at: u64,
    /// Elements a block holds.
    max_len: u64,
    holders: Vec<Holders>,
    loaned: Vec<bool>,
    free: Vec<u32>,
}

impl Pool {
    /// Starts fetching the first two lines of free block `index` (its header and the start of
    /// its elements) for writing. A block comes back free once the subscribers that read it
    /// return it, so its lines sit in their caches; a loan's first stores would each wait for
    /// a line to come back, one after the other. Fetched now, the lines of the blocks taken
    /// back together travel at once, off the send's path (streams of 64 B to 64 KiB samples:
    /// +17-30%).
    #[inline]
    fn prefetch_for_write(&self, index: usize) {
        self.first_lines(index, |line| self.data.prefetch_write(line));
    }

    /// Moves the first two lines of block `index` (what `prefetch_for_write` fetched: the
    /// header and the first elements) out to the shared cache as the block is sent, so that
    /// each subscriber's first read of it finds them there instead of snooping our core.
    #[inline]
    fn demote(&self, index: usize) {
        self.first_lines(index, |line| self.data.demote(line));
    }

    /// Calls `hint` with the offset of each of block `index`'s first two lines (one if the
    /// block is one line).
    #[inline(always)]
    fn first_lines(&self, index: usize, hint: impl Fn(u64)) {
        let start = self.blocks_at + index as u64 * self.block_size;
        hint(start);
        if self.block_size > 64 {
            hint(start + 64);
        }
    }
}

/// Where a pool's blocks start in its (writable) mapping.
#[derive(Debug)]
struct FirstBlock(NonNull<u8>);

// SAFETY: the pointer leads into the mapping of the `Segment` its `Pool` owns (and `Segment` is
// `Send`); it moves with that pool and is used only through it.
unsafe impl Send for FirstBlock {}

/// Every pool of one publisher.
#[derive(Debug)]
pub(crate) struct Pools {
    pools: Vec<Pool>,
    /// Names payload segments: `{topic's data suffix}` for the base, `.x{pool}` after it.
    suffix: String,
    generation: u32,
}

impl Pools {
    /// Creates the base pool of `blocks` blocks of `max_len` elements.
    pub(crate) fn new(
        topic: &OpenTopic,
        slot: usize,
        generation: u32,
        max_len: u64,
        blocks: u64,
    ) -> Result<Pools, CreateError> {
        let suffix = topic.data_suffix(slot, generation);
        let base = create(topic, &suffix, generation, max_len, blocks)?;
        Ok(Pools { pools: vec![base], suffix, generation })
    }

    /// Removes the payload segments of `generation` of publisher `slot` (a dead holder's).
    pub(crate) fn remove(topic: &OpenTopic, slot: usize, generation: u32) {
        let suffix = topic.data_suffix(slot, generation);
        remove_segment(&topic.node, &suffix);
        for pool in 1..MAX_POOLS {
            if !remove_segment(&topic.node, &format!("{suffix}.x{pool}")) {
                break;
            }
        }
    }

    /// Leaves every payload segment's name in place when the pools drop (samples still queued
    /// name them).
    pub(crate) fn keep_files(&mut self) {
        for pool in &mut self.pools {
            pool.data.set_unlink_on_drop(false);
        }
    }

    /// Removes every payload segment of publisher `slot`, of any generation (listed by name);
    /// returns how many. For a caller that holds the slot's role, so that nobody creates one
    /// meanwhile.
    pub(crate) fn remove_every(topic: &OpenTopic, slot: usize) -> usize {
        let node = &topic.node;
        let prefix = format!("{}.{}.p{slot}.g", node.namespace(), topic.data_prefix());
        let dir = node.root().unwrap_or(std::path::Path::new("/dev/shm"));
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        let mut removed = 0;
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else { continue };
            let Ok(name) = SegmentName::from_file_name(name) else { continue };
            let Some(rest) = name.as_str().strip_prefix(&prefix) else { continue };
            // `{generation}` or `{generation}.x{pool}`: nothing of another slot or service.
            let (generation, pool) = rest.split_once(".x").unwrap_or((rest, "0"));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if digits(generation) && digits(pool) {
                let suffix = &name.as_str()[node.namespace().len() + 1..];
                removed += usize::from(remove_segment(node, suffix));
            }
        }
        removed
    }

    /// Takes a free block for `len` elements and marks it loaned, if one is free (never adds
    /// a pool).
    #[inline]
    pub(crate) fn take_free(&mut self, len: u64) -> Option<BlockId> {
        let p = if len <= self.pools[0].max_len { 0 } else { self.with_free(len)? };
        let pool = &mut self.pools[p];
        let index = pool.free.pop()?;
        pool.loaned[index as usize] = true;
        Some(BlockId::new(p, index))
    }

    /// The pool with a free block for `len` elements, if any: the base pool up to its
    /// `max_len`, else the size-class pool of `len`.
    pub(crate) fn with_free(&self, len: u64) -> Option<usize> {
        if len <= self.pools[0].max_len {
            return (!self.pools[0].free.is_empty()).then_some(0);
        }
        let fits = |p: &Pool| p.max_len >= len && (p.max_len == 1 || p.max_len / 2 < len);
        (1..self.pools.len()).find(|&p| fits(&self.pools[p]) && !self.pools[p].free.is_empty())
    }

    /// A free block for `len` elements (1 ≤ `len`), loaned; adds a pool if none is free.
    pub(crate) fn take(&mut self, topic: &OpenTopic, len: u64) -> Result<BlockId, PublishError> {
        let base_fits = len <= self.pools[0].max_len;
        let found = self.with_free(len).and_then(|p| Some((p, self.pools[p].free.pop()?)));
        let (pool, index) = match found {
            Some(found) => found,
            None if base_fits => return Err(PublishError::OutOfBlocks),
            None => {
                if self.pools.len() >= MAX_POOLS {
                    return Err(PublishError::OutOfBlocks);
                }
                let class = len.checked_next_power_of_two().ok_or(PublishError::OutOfBlocks)?;
                let suffix = format!("{}.x{}", self.suffix, self.pools.len());
                let mut added = create(topic, &suffix, self.generation, class, GROWTH_BLOCKS)
                    .map_err(PublishError::Grow)?;
                let index = added.free.pop().ok_or(PublishError::OutOfBlocks)?;
                self.pools.push(added);
                (self.pools.len() - 1, index)
            }
        };
        self.pools[pool].loaned[index as usize] = true;
        Ok(BlockId::new(pool, index))
    }

    /// Writes `len` (and a zero tag) into `block`'s header and returns a pointer to its
    /// elements. `block` is one of ours, from a pool whose blocks hold `len` elements.
    #[inline]
    pub(crate) fn elements(&self, block: BlockId, len: u64) -> NonNull<u8> {
        let (pool, start) = self.block(block);
        debug_assert!(len <= pool.max_len);
        // SAFETY: the two header words lie at the start of the block (8-aligned: the first
        // block and `block_size` are multiples of 8), which is in bounds and ours (`block`).
        // Written by raw pointer: no reference to shared bytes is formed.
        unsafe { start.cast::<[u64; 2]>().write([len, 0]) };
        // SAFETY: `elements_at + len * element size <= block_size` (`block_geometry`, and
        // `len` fits the pool), so the elements lie in the block, aligned for the element.
        unsafe { start.add(pool.elements_at as usize).cast() }
    }

    /// Hands `block`'s first lines to the shared cache for its subscribers (see
    /// [`Pool::demote`]). `block` must be ours.
    #[inline]
    pub(crate) fn demote(&self, block: BlockId) {
        self.pools[block.pool()].demote(block.index());
    }

    /// Writes `block`'s tag (read back by subscribers) over the zero `elements` wrote.
    #[inline]
    pub(crate) fn set_tag(&self, block: BlockId, tag: u64) {
        let (_, start) = self.block(block);
        // SAFETY: the tag word lies in the block's header, in bounds and 8-aligned (as in
        // `elements`).
        unsafe { start.add(TAG_AT as usize).cast::<u64>().write(tag) };
    }

    /// Writes into the header of the block the next loan of a base-pool sample will take, so
    /// that its cache line is ours (fetched for writing) before that loan: the loan's writes
    /// then do not wait for the line to come back from the subscriber that last read it.
    /// The block is free (no subscriber holds it) and the loan rewrites the header.
    #[inline]
    pub(crate) fn warm_next(&self) {
        let pool = &self.pools[0];
        if let Some(&index) = pool.free.last() {
            let (_, start) = self.block(BlockId::new(0, index));
            // SAFETY: the tag word of a block of ours, in bounds and 8-aligned (as in
            // `elements`); the block is free, so no subscriber reads it.
            unsafe { start.add(TAG_AT as usize).cast::<u64>().write(0) };
        }
    }

    /// `block`'s pool and first byte.
    #[inline]
    fn block(&self, block: BlockId) -> (&Pool, NonNull<u8>) {
        let (pool, index) = (&self.pools[block.pool()], block.index());
        assert!(index < pool.holders.len(), "block {block} is not one of ours");
        // SAFETY: `index` is below the pool's block count, so the block lies in the blocks'
        // extent, which `create` checked lies in the mapping.
        (pool, unsafe { pool.first.0.add(index * pool.block_size as usize) })
    }

    /// Whether `block` names one of our blocks (a value handed back by a peer may not).
    pub(crate) fn contains(&self, block: BlockId) -> bool {
        self.pools.get(block.pool()).is_some_and(|p| block.index() < p.holders.len())
    }

    /// `block`'s holders. `block` must be ours ([`contains`](Self::contains)).
    pub(crate) fn holders(&mut self, block: BlockId) -> &mut Holders {
        &mut self.pools[block.pool()].holders[block.index()]
    }

    /// Ends `block`'s loan.
    pub(crate) fn unloan(&mut self, block: BlockId) {
        self.pools[block.pool()].loaned[block.index()] = false;
    }

    /// Returns `block` to its free list if nobody holds it and it is not loaned.
    pub(crate) fn free_if_unused(&mut self, block: BlockId) {
        let (pool, index) = (&mut self.pools[block.pool()], block.index());
        if pool.holders[index].is_empty() && !pool.loaned[index] {
            pool.free.push(index as u32);
            pool.prefetch_for_write(index);
        }
    }

    /// Removes `holder` from every block, freeing those left unused.
    pub(crate) fn clear_holder(&mut self, holder: Holders) {
        for pool in &mut self.pools {
            for index in 0..pool.holders.len() {
                if pool.holders[index].contains(holder) {
                    pool.holders[index].remove(holder);
                    if pool.holders[index].is_empty() && !pool.loaned[index] {
                        pool.free.push(index as u32);
                    }
                }
            }
        }
    }

    /// Counts the blocks of every pool by state (see [`BlockCounts`]).
    pub(crate) fn counts(&self) -> BlockCounts {
        let mut counts = BlockCounts { total: 0, free: 0, loaned: 0, held: 0, history: 0 };
        for pool in &self.pools {
            counts.total += pool.holders.len() as u64;
            counts.free += pool.free.len() as u64;
            for (&holders, &loaned) in pool.holders.iter().zip(&pool.loaned) {
                if loaned {
                    counts.loaned += 1;
                } else if holders.has_subscriber() {
                    counts.held += 1;
                } else if holders == Holders::HISTORY {
                    counts.history += 1;
                }
            }
        }
        counts
    }
}

/// Creates payload segment `suffix` with `blocks` blocks of `max_len` elements.
fn create(
    topic: &OpenTopic,
    suffix: &str,
    generation: u32,
    max_len: u64,
    blocks: u64,
) -> Result<Pool, CreateError> {
    let too_large = || CreateError::InvalidSize { size: u64::MAX, min: 0, max: 0 };
    let max_len32 = u32::try_from(max_len).map_err(|_| too_large())?;
    let element = topic.element;
    let (elements_at, block_size) = element.block_geometry(max_len32).ok_or_else(too_large)?;
    let mut carver = Carver::new();
    let header_layout = RegionLayout { size: size_of::<DataHeader>() as u64, align: 64 };
    let header_region = carver.place(header_layout).map_err(|_| too_large())?;
    debug_assert_eq!(header_region.offset, DATA_HEADER_AT);
    let size = block_size.checked_mul(blocks).ok_or_else(too_large)?;
    let payload = RegionLayout { size, align: element.align.max(BLOCK_ALIGN) };
    let blocks_region = carver.place(payload).map_err(|_| too_large())?;
    let header = DataHeader {
        magic: DATA_MAGIC,
        version: VERSION,
        generation,
        type_fingerprint: topic.type_fingerprint,
        block_size,
        blocks,
        blocks_at: blocks_region.offset,
        max_len,
    };
    let build = || {
        topic
            .node
            .segment(suffix)
            .fingerprint(DATA_FINGERPRINT)
            .size(carver.total_size())
            .populate(true)
            .create_with(|s| {
                s.write_bytes(header_region.offset, header.as_bytes())?;
                Ok(())
            })
    };
    let data = match build() {
        // Left by a holder that died between creating it and publishing its generation.
        Err(CreateError::AlreadyExists { .. }) => {
            remove_segment(&topic.node, suffix);
            build()?
        }
        other => other?,
    };
    let count = blocks as usize;
    let first = data.ptr(blocks_region.offset, size, 8).map_err(|_| too_large())?;
    Ok(Pool {
        first: FirstBlock(first),
        blocks_at: blocks_region.offset,
        data,
        block_size,
        elements_at,
        max_len,
        holders: vec![Holders::NONE; count],
        loaned: vec![false; count],
        free: (0..blocks as u32).rev().collect(),
    })
}

/// Removes segment `{namespace}.{suffix}`; whether it existed.
fn remove_segment(node: &Node, suffix: &str) -> bool {
    let name = format!("{}.{suffix}", node.namespace());
    let Ok(name) = SegmentName::new(&name) else { return false };
    match node.root() {
        Some(dir) => shmlane_segment::remove_in(dir, &name).is_ok(),
        None => shmlane_segment::remove(&name).is_ok(),
    }
}
