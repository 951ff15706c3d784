//! Words, numbers and JSON for segments, verdicts and peers, shared by the commands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shmlane::discovery::{Peer, SegmentEntry, SegmentKind, ServiceInfo, ServiceKind, Verdict};
use shmlane_segment::Liveness;

/// The kind's word, as `list` shows it.
pub(crate) fn kind(kind: &SegmentKind) -> &'static str {
    match kind {
        SegmentKind::Service(ServiceKind::Topic) => "topic",
        SegmentKind::Service(ServiceKind::Rpc) => "rpc",
        SegmentKind::Service(ServiceKind::Event) => "event",
        SegmentKind::Payload { .. } => "payload",
        SegmentKind::Node { .. } => "node",
        SegmentKind::Plain => "segment",
    }
}

/// The verdict's word and, for the bad ones, the reason.
pub(crate) fn verdict(verdict: &Verdict) -> (&'static str, Option<&str>) {
    match verdict {
        Verdict::Alive => ("alive", None),
        Verdict::Initializing => ("initializing", None),
        Verdict::Stale => ("stale", None),
        Verdict::Corrupt { reason } => ("corrupt", Some(reason)),
        Verdict::Unreadable { reason } => ("unreadable", Some(reason)),
    }
}

/// A pid as a presence file records it, `?` once that file is gone.
pub(crate) fn pid(pid: Option<u32>) -> String {
    pid.map_or("?".into(), |pid| pid.to_string())
}

/// `alive`, `dead` or `unknown`.
pub(crate) fn liveness(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        Liveness::Unknown => "unknown",
    }
}

/// `12.0 KiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `1.25 s`, `300 ms`.
pub(crate) fn age(age: Duration) -> String {
    if age >= Duration::from_secs(1) {
        format!("{:.2} s", age.as_secs_f64())
    } else {
        format!("{} ms", age.as_millis())
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ns(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos())
}

/// The role of a service's subscriber-side slots.
fn subscriber_role(service: &ServiceInfo) -> &'static str {
    if service.kind == ServiceKind::Event { "listener" } else { "sub" }
}

/// `pid liveness` of each peer, comma-separated.
fn peer_list(peers: &[Peer]) -> String {
    let describe = |peer: &Peer| format!("{} {}", pid(peer.pid), liveness(peer.liveness));
    peers.iter().map(describe).collect::<Vec<_>>().join(", ")
}

/// One line on who is in a segment: a service's slot holders, a node's heartbeat, or why it
/// is corrupt or unreadable.
pub(crate) fn peers(entry: &SegmentEntry) -> String {
    if let (_, Some(reason)) = verdict(&entry.verdict) {
        return reason.to_owned();
    }
    if let Some(service) = &entry.service {
        let mut parts = Vec::new();
        if !service.publishers.is_empty() {
            parts.push(format!("pub {}", peer_list(&service.publishers)));
        }
        if !service.subscribers.is_empty() {
            parts.push(format!("{} {}", subscriber_role(service), peer_list(&service.subscribers)));
        }
        return if parts.is_empty() { "none".into() } else { parts.join("; ") };
    }
    if let Some(node) = &entry.node {
        let beat = node
            .heartbeat_age
            .map_or("never beat".into(), |beat| format!("beat {} ago", age(beat)));
        return format!("node {} {} ({beat})", pid(node.pid), liveness(node.liveness));
    }
    match &entry.kind {
        SegmentKind::Payload { control, publisher, .. } => {
            format!("publisher {publisher} of {control}")
        }
        _ => "-".into(),
    }
}

/// A peer's slot, pid, liveness, drops and counters.
fn peer_json(peer: &Peer) -> Value {
    json!({
        "slot": peer.slot,
        "pid": peer.pid,
        "liveness": liveness(peer.liveness),
        "drops": peer.drops,
        "counters": counters_json(&peer.counters),
    })
}

/// A slot holder's counters.
pub(crate) fn counters_json(counters: &shmlane::discovery::Counters) -> Value {
    json!({
        "sent": counters.sent,
        "loans_failed": counters.loans_failed,
        "received": counters.received,
        "held": counters.held,
        "timeouts": counters.timeouts,
        "notifications": counters.notifications,
    })
}

/// A segment as JSON: what `list --json` prints per segment and `inspect --json` starts from.
pub(crate) fn entry_json(entry: &SegmentEntry) -> Value {
    let (state, reason) = verdict(&entry.verdict);
    let segment = &entry.segment;
    let mut value = json!({
        "name": segment.name.as_str(),
        "file": segment.path,
        "kind": kind(&entry.kind),
        "namespace": entry.namespace,
        "size": segment.size,
        "creator_pid": segment.creator.map(|creator| creator.pid),
        "creator_liveness": segment.creator_owner.map(|owner| liveness(owner.liveness())),
        "created_unix_ns": segment.created_at.map(unix_ns),
        "state": state,
        "reason": reason,
    });
    if let Some(service) = &entry.service {
        value["service"] = json!({
            "name": service.name,
            "payload_type": service.payload.as_ref().map(|(name, size, version)| {
                json!({ "name": name, "size": size, "version": version })
            }),
            "publishers": service.publishers.iter().map(peer_json).collect::<Vec<_>>(),
            // Listeners, for an event service.
            "subscribers": service.subscribers.iter().map(peer_json).collect::<Vec<_>>(),
            "problem": service.problem,
        });
    }
    if let Some(node) = &entry.node {
        value["node"] = json!({
            "name": node.name,
            "pid": node.pid,
            "liveness": liveness(node.liveness),
            "heartbeat_age_ns": node.heartbeat_age.map(|age| age.as_nanos()),
        });
    }
    if let SegmentKind::Payload { control, publisher, generation, pool } = &entry.kind {
        value["payload_of"] = json!({
            "topic": control,
            "publisher": publisher,
            "generation": generation,
            "pool": pool,
        });
    }
    value
}
