//! The heap SPSC queue: order, edges, wrap-around, batches, leftover drops, odd sizes, threads.
//!
//! Also run under Miri (`.ci/run`), which checks the queue's unsafe slot accesses; the long
//! loops there are shortened (`cfg(miri)`): Miri runs these loops about 10^4 times slower.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use shmlane_queue::spsc::{self, PopError, PushError};

#[test]
fn values_come_out_in_push_order() {
    let (mut producer, mut consumer) = spsc::new::<u32>(8);
    for i in 0..5 {
        producer.try_push(i).unwrap();
    }
    let popped: Vec<u32> = (0..5).map(|_| consumer.try_pop().unwrap()).collect();
    assert_eq!(popped, [0, 1, 2, 3, 4]);
    assert_eq!(consumer.try_pop(), Err(PopError::Empty));
}

#[test]
fn capacity_rounds_up_to_a_power_of_two() {
    assert_eq!(spsc::new::<u8>(3).0.capacity(), 4);
    assert_eq!(spsc::new::<u8>(0).1.capacity(), 1);
    assert_eq!(spsc::new::<u8>(1024).0.capacity(), 1024);
}

#[test]
fn a_full_queue_gives_the_value_back_and_an_empty_one_reports_empty() {
    let (mut producer, mut consumer) = spsc::new::<String>(2);
    assert!(consumer.is_empty());
    assert_eq!(producer.slots(), 2);
    producer.try_push("a".into()).unwrap();
    producer.try_push("b".into()).unwrap();
    assert!(producer.is_full());
    match producer.try_push("c".into()) {
        Err(PushError::Full(back)) => assert_eq!(back, "c"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(consumer.slots(), 2);
    assert_eq!((consumer.len(), producer.len()), (2, 2));
    assert!(!producer.is_empty());
    assert_eq!(consumer.peek().unwrap(), "a");
    assert_eq!(consumer.try_pop().unwrap(), "a");
    assert_eq!(producer.slots(), 1);
    assert_eq!(consumer.try_pop().unwrap(), "b");
    assert_eq!(consumer.try_pop(), Err(PopError::Empty));
    assert_eq!(consumer.peek(), Err(PopError::Empty));
    assert!(consumer.is_empty());
    assert_eq!((consumer.len(), producer.len()), (0, 0));
    assert!(producer.is_empty());
}

/// Rounds of the wrap-around test: under Miri, enough to wrap the 4-slot ring about 100 times.
const WRAP_ROUNDS: u64 = if cfg!(miri) { 200 } else { 10_000 };

#[test]
fn wrap_around_many_times_keeps_order() {
    let (mut producer, mut consumer) = spsc::new::<u64>(4);
    let (mut next_in, mut next_out) = (0u64, 0u64);
    for round in 0..WRAP_ROUNDS {
        let burst = round % 5; // 0..=4: empty, partial and full rings
        for _ in 0..burst {
            producer.try_push(next_in).unwrap();
            next_in += 1;
        }
        while let Ok(value) = consumer.try_pop() {
            assert_eq!(value, next_out);
            next_out += 1;
        }
    }
    assert_eq!(next_in, next_out);
    assert_eq!(next_in, (0..WRAP_ROUNDS).map(|r| r % 5).sum::<u64>());
}

#[test]
fn slices_push_what_fits_and_pop_what_is_there() {
    let (mut producer, mut consumer) = spsc::new::<u16>(8);
    assert_eq!(producer.push_slice(&[1, 2, 3]), 3);
    assert_eq!(producer.push_slice(&[4, 5, 6, 7, 8, 9, 10]), 5);
    assert_eq!(producer.push_slice(&[11]), 0);
    let mut out = [0u16; 6];
    assert_eq!(consumer.pop_slice(&mut out), 6);
    assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    assert_eq!(consumer.peek_copy(), Ok(7));
    assert_eq!(producer.push_slice(&[11, 12, 13, 14, 15, 16, 17]), 6);
    let mut rest = [0u16; 16];
    assert_eq!(consumer.pop_slice(&mut rest), 8);
    assert_eq!(rest[..8], [7, 8, 11, 12, 13, 14, 15, 16]);
    assert_eq!(consumer.pop_slice(&mut rest), 0);
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn leftover_items_are_dropped_exactly_once_when_both_ends_go() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut producer, mut consumer) = spsc::new::<Counted>(4);
    for _ in 0..3 {
        producer.try_push(Counted(drops.clone())).unwrap();
    }
    drop(consumer.try_pop().unwrap());
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    // Wrap once so leftovers straddle the end of the ring.
    for _ in 0..2 {
        producer.try_push(Counted(drops.clone())).unwrap();
    }
    drop(consumer.try_pop().unwrap());
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    drop(producer);
    assert_eq!(drops.load(Ordering::Relaxed), 2, "the consumer still owns the leftovers");
    drop(consumer);
    assert_eq!(drops.load(Ordering::Relaxed), 5);
}

#[test]
fn zero_sized_values_are_counted() {
    let (mut producer, mut consumer) = spsc::new::<()>(8);
    for _ in 0..8 {
        producer.try_push(()).unwrap();
    }
    assert!(matches!(producer.try_push(()), Err(PushError::Full(()))));
    assert_eq!(consumer.slots(), 8);
    for _ in 0..8 {
        consumer.try_pop().unwrap();
    }
    assert_eq!(consumer.try_pop(), Err(PopError::Empty));
}

#[test]
fn large_values_arrive_intact() {
    let (mut producer, mut consumer) = spsc::new::<Box<[u64; 512]>>(2);
    let (mut big_p, mut big_c) = spsc::new::<[u64; 512]>(2);
    for seed in 0..10u64 {
        let block: [u64; 512] = std::array::from_fn(|i| seed * 1000 + i as u64);
        producer.try_push(Box::new(block)).unwrap();
        big_p.try_push(block).unwrap();
        assert_eq!(*consumer.try_pop().unwrap(), block);
        assert_eq!(big_c.try_pop().unwrap(), block);
    }
}

/// A million values between two threads, in slices and one by one, through `producer` and
/// `consumer` (either protocol).
macro_rules! two_threads_move_a_million_values_in_order {
    ($producer:ident, $consumer:ident) => {{
        // Under Miri a few thousand: still about 15 laps of the 256-slot ring.
        const N: u64 = if cfg!(miri) { 4_000 } else { 1_000_000 };
        let pusher = thread::spawn(move || {
            let mut next = 0;
            while next < N {
                if next % 3 == 0 {
                    let batch: Vec<u64> = (next..(next + 7).min(N)).collect();
                    next += $producer.push_slice(&batch) as u64;
                } else if $producer.try_push(next).is_ok() {
                    next += 1;
                }
            }
        });
        let mut expected = 0;
        let mut buffer = [0u64; 5];
        while expected < N {
            let got = $consumer.pop_slice(&mut buffer);
            for value in &buffer[..got] {
                assert_eq!(*value, expected);
                expected += 1;
            }
            if let Ok(value) = $consumer.try_pop() {
                assert_eq!(value, expected);
                expected += 1;
            }
            // Once the next value is ready, it stays ready until popped.
            if let Ok(value) = $consumer.peek_copy() {
                assert_eq!(value, expected);
                assert!(!$consumer.is_empty());
            }
        }
        pusher.join().unwrap();
        assert_eq!($consumer.try_pop(), Err(PopError::Empty));
        assert!($consumer.is_empty());
    }};
}

#[test]
fn two_threads_move_a_million_values_in_order() {
    let (mut producer, mut consumer) = spsc::new::<u64>(256);
    two_threads_move_a_million_values_in_order!(producer, consumer);
}

#[test]
fn two_threads_move_a_million_values_in_order_with_stamps() {
    let (mut producer, mut consumer) = spsc::new_stamped::<u64>(256);
    two_threads_move_a_million_values_in_order!(producer, consumer);
}
