//! shmlane pub/sub next to iceoryx2 pub/sub and the cache-line floor, in alternating rounds of
//! one run: two processes pinned to two CPUs ping-pong, both sides busy polling, one-way
//! latency = round trip / 2.
//!
//! - `cacheline`: two bare atomics on their own cache lines of a shared segment, the floor any
//!   shared-memory transport pays (as `shmlane bench --transport cacheline` at 8 B);
//! - `shmlane`: two `Topic<u64>`s per payload size (ping, pong; 1 publisher, 1 subscriber,
//!   capacity 4, 2 held, 2 loans); each message is `loan` (8 B) or `loan_slice` (64 B, 4 KiB,
//!   1 MiB), the sequence number written in place, `send`; the receiver spins on `receive`,
//!   reads the sequence in place and drops the sample;
//! - `iceoryx2` (feature `iceoryx2`): two services per size (`u64`, or `[u64]` slices),
//!   iceoryx2's default settings except `subscriber_max_buffer_size` = 4 (shmlane's capacity);
//!   `loan_uninit` / `loan_slice_uninit`, the sequence written in place, `send`; the receiver
//!   spins on `receive` and reads the sequence in place.
//!
//! Both under their default overflow policy (drop the oldest sample: shmlane's
//! `Overflow::DropOldest`, iceoryx2's safe overflow); at 8 B also both under back-pressure
//! (`shmlane 8 B block`: `Overflow::Block`; `iceoryx2 8 B block`: safe overflow off, the
//! publisher's default `RetryUntilDelivered`), where shmlane's subscriber claims without a CAS.
//!
//! No byte of a payload is copied by either. Each round runs every transport for the same
//! number of round trips, in reverse order every other round; the first rounds are warm-up and
//! are discarded, and so are the first round trips of every turn (as `shmlane bench
//! --turn-warmup`): after the other transports' turns a transport's lines and code are out of
//! the caches. The peer (this binary, re-executed) pins itself before the initiator pins
//! itself; CPUs are pinned by explicit id (default: the first two of the affinity mask).
//!
//! ```sh
//! cargo bench -p shmlane-benches --features iceoryx2 --bench pubsub_vs_iceoryx2 \
//!     [-- --iters N --round N --turn-warmup N --cores A,B]
//! cargo bench -p shmlane-benches --bench pubsub_vs_iceoryx2 -- --test   # smoke, no iceoryx2
//! ```
//!
//! Without the feature the bench measures the floor and shmlane only. Every file the run
//! creates is removed at the end, also when it fails or is stopped with Ctrl-C.

use std::process::Stdio;

use hdrhistogram::Histogram;
use shmlane::Overflow;
#[cfg(feature = "iceoryx2")]
use shmlane_benches::iox2::{self, Iox2Topics};
use shmlane_benches::peer::{self, QUANTILES};
use shmlane_benches::pin;
use shmlane_benches::pingpong::{
    self, Lanes, Peer, Rounds, RunNames, RunNodes, SHMLANE_CAPACITY, SHMLANE_MAX_HELD,
    SHMLANE_MAX_LOANS, ShmlaneTopics, Side, announce_ready, await_peer, check_interrupt, options,
    order, size_name,
};

/// Payload sizes, bytes.
const SIZES: [usize; 4] = [8, 64, 4096, 1 << 20];
/// Round trips per transport before switching to the next, unless `--round` says otherwise.
const ROUND: u64 = 1_000;
/// Round trips per transport discarded before recording.
const WARMUP: u64 = 10_000;
/// Recorded round trips per transport unless `--iters` says otherwise.
const ITERS: u64 = 200_000;
/// Round trips at the start of each turn not recorded, unless `--turn-warmup` says otherwise
/// (`shmlane bench`'s default).
const TURN_WARMUP: u64 = 10;

/// How long a run is.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Recorded round trips per transport per round.
    round: u64,
    /// Unrecorded round trips before them in each turn.
    turn_warmup: u64,
    /// Rounds in all.
    rounds: u64,
    /// Round trips per transport discarded before recording.
    warmup: u64,
}

/// Every transport's topics of one process, in the order both processes run them.
struct Transports {
    shmlane: Vec<ShmlaneTopics>,
    /// 8 B under `Overflow::Block`.
    shmlane_block: ShmlaneTopics,
    #[cfg(feature = "iceoryx2")]
    iox2: Vec<Iox2Topics>,
    /// 8 B without safe overflow.
    #[cfg(feature = "iceoryx2")]
    iox2_block: Iox2Topics,
    nodes: RunNodes,
}

