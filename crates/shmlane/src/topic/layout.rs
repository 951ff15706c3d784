//! Where everything of a topic lives: the control segment (header, publisher and subscriber
//! entries, one pair of queues per publisher–subscriber connection) and each publisher's
//! payload segment.
//!
//! Control segment `{namespace}.topic.{service}`, carved in this order:
//!
//! | region | content |
//! |---|---|
//! | header (256 B) | [`TopicHeader`]: magic `SHMLTOPC`, version, payload type, settings; read by copy |
//! | roster (128 B) | one word bumped when a subscriber joins or leaves ([`Roster`](super::handoff::Roster)) |
//! | publishers | `max_publishers` × [`PublisherEntry`]: role word, payload generation, space event |
//! | subscribers | `max_subscribers` × [`SubscriberEntry`]: role word, generation, drops, wake-up event |
//! | acks | `max_publishers × max_subscribers` words: the subscriber generation each publisher serves |
//! | connections | per (publisher, subscriber): a submission queue (offsets, publisher → subscriber, capacity `subscriber_capacity`, overflowing) and a completion queue (returned offsets, subscriber → publisher) |
//!
//! Payload segment `{namespace}.topic.{service}.p{slot}.g{generation}`: a [`DataHeader`] then
//! `blocks` blocks of `block_size` bytes, written only by its publisher and mapped read-only by
//! subscribers. A block is `[len: u64, tag: u64, padding to align_of::<T>()]
//! [T; max_slice_len]`: `len` elements were sent (1 for a single value), and `tag` is the
//! sender's correlation id (request/response), 0 otherwise. A queued value is `generation << 32 | block`.

use crossbeam_utils::CachePadded;
use shmlane_notify::EventCount;
use shmlane_queue::overflow::SharedOverflow;
use shmlane_segment::{Carver, Offset, OffsetError, Region, RegionLayout, Segment, SharedView};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::TopicConfig;
use crate::counters::SlotCounters;
use crate::error::{ConfigError, CorruptError, TopicError};
use crate::payload::TypeSpec;

pub(crate) const TOPIC_MAGIC: [u8; 8] = *b"SHMLTOPC";
pub(crate) const DATA_MAGIC: [u8; 8] = *b"SHMLDATA";
pub(crate) const VERSION: u32 = 4;
const HEADER_REGION: u64 = 256;
const TYPE_NAME_LEN: usize = 128;
/// Bytes before a block's elements: its element count, then its tag (a correlation id).
const PREFIX: u64 = 16;
/// Where a block's tag lives, from the block's start.
pub(crate) const TAG_AT: u64 = 8;

/// The topic header, copied out and validated by every opener.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct TopicHeader {
    magic: [u8; 8],
    version: u32,
    overflow: u32,
    pub(crate) type_fingerprint: u64,
    pub(crate) type_size: u64,
    pub(crate) type_align: u64,
    pub(crate) type_version: u64,
    max_publishers: u32,
    max_subscribers: u32,
    subscriber_capacity: u32,
    max_held: u32,
    max_loans: u32,
    max_slice_len: u32,
    history: u32,
    reserved: u32,
    type_name: [u8; TYPE_NAME_LEN],
}

const _: () = assert!(size_of::<TopicHeader>() as u64 <= HEADER_REGION);
/// Where the payload segment's header lives (the first region after the segment's own).
pub(crate) const DATA_HEADER_AT: u64 = shmlane_segment::HEADER_SIZE.next_multiple_of(64);

impl TopicHeader {
    pub(crate) fn new(config: &TopicConfig, type_info: &TypeSpec) -> Self {
        let mut type_name = [0u8; TYPE_NAME_LEN];
        let name = type_info.name.as_bytes();
        let len = name.len().min(TYPE_NAME_LEN);
        type_name[..len].copy_from_slice(&name[..len]);
        TopicHeader {
            magic: TOPIC_MAGIC,
            version: VERSION,
            overflow: config.overflow as u32,
            type_fingerprint: type_info.fingerprint(),
            type_size: type_info.size,
            type_align: type_info.align,
            type_version: type_info.version,
            max_publishers: config.max_publishers,
            max_subscribers: config.max_subscribers,
            subscriber_capacity: config.subscriber_capacity,
            max_held: config.max_held,
            max_loans: config.max_loans,
            max_slice_len: config.max_slice_len,
            history: config.history,
            reserved: 0,
            type_name,
        }
    }

