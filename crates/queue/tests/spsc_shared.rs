//! The SPSC queue inside a shared-memory segment (`SharedSpsc`), between real processes.
//!
//! Each test that needs a peer re-executes this test binary as a child:
//! `current_exe --exact child_entry --nocapture --test-threads=1` with
//! `SHMLANE_CHILD=role:args` in its environment. [`child_entry`] then runs that role and
//! exits with a code (0 on success, [`EXIT_ORDER`] on a gap or duplicate, 101 when the role
//! panicked, others as documented below); without the variable it returns at once, so it passes
//! as an ordinary test. Children report to the parent as stdout lines `@@shmlane KEY VALUE`, and
//! publish their progress in control words of the segment. Every wait on a child has a
//! deadline: a hang kills the child and fails the test instead of blocking CI. A child that is
//! meant to be killed exits on its own if its parent disappears.
//!
//! Segment names carry the pid and a counter; every segment a test creates is removed on
//! success and, through [`Cleanup`] guards, on failure too.
//!
//! The mid-stream kill tests aim: they stop the child (SIGSTOP) again and again until its
//! shared words show it at the dangerous instant (a producer between its stamps and its `tail`
//! store, a consumer with a value read but not popped), then SIGKILL it there.
//!
//! Tests whose processes spin on the queue hold [`process_lock`]: on two cores, two such tests
//! at once would mostly measure the scheduler.
//!
//! Some tests play a crashed or hostile peer by writing the queue's words directly, through
//! [`RawQueue`] at the offsets `SharedSpsc::raw_layout` reports. Random hostile bytes in the
//! queue's words are `crates/reliability/tests/hostile_queue.rs`'s.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use shmlane_queue::raw::{EXTRA_AT, MAGIC_AT};
use shmlane_queue::spsc::{
    ClaimError, Consumer, PopError, Producer, PushError, QueueError, Shared, SharedSpsc,
};
use shmlane_segment::{Fingerprint, OffsetError, RoleError, RoleOwner, Segment};
use shmlane_testkit::queue::{
    IMPOSSIBLE_INDICES, QueueSegment, RawQueue, STREAM_TIMEOUT, bad_region, check_region_refusals,
    descriptor_cases,
};
use shmlane_testkit::{
    CHILD_TIMEOUT, Cleanup, EXIT_FAILED, EXIT_ORDER, EXIT_ORPHANED, ORPHAN_LIMIT, Spin, arg_u64,
    child_spec, dead_owner, exit_child, fail, me, process_lock, report, signal, sleep_until_killed,
    spawn_child, split_spec, stop_when, unique_segment, wait_for,
};

// ---------------------------------------------------------------------------------------------
// Harness (the child-process machinery is `shmlane_testkit`): names, timeouts, exit codes.
// ---------------------------------------------------------------------------------------------

/// The kind in this binary's segment names ([`unique_segment`]).
const SEGMENTS: &str = "spsc";

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("produce", [name, count]) => child_produce(name, arg_u64(count)),
        ("consume", [name, count]) => {
            child_consume(name, if *count == "sentinel" { None } else { Some(arg_u64(count)) })
        }
        ("push-then-hang", [name, count]) => child_push_then_hang(name, arg_u64(count)),
        ("push-from-tail", [name]) => child_push_from_tail(name),
        ("pop-then-hang", [name, count]) => child_pop_then_hang(name, arg_u64(count)),
        ("peek-consume", [name]) => child_peek_consume(name),
        ("hold", [name, role]) => child_hold(name, role),
        _ => panic!("unknown child role {spec:?}"),
    }
    exit_child();
}

// ---------------------------------------------------------------------------------------------
// A segment holding one `SharedSpsc<u64>` and a few control words, laid out the same way
// everywhere.
// ---------------------------------------------------------------------------------------------

/// Slots of the queue the processes share.
const CAPACITY: u64 = 1024;
/// The queue's element fingerprint.
const QUEUE_FINGERPRINT: Fingerprint = Fingerprint::new("spsc-shared-test-u64").with_u64(8);
/// Control word: values a consumer child has taken (its next expected value).
const PROGRESS: u64 = 0;
/// Control word: set to 1 by the parent to make a `hold` child release its role.
const RELEASE: u64 = 1;
/// Ends a stream whose length the consumer does not know in advance.
const SENTINEL: u64 = u64::MAX;
/// Values per stretch of `try_push`/`try_pop` before switching to the slice calls and back.
const MODE_BLOCK: u64 = 4096;
/// Longest batch handed to `push_slice`/`pop_slice`.
const MAX_BATCH: usize = 64;

type SharedProducer<'s> = Producer<u64, Shared<'s, u64>>;
type SharedConsumer<'s> = Consumer<u64, Shared<'s, u64>>;

/// The segment of a queue of `capacity` slots.
fn queue_segment(capacity: u64) -> QueueSegment {
    QueueSegment::new("spsc-shared-test", capacity, SharedSpsc::<u64>::layout(capacity).unwrap())
}

fn create_queue_segment(name: &str, capacity: u64) -> Segment {
    queue_segment(capacity).create(name, |segment, region| {
        SharedSpsc::<u64>::init_in(segment, region, capacity, QUEUE_FINGERPRINT).map(drop)
    })
}

/// Opens the parent's segment (of [`CAPACITY`] slots), in a child.
fn open_queue_segment(name: &str) -> Segment {
    queue_segment(CAPACITY).open(name)
}

fn attach(segment: &Segment, capacity: u64) -> SharedSpsc<'_, u64> {
    SharedSpsc::attach(segment, queue_segment(capacity).queue, QUEUE_FINGERPRINT)
        .expect("attach to the queue")
}

