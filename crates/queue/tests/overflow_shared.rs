//! The overflowing queue inside a shared-memory segment (`SharedOverflow`), between real
//! processes, after crashes, and against hostile bytes.
//!
//! Tests that need a peer re-execute this test binary as a child (`shmlane_testkit`):
//! [`child_entry`] runs the role named in `SHMLANE_CHILD` and exits with a code (0 on success,
//! [`EXIT_ORDER`] on values out of order, [`EXIT_FAILED`] when a queue call failed or a wait
//! timed out, 101 when the role panicked); without the variable it returns at once, so it
//! passes as an ordinary test. Children report as stdout lines `@@shmlane KEY VALUE` and
//! publish progress in control words of the segment. Every wait has a deadline.
//!
//! Segment names carry the pid and a counter; every segment a test creates is removed on
//! success and, through [`Cleanup`] guards, on failure too.
//!
//! Some tests play a crashed or hostile peer by writing the queue's words directly, through
//! [`RawQueue`] at the offsets `SharedOverflow::raw_layout` reports. Random hostile bytes in
//! the queue's words are `crates/reliability/tests/hostile_queue.rs`'s.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Instant;

use shmlane_queue::QueueError;
use shmlane_queue::overflow::{Consumer, Corrupt, Shared, SharedOverflow, TryPushError};
use shmlane_queue::raw::{EXTRA_AT, MAGIC_AT};
use shmlane_queue::spsc::SharedSpsc;
use shmlane_segment::{Fingerprint, OffsetError, Region, Segment};
use shmlane_testkit::queue::{
    IMPOSSIBLE_INDICES, QueueSegment, RacePace, RawQueue, STREAM_TIMEOUT, bad_region,
    check_region_refusals, descriptor_cases,
};
use shmlane_testkit::{
    CHILD_TIMEOUT, Cleanup, EXIT_FAILED, EXIT_ORDER, ORPHAN_LIMIT, arg_u64, child_spec, exit_child,
    fail, process_lock, report, spawn_child, split_spec, stop_when, unique_segment, wait_for,
};

// ---------------------------------------------------------------------------------------------
// Harness: names, timeouts, exit codes, the child roles' entry point.
// ---------------------------------------------------------------------------------------------

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("produce-evicting", [name, capacity, count]) => {
            child_produce_evicting(name, arg_u64(capacity), arg_u64(count))
        }
        ("push-forever", [name, capacity]) => child_push_forever(name, arg_u64(capacity)),
        ("produce-waiting", [name, capacity, count]) => {
            child_produce_waiting(name, arg_u64(capacity), arg_u64(count))
        }
        _ => panic!("unknown child role {spec:?}"),
    }
    exit_child();
}

// ---------------------------------------------------------------------------------------------
// A segment holding one `SharedOverflow` and a few control words.
// ---------------------------------------------------------------------------------------------

/// The queue's element fingerprint.
const QUEUE_FINGERPRINT: Fingerprint = Fingerprint::new("overflow-shared-test-offsets");
/// Control word: values the producer child has pushed.
const PUSHED: u64 = 0;
/// Control word: values the parent has popped.
const POPPED: u64 = 1;

/// The segment of a queue of `capacity` slots.
fn queue_segment(capacity: u64) -> QueueSegment {
    QueueSegment::new("overflow-shared-test", capacity, SharedOverflow::layout(capacity).unwrap())
}

/// A queue of `capacity` slots in a fresh segment of this process.
fn local_queue(tag: &str, capacity: u64) -> (Cleanup, Segment) {
    let (name, cleanup) = unique_segment("overflow", tag);
    let segment = queue_segment(capacity).create(&name, |segment, region| {
        SharedOverflow::init_in(segment, region, capacity, QUEUE_FINGERPRINT).map(drop)
    });
    (cleanup, segment)
}

fn attach(segment: &Segment, capacity: u64) -> SharedOverflow<'_> {
    SharedOverflow::attach(segment, queue_segment(capacity).queue, QUEUE_FINGERPRINT)
        .expect("attach to the queue")
}

type SharedConsumer<'s> = Consumer<Shared<'s>>;

fn pop_all(consumer: &mut SharedConsumer<'_>) -> Vec<u64> {
    std::iter::from_fn(|| consumer.pop()).take(1 << 20).collect()
}

/// The queue's words, where `SharedOverflow::raw_layout` puts them.
fn raw(segment: &Segment, capacity: u64) -> RawQueue<'_> {
    let layout = SharedOverflow::raw_layout(capacity).unwrap();
    RawQueue::new(segment, queue_segment(capacity).queue, capacity, layout)
}

// ---------------------------------------------------------------------------------------------
// Child roles.
// ---------------------------------------------------------------------------------------------

/// Running totals of a set of values, to compare sets across processes: count, sum, sum of
/// squares (a lost value cannot be made up for by a duplicate of another).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    count: u64,
    sum: u64,
    squares: u64,
}

impl Tally {
    fn add(&mut self, value: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(value);
        self.squares = self.squares.wrapping_add(value.wrapping_mul(value));
    }

    fn of(values: impl IntoIterator<Item = u64>) -> Self {
        let mut tally = Tally::default();
        values.into_iter().for_each(|value| tally.add(value));
        tally
    }

