//! The event count and the wait strategies between threads of one process: what each strategy
//! returns, when it gives up, how `Backoff` steps from spinning to parking, what `Periodic`
//! learns, and the event count's prepare / cancel / wait protocol.
//!
//! Deadlines bound every wait, so a lost wake-up fails a test instead of hanging it. Timing
//! bounds are correctness bounds (returned before or after a deadline, woken well before a
//! timeout), generous for a loaded two-core VM; speed is measured in the benches.

use std::sync::MutexGuard;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shmlane_notify::{
    Backoff, Blocking, BusySpin, EventCount, MIN_ADAPTIVE_SPINS, Periodic, TimedOut, WaitOutcome,
    WaitStrategy, Yield,
};
use shmlane_testkit::{process_lock, wait_for};

/// A deadline no test should reach: reaching it means a lost wake-up or a hang.
const FAR: Duration = Duration::from_secs(10);
/// A return later than this was not a wake-up but a timeout or a re-check.
const PROMPT: Duration = Duration::from_secs(5);
/// Slack allowed after a deadline before a wait must have returned.
const DEADLINE_SLACK: Duration = Duration::from_secs(2);
/// Deadline of the tests that wait for nothing.
const SHORT: Duration = Duration::from_millis(30);

/// Serialises the tests of this binary: they spin and time things, and on two cores two at once
/// would mostly measure the scheduler.
fn serial() -> MutexGuard<'static, ()> {
    process_lock()
}

/// Runs `$check(name, strategy)` for every strategy, in the configurations worth telling
/// apart: `Backoff` that parks at once, parking strategies without the re-check (so only a
/// notify or the deadline ends a park).
macro_rules! each_strategy {
    ($check:ident) => {
        $check("BusySpin", BusySpin);
        $check("Yield", Yield);
        $check("Backoff", Backoff::new());
        $check("Backoff parking at once", Backoff::new().spins(0).yields(0).recheck_every(None));
        $check("Blocking", Blocking::new());
        $check("Blocking without re-check", Blocking::new().recheck_every(None));
        $check("Periodic", Periodic::new());
        $check("Periodic without re-check", Periodic::new().recheck_every(None));
    };
}

/// The poll of a one-value mailbox (0: empty).
fn take(mailbox: &AtomicU64) -> Option<u64> {
    // Acquire: pairs with the publisher's Release store.
    match mailbox.swap(0, Ordering::Acquire) {
        0 => None,
        value => Some(value),
    }
}

// ---------------------------------------------------------------------------------------------
// Every strategy: the value, the deadline.
// ---------------------------------------------------------------------------------------------

fn receives_a_published_value(what: &str, mut strategy: impl WaitStrategy) {
    let event = EventCount::new();
    let mailbox = AtomicU64::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(20));
            // Release: pairs with the poll's Acquire.
            mailbox.store(42, Ordering::Release);
            event.notify_one();
        });
        let started = Instant::now();
        let result = strategy.wait_for(&event, Some(started + FAR), || take(&mailbox));
        let took = started.elapsed();
        assert_eq!(result, Ok(42), "{what}");
        assert!(took < PROMPT, "{what}: took {took:?}; the notify did not end its wait");
    });
    assert_eq!(event.waiters(), 0, "{what}: a prepared wait was not given back");
}

#[test]
fn every_strategy_returns_a_value_another_thread_publishes() {
    let _serial = serial();
    each_strategy!(receives_a_published_value);
}

fn times_out_after_a_poll_at_the_deadline(what: &str, mut strategy: impl WaitStrategy) {
    let event = EventCount::new();
    let deadline = Instant::now() + SHORT;
    let mut polls = 0_u64;
    let mut last_poll = None;
    let result = strategy.wait_for(&event, Some(deadline), || {
        polls += 1;
        last_poll = Some(Instant::now());
        None::<()>
    });
    let returned = Instant::now();
    assert_eq!(result, Err(TimedOut), "{what}");
    let last_poll = last_poll.expect("it polled");
    assert!(last_poll >= deadline, "{what}: gave up without a poll at or after the deadline");
    assert!(returned < deadline + DEADLINE_SLACK, "{what}: overran the deadline");
    assert!(polls >= 2, "{what}: polled {polls} time(s) in {SHORT:?}");
    assert_eq!(event.waiters(), 0, "{what}: a prepared wait was not given back");
}