    /// Where the header lives (the first region after the segment's own header).
    pub(crate) fn offset() -> u64 {
        shmlane_segment::HEADER_SIZE.next_multiple_of(128)
    }

    /// Reads and validates the header of `segment`; returns it with the settings it records.
    pub(crate) fn read(segment: &Segment) -> Result<(TopicHeader, TopicConfig), TopicError> {
        let mut bytes = [0u8; size_of::<TopicHeader>()];
        segment.read_bytes(Self::offset(), &mut bytes)?;
        let header: TopicHeader = zerocopy::transmute!(bytes);
        if header.magic != TOPIC_MAGIC {
            let found = header.magic;
            return Err(TopicError::Corrupt(CorruptError::BadMagic { kind: "topic", found }));
        }
        if header.reserved != 0 {
            return Err(TopicError::Corrupt(CorruptError::Reserved));
        }
        if header.version != VERSION {
            let (found, expected) = (header.version, VERSION);
            return Err(TopicError::Corrupt(CorruptError::Version { found, expected }));
        }
        let overflow = super::Overflow::from_raw(header.overflow)
            .ok_or(TopicError::Corrupt(CorruptError::Overflow(header.overflow)))?;
        let config = TopicConfig {
            max_publishers: header.max_publishers,
            max_subscribers: header.max_subscribers,
            subscriber_capacity: header.subscriber_capacity,
            max_held: header.max_held,
            max_loans: header.max_loans,
            max_slice_len: header.max_slice_len,
            history: header.history,
            overflow,
        };
        config.check().map_err(|e| TopicError::Corrupt(CorruptError::Settings(e)))?;
        Ok((header, config))
    }

    /// The recorded type (its name truncated to 128 bytes).
    pub(crate) fn type_spec(&self) -> TypeSpec {
        TypeSpec::new(self.type_name(), self.type_size, self.type_align, self.type_version)
    }

    /// The recorded type name (truncated to 128 bytes).
    pub(crate) fn type_name(&self) -> String {
        let end = self.type_name.iter().position(|&b| b == 0).unwrap_or(TYPE_NAME_LEN);
        String::from_utf8_lossy(&self.type_name[..end]).into_owned()
    }
}

/// A publisher slot.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct PublisherEntry {
    /// Who holds the slot (`RoleClaim`).
    pub(crate) role: crate::sync::AtomicU64,
    /// The generation of its current payload segment (0: none yet).
    pub(crate) generation: crate::sync::AtomicU64,
    /// Notified by subscribers when they return samples (room for a blocked publisher).
    pub(crate) space: EventCount,
    /// Its holder's counters (written by it alone, on their own line).
    pub(crate) counters: SlotCounters,
}

/// A subscriber slot.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SubscriberEntry {
    /// Who holds the slot (`RoleClaim`).
    pub(crate) role: crate::sync::AtomicU64,
    /// Bumped by every subscriber that claims the slot; publishers serve the slot only after
    /// acknowledging the current generation.
    pub(crate) generation: crate::sync::AtomicU64,
    /// Samples meant for this subscriber that were dropped (evicted, or over its limit).
    pub(crate) drops: crate::sync::AtomicU64,
    /// Notified by publishers after each send.
    pub(crate) event: EventCount,
    /// Its holder's counters (written by it alone, on their own line; `drops` above is the
    /// publishers').
    pub(crate) counters: SlotCounters,
}

// SAFETY: `#[repr(C)]` aggregates of atomics and event counts (themselves `SharedView`): every
// bit pattern is valid and every access is atomic.
unsafe impl SharedView for PublisherEntry {}
// SAFETY: as above.
unsafe impl SharedView for SubscriberEntry {}

/// The payload segment's header, copied out and validated by subscribers.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct DataHeader {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u32,
    pub(crate) generation: u32,
    pub(crate) type_fingerprint: u64,
    pub(crate) block_size: u64,
    pub(crate) blocks: u64,
    pub(crate) blocks_at: u64,
    /// Elements a block holds.
    pub(crate) max_len: u64,
}

