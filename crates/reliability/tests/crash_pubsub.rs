//! Crash injection in publish/subscribe: publishers and subscribers killed with SIGKILL at the
//! facade's crash points (see `shmlane`'s crate documentation) or from outside, and the
//! survivors checked: they keep exchanging intact samples, a new process takes the dead one's
//! slot, every payload block comes back (counted before and after), and nothing is left in
//! /dev/shm. Processes that are alive but stalled (SIGSTOP) keep their slots and samples however
//! long after every timeout, and go on when resumed.

use std::time::{Duration, Instant};

use shmlane::notify::Blocking;
use shmlane::{
    BlockCounts, ConnectError, Node, Overflow, PublishError, Publisher, Sample, Subscriber, Topic,
};
use shmlane_reliability::{
    CRASH_AT_ENV, Flag, SmallStamped, Stamp, Stamped, assert_nothing_left, files_of, finish,
    hold_samples, test_node,
};
use shmlane_testkit::{
    ChildProc, arg_u64, child_spec, exit_child, fail, process_lock, report, sleep_until_killed,
    spawn_child, spawn_child_with_env, split_spec, wait_for,
};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(10);

fn namespace(tag: &str) -> String {
    format!("cp{}{tag}", std::process::id())
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("publish", [ns, epoch, subscribers]) => {
            child_publish::<Stamped>(ns, arg_u64(epoch), arg_u64(subscribers) as usize)
        }
        ("publish_small", [ns, epoch, subscribers]) => {
            child_publish::<SmallStamped>(ns, arg_u64(epoch), arg_u64(subscribers) as usize)
        }
        ("publish_then_wait", [ns, flag]) => child_publish_then_wait(ns, flag),
        ("hold", [ns, keep]) => hold_samples(&child_node(ns), arg_u64(keep) as usize, TIMEOUT),
        ("stall", [ns]) => child_stall(ns),
        ("leave", [ns, flag]) => child_leave(ns, flag),
        ("count", [ns, total]) => child_count(ns, arg_u64(total)),
        ("blocked_wait", [ns]) => child_blocked_wait(ns),
        ("slow", [ns, flag, keep, mode, last]) => {
            child_slow(ns, flag, arg_u64(keep) as usize, mode, arg_u64(last))
        }
        ("register", [ns]) => {
            let _node = Node::builder("doomed").namespace(*ns).create();
            fail(5, "registered a node without dying at the armed crash point");
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

fn child_node(ns: &str) -> Node {
    Node::builder("child").namespace(ns).create().unwrap_or_else(|e| fail(3, e))
}

/// The child's node, topic "t" and a publisher of it.
fn child_publisher<S: Stamp>(ns: &str) -> (Node, Topic<S>, Publisher<S>) {
    let node = child_node(ns);
    let topic = node.topic::<S>("t").open().unwrap_or_else(|e| fail(3, e));
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    (node, topic, publisher)
}

/// The child's node, topic "t" and a subscriber of it, once reported "ready".
fn child_subscriber(ns: &str) -> (Node, Topic<Stamped>, Subscriber<Stamped>) {
    let node = child_node(ns);
    let topic = node.topic::<Stamped>("t").open().unwrap_or_else(|e| fail(3, e));
    let subscriber = topic.subscriber().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    (node, topic, subscriber)
}

/// The next sample of `subscriber`, waiting for it (in a child).
fn next_sample(subscriber: &Subscriber<Stamped>) -> Sample<'_, Stamped> {
    let sample = subscriber.receive_with(&mut Blocking::new(), Some(TIMEOUT));
    sample.unwrap_or_else(|e| fail(3, e))
}

/// The seq of the next sample of `subscriber`, which must be intact (in a child).
fn next_intact(subscriber: &Subscriber<Stamped>) -> u64 {
    let sample = next_sample(subscriber);
    if !sample.is_intact() {
        fail(4, format!("torn: {:?}", *sample));
    }
    sample.seq
}

/// Publishes `S(epoch, 1..)` once every millisecond after `subscribers` joined, until its
/// armed crash point kills it.
fn child_publish<S: Stamp>(ns: &str, epoch: u64, subscribers: usize) {
    let (_node, _topic, publisher) = child_publisher(ns);
    wait_for("the subscribers", TIMEOUT, || publisher.subscribers() == subscribers);
    report("serving", subscribers);
    std::thread::sleep(Duration::from_millis(50));
    for seq in 1..10_000 {
        publisher.send_copy(S::new(epoch, seq)).unwrap_or_else(|e| fail(3, e));
        std::thread::sleep(Duration::from_millis(1));
    }
    fail(5, "published for 10 s without dying at the armed crash point");
}

/// Publishes 1..=3, keeps a loan, reports "sent"; once `flag` is raised, publishes 4..=6.
fn child_publish_then_wait(ns: &str, flag: &str) {
    let (_node, _topic, publisher) = child_publisher(ns);
    wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
    for seq in 1..=3 {
        publisher.send_copy(Stamped::new(1, seq)).unwrap_or_else(|e| fail(3, e));
    }
    let loan = publisher.loan().unwrap_or_else(|e| fail(3, e));
    report("sent", 3);
    wait_for("the go flag", TIMEOUT, || Flag::is_raised(flag));
    drop(loan);
    for seq in 4..=6 {
        publisher.send_copy(Stamped::new(1, seq)).unwrap_or_else(|e| fail(3, e));
    }
}

/// Takes one sample, holds it, reads no more, waits to be killed.
fn child_stall(ns: &str) {
    let (_node, _topic, subscriber) = child_subscriber(ns);
    let sample = next_sample(&subscriber);
    report("holding", sample.seq);
    sleep_until_killed()
}

/// Takes one sample, holds it, reads no more; leaves (cleanly) once `flag` is raised.
fn child_leave(ns: &str, flag: &str) {
    let (_node, _topic, subscriber) = child_subscriber(ns);
    let sample = next_sample(&subscriber);
    report("holding", sample.seq);
    wait_for("the go flag", TIMEOUT, || Flag::is_raised(flag));
}

/// Receives `total` samples, which must be 1..=total in order and intact (the block policy
/// loses nothing), and reports their sum and its drops.
fn child_count(ns: &str, total: u64) {
    let (_node, _topic, subscriber) = child_subscriber(ns);
    let mut sum = 0;
    for expected in 1..=total {
        let sample = subscriber.receive_with(&mut Blocking::new(), Some(TIMEOUT));
        let sample = sample.unwrap_or_else(|e| fail(3, format!("seq {expected}: {e}")));
        if *sample != Stamped::new(1, expected) {
            fail(4, format!("got {:?}, want seq {expected}", *sample));
        }
        sum += sample.seq;
    }
    report("drops", subscriber.drops());
    report("sum", sum);
}

/// Sleeps in a blocking receive; reports the sample it wakes up with.
fn child_blocked_wait(ns: &str) {
    let (_node, _topic, subscriber) = child_subscriber(ns);
    report("got", next_intact(&subscriber));
}

/// Holds the first `keep` samples, reports "holding", waits for `flag` (the parent stops and
/// resumes it meanwhile), checks the held samples are still intact, then reads on:
/// - `block`: every sample up to `last`, in order, and reports their sum;
/// - `drop`: what is queued (reported as "queued"), then one more, which must be `last`.
fn child_slow(ns: &str, flag: &str, keep: usize, mode: &str, last: u64) {
    let (_node, _topic, subscriber) = child_subscriber(ns);
    let mut held = Vec::new();
    for seq in 1..=keep as u64 {
        let sample = next_sample(&subscriber);
        if *sample != Stamped::new(1, seq) {
            fail(4, format!("got {:?}, want seq {seq}", *sample));
        }
        held.push(sample);
    }
    report("holding", keep);
    wait_for("the go flag", TIMEOUT, || Flag::is_raised(flag));
    for (seq, sample) in (1..).zip(&held) {
        if **sample != Stamped::new(1, seq) {
            fail(4, format!("held sample {seq} changed under us: {:?}", **sample));
        }
    }
    drop(held);
    let next = || next_intact(&subscriber);
    if mode == "block" {
        let mut sum = 0;
        for expected in keep as u64 + 1..=last {
            let seq = next();
            if seq != expected {
                fail(4, format!("got seq {seq}, want {expected}"));
            }
            sum += seq;
        }
        report("sum", sum);
    } else {
        let mut queued = Vec::new();
        while let Some(sample) = subscriber.receive().unwrap_or_else(|e| fail(3, e)) {
            queued.push(sample.seq.to_string());
        }
        report("queued", queued.join(","));
        report("drops", subscriber.drops());
        report("next", next());
    }
}

/// Everything queued for `subscriber`, as (epoch, seq), each checked intact.
fn drain<S: Stamp>(subscriber: &Subscriber<S>) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    while let Some(sample) = subscriber.receive().unwrap() {
        assert!(sample.is_intact(), "torn sample {:?}", *sample);
        got.push(sample.id());
    }
    got
}

