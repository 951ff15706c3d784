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
//! No byte of a payload is copied by either. Each round runs every transport for the same
//! number of round trips, in reverse order every other round; the first rounds are warm-up and
//! are discarded. The peer (this binary, re-executed) pins itself before the initiator pins
//! itself; CPUs are pinned by explicit id (default: the first two of the affinity mask).
//!
//! ```sh
//! cargo bench -p shmlane-benches --features iceoryx2 --bench pubsub_vs_iceoryx2 \
//!     [-- --iters N --round N --cores A,B]
//! cargo bench -p shmlane-benches --bench pubsub_vs_iceoryx2 -- --test   # smoke, no iceoryx2
//! ```
//!
//! Without the feature the bench measures the floor and shmlane only. Every file the run
//! creates is removed at the end, also when it fails or is stopped with Ctrl-C.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
#[cfg(feature = "iceoryx2")]
use shmlane_benches::iox2::{self, Iox2Files, Iox2Topics};
use shmlane_benches::peer::{self, QUANTILES};
use shmlane_benches::pingpong::{
    self, HANG, Lanes, Peer, Rounds, SHMLANE_CAPACITY, SHMLANE_MAX_HELD, SHMLANE_MAX_LOANS,
    ShmlaneTopics, Side, check_interrupt,
};
use shmlane_benches::{pin, two_cpus};
use shmlane_segment::{NAME_PREFIX, Segment};

/// Payload sizes, bytes.
const SIZES: [usize; 4] = [8, 64, 4096, 1 << 20];
/// Round trips per transport before switching to the next, unless `--round` says otherwise.
const ROUND: u64 = 1_000;
/// Round trips per transport discarded before recording.
const WARMUP: u64 = 10_000;
/// Recorded round trips per transport unless `--iters` says otherwise.
const ITERS: u64 = 200_000;

/// How long a run is.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Round trips per transport per round.
    round: u64,
    /// Rounds in all.
    rounds: u64,
    /// Round trips per transport discarded before recording.
    warmup: u64,
}

/// The names of everything one run creates, derived from the initiator's pid.
struct RunNames {
    /// The segment of the cache-line floor and the start-up flag.
    lanes: String,
    /// shmlane's namespace for the topics.
    namespace: String,
    /// The run's id, from which iceoryx2's names are derived.
    run: String,
}

impl RunNames {
    fn new(run: &str) -> RunNames {
        RunNames {
            lanes: format!("bench.pvi.{run}"),
            namespace: format!("bench_pvi_{run}"),
            run: run.to_owned(),
        }
    }
}

fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// Every transport's topics of one process, in the order both processes run them.
struct Transports {
    lanes: Segment,
    shmlane: Vec<ShmlaneTopics>,
    #[cfg(feature = "iceoryx2")]
    iox2: Vec<Iox2Topics>,
    _node: shmlane::Node,
    #[cfg(feature = "iceoryx2")]
    _iox2_node: iceoryx2::prelude::Node<iceoryx2::prelude::ipc::Service>,
}

impl Transports {
    fn new(names: &RunNames, side: Side) -> Transports {
        let builder = Segment::builder(&names.lanes);
        let lanes = match side {
            Side::Initiator => {
                builder.size(Lanes::layout().1).populate(true).create().map_err(|e| e.to_string())
            }
            Side::Echo => builder.open_timeout(HANG).open().map_err(|e| e.to_string()),
        }
        .unwrap_or_else(|e| panic!("the lanes segment: {e}"));
        let node_name = match side {
            Side::Initiator => "bench-initiator",
            Side::Echo => "bench-echo",
        };
        let node = shmlane::Node::builder(node_name)
            .namespace(names.namespace.as_str())
            .create()
            .expect("shmlane node");
        let shmlane = SIZES
            .iter()
            .map(|&size| ShmlaneTopics::new(&node, &format!("s{size}"), size, side))
            .collect();
        #[cfg(feature = "iceoryx2")]
        let iox2_node = Iox2Files::for_run(&names.run).node();
        #[cfg(feature = "iceoryx2")]
        let iox2 = SIZES
            .iter()
            .map(|&size| {
                Iox2Topics::new(&iox2_node, &format!("shmlane-bench/{}", names.run), size, side)
            })
            .collect();
        Transports {
            lanes,
            shmlane,
            #[cfg(feature = "iceoryx2")]
            iox2,
            _node: node,
            #[cfg(feature = "iceoryx2")]
            _iox2_node: iox2_node,
        }
    }