    fn plus(self, other: Tally) -> Tally {
        Tally {
            count: self.count + other.count,
            sum: self.sum.wrapping_add(other.sum),
            squares: self.squares.wrapping_add(other.squares),
        }
    }
}

/// Pushes `0..count` with `push`, evicting when full, at the pace of a [`RacePace`] with the
/// parent popping; publishes its progress in [`PUSHED`]; checks its evicted values come in
/// increasing order and reports their tally.
fn child_produce_evicting(name: &str, capacity: u64, count: u64) {
    let layout = queue_segment(capacity);
    let segment = layout.open(name);
    let queue = attach(&segment, capacity);
    let (pushed, popped) = (layout.control(&segment, PUSHED), layout.control(&segment, POPPED));
    let mut producer = match queue.producer() {
        Ok(producer) => producer,
        Err(error) => fail(EXIT_FAILED, format!("producer(): {error}")),
    };
    report("claimed", std::process::id());
    let pace = RacePace { count, capacity, deadline: Instant::now() + STREAM_TIMEOUT };
    let mut evicted = Tally::default();
    let mut last_evicted = None;
    for value in 0..count {
        match producer.push(value) {
            Ok(None) => {}
            Ok(Some(old)) => {
                if last_evicted.is_some_and(|last| old <= last) || old + capacity > value {
                    fail(
                        EXIT_ORDER,
                        format!("pushing {value} evicted {old} after {last_evicted:?}"),
                    );
                }
                last_evicted = Some(old);
                evicted.add(old);
            }
            Err(error) => fail(EXIT_FAILED, format!("push of {value}: {error}")),
        }
        // Release: the parent's Acquire load; it may stop consuming once it sees `count`.
        pushed.store(value + 1, Ordering::Release);
        let paced = pace.after(value, || popped.load(Ordering::Acquire), || producer.len() as u64);
        if let Err(error) = paced {
            fail(EXIT_FAILED, error);
        }
    }
    report("evicted", evicted.count);
    report("evicted_sum", evicted.sum);
    report("evicted_squares", evicted.squares);
}

/// Pushes `0..count` with `try_push`, waiting while the queue is full (a producer that takes
/// nothing back, as exclusive consumers need); publishes its progress in [`PUSHED`].
fn child_produce_waiting(name: &str, capacity: u64, count: u64) {
    let layout = queue_segment(capacity);
    let segment = layout.open(name);
    let queue = attach(&segment, capacity);
    let pushed = layout.control(&segment, PUSHED);
    let mut producer = match queue.producer() {
        Ok(producer) => producer,
        Err(error) => fail(EXIT_FAILED, format!("producer(): {error}")),
    };
    report("claimed", std::process::id());
    let deadline = Instant::now() + STREAM_TIMEOUT;
    for value in 0..count {
        let mut spins = 0u32;
        loop {
            match producer.try_push(value) {
                Ok(()) => break,
                Err(TryPushError::Full) => {
                    spins += 1;
                    if spins.is_multiple_of(1024) && Instant::now() > deadline {
                        fail(EXIT_FAILED, format!("no room for {value}"));
                    }
                    std::hint::spin_loop();
                }
                Err(TryPushError::Corrupt(error)) => {
                    fail(EXIT_FAILED, format!("push of {value}: {error}"))
                }
            }
        }
        // Release: the parent's Acquire load.
        pushed.store(value + 1, Ordering::Release);
    }
}