/// The counts of a publisher whose every block is free.
fn assert_all_free(counts: BlockCounts) {
    assert!(counts.is_consistent(), "{counts:?}");
    assert_eq!(counts.free, counts.total, "{counts:?}");
}

/// Spawns the subscriber child `role` with `args`; returns it once it is ready and `publisher`
/// serves `subscribers` (`what`).
fn spawn_subscriber(
    role: &str,
    args: &[&str],
    publisher: &Publisher<Stamped>,
    subscribers: usize,
    what: &str,
) -> ChildProc {
    let mut child = spawn_child(role, args);
    child.report("ready", TIMEOUT);
    wait_for(what, TIMEOUT, || publisher.subscribers() == subscribers);
    child
}

/// Spawns a `slow` subscriber (see [`child_slow`]) waiting for `go`, sends it `1..=keep` and
/// returns it once it holds them.
fn spawn_slow(
    publisher: &Publisher<Stamped>,
    ns: &str,
    go: &Flag,
    keep: u64,
    mode: &str,
    last: u64,
) -> ChildProc {
    let args = [ns, go.path(), &keep.to_string(), mode, &last.to_string()];
    let mut child = spawn_subscriber("slow", &args, publisher, 1, "the subscriber");
    for seq in 1..=keep {
        publisher.send_copy(Stamped::new(1, seq)).unwrap();
    }
    child.report("holding", TIMEOUT);
    child
}