#[test]
fn every_strategy_times_out_only_after_a_poll_at_or_after_the_deadline() {
    let _serial = serial();
    each_strategy!(times_out_after_a_poll_at_the_deadline);
}

fn takes_a_value_that_appears_at_the_deadline(what: &str, mut strategy: impl WaitStrategy) {
    let event = EventCount::new();
    let deadline = Instant::now() + SHORT;
    // Nothing until the deadline, then a value: the poll made at the deadline must win.
    let result =
        strategy.wait_for(&event, Some(deadline), || (Instant::now() >= deadline).then_some(7));
    assert_eq!(result, Ok(7), "{what}: reported a timeout though its last poll had a value");
}

#[test]
fn every_strategy_takes_a_value_its_poll_at_the_deadline_finds() {
    let _serial = serial();
    each_strategy!(takes_a_value_that_appears_at_the_deadline);
}

fn polls_once_past_its_deadline(what: &str, mut strategy: impl WaitStrategy) {
    let event = EventCount::new();
    let deadline = Instant::now();
    thread::sleep(Duration::from_millis(1));
    let mut polls = 0;
    let result = strategy.wait_for(&event, Some(deadline), || {
        polls += 1;
        Some(3)
    });
    assert_eq!((result, polls), (Ok(3), 1), "{what}: a ready value past the deadline");

    let started = Instant::now();
    let result = strategy.wait_for(&event, Some(deadline), || None::<()>);
    assert_eq!(result, Err(TimedOut), "{what}");
    assert!(started.elapsed() < DEADLINE_SLACK, "{what}: waited though the deadline had passed");
    assert_eq!(event.waiters(), 0, "{what}: a prepared wait was not given back");
}

#[test]
fn every_strategy_past_its_deadline_returns_a_ready_value_or_times_out_at_once() {
    let _serial = serial();
    each_strategy!(polls_once_past_its_deadline);
}

// ---------------------------------------------------------------------------------------------
// Parking: the re-check, and Backoff's steps.
// ---------------------------------------------------------------------------------------------

/// Publishes into `mailbox` without notifying, once the waiter sleeps, and waits with
/// `strategy` until `deadline` from now. Returns the result and how long the wait took.
fn wait_for_unnotified(
    mut strategy: impl WaitStrategy,
    deadline: Duration,
) -> (Result<u64, TimedOut>, Duration) {
    let event = EventCount::new();
    let mailbox = AtomicU64::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            wait_for("the waiter to park", FAR, || event.waiters() >= 1);
            // Past the poll that follows the announcement, into the sleep.
            thread::sleep(Duration::from_millis(20));
            // Release: pairs with the poll's Acquire. No notify: it "forgot".
            mailbox.store(5, Ordering::Release);
        });
        let started = Instant::now();
        let result = strategy.wait_for(&event, Some(started + deadline), || take(&mailbox));
        (result, started.elapsed())
    })
}

#[test]
fn the_recheck_finds_a_value_published_without_a_notify() {
    let _serial = serial();
    let recheck = Some(Duration::from_millis(20));
    for (what, (result, took)) in [
        ("Blocking", wait_for_unnotified(Blocking::new().recheck_every(recheck), FAR)),
        ("Backoff", wait_for_unnotified(Backoff::new().recheck_every(recheck), FAR)),
        ("Periodic", wait_for_unnotified(Periodic::new().recheck_every(recheck), FAR)),
    ] {
        assert_eq!(result, Ok(5), "{what}");
        assert!(took < PROMPT, "{what}: found it only after {took:?}; no re-check ran");
    }
}

