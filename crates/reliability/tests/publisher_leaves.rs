//! Nothing delivered is lost when its publisher goes away: a sample that `send` reported
//! delivered to a subscriber stays receivable by it after the publisher is dropped, its thread
//! ends, its process exits or is killed, under every overflow policy and with history. The
//! publisher's payload segments keep their names while such samples are queued, and go once
//! nothing names them (the next publisher of the slot, or the topic's last handle).

use std::time::Duration;

use shmlane::{Node, Overflow, Subscriber, Topic};
use shmlane_reliability::{Stamped, files_of, finish, test_node};
use shmlane_testkit::{
    child_spec, exit_child, fail, process_lock, report, sleep_until_killed, spawn_child,
    split_spec, wait_for,
};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Samples each publisher sends before it leaves.
const SENT: u64 = 10;
const POLICIES: [Overflow; 3] = [Overflow::DropOldest, Overflow::Block, Overflow::Reject];

fn namespace(tag: &str) -> String {
    format!("pl{}{tag}", std::process::id())
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("send", [ns, epoch, then]) => {
            let epoch = epoch.parse().unwrap_or_else(|_| fail(2, "epoch"));
            let node =
                Node::builder("child").namespace(*ns).create().unwrap_or_else(|e| fail(3, e));
            let topic = node.topic::<Stamped>("t").open().unwrap_or_else(|e| fail(3, e));
            send(&topic, epoch, true);
            report("sent", SENT);
            if *then == "wait" {
                sleep_until_killed();
            }
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Creates a publisher, waits for one subscriber, sends `SENT` samples of `epoch` (each must be
/// delivered to that one subscriber) and drops the publisher.
fn send(topic: &Topic<Stamped>, epoch: u64, wait: bool) {
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    if wait {
        wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
    }
    for seq in 1..=SENT {
        let delivered =
            publisher.send_copy(Stamped::new(epoch, seq)).unwrap_or_else(|e| fail(3, e));
        if delivered != 1 {
            fail(4, format!("sample {seq} was delivered to {delivered} subscribers, not 1"));
        }
    }
}

fn topic(node: &Node, overflow: Overflow, history: u32) -> Topic<Stamped> {
    let builder = node.topic::<Stamped>("t").max_subscribers(2).subscriber_capacity(16);
    builder.overflow(overflow).history(history).create().expect("create the topic")
}

/// Everything queued for `subscriber`, checked intact, as (epoch, seq).
fn drain(subscriber: &Subscriber<Stamped>) -> Vec<(u64, u64)> {
    std::iter::from_fn(|| subscriber.receive().expect("receive"))
        .map(|s| {
            assert!(s.is_intact(), "torn {:?}", *s);
            (s.epoch, s.seq)
        })
        .collect()
}

fn all_of(epoch: u64) -> Vec<(u64, u64)> {
    (1..=SENT).map(|seq| (epoch, seq)).collect()
}

/// Payload segments of the topic in `ns` (their names hold `.p{slot}.g{generation}`).
fn payload_files(ns: &str) -> Vec<String> {
    files_of(ns).into_iter().filter(|f| f.contains(".topic.t.p")).collect()
}

#[test]
fn samples_of_a_dropped_publisher_reach_a_subscriber_that_never_received_before() {
    let _serial = process_lock();
    for (i, overflow) in POLICIES.into_iter().enumerate() {
        for history in [0, 3] {
            let what = format!("{overflow:?}, history {history}");
            let ns = namespace(&format!("drop{i}h{history}"));
            let node = test_node(&ns);
            let topic = topic(&node, overflow, history);
            let subscriber = topic.subscriber().unwrap();
            send(&topic, 1, false);
            assert_eq!(drain(&subscriber), all_of(1), "{what}");
            assert_eq!(subscriber.drops(), 0, "{what}");

            // A subscriber that joins after the publisher left gets nothing of it: history is
            // replayed by a live publisher when a subscriber joins (docs/guide.md).
            let late = topic.subscriber().unwrap();
            assert_eq!(drain(&late), vec![], "{what}: late joiner");

            // The next publisher of the slot removes the left one's segments once nothing
            // names them, and serves both subscribers (the late one gets its history).
            let left = payload_files(&ns);
            assert_eq!(left.len(), 1, "{what}: the left publisher's segment stays: {left:?}");
            let next = topic.publisher().unwrap();
            assert!(!payload_files(&ns).contains(&left[0]), "{what}: {:?}", payload_files(&ns));
            assert_eq!(next.send_copy(Stamped::new(2, 1)).unwrap(), 2, "{what}");
            assert_eq!(drain(&subscriber), vec![(2, 1)], "{what}");
            assert_eq!(drain(&late), vec![(2, 1)], "{what}");
            drop((next, late, subscriber));
            drop(topic);
            finish(node, &ns, 0, &what);
        }
    }
}

#[test]
fn a_new_publisher_keeps_the_left_ones_segment_while_its_samples_are_queued() {
    let _serial = process_lock();
    let ns = namespace("next");
    let node = test_node(&ns);
    let topic = topic(&node, Overflow::DropOldest, 0);
    let subscriber = topic.subscriber().unwrap();
    send(&topic, 1, false);
    // Same slot, next generation, while the first one's samples are all still queued.
    let next = topic.publisher().unwrap();
    assert_eq!(payload_files(&ns).len(), 2, "{:?}", payload_files(&ns));
    assert_eq!(next.send_copy(Stamped::new(2, 1)).unwrap(), 1);
    let mut expected = all_of(1);
    expected.push((2, 1));
    assert_eq!(drain(&subscriber), expected);
    // The left generation's segment goes with the publisher that found it still needed.
    drop(next);
    assert!(payload_files(&ns).is_empty(), "{:?}", payload_files(&ns));
    drop(subscriber);
    drop(topic);
    finish(node, &ns, 0, "next publisher");
}

#[test]
fn samples_of_a_publisher_whose_thread_ended_are_received() {
    let _serial = process_lock();
    let ns = namespace("thread");
    let node = test_node(&ns);
    let topic = topic(&node, Overflow::DropOldest, 1);
    let subscriber = topic.subscriber().unwrap();
    let sender = {
        let ns = ns.clone();
        std::thread::spawn(move || {
            let node = Node::builder("sender").namespace(ns).create().unwrap();
            let topic = node.topic::<Stamped>("t").open().unwrap();
            send(&topic, 1, true);
        })
    };
    sender.join().expect("the sending thread");
    assert_eq!(drain(&subscriber), all_of(1));
    drop(subscriber);
    drop(topic);
    finish(node, &ns, 0, "thread");
}

#[test]
fn samples_of_a_publisher_process_that_exited_or_was_killed_are_received() {
    let _serial = process_lock();
    for (i, overflow) in POLICIES.into_iter().enumerate() {
        for (then, dead_nodes) in [("exit", 0), ("wait", 1)] {
            let what = format!("{overflow:?}, {then}");
            let ns = namespace(&format!("proc{i}{then}"));
            let node = test_node(&ns);
            let topic = topic(&node, overflow, 2);
            let subscriber = topic.subscriber().unwrap();
            let mut child = spawn_child("send", &[&ns, "1", then]);
            assert_eq!(child.report_u64("sent", TIMEOUT), SENT, "{what}");
            if then == "exit" {
                child.expect_success(TIMEOUT);
            } else {
                child.kill_while_running();
            }
            assert_eq!(drain(&subscriber), all_of(1), "{what}");
            assert_eq!(subscriber.drops(), 0, "{what}");
            drop(subscriber);
            drop(topic);
            // The last handle removed the gone publisher's segment.
            assert!(payload_files(&ns).is_empty(), "{what}: {:?}", payload_files(&ns));
            finish(node, &ns, dead_nodes, &what);
        }
    }
}
