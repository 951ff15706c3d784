//! In-process queue throughput measured in alternating rounds (`queues_alternating`): the
//! contenders of a comparison take turns within one run, so a phase of the host slows them
//! alike, and the spread over rounds shows how far one round can be trusted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Rx, Tx, apart, consume, pin, produce, two_cpus};

/// Moves `count` values from `tx` to `rx` (`BATCH` at a time if `batched`), the producer on
/// the calling thread pinned to the first of [`two_cpus`], the consumer on a scoped thread
/// pinned to the second; checks that none is lost. The clock starts once the consumer is
/// pinned and polling, and stops when it has the last value. Unlike [`transfer`](crate::transfer)
/// the queue calls are compiled for the queue types (no virtual call per value).
pub fn transfer_pinned<P: Tx + ?Sized, C: Rx + ?Sized>(
    tx: &mut P,
    rx: &mut C,
    count: u64,
    batched: bool,
) -> Duration {
    let (producer_cpu, consumer_cpu) = two_cpus();
    let ready = AtomicBool::new(false);
    thread::scope(|scope| {
        let ready = &ready;
        let consumer = scope.spawn(move || {
            pin(consumer_cpu);
            // Release: nothing rides on it; the producer only waits for it.
            ready.store(true, Ordering::Release);
            consume(rx, count, batched)
        });
        pin(producer_cpu);
        // Acquire: pairs with the consumer's Release store.
        while !ready.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let start = Instant::now();
        produce(tx, count, batched);
        consumer.join().expect("the consumer panicked") - start
    })
}

/// One contender: a name and runs of `count` values, each through the next of its queues
/// (their ends captured), in turn.
pub struct Contender<'q> {
    /// Shown in the report.
    pub name: &'static str,
    runs: Vec<Box<dyn FnMut(u64) -> Duration + 'q>>,
    turn: usize,
    /// M values per second, one entry per recorded round.
    pub rates: Vec<f64>,
}

impl std::fmt::Debug for Contender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contender").field("name", &self.name).field("rates", &self.rates).finish()
    }
}

impl<'q> Contender<'q> {
    /// A contender moving values with [`transfer_pinned`] through `queues` (the two ends of
    /// each), one queue per round in turn. Where a queue lies in memory can decide its rate
    /// for a whole run (in two runs of the same code, with one queue each, shmlane's batches
    /// were ahead of rtrb's in 19 and in 0 of 40 rounds), so a contender gets several, each
    /// placed apart from the others: the rounds sample placements, as they sample host phases.
    pub fn new<P: Tx + 'q, C: Rx + 'q>(
        name: &'static str,
        queues: Vec<(P, C)>,
        batched: bool,
    ) -> Self {
        let runs = queues
            .into_iter()
            .map(|ends| {
                // Side by side in this closure, the ends' private indices would share a line.
                let (mut tx, mut rx) = apart(ends);
                let run = move |count| transfer_pinned(&mut *tx, &mut *rx, count, batched);
                Box::new(run) as Box<dyn FnMut(u64) -> Duration + 'q>
            })
            .collect();
        Contender { name, runs, turn: 0, rates: Vec::new() }
    }

    /// Moves `count` values through the next queue; records the rate if `record`.
    pub fn run(&mut self, count: u64, record: bool) {
        let next = self.turn % self.runs.len();
        self.turn += 1;
        let run = &mut self.runs[next];
        let elapsed = run(count);
        if record {
            self.rates.push(count as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6);
        }
    }
}

/// A value made by `make` after a spacer allocation (kept in `spacers`) whose size differs
/// from the previous spacers', so that values made in a row do not lie at one offset within a
/// page: 64-byte steps, spread over a page by an odd multiple (8, 456, 904, … bytes).
pub fn after_spacer<V>(spacers: &mut Vec<Vec<u8>>, make: impl FnOnce() -> V) -> V {
    spacers.push(vec![0; (spacers.len() * 7 % 64) * 64 + 8]);
    make()
}

/// Two contenders measured against each other: the first is shmlane's.
#[derive(Debug)]
pub struct Comparison<'q> {
    /// What is compared (the row's title).
    pub title: &'static str,
    /// Values per round, per contender.
    pub count: u64,
    /// shmlane's queue, then the baseline.
    pub pair: [Contender<'q>; 2],
}

impl Comparison<'_> {
    /// One round: both contenders, the baseline first in odd rounds.
    pub fn round(&mut self, round: usize, record: bool) {
        let order = if round.is_multiple_of(2) { [0, 1] } else { [1, 0] };
        for i in order {
            self.pair[i].run(self.count, record);
        }
    }

    /// shmlane's rate over the baseline's, per round.
    pub fn ratios(&self) -> Vec<f64> {
        self.pair[0].rates.iter().zip(&self.pair[1].rates).map(|(a, b)| a / b).collect()
    }
}

/// Minimum, median and maximum of `values` (`NaN`s if empty).
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        n => {
            let median = if !n.is_multiple_of(2) {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            (sorted[0], median, sorted[n - 1])
        }
    }
}
