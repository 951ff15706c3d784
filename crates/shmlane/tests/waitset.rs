//! The WaitSet between real processes: one thread on 64 topics fed by another process gets
//! every sample once and in order (parked on all of them at once, and busy polling); a deadline
//! is reported once its source falls silent (its publisher killed with SIGKILL), never before;
//! intervals tick; events and rpc wake it too; detaching stops reports.

use std::time::{Duration, Instant};

use shmlane::notify::{Backoff, Blocking, BusySpin, WaitStrategy};
use shmlane::{Node, Overflow, Ready, WaitError, WaitSet};
use shmlane_testkit::{
    child_spec, exit_child, fail, process_lock, report, spawn_child, split_spec,
};

const TIMEOUT: Duration = Duration::from_secs(30);

fn node(tag: &str) -> Node {
    let namespace = format!("w{}{tag}", std::process::id());
    Node::builder("test").namespace(namespace).create().unwrap()
}

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("publish", [namespace, topics, count]) => {
            publish(namespace, topics.parse().unwrap(), count.parse().unwrap())
        }
        ("beat", [namespace]) => beat(namespace),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Publishes `count` samples to each of topics `t0..t{topics}`, interleaved in a scrambled
/// order, each sample `topic << 32 | sequence`.
fn publish(namespace: &str, topics: u64, count: u64) {
    let node = Node::builder("pub").namespace(namespace).create().unwrap();
    let publishers: Vec<_> = (0..topics)
        .map(|t| node.topic::<u64>(&format!("t{t}")).open().unwrap().publisher().unwrap())
        .collect();
    for publisher in &publishers {
        shmlane_testkit::wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
        publisher.set_block_timeout(TIMEOUT);
    }
    let mut next = vec![0u64; topics as usize];
    let mut sent = 0;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while sent < topics * count {
        // xorshift: a topic at random, skipping finished ones.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let t = (x % topics) as usize;
        if next[t] == count {
            continue;
        }
        publishers[t].send_copy((t as u64) << 32 | next[t]).unwrap();
        next[t] += 1;
        sent += 1;
    }
    report("sent", sent);
}

