//! Cross-process throughput: one publisher process streams messages as fast as it can, one
//! subscriber process receives them and checks every sequence number, nothing dropped; for 8
//! B, 64 B, 1 KiB and 64 KiB payloads, in alternating rounds of one run:
//!
//! - `shmlane`: a `Topic` of a `#[repr(C)]` payload type per size (the sequence number, then
//!   padding), 1 publisher, 1 subscriber, `subscriber_capacity(256)`, `Overflow::Block`, the
//!   facade's defaults otherwise; `send_copy` of the whole value up to 64 B, `loan` → the
//!   sequence number written in place → `send` above; busy-polled `receive`, the sequence
//!   number read in place;
//! - `shmlane-b16`: the same on a topic of its own, its publisher sending batches of 16 with
//!   `send_copies` (one wake-up check per batch) up to 64 B, one by one above (as `shmlane`);
//! - `spsc`: shmlane's SPSC queue alone (256 slots) in a segment: at 8 B the sequence number
//!   is the queued value (the upper bound on this machine); above, a block of a `BlockPool`
//!   is allocated, stamped in place and its offset queued, the receiver reads and frees it;
//! - `iceoryx2` (feature `iceoryx2`): a service of `[u64; W]` per size, 1 publisher, 1
//!   subscriber, `subscriber_max_buffer_size(256)`, `enable_safe_overflow(false)`, the
//!   publisher's `BackpressureStrategy::RetryUntilDelivered`; `loan_uninit` with the whole
//!   value written up to 64 B, only the sequence number above; busy-polled `receive`.
//!
//! Each run is timed by the publisher from its first send until the subscriber has stored,
//! in a shared word, that it has the run's last message. One warm-up round (a tenth of the
//! messages) is discarded; in each recorded round every size, and within it every
//! implementation, makes one run, in reverse order every other round. The peer (this binary,
//! re-executed) pins itself before the publisher pins itself; CPUs by explicit id (default:
//! the first two of the affinity mask).
//!
//! ```sh
//! cargo bench -p shmlane-benches --features iceoryx2 --bench throughput \
//!     [-- --messages N --rounds N --cores A,B]
//! cargo bench -p shmlane-benches --bench throughput -- --test   # smoke, no iceoryx2
//! ```
//!
//! Every file the run creates is removed at the end, also when it fails or is stopped with
//! Ctrl-C.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[cfg(feature = "iceoryx2")]
use shmlane_benches::iox2::{self, Iox2Stream};
use shmlane_benches::peer;
use shmlane_benches::pin;
use shmlane_benches::pingpong::{
    self, Lanes, Peer, Rounds, RunNames, RunNodes, Side, announce_ready, await_peer,
    check_interrupt, options, order, size_name, spin_until,
};
use shmlane_benches::rounds::spread;
use shmlane_benches::stream::{SIZES, STREAM_CAPACITY, ShmlaneStream, SpscStream};

/// Messages per implementation, size and round, unless `--messages` says otherwise.
const MESSAGES: u64 = 2_000_000;
/// Recorded rounds, unless `--rounds` says otherwise.
const ROUNDS: u64 = 3;

/// How long a run is.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Messages per implementation, size and recorded round.
    messages: u64,
    /// Messages per implementation and size in the warm-up round.
    warmup: u64,
    /// Recorded rounds.
    rounds: u64,
}

impl Plan {
    /// Calls `run(round, size, implementation, first, count)` for every run of messages
    /// `first..first + count`, in the order both processes make them: round 0 is the
    /// warm-up, then rounds `1..=rounds`; each size in order, its implementations reversed
    /// every other round; sequence numbers go on from run to run of a size and
    /// implementation.
    fn schedule(&self, implementations: usize, mut run: impl FnMut(u64, usize, usize, u64, u64)) {
        for round in 0..=self.rounds {
            check_interrupt();
            let (first, count) = match round {
                0 => (1, self.warmup),
                _ => (1 + self.warmup + (round - 1) * self.messages, self.messages),
            };
            if count == 0 {
                continue;
            }
            for size in 0..SIZES.len() {
                for implementation in order(round, implementations) {
                    run(round, size, implementation, first, count);
                }
            }
        }
    }
}

/// The word in which the peer counts the runs it has received in full.
fn runs_done(lanes: &Lanes) -> &std::sync::atomic::AtomicU64 {
    &lanes.words[Side::Echo.outbound()]
}

