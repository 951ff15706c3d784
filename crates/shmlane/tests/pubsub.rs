//! Publish/subscribe between real processes, and the errors a user meets first: a type
//! mismatch, a full topic, a subscriber that holds too much, drops under drop-oldest.

use std::time::Duration;

use shmlane::notify::Blocking;
use shmlane::{
    ConfigError, ConnectError, Node, Overflow, PublishError, Publisher, ReceiveError, Subscriber,
    Topic, TopicError, ZeroCopy,
};
use shmlane_testkit::{
    ChildProc, child_spec, exit_child, fail, process_lock, report, spawn_child, split_spec,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A market-data tick, as a user would define it.
#[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Tick {
    instrument: u32,
    size: u32,
    price: f64,
    sequence: u64,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// A namespace of its own per test, so tests never share a topic.
fn node(tag: &str) -> Node {
    let namespace = format!("t{}{tag}", std::process::id());
    Node::builder("test").namespace(namespace).create().unwrap()
}

/// In a child: node `name` in `namespace`, its topic `topic` and a subscriber of it, once
/// reported "ready".
fn child_subscriber<T: ZeroCopy>(
    namespace: &str,
    name: &str,
    topic: &str,
) -> (Node, Topic<T>, Subscriber<T>) {
    let node = Node::builder(name).namespace(namespace).create().unwrap();
    let topic = node.topic::<T>(topic).open().unwrap();
    let subscriber = topic.subscriber().unwrap();
    report("ready", 1);
    (node, topic, subscriber)
}

/// Spawns the subscriber child `role` with `args`; returns it once it is ready and `publisher`
/// serves one subscriber (`what`).
fn spawn_subscriber<T: ZeroCopy>(
    role: &str,
    args: &[&str],
    publisher: &Publisher<T>,
    what: &str,
) -> ChildProc {
    let mut child = spawn_child(role, args);
    child.report("ready", TIMEOUT);
    shmlane_testkit::wait_for(what, TIMEOUT, || publisher.subscribers() == 1);
    child
}

/// Removes the dead node registrations of `node`'s namespace: there must be one, `what`.
fn assert_one_dead_node(node: &Node, what: &str) {
    assert_eq!(node.remove_dead_nodes().unwrap().removed.len(), 1, "{what}");
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("subscribe", [namespace, count]) => child_subscribe(namespace, count.parse().unwrap()),
        ("stall", [namespace]) => child_stall(namespace),
        ("hold", [namespace]) => child_hold::<Wide>(namespace, "held"),
        ("hold_inline", [namespace]) => child_hold::<[u64; 1]>(namespace, "held_inline"),
        ("publish", [namespace, count]) => child_publish(namespace, count.parse().unwrap()),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Subscribes, reports "ready", then takes `count` ticks, checking each one's content and
/// order, and reports the sum of their sequence numbers.
fn child_subscribe(namespace: &str, count: u64) {
    let (_node, _topic, subscriber) = child_subscriber::<Tick>(namespace, "sub", "ticks");
    let mut strategy = Blocking::new();
    let mut sum = 0;
    for expected in 1..=count {
        let tick = match subscriber.receive_with(&mut strategy, Some(TIMEOUT)) {
            Ok(tick) => tick,
            Err(e) => fail(3, format!("tick {expected}: {e}")),
        };
        let want =
            Tick { instrument: 7, size: 100, price: expected as f64 / 4.0, sequence: expected };
        if *tick != want {
            fail(4, format!("got {:?}, want {want:?}", *tick));
        }
        sum += tick.sequence;
    }
    report("sum", sum);
}

/// Subscribes to the `blocking` topic, reports "ready", and never reads.
fn child_stall(namespace: &str) {
    let (_node, _topic, _subscriber) = child_subscriber::<u64>(namespace, "stall", "blocking");
    shmlane_testkit::sleep_until_killed()
}

/// A sample too large to travel inline (more than `INLINE_MAX` bytes): sent in a block.
type Wide = [u64; 8];

/// Subscribes to topic `service`, takes one sample and keeps it, reports its first word,
/// waits for death.
fn child_hold<T: ZeroCopy + AsRef<[u64]>>(namespace: &str, service: &str) {
    let (_node, _topic, subscriber) = child_subscriber::<T>(namespace, "hold", service);
    let sample = subscriber.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
    report("holding", sample.as_ref()[0]);
    shmlane_testkit::sleep_until_killed()
}

/// Publishes `count` values 1..=count on `doomed`, keeps a loan open, reports, waits for death.
fn child_publish(namespace: &str, count: u64) {
    let node = Node::builder("pub").namespace(namespace).create().unwrap();
    let topic = node.topic::<u64>("doomed").open().unwrap();
    let publisher = topic.publisher().unwrap();
    shmlane_testkit::wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
    for value in 1..=count {
        publisher.send_copy(value).unwrap();
    }
    let _loan = publisher.loan().unwrap();
    report("sent", count);
    shmlane_testkit::sleep_until_killed()
}

#[test]
fn a_subscriber_process_receives_every_tick_in_order_in_place() {
    let _serial = process_lock();
    let node = node("order");
    let topic = node.topic::<Tick>("ticks").subscriber_capacity(2048).create().unwrap();
    let publisher = topic.publisher().unwrap();
    // The subscriber is served from the first send after it joined.
    let args = [node.namespace(), "2000"];
    let mut child = spawn_subscriber("subscribe", &args, &publisher, "the subscriber to join");
    for sequence in 1..=2000u64 {
        let mut tick = loop {
            match publisher.loan() {
                Ok(loan) => break loan,
                Err(_) => std::thread::yield_now(),
            }
        };
        *tick = Tick { instrument: 7, size: 100, price: sequence as f64 / 4.0, sequence };
        assert_eq!(publisher.send(tick).unwrap(), 1, "tick {sequence} not queued");
    }
    assert_eq!(child.report_u64("sum", TIMEOUT), 2000 * 2001 / 2);
    child.expect_success(TIMEOUT);
}

#[test]
fn every_subscriber_sees_every_sample() {
    let node = node("fanout");
    let topic = node.topic::<u64>("fanout").create().unwrap();
    let subscribers: Vec<_> = (0..3).map(|_| topic.subscriber().unwrap()).collect();
    let publisher = topic.publisher().unwrap();
    for value in 0..5u64 {
        assert_eq!(publisher.send_copy(value).unwrap(), 3);
    }
    for subscriber in &subscribers {
        let got: Vec<u64> =
            std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_the_drops() {
    let node = node("drops");
    let topic = node.topic::<u64>("drops").subscriber_capacity(4).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    for value in 0..10u64 {
        publisher.send_copy(value).unwrap();
    }
    let got: Vec<u64> = std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
    assert_eq!(got, [6, 7, 8, 9]);
    assert_eq!(subscriber.drops(), 6);
}

#[test]
fn inline_samples_claimed_together_are_received_in_order_and_never_evicted() {
    let node = node("ahead");
    let topic = node.topic::<u64>("ahead").subscriber_capacity(8).max_publishers(2).create();
    let topic = topic.unwrap();
    let subscriber = topic.subscriber().unwrap();
    let (a, b) = (topic.publisher().unwrap(), topic.publisher().unwrap());
    for value in 1..=8u64 {
        a.send_copy(value).unwrap();
    }
    b.send_copy(100).unwrap();
    // The first receive claims all eight of `a`'s: off the queue, so the twelve sends after it
    // evict only among themselves (four drops), never the seven already claimed.
    assert_eq!(*subscriber.receive().unwrap().unwrap(), 1);
    for value in 9..=20u64 {
        a.send_copy(value).unwrap();
    }
    let got: Vec<u64> = std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
    let (from_a, from_b): (Vec<u64>, Vec<u64>) = got.iter().partition(|&&v| v < 100);
    assert_eq!(from_a, [2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert_eq!(from_b, [100]);
    assert_eq!(subscriber.drops(), 4);
    // Claimed samples count as held only once handed out.
    let held: Vec<_> = (21..=28u64).map(|v| a.send_copy(v)).collect();
    assert!(held.iter().all(Result::is_ok));
    let kept: Vec<_> = std::iter::from_fn(|| subscriber.receive().ok().flatten()).collect();
    assert_eq!(kept.len(), topic.config().max_held as usize);
    assert!(matches!(subscriber.receive(), Err(ReceiveError::TooManyHeld(_))));
}

#[test]
fn a_batch_send_delivers_every_value_in_order_and_stops_at_a_refusal() {
    let node = node("batch");
    let topic = node.topic::<u64>("batch").subscriber_capacity(8).max_subscribers(2).create();
    let topic = topic.unwrap();
    let (first, second) = (topic.subscriber().unwrap(), topic.subscriber().unwrap());
    let publisher = topic.publisher().unwrap();
    publisher.send_copies(&[1, 2, 3]).unwrap();
    for subscriber in [&first, &second] {
        let got: Vec<u64> =
            std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
        assert_eq!(got, [1, 2, 3]);
    }
    // Drop-oldest: twelve into eight slots, the four oldest evicted and counted.
    let values: Vec<u64> = (10..22).collect();
    publisher.send_copies(&values).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| first.receive().unwrap().map(|s| *s)).collect();
    assert_eq!((got, first.drops()), ((14..22).collect(), 4));

    // Samples in payload blocks batch alike.
    let wide = node.topic::<Wide>("batch-wide").subscriber_capacity(4).create().unwrap();
    let subscriber = wide.subscriber().unwrap();
    let publisher = wide.publisher().unwrap();
    publisher.send_copies(&[[7; 8], [8; 8]]).unwrap();
    assert_eq!(subscriber.receive().unwrap().map(|s| s[7]), Some(7));
    assert_eq!(subscriber.receive().unwrap().map(|s| s[7]), Some(8));

    // Reject: the batch stops at the first value that does not fit, the ones before it sent.
    let strict =
        node.topic::<u64>("batch-reject").subscriber_capacity(2).overflow(Overflow::Reject);
    let strict = strict.create().unwrap();
    let subscriber = strict.subscriber().unwrap();
    let publisher = strict.publisher().unwrap();
    let stopped = publisher.send_copies(&[1, 2, 3, 4]).unwrap_err();
    assert_eq!(stopped.sent, 2);
    assert!(matches!(stopped.error, PublishError::SubscriberFull), "{stopped}");
    let got: Vec<u64> = std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
    assert_eq!(got, [1, 2]);
}

#[test]
fn a_batch_wakes_a_blocked_subscriber_and_waits_for_its_room_without_deadlock() {
    let node = node("batchwake");
    let topic = node.topic::<u64>("wake").subscriber_capacity(4).overflow(Overflow::Block);
    let topic = topic.create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    let reader = std::thread::spawn(move || {
        let mut strategy = Blocking::new();
        (0..64)
            .map(|_| {
                *subscriber.receive_with(&mut strategy, Some(Duration::from_secs(10))).unwrap()
            })
            .collect::<Vec<u64>>()
    });
    assert_eq!(publisher.subscribers(), 1);
    // Sixteen times the queue: the batch waits for room, waking the reader before each wait.
    // A reader left asleep would re-check only after 100 ms (`Blocking`'s period), past this
    // timeout; woken, it takes microseconds.
    publisher.set_block_timeout(Duration::from_millis(80));
    let values: Vec<u64> = (0..64).collect();
    publisher.send_copies(&values).unwrap();
    assert_eq!(reader.join().unwrap(), values);
}

/// `drain` hands every queued sample to its callback in order: inline ones in batches, from
/// the samples a `receive` took ahead, from two publishers, mixed with blocks (a slice) and
/// up to its limit; it holds none (`max_held` does not stop it), wakes a publisher blocked for
/// room, counts what it took, and a callback may receive from the same subscriber.
#[test]
fn drain_hands_over_every_queued_sample_in_order_holding_none() {
    let node = node("drain");
    let topic = node.topic::<u64>("drain").subscriber_capacity(64).max_held(2).max_publishers(2);
    let topic = topic.create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let (a, b) = (topic.publisher().unwrap(), topic.publisher().unwrap());
    let values: Vec<u64> = (1..=40).collect();
    a.send_copies(&values).unwrap();
    // A receive claims a batch ahead; drain starts with what it left.
    assert_eq!(*subscriber.receive().unwrap().unwrap(), 1);
    let mut got = Vec::new();
    assert_eq!(subscriber.drain(10, |v| got.push(*v)).unwrap(), 10);
    assert_eq!(got, (2..=11).collect::<Vec<_>>());
    // A block (a slice of one) among inline samples, and a second publisher.
    let mut slice = a.loan_slice(1).unwrap();
    slice[0] = 500;
    a.send_slice(slice).unwrap();
    a.send_copy(501).unwrap();
    b.send_copies(&[900, 901]).unwrap();
    got.clear();
    let mut nested = None;
    let n = subscriber
        .drain(usize::MAX, |v| {
            got.push(*v);
            // The subscriber is free to use inside the callback.
            if *v == 20 {
                nested = Some(subscriber.held());
            }
        })
        .unwrap();
    assert_eq!(n, got.len());
    let (from_a, from_b): (Vec<u64>, Vec<u64>) = got.iter().partition(|&&v| v < 900);
    assert_eq!(from_a, (12..=40).chain([500, 501]).collect::<Vec<_>>());
    assert_eq!(from_b, [900, 901]);
    assert_eq!(nested, Some(0), "drained samples are not held");
    assert_eq!(subscriber.drain(usize::MAX, |_| panic!("nothing is queued")).unwrap(), 0);
    assert_eq!(subscriber.drops(), 0);

    // Under Block, a drain makes room and wakes the publisher that waits for it.
    let blocking =
        node.topic::<u64>("drain-block").subscriber_capacity(4).overflow(Overflow::Block);
    let blocking = blocking.create().unwrap();
    let subscriber = blocking.subscriber().unwrap();
    let publisher = blocking.publisher().unwrap();
    assert_eq!(publisher.subscribers(), 1);
    publisher.set_block_timeout(Duration::from_secs(10));
    let writer = std::thread::spawn(move || {
        let values: Vec<u64> = (0..1000).collect();
        publisher.send_copies(&values).map(|()| publisher)
    });
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 1000 && std::time::Instant::now() < deadline {
        subscriber.drain(3, |v| got.push(*v)).unwrap();
    }
    assert!(writer.join().unwrap().is_ok());
    assert_eq!(got, (0..1000).collect::<Vec<u64>>());
}

#[test]
fn blocks_come_back_so_a_long_stream_never_runs_the_pool_dry() {
    let node = node("reuse");
    let topic =
        node.topic::<[u8; 4096]>("pages").subscriber_capacity(2).max_loans(1).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    for round in 0..10_000u32 {
        let mut page = publisher.loan().unwrap();
        page[..4].copy_from_slice(&round.to_le_bytes());
        publisher.send(page).unwrap();
        let sample = subscriber.receive().unwrap().expect("sent just before");
        assert_eq!(sample[..4], round.to_le_bytes());
    }
}

#[test]
fn a_subscriber_holding_max_held_samples_gets_a_clear_error() {
    let node = node("held");
    let topic = node.topic::<u64>("held").max_held(2).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    for value in 0..3u64 {
        publisher.send_copy(value).unwrap();
    }
    let first = subscriber.receive().unwrap().unwrap();
    let _second = subscriber.receive().unwrap().unwrap();
    assert!(matches!(subscriber.receive(), Err(ReceiveError::TooManyHeld(2))));
    drop(first);
    assert_eq!(*subscriber.receive().unwrap().unwrap(), 2);
}

#[test]
fn opening_a_topic_with_another_type_is_an_error() {
    let node = node("types");
    let _topic = node.topic::<Tick>("typed").create().unwrap();
    let err = node.topic::<u64>("typed").open().unwrap_err();
    assert!(matches!(err, TopicError::TypeMismatch { found_size: 24, size: 8, .. }), "{err}");
    let err = node.topic::<Tick>("typed").type_version(2).open().unwrap_err();
    assert!(matches!(err, TopicError::TypeMismatch { found_version: 0, version: 2, .. }));
}

#[test]
fn too_many_subscribers_is_a_clear_error() {
    let node = node("full");
    let topic = node.topic::<u64>("full").max_subscribers(2).create().unwrap();
    let _a = topic.subscriber().unwrap();
    let _b = topic.subscriber().unwrap();
    let err = topic.subscriber().unwrap_err();
    assert!(matches!(err, ConnectError::NoFreeSlot { what: "subscriber", max: 2 }), "{err}");
    assert!(err.to_string().contains("max_subscribers"), "{err}");
}

#[test]
fn a_subscriber_that_leaves_gives_its_slot_and_blocks_back() {
    let node = node("leave");
    let topic =
        node.topic::<u64>("leave").max_subscribers(1).subscriber_capacity(2).create().unwrap();
    let publisher = topic.publisher().unwrap();
    {
        let subscriber = topic.subscriber().unwrap();
        publisher.send_copy(1).unwrap();
        publisher.send_copy(2).unwrap();
        let _held = subscriber.receive().unwrap().unwrap();
    }
    let subscriber = topic.subscriber().unwrap();
    publisher.send_copy(3).unwrap();
    // The newcomer sees only what was sent after it joined.
    assert_eq!(*subscriber.receive().unwrap().unwrap(), 3);
    assert!(subscriber.receive().unwrap().is_none());
}

#[test]
fn reject_refuses_a_send_while_a_subscriber_is_full() {
    let node = node("reject");
    let topic = node.topic::<u64>("reject").subscriber_capacity(2).overflow(Overflow::Reject);
    let topic = topic.create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    publisher.send_copy(1).unwrap();
    publisher.send_copy(2).unwrap();
    assert!(matches!(publisher.send_copy(3), Err(PublishError::SubscriberFull)));
    assert_eq!(*subscriber.receive().unwrap().unwrap(), 1);
    publisher.send_copy(4).unwrap();
    let rest: Vec<u64> = std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
    assert_eq!(rest, [2, 4], "nothing of the refused send was delivered");
    assert_eq!(subscriber.drops(), 0);
}

#[test]
fn block_waits_for_a_slow_subscriber_and_loses_nothing() {
    let node = node("block");
    let topic = node.topic::<u64>("block").subscriber_capacity(2).overflow(Overflow::Block);
    let topic = topic.create().unwrap();
    let ready = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let subscriber = topic.subscriber().unwrap();
            ready.wait();
            let mut strategy = Blocking::new();
            let mut got = Vec::new();
            while got.len() < 1000 {
                let sample = subscriber.receive_with(&mut strategy, Some(TIMEOUT)).unwrap();
                got.push(*sample);
                if got.len() % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5)); // slower than the publisher
                }
            }
            (got, subscriber.drops())
        });
        ready.wait();
        let publisher = topic.publisher().unwrap();
        publisher.set_block_timeout(TIMEOUT);
        shmlane_testkit::wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
        for value in 0..1000u64 {
            assert_eq!(publisher.send_copy(value).unwrap(), 1);
        }
        let (got, drops) = reader.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(drops, 0);
    });
}

