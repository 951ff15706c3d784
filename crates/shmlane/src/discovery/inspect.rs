//! One segment in detail: its header as it lies on disk and, for a topic, its settings, each
//! publisher's payload pools with the blocks its queues name, and each subscriber's queue fill
//! levels and drops.
//!
//! What shared memory shows is what is counted: blocks queued for subscribers or handed back
//! and not yet collected. Blocks on loan, kept for the history or in a subscriber's hands are
//! known only to their own process, so pool usage here is a lower bound.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use shmlane_queue::overflow::{OverflowSnapshot, SharedOverflow};
use shmlane_segment::header::RawHeader;
use shmlane_segment::{DiscoveryError, OffsetError, Segment, SegmentName};
use zerocopy::FromBytes;

use super::entries::{
    Extent, Place, ReadError, fingerprint, header_bytes, peer, read, read_u64, topic_layout,
};
use super::{Peer, SegmentEntry, SegmentKind, ServiceKind, Verdict, segments};
use crate::TopicConfig;
use crate::topic::layout::{DATA_HEADER_AT, DATA_MAGIC, DataHeader, TopicHeader, VERSION};
use crate::topic::words::{BlockId, MAX_BLOCKS, MAX_POOLS, QueuedBlock};
use crate::topic::{DATA_FINGERPRINT, QUEUE_FINGERPRINT};

/// One segment in detail ([`inspect`]).
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The segment, its kind and verdict, and its service's or node's participants.
    pub entry: SegmentEntry,
    /// Its header as it lies in the file (absent if the file is shorter than a header).
    pub header: Option<RawHeader>,
    /// What the header's layout fingerprint says the segment holds, if it is one of the
    /// facade's.
    pub layout: Option<&'static str>,
    /// For a topic that could be read: its settings, pools and queues.
    pub topic: Option<TopicDetail>,
    /// For a payload segment that could be read: its pool, with its use if its topic could be
    /// read.
    pub pool: Option<PoolDetail>,
}

/// A topic's settings, publishers and subscribers.
#[derive(Debug, Clone)]
pub struct TopicDetail {
    /// Its settings.
    pub config: TopicConfig,
    /// The payload type's recorded name (truncated to 128 bytes).
    pub type_name: String,
    /// The payload type's size.
    pub type_size: u64,
    /// The payload type's alignment.
    pub type_align: u64,
    /// The payload type's layout version.
    pub type_version: u64,
    /// Held publisher slots.
    pub publishers: Vec<PublisherDetail>,
    /// Held subscriber slots.
    pub subscribers: Vec<SubscriberDetail>,
    /// What could not be read, or did not validate (queues, payload segments).
    pub problems: Vec<String>,
}

/// A held publisher slot.
#[derive(Debug, Clone)]
pub struct PublisherDetail {
    /// Its holder.
    pub peer: Peer,
    /// The generation of its payload segments (0: none yet).
    pub generation: u32,
    /// Its payload pools: the base, then those added for larger slices.
    pub pools: Vec<PoolDetail>,
}

/// One payload pool (one payload segment).
#[derive(Debug, Clone)]
pub struct PoolDetail {
    /// Its segment.
    pub name: SegmentName,
    /// Blocks it has.
    pub blocks: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// Elements a block holds.
    pub max_len: u64,
    /// Distinct blocks named by its publisher's queues (queued for a subscriber, or handed
    /// back and not yet collected); `None` if its topic could not be read.
    pub queued: Option<u64>,
}

/// A held subscriber slot.
#[derive(Debug, Clone)]
pub struct SubscriberDetail {
    /// Its holder, with its drops.
    pub peer: Peer,
    /// Its holder's generation of the slot.
    pub generation: u64,
    /// Its queue from each held publisher slot (and from any other that still queues samples).
    pub queues: Vec<QueueFill>,
}

/// The fill level of one publisher–subscriber connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFill {
    /// The publisher slot.
    pub publisher: usize,
    /// Whether that publisher serves this subscriber (acknowledged its generation).
    pub served: bool,
    /// Samples queued for the subscriber.
    pub queued: u64,
    /// How many of those travel inline in their queue slot (no payload block).
    pub inline: u64,
    /// Capacity of the queue.
    pub capacity: u64,
    /// Samples handed back that the publisher has not collected yet.
    pub returned: u64,
}

/// Errors from [`inspect`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// No segment of that name.
    #[error("no segment {name} in {}: check the name with `shmlane list`", dir.display())]
    NotFound {
        /// The name looked for.
        name: SegmentName,
        /// The directory looked in.
        dir: PathBuf,
    },
    /// The directory could not be listed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// The segment `name` in `/dev/shm`, or in `root`, in detail. Corrupt and unreadable segments