/// A control word of the segment.
fn control(segment: &Segment, capacity: u64, index: u64) -> &AtomicU64 {
    queue_segment(capacity).control(segment, index)
}

/// The queue's words, where `SharedSpsc::raw_layout` puts them.
fn raw(segment: &Segment, capacity: u64) -> RawQueue<'_> {
    let layout = SharedSpsc::<u64>::raw_layout(capacity).unwrap();
    RawQueue::new(segment, queue_segment(capacity).queue, capacity, layout)
}

// ---------------------------------------------------------------------------------------------
// Producing and consuming in order, with every call of the API.
// ---------------------------------------------------------------------------------------------

/// Pushes `values` in order, retrying on `Full`. Stretches of [`MODE_BLOCK`] values alternate
/// between `try_push` and `push_slice` (batches of 1 to [`MAX_BATCH`]).
fn push_range(
    producer: &mut SharedProducer<'_>,
    values: Range<u64>,
    deadline: Instant,
) -> Result<(), String> {
    let mut next = values.start;
    let mut batch = [0u64; MAX_BATCH];
    let mut batch_len = 1;
    let mut spin = Spin::until(deadline).yielding_every(128);
    while next < values.end {
        let pushed = if (next / MODE_BLOCK).is_multiple_of(2) {
            match producer.try_push(next) {
                Ok(()) => 1,
                Err(PushError::Full(back)) if back == next => 0,
                Err(PushError::Full(back)) => return Err(format!("Full gave back {back}")),
                Err(PushError::Corrupt(_)) => return Err(format!("push of {next}: Corrupt")),
            }
        } else {
            let len = batch_len.min((values.end - next) as usize);
            batch_len = batch_len % MAX_BATCH + 1;
            for (i, slot) in batch[..len].iter_mut().enumerate() {
                *slot = next + i as u64;
            }
            producer.push_slice(&batch[..len]) as u64
        };
        next += pushed;
        if pushed == 0 {
            spin.wait("a free slot")?;
        }
    }
    Ok(())
}

/// Pushes one value, retrying on `Full`.
fn push_one(
    producer: &mut SharedProducer<'_>,
    value: u64,
    deadline: Instant,
) -> Result<(), String> {
    let mut spin = Spin::until(deadline).yielding_every(128);
    loop {
        match producer.try_push(value) {
            Ok(()) => return Ok(()),
            Err(PushError::Full(_)) => spin.wait("a free slot")?,
            Err(PushError::Corrupt(_)) => return Err(format!("push of {value}: Corrupt")),
        }
    }
}

/// Why [`pop_in_order`] stopped early.
#[derive(Debug)]
enum PopFailure {
    /// A value other than the next expected one: a gap or a duplicate.
    Order {
        expected: u64,
        got: u64,
    },
    Timeout(String),
}

/// Pops `first, first + 1, ...` until `end` values (or, with `end == None`, the [`SENTINEL`])
/// have come, requiring exactly that order; returns the next expected value. Stretches of
/// [`MODE_BLOCK`] values alternate between `try_pop` and `pop_slice`. Publishes its progress
/// in `progress`.
fn pop_in_order(
    consumer: &mut SharedConsumer<'_>,
    first: u64,
    end: Option<u64>,
    progress: &AtomicU64,
    deadline: Instant,
) -> Result<u64, PopFailure> {
    let mut expected = first;
    let mut batch = [0u64; MAX_BATCH];
    let mut batch_len = 1;
    let mut spin = Spin::until(deadline).yielding_every(128);
    while end.is_none_or(|end| expected < end) {
        let got = if (expected / MODE_BLOCK).is_multiple_of(2) {
            match consumer.try_pop() {
                Ok(value) => {
                    batch[0] = value;
                    1
                }
                Err(PopError::Empty) => 0,
            }
        } else {
            let len = end.map_or(batch_len, |end| batch_len.min((end - expected) as usize));
            batch_len = batch_len % MAX_BATCH + 1;
            consumer.pop_slice(&mut batch[..len])
        };
        for (i, &value) in batch[..got].iter().enumerate() {
            if end.is_none() && value == SENTINEL && i + 1 == got {
                progress.store(expected, Ordering::Release);
                return Ok(expected);
            }
            if value != expected {
                return Err(PopFailure::Order { expected, got: value });
            }
            expected += 1;
        }
        if got == 0 {
            spin.wait("a value").map_err(PopFailure::Timeout)?;
        } else {
            progress.store(expected, Ordering::Release);
        }
    }
    Ok(expected)
}

// ---------------------------------------------------------------------------------------------
// Child roles.
// ---------------------------------------------------------------------------------------------

/// Pushes `0..count`, then releases the role by dropping the producer.
fn child_produce(name: &str, count: u64) {
    let segment = open_queue_segment(name);
    let queue = attach(&segment, CAPACITY);
    let mut producer = queue.producer().expect("claim the producer role");
    report("claimed", std::process::id());
    let deadline = Instant::now() + STREAM_TIMEOUT;
    if let Err(error) = push_range(&mut producer, 0..count, deadline) {
        fail(EXIT_FAILED, format!("producer: {error}"));
    }
    drop(producer);
    report("pushed", count);
}