    fn lanes(&self) -> &Lanes {
        self.lanes.get(Lanes::layout().0).expect("lanes")
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
        }
        links
    }
}

/// The order of the transports in round `round`: reversed every other round.
fn order(round: u64, transports: usize) -> Vec<usize> {
    let forward: Vec<usize> = (0..transports).collect();
    if round.is_multiple_of(2) { forward } else { forward.into_iter().rev().collect() }
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
    let mut cores = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|n| n.parse().ok());
        match arg.as_str() {
            "--iters" => iters = number().expect("--iters needs a number"),
            "--round" => round = number().expect("--round needs a number"),
            "--cores" => {
                let pair = args.next().expect("--cores needs A,B");
                let (a, b) = pair.split_once(',').expect("--cores needs A,B");
                cores =
                    Some((a.trim().parse().expect("CPU id"), b.trim().parse().expect("CPU id")));
            }
            _ => {} // `--bench`, `--test` and others from cargo
        }
    }
    assert!(iters > 0 && round > 0, "--iters and --round must be at least 1");
    let plan = Plan { round, rounds: (warmup + iters).div_ceil(round), warmup };
    let names = RunNames::new(&std::process::id().to_string());
    let cores = cores.unwrap_or_else(two_cpus);

    let outcome = std::panic::catch_unwind(|| parent(&names, plan, cores));
    // Everything is dropped by now (and so removed, unless the peer had to be killed): remove
    // what is left either way, so a failed or interrupted run leaves nothing behind either.
    let ours = |file: &str| {
        file == format!("{NAME_PREFIX}{}", names.lanes)
            || file.starts_with(&format!("{NAME_PREFIX}{}.", names.namespace))
    };
    let left = pingpong::remove_entries(std::path::Path::new("/dev/shm"), ours);
    #[cfg(feature = "iceoryx2")]
    let iox2_left = Iox2Files::for_run(&names.run).remove_leftovers();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(left.is_empty(), "shmlane segments left in /dev/shm after the run: {left:?}");
    #[cfg(feature = "iceoryx2")]
    if !iox2_left.is_empty() {
        println!("removed iceoryx2's leftovers of the run: {iox2_left:?}");
    }
}

