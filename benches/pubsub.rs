//! Cross-process publish/subscribe ping-pong with both sides busy polling, on two pinned
//! cores. Three transports, in alternating rounds of the same run:
//!
//! - `cacheline`: two bare atomics on separate cache lines of a shared segment, the floor any
//!   shared-memory transport pays (as in `examples/segment_pingpong.rs`);
//! - `shmlane-pubsub 8 B`: a `ping` topic (parent publishes, child subscribes) and a `pong`
//!   topic (the other way) of an 8-byte sample; each message is loan, write the sequence
//!   number in place, send; the receiver spins on `receive` and drops the sample;
//! - `shmlane-pubsub 1 MiB`: the same with a 1 MiB sample, of which the writer writes and the
//!   reader reads only the sequence number: no byte of the payload is copied.
//!
//! Both topics of a size have the same settings (one publisher, one subscriber, queue of 4,
//! 2 held, 2 loans), so the two sizes differ in payload size only.
//!
//! Prints one-way latency percentiles (round trip / 2) and the ratios of pub/sub to the
//! cache line and of 1 MiB to 8 B. `cargo bench -p shmlane-benches --bench pubsub [-- --iters N]`

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use shmlane::{Node, Publisher, Subscriber, Topic, ZeroCopy};
use shmlane_benches::peer::{self, QUANTILES};
use shmlane_benches::pingpong::{HANG, Peer, spin_until};
use shmlane_benches::{pin, two_cpus};
use shmlane_segment::{Carver, NAME_PREFIX, Offset, RegionLayout, Segment, SharedView};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Round trips per transport before switching to the next.
const ROUND: u64 = 1_000;
/// Round trips per transport discarded before recording.
const WARMUP: u64 = 10_000;
/// Recorded round trips per transport unless `--iters` says otherwise.
const ITERS: u64 = 500_000;

const TRANSPORTS: [&str; 3] = ["cacheline", "shmlane-pubsub 8 B", "shmlane-pubsub 1 MiB"];

/// The 8-byte sample: a sequence number.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Word {
    seq: u64,
}

/// The 1 MiB sample: a sequence number and a page nobody touches.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Page {
    seq: u64,
    bytes: [u8; (1 << 20) - 8],
}

const _: () = assert!(size_of::<Page>() == 1 << 20);

/// A sample that carries a round trip's sequence number.
trait Sequenced: ZeroCopy {
    fn seq(&self) -> u64;
    fn set_seq(&mut self, seq: u64);
}

impl Sequenced for Word {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

impl Sequenced for Page {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

/// The cache-line transport and the start-up flag, one cache line per word.
#[repr(C)]
struct Lanes {
    /// Parent → child.
    ping: CachePadded<AtomicU64>,
    /// Child → parent.
    pong: CachePadded<AtomicU64>,
    /// Set by the child once it is pinned, attached and served by the parent's subscribers.
    ready: CachePadded<AtomicU64>,
}

// SAFETY: a `#[repr(C)]` aggregate of atomics and padding: every bit pattern is valid and
// every access is atomic.
unsafe impl SharedView for Lanes {}

fn lanes_at() -> (Offset<Lanes>, u64) {
    let mut carver = Carver::new();
    let region =
        carver.place(RegionLayout { size: size_of::<Lanes>() as u64, align: 128 }).expect("layout");
    (region.offset_of(0).expect("offset"), carver.total_size())
}

/// Parent side of one cache-line round trip.
fn cacheline_round_trip(lanes: &Lanes, seq: u64) {
    // Release: pairs with the child's Acquire load; nothing else rides on it.
    lanes.ping.store(seq, Ordering::Release);
    // Acquire: pairs with the child's Release store of the echo.
    spin_until("the cache-line echo", || (lanes.pong.load(Ordering::Acquire) == seq).then_some(()));
}

/// Child side of one cache-line round trip.
fn cacheline_echo(lanes: &Lanes, seq: u64) {
    // Acquire: pairs with the parent's Release store of `ping`.
    spin_until("the cache-line ping", || (lanes.ping.load(Ordering::Acquire) == seq).then_some(()));
    // Release: pairs with the parent's Acquire spin on `pong`.
    lanes.pong.store(seq, Ordering::Release);
}

/// One process's ends of a ping-pong pair of topics: it publishes on one, subscribes to the
/// other.
struct Ends<T> {
    publisher: Publisher<T>,
    subscriber: Subscriber<T>,
}

impl<T: Sequenced> Ends<T> {
    fn new(outbound: &Topic<T>, inbound: &Topic<T>) -> Self {
        Ends {
            publisher: outbound.publisher().expect("claim a publisher slot"),
            subscriber: inbound.subscriber().expect("claim a subscriber slot"),
        }
    }

