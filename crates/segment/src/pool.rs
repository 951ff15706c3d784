//! A lock-free pool of fixed-size blocks inside a segment, shared by many processes.
//!
//! Layout of a pool region (offsets from the region start; the region is aligned to
//! `max(128, block_align)`):
//!
//! | offset            | content                                                        |
//! |-------------------|----------------------------------------------------------------|
//! | 0                 | [`PoolDescriptor`]: magic, version, block size/align/count     |
//! | 128               | `free_head`: `AtomicU64` on its own cache line (`CachePadded`) |
//! | `LINKS_AT`        | `links[count]`: `AtomicU32`, next free block (or `NIL`)        |
//! | after links       | `states[count]`: `AtomicU32`, `FREE` (0) or `ALLOCATED` (1)    |
//! | `blocks`          | `count` blocks of `block_size` bytes, aligned to `block_align` |
//!
//! The free list is a Treiber stack. Its head packs two halves into one `AtomicU64`:
//!
//! ```text
//!  63            32 31             0
//! +----------------+----------------+
//! |  tag (ABA)     |  block index   |   index == NIL (u32::MAX): the list is empty
//! +----------------+----------------+
//! ```
//!
//! Every successful CAS on the head increments the tag, so a thread that read `index` and its
//! link and was then preempted while others popped and pushed that block back fails its CAS
//! instead of installing a stale link (ABA). The tag wraps after 2^32 operations; a thread
//! would have to stall across exactly that many to be fooled.
//!
//! Each block's state word makes misuse an error instead of corruption: `free` moves it from
//! `ALLOCATED` to `FREE` with a CAS, so a second `free` of the same block fails with
//! [`FreeError::DoubleFree`], and `alloc` checks that a popped block was `FREE`.
//!
//! Everything read from shared memory is validated before use: an index from the head or a
//! link must be `NIL` or below `count`, an offset handed to `free` must name a block start.
//! A corrupted pool gives [`AllocError::Corrupted`], never an out-of-bounds access.
//!
//! Progress: `alloc` and `free` are lock-free (one CAS each; a failed CAS means another
//! operation succeeded). A process killed inside `alloc` after its CAS but before returning
//! leaks that block (it is `ALLOCATED` and owned by nobody); a process killed inside `free`
//! after marking the block `FREE` but before the push leaks it too. No kill wedges the pool;
//! reclaiming leaked blocks is the job of the layer that knows their owners.

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::offset::{LayoutError, RegionLayout, align_up};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// "No block": the empty free list, and the end of the chain.
const NIL: u32 = u32::MAX;
const FREE: u32 = 0;
const ALLOCATED: u32 = 1;

/// Where the head sits in a pool region.
const HEAD_AT: u64 = 128;
/// Where the link array starts: after the padded head.
const LINKS_AT: u64 = HEAD_AT + size_of::<CachePadded<AtomicU64>>() as u64;

