//! Discovery: the services in a directory (`/dev/shm` by default), their kind and payload type,
//! and who holds their publisher, subscriber and listener slots, with liveness. Read-only: it
//! maps each segment read-only and copies what it reads, so it never disturbs a service.

use std::path::Path;

use shmlane_segment::{DiscoveryError, Liveness, RoleOwner, Segment, SegmentInfo, SegmentStatus};

use crate::node::{NODE_FINGERPRINT, NodeRecordCopy, monotonic_ns};
use crate::topic::layout::{Layout, TopicHeader};

/// What a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Publish/subscribe.
    Topic,
    /// One of the two topics of a request/response service (`NAME.req`, `NAME.resp`).
    Rpc,
    /// Events.
    Event,
}

/// A participant holding a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The slot index.
    pub slot: usize,
    /// Its process.
    pub pid: u32,
    /// Whether that process runs (by pid and start time).
    pub liveness: Liveness,
    /// Samples dropped for it (subscribers only; 0 otherwise).
    pub drops: u64,
}

/// One service found.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name (for request/response, with `.req` or `.resp`).
    pub name: String,
    /// What it is.
    pub kind: ServiceKind,
    /// The payload type's recorded name, size and version (topics).
    pub payload: Option<(String, u64, u64)>,
    /// Publisher slots held (topics).
    pub publishers: Vec<Peer>,
    /// Subscriber slots held (topics), or listener slots (events).
    pub subscribers: Vec<Peer>,
    /// The segment itself (size, creator, status).
    pub segment: SegmentInfo,
    /// Why the service's own header could not be read, if it could not.
    pub problem: Option<String>,
}

/// The services in `/dev/shm`, or in `root`.
pub fn list(root: Option<&Path>) -> Result<Vec<ServiceInfo>, DiscoveryError> {
    let segments = match root {
        Some(dir) => shmlane_segment::list_in(dir)?,
        None => shmlane_segment::list()?,
    };
    Ok(segments.into_iter().filter_map(|info| describe(root, info)).collect())
}

/// A registered node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its process.
    pub pid: u32,
    /// Whether that process runs (by pid and start time).
    pub liveness: Liveness,
    /// Time since its last heartbeat, if it ever beat.
    pub heartbeat_age: Option<std::time::Duration>,
}

/// The nodes registered in `/dev/shm`, or in `root`.
pub fn nodes(root: Option<&Path>) -> Result<Vec<NodeInfo>, DiscoveryError> {
    let segments = match root {
        Some(dir) => shmlane_segment::list_in(dir)?,
        None => shmlane_segment::list()?,
    };
    Ok(segments.into_iter().filter_map(|info| describe_node(root, &info)).collect())
}

fn describe_node(root: Option<&Path>, info: &SegmentInfo) -> Option<NodeInfo> {
    let (namespace, rest) = info.name.as_str().split_once('.')?;
    let rest = rest.strip_prefix("node.")?;
    // `{name}.{pid}.{n}`.
    let mut parts = rest.rsplitn(3, '.');
    let (_, _, name) = (parts.next()?, parts.next()?, parts.next()?);
    if info.status != SegmentStatus::Alive {
        return None;
    }
    let builder = Segment::builder(info.name.as_str()).fingerprint(NODE_FINGERPRINT);
    let builder = match root {
        Some(dir) => builder.backing(shmlane_segment::Backing::Dir(dir.to_owned())),
        None => builder,
    };
    let segment = builder.open_read_only().ok()?;
    let mut bytes = [0u8; size_of::<NodeRecordCopy>()];
    segment.read_bytes(shmlane_segment::HEADER_SIZE.next_multiple_of(64), &mut bytes).ok()?;
    let record: NodeRecordCopy = zerocopy::transmute!(bytes);
    let owner = RoleOwner::from_raw(record.owner)?;
    let heartbeat_age = (record.heartbeat_ns != 0).then(|| {
        std::time::Duration::from_nanos(monotonic_ns().saturating_sub(record.heartbeat_ns))
    });
    Some(NodeInfo {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        pid: owner.pid(),
        liveness: owner.liveness(),
        heartbeat_age,
    })
}

