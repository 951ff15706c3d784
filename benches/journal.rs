//! The journal (`shmlane-journal`, issue 18's "Measured"), in one run, each measurement's
//! contenders in alternating rounds (reversed every other round) after a discarded warm-up
//! round:
//!
//! 1. **append latency**, 64 B and 1 KiB records, durability `None`, no tailer: each
//!    `Appender::append` timed alone (two `Instant::now()`), by a journal with the default
//!    configuration (`journal`, which maps its files in 1 MiB ahead of the appender,
//!    `JournalConfig::prefault`) and one that does not (`no-prefault`: each new page of a
//!    file faults on its first write),
//!    against a plain `write(2)` of the same bytes into a file opened with `O_APPEND` (the
//!    kernel-path baseline) and against the empty timed section (the clock's own cost,
//!    `clock`). One journal per size and configuration for the whole run (64 MiB files), so
//!    its rolls (creating and preallocating the next file) fall where they would;
//! 2. **throughput**, 64 B records as fast as the appender goes, `journal+tailer` (a tailer
//!    thread on the other CPU busy-polls `Tailer::next` and checks every record), from the
//!    first append until the tailer has the last; against `journal` alone and `write(2)`
//!    alone; records/s and MB/s of payload, per round. The journals grow through the run, so
//!    every round maps pages the file system has never held; `recycled+tailer` instead
//!    appends each round to a fresh journal, after deleting its previous round's, so that
//!    its pages are ones the kernel just freed. (In a KVM guest that returns free memory to
//!    the host, as the reference machine does, a never-held page costs the host a fault
//!    when the kernel zeroes it: the appender's `memset` in a profile);
//! 3. **tailer wake-up**: the appender stamps `CLOCK_MONOTONIC` into a 64 B record and
//!    appends it, the tailer (`Tailer::next_with`) measures how late it holds the record:
//!    `Blocking` (asleep on the futex; the appender waits 50 µs between records so that it is)
//!    against `BusySpin`.
//!
//! The tailer thread is pinned to the second CPU before the appender (the main thread) pins
//! itself to the first (by explicit id; default the first two of the affinity mask). The
//! journals and files live in a fresh directory under `--dir` (default the temporary
//! directory, a disk file system here), removed at the end, also on failure or Ctrl-C.
//! Before each measurement, and before each throughput round, outside the timed part, the
//! file system's dirty pages are written back (`syncfs`): otherwise a measurement pays for
//! the writeback of the earlier ones' gigabytes, on whichever CPU the kernel's flusher threads
//! preempt. (Not before each latency round: writeback write-protects the pages a journal
//! mapped in ahead, and the next write to each faults again, which steady appending does not
//! see.)
//!
//! ```sh
//! cargo bench -p shmlane-benches --bench journal \
//!     [-- --ops N --records N --wakeups N --rounds N --prefault BYTES --cores A,B --dir DIR \
//!      --only latency|throughput|wakeup]
//! cargo bench -p shmlane-benches --bench journal -- --test   # smoke: a few hundred of each
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlane_benches::peer::{self, QUANTILES, monotonic_ns};
use shmlane_benches::pin;
use shmlane_benches::pingpong::{self, check_interrupt, options, order, spin_until};
use shmlane_benches::rounds::spread;
use shmlane_journal::notify::{Blocking, BusySpin, WaitStrategy};
use shmlane_journal::{Appender, Journal, JournalConfig, TailFrom};

/// Appends per contender, size and round of the latency measurement, unless `--ops`.
const OPS: u64 = 50_000;
/// Records per contender and round of the throughput measurement, unless `--records`.
const RECORDS: u64 = 1_000_000;
/// Records per strategy and round of the wake-up measurement, unless `--wakeups`.
const WAKEUPS: u64 = 1_000;
/// Recorded rounds, unless `--rounds`.
const ROUNDS: u64 = 5;
/// Record sizes of the latency measurement.
const SIZES: [usize; 2] = [64, 1024];
/// Record size of the throughput and wake-up measurements.
const SMALL: usize = 64;
/// The appender's pause between wake-up records, long enough for a blocking tailer to sleep.
const WAKE_GAP: Duration = Duration::from_micros(50);
/// `JournalConfig::prefault` of `journal`, unless `--prefault`.
const PREFAULT: u64 = shmlane_journal::DEFAULT_PREFAULT;
/// Goals of issue 18.
const GOAL_P999_NS: u64 = 1_500;
const GOAL_RECORDS_PER_S: f64 = 5e6;