fn pack(tag: u32, index: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

/// A block's offset from the start of its segment: what travels between processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockOffset(u64);

impl BlockOffset {
    /// Wraps an offset received from another process; [`BlockPool::free`] validates it.
    pub const fn from_raw(offset: u64) -> Self {
        BlockOffset(offset)
    }

    /// The byte offset from the segment start.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The same offset, typed for [`Segment::get`](crate::Segment::get).
    pub const fn typed<T>(self) -> crate::Offset<T> {
        crate::Offset::new(self.0)
    }
}

/// Why a pool could not be laid out, initialised or attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Block size, alignment or count is unusable.
    #[error("invalid pool configuration: {0}")]
    BadConfig(&'static str),
    /// The layout overflows.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The region given is smaller than the pool needs, or misaligned.
    #[error(
        "the pool needs {needed} bytes aligned to {align}, but the region at {offset:#x} has \
         {len}: place it with `BlockPool::layout`"
    )]
    BadRegion {
        /// Bytes needed.
        needed: u64,
        /// Alignment needed.
        align: u64,
        /// Region offset.
        offset: u64,
        /// Region length.
        len: u64,
    },
    /// The region is outside the segment, or the segment is read-only.
    #[error("cannot use the pool region: {0}")]
    Offset(#[from] crate::OffsetError),
    /// The descriptor's magic is wrong: no pool was initialised here.
    #[error("no block pool at this offset (bad magic): initialise it with `BlockPool::init_in`")]
    BadMagic,
    /// The descriptor was written by another pool format.
    #[error("pool format version {0} is not supported: use the same shmlane version everywhere")]
    UnsupportedVersion(u32),
    /// The descriptor's fields are inconsistent (for example a count larger than the region).
    #[error("the pool descriptor is corrupt: {0}")]
    Corrupt(&'static str),
}

/// Why `alloc` returned no block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Every block is in use.
    #[error("all {capacity} blocks are in use: free some, or create a larger pool")]
    Exhausted {
        /// Blocks in the pool.
        capacity: u32,
    },
    /// The shared free list holds an impossible value; the pool must be recreated.
    #[error("the pool's free list is corrupt ({0}); recreate the segment")]
    Corrupted(&'static str),
}

/// Why `free` refused an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FreeError {
    /// The offset is not the start of a block of this pool.
    #[error("offset {0:#x} is not a block of this pool: it is corrupt or from another pool")]
    Foreign(u64),
    /// The block is already free.
    #[error("block at offset {0:#x} is already free (double free)")]
    DoubleFree(u64),
    /// The block's state word holds an impossible value.
    #[error("block at offset {0:#x} has a corrupt state word; recreate the segment")]
    Corrupted(u64),
}

/// A snapshot of pool usage (racy under concurrent use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Blocks in the pool.
    pub capacity: u32,
    /// Blocks currently allocated.
    pub allocated: u32,
}

/// A view of a block pool: the shared atomics plus the geometry, validated once.
pub struct BlockPool<'a> {
    free_head: &'a AtomicU64,
    links: &'a [AtomicU32],
    states: &'a [AtomicU32],
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
        BlockOffset(self.first_block + u64::from(index) * self.block_size)
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
fn check_geometry(block_size: u64, count: u64) -> Result<(), PoolError> {
    if block_size == 0 {
        return Err(PoolError::BadConfig("block size is zero"));
    }
    if count == 0 || count >= u64::from(NIL) {
        return Err(PoolError::BadConfig("block count must be between 1 and 2^32 - 2"));
    }
    Ok(())
}

/// Where everything of a pool lies, relative to the pool region's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    block_size: u64,
    block_align: u64,
    count: u64,
    states_at: u64,
    blocks_at: u64,
    size: u64,
}

impl Geometry {
    fn new(block_size: u64, block_align: u64, count: u64) -> Result<Geometry, PoolError> {
        check_geometry(block_size, count)?;
        if !block_align.is_power_of_two() || block_align > 1 << 21 {
            return Err(PoolError::BadConfig("block alignment must be a power of two up to 2 MiB"));
        }
        if !block_size.is_multiple_of(block_align) {
            return Err(PoolError::BadConfig(
                "block size must be a multiple of the block alignment",
            ));
        }
        let overflow = PoolError::Layout(LayoutError::Overflow);
        let words = count.checked_mul(4).ok_or(overflow.clone())?;
        let states_at = LINKS_AT.checked_add(words).ok_or(overflow.clone())?;
        let blocks_at =
            align_up(states_at.checked_add(words).ok_or(overflow.clone())?, block_align)?;
        let size = count
            .checked_mul(block_size)
            .and_then(|bytes| blocks_at.checked_add(bytes))
            .ok_or(overflow)?;
        Ok(Geometry { block_size, block_align, count, states_at, blocks_at, size })
    }

    fn layout(&self) -> RegionLayout {
        RegionLayout { size: self.size, align: self.block_align.max(128) }
    }
}