/// Every implementation's streams of one process.
struct Transports {
    shmlane: Vec<ShmlaneStream>,
    /// The same, its publisher sending in batches (the sizes sent by copy).
    batched: Vec<ShmlaneStream>,
    spsc: Vec<SpscStream>,
    #[cfg(feature = "iceoryx2")]
    iox2: Vec<Iox2Stream>,
    nodes: RunNodes,
}

impl Transports {
    fn new(names: &RunNames, side: Side) -> Transports {
        let nodes = RunNodes::new(names, side);
        let shmlane = SIZES
            .iter()
            .map(|&size| ShmlaneStream::new(&nodes.node, &format!("stream{size}"), size, side))
            .collect();
        let batched = SIZES
            .iter()
            .map(|&size| ShmlaneStream::new(&nodes.node, &format!("batch{size}"), size, side))
            .collect();
        let spsc = SIZES
            .iter()
            .map(|&size| SpscStream::new(&format!("{}.spsc{size}", names.namespace), size, side))
            .collect();
        #[cfg(feature = "iceoryx2")]
        let iox2 = SIZES
            .iter()
            .map(|&size| {
                Iox2Stream::new(&nodes.iox2, &format!("shmlane-bench/{}", names.run), size, side)
            })
            .collect();
        Transports {
            shmlane,
            batched,
            spsc,
            #[cfg(feature = "iceoryx2")]
            iox2,
            nodes,
        }
    }

    fn lanes(&self) -> &Lanes {
        self.nodes.lanes()
    }

    /// `side`'s ends, `[size][implementation]`, named.
    fn ends(&self, side: Side) -> Vec<Vec<(&'static str, Box<dyn Rounds + '_>)>> {
        (0..SIZES.len())
            .map(|i| {
                #[cfg(feature = "iceoryx2")]
                let iox2 = Some(("iceoryx2", self.iox2[i].end(side)));
                #[cfg(not(feature = "iceoryx2"))]
                let iox2 = None;
                // Over `BY_COPY_MAX` the batching publisher loans one by one, as `shmlane` does.
                [
                    ("shmlane", self.shmlane[i].end(side, false)),
                    ("shmlane-b16", self.batched[i].end(side, true)),
                    ("spsc", self.spsc[i].end(side)),
                ]
                .into_iter()
                .chain(iox2)
                .collect()
            })
            .collect()
    }
}

fn main() {
    pingpong::stop_on_signals();
    if let Some(args) = peer::child_args() {
        return child(&args);
    }
    let (mut messages, mut rounds) =
        if peer::smoke_test() { (2_000, 1) } else { (MESSAGES, ROUNDS) };
    let cores = options(&mut [("--messages", &mut messages), ("--rounds", &mut rounds)]);
    let plan = Plan { messages, warmup: messages / 10, rounds };
    let names = RunNames::new("tput", &std::process::id().to_string());
    names.run_and_clean(|| parent(&names, plan, cores));
}

fn parent(names: &RunNames, plan: Plan, (core_a, core_b): (usize, usize)) {
    let transports = Transports::new(names, Side::Initiator);
    let mut ends = transports.ends(Side::Initiator);
    // The peer pins itself first: a pinned publisher's children would inherit its one CPU.
    let args = [plan.messages, plan.warmup, plan.rounds].map(|n| n.to_string());
    let mut peer = Peer(peer::spawn(
        &[&names.run, &core_b.to_string(), &args[0], &args[1], &args[2]],
        Stdio::null(),
        Stdio::null(),
    ));
    pin(core_a);
    let lanes = transports.lanes();
    await_peer(lanes, &mut peer, || ends.iter().flatten().all(|(_, end)| end.attached()));

    let mut rates: Vec<Vec<Vec<f64>>> =
        ends.iter().map(|row| row.iter().map(|_| Vec::new()).collect()).collect();
    let mut done = 0;
    plan.schedule(ends[0].len(), |round, size, implementation, first, count| {
        // Acquire: pairs with the peer's Release store; it polls this run's end after it.
        spin_until("the peer to finish a run", || {
            (runs_done(lanes).load(Ordering::Acquire) == done).then_some(())
        });
        let start = Instant::now();
        ends[size][implementation].1.send_run(first, count);
        spin_until("the peer to receive a run", || {
            (runs_done(lanes).load(Ordering::Acquire) > done).then_some(())
        });
        let elapsed = start.elapsed().as_secs_f64().max(1e-9);
        done += 1;
        if round > 0 {
            rates[size][implementation].push(count as f64 / elapsed);
        }
    });
    peer.join();
    let names: Vec<&str> = ends[0].iter().map(|(name, _)| *name).collect();
    report(&names, &rates, plan, (core_a, core_b));
    #[cfg(feature = "iceoryx2")]
    println!(
        "iceoryx2 {} (ipc::Service): enable_safe_overflow(false), \
         subscriber_max_buffer_size({STREAM_CAPACITY}), max_publishers(1), max_subscribers(1), \
         publisher backpressure_strategy(RetryUntilDelivered), defaults otherwise; in force: {}",
        iox2::VERSION,
        transports.iox2[0].settings(),
    );
    #[cfg(not(feature = "iceoryx2"))]
    println!("(iceoryx2 not built: add `--features iceoryx2` to measure it in the same run)");
    drop(ends);
}

