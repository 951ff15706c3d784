//! loom models of the MPMC queue (`shmlane_queue::mpmc`): with two producers and two
//! consumers every item arrives exactly once, and values are handed over through loom's
//! `UnsafeCell`, so an ordering too weak for the handoff is reported as a data race.

use loom::sync::Arc;
use loom::thread;
use shmlane_queue::model::mpmc::Queue;
use shmlane_workspace::model;

/// Producers never find the queue full (two items, two slots); consumers make two attempts
/// each without waiting for progress (loom cannot bound spinning on four threads), and the
/// main thread drains what they left. Every item must surface exactly once.
#[test]
fn two_producers_two_consumers_every_item_exactly_once() {
    // Four threads: bounded at two preemptions, ~25 s. With three it takes ~260 s in release
    // and also passes: run that (`LOOM_MAX_PREEMPTIONS=3 cargo test --release --features
    // loom`) before changing the protocol.
    model::bounded(2).check(|| {
        let queue = Arc::new(Queue::<u32>::new(2));
        let producers: Vec<_> = [1, 2]
            .into_iter()
            .map(|item| {
                let queue = queue.clone();
                thread::spawn(move || queue.try_push(item).unwrap())
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let queue = queue.clone();
                thread::spawn(move || (0..2).filter_map(|_| queue.try_pop()).collect::<Vec<_>>())
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        let mut all: Vec<u32> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
        all.extend(std::iter::from_fn(|| queue.try_pop()));
        all.sort();
        assert_eq!(all, [1, 2]);
    });
}

/// Asks for one slot (the queue rounds up to two) and moves three items: every slot is reused.
#[test]
fn wrap_around_hands_each_item_over_in_order() {
    model::check(|| {
        let queue = Arc::new(Queue::<u32>::new(1));
        let producer = {
            let queue = queue.clone();
            thread::spawn(move || {
                for item in 0..3 {
                    while queue.try_push(item).is_err() {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 3 {
            match queue.try_pop() {
                Some(item) => got.push(item),
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
    });
}
