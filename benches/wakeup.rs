//! Cross-process wake-up ping-pong with both sides blocking, on two pinned cores: each round
//! trip wakes the peer, which wakes the initiator back. Three transports, in alternating
//! rounds of the same run:
//!
//! - `shmlane`: a sequence word + `EventCount` each way, waited on with the `Blocking`
//!   strategy (prepare, re-check, futex wait) and notified with `notify_one`;
//! - `raw futex`: a bare 32-bit word each way, `FUTEX_WAIT` / `FUTEX_WAKE` on every message;
//! - `pipe`: one byte through a pipe each way, blocking `read`.
//!
//! Prints one-way latency percentiles (round trip / 2) and the ratios of shmlane to the raw
//! futex. `cargo bench -p shmlane-benches --bench wakeup [-- --iters N]`

use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use rustix::thread::futex;
use shmlane_benches::peer::{self, QUANTILES};
use shmlane_benches::{pin, two_cpus};
use shmlane_notify::{Blocking, EventCount, WaitStrategy};
use shmlane_segment::{Carver, Offset, RegionLayout, Segment, SharedView};

/// Round trips per transport before switching to the next.
const ROUND: u64 = 200;
/// Round trips per transport discarded before recording.
const WARMUP: u64 = 1_000;
/// Longest any single wait may take before the run is declared hung.
const HANG: Duration = Duration::from_secs(10);
/// Index of the parent → child direction in [`Lanes`]; the other is child → parent.
const TO_CHILD: usize = 0;
const TO_PARENT: usize = 1;

const TRANSPORTS: [&str; 3] = ["shmlane", "raw futex", "pipe"];

/// Everything both processes share, one cache line per word.
#[repr(C)]
struct Lanes {
    /// Last round trip sent each way through the event counts.
    seq: [CachePadded<AtomicU64>; 2],
    event: [CachePadded<EventCount>; 2],
    /// Last round trip sent each way through the raw futexes.
    futex: [CachePadded<AtomicU32>; 2],
    /// Set by the child once it is pinned and attached.
    ready: CachePadded<AtomicU64>,
}

// SAFETY: a `#[repr(C)]` aggregate of shared-view fields (atomics, event counts, padding).
unsafe impl SharedView for Lanes {}

fn lanes_at() -> (Offset<Lanes>, u64) {
    let mut carver = Carver::new();
    let region =
        carver.place(RegionLayout { size: size_of::<Lanes>() as u64, align: 128 }).expect("layout");
    (region.offset_of(0).expect("offset"), carver.total_size())
}

/// Sends `seq` one way through the event count.
fn shmlane_send(lanes: &Lanes, way: usize, seq: u64) {
    // Release: pairs with the receiver's Acquire poll.
    lanes.seq[way].store(seq, Ordering::Release);
    lanes.event[way].notify_one();
}

/// Blocks until `seq` arrives one way through the event count.
fn shmlane_receive(lanes: &Lanes, way: usize, seq: u64, strategy: &mut Blocking) {
    // Acquire: pairs with the sender's Release store.
    let poll = || (lanes.seq[way].load(Ordering::Acquire) == seq).then_some(());
    strategy.wait_for(&lanes.event[way], Some(Instant::now() + HANG), poll).expect("hung");
}

/// Sends `seq` one way through the raw futex: store, then always wake.
fn futex_send(lanes: &Lanes, way: usize, seq: u64) {
    // Release: pairs with the receiver's Acquire load.
    lanes.futex[way].store(seq as u32, Ordering::Release);
    futex::wake(&lanes.futex[way], futex::Flags::empty(), 1).expect("futex wake");
}

/// Blocks until `seq` arrives one way through the raw futex.
fn futex_receive(lanes: &Lanes, way: usize, seq: u64) {
    let word = &lanes.futex[way];
    let timeout = futex::Timespec { tv_sec: HANG.as_secs() as i64, tv_nsec: 0 };
    loop {
        // Acquire: pairs with the sender's Release store.
        let seen = word.load(Ordering::Acquire);
        if seen == seq as u32 {
            return;
        }
        match futex::wait(word, futex::Flags::empty(), seen, Some(&timeout)) {
            Err(rustix::io::Errno::TIMEDOUT) => panic!("hung"),
            _ => continue, // woken, changed, interrupted: look again
        }
    }
}

fn pipe_send(fd: impl AsFd) {
    assert_eq!(rustix::io::write(fd, &[1]).expect("pipe write"), 1);
}

fn pipe_receive(fd: impl AsFd) {
    let mut byte = [0u8];
    assert_eq!(rustix::io::read(fd, &mut byte).expect("pipe read"), 1, "peer gone");
}

