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
//! [`Raw`] addresses the queue's words as `crates/queue/src/mpmc/shared.rs` lays them out,
//! checked against `SharedMpmc::layout`.

use std::path::PathBuf;

use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_queue::mpmc::{MpmcConsumer, MpmcProducer, MpmcStats, SharedMpmc};
use shmlane_queue::spsc::PopError;
use shmlane_queue::{ClaimError, QueueError};
use shmlane_segment::{
    Carver, Fingerprint, Liveness, Offset, Region, RegionLayout, RoleOwner, Segment, SegmentName,
};
use shmlane_testkit::{
    ChildProc, Cleanup, EXIT_ORPHANED, ORPHAN_LIMIT, child_spec, exit_child, fail, process_lock,
    report, shm_file, spawn_child, split_spec, wait_for,
};

// ---------------------------------------------------------------------------------------------
// Harness (the child-process machinery is `shmlane_testkit`): names, timeouts, exit codes.
// ---------------------------------------------------------------------------------------------

/// Exit code of a child that popped a value out of order (a gap or a duplicate).
const EXIT_ORDER: i32 = 2;
/// Exit code of a child whose queue operation failed or timed out.
const EXIT_FAILED: i32 = 3;
/// Deadline for a child's report or exit.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for a whole stream of values (debug builds on two loaded cores).
const STREAM_TIMEOUT: Duration = Duration::from_secs(90);

/// A fresh segment name: unique per process and call.
fn unique_name(tag: &str) -> String {
    shmlane_testkit::unique_name("mpmc", tag)
}

/// Where POSIX shm puts the segment `name`.
fn shm_path(name: &str) -> PathBuf {
    shm_file(SegmentName::new(name).unwrap().file_name())
}

/// Serialises the tests whose processes spin on the queue: on two cores, two such tests at
/// once would mostly measure the scheduler.
fn spin_lock() -> MutexGuard<'static, ()> {
    process_lock()
}

/// Exit code of a child that popped a duplicate, foreign or out-of-order value.
const EXIT_DUPLICATE: i32 = 5;
/// Tries to stop a child inside its window before giving up.
const AIM: u64 = 2_000;

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    let number = |arg: &str| -> u64 { arg.parse().expect("a numeric child argument") };
    let (name, shape) = (args[0], Shape::parse(&args[1..5]));
    match (role, &args[5..]) {
        ("produce", [id, count]) => child_produce(name, shape, number(id), number(count)),
        ("consume", [per, total]) => child_consume(name, shape, number(per), number(total)),
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
    let name = unique_name(tag);
    let cleanup = Cleanup(shm_path(&name));
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

// The queue region as `crates/queue/src/mpmc/shared.rs` lays it out.
const PADDED: u64 = size_of::<CachePadded<AtomicU64>>() as u64;
const LOST_AT: u64 = 64;
const SKIPPED_AT: u64 = 72;
const HEAD_AT: u64 = 128;
const TAIL_AT: u64 = HEAD_AT + PADDED;
const ENTRIES_AT: u64 = TAIL_AT + PADDED;
/// `Slot<u64>`: `#[repr(C)] { seq: AtomicU64, value: u64 }`.
const SLOT_SIZE: u64 = 16;
// Descriptor fields.
const MAGIC_AT: u64 = 0;
const VERSION_AT: u64 = 8;
const RESERVED0_AT: u64 = 12;
const CAPACITY_AT: u64 = 16;
const ELEMENT_SIZE_AT: u64 = 24;
const ELEMENT_ALIGN_AT: u64 = 32;
const FINGERPRINT_AT: u64 = 40;
const MAX_PRODUCERS_AT: u64 = 48;
const MAX_CONSUMERS_AT: u64 = 56;
const DESCRIPTOR_LEN: usize = 64;

/// Direct access to a queue's words, to watch a child or play a crashed or corrupting peer.
struct Raw<'s> {
    segment: &'s Segment,
    base: u64,
    capacity: u64,
    entries: u64,
    slots_at: u64,
}

impl<'s> Raw<'s> {
    fn new(segment: &'s Segment, shape: Shape) -> Self {
        let region = shape.queue_region();
        let entries = shape.producers + shape.consumers;
        let slots_at = (ENTRIES_AT + entries * PADDED).next_multiple_of(8);
        assert_eq!(size_of::<CachePadded<[AtomicU64; 2]>>() as u64, PADDED);
        assert_eq!(
            region.len,
            slots_at + SLOT_SIZE * shape.capacity,
            "this test's mirror of the queue layout is out of date with shared.rs"
        );
        Raw { segment, base: region.offset, capacity: shape.capacity, entries, slots_at }
    }

