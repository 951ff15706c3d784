//! The event count inside a POSIX shared-memory segment, between real processes.
//!
//! Each test that needs a peer re-executes this test binary as a child (`shmlane_testkit`):
//! [`child_entry`] runs the role named in `SHMLANE_CHILD` and exits with a code (0 on success,
//! [`EXIT_FAILED`] when the role's check failed, 101 when it panicked); without the variable it
//! returns at once, so it passes as an ordinary test. Children report to the parent as stdout
//! lines `@@shmlane KEY VALUE`. Every wait has a deadline: a lost wake-up or a hang fails the
//! test instead of blocking CI.
//!
//! The segment holds one [`EventCount`] (all-zero bytes are an idle one, so a fresh segment
//! needs no initialisation), a few control words, and a small ring of `u64` slots for the
//! streaming test. Tests that play a hostile peer write the event count's words directly:
//! [`Shared::epoch_word`] and [`Shared::waiters_word`] mirror the layout of
//! `crates/notify/src/event_count.rs`, and
//! [`the_raw_words_mirror_the_event_counts_layout`] checks that mirror so it cannot drift
//! silently.
//!
//! Before notifying a sleeping child, the parent waits until the child's waiting thread is
//! asleep inside the futex system call (`/proc/PID/task/TID`), so the wake-up under test is a
//! real `FUTEX_WAKE` across processes, not a waiter that had not gone to sleep yet.
//!
//! Every test holds [`process_lock`]: their processes sleep, spin and scribble, and on two
//! cores two such tests at once would mostly measure the scheduler.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shmlane_notify::{
    Backoff, Blocking, BusySpin, EventCount, Periodic, TimedOut, WaitOutcome, WaitStrategy, Yield,
};
use shmlane_segment::{Carver, Fingerprint, Offset, Region, RegionLayout, Segment};
use shmlane_testkit::{
    CHILD_TIMEOUT, ChildProc, EXIT_FAILED, ORPHAN_LIMIT, Rng, SEED_ENV, arg_u64, child_spec,
    exit_child, fail, process_lock, report, seed, spawn_child, split_spec, unique_segment,
    wait_for,
};

// ---------------------------------------------------------------------------------------------
// Harness: names, timeouts, exit codes, the child roles' entry point.
// ---------------------------------------------------------------------------------------------

/// How long a child waits for a notify that should come within milliseconds: a lost wake-up
/// shows as a sleep this long.
const LONG_WAIT_MS: u64 = 10_000;
/// A wake-up that takes longer than this was not a wake-up but a timeout or a re-check (half
/// of [`LONG_WAIT_MS`]: generous for a loaded two-core VM, far from the timeout).
const PROMPT: Duration = Duration::from_secs(5);
/// How long after it is seen asleep a waiter is left alone before the notify.
const SETTLE: Duration = Duration::from_millis(50);
/// Slack allowed after a deadline before a wait must have returned (a correctness bound, not
/// a latency measurement).
const DEADLINE_SLACK: Duration = Duration::from_secs(2);

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("wait", [name, timeout_ms]) => child_wait(name, arg_u64(timeout_ms)),
        ("block", [name, recheck_ms, deadline_ms]) => {
            let recheck = (*recheck_ms != "none").then(|| ms(arg_u64(recheck_ms)));
            child_block(name, recheck, ms(arg_u64(deadline_ms)))
        }
        ("scribble", [name, seed]) => child_scribble(name, arg_u64(seed)),
        ("produce", [name, count, seed, pace]) => {
            child_produce(name, arg_u64(count), arg_u64(seed), *pace == "await-park")
        }
        ("pong", [name, count, seed]) => child_pong(name, arg_u64(count), arg_u64(seed)),
        ("unbarriered", [name, count]) => child_unbarriered(name, arg_u64(count)),
        _ => panic!("unknown child role {spec:?}"),
    }
    exit_child();
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

// ---------------------------------------------------------------------------------------------
// The segment: an event count, control words and a ring, laid out the same way everywhere.
// ---------------------------------------------------------------------------------------------

/// Control word: the condition waiters wait for (0: unmet).
const CONDITION: u64 = 0;
/// Control word: values the producer has pushed into the ring.
const TAIL: u64 = 1;
/// Control word: values the consumer has taken from the ring.
const HEAD: u64 = 2;
/// Control word: writes a scribbler has made to the event count.
const SCRIBBLES: u64 = 3;
/// Control word: set to 1 by the parent to end a scribbler.
const STOP: u64 = 4;
/// Control word: polls a blocking child has made.
const POLLS: u64 = 5;
/// Control word: the last value the parent of a ping-pong sent.
const PING: u64 = 6;
/// Control word: the last value the child of a ping-pong echoed.
const PONG: u64 = 7;
/// Control words in the segment.
const WORDS: u64 = 8;
/// Slots of the ring.
const RING: u64 = 64;