/// Pops `0..count` (or up to the sentinel) in order, checks nothing follows, and releases the
/// role. Exits with [`EXIT_ORDER`] on a gap or duplicate.
fn child_consume(name: &str, count: Option<u64>) {
    let segment = open_queue_segment(name);
    let queue = attach(&segment, CAPACITY);
    let progress = control(&segment, CAPACITY, PROGRESS);
    let mut consumer = queue.consumer().expect("claim the consumer role");
    report("claimed", std::process::id());
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let consumed = match pop_in_order(&mut consumer, 0, count, progress, deadline) {
        Ok(consumed) => consumed,
        Err(PopFailure::Order { expected, got }) => fail(
            EXIT_ORDER,
            format!("consumer: expected {expected}, popped {got} (a gap or a duplicate)"),
        ),
        Err(PopFailure::Timeout(error)) => fail(EXIT_FAILED, format!("consumer: {error}")),
    };
    // The producer pushed its last value before the one we just took: nothing may follow.
    thread::sleep(Duration::from_millis(20));
    if let Ok(extra) = consumer.try_pop() {
        fail(EXIT_ORDER, format!("consumer: {extra} popped after the last value {consumed}"));
    }
    drop(consumer);
    report("consumed", consumed);
}

/// Pushes `0..count` (which must fit), reports, and holds the role until killed.
fn child_push_then_hang(name: &str, count: u64) {
    let segment = open_queue_segment(name);
    let queue = attach(&segment, CAPACITY);
    let mut producer = queue.producer().expect("claim the producer role");
    let deadline = Instant::now() + CHILD_TIMEOUT;
    if let Err(error) = push_range(&mut producer, 0..count, deadline) {
        fail(EXIT_FAILED, format!("producer: {error}"));
    }
    report("pushed", count);
    sleep_until_killed();
}

/// Claims the producer role (taking it over from a dead producer), reports where the queue
/// resumes, and pushes from there until killed.
fn child_push_from_tail(name: &str) {
    let segment = open_queue_segment(name);
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));
    let mut producer = match queue.producer() {
        Ok(producer) => producer,
        Err(error) => fail(EXIT_FAILED, format!("taking over the producer role: {error:?}")),
    };
    // The claim stored the tail it resumes from (after any stamped slots of a dead producer).
    let start = raw.tail().load(Ordering::Acquire);
    report("start", start);
    let deadline = Instant::now() + STREAM_TIMEOUT;
    if let Err(error) = push_range(&mut producer, start..u64::MAX / 2, deadline) {
        fail(EXIT_FAILED, format!("producer: {error}"));
    }
}

/// Pops `0..count` in order (half with `try_pop`, half with `pop_slice`), reports, and holds
/// the role until killed.
fn child_pop_then_hang(name: &str, count: u64) {
    let segment = open_queue_segment(name);
    let queue = attach(&segment, CAPACITY);
    let mut consumer = queue.consumer().expect("claim the consumer role");
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut expected = 0;
    let mut batch = [0u64; 7];
    let mut spin = Spin::until(deadline).yielding_every(128);
    while expected < count {
        let got = if expected < count / 2 {
            match consumer.try_pop() {
                Ok(value) => {
                    batch[0] = value;
                    1
                }
                Err(PopError::Empty) => 0,
            }
        } else {
            let len = batch.len().min((count - expected) as usize);
            consumer.pop_slice(&mut batch[..len])
        };
        for &value in &batch[..got] {
            if value != expected {
                fail(EXIT_ORDER, format!("consumer: expected {expected}, popped {value}"));
            }
            expected += 1;
        }
        if got == 0
            && let Err(error) = spin.wait("a value")
        {
            fail(EXIT_FAILED, error);
        }
    }
    report("popped", count);
    sleep_until_killed();
}

/// Consumes one value at a time: peeks it, records it as seen in [`PROGRESS`] (value + 1), then
/// pops it, so a kill at any instant leaves `head` either at the recorded count or one below
/// (the value in flight). Runs until killed.
fn child_peek_consume(name: &str) {
    let segment = open_queue_segment(name);
    let queue = attach(&segment, CAPACITY);
    let seen = control(&segment, CAPACITY, PROGRESS);
    let mut consumer = match queue.consumer() {
        Ok(consumer) => consumer,
        Err(error) => fail(EXIT_FAILED, format!("taking over the consumer role: {error:?}")),
    };
    report("claimed", std::process::id());
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let mut expected = None;
    let mut spin = Spin::until(deadline).yielding_every(128);
    loop {
        let value = match consumer.peek_copy() {
            Ok(value) => value,
            Err(PopError::Empty) => {
                if let Err(error) = spin.wait("a value") {
                    fail(EXIT_FAILED, error);
                }
                continue;
            }
        };
        match expected {
            None => report("first", value),
            Some(expected) if value != expected => {
                fail(EXIT_ORDER, format!("consumer: expected {expected}, peeked {value}"));
            }
            Some(_) => {}
        }
        seen.store(value + 1, Ordering::SeqCst);
        match consumer.try_pop() {
            Ok(popped) if popped == value => {}
            other => fail(EXIT_ORDER, format!("consumer: peeked {value}, then popped {other:?}")),
        }
        expected = Some(value + 1);
    }
}

/// One end of the queue, whichever role was claimed.
#[derive(Debug)]
enum End<'s> {
    Producer(#[allow(dead_code)] SharedProducer<'s>),
    Consumer(#[allow(dead_code)] SharedConsumer<'s>),
}

fn claim<'s>(queue: &SharedSpsc<'s, u64>, role: &str) -> Result<End<'s>, ClaimError> {
    match role {
        "producer" => queue.producer().map(End::Producer),
        "consumer" => queue.consumer().map(End::Consumer),
        _ => panic!("unknown role {role:?}"),
    }
}