impl BlockPool<'_> {
    /// The region a pool of `count` blocks of `block_size` bytes (aligned to `block_align`)
    /// needs; place it with a [`Carver`](crate::Carver).
    pub fn layout(
        block_size: u64,
        block_align: u64,
        count: u32,
    ) -> Result<RegionLayout, PoolError> {
        Geometry::new(block_size, block_align, u64::from(count)).map(|g| g.layout())
    }
}

#[cfg(not(feature = "loom"))]
mod in_segment {
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    use super::*;
    use crate::{Offset, Region, Segment};

    const POOL_MAGIC: [u8; 8] = *b"SHMLPOOL";
    const POOL_VERSION: u32 = 1;

    /// The pool's descriptor at the start of its region, read by copy and validated.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
    pub(super) struct PoolDescriptor {
        magic: [u8; 8],
        version: u32,
        count: u32,
        block_size: u64,
        block_align: u64,
        reserved: [u64; 4],
    }

    const _: () = assert!(size_of::<PoolDescriptor>() as u64 <= HEAD_AT);

    impl<'s> BlockPool<'s> {
        /// Writes a fresh pool into `region` of a segment being created (inside
        /// [`SegmentBuilder::create_with`](crate::SegmentBuilder::create_with)).
        pub fn init_in(
            segment: &'s Segment,
            region: Region,
            block_size: u64,
            block_align: u64,
            count: u32,
        ) -> Result<Self, PoolError> {
            let geometry = Geometry::new(block_size, block_align, u64::from(count))?;
            let descriptor = PoolDescriptor {
                magic: POOL_MAGIC,
                version: POOL_VERSION,
                count,
                block_size,
                block_align,
                reserved: [0; 4],
            };
            check_region(&geometry, region)?;
            segment.write_bytes(region.offset, descriptor.as_bytes())?;
            let pool = view(segment, region, &geometry)?;
            BlockPool::format(pool.free_head, pool.links, pool.states);
            Ok(pool)
        }

        /// Attaches to a pool another process initialised, validating its descriptor against
        /// the region before touching anything else.
        pub fn attach(segment: &'s Segment, region: Region) -> Result<Self, PoolError> {
            let mut bytes = [0u8; size_of::<PoolDescriptor>()];
            segment.read_bytes(region.offset, &mut bytes)?;
            let descriptor = PoolDescriptor::read_from_bytes(&bytes)
                .map_err(|_| PoolError::Corrupt("descriptor unreadable"))?;
            if descriptor.magic != POOL_MAGIC {
                return Err(PoolError::BadMagic);
            }
            if descriptor.version != POOL_VERSION {
                return Err(PoolError::UnsupportedVersion(descriptor.version));
            }
            if descriptor.reserved != [0; 4] {
                return Err(PoolError::Corrupt("reserved descriptor bytes are not zero"));
            }
            let geometry = Geometry::new(
                descriptor.block_size,
                descriptor.block_align,
                u64::from(descriptor.count),
            )
            .map_err(|_| PoolError::Corrupt("block size, alignment or count is invalid"))?;
            if geometry.size > region.len {
                return Err(PoolError::Corrupt("the block count does not fit in the region"));
            }
            check_region(&geometry, region)?;
            view(segment, region, &geometry)
        }
    }

    fn check_region(geometry: &Geometry, region: Region) -> Result<(), PoolError> {
        let layout = geometry.layout();
        if region.len < layout.size || !region.offset.is_multiple_of(layout.align) {
            return Err(PoolError::BadRegion {
                needed: layout.size,
                align: layout.align,
                offset: region.offset,
                len: region.len,
            });
        }
        Ok(())
    }

