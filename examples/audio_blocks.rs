//! Real-time audio blocks between two processes: the parent produces 256-frame stereo `f32`
//! blocks (512 samples, interleaved L R) at the 48 kHz cadence — one block every 5.333 ms — on
//! a shmlane slice topic, and a consumer process (this example re-executed with `--consumer`)
//! takes them in a real-time loop that waits with `shmlane::notify::Periodic`: it learns the
//! period and parks on the futex until just before the next block is due, then spins, so it
//! sees each block within a cache-line transfer at a small fraction of a core.
//!
//! - **Producer** (the parent, pinned to CPU A): waits until the consumer is subscribed, then
//!   sends block `n` at `start + n × 5.333 ms` (it sleeps until 200 µs before that due time,
//!   then spins), writing it in place in shared memory with `loan_slice(512)`.
//! - **Block layout**: frames 0 to 2 carry a header of three `u64`s, each split into two `f32`
//!   bit patterns (`to_bits`/`from_bits`, bit-exact): the block counter, the block's due time
//!   and the time it was sent (`CLOCK_MONOTONIC` ns, written last). Frames 3 to 255 carry a
//!   100 Hz sine (left) and its inverse (right), continuous across blocks. One slice topic, no
//!   second header topic to keep in step. A block with counter `u64::MAX` ends the stream.
//! - **Consumer** (pinned to CPU B): its loop allocates nothing and makes no system call but
//!   the wait strategy's futex (the histogram is preallocated, the payload mapping made on the
//!   first block, before the loop). It checks each block's samples, and counts an underrun for
//!   each block that arrives more than 1 ms after its due time (telling apart those the
//!   producer already sent late) and for each missing counter.
//!   It reports to the parent on its stdout: blocks, underruns, latency from due time to
//!   receipt, its CPU share (user + system CPU time over wall time, for the loop), and the
//!   `Periodic` strategy's statistics. The parent prints them.
//!
//! Every wait has a deadline; the parent fails if the consumer hangs, a check fails, or a block
//! is lost without being counted.
//!
//! ```text
//! cargo run --release -p shmlane-examples --example audio_blocks -- [--seconds S] [--cores A,B]
//! ```
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlane::notify::{Blocking, Periodic};
use shmlane::{Node, Overflow, Subscriber};
use shmlane_examples::{
    AnyResult, cpu_time, first_two_cpus, monotonic_ns, pin, wait_until, wait_until_exit,
};

/// The topic's service name.
const SERVICE: &str = "audio";
/// Frames per block.
const FRAMES: usize = 256;
/// Channels, interleaved.
const CHANNELS: usize = 2;
/// `f32` samples per block.
const BLOCK_LEN: usize = FRAMES * CHANNELS;
/// Sample rate.
const SAMPLE_RATE: u64 = 48_000;
/// Samples at the start of a block that hold the header (counter, due time, send time).
const HEADER_LEN: usize = 6;
/// Frames of one period of the test tone (100 Hz at 48 kHz).
const TONE_FRAMES: usize = 480;
/// Counter of the block that ends the stream.
const END: u64 = u64::MAX;
/// A block received later than this after its due time is an underrun.
const DEADLINE: Duration = Duration::from_millis(1);
/// Blocks queued for the consumer before the oldest is dropped.
const QUEUE: u32 = 8;
/// Longest wait for the consumer to subscribe, or for the first block.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a block once the stream runs (a stalled producer).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for the consumer to exit after the last block.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The producer sleeps until this long before a due time, then spins.
const SPIN_BEFORE: Duration = Duration::from_micros(200);
/// The quantiles in the report.
const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// The due time of block `n`, `n × 256 / 48 000` s after `start_ns`, in whole ns.
fn due_ns(start_ns: u64, n: u64) -> u64 {
    let offset = u128::from(n) * FRAMES as u128 * 1_000_000_000 / u128::from(SAMPLE_RATE);
    start_ns + offset as u64
}

