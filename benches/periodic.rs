//! Periodic traffic, as an audio callback or a timer-driven feed sees it: a producer process
//! publishes one message every 5.33 ms (256 frames at 48 kHz) through a `SharedSpsc` in a
//! segment and notifies an `EventCount`; a consumer process on another pinned core takes each
//! message with one wait strategy. For each of busy-spin, backoff, blocking and periodic, in
//! the same run: latency from the producer's timestamp to the consumer's receipt (both read
//! `CLOCK_MONOTONIC`), and the CPU time the consumer process used while waiting
//! (`getrusage`), as a share of one core.
//!
//! `cargo bench -p shmlane-benches --bench periodic [-- --messages N] [--period-us P]
//! [--target-spin-us S]` (S: the periodic strategy's target spin, default 10)

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_benches::peer::{self, QUANTILES};
use shmlane_benches::{pin, two_cpus};
use shmlane_notify::{Backoff, Blocking, BusySpin, EventCount, Periodic, WaitStrategy};
use shmlane_queue::spsc::SharedSpsc;
use shmlane_segment::{Carver, Fingerprint, Offset, Region, RegionLayout, Segment, SharedView};

/// A message: its sequence number and the producer's `CLOCK_MONOTONIC` when it was sent.
type Message = [u64; 2];

const STRATEGIES: [&str; 4] = ["busy-spin", "backoff", "blocking", "periodic"];
const ELEMENT: Fingerprint = Fingerprint::new("bench.periodic [seq, sent_ns]");
const QUEUE_CAPACITY: u64 = 64;
/// Longest any single wait may take before the run is declared hung.
const HANG: Duration = Duration::from_secs(10);
/// How long before each send the producer stops sleeping and spins, so sends are on time.
const SEND_SPIN: Duration = Duration::from_micros(300);

/// The control words both processes share, one cache line each.
#[repr(C)]
struct Control {
    event: CachePadded<EventCount>,
    /// Set by the consumer once it is pinned and attached.
    ready: CachePadded<AtomicU64>,
}

// SAFETY: a `#[repr(C)]` aggregate of shared-view fields (an event count, an atomic, padding).
unsafe impl SharedView for Control {}

/// Where things live in the segment: the same calls in both processes.
fn layout() -> (Offset<Control>, Region, u64) {
    let mut carver = Carver::new();
    let control = carver
        .place(RegionLayout { size: size_of::<Control>() as u64, align: 128 })
        .expect("layout");
    let queue = carver.place(SharedSpsc::<Message>::layout(QUEUE_CAPACITY).expect("layout"));
    (control.offset_of(0).expect("offset"), queue.expect("layout"), carver.total_size())
}

/// What the consumer measured, as it reports it on one stdout line.
struct Measured {
    percentiles: Vec<u64>,
    max: u64,
    cpu_share: f64,
    detail: String,
}

fn main() {
    if let Some(args) = peer::child_args() {
        return consumer(&args);
    }
    let smoke = peer::smoke_test();
    let (mut messages, mut warmup) = if smoke { (30u64, 10u64) } else { (2_000, 100) };
    let mut period = Duration::from_nanos(5_333_333);
    let mut target_spin = shmlane_notify::strategy::TARGET_SPIN.as_micros() as u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok()).expect("a number");
        match arg.as_str() {
            "--messages" => messages = value(),
            "--warmup" => warmup = value(),
            "--period-us" => period = Duration::from_micros(value()),
            "--target-spin-us" => target_spin = value(),
            _ => {}
        }
    }
    let (core_a, core_b) = two_cpus();
    println!(
        "\nperiodic traffic: one message every {period:?}, {messages} measured after {warmup} \
         warm-up, producer on core {core_a}, consumer process on core {core_b}"
    );
    print!("{:>10}", "strategy");
    for (name, _) in QUANTILES {
        print!(" {name:>8}");
    }
    println!(" {:>8} {:>9} {:>8}", "max", "CPU/core", "p50/spin");
    let mut spin_p50 = None;
    for strategy in STRATEGIES {
        let measured = run(strategy, (core_a, core_b), (messages, warmup), period, target_spin);
        let p50 = measured.percentiles[0];
        let spin_p50 = *spin_p50.get_or_insert(p50);
        print!("{strategy:>10}");
        for value in &measured.percentiles {
            print!(" {value:>8}");
        }
        println!(
            " {:>8} {:>8.2}% {:>8.2}",
            measured.max,
            measured.cpu_share * 100.0,
            p50 as f64 / spin_p50.max(1) as f64
        );
        if !measured.detail.is_empty() {
            println!("{:>10} {}", "", measured.detail);
        }
    }
    println!("(latency in ns from the producer's send timestamp to the consumer's receipt)");
}