/// Drops `handles` (a tuple drops in order: ends, topic, node), then checks that nothing of
/// namespace `ns` is left.
fn leave_nothing<T>(ns: &str, handles: T) {
    drop(handles);
    assert_nothing_left(ns);
}

/// Sends `S(epoch, seqs)` and checks that each reaches every one of `subscribers` at once,
/// intact and in order.
fn exchange<S: Stamp>(
    publisher: &Publisher<S>,
    subscribers: &[&Subscriber<S>],
    epoch: u64,
    seqs: std::ops::RangeInclusive<u64>,
) {
    for seq in seqs {
        let delivered = publisher.send_copy(S::new(epoch, seq)).unwrap();
        assert_eq!(delivered, subscribers.len(), "seq {seq}");
        for subscriber in subscribers {
            let sample = subscriber.receive().unwrap().expect("sent just before");
            assert_eq!(*sample, S::new(epoch, seq));
        }
    }
    // Every receive found a sample, so the dropped ones' blocks are not handed back yet.
    for subscriber in subscribers {
        subscriber.flush_returns();
    }
}

#[test]
fn a_publisher_killed_at_each_instant_of_a_send_leaves_its_subscribers_working() {
    let _serial = process_lock();
    // Crash point, then the seqs the first and second subscriber got before the death.
    let cases: [(&str, u64, u64); 5] = [
        ("shmlane.publisher.pool_created:1", 0, 0),
        ("shmlane.loan.taken:5", 4, 4),
        ("shmlane.send.unloaned:5", 4, 4),
        // Each send pushes to the first, then the second subscriber: hit 9 is the fifth send
        // after its first push, hit 10 after its second push, before that one's notify.
        ("shmlane.send.pushed:9", 5, 4),
        ("shmlane.send.pushed:10", 5, 5),
    ];
    killed_at_each_instant_of_a_send::<Stamped>("publish", "send", &cases);
}