    fn word(&self, at: u64) -> &'s AtomicU64 {
        self.segment.get(Offset::new(self.base + at)).unwrap()
    }

    fn head(&self) -> &'s AtomicU64 {
        self.word(HEAD_AT)
    }

    fn tail(&self) -> &'s AtomicU64 {
        self.word(TAIL_AT)
    }

    fn lost(&self) -> &'s AtomicU64 {
        self.word(LOST_AT)
    }

    fn skipped(&self) -> &'s AtomicU64 {
        self.word(SKIPPED_AT)
    }

    /// Entry `entry`'s role word (producers first, then consumers).
    fn role(&self, entry: u64) -> &'s AtomicU64 {
        assert!(entry < self.entries);
        self.word(ENTRIES_AT + entry * PADDED)
    }

    /// Entry `entry`'s announced position + 1.
    fn announce(&self, entry: u64) -> &'s AtomicU64 {
        assert!(entry < self.entries);
        self.word(ENTRIES_AT + entry * PADDED + 8)
    }

    /// The sequence word of the slot of `position`.
    fn seq(&self, position: u64) -> &'s AtomicU64 {
        self.word(self.slots_at + (position & (self.capacity - 1)) * SLOT_SIZE)
    }

    fn write_value(&self, position: u64, value: u64) {
        let at = self.base + self.slots_at + (position & (self.capacity - 1)) * SLOT_SIZE + 8;
        self.segment.write_bytes(at, &value.to_ne_bytes()).unwrap();
    }

    /// The entry among `entries` whose role word names `pid`.
    fn entry_of(&self, pid: u32, entries: std::ops::Range<u64>) -> Option<u64> {
        entries.into_iter().find(|&entry| {
            RoleOwner::from_raw(self.role(entry).load(Ordering::Acquire))
                .is_some_and(|owner| owner.pid() == Some(pid))
        })
    }

    /// The position a producer holding `entry` claimed and has not written yet, if it is
    /// between its CAS on `tail` and its `seq` store.
    fn producer_window(&self, entry: u64) -> Option<u64> {
        let announced = self.announce(entry).load(Ordering::Acquire);
        let position = announced.checked_sub(1)?;
        let claimed = self.tail().load(Ordering::Acquire) > position;
        (claimed && self.seq(position).load(Ordering::Acquire) == position).then_some(position)
    }

    /// The position a consumer holding `entry` claimed and has not released yet, if it is
    /// between its CAS on `head` and its `seq` store.
    fn consumer_window(&self, entry: u64) -> Option<u64> {
        let announced = self.announce(entry).load(Ordering::Acquire);
        let position = announced.checked_sub(1)?;
        let claimed = self.head().load(Ordering::Acquire) > position;
        (claimed && self.seq(position).load(Ordering::Acquire) == position + 1).then_some(position)
    }

    fn descriptor(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut bytes = [0; DESCRIPTOR_LEN];
        self.segment.read_bytes(self.base, &mut bytes).unwrap();
        bytes
    }

    fn write_descriptor(&self, at: u64, bytes: &[u8]) {
        self.segment.write_bytes(self.base + at, bytes).unwrap();
    }
}

/// The owner word of a process proven dead: a presence token without a presence file (what a
/// dead owner's token becomes once its file is removed after the proof).
fn dead_owner() -> RoleOwner {
    let owner = RoleOwner::from_raw(0xdead_0000_0000_0000 | u64::from(std::process::id()))
        .expect("a non-zero word");
    assert_eq!(owner.liveness(), Liveness::Dead);
    owner
}