struct Layout {
    event: Region,
    words: Region,
    ring: Region,
    size: u64,
}

fn layout() -> Layout {
    let mut carver = Carver::new();
    let event =
        carver.place(RegionLayout { size: size_of::<EventCount>() as u64, align: 64 }).unwrap();
    let words = carver.place(RegionLayout { size: WORDS * 8, align: 64 }).unwrap();
    let ring = carver.place(RegionLayout { size: RING * 8, align: 64 }).unwrap();
    Layout { event, words, ring, size: carver.total_size() }
}

fn fingerprint() -> Fingerprint {
    Fingerprint::new("notify-cross-process-test").with_u64(layout().size)
}

/// A segment laid out by [`layout`], with typed views of its parts.
struct Shared {
    segment: Segment,
    layout: Layout,
}

impl Shared {
    /// Creates the segment (removed when the parent's handle drops). The bytes start zeroed:
    /// an idle event count, unmet condition, empty ring.
    fn create(name: &str) -> Shared {
        let layout = layout();
        let segment = Segment::builder(name)
            .size(layout.size)
            .fingerprint(fingerprint())
            .create()
            .expect("create the test segment");
        Shared { segment, layout }
    }

    /// Opens the parent's segment, in a child.
    fn open(name: &str) -> Shared {
        let segment = Segment::builder(name)
            .fingerprint(fingerprint())
            .open()
            .expect("open the parent's test segment");
        Shared { segment, layout: layout() }
    }

    fn event(&self) -> &EventCount {
        self.segment.get(self.layout.event.offset_of::<EventCount>(0).unwrap()).unwrap()
    }

    fn word(&self, index: u64) -> &AtomicU64 {
        self.segment.get(self.layout.words.offset_of::<AtomicU64>(index * 8).unwrap()).unwrap()
    }

    fn slot(&self, index: u64) -> &AtomicU64 {
        let at = (index % RING) * 8;
        self.segment.get(self.layout.ring.offset_of::<AtomicU64>(at).unwrap()).unwrap()
    }

    /// The event count's epoch (the futex word), as `event_count.rs` lays it out: first.
    fn epoch_word(&self) -> &AtomicU32 {
        self.segment.get(Offset::<AtomicU32>::new(self.layout.event.offset)).unwrap()
    }

    /// The event count's waiter count, as `event_count.rs` lays it out: second.
    fn waiters_word(&self) -> &AtomicU32 {
        self.segment.get(Offset::<AtomicU32>::new(self.layout.event.offset + 4)).unwrap()
    }

    /// Reads the epoch (the test's own view, for assertions).
    fn epoch(&self) -> u32 {
        // Acquire: pairs with the Release bump of a notify.
        self.epoch_word().load(Ordering::Acquire)
    }

    /// Takes the next ring value, if the producer pushed one (the consumer's poll).
    fn pop(&self) -> Option<u64> {
        let head = self.word(HEAD).load(Ordering::Relaxed); // only the consumer writes it
        // Acquire: pairs with the producer's Release store of `TAIL`, making the slot visible.
        if self.word(TAIL).load(Ordering::Acquire) == head {
            return None;
        }
        let value = self.slot(head).load(Ordering::Relaxed);
        // Release: the slot is read before the producer may overwrite it.
        self.word(HEAD).store(head + 1, Ordering::Release);
        Some(value)
    }
}

/// The calling thread's kernel id, for the parent's look at `/proc/PID/task/TID`.
fn current_tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// The futex system call's number, for kernels that show no `wchan`.
#[cfg(target_arch = "x86_64")]
const SYS_FUTEX: Option<&str> = Some("202");
#[cfg(target_arch = "aarch64")]
const SYS_FUTEX: Option<&str> = Some("98");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYS_FUTEX: Option<&str> = None;

/// Whether thread `tid` of process `pid` is asleep (state `S`) inside the futex system call.
fn asleep_in_futex(pid: u32, tid: u64) -> bool {
    let task = format!("/proc/{pid}/task/{tid}");
    let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
    let state = stat.rfind(')').and_then(|at| stat[at + 1..].split_whitespace().next());
    if state != Some("S") {
        return false;
    }
    let wchan = std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default();
    let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
    wchan.contains("futex") || SYS_FUTEX.is_some_and(|nr| syscall.split(' ').next() == Some(nr))
}