#[test]
fn a_publisher_of_inline_samples_killed_at_each_instant_of_a_send_leaves_its_subscribers_working() {
    let _serial = process_lock();
    // An inline sample takes no block: no loan point is passed. Each send writes the first,
    // then the second subscriber's slot: hit 9 is the fifth send's first, hit 10 its second.
    // Killed with a slot's words written but not stamped, that subscriber never sees it;
    // stamped but the queue's tail not yet advanced, it does.
    let cases: [(&str, u64, u64); 6] = [
        ("shmlane.publisher.pool_created:1", 0, 0),
        ("queue.overflow.push.written:9", 4, 4),
        ("queue.overflow.push.stamped:9", 5, 4),
        ("shmlane.send.pushed:9", 5, 4),
        ("queue.overflow.push.written:10", 5, 4),
        ("queue.overflow.push.stamped:10", 5, 5),
    ];
    killed_at_each_instant_of_a_send::<SmallStamped>("publish_small", "inline", &cases);
}

/// For each (crash point, seqs the first and second subscriber got before the death): a child
/// `role` publishing `S` to two subscribers dies there, the subscribers get exactly those
/// samples intact, a new publisher takes its slot with every block free, and they go on.
fn killed_at_each_instant_of_a_send<S: Stamp>(role: &str, tag: &str, cases: &[(&str, u64, u64)]) {
    for (i, &(point, first, second)) in cases.iter().enumerate() {
        let ns = namespace(&format!("{tag}{i}"));
        let node = test_node(&ns);
        let topic = node.topic::<S>("t").max_publishers(1).max_subscribers(2);
        let topic = topic.subscriber_capacity(256).create().unwrap();
        let (a, b) = (topic.subscriber().unwrap(), topic.subscriber().unwrap());
        let mut child = spawn_child_with_env(role, &[&ns, "1", "2"], &[(CRASH_AT_ENV, point)]);
        child.expect_crash(point, TIMEOUT);
        let seqs = |n: u64| (1..=n).map(|seq| (1, seq)).collect::<Vec<_>>();
        assert_eq!(drain(&a), seqs(first), "{point}: first subscriber");
        assert_eq!(drain(&b), seqs(second), "{point}: second subscriber");

        // The dead publisher's slot is taken over, and the subscribers go on with the new one.
        let publisher = topic.publisher().unwrap();
        assert_all_free(publisher.block_counts());
        exchange(&publisher, &[&a, &b], 2, 1..=100);
        assert_all_free(publisher.block_counts());

        drop((publisher, a, b, topic));
        finish(node, &ns, 1, &format!("{point}: the killed publisher's registration"));
    }
}

#[test]
fn a_killed_publishers_payload_segment_goes_with_its_topic() {
    let _serial = process_lock();
    let ns = namespace("payload");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let point = "shmlane.loan.taken:3";
    let mut child = spawn_child_with_env("publish", &[&ns, "1", "1"], &[(CRASH_AT_ENV, point)]);
    child.expect_crash(point, TIMEOUT);
    assert_eq!(drain(&subscriber), [(1, 1), (1, 2)]);
    assert!(files_of(&ns).iter().any(|f| f.ends_with(".topic.t.p0.g1")), "{:?}", files_of(&ns));
    // Nobody takes the slot over: the last handle of the topic removes the dead publisher's
    // payload segment with the topic.
    drop((subscriber, topic));
    finish(node, &ns, 1, "");
}

