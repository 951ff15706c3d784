//! loom models of the overflowing queue (`shmlane_queue::overflow`): whatever the interleaving
//! of pushes that evict and pops, every value ends up exactly once either popped or evicted,
//! and the popped ones come out in order.

use loom::thread;
use shmlane_queue::model::overflow;
use shmlane_workspace::model;

/// Pushes `0..count` into a queue of `capacity` while a consumer pops `pops` times; returns
/// (popped, evicted, drained after both finished).
fn race(capacity: usize, count: u64, pops: usize) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let (mut producer, mut consumer) = overflow::new(capacity);
    let popper = thread::spawn(move || {
        let popped: Vec<u64> = (0..pops).filter_map(|_| consumer.pop()).collect();
        (popped, consumer)
    });
    let mut evicted = Vec::new();
    for value in 0..count {
        evicted.extend(producer.push(value).unwrap());
    }
    let (popped, mut consumer) = popper.join().unwrap();
    let drained: Vec<u64> = std::iter::from_fn(|| consumer.pop()).collect();
    (popped, evicted, drained)
}

fn check_exactly_once(count: u64, (popped, evicted, drained): (Vec<u64>, Vec<u64>, Vec<u64>)) {
    assert!(popped.windows(2).all(|w| w[0] < w[1]), "popped out of order: {popped:?}");
    assert!(evicted.windows(2).all(|w| w[0] < w[1]), "evicted out of order: {evicted:?}");
    let mut all: Vec<u64> = popped.iter().chain(&evicted).chain(&drained).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..count).collect::<Vec<_>>(), "popped {popped:?} evicted {evicted:?}");
}

#[test]
fn evictions_racing_pops_deliver_every_value_exactly_once_with_capacity_two() {
    model::check(|| check_exactly_once(4, race(2, 4, 2)));
}

#[test]
fn evictions_racing_pops_deliver_every_value_exactly_once_with_capacity_one() {
    model::check(|| check_exactly_once(3, race(1, 3, 2)));
}

#[test]
fn the_producer_evicting_everything_races_a_pop_without_duplicates() {
    model::check(|| {
        let (mut producer, mut consumer) = overflow::new(2);
        producer.push(1).unwrap();
        producer.push(2).unwrap();
        let popper = thread::spawn(move || consumer.pop());
        let mut evicted = Vec::new();
        while let Some(value) = producer.evict().unwrap() {
            evicted.push(value);
        }
        let popped = popper.join().unwrap();
        let mut all: Vec<u64> = evicted.iter().copied().chain(popped).collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2], "evicted {evicted:?} popped {popped:?}");
    });
}

/// An inline entry's words travel together: whatever the interleaving of pushes that evict
/// (and so reuse the one slot) and pops, every popped line is the one pushed, never a torn mix
/// of two positions' words. Two words (a torn read needs two; the loop is the same for six,
/// and each word more multiplies the interleavings), in slots of 4 words; the first word names
/// the entry, as inline entries all read as the value `INLINE`.
#[test]
fn a_popped_line_is_the_one_pushed_even_when_its_slot_is_reused() {
    const WORDS: usize = 2;
    model::check(|| {
        let (mut producer, mut consumer) = overflow::new_strided(1, 4);
        let popper = thread::spawn(move || consumer.pop_line_when(|_| true, WORDS));
        let mut evicted = Vec::new();
        for value in 1..=2u64 {
            evicted.extend(producer.push_inline(&[value, value * 10]).unwrap());
        }
        let popped = popper.join().unwrap();
        if let Some((value, line)) = popped {
            assert_eq!(value, overflow::INLINE, "an inline entry reads as INLINE");
            assert_eq!(line[1], line[0] * 10, "torn line {line:?}");
            assert_eq!(line[WORDS..], [0; overflow::LINE_WORDS - WORDS], "words not asked for");
        }
        evicted.extend(std::iter::from_fn(|| producer.evict().unwrap()));
        assert!(evicted.iter().all(|&v| v == overflow::INLINE), "evicted {evicted:?}");
        assert_eq!(usize::from(popped.is_some()) + evicted.len(), 2, "popped {popped:?}");
    });
}