/// The regions of a control segment, computed from the settings alone (so every process
/// finds the same ones).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) header: Region,
    roster: Region,
    publishers: Region,
    subscribers: Region,
    acks: Region,
    /// Per connection `p * max_subscribers + s`: (submission, completion).
    connections: Vec<(Region, Region)>,
    pub(crate) size: u64,
    pub(crate) completion_capacity: u64,
    /// Words per slot of the submission queues ([`Element::queue_stride`]).
    pub(crate) stride: usize,
}

impl Layout {
    pub(crate) fn new(config: &TopicConfig, element: Element) -> Result<Layout, TopicError> {
        let mut carver = Carver::new();
        let place = |carver: &mut Carver, size: u64| {
            carver.place(RegionLayout { size, align: 128 }).map_err(TopicError::from_layout)
        };
        let header = place(&mut carver, HEADER_REGION)?;
        let roster = place(&mut carver, size_of::<CachePadded<u64>>() as u64)?;
        let (p, s) = (u64::from(config.max_publishers), u64::from(config.max_subscribers));
        let publishers = place(&mut carver, p * size_of::<CachePadded<PublisherEntry>>() as u64)?;
        let subscribers = place(&mut carver, s * size_of::<CachePadded<SubscriberEntry>>() as u64)?;
        let acks = place(&mut carver, p * s * size_of::<CachePadded<u64>>() as u64)?;
        let capacity = u64::from(config.subscriber_capacity);
        let completion_capacity = (capacity + u64::from(config.max_held)).next_power_of_two();
        let mut connections = Vec::with_capacity((p * s) as usize);
        let stride = element.queue_stride();
        for _ in 0..p * s {
            let submission = SharedOverflow::layout_strided(capacity, stride)?;
            let completion = SharedOverflow::layout(completion_capacity)?;
            let submission = carver.place(submission).map_err(TopicError::from_layout)?;
            let completion = carver.place(completion).map_err(TopicError::from_layout)?;
            connections.push((submission, completion));
        }
        let size = carver.total_size();
        Ok(Layout {
            header,
            roster,
            publishers,
            subscribers,
            acks,
            connections,
            size,
            completion_capacity,
            stride,
        })
    }

    pub(crate) fn publisher<'s>(
        &self,
        segment: &'s Segment,
        p: usize,
    ) -> Result<&'s PublisherEntry, OffsetError> {
        let stride = size_of::<CachePadded<PublisherEntry>>() as u64;
        let at: Offset<PublisherEntry> = self.publishers.offset_of(p as u64 * stride)?;
        segment.get(at)
    }

    pub(crate) fn subscriber<'s>(
        &self,
        segment: &'s Segment,
        s: usize,
    ) -> Result<&'s SubscriberEntry, OffsetError> {
        let stride = size_of::<CachePadded<SubscriberEntry>>() as u64;
        let at: Offset<SubscriberEntry> = self.subscribers.offset_of(s as u64 * stride)?;
        segment.get(at)
    }

    /// The roster word (see [`Roster`](super::handoff::Roster)).
    pub(crate) fn roster<'s>(
        &self,
        segment: &'s Segment,
    ) -> Result<&'s crate::sync::AtomicU64, OffsetError> {
        segment.get(self.roster.offset_of::<crate::sync::AtomicU64>(0)?)
    }

    pub(crate) fn ack<'s>(
        &self,
        segment: &'s Segment,
        connection: usize,
    ) -> Result<&'s crate::sync::AtomicU64, OffsetError> {
        let stride = size_of::<CachePadded<u64>>() as u64;
        let at: Offset<crate::sync::AtomicU64> = self.acks.offset_of(connection as u64 * stride)?;
        segment.get(at)
    }

    /// Offset of publisher slot `p`'s role word (for readers of a read-only mapping).
    pub(crate) fn publisher_role_at(&self, p: usize) -> u64 {
        self.publishers.offset + p as u64 * size_of::<CachePadded<PublisherEntry>>() as u64
    }

    /// Offset of subscriber slot `s`'s role word.
    pub(crate) fn subscriber_role_at(&self, s: usize) -> u64 {
        self.subscribers.offset + s as u64 * size_of::<CachePadded<SubscriberEntry>>() as u64
    }

    /// Offset of publisher slot `p`'s counters.
    pub(crate) fn publisher_counters_at(&self, p: usize) -> u64 {
        self.publisher_role_at(p) + std::mem::offset_of!(PublisherEntry, counters) as u64
    }

    /// Offset of subscriber slot `s`'s counters.
    pub(crate) fn subscriber_counters_at(&self, s: usize) -> u64 {
        self.subscriber_role_at(s) + std::mem::offset_of!(SubscriberEntry, counters) as u64
    }

    /// Offset of subscriber slot `s`'s drop counter.
    pub(crate) fn subscriber_drops_at(&self, s: usize) -> u64 {
        self.subscriber_role_at(s) + std::mem::offset_of!(SubscriberEntry, drops) as u64
    }

    /// Offset of publisher slot `p`'s payload generation word.
    pub(crate) fn publisher_generation_at(&self, p: usize) -> u64 {
        self.publisher_role_at(p) + std::mem::offset_of!(PublisherEntry, generation) as u64
    }

    /// Offset of subscriber slot `s`'s generation word.
    pub(crate) fn subscriber_generation_at(&self, s: usize) -> u64 {
        self.subscriber_role_at(s) + std::mem::offset_of!(SubscriberEntry, generation) as u64
    }

    /// Offset of connection `connection`'s ack word (the subscriber generation served).
    pub(crate) fn ack_at(&self, connection: usize) -> u64 {
        self.acks.offset + connection as u64 * size_of::<CachePadded<u64>>() as u64
    }

    /// Number of connections (publisher slots × subscriber slots).
    pub(crate) fn connections_len(&self) -> usize {
        self.connections.len()
    }

    /// The (submission, completion) regions of connection `p * max_subscribers + s`.
    pub(crate) fn connection(&self, connection: usize) -> (Region, Region) {
        self.connections[connection]
    }
}