#[test]
fn a_subscriber_asleep_in_a_blocking_receive_wakes_when_its_publisher_died_before_notifying() {
    let _serial = process_lock();
    let ns = namespace("notify");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_publishers(1).max_subscribers(1).create().unwrap();
    let mut subscriber = spawn_child("blocked_wait", &[&ns]);
    subscriber.report("ready", TIMEOUT);
    // It pushes the first sample, then dies before its notify: the sleeper is not woken by it.
    let point = "shmlane.send.pushed:1";
    let mut publisher = spawn_child_with_env("publish", &[&ns, "1", "1"], &[(CRASH_AT_ENV, point)]);
    publisher.expect_crash(point, TIMEOUT);
    let died = Instant::now();
    // The blocking strategy's re-check (100 ms) finds the sample.
    assert_eq!(subscriber.report_u64("got", TIMEOUT), 1);
    let woke = died.elapsed();
    println!("a sleeper whose publisher died before notifying woke {woke:?} after the death");
    assert!(woke < Duration::from_secs(2), "woke only after {woke:?}");
    subscriber.expect_success(TIMEOUT);
    drop(topic);
    finish(node, &ns, 1, "");
}

#[test]
fn a_subscriber_killed_holding_samples_gives_every_block_back() {
    let _serial = process_lock();
    let cases = [
        Some("shmlane.receive.popped:20"),
        Some("shmlane.give_back.before_push:10"),
        Some("shmlane.subscribe.claimed:1"),
        None, // killed from outside while holding three samples
    ];
    for (i, point) in cases.into_iter().enumerate() {
        let what = point.unwrap_or("SIGKILL while holding");
        let ns = namespace(&format!("hold{i}"));
        let node = test_node(&ns);
        let topic = node.topic::<Stamped>("t").max_subscribers(1).subscriber_capacity(8);
        let topic = topic.max_held(4).create().unwrap();
        let publisher = topic.publisher().unwrap();
        let all_free = publisher.block_counts();
        assert_all_free(all_free);
        let env: Vec<_> = point.map(|p| (CRASH_AT_ENV, p)).into_iter().collect();
        let mut child = spawn_child_with_env("hold", &[&ns, "3"], &env);
        let mut seq = 0;
        let mut send = || {
            seq += 1;
            publisher.send_copy(Stamped::new(1, seq)).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        };
        match point {
            Some(point) => {
                let start = Instant::now();
                while child.try_wait().is_none() {
                    assert!(start.elapsed() < TIMEOUT, "{point} was never reached");
                    send();
                }
                child.expect_crash(point, TIMEOUT);
            }
            None => {
                child.report("ready", TIMEOUT);
                wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
                while publisher.block_counts().held < 3 {
                    send();
                }
                child.report("holding", TIMEOUT);
                child.kill_while_running();
            }
        }
        let dead = publisher.block_counts();
        assert!(dead.is_consistent(), "{what}: {dead:?}");
        if !what.contains("claimed") {
            assert!(dead.held > 0, "{what}: the dead subscriber held nothing: {dead:?}");
        }
        // Sends find the dead subscriber (its queue stops draining) and take its blocks back.
        let start = Instant::now();
        let mut sends = 0;
        while publisher.block_counts().held > 0 {
            assert!(start.elapsed() < TIMEOUT, "{what}: blocks never came back");
            send();
            sends += 1;
        }
        println!("{what}: {} blocks back after {sends} sends, {:?}", dead.held, start.elapsed());
        assert_eq!(publisher.block_counts(), all_free, "{what}");
        // Found dead, it is no longer served: later sends queue nothing for it.
        assert_eq!(publisher.subscribers(), 0, "{what}");
        for _ in 0..20 {
            send();
        }
        assert_eq!(publisher.block_counts(), all_free, "{what}");

        // A new subscriber gets the slot (the only one) and every new sample.
        let subscriber = topic.subscriber().unwrap();
        exchange(&publisher, &[&subscriber], 2, 1..=50);
        assert_eq!(publisher.block_counts(), all_free, "{what}");

        drop((subscriber, publisher, topic));
        finish(node, &ns, 1, &format!("{what}: the killed subscriber's registration"));
    }
}

