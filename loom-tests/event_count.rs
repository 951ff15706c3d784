//! loom models of the event count (`shmlane_notify::EventCount`) and the strategies that park
//! on it. The futex is loom's Mutex + Condvar model (see `crates/notify/src/futex.rs`): a lost
//! wake-up leaves a waiter asleep on the Condvar forever, which loom reports as a deadlock.
//! Each model runs without and with one spurious wake-up.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::thread;
use shmlane_notify::model::{Backoff, Blocking, EventCount, WaitOutcome, WaitStrategy, wait_any};
use shmlane_queue::model::spsc;
use shmlane_workspace::model;

/// Spurious wake-ups each model is run with.
const SPURIOUS: [usize; 2] = [0, 1];

/// Waits with no deadline until `flag` is set: the protocol every caller follows.
fn wait_for_flag(event: &EventCount, flag: &AtomicBool) {
    loop {
        // Acquire: pairs with the notifier's Release store.
        if flag.load(Ordering::Acquire) {
            return;
        }
        let wait = event.prepare_wait();
        // Acquire: as above.
        if flag.load(Ordering::Acquire) {
            return; // dropping `wait` cancels it
        }
        wait.wait(None);
    }
}

/// Sets `flag`, then notifies: the protocol every notifier follows.
fn set_and_notify(event: &EventCount, flag: &AtomicBool, all: bool) {
    // Release: pairs with the waiter's Acquire load.
    flag.store(true, Ordering::Release);
    if all { event.notify_all() } else { event.notify_one() }
}

#[test]
fn one_notifier_one_waiter_never_lose_a_wake_up() {
    for spurious in SPURIOUS {
        model::check(move || {
            let event = Arc::new(EventCount::with_spurious_wakeups(spurious));
            let flag = Arc::new(AtomicBool::new(false));
            let notifier = {
                let (event, flag) = (event.clone(), flag.clone());
                thread::spawn(move || set_and_notify(&event, &flag, false))
            };
            wait_for_flag(&event, &flag);
            notifier.join().unwrap();
            assert_eq!(event.waiters(), 0, "every prepared wait ended");
        });
    }
}

#[test]
fn notify_all_wakes_both_of_two_waiters() {
    for spurious in SPURIOUS {
        model::check(move || {
            let event = Arc::new(EventCount::with_spurious_wakeups(spurious));
            let flag = Arc::new(AtomicBool::new(false));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let (event, flag) = (event.clone(), flag.clone());
                    thread::spawn(move || wait_for_flag(&event, &flag))
                })
                .collect();
            set_and_notify(&event, &flag, true);
            for waiter in waiters {
                waiter.join().unwrap();
            }
            assert_eq!(event.waiters(), 0);
        });
    }
}

#[test]
fn a_timed_wait_returns_and_notified_means_the_change_is_visible() {
    // The model's timed futex wait returns TimedOut at once (a timer may fire at any moment):
    // the waiter must come back either way, and `Notified` must come with the change.
    for notify in [false, true] {
        model::check(move || {
            let event = Arc::new(EventCount::new());
            let flag = Arc::new(AtomicBool::new(false));
            let notifier = notify.then(|| {
                let (event, flag) = (event.clone(), flag.clone());
                thread::spawn(move || set_and_notify(&event, &flag, false))
            });
            let wait = event.prepare_wait();
            // Acquire: pairs with the notifier's Release store.
            if flag.load(Ordering::Acquire) {
                drop(wait);
            } else {
                let outcome = wait.wait(Some(std::time::Duration::from_secs(3600)));
                if outcome == WaitOutcome::Notified {
                    // Acquire: as above.
                    assert!(flag.load(Ordering::Acquire), "notified before the change was seen");
                }
                if !notify {
                    assert_eq!(outcome, WaitOutcome::TimedOut, "notified with no notifier");
                }
            }
            if let Some(notifier) = notifier {
                notifier.join().unwrap();
            }
            assert_eq!(event.waiters(), 0);
        });
    }
}

#[test]
fn a_cancelled_wait_does_not_swallow_the_wake_up_of_another_waiter() {
    // One waiter prepares and cancels (its condition, a second flag, is met) while another
    // really waits; `notify_one` races both.
    model::check(|| {
        let event = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let canceller = {
            let event = event.clone();
            thread::spawn(move || drop(event.prepare_wait()))
        };
        let waiter = {
            let (event, flag) = (event.clone(), flag.clone());
            thread::spawn(move || wait_for_flag(&event, &flag))
        };
        set_and_notify(&event, &flag, false);
        canceller.join().unwrap();
        waiter.join().unwrap();
        assert_eq!(event.waiters(), 0);
    });
}

