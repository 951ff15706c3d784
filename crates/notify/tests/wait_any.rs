//! `wait_any`: one sleep on many event counts, woken by a notify on any of them; through
//! `futex_waitv` for up to `WAITV_MAX` event counts, by polling beyond (both checked here).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shmlane_notify::{EventCount, WAITV_MAX, WaitOutcome, wait_any};

/// Waits on all of `events` until `flags[target]` is set by another thread that notifies
/// `events[target]`; returns the outcome of the sleep that saw it.
fn woken_by(count: usize, target: usize) -> WaitOutcome {
    let events: Vec<EventCount> = (0..count).map(|_| EventCount::new()).collect();
    let flags: Vec<AtomicBool> = (0..count).map(|_| AtomicBool::new(false)).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            // Release: pairs with the waiter's Acquire loads.
            flags[target].store(true, Ordering::Release);
            events[target].notify_one();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waits: Vec<_> = events.iter().map(EventCount::prepare_wait).collect();
            // Acquire: as above.
            if flags[target].load(Ordering::Acquire) {
                return WaitOutcome::Notified;
            }
            let outcome = wait_any(&waits, Some(deadline));
            if outcome == WaitOutcome::TimedOut || flags[target].load(Ordering::Acquire) {
                return outcome;
            }
        }
    })
}

#[test]
fn a_notify_on_any_of_many_event_counts_wakes_the_one_sleep() {
    for (count, target) in [(1, 0), (8, 5), (64, 63), (WAITV_MAX, 0)] {
        assert_eq!(woken_by(count, target), WaitOutcome::Notified, "{count} event counts");
    }
}

#[test]
fn more_event_counts_than_one_system_call_takes_are_polled() {
    assert_eq!(woken_by(WAITV_MAX * 2, WAITV_MAX + 7), WaitOutcome::Notified);
}

#[test]
fn with_no_notify_the_deadline_ends_the_sleep_and_every_waiter_is_withdrawn() {
    let events: Vec<EventCount> = (0..3).map(|_| EventCount::new()).collect();
    let waits: Vec<_> = events.iter().map(EventCount::prepare_wait).collect();
    let started = Instant::now();
    let outcome = wait_any(&waits, Some(started + Duration::from_millis(30)));
    assert_eq!(outcome, WaitOutcome::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(30));
    drop(waits);
    assert!(events.iter().all(|e| e.waiters() == 0));
}

#[test]
fn a_notify_before_the_sleep_returns_at_once() {
    let events = [EventCount::new(), EventCount::new()];
    let waits = [events[0].prepare_wait(), events[1].prepare_wait()];
    events[1].notify_one();
    assert_eq!(wait_any(&waits, None), WaitOutcome::Notified);
}
