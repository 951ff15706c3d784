//! The JSON of the REST endpoints, made from the facade's discovery: the same facts as
//! `shmlane list --json` and `shmlane inspect --json`, under the same field names, plus an
//! `id` (the service's segment name) to ask for it by.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use shmlane::discovery::{
    Counters, Inspection, NodeInfo, Peer, PoolDetail, PublisherDetail, QueueFill, SegmentEntry,
    SegmentKind, ServiceInfo, ServiceKind, SubscriberDetail, TopicDetail, Verdict,
};
use shmlane_segment::Liveness;
use shmlane_segment::header::RawHeader;

/// `alive`, `dead` or `unknown`.
pub(crate) fn liveness(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        Liveness::Unknown => "unknown",
    }
}

/// `topic`, `rpc` or `event`.
pub(crate) fn kind(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Topic => "topic",
        ServiceKind::Rpc => "rpc",
        ServiceKind::Event => "event",
    }
}

/// The verdict's word (`alive`, `initializing`, `stale`, `corrupt`, `unreadable`) and, for the
/// bad ones, the reason.
pub(crate) fn verdict(verdict: &Verdict) -> (&'static str, Option<&str>) {
    match verdict {
        Verdict::Alive => ("alive", None),
        Verdict::Initializing => ("initializing", None),
        Verdict::Stale => ("stale", None),
        Verdict::Corrupt { reason } => ("corrupt", Some(reason)),
        Verdict::Unreadable { reason } => ("unreadable", Some(reason)),
    }
}

/// A slot holder's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct CountersJson {
    pub(crate) sent: u64,
    pub(crate) loans_failed: u64,
    pub(crate) received: u64,
    pub(crate) held: u64,
    pub(crate) timeouts: u64,
    pub(crate) notifications: u64,
}

impl From<&Counters> for CountersJson {
    fn from(c: &Counters) -> Self {
        CountersJson {
            sent: c.sent,
            loans_failed: c.loans_failed,
            received: c.received,
            held: c.held,
            timeouts: c.timeouts,
            notifications: c.notifications,
        }
    }
}

/// A slot holder: `{"slot", "pid", "liveness", "drops", "counters"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PeerJson {
    slot: usize,
    pid: Option<u32>,
    liveness: &'static str,
    drops: u64,
    counters: CountersJson,
}

impl From<&Peer> for PeerJson {
    fn from(peer: &Peer) -> Self {
        PeerJson {
            slot: peer.slot,
            pid: peer.pid,
            liveness: liveness(peer.liveness),
            drops: peer.drops,
            counters: (&peer.counters).into(),
        }
    }
}

/// A payload type as the topic records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PayloadType {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) version: u64,
}

impl PayloadType {
    pub(crate) fn of(service: &ServiceInfo) -> Option<PayloadType> {
        let (name, size, version) = service.payload.clone()?;
        Some(PayloadType { name, size, version })
    }
}

/// A service's control segment file.
#[derive(Debug, Clone, Serialize)]
struct SegmentJson {
    file: String,
    size: u64,
    creator_pid: Option<u32>,
    creator_liveness: Option<&'static str>,
    created_unix_ns: Option<u128>,
}

impl From<&SegmentEntry> for SegmentJson {
    fn from(entry: &SegmentEntry) -> Self {
        let segment = &entry.segment;
        SegmentJson {
            file: segment.path.display().to_string(),
            size: segment.size,
            creator_pid: segment.creator.map(|creator| creator.pid),
            creator_liveness: segment.creator_owner.map(|owner| liveness(owner.liveness())),
            created_unix_ns: segment
                .created_at
                .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                .map(|since| since.as_nanos()),
        }
    }
}

/// One service of `GET /api/services`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceJson {
    /// The name of its control segment: what `GET /api/services/{id}` takes.
    id: String,
    namespace: String,
    name: String,
    kind: &'static str,
    state: &'static str,
    reason: Option<String>,
    payload_type: Option<PayloadType>,
    publishers: Vec<PeerJson>,
    /// Listeners, for an event service.
    subscribers: Vec<PeerJson>,
    segment: SegmentJson,
    problem: Option<String>,
}

impl ServiceJson {
    /// The service of `entry`, if it is a service's control segment.
    pub(crate) fn of(entry: &SegmentEntry) -> Option<ServiceJson> {
        let service = entry.service.as_ref()?;
        let (state, reason) = verdict(&entry.verdict);
        Some(ServiceJson {
            id: entry.segment.name.as_str().to_owned(),
            namespace: service.namespace.clone(),
            name: service.name.clone(),
            kind: kind(service.kind),
            state,
            reason: reason.map(str::to_owned),
            payload_type: PayloadType::of(service),
            publishers: service.publishers.iter().map(PeerJson::from).collect(),
            subscribers: service.subscribers.iter().map(PeerJson::from).collect(),
            segment: entry.into(),
            problem: service.problem.clone(),
        })
    }
}

/// One node of `GET /api/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NodeJson {
    /// The name of its registration segment.
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) pid: Option<u32>,
    pub(crate) liveness: &'static str,
    /// Time since its last heartbeat, if it ever beat.
    pub(crate) heartbeat_age_ns: Option<u64>,
}

impl NodeJson {
    pub(crate) fn of(id: &str, node: &NodeInfo) -> NodeJson {
        NodeJson {
            id: id.to_owned(),
            namespace: node.namespace.clone(),
            name: node.name.clone(),
            pid: node.pid,
            liveness: liveness(node.liveness),
            heartbeat_age_ns: node.heartbeat_age.map(nanos),
        }
    }
}

