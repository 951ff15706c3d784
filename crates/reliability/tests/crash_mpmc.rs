//! Crash injection in the shared-memory queues: a producer or consumer process killed
//! (SIGKILL, at the `queue.*` crash points) between claiming a position and completing it, on
//! its N-th operation for N drawn at random (the seed is printed; `SHMLANE_SEED` replays it).
//! The survivors, which take the dead process's role or entry over, go on exchanging values,
//! and each test states exactly what the crash cost:
//!
//! - MPMC: a producer killed after claiming a position (before or after writing the value)
//!   leaves a slot that consumers step over once its owner is proven dead (`skipped` 1, no
//!   value lost or duplicated); a consumer killed after claiming (before or after reading)
//!   leaves a slot producers free once its owner is proven dead, losing that one value
//!   (`lost` 1).
//! - SPSC (and its `push_slice`), overflow queue: a producer killed after stamping a slot but
//!   before storing `tail` published it: nothing is lost, its successor resumes after it. An
//!   SPSC consumer killed after reading a value but before storing `head` never returned it;
//!   its successor reads it: every value is delivered once. An overflow producer killed after
//!   evicting the oldest value but before handing it back loses that one value (in shmlane, a
//!   block the pool must reclaim).

use std::time::{Duration, Instant};

use shmlane_queue::mpmc::{MpmcStats, SharedMpmc};
use shmlane_queue::overflow::SharedOverflow;
use shmlane_queue::spsc::SharedSpsc;
use shmlane_reliability::CRASH_AT_ENV;
use shmlane_segment::{Carver, Fingerprint, Region, Segment};
use shmlane_testkit::{
    Cleanup, Rng, SEED_ENV, child_spec, fail, process_lock, report, seed, spawn_child_with_env,
    split_spec, unique_segment,
};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(20);
/// Slots of each queue.
const CAPACITY: u64 = 8;
/// Slots of the overflow queue.
const OVERFLOW_CAPACITY: u64 = 4;
/// Exit code of a child that was not killed at its armed point.
const EXIT_NOT_KILLED: i32 = 5;
/// Polls of a stuck MPMC position before the survivors check its owner (low: recover fast).
const PATIENCE: u32 = 64;
/// Kills per crash point, each on a random operation.
const KILLS_PER_POINT: usize = 2;
/// The first value survivors push (children push from 0).
const SURVIVOR_BASE: u64 = 1000;

const FINGERPRINT: Fingerprint = Fingerprint::new("reliability.crash_mpmc");
const VALUES: Fingerprint = Fingerprint::new("reliability.crash_mpmc.u64").with_u64(8);

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    let [name] = args.as_slice() else { fail(2, format!("bad spec {spec}")) };
    let segment = Segment::builder(*name).fingerprint(FINGERPRINT).open().unwrap_or_else(|e| {
        fail(3, format!("open: {e}"));
    });
    let regions = Regions::new();
    match role {
        "mpmc-push" => {
            let queue = mpmc(&segment, &regions);
            let mut producer = queue.producer().unwrap_or_else(|e| fail(3, e));
            for value in 0..CAPACITY {
                producer.try_push(value).unwrap_or_else(|_| fail(3, "full"));
            }
        }
        "mpmc-pop" => {
            let queue = mpmc(&segment, &regions);
            let mut consumer = queue.consumer().unwrap_or_else(|e| fail(3, e));
            while let Ok(value) = consumer.try_pop() {
                report("popped", value);
            }
        }
        "spsc-push" => {
            let queue = spsc(&segment, &regions);
            let mut producer = queue.producer().unwrap_or_else(|e| fail(3, e));
            for value in 0..CAPACITY {
                producer.try_push(value).unwrap_or_else(|_| fail(3, "full"));
            }
        }
        "spsc-push-slice" => {
            let queue = spsc(&segment, &regions);
            let mut producer = queue.producer().unwrap_or_else(|e| fail(3, e));
            let values: Vec<u64> = (0..CAPACITY).collect();
            producer.push_slice(&values);
        }
        "spsc-pop" => {
            let queue = spsc(&segment, &regions);
            let mut consumer = queue.consumer().unwrap_or_else(|e| fail(3, e));
            while let Ok(value) = consumer.try_pop() {
                report("popped", value);
            }
        }
        "overflow-push" => {
            let queue = overflow(&segment, &regions);
            let mut producer = queue.producer().unwrap_or_else(|e| fail(3, e));
            // Fills the queue, then evicts: both crash points lie on this way.
            for value in 0..OVERFLOW_CAPACITY + 2 {
                producer.push(value).unwrap_or_else(|e| fail(3, e));
            }
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    fail(EXIT_NOT_KILLED, format!("`{role}` finished without dying at its armed crash point"))
}

/// Where each queue lives in the test segment.
struct Regions {
    mpmc: Region,
    spsc: Region,
    overflow: Region,
    size: u64,
}

impl Regions {
    fn new() -> Regions {
        let mut carver = Carver::new();
        let mpmc = SharedMpmc::<u64>::layout(CAPACITY, 1, 1).expect("mpmc layout");
        let spsc = SharedSpsc::<u64>::layout(CAPACITY).expect("spsc layout");
        let overflow = SharedOverflow::layout(OVERFLOW_CAPACITY).expect("overflow layout");
        Regions {
            mpmc: carver.place(mpmc).expect("place"),
            spsc: carver.place(spsc).expect("place"),
            overflow: carver.place(overflow).expect("place"),
            size: carver.total_size(),
        }
    }
}

/// The queue with one producer and one consumer entry: a survivor must take the dead
/// process's entry over.
fn mpmc<'s>(segment: &'s Segment, regions: &Regions) -> SharedMpmc<'s, u64> {
    let queue = SharedMpmc::attach(segment, regions.mpmc, VALUES);
    queue.unwrap_or_else(|e| fail(3, e)).with_patience(PATIENCE)
}