/// Claims `role`, reports, holds it until the parent sets [`RELEASE`], drops it, reports, and
/// then stays alive until killed.
fn child_hold(name: &str, role: &str) {
    let segment = open_queue_segment(name);
    let queue = attach(&segment, CAPACITY);
    let end = claim(&queue, role).expect("claim the role");
    report("claimed", std::process::id());
    let release = control(&segment, CAPACITY, RELEASE);
    let started = Instant::now();
    while release.load(Ordering::Acquire) == 0 {
        if started.elapsed() > ORPHAN_LIMIT {
            fail(EXIT_ORPHANED, "never told to release the role");
        }
        thread::sleep(Duration::from_millis(2));
    }
    drop(end);
    report("released", std::process::id());
    sleep_until_killed();
}

// ---------------------------------------------------------------------------------------------
// 1. Two processes stream values: strict order, exact count.
// ---------------------------------------------------------------------------------------------

/// Values streamed in the order test (debug build; a few million in release fit as well).
const STREAM_VALUES: u64 = 2_000_000;

#[test]
fn two_processes_stream_values_in_order_with_none_lost_or_repeated() {
    let _spin = process_lock();
    let (name, _cleanup) = unique_segment(SEGMENTS, "stream");
    let segment = create_queue_segment(&name, CAPACITY);
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));
    let count = STREAM_VALUES.to_string();

    let started = Instant::now();
    let mut consumer = spawn_child("consume", &[&name, &count]);
    let mut producer = spawn_child("produce", &[&name, &count]);
    assert_eq!(producer.report_u64("pushed", STREAM_TIMEOUT), STREAM_VALUES);
    assert_eq!(consumer.report_u64("consumed", STREAM_TIMEOUT), STREAM_VALUES);
    producer.expect_success(CHILD_TIMEOUT);
    consumer.expect_success(CHILD_TIMEOUT);
    eprintln!("{STREAM_VALUES} values between two processes in {:?}", started.elapsed());

    // Both indices stopped at the count, the queue is empty, and both roles were released.
    assert_eq!(raw.head().load(Ordering::Acquire), STREAM_VALUES);
    assert_eq!(raw.tail().load(Ordering::Acquire), STREAM_VALUES);
    assert!(queue.is_empty());
    assert_eq!(raw.producer_role().load(Ordering::Acquire), 0);
    assert_eq!(raw.consumer_role().load(Ordering::Acquire), 0);
}

// ---------------------------------------------------------------------------------------------
// 2. One producer and one consumer at a time.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_second_claim_in_the_same_process_fails_with_taken_until_the_first_drops() {
    let (name, _cleanup) = unique_segment(SEGMENTS, "roles-here");
    let segment = create_queue_segment(&name, 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));

    for (role, word) in [("producer", raw.producer_role()), ("consumer", raw.consumer_role())] {
        let first = claim(&queue, role).unwrap();
        assert_eq!(word.load(Ordering::Acquire), me().to_raw());
        match claim(&queue, role) {
            Err(ClaimError::Taken(RoleError::Taken(owner))) => assert_eq!(owner, me()),
            other => panic!("a second {role} claim gave {other:?}"),
        }
        // Another handle on the same queue is no way around it.
        let again = attach(&segment, 8);
        assert!(matches!(claim(&again, role), Err(ClaimError::Taken(_))));
        assert_eq!(word.load(Ordering::Acquire), me().to_raw(), "a failed claim changed the word");
        drop(first);
        assert_eq!(word.load(Ordering::Acquire), 0, "dropping the {role} did not release it");
        let second = claim(&queue, role).expect("the released role is free again");
        drop(second);
    }
    // The two roles are independent: both may be held at once, by the same process too.
    let producer = queue.producer().unwrap();
    let consumer = queue.consumer().unwrap();
    drop((producer, consumer));
}

#[test]
fn a_role_held_by_another_process_is_taken_until_that_process_releases_it() {
    let (name, _cleanup) = unique_segment(SEGMENTS, "roles-there");
    let segment = create_queue_segment(&name, CAPACITY);
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));
    let release = control(&segment, CAPACITY, RELEASE);

    for (role, other_role, word) in [
        ("producer", "consumer", raw.producer_role()),
        ("consumer", "producer", raw.consumer_role()),
    ] {
        release.store(0, Ordering::Release);
        let mut holder = spawn_child("hold", &[&name, role]);
        assert_eq!(holder.report_u64("claimed", CHILD_TIMEOUT), u64::from(holder.pid()));
        match claim(&queue, role) {
            Err(ClaimError::Taken(RoleError::Taken(owner))) => {
                assert_eq!(owner.pid(), Some(holder.pid()));
                assert_eq!(owner.to_raw(), word.load(Ordering::Acquire));
            }
            other => panic!("claiming the {role} held by a live child gave {other:?}"),
        }
        // The other role is free meanwhile.
        drop(claim(&queue, other_role).expect("the other role is free"));

        // The child drops its end but stays alive: the role is free, not taken over.
        release.store(1, Ordering::Release);
        assert_eq!(holder.report_u64("released", CHILD_TIMEOUT), u64::from(holder.pid()));
        assert_eq!(word.load(Ordering::Acquire), 0);
        holder.assert_running();
        let end = claim(&queue, role).expect("the released role can be claimed");
        assert_eq!(word.load(Ordering::Acquire), me().to_raw());
        drop(end);
        holder.kill_while_running();
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A dead producer's role is taken over; nothing it published is lost or repeated.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_killed_producer_is_taken_over_and_the_stream_continues_exactly_once() {
    const PUSHED_BEFORE_KILL: u64 = 700;
    const TOTAL: u64 = 20_000;
    let _spin = process_lock();
    let (name, _cleanup) = unique_segment(SEGMENTS, "kill-producer");
    let segment = create_queue_segment(&name, CAPACITY);
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));

    let mut consumer = spawn_child("consume", &[&name, &TOTAL.to_string()]);
    let mut doomed = spawn_child("push-then-hang", &[&name, &PUSHED_BEFORE_KILL.to_string()]);
    assert_eq!(doomed.report_u64("pushed", CHILD_TIMEOUT), PUSHED_BEFORE_KILL);
    let doomed_pid = doomed.pid();
    doomed.kill_while_running();
    let left = RoleOwner::from_raw(raw.producer_role().load(Ordering::Acquire));
    assert_eq!(
        left.and_then(RoleOwner::pid),
        Some(doomed_pid),
        "the dead producer still names itself"
    );

    let mut producer = queue.producer().expect("take over from the killed producer");
    assert_eq!(raw.producer_role().load(Ordering::Acquire), me().to_raw());
    assert_eq!(raw.tail().load(Ordering::Acquire), PUSHED_BEFORE_KILL);
    let deadline = Instant::now() + STREAM_TIMEOUT;
    push_range(&mut producer, PUSHED_BEFORE_KILL..TOTAL, deadline).unwrap();
    assert_eq!(consumer.report_u64("consumed", STREAM_TIMEOUT), TOTAL);
    consumer.expect_success(CHILD_TIMEOUT);
}

