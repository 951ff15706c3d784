//! The transports that live in one shared segment per payload size, built from bare atomics
//! and from shmlane's lower layers:
//!
//! - `cacheline`: one `AtomicU64` each way on its own cache line, busy polled: the floor any
//!   shared-memory transport pays. Payloads over 8 bytes are copied into a shared buffer
//!   before the store and out of it after the load (a by-copy shared-memory channel).
//! - `cacheline-block`: one `AtomicU64` each way that names one of [`BLOCKS`] blocks, each on
//!   its own cache-line pair, whose first word holds the message: the sender writes it in
//!   place, the receiver reads it in place once the word names it. Two dependent lines per
//!   message, whatever the payload size: the floor under a queue slot that names a loaned
//!   block. As shmlane's publisher does, the sender hands the sent block's line to the shared
//!   cache (CLDEMOTE, where the CPU has it) and writes into the next block right after
//!   sending (`warm_next`), so that its line is ours before the next message.
//! - `futex`: the same words and buffers, with a raw `FUTEX_WAIT` / `FUTEX_WAKE` (no
//!   private flag) on every message: the kernel's cross-process wake-up, no shmlane code.
//! - `shmlane-spsc`: shmlane's SPSC queue in the segment, busy polled. An 8-byte payload is
//!   the queued value itself; a larger one is a block of a `BlockPool` in the same segment,
//!   loaned (allocated), written in place, and its offset queued: the receiver reads it in
//!   place and frees it (zero copy).

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_utils::CachePadded;
use rustix::io::Errno;
use rustix::thread::futex;
use shmlane_queue::spsc::{self, SharedSpsc};
use shmlane_segment::{
    BlockOffset, BlockPool, Carver, Fingerprint, Offset, Region, RegionLayout, Segment, SharedView,
};

use super::link::{HANG, Link, LinkError, Side, expect_seq, spin_until};

/// How deep the `shmlane-spsc` transport is: slots per queue and blocks of its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Slots of each SPSC queue.
    pub queue: u64,
    /// Blocks of the pool (payloads over 8 bytes): every slot's, plus slack.
    pub pool: u32,
}

/// A ping-pong has one message in flight each way.
pub const PING_PONG: Depth = Depth { queue: 4, pool: 8 };
/// A stream keeps the queue full (256 slots, as the pub/sub subscriber's capacity); a block
/// may also be in the producer's hands and one in the consumer's.
pub const STREAM: Depth = Depth { queue: 256, pool: 256 + 8 };
/// How long one futex wait sleeps before the deadline is checked again.
const FUTEX_RECHECK: futex::Timespec = futex::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };

/// Blocks of the `cacheline-block` transport, each way: a ping-pong has one in flight, and
/// the peer is done with the others.
const BLOCKS: usize = 4;

/// The words of the `cacheline`, `cacheline-block` and `futex` transports, one cache line each.
#[repr(C)]
struct Lanes {
    /// `cacheline`: the last sequence number sent each way.
    words: [CachePadded<AtomicU64>; 2],
    /// `cacheline-block`: the last sequence number sent each way, which names its block.
    naming: [CachePadded<AtomicU64>; 2],
    /// `cacheline-block`: each way's blocks (their first words).
    blocks: [[CachePadded<AtomicU64>; BLOCKS]; 2],
    /// `futex`: the last sequence number (low 32 bits) sent each way.
    futexes: [CachePadded<AtomicU32>; 2],
}

// SAFETY: a `#[repr(C)]` aggregate of atomics and padding: every bit pattern is valid and every
// access is atomic.
unsafe impl SharedView for Lanes {}

/// The pool's block alignment: the largest power of two that divides `payload`, up to a
/// cache-line pair.
fn block_align(payload: u64) -> u64 {
    (payload & payload.wrapping_neg()).min(128)
}

/// Where everything lies in a phase segment; both processes compute it from the payload size.
#[derive(Debug)]
struct Map {
    lanes: Offset<Lanes>,
    /// The copy buffers, one per direction (payloads over 8 bytes).
    buffers: Option<[u64; 2]>,
    queues: [Region; 2],
    /// The SPSC transport's pool of payload blocks (payloads over 8 bytes).
    pool: Option<Region>,
    size: u64,
}

