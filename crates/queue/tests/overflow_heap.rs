//! The heap overflowing queue (`overflow::new`): eviction order, `try_push` refusing, `evict`
//! draining, sizes, and threads racing pops against evictions with every value accounted for
//! exactly once.
//!
//! Also run under Miri (`.ci/run`); the long loops there are shortened (`cfg(miri)`): Miri runs
//! these loops about 10^4 times slower.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shmlane_queue::overflow::{self, Consumer, Heap, Producer, TryPushError};
use shmlane_testkit::queue::RacePace;
use shmlane_testkit::spin_until;

/// Deadline for every wait on the other thread (debug builds on two loaded cores).
const TIMEOUT: Duration = Duration::from_secs(60);

fn pop_all(consumer: &mut Consumer<Heap>) -> Vec<u64> {
    std::iter::from_fn(|| consumer.pop()).collect()
}

fn evict_all(producer: &mut Producer<Heap>) -> Vec<u64> {
    std::iter::from_fn(|| producer.evict().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// One thread: the sequential contract.
// ---------------------------------------------------------------------------------------------

#[test]
fn capacity_rounds_up_to_a_power_of_two_and_at_least_one() {
    for (asked, got) in [(0, 1), (1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (1000, 1024), (1024, 1024)]
    {
        let (producer, consumer) = overflow::new(asked);
        assert_eq!((producer.capacity(), consumer.capacity()), (got, got), "asked {asked}");
    }
    // The rounded capacity is the real one: exactly that many values fit before an eviction.
    let (mut producer, _consumer) = overflow::new(3);
    for value in 0..4 {
        assert_eq!(producer.push(value), Ok(None), "value {value} fits in 4 slots");
    }
    assert_eq!(producer.push(4), Ok(Some(0)));
    let (mut producer, _consumer) = overflow::new(0);
    assert_eq!(producer.push(7), Ok(None));
    assert_eq!(producer.push(8), Ok(Some(7)));
}

/// Inline entries in slots of 2, 4 and 8 words: each keeps the words its slot has room for
/// (stride - 1), reads as `INLINE` with those words, comes out in order among plain values,
/// and is evicted as `INLINE`; a value keeps no words.
#[test]
fn inline_entries_keep_the_words_their_stride_allows_in_order_with_values() {
    for (stride, kept) in [(2, 1), (4, 3), (8, overflow::LINE_WORDS)] {
        let (mut producer, mut consumer) = overflow::new_strided(2, stride);
        let line: overflow::Line = [11, 12, 13, 14, 15, 16];
        assert_eq!(producer.push_inline(&line), Ok(None), "stride {stride}");
        assert_eq!(producer.push(99), Ok(None));
        let mut expected = [0; overflow::LINE_WORDS];
        expected[..kept].copy_from_slice(&line[..kept]);
        let words = overflow::LINE_WORDS;
        assert_eq!(consumer.pop_line_when(|_| true, words), Some((overflow::INLINE, expected)));
        assert_eq!(consumer.pop_line_when(|_| true, words), Some((99, [0; overflow::LINE_WORDS])));
        assert_eq!(producer.push_inline(&line), Ok(None));
        assert_eq!(producer.push(7), Ok(None));
        assert_eq!(producer.push(8), Ok(Some(overflow::INLINE)), "stride {stride}");
        assert_eq!(producer.push_inline(&[1]), Ok(Some(7)));
        assert_eq!(evict_all(&mut producer), [8, overflow::INLINE]);
    }
    assert_eq!(overflow::stride_for(1), 2);
    assert_eq!(overflow::stride_for(3), 4);
    assert_eq!(overflow::stride_for(overflow::LINE_WORDS), 8);
}

#[test]
fn values_come_out_in_push_order() {
    let (mut producer, mut consumer) = overflow::new(8);
    for value in [5, 0, u64::MAX, 42, 1 << 63] {
        assert_eq!(producer.push(value), Ok(None));
    }
    assert_eq!(pop_all(&mut consumer), [5, 0, u64::MAX, 42, 1 << 63]);
    assert_eq!(consumer.pop(), None);
}

#[test]
fn a_full_queue_evicts_the_oldest_value_and_returns_it() {
    let (mut producer, mut consumer) = overflow::new(4);
    for value in 0..4 {
        assert_eq!(producer.push(value), Ok(None));
    }
    for value in 4..11 {
        assert_eq!(producer.push(value), Ok(Some(value - 4)), "push of {value}");
        assert_eq!(producer.len(), 4);
    }
    assert_eq!(pop_all(&mut consumer), [7, 8, 9, 10], "the newest four remain, in order");
    // A pop makes room: the next push evicts nothing.
    assert_eq!(producer.push(11), Ok(None));
    assert_eq!(consumer.pop(), Some(11));
}

#[test]
fn with_capacity_one_every_push_after_the_first_evicts_the_previous_value() {
    let (mut producer, mut consumer) = overflow::new(1);
    assert_eq!(producer.push(100), Ok(None));
    for value in 101..110 {
        assert_eq!(producer.push(value), Ok(Some(value - 1)));
    }
    assert_eq!(producer.try_push(7), Err(TryPushError::Full));
    assert_eq!(consumer.pop(), Some(109));
    assert_eq!(consumer.pop(), None);
    assert_eq!(producer.try_push(7), Ok(()));
    assert_eq!(producer.evict(), Ok(Some(7)));
    assert_eq!(producer.evict(), Ok(None));
}

#[test]
fn try_push_reports_full_and_pushes_nothing_when_full() {
    let (mut producer, mut consumer) = overflow::new(4);
    for value in 0..4 {
        assert_eq!(producer.try_push(value), Ok(()));
    }
    for refused in [100, 101, 102] {
        assert_eq!(producer.try_push(refused), Err(TryPushError::Full));
        assert_eq!((producer.len(), consumer.len()), (4, 4));
    }
    // Nothing was evicted or overwritten by the refusals.
    assert_eq!(consumer.pop(), Some(0));
    assert_eq!(producer.try_push(4), Ok(()), "one slot freed by the pop");
    assert_eq!(producer.try_push(5), Err(TryPushError::Full));
    assert_eq!(pop_all(&mut consumer), [1, 2, 3, 4]);
    // Refusals around a wrap of the ring too.
    for value in 10..14 {
        producer.try_push(value).unwrap();
    }
    assert_eq!(producer.try_push(99), Err(TryPushError::Full));
    assert_eq!(pop_all(&mut consumer), [10, 11, 12, 13]);
}

#[test]
fn evict_drains_the_queue_oldest_first_and_then_reports_none() {
    let (mut producer, mut consumer) = overflow::new(8);
    assert_eq!(producer.evict(), Ok(None), "an empty queue has nothing to evict");
    // Push past the capacity so the ring has wrapped and `head` moved by evictions.
    let evicted: Vec<u64> = (0..11).filter_map(|value| producer.push(value).unwrap()).collect();
    assert_eq!(evicted, [0, 1, 2]);
    assert_eq!(evict_all(&mut producer), (3..11).collect::<Vec<_>>());
    assert!(producer.is_empty() && consumer.is_empty());
    assert_eq!(consumer.pop(), None);
    assert_eq!(producer.evict(), Ok(None));

    // Evictions and pops interleaved share one order: each takes the oldest.
    for value in 20..26 {
        producer.push(value).unwrap();
    }
    assert_eq!(producer.evict(), Ok(Some(20)));
    assert_eq!(consumer.pop(), Some(21));
    assert_eq!(producer.evict(), Ok(Some(22)));
    assert_eq!(consumer.pop(), Some(23));
    assert_eq!(producer.evict(), Ok(Some(24)));
    assert_eq!(consumer.pop(), Some(25));
    assert_eq!((producer.evict(), consumer.pop()), (Ok(None), None));
    // The producer keeps working after draining: the freed slots are reused.
    for value in 30..38 {
        assert_eq!(producer.push(value), Ok(None), "slot freed by evict");
    }
    assert_eq!(producer.push(38), Ok(Some(30)));
}

#[test]
fn len_is_empty_and_capacity_agree_on_both_ends() {
    let (mut producer, mut consumer) = overflow::new(4);
    assert_eq!((producer.capacity(), consumer.capacity()), (4, 4));
    assert!(producer.is_empty() && consumer.is_empty());
    for (value, len) in (0..6).zip([1, 2, 3, 4, 4, 4]) {
        producer.push(value).unwrap();
        assert_eq!((producer.len(), consumer.len()), (len, len), "after pushing {value}");
        assert!(!producer.is_empty() && !consumer.is_empty());
    }
    consumer.pop().unwrap();
    assert_eq!((producer.len(), consumer.len()), (3, 3));
    producer.evict().unwrap();
    assert_eq!((producer.len(), consumer.len()), (2, 2));
    pop_all(&mut consumer);
    assert_eq!((producer.len(), consumer.len()), (0, 0));
    assert!(producer.is_empty() && consumer.is_empty());
    assert_eq!((producer.capacity(), consumer.capacity()), (4, 4));
}

#[test]
fn wrap_around_many_times_with_bursts_keeps_order_and_accounts_for_every_value() {
    let (mut producer, mut consumer) = overflow::new(4);
    let (mut next_in, mut next_out) = (0u64, 0u64);
    // Under Miri, 40 times through every burst size.
    let rounds: u64 = if cfg!(miri) { 280 } else { 10_000 };
    for round in 0..rounds {
        let burst = round % 7; // 0..=6: empty, partial, full and overflowing rings
        for _ in 0..burst {
            if let Some(evicted) = producer.push(next_in).unwrap() {
                assert_eq!(evicted, next_out, "round {round}: evicted out of order");
                next_out += 1;
            }
            next_in += 1;
        }
        assert_eq!(producer.len() as u64, next_in - next_out);
        // Take the rest with pops and evictions alternating.
        let mut by_pop = round % 2 == 0;
        loop {
            let value = if by_pop { consumer.pop() } else { producer.evict().unwrap() };
            let Some(value) = value else { break };
            assert_eq!(value, next_out, "round {round}");
            next_out += 1;
            by_pop = !by_pop;
        }
        assert_eq!(next_out, next_in);
    }
    assert_eq!(next_in, (0..rounds).map(|r| r % 7).sum::<u64>());
}

// ---------------------------------------------------------------------------------------------
// Two threads: pops race evictions; every value is popped, evicted or drained exactly once.
// ---------------------------------------------------------------------------------------------

/// Values streamed per capacity (under Miri, a few hundred: more than 4 times the largest of
/// [`CAPACITIES`], as `race` requires).
const STREAM: u64 = if cfg!(miri) { 300 } else { 200_000 };

/// The capacities each race runs with: under Miri fewer, and a smaller large one that the
/// shorter stream still laps several times.
const CAPACITIES: &[usize] = if cfg!(miri) { &[1, 8, 64] } else { &[1, 2, 8, 1024] };

/// How the producer thread pushes.
#[derive(Clone, Copy, Debug)]
enum Pushing {
    /// `push`, which evicts when full.
    Push,
    /// `try_push`; on `Full`, `evict` the oldest (a reclaim racing the consumer) and retry.
    TryPushThenEvict,
}

/// What one run saw, in the order each side saw it.
struct Outcome {
    popped: Vec<u64>,
    evicted: Vec<u64>,
    drained: Vec<u64>,
}

/// Pushes `0..count` from one thread while another pops. The consumer starts only after
/// `2 * capacity + 1` values were pushed (so evictions happen whatever the scheduling); the
/// producer keeps the pace of a [`RacePace`]. The consumer stops when the producer is done;
/// the leftovers are then drained, alternately by pop and by evict.
fn race(capacity: usize, count: u64, pushing: Pushing) -> Outcome {
    let (mut producer, mut consumer) = overflow::new(capacity);
    let capacity = producer.capacity() as u64;
    assert!(count > 4 * capacity, "too few values to force evictions");
    let pushed = AtomicU64::new(0);
    let popped_count = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let deadline = Instant::now() + TIMEOUT;
    let pace = RacePace { count, capacity, deadline };

    let (popped, evicted, mut producer) = thread::scope(|scope| {
        let pusher = scope.spawn(|| {
            let mut evicted = Vec::new();
            for value in 0..count {
                match pushing {
                    Pushing::Push => evicted.extend(producer.push(value).unwrap()),
                    Pushing::TryPushThenEvict => loop {
                        match producer.try_push(value) {
                            Ok(()) => break,
                            Err(TryPushError::Full) => evicted.extend(producer.evict().unwrap()),
                            Err(TryPushError::Corrupt(corrupt)) => panic!("{corrupt}"),
                        }
                    },
                }
                pushed.store(value + 1, Ordering::Release);
                let popped = || popped_count.load(Ordering::Acquire);
                pace.after(value, popped, || producer.len() as u64).unwrap();
            }
            finished.store(true, Ordering::Release);
            (evicted, producer)
        });

        spin_until("the producer to overfill the queue", deadline, || {
            pushed.load(Ordering::Acquire) > 2 * capacity
        })
        .unwrap();
        let mut popped: Vec<u64> = Vec::new();
        let mut spins = 0u32;
        // Until the producer is done; what it left behind is drained below.
        while !finished.load(Ordering::Acquire) {
            match consumer.pop() {
                Some(value) => {
                    let last = popped.last().copied();
                    assert!(last.is_none_or(|last| value > last), "popped {value} after {last:?}");
                    popped.push(value);
                    popped_count.store(popped.len() as u64, Ordering::Release);
                    // Let the producer lap the ring now and then.
                    if popped.len().is_multiple_of(5_000) {
                        thread::yield_now();
                    }
                }
                None => {
                    spins += 1;
                    if spins.is_multiple_of(64) {
                        assert!(Instant::now() < deadline, "timed out popping");
                    }
                    std::hint::spin_loop();
                }
            }
        }
        let (evicted, producer) = pusher.join().unwrap();
        (popped, evicted, producer)
    });

    // Both threads are done: what is left comes out in order, by either end.
    let mut drained = Vec::new();
    let mut by_pop = false;
    loop {
        let value = if by_pop { consumer.pop() } else { producer.evict().unwrap() };
        let Some(value) = value else { break };
        drained.push(value);
        by_pop = !by_pop;
    }
    assert_eq!((consumer.pop(), producer.evict()), (None, Ok(None)));
    assert!(producer.is_empty() && consumer.is_empty());
    Outcome { popped, evicted, drained }
}

/// Every value of `0..count` appears exactly once across the three lists; each list is in
/// increasing order; with `newest_kept`, the newest `capacity` values were never evicted (true
/// of `push`, which evicts only from a full ring; not of `try_push` then `evict`, where the
/// consumer may take values between the `Full` answer and the eviction, which then takes the
/// oldest value left, however new).
fn check_exactly_once(count: u64, capacity: u64, outcome: &Outcome, what: &str, newest_kept: bool) {
    let Outcome { popped, evicted, drained } = outcome;
    for (name, list) in [("popped", popped), ("evicted", evicted), ("drained", drained)] {
        if let Some(at) = list.windows(2).position(|w| w[0] >= w[1]) {
            panic!("{what}: {name} out of order: {} then {}", list[at], list[at + 1]);
        }
    }
    let mut times_seen = vec![0u8; count as usize];
    for &value in popped.iter().chain(evicted).chain(drained) {
        assert!(value < count, "{what}: {value} was never pushed");
        times_seen[value as usize] += 1;
    }
    if let Some(value) = times_seen.iter().position(|&n| n != 1) {
        panic!("{what}: value {value} came out {} times", times_seen[value]);
    }
    assert!(
        !newest_kept || evicted.last().is_none_or(|&last| last + capacity < count),
        "{what}: evicted {:?}, one of the newest {capacity} values",
        evicted.last()
    );
    assert!(drained.len() as u64 <= capacity, "{what}: drained more than the queue holds");
    if let (Some(&last_popped), Some(&first_drained)) = (popped.last(), drained.first()) {
        assert!(first_drained > last_popped, "{what}: drained an older value than one popped");
    }
    // The forced phases happened: the consumer popped, the producer evicted.
    assert!(!popped.is_empty(), "{what}: nothing was popped");
    assert!(evicted.len() as u64 > capacity, "{what}: only {} evicted", evicted.len());
}

#[test]
fn pushes_evicting_while_a_thread_pops_deliver_every_value_exactly_once() {
    for &capacity in CAPACITIES {
        let outcome = race(capacity, STREAM, Pushing::Push);
        let what = format!("capacity {capacity}");
        check_exactly_once(STREAM, capacity as u64, &outcome, &what, true);
        eprintln!(
            "{what}: popped {}, evicted {}, drained {}",
            outcome.popped.len(),
            outcome.evicted.len(),
            outcome.drained.len()
        );
    }
}

#[test]
fn evicting_to_make_room_while_a_thread_pops_delivers_every_value_exactly_once() {
    for &capacity in CAPACITIES {
        let outcome = race(capacity, STREAM, Pushing::TryPushThenEvict);
        let what = format!("try_push + evict, capacity {capacity}");
        check_exactly_once(STREAM, capacity as u64, &outcome, &what, false);
        eprintln!(
            "{what}: popped {}, evicted {}, drained {}",
            outcome.popped.len(),
            outcome.evicted.len(),
            outcome.drained.len()
        );
    }
}

/// An exclusive consumer (its claims store `head`) against a producer that pushes only where
/// there is room, as a subscriber under the block policy: the stream comes out whole and in
/// order, claimed one by one and in batches, and once the consumer is gone the producer evicts
/// exactly the values it left.
#[test]
fn an_exclusive_consumer_gets_a_stream_whole_and_leaves_the_rest_to_evict() {
    for &capacity in CAPACITIES {
        let (mut producer, consumer) = overflow::new(capacity);
        let mut consumer = consumer.exclusive();
        let capacity = producer.capacity() as u64;
        let deadline = Instant::now() + TIMEOUT;
        // The consumer stops `capacity` values short: the producer's last pushes fill the ring.
        let wanted = STREAM - capacity;
        let popped = thread::scope(|scope| {
            let popper = scope.spawn(|| {
                let mut popped = Vec::with_capacity(wanted as usize);
                let mut out = [(0, [0; overflow::LINE_WORDS]); 3];
                while (popped.len() as u64) < wanted {
                    let room = (wanted - popped.len() as u64).min(3) as usize;
                    // Alternately one value and a batch of up to three.
                    let taken = if popped.len() % 2 == 0 {
                        consumer.pop().map(|value| popped.push(value)).is_some()
                    } else {
                        let n = consumer.pop_lines_when(|_| true, 0, &mut out[..room]);
                        popped.extend(out[..n].iter().map(|(value, _)| *value));
                        n > 0
                    };
                    if !taken {
                        assert!(Instant::now() < deadline, "timed out popping");
                        std::hint::spin_loop();
                    }
                }
                popped
            });
            for value in 0..STREAM {
                loop {
                    match producer.try_push(value) {
                        Ok(()) => break,
                        Err(TryPushError::Full) => {
                            assert!(Instant::now() < deadline, "timed out pushing");
                            std::hint::spin_loop();
                        }
                        Err(TryPushError::Corrupt(corrupt)) => panic!("{corrupt}"),
                    }
                }
            }
            popper.join().unwrap()
        });
        assert!(popped.iter().copied().eq(0..wanted), "capacity {capacity}: out of order or lost");
        assert!(evict_all(&mut producer).into_iter().eq(wanted..STREAM), "capacity {capacity}");
        assert!(producer.is_empty());
    }
}