#[test]
fn producers_killed_mid_stream_are_taken_over_without_losing_or_repeating_a_value() {
    /// Producers killed in turn, each taking over from the previous one.
    const ROUNDS: u64 = 6;
    /// Tries per round to stop a producer between its stamps and its `tail` store.
    const AIM: u64 = 300;
    /// Values of each producer the consumer takes before the kill.
    const BEFORE_KILL: u64 = 10_000;
    /// Values the parent pushes last.
    const LAST: u64 = 5_000;
    let _spin = process_lock();
    let (name, _cleanup) = unique_segment(SEGMENTS, "kill-producer-mid");
    let segment = create_queue_segment(&name, CAPACITY);
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));
    let progress = control(&segment, CAPACITY, PROGRESS);

    let mut consumer = spawn_child("consume", &[&name, "sentinel"]);
    consumer.report("claimed", CHILD_TIMEOUT);
    // A slot past `tail` bears its stamp (the consumer may already have popped it): the
    // producer is between publishing values and storing `tail`.
    let mid_publish = || {
        let tail = raw.tail().load(Ordering::Acquire);
        let stamp = raw.stamp(tail & (CAPACITY - 1)).load(Ordering::Acquire);
        raw.head().load(Ordering::Acquire) > tail || stamp == tail + 1
    };
    let mut previous_start = 0;
    let mut caught = 0;
    for round in 0..ROUNDS {
        let mut producer = spawn_child("push-from-tail", &[&name]);
        let start = producer.report_u64("start", CHILD_TIMEOUT);
        assert!(start >= previous_start, "round {round}: resumed at {start} < {previous_start}");
        wait_for("the consumer to take values of the producer", STREAM_TIMEOUT, || {
            consumer.assert_running();
            producer.assert_running();
            progress.load(Ordering::Acquire) >= start + BEFORE_KILL
        });
        // Kill it at the dangerous instant if we can catch it there, else wherever it is.
        caught += u64::from(stop_when(&mut producer, AIM, mid_publish));
        producer.kill_while_running();
        let (head, tail) = (raw.head().load(Ordering::Acquire), raw.tail().load(Ordering::Acquire));
        let slot = |position: u64| position & (CAPACITY - 1);
        let stamped = (tail..tail + CAPACITY)
            .take_while(|&p| raw.stamp(slot(p)).load(Ordering::Acquire) == p + 1)
            .count();
        eprintln!(
            "round {round}: killed with tail {tail}, head {head}, {stamped} stamped slots at \
             or beyond tail"
        );
        previous_start = start;
    }

    assert!(caught > 0, "no producer was ever stopped between its stamps and its tail store");

    let mut producer = queue.producer().expect("take over from the last killed producer");
    let start = raw.tail().load(Ordering::Acquire);
    assert!(start >= previous_start);
    let deadline = Instant::now() + STREAM_TIMEOUT;
    push_range(&mut producer, start..start + LAST, deadline).unwrap();
    push_one(&mut producer, SENTINEL, deadline).unwrap();
    assert_eq!(consumer.report_u64("consumed", STREAM_TIMEOUT), start + LAST);
    consumer.expect_success(CHILD_TIMEOUT);
}

/// A queue of `capacity` slots in a fresh segment of this process.
fn local_queue(tag: &str, capacity: u64) -> (Cleanup, Segment) {
    let (name, cleanup) = unique_segment(SEGMENTS, tag);
    (cleanup, create_queue_segment(&name, capacity))
}

fn pop_all(consumer: &mut SharedConsumer<'_>) -> Vec<u64> {
    std::iter::from_fn(|| consumer.try_pop().ok()).collect()
}