impl Map {
    fn new(payload: u64, depth: Depth) -> Result<Map, String> {
        let mut carver = Carver::new();
        let mut place = |layout| carver.place(layout).map_err(|e| format!("layout: {e}"));
        let lanes = place(RegionLayout { size: size_of::<Lanes>() as u64, align: 128 })?;
        let copies = payload > 8;
        let buffers = if copies {
            let buffer = RegionLayout { size: payload, align: 128 };
            Some([place(buffer)?.offset, place(buffer)?.offset])
        } else {
            None
        };
        let queue = SharedSpsc::<u64>::layout(depth.queue).map_err(|e| e.to_string())?;
        let queues = [place(queue)?, place(queue)?];
        let pool = if copies {
            let pool = BlockPool::layout(payload, block_align(payload), depth.pool)
                .map_err(|e| e.to_string())?;
            Some(place(pool)?)
        } else {
            None
        };
        let lanes = lanes.offset_of(0).map_err(|e| e.to_string())?;
        Ok(Map { lanes, buffers, queues, pool, size: carver.total_size() })
    }
}

/// The queues' recorded element contract.
const QUEUE_FINGERPRINT: Fingerprint = Fingerprint::new("shmlane-cli.bench.spsc").with_u64(1);

/// One payload size's shared segment, created by the initiator and opened by the echo side.
#[derive(Debug)]
pub struct PhaseSegment {
    segment: Segment,
    map: Map,
    payload: u64,
}

impl PhaseSegment {
    fn fingerprint(payload: u64, depth: Depth) -> Fingerprint {
        Fingerprint::new("shmlane-cli.bench.phase")
            .with_u64(payload)
            .with_u64(depth.queue)
            .with_u64(depth.pool.into())
    }

    /// Creates the segment `name` for `payload`-byte messages (initiator).
    pub fn create(name: &str, payload: u64, depth: Depth) -> Result<Self, String> {
        let map = Map::new(payload, depth)?;
        let segment = Segment::builder(name)
            .size(map.size)
            .populate(true)
            .fingerprint(Self::fingerprint(payload, depth))
            .create_with(|segment| {
                for queue in map.queues {
                    SharedSpsc::<u64>::init_in(segment, queue, depth.queue, QUEUE_FINGERPRINT)?;
                }
                if let Some(pool) = map.pool {
                    BlockPool::init_in(segment, pool, payload, block_align(payload), depth.pool)?;
                }
                Ok(())
            })
            .map_err(|e| format!("create segment {name}: {e}"))?;
        Ok(PhaseSegment { segment, map, payload })
    }

    /// Opens the segment `name` the initiator created for `payload`-byte messages (echo side).
    pub fn open(name: &str, payload: u64, depth: Depth) -> Result<Self, String> {
        let map = Map::new(payload, depth)?;
        let segment = Segment::builder(name)
            .fingerprint(Self::fingerprint(payload, depth))
            .open_timeout(HANG)
            .open()
            .map_err(|e| format!("open segment {name}: {e}"))?;
        Ok(PhaseSegment { segment, map, payload })
    }

    fn lanes(&self) -> Result<&Lanes, LinkError> {
        self.segment.get(self.map.lanes).map_err(|e| LinkError::shmlane("lanes", e))
    }