#[test]
fn block_times_out_on_a_live_subscriber_that_never_reads() {
    let node = node("blocktimeout");
    let topic = node.topic::<u64>("stuck").subscriber_capacity(2).overflow(Overflow::Block);
    let topic = topic.create().unwrap();
    let _subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    publisher.set_block_timeout(Duration::from_millis(100));
    publisher.send_copy(1).unwrap();
    publisher.send_copy(2).unwrap();
    let start = std::time::Instant::now();
    assert!(matches!(publisher.send_copy(3), Err(PublishError::Timeout(_))));
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn block_releases_a_publisher_waiting_on_a_subscriber_killed_with_sigkill() {
    let _serial = process_lock();
    let node = node("blockdead");
    let topic = node.topic::<u64>("blocking").subscriber_capacity(2).overflow(Overflow::Block);
    let topic = topic.create().unwrap();
    let publisher = topic.publisher().unwrap();
    publisher.set_block_timeout(TIMEOUT);
    let mut child = spawn_subscriber("stall", &[node.namespace()], &publisher, "the subscriber");
    publisher.send_copy(1).unwrap();
    publisher.send_copy(2).unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        child.kill();
    });
    let start = std::time::Instant::now();
    // Blocked on the full queue until the kill; then the dead subscriber is cleaned out and no
    // longer served.
    assert_eq!(publisher.send_copy(3).unwrap(), 0);
    let waited = start.elapsed();
    killer.join().unwrap();
    assert!(waited >= Duration::from_millis(150), "did not block: {waited:?}");
    assert!(waited < Duration::from_secs(5), "released by the timeout, not the death: {waited:?}");
    assert_one_dead_node(&node, "the killed subscriber's node registration");
}

