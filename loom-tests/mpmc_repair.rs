//! loom models of the shared MPMC queue's recovery (`shmlane_queue::mpmc::SharedMpmc`): a slot
//! claimed by a producer that died before writing it is skipped exactly once, concurrently with
//! live producers and consumers, and no value is lost or duplicated; a slot held by a consumer
//! that died is freed by a producer, and only that one value is lost (and counted).
//!
//! The dead producer is a role word naming a pid that cannot exist (proven dead by `/proc`);
//! the live participants are this process. The queue lives on heap-allocated loom atomics.

use crossbeam_utils::CachePadded;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use shmlane_queue::model::mpmc::{Entry, MpmcConsumer, SharedMpmc};
use shmlane_queue::model::spsc::Slot;
use shmlane_segment::RoleOwner;
use shmlane_workspace::model;

/// The atomics of a queue of 2 slots with 2 producer and 2 consumer entries.
struct Abandoned {
    slots: Vec<Slot<u64>>,
    head: AtomicU64,
    tail: AtomicU64,
    producers: Vec<Entry>,
    consumers: Vec<Entry>,
    lost: AtomicU64,
    skipped: AtomicU64,
}

fn entry(role: u64, announced: u64) -> Entry {
    CachePadded::new([AtomicU64::new(role), AtomicU64::new(announced)])
}

/// An owner proven dead: a presence token without a presence file (removed only after its
/// process was proven dead).
fn dead() -> RoleOwner {
    RoleOwner::from_raw(0xdead_0000_1007_0001).expect("a non-zero word")
}

impl Abandoned {
    /// The state a producer leaves when killed after claiming position 0 (tail = 1) and
    /// before writing it.
    fn new() -> Arc<Self> {
        let dead = dead();
        Arc::new(Abandoned {
            // Slot 0: claimed for position 0, never written (seq 0). Slot 1: free for 1.
            slots: (0..2).map(Slot::new).collect(),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(1),
            producers: vec![entry(dead.to_raw(), 1), entry(0, 0)],
            consumers: vec![entry(0, 0), entry(0, 0)],
            lost: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }

    fn queue(&self) -> SharedMpmc<'_, u64> {
        SharedMpmc::from_parts(
            &self.slots,
            &self.head,
            &self.tail,
            &self.producers,
            &self.consumers,
            &self.lost,
            &self.skipped,
        )
        .with_patience(1)
    }
}

/// Runs `f` on (a clone of) `state` in a new thread.
fn spawn_on<T: Send + 'static>(
    state: &Arc<Abandoned>,
    f: impl FnOnce(&Abandoned) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let state = state.clone();
    thread::spawn(move || f(&state))
}

/// Pops `count` values, yielding while `consumer` finds nothing.
fn pop_spinning(consumer: &mut MpmcConsumer<'_, u64>, count: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < count {
        match consumer.try_pop() {
            Ok(value) => got.push(value),
            Err(_) => thread::yield_now(),
        }
    }
    got
}

#[test]
fn a_consumer_skips_the_dead_producers_slot_while_a_live_producer_pushes() {
    model::check(|| {
        let state = Abandoned::new();
        let producer = spawn_on(&state, |state| {
            let mut producer = state.queue().producer().unwrap();
            producer.try_push(7).unwrap();
        });
        let mut consumer = state.queue().consumer().unwrap();
        let value = pop_spinning(&mut consumer, 1)[0];
        producer.join().unwrap();
        assert_eq!(value, 7);
        assert!(consumer.try_pop().is_err());
        assert_eq!(state.skipped.load(Ordering::Relaxed), 1);
        assert_eq!(state.lost.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn two_consumers_repairing_at_once_skip_the_slot_once_and_lose_nothing() {
    // Every stuck poll scans the entries, so executions are long: raise loom's per-execution
    // branch budget (a larger `LOOM_MAX_BRANCHES` still applies).
    let mut checker = model::bounded(model::DEFAULT_PREEMPTIONS);
    checker.max_branches = checker.max_branches.max(20_000);
    checker.check(|| {
        let state = Abandoned::new();
        // The value behind the abandoned slot, pushed before the race.
        state.queue().producer().unwrap().try_push(7).unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                spawn_on(&state, |state| {
                    let mut consumer = state.queue().consumer().unwrap();
                    (0..2).filter_map(|_| consumer.try_pop().ok()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut got: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
        let mut last = state.queue().consumer().unwrap();
        got.extend(std::iter::from_fn(|| last.try_pop().ok()));
        assert_eq!(got, [7]);
        assert_eq!(state.skipped.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn a_producer_frees_the_slot_of_a_dead_consumer_and_only_that_value_is_lost() {
    model::check(|| {
        let state = Abandoned::new();
        // Undo the dead producer: position 0 is written normally, then 1.
        state.producers[0][0].store(0, Ordering::Relaxed);
        state.tail.store(0, Ordering::Relaxed);
        {
            let mut producer = state.queue().producer().unwrap();
            producer.try_push(1).unwrap();
            producer.try_push(2).unwrap();
        }
        // A consumer claimed position 0 (value 1) and died before releasing the slot.
        state.head.store(1, Ordering::Relaxed);
        state.consumers[0][0].store(dead().to_raw(), Ordering::Relaxed);
        state.consumers[0][1].store(1, Ordering::Relaxed);
        let producer = spawn_on(&state, |state| {
            let mut producer = state.queue().producer().unwrap();
            while producer.try_push(3).is_err() {
                thread::yield_now();
            }
        });
        let mut consumer = state.queue().consumer().unwrap();
        let got = pop_spinning(&mut consumer, 2);
        producer.join().unwrap();
        assert_eq!(got, [2, 3]);
        assert_eq!(state.lost.load(Ordering::Relaxed), 1);
        assert_eq!(state.skipped.load(Ordering::Relaxed), 0);
    });
}

/// A consumer with no patience at all polls a slot a live producer is filling: whatever it
/// observes of the announcement, it must never skip the slot.
#[test]
fn a_live_producers_slot_is_never_skipped_however_impatient_the_consumer() {
    model::check(|| {
        let state = Abandoned::new();
        // No dead producer here: a fresh, empty queue.
        state.producers[0][0].store(0, Ordering::Relaxed);
        state.producers[0][1].store(0, Ordering::Relaxed);
        state.tail.store(0, Ordering::Relaxed);
        let producer =
            spawn_on(&state, |state| state.queue().producer().unwrap().try_push(5).unwrap());
        let mut consumer = state.queue().consumer().unwrap();
        let value = pop_spinning(&mut consumer, 1)[0];
        producer.join().unwrap();
        assert_eq!(value, 5);
        assert_eq!(state.skipped.load(Ordering::Relaxed), 0);
    });
}