    fn copier(&self, side: Side) -> Option<Copier<'_>> {
        self.map.buffers.map(|buffers| Copier {
            segment: &self.segment,
            outbound: buffers[side.outbound()],
            inbound: buffers[side.inbound()],
            local: vec![0; self.payload as usize],
        })
    }

    /// `side`'s end of the `cacheline` transport.
    pub fn cacheline(&self, side: Side) -> Result<Box<dyn Link + '_>, LinkError> {
        let lanes = self.lanes()?;
        Ok(Box::new(Cacheline {
            outbound: &lanes.words[side.outbound()],
            inbound: &lanes.words[side.inbound()],
            copier: self.copier(side),
        }))
    }

    /// `side`'s end of the `cacheline-block` transport.
    pub fn cacheline_block(&self, side: Side) -> Result<Box<dyn Link + '_>, LinkError> {
        let lanes = self.lanes()?;
        Ok(Box::new(CachelineBlock {
            outbound: &lanes.naming[side.outbound()],
            inbound: &lanes.naming[side.inbound()],
            outbound_blocks: &lanes.blocks[side.outbound()],
            inbound_blocks: &lanes.blocks[side.inbound()],
        }))
    }

    /// `side`'s end of the `futex` transport.
    pub fn futex(&self, side: Side) -> Result<Box<dyn Link + '_>, LinkError> {
        let lanes = self.lanes()?;
        Ok(Box::new(Futex {
            outbound: &lanes.futexes[side.outbound()],
            inbound: &lanes.futexes[side.inbound()],
            copier: self.copier(side),
        }))
    }

    /// `side`'s end of the `shmlane-spsc` transport.
    pub fn spsc(&self, side: Side) -> Result<Box<dyn Link + '_>, LinkError> {
        let attach = |direction: usize| {
            SharedSpsc::<u64>::attach(&self.segment, self.map.queues[direction], QUEUE_FINGERPRINT)
                .map_err(|e| LinkError::shmlane("attach a queue", e))
        };
        let producer = attach(side.outbound())?
            .producer()
            .map_err(|e| LinkError::shmlane("claim the producer role", e))?;
        let consumer = attach(side.inbound())?
            .consumer()
            .map_err(|e| LinkError::shmlane("claim the consumer role", e))?;
        let pool = match self.map.pool {
            Some(region) => Some(
                BlockPool::attach(&self.segment, region)
                    .map_err(|e| LinkError::shmlane("attach the pool", e))?,
            ),
            None => None,
        };
        Ok(Box::new(Spsc { segment: &self.segment, producer, consumer, pool }))
    }
}

/// The copy of a payload through a shared buffer, for the by-copy transports.
struct Copier<'s> {
    segment: &'s Segment,
    outbound: u64,
    inbound: u64,
    /// This process's copy of the message.
    local: Vec<u8>,
}

impl Copier<'_> {
    /// Writes message `seq` (the local copy, stamped with `seq`) into the outbound buffer.
    fn copy_out(&mut self, seq: u64) -> Result<(), LinkError> {
        self.local[..8].copy_from_slice(&seq.to_ne_bytes());
        self.segment
            .write_bytes(self.outbound, &self.local)
            .map_err(|e| LinkError::shmlane("copy", e))
    }

    /// Copies the inbound buffer into the local copy and checks it is message `seq`.
    fn copy_in(&mut self, seq: u64) -> Result<(), LinkError> {
        self.segment
            .read_bytes(self.inbound, &mut self.local)
            .map_err(|e| LinkError::shmlane("copy", e))?;
        let mut stamp = [0; 8];
        stamp.copy_from_slice(&self.local[..8]);
        expect_seq(seq, u64::from_ne_bytes(stamp))
    }
}

struct Cacheline<'s> {
    outbound: &'s AtomicU64,
    inbound: &'s AtomicU64,
    copier: Option<Copier<'s>>,
}

impl Link for Cacheline<'_> {
    #[inline(always)]
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        if let Some(copier) = &mut self.copier {
            copier.copy_out(seq)?;
        }
        // Release: publishes the copied payload; pairs with the peer's Acquire load.
        self.outbound.store(seq, Ordering::Release);
        Ok(())
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        // Acquire: pairs with the peer's Release store, so its payload copy is visible.
        spin_until("a cache-line message", || {
            (self.inbound.load(Ordering::Acquire) == seq).then_some(())
        })?;
        match &mut self.copier {
            Some(copier) => copier.copy_in(seq),
            None => Ok(()),
        }
    }
}

struct CachelineBlock<'s> {
    outbound: &'s AtomicU64,
    inbound: &'s AtomicU64,
    outbound_blocks: &'s [CachePadded<AtomicU64>; BLOCKS],
    inbound_blocks: &'s [CachePadded<AtomicU64>; BLOCKS],
}

/// The block that message `seq` (or a word naming it) lies in.
fn block_of(seq: u64) -> usize {
    (seq % BLOCKS as u64) as usize
}