#[test]
fn a_producer_dead_between_stamp_and_tail_is_resumed_after_the_stamped_slot() {
    let (_cleanup, segment) = local_queue("stamp-no-tail", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let mut producer = queue.producer().unwrap();
    assert_eq!(producer.push_slice(&[10, 11, 12]), 3);
    drop(producer);
    // The dead producer's last act: value 13 at position 3, stamped, `tail` still 3.
    raw.stamp_without_tail(3, 13);
    raw.producer_role().store(dead_owner().to_raw(), Ordering::Release);
    assert_eq!(raw.tail().load(Ordering::Acquire), 3);

    let mut producer = queue.producer().expect("take over from the dead producer");
    assert_eq!(raw.producer_role().load(Ordering::Acquire), me().to_raw());
    assert_eq!(raw.tail().load(Ordering::Acquire), 4, "the stamped slot counts as published");
    producer.try_push(14).unwrap();
    assert_eq!(raw.stamp(4).load(Ordering::Acquire), 5, "the first push landed after it");
    assert_eq!(raw.stamp(3).load(Ordering::Acquire), 4, "the stamped slot was not overwritten");

    let mut consumer = queue.consumer().unwrap();
    assert_eq!(pop_all(&mut consumer), [10, 11, 12, 13, 14]);
}

#[test]
fn a_stamped_slot_popped_before_the_takeover_is_not_repeated_and_does_not_block_claims() {
    let (_cleanup, segment) = local_queue("stamp-popped", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let (mut consumer, mut producer) = (queue.consumer().unwrap(), queue.producer().unwrap());
    producer.try_push(10).unwrap();
    drop(producer);
    raw.stamp_without_tail(1, 11);
    raw.stamp_without_tail(2, 12);
    raw.producer_role().store(dead_owner().to_raw(), Ordering::Release);
    // The live consumer polls stamps, not `tail`: it takes the published values at once, and
    // its head passes the dead producer's tail.
    assert_eq!(pop_all(&mut consumer), [10, 11, 12]);
    assert_eq!(raw.head().load(Ordering::Acquire), 3);
    assert_eq!(raw.tail().load(Ordering::Acquire), 1);
    // Head past tail is an empty queue, not a full one.
    assert_eq!((queue.len(), consumer.slots()), (0, 0));
    assert!(queue.is_empty() && consumer.is_empty());

    // A new consumer resumes at head, and a new producer after everything popped.
    drop(consumer);
    let mut consumer = queue.consumer().expect("a consumer claim with head past tail");
    let mut producer = queue.producer().expect("take over from the dead producer");
    assert_eq!(raw.tail().load(Ordering::Acquire), 3);
    producer.try_push(13).unwrap();
    assert_eq!(pop_all(&mut consumer), [13], "nothing repeated, nothing lost");
    assert_eq!(queue.len(), 0);
}

#[test]
fn a_producer_dead_mid_push_slice_is_resumed_after_its_stamps_up_to_capacity() {
    let (_cleanup, segment) = local_queue("stamp-full", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    // A whole batch stamped, `tail` still 0: the queue is full of published values.
    for position in 0..4 {
        raw.stamp_without_tail(position, 20 + position);
    }
    raw.producer_role().store(dead_owner().to_raw(), Ordering::Release);

    let mut producer = queue.producer().expect("take over from the dead producer");
    assert_eq!(raw.tail().load(Ordering::Acquire), 4);
    assert_eq!(producer.try_push(99), Err(PushError::Full(99)), "the batch filled the queue");
    let mut consumer = queue.consumer().unwrap();
    assert_eq!(pop_all(&mut consumer), [20, 21, 22, 23]);
    producer.try_push(99).unwrap();
    assert_eq!(pop_all(&mut consumer), [99]);
}

#[test]
fn stamps_left_from_an_earlier_lap_are_not_taken_for_published_values() {
    let (_cleanup, segment) = local_queue("stale-lap", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    let (mut producer, mut consumer) = (queue.producer().unwrap(), queue.consumer().unwrap());
    for value in 0..6 {
        producer.try_push(value).unwrap();
        assert_eq!(consumer.try_pop(), Ok(value));
    }
    drop(producer);
    // Positions 6 and 7 live in slots 2 and 3, which still carry the stamps of 2 and 3.
    assert_eq!(raw.stamp(2).load(Ordering::Acquire), 3);
    raw.producer_role().store(dead_owner().to_raw(), Ordering::Release);

    let mut producer = queue.producer().expect("take over from the dead producer");
    assert_eq!(raw.tail().load(Ordering::Acquire), 6);
    producer.try_push(42).unwrap();
    assert_eq!(pop_all(&mut consumer), [42]);
}

// ---------------------------------------------------------------------------------------------
// 4. A dead consumer's role is taken over; at most the value in flight comes again.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_killed_idle_consumer_is_taken_over_and_nothing_repeats() {
    const POPPED_BEFORE_KILL: u64 = 600;
    const PUSHED_FIRST: u64 = 1_000;
    const TOTAL: u64 = 5_000;
    let _spin = process_lock();
    let (_cleanup, segment) = local_queue("kill-consumer", CAPACITY);
    let name = segment.name().as_str().to_owned();
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));
    let mut producer = queue.producer().unwrap();
    let deadline = Instant::now() + STREAM_TIMEOUT;
    push_range(&mut producer, 0..PUSHED_FIRST, deadline).unwrap();

    let mut doomed = spawn_child("pop-then-hang", &[&name, &POPPED_BEFORE_KILL.to_string()]);
    assert_eq!(doomed.report_u64("popped", CHILD_TIMEOUT), POPPED_BEFORE_KILL);
    doomed.kill_while_running();
    assert_eq!(raw.head().load(Ordering::Acquire), POPPED_BEFORE_KILL);

    let mut consumer = queue.consumer().expect("take over from the killed consumer");
    assert_eq!(raw.consumer_role().load(Ordering::Acquire), me().to_raw());
    assert_eq!(pop_all(&mut consumer), (POPPED_BEFORE_KILL..PUSHED_FIRST).collect::<Vec<_>>());
    // And the queue keeps working across laps.
    let progress = AtomicU64::new(0);
    thread::scope(|scope| {
        scope.spawn(|| push_range(&mut producer, PUSHED_FIRST..TOTAL, deadline).unwrap());
        let next = pop_in_order(&mut consumer, PUSHED_FIRST, Some(TOTAL), &progress, deadline);
        assert_eq!(next.unwrap(), TOTAL);
    });
}

#[test]
fn consumers_killed_mid_stream_are_taken_over_and_at_most_the_value_in_flight_repeats() {
    /// Consumer processes killed in turn, each taking over from the previous one.
    const ROUNDS: u64 = 4;
    /// Tries per round to stop a consumer between recording a value and popping it.
    const AIM: u64 = 300;
    /// Values each consumer process takes before the parent aims at it.
    const BEFORE_KILL: u64 = 10_000;
    let _spin = process_lock();
    let (_cleanup, segment) = local_queue("kill-consumer-mid", CAPACITY);
    let name = segment.name().as_str().to_owned();
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));
    let seen = control(&segment, CAPACITY, PROGRESS);
    let deadline = Instant::now() + STREAM_TIMEOUT;

    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let mut producer = queue.producer().unwrap();
        let stop = &stop;
        // An open-ended stream, ended by the sentinel once the kills are done.
        let pushing = scope.spawn(move || -> Result<u64, String> {
            let mut next = 0;
            while !stop.load(Ordering::Acquire) {
                push_range(&mut producer, next..next + 1_000, deadline)?;
                next += 1_000;
            }
            push_one(&mut producer, SENTINEL, deadline)?;
            Ok(next)
        });

        // `resume`: where the next consumer must start. Each dead consumer saw `0..seen`
        // (values before `resume` included); its successor starts at its `head`.
        let mut resume = 0;
        let mut caught = 0;
        for round in 0..ROUNDS {
            let mut doomed = spawn_child("peek-consume", &[&name]);
            assert_eq!(doomed.report_u64("first", CHILD_TIMEOUT), resume, "round {round}");
            wait_for("the consumer to take its share", STREAM_TIMEOUT, || {
                doomed.assert_running();
                seen.load(Ordering::SeqCst) >= resume + BEFORE_KILL
            });
            // Kill it with a value in flight (seen, not yet popped) if we can catch it so.
            let in_flight = || seen.load(Ordering::SeqCst) == raw.head().load(Ordering::SeqCst) + 1;
            caught += u64::from(stop_when(&mut doomed, AIM, in_flight));
            doomed.kill_while_running();
            let (head, saw) = (raw.head().load(Ordering::Acquire), seen.load(Ordering::SeqCst));
            assert!(
                head == saw || head + 1 == saw,
                "round {round}: the dead consumer recorded values up to {saw} but left head {head}"
            );
            eprintln!("round {round}: killed having seen {saw}, head {head}");
            resume = head;
        }
        assert!(caught > 0, "no consumer was ever stopped with a value in flight");

        stop.store(true, Ordering::Release);
        let mut consumer = queue.consumer().expect("take over from the last killed consumer");
        let progress = AtomicU64::new(0);
        let next = pop_in_order(&mut consumer, resume, None, &progress, deadline).unwrap();
        let pushed = pushing.join().unwrap().unwrap();
        assert_eq!(next, pushed, "the union of what the consumers saw has a gap");
        assert_eq!(consumer.try_pop(), Err(PopError::Empty));
    });
}

