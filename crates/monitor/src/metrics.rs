//! `GET /metrics`: the latest sample in the Prometheus text format (0.0.4), encoded by
//! `prometheus-client` at each scrape from what the sampler last read (a scrape never reads
//! shared memory itself).
//!
//! Counters (`_total`) are the slot holders' own counts, per slot: a process that takes a slot
//! over continues its predecessor's counts, so each series only grows (a service made anew
//! starts again from 0, which Prometheus takes as a counter reset). Labels: `namespace`,
//! `service` (with `.req`/`.resp` for an rpc's topics), `kind` (`topic`, `rpc`, `event`), and
//! `slot`. The monitor's own peek subscriber is left out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::hub::Hub;
use crate::sampler::{PeerState, ServiceState};

/// The `Content-Type` of the answer.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A registry whose one collector reports the hub's latest sample.
pub(crate) fn registry(hub: Arc<Hub>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SampleCollector { hub }));
    registry
}

/// The registry's metrics as Prometheus text.
pub(crate) fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Reports the hub's latest sample at each scrape.
#[derive(Debug)]
struct SampleCollector {
    hub: Arc<Hub>,
}

/// A label set: (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// A count as a gauge's value (saturating: no count comes near 2^63).
fn gauge(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The labels of a slot of a service.
fn slot_labels(service: &ServiceState, peer: &PeerState) -> Labels {
    vec![
        ("namespace", service.namespace.clone()),
        ("service", service.name.clone()),
        ("kind", service.kind.to_owned()),
        ("slot", peer.slot.to_string()),
    ]
}

/// One metric family: its name, help, type, and a value per label set.
struct Family<V> {
    name: &'static str,
    help: &'static str,
    series: Vec<(Labels, V)>,
}

impl<V> Family<V> {
    fn new(name: &'static str, help: &'static str) -> Family<V> {
        Family { name, help, series: Vec::new() }
    }
}

impl<V: EncodeCounterValue + Copy> Family<V> {
    fn encode_counters(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.series.is_empty() {
            return Ok(());
        }
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
        for (labels, value) in &self.series {
            ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl<V: EncodeGaugeValue + Copy> Family<V> {
    fn encode_gauges(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.series.is_empty() {
            return Ok(());
        }
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (labels, value) in &self.series {
            ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Collector for SampleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.hub.latest();
        let sample = &latest.sample;
        // Counters (the encoder appends `_total`).
        let mut sent = Family::new(
            "shmlane_samples_sent",
            "Samples sent by a publisher slot (an rpc request topic's: requests; its response \
             topic's: responses).",
        );
        let mut loans_failed = Family::new(
            "shmlane_loans_failed",
            "Loans refused to a publisher slot for want of a free block.",
        );
        let mut received =
            Family::new("shmlane_samples_received", "Samples received by a subscriber slot.");
        let mut drops = Family::new(
            "shmlane_subscriber_drops",
            "Samples dropped for a subscriber slot (evicted from its full queue, or over its \
             limit).",
        );
        let mut timeouts = Family::new(
            "shmlane_rpc_timeouts",
            "Response waits that timed out, per rpc client (its response topic's subscriber slot).",
        );
        let mut notifications = Family::new(
            "shmlane_event_notifications",
            "Event notifications taken by a listener slot.",
        );
        // Gauges.
        let mut held: Family<i64> =
            Family::new("shmlane_samples_held", "Samples a subscriber slot's holder holds now.");
        let mut queued: Family<i64> = Family::new(
            "shmlane_queue_depth",
            "Samples queued for a subscriber slot, over its queues from every publisher.",
        );
        let mut capacity: Family<i64> = Family::new(
            "shmlane_queue_capacity",
            "Capacity of a subscriber slot's queues, summed over its publishers.",
        );
        let mut fill: Family<f64> = Family::new(
            "shmlane_queue_fill_ratio",
            "Fill of a subscriber slot's fullest queue, 0 to 1 (1: the next sample is dropped \
             or waits, by the topic's overflow policy).",
        );
        let mut alive: Family<i64> = Family::new(
            "shmlane_peer_up",
            "Whether a slot holder's process runs: 1 alive, 0 proven dead (unknown: absent).",
        );
        let mut services: Family<i64> = Family::new(
            "shmlane_services",
            "Services found, by namespace, kind and state (alive, initializing, stale, corrupt, \
             unreadable).",
        );
        let mut nodes: Family<i64> =
            Family::new("shmlane_nodes", "Registered nodes, by namespace and liveness.");

        let mut service_counts: std::collections::BTreeMap<Labels, i64> = Default::default();
        for service in sample.services.values() {
            let key = vec![
                ("namespace", service.namespace.clone()),
                ("kind", service.kind.to_owned()),
                ("state", service.state.to_owned()),
            ];
            *service_counts.entry(key).or_default() += 1;
            for (role, peers) in
                [("publisher", &service.publishers), ("subscriber", &service.subscribers)]
            {
                for peer in peers.iter().filter(|peer| !peer.monitor) {
                    let labels = slot_labels(service, peer);
                    let mut up_labels = labels.clone();
                    up_labels.push(("role", role.to_owned()));
                    match peer.liveness {
                        "alive" => alive.series.push((up_labels, 1)),
                        "dead" => alive.series.push((up_labels, 0)),
                        _ => {}
                    }
                    let c = &peer.counters;
                    if role == "publisher" {
                        sent.series.push((labels.clone(), c.sent));
                        loans_failed.series.push((labels, c.loans_failed));
                    } else if service.kind == "event" {
                        notifications.series.push((labels, c.notifications));
                    } else {
                        received.series.push((labels.clone(), c.received));
                        drops.series.push((labels.clone(), peer.drops));
                        held.series.push((labels.clone(), gauge(c.held)));
                        if service.kind == "rpc" {
                            timeouts.series.push((labels.clone(), c.timeouts));
                        }
                        if let Some(queue) = peer.queue {
                            queued.series.push((labels.clone(), gauge(queue.queued)));
                            capacity.series.push((labels.clone(), gauge(queue.capacity)));
                            fill.series.push((labels, queue.fill));
                        }
                    }
                }
            }
        }
        services.series = service_counts.into_iter().collect();
        let mut node_counts: std::collections::BTreeMap<Labels, i64> = Default::default();
        for node in sample.nodes.values() {
            let key =
                vec![("namespace", node.namespace.clone()), ("liveness", node.liveness.to_owned())];
            *node_counts.entry(key).or_default() += 1;
        }
        nodes.series = node_counts.into_iter().collect();

        for family in [&sent, &loans_failed, &received, &drops, &timeouts, &notifications] {
            family.encode_counters(&mut encoder)?;
        }
        for family in [&held, &queued, &capacity, &alive, &services, &nodes] {
            family.encode_gauges(&mut encoder)?;
        }
        fill.encode_gauges(&mut encoder)?;
        self.encode_own(&mut encoder, sample.took.as_secs_f64(), sample.seq)
    }
}

impl SampleCollector {
    /// The monitor's own metrics.
    fn encode_own(
        &self,
        encoder: &mut DescriptorEncoder,
        took: f64,
        samples: u64,
    ) -> Result<(), std::fmt::Error> {
        let no_labels: Labels = Vec::new();
        let hub = &self.hub;
        // Relaxed loads: statistics.
        let clients = gauge(hub.clients.load(Ordering::Relaxed) as u64);
        let dropped = hub.dropped.load(Ordering::Relaxed);
        let peeks = gauge(hub.peeks.active() as u64);
        let mut took_family = Family::new(
            "shmlane_monitor_sample_duration_seconds",
            "How long the monitor's last pass over shared memory took.",
        );
        took_family.series.push((no_labels.clone(), took));
        took_family.encode_gauges(encoder)?;
        let mut gauges = [
            Family::new("shmlane_monitor_websocket_clients", "WebSocket clients connected now."),
            Family::new("shmlane_monitor_peeks", "Topics the monitor peeks at now."),
        ];
        for (family, value) in gauges.iter_mut().zip([clients, peeks]) {
            family.series.push((no_labels.clone(), value));
            family.encode_gauges(encoder)?;
        }
        let mut counters = [
            Family::new("shmlane_monitor_samples", "Passes the monitor made over shared memory."),
            Family::new(
                "shmlane_monitor_websocket_dropped",
                "WebSocket clients dropped for falling behind.",
            ),
        ];
        for (family, value) in counters.iter_mut().zip([samples, dropped]) {
            family.series.push((no_labels.clone(), value));
            family.encode_counters(encoder)?;
        }
        Ok(())
    }
}