#[test]
fn without_recheck_a_value_published_without_a_notify_is_found_only_at_the_deadline() {
    let _serial = serial();
    let deadline = Duration::from_millis(300);
    for (what, (result, took)) in [
        ("Blocking", wait_for_unnotified(Blocking::new().recheck_every(None), deadline)),
        ("Backoff", wait_for_unnotified(Backoff::new().recheck_every(None), deadline)),
    ] {
        assert_eq!(result, Ok(5), "{what}: the poll at the deadline finds it");
        assert!(took >= deadline, "{what}: returned after {took:?} though nothing woke it");
        assert!(took < deadline + DEADLINE_SLACK, "{what}: overran the deadline: {took:?}");
    }
}

/// Waits with `backoff` (no re-check) for a value published only once it has parked; returns
/// how many polls it made before announcing itself a waiter.
fn polls_before_parking(backoff: Backoff) -> usize {
    let event = EventCount::new();
    let mailbox = AtomicU64::new(0);
    let polls = AtomicUsize::new(0);
    let mut waiters_at_poll = Vec::new();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut backoff = backoff;
            let deadline = Instant::now() + FAR;
            backoff.wait_for(&event, Some(deadline), || {
                waiters_at_poll.push(event.waiters());
                // Relaxed: a count the observer reads; the sleep below is what it tests.
                polls.fetch_add(1, Ordering::Relaxed);
                take(&mailbox)
            })
        });
        wait_for("the waiter to park", FAR, || event.waiters() == 1);
        thread::sleep(Duration::from_millis(20));
        let parked_at = polls.load(Ordering::Relaxed);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(polls.load(Ordering::Relaxed), parked_at, "it kept polling while parked");
        // Release: pairs with the poll's Acquire.
        mailbox.store(9, Ordering::Release);
        event.notify_one();
        assert_eq!(waiter.join().unwrap(), Ok(9));
    });
    assert_eq!(event.waiters(), 0);
    let before = waiters_at_poll.iter().take_while(|&&waiters| waiters == 0).count();
    assert!(before < waiters_at_poll.len(), "no poll ran inside the prepared wait");
    before
}

#[test]
fn backoff_polls_through_its_spins_and_yields_before_it_parks() {
    let _serial = serial();
    let polls = polls_before_parking(Backoff::new().spins(10).yields(5).recheck_every(None));
    // 10 spinning polls, 5 yielding polls, and the park's own poll before it announces itself.
    assert!((15..=16).contains(&polls), "{polls} polls before parking, expected 10 + 5 (+ 1)");

    let polls = polls_before_parking(Backoff::new().spins(0).yields(0).recheck_every(None));
    assert!(polls <= 1, "{polls} polls before parking, with no spins and no yields");

    let polls = polls_before_parking(Backoff::new().spins(300).yields(0).recheck_every(None));
    assert!((300..=301).contains(&polls), "{polls} polls before parking, expected 300 (+ 1)");
}

#[test]
fn an_adaptive_backoff_that_spun_in_vain_spins_little_before_it_yields_and_parks() {
    let _serial = serial();
    let event = EventCount::new();
    let mut backoff = Backoff::new().spins(1_000).yields(5).recheck_every(None).adaptive();
    let polls = polls_before_parking(backoff);
    assert!((1_005..=1_006).contains(&polls), "{polls} polls at first, expected 1 000 + 5 (+ 1)");
    // Waits that only a yield ended (the value appears at the first poll after the spins)...
    let mut spins = 1_000;
    for _ in 0..8 {
        let mut polls = 0;
        let found = backoff.wait_for(&event, Some(Instant::now() + FAR), || {
            polls += 1;
            (polls > spins).then_some(())
        });
        assert_eq!(found, Ok(()));
        spins = (spins / 2).max(MIN_ADAPTIVE_SPINS as usize);
    }
    // ... leave it spinning the floor's worth before its yields.
    assert_eq!(spins, MIN_ADAPTIVE_SPINS as usize);
    let polls = polls_before_parking(backoff);
    assert!((21..=22).contains(&polls), "{polls} polls before parking, expected 16 + 5 (+ 1)");
}

