//! The MPMC queue inside a shared-memory segment (`SharedMpmc`), between real processes, and
//! its repair of slots abandoned by processes killed mid-operation.
//!
//! The harness is `shmlane_testkit`, as for `spsc_shared.rs`: each test that needs peers
//! re-executes this test binary as children (`current_exe --exact child_entry --nocapture
//! --test-threads=1` with `SHMLANE_CHILD=role:args`); [`child_entry`] runs the role and exits
//! with a code (0 on success, [`EXIT_ORDER`] on a duplicate or out-of-order value, 101 on a
//! panic).
//! Children report on stdout lines `@@shmlane KEY VALUE` and record what they consumed in a
//! bitmap region of the segment. Every wait has a deadline; children meant to be killed exit
//! on their own when their parent goes away; every segment is removed by a [`Cleanup`] guard.
//!
//! The kill tests aim: they stop a child (SIGSTOP) again and again until its participant
//! entry and the ring show it between its CAS on `tail` (`head`) and its `seq` store, then
//! SIGKILL it there (or, for the "stopped is not dead" tests, leave it stopped and resume it).
//! [`RawQueue`] addresses the queue's words where `SharedMpmc::raw_layout` puts them. Random
//! hostile bytes in the queue's words are `crates/reliability/tests/hostile_queue.rs`'s.
//!
//! Tests whose processes spin on the queue hold [`process_lock`]: on two cores, two such tests
//! at once would mostly measure the scheduler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_queue::mpmc::{Entry, MpmcConsumer, MpmcProducer, MpmcStats, SharedMpmc};
use shmlane_queue::raw::{CAPACITY_AT, EXTRA_AT, MAGIC_AT};
use shmlane_queue::spsc::{PopError, Slot};
use shmlane_queue::{ClaimError, QueueError};
use shmlane_segment::{
    Carver, Fingerprint, Liveness, Offset, Region, RegionLayout, RoleOwner, Segment,
};
use shmlane_testkit::queue::{
    IMPOSSIBLE_INDICES, RawQueue, STREAM_TIMEOUT, bad_region, check_region_refusals,
    descriptor_cases,
};
use shmlane_testkit::{
    CHILD_TIMEOUT, ChildProc, Cleanup, EXIT_FAILED, EXIT_ORDER, EXIT_ORPHANED, ORPHAN_LIMIT, Spin,
    arg_u64, child_spec, dead_owner, exit_child, fail, me, process_lock, report, spawn_child,
    split_spec, unique_segment, wait_for,
};

// ---------------------------------------------------------------------------------------------
// Harness (the child-process machinery is `shmlane_testkit`): names, timeouts, exit codes.
// ---------------------------------------------------------------------------------------------

/// Exit code of a child that popped a duplicate, foreign or out-of-order value.
const EXIT_DUPLICATE: i32 = 5;
/// Tries to stop a child inside its window before giving up.
const AIM: u64 = 2_000;

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    let (name, shape) = (args[0], Shape::parse(&args[1..5]));
    match (role, &args[5..]) {
        ("produce", [id, count]) => child_produce(name, shape, arg_u64(id), arg_u64(count)),
        ("consume", [per, total]) => child_consume(name, shape, arg_u64(per), arg_u64(total)),
        ("push-loop", []) => child_push_loop(name, shape),
        ("pop-loop", []) => child_pop_loop(name, shape),
        _ => panic!("unknown child role {spec:?}"),
    }
    exit_child();
}

// ---------------------------------------------------------------------------------------------
// A segment holding one `SharedMpmc<u64>`, a bitmap of values seen and a few control words.
// ---------------------------------------------------------------------------------------------

/// The queue's element fingerprint.
const QUEUE_FINGERPRINT: Fingerprint = Fingerprint::new("mpmc-shared-test-u64").with_u64(8);
/// Control word: values taken by all consumers together.
const CONSUMED: u64 = 0;

/// What a test's segment holds: the queue's dimensions and the bits of the seen-values map.
#[derive(Clone, Copy, Debug)]
struct Shape {
    capacity: u64,
    producers: u64,
    consumers: u64,
    bits: u64,
}

impl Shape {
    fn args(self, name: &str) -> Vec<String> {
        let Shape { capacity, producers, consumers, bits } = self;
        [name.to_owned()]
            .into_iter()
            .chain([capacity, producers, consumers, bits].map(|n| n.to_string()))
            .collect()
    }

