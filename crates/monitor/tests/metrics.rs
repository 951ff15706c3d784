//! `GET /metrics` from a real monitor, parsed by a Prometheus text-format parser
//! (`prometheus-parse`): the live topic's counters and gauges, by their labels, against what
//! the child processes did and what discovery reads.

#![forbid(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::{Monitor, namespace, start};
use prometheus_parse::{Scrape, Value};
use shmlane::discovery;

#[test]
fn child_entry() {
    common::child_entry();
}

/// Scrapes `/metrics` and parses it, checking that every sample line parsed and that every
/// metric has its help and type.
async fn scrape(monitor: &Monitor) -> Scrape {
    let response = reqwest::get(monitor.url("/metrics")).await.expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.expect("the metrics");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let scrape = Scrape::parse(lines.iter().cloned().map(Ok)).expect("Prometheus text format");
    let sample_lines = lines.iter().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    assert_eq!(scrape.samples.len(), sample_lines, "every sample line parses:\n{text}");
    for sample in &scrape.samples {
        assert!(scrape.docs.contains_key(&sample.metric), "help for {}", sample.metric);
        assert!(sample.metric.starts_with("shmlane_"), "{}", sample.metric);
    }
    scrape
}

/// The value of `metric` with `labels` (all of them given), if there is one.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<Value> {
    let mut found = scrape.samples.iter().filter(|sample| {
        sample.metric == metric && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
    });
    let first = found.next()?.value.clone();
    assert!(found.next().is_none(), "one series of {metric} {labels:?}");
    Some(first)
}

fn counter(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match value(scrape, metric, labels) {
        Some(Value::Counter(v)) => v,
        other => panic!("{metric} {labels:?}: not a counter: {other:?}"),
    }
}

fn gauge(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match value(scrape, metric, labels) {
        Some(Value::Gauge(v)) => v,
        other => panic!("{metric} {labels:?}: not a gauge: {other:?}"),
    }
}

#[test]
fn metrics_parse_and_show_the_live_topic() {
    let ns = namespace("metrics");
    let _leftovers = common::Leftovers::of(&ns);
    let monitor = Monitor::start(100, true, 64);
    // Subscriber slot 0 takes every sample, slot 1 none: its queue fills and drops.
    let _taker = start("subscribe", &[&ns, "ticks"]);
    let _staller = start("stall", &[&ns, "ticks"]);
    let mut publisher = start("publish", &[&ns, "ticks", "1000"]);
    let topic = [("namespace", ns.as_str()), ("service", "ticks"), ("kind", "topic")];
    let slot = |slot: &'static str| {
        let mut labels = topic.to_vec();
        labels.push(("slot", slot));
        labels
    };
    common::runtime().block_on(async {
        // Wait until the staller's queue is full and has dropped.
        let deadline = Instant::now() + common::WAIT;
        let first = loop {
            let scrape = scrape(&monitor).await;
            let drops = value(&scrape, "shmlane_subscriber_drops_total", &slot("1"));
            if matches!(drops, Some(Value::Counter(d)) if d > 0.0) {
                break scrape;
            }
            assert!(Instant::now() < deadline, "no drops for the stalled subscriber");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let sent = counter(&first, "shmlane_samples_sent_total", &slot("0"));
        assert!(sent > 0.0);
        assert_eq!(counter(&first, "shmlane_loans_failed_total", &slot("0")), 0.0);
        assert!(counter(&first, "shmlane_samples_received_total", &slot("0")) > 0.0);
        assert_eq!(counter(&first, "shmlane_samples_received_total", &slot("1")), 0.0);
        assert_eq!(counter(&first, "shmlane_subscriber_drops_total", &slot("0")), 0.0);
        let capacity = gauge(&first, "shmlane_queue_capacity", &slot("1"));
        assert_eq!(capacity, 64.0, "the default subscriber capacity, one publisher");
        assert_eq!(gauge(&first, "shmlane_queue_depth", &slot("1")), capacity);
        assert_eq!(gauge(&first, "shmlane_queue_fill_ratio", &slot("1")), 1.0);
        assert!(gauge(&first, "shmlane_queue_fill_ratio", &slot("0")) < 1.0);
        assert_eq!(gauge(&first, "shmlane_samples_held", &slot("1")), 0.0);
        let mut publisher_up = slot("0");
        publisher_up.push(("role", "publisher"));
        assert_eq!(gauge(&first, "shmlane_peer_up", &publisher_up), 1.0);
        for s in ["0", "1"] {
            let mut up = slot(s);
            up.push(("role", "subscriber"));
            assert_eq!(gauge(&first, "shmlane_peer_up", &up), 1.0);
        }
        let services = [("namespace", ns.as_str()), ("kind", "topic"), ("state", "alive")];
        assert_eq!(gauge(&first, "shmlane_services", &services), 1.0);
        let nodes = [("namespace", ns.as_str()), ("liveness", "alive")];
        assert_eq!(gauge(&first, "shmlane_nodes", &nodes), 3.0, "pub, sub, stall");
        assert!(counter(&first, "shmlane_monitor_samples_total", &[]) > 0.0);
        assert!(gauge(&first, "shmlane_monitor_sample_duration_seconds", &[]) > 0.0);

        // Counters only grow, and trail what discovery reads after the scrape.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = scrape(&monitor).await;
        let sent_later = counter(&later, "shmlane_samples_sent_total", &slot("0"));
        assert!(sent_later > sent, "{sent} then {sent_later}");
        let listed = discovery::list(None).unwrap();
        let ticks = listed
            .iter()
            .find(|s| s.namespace == ns && s.name == "ticks")
            .expect("the topic listed");
        assert!(sent_later <= ticks.publishers[0].counters.sent as f64);
        let drops_later = counter(&later, "shmlane_subscriber_drops_total", &slot("1"));
        assert!(
            drops_later <= ticks.subscribers.iter().find(|s| s.slot == 1).unwrap().drops as f64
        );

        // SIGKILL: the publisher is proven dead.
        publisher.kill_while_running();
        let deadline = Instant::now() + common::WAIT;
        loop {
            let scrape = scrape(&monitor).await;
            if gauge(&scrape, "shmlane_peer_up", &publisher_up) == 0.0 {
                break;
            }
            assert!(Instant::now() < deadline, "the publisher never turned dead");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