#[test]
fn block_policy_releases_a_publisher_blocked_on_a_killed_subscriber_within_milliseconds() {
    let _serial = process_lock();
    const ROUNDS: u64 = 5;
    // Per round: one sample the stalled subscriber holds, two that fill its queue, one that
    // blocks until it is found dead; then a last stretch with the live subscriber alone.
    const TOTAL: u64 = ROUNDS * 4 + 100;
    let ns = namespace("blockdead");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_subscribers(2).subscriber_capacity(2);
    let topic = topic.overflow(Overflow::Block).create().unwrap();
    let publisher = topic.publisher().unwrap();
    publisher.set_block_timeout(TIMEOUT);
    let all_free = publisher.block_counts();
    let total = TOTAL.to_string();
    let mut live = spawn_subscriber("count", &[&ns, &total], &publisher, 1, "the live subscriber");
    let mut seq = 0;
    let mut send = || {
        seq += 1;
        assert!(publisher.send_copy(Stamped::new(1, seq)).unwrap() >= 1, "seq {seq}");
        seq
    };
    let mut recoveries = Vec::new();
    for round in 0..ROUNDS {
        let what = "the stalled subscriber";
        let mut stalled = spawn_subscriber("stall", &[&ns], &publisher, 2, what);
        let first = send();
        assert_eq!(stalled.report_u64("holding", TIMEOUT), first);
        send();
        send(); // its queue (capacity 2) is full now
        // Kill delays spread over a liveness slice (10 ms), so the recovery times sample it.
        let delay = Duration::from_micros(100_000 + round * 2_300);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let at = Instant::now();
            stalled.kill_while_running();
            at
        });
        send(); // blocks until the stalled subscriber is proven dead
        let released = Instant::now();
        let killed = killer.join().unwrap();
        recoveries.push(released.saturating_duration_since(killed));
        assert!(publisher.block_counts().is_consistent());
    }
    while send() < TOTAL {}
    assert_eq!(live.report_u64("drops", TIMEOUT), 0);
    assert_eq!(live.report_u64("sum", TIMEOUT), TOTAL * (TOTAL + 1) / 2);
    live.expect_success(TIMEOUT);
    assert_eq!(publisher.block_counts(), all_free);
    recoveries.sort();
    println!(
        "blocked publisher released after its subscriber's SIGKILL: min {:?}, median {:?}, max {:?} \
         ({ROUNDS} rounds)",
        recoveries[0],
        recoveries[recoveries.len() / 2],
        recoveries[recoveries.len() - 1]
    );
    // Detection is by pid and start time every 10 ms, not the 10 s block timeout.
    assert!(recoveries.iter().all(|r| *r < Duration::from_millis(500)), "{recoveries:?}");
    drop((publisher, topic));
    // Each stalled child's node creation removed its dead predecessor's registration.
    finish(node, &ns, 1, "");
}

#[test]
fn a_publisher_blocked_on_a_full_queue_follows_its_subscriber_leaving_or_being_replaced() {
    let _serial = process_lock();
    let ns = namespace("blockfollow");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_subscribers(1).subscriber_capacity(2);
    let topic = topic.overflow(Overflow::Block).create().unwrap();
    let publisher = topic.publisher().unwrap();
    publisher.set_block_timeout(TIMEOUT);
    let mut seq = 0;
    let mut send = || {
        seq += 1;
        (seq, publisher.send_copy(Stamped::new(1, seq)).unwrap())
    };
    // A subscriber that takes one sample, lets its queue fill, and leaves (alive, cleanly) while
    // the publisher is blocked on it: the publisher must not wait for its timeout (10 s).
    let go = Flag::new("blockfollow");
    let mut leaving = spawn_subscriber("leave", &[&ns, go.path()], &publisher, 1, "the subscriber");
    send();
    leaving.report("holding", TIMEOUT);
    send();
    send(); // its queue is full
    let (sent, waited) = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            go.raise();
        });
        let start = Instant::now();
        (send(), start.elapsed())
    });
    leaving.expect_success(TIMEOUT);
    println!("blocked {waited:?}; its subscriber left after 100 ms");
    assert_eq!(sent.1, 0, "delivered to a subscriber that left");
    assert!(waited < Duration::from_secs(1), "{waited:?}");

    // A subscriber killed with a full queue and at once replaced by a new one that takes its
    // slot over: the publisher serves the newcomer (which gets nothing of its predecessor's
    // queue) instead of waiting for its timeout on a queue nobody reads.
    let mut stalled = spawn_subscriber("stall", &[&ns], &publisher, 1, "the subscriber");
    let (first, _) = send();
    assert_eq!(stalled.report_u64("holding", TIMEOUT), first);
    send();
    send(); // its queue is full
    let (sent, waited, got) = std::thread::scope(|scope| {
        let successor = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            stalled.kill_while_running();
            let subscriber = topic.subscriber().unwrap();
            let sample = subscriber.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
            (*sample, subscriber.drops())
        });
        let start = Instant::now();
        let mut sent = send();
        let waited = start.elapsed();
        // If the publisher found the dead one before the newcomer took its slot, that send
        // went to nobody: the next one goes to the newcomer.
        if sent.1 == 0 {
            wait_for("the newcomer", TIMEOUT, || publisher.subscribers() == 1);
            sent = send();
        }
        (sent, waited, successor.join().unwrap())
    });
    println!("blocked {waited:?}; its subscriber was killed and replaced after 100 ms");
    assert_eq!(sent.1, 1);
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(got, (Stamped::new(1, sent.0), 0));
    assert_all_free(publisher.block_counts());
    drop((publisher, topic));
    finish(node, &ns, 1, "");
}