    fn parse(args: &[&str]) -> Shape {
        let n = |i: usize| -> u64 { args[i].parse().expect("a numeric shape argument") };
        Shape { capacity: n(0), producers: n(1), consumers: n(2), bits: n(3) }
    }

    fn regions(self) -> (Region, Region, Region, u64) {
        let mut carver = Carver::new();
        let layout = SharedMpmc::<u64>::layout(self.capacity, self.producers, self.consumers);
        let queue = carver.place(layout.unwrap()).unwrap();
        let words = self.bits.div_ceil(64).max(1);
        let bitmap = carver.place(RegionLayout { size: words * 8, align: 64 }).unwrap();
        let control = carver.place(RegionLayout { size: 64, align: 64 }).unwrap();
        (queue, bitmap, control, carver.total_size())
    }

    fn queue_region(self) -> Region {
        self.regions().0
    }

    fn fingerprint(self) -> Fingerprint {
        Fingerprint::new("mpmc-shared-test")
            .with_u64(self.capacity)
            .with_u64(self.producers)
            .with_u64(self.consumers)
            .with_u64(self.bits)
    }
}

/// A fresh segment with an empty queue of `shape`, and the guard that removes it.
fn create_queue_segment(tag: &str, shape: Shape) -> (String, Cleanup, Segment) {
    let (name, cleanup) = unique_segment("mpmc", tag);
    let (queue, _, _, size) = shape.regions();
    let segment = Segment::builder(&name)
        .size(size)
        .fingerprint(shape.fingerprint())
        .create_with(|segment| {
            SharedMpmc::<u64>::init_in(
                segment,
                queue,
                shape.capacity,
                shape.producers,
                shape.consumers,
                QUEUE_FINGERPRINT,
            )?;
            Ok(())
        })
        .expect("create the queue segment");
    (name, cleanup, segment)
}

/// The segment of a kill or stop test: 4096 slots, two producers and two consumers, `bits`
/// seen bits; and its shape.
fn aimed_segment(tag: &str, bits: u64) -> (Shape, String, Cleanup, Segment) {
    let shape = Shape { capacity: 4096, producers: 2, consumers: 2, bits };
    let (name, cleanup, segment) = create_queue_segment(tag, shape);
    (shape, name, cleanup, segment)
}

/// Opens the parent's segment, in a child.
fn open_queue_segment(name: &str, shape: Shape) -> Segment {
    Segment::builder(name)
        .fingerprint(shape.fingerprint())
        .open()
        .expect("open the parent's queue segment")
}

fn attach(segment: &Segment, shape: Shape) -> SharedMpmc<'_, u64> {
    SharedMpmc::attach(segment, shape.queue_region(), QUEUE_FINGERPRINT).expect("attach")
}

/// The seen-values bitmap of the segment.
fn bitmap(segment: &Segment, shape: Shape) -> &[AtomicU64] {
    let (_, bitmap, _, _) = shape.regions();
    segment.get_slice(Offset::new(bitmap.offset), bitmap.len / 8).unwrap()
}

/// Sets bit `index`; false if it was already set (a duplicate).
fn mark(bitmap: &[AtomicU64], index: u64) -> bool {
    let bit = 1 << (index % 64);
    // AcqRel: the parent reads the map after the children are stopped or gone.
    bitmap[(index / 64) as usize].fetch_or(bit, Ordering::AcqRel) & bit == 0
}

fn is_marked(bitmap: &[AtomicU64], index: u64) -> bool {
    bitmap[(index / 64) as usize].load(Ordering::Acquire) & (1 << (index % 64)) != 0
}

/// A control word of the segment.
fn control(segment: &Segment, shape: Shape, index: u64) -> &AtomicU64 {
    let (_, _, control, _) = shape.regions();
    segment.get(control.offset_of::<AtomicU64>(index * 8).unwrap()).unwrap()
}

/// The queue's words, where `SharedMpmc::raw_layout` puts them.
fn raw(segment: &Segment, shape: Shape) -> RawQueue<'_> {
    let Shape { capacity, producers, consumers, .. } = shape;
    let layout = SharedMpmc::<u64>::raw_layout(capacity, producers, consumers).unwrap();
    RawQueue::new(segment, shape.queue_region(), capacity, layout)
}

/// The entry among `entries` whose role word names `pid`.
fn entry_of(raw: &RawQueue<'_>, pid: u32, entries: std::ops::Range<u64>) -> Option<u64> {
    entries.into_iter().find(|&entry| {
        RoleOwner::from_raw(raw.role(entry).load(Ordering::Acquire))
            .is_some_and(|owner| owner.pid() == Some(pid))
    })
}