/// `namespace.kind.service` of a control segment; `None` for payload segments and others'.
fn parse(name: &str) -> Option<(&str, ServiceKind, &str)> {
    let (namespace, rest) = name.split_once('.')?;
    let (kind, service) = rest.split_once('.')?;
    let kind = match kind {
        "topic" => ServiceKind::Topic,
        "rpc" => ServiceKind::Rpc,
        "event" => ServiceKind::Event,
        _ => return None,
    };
    // Payload segments end in `.p{slot}.g{generation}`.
    let mut parts = service.rsplitn(3, '.');
    let (last, second) = (parts.next()?, parts.next());
    let payload = last.strip_prefix('g').is_some_and(|g| g.parse::<u32>().is_ok())
        && second.is_some_and(|p| p.strip_prefix('p').is_some_and(|p| p.parse::<u32>().is_ok()));
    (!payload).then_some((namespace, kind, service))
}

fn describe(root: Option<&Path>, segment: SegmentInfo) -> Option<ServiceInfo> {
    let (namespace, kind, name) = parse(segment.name.as_str())?;
    let mut info = ServiceInfo {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        kind,
        payload: None,
        publishers: Vec::new(),
        subscribers: Vec::new(),
        problem: None,
        segment: segment.clone(),
    };
    if segment.status != SegmentStatus::Alive {
        return Some(info);
    }
    let fingerprint = match kind {
        ServiceKind::Event => crate::event::SEGMENT_FINGERPRINT,
        _ => crate::topic::SEGMENT_FINGERPRINT,
    };
    let builder = Segment::builder(segment.name.as_str()).fingerprint(fingerprint);
    let builder = match root {
        Some(dir) => builder.backing(shmlane_segment::Backing::Dir(dir.to_owned())),
        None => builder,
    };
    let opened = builder.open_read_only().map_err(|e| e.to_string());
    let result = opened.and_then(|s| match kind {
        ServiceKind::Event => read_event(&s, &mut info),
        _ => read_topic(&s, &mut info),
    });
    info.problem = result.err();
    Some(info)
}

fn read_u64(segment: &Segment, at: u64) -> Result<u64, String> {
    let mut bytes = [0u8; 8];
    segment.read_bytes(at, &mut bytes).map_err(|e| e.to_string())?;
    Ok(u64::from_ne_bytes(bytes))
}

fn peer(segment: &Segment, slot: usize, role_at: u64, drops_at: Option<u64>) -> Option<Peer> {
    let owner = RoleOwner::from_raw(read_u64(segment, role_at).ok()?)?;
    let drops = drops_at.and_then(|at| read_u64(segment, at).ok()).unwrap_or(0);
    Some(Peer { slot, pid: owner.pid(), liveness: owner.liveness(), drops })
}

fn read_topic(segment: &Segment, info: &mut ServiceInfo) -> Result<(), String> {
    let (header, config) = TopicHeader::read(segment).map_err(|e| e.to_string())?;
    let layout = Layout::new(&config).map_err(|e| e.to_string())?;
    info.payload = Some((header.type_name(), header.type_size, header.type_version));
    info.publishers = (0..config.max_publishers as usize)
        .filter_map(|p| peer(segment, p, layout.publisher_role_at(p), None))
        .collect();
    info.subscribers = (0..config.max_subscribers as usize)
        .filter_map(|s| {
            peer(segment, s, layout.subscriber_role_at(s), Some(layout.subscriber_drops_at(s)))
        })
        .collect();
    Ok(())
}

fn read_event(segment: &Segment, info: &mut ServiceInfo) -> Result<(), String> {
    let listeners = crate::event::listener_role_offsets(segment)?;
    info.subscribers = listeners
        .into_iter()
        .enumerate()
        .filter_map(|(l, at)| peer(segment, l, at, None))
        .collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_control_segments_parse_and_payload_segments_do_not() {
        assert_eq!(parse("app.topic.ticks"), Some(("app", ServiceKind::Topic, "ticks")));
        assert_eq!(parse("app.rpc.adder.req"), Some(("app", ServiceKind::Rpc, "adder.req")));
        assert_eq!(parse("app.event.bell"), Some(("app", ServiceKind::Event, "bell")));
        assert_eq!(parse("app.topic.ticks.p0.g3"), None);
        assert_eq!(parse("app.rpc.adder.resp.p0.g1"), None);
        assert_eq!(parse("app.other.x"), None);
        assert_eq!(parse("pingpong"), None);
    }
}
