//! loom models of the SPSC queue (`shmlane_queue::spsc`): order and completeness across
//! wrap-around, batch commits, and leftover drops, for both ways a consumer learns what is
//! ready (`indexed`: the producer's `tail`, as on the heap; `stamped`: per-slot stamps, as in a
//! segment). Values travel through loom's `UnsafeCell`, so a store/load ordering too weak to
//! hand a value over is reported as a data race.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use shmlane_queue::model::spsc::{self, PushError};
use shmlane_workspace::model;

/// Pushes `values` one at a time, yielding while the queue is full.
macro_rules! push_all {
    ($producer:expr, $values:expr) => {
        for mut value in $values {
            loop {
                match $producer.try_push(value) {
                    Ok(()) => break,
                    Err(PushError::Full(back)) => {
                        value = back;
                        thread::yield_now();
                    }
                    Err(PushError::Corrupt(_)) => panic!("a heap queue cannot be corrupt"),
                }
            }
        }
    };
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The models, once per protocol: a module named for it, over its constructor.
macro_rules! models {
    ($($protocol:ident: $new:ident;)*) => {$(
        mod $protocol {
            use super::*;

            #[test]
            fn order_is_kept_and_nothing_lost_across_wrap_around_with_capacity_two() {
                model::check(|| {
                    let (mut producer, mut consumer) = spsc::$new::<u32>(2);
                    let pusher = thread::spawn(move || push_all!(producer, 0..3));
                    let mut got = Vec::new();
                    while got.len() < 3 {
                        match consumer.try_pop() {
                            Ok(value) => got.push(value),
                            Err(_) => thread::yield_now(),
                        }
                    }
                    pusher.join().unwrap();
                    assert_eq!(got, [0, 1, 2]);
                    assert!(consumer.is_empty());
                });
            }

            #[test]
            fn a_batch_commit_hands_over_every_value_in_it() {
                model::check(|| {
                    let (mut producer, mut consumer) = spsc::$new::<u32>(2);
                    let pusher = thread::spawn(move || {
                        let mut sent = 0;
                        let values = [10, 11, 12];
                        while sent < values.len() {
                            let pushed = producer.push_slice(&values[sent..]);
                            if pushed == 0 {
                                thread::yield_now();
                            }
                            sent += pushed;
                        }
                    });
                    let mut got = Vec::new();
                    let mut buffer = [0u32; 2];
                    while got.len() < 3 {
                        let popped = consumer.pop_slice(&mut buffer);
                        if popped == 0 {
                            thread::yield_now();
                        }
                        got.extend_from_slice(&buffer[..popped]);
                    }
                    pusher.join().unwrap();
                    assert_eq!(got, [10, 11, 12]);
                });
            }

            #[test]
            fn leftovers_are_dropped_once_whichever_end_goes_last() {
                model::check(|| {
                    let drops = Arc::new(AtomicUsize::new(0));
                    let (mut producer, mut consumer) = spsc::$new::<Counted>(2);
                    let counter = drops.clone();
                    let pusher = thread::spawn(move || {
                        push_all!(producer, (0..2).map(|_| Counted(counter.clone())));
                    });
                    // Pop at most one, racing the pushes; the rest are leftovers.
                    let _ = consumer.try_pop();
                    drop(consumer);
                    pusher.join().unwrap();
                    assert_eq!(drops.load(Ordering::Relaxed), 2);
                });
            }
        }
    )*};
}

models! {
    indexed: new;
    stamped: new_stamped;
}