    /// Whether the peer's subscriber is being served (samples sent before are not its).
    fn peer_subscribed(&self) -> bool {
        self.publisher.subscribers() == 1
    }

    /// Loans a block, writes `seq` in place (nothing else), sends it.
    fn send(&self, seq: u64) {
        let mut sample = self.publisher.loan().expect("loan a block");
        sample.set_seq(seq);
        let delivered = self.publisher.send(sample).expect("send");
        assert_eq!(delivered, 1, "sample {seq} not queued for the peer");
    }

    /// Spins on `receive` until a sample arrives, reads its sequence number (nothing else),
    /// drops it, and checks it is `seq`.
    fn receive(&self, seq: u64) {
        let got = spin_until("a sample", || {
            self.subscriber.receive().expect("receive").map(|sample| sample.seq())
        });
        assert_eq!(got, seq, "samples lost or reordered");
    }
}

/// Topic `service` of `T` with this bench's settings: created by the parent, opened by the
/// child (which gets the creator's settings).
fn topic<T: ZeroCopy>(node: &Node, service: &str, create: bool) -> Topic<T> {
    let builder = node
        .topic::<T>(service)
        .max_publishers(1)
        .max_subscribers(1)
        .subscriber_capacity(4)
        .max_held(2)
        .max_loans(2);
    let topic = if create { builder.create() } else { builder.open() };
    topic.unwrap_or_else(|e| panic!("topic {service}: {e}"))
}

/// The four topics: ping and pong of each size.
struct Topics {
    ping_word: Topic<Word>,
    pong_word: Topic<Word>,
    ping_page: Topic<Page>,
    pong_page: Topic<Page>,
}

impl Topics {
    fn new(node: &Node, create: bool) -> Topics {
        Topics {
            ping_word: topic(node, "ping8", create),
            pong_word: topic(node, "pong8", create),
            ping_page: topic(node, "ping1m", create),
            pong_page: topic(node, "pong1m", create),
        }
    }
}

/// How long a run is.
#[derive(Clone, Copy)]
struct Plan {
    /// Round trips per transport per round.
    round: u64,
    /// Rounds in all.
    rounds: u64,
    /// Round trips per transport discarded before recording.
    warmup: u64,
}

fn main() {
    if let Some(args) = peer::child_args() {
        return child(&args);
    }
    let (mut iters, round, warmup) =
        if peer::smoke_test() { (300, 100, 100) } else { (ITERS, ROUND, WARMUP) };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--iters" {
            iters = args.next().and_then(|n| n.parse().ok()).expect("--iters needs a number");
        }
    }
    assert!(iters > 0, "--iters must be at least 1");
    let plan = Plan { round, rounds: (warmup + iters).div_ceil(round), warmup };
    let pid = std::process::id();
    let lanes_name = format!("bench.pubsub.{pid}");
    let namespace = format!("bench_pubsub_{pid}");

    let outcome = std::panic::catch_unwind(|| parent(&lanes_name, &namespace, plan));
    // Every segment is gone by now, unless the peer had to be killed. Remove what is left
    // either way, so a failed run leaves nothing behind either.
    let ours = |file: &str| {
        file == format!("{NAME_PREFIX}{lanes_name}")
            || file.starts_with(&format!("{NAME_PREFIX}{namespace}."))
    };
    let left: Vec<PathBuf> = std::fs::read_dir("/dev/shm")
        .expect("list /dev/shm")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.file_name().and_then(|f| f.to_str()).is_some_and(ours))
        .collect();
    for path in &left {
        let _ = std::fs::remove_file(path);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(left.is_empty(), "segments left in /dev/shm after the run: {left:?}");
}

