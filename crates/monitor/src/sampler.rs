//! The sampler: once per interval it reads shared memory through the facade's read-only
//! discovery (every service with its slot holders and counters, each topic's queue fill, every
//! node), turns counter deltas into rates, and hands the [`Sample`] and what changed since the
//! last one ([`Changes`]) to the hub, which broadcasts them. Nothing else reads shared memory
//! on the live path, however many clients watch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shmlane::discovery::{self, Peer, SegmentEntry, ServiceKind, TopicDetail, Verdict};
use shmlane_segment::Liveness;

use crate::model::{self, CountersJson, NodeJson, PayloadType};

/// What one pass over shared memory found.
#[derive(Debug)]
pub(crate) struct Reading {
    /// When it was taken.
    at: Instant,
    /// The same, in milliseconds since the Unix epoch.
    time_unix_ms: u64,
    /// How long it took.
    took: Duration,
    /// Each service's control segment, with its topic's queues when it has subscribers.
    services: Vec<(SegmentEntry, Option<TopicDetail>)>,
    /// Each live node, by the name of its registration segment.
    nodes: Vec<NodeJson>,
    /// Why the directory could not be listed, if it could not.
    error: Option<String>,
}

/// Reads the services, queues and nodes in `root` (`/dev/shm` if `None`). Blocking: file
/// system calls and mappings.
pub(crate) fn read(root: Option<&Path>) -> Reading {
    let at = Instant::now();
    let time_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    let mut reading = Reading {
        at,
        time_unix_ms,
        took: Duration::ZERO,
        services: Vec::new(),
        nodes: Vec::new(),
        error: None,
    };
    match discovery::segments(root) {
        Ok(entries) => {
            for entry in entries {
                if model::is_service(&entry) {
                    let detail = queues(root, &entry);
                    reading.services.push((entry, detail));
                } else if let Some(node) = &entry.node
                    && entry.segment.status == shmlane_segment::SegmentStatus::Alive
                {
                    reading.nodes.push(NodeJson::of(entry.segment.name.as_str(), node));
                }
            }
        }
        Err(e) => reading.error = Some(e.to_string()),
    }
    reading.took = at.elapsed();
    reading
}

/// A topic's queues, read only where there are any: a live topic (or rpc topic) with
/// subscribers.
fn queues(root: Option<&Path>, entry: &SegmentEntry) -> Option<TopicDetail> {
    let service = entry.service.as_ref()?;
    let queued = matches!(service.kind, ServiceKind::Topic | ServiceKind::Rpc)
        && entry.verdict == Verdict::Alive
        && !service.subscribers.is_empty();
    if !queued {
        return None;
    }
    discovery::inspect(root, &entry.segment.name).ok()?.topic
}

/// Per second, over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Rates {
    /// Samples sent (publishers; an rpc request topic's: requests).
    pub(crate) sent: f64,
    /// Samples received (subscribers).
    pub(crate) received: f64,
    /// Samples dropped for subscribers.
    pub(crate) drops: f64,
    /// Event notifications taken (listeners).
    pub(crate) notifications: f64,
    /// Loans refused (publishers).
    pub(crate) loans_failed: f64,
    /// Response waits that timed out (rpc clients).
    pub(crate) timeouts: f64,
}

/// A service's counters summed over its slot holders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Totals {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) drops: u64,
    pub(crate) notifications: u64,
    pub(crate) loans_failed: u64,
    pub(crate) timeouts: u64,
    /// Samples its subscribers hold now (a gauge).
    pub(crate) held: u64,
}

/// The fill of a service's subscriber queues.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct QueueState {
    /// Samples queued, over all its publisher–subscriber queues.
    pub(crate) queued: u64,
    /// Their capacity, summed.
    pub(crate) capacity: u64,
    /// The fullest queue's fill, 0 to 1.
    pub(crate) fill: f64,
    /// Queues at capacity.
    pub(crate) full: u64,
}

/// One subscriber's queues (from each publisher), summed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct PeerQueue {
    pub(crate) queued: u64,
    pub(crate) capacity: u64,
    /// Its fullest queue's fill, 0 to 1.
    pub(crate) fill: f64,
}

/// A slot holder as the live view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PeerState {
    pub(crate) slot: usize,
    pub(crate) pid: Option<u32>,
    pub(crate) liveness: &'static str,
    pub(crate) drops: u64,
    pub(crate) counters: CountersJson,
    /// Its own rate: sent (publishers), received (subscribers) or notifications (listeners),
    /// per second.
    pub(crate) rate: f64,
    /// Its queues (subscribers of topics, when read).
    pub(crate) queue: Option<PeerQueue>,
    /// Whether it is this monitor's own peek subscriber.
    pub(crate) monitor: bool,
}

/// A service as the live view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ServiceState {
    /// Its control segment's name (the key of `GET /api/services/{id}`).
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) state: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) payload_type: Option<PayloadType>,
    pub(crate) rates: Rates,
    pub(crate) totals: Totals,
    pub(crate) queue: Option<QueueState>,
    pub(crate) publishers: Vec<PeerState>,
    /// Listeners, for an event service.
    pub(crate) subscribers: Vec<PeerState>,
    /// Slot holders proven dead.
    pub(crate) dead_peers: usize,
    pub(crate) problem: Option<String>,
}

