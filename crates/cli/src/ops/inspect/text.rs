//! `shmlane inspect`'s text report: one `key value` line per field, then the peers.

use std::fmt::Write as _;
use std::time::SystemTime;

use shmlane::discovery::{
    Inspection, NodeInfo, PoolDetail, PublisherDetail, SegmentEntry, SegmentKind, ServiceInfo,
    ServiceKind, SubscriberDetail, TopicDetail,
};
use shmlane_segment::header::{MAGIC, RawHeader};

use super::{backing, created, creator, init_state, magic};
use crate::ops::show;

/// The whole report: what the segment is, its header, then what its kind adds.
pub(super) fn text(inspection: &Inspection) -> String {
    let mut out = String::new();
    segment_fields(&mut out, &inspection.entry);
    header_fields(&mut out, inspection);
    kind_fields(&mut out, inspection);
    out
}

/// One `key value` line.
fn field(out: &mut String, key: &str, value: String) {
    let _ = writeln!(out, "{key:<12} {value}");
}

/// Name, file, kind, state and size: what every segment has.
fn segment_fields(out: &mut String, entry: &SegmentEntry) {
    field(out, "segment", entry.segment.name.to_string());
    field(out, "file", entry.segment.path.display().to_string());
    field(out, "kind", kind_description(entry));
    let (state, reason) = show::verdict(&entry.verdict);
    field(out, "state", reason.map_or(state.to_owned(), |reason| format!("{state}: {reason}")));
    let size = entry.segment.size;
    field(out, "size", format!("{} ({size} bytes)", show::size(size)));
}

/// The kind, with the service's or node's name and namespace when it has them.
fn kind_description(entry: &SegmentEntry) -> String {
    let kind = show::kind(&entry.kind);
    match (&entry.service, &entry.node) {
        (Some(service), _) => {
            format!("{kind} {:?} in namespace {:?}", service.name, service.namespace)
        }
        (_, Some(node)) => format!("node {:?} in namespace {:?}", node.name, node.namespace),
        _ => kind.to_owned(),
    }
}

/// The header's fields: decoded if it is ours, flagged if it is not, or its absence.
fn header_fields(out: &mut String, inspection: &Inspection) {
    match &inspection.header {
        Some(header) if header.magic != MAGIC => {
            let value = format!("magic \"{}\": not a shmlane header", magic(header));
            field(out, "header", value);
        }
        Some(header) => {
            field(out, "header", header_summary(header));
            field(out, "creator", creator_summary(header));
            field(out, "created", created_summary(header));
            let layout = inspection.layout.map_or(String::new(), |layout| format!(" ({layout})"));
            field(out, "fingerprint", format!("{:#018x}{layout}", header.layout_fingerprint));
        }
        None => field(out, "header", "none: the file is shorter than a header".into()),
    }
}

/// Magic, format, sizes, backing and init state of a shmlane header.
fn header_summary(header: &RawHeader) -> String {
    format!(
        "magic \"{}\", format {}, header {} B, total {} B, backing {}, init {}",
        magic(header),
        header.format_version,
        header.header_size,
        header.total_size,
        backing(header.backing),
        init_state(header.init_state)
    )
}

/// The creating process: pid, liveness, start tick and presence token.
fn creator_summary(header: &RawHeader) -> String {
    let creator = creator(header);
    format!(
        "pid {} ({}), started at tick {}, presence {:016x}",
        creator.pid,
        show::liveness(header.creator_liveness()),
        creator.start_time,
        header.creator_token
    )
}

/// The creation time, since the Unix epoch and as an age.
fn created_summary(header: &RawHeader) -> String {
    let created = created(header);
    let ago = SystemTime::now()
        .duration_since(created)
        .map_or("in the future".into(), |age| format!("{} ago", show::age(age)));
    format!("{:.3} s after the Unix epoch ({ago})", show::unix_ns(created) as f64 / 1e9)
}

/// What the segment's kind adds: a node's record, a payload segment's topic and pool, a
/// topic's details or another service's peers.
fn kind_fields(out: &mut String, inspection: &Inspection) {
    let entry = &inspection.entry;
    if let Some(node) = &entry.node {
        field(out, "node", node_summary(node));
    }
    if let SegmentKind::Payload { control, publisher, generation, pool } = &entry.kind {
        field(
            out,
            "payload of",
            format!("{control}, publisher {publisher}, generation {generation}, pool {pool}"),
        );
    }
    if let Some(pool) = &inspection.pool {
        field(out, "pool", pool_text(pool));
    }
    if let Some(topic) = &inspection.topic {
        topic_text(out, topic);
    } else if let Some(service) = &entry.service {
        service_peers(out, service);
    }
}