/// are inspected too: their verdict says what is wrong.
pub fn inspect(root: Option<&Path>, name: &SegmentName) -> Result<Inspection, InspectError> {
    let place = Place::new(root);
    let entry = segments(root)?
        .into_iter()
        .find(|e| e.segment.name == *name)
        .ok_or_else(|| InspectError::NotFound { name: name.clone(), dir: place.dir.clone() })?;
    let header =
        header_bytes(&entry.segment.path).ok().and_then(|b| RawHeader::read_from_bytes(&b).ok());
    let layout = header.and_then(|h| layout_name(h.layout_fingerprint));
    let readable = matches!(entry.verdict, Verdict::Alive | Verdict::Stale);
    let mut inspection = Inspection { entry, header, layout, topic: None, pool: None };
    match inspection.entry.kind.clone() {
        SegmentKind::Service(kind @ (ServiceKind::Topic | ServiceKind::Rpc)) if readable => {
            let topic = |s: &Segment| topic_detail(&place, name, s);
            inspection.topic = read(&place, name, fingerprint(kind), Extent::Whole, topic).ok();
        }
        SegmentKind::Payload { control, publisher, generation, pool } if readable => {
            let from_topic = SegmentName::new(&control).ok().and_then(|control| {
                let topic = |s: &Segment| topic_detail(&place, &control, s);
                let kind = fingerprint(ServiceKind::Topic);
                let topic = read(&place, &control, kind, Extent::Whole, topic);
                let slot =
                    topic.ok()?.publishers.into_iter().find(|p| {
                        p.peer.slot == publisher as usize && p.generation == generation
                    })?;
                slot.pools.into_iter().find(|p| p.name == *name)
            });
            inspection.pool = from_topic.or_else(|| {
                let detail = |s: &Segment| pool_detail(s, generation, None, pool);
                read(&place, name, DATA_FINGERPRINT, DATA_HEAD, detail).ok()
            });
        }
        _ => {}
    }
    Ok(inspection)
}

/// The facade's name for a layout fingerprint.
fn layout_name(raw: u64) -> Option<&'static str> {
    [
        (crate::topic::SEGMENT_FINGERPRINT, "topic control segment"),
        (DATA_FINGERPRINT, "topic payload segment"),
        (crate::event::SEGMENT_FINGERPRINT, "event service"),
        (crate::node::NODE_FINGERPRINT, "node registration"),
    ]
    .into_iter()
    .find_map(|(fingerprint, name)| (fingerprint.get() == raw).then_some(name))
}

/// Reads topic `control`'s settings, slots and queues from `segment` (its read-only mapping,
/// or a private copy of another user's).
fn topic_detail(
    place: &Place,
    control: &SegmentName,
    segment: &Segment,
) -> Result<TopicDetail, ReadError> {
    let (header, config, layout) = topic_layout(segment)?;
    let subscribers = config.max_subscribers as usize;
    let mut problems = Vec::new();
    // (submission, completion) of every connection `p * subscribers + s`.
    let queues: Vec<[Option<OverflowSnapshot>; 2]> = (0..layout.connections_len())
        .map(|c| {
            let regions = <[_; 2]>::from(layout.connection(c));
            regions.map(|region| {
                SharedOverflow::snapshot(segment, region, QUEUE_FINGERPRINT)
                    .map_err(|e| {
                        let (p, s) = (c / subscribers, c % subscribers);
                        problems.push(format!("queue publisher {p} → subscriber {s}: {e}"));
                    })
                    .ok()
            })
        })
        .collect();
    let mut detail = TopicDetail {
        config,
        type_name: header.type_name(),
        type_size: header.type_size,
        type_align: header.type_align,
        type_version: header.type_version,
        publishers: Vec::new(),
        subscribers: Vec::new(),
        problems,
    };
    for p in 0..config.max_publishers as usize {
        let counters = Some(layout.publisher_counters_at(p));
        let Some(peer) = peer(segment, p, layout.publisher_role_at(p), None, counters)? else {
            continue;
        };
        // The slot's generation is a u32 stored in a u64 word.
        let generation = read_u64(segment, layout.publisher_generation_at(p))? as u32;
        let blocks: BTreeSet<BlockId> = queues[p * subscribers..(p + 1) * subscribers]
            .iter()
            .flatten()
            .flatten()
            .flat_map(|queue| &queue.values)
            .map(|&value| QueuedBlock::from_raw(value))
            .filter(|queued| queued.generation() == generation)
            .map(QueuedBlock::block)
            .collect();
        let pools = if generation == 0 {
            Vec::new()
        } else {
            pools(place, control, p, generation, &header, &config, &blocks, &mut detail.problems)
        };
        detail.publishers.push(PublisherDetail { peer, generation, pools });
    }
    for s in 0..subscribers {
        let drops_at = Some(layout.subscriber_drops_at(s));
        let counters = Some(layout.subscriber_counters_at(s));
        let Some(peer) = peer(segment, s, layout.subscriber_role_at(s), drops_at, counters)? else {
            continue;
        };
        let generation = read_u64(segment, layout.subscriber_generation_at(s))?;
        let mut fills = Vec::new();
        for p in 0..config.max_publishers as usize {
            let c = p * subscribers + s;
            let [Some(submission), Some(completion)] = &queues[c] else { continue };
            let held = detail.publishers.iter().any(|d| d.peer.slot == p);
            if !held && submission.values.is_empty() && completion.values.is_empty() {
                continue;
            }
            fills.push(QueueFill {
                publisher: p,
                served: read_u64(segment, layout.ack_at(c))? == generation,
                queued: submission.values.len() as u64,
                inline: submission
                    .values
                    .iter()
                    .filter(|&&value| QueuedBlock::from_raw(value).is_inline())
                    .count() as u64,
                capacity: submission.capacity,
                returned: completion.values.len() as u64,
            });
        }
        detail.subscribers.push(SubscriberDetail { peer, generation, queues: fills });
    }
    Ok(detail)
}

