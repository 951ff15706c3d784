//! Recovery is observable: when a process takes over a dead peer's slot, takes back a dead
//! subscriber's blocks or removes what a dead publisher left, the library says so as a
//! `tracing` event (target `shmlane`, with the service, slot and pid as fields), caught here
//! by a subscriber that records every event.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmlane::Node;
use shmlane_reliability::{PacedSender, Stamped, finish, hold_samples, test_node};
use shmlane_testkit::{
    child_spec, fail, process_lock, report, sleep_until_killed, spawn_child, split_spec, wait_for,
};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(10);

fn namespace(tag: &str) -> String {
    format!("re{}{tag}", std::process::id())
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    let node =
        |ns: &str| Node::builder("child").namespace(ns).create().unwrap_or_else(|e| fail(3, e));
    match (role, args.as_slice()) {
        ("publish", [ns]) => {
            let node = node(ns);
            let topic = node.topic::<Stamped>("t").open().unwrap_or_else(|e| fail(3, e));
            let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
            publisher.send_copy(Stamped::new(1, 1)).unwrap_or_else(|e| fail(3, e));
            report("sent", 1);
            sleep_until_killed()
        }
        ("hold", [ns]) => hold_samples(&node(ns), 2, TIMEOUT),
        _ => fail(2, format!("unknown role {spec}")),
    }
}

/// Every event as one line: `LEVEL target message field=value ...`.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<String>>>);

impl Recorded {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The one recorded line that contains every part of `parts`.
    fn find(&self, parts: &[&str]) -> String {
        let lines = self.lines();
        let found: Vec<&String> =
            lines.iter().filter(|l| parts.iter().all(|part| l.contains(part))).collect();
        assert_eq!(found.len(), 1, "lines with {parts:?} among {lines:#?}");
        found[0].clone()
    }
}

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}", meta.level(), meta.target()));
        event.record(&mut line);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line.0);
    }
}

/// Runs `body` with every `tracing` event of this thread recorded.
fn recording(body: impl FnOnce(&Recorded)) {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    tracing::subscriber::with_default(subscriber, || body(&recorded));
}

#[test]
fn taking_over_a_dead_publishers_slot_and_removing_its_segment_are_reported() {
    let _serial = process_lock();
    let ns = namespace("pub");
    recording(|recorded| {
        let node = test_node(&ns);
        let topic = node.topic::<Stamped>("t").max_publishers(1).create().unwrap();
        let subscriber = topic.subscriber().unwrap();
        let mut child = spawn_child("publish", &[&ns]);
        child.report("sent", TIMEOUT);
        let dead_pid = child.pid();
        child.kill_while_running();
        let publisher = topic.publisher().expect("the dead publisher's slot");
        let line = recorded.find(&["took over a slot", "role=\"publisher\""]);
        for part in ["WARN shmlane", "service=\"t\"", "slot=0", &format!("dead_pid={dead_pid}")] {
            assert!(line.contains(part), "{part} not in {line}");
        }
        // The dead publisher's sample is still queued: its segment stays until it is taken.
        assert!(recorded.lines().iter().all(|l| !l.contains("removed the payload")));
        assert_eq!(subscriber.receive().unwrap().map(|s| s.seq), Some(1));
        drop(publisher);
        let line = recorded.find(&["removed the payload segments", "generation=1"]);
        assert!(line.starts_with("INFO shmlane") && line.contains("slot=0"), "{line}");
        drop(subscriber);
        drop(topic);
        finish(node, &ns, 1, "the killed publisher's node");
    });
}

#[test]
fn taking_back_a_dead_subscribers_blocks_is_reported() {
    let _serial = process_lock();
    let ns = namespace("sub");
    recording(|recorded| {
        let node = test_node(&ns);
        let topic = node.topic::<Stamped>("t").max_subscribers(1).subscriber_capacity(4);
        let topic = topic.max_held(3).create().unwrap();
        let publisher = topic.publisher().unwrap();
        let mut child = spawn_child("hold", &[&ns]);
        child.report("ready", TIMEOUT);
        wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
        let mut sender = PacedSender::new(&publisher, 1);
        sender.until_held(2);
        child.report("holding", TIMEOUT);
        let dead_pid = child.pid();
        child.kill_while_running();
        sender.until_reclaimed(TIMEOUT);
        let line = recorded.find(&["a subscriber is proven dead"]);
        for part in ["WARN shmlane", "service=\"t\"", "slot=0", &format!("dead_pid={dead_pid}")] {
            assert!(line.contains(part), "{part} not in {line}");
        }
        let blocks: u64 = line
            .split(" blocks=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("a block count");
        assert!(blocks >= 2, "{line}");
        drop(publisher);
        drop(topic);
        finish(node, &ns, 1, "the killed subscriber's node");
    });
}