#[test]
fn slices_of_run_time_length_arrive_whole() {
    let node = node("slices");
    let topic = node.topic::<f32>("frames").max_slice_len(512).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    for len in [1usize, 256, 512] {
        let mut frames = publisher.loan_slice(len).unwrap();
        for (i, frame) in frames.iter_mut().enumerate() {
            *frame = (len * 1000 + i) as f32;
        }
        publisher.send_slice(frames).unwrap();
    }
    for len in [1usize, 256, 512] {
        let sample = subscriber.receive().unwrap().unwrap();
        assert_eq!(sample.len(), len);
        let want: Vec<f32> = (0..len).map(|i| (len * 1000 + i) as f32).collect();
        assert_eq!(sample.as_slice(), want.as_slice());
    }
    assert!(matches!(publisher.loan_slice(0), Err(PublishError::BadSliceLen { len: 0 })));
}

#[test]
fn slices_beyond_the_block_size_grow_the_pool_even_past_8_mib() {
    let node = node("grow");
    let topic = node.topic::<u8>("bytes").max_slice_len(4096).max_subscribers(2).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    let pattern = |len: usize, i: usize| (i.wrapping_mul(31) ^ len) as u8;
    // Small, then 9 MiB (a 16 MiB class segment is added), then mid-size, then 9 MiB again
    // several times (its class is reused once blocks come back).
    for len in [100usize, 9 << 20, 5000, 9 << 20, 9 << 20, 9 << 20, 64] {
        let mut bytes = publisher.loan_slice(len).unwrap();
        for (i, byte) in bytes.iter_mut().enumerate().step_by(4099) {
            *byte = pattern(len, i);
        }
        publisher.send_slice(bytes).unwrap();
        let sample = subscriber.receive().unwrap().expect("sent just before");
        assert_eq!(sample.len(), len);
        let got = sample.as_slice();
        assert!((0..len).step_by(4099).all(|i| got[i] == pattern(len, i)), "{len} bytes");
    }
}