/// Waits until `child`'s thread `tid` sleeps in the futex, and lets it sleep [`SETTLE`] more.
fn wait_until_asleep(shared: &Shared, child: &ChildProc, tid: u64) {
    let pid = child.pid();
    wait_for("the child's waiter asleep in FUTEX_WAIT", CHILD_TIMEOUT, || {
        shared.event().waiters() >= 1 && asleep_in_futex(pid, tid)
    });
    thread::sleep(SETTLE);
    assert!(asleep_in_futex(pid, tid), "the child's waiter woke up before any notify");
}

// ---------------------------------------------------------------------------------------------
// Child roles.
// ---------------------------------------------------------------------------------------------

/// Prepares a wait, re-checks the condition, reports `waiting` with its thread id, and sleeps
/// with `timeout_ms`. Reports how the wait ended (`outcome`), the condition it then read
/// (`value`) and how long it slept (`slept_us`).
fn child_wait(name: &str, timeout_ms: u64) {
    let shared = Shared::open(name);
    let condition = shared.word(CONDITION);
    let wait = shared.event().prepare_wait();
    // Acquire: pairs with the parent's Release store before its notify.
    if condition.load(Ordering::Acquire) != 0 {
        fail(EXIT_FAILED, "the condition was set before the child prepared its wait");
    }
    report("waiting", current_tid());
    let started = Instant::now();
    let outcome = wait.wait(Some(ms(timeout_ms)));
    let slept = started.elapsed();
    // Acquire: as above.
    report("value", condition.load(Ordering::Acquire));
    report("slept_us", slept.as_micros());
    report("outcome", format!("{outcome:?}"));
}

/// Waits with [`Blocking`] (re-checking every `recheck`) until the condition is set or
/// `deadline` has passed, counting its polls in `POLLS`; reports `ready` with its thread id
/// before, then the value (or `timed-out`) as `result`, and how long the wait took as
/// `waited_us`.
fn child_block(name: &str, recheck: Option<Duration>, deadline: Duration) {
    let shared = Shared::open(name);
    let (condition, polls) = (shared.word(CONDITION), shared.word(POLLS));
    report("ready", current_tid());
    let started = Instant::now();
    let result = Blocking::new().recheck_every(recheck).wait_for(
        shared.event(),
        Some(started + deadline),
        || {
            // Relaxed: a progress count.
            polls.fetch_add(1, Ordering::Relaxed);
            // Acquire: pairs with the parent's Release store.
            match condition.load(Ordering::Acquire) {
                0 => None,
                value => Some(value),
            }
        },
    );
    let waited = started.elapsed();
    match result {
        Ok(value) => report("result", value),
        Err(TimedOut) => report("result", "timed-out"),
    }
    report("waited_us", waited.as_micros());
}

/// Writes random values over the event count's epoch and waiter count until the parent sets
/// `STOP`: bursts of writes, and pauses during which a waiter can fall asleep on a word that
/// then changes without a wake.
fn child_scribble(name: &str, seed: u64) {
    let shared = Shared::open(name);
    let event_at = shared.layout.event.offset;
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    // Acquire: pairs with the parent's Release store of `STOP`.
    while shared.word(STOP).load(Ordering::Acquire) == 0 {
        if started.elapsed() > ORPHAN_LIMIT {
            fail(EXIT_FAILED, "the parent never stopped the scribbler");
        }
        for _ in 0..rng.below(64) {
            shared.segment.write_bytes(event_at, &rng.next_u64().to_ne_bytes()).unwrap();
            // Relaxed: a progress count.
            shared.word(SCRIBBLES).fetch_add(1, Ordering::Relaxed);
        }
        if rng.below(4) == 0 {
            thread::sleep(Duration::from_micros(rng.below(2_000)));
        }
    }
}