/// The position a producer holding `entry` claimed and has not written yet, if it is between
/// its CAS on `tail` and its `seq` store.
fn producer_window(raw: &RawQueue<'_>, entry: u64) -> Option<u64> {
    let announced = raw.announce(entry).load(Ordering::Acquire);
    let position = announced.checked_sub(1)?;
    let claimed = raw.tail().load(Ordering::Acquire) > position;
    (claimed && raw.stamp(position).load(Ordering::Acquire) == position).then_some(position)
}

/// The position a consumer holding `entry` claimed and has not released yet, if it is between
/// its CAS on `head` and its `seq` store.
fn consumer_window(raw: &RawQueue<'_>, entry: u64) -> Option<u64> {
    let announced = raw.announce(entry).load(Ordering::Acquire);
    let position = announced.checked_sub(1)?;
    let claimed = raw.head().load(Ordering::Acquire) > position;
    (claimed && raw.stamp(position).load(Ordering::Acquire) == position + 1).then_some(position)
}

const NO_REPAIR: MpmcStats = MpmcStats { lost: 0, skipped: 0 };

/// Runs `while_stopped` (the child is stopped: refill or drain the queue for it), resumes
/// `child` for a varied moment, stops it, and checks `caught` on what it left in memory; again
/// and again until caught (the child stays stopped) or `attempts` run out (likewise).
fn aim(
    child: &mut ChildProc,
    attempts: u64,
    mut while_stopped: impl FnMut(),
    mut caught: impl FnMut() -> bool,
) -> bool {
    for attempt in 0..attempts {
        while_stopped();
        child.resume();
        let until = Instant::now() + Duration::from_micros(20 + attempt * 37 % 300);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        child.stop();
        if caught() {
            return true;
        }
    }
    false
}

/// Spawns a `push-loop` or `pop-loop` child on the segment `name`; once it claimed, returns it
/// with its entry (among the producers' for `push-loop`, else among the consumers').
fn spawn_looper(role: &str, name: &str, shape: Shape, raw: &RawQueue<'_>) -> (ChildProc, u64) {
    let args = shape.args(name);
    let mut child = spawn_child(role, &args.iter().map(String::as_str).collect::<Vec<_>>());
    child.report("claimed", CHILD_TIMEOUT);
    let entry = if role == "push-loop" {
        entry_of(raw, child.pid(), 0..2).expect("the child's producer entry")
    } else {
        entry_of(raw, child.pid(), 2..4).expect("the child's consumer entry")
    };
    (child, entry)
}

/// Spawns a `push-loop` child and [`aim`]s until it is stopped between its tail CAS and its seq
/// store, popping into `popped` meanwhile; the child, its entry and the position it claimed.
fn catch_producer(
    name: &str,
    shape: Shape,
    raw: &RawQueue<'_>,
    consumer: &mut MpmcConsumer<'_, u64>,
    popped: &mut Vec<u64>,
) -> (ChildProc, u64, u64) {
    let (mut child, entry) = spawn_looper("push-loop", name, shape, raw);
    let mut window = None;
    let caught = aim(
        &mut child,
        AIM,
        || popped.extend(std::iter::from_fn(|| consumer.try_pop().ok())),
        || {
            window = producer_window(raw, entry);
            window.is_some()
        },
    );
    assert!(caught, "the producer was never stopped between its tail CAS and its seq store");
    (child, entry, window.unwrap())
}

/// Spawns a `pop-loop` child and [`aim`]s until it is stopped between its head CAS and its seq
/// store, pushing 0, 1, 2, ... (short of the last 8 laps of the seen bits) meanwhile; the
/// child, the position it claimed and the next value to push.
fn catch_consumer(
    name: &str,
    shape: Shape,
    raw: &RawQueue<'_>,
    producer: &mut MpmcProducer<'_, u64>,
) -> (ChildProc, u64, u64) {
    let (mut child, entry) = spawn_looper("pop-loop", name, shape, raw);
    let room = shape.bits - 8 * shape.capacity;
    let mut next = 0;
    let mut window = None;
    let caught = aim(
        &mut child,
        AIM,
        || {
            while next < room && producer.try_push(next).is_ok() {
                next += 1;
            }
        },
        || {
            window = consumer_window(raw, entry);
            window.is_some()
        },
    );
    assert!(caught, "the consumer was never stopped between its head CAS and its seq store");
    (child, window.unwrap(), next)
}