/// Writes the dirty pages of `dir`'s file system back and waits, between rounds.
fn settle(dir: &Path) {
    let dir = File::open(dir).expect("open the bench directory");
    rustix::fs::syncfs(&dir).expect("syncfs");
}

/// The run's directory, removed when dropped (also when a panic unwinds).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where appended records go: the journal, or the kernel-path baseline.
enum Sink {
    Journal(Appender),
    NoPrefault(Appender),
    Write(File),
    /// Nothing: the timed section's own cost.
    Clock,
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Journal(_) => "journal",
            Sink::NoPrefault(_) => "no-prefault",
            Sink::Write(_) => "write(2)",
            Sink::Clock => "clock",
        }
    }

    #[inline(always)]
    fn put(&mut self, payload: &[u8]) {
        match self {
            Sink::Journal(appender) | Sink::NoPrefault(appender) => {
                appender.append(payload).expect("append");
            }
            Sink::Write(file) => write_record(file, payload),
            Sink::Clock => {
                std::hint::black_box(payload);
            }
        }
    }
}

/// One `write(2)` of `payload`.
#[inline(always)]
fn write_record(file: &File, payload: &[u8]) {
    let written = rustix::io::write(file, payload).expect("write(2)");
    assert_eq!(written, payload.len(), "a short write");
}

/// A file opened for appending with `O_APPEND`, as a logger would.
fn append_file(path: &Path) -> File {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .expect("create the baseline file")
}

/// A journal with the default configuration.
fn journal(dir: &Path) -> Journal {
    Journal::open(dir, JournalConfig::default()).expect("open a journal")
}

/// A journal whose appender maps its files in `prefault` bytes ahead (0: not at all).
fn prefaulted(dir: &Path, prefault: u64) -> Journal {
    Journal::open(dir, JournalConfig { prefault, ..JournalConfig::default() })
        .expect("open a journal")
}

/// A payload of `size` bytes numbered `seq` (its first 8 bytes).
fn stamp(payload: &mut [u8], seq: u64) {
    payload[..8].copy_from_slice(&seq.to_le_bytes());
}

/// What the tailer thread is asked to do.
enum Job {
    /// Follow `journal` from record `first` to `first + count`, busy-polling, checking each
    /// record's number; store `round` into `done` once it has the last.
    Follow {
        journal: Journal,
        first: u64,
        count: u64,
        round: u64,
    },
    /// Wait for `count` records from `first`, with `Blocking` or `BusySpin`, recording how
    /// late each is; acknowledge each in `acked`; send the histogram back.
    Wake {
        journal: Journal,
        first: u64,
        count: u64,
        blocking: bool,
    },
    Stop,
}

/// Words the appender and the tailer thread share, one cache line each.
#[derive(Default)]
struct Shared {
    /// Set once the tailer of a job is made and polling.
    ready: crossbeam_utils::CachePadded<AtomicU64>,
    /// The round whose last record the tailer has (`Follow`).
    done: crossbeam_utils::CachePadded<AtomicU64>,
    /// The number of the last wake-up record the tailer has (`Wake`), plus one.
    acked: crossbeam_utils::CachePadded<AtomicU64>,
}

