//! The heap MPMC queue: order for one thread, edges, leftovers, exactly-once under contention.
//!
//! Also run under Miri (`.ci/run`), which checks the queue's unsafe slot accesses; the long
//! loops there are shortened (`cfg(miri)`): Miri runs these loops about 10^4 times slower.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use shmlane_queue::mpmc::Queue;

#[test]
fn one_thread_sees_fifo_order_and_the_edges() {
    let queue = Queue::new(3);
    assert_eq!(queue.capacity(), 4);
    assert!(queue.is_empty());
    for i in 0..4 {
        queue.try_push(i).unwrap();
    }
    assert!(queue.is_full());
    assert_eq!(queue.try_push(9), Err(9));
    assert_eq!(queue.len(), 4);
    let popped: Vec<i32> = std::iter::from_fn(|| queue.try_pop()).collect();
    assert_eq!(popped, [0, 1, 2, 3]);
    assert_eq!(queue.try_pop(), None);
}

#[test]
fn capacity_is_at_least_two() {
    // One slot cannot tell "full for p" from "free for p + 1" (see the module docs).
    let queue = Queue::new(1);
    assert_eq!(queue.capacity(), 2);
    queue.try_push(1).unwrap();
    queue.try_push(2).unwrap();
    assert_eq!(queue.try_push(3), Err(3));
    assert_eq!((queue.try_pop(), queue.try_pop()), (Some(1), Some(2)));
}

#[test]
fn wrap_around_many_laps_keeps_order() {
    let queue = Queue::new(2);
    let laps: u64 = if cfg!(miri) { 200 } else { 10_000 };
    for lap in 0..laps {
        queue.try_push(lap * 2).unwrap();
        queue.try_push(lap * 2 + 1).unwrap();
        assert_eq!(queue.try_pop(), Some(lap * 2));
        assert_eq!(queue.try_pop(), Some(lap * 2 + 1));
    }
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn leftover_items_are_dropped_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let queue = Queue::new(4);
    for _ in 0..4 {
        assert!(queue.try_push(Counted(drops.clone())).is_ok());
    }
    drop(queue.try_pop());
    assert!(queue.try_push(Counted(drops.clone())).is_ok());
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    drop(queue);
    assert_eq!(drops.load(Ordering::Relaxed), 5);
}

#[test]
fn zero_sized_and_large_values() {
    let units = Queue::new(2);
    units.try_push(()).unwrap();
    units.try_push(()).unwrap();
    assert_eq!(units.try_push(()), Err(()));
    assert_eq!(units.try_pop(), Some(()));
    let blocks = Queue::new(2);
    let block: [u64; 512] = std::array::from_fn(|i| i as u64);
    blocks.try_push(block).unwrap();
    assert_eq!(blocks.try_pop(), Some(block));
}

#[test]
fn four_producers_and_four_consumers_deliver_each_value_exactly_once() {
    // Under Miri 100 per producer (400 in all): still six laps of the 64-slot ring.
    const PER_PRODUCER: u64 = if cfg!(miri) { 100 } else { 100_000 };
    const PRODUCERS: u64 = 4;
    let queue = Arc::new(Queue::new(64));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let queue = queue.clone();
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let mut value = p * PER_PRODUCER + i;
                    while let Err(back) = queue.try_push(value) {
                        value = back;
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let taken = Arc::new(AtomicUsize::new(0));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (queue, taken) = (queue.clone(), taken.clone());
            thread::spawn(move || {
                let mut got = Vec::new();
                let mut last_per_producer = [None::<u64>; PRODUCERS as usize];
                while taken.load(Ordering::Relaxed) < (PRODUCERS * PER_PRODUCER) as usize {
                    match queue.try_pop() {
                        Some(value) => {
                            taken.fetch_add(1, Ordering::Relaxed);
                            // Each producer's values reach any one consumer in push order.
                            let producer = (value / PER_PRODUCER) as usize;
                            assert!(last_per_producer[producer] < Some(value));
                            last_per_producer[producer] = Some(value);
                            got.push(value);
                        }
                        None => thread::yield_now(),
                    }
                }
                got
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let mut all = HashSet::new();
    for consumer in consumers {
        for value in consumer.join().unwrap() {
            assert!(all.insert(value), "{value} delivered twice");
        }
    }
    assert_eq!(all.len() as u64, PRODUCERS * PER_PRODUCER);
    assert!(queue.is_empty());
}