/// Everything the monitor knows at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Its number (1 for the first sample; 0 before any).
    pub(crate) seq: u64,
    pub(crate) time_unix_ms: u64,
    /// How long reading shared memory took.
    pub(crate) took: Duration,
    pub(crate) services: BTreeMap<String, ServiceState>,
    pub(crate) nodes: BTreeMap<String, NodeJson>,
    /// Why the directory could not be listed, if it could not (the rest is then the last
    /// sample's).
    pub(crate) error: Option<String>,
}

/// What changed from one sample to the next.
#[derive(Debug, Clone, Default)]
pub(crate) struct Changes {
    /// Services new or changed (rates, fill, peers, ...), by id.
    pub(crate) services: Vec<String>,
    /// Services gone.
    pub(crate) removed: Vec<String>,
    /// Nodes new or changed.
    pub(crate) nodes: Vec<String>,
    /// Nodes gone.
    pub(crate) removed_nodes: Vec<String>,
    /// Milliseconds since the previous sample (0 for the first).
    pub(crate) dt_ms: u64,
}

/// Which side of a service a slot is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Publisher,
    Subscriber,
}

/// Turns readings into samples: keeps the counters last seen per slot to make rates of.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    /// Counters of each slot when last seen held, per service id. A slot's counts go on
    /// across holders, so they stay here while the slot is free.
    last: HashMap<String, HashMap<(Side, usize), shmlane::discovery::Counters>>,
    last_drops: HashMap<String, HashMap<usize, u64>>,
    last_at: Option<Instant>,
    seq: u64,
}

impl Sampler {
    /// The next sample from `reading`, and what changed since `previous`.
    /// The monitor's own subscribers are those of this process on the topics in `peeked`.
    pub(crate) fn next(
        &mut self,
        reading: Reading,
        previous: &Sample,
        peeked: &HashSet<String>,
    ) -> (Sample, Changes) {
        self.seq += 1;
        let dt = self.last_at.map(|last| reading.at.saturating_duration_since(last));
        self.last_at = Some(reading.at);
        let mut sample = Sample {
            seq: self.seq,
            time_unix_ms: reading.time_unix_ms,
            took: reading.took,
            services: BTreeMap::new(),
            nodes: BTreeMap::new(),
            error: reading.error.clone(),
        };
        if reading.error.is_some() {
            // Keep showing what was last known; rates are unknown, so none.
            sample.services = previous.services.clone();
            sample.nodes = previous.nodes.clone();
        } else {
            for (entry, detail) in &reading.services {
                let ours = peeked.contains(entry.segment.name.as_str());
                if let Some(state) = self.service(entry, detail.as_ref(), dt, ours) {
                    sample.services.insert(state.id.clone(), state);
                }
            }
            sample.nodes = reading.nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
            self.last.retain(|id, _| sample.services.contains_key(id));
            self.last_drops.retain(|id, _| sample.services.contains_key(id));
        }
        let changes = Changes {
            services: changed(&previous.services, &sample.services),
            removed: gone(&previous.services, &sample.services),
            nodes: changed(&previous.nodes, &sample.nodes),
            removed_nodes: gone(&previous.nodes, &sample.nodes),
            dt_ms: dt.map_or(0, |dt| u64::try_from(dt.as_millis()).unwrap_or(u64::MAX)),
        };
        (sample, changes)
    }