/// Produces `warmup + messages` messages at `period` to a consumer process using `strategy`.
fn run(
    strategy: &str,
    (core_a, core_b): (usize, usize),
    (messages, warmup): (u64, u64),
    period: Duration,
    target_spin_us: u64,
) -> Measured {
    let (control_at, queue_region, size) = layout();
    let name = format!("bench.periodic.{}.{strategy}", std::process::id());
    let segment = Segment::builder(&name)
        .size(size)
        .populate(true)
        .create_with(|s| {
            SharedSpsc::<Message>::init_in(s, queue_region, QUEUE_CAPACITY, ELEMENT)?;
            Ok(())
        })
        .expect("create the segment");
    let control = segment.get(control_at).expect("control words");
    let queue = SharedSpsc::<Message>::attach(&segment, queue_region, ELEMENT).expect("attach");
    let mut producer = queue.producer().expect("producer role");
    let total = (warmup + messages).to_string();
    let (core, warmups, spin) =
        (core_b.to_string(), warmup.to_string(), target_spin_us.to_string());
    let args = [name.as_str(), &core, strategy, &total, &warmups, &spin];
    // Spawned before the producer pins itself (a pinned parent's children inherit its CPU).
    let mut child = peer::spawn(&args, Stdio::null(), Stdio::piped());
    pin(core_a);
    let deadline = Instant::now() + HANG;
    // Acquire: pairs with the consumer's Release store once it is attached.
    while control.ready.load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "the consumer did not start");
        std::thread::yield_now();
    }
    let start = Instant::now() + period;
    for seq in 0..warmup + messages {
        let due = start + period * seq as u32;
        if let Some(nap) = due.checked_duration_since(Instant::now() + SEND_SPIN) {
            std::thread::sleep(nap);
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        producer.try_push([seq, peer::monotonic_ns()]).expect("the consumer fell 64 behind");
        control.event.notify_one();
    }
    let stdout = child.stdout.take().expect("piped stdout");
    let line =
        BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.starts_with("result "));
    let status = child.wait().expect("wait for the consumer");
    assert!(status.success(), "the {strategy} consumer failed: {status}");
    let line = line.expect("the consumer's result line");
    let mut fields = line["result ".len()..].splitn(QUANTILES.len() + 3, ' ');
    let mut number = || fields.next().and_then(|f| f.parse::<f64>().ok()).expect("result field");
    let percentiles = QUANTILES.iter().map(|_| number() as u64).collect();
    let (max, cpu_share) = (number() as u64, number());
    Measured { percentiles, max, cpu_share, detail: fields.next().unwrap_or("").to_owned() }
}

/// The consumer process: `NAME CORE STRATEGY TOTAL WARMUP TARGET_SPIN_US`.
fn consumer(args: &[String]) {
    let [name, core, strategy, total, warmup, target_spin_us] = args else {
        panic!("consumer needs NAME CORE STRATEGY TOTAL WARMUP TARGET_SPIN_US")
    };
    pin(core.parse().expect("core"));
    let (control_at, queue_region, _) = layout();
    let segment = Segment::builder(name).open().expect("open the segment");
    let control = segment.get(control_at).expect("control words");
    let queue = SharedSpsc::<Message>::attach(&segment, queue_region, ELEMENT).expect("attach");
    let mut queue = queue.consumer().expect("consumer role");
    let mut receiver = Receiver {
        control,
        poll: move || queue.try_pop().ok(),
        total: total.parse().expect("total"),
        warmup: warmup.parse().expect("warmup"),
    };
    let line = match strategy.as_str() {
        "busy-spin" => receiver.run(&mut BusySpin),
        "backoff" => receiver.run(&mut Backoff::new()),
        "blocking" => receiver.run(&mut Blocking::new()),
        "periodic" => {
            let spin = Duration::from_micros(target_spin_us.parse().expect("target spin"));
            let mut periodic = Periodic::new().target_spin(spin);
            let line = receiver.run(&mut periodic);
            let s = periodic.stats();
            format!(
                "{line} learnt period {:?}, guard {:?}; of {} arrivals: {} on time, {} early, \
                 {} overslept, {} missed",
                s.period.unwrap_or_default(),
                s.guard,
                s.arrivals,
                s.on_time,
                s.early,
                s.overslept,
                s.missed
            )
        }
        other => panic!("unknown strategy {other}"),
    };
    println!("{line}");
}

/// The consumer's loop, generic over the strategy so the poll inlines.
struct Receiver<'s, P> {
    control: &'s Control,
    poll: P,
    total: u64,
    warmup: u64,
}

impl<P: FnMut() -> Option<Message>> Receiver<'_, P> {
    /// Receives every message with `strategy`; returns the result line.
    fn run(&mut self, strategy: &mut impl WaitStrategy) -> String {
        let mut latencies = peer::histogram();
        let (mut cpu_start, mut wall_start) = (peer::cpu_time(), Instant::now());
        // Release: tells the producer we are pinned and attached.
        self.control.ready.store(1, Ordering::Release);
        for expected in 0..self.total {
            let deadline = Some(Instant::now() + HANG);
            let [seq, sent] =
                strategy.wait_for(&self.control.event, deadline, &mut self.poll).expect("hung");
            let latency = peer::monotonic_ns().saturating_sub(sent);
            assert_eq!(seq, expected, "lost or reordered");
            if expected + 1 == self.warmup {
                (cpu_start, wall_start) = (peer::cpu_time(), Instant::now());
            } else if expected >= self.warmup {
                latencies.record(latency.max(1)).expect("in range");
            }
        }
        let cpu_share =
            (peer::cpu_time() - cpu_start).as_secs_f64() / wall_start.elapsed().as_secs_f64();
        let mut line = String::from("result");
        for (_, q) in QUANTILES {
            line += &format!(" {}", latencies.value_at_quantile(q));
        }
        line + &format!(" {} {cpu_share:.5}", latencies.max())
    }
}