/// Pushes `0..count` into the ring with a `notify_one` after each, pausing at random between
/// pushes (bursts, short spins, sleeps). Before each [`PARK_EVERY`]-th value it pauses longer:
/// until the consumer has parked if `await_park` (so that push's notify must wake it), else
/// 10 ms. Reports `pushed`.
fn child_produce(name: &str, count: u64, seed: u64, await_park: bool) {
    let shared = Shared::open(name);
    let (tail, head) = (shared.word(TAIL), shared.word(HEAD));
    let event = shared.event();
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let check_deadline = |what: &str, value: u64| {
        if Instant::now() > deadline {
            fail(EXIT_FAILED, format!("the consumer {what} at value {value}"));
        }
    };
    for value in 0..count {
        if value > 0 && value % PARK_EVERY == 0 {
            if await_park {
                while event.waiters() == 0 {
                    check_deadline("never parked", value);
                    thread::sleep(Duration::from_micros(50));
                }
            } else {
                thread::sleep(ms(10));
            }
        }
        // Acquire: pairs with the consumer's Release store of `HEAD` (its slot read is done).
        while value - head.load(Ordering::Acquire) >= RING {
            check_deadline("stopped taking values", value);
            thread::sleep(Duration::from_micros(20));
        }
        shared.slot(value).store(value, Ordering::Relaxed);
        // Release: publishes the slot to the consumer's Acquire load of `TAIL`.
        tail.store(value + 1, Ordering::Release);
        event.notify_one();
        match rng.below(100) {
            0..50 => {}
            50..80 => {
                let spin_until = Instant::now() + Duration::from_micros(rng.below(20));
                while Instant::now() < spin_until {
                    std::hint::spin_loop();
                }
            }
            80..98 => thread::sleep(Duration::from_micros(rng.below(300))),
            _ => thread::sleep(Duration::from_micros(1_000 + rng.below(2_000))),
        }
    }
    report("pushed", count);
}

/// Echoes `1..=count`: waits for `PING` to reach each value (a random short poll, then the
/// futex), stores it in `PONG` and notifies. Reports whether its notifies were light
/// (`asymmetric_notify`), then `ponged`.
fn child_pong(name: &str, count: u64, seed: u64) {
    let shared = Shared::open(name);
    let mut rng = Rng::new(seed);
    for value in 1..=count {
        if let Err(waited) = await_word(&shared, PING, value, spins(&mut rng)) {
            fail(EXIT_FAILED, format!("ping {value} never came ({waited:?}): a lost wake-up"));
        }
        // Release: pairs with the parent's Acquire load of `PONG`.
        shared.word(PONG).store(value, Ordering::Release);
        shared.event().notify_one();
        if value == 1 {
            report("light", u64::from(shmlane_notify::asymmetric_notify()));
        }
    }
    report("ponged", count);
}

/// A waiter whose membarrier is refused: its sleeps are capped (an idle wait with a long
/// timeout ends early, as notified), and it still takes `0..count` from the parent's light
/// notifies with no re-check of its own. Reports `capped_ms` (how long the idle wait slept),
/// then `took`.
fn child_unbarriered(name: &str, count: u64) {
    shmlane_notify::refuse_membarrier_in_waiters();
    let shared = Shared::open(name);
    let started = Instant::now();
    // Nobody notifies this event count yet: only the cap can end this wait early.
    let outcome = shared.event().prepare_wait().wait(Some(PROMPT));
    if outcome != WaitOutcome::Notified {
        fail(EXIT_FAILED, format!("an idle wait was not capped: {outcome:?}"));
    }
    report("capped_ms", started.elapsed().as_millis() as u64);
    for expected in 0..count {
        let deadline = Instant::now() + VALUE_TIMEOUT;
        let waited =
            Blocking::new()
                .recheck_every(None)
                .wait_for(shared.event(), Some(deadline), || shared.pop());
        match waited {
            Ok(value) if value == expected => {}
            Ok(value) => fail(EXIT_FAILED, format!("got {value}, want {expected}")),
            Err(TimedOut) => fail(EXIT_FAILED, format!("value {expected} never came")),
        }
    }
    report("took", count);
}