// ---------------------------------------------------------------------------------------------
// 5. A live owner keeps its role, however long others wait.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_live_holder_is_never_taken_over_even_when_stopped() {
    const PATIENCE: Duration = Duration::from_millis(700);
    let (name, _cleanup) = unique_segment(SEGMENTS, "live-holder");
    let segment = create_queue_segment(&name, CAPACITY);
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));

    for (role, word) in [("producer", raw.producer_role()), ("consumer", raw.consumer_role())] {
        let mut holder = spawn_child("hold", &[&name, role]);
        holder.report("claimed", CHILD_TIMEOUT);
        let held = word.load(Ordering::Acquire);
        let mut attempts = 0;
        let mut keep_claiming = |until: Instant| {
            while Instant::now() < until {
                match claim(&queue, role) {
                    Err(ClaimError::Taken(RoleError::Taken(owner))) => {
                        assert_eq!(owner.pid(), Some(holder.pid()));
                    }
                    other => panic!("claim #{attempts} of a live child's {role} gave {other:?}"),
                }
                assert_eq!(word.load(Ordering::Acquire), held, "a failed claim changed the word");
                attempts += 1;
                thread::sleep(Duration::from_millis(5));
            }
        };
        keep_claiming(Instant::now() + PATIENCE);
        // Stopped is not dead.
        signal(&holder, Signal::STOP);
        keep_claiming(Instant::now() + PATIENCE / 2);
        signal(&holder, Signal::CONT);
        assert!(attempts > 10, "only {attempts} claims were tried");
        holder.assert_running();

        // Only its death frees it.
        holder.kill_while_running();
        drop(claim(&queue, role).expect("the dead child's role is taken over"));
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Corrupt memory gives errors, never a panic or an out-of-bounds access.
// ---------------------------------------------------------------------------------------------

#[test]
fn attach_reports_each_corrupt_descriptor_field_with_its_own_error() {
    let (_cleanup, segment) = local_queue("descriptor", 8);
    let region = queue_segment(8).queue;
    let attach_at = |region| SharedSpsc::<u64>::attach(&segment, region, QUEUE_FINGERPRINT);
    let bad_region = |capacity| bad_region(SharedSpsc::<u64>::layout(capacity).unwrap(), region);
    let mut cases = descriptor_cases(QUEUE_FINGERPRINT, (8, 8), bad_region);
    cases.extend([
        ("magic", MAGIC_AT, b"NOTSPSC!".to_vec(), QueueError::BadMagic),
        ("magic of an overflowing queue", MAGIC_AT, b"SHMLOVFL".to_vec(), QueueError::BadMagic),
        ("reserved[0]", EXTRA_AT, 1u64.to_ne_bytes().to_vec(), QueueError::Corrupt),
        ("reserved[1]", EXTRA_AT + 8, [0x80].to_vec(), QueueError::Corrupt),
    ]);
    raw(&segment, 8).check_descriptor_cases(|| attach_at(region).map(drop), cases);

    // Regions that cannot hold the queue, with an intact descriptor.
    check_region_refusals(&segment, region, |region| attach_at(region).map(drop));
    assert_eq!(
        SharedSpsc::<u64>::layout(3).unwrap_err(),
        QueueError::BadCapacity(3),
        "layout refuses what attach refuses"
    );
}

#[test]
fn claims_refuse_shared_indices_that_no_queue_can_have() {
    let (_cleanup, segment) = local_queue("bad-indices", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    for (head, tail) in IMPOSSIBLE_INDICES {
        raw.set_indices(head, tail);
        for (role, word) in [("producer", raw.producer_role()), ("consumer", raw.consumer_role())] {
            match claim(&queue, role) {
                Err(ClaimError::Corrupt { head: h, tail: t }) => assert_eq!((h, t), (head, tail)),
                other => panic!("{role} claim with head {head}, tail {tail} gave {other:?}"),
            }
            assert_eq!(word.load(Ordering::Acquire), 0, "a refused {role} claim kept the role");
        }
    }
    // Sane indices again: both claims succeed.
    raw.set_indices(5, 5);
    drop((queue.producer().unwrap(), queue.consumer().unwrap()));
}

#[test]
fn a_producer_refuses_to_push_when_the_consumer_index_becomes_impossible() {
    let (_cleanup, segment) = local_queue("bad-head", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let mut producer = queue.producer().unwrap();
    for value in 0..8 {
        producer.try_push(value).unwrap();
    }
    assert_eq!(producer.try_push(8), Err(PushError::Full(8)));
    // More consumed than produced, and the other way round: the producer must not believe it.
    for impossible in [11, u64::MAX, 8 + 1000] {
        raw.head().store(impossible, Ordering::Release);
        match producer.try_push(8) {
            Err(PushError::Corrupt(value)) => assert_eq!(value, 8),
            other => panic!("push with head {impossible} (tail 8) gave {other:?}"),
        }
        assert_eq!(producer.push_slice(&[8, 9]), 0);
        assert_eq!(producer.slots(), 0);
        assert!(producer.is_full());
        for slot in 0..8 {
            assert_eq!(raw.stamp(slot).load(Ordering::Acquire), slot + 1, "slot {slot} touched");
        }
    }
    // A sane head again: two slots free.
    raw.head().store(2, Ordering::Release);
    assert_eq!(producer.slots(), 2);
    producer.try_push(8).unwrap();
    assert_eq!(raw.tail().load(Ordering::Acquire), 9);
}

#[test]
fn attaching_through_a_read_only_mapping_fails_with_read_only() {
    let (_cleanup, segment) = local_queue("read-only", 8);
    let reader = queue_segment(8).open_read_only(segment.name().as_str());
    assert!(reader.is_read_only());
    assert_eq!(
        SharedSpsc::<u64>::attach(&reader, queue_segment(8).queue, QUEUE_FINGERPRINT).map(drop),
        Err(QueueError::Offset(OffsetError::ReadOnly))
    );
    // The same region attaches read-write.
    attach(&segment, 8);
}

// ---------------------------------------------------------------------------------------------
// 7. Every process must use the same element type.
// ---------------------------------------------------------------------------------------------

#[test]
fn attaching_with_another_element_type_fails_with_element_mismatch() {
    let (_cleanup, segment) = local_queue("element", 8);
    let region = queue_segment(8).queue;
    assert_eq!(
        SharedSpsc::<u32>::attach(&segment, region, QUEUE_FINGERPRINT).map(drop),
        Err(QueueError::ElementMismatch { size: 4, align: 4, found_size: 8, found_align: 8 })
    );
    assert_eq!(
        SharedSpsc::<[u8; 8]>::attach(&segment, region, QUEUE_FINGERPRINT).map(drop),
        Err(QueueError::ElementMismatch { size: 8, align: 1, found_size: 8, found_align: 8 })
    );
    assert_eq!(
        SharedSpsc::<[u64; 2]>::attach(&segment, region, QUEUE_FINGERPRINT).map(drop),
        Err(QueueError::ElementMismatch { size: 16, align: 8, found_size: 8, found_align: 8 })
    );
    // Same size and alignment is only told apart by the element fingerprint.
    let i64_fingerprint = Fingerprint::new("spsc-shared-test-i64").with_u64(8);
    assert_eq!(
        SharedSpsc::<i64>::attach(&segment, region, i64_fingerprint).map(drop),
        Err(QueueError::FingerprintMismatch {
            expected: i64_fingerprint.get(),
            found: QUEUE_FINGERPRINT.get()
        })
    );
}
