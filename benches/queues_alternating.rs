//! In-process queues against their baselines, measured fairly: the contenders of each
//! comparison take turns within one run (round by round, the baseline first in every other
//! round), so that a phase of the host hits both alike; criterion's `spsc` and `mpmc` benches
//! measure one implementation after the other instead.
//!
//! - shmlane's heap SPSC queue against `rtrb`, one value at a time (`try_push`/`try_pop`,
//!   rtrb's `push`/`pop`) and in batches of 16 (`push_slice`/`pop_slice`, rtrb's chunk API
//!   through `push_partial_slice`/`pop_partial_slice`);
//! - shmlane's heap MPMC queue against crossbeam's `ArrayQueue`, one value at a time and in
//!   runs of 16 single operations.
//!
//! 1024 slots each; a producer thread and a consumer thread pinned to the first two CPUs of the
//! affinity mask; the consumer checks the sum of what it got. Reports M values/s per round and
//! the spread (min / median / max) over the rounds, of each contender and of the per-round
//! ratio shmlane / baseline (goal: ≥ 1), the ratio of the two contenders' medians, and in how
//! many rounds shmlane was ahead. One contender's rate can differ 2-3x from one turn to the
//! next (single values: 116-309 M/s within one run of 2026-12-07): the per-round ratio then
//! pairs two independent draws, and the medians' ratio and the rounds won say more than its
//! median.
//!
//! `cargo bench -p shmlane-benches --bench queues_alternating [-- --rounds N]`;
//! `-- --test` is a smoke run of one short round.

use crossbeam_queue::ArrayQueue;
use shmlane_benches::peer;
use shmlane_benches::rounds::{Comparison, Contender, after_spacer, spread};
use shmlane_benches::two_cpus;
use shmlane_queue::{mpmc, spsc};

/// Slots of every queue.
const CAPACITY: usize = 1024;
/// Recorded rounds unless `--rounds` says otherwise.
const ROUNDS: usize = 30;
/// Queues per contender, used in turn, one per round.
const PLACEMENTS: usize = 8;
/// Rounds run first and discarded.
const WARMUP_ROUNDS: usize = 2;

/// A queue that both ends share (MPMC), once per placement.
fn shared<Q>(queues: &[Q]) -> Vec<(&Q, &Q)> {
    queues.iter().map(|q| (q, q)).collect()
}

/// A contender's name without the word "shmlane", to fit a column.
fn short(name: &str) -> &str {
    name.strip_prefix("shmlane ").unwrap_or(name)
}