fn spsc<'s>(segment: &'s Segment, regions: &Regions) -> SharedSpsc<'s, u64> {
    SharedSpsc::attach(segment, regions.spsc, VALUES).unwrap_or_else(|e| fail(3, e))
}

fn overflow<'s>(segment: &'s Segment, regions: &Regions) -> SharedOverflow<'s> {
    SharedOverflow::attach(segment, regions.overflow, VALUES).unwrap_or_else(|e| fail(3, e))
}

/// A fresh segment with the three queues, empty, and the guard that removes it.
fn create() -> (String, Cleanup, Segment) {
    let (name, cleanup) = unique_segment("rel-crashq", "q");
    let regions = Regions::new();
    let segment = Segment::builder(&name)
        .size(regions.size)
        .fingerprint(FINGERPRINT)
        .create_with(|s| {
            SharedMpmc::<u64>::init_in(s, regions.mpmc, CAPACITY, 1, 1, VALUES)?;
            SharedSpsc::<u64>::init_in(s, regions.spsc, CAPACITY, VALUES)?;
            SharedOverflow::init_in(s, regions.overflow, OVERFLOW_CAPACITY, VALUES)?;
            Ok(())
        })
        .expect("create the queue segment");
    (name, cleanup, segment)
}

/// Runs `role` in a child armed to die at the `hit`-th pass of `point`; returns the first
/// `popped` values it reported popping (a consumer that popped more leaves fewer behind, which
/// the tests see).
fn kill_child_at(name: &str, role: &str, point: &str, hit: u64, popped: u64) -> Vec<u64> {
    let armed = format!("{point}:{hit}");
    let mut child = spawn_child_with_env(role, &[name], &[(CRASH_AT_ENV, &armed)]);
    child.expect_crash(&armed, TIMEOUT);
    (0..popped).map(|_| child.report_u64("popped", TIMEOUT)).collect()
}

/// Pops from `pop` until `want` values came or the deadline passes.
fn drain(want: usize, mut pop: impl FnMut() -> Option<u64>) -> Vec<u64> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    while got.len() < want {
        match pop() {
            Some(value) => got.push(value),
            None if Instant::now() < deadline => std::thread::yield_now(),
            None => panic!("only {got:?} of {want} values came within {TIMEOUT:?}"),
        }
    }
    got
}

/// Pushes `values` with `push`, retrying while it refuses (a slot waiting for repair).
fn fill(values: impl IntoIterator<Item = u64>, mut push: impl FnMut(u64) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    for value in values {
        while !push(value) {
            assert!(Instant::now() < deadline, "value {value} was not taken within {TIMEOUT:?}");
            std::thread::yield_now();
        }
    }
}