/// The payload pools of publisher slot `p` of generation `generation`, each with the number of
/// its blocks in `queued`; what does not validate goes to `problems`.
#[allow(clippy::too_many_arguments)]
fn pools(
    place: &Place,
    control: &SegmentName,
    p: usize,
    generation: u32,
    header: &TopicHeader,
    config: &TopicConfig,
    queued: &BTreeSet<BlockId>,
    problems: &mut Vec<String>,
) -> Vec<PoolDetail> {
    let mut found = Vec::new();
    for pool in 0..MAX_POOLS as u32 {
        let added = if pool == 0 { String::new() } else { format!(".x{pool}") };
        let Ok(name) = SegmentName::new(&format!("{control}.p{p}.g{generation}{added}")) else {
            break;
        };
        let base_len = (pool == 0).then_some(u64::from(config.max_slice_len));
        let read = read(place, &name, DATA_FINGERPRINT, DATA_HEAD, |segment| {
            let mut detail = pool_detail(segment, generation, base_len, pool)?;
            if header.type_fingerprint != data_header(segment)?.type_fingerprint {
                return Err(PayloadError::OtherType);
            }
            let of_pool = queued.iter().filter(|block| {
                block.pool() == pool as usize && (block.index() as u64) < detail.blocks
            });
            detail.queued = Some(of_pool.count() as u64);
            Ok(detail)
        });
        match read {
            Ok(detail) => found.push(detail),
            // No such pool: the publisher added no more.
            Err((None, _)) if pool > 0 => break,
            Err((_, reason)) => problems.push(format!("payload segment {name}: {reason}")),
        }
    }
    found
}

/// What is read of a payload segment: up to the end of its [`DataHeader`] (another user's is
/// copied that far only, as it may be large).
const DATA_HEAD: Extent = Extent::Head(DATA_HEADER_AT + size_of::<DataHeader>() as u64);

fn data_header(segment: &Segment) -> Result<DataHeader, OffsetError> {
    let mut bytes = [0u8; size_of::<DataHeader>()];
    segment.read_bytes(DATA_HEADER_AT, &mut bytes)?;
    Ok(zerocopy::transmute!(bytes))
}

/// What is wrong with a payload segment's header (a problem of its topic, or the verdict on it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PayloadError {
    /// Its header lies outside the segment.
    #[error(transparent)]
    Offset(#[from] OffsetError),
    /// Not a payload segment of this format.
    #[error("bad magic or version: not a shmlane payload segment")]
    NotPayload,
    /// Its header names another generation than its name does.
    #[error("generation {found}, its name says {named}")]
    Generation {
        /// The generation in its header.
        found: u32,
        /// The generation in its name.
        named: u32,
    },
    /// Its blocks do not fit it, or do not match their pool.
    #[error(
        "impossible geometry: {blocks} blocks of {block_size} bytes ({max_len} elements) at \
         {blocks_at}, in {len} bytes"
    )]
    Geometry {
        /// Blocks it says it has.
        blocks: u64,
        /// Bytes per block.
        block_size: u64,
        /// Elements per block.
        max_len: u64,
        /// Where the blocks start.
        blocks_at: u64,
        /// The segment's length.
        len: u64,
    },
    /// Its payload type is not its topic's.
    #[error("its payload type differs from the topic's")]
    OtherType,
}

/// Reads and validates the header of payload segment `segment` (pool `pool` of `generation`;
/// the base pool holds `base_len` elements per block when known, an added one a power of two).
fn pool_detail(
    segment: &Segment,
    generation: u32,
    base_len: Option<u64>,
    pool: u32,
) -> Result<PoolDetail, PayloadError> {
    let header = data_header(segment)?;
    if header.magic != DATA_MAGIC || header.version != VERSION {
        return Err(PayloadError::NotPayload);
    }
    if header.generation != generation {
        return Err(PayloadError::Generation { found: header.generation, named: generation });
    }
    let len_ok = match base_len {
        Some(base) => header.max_len == base,
        None => pool == 0 || header.max_len.is_power_of_two(),
    };
    let end =
        header.block_size.checked_mul(header.blocks).and_then(|b| b.checked_add(header.blocks_at));
    if !len_ok || header.blocks > MAX_BLOCKS || end.is_none_or(|end| end > segment.len()) {
        return Err(PayloadError::Geometry {
            blocks: header.blocks,
            block_size: header.block_size,
            max_len: header.max_len,
            blocks_at: header.blocks_at,
            len: segment.len(),
        });
    }
    Ok(PoolDetail {
        name: segment.name().clone(),
        blocks: header.blocks,
        block_size: header.block_size,
        max_len: header.max_len,
        queued: None,
    })
}