// ---------------------------------------------------------------------------------------------
// Periodic.
// ---------------------------------------------------------------------------------------------

/// Pins the calling thread to the `index`-th CPU this process may use, when it may use two or
/// more. The periodic tests pin the publisher and the consumer apart, as a deployment would: on
/// a shared CPU the publisher's wake-up waits behind the consumer's spin (for up to a time
/// slice), and the test would measure the scheduler instead of the strategy.
fn pin_to_cpu(index: usize) {
    // The main thread's set (its tid is the pid): this thread's may already be pinned.
    let main_thread = Some(rustix::process::getpid());
    let allowed = rustix::thread::sched_getaffinity(main_thread).expect("sched_getaffinity");
    let cpus: Vec<usize> =
        (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu)).collect();
    if cpus.len() >= 2 {
        let mut one = rustix::thread::CpuSet::new();
        one.set(cpus[index % cpus.len()]);
        rustix::thread::sched_setaffinity(None, &one).expect("sched_setaffinity");
    }
}

/// Publishes one message per `period` on an absolute schedule (no drift), `count` of them,
/// each followed by a notify. Runs on the second CPU; the
/// consumer calls `pin_to_cpu(0)`.
fn publish_periodically(event: &EventCount, published: &AtomicU64, period: Duration, count: u64) {
    pin_to_cpu(1);
    let start = Instant::now() + period;
    for index in 0..count {
        let at = start + period * index as u32;
        if let Some(left) = at.checked_duration_since(Instant::now()) {
            thread::sleep(left);
        }
        // Release: pairs with the consumer's Acquire.
        published.fetch_add(1, Ordering::Release);
        event.notify_one();
    }
}

/// A consumer of [`publish_periodically`]'s messages: its poll takes one message.
struct Counter<'a> {
    published: &'a AtomicU64,
    taken: u64,
}

impl Counter<'_> {
    fn take(&mut self) -> Option<u64> {
        // Acquire: pairs with the publisher's Release.
        if self.published.load(Ordering::Acquire) > self.taken {
            self.taken += 1;
            Some(self.taken)
        } else {
            None
        }
    }

    fn next(&mut self, strategy: &mut Periodic, event: &EventCount) -> u64 {
        let deadline = Instant::now() + FAR;
        strategy.wait_for(event, Some(deadline), || self.take()).expect("a periodic message")
    }
}

fn assert_period_near(strategy: &Periodic, period: Duration, what: &str) {
    let learnt = strategy.period().unwrap_or_else(|| panic!("{what}: no period learnt"));
    let (low, high) = (period.mul_f64(0.7), period.mul_f64(1.3));
    assert!(
        (low..=high).contains(&learnt),
        "{what}: learnt {learnt:?} for traffic every {period:?}; stats {:?}",
        strategy.stats()
    );
}

#[test]
fn periodic_learns_the_period_and_catches_most_arrivals_on_time() {
    const PERIOD: Duration = Duration::from_millis(2);
    const LEARN: u64 = 30;
    const MEASURE: u64 = 100;
    let _serial = serial();
    let event = EventCount::new();
    let published = AtomicU64::new(0);
    pin_to_cpu(0);
    let mut strategy = Periodic::new();
    thread::scope(|s| {
        s.spawn(|| publish_periodically(&event, &published, PERIOD, LEARN + MEASURE));
        let mut counter = Counter { published: &published, taken: 0 };
        for expected in 1..=LEARN {
            assert_eq!(counter.next(&mut strategy, &event), expected);
        }
        assert_period_near(&strategy, PERIOD, "after learning");
        let learnt = strategy.stats();
        for expected in LEARN + 1..=LEARN + MEASURE {
            assert_eq!(counter.next(&mut strategy, &event), expected);
        }
        let stats = strategy.stats();
        assert_period_near(&strategy, PERIOD, "after measuring");
        let arrivals = stats.arrivals - learnt.arrivals;
        let on_time = stats.on_time - learnt.on_time;
        assert!(arrivals >= MEASURE / 2, "most messages should be fresh arrivals: {stats:?}");
        assert!(on_time * 2 >= arrivals, "{on_time} of {arrivals} on time; stats {stats:?}");
    });
}