#[test]
fn a_stopped_subscriber_keeps_its_slot_and_samples_under_the_block_policy() {
    let _serial = process_lock();
    const LAST: u64 = 40;
    let ns = namespace("stopblock");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_subscribers(1).subscriber_capacity(4);
    let topic = topic.max_held(2).overflow(Overflow::Block).create().unwrap();
    let publisher = topic.publisher().unwrap();
    publisher.set_block_timeout(Duration::from_millis(50));
    let go = Flag::new("stopblock");
    let mut child = spawn_slow(&publisher, &ns, &go, 1, "block", LAST);
    for seq in 2..=5 {
        publisher.send_copy(Stamped::new(1, seq)).unwrap(); // fills its queue
    }
    child.stop();
    let counts = publisher.block_counts();
    assert_eq!(counts.held, 5, "{counts:?}");
    // Long after the block timeout and many liveness checks, a stopped subscriber is alive:
    // sends time out, its slot is not given away, its blocks stay its own.
    let stopped = Instant::now();
    let mut timeouts = 0;
    while stopped.elapsed() < Duration::from_millis(500) {
        let result = publisher.send_copy(Stamped::new(1, 6));
        assert!(matches!(result, Err(PublishError::Timeout(_))), "{result:?}");
        timeouts += 1;
    }
    assert!(timeouts >= 5);
    let other = topic.subscriber();
    assert!(matches!(other, Err(ConnectError::NoFreeSlot { .. })), "{other:?}");
    drop(other);
    assert_eq!(publisher.block_counts(), counts);
    go.raise();
    child.resume();
    publisher.set_block_timeout(TIMEOUT);
    for seq in 6..=LAST {
        publisher.send_copy(Stamped::new(1, seq)).unwrap();
    }
    assert_eq!(child.report_u64("sum", TIMEOUT), (2..=LAST).sum::<u64>());
    child.expect_success(TIMEOUT);
    assert_all_free(publisher.block_counts());
    leave_nothing(&ns, (publisher, topic, node));
}

#[test]
fn a_stopped_subscriber_keeps_its_slot_and_held_samples_under_drop_oldest() {
    let _serial = process_lock();
    let ns = namespace("stopdrop");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_subscribers(1).subscriber_capacity(4);
    let topic = topic.max_held(2).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let go = Flag::new("stopdrop");
    // It holds 1 and 2; its queue then takes 3..=6 and it is at its limit (4 queued + 2 held).
    let sent_while_stopped = 2_000u64;
    let last = sent_while_stopped + 1;
    let mut child = spawn_slow(&publisher, &ns, &go, 2, "drop", last);
    child.stop();
    // Thousands of sends over half a second, each beyond its limit: its liveness is checked
    // every 10 ms and it is alive, so nothing of it is taken back.
    let stopped = Instant::now();
    for seq in 3..=sent_while_stopped {
        publisher.send_copy(Stamped::new(1, seq)).unwrap();
        if seq % 8 == 0 {
            std::thread::sleep(Duration::from_micros(2_000));
        }
    }
    assert!(stopped.elapsed() >= Duration::from_millis(200), "{:?}", stopped.elapsed());
    let counts = publisher.block_counts();
    assert_eq!(counts.held, 6, "{counts:?}");
    assert!(matches!(topic.subscriber(), Err(ConnectError::NoFreeSlot { .. })));
    go.raise();
    child.resume();
    // Its held samples are intact (it checks), its queue kept 3..=6, the rest were dropped.
    assert_eq!(child.report("queued", TIMEOUT), "3,4,5,6");
    assert_eq!(child.report_u64("drops", TIMEOUT), sent_while_stopped - 6);
    publisher.send_copy(Stamped::new(1, last)).unwrap();
    assert_eq!(child.report_u64("next", TIMEOUT), last);
    child.expect_success(TIMEOUT);
    assert_all_free(publisher.block_counts());
    leave_nothing(&ns, (publisher, topic, node));
}