    /// Resolves the pool's atomics; every offset is checked against the segment.
    fn view<'s>(
        segment: &'s Segment,
        region: Region,
        geometry: &Geometry,
    ) -> Result<BlockPool<'s>, PoolError> {
        let at = |relative: u64| region.offset.checked_add(relative).ok_or(LayoutError::Overflow);
        let free_head = segment.get(Offset::<CachePadded<AtomicU64>>::new(at(HEAD_AT)?))?;
        let links = segment.get_slice(Offset::<AtomicU32>::new(at(LINKS_AT)?), geometry.count)?;
        let states =
            segment.get_slice(Offset::<AtomicU32>::new(at(geometry.states_at)?), geometry.count)?;
        let first_block = at(geometry.blocks_at)?;
        // The blocks themselves must lie inside the segment too.
        let end = first_block.checked_add(geometry.count * geometry.block_size);
        if end.is_none_or(|end| end > segment.len()) {
            return Err(PoolError::Corrupt("the blocks extend beyond the segment"));
        }
        BlockPool::from_parts(free_head, links, states, first_block, geometry.block_size)
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    fn heap_pool(count: usize) -> (AtomicU64, Vec<AtomicU32>, Vec<AtomicU32>) {
        let head = AtomicU64::new(0);
        let links: Vec<_> = (0..count).map(|_| AtomicU32::new(0)).collect();
        let states: Vec<_> = (0..count).map(|_| AtomicU32::new(0)).collect();
        BlockPool::format(&head, &links, &states);
        (head, links, states)
    }

    #[test]
    fn hands_out_every_block_once_then_reports_exhaustion() {
        let (head, links, states) = heap_pool(4);
        let pool = BlockPool::from_parts(&head, &links, &states, 4096, 64).unwrap();
        let mut got: Vec<_> = (0..4).map(|_| pool.alloc().unwrap().get()).collect();
        got.sort();
        assert_eq!(got, [4096, 4160, 4224, 4288]);
        assert_eq!(pool.alloc(), Err(AllocError::Exhausted { capacity: 4 }));
        assert_eq!(pool.stats(), PoolStats { capacity: 4, allocated: 4 });
    }

    #[test]
    fn rejects_foreign_offsets_and_double_frees() {
        let (head, links, states) = heap_pool(2);
        let pool = BlockPool::from_parts(&head, &links, &states, 4096, 64).unwrap();
        let block = pool.alloc().unwrap();
        assert_eq!(pool.free(BlockOffset::from_raw(4097)), Err(FreeError::Foreign(4097)));
        assert_eq!(pool.free(BlockOffset::from_raw(0)), Err(FreeError::Foreign(0)));
        assert_eq!(pool.free(BlockOffset::from_raw(4096 + 128)), Err(FreeError::Foreign(4224)));
        assert_eq!(pool.free(BlockOffset::from_raw(u64::MAX)), Err(FreeError::Foreign(u64::MAX)));
        pool.free(block).unwrap();
        assert_eq!(pool.free(block), Err(FreeError::DoubleFree(block.get())));
    }

    #[test]
    fn a_corrupted_head_or_link_is_an_error_not_an_access() {
        let (head, links, states) = heap_pool(2);
        let pool = BlockPool::from_parts(&head, &links, &states, 4096, 64).unwrap();
        head.store(pack(7, 5), Ordering::Relaxed);
        assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))));
        head.store(pack(7, 0), Ordering::Relaxed);
        links[0].store(1000, Ordering::Relaxed);
        assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))));
        links[0].store(NIL, Ordering::Relaxed);
        states[0].store(ALLOCATED, Ordering::Relaxed);
        assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))));
        states[1].store(77, Ordering::Relaxed);
        assert_eq!(pool.free(BlockOffset::from_raw(4160)), Err(FreeError::Corrupted(4160)));
    }

    #[test]
    fn geometry_refuses_impossible_configurations() {
        assert!(BlockPool::layout(0, 8, 1).is_err());
        assert!(BlockPool::layout(64, 8, 0).is_err());
        assert!(BlockPool::layout(64, 3, 1).is_err());
        assert!(BlockPool::layout(60, 8, 1).is_err());
        assert!(BlockPool::layout(u64::MAX / 2, 1, 4).is_err());
        let layout = BlockPool::layout(64, 64, 10).unwrap();
        assert_eq!(layout.align, 128);
        assert!(layout.size >= LINKS_AT + 80 + 640);
    }
}