/// The tailer thread: pinned to `cpu`, runs jobs until `Stop`.
fn tailer_thread(
    cpu: usize,
    shared: &Shared,
    jobs: mpsc::Receiver<Job>,
    results: mpsc::Sender<Histogram<u64>>,
) {
    pin(cpu);
    // Release: tells the appender the thread is pinned (nothing rides on it).
    shared.ready.store(1, Ordering::Release);
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Follow { journal, first, count, round } => {
                let mut tailer = journal.tailer(TailFrom::Index(first)).expect("a tailer");
                // Release: nothing rides on it; the appender starts its clock after it.
                shared.ready.store(round, Ordering::Release);
                let mut expected = first;
                while expected < first + count {
                    let Some(record) = tailer.next().expect("a valid record") else {
                        std::hint::spin_loop();
                        continue;
                    };
                    let seq = u64::from_le_bytes(record.payload()[..8].try_into().expect("8"));
                    assert_eq!((record.index(), seq), (expected, expected), "records in order");
                    expected += 1;
                }
                // Release: nothing rides on it but the count; the appender stops its clock.
                shared.done.store(round, Ordering::Release);
            }
            Job::Wake { journal, first, count, blocking } => {
                let mut tailer = journal.tailer(TailFrom::Index(first)).expect("a tailer");
                let mut histogram = peer::histogram();
                // Release: nothing rides on it; the appender starts appending after it.
                shared.ready.store(u64::MAX, Ordering::Release);
                for n in 0..count {
                    let late = if blocking {
                        wait_one(&mut tailer, &mut Blocking::new(), first + n)
                    } else {
                        wait_one(&mut tailer, &mut BusySpin, first + n)
                    };
                    histogram.record(late.max(1)).expect("in range");
                    // Release: nothing rides on it; the appender paces itself by it.
                    shared.acked.store(n + 1, Ordering::Release);
                }
                results.send(histogram).expect("the appender waits for the histogram");
            }
            Job::Stop => return,
        }
    }
}

/// Waits for record `index` with `strategy`; returns how many ns after its stamp it arrived.
fn wait_one(
    tailer: &mut shmlane_journal::Tailer,
    strategy: &mut impl WaitStrategy,
    index: u64,
) -> u64 {
    let record = tailer
        .next_with(strategy, Some(Duration::from_secs(10)))
        .expect("a valid record")
        .expect("the record within 10 s");
    let now = monotonic_ns();
    assert_eq!(record.index(), index, "records in order");
    let stamped = u64::from_le_bytes(record.payload()[..8].try_into().expect("8"));
    now.saturating_sub(stamped)
}

/// Histograms of one contender: all rounds, and each round.
struct Latencies {
    name: &'static str,
    all: Histogram<u64>,
    rounds: Vec<Histogram<u64>>,
}

impl Latencies {
    fn new(name: &'static str) -> Latencies {
        Latencies { name, all: peer::histogram(), rounds: Vec::new() }
    }
}

/// How long a run is.
#[derive(Clone, Copy, Debug)]
struct Plan {
    ops: u64,
    records: u64,
    wakeups: u64,
    rounds: u64,
    prefault: u64,
}

fn main() {
    pingpong::stop_on_signals();
    let smoke = peer::smoke_test();
    let (mut ops, mut records, mut wakeups, mut rounds) =
        if smoke { (500, 2_000, 20, 1) } else { (OPS, RECORDS, WAKEUPS, ROUNDS) };
    let mut prefault = PREFAULT;
    let (core_a, core_b) = options(&mut [
        ("--ops", &mut ops),
        ("--records", &mut records),
        ("--wakeups", &mut wakeups),
        ("--rounds", &mut rounds),
        ("--prefault", &mut prefault),
    ]);
    let value = |name: &str| std::env::args().skip_while(|arg| arg != name).nth(1);
    let root = value("--dir").map_or_else(std::env::temp_dir, PathBuf::from);
    let only = value("--only");
    let run = |name: &str| only.as_deref().is_none_or(|only| only == name);
    let scratch = Scratch(root.join(format!("shmlane-bench-journal.{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).expect("create the bench directory");
    let plan = Plan { ops, records, wakeups, rounds, prefault };
    println!(
        "journal bench: appender on CPU {core_a}, tailer on CPU {core_b}, files in {}",
        scratch.0.display()
    );

    let shared = Shared::default();
    let (jobs, job_queue) = mpsc::channel();
    let (result_tx, results) = mpsc::channel();
    std::thread::scope(|scope| {
        let shared = &shared;
        let tailer = scope.spawn(move || tailer_thread(core_b, shared, job_queue, result_tx));
        // Acquire: pairs with the tailer thread's Release store once it is pinned.
        spin_until("the tailer thread to pin itself", || {
            (shared.ready.load(Ordering::Acquire) == 1).then_some(())
        });
        pin(core_a);
        // Whatever happens below, the tailer thread is told to stop (or sees the channel
        // closed when `jobs` drops on a panic).
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if run("latency") {
                latency(&scratch.0, plan);
            }
            if run("throughput") {
                throughput(&scratch.0, plan, shared, &jobs);
            }
            if run("wakeup") {
                wakeup(&scratch.0, plan, shared, &jobs, &results);
            }
        }));
        let _ = jobs.send(Job::Stop);
        drop(jobs);
        tailer.join().expect("the tailer thread panicked");
        if let Err(panic) = run {
            std::panic::resume_unwind(panic);
        }
    });
    if core_a == core_b {
        println!("(appender and tailer ran on one CPU: the numbers measure context switches)");
    }
}