fn main() {
    if let Some(args) = peer::child_args() {
        return child(&args);
    }
    let mut iters: u64 = if peer::smoke_test() { ROUND } else { 20_000 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--iters" {
            iters = args.next().and_then(|n| n.parse().ok()).expect("--iters needs a number");
        }
    }
    let rounds = (WARMUP + iters).div_ceil(ROUND);
    let (core_a, core_b) = two_cpus();
    let (at, size) = lanes_at();
    let name = format!("bench.wakeup.{}", std::process::id());
    let segment =
        Segment::builder(&name).size(size).populate(true).create().expect("create the segment");
    let lanes = segment.get(at).expect("lanes");
    let (from_child, to_parent) = rustix::pipe::pipe().expect("pipe");
    let (from_parent, to_child) = rustix::pipe::pipe().expect("pipe");
    // Pinned before the parent pins itself: a pinned parent's children inherit its one CPU.
    let mut child = peer::spawn(
        &[&name, &core_b.to_string(), &rounds.to_string()],
        Stdio::from(from_parent),
        Stdio::from(to_parent),
    );
    pin(core_a);
    let deadline = Instant::now() + HANG;
    // Acquire: pairs with the child's Release store once it is attached.
    while lanes.ready.load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "the peer did not start");
        std::thread::yield_now();
    }

    let mut histograms: Vec<Histogram<u64>> =
        TRANSPORTS.iter().map(|_| peer::histogram()).collect();
    let mut blocking = Blocking::new();
    for round in 0..rounds {
        for (transport, histogram) in histograms.iter_mut().enumerate() {
            for i in 0..ROUND {
                let seq = round * ROUND + i + 1;
                let start = Instant::now();
                match transport {
                    0 => {
                        shmlane_send(lanes, TO_CHILD, seq);
                        shmlane_receive(lanes, TO_PARENT, seq, &mut blocking);
                    }
                    1 => {
                        futex_send(lanes, TO_CHILD, seq);
                        futex_receive(lanes, TO_PARENT, seq);
                    }
                    _ => {
                        pipe_send(&to_child);
                        pipe_receive(&from_child);
                    }
                }
                let rtt = start.elapsed().as_nanos() as u64;
                if round * ROUND >= WARMUP {
                    histogram.record(rtt).expect("in range");
                }
            }
        }
    }
    let status = child.wait().expect("wait for the peer");
    assert!(status.success(), "the peer failed: {status}");

    println!(
        "\nwake-up ping-pong, both sides blocking, processes on cores {core_a} and {core_b}: \
         {} round trips per transport in alternating rounds of {ROUND}; one-way ns (RTT / 2)",
        histograms[0].len()
    );
    print!("{:>10}", "transport");
    for (name, _) in QUANTILES {
        print!(" {name:>9}");
    }
    println!(" {:>9}", "max");
    for (name, histogram) in TRANSPORTS.iter().zip(&histograms) {
        print!("{name:>10}");
        for (_, q) in QUANTILES {
            print!(" {:>9}", histogram.value_at_quantile(q) / 2);
        }
        println!(" {:>9}", histogram.max() / 2);
    }
    let ratio = |q| {
        histograms[0].value_at_quantile(q) as f64 / histograms[1].value_at_quantile(q).max(1) as f64
    };
    println!(
        "shmlane / raw futex: p50 {:.3}, p99 {:.3}; pipe / raw futex p50 {:.3}",
        ratio(0.5),
        ratio(0.99),
        histograms[2].value_at_quantile(0.5) as f64
            / histograms[1].value_at_quantile(0.5).max(1) as f64
    );
    if core_a == core_b {
        println!("(both processes ran on one core: the numbers measure context switches)");
    }
}

/// The echo side: `NAME CORE ROUNDS`; stdin and stdout are the pipes.
fn child(args: &[String]) {
    let [name, core, rounds] = args else { panic!("peer needs NAME CORE ROUNDS") };
    pin(core.parse().expect("core"));
    let rounds: u64 = rounds.parse().expect("rounds");
    let segment = Segment::builder(name).open().expect("open the segment");
    let lanes = segment.get(lanes_at().0).expect("lanes");
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let mut blocking = Blocking::new();
    // Release: tells the parent we are pinned and attached.
    lanes.ready.store(1, Ordering::Release);
    for round in 0..rounds {
        for transport in 0..TRANSPORTS.len() {
            for i in 0..ROUND {
                let seq = round * ROUND + i + 1;
                match transport {
                    0 => {
                        shmlane_receive(lanes, TO_CHILD, seq, &mut blocking);
                        shmlane_send(lanes, TO_PARENT, seq);
                    }
                    1 => {
                        futex_receive(lanes, TO_CHILD, seq);
                        futex_send(lanes, TO_PARENT, seq);
                    }
                    _ => {
                        pipe_receive(stdin.as_fd());
                        pipe_send(stdout.as_fd());
                    }
                }
            }
        }
    }
}