fn survivors(count: u64) -> std::ops::Range<u64> {
    SURVIVOR_BASE..SURVIVOR_BASE + count
}

#[test]
fn mpmc_producer_killed_after_claiming_leaves_one_skipped_slot_and_survivors_go_on() {
    let _serial = process_lock();
    let mut rng = Rng::new(seed(SEED_ENV));
    for point in ["queue.mpmc.push.claimed", "queue.mpmc.push.written"] {
        for _ in 0..KILLS_PER_POINT {
            let (name, _cleanup, segment) = create();
            // Dies on its `hit`-th push, after `hit - 1` complete ones.
            let hit = 1 + rng.below(CAPACITY - 2);
            kill_child_at(&name, "mpmc-push", point, hit, 0);
            let queue = mpmc(&segment, &Regions::new());
            let mut producer = queue.producer().expect("take the dead producer's entry over");
            let mut consumer = queue.consumer().expect("the consumer entry");

            let started = Instant::now();
            fill(survivors(CAPACITY - hit), |v| producer.try_push(v).is_ok());
            let got = drain((hit - 1 + CAPACITY - hit) as usize, || consumer.try_pop().ok());
            let recovered = started.elapsed();

            let expected: Vec<u64> = (0..hit - 1).chain(survivors(CAPACITY - hit)).collect();
            assert_eq!(got, expected, "{point}:{hit}: every value but the abandoned one, once");
            assert_eq!(queue.stats(), MpmcStats { lost: 0, skipped: 1 }, "{point}:{hit}");
            assert!(queue.is_empty() && consumer.try_pop().is_err(), "{point}:{hit}");
            eprintln!("{point}:{hit}: the survivors got past the dead slot in {recovered:?}");
        }
    }
}

#[test]
fn mpmc_consumer_killed_after_claiming_loses_one_value_and_producers_wrap_on() {
    let _serial = process_lock();
    let mut rng = Rng::new(seed(SEED_ENV));
    for point in ["queue.mpmc.pop.claimed", "queue.mpmc.pop.read"] {
        for _ in 0..KILLS_PER_POINT {
            let (name, _cleanup, segment) = create();
            let queue = mpmc(&segment, &Regions::new());
            let mut producer = queue.producer().expect("the producer entry");
            fill(0..CAPACITY, |v| producer.try_push(v).is_ok());
            // Dies on its `hit`-th pop, holding value `hit - 1`.
            let hit = 1 + rng.below(CAPACITY);
            let popped = kill_child_at(&name, "mpmc-pop", point, hit, hit - 1);
            assert_eq!(popped, (0..hit - 1).collect::<Vec<_>>(), "{point}:{hit}");
            let mut consumer = queue.consumer().expect("take the dead consumer's entry over");

            // The rest of the first lap, then a whole second lap through the dead slot.
            let started = Instant::now();
            let rest = drain((CAPACITY - hit) as usize, || consumer.try_pop().ok());
            let mut second = Vec::new();
            fill(survivors(CAPACITY), |v| {
                let pushed = producer.try_push(v).is_ok();
                second.extend(consumer.try_pop().ok());
                pushed
            });
            second.extend(drain(CAPACITY as usize - second.len(), || consumer.try_pop().ok()));
            let recovered = started.elapsed();

            assert_eq!(rest, (hit..CAPACITY).collect::<Vec<_>>(), "{point}:{hit}");
            assert_eq!(second, survivors(CAPACITY).collect::<Vec<_>>(), "{point}:{hit}");
            assert_eq!(queue.stats(), MpmcStats { lost: 1, skipped: 0 }, "{point}:{hit}");
            assert!(queue.is_empty(), "{point}:{hit}");
            eprintln!("{point}:{hit}: the producer got past the dead slot in {recovered:?}");
        }
    }
}