#[test]
fn a_killed_subscriber_holding_samples_gets_its_blocks_taken_back_and_its_slot_reused() {
    let _serial = process_lock();
    let node = node("deadsub");
    let topic = node.topic::<Wide>("held").max_subscribers(1).subscriber_capacity(2).max_held(1);
    let topic = topic.create().unwrap();
    let publisher = topic.publisher().unwrap();
    let mut child = spawn_subscriber("hold", &[node.namespace()], &publisher, "the subscriber");
    publisher.send_copy([1; 8]).unwrap();
    assert_eq!(child.report_u64("holding", TIMEOUT), 1);
    // Two more fill its queue; it is now at its limit (2 queued + 1 held): no more for it.
    publisher.send_copy([2; 8]).unwrap();
    publisher.send_copy([3; 8]).unwrap();
    assert_eq!(publisher.send_copy([4; 8]).unwrap(), 0, "over its limit");
    child.kill();
    std::thread::sleep(Duration::from_millis(20));
    // The next send at the limit finds it dead, takes its three blocks back and frees its slot.
    assert_eq!(publisher.send_copy([5; 8]).unwrap(), 0);
    assert_eq!(publisher.block_counts().held, 0, "its blocks were taken back");
    assert_eq!(publisher.subscribers(), 0, "it is no longer served");
    // A new subscriber gets the slot and sees only new samples.
    let subscriber = topic.subscriber().unwrap();
    publisher.send_copy([7; 8]).unwrap();
    let got: Vec<u64> =
        std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| s[0])).collect();
    assert_eq!(got, [7]);
    assert_one_dead_node(&node, "the killed subscriber's node registration");
}