/// Measurement 1: append latency against `write(2)` with `O_APPEND` and the clock's floor.
fn latency(dir: &Path, plan: Plan) {
    let mut results: Vec<Vec<Latencies>> = Vec::new();
    for &size in &SIZES {
        let journal = prefaulted(&dir.join(format!("latency{size}")), plan.prefault);
        let faulting = prefaulted(&dir.join(format!("faulting{size}")), 0);
        let mut sinks = [
            Sink::Journal(journal.appender().expect("the appender")),
            Sink::NoPrefault(faulting.appender().expect("the appender")),
            Sink::Write(append_file(&dir.join(format!("append{size}.dat")))),
            Sink::Clock,
        ];
        let mut latencies: Vec<Latencies> =
            sinks.iter().map(|s| Latencies::new(s.name())).collect();
        let mut payload = vec![0xA5u8; size];
        let mut seq = 0;
        settle(dir);
        for round in 0..=plan.rounds {
            check_interrupt();
            for contender in order(round, sinks.len()) {
                let mut histogram = peer::histogram();
                for _ in 0..plan.ops {
                    stamp(&mut payload, seq);
                    seq += 1;
                    let start = Instant::now();
                    sinks[contender].put(&payload);
                    let took = start.elapsed().as_nanos() as u64;
                    histogram.record(took.max(1)).expect("in range");
                }
                if round > 0 {
                    latencies[contender].all.add(&histogram).expect("same bounds");
                    latencies[contender].rounds.push(histogram);
                }
            }
        }
        results.push(latencies);
    }
    println!(
        "\nappend latency, ns per call (timed alone, two Instant::now() included), durability \
         None, no tailer: {} calls per contender, size and round, {} rounds (1 warm-up round \
         discarded); the journals' 64 MiB files roll within the run; journal maps its files in \
         {} KiB ahead (JournalConfig::prefault), no-prefault does not",
        plan.ops,
        plan.rounds,
        plan.prefault >> 10
    );
    print!("{:>6} {:>11}", "size", "contender");
    for (name, _) in QUANTILES {
        print!(" {name:>8}");
    }
    println!(" {:>9}", "max");
    for (size, latencies) in SIZES.iter().zip(&results) {
        for contender in latencies {
            print!("{:>6} {:>11}", pingpong::size_name(*size), contender.name);
            for (_, q) in QUANTILES {
                print!(" {:>8}", contender.all.value_at_quantile(q));
            }
            println!(" {:>9}", contender.all.max());
        }
    }
    println!("per-round ratios (min / median / max) of the journal's percentiles over write(2)'s:");
    for (size, latencies) in SIZES.iter().zip(&results) {
        for ours in &latencies[..2] {
            print!("{:>6} {:>11} / write(2):", pingpong::size_name(*size), ours.name);
            for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
                let ratios: Vec<f64> = ours
                    .rounds
                    .iter()
                    .zip(&latencies[2].rounds)
                    .map(|(j, w)| {
                        j.value_at_quantile(q) as f64 / w.value_at_quantile(q).max(1) as f64
                    })
                    .collect();
                let (min, median, max) = spread(&ratios);
                print!("  {label} {min:.2} / {median:.2} / {max:.2}");
            }
            println!();
        }
    }
    for ours in &results[0][..2] {
        let p999 = ours.all.value_at_quantile(0.999);
        println!(
            "goal: append p99.9 at 64 B <= {GOAL_P999_NS} ns, {}: {p999} ns, {}",
            ours.name,
            if p999 <= GOAL_P999_NS { "met" } else { "NOT met" }
        );
    }
}