#[test]
fn periodic_reset_forgets_the_period_and_keeps_the_statistics() {
    const FIRST: Duration = Duration::from_millis(2);
    const SECOND: Duration = Duration::from_millis(5);
    const PER_PHASE: u64 = 30;
    let _serial = serial();
    let event = EventCount::new();
    pin_to_cpu(0);
    let mut strategy = Periodic::new();
    let mut taken = 0;
    for (phase, period) in [FIRST, SECOND].into_iter().enumerate() {
        let published = AtomicU64::new(taken);
        thread::scope(|s| {
            s.spawn(|| publish_periodically(&event, &published, period, PER_PHASE));
            let mut counter = Counter { published: &published, taken };
            for _ in 0..PER_PHASE {
                counter.next(&mut strategy, &event);
            }
            taken = counter.taken;
        });
        assert_period_near(&strategy, period, &format!("phase {phase}"));
        let before = strategy.stats();
        strategy.reset();
        let after = strategy.stats();
        assert_eq!(after.period, None, "phase {phase}: reset kept the period");
        assert_eq!(strategy.period(), None);
        assert_eq!(
            (after.arrivals, after.on_time, after.early, after.overslept, after.missed),
            (before.arrivals, before.on_time, before.early, before.overslept, before.missed),
            "phase {phase}: reset changed the statistics"
        );
        assert_eq!(after.guard, before.guard, "phase {phase}: reset changed the guard");
    }
}

#[test]
fn periodic_does_not_learn_from_a_backlog() {
    let _serial = serial();
    let event = EventCount::new();
    let published = AtomicU64::new(12);
    let mut strategy = Periodic::new();
    let mut counter = Counter { published: &published, taken: 0 };
    for expected in 1..=12 {
        assert_eq!(counter.next(&mut strategy, &event), expected);
    }
    let stats = strategy.stats();
    assert_eq!(stats.arrivals, 0, "values already there are backlog, not arrivals: {stats:?}");
    assert_eq!(stats.period, None);
}