/// A batch claim (`pop_lines_when`) racing pushes that evict: the entries it claims are
/// consecutive, in order, each with its own line, and every entry is popped or evicted
/// exactly once.
#[test]
fn a_batch_claim_racing_evictions_takes_each_entry_once_with_its_own_line() {
    const WORDS: usize = 2;
    model::check(|| {
        let (mut producer, mut consumer) = overflow::new_strided(2, 4);
        let popper = thread::spawn(move || {
            let mut out = [(0, [0; overflow::LINE_WORDS]); 2];
            let n = consumer.pop_lines_when(|_| true, WORDS, &mut out);
            out[..n].to_vec()
        });
        let mut evicted = Vec::new();
        for value in 1..=3u64 {
            evicted.extend(producer.push_inline(&[value, value * 10]).unwrap());
        }
        let popped = popper.join().unwrap();
        for pair in popped.windows(2) {
            assert_eq!(pair[1].1[0], pair[0].1[0] + 1, "a batch is consecutive: {popped:?}");
        }
        for (value, line) in &popped {
            assert_eq!(*value, overflow::INLINE);
            assert_eq!(line[1], line[0] * 10, "torn line {line:?}");
        }
        evicted.extend(std::iter::from_fn(|| producer.evict().unwrap()));
        assert_eq!(popped.len() + evicted.len(), 3, "popped {popped:?} evicted {evicted:?}");
    });
}

/// Values and inline entries through one slot of 2 words, where an inline entry's word is the
/// value word itself: the stamp's flag and the word are read as one, so a popped or evicted
/// value is never an inline entry's word, nor a popped inline word a value.
#[test]
fn values_and_inline_entries_sharing_a_slot_are_never_mistaken_for_each_other() {
    model::check(|| {
        let (mut producer, mut consumer) = overflow::new_strided(1, 2);
        let popper = thread::spawn(move || {
            let popped: Vec<_> =
                (0..2).filter_map(|_| consumer.pop_line_when(|_| true, 1)).collect();
            popped
        });
        let mut evicted = Vec::new();
        evicted.extend(producer.push(5).unwrap());
        evicted.extend(producer.push_inline(&[7]).unwrap());
        evicted.extend(producer.push(9).unwrap());
        let popped = popper.join().unwrap();
        evicted.extend(std::iter::from_fn(|| producer.evict().unwrap()));
        let mut all = evicted.clone();
        for (value, line) in &popped {
            match *value {
                overflow::INLINE => assert_eq!(line[0], 7, "inline entry's word: {popped:?}"),
                value => assert_eq!(line[0], 0, "a value {value} came with words: {popped:?}"),
            }
            all.push(*value);
        }
        all.sort_unstable();
        assert_eq!(all, [overflow::INLINE, 5, 9], "popped {popped:?} evicted {evicted:?}");
    });
}

/// An exclusive consumer (claims store `head`) and a producer that pushes only where there is
/// room (`try_push_inline`, retried while full), through one slot reused for every entry: each
/// entry is popped once, in order, with its own words, never a mix with the next entry the
/// producer writes into the slot the consumer just read.
#[test]
fn an_exclusive_consumer_reads_every_entry_whole_while_the_producer_reuses_its_slot() {
    const WORDS: usize = 2;
    model::check(|| {
        let (mut producer, consumer) = overflow::new_strided(1, 4);
        let mut consumer = consumer.exclusive();
        let popper = thread::spawn(move || {
            let mut popped = Vec::new();
            while popped.len() < 3 {
                match consumer.pop_line_when(|_| true, WORDS) {
                    Some((value, line)) => popped.push((value, line)),
                    None => thread::yield_now(),
                }
            }
            popped
        });
        for value in 1..=3u64 {
            while producer.try_push_inline(&[value, value * 10]).is_err() {
                thread::yield_now();
            }
        }
        let popped = popper.join().unwrap();
        for (i, (value, line)) in popped.iter().enumerate() {
            assert_eq!(*value, overflow::INLINE, "an inline entry reads as INLINE");
            assert_eq!(line[0], i as u64 + 1, "popped out of order: {popped:?}");
            assert_eq!(line[1], line[0] * 10, "torn line {line:?}");
        }
    });
}

/// An exclusive consumer's batch claim (`pop_lines_when`) against a producer that pushes only
/// where there is room: values come out once each, in order, and a producer that finds the
/// queue full never overwrites a claimed slot before the claim is stored.
#[test]
fn an_exclusive_batch_claim_takes_each_value_once_in_order() {
    model::check(|| {
        let (mut producer, consumer) = overflow::new(2);
        let mut consumer = consumer.exclusive();
        let popper = thread::spawn(move || {
            let mut popped = Vec::new();
            while popped.len() < 3 {
                let mut out = [(0, [0; overflow::LINE_WORDS]); 2];
                match consumer.pop_lines_when(|_| true, 0, &mut out) {
                    0 => thread::yield_now(),
                    n => popped.extend(out[..n].iter().map(|(value, _)| *value)),
                }
            }
            popped
        });
        for value in 1..=3u64 {
            while producer.try_push(value).is_err() {
                thread::yield_now();
            }
        }
        assert_eq!(popper.join().unwrap(), [1, 2, 3]);
    });
}