/// Appends `count` records to the journal in `path` with `appender` while the tailer thread
/// follows them (job number `job`); the time from the first append until the tailer has the
/// last.
fn followed(
    path: &Path,
    appender: &mut Appender,
    count: u64,
    job: u64,
    shared: &Shared,
    jobs: &mpsc::Sender<Job>,
) -> Duration {
    let first = appender.next_index();
    let follow = Job::Follow { journal: journal(path), first, count, round: job };
    jobs.send(follow).expect("the tailer thread runs");
    // Acquire: pairs with the tailer's Release store once it polls.
    spin_until("the tailer to start", || {
        (shared.ready.load(Ordering::Acquire) == job).then_some(())
    });
    let mut payload = [0x5Au8; SMALL];
    let start = Instant::now();
    for seq in first..first + count {
        stamp(&mut payload, seq);
        appender.append(&payload).expect("append");
    }
    // Acquire: pairs with the tailer's Release store once it has the last.
    spin_until("the tailer to read the round", || {
        (shared.done.load(Ordering::Acquire) == job).then_some(())
    });
    start.elapsed()
}

/// Measurement 2: records/s at 64 B with a tailer following, alone, and through `write(2)`;
/// and with a tailer following on a fresh journal whose pages are those the previous round's
/// journal just freed.
fn throughput(dir: &Path, plan: Plan, shared: &Shared, jobs: &mpsc::Sender<Job>) {
    const NAMES: [&str; 4] = ["journal+tailer", "journal", "write(2)", "recycled+tailer"];
    let tailed_path = dir.join("throughput-tailed");
    let mut tailed = journal(&tailed_path).appender().expect("the appender");
    let alone = journal(&dir.join("throughput-alone"));
    let mut appender = alone.appender().expect("the appender");
    let file = append_file(&dir.join("throughput.dat"));
    let recycled = dir.join("throughput-recycled");
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut payload = [0x5Au8; SMALL];
    let mut job = 1;
    for round in 0..=plan.rounds {
        check_interrupt();
        for contender in order(round, NAMES.len()) {
            settle(dir);
            job += 1;
            let elapsed = match contender {
                0 => followed(&tailed_path, &mut tailed, plan.records, job, shared, jobs),
                3 => {
                    // The previous round's journal, deleted: its pages are free again, and
                    // the first the kernel hands out (freed pages are reused first).
                    let _ = std::fs::remove_dir_all(&recycled);
                    let mut fresh = journal(&recycled).appender().expect("the appender");
                    followed(&recycled, &mut fresh, plan.records, job, shared, jobs)
                }
                1 => {
                    let first = appender.next_index();
                    let start = Instant::now();
                    for seq in first..first + plan.records {
                        stamp(&mut payload, seq);
                        appender.append(&payload).expect("append");
                    }
                    start.elapsed()
                }
                _ => {
                    let start = Instant::now();
                    for seq in 0..plan.records {
                        stamp(&mut payload, seq);
                        write_record(&file, &payload);
                    }
                    start.elapsed()
                }
            };
            if round > 0 {
                rates[contender].push(plan.records as f64 / elapsed.as_secs_f64().max(1e-9));
            }
        }
    }
    println!(
        "\nthroughput, {SMALL} B records, {} per contender and round, {} rounds (1 warm-up \
         discarded): M records/s (min / median / max over the rounds), MB/s of payload at the \
         median",
        plan.records, plan.rounds
    );
    println!("{:>16} {:>8} {:>8} {:>8} {:>8}", "contender", "min", "median", "max", "MB/s");
    for (name, rates) in NAMES.iter().zip(&rates) {
        let (min, median, max) = spread(rates);
        println!(
            "{name:>16} {:>8.2} {:>8.2} {:>8.2} {:>8.0}",
            min / 1e6,
            median / 1e6,
            max / 1e6,
            median * SMALL as f64 / 1e6
        );
    }
    let ratios: Vec<f64> = rates[0].iter().zip(&rates[2]).map(|(j, w)| j / w).collect();
    let (min, median, max) = spread(&ratios);
    println!("journal+tailer / write(2) per round: {min:.2} / {median:.2} / {max:.2}");
    for contender in [0, 3] {
        let (_, median, _) = spread(&rates[contender]);
        println!(
            "goal: >= {:.0} M records/s at 64 B with one tailer following, {}: {:.2} M, {}",
            GOAL_RECORDS_PER_S / 1e6,
            NAMES[contender],
            median / 1e6,
            if median >= GOAL_RECORDS_PER_S { "met" } else { "NOT met" }
        );
    }
}