#[test]
fn a_killed_subscriber_holding_inline_samples_is_found_dead_and_its_slot_reused() {
    let _serial = process_lock();
    let node = node("deadinline");
    let topic = node.topic::<[u64; 1]>("held_inline").max_subscribers(1).subscriber_capacity(2);
    let topic = topic.max_held(1).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let args = [node.namespace()];
    let mut child = spawn_subscriber("hold_inline", &args, &publisher, "the subscriber");
    publisher.send_copy([1]).unwrap();
    assert_eq!(child.report_u64("holding", TIMEOUT), 1);
    // Inline samples take no block: a full queue evicts its oldest (drop-oldest), counted.
    for value in 2..=4 {
        assert_eq!(publisher.send_copy([value]).unwrap(), 1);
    }
    child.kill();
    // A send that evicts checks the subscriber it evicted from (at most every 10 ms): once it
    // is found dead its slot is freed and nothing more is queued for it.
    shmlane_testkit::wait_for("the dead subscriber to be dropped", TIMEOUT, || {
        publisher.send_copy([5]).unwrap();
        publisher.subscribers() == 0
    });
    assert_eq!(publisher.block_counts().held, 0, "inline samples hold no block");
    let subscriber = topic.subscriber().unwrap();
    assert!(subscriber.drops() >= 1, "the evictions were counted in the slot");
    publisher.send_copy([7]).unwrap();
    let got: Vec<u64> =
        std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| s[0])).collect();
    assert_eq!(got, [7], "only samples sent after it joined");
    assert_one_dead_node(&node, "the killed subscriber's node registration");
}