impl Transports {
    fn new(names: &RunNames, side: Side) -> Transports {
        let nodes = RunNodes::new(names, side);
        let shmlane = SIZES
            .iter()
            .map(|&size| {
                ShmlaneTopics::new(
                    &nodes.node,
                    &format!("s{size}"),
                    size,
                    Overflow::DropOldest,
                    side,
                )
            })
            .collect();
        let shmlane_block = ShmlaneTopics::new(&nodes.node, "b8", 8, Overflow::Block, side);
        #[cfg(feature = "iceoryx2")]
        let iox2_topics = |size, blocking| {
            let prefix = format!("shmlane-bench/{}", names.run);
            Iox2Topics::new(&nodes.iox2, &prefix, size, blocking, side)
        };
        Transports {
            shmlane,
            shmlane_block,
            #[cfg(feature = "iceoryx2")]
            iox2: SIZES.iter().map(|&size| iox2_topics(size, false)).collect(),
            #[cfg(feature = "iceoryx2")]
            iox2_block: iox2_topics(8, true),
            nodes,
        }
    }

    fn lanes(&self) -> &Lanes {
        self.nodes.lanes()
    }

    /// `side`'s ends, named, in run order: the floor, then per size shmlane and iceoryx2.
    fn links(&self, side: Side) -> Vec<(String, Box<dyn Rounds + '_>)> {
        let mut links: Vec<(String, Box<dyn Rounds + '_>)> =
            vec![("cacheline".to_owned(), Box::new(self.lanes().cacheline(side)))];
        for (i, size) in SIZES.iter().enumerate() {
            links.push((
                format!("shmlane {}", size_name(*size)),
                Box::new(self.shmlane[i].link(side)),
            ));
            #[cfg(feature = "iceoryx2")]
            links.push((format!("iceoryx2 {}", size_name(*size)), self.iox2[i].link(side)));
            if *size == 8 {
                links.push((
                    "shmlane 8 B block".to_owned(),
                    Box::new(self.shmlane_block.link(side)),
                ));
                #[cfg(feature = "iceoryx2")]
                links.push(("iceoryx2 8 B block".to_owned(), self.iox2_block.link(side)));
            }
        }
        links
    }
}

fn main() {
    if let Some(args) = peer::child_args() {
        pingpong::stop_on_signals();
        return child(&args);
    }
    pingpong::stop_on_signals();
    let smoke = peer::smoke_test();
    let (mut iters, mut round, warmup) =
        if smoke { (300, 100, 100) } else { (ITERS, ROUND, WARMUP) };
    let mut turn_warmup = TURN_WARMUP;
    let cores = options(&mut [
        ("--iters", &mut iters),
        ("--round", &mut round),
        ("--turn-warmup", &mut turn_warmup),
    ]);
    let plan = Plan { round, turn_warmup, rounds: (warmup + iters).div_ceil(round), warmup };
    let names = RunNames::new("pvi", &std::process::id().to_string());
    names.run_and_clean(|| parent(&names, plan, cores));
}

fn parent(names: &RunNames, plan: Plan, (core_a, core_b): (usize, usize)) {
    let transports = Transports::new(names, Side::Initiator);
    let mut links = transports.links(Side::Initiator);
    // The peer pins itself first: a pinned initiator's children would inherit its one CPU.
    // Each turn: `turn_warmup` round trips, then `round` recorded ones.
    let turn = plan.turn_warmup + plan.round;
    let mut peer = Peer(peer::spawn(
        &[&names.run, &core_b.to_string(), &turn.to_string(), &plan.rounds.to_string()],
        Stdio::null(),
        Stdio::null(),
    ));
    pin(core_a);
    await_peer(transports.lanes(), &mut peer, || links.iter().all(|(_, link)| link.attached()));

    let mut histograms: Vec<Histogram<u64>> = links.iter().map(|_| peer::histogram()).collect();
    for round in 0..plan.rounds {
        check_interrupt();
        let record = round * plan.round >= plan.warmup;
        for t in order(round, links.len()) {
            let first = round * turn + 1;
            links[t].1.initiate(first, plan.turn_warmup, None);
            let histogram = record.then_some(&mut histograms[t]);
            links[t].1.initiate(first + plan.turn_warmup, plan.round, histogram);
        }
    }
    peer.join();
    let names: Vec<&str> = links.iter().map(|(name, _)| name.as_str()).collect();
    report(&names, &histograms, plan, (core_a, core_b));
    #[cfg(feature = "iceoryx2")]
    println!(
        "iceoryx2 {} (ipc::Service): default service settings except \
         subscriber_max_buffer_size = {SHMLANE_CAPACITY} (shmlane's subscriber capacity); \
         in force: {}; publisher_max_loaned_samples {} (default); `8 B block`: safe overflow \
         off, in force: {}; publisher backpressure {:?} (default)",
        iox2::VERSION,
        transports.iox2[0].settings(),
        iceoryx2::prelude::Config::default()
            .defaults
            .publish_subscribe
            .publisher_max_loaned_samples,
        transports.iox2_block.settings(),
        iceoryx2::prelude::Config::default().defaults.publish_subscribe.backpressure_strategy,
    );
    #[cfg(not(feature = "iceoryx2"))]
    println!("(iceoryx2 not built: add `--features iceoryx2` to measure it in the same run)");
    drop(links);
}

fn report(names: &[&str], histograms: &[Histogram<u64>], plan: Plan, (a, b): (usize, usize)) {
    println!(
        "\npub/sub ping-pong, both sides busy polling, processes on CPUs {a} and {b}: {} round \
         trips per transport, in alternating rounds of {} after {} unrecorded ones per turn ({} \
         warm-up round trips discarded); \
         shmlane topics: capacity {SHMLANE_CAPACITY}, {SHMLANE_MAX_HELD} held, \
         {SHMLANE_MAX_LOANS} loans; one-way ns (RTT / 2)",
        histograms[0].len(),
        plan.round,
        plan.turn_warmup,
        plan.warmup.div_ceil(plan.round) * plan.round,
    );
    print!("{:>18}", "transport");
    for (name, _) in QUANTILES {
        print!(" {name:>8}");
    }
    println!(" {:>8} {:>10}", "max", "p50/floor");
    let floor = histograms[0].value_at_quantile(0.5).max(1) as f64;
    for (name, histogram) in names.iter().zip(histograms) {
        print!("{name:>18}");
        for (_, q) in QUANTILES {
            print!(" {:>8}", histogram.value_at_quantile(q) / 2);
        }
        let ratio = histogram.value_at_quantile(0.5) as f64 / floor;
        println!(" {:>8} {ratio:>10.2}", histogram.max() / 2);
    }
    let find = |name: String| names.iter().position(|n| *n == name);
    let labels = SIZES.iter().map(|&size| size_name(size));
    for label in labels.chain(["8 B block".to_owned()]) {
        let (Some(ours), Some(theirs)) =
            (find(format!("shmlane {label}")), find(format!("iceoryx2 {label}")))
        else {
            continue;
        };
        let ratio = |q| {
            histograms[ours].value_at_quantile(q) as f64
                / histograms[theirs].value_at_quantile(q).max(1) as f64
        };
        let goal = if label == "8 B" { " (goal ≤ 0.25)" } else { "" };
        // The lowest p50 ratio a transport can reach in this run: one cache line per message.
        let floor_ratio = floor / histograms[theirs].value_at_quantile(0.5).max(1) as f64;
        println!(
            "shmlane / iceoryx2 at {label:>9}: p50 {:.2}{goal}, p99 {:.2}, p99.9 {:.2}; \
             the cache-line floor / iceoryx2 at p50: {floor_ratio:.2}",
            ratio(0.5),
            ratio(0.99),
            ratio(0.999)
        );
    }
    if a == b {
        println!("(both processes ran on one CPU: the numbers measure context switches)");
    }
}

/// The echo side: `RUN CORE TURN ROUNDS` (`TURN`: round trips per transport per round, the
/// unrecorded ones included).
fn child(args: &[String]) {
    let [run, core, turn, rounds] = args else { panic!("peer needs RUN CORE TURN ROUNDS") };
    pin(core.parse().expect("core"));
    let turn: u64 = turn.parse().expect("turn");
    let rounds: u64 = rounds.parse().expect("rounds");
    let transports = Transports::new(&RunNames::new("pvi", run), Side::Echo);
    let mut links = transports.links(Side::Echo);
    announce_ready(transports.lanes(), || links.iter().all(|(_, link)| link.attached()));
    for r in 0..rounds {
        for t in order(r, links.len()) {
            links[t].1.echo(r * turn + 1, turn);
        }
    }
}