/// Measurement 3: how late a tailer holds a record, blocking on the futex or spinning.
fn wakeup(
    dir: &Path,
    plan: Plan,
    shared: &Shared,
    jobs: &mpsc::Sender<Job>,
    results: &mpsc::Receiver<Histogram<u64>>,
) {
    const NAMES: [&str; 2] = ["Blocking", "BusySpin"];
    let path = dir.join("wakeup");
    let mut appender = journal(&path).appender().expect("the appender");
    let mut histograms: Vec<Histogram<u64>> = NAMES.iter().map(|_| peer::histogram()).collect();
    let mut payload = [0u8; SMALL];
    settle(dir);
    for round in 0..=plan.rounds {
        check_interrupt();
        for contender in order(round, NAMES.len()) {
            let first = appender.next_index();
            // Relaxed: the job's send orders the reset before the tailer's first store.
            shared.acked.store(0, Ordering::Relaxed);
            shared.ready.store(0, Ordering::Relaxed);
            let job = Job::Wake {
                journal: journal(&path),
                first,
                count: plan.wakeups,
                blocking: contender == 0,
            };
            jobs.send(job).expect("the tailer thread runs");
            // Acquire: pairs with the tailer's Release store once it waits.
            spin_until("the tailer to start", || {
                (shared.ready.load(Ordering::Acquire) == u64::MAX).then_some(())
            });
            for n in 0..plan.wakeups {
                let resume = Instant::now() + WAKE_GAP;
                while Instant::now() < resume {
                    std::hint::spin_loop();
                }
                stamp(&mut payload, monotonic_ns());
                appender.append(&payload).expect("append");
                // Acquire: pairs with the tailer's Release store of its acknowledgement.
                spin_until("the tailer to take the record", || {
                    (shared.acked.load(Ordering::Acquire) > n).then_some(())
                });
            }
            let histogram = results.recv().expect("the tailer's histogram");
            if round > 0 {
                histograms[contender].add(&histogram).expect("same bounds");
            }
        }
    }
    println!(
        "\ntailer wake-up, ns from the appender's stamp (taken just before `append`) until the \
         tailer holds the record, {SMALL} B records one at a time ({} µs apart), {} per \
         strategy and round, {} rounds (1 warm-up discarded)",
        WAKE_GAP.as_micros(),
        plan.wakeups,
        plan.rounds
    );
    print!("{:>9}", "strategy");
    for (name, _) in QUANTILES {
        print!(" {name:>8}");
    }
    println!(" {:>9}", "max");
    for (name, histogram) in NAMES.iter().zip(&histograms) {
        print!("{name:>9}");
        for (_, q) in QUANTILES {
            print!(" {:>8}", histogram.value_at_quantile(q));
        }
        println!(" {:>9}", histogram.max());
    }
}