/// Prints messages/s per size and implementation, and the per-round ratios of shmlane.
fn report(names: &[&str], rates: &[Vec<Vec<f64>>], plan: Plan, (a, b): (usize, usize)) {
    println!(
        "\nthroughput, one publisher process (CPU {a}) to one subscriber process (CPU {b}), \
         every sequence number checked, nothing dropped: {} messages per implementation, size \
         and round, {} rounds ({} warm-up messages discarded); shmlane: capacity \
         {STREAM_CAPACITY}, Overflow::Block; M msgs/s (min / median / max over the rounds), \
         GB/s at the median",
        plan.messages, plan.rounds, plan.warmup
    );
    println!(
        "{:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "payload", "impl", "min", "median", "max", "GB/s"
    );
    for (size, rates) in SIZES.iter().zip(rates) {
        for (name, rates) in names.iter().zip(rates) {
            let (min, median, max) = spread(rates);
            println!(
                "{:>8} {name:>11} {:>9.2} {:>9.2} {:>9.2} {:>9.3}",
                size_name(*size),
                min / 1e6,
                median / 1e6,
                max / 1e6,
                median * *size as f64 / 1e9
            );
        }
    }
    let find = |name| names.iter().position(|n| *n == name);
    for (size, rates) in SIZES.iter().zip(rates) {
        for name in ["shmlane", "shmlane-b16"] {
            let Some(ours) = find(name) else { continue };
            for (baseline, goal) in [("spsc", 0.5), ("iceoryx2", 3.0)] {
                let Some(theirs) = find(baseline) else { continue };
                let ratios: Vec<f64> =
                    rates[ours].iter().zip(&rates[theirs]).map(|(o, t)| o / t).collect();
                let (min, median, max) = spread(&ratios);
                let goal = if *size == 8 { format!(" (goal ≥ {goal})") } else { String::new() };
                println!(
                    "{name:<11} / {baseline:<8} at {:>6} per round: {min:.2} / {median:.2} / \
                     {max:.2}{goal}",
                    size_name(*size)
                );
            }
        }
    }
    if a == b {
        println!("(both processes ran on one CPU: the numbers measure context switches)");
    }
}

/// The subscriber side: `RUN CORE MESSAGES WARMUP ROUNDS`.
fn child(args: &[String]) {
    let [run, core, messages, warmup, rounds] = args else {
        panic!("peer needs RUN CORE MESSAGES WARMUP ROUNDS")
    };
    pin(core.parse().expect("core"));
    let number = |text: &String| text.parse::<u64>().expect("a count");
    let plan = Plan { messages: number(messages), warmup: number(warmup), rounds: number(rounds) };
    let transports = Transports::new(&RunNames::new("tput", run), Side::Echo);
    let mut ends = transports.ends(Side::Echo);
    let lanes = transports.lanes();
    announce_ready(lanes, || ends.iter().flatten().all(|(_, end)| end.attached()));
    let mut done = 0;
    plan.schedule(ends[0].len(), |_, size, implementation, first, count| {
        ends[size][implementation].1.receive_run(first, count);
        done += 1;
        // Release: nothing rides on it but the count; the publisher stops its clock.
        runs_done(lanes).store(done, Ordering::Release);
    });
}
