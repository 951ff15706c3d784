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

use crossbeam_utils::CachePadded;

use crate::offset::{LayoutError, RegionLayout, align_up};
use crate::sync::{self, AtomicU32, AtomicU64};

mod free_list;

pub use free_list::BlockPool;
use free_list::check_geometry;

/// Where the head sits in a pool region.
const HEAD_AT: u64 = 128;
/// Where the link array starts: after the padded head.
const LINKS_AT: u64 = HEAD_AT + size_of::<CachePadded<AtomicU64>>() as u64;

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

#[cfg(test)]
mod tests {
    use super::free_list::{ALLOCATED, NIL, pack};
    use super::*;
    use crate::sync::Ordering;

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