#[test]
fn a_late_joiner_gets_the_history_then_new_samples() {
    let node = node("history");
    let topic = node.topic::<u64>("history").history(3).create().unwrap();
    let publisher = topic.publisher().unwrap();
    for value in 1..=5u64 {
        assert_eq!(publisher.send_copy(value).unwrap(), 0, "nobody subscribed yet");
    }
    let late = topic.subscriber().unwrap();
    publisher.send_copy(6).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| late.receive().unwrap().map(|s| *s)).collect();
    assert_eq!(got, [3, 4, 5, 6]);
    // History blocks are shared, not copied, and go back to the pool as it moves on.
    for value in 7..10_000u64 {
        publisher.send_copy(value).unwrap();
        assert_eq!(*late.receive().unwrap().unwrap(), value);
    }
}

#[test]
fn history_longer_than_the_queue_is_refused() {
    let node = node("historylimit");
    let err = node.topic::<u64>("h").subscriber_capacity(4).history(5).create().unwrap_err();
    assert!(
        matches!(
            err,
            TopicError::InvalidConfig(ConfigError::HistoryTooLong { history: 5, capacity: 4 })
        ),
        "{err}"
    );
}

#[test]
fn two_subscriber_processes_each_receive_every_tick() {
    let _serial = process_lock();
    let node = node("fanout2");
    let topic = node.topic::<Tick>("ticks").subscriber_capacity(2048).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let mut children: Vec<_> =
        (0..2).map(|_| spawn_child("subscribe", &[node.namespace(), "1000"])).collect();
    for child in &mut children {
        child.report("ready", TIMEOUT);
    }
    shmlane_testkit::wait_for("both subscribers", TIMEOUT, || publisher.subscribers() == 2);
    for sequence in 1..=1000u64 {
        let tick = Tick { instrument: 7, size: 100, price: sequence as f64 / 4.0, sequence };
        assert_eq!(publisher.send_copy(tick).unwrap(), 2, "tick {sequence}");
    }
    for child in &mut children {
        assert_eq!(child.report_u64("sum", TIMEOUT), 1000 * 1001 / 2);
        child.expect_success(TIMEOUT);
    }
}