/// Waits until word `index` holds `value`: polls it for up to `spins` loads, then prepares
/// the wait (so both sides are often awake together and a prepare races the peer's store and
/// notify), each sleep with a deadline of [`PROMPT`]: `Err` with the time waited when one
/// passes (a lost wake-up).
fn await_word(shared: &Shared, index: u64, value: u64, spins: u64) -> Result<(), Duration> {
    let started = Instant::now();
    for _ in 0..spins {
        // Acquire: pairs with the peer's Release store of the word.
        if shared.word(index).load(Ordering::Acquire) == value {
            return Ok(());
        }
        std::hint::spin_loop();
    }
    loop {
        // Acquire: pairs with the peer's Release store of the word.
        if shared.word(index).load(Ordering::Acquire) == value {
            return Ok(());
        }
        let wait = shared.event().prepare_wait();
        if shared.word(index).load(Ordering::Acquire) == value {
            return Ok(());
        }
        if wait.wait(Some(PROMPT)) == WaitOutcome::TimedOut {
            return Err(started.elapsed());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The layout mirror.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_raw_words_mirror_the_event_counts_layout() {
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "mirror");
    let shared = Shared::create(&name);
    let event = shared.event();

    assert_eq!((shared.epoch(), event.waiters()), (0, 0), "a zeroed segment is an idle count");
    event.notify_one();
    event.notify_all();
    assert_eq!(shared.epoch(), 0, "a notify with nobody waiting left the epoch alone");

    let wait = event.prepare_wait();
    assert_eq!(shared.waiters_word().load(Ordering::Relaxed), 1);
    event.notify_one();
    assert_eq!(shared.epoch(), 1, "a notify with a waiter bumps the epoch");
    drop(wait);
    assert_eq!(shared.waiters_word().load(Ordering::Relaxed), 0);

    shared.waiters_word().store(7, Ordering::Relaxed);
    assert_eq!(event.waiters(), 7);
    shared.waiters_word().store(0, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Wake-ups across processes.
// ---------------------------------------------------------------------------------------------

#[test]
fn notify_one_wakes_a_child_asleep_in_the_futex() {
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "one");
    let shared = Shared::create(&name);

    let mut child = spawn_child("wait", &[&name, &LONG_WAIT_MS.to_string()]);
    let tid = child.report_u64("waiting", CHILD_TIMEOUT);
    wait_until_asleep(&shared, &child, tid);

    // Release: pairs with the child's Acquire load after it wakes.
    shared.word(CONDITION).store(42, Ordering::Release);
    shared.event().notify_one();
    assert_eq!(shared.epoch(), 1, "the notify saw the sleeping child and bumped the epoch");

    assert_eq!(child.report("outcome", CHILD_TIMEOUT), "Notified");
    assert_eq!(child.report_u64("value", CHILD_TIMEOUT), 42, "the change before the notify");
    let slept = Duration::from_micros(child.report_u64("slept_us", CHILD_TIMEOUT));
    assert!(slept < PROMPT, "woke after {slept:?}: the FUTEX_WAKE did not reach the child");
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!(shared.event().waiters(), 0, "the child's wait ended and gave back its count");
}

#[test]
fn notify_all_wakes_every_child_asleep_in_the_futex() {
    const CHILDREN: usize = 4;
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "all");
    let shared = Shared::create(&name);

    let mut children: Vec<ChildProc> =
        (0..CHILDREN).map(|_| spawn_child("wait", &[&name, &LONG_WAIT_MS.to_string()])).collect();
    let tids: Vec<u64> =
        children.iter_mut().map(|child| child.report_u64("waiting", CHILD_TIMEOUT)).collect();
    wait_for("every child prepared", CHILD_TIMEOUT, || shared.event().waiters() == CHILDREN as u32);
    for (child, &tid) in children.iter().zip(&tids) {
        wait_until_asleep(&shared, child, tid);
    }

    // Release: pairs with the children's Acquire loads after they wake.
    shared.word(CONDITION).store(7, Ordering::Release);
    shared.event().notify_all();
    assert_eq!(shared.epoch(), 1, "one notify_all, one bump");

    for (index, child) in children.iter_mut().enumerate() {
        assert_eq!(child.report("outcome", CHILD_TIMEOUT), "Notified", "child {index}");
        assert_eq!(child.report_u64("value", CHILD_TIMEOUT), 7, "child {index}");
        let slept = Duration::from_micros(child.report_u64("slept_us", CHILD_TIMEOUT));
        assert!(slept < PROMPT, "child {index} woke after {slept:?}: notify_all missed it");
        child.expect_success(CHILD_TIMEOUT);
    }
    assert_eq!(shared.event().waiters(), 0);
}

#[test]
fn notify_one_wakes_only_one_of_two_sleeping_children() {
    const TIMEOUT_MS: u64 = 3_000;
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "one-of-two");
    let shared = Shared::create(&name);

    let mut children = [0, 1].map(|_| spawn_child("wait", &[&name, &TIMEOUT_MS.to_string()]));
    let tids = children.each_mut().map(|child| child.report_u64("waiting", CHILD_TIMEOUT));
    for (child, &tid) in children.iter().zip(&tids) {
        wait_until_asleep(&shared, child, tid);
    }

    // Release: pairs with the children's Acquire loads.
    shared.word(CONDITION).store(1, Ordering::Release);
    shared.event().notify_one();

    let mut slept = children.each_mut().map(|child| {
        // Both see the epoch moved, one at once, the other when its timeout ends its sleep.
        assert_eq!(child.report("outcome", CHILD_TIMEOUT), "Notified");
        child.expect_success(CHILD_TIMEOUT);
        Duration::from_micros(child.report_u64("slept_us", CHILD_TIMEOUT))
    });
    slept.sort();
    assert!(slept[0] < PROMPT.min(ms(TIMEOUT_MS) / 2), "nobody was woken: slept {slept:?}");
    assert!(
        slept[1] >= ms(TIMEOUT_MS),
        "both were woken by one notify_one (slept {slept:?}): FUTEX_WAKE must wake one"
    );
}

#[test]
fn a_wait_in_another_process_with_nobody_notifying_times_out_after_its_timeout() {
    const TIMEOUT_MS: u64 = 200;
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "timeout");
    let shared = Shared::create(&name);

    let mut child = spawn_child("wait", &[&name, &TIMEOUT_MS.to_string()]);
    assert_eq!(child.report("outcome", CHILD_TIMEOUT), "TimedOut");
    let slept = Duration::from_micros(child.report_u64("slept_us", CHILD_TIMEOUT));
    assert!(slept >= ms(TIMEOUT_MS), "returned after {slept:?}, before its timeout");
    assert!(slept < ms(TIMEOUT_MS) + DEADLINE_SLACK, "returned only after {slept:?}");
    assert_eq!(child.report_u64("value", CHILD_TIMEOUT), 0);
    child.expect_success(CHILD_TIMEOUT);
    assert_eq!((shared.event().waiters(), shared.epoch()), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Hostile peers.
// ---------------------------------------------------------------------------------------------

#[test]
fn waits_on_words_a_peer_keeps_scribbling_over_still_end_at_their_deadline() {
    const DEADLINE: Duration = Duration::from_millis(300);
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "scribble");
    let shared = Shared::create(&name);
    let seed = seed(SEED_ENV);
    let mut scribbler = spawn_child("scribble", &[&name, &seed.to_string()]);
    let scribbles = || shared.word(SCRIBBLES).load(Ordering::Relaxed);
    wait_for("the scribbler to start", CHILD_TIMEOUT, || scribbles() >= 1_000);

    // The condition never becomes true: each wait must give up at its deadline, whatever the
    // epoch and waiter words hold meanwhile.
    let never = || (shared.word(CONDITION).load(Ordering::Acquire) != 0).then_some(());
    let check = |what: &str, wait: &mut dyn FnMut(Instant) -> Result<(), TimedOut>| {
        let before = scribbles();
        let started = Instant::now();
        let result = wait(started + DEADLINE);
        let took = started.elapsed();
        assert_eq!(result, Err(TimedOut), "{what} (seed {seed})");
        assert!(took >= DEADLINE, "{what} gave up after {took:?}, before its deadline");
        assert!(took < DEADLINE + DEADLINE_SLACK, "{what} overran its deadline: {took:?}");
        assert!(scribbles() > before, "{what}: the scribbler made no write during the wait");
    };
    let event = shared.event();
    check("Blocking", &mut |deadline| Blocking::new().wait_for(event, Some(deadline), never));
    check("Blocking without re-check", &mut |deadline| {
        Blocking::new().recheck_every(None).wait_for(event, Some(deadline), never)
    });
    check("Backoff", &mut |deadline| Backoff::new().wait_for(event, Some(deadline), never));
    check("Periodic", &mut |deadline| Periodic::new().wait_for(event, Some(deadline), never));

    // A bare prepared wait ends by its timeout too (as `Notified`, when it saw the epoch move).
    let before = scribbles();
    let started = Instant::now();
    event.prepare_wait().wait(Some(DEADLINE));
    let took = started.elapsed();
    assert!(took < DEADLINE + DEADLINE_SLACK, "a prepared wait overran its timeout: {took:?}");
    assert!(scribbles() > before, "the scribbler made no write during the prepared wait");

    // Release: pairs with the scribbler's Acquire load.
    shared.word(STOP).store(1, Ordering::Release);
    scribbler.expect_success(CHILD_TIMEOUT);
}

/// A child sleeps in `Blocking` (re-checking every `recheck`); while it is stopped mid-sleep,
/// the parent zeroes the waiter count (a hostile peer), publishes, and notifies, which then
/// sees no waiter: the wake-up is lost. Returns the child's result and how long it waited.
fn lost_wake_up(tag: &str, recheck: Option<Duration>, deadline: Duration) -> (String, Duration) {
    let (name, _cleanup) = unique_segment("notify", tag);
    let shared = Shared::create(&name);
    let recheck_arg = recheck.map_or("none".to_owned(), |r| r.as_millis().to_string());
    let deadline_arg = deadline.as_millis().to_string();
    let mut child = spawn_child("block", &[&name, &recheck_arg, &deadline_arg]);
    let tid = child.report_u64("ready", CHILD_TIMEOUT);
    let pid = child.pid();
    let polls = || shared.word(POLLS).load(Ordering::Relaxed);

    // Freeze the child inside a sleep: asleep in the futex after its last poll, and no poll
    // (and no end of the prepared wait) between that sighting and the stop. Its next step
    // after it resumes is then to wake, by the re-check timer or the deadline, and poll.
    let mut caught = false;
    for _ in 0..1_000 {
        let before = polls();
        wait_for("the child asleep in FUTEX_WAIT", CHILD_TIMEOUT, || {
            shared.event().waiters() == 1 && asleep_in_futex(pid, tid)
        });
        child.stop();
        if polls() == before && shared.waiters_word().load(Ordering::Relaxed) == 1 {
            caught = true;
            break;
        }
        child.resume();
    }
    assert!(caught, "never caught the child asleep inside a prepared wait");
    shared.waiters_word().store(0, Ordering::Relaxed);
    let epoch = shared.epoch();
    // Release: pairs with the child's Acquire poll.
    shared.word(CONDITION).store(99, Ordering::Release);
    shared.event().notify_one();
    assert_eq!(shared.epoch(), epoch, "the notify read the zeroed count: no bump, no wake");
    child.resume();

    let result = child.report("result", CHILD_TIMEOUT + deadline);
    let waited = Duration::from_micros(child.report_u64("waited_us", CHILD_TIMEOUT));
    child.expect_success(CHILD_TIMEOUT);
    (result, waited)
}

#[test]
fn blocking_recheck_delivers_a_value_whose_wake_up_a_hostile_peer_lost() {
    let _serial = process_lock();
    let deadline = ms(LONG_WAIT_MS);
    let (result, waited) = lost_wake_up("zeroed-recheck", Some(ms(50)), deadline);
    assert_eq!(result, "99");
    assert!(waited < PROMPT, "found the value only after {waited:?}: the re-check did not run");
}

#[test]
fn without_recheck_a_lost_wake_up_is_noticed_only_at_the_deadline() {
    let _serial = process_lock();
    let deadline = ms(1_500);
    let (result, waited) = lost_wake_up("zeroed-no-recheck", None, deadline);
    // The poll made at the deadline finds the value: it is late, not lost.
    assert_eq!(result, "99");
    assert!(waited >= deadline, "found the value after {waited:?}, yet nothing woke it");
    assert!(waited < deadline + DEADLINE_SLACK, "overran its deadline: {waited:?}");
}

// ---------------------------------------------------------------------------------------------
// Strategies across processes.
// ---------------------------------------------------------------------------------------------

/// Values the producer child streams per strategy.
const STREAM: u64 = 1_000;
/// Deadline for each single value (a lost wake-up shows as this timeout).
const VALUE_TIMEOUT: Duration = Duration::from_secs(10);
/// The producer's long pause comes after every this many values.
const PARK_EVERY: u64 = 200;

/// Streams [`STREAM`] values from a producer child to this process, which takes each one with
/// `strategy`, and checks every value arrives exactly once, in order. With `parks`, the
/// producer waits for the consumer to park now and then (see [`child_produce`]). Returns the
/// epoch after the run: how many notifies found the consumer parked.
fn stream_with(what: &str, parks: bool, mut strategy: impl WaitStrategy) -> u32 {
    let (name, _cleanup) = unique_segment("notify", "stream");
    let shared = Shared::create(&name);
    let seed = seed(SEED_ENV);
    let pace = if parks { "await-park" } else { "pause" };
    let mut producer =
        spawn_child("produce", &[&name, &STREAM.to_string(), &seed.to_string(), pace]);

    for expected in 0..STREAM {
        let deadline = Instant::now() + VALUE_TIMEOUT;
        match strategy.wait_for(shared.event(), Some(deadline), || shared.pop()) {
            Ok(value) => assert_eq!(value, expected, "{what}: a gap or a duplicate (seed {seed})"),
            Err(TimedOut) => {
                producer.assert_running();
                panic!("{what}: value {expected} never came (a lost wake-up? seed {seed})");
            }
        }
    }
    assert_eq!(producer.report_u64("pushed", CHILD_TIMEOUT), STREAM);
    producer.expect_success(CHILD_TIMEOUT);
    assert_eq!(shared.pop(), None, "{what}: a value beyond the last one");
    assert_eq!(shared.event().waiters(), 0, "{what}: a wait did not give back its count");
    shared.epoch()
}

#[test]
fn every_strategy_takes_a_stream_from_another_process_in_order() {
    let _serial = process_lock();
    // Strategies that never park never announce a waiter: the producer's notifies are free.
    assert_eq!(stream_with("BusySpin", false, BusySpin), 0, "BusySpin parked");
    assert_eq!(stream_with("Yield", false, Yield), 0, "Yield parked");
    // Those that park trust the notifies alone here (no re-check): a lost wake-up would show
    // as a value timing out. The producer waits for them to park every `PARK_EVERY` values,
    // so at least that many notifies had to wake a sleeper in this process.
    let parking = [
        ("Backoff", stream_with("Backoff", true, Backoff::new().recheck_every(None))),
        ("Blocking", stream_with("Blocking", true, Blocking::new().recheck_every(None))),
        ("Periodic", stream_with("Periodic", true, Periodic::new().recheck_every(None))),
    ];
    for (what, wakes) in parking {
        let parked = ((STREAM - 1) / PARK_EVERY) as u32;
        assert!(wakes >= parked, "{what}: {wakes} wake-ups, but it parked {parked} times");
    }
}

/// How long a ping-pong side polls before it prepares to sleep: not at all for half the
/// messages (it sleeps, and the peer's notify must wake it), up to [`SPINS`] loads for the
/// others (its prepare may race the peer's store and notify).
fn spins(rng: &mut Rng) -> u64 {
    if rng.below(2) == 0 { 0 } else { rng.below(SPINS) }
}

/// Round trips of the ping-pong that parks on every message.
const PING_PONGS: u64 = 20_000;
/// Most loads a ping-pong side polls its word before it prepares to sleep (drawn at random
/// per message: a few microseconds at most).
const SPINS: u64 = 300;

#[test]
fn a_ping_pong_that_sleeps_on_every_message_loses_no_wake_up_with_light_notifiers() {
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "pingpong");
    let shared = Shared::create(&name);
    let seed = seed(SEED_ENV);
    let mut child = spawn_child("pong", &[&name, &PING_PONGS.to_string(), &seed.to_string()]);
    let mut rng = Rng::new(seed ^ 1);
    let epoch_before = shared.epoch();
    for value in 1..=PING_PONGS {
        // Release: pairs with the child's Acquire load of `PING`.
        shared.word(PING).store(value, Ordering::Release);
        shared.event().notify_one();
        if let Err(waited) = await_word(&shared, PONG, value, spins(&mut rng)) {
            child.assert_running();
            panic!("pong {value} never came ({waited:?}): a lost wake-up (seed {seed})");
        }
    }
    let light = (shmlane_notify::asymmetric_notify(), child.report_u64("light", CHILD_TIMEOUT));
    assert_eq!(child.report_u64("ponged", CHILD_TIMEOUT), PING_PONGS);
    child.expect_success(CHILD_TIMEOUT);
    match light {
        (true, 1) => {}
        _ => eprintln!(
            "note: membarrier is not available here (notifiers light: this process {}, the \
             child {}): the ping-pong ran with full fences",
            light.0, light.1
        ),
    }
    // Half the waits prepare at once: thousands of notifies found a waiter and woke it.
    let bumps = shared.epoch().wrapping_sub(epoch_before);
    assert!(u64::from(bumps) >= PING_PONGS / 20, "only {bumps} notifies found a sleeper");
    assert_eq!(shared.event().waiters(), 0, "a wait did not give back its count");
}