#[test]
fn spsc_producer_killed_after_stamping_published_the_value_and_its_successor_resumes_after_it() {
    let _serial = process_lock();
    let mut rng = Rng::new(seed(SEED_ENV));
    for (role, point) in [
        ("spsc-push", "queue.spsc.push.stamped"),
        ("spsc-push-slice", "queue.spsc.push_slice.stamped"),
    ] {
        for _ in 0..KILLS_PER_POINT {
            let (name, _cleanup, segment) = create();
            // Dies right after stamping its `hit`-th value.
            let hit = 1 + rng.below(CAPACITY - 1);
            kill_child_at(&name, role, point, hit, 0);
            let queue = spsc(&segment, &Regions::new());
            let mut producer = queue.producer().expect("take the dead producer's role over");
            let mut consumer = queue.consumer().expect("the consumer role");
            fill(survivors(CAPACITY - hit), |v| producer.try_push(v).is_ok());
            let got = drain(CAPACITY as usize, || consumer.try_pop().ok());
            let expected: Vec<u64> = (0..hit).chain(survivors(CAPACITY - hit)).collect();
            assert_eq!(got, expected, "{point}:{hit}: nothing lost, nothing twice");
            assert!(consumer.try_pop().is_err() && queue.is_empty(), "{point}:{hit}");
        }
    }
}

#[test]
fn spsc_consumer_killed_after_reading_never_returned_the_value_and_its_successor_delivers_it() {
    let _serial = process_lock();
    let mut rng = Rng::new(seed(SEED_ENV));
    let point = "queue.spsc.pop.read";
    for _ in 0..KILLS_PER_POINT {
        let (name, _cleanup, segment) = create();
        let queue = spsc(&segment, &Regions::new());
        let mut producer = queue.producer().expect("the producer role");
        fill(0..CAPACITY, |v| producer.try_push(v).is_ok());
        // Dies after reading its `hit`-th value, before returning it.
        let hit = 1 + rng.below(CAPACITY);
        let popped = kill_child_at(&name, "spsc-pop", point, hit, hit - 1);
        assert_eq!(popped, (0..hit - 1).collect::<Vec<_>>(), "{point}:{hit}");
        let mut consumer = queue.consumer().expect("take the dead consumer's role over");
        let rest = drain((CAPACITY - hit + 1) as usize, || consumer.try_pop().ok());
        assert_eq!(rest, (hit - 1..CAPACITY).collect::<Vec<_>>(), "{point}:{hit}");
        // The queue goes on: a second lap.
        fill(survivors(CAPACITY), |v| producer.try_push(v).is_ok());
        let second = drain(CAPACITY as usize, || consumer.try_pop().ok());
        assert_eq!(second, survivors(CAPACITY).collect::<Vec<_>>(), "{point}:{hit}");
    }
}

#[test]
fn overflow_producer_killed_mid_push_loses_only_a_value_it_had_evicted() {
    let _serial = process_lock();
    let mut rng = Rng::new(seed(SEED_ENV));
    for point in ["queue.overflow.push.stamped", "queue.overflow.evict.taken"] {
        for _ in 0..KILLS_PER_POINT {
            let (name, _cleanup, segment) = create();
            // The child pushes 0..CAPACITY + 2 into CAPACITY slots: it stamps CAPACITY + 2
            // values and evicts the first two on the way.
            let hit = match point {
                "queue.overflow.push.stamped" => 1 + rng.below(OVERFLOW_CAPACITY + 2),
                _ => 1 + rng.below(2),
            };
            kill_child_at(&name, "overflow-push", point, hit, 0);
            let queue = overflow(&segment, &Regions::new());
            let mut producer = queue.producer().expect("a new producer");
            let mut consumer = queue.consumer().expect("the consumer");
            let queued = SharedOverflow::snapshot(&segment, Regions::new().overflow, VALUES)
                .expect("a snapshot")
                .values;
            // What the child had published when it died, and what it had taken back out.
            let (published, evicted) = match point {
                "queue.overflow.push.stamped" => (hit, hit.saturating_sub(OVERFLOW_CAPACITY)),
                // Killed in its `hit`-th eviction, before stamping value CAPACITY + hit - 1.
                _ => (OVERFLOW_CAPACITY + hit - 1, hit),
            };
            let expected: Vec<u64> = (evicted..published).collect();
            assert_eq!(queued, expected, "{point}:{hit}: the queue holds what was published");
            let got = drain(expected.len(), || consumer.pop());
            assert_eq!(got, expected, "{point}:{hit}");
            // The successor resumes after every published value.
            for value in survivors(OVERFLOW_CAPACITY) {
                assert_eq!(producer.push(value), Ok(None), "{point}:{hit}: room for {value}");
            }
            let second = drain(OVERFLOW_CAPACITY as usize, || consumer.pop());
            assert_eq!(second, survivors(OVERFLOW_CAPACITY).collect::<Vec<_>>());
        }
    }
}