#[test]
fn a_killed_publishers_slot_is_taken_over_and_its_queued_samples_still_read() {
    let _serial = process_lock();
    let node = node("deadpub");
    let topic = node.topic::<u64>("doomed").max_publishers(1).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let mut child = spawn_child("publish", &[node.namespace(), "5"]);
    assert_eq!(child.report_u64("sent", TIMEOUT), 5);
    // The only publisher slot is held by a live process.
    assert!(matches!(topic.publisher(), Err(ConnectError::NoFreeSlot { .. })));
    // Read two while it lives, then kill it with a loan open and three samples queued.
    assert_eq!(*subscriber.receive().unwrap().unwrap(), 1);
    let held = subscriber.receive().unwrap().unwrap();
    child.kill();
    // Its slot is taken over (proven dead); its payload segment is unlinked, but what we
    // mapped stays readable: the held sample and the queued ones.
    let publisher = topic.publisher().unwrap();
    assert_eq!(*held, 2);
    drop(held);
    // The new holder adopts the connection (the samples still queued stay) and publishes
    // through a new payload segment.
    publisher.send_copy(6).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
    assert_eq!(got, [3, 4, 5, 6]);
    for value in 7..1000u64 {
        publisher.send_copy(value).unwrap();
        assert_eq!(*subscriber.receive().unwrap().unwrap(), value);
    }
    assert_one_dead_node(&node, "the killed publisher's node registration");
}