#[test]
fn a_waiter_whose_membarrier_is_refused_sleeps_in_capped_slices_and_misses_nothing() {
    let _serial = process_lock();
    let (name, _cleanup) = unique_segment("notify", "unbarriered");
    let shared = Shared::create(&name);
    let mut child = spawn_child("unbarriered", &[&name, &STREAM.to_string()]);
    // The idle wait of the child ends at the 1 ms cap, far before its 5 s timeout.
    assert!(child.report_u64("capped_ms", CHILD_TIMEOUT) < 1_000, "the sleep was not capped");
    let (tail, head) = (shared.word(TAIL), shared.word(HEAD));
    for value in 0..STREAM {
        // Acquire: pairs with the consumer's Release store of `HEAD`.
        while value - head.load(Ordering::Acquire) >= RING {
            thread::sleep(Duration::from_micros(20));
        }
        shared.slot(value).store(value, Ordering::Relaxed);
        // Release: publishes the slot to the consumer's Acquire load of `TAIL`.
        tail.store(value + 1, Ordering::Release);
        shared.event().notify_one();
        if value % 16 == 0 {
            // Let the consumer catch up and go to sleep now and then.
            thread::sleep(Duration::from_micros(300));
        }
    }
    assert_eq!(child.report_u64("took", CHILD_TIMEOUT), STREAM);
    child.expect_success(CHILD_TIMEOUT);
}