    /// The live state of the service of `entry`.
    fn service(
        &mut self,
        entry: &SegmentEntry,
        detail: Option<&TopicDetail>,
        dt: Option<Duration>,
        peeked: bool,
    ) -> Option<ServiceState> {
        let service = entry.service.as_ref()?;
        let id = entry.segment.name.as_str().to_owned();
        let last = self.last.entry(id.clone()).or_default();
        let last_drops = self.last_drops.entry(id.clone()).or_default();
        let mut rates = Rates::default();
        let mut totals = Totals::default();
        let per_second = |delta: u64| match dt {
            Some(dt) if !dt.is_zero() => round(delta as f64 / dt.as_secs_f64()),
            _ => 0.0,
        };
        let listeners = service.kind == ServiceKind::Event;
        let mut peers = |side: Side, holders: &[Peer]| -> Vec<PeerState> {
            holders
                .iter()
                .map(|peer| {
                    let now = peer.counters;
                    let before = last.insert((side, peer.slot), now);
                    let grew = |f: fn(&shmlane::discovery::Counters) -> u64| {
                        before.map_or(0, |before| increase(f(&before), f(&now)))
                    };
                    let drops_before = last_drops.insert(peer.slot, peer.drops);
                    let dropped = match side {
                        Side::Subscriber => drops_before.map_or(0, |b| increase(b, peer.drops)),
                        Side::Publisher => 0,
                    };
                    let (sent, received) = (grew(|c| c.sent), grew(|c| c.received));
                    let notifications = grew(|c| c.notifications);
                    let monitor =
                        peeked && side == Side::Subscriber && peer.pid == Some(std::process::id());
                    // The monitor's own peek subscriber is shown, not counted.
                    if !monitor {
                        rates.sent += per_second(sent);
                        rates.received += per_second(received);
                        rates.notifications += per_second(notifications);
                        rates.drops += per_second(dropped);
                        rates.loans_failed += per_second(grew(|c| c.loans_failed));
                        rates.timeouts += per_second(grew(|c| c.timeouts));
                        totals.sent += now.sent;
                        totals.received += now.received;
                        totals.notifications += now.notifications;
                        totals.loans_failed += now.loans_failed;
                        totals.timeouts += now.timeouts;
                        totals.held += now.held;
                        totals.drops += dropped_total(side, peer);
                    }
                    let rate = match side {
                        Side::Publisher => sent,
                        Side::Subscriber if listeners => notifications,
                        Side::Subscriber => received,
                    };
                    PeerState {
                        slot: peer.slot,
                        pid: peer.pid,
                        liveness: model::liveness(peer.liveness),
                        drops: peer.drops,
                        counters: (&peer.counters).into(),
                        rate: per_second(rate),
                        queue: None,
                        monitor,
                    }
                })
                .collect()
        };
        let publishers = peers(Side::Publisher, &service.publishers);
        let mut subscribers = peers(Side::Subscriber, &service.subscribers);
        for rate in [
            &mut rates.sent,
            &mut rates.received,
            &mut rates.drops,
            &mut rates.notifications,
            &mut rates.loans_failed,
            &mut rates.timeouts,
        ] {
            *rate = round(*rate);
        }
        let queue = detail.map(|detail| queue_state(detail, &mut subscribers));
        let dead_peers = service.peers().filter(|peer| peer.liveness == Liveness::Dead).count();
        let (state, reason) = model::verdict(&entry.verdict);
        Some(ServiceState {
            id,
            namespace: service.namespace.clone(),
            name: service.name.clone(),
            kind: model::kind(service.kind),
            state,
            reason: reason.map(str::to_owned),
            payload_type: PayloadType::of(service),
            rates,
            totals,
            queue,
            publishers,
            subscribers,
            dead_peers,
            problem: service.problem.clone(),
        })
    }
}

/// The service's queue fill from `detail`, and each subscriber's own in `subscribers`.
fn queue_state(detail: &TopicDetail, subscribers: &mut [PeerState]) -> QueueState {
    let mut total = QueueState { queued: 0, capacity: 0, fill: 0.0, full: 0 };
    for subscriber in &detail.subscribers {
        let mut own = PeerQueue { queued: 0, capacity: 0, fill: 0.0 };
        let mut full = 0;
        for queue in &subscriber.queues {
            own.queued += queue.queued;
            own.capacity += queue.capacity;
            if queue.capacity > 0 {
                own.fill = own.fill.max(queue.queued as f64 / queue.capacity as f64);
            }
            if queue.capacity > 0 && queue.queued >= queue.capacity {
                full += 1;
            }
        }
        let peer = subscribers.iter_mut().find(|p| p.slot == subscriber.peer.slot);
        if !peer.as_ref().is_some_and(|peer| peer.monitor) {
            total.queued += own.queued;
            total.capacity += own.capacity;
            total.fill = total.fill.max(own.fill);
            total.full += full;
        }
        own.fill = round(own.fill);
        if let Some(peer) = peer {
            peer.queue = Some(own);
        }
    }
    total.fill = round(total.fill);
    total
}

/// The drops counted for a slot holder (subscribers only).
fn dropped_total(side: Side, peer: &Peer) -> u64 {
    if side == Side::Subscriber { peer.drops } else { 0 }
}

/// How much a counter grew from `before` to `now`; a counter that went back was reset (its
/// service made anew), and counts from 0.
fn increase(before: u64, now: u64) -> u64 {
    if now >= before { now - before } else { now }
}

/// Rounded to hundredths: rates and fills are shown, not summed again.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Keys in `now` whose value is new or differs from `before`'s.
fn changed<V: PartialEq>(before: &BTreeMap<String, V>, now: &BTreeMap<String, V>) -> Vec<String> {
    now.iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Keys in `before` not in `now`.
fn gone<V>(before: &BTreeMap<String, V>, now: &BTreeMap<String, V>) -> Vec<String> {
    before.keys().filter(|key| !now.contains_key(*key)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_that_went_back_count_from_zero() {
        assert_eq!(increase(10, 15), 5);
        assert_eq!(increase(10, 10), 0);
        assert_eq!(increase(10, 3), 3, "a service made anew");
    }

    #[test]
    fn changes_name_new_changed_and_gone_keys() {
        let before: BTreeMap<String, u32> =
            [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)].into();
        let now: BTreeMap<String, u32> = [("a".into(), 1), ("b".into(), 5), ("d".into(), 4)].into();
        assert_eq!(changed(&before, &now), ["b", "d"]);
        assert_eq!(gone(&before, &now), ["c"]);
    }
}