/// Publishes on `beat` every 5 ms until killed.
fn beat(namespace: &str) {
    let node = Node::builder("beat").namespace(namespace).create().unwrap();
    let publisher = node.topic::<u64>("beat").open().unwrap().publisher().unwrap();
    report("beating", 1);
    for n in 0.. {
        publisher.send_copy(n).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Receives `count` samples of each of `topics` topics published by a child process, through
/// one WaitSet waited on with `strategy`.
fn every_sample_once(tag: &str, topics: u64, count: u64, mut strategy: impl WaitStrategy) {
    let _serial = process_lock();
    let node = node(tag);
    let handles: Vec<_> = (0..topics)
        .map(|t| {
            let builder = node.topic::<u64>(&format!("t{t}")).overflow(Overflow::Block);
            builder.subscriber_capacity(256).create().unwrap()
        })
        .collect();
    let subscribers: Vec<_> = handles.iter().map(|t| t.subscriber().unwrap()).collect();
    let waitset = WaitSet::new();
    let attachments: Vec<_> = subscribers.iter().map(|s| waitset.attach(s)).collect();
    let mut child =
        spawn_child("publish", &[node.namespace(), &topics.to_string(), &count.to_string()]);
    let mut next = vec![0u64; topics as usize];
    let mut received = 0;
    while received < topics * count {
        for ready in waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap() {
            let Ready::Data(id) = ready else { panic!("only data was attached: {ready:?}") };
            let t = attachments.iter().position(|a| a.id() == id).expect("one of ours");
            while let Some(sample) = subscribers[t].receive().unwrap() {
                assert_eq!(*sample, (t as u64) << 32 | next[t], "topic {t}");
                next[t] += 1;
                received += 1;
            }
        }
    }
    assert!(next.iter().all(|&n| n == count), "{next:?}");
    assert_eq!(child.report_u64("sent", TIMEOUT), topics * count);
    child.expect_success(TIMEOUT);
}

#[test]
fn a_parked_waitset_on_64_topics_gets_every_sample_of_another_process_once_in_order() {
    every_sample_once("park", 64, 500, Blocking::new());
}

#[test]
fn a_busy_and_a_backoff_waitset_get_every_sample_too() {
    every_sample_once("spin", 8, 2000, BusySpin);
    every_sample_once("backoff", 8, 2000, Backoff::new());
}

#[test]
fn a_deadline_is_reported_once_its_publisher_is_killed_and_never_before() {
    const WITHIN: Duration = Duration::from_millis(500);
    let _serial = process_lock();
    let node = node("deadline");
    let topic = node.topic::<u64>("beat").create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let waitset = WaitSet::new();
    let watched = waitset.attach_deadline(&subscriber, WITHIN);
    let mut child = spawn_child("beat", &[node.namespace()]);
    child.report("beating", TIMEOUT);
    let mut strategy = Blocking::new();
    let mut last_data = Instant::now();
    // While it beats every 5 ms, nothing is missed.
    let beating_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < beating_until {
        for ready in waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap() {
            assert_eq!(ready, Ready::Data(watched.id()), "missed while beating");
            while subscriber.receive().unwrap().is_some() {}
            last_data = Instant::now();
        }
    }
    child.kill();
    // Killed: what it queued is taken, then the deadline passes, once.
    let missed_at = loop {
        let ready = waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap();
        if ready == [Ready::Missed(watched.id())] {
            break Instant::now();
        }
        while subscriber.receive().unwrap().is_some() {}
        last_data = Instant::now();
    };
    assert!(missed_at >= last_data + WITHIN, "reported {:?} after data", missed_at - last_data);
    assert!(missed_at < last_data + WITHIN + Duration::from_secs(5));
    // The next report is a deadline later, not at once.
    let started = Instant::now();
    assert_eq!(waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap(), [Ready::Missed(watched.id())]);
    assert!(started.elapsed() >= WITHIN * 9 / 10, "{:?}", started.elapsed());
    // The killed child's node registration.
    node.remove_dead_nodes().unwrap();
}

#[test]
fn intervals_tick_and_events_and_rpc_wake_the_set() {
    let node = node("mixed");
    let event = node.event("bell").open_or_create().unwrap();
    let listener = event.listener().unwrap();
    let rpc = node.rpc::<u64, u64>("double").open_or_create().unwrap();
    let (server, client) = (rpc.server().unwrap(), rpc.client().unwrap());
    let waitset = WaitSet::new();
    let bell = waitset.attach(&listener);
    let serve = waitset.attach(&server);
    let answered = waitset.attach(&client);
    let tick = waitset.attach_interval(Duration::from_millis(10));
    let mut strategy = Blocking::new();

    let started = Instant::now();
    let mut ticks = 0;
    while ticks < 5 {
        for ready in waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap() {
            assert_eq!(ready, Ready::Tick(tick.id()), "nothing else was sent");
            ticks += 1;
        }
    }
    // Never more often than the period (the first is due one period after attaching).
    assert!(started.elapsed() >= Duration::from_millis(50), "{:?}", started.elapsed());

    std::thread::scope(|s| {
        s.spawn(|| event.notifier().unwrap().notify(3).unwrap());
    });
    let ready = waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap();
    assert!(ready.iter().any(|r| bell.is(*r)), "{ready:?}");
    assert_eq!(listener.try_take(), [3]);

    let pending = client.send(21).unwrap();
    let ready = waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap();
    assert!(ready.iter().any(|r| serve.is(*r)), "{ready:?}");
    let request = server.receive().unwrap().expect("ready");
    server.respond(&request, *request * 2).unwrap();
    drop(request);
    let ready = waitset.wait(&mut strategy, Some(TIMEOUT)).unwrap();
    assert!(ready.iter().any(|r| answered.is(*r)), "{ready:?}");
    assert_eq!(*client.receive(pending).unwrap().expect("ready"), 42);
}

#[test]
fn a_detached_source_is_not_reported_and_an_empty_set_is_an_error() {
    let node = node("detach");
    let topic = node.topic::<u64>("quiet").create().unwrap();
    let (publisher, subscriber) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
    let waitset = WaitSet::new();
    let mut strategy = Blocking::new();
    assert_eq!(waitset.wait(&mut strategy, None), Err(WaitError::NothingAttached));
    let attached = waitset.attach(&subscriber);
    let timeout = Some(Duration::from_millis(20));
    assert!(matches!(waitset.wait(&mut strategy, timeout), Err(WaitError::TimedOut(_))));
    publisher.send_copy(1).unwrap();
    assert_eq!(waitset.wait(&mut strategy, timeout).unwrap(), [Ready::Data(attached.id())]);
    // Still ready until taken.
    assert_eq!(waitset.wait(&mut strategy, timeout).unwrap(), [Ready::Data(attached.id())]);
    drop(attached);
    assert_eq!(waitset.len(), 0);
    let _tick = waitset.attach_interval(Duration::from_secs(3600));
    assert!(matches!(waitset.wait(&mut strategy, timeout), Err(WaitError::TimedOut(_))));
}