#[test]
fn a_stopped_publisher_keeps_its_slot_and_goes_on_when_resumed() {
    let _serial = process_lock();
    let ns = namespace("stoppub");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_publishers(1).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let go = Flag::new("stoppub");
    let mut child = spawn_child("publish_then_wait", &[&ns, go.path()]);
    assert_eq!(child.report_u64("sent", TIMEOUT), 3);
    child.stop();
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_millis(300) {
        let taken = topic.publisher();
        assert!(matches!(taken, Err(ConnectError::NoFreeSlot { .. })), "{taken:?}");
        drop(taken);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(drain(&subscriber), [(1, 1), (1, 2), (1, 3)]);
    go.raise();
    child.resume();
    for seq in 4..=6 {
        let sample = subscriber.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
        assert_eq!(*sample, Stamped::new(1, seq));
    }
    child.expect_success(TIMEOUT);
    leave_nothing(&ns, (subscriber, topic, node));
}

#[test]
fn a_publisher_killed_while_handing_its_connection_to_a_joining_subscriber() {
    let _serial = process_lock();
    let ns = namespace("handoff");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_publishers(1).max_subscribers(2);
    let topic = topic.subscriber_capacity(1024).create().unwrap();
    let a = topic.subscriber().unwrap();
    // Its first hand-off is to `a`; the second, to `b`, is where it dies: `b`'s connection is
    // cleaned but never acknowledged.
    let point = "shmlane.serve.cleaned:2";
    let mut child = spawn_child_with_env("publish", &[&ns, "1", "1"], &[(CRASH_AT_ENV, point)]);
    child.report("serving", TIMEOUT);
    let mut got = Vec::new();
    while got.len() < 5 {
        let sample = a.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
        got.push((sample.epoch, sample.seq));
    }
    let b = topic.subscriber().unwrap();
    child.expect_crash(point, TIMEOUT);
    assert_eq!(drain(&b), [], "served before its connection was acknowledged");
    got.extend(drain(&a));
    assert_eq!(got, (1..=got.len() as u64).map(|seq| (1, seq)).collect::<Vec<_>>());
    // A new publisher completes the hand-off and serves both.
    let publisher = topic.publisher().unwrap();
    exchange(&publisher, &[&a, &b], 2, 1..=50);
    assert_all_free(publisher.block_counts());
    drop((publisher, a, b, topic));
    finish(node, &ns, 1, "");
}

#[test]
fn a_process_killed_while_registering_its_node_leaves_nothing_after_cleanup() {
    let _serial = process_lock();
    let ns = namespace("register");
    let point = "shmlane.node.registering:1";
    let mut child = spawn_child_with_env("register", &[&ns], &[(CRASH_AT_ENV, point)]);
    child.expect_crash(point, TIMEOUT);
    let left = files_of(&ns);
    assert!(left.len() == 1 && left[0].contains(".node.doomed."), "{left:?}");
    // Creating a node in the namespace removes registrations of dead processes.
    let node = test_node(&ns);
    let left = files_of(&ns);
    assert!(left.len() == 1 && left[0].contains(".node.test."), "{left:?}");
    drop(node);
    assert_nothing_left(&ns);
}