#[test]
fn notifies_before_and_after_a_wait_are_both_delivered() {
    // Two rounds through one event count: a counter the waiter needs to reach 2, bumped and
    // notified twice. The epoch moves between rounds; no key may go stale.
    for spurious in SPURIOUS {
        model::check(move || {
            let event = Arc::new(EventCount::with_spurious_wakeups(spurious));
            let count = Arc::new(AtomicU32::new(0));
            let notifier = {
                let (event, count) = (event.clone(), count.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        // Release: pairs with the waiter's Acquire load.
                        count.fetch_add(1, Ordering::Release);
                        event.notify_one();
                    }
                })
            };
            let mut strategy = Blocking::new().recheck_every(None);
            for round in 1..=2 {
                // Acquire: pairs with the notifier's Release increment.
                let poll = || (count.load(Ordering::Acquire) >= round).then_some(());
                strategy.wait_for(&event, None, poll).unwrap();
            }
            notifier.join().unwrap();
        });
    }
}

/// A producer pushes two values, notifying after each; the consumer takes them with
/// `strategy`, which must park on the event count without missing either.
fn queue_hand_off(strategy: impl WaitStrategy + Copy + Send + Sync + 'static) {
    for spurious in SPURIOUS {
        model::check(move || {
            let event = Arc::new(EventCount::with_spurious_wakeups(spurious));
            let (mut producer, mut consumer) = spsc::new::<u32>(2);
            let pusher = {
                let event = event.clone();
                thread::spawn(move || {
                    for value in [7, 8] {
                        producer.try_push(value).unwrap();
                        event.notify_one();
                    }
                })
            };
            let mut strategy = strategy;
            for expected in [7, 8] {
                let got = strategy.wait_for(&event, None, || consumer.try_pop().ok());
                assert_eq!(got, Ok(expected));
            }
            pusher.join().unwrap();
            assert_eq!(event.waiters(), 0);
        });
    }
}

#[test]
fn blocking_strategy_takes_every_value_from_a_queue() {
    queue_hand_off(Blocking::new().recheck_every(None));
}

#[test]
fn backoff_strategy_takes_every_value_from_a_queue() {
    queue_hand_off(Backoff::new().spins(1).yields(1).recheck_every(None));
}

/// Waits with no deadline on both event counts at once (one `wait_any`, a WaitSet's sleep)
/// until either flag is set; returns which were.
fn wait_for_either(events: [&EventCount; 2], flags: [&AtomicBool; 2]) -> [bool; 2] {
    // Acquire: pairs with the notifiers' Release stores.
    let seen = || flags.map(|f| f.load(Ordering::Acquire));
    loop {
        if seen().contains(&true) {
            return seen();
        }
        // Both announced, then one fence (as `AnyOf`, a WaitSet's wait, prepares).
        let waits = EventCount::prepare_waits(&events);
        if seen().contains(&true) {
            return seen(); // dropping `waits` cancels them
        }
        wait_any(&waits, None);
    }
}

#[test]
fn one_wait_on_two_event_counts_never_loses_the_wake_up_of_either() {
    // One notifier on the second event count (or on both), against a waiter sleeping on both:
    // a lost wake-up leaves it asleep in the multi-word futex model, a deadlock for loom.
    for (both, spurious) in [(false, 0), (true, 0), (false, 1)] {
        model::check(move || {
            let events = Arc::new([EventCount::with_spurious_wakeups(spurious), EventCount::new()]);
            let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
            let notifiers: Vec<_> = (if both { 0..2 } else { 1..2 })
                .map(|i| {
                    let (events, flags) = (events.clone(), flags.clone());
                    thread::spawn(move || set_and_notify(&events[i], &flags[i], false))
                })
                .collect();
            let seen = wait_for_either([&events[0], &events[1]], [&flags[0], &flags[1]]);
            assert!(seen[1] || both && seen[0], "woken with no flag set: {seen:?}");
            for notifier in notifiers {
                notifier.join().unwrap();
            }
            assert_eq!((events[0].waiters(), events[1].waiters()), (0, 0));
        });
    }
}

#[test]
fn a_timed_wait_on_two_event_counts_returns_and_notified_means_a_change() {
    model::check(|| {
        let events = Arc::new([EventCount::new(), EventCount::new()]);
        let flag = Arc::new(AtomicBool::new(false));
        let notifier = {
            let (events, flag) = (events.clone(), flag.clone());
            thread::spawn(move || set_and_notify(&events[0], &flag, false))
        };
        let waits = [events[0].prepare_wait(), events[1].prepare_wait()];
        // Acquire: pairs with the notifier's Release store.
        if !flag.load(Ordering::Acquire) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
            if wait_any(&waits, Some(deadline)) == WaitOutcome::Notified {
                // Acquire: as above.
                assert!(flag.load(Ordering::Acquire), "notified before the change was seen");
            }
        }
        drop(waits);
        notifier.join().unwrap();
        assert_eq!((events[0].waiters(), events[1].waiters()), (0, 0));
    });
}