/// A node's pid, liveness and last heartbeat.
fn node_summary(node: &NodeInfo) -> String {
    let beat = node.heartbeat_age.map_or("never".into(), |age| format!("{} ago", show::age(age)));
    format!(
        "pid {} ({}), last heartbeat {beat}",
        show::pid(node.pid),
        show::liveness(node.liveness)
    )
}

/// The subscriber (or listener) slots of a service that is not a readable topic, and its
/// problem if any.
fn service_peers(out: &mut String, service: &ServiceInfo) {
    let role = if service.kind == ServiceKind::Event { "listeners" } else { "subscribers" };
    let _ = writeln!(out, "{role}");
    for peer in &service.subscribers {
        let _ = writeln!(
            out,
            "  slot {}  pid {} {}",
            peer.slot,
            show::pid(peer.pid),
            show::liveness(peer.liveness)
        );
    }
    if let Some(problem) = &service.problem {
        field(out, "problem", problem.clone());
    }
}

/// A pool's use: blocks in queues of all, block size and elements per block.
fn pool_text(pool: &PoolDetail) -> String {
    let queued =
        pool.queued.map_or("? (its topic could not be read)".into(), |queued| queued.to_string());
    format!(
        "{queued} of {} blocks in queues (block {} B, {} element{})",
        pool.blocks,
        pool.block_size,
        pool.max_len,
        if pool.max_len == 1 { "" } else { "s" }
    )
}

/// A topic's payload type and settings, its publishers and subscribers, its problems.
fn topic_text(out: &mut String, topic: &TopicDetail) {
    topic_settings(out, topic);
    let _ = writeln!(out, "publishers");
    for publisher in &topic.publishers {
        publisher_text(out, publisher);
    }
    let _ = writeln!(out, "subscribers");
    for subscriber in &topic.subscribers {
        subscriber_text(out, subscriber);
    }
    for problem in &topic.problems {
        let _ = writeln!(out, "problem      {problem}");
    }
    let _ = writeln!(
        out,
        "note: blocks on loan, in the history or in a subscriber's hands are not counted"
    );
}

/// The `payload` and `settings` lines.
fn topic_settings(out: &mut String, topic: &TopicDetail) {
    let config = &topic.config;
    let _ = writeln!(
        out,
        "{:<12} {}: {} bytes, align {}, version {}",
        "payload", topic.type_name, topic.type_size, topic.type_align, topic.type_version
    );
    let _ = writeln!(
        out,
        "{:<12} publishers ≤ {}, subscribers ≤ {}, queue {}, held ≤ {}, loans ≤ {}, slice ≤ {}, \
         history {}, overflow {:?}",
        "settings",
        config.max_publishers,
        config.max_subscribers,
        config.subscriber_capacity,
        config.max_held,
        config.max_loans,
        config.max_slice_len,
        config.history,
        config.overflow
    );
}

/// A publisher's slot, then each of its pools.
fn publisher_text(out: &mut String, publisher: &PublisherDetail) {
    let peer = &publisher.peer;
    let _ = writeln!(
        out,
        "  slot {}  pid {} {}  generation {}  sent {}  loans failed {}",
        peer.slot,
        show::pid(peer.pid),
        show::liveness(peer.liveness),
        publisher.generation,
        peer.counters.sent,
        peer.counters.loans_failed
    );
    for pool in &publisher.pools {
        let _ = writeln!(out, "    pool {}: {}", pool.name, pool_text(pool));
    }
}

/// A subscriber's slot, then its queue from each publisher.
fn subscriber_text(out: &mut String, subscriber: &SubscriberDetail) {
    let peer = &subscriber.peer;
    let _ = writeln!(
        out,
        "  slot {}  pid {} {}  received {}  held {}  drops {}",
        peer.slot,
        show::pid(peer.pid),
        show::liveness(peer.liveness),
        peer.counters.received,
        peer.counters.held,
        peer.drops
    );
    for queue in &subscriber.queues {
        let _ = writeln!(
            out,
            "    from publisher {}: {} of {} queued{}, {} returned{}",
            queue.publisher,
            queue.queued,
            queue.capacity,
            if queue.inline == 0 { String::new() } else { format!(" ({} inline)", queue.inline) },
            queue.returned,
            if queue.served { "" } else { " (not served yet)" }
        );
    }
}