/// One period of the test tone, computed the same way in both processes.
fn tone() -> Vec<f32> {
    (0..TONE_FRAMES)
        .map(|f| (f as f32 / TONE_FRAMES as f32 * std::f32::consts::TAU).sin() * 0.5)
        .collect()
}

/// The left sample of frame `frame` of block `counter` (the right one is its negation).
fn expected(tone: &[f32], counter: u64, frame: usize) -> f32 {
    let global = counter.wrapping_mul(FRAMES as u64).wrapping_add(frame as u64);
    tone[(global % TONE_FRAMES as u64) as usize]
}

/// Writes `value` into two samples as bit patterns.
fn put_u64(samples: &mut [f32], value: u64) {
    samples[0] = f32::from_bits(value as u32);
    samples[1] = f32::from_bits((value >> 32) as u32);
}

/// Reads a `u64` written by [`put_u64`].
fn get_u64(samples: &[f32]) -> u64 {
    u64::from(samples[0].to_bits()) | u64::from(samples[1].to_bits()) << 32
}

fn main() -> ExitCode {
    shmlane_examples::log_to_stderr();
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--consumer") => consumer(&args[2..]),
        _ => producer(&args[1..]),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The consumer process, killed if still running when dropped (the parent failed).
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn producer(args: &[String]) -> AnyResult<()> {
    let mut seconds: f64 = 10.0;
    let mut cores = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => seconds = it.next().ok_or("--seconds needs a number")?.parse()?,
            "--cores" => {
                let spec = it.next().ok_or("--cores needs A,B")?;
                let (a, b) = spec.split_once(',').ok_or("--cores needs A,B")?;
                cores = Some((a.parse()?, b.parse()?));
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let count = (seconds * SAMPLE_RATE as f64 / FRAMES as f64).round();
    if !(1.0..1e12).contains(&count) {
        return Err("--seconds must give at least one block (5.333 ms)".into());
    }
    let count = count as u64;
    let (cpu_a, cpu_b) = match cores {
        Some(pair) => pair,
        None => first_two_cpus()?,
    };

    let namespace = format!("audio{}", std::process::id());
    let node = Node::builder("producer").namespace(&namespace).create()?;
    let topic = node
        .topic::<f32>(SERVICE)
        .max_publishers(1)
        .max_subscribers(1)
        .max_slice_len(BLOCK_LEN as u32)
        .subscriber_capacity(QUEUE)
        .overflow(Overflow::DropOldest)
        .create()?;
    let publisher = topic.publisher()?;
    let tone = tone();

    // Declared after the topic, so dropped (killed, if still running) before it: the topic's
    // segments are removed when no live process holds them. The consumer pins itself first
    // thing; the parent pins itself after starting it.
    let mut peer = Peer(
        Command::new(std::env::current_exe()?)
            .args(["--consumer", &namespace, &cpu_b.to_string()])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    pin(cpu_a)?;

    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while publisher.subscribers() < 1 {
        if let Some(status) = peer.0.try_wait()? {
            return Err(format!("the consumer exited before subscribing: {status}").into());
        }
        if Instant::now() >= deadline {
            return Err(format!("the consumer did not subscribe within {CONNECT_TIMEOUT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut lateness = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let start = monotonic_ns() + 10_000_000;
    for counter in 0..count {
        let due = due_ns(start, counter);
        let now = wait_until(due, SPIN_BEFORE);
        let mut block = publisher.loan_slice(BLOCK_LEN)?;
        put_u64(&mut block[0..2], counter);
        put_u64(&mut block[2..4], due);
        for (frame, pair) in
            block.chunks_exact_mut(CHANNELS).enumerate().skip(HEADER_LEN / CHANNELS)
        {
            let left = expected(&tone, counter, frame);
            pair.copy_from_slice(&[left, -left]);
        }
        put_u64(&mut block[4..6], monotonic_ns());
        publisher.send_slice(block)?;
        lateness.saturating_record(now - due);
    }
    let mut end = publisher.loan_slice(HEADER_LEN)?;
    put_u64(&mut end[0..2], END);
    put_u64(&mut end[2..4], monotonic_ns());
    put_u64(&mut end[4..6], monotonic_ns());
    publisher.send_slice(end)?;

    let status = wait_until_exit(&mut peer.0, Instant::now() + EXIT_TIMEOUT)?;
    if !status.success() {
        return Err(format!("the consumer failed: {status}").into());
    }
    let mut out = String::new();
    peer.0.stdout.take().ok_or("stdout not captured")?.read_to_string(&mut out)?;
    let report = parse_report(&out)?;
    let field = |key: &str| report.get(key).copied().unwrap_or(0);

    let micros = |ns: u64| ns as f64 / 1000.0;
    println!(
        "producer on CPU {cpu_a}: {count} blocks of {FRAMES} stereo frames, one every {:.3} ms; \
         send lateness p99 {:.1} µs, max {:.1} µs",
        micros(due_ns(0, 1)) / 1000.0,
        micros(lateness.value_at_quantile(0.99)),
        micros(lateness.max()),
    );
    println!(
        "consumer on CPU {cpu_b} (Periodic wait): {} blocks, {} underruns ({} later than {} ms, \
         of which the producer sent {} late; {} missing; {} dropped by the topic), {} blocks \
         with wrong samples",
        field("blocks"),
        field("late") + field("missing"),
        field("late"),
        DEADLINE.as_millis(),
        field("sent_late"),
        field("missing"),
        field("drops"),
        field("bad"),
    );
    print!("latency from due time to receipt (µs, includes writing the block):");
    for (name, _) in QUANTILES {
        print!(" {name} {:.1}", micros(field(name)));
    }
    println!(" max {:.1}", micros(field("max")));
    println!(
        "consumer CPU: {:.2} ms in {:.2} s = {:.2}% of a core",
        micros(field("cpu_ns")) / 1000.0,
        field("wall_ns") as f64 / 1e9,
        field("cpu_ns") as f64 / field("wall_ns").max(1) as f64 * 100.0,
    );
    let period = match field("period_ns") {
        0 => "not learnt".to_owned(),
        ns => format!("{:.3} ms", micros(ns) / 1000.0),
    };
    println!(
        "Periodic: period {period}, guard {:.1} µs; {} arrivals: {} on time (spinning), \
         {} early (woken by notify), {} overslept, {} missed (blocked)",
        micros(field("guard_ns")),
        field("arrivals"),
        field("on_time"),
        field("early"),
        field("overslept"),
        field("missed"),
    );

    let mut problems = Vec::new();
    if field("blocks") + field("missing") != count {
        problems.push(format!(
            "{} received + {} missing is not the {count} blocks sent",
            field("blocks"),
            field("missing")
        ));
    }
    if field("missing") != field("drops") {
        problems.push("missing blocks and the subscriber's drops() differ".to_owned());
    }
    if field("bad") != 0 {
        problems.push(format!("{} blocks out of order or with wrong samples", field("bad")));
    }
    if cpu_a == cpu_b {
        println!("(both processes ran on one CPU: expect late blocks and a stretched period)");
    }
    if problems.is_empty() {
        println!("checks: every block received or counted as missing, all in order and intact");
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}

/// The consumer process: `--consumer NAMESPACE CPU`. Prints one `report key=value…` line.
fn consumer(args: &[String]) -> AnyResult<()> {
    let [namespace, cpu] = args else {
        return Err("the consumer needs NAMESPACE CPU".into());
    };
    pin(cpu.parse()?)?;
    let node = Node::builder("consumer").namespace(namespace).create()?;
    let topic = node.topic::<f32>(SERVICE).open()?;
    let subscriber = topic.subscriber()?;
    let mut consumer = Consumer {
        tone: tone(),
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        next: 0,
        blocks: 0,
        late: 0,
        sent_late: 0,
        missing: 0,
        bad: 0,
    };

    // The first block, before the real-time loop: receiving it maps the producer's payload
    // segment (open + mmap).
    let mut first = Blocking::new();
    let sample = subscriber
        .receive_with(&mut first, Some(CONNECT_TIMEOUT))
        .map_err(|e| format!("no first block: {e}"))?;
    let mut done = consumer.process(sample.as_slice(), monotonic_ns());
    drop(sample);

    let mut periodic = Periodic::new();
    let (cpu_start, wall_start) = (cpu_time(), Instant::now());
    while !done {
        done = real_time_step(&subscriber, &mut periodic, &mut consumer)
            .map_err(|e| format!("after block {}: {e}", consumer.next))?;
    }
    let (cpu, wall) = (cpu_time() - cpu_start, wall_start.elapsed());

    let stats = periodic.stats();
    let c = &consumer;
    let mut report = format!(
        "report blocks={} late={} sent_late={} missing={} bad={} drops={} max={} cpu_ns={} wall_ns={} \
         arrivals={} on_time={} early={} overslept={} missed={} period_ns={} guard_ns={}",
        c.blocks,
        c.late,
        c.sent_late,
        c.missing,
        c.bad,
        subscriber.drops(),
        c.latency.max(),
        cpu.as_nanos(),
        wall.as_nanos(),
        stats.arrivals,
        stats.on_time,
        stats.early,
        stats.overslept,
        stats.missed,
        stats.period.unwrap_or_default().as_nanos(),
        stats.guard.as_nanos(),
    );
    for (name, q) in QUANTILES {
        report += &format!(" {name}={}", c.latency.value_at_quantile(q));
    }
    println!("{report}");
    Ok(())
}

/// The consumer's state, allocated before the real-time loop.
struct Consumer {
    tone: Vec<f32>,
    /// Due time → receipt, in ns.
    latency: Histogram<u64>,
    /// The counter expected next.
    next: u64,
    blocks: u64,
    late: u64,
    /// Of the late blocks, those the producer sent more than `DEADLINE` after their due time.
    sent_late: u64,
    missing: u64,
    bad: u64,
}

/// One pass of the real-time loop: wait for the next block with `periodic`, process it.
/// Returns whether the stream ended. No allocation, no system call but the futex wait.
fn real_time_step(
    subscriber: &Subscriber<f32>,
    periodic: &mut Periodic,
    consumer: &mut Consumer,
) -> Result<bool, shmlane::ReceiveError> {
    let sample = subscriber.receive_with(periodic, Some(BLOCK_TIMEOUT))?;
    Ok(consumer.process(sample.as_slice(), monotonic_ns()))
}

impl Consumer {
    /// Checks and times one block received at `now`; returns whether it ended the stream.
    fn process(&mut self, block: &[f32], now: u64) -> bool {
        if block.len() < HEADER_LEN {
            self.bad += 1;
            return false;
        }
        let (counter, due, sent) =
            (get_u64(&block[0..2]), get_u64(&block[2..4]), get_u64(&block[4..6]));
        if counter == END {
            return true;
        }
        self.blocks += 1;
        let latency = now.saturating_sub(due);
        self.latency.saturating_record(latency);
        let deadline = DEADLINE.as_nanos() as u64;
        if latency > deadline {
            self.late += 1;
            if sent.saturating_sub(due) > deadline {
                self.sent_late += 1;
            }
        }
        if counter < self.next {
            self.bad += 1;
        } else {
            self.missing += counter - self.next;
            self.next = counter + 1;
        }
        let intact = block.len() == BLOCK_LEN
            && block.chunks_exact(CHANNELS).enumerate().skip(HEADER_LEN / CHANNELS).all(
                |(frame, pair)| {
                    let left = expected(&self.tone, counter, frame);
                    pair == [left, -left]
                },
            );
        if !intact {
            self.bad += 1;
        }
        false
    }
}

/// Parses the consumer's `report key=value…` line.
fn parse_report(out: &str) -> AnyResult<HashMap<String, u64>> {
    let line = out
        .lines()
        .find_map(|line| line.strip_prefix("report "))
        .ok_or_else(|| format!("the consumer printed no report: {out:?}"))?;
    line.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or("a report field without '='")?;
            Ok((key.to_owned(), value.parse()?))
        })
        .collect()
}