fn parent(names: &RunNames, plan: Plan, (core_a, core_b): (usize, usize)) {
    let transports = Transports::new(names, Side::Initiator);
    let mut links = transports.links(Side::Initiator);
    // The peer pins itself first: a pinned initiator's children would inherit its one CPU.
    let mut peer = Peer(peer::spawn(
        &[&names.run, &core_b.to_string(), &plan.round.to_string(), &plan.rounds.to_string()],
        Stdio::null(),
        Stdio::null(),
    ));
    pin(core_a);
    let lanes = transports.lanes();
    let deadline = Instant::now() + HANG;
    // Acquire: pairs with the peer's Release store once it is attached everywhere.
    while lanes.ready.load(Ordering::Acquire) == 0 {
        peer.check_alive();
        check_interrupt();
        assert!(Instant::now() < deadline, "the peer did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    while !links.iter().all(|(_, link)| link.attached()) {
        assert!(Instant::now() < deadline, "the peer's subscribers did not join");
        std::thread::yield_now();
    }

    let mut histograms: Vec<Histogram<u64>> = links.iter().map(|_| peer::histogram()).collect();
    for round in 0..plan.rounds {
        check_interrupt();
        let record = round * plan.round >= plan.warmup;
        for t in order(round, links.len()) {
            let histogram = record.then_some(&mut histograms[t]);
            links[t].1.initiate(round * plan.round + 1, plan.round, histogram);
        }
    }
    peer.join();
    let names: Vec<&str> = links.iter().map(|(name, _)| name.as_str()).collect();
    report(&names, &histograms, plan, (core_a, core_b));
    #[cfg(feature = "iceoryx2")]
    println!(
        "iceoryx2 {} (ipc::Service): default service settings except \
         subscriber_max_buffer_size = {SHMLANE_CAPACITY} (shmlane's subscriber capacity); \
         in force: {}; publisher_max_loaned_samples {} (default)",
        iox2::VERSION,
        transports.iox2[0].settings(),
        iceoryx2::prelude::Config::default()
            .defaults
            .publish_subscribe
            .publisher_max_loaned_samples,
    );
    #[cfg(not(feature = "iceoryx2"))]
    println!("(iceoryx2 not built: add `--features iceoryx2` to measure it in the same run)");
    drop(links);
}

fn report(names: &[&str], histograms: &[Histogram<u64>], plan: Plan, (a, b): (usize, usize)) {
    println!(
        "\npub/sub ping-pong, both sides busy polling, processes on CPUs {a} and {b}: {} round \
         trips per transport, in alternating rounds of {} ({} warm-up round trips discarded); \
         shmlane topics: capacity {SHMLANE_CAPACITY}, {SHMLANE_MAX_HELD} held, \
         {SHMLANE_MAX_LOANS} loans; one-way ns (RTT / 2)",
        histograms[0].len(),
        plan.round,
        plan.warmup.div_ceil(plan.round) * plan.round,
    );
    print!("{:>16}", "transport");
    for (name, _) in QUANTILES {
        print!(" {name:>8}");
    }
    println!(" {:>8} {:>10}", "max", "p50/floor");
    let floor = histograms[0].value_at_quantile(0.5).max(1) as f64;
    for (name, histogram) in names.iter().zip(histograms) {
        print!("{name:>16}");
        for (_, q) in QUANTILES {
            print!(" {:>8}", histogram.value_at_quantile(q) / 2);
        }
        let ratio = histogram.value_at_quantile(0.5) as f64 / floor;
        println!(" {:>8} {ratio:>10.2}", histogram.max() / 2);
    }
    let find = |name: String| names.iter().position(|n| *n == name);
    for size in SIZES {
        let label = size_name(size);
        let (Some(ours), Some(theirs)) =
            (find(format!("shmlane {label}")), find(format!("iceoryx2 {label}")))
        else {
            continue;
        };
        let ratio = |q| {
            histograms[ours].value_at_quantile(q) as f64
                / histograms[theirs].value_at_quantile(q).max(1) as f64
        };
        let goal = if size == 8 { " (goal ≤ 0.25)" } else { "" };
        println!(
            "shmlane / iceoryx2 at {label:>6}: p50 {:.2}{goal}, p99 {:.2}, p99.9 {:.2}",
            ratio(0.5),
            ratio(0.99),
            ratio(0.999)
        );
    }
    if a == b {
        println!("(both processes ran on one CPU: the numbers measure context switches)");
    }
}

/// The echo side: `RUN CORE ROUND ROUNDS`.
fn child(args: &[String]) {
    let [run, core, round, rounds] = args else { panic!("peer needs RUN CORE ROUND ROUNDS") };
    pin(core.parse().expect("core"));
    let round: u64 = round.parse().expect("round");
    let rounds: u64 = rounds.parse().expect("rounds");
    let transports = Transports::new(&RunNames::new(run), Side::Echo);
    let mut links = transports.links(Side::Echo);
    // The initiator's subscribers existed before we started: serve them before saying ready.
    let deadline = Instant::now() + HANG;
    while !links.iter().all(|(_, link)| link.attached()) {
        check_interrupt();
        assert!(Instant::now() < deadline, "the initiator's subscribers are not there");
        std::thread::yield_now();
    }
    // Release: tells the initiator we are pinned and attached.
    transports.lanes().ready.store(1, Ordering::Release);
    for r in 0..rounds {
        for t in order(r, links.len()) {
            links[t].1.echo(r * round + 1, round);
        }
    }
}