// ---------------------------------------------------------------------------------------------
// Child roles.
// ---------------------------------------------------------------------------------------------

/// Like [`backoff`], for children meant to run until killed: exits when the parent is gone.
fn idle(spins: &mut u32, parent: u32, started: Instant) {
    *spins += 1;
    if (*spins).is_multiple_of(64) {
        if std::os::unix::process::parent_id() != parent || started.elapsed() > ORPHAN_LIMIT {
            fail(EXIT_ORPHANED, "nobody killed me: the parent is gone or forgot");
        }
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Bits of a value that number it within its producer; the bits above name the producer.
const INDEX_BITS: u32 = 32;

/// Pushes `(id << 32) | i` for `i` in `0..count`, then releases its entry.
fn child_produce(name: &str, shape: Shape, id: u64, count: u64) {
    let segment = open_queue_segment(name, shape);
    let queue = attach(&segment, shape);
    let mut producer = queue.producer().expect("claim a producer entry");
    report("claimed", std::process::id());
    // Yielding every 16 waits: four processes share two cores.
    let mut spin = Spin::until(Instant::now() + STREAM_TIMEOUT).yielding_every(16);
    for i in 0..count {
        let mut value = (id << INDEX_BITS) | i;
        while let Err(back) = producer.try_push(value) {
            if back != value {
                fail(EXIT_FAILED, format!("Full gave back {back}, not {value}"));
            }
            value = back;
            spin.wait("a free slot").unwrap_or_else(|error| fail(EXIT_FAILED, error));
        }
    }
    drop(producer);
    report("pushed", count);
}

/// Pops until all consumers together took `total` values. Each value `(id << 32) | i` must
/// come from a known producer, be new (its bit in the map was clear) and follow the last value
/// of that producer this consumer saw. Reports how many of each producer it took.
fn child_consume(name: &str, shape: Shape, per_producer: u64, total: u64) {
    let segment = open_queue_segment(name, shape);
    let queue = attach(&segment, shape);
    let seen = bitmap(&segment, shape);
    let consumed = control(&segment, shape, CONSUMED);
    let mut consumer = queue.consumer().expect("claim a consumer entry");
    report("claimed", std::process::id());
    let producers = shape.bits / per_producer;
    let mut last: Vec<Option<u64>> = vec![None; producers as usize];
    let mut taken = vec![0u64; producers as usize];
    // Yielding every 16 waits: four processes share two cores.
    let mut spin = Spin::until(Instant::now() + STREAM_TIMEOUT).yielding_every(16);
    while consumed.load(Ordering::Acquire) < total {
        let value = match consumer.try_pop() {
            Ok(value) => value,
            Err(PopError::Empty) => {
                spin.wait("a value").unwrap_or_else(|error| fail(EXIT_FAILED, error));
                continue;
            }
        };
        let (id, i) = (value >> INDEX_BITS, value & ((1 << INDEX_BITS) - 1));
        if id >= producers || i >= per_producer {
            fail(EXIT_DUPLICATE, format!("popped {value:#x}, which nobody pushed"));
        }
        if last[id as usize].is_some_and(|last| last >= i) {
            fail(EXIT_ORDER, format!("producer {id}: popped {i} after {last:?}"));
        }
        last[id as usize] = Some(i);
        if !mark(seen, id * per_producer + i) {
            fail(EXIT_DUPLICATE, format!("producer {id}: {i} was popped twice"));
        }
        taken[id as usize] += 1;
        consumed.fetch_add(1, Ordering::AcqRel);
    }
    drop(consumer);
    report("taken", taken.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
}

/// Claims a producer entry and pushes 0, 1, 2, ... until killed.
fn child_push_loop(name: &str, shape: Shape) {
    let segment = open_queue_segment(name, shape);
    let queue = attach(&segment, shape);
    let mut producer = queue.producer().expect("claim a producer entry");
    report("claimed", std::process::id());
    let (parent, started) = (std::os::unix::process::parent_id(), Instant::now());
    let (mut next, mut spins) = (0, 0);
    loop {
        match producer.try_push(next) {
            Ok(()) => next += 1,
            Err(_) => idle(&mut spins, parent, started),
        }
    }
}

/// Claims a consumer entry and pops until killed, marking each value in the map; a value must
/// be new and larger than the previous one (one producer pushes 0, 1, 2, ...).
fn child_pop_loop(name: &str, shape: Shape) {
    let segment = open_queue_segment(name, shape);
    let queue = attach(&segment, shape);
    let seen = bitmap(&segment, shape);
    let mut consumer = queue.consumer().expect("claim a consumer entry");
    report("claimed", std::process::id());
    let (parent, started) = (std::os::unix::process::parent_id(), Instant::now());
    let (mut last, mut spins) = (None, 0);
    loop {
        match consumer.try_pop() {
            Ok(value) => {
                if value >= shape.bits || last.is_some_and(|last| last >= value) {
                    fail(EXIT_ORDER, format!("popped {value} after {last:?}"));
                }
                if !mark(seen, value) {
                    fail(EXIT_DUPLICATE, format!("{value} was popped twice"));
                }
                last = Some(value);
            }
            Err(PopError::Empty) => idle(&mut spins, parent, started),
        }
    }
}

/// Pops until `polls` calls in a row found the queue empty.
fn drain(consumer: &mut MpmcConsumer<'_, u64>, polls: u32, into: &mut Vec<u64>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut empty = 0;
    while empty < polls {
        assert!(Instant::now() < deadline, "draining the queue did not finish (a hang)");
        match consumer.try_pop() {
            Ok(value) => {
                into.push(value);
                empty = 0;
            }
            Err(PopError::Empty) => empty += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Exactly once across processes.
// ---------------------------------------------------------------------------------------------

#[test]
fn two_producer_and_two_consumer_processes_deliver_every_value_exactly_once_in_producer_order() {
    const PER_PRODUCER: u64 = 200_000;
    const PRODUCERS: u64 = 2;
    let _spin = process_lock();
    let shape = Shape { capacity: 256, producers: 4, consumers: 4, bits: PRODUCERS * PER_PRODUCER };
    let (name, _cleanup, segment) = create_queue_segment("exactly-once", shape);
    let queue = attach(&segment, shape);
    let args = shape.args(&name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (per, total) = (PER_PRODUCER.to_string(), (PRODUCERS * PER_PRODUCER).to_string());
    let started = Instant::now();
    let mut consumers: Vec<ChildProc> =
        (0..2).map(|_| spawn_child("consume", &[&args[..], &[&per, &total]].concat())).collect();
    let mut producers: Vec<ChildProc> = (0..PRODUCERS)
        .map(|id| spawn_child("produce", &[&args[..], &[&id.to_string(), &per]].concat()))
        .collect();
    for producer in &mut producers {
        assert_eq!(producer.report_u64("pushed", STREAM_TIMEOUT), PER_PRODUCER);
        producer.expect_success(CHILD_TIMEOUT);
    }
    let mut taken = vec![0; PRODUCERS as usize];
    for consumer in &mut consumers {
        let report = consumer.report("taken", STREAM_TIMEOUT);
        for (id, count) in report.split(',').enumerate() {
            taken[id] += count.parse::<u64>().unwrap();
        }
        consumer.expect_success(CHILD_TIMEOUT);
    }
    eprintln!("streamed {total} values in {:?}", started.elapsed());
    assert_eq!(taken, vec![PER_PRODUCER; PRODUCERS as usize]);
    let seen = bitmap(&segment, shape);
    let missing = (0..shape.bits).filter(|&i| !is_marked(seen, i)).count();
    assert_eq!(missing, 0, "{missing} values never arrived");
    assert_eq!(queue.stats(), NO_REPAIR);
    assert!(queue.is_empty());
    let raw = raw(&segment, shape);
    assert_eq!(raw.head().load(Ordering::Acquire), PRODUCERS * PER_PRODUCER);
    assert_eq!(raw.tail().load(Ordering::Acquire), PRODUCERS * PER_PRODUCER);
    for entry in 0..8 {
        assert_eq!(raw.role(entry).load(Ordering::Acquire), 0, "entry {entry} still held");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Participant limits.
// ---------------------------------------------------------------------------------------------

#[test]
fn claims_beyond_the_participant_limit_fail_until_an_entry_is_released_or_its_owner_dies() {
    let shape = Shape { capacity: 8, producers: 2, consumers: 2, bits: 1 };
    let (_name, _cleanup, segment) = create_queue_segment("limits", shape);
    let queue = attach(&segment, shape);
    let raw = raw(&segment, shape);

    let first = queue.producer().unwrap();
    let second = queue.producer().unwrap();
    assert!(matches!(queue.producer(), Err(ClaimError::NoFreeEntry { max: 2 })));
    let consumers = (queue.consumer().unwrap(), queue.consumer().unwrap());
    assert!(matches!(queue.consumer(), Err(ClaimError::NoFreeEntry { max: 2 })));

    drop(first);
    let third = queue.producer().expect("a released entry is claimed again");
    assert!(matches!(queue.producer(), Err(ClaimError::NoFreeEntry { max: 2 })));
    drop(consumers.0);
    let _consumer = queue.consumer().expect("a released consumer entry is claimed again");
    assert!(matches!(queue.consumer(), Err(ClaimError::NoFreeEntry { max: 2 })));

    // An entry whose owner died (with an announcement left behind) is reused, announcement
    // cleared.
    drop(second);
    let free = (0..2).find(|&e| raw.role(e).load(Ordering::Acquire) == 0).unwrap();
    raw.role(free).store(dead_owner().to_raw(), Ordering::Release);
    raw.announce(free).store(6, Ordering::Release);
    let _taken_over = queue.producer().expect("the dead owner's entry is reused");
    assert_eq!(raw.role(free).load(Ordering::Acquire), me().to_raw());
    assert_eq!(raw.announce(free).load(Ordering::Acquire), 0);
    assert!(matches!(queue.producer(), Err(ClaimError::NoFreeEntry { max: 2 })));
    drop(third);
}

// ---------------------------------------------------------------------------------------------
// 3. A producer killed between its CAS on `tail` and its `seq` store.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_producer_killed_between_claiming_and_writing_is_skipped_once_and_the_queue_goes_on() {
    let _spin = process_lock();
    let (shape, name, _cleanup, segment) = aimed_segment("kill-producer", 64);
    let queue = attach(&segment, shape).with_patience(16);
    let raw = raw(&segment, shape);
    let mut consumer = queue.consumer().unwrap();
    let mut popped = Vec::new();
    let (mut child, entry, position) =
        catch_producer(&name, shape, &raw, &mut consumer, &mut popped);
    child.kill_while_running();
    let dead = RoleOwner::from_raw(raw.role(entry).load(Ordering::Acquire)).unwrap();
    assert_eq!(dead.liveness(), Liveness::Dead);
    assert_eq!(raw.tail().load(Ordering::Acquire), position + 1);

    // One producer pushing 0, 1, 2, ...: the value at position p is p; p itself was never
    // written.
    drain(&mut consumer, 200, &mut popped);
    assert_eq!(queue.stats(), MpmcStats { lost: 0, skipped: 1 });
    assert_eq!(popped, (0..position).collect::<Vec<_>>(), "killed at position {position}");
    assert_eq!(raw.head().load(Ordering::Acquire), position + 1);

    // A new producer's values are delivered.
    let mut producer = queue.producer().unwrap();
    let fresh: Vec<u64> = (1_000_000..1_000_000 + 3 * shape.capacity).collect();
    let mut got = Vec::new();
    for &value in &fresh {
        producer.try_push(value).unwrap();
        got.extend(consumer.try_pop().ok());
    }
    drain(&mut consumer, 50, &mut got);
    assert_eq!(got, fresh);
    assert_eq!(queue.stats(), MpmcStats { lost: 0, skipped: 1 });
}

// ---------------------------------------------------------------------------------------------
// 4. A consumer killed between its CAS on `head` and its `seq` store.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_consumer_killed_between_claiming_and_releasing_loses_one_value_and_producers_wrap_on() {
    let _spin = process_lock();
    let (shape, name, _cleanup, segment) = aimed_segment("kill-consumer", 1 << 24);
    let queue = attach(&segment, shape).with_patience(16);
    let raw = raw(&segment, shape);
    let seen = bitmap(&segment, shape);
    let mut producer = queue.producer().unwrap();
    let (mut child, lost, mut next) = catch_consumer(&name, shape, &raw, &mut producer);
    child.kill_while_running();

    // Push on until the ring has wrapped over the abandoned slot a few times, consuming here.
    let mut consumer = queue.consumer().unwrap();
    let mut mine = Vec::new();
    let end = next + 4 * shape.capacity;
    let deadline = Instant::now() + Duration::from_secs(20);
    while next < end {
        assert!(Instant::now() < deadline, "producers wedged at the dead consumer's slot");
        match producer.try_push(next) {
            Ok(()) => next += 1,
            Err(_) => mine.extend(consumer.try_pop().ok()),
        }
    }
    drain(&mut consumer, 50, &mut mine);
    assert_eq!(queue.stats(), MpmcStats { lost: 1, skipped: 0 });
    assert!(mine.is_sorted(), "one producer, one consumer: in order");
    for &value in &mine {
        assert!(value < end && mark(seen, value), "{value} delivered twice");
    }
    let missing: Vec<u64> = (0..end).filter(|&v| !is_marked(seen, v)).collect();
    assert_eq!(missing, [lost], "only the dead consumer's value may be missing");
}

// ---------------------------------------------------------------------------------------------
// 5. A live participant, even stopped, is never repaired.
// ---------------------------------------------------------------------------------------------

/// How long the survivors poll a stopped participant's slot.
const STOPPED_FOR: Duration = Duration::from_secs(1);

/// Calls `poll` again and again for [`STOPPED_FOR`]; it must have run more than 100 times.
fn poll_while_stopped(mut poll: impl FnMut()) {
    let until = Instant::now() + STOPPED_FOR;
    let mut polls = 0u64;
    while Instant::now() < until {
        poll();
        polls += 1;
    }
    assert!(polls > 100, "only {polls} polls");
}

#[test]
fn a_stopped_producer_inside_its_window_is_waited_for_not_skipped() {
    let _spin = process_lock();
    let (shape, name, _cleanup, segment) = aimed_segment("stopped-producer", 64);
    let queue = attach(&segment, shape).with_patience(1);
    let raw = raw(&segment, shape);
    let mut consumer = queue.consumer().unwrap();
    let mut popped = Vec::new();
    let (mut child, _, position) = catch_producer(&name, shape, &raw, &mut consumer, &mut popped);

    drain(&mut consumer, 50, &mut popped);
    assert_eq!(popped, (0..position).collect::<Vec<_>>());
    poll_while_stopped(|| {
        assert_eq!(consumer.try_pop(), Err(PopError::Empty), "a stopped producer's slot");
    });
    assert_eq!(queue.stats(), NO_REPAIR, "a live (stopped) producer's slot was repaired");
    assert_eq!(raw.stamp(position).load(Ordering::Acquire), position, "the slot was touched");
    assert_eq!(raw.head().load(Ordering::Acquire), position);

    child.resume();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let value = loop {
        assert!(Instant::now() < deadline, "the resumed producer's value never came");
        if let Ok(value) = consumer.try_pop() {
            break value;
        }
    };
    assert_eq!(value, position, "the resumed producer's value is delivered in its place");
    child.kill_while_running();
    assert_eq!(queue.stats().skipped, 0);
}

#[test]
fn a_stopped_consumer_inside_its_window_is_waited_for_not_freed() {
    let _spin = process_lock();
    let (shape, name, _cleanup, segment) = aimed_segment("stopped-consumer", 1 << 24);
    let queue = attach(&segment, shape).with_patience(1);
    let raw = raw(&segment, shape);
    let seen = bitmap(&segment, shape);
    let mut producer = queue.producer().unwrap();
    let (mut child, held, mut next) = catch_consumer(&name, shape, &raw, &mut producer);

    // Fill up to the held slot's next lap: exactly there pushes must wait.
    while producer.try_push(next).is_ok() {
        next += 1;
    }
    assert_eq!(next, held + shape.capacity, "the ring is full up to the held slot");
    poll_while_stopped(|| {
        assert_eq!(producer.try_push(next), Err(next), "a stopped consumer's slot");
    });
    assert_eq!(queue.stats(), NO_REPAIR, "a live (stopped) consumer's slot was freed");
    assert_eq!(raw.stamp(held).load(Ordering::Acquire), held + 1, "the slot was touched");

    child.resume();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while producer.try_push(next).is_err() {
        assert!(Instant::now() < deadline, "the resumed consumer never released its slot");
    }
    wait_for("the child to take the value it held", CHILD_TIMEOUT, || is_marked(seen, held));
    child.kill_while_running();
    assert_eq!(queue.stats().lost, 0);
}

// ---------------------------------------------------------------------------------------------
// 6. Corrupt memory gives errors, never a panic, a hang or an out-of-bounds access.
// ---------------------------------------------------------------------------------------------

#[test]
fn attach_reports_each_corrupt_descriptor_field_with_its_own_error() {
    let shape = Shape { capacity: 8, producers: 2, consumers: 2, bits: 1 };
    let (_name, _cleanup, segment) = create_queue_segment("descriptor", shape);
    let region = shape.queue_region();
    let raw = raw(&segment, shape);
    let original = raw.descriptor();
    let attach_at = |region| SharedMpmc::<u64>::attach(&segment, region, QUEUE_FINGERPRINT);
    let bad_region = |capacity, producers, consumers| {
        bad_region(SharedMpmc::<u64>::layout(capacity, producers, consumers).unwrap(), region)
    };
    let mut cases =
        descriptor_cases(QUEUE_FINGERPRINT, (8, 8), |capacity| bad_region(capacity, 2, 2));
    let word = |n: u64| n.to_ne_bytes().to_vec();
    cases.extend([
        ("magic", MAGIC_AT, b"NOTAMPMC".to_vec(), QueueError::BadMagic),
        ("magic of an SPSC", MAGIC_AT, b"SHMLSPSC".to_vec(), QueueError::BadMagic),
        ("capacity 1", CAPACITY_AT, word(1), QueueError::BadCapacity(1)),
        ("0 producers", EXTRA_AT, word(0), QueueError::Corrupt),
        ("0 consumers", EXTRA_AT + 8, word(0), QueueError::Corrupt),
        ("1025 producers", EXTRA_AT, word(1025), QueueError::Corrupt),
        ("1025 consumers", EXTRA_AT + 8, word(1025), QueueError::Corrupt),
        ("u64::MAX producers", EXTRA_AT, word(u64::MAX), QueueError::Corrupt),
        ("3 producers > region", EXTRA_AT, word(3), bad_region(8, 3, 2)),
        ("1024 consumers > region", EXTRA_AT + 8, word(1024), bad_region(8, 2, 1024)),
    ]);
    raw.check_descriptor_cases(|| attach_at(region).map(drop), cases);
    // Fewer participants than the region has room for attach (a smaller queue fits).
    raw.write_bytes(EXTRA_AT, &word(1));
    assert_eq!(attach_at(region).map(drop), Ok(()));
    raw.write_bytes(0, &original);

    // Regions that cannot hold the queue, with an intact descriptor.
    check_region_refusals(&segment, region, |region| attach_at(region).map(drop));
}

#[test]
fn claims_refuse_shared_indices_that_no_queue_can_have() {
    let shape = Shape { capacity: 8, producers: 2, consumers: 2, bits: 1 };
    let (_name, _cleanup, segment) = create_queue_segment("bad-indices", shape);
    let queue = attach(&segment, shape);
    let raw = raw(&segment, shape);
    for (head, tail) in IMPOSSIBLE_INDICES {
        raw.set_indices(head, tail);
        for (kind, claimed) in
            [("producer", queue.producer().map(drop)), ("consumer", queue.consumer().map(drop))]
        {
            match claimed {
                Err(ClaimError::Corrupt { head: h, tail: t }) => assert_eq!((h, t), (head, tail)),
                other => panic!("{kind} claim with head {head}, tail {tail} gave {other:?}"),
            }
        }
        for entry in 0..4 {
            assert_eq!(raw.role(entry).load(Ordering::Acquire), 0, "a refused claim held {entry}");
        }
    }
    // Sane indices again (a dead producer may leave head one short of tail): claims succeed.
    raw.set_indices(5, 13);
    drop((queue.producer().unwrap(), queue.consumer().unwrap()));
}

// ---------------------------------------------------------------------------------------------
// 7. Layout.
// ---------------------------------------------------------------------------------------------

#[test]
fn layout_refuses_capacities_below_two_or_not_a_power_of_two_and_bad_participant_counts() {
    let layout = SharedMpmc::<u64>::layout;
    assert_eq!(layout(1, 1, 1), Err(QueueError::BadCapacity(1)));
    assert_eq!(layout(0, 1, 1), Err(QueueError::BadCapacity(0)));
    assert_eq!(layout(12, 1, 1), Err(QueueError::BadCapacity(12)));
    assert_eq!(layout(1 << 33, 1, 1), Err(QueueError::BadCapacity(1 << 33)));
    assert_eq!(layout(2, 0, 1), Err(QueueError::Corrupt));
    assert_eq!(layout(2, 1, 1025), Err(QueueError::Corrupt));
    // Two entries after `tail`'s cache line, then two slots (see `mpmc/shared.rs`).
    let two = layout(2, 1, 1).unwrap();
    let words = SharedMpmc::<u64>::raw_layout(2, 1, 1).unwrap();
    let padded = size_of::<CachePadded<AtomicU64>>() as u64;
    let (entry, slot) = (size_of::<Entry>() as u64, size_of::<Slot<u64>>() as u64);
    assert_eq!(two.size, words.tail + padded + 2 * entry + 2 * slot);
    assert_eq!(two.align, 128);
    assert!(layout(1 << 32, 1024, 1024).is_ok());
}