fn main() {
    let smoke = peer::smoke_test();
    let mut rounds = if smoke { 1 } else { ROUNDS };
    let warmup = if smoke { 0 } else { WARMUP_ROUNDS };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args.next().and_then(|n| n.parse().ok()).expect("--rounds needs a number");
        }
    }
    assert!(rounds > 0, "--rounds must be at least 1");
    // Values per turn: a turn lasts 5 to 100 ms on this machine, so the two contenders of a
    // round run within a phase of the host as a rule.
    let scale = |count: u64| if smoke { 10_000 } else { count };

    // Several queues per contender, placed apart, used in turn (`Contender::new`); made
    // interleaved, so that each contender's spread over the same stretch of the heap.
    let mut spacers = Vec::new();
    let (mut shmlane_single, mut rtrb_single) = (Vec::new(), Vec::new());
    let (mut shmlane_batch, mut rtrb_batch) = (Vec::new(), Vec::new());
    let (mut mpmc_single, mut crossbeam_single) = (Vec::new(), Vec::new());
    let (mut mpmc_runs, mut crossbeam_runs) = (Vec::new(), Vec::new());
    for _ in 0..PLACEMENTS {
        let spacers = &mut spacers;
        shmlane_single.push(after_spacer(spacers, || spsc::new::<u64>(CAPACITY)));
        rtrb_single.push(after_spacer(spacers, || rtrb::RingBuffer::new(CAPACITY)));
        shmlane_batch.push(after_spacer(spacers, || spsc::new::<u64>(CAPACITY)));
        rtrb_batch.push(after_spacer(spacers, || rtrb::RingBuffer::new(CAPACITY)));
        mpmc_single.push(after_spacer(spacers, || mpmc::Queue::<u64>::new(CAPACITY)));
        crossbeam_single.push(after_spacer(spacers, || ArrayQueue::new(CAPACITY)));
        mpmc_runs.push(after_spacer(spacers, || mpmc::Queue::<u64>::new(CAPACITY)));
        crossbeam_runs.push(after_spacer(spacers, || ArrayQueue::new(CAPACITY)));
    }
    let mut comparisons = [
        Comparison {
            title: "SPSC, one at a time",
            count: scale(1_000_000),
            pair: [
                Contender::new("shmlane spsc", shmlane_single, false),
                Contender::new("rtrb", rtrb_single, false),
            ],
        },
        Comparison {
            title: "SPSC, batches of 16",
            count: scale(4_000_000),
            pair: [
                Contender::new("shmlane spsc", shmlane_batch, true),
                Contender::new("rtrb", rtrb_batch, true),
            ],
        },
        Comparison {
            title: "MPMC, one at a time",
            count: scale(500_000),
            pair: [
                Contender::new("shmlane mpmc", shared(&mpmc_single), false),
                Contender::new("ArrayQueue", shared(&crossbeam_single), false),
            ],
        },
        Comparison {
            title: "MPMC, runs of 16",
            count: scale(500_000),
            pair: [
                Contender::new("shmlane mpmc", shared(&mpmc_runs), true),
                Contender::new("ArrayQueue", shared(&crossbeam_runs), true),
            ],
        },
    ];

    let (producer, consumer) = two_cpus();
    for round in 0..warmup + rounds {
        for comparison in &mut comparisons {
            comparison.round(round, round >= warmup);
        }
    }

    println!(
        "\nin-process queues, {CAPACITY} slots, producer on CPU {producer}, consumer on CPU \
         {consumer}; {rounds} rounds ({warmup} warm-up discarded), contenders alternating \
         within each round; M values/s"
    );
    println!("values per contender per round:");
    for comparison in &comparisons {
        println!("  {}: {}", comparison.title, comparison.count);
    }
    // One line per round: each comparison's two rates and their ratio.
    print!("\n{:>5}", "");
    for comparison in &comparisons {
        print!(" | {:^26}", comparison.title);
    }
    print!("\n{:>5}", "round");
    for comparison in &comparisons {
        let [ours, theirs] = &comparison.pair;
        print!(" | {:>8} {:>10} {:>6}", short(ours.name), short(theirs.name), "ratio");
    }
    println!();
    for round in 0..rounds {
        print!("{:>5}", round + 1);
        for comparison in &comparisons {
            let [ours, theirs] = &comparison.pair;
            let ratio = comparison.ratios()[round];
            print!(" | {:>8.1} {:>10.1} {ratio:>6.2}", ours.rates[round], theirs.rates[round]);
        }
        println!();
    }

    println!(
        "\nspread over the rounds, min / median / max (ratio = shmlane / baseline per round, \
         goal ≥ 1); medians = shmlane's median over the baseline's; ahead = rounds shmlane won"
    );
    println!(
        "{:<22} {:>24} {:>14} {:>24} {:>20} {:>8} {:>7}",
        "comparison", "shmlane M/s", "baseline", "baseline M/s", "ratio", "medians", "ahead"
    );
    let fmt = |(min, median, max): (f64, f64, f64), digits: usize| {
        format!("{min:.digits$} / {median:.digits$} / {max:.digits$}")
    };
    for comparison in &comparisons {
        let [ours, theirs] = &comparison.pair;
        let ratios = comparison.ratios();
        let medians = spread(&ours.rates).1 / spread(&theirs.rates).1;
        let ahead = ratios.iter().filter(|&&ratio| ratio >= 1.0).count();
        println!(
            "{:<22} {:>24} {:>14} {:>24} {:>20} {:>8.2} {:>7}",
            comparison.title,
            fmt(spread(&ours.rates), 1),
            theirs.name,
            fmt(spread(&theirs.rates), 1),
            fmt(spread(&ratios), 2),
            medians,
            format!("{ahead}/{}", ratios.len()),
        );
    }
    if producer == consumer {
        println!("(one CPU available: producer and consumer shared it)");
    }
}