#[test]
fn a_trained_periodic_still_times_out_only_after_a_poll_at_or_after_the_deadline() {
    const PERIOD: Duration = Duration::from_millis(2);
    let _serial = serial();
    let event = EventCount::new();
    let published = AtomicU64::new(0);
    pin_to_cpu(0);
    let mut strategy = Periodic::new().recheck_every(None);
    thread::scope(|s| {
        s.spawn(|| publish_periodically(&event, &published, PERIOD, 20));
        let mut counter = Counter { published: &published, taken: 0 };
        for _ in 0..20 {
            counter.next(&mut strategy, &event);
        }
    });
    assert_period_near(&strategy, PERIOD, "trained");
    // The traffic stopped. A deadline before the next predicted arrival (it falls in the park),
    // one inside the spin window, and one long after (the wait ends up blocking).
    for deadline in [Duration::from_micros(300), PERIOD, SHORT] {
        let deadline = Instant::now() + deadline;
        let mut last_poll = None;
        let result = strategy.wait_for(&event, Some(deadline), || {
            last_poll = Some(Instant::now());
            None::<()>
        });
        assert_eq!(result, Err(TimedOut));
        assert!(last_poll.expect("it polled") >= deadline, "gave up before the deadline");
        assert!(Instant::now() < deadline + DEADLINE_SLACK, "overran the deadline");
        assert_eq!(event.waiters(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// The event count.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_prepared_wait_dropped_without_waiting_gives_back_its_count() {
    let event = EventCount::new();
    assert_eq!(event.waiters(), 0);
    let first = event.prepare_wait();
    assert_eq!(event.waiters(), 1);
    let second = event.prepare_wait();
    assert_eq!(event.waiters(), 2);
    drop(first);
    assert_eq!(event.waiters(), 1);
    drop(second);
    assert_eq!(event.waiters(), 0);
    // With the count back at zero, a notify does not bump the epoch: a wait prepared after it
    // has nothing to return for.
    event.notify_all();
    let started = Instant::now();
    assert_eq!(event.prepare_wait().wait(Some(SHORT)), WaitOutcome::TimedOut);
    assert!(started.elapsed() >= SHORT);
}

#[test]
fn a_wait_prepared_before_a_notify_returns_notified_at_once() {
    let event = EventCount::new();
    let wait = event.prepare_wait();
    event.notify_one();
    let started = Instant::now();
    assert_eq!(wait.wait(Some(FAR)), WaitOutcome::Notified);
    assert!(started.elapsed() < PROMPT, "it slept though the epoch had already moved");
    assert_eq!(event.waiters(), 0);

    let wait = event.prepare_wait();
    event.notify_all();
    assert_eq!(wait.wait_until(Some(Instant::now() + FAR)), WaitOutcome::Notified);
    assert_eq!(event.waiters(), 0);
}

#[test]
fn a_notify_before_the_wait_is_prepared_is_not_remembered() {
    let event = EventCount::new();
    event.notify_one();
    let wait = event.prepare_wait();
    let started = Instant::now();
    assert_eq!(wait.wait(Some(SHORT)), WaitOutcome::TimedOut);
    assert!(started.elapsed() >= SHORT);
    assert_eq!(event.waiters(), 0);
}

#[test]
fn a_wait_with_nobody_notifying_times_out_after_its_timeout() {
    let _serial = serial();
    let event = EventCount::new();
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    assert_eq!(event.prepare_wait().wait(Some(timeout)), WaitOutcome::TimedOut);
    let took = started.elapsed();
    assert!(took >= timeout, "returned after {took:?}, before its timeout");
    assert!(took < timeout + DEADLINE_SLACK, "returned only after {took:?}");

    // A deadline already passed returns at once.
    let deadline = Instant::now();
    let started = Instant::now();
    assert_eq!(event.prepare_wait().wait_until(Some(deadline)), WaitOutcome::TimedOut);
    assert!(started.elapsed() < DEADLINE_SLACK);
    assert_eq!(event.waiters(), 0);
}

#[test]
fn notify_all_wakes_every_sleeping_thread() {
    const THREADS: u32 = 3;
    let _serial = serial();
    let event = EventCount::new();
    let flag = AtomicBool::new(false);
    thread::scope(|s| {
        let sleepers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let wait = event.prepare_wait();
                    // Acquire: pairs with the notifier's Release.
                    if flag.load(Ordering::Acquire) {
                        return Err("the flag was set before the wait");
                    }
                    let started = Instant::now();
                    let outcome = wait.wait(Some(FAR));
                    Ok((outcome, started.elapsed(), flag.load(Ordering::Acquire)))
                })
            })
            .collect();
        wait_for("every thread prepared", FAR, || event.waiters() == THREADS);
        thread::sleep(Duration::from_millis(50));
        // Release: pairs with the sleepers' Acquire.
        flag.store(true, Ordering::Release);
        event.notify_all();
        for sleeper in sleepers {
            let (outcome, slept, saw_flag) = sleeper.join().unwrap().unwrap();
            assert_eq!(outcome, WaitOutcome::Notified);
            assert!(saw_flag, "woken, but the change before the notify was not visible");
            assert!(slept < PROMPT, "woke after {slept:?}: notify_all missed it");
        }
    });
    assert_eq!(event.waiters(), 0);
}