impl TopicError {
    fn from_layout(e: shmlane_segment::LayoutError) -> TopicError {
        TopicError::InvalidConfig(ConfigError::TooLarge(e))
    }
}

/// Blocks start and end on a boundary of this many bytes: a pair of cache lines, the unit the
/// adjacent-line prefetcher fetches. So no two blocks share a line, and a publisher taking the
/// lines of its next block for writing never takes one a subscriber is reading.
pub(crate) const BLOCK_ALIGN: u64 = 128;

/// The layout of one payload element: a Rust type's, or one described at run time (checked
/// by [`TypeSpec::check`](crate::TypeSpec::check): a size of at least 1, a power-of-two
/// alignment of at most 4096).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Element {
    /// Bytes of one element.
    pub(crate) size: u64,
    /// Its alignment (a power of two).
    pub(crate) align: u64,
}

impl Element {
    /// The layout a checked [`TypeSpec`] describes.
    pub(crate) fn from_spec(spec: &TypeSpec) -> Element {
        Element { size: spec.size, align: spec.align }
    }

    /// Whether samples travel inline in the queue slot (as [`words::inline`](super::words::inline)
    /// says for a type).
    #[inline]
    pub(crate) fn inline(self) -> bool {
        self.size <= super::INLINE_MAX as u64 && self.align <= 8
    }

    /// Line words an inline element fills.
    #[inline]
    pub(crate) fn line_words(self) -> usize {
        self.size.div_ceil(8) as usize
    }

    /// Words per slot of a submission queue: the narrowest that carries an inline element
    /// (16 bytes up to 8-byte elements, 32 up to 24, 64 up to [`INLINE_MAX`](super::INLINE_MAX)),
    /// 16 bytes when samples travel in blocks (a slot then holds the block's word alone).
    #[inline]
    pub(crate) fn queue_stride(self) -> usize {
        if self.inline() { shmlane_queue::overflow::stride_for(self.line_words()) } else { 2 }
    }

    /// Where a block's elements start (after its `len` and `tag` words) and how long a block
    /// of `max_slice_len` elements is; `None` beyond 64 bits.
    pub(crate) fn block_geometry(self, max_slice_len: u32) -> Option<(u64, u64)> {
        let align = self.align.max(8);
        let elements_at = PREFIX.next_multiple_of(align);
        let bytes = self.size.checked_mul(u64::from(max_slice_len))?;
        let block_size =
            elements_at.checked_add(bytes)?.checked_next_multiple_of(align.max(BLOCK_ALIGN))?;
        Some((elements_at, block_size))
    }
}