/// A subscriber kept busy by one publisher still takes up a publisher that joins: receives
/// that find a sample skip the slots of publishers not connected yet, but every 16th claim
/// from the queues (a claim takes up to 16 inline samples) looks for them first, so the
/// newcomer's sample comes within 17 × 16 receives although the first publisher's queue is
/// never empty.
#[test]
fn a_new_publisher_is_heard_while_another_keeps_the_subscriber_busy() {
    let node = node("newpub");
    let topic = node
        .topic::<u64>("newpub")
        .max_publishers(4)
        .overflow(Overflow::DropOldest)
        .open_or_create()
        .unwrap();
    let busy = topic.publisher().unwrap();
    let subscriber = topic.subscriber().unwrap();
    for i in 0..4 {
        busy.send_copy(i).unwrap();
    }
    // The busy publisher's queue never runs dry from here on: each receive finds a sample.
    for _ in 0..100 {
        busy.send_copy(1).unwrap();
        assert!(subscriber.receive().unwrap().is_some());
    }
    let newcomer = topic.publisher().unwrap();
    assert_eq!(newcomer.send_copy(999).unwrap(), 1, "the subscriber is served");
    let heard = (0..1_000).position(|_| {
        busy.send_copy(1).unwrap();
        *subscriber.receive().unwrap().expect("queued") == 999
    });
    assert!(heard.is_some_and(|n| n < 17 * 16), "the newcomer's sample after {heard:?} receives");
}