fn me() -> RoleOwner {
    RoleOwner::current().unwrap()
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

// ---------------------------------------------------------------------------------------------
// Child roles.
// ---------------------------------------------------------------------------------------------

/// Spins (yielding now and then: four processes share two cores) until `deadline`.
fn backoff(spins: &mut u32, deadline: Instant, what: &str) {
    *spins += 1;
    if (*spins).is_multiple_of(16) {
        if Instant::now() >= deadline {
            fail(EXIT_FAILED, format!("timed out waiting for {what}"));
        }
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

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
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let mut spins = 0;
    for i in 0..count {
        let mut value = (id << INDEX_BITS) | i;
        while let Err(back) = producer.try_push(value) {
            if back != value {
                fail(EXIT_FAILED, format!("Full gave back {back}, not {value}"));
            }
            value = back;
            backoff(&mut spins, deadline, "a free slot");
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
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let mut spins = 0;
    while consumed.load(Ordering::Acquire) < total {
        let value = match consumer.try_pop() {
            Ok(value) => value,
            Err(PopError::Empty) => {
                backoff(&mut spins, deadline, "a value");
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
    let _spin = spin_lock();
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
    let raw = Raw::new(&segment, shape);
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
    let raw = Raw::new(&segment, shape);

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
    let _spin = spin_lock();
    let shape = Shape { capacity: 4096, producers: 2, consumers: 2, bits: 64 };
    let (name, _cleanup, segment) = create_queue_segment("kill-producer", shape);
    let queue = attach(&segment, shape).with_patience(16);
    let raw = Raw::new(&segment, shape);
    let mut consumer = queue.consumer().unwrap();
    let args = shape.args(&name);
    let mut child = spawn_child("push-loop", &args.iter().map(String::as_str).collect::<Vec<_>>());
    child.report("claimed", CHILD_TIMEOUT);
    let entry = raw.entry_of(child.pid(), 0..2).expect("the child's producer entry");

    let mut popped = Vec::new();
    let mut window = None;
    let caught = aim(
        &mut child,
        AIM,
        || popped.extend(std::iter::from_fn(|| consumer.try_pop().ok())),
        || {
            window = raw.producer_window(entry);
            window.is_some()
        },
    );
    assert!(caught, "the producer was never stopped between its tail CAS and its seq store");
    let position = window.unwrap();
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
    let _spin = spin_lock();
    let shape = Shape { capacity: 4096, producers: 2, consumers: 2, bits: 1 << 24 };
    let (name, _cleanup, segment) = create_queue_segment("kill-consumer", shape);
    let queue = attach(&segment, shape).with_patience(16);
    let raw = Raw::new(&segment, shape);
    let seen = bitmap(&segment, shape);
    let mut producer = queue.producer().unwrap();
    let args = shape.args(&name);
    let mut child = spawn_child("pop-loop", &args.iter().map(String::as_str).collect::<Vec<_>>());
    child.report("claimed", CHILD_TIMEOUT);
    let entry = raw.entry_of(child.pid(), 2..4).expect("the child's consumer entry");

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
            window = raw.consumer_window(entry);
            window.is_some()
        },
    );
    assert!(caught, "the consumer was never stopped between its head CAS and its seq store");
    let lost = window.unwrap();
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

#[test]
fn a_stopped_producer_inside_its_window_is_waited_for_not_skipped() {
    let _spin = spin_lock();
    let shape = Shape { capacity: 4096, producers: 2, consumers: 2, bits: 64 };
    let (name, _cleanup, segment) = create_queue_segment("stopped-producer", shape);
    let queue = attach(&segment, shape).with_patience(1);
    let raw = Raw::new(&segment, shape);
    let mut consumer = queue.consumer().unwrap();
    let args = shape.args(&name);
    let mut child = spawn_child("push-loop", &args.iter().map(String::as_str).collect::<Vec<_>>());
    child.report("claimed", CHILD_TIMEOUT);
    let entry = raw.entry_of(child.pid(), 0..2).expect("the child's producer entry");
    let mut popped = Vec::new();
    let mut window = None;
    let caught = aim(
        &mut child,
        AIM,
        || popped.extend(std::iter::from_fn(|| consumer.try_pop().ok())),
        || {
            window = raw.producer_window(entry);
            window.is_some()
        },
    );
    assert!(caught, "the producer was never stopped between its tail CAS and its seq store");
    let position = window.unwrap();

    drain(&mut consumer, 50, &mut popped);
    assert_eq!(popped, (0..position).collect::<Vec<_>>());
    let until = Instant::now() + STOPPED_FOR;
    let mut polls = 0u64;
    while Instant::now() < until {
        assert_eq!(consumer.try_pop(), Err(PopError::Empty), "a stopped producer's slot");
        polls += 1;
    }
    assert!(polls > 100, "only {polls} polls");
    assert_eq!(queue.stats(), NO_REPAIR, "a live (stopped) producer's slot was repaired");
    assert_eq!(raw.seq(position).load(Ordering::Acquire), position, "the slot was touched");
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
    let _spin = spin_lock();
    let shape = Shape { capacity: 4096, producers: 2, consumers: 2, bits: 1 << 24 };
    let (name, _cleanup, segment) = create_queue_segment("stopped-consumer", shape);
    let queue = attach(&segment, shape).with_patience(1);
    let raw = Raw::new(&segment, shape);
    let seen = bitmap(&segment, shape);
    let mut producer = queue.producer().unwrap();
    let args = shape.args(&name);
    let mut child = spawn_child("pop-loop", &args.iter().map(String::as_str).collect::<Vec<_>>());
    child.report("claimed", CHILD_TIMEOUT);
    let entry = raw.entry_of(child.pid(), 2..4).expect("the child's consumer entry");
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
            window = raw.consumer_window(entry);
            window.is_some()
        },
    );
    assert!(caught, "the consumer was never stopped between its head CAS and its seq store");
    let held = window.unwrap();

    // Fill up to the held slot's next lap: exactly there pushes must wait.
    while producer.try_push(next).is_ok() {
        next += 1;
    }
    assert_eq!(next, held + shape.capacity, "the ring is full up to the held slot");
    let until = Instant::now() + STOPPED_FOR;
    let mut polls = 0u64;
    while Instant::now() < until {
        assert_eq!(producer.try_push(next), Err(next), "a stopped consumer's slot");
        polls += 1;
    }
    assert!(polls > 100, "only {polls} polls");
    assert_eq!(queue.stats(), NO_REPAIR, "a live (stopped) consumer's slot was freed");
    assert_eq!(raw.seq(held).load(Ordering::Acquire), held + 1, "the slot was touched");

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
    let raw = Raw::new(&segment, shape);
    let original = raw.descriptor();
    let try_attach = || SharedMpmc::<u64>::attach(&segment, region, QUEUE_FINGERPRINT).map(drop);
    let bad_region = |capacity, producers, consumers| {
        let layout = SharedMpmc::<u64>::layout(capacity, producers, consumers).unwrap();
        QueueError::BadRegion {
            needed: layout.size,
            align: layout.align,
            offset: region.offset,
            len: region.len,
        }
    };
    let word = |n: u64| n.to_ne_bytes().to_vec();
    let cases: Vec<(&str, u64, Vec<u8>, QueueError)> = vec![
        ("magic", MAGIC_AT, b"NOTAMPMC".to_vec(), QueueError::BadMagic),
        ("magic of an SPSC", MAGIC_AT, b"SHMLSPSC".to_vec(), QueueError::BadMagic),
        (
            "version 1 (the format before 2)",
            VERSION_AT,
            1u32.to_ne_bytes().to_vec(),
            QueueError::UnsupportedVersion(1),
        ),
        ("reserved0", RESERVED0_AT, 1u32.to_ne_bytes().to_vec(), QueueError::Corrupt),
        ("capacity 0", CAPACITY_AT, word(0), QueueError::BadCapacity(0)),
        ("capacity 1", CAPACITY_AT, word(1), QueueError::BadCapacity(1)),
        ("capacity 6", CAPACITY_AT, word(6), QueueError::BadCapacity(6)),
        ("capacity 2^33", CAPACITY_AT, word(1 << 33), QueueError::BadCapacity(1 << 33)),
        ("capacity u64::MAX", CAPACITY_AT, word(u64::MAX), QueueError::BadCapacity(u64::MAX)),
        ("capacity 16 > region", CAPACITY_AT, word(16), bad_region(16, 2, 2)),
        ("capacity 2^32", CAPACITY_AT, word(1 << 32), bad_region(1 << 32, 2, 2)),
        (
            "element size",
            ELEMENT_SIZE_AT,
            word(4),
            QueueError::ElementMismatch { size: 8, align: 8, found_size: 4, found_align: 8 },
        ),
        (
            "element align",
            ELEMENT_ALIGN_AT,
            word(16),
            QueueError::ElementMismatch { size: 8, align: 8, found_size: 8, found_align: 16 },
        ),
        (
            "fingerprint",
            FINGERPRINT_AT,
            word(7),
            QueueError::FingerprintMismatch { expected: QUEUE_FINGERPRINT.get(), found: 7 },
        ),
        ("0 producers", MAX_PRODUCERS_AT, word(0), QueueError::Corrupt),
        ("0 consumers", MAX_CONSUMERS_AT, word(0), QueueError::Corrupt),
        ("1025 producers", MAX_PRODUCERS_AT, word(1025), QueueError::Corrupt),
        ("1025 consumers", MAX_CONSUMERS_AT, word(1025), QueueError::Corrupt),
        ("u64::MAX producers", MAX_PRODUCERS_AT, word(u64::MAX), QueueError::Corrupt),
        ("3 producers > region", MAX_PRODUCERS_AT, word(3), bad_region(8, 3, 2)),
        ("1024 consumers > region", MAX_CONSUMERS_AT, word(1024), bad_region(8, 2, 1024)),
    ];
    for (field, at, bytes, expected) in cases {
        raw.write_descriptor(at, &bytes);
        assert_eq!(try_attach(), Err(expected), "corrupt {field}");
        raw.write_descriptor(0, &original);
        assert_eq!(try_attach(), Ok(()), "restored after {field}");
    }
    // Fewer participants than the region has room for attach (a smaller queue fits).
    raw.write_descriptor(MAX_PRODUCERS_AT, &word(1));
    assert_eq!(try_attach(), Ok(()));
    raw.write_descriptor(0, &original);
}

#[test]
fn claims_refuse_shared_indices_that_no_queue_can_have() {
    let shape = Shape { capacity: 8, producers: 2, consumers: 2, bits: 1 };
    let (_name, _cleanup, segment) = create_queue_segment("bad-indices", shape);
    let queue = attach(&segment, shape);
    let raw = Raw::new(&segment, shape);
    let cases = [
        (0, 9),                       // more in the queue than it holds
        (100, 100 + 9),               // the same, further on
        (20, 11),                     // head further past tail than the capacity
        (u64::MAX - 3, 2),            // tail far behind head
        (u64::MAX - 3, u64::MAX - 1), // positions no queue reaches
        (1 << 63, (1 << 63) + 2),     // likewise, just at the limit
        (u64::MAX, u64::MAX),         // likewise, empty
    ];
    for (head, tail) in cases {
        raw.head().store(head, Ordering::Release);
        raw.tail().store(tail, Ordering::Release);
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
    raw.head().store(5, Ordering::Release);
    raw.tail().store(13, Ordering::Release);
    drop((queue.producer().unwrap(), queue.consumer().unwrap()));
}

/// A small, seeded, dependency-free generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A value a corrupting peer might write: anything, small, near `around`, or near the ends
    /// of the counter range (and of the positions' range, 2^63).
    fn hostile(&mut self, around: u64) -> u64 {
        let near = self.below(40) as i64 - 20;
        match self.below(7) {
            0 => self.next(),
            1 => self.below(32),
            2 => around.wrapping_add_signed(near),
            3 => u64::MAX - self.below(16),
            4 => (1u64 << 63).wrapping_add_signed(near),
            5 => around.wrapping_add_signed(near) | (1 << 63),
            _ => around.wrapping_add_signed(near * 1000),
        }
    }
}

/// Outcomes seen by the corruption fuzzer, to check it reached the interesting paths.
#[derive(Debug, Default)]
struct FuzzCounts {
    pushed: u64,
    popped: u64,
    claimed: u64,
    claim_corrupt: u64,
    claim_full: u64,
}

fn fuzz_corruption(segment: &Segment, shape: Shape, seed: u64, steps: u64) -> FuzzCounts {
    let cap = shape.capacity;
    let raw = Raw::new(segment, shape);
    let dead = dead_owner().to_raw();
    let mut rng = Rng(seed);
    let mut counts = FuzzCounts::default();
    let mut queue = attach(segment, shape);
    let mut producers: Vec<Option<MpmcProducer<'_, u64>>> = vec![None, None];
    let mut consumers: Vec<Option<MpmcConsumer<'_, u64>>> = vec![None, None];
    for step in 0..steps {
        let around = raw.tail().load(Ordering::Relaxed);
        let which = rng.below(2) as usize;
        match rng.below(24) {
            0..=5 => {
                if let Some(producer) = &mut producers[which] {
                    counts.pushed += u64::from(producer.try_push(rng.next()).is_ok());
                }
            }
            6..=11 => {
                if let Some(consumer) = &mut consumers[which] {
                    counts.popped += u64::from(consumer.try_pop().is_ok());
                }
            }
            12..=13 => raw.seq(rng.below(cap)).store(rng.hostile(around), Ordering::Release),
            14 => raw.head().store(rng.hostile(around), Ordering::Release),
            15 => raw.tail().store(rng.hostile(around), Ordering::Release),
            16 => {
                let at = rng.hostile(around);
                raw.head().store(at, Ordering::Release);
                raw.tail().store(at.wrapping_add(rng.below(cap + 2)), Ordering::Release);
            }
            17 => {
                let entry = rng.below(4);
                raw.announce(entry).store(rng.hostile(around), Ordering::Release);
            }
            18 => {
                let owner = [0, me().to_raw(), dead, rng.next()][rng.below(4) as usize];
                raw.role(rng.below(4)).store(owner, Ordering::Release);
            }
            19..=20 => {
                // Claim an end afresh, with a random patience.
                let patient = queue.with_patience(1 + rng.below(8) as u32);
                let claimed = if rng.below(2) == 0 {
                    drop(producers[which].take());
                    patient.producer().map(|p| producers[which] = Some(p))
                } else {
                    drop(consumers[which].take());
                    patient.consumer().map(|c| consumers[which] = Some(c))
                };
                match claimed {
                    Ok(()) => counts.claimed += 1,
                    Err(ClaimError::Corrupt { .. }) => counts.claim_corrupt += 1,
                    Err(ClaimError::NoFreeEntry { .. }) => counts.claim_full += 1,
                    Err(other) => panic!("unexpected claim error {other:?}"),
                }
            }
            21 => [raw.lost(), raw.skipped()][which].store(rng.next(), Ordering::Release),
            _ => raw.write_value(rng.below(cap), rng.next()),
        }
        assert!(queue.len() <= cap as usize);
        let _ = (queue.stats(), queue.is_empty());

        // Now and then, start over on a fresh queue and check it is a plain FIFO again.
        if step % 100 == 99 {
            producers.iter_mut().for_each(|p| drop(p.take()));
            consumers.iter_mut().for_each(|c| drop(c.take()));
            queue =
                SharedMpmc::init_in(segment, shape.queue_region(), cap, 2, 2, QUEUE_FINGERPRINT)
                    .unwrap();
            let (mut p, mut c) = (queue.producer().unwrap(), queue.consumer().unwrap());
            for value in 0..3 * cap {
                p.try_push(value).unwrap();
                assert_eq!(c.try_pop(), Ok(value), "step {step}: the fresh queue is not a FIFO");
            }
            assert_eq!(queue.stats(), NO_REPAIR);
            (producers[0], consumers[0]) = (Some(p), Some(c));
            let patient = queue.with_patience(1 + rng.below(4) as u32);
            (producers[1], consumers[1]) = (patient.producer().ok(), patient.consumer().ok());
        }
    }
    counts
}

#[test]
fn random_corruption_of_seqs_indices_and_entries_never_panics_or_hangs() {
    const SEEDS: [u64; 3] = [0x5eed_5eed, 0xba11_cafe, 0x0dd_f00d];
    const STEPS: u64 = 4_000;
    let shape = Shape { capacity: 8, producers: 2, consumers: 2, bits: 1 };
    for seed in SEEDS {
        let (_name, cleanup, segment) = create_queue_segment("fuzz", shape);
        let (done, finished) = mpsc::channel();
        let worker = thread::spawn(move || {
            let counts = fuzz_corruption(&segment, shape, seed, STEPS);
            let _ = done.send(());
            counts
        });
        // A hang inside the queue would keep the worker forever: fail instead.
        match finished.recv_timeout(Duration::from_secs(60)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => panic!("seed {seed:#x}: the fuzzer hung"),
        }
        let counts = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        drop(cleanup);
        eprintln!("seed {seed:#x}: {counts:?}");
        assert!(counts.pushed > 50 && counts.popped > 20, "seed {seed:#x}: {counts:?}");
        assert!(counts.claim_corrupt > 0, "no corrupt indices refused a claim: {counts:?}");
    }
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
    let two = layout(2, 1, 1).unwrap();
    assert_eq!(two.size, ENTRIES_AT + 2 * PADDED + 2 * SLOT_SIZE);
    assert_eq!(two.align, 128);
    assert!(layout(1 << 32, 1024, 1024).is_ok());
}