/// A duration in whole nanoseconds (saturating at 584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// `GET /api/services/{name}`: the service, its header, and for a topic its settings, pools
/// and queues (what `shmlane inspect --json` shows).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InspectionJson {
    #[serde(flatten)]
    service: Option<ServiceJson>,
    header: Option<HeaderJson>,
    layout: Option<&'static str>,
    topic: Option<TopicJson>,
}

impl From<&Inspection> for InspectionJson {
    fn from(inspection: &Inspection) -> Self {
        InspectionJson {
            service: ServiceJson::of(&inspection.entry),
            header: inspection.header.as_ref().map(HeaderJson::of),
            layout: inspection.layout,
            topic: inspection.topic.as_ref().map(TopicJson::from),
        }
    }
}

/// Every field of a segment header.
#[derive(Debug, Clone, Serialize)]
struct HeaderJson {
    magic: String,
    format_version: u32,
    header_size: u32,
    layout_fingerprint: String,
    total_size: u64,
    creator_pid: u32,
    creator_start_time: u64,
    creator_presence: String,
    creator_liveness: &'static str,
    backing: String,
    created_unix_ns: u64,
    init_state: String,
}

impl HeaderJson {
    fn of(header: &RawHeader) -> HeaderJson {
        HeaderJson {
            magic: header.magic.escape_ascii().to_string(),
            format_version: header.format_version,
            header_size: header.header_size,
            layout_fingerprint: format!("{:#018x}", header.layout_fingerprint),
            total_size: header.total_size,
            creator_pid: header.creator_pid,
            creator_start_time: header.creator_start_time,
            creator_presence: format!("{:016x}", header.creator_token),
            creator_liveness: liveness(header.creator_liveness()),
            backing: match header.backing {
                1 => "POSIX shm".into(),
                2 => "file in a directory".into(),
                3 => "memfd".into(),
                other => format!("unknown ({other})"),
            },
            created_unix_ns: header.created_unix_ns,
            init_state: match header.init_state {
                0 => "empty".into(),
                1 => "initializing".into(),
                2 => "ready".into(),
                other => format!("unknown ({other})"),
            },
        }
    }
}

/// A topic's payload type, settings, publishers, subscribers and problems.
#[derive(Debug, Clone, Serialize)]
struct TopicJson {
    r#type: TypeJson,
    config: ConfigJson,
    publishers: Vec<PublisherJson>,
    subscribers: Vec<SubscriberJson>,
    problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct TypeJson {
    name: String,
    size: u64,
    align: u64,
    version: u64,
}

#[derive(Debug, Clone, Serialize)]
struct ConfigJson {
    max_publishers: u32,
    max_subscribers: u32,
    subscriber_capacity: u32,
    max_held: u32,
    max_loans: u32,
    max_slice_len: u32,
    history: u32,
    overflow: String,
}

impl From<&TopicDetail> for TopicJson {
    fn from(topic: &TopicDetail) -> Self {
        let config = &topic.config;
        TopicJson {
            r#type: TypeJson {
                name: topic.type_name.clone(),
                size: topic.type_size,
                align: topic.type_align,
                version: topic.type_version,
            },
            config: ConfigJson {
                max_publishers: config.max_publishers,
                max_subscribers: config.max_subscribers,
                subscriber_capacity: config.subscriber_capacity,
                max_held: config.max_held,
                max_loans: config.max_loans,
                max_slice_len: config.max_slice_len,
                history: config.history,
                overflow: format!("{:?}", config.overflow),
            },
            publishers: topic.publishers.iter().map(PublisherJson::from).collect(),
            subscribers: topic.subscribers.iter().map(SubscriberJson::from).collect(),
            problems: topic.problems.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct PublisherJson {
    #[serde(flatten)]
    peer: PeerJson,
    generation: u32,
    pools: Vec<PoolJson>,
}

impl From<&PublisherDetail> for PublisherJson {
    fn from(publisher: &PublisherDetail) -> Self {
        PublisherJson {
            peer: (&publisher.peer).into(),
            generation: publisher.generation,
            pools: publisher.pools.iter().map(PoolJson::from).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct PoolJson {
    name: String,
    blocks: u64,
    block_size: u64,
    max_len: u64,
    queued: Option<u64>,
}

impl From<&PoolDetail> for PoolJson {
    fn from(pool: &PoolDetail) -> Self {
        PoolJson {
            name: pool.name.as_str().to_owned(),
            blocks: pool.blocks,
            block_size: pool.block_size,
            max_len: pool.max_len,
            queued: pool.queued,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct SubscriberJson {
    #[serde(flatten)]
    peer: PeerJson,
    generation: u64,
    queues: Vec<QueueJson>,
}

impl From<&SubscriberDetail> for SubscriberJson {
    fn from(subscriber: &SubscriberDetail) -> Self {
        SubscriberJson {
            peer: (&subscriber.peer).into(),
            generation: subscriber.generation,
            queues: subscriber.queues.iter().map(QueueJson::from).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct QueueJson {
    publisher: usize,
    served: bool,
    queued: u64,
    inline: u64,
    capacity: u64,
    returned: u64,
}

impl From<&QueueFill> for QueueJson {
    fn from(queue: &QueueFill) -> Self {
        QueueJson {
            publisher: queue.publisher,
            served: queue.served,
            queued: queue.queued,
            inline: queue.inline,
            capacity: queue.capacity,
            returned: queue.returned,
        }
    }
}

/// Whether `entry` is a service's control segment (a topic, one of an rpc's topics, or an
/// event service).
pub(crate) fn is_service(entry: &SegmentEntry) -> bool {
    matches!(entry.kind, SegmentKind::Service(_)) && entry.service.is_some()
}