impl Link for CachelineBlock<'_> {
    #[inline(always)]
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        // Relaxed: published by the Release store below.
        self.outbound_blocks[block_of(seq)].store(seq, Ordering::Relaxed);
        // Release: publishes the block's word; pairs with the peer's Acquire load.
        self.outbound.store(seq, Ordering::Release);
        // The block's line to the shared cache for the peer, as shmlane's publisher does.
        shmlane_segment::hint::demote(&*self.outbound_blocks[block_of(seq)]);
        // The next message's block, fetched for writing now, off the critical path. The peer
        // read it `BLOCKS - 1` messages ago and answered since, so it is done with it; the
        // next message's store comes after this one in the word's order.
        self.outbound_blocks[block_of(seq + 1)].store(0, Ordering::Relaxed);
        Ok(())
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        // Acquire: pairs with the peer's Release store, so its write into the block is
        // visible. The block is found from the loaded word, as a queue slot names a block.
        let named = spin_until("a cache-line message", || {
            let word = self.inbound.load(Ordering::Acquire);
            (word == seq).then_some(word)
        })?;
        // Relaxed: ordered after the Acquire load above.
        expect_seq(seq, self.inbound_blocks[block_of(named)].load(Ordering::Relaxed))
    }
}

struct Futex<'s> {
    outbound: &'s AtomicU32,
    inbound: &'s AtomicU32,
    copier: Option<Copier<'s>>,
}

impl Link for Futex<'_> {
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        if let Some(copier) = &mut self.copier {
            copier.copy_out(seq)?;
        }
        // Release: publishes the copied payload; pairs with the peer's Acquire load. The word
        // holds the sequence number's low 32 bits: consecutive messages always differ.
        self.outbound.store(seq as u32, Ordering::Release);
        futex::wake(self.outbound, futex::Flags::empty(), 1).map_err(io::Error::from)?;
        Ok(())
    }

    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        let deadline = Instant::now() + HANG;
        loop {
            // Acquire: pairs with the peer's Release store, so its payload copy is visible.
            let seen = self.inbound.load(Ordering::Acquire);
            if seen == seq as u32 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LinkError::Hung("a futex wake-up"));
            }
            match futex::wait(self.inbound, futex::Flags::empty(), seen, Some(&FUTEX_RECHECK)) {
                Ok(()) | Err(Errno::AGAIN | Errno::INTR | Errno::TIMEDOUT) => {}
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
        match &mut self.copier {
            Some(copier) => copier.copy_in(seq),
            None => Ok(()),
        }
    }
}

struct Spsc<'s> {
    segment: &'s Segment,
    producer: spsc::Producer<u64, spsc::Shared<'s, u64>>,
    consumer: spsc::Consumer<u64, spsc::Shared<'s, u64>>,
    pool: Option<BlockPool<'s>>,
}

impl Link for Spsc<'_> {
    #[inline(always)]
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        let value = match &self.pool {
            None => seq,
            Some(pool) => {
                let block = pool.alloc().map_err(|e| LinkError::shmlane("loan a block", e))?;
                // The payload is written in place: here only its sequence number.
                self.segment
                    .write_bytes(block.get(), &seq.to_ne_bytes())
                    .map_err(|e| LinkError::shmlane("write the block", e))?;
                block.get()
            }
        };
        // A ping-pong never fills the queue; a stream does, and the receiver drains it.
        spin_until("room in the queue", || self.producer.try_push(value).ok())
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        let value = spin_until("a queued message", || self.consumer.try_pop().ok())?;
        let Some(pool) = &self.pool else {
            return expect_seq(seq, value);
        };
        // The offset came from the other process: the pool checks it before any access.
        let block = BlockOffset::from_raw(value);
        if !pool.contains(block) {
            return Err(LinkError::Shmlane(format!("offset {value} is not a block of the pool")));
        }
        let mut stamp = [0; 8];
        self.segment.read_bytes(value, &mut stamp).map_err(|e| LinkError::shmlane("read", e))?;
        pool.free(block).map_err(|e| LinkError::shmlane("free the block", e))?;
        expect_seq(seq, u64::from_ne_bytes(stamp))
    }
}