fn parent(lanes_name: &str, namespace: &str, plan: Plan) {
    let (core_a, core_b) = two_cpus();
    let (at, size) = lanes_at();
    let segment = Segment::builder(lanes_name)
        .size(size)
        .populate(true)
        .create()
        .expect("create the segment");
    let lanes = segment.get(at).expect("lanes");
    let node = Node::builder("bench-parent").namespace(namespace).create().expect("node");
    let topics = Topics::new(&node, true);
    let word = Ends::new(&topics.ping_word, &topics.pong_word);
    let page = Ends::new(&topics.ping_page, &topics.pong_page);
    // Pinned before the parent pins itself: a pinned parent's children inherit its one CPU.
    let mut peer = Peer(peer::spawn(
        &[
            lanes_name,
            namespace,
            &core_b.to_string(),
            &plan.round.to_string(),
            &plan.rounds.to_string(),
        ],
        Stdio::null(),
        Stdio::null(),
    ));
    pin(core_a);
    let deadline = Instant::now() + HANG;
    // Acquire: pairs with the child's Release store once it is attached.
    while lanes.ready.load(Ordering::Acquire) == 0 {
        peer.check_alive();
        assert!(Instant::now() < deadline, "the peer did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    while !(word.peer_subscribed() && page.peer_subscribed()) {
        assert!(Instant::now() < deadline, "the peer's subscribers did not join");
        std::thread::yield_now();
    }

    let mut histograms: Vec<Histogram<u64>> =
        TRANSPORTS.iter().map(|_| peer::histogram()).collect();
    for round in 0..plan.rounds {
        let record = round * plan.round >= plan.warmup;
        for (transport, histogram) in histograms.iter_mut().enumerate() {
            for i in 0..plan.round {
                let seq = round * plan.round + i + 1;
                let start = Instant::now();
                match transport {
                    0 => cacheline_round_trip(lanes, seq),
                    1 => {
                        word.send(seq);
                        word.receive(seq);
                    }
                    _ => {
                        page.send(seq);
                        page.receive(seq);
                    }
                }
                let rtt = start.elapsed().as_nanos() as u64;
                if record {
                    histogram.record(rtt).expect("in range");
                }
            }
        }
    }
    peer.join();
    report(&histograms, plan, core_a, core_b);
}

fn report(histograms: &[Histogram<u64>], plan: Plan, core_a: usize, core_b: usize) {
    println!(
        "\npub/sub ping-pong, both sides busy polling, processes on cores {core_a} and {core_b}: \
         {} round trips per transport in alternating rounds of {}; one-way ns (RTT / 2)",
        histograms[0].len(),
        plan.round
    );
    print!("{:>20}", "transport");
    for (name, _) in QUANTILES {
        print!(" {name:>7}");
    }
    println!(" {:>7}", "max");
    for (name, histogram) in TRANSPORTS.iter().zip(histograms) {
        print!("{name:>20}");
        for (_, q) in QUANTILES {
            print!(" {:>7}", histogram.value_at_quantile(q) / 2);
        }
        println!(" {:>7}", histogram.max() / 2);
    }
    let ratio = |a: usize, b: usize, q| {
        histograms[a].value_at_quantile(q) as f64 / histograms[b].value_at_quantile(q).max(1) as f64
    };
    println!(
        "pub/sub 8 B / cacheline: p50 {:.2} (goal ≤ 2.5), p99 {:.2}; \
         1 MiB / 8 B: p50 {:.2} (goal ≤ 1.2), p99 {:.2}",
        ratio(1, 0, 0.5),
        ratio(1, 0, 0.99),
        ratio(2, 1, 0.5),
        ratio(2, 1, 0.99)
    );
    if core_a == core_b {
        println!("(both processes ran on one core: the numbers measure context switches)");
    }
}

/// The echo side: `LANES NAMESPACE CORE ROUND ROUNDS`.
fn child(args: &[String]) {
    let [lanes_name, namespace, core, round, rounds] = args else {
        panic!("peer needs LANES NAMESPACE CORE ROUND ROUNDS")
    };
    pin(core.parse().expect("core"));
    let round: u64 = round.parse().expect("round");
    let rounds: u64 = rounds.parse().expect("rounds");
    let segment = Segment::builder(lanes_name).open().expect("open the segment");
    let lanes = segment.get(lanes_at().0).expect("lanes");
    let node = Node::builder("bench-child").namespace(namespace.as_str()).create().expect("node");
    let topics = Topics::new(&node, false);
    let word = Ends::new(&topics.pong_word, &topics.ping_word);
    let page = Ends::new(&topics.pong_page, &topics.ping_page);
    // The parent's subscribers existed before we started: serve them before saying ready.
    let deadline = Instant::now() + HANG;
    while !(word.peer_subscribed() && page.peer_subscribed()) {
        assert!(Instant::now() < deadline, "the parent's subscribers are not there");
        std::thread::yield_now();
    }
    // Release: tells the parent we are pinned and attached.
    lanes.ready.store(1, Ordering::Release);
    for r in 0..rounds {
        for transport in 0..TRANSPORTS.len() {
            for i in 0..round {
                let seq = r * round + i + 1;
                match transport {
                    0 => cacheline_echo(lanes, seq),
                    1 => {
                        word.receive(seq);
                        word.send(seq);
                    }
                    _ => {
                        page.receive(seq);
                        page.send(seq);
                    }
                }
            }
        }
    }
}