/// Takes the producer role over, reports the position it resumes at, and pushes each
/// position's own number as its value, evicting when full, until killed.
fn child_push_forever(name: &str, capacity: u64) {
    let segment = queue_segment(capacity).open(name);
    let (queue, raw) = (attach(&segment, capacity), raw(&segment, capacity));
    let mut producer = match queue.producer() {
        Ok(producer) => producer,
        Err(error) => fail(EXIT_FAILED, format!("producer(): {error}")),
    };
    let start = raw.tail().load(Ordering::Acquire);
    report("start", start);
    let started = Instant::now();
    for position in start.. {
        if let Err(error) = producer.push(position) {
            fail(EXIT_FAILED, format!("push of {position}: {error}"));
        }
        if position % 4096 == 0 && started.elapsed() > ORPHAN_LIMIT {
            fail(EXIT_FAILED, "never killed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A child process pushes with eviction while the parent pops: every value exactly once.
// ---------------------------------------------------------------------------------------------

/// Values the child pushes per capacity.
const STREAM: u64 = 100_000;

/// The child pushes `0..count` into a queue of `capacity`; the parent pops concurrently (only
/// once the child has pushed `2 * capacity + 1` values, so evictions happen), then takes the
/// producer role over and drains the rest with `evict`. Popped values must be strictly
/// increasing, and popped + evicted (the child's tally) + drained must be exactly `0..count`.
fn stream_with_eviction(capacity: u64, count: u64) {
    let (_cleanup, segment) = local_queue("stream", capacity);
    let name = segment.name().as_str().to_owned();
    let (queue, raw) = (attach(&segment, capacity), raw(&segment, capacity));
    let layout = queue_segment(capacity);
    let (pushed, popped_word) =
        (layout.control(&segment, PUSHED), layout.control(&segment, POPPED));
    let mut consumer = queue.consumer().unwrap();

    let mut child =
        spawn_child("produce-evicting", &[&name, &capacity.to_string(), &count.to_string()]);
    child.report("claimed", CHILD_TIMEOUT);
    wait_for("the child to overfill the queue", STREAM_TIMEOUT, || {
        child.assert_running();
        pushed.load(Ordering::Acquire) > 2 * capacity
    });

    let deadline = Instant::now() + STREAM_TIMEOUT;
    let mut popped = Vec::new();
    let mut spins = 0u32;
    while pushed.load(Ordering::Acquire) < count {
        match consumer.pop() {
            Some(value) => {
                let last = popped.last().copied();
                let in_order = last.is_none_or(|last| value > last);
                assert!(in_order, "capacity {capacity}: popped {value} after {last:?}");
                popped.push(value);
                popped_word.store(popped.len() as u64, Ordering::Release);
            }
            None => {
                spins += 1;
                if spins.is_multiple_of(1024) {
                    assert!(Instant::now() < deadline, "capacity {capacity}: timed out popping");
                    child.assert_running();
                    thread::yield_now();
                }
            }
        }
    }
    let evicted = Tally {
        count: child.report_u64("evicted", CHILD_TIMEOUT),
        sum: child.report_u64("evicted_sum", CHILD_TIMEOUT),
        squares: child.report_u64("evicted_squares", CHILD_TIMEOUT),
    };
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!(raw.tail().load(Ordering::Acquire), count, "the child's last tail store");

    // The child released the producer role: take it over and reclaim what it left queued.
    let mut producer = queue.producer().expect("take over the producer role");
    let drained: Vec<u64> =
        std::iter::from_fn(|| producer.evict().unwrap()).take(1 << 20).collect();
    assert!(drained.len() as u64 <= capacity);
    assert!(drained.windows(2).all(|w| w[0] + 1 == w[1]), "drained {drained:?}");
    if let Some(&last) = drained.last() {
        assert_eq!(last, count - 1, "the newest value is still queued, not evicted");
    }
    if let (Some(&last_popped), Some(&first_drained)) = (popped.last(), drained.first()) {
        assert!(first_drained > last_popped, "drained {first_drained} after popping {last_popped}");
    }
    assert_eq!(consumer.pop(), None);
    assert!(queue.is_empty());
    assert_eq!(raw.head().load(Ordering::Acquire), count);

    // Every value of `0..count` exactly once.
    let popped_tally = Tally::of(popped.iter().copied());
    let drained_tally = Tally::of(drained.iter().copied());
    assert_eq!(
        popped_tally.plus(evicted).plus(drained_tally),
        Tally::of(0..count),
        "capacity {capacity}: popped {popped_tally:?} + evicted {evicted:?} + drained \
         {drained_tally:?} is not 0..{count}"
    );
    assert!(!popped.is_empty(), "capacity {capacity}: nothing popped");
    assert!(evicted.count > capacity, "capacity {capacity}: only {} evicted", evicted.count);
    eprintln!(
        "capacity {capacity}: popped {}, evicted {}, drained {}",
        popped.len(),
        evicted.count,
        drained.len()
    );
}

#[test]
fn a_child_pushing_with_eviction_and_the_parent_popping_account_for_every_value_once() {
    let _lock = process_lock();
    for capacity in [8, 64] {
        stream_with_eviction(capacity, STREAM);
    }
}

/// An exclusive consumer (claims are stores of `head`) in the parent, a child producer that
/// waits for room: the parent pops all but the last `capacity` values, in order, none lost or
/// repeated; the child, its queue full, ends; the parent takes the producer role over and
/// evicts exactly the values it left.
#[test]
fn an_exclusive_consumer_and_a_child_waiting_for_room_move_every_value_once() {
    let _lock = process_lock();
    for capacity in [1, 8] {
        let (_cleanup, segment) = local_queue("exclusive", capacity);
        let name = segment.name().as_str().to_owned();
        let queue = attach(&segment, capacity);
        let pushed = queue_segment(capacity).control(&segment, PUSHED);
        let mut consumer = queue.consumer().unwrap().exclusive();
        let mut child =
            spawn_child("produce-waiting", &[&name, &capacity.to_string(), &STREAM.to_string()]);
        child.report("claimed", CHILD_TIMEOUT);
        let wanted = STREAM - capacity;
        let deadline = Instant::now() + STREAM_TIMEOUT;
        let mut next = 0;
        let mut spins = 0u32;
        while next < wanted {
            match consumer.pop() {
                Some(value) => {
                    assert_eq!(value, next, "capacity {capacity}: out of order or lost");
                    next += 1;
                }
                None => {
                    spins += 1;
                    if spins.is_multiple_of(1024) {
                        assert!(Instant::now() < deadline, "capacity {capacity}: timed out");
                        child.assert_running();
                    }
                }
            }
        }
        child.expect_success(CHILD_TIMEOUT);
        assert_eq!(pushed.load(Ordering::Acquire), STREAM);
        // The consumer pops no more: its queue is the producer's to empty.
        let mut producer = queue.producer().expect("take over the producer role");
        let left: Vec<u64> = std::iter::from_fn(|| producer.evict().unwrap()).take(64).collect();
        assert_eq!(left, (wanted..STREAM).collect::<Vec<_>>(), "capacity {capacity}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A producer that takes over resumes after every published value.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_producer_dead_between_stamp_and_tail_is_resumed_after_the_stamped_slot() {
    let (_cleanup, segment) = local_queue("stamp-no-tail", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let mut producer = queue.producer().unwrap();
    for value in [10, 11, 12] {
        assert_eq!(producer.push(value), Ok(None));
    }
    // The producer dies here (an overflow end holds no role word: nothing to release). Its
    // last act: value 13 at position 3, stamped, `tail` still 3.
    raw.stamp_without_tail(3, 13);
    assert_eq!(raw.tail().load(Ordering::Acquire), 3);

    let mut producer = queue.producer().expect("take over");
    assert_eq!(raw.tail().load(Ordering::Acquire), 4, "the stamped slot counts as published");
    assert_eq!(queue.len(), 4);
    assert_eq!(producer.push(14), Ok(None));
    assert_eq!(raw.stamp(4).load(Ordering::Acquire), 5, "the first push landed after it");
    assert_eq!(raw.stamp(3).load(Ordering::Acquire), 4, "the stamped slot was not overwritten");
    let mut consumer = queue.consumer().unwrap();
    assert_eq!(pop_all(&mut consumer), [10, 11, 12, 13, 14]);
}

#[test]
fn a_stamped_slot_that_fills_the_queue_is_the_newest_and_the_next_push_evicts_the_oldest() {
    let (_cleanup, segment) = local_queue("stamp-full", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    let mut producer = queue.producer().unwrap();
    for value in 0..3 {
        producer.push(value).unwrap();
    }
    raw.stamp_without_tail(3, 3);

    let mut producer = queue.producer().expect("take over");
    assert_eq!(raw.tail().load(Ordering::Acquire), 4);
    assert_eq!(producer.try_push(99), Err(TryPushError::Full), "the stamped slot filled it");
    assert_eq!(producer.push(4), Ok(Some(0)), "the oldest goes, not the stamped value");
    let mut consumer = queue.consumer().unwrap();
    assert_eq!(pop_all(&mut consumer), [1, 2, 3, 4]);
}

#[test]
fn a_producer_dead_mid_eviction_is_resumed_without_losing_or_repeating_a_queued_value() {
    let (_cleanup, segment) = local_queue("mid-evict", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    let mut producer = queue.producer().unwrap();
    let evicted: Vec<u64> = (0..10).filter_map(|value| producer.push(value).unwrap()).collect();
    assert_eq!(evicted, [0, 1, 2, 3, 4, 5]);
    assert_eq!((raw.head().load(Ordering::Acquire), raw.tail().load(Ordering::Acquire)), (6, 10));

    // Died after evicting position 6 (its CAS of `head`), before writing position 10.
    raw.head().store(7, Ordering::Release);
    let mut producer = queue.producer().expect("take over");
    assert_eq!(raw.tail().load(Ordering::Acquire), 10, "slot 2's stamp of position 6 is stale");
    assert_eq!(producer.push(10), Ok(None), "the eviction made room");
    assert_eq!(producer.push(11), Ok(Some(7)));

    // Died after evicting position 8 and stamping position 12, before its `tail` store.
    raw.head().store(9, Ordering::Release);
    raw.stamp_without_tail(12, 12);
    let mut producer = queue.producer().expect("take over");
    assert_eq!(raw.tail().load(Ordering::Acquire), 13);
    assert_eq!(producer.push(13), Ok(Some(9)));
    let mut consumer = queue.consumer().unwrap();
    assert_eq!(pop_all(&mut consumer), [10, 11, 12, 13]);
}

#[test]
fn a_stamped_slot_popped_before_the_takeover_is_not_repeated() {
    let (_cleanup, segment) = local_queue("stamp-popped", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let (mut consumer, mut producer) = (queue.consumer().unwrap(), queue.producer().unwrap());
    producer.push(10).unwrap();
    raw.stamp_without_tail(1, 11);
    raw.stamp_without_tail(2, 12);
    // The consumer polls stamps, not `tail`: it takes the published values, passing `tail`.
    assert_eq!(pop_all(&mut consumer), [10, 11, 12]);
    assert_eq!((raw.head().load(Ordering::Acquire), raw.tail().load(Ordering::Acquire)), (3, 1));
    assert!(queue.is_empty(), "head past tail is empty, not full");

    let mut producer = queue.producer().expect("take over with head past tail");
    assert_eq!(raw.tail().load(Ordering::Acquire), 3);
    assert_eq!(producer.evict(), Ok(None));
    producer.push(13).unwrap();
    assert_eq!(pop_all(&mut consumer), [13], "nothing repeated, nothing lost");
}

#[test]
fn stamps_left_from_an_earlier_lap_are_not_taken_for_published_values() {
    let (_cleanup, segment) = local_queue("stale-lap", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    let mut producer = queue.producer().unwrap();
    let mut consumer = queue.consumer().unwrap();
    for value in 0..6 {
        producer.push(value).unwrap();
        assert_eq!(consumer.pop(), Some(value));
    }
    assert_eq!(raw.stamps(), [5, 6, 3, 4], "slots 2 and 3 hold positions 2 and 3");
    let mut producer = queue.producer().expect("take over");
    assert_eq!(raw.tail().load(Ordering::Acquire), 6);
    producer.push(42).unwrap();
    assert_eq!(pop_all(&mut consumer), [42]);
}

/// The producer child pushes each position's number, evicting when full; the parent stops it
/// again and again until it is caught between a stamp and its `tail` store, kills it there,
/// and takes over: the queue holds exactly the positions `head..tail`, stamped ones included.
#[test]
fn a_producer_killed_between_stamp_and_tail_is_taken_over_after_its_last_stamp() {
    const CAPACITY: u64 = 8;
    /// Producers killed in turn.
    const ROUNDS: u64 = 4;
    /// Tries per round to stop a producer between its stamp and its `tail` store.
    const AIM: u64 = 300;
    let _lock = process_lock();
    let (_cleanup, segment) = local_queue("kill-producer", CAPACITY);
    let name = segment.name().as_str().to_owned();
    let (queue, raw) = (attach(&segment, CAPACITY), raw(&segment, CAPACITY));
    let mid_publish = || {
        let tail = raw.tail().load(Ordering::Acquire);
        raw.stamp(raw.slot_of(tail)).load(Ordering::Acquire) == tail + 1
    };
    let mut caught = 0;
    let mut resumed_at = 0;
    for round in 0..ROUNDS {
        let mut child = spawn_child("push-forever", &[&name, &CAPACITY.to_string()]);
        let start = child.report_u64("start", CHILD_TIMEOUT);
        assert!(start >= resumed_at, "round {round}: resumed at {start} < {resumed_at}");
        wait_for("the child to lap the ring", CHILD_TIMEOUT, || {
            child.assert_running();
            raw.tail().load(Ordering::Acquire) > start + 10 * CAPACITY
        });
        let hit = stop_when(&mut child, AIM, mid_publish);
        caught += u64::from(hit);
        child.kill_while_running();

        let (head, tail) = (raw.head().load(Ordering::Acquire), raw.tail().load(Ordering::Acquire));
        let mut producer = queue.producer().expect("take over from the killed producer");
        let resumed = raw.tail().load(Ordering::Acquire);
        if hit {
            assert_eq!(resumed, tail + 1, "round {round}: the stamped slot was not counted");
        }
        assert!(resumed >= tail && resumed - head <= CAPACITY, "round {round}: {head}..{resumed}");
        // Every queued slot holds its own position: nothing lost in the middle, nothing stale.
        let mut consumer = queue.consumer().unwrap();
        let queued = pop_all(&mut consumer);
        assert_eq!(queued, (head..resumed).collect::<Vec<_>>(), "round {round}");
        // The new producer goes on right after.
        assert_eq!(producer.push(resumed), Ok(None));
        assert_eq!(consumer.pop(), Some(resumed));
        eprintln!("round {round}: killed at head {head} tail {tail}, caught mid-publish: {hit}");
        resumed_at = resumed + 1;
    }
    assert!(caught > 0, "no producer was ever stopped between its stamp and its tail store");
}

// ---------------------------------------------------------------------------------------------
// 3. `reset`, `len`, `capacity`.
// ---------------------------------------------------------------------------------------------

#[test]
fn reset_empties_the_queue_and_forgets_every_stamp() {
    let (_cleanup, segment) = local_queue("reset", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    assert_eq!(queue.capacity(), 4);
    assert!(queue.is_empty());
    let mut producer = queue.producer().unwrap();
    for value in 0..7 {
        producer.push(value).unwrap();
    }
    assert_eq!((queue.len(), producer.len(), producer.capacity()), (4, 4, 4));
    // A stamp a dead producer left beyond `tail` must not survive the reset either.
    raw.stamp_without_tail(7, 7);

    queue.reset();
    assert_eq!((queue.len(), queue.is_empty()), (0, true));
    assert_eq!((raw.head().load(Ordering::Acquire), raw.tail().load(Ordering::Acquire)), (0, 0));
    assert_eq!(raw.stamps(), [0; 4]);
    let mut consumer = queue.consumer().unwrap();
    assert_eq!(consumer.pop(), None, "nothing survives a reset");
    let mut producer = queue.producer().unwrap();
    assert_eq!(raw.tail().load(Ordering::Acquire), 0);
    assert_eq!(producer.evict(), Ok(None));
    for value in 100..104 {
        assert_eq!(producer.push(value), Ok(None), "all four slots are free again");
    }
    assert_eq!(producer.push(104), Ok(Some(100)));
    assert_eq!((consumer.len(), consumer.capacity()), (4, 4));
    assert_eq!(pop_all(&mut consumer), [101, 102, 103, 104]);
    assert!(consumer.is_empty() && producer.is_empty());
}

#[test]
fn handles_attached_separately_share_one_queue() {
    let (_cleanup, segment) = local_queue("two-handles", 8);
    let first = attach(&segment, 8);
    let second = attach(&segment, 8);
    let mut producer = first.producer().unwrap();
    let mut consumer = second.consumer().unwrap();
    for value in 0..12 {
        producer.push(value).unwrap();
    }
    assert_eq!((first.len(), second.len()), (8, 8));
    assert_eq!(pop_all(&mut consumer), (4..12).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// 4. Hostile bytes give errors, never a panic, a hang or an out-of-bounds access.
// ---------------------------------------------------------------------------------------------

#[test]
fn attach_reports_each_corrupt_descriptor_field_with_its_own_error() {
    let (_cleanup, segment) = local_queue("descriptor", 8);
    let region = queue_segment(8).queue;
    let raw = raw(&segment, 8);
    let original = raw.descriptor();
    let attach_at = |region| SharedOverflow::attach(&segment, region, QUEUE_FINGERPRINT);
    let bad_region = |capacity| bad_region(SharedOverflow::layout(capacity).unwrap(), region);
    let mut cases = descriptor_cases(QUEUE_FINGERPRINT, (64, 64), bad_region);
    let word = |value: u64| value.to_ne_bytes().to_vec();
    cases.extend([
        ("magic of an SPSC queue", MAGIC_AT, b"SHMLSPSC".to_vec(), QueueError::BadMagic),
        ("extra[0]", EXTRA_AT, word(1), QueueError::Corrupt),
        ("extra[1]", EXTRA_AT + 8, word(u64::MAX), QueueError::Corrupt),
    ]);
    raw.check_descriptor_cases(|| attach_at(region).map(drop), cases);

    // The caller's fingerprint differs from the queue's.
    let other = Fingerprint::new("overflow-shared-test-other");
    assert_eq!(
        SharedOverflow::attach(&segment, region, other).map(drop),
        Err(QueueError::FingerprintMismatch {
            expected: other.get(),
            found: QUEUE_FINGERPRINT.get()
        })
    );
    // Another queue kind with the same element is refused by its magic, both ways round.
    assert_eq!(
        SharedSpsc::<u64>::attach(&segment, region, QUEUE_FINGERPRINT).map(drop),
        Err(QueueError::BadMagic)
    );

    // Regions that cannot hold the queue, with an intact descriptor.
    check_region_refusals(&segment, region, |region| attach_at(region).map(drop));
    let misaligned = Region { offset: region.offset + 64, len: region.len };
    // No descriptor at that offset, and a misaligned one anyway.
    assert!(matches!(
        attach_at(misaligned).map(drop),
        Err(QueueError::BadMagic | QueueError::BadRegion { .. })
    ));
    // `layout` and `init_in` refuse what `attach` refuses.
    for capacity in [0, 3, 6, 1 << 33, u64::MAX] {
        assert_eq!(SharedOverflow::layout(capacity), Err(QueueError::BadCapacity(capacity)));
        assert_eq!(
            SharedOverflow::init_in(&segment, region, capacity, QUEUE_FINGERPRINT).map(drop),
            Err(QueueError::BadCapacity(capacity))
        );
    }
    assert_eq!(
        SharedOverflow::init_in(&segment, region, 16, QUEUE_FINGERPRINT).map(drop),
        Err(bad_region(16))
    );
    assert_eq!(raw.descriptor(), original, "a refused init_in wrote the descriptor");
    attach_at(region).unwrap();
}

#[test]
fn attaching_through_a_read_only_mapping_fails_with_read_only() {
    let (_cleanup, segment) = local_queue("read-only", 8);
    let reader = queue_segment(8).open_read_only(segment.name().as_str());
    assert_eq!(
        SharedOverflow::attach(&reader, queue_segment(8).queue, QUEUE_FINGERPRINT).map(drop),
        Err(QueueError::Offset(OffsetError::ReadOnly))
    );
    attach(&segment, 8);
}

#[test]
fn a_snapshot_through_a_read_only_mapping_copies_the_queued_values_and_refuses_bad_indices() {
    let (_cleanup, segment) = local_queue("snapshot", 4);
    let queue = attach(&segment, 4);
    let (mut producer, mut consumer) = (queue.producer().unwrap(), queue.consumer().unwrap());
    let reader = queue_segment(4).open_read_only(segment.name().as_str());
    let region = queue_segment(4).queue;
    let snapshot = || SharedOverflow::snapshot(&reader, region, QUEUE_FINGERPRINT);
    assert_eq!(snapshot().unwrap().values, Vec::<u64>::new());
    for value in 10..16 {
        producer.push(value).unwrap(); // 10 and 11 are evicted
    }
    assert_eq!(consumer.pop(), Some(12));
    let taken = snapshot().unwrap();
    assert_eq!((taken.capacity, taken.values), (4, vec![13, 14, 15]));

    // A slot whose stamp is not its position's holds nothing queued.
    let raw = raw(&segment, 4);
    let newest = raw.slot_of(raw.tail().load(Ordering::Relaxed) - 1);
    raw.stamp(newest).store(0, Ordering::Relaxed);
    assert_eq!(snapshot().unwrap().values, vec![13, 14]);
    raw.tail().store(raw.head().load(Ordering::Relaxed) + 5, Ordering::Relaxed);
    assert_eq!(snapshot(), Err(QueueError::Corrupt), "more queued than the capacity");
    assert_eq!(
        SharedOverflow::snapshot(&reader, region, Fingerprint::new("other")),
        Err(QueueError::FingerprintMismatch {
            expected: Fingerprint::new("other").get(),
            found: QUEUE_FINGERPRINT.get()
        })
    );
}

#[test]
fn taking_an_end_refuses_shared_indices_that_no_queue_can_have() {
    let (_cleanup, segment) = local_queue("bad-indices", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    for (head, tail) in IMPOSSIBLE_INDICES {
        raw.set_indices(head, tail);
        assert_eq!(
            queue.producer().map(drop),
            Err(Corrupt { head, tail }),
            "producer({head}, {tail})"
        );
        assert_eq!(
            queue.consumer().map(drop),
            Err(Corrupt { head, tail }),
            "consumer({head}, {tail})"
        );
        assert_eq!(
            (raw.head().load(Ordering::Acquire), raw.tail().load(Ordering::Acquire)),
            (head, tail),
            "a refused claim moved an index"
        );
        assert!(queue.len() <= 8);
    }
    // Head a little past tail is what a consumer that popped a dead producer's stamped
    // slots leaves: both claims accept it, and the producer resumes at head.
    raw.set_indices(12, 10);
    queue.consumer().expect("head 12, tail 10");
    queue.producer().expect("head 12, tail 10");
    assert_eq!(raw.tail().load(Ordering::Acquire), 12);
    // Sane indices again: both claims succeed, and the queue works from there.
    raw.set_indices(5, 5);
    let (mut producer, mut consumer) = (queue.producer().unwrap(), queue.consumer().unwrap());
    producer.push(1).unwrap();
    assert_eq!(consumer.pop(), Some(1));
}

#[test]
fn a_producer_refuses_to_push_or_evict_when_the_shared_head_becomes_impossible() {
    let (_cleanup, segment) = local_queue("bad-head", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let mut producer = queue.producer().unwrap();
    for value in 0..8 {
        producer.push(value).unwrap();
    }
    let stamps = raw.stamps();
    // Ahead of the producer's tail (8), or further behind it than the capacity.
    for impossible in [9, 11, 1000, 1 << 63, u64::MAX - 1, u64::MAX] {
        raw.head().store(impossible, Ordering::Release);
        let corrupt = Corrupt { head: impossible, tail: 8 };
        assert_eq!(producer.push(8), Err(corrupt), "push with head {impossible}");
        assert_eq!(producer.try_push(8), Err(TryPushError::Corrupt(corrupt)));
        assert_eq!(producer.evict(), Err(corrupt), "evict with head {impossible}");
        assert_eq!(raw.stamps(), stamps, "a refused call wrote a slot");
        assert_eq!(raw.tail().load(Ordering::Acquire), 8, "a refused call moved tail");
        assert_eq!(raw.head().load(Ordering::Acquire), impossible, "a refused call moved head");
        assert!(producer.len() <= 8);
    }
    // A sane head again: the producer carries on.
    raw.head().store(2, Ordering::Release);
    assert_eq!(producer.push(8), Ok(None));
    assert_eq!(producer.push(9), Ok(None));
    assert_eq!(producer.push(10), Ok(Some(2)));
    assert_eq!(producer.evict(), Ok(Some(3)));
    let mut consumer = queue.consumer().unwrap();
    assert_eq!(pop_all(&mut consumer), [4, 5, 6, 7, 8, 9, 10]);
}

/// A head `tail + capacity` behind modulo 2^64 must not pass for a full queue whose oldest
/// position is just below zero.
#[test]
fn evict_refuses_a_head_that_wrapped_below_zero() {
    let (_cleanup, segment) = local_queue("wrapped-head", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let mut producer = queue.producer().unwrap();
    producer.push(10).unwrap();
    producer.push(11).unwrap();
    for wrapped in [u64::MAX, u64::MAX - 1, u64::MAX - 5] {
        raw.head().store(wrapped, Ordering::Release);
        let result = producer.evict();
        assert_eq!(result, Err(Corrupt { head: wrapped, tail: 2 }), "evict with head {wrapped}");
    }
}

#[test]
fn the_consumer_publishes_its_head_in_seen_only_when_it_finds_the_queue_empty() {
    let (_cleanup, segment) = local_queue("seen-idle", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    let (mut producer, mut consumer) = (queue.producer().unwrap(), queue.consumer().unwrap());
    for value in 0..3 {
        producer.push(value).unwrap();
    }
    assert_eq!([consumer.pop(), consumer.pop()], [Some(0), Some(1)]);
    assert_eq!(raw.seen().load(Ordering::Acquire), 0, "stored while values were queued");
    assert_eq!(consumer.pop(), Some(2));
    assert_eq!(consumer.pop(), None);
    assert_eq!(raw.seen().load(Ordering::Acquire), 3);
    // The producer's evictions move `head`; the next idle pop publishes that too.
    for value in 3..9 {
        producer.push(value).unwrap();
    }
    assert_eq!(pop_all(&mut consumer), [5, 6, 7, 8]);
    assert_eq!(raw.seen().load(Ordering::Acquire), 9);
}

/// A producer whose cache says full finds room through `seen` without loading `head` (so the
/// consumer keeps its `head` line): an impossible `head` goes unnoticed while `seen` shows room.
#[test]
fn a_producer_finds_room_through_seen_without_reading_head() {
    let (_cleanup, segment) = local_queue("seen-room", 2);
    let (queue, raw) = (attach(&segment, 2), raw(&segment, 2));
    let (mut producer, mut consumer) = (queue.producer().unwrap(), queue.consumer().unwrap());
    producer.push(1).unwrap();
    producer.push(2).unwrap();
    assert_eq!(pop_all(&mut consumer), [1, 2]);
    raw.head().store(u64::MAX, Ordering::Release);
    assert_eq!(producer.push(3), Ok(None));
    assert_eq!(producer.push(4), Ok(None));
    // Full by `seen` too: now `head` is read, and refused.
    assert_eq!(producer.push(5), Err(Corrupt { head: u64::MAX, tail: 4 }));
    raw.head().store(2, Ordering::Release);
    assert_eq!(producer.push(5), Ok(Some(3)));
    assert_eq!(pop_all(&mut consumer), [4, 5]);
}

/// `seen` is a hint from the consumer: one beyond the tail, a lap behind, or behind what the
/// producer knows is ignored, and a full queue still evicts its oldest value. (One in range
/// is believed: a consumer that lies about its progress loses its own values.)
#[test]
fn a_seen_out_of_range_is_ignored() {
    let (_cleanup, segment) = local_queue("seen-bad", 4);
    let (queue, raw) = (attach(&segment, 4), raw(&segment, 4));
    let mut producer = queue.producer().unwrap();
    for value in 0..4 {
        producer.push(value).unwrap();
    }
    for k in 0..5 {
        let tail = 4 + k;
        let bad = [u64::MAX, 1 << 63, tail + 100, tail - 4, 0][k as usize];
        raw.seen().store(bad, Ordering::Release);
        assert_eq!(producer.push(tail), Ok(Some(k)), "with seen {bad}");
    }
    let mut consumer = queue.consumer().unwrap();
    assert_eq!(pop_all(&mut consumer), [5, 6, 7, 8]);
}

/// The consumer trusts nothing it reads: whatever `head` a peer writes, `pop` returns.
#[test]
fn pop_survives_any_shared_head() {
    let (_cleanup, segment) = local_queue("pop-head", 8);
    let (queue, raw) = (attach(&segment, 8), raw(&segment, 8));
    let (mut producer, mut consumer) = (queue.producer().unwrap(), queue.consumer().unwrap());
    for value in 0..5 {
        producer.push(value).unwrap();
    }
    for hostile in [6, 100, 1 << 63, (1 << 63) - 1, u64::MAX - 8, u64::MAX - 1, u64::MAX] {
        raw.head().store(hostile, Ordering::Release);
        // Bounded: a pop that keeps succeeding would be a bug too.
        let popped: Vec<u64> = std::iter::from_fn(|| consumer.pop()).take(64).collect();
        assert!(popped.len() <= 8, "head {hostile}: popped {popped:?}");
        let _ = (consumer.len(), consumer.is_empty(), queue.len());
    }
}

/// A queue of 16-byte slots (`init_in_strided`, stride 2): `attach` finds its stride in the
/// descriptor, an inline entry travels in the value word with the stamp flagged, and the
/// snapshot reads it as `INLINE`; a descriptor claiming a slot size that is no stride is refused.
#[test]
fn a_strided_queue_is_attached_with_its_stride_and_carries_inline_entries() {
    use shmlane_queue::overflow::{INLINE, INLINE_FLAG};
    use shmlane_queue::raw::ELEMENT_SIZE_AT;
    let capacity = 4;
    let layout = SharedOverflow::layout_strided(capacity, 2).unwrap();
    assert!(layout.size < SharedOverflow::layout(capacity).unwrap().size);
    let segment_layout = QueueSegment::new("overflow-shared-test", capacity, layout);
    let (name, _cleanup) = unique_segment("overflow", "strided");
    let segment = segment_layout.create(&name, |segment, region| {
        SharedOverflow::init_in_strided(segment, region, capacity, 2, QUEUE_FINGERPRINT).map(drop)
    });
    let region = segment_layout.queue;
    let queue = SharedOverflow::attach(&segment, region, QUEUE_FINGERPRINT).unwrap();
    assert_eq!((queue.capacity(), queue.stride()), (4, 2));
    let (mut producer, mut consumer) = (queue.producer().unwrap(), queue.consumer().unwrap());
    producer.push_inline(&[0xabc, 0xdef]).unwrap();
    producer.push(5).unwrap();
    let raw = RawQueue::new(
        &segment,
        region,
        capacity,
        SharedOverflow::raw_layout_strided(capacity, 2).unwrap(),
    );
    let words = SharedOverflow::raw_layout_strided(capacity, 2).unwrap();
    assert_eq!((words.slot_size, words.value), (16, 8));
    let word = |at: u64| {
        let mut bytes = [0; 8];
        segment.read_bytes(region.offset + at, &mut bytes).unwrap();
        u64::from_ne_bytes(bytes)
    };
    assert_eq!(raw.stamps()[..2], [1 | INLINE_FLAG, 2], "the inline entry's stamp is flagged");
    assert_eq!(word(words.slots + 8), 0xabc, "its one word, in the value word");
    let snapshot = SharedOverflow::snapshot(&segment, region, QUEUE_FINGERPRINT).unwrap();
    assert_eq!(snapshot.values, [INLINE, 5]);
    let mut line = [0; shmlane_queue::overflow::LINE_WORDS];
    line[0] = 0xabc;
    assert_eq!(consumer.pop_line_when(|_| true, 2), Some((INLINE, line)));
    assert_eq!(consumer.pop(), Some(5));
    // 24 bytes is no slot size: refused.
    raw.write_bytes(ELEMENT_SIZE_AT, &24_u64.to_ne_bytes());
    assert!(matches!(
        SharedOverflow::attach(&segment, region, QUEUE_FINGERPRINT).map(drop),
        Err(QueueError::ElementMismatch { found_size: 24, .. })
    ));
}
