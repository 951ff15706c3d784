//! Two processes sharing one segment: the parent creates it (with a block pool, two SPSC queues
//! and a ping-pong cache-line pair), the child opens it by name, allocates a block, writes a
//! message into it and hands over the block's offset. Then both, pinned to two cores, ping-pong
//! through two transports in alternating rounds of the same run:
//!
//! - `cacheline`: two bare atomics on separate cache lines, the physical floor any
//!   shared-memory transport pays;
//! - `shmlane-spsc`: a `SharedSpsc<u64>` queue each way, busy polling.
//!
//! The parent prints one-way latency percentiles (round trip / 2) for both, and their ratio.
//!
//! ```text
//! cargo run --release -p shmlane-examples --example segment_pingpong -- [--iters N] [--cores A,B]
//! ```
#![forbid(unsafe_code)]

use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use shmlane_examples::{AnyResult, first_two_cpus, pin};
use shmlane_queue::spsc::{Consumer, Producer, Shared, SharedSpsc};
use shmlane_segment::{
    BlockOffset, BlockPool, Carver, Fingerprint, Offset, Region, RegionLayout, Segment,
};

const FINGERPRINT: Fingerprint = Fingerprint::new("example.segment_pingpong").with_u64(2);
const ELEMENT: Fingerprint = Fingerprint::new("u64 sequence number");
const BLOCK_SIZE: u64 = 256;
const BLOCKS: u32 = 16;
const QUEUE_CAPACITY: u64 = 64;
const WARMUP: u64 = 10_000;
/// Round trips per transport before switching to the other one.
const ROUND: u64 = 1_000;
/// Mailbox value meaning "no block yet".
const EMPTY: u64 = 0;

/// Where things live in the segment: the same `Carver` calls in both processes.
struct Layout {
    /// `[ping, pong, mailbox, ready]`, each on its own cache line.
    control: Region,
    pool: Region,
    /// Parent → child.
    requests: Region,
    /// Child → parent.
    replies: Region,
    size: u64,
}

impl Layout {
    fn new() -> AnyResult<Layout> {
        let mut carver = Carver::new();
        let line = size_of::<CachePadded<AtomicU64>>() as u64;
        let control = carver.place(RegionLayout { size: 4 * line, align: 128 })?;
        let pool = carver.place(BlockPool::layout(BLOCK_SIZE, 64, BLOCKS)?)?;
        let requests = carver.place(SharedSpsc::<u64>::layout(QUEUE_CAPACITY)?)?;
        let replies = carver.place(SharedSpsc::<u64>::layout(QUEUE_CAPACITY)?)?;
        Ok(Layout { control, pool, requests, replies, size: carver.total_size() })
    }

    fn word<'s>(&self, segment: &'s Segment, index: u64) -> AnyResult<&'s AtomicU64> {
        let line = size_of::<CachePadded<AtomicU64>>() as u64;
        let at: Offset<CachePadded<AtomicU64>> = self.control.offset_of(index * line)?;
        Ok(&**segment.get(at)?)
    }
}

/// One end's view of both transports.
struct Transports<'s> {
    ping: &'s AtomicU64,
    pong: &'s AtomicU64,
    queue_out: Producer<u64, Shared<'s, u64>>,
    queue_in: Consumer<u64, Shared<'s, u64>>,
}

impl<'s> Transports<'s> {
    fn attach(segment: &'s Segment, layout: &Layout, parent: bool) -> AnyResult<Self> {
        let requests = SharedSpsc::<u64>::attach(segment, layout.requests, ELEMENT)?;
        let replies = SharedSpsc::<u64>::attach(segment, layout.replies, ELEMENT)?;
        let (out, inbound) = if parent { (requests, replies) } else { (replies, requests) };
        Ok(Transports {
            ping: layout.word(segment, 0)?,
            pong: layout.word(segment, 1)?,
            queue_out: out.producer()?,
            queue_in: inbound.consumer()?,
        })
    }

    /// Parent side of one cache-line round trip.
    fn cacheline_round_trip(&mut self, seq: u64) {
        // Release: pairs with the child's Acquire load; nothing else rides on it.
        self.ping.store(seq, Ordering::Release);
        // Acquire: pairs with the child's Release store of the echo.
        while self.pong.load(Ordering::Acquire) != seq {
            std::hint::spin_loop();
        }
    }

    /// Child side of one cache-line round trip.
    fn cacheline_echo(&mut self, seq: u64) {
        // Acquire: pairs with the parent's Release store of `ping`.
        while self.ping.load(Ordering::Acquire) != seq {
            std::hint::spin_loop();
        }
        // Release: pairs with the parent's Acquire spin on `pong`.
        self.pong.store(seq, Ordering::Release);
    }

    /// Parent side of one queue round trip; checks the echo.
    fn queue_round_trip(&mut self, seq: u64) -> AnyResult<()> {
        self.queue_out.try_push(seq).map_err(|e| format!("request queue: {e}"))?;
        loop {
            if let Ok(echo) = self.queue_in.try_pop() {
                return if echo == seq {
                    Ok(())
                } else {
                    Err(format!("echo {echo} for {seq}").into())
                };
            }
            std::hint::spin_loop();
        }
    }

    /// Child side of one queue round trip.
    fn queue_echo(&mut self) -> AnyResult<()> {
        let seq = loop {
            if let Ok(seq) = self.queue_in.try_pop() {
                break seq;
            }
            std::hint::spin_loop();
        };
        self.queue_out.try_push(seq).map_err(|e| format!("reply queue: {e}").into())
    }
}

fn main() -> ExitCode {
    shmlane_examples::log_to_stderr();
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--child") => child(&args[2..]),
        _ => parent(&args[1..]),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent(args: &[String]) -> AnyResult<()> {
    let mut iters: u64 = 200_000;
    let mut cores = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--iters" => iters = it.next().ok_or("--iters needs a number")?.parse()?,
            "--cores" => {
                let spec = it.next().ok_or("--cores needs A,B")?;
                let (a, b) = spec.split_once(',').ok_or("--cores needs A,B")?;
                cores = Some((a.parse()?, b.parse()?));
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    // Whole rounds, so both transports get the same number of round trips.
    let iters = iters.div_ceil(ROUND) * ROUND;
    let (core_a, core_b) = match cores {
        Some(pair) => pair,
        None => first_two_cpus()?,
    };

    let name = format!("example.pingpong.{}", std::process::id());
    let layout = Layout::new()?;
    let segment = Segment::builder(&name)
        .size(layout.size)
        .fingerprint(FINGERPRINT)
        .populate(true)
        .create_with(|segment| {
            BlockPool::init_in(segment, layout.pool, BLOCK_SIZE, 64, BLOCKS)?;
            SharedSpsc::<u64>::init_in(segment, layout.requests, QUEUE_CAPACITY, ELEMENT)?;
            SharedSpsc::<u64>::init_in(segment, layout.replies, QUEUE_CAPACITY, ELEMENT)?;
            Ok(())
        })?;
    println!(
        "created segment {} ({} bytes) at {}",
        segment.name(),
        segment.len(),
        segment.path().map(|p| p.display().to_string()).unwrap_or_default()
    );
    let mut ends = Transports::attach(&segment, &layout, true)?;

    // Pin the child before the parent: a pinned parent's children inherit its one-CPU mask.
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", &name, &iters.to_string(), &core_b.to_string()])
        .spawn()?;
    let ready = layout.word(&segment, 3)?;
    let mailbox = layout.word(&segment, 2)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Acquire: pairs with the child's Release stores of `ready` and `mailbox`, so the block's
    // bytes written before are visible.
    while ready.load(Ordering::Acquire) == 0 || mailbox.load(Ordering::Acquire) == EMPTY {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            return Err("the child did not come up within 10 s".into());
        }
        std::thread::yield_now();
    }
    let block = BlockOffset::from_raw(mailbox.load(Ordering::Acquire));
    let pool = BlockPool::attach(&segment, layout.pool)?;
    if !pool.contains(block) {
        return Err(format!("the child sent {block:?}, which is not a block of the pool").into());
    }
    let mut message = [0u8; 64];
    segment.read_bytes(block.get(), &mut message)?;
    let text = String::from_utf8_lossy(&message);
    println!("child wrote into block {:#x}: {:?}", block.get(), text.trim_end_matches('\0'));
    pool.free(block)?;
    println!("pool after free: {:?}", pool.stats());

    pin(core_a)?;
    let new_histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3);
    let (mut floor, mut queue) = (new_histogram()?, new_histogram()?);
    for round in 0..(WARMUP + iters) / ROUND {
        let record = round * ROUND >= WARMUP;
        for i in 0..ROUND {
            let seq = round * ROUND + i + 1;
            let start = Instant::now();
            ends.cacheline_round_trip(seq);
            let elapsed = start.elapsed().as_nanos() as u64;
            if record {
                floor.record(elapsed)?;
            }
        }
        for i in 0..ROUND {
            let start = Instant::now();
            ends.queue_round_trip(round * ROUND + i)?;
            let elapsed = start.elapsed().as_nanos() as u64;
            if record {
                queue.record(elapsed)?;
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    println!(
        "\nping-pong between two processes on cores {core_a} and {core_b}: {iters} round trips \
         per transport, alternating rounds of {ROUND}; one-way ns (round trip / 2)"
    );
    println!("{:>8} {:>10} {:>13}", "pct", "cacheline", "shmlane-spsc");
    for pct in [50.0, 90.0, 99.0, 99.9, 99.99] {
        let q = pct / 100.0;
        println!(
            "{pct:>8} {:>10} {:>13}",
            floor.value_at_quantile(q) / 2,
            queue.value_at_quantile(q) / 2
        );
    }
    println!("{:>8} {:>10} {:>13}", "max", floor.max() / 2, queue.max() / 2);
    let ratio = queue.value_at_quantile(0.5) as f64 / floor.value_at_quantile(0.5).max(1) as f64;
    println!("p50 ratio shmlane-spsc / cacheline: {ratio:.2}");
    if core_a == core_b {
        println!("(both processes ran on one core: the numbers measure context switches)");
    }
    Ok(())
}

fn child(args: &[String]) -> AnyResult<()> {
    let [name, iters, core] = args else {
        return Err("child needs NAME ITERS CORE".into());
    };
    let iters: u64 = iters.parse()?;
    pin(core.parse()?)?;
    let layout = Layout::new()?;
    let segment = Segment::builder(name).fingerprint(FINGERPRINT).open()?;
    let mut ends = Transports::attach(&segment, &layout, false)?;
    let pool = BlockPool::attach(&segment, layout.pool)?;
    let block = pool.alloc()?;
    let text = format!("hello from pid {}", std::process::id());
    segment.write_bytes(block.get(), text.as_bytes())?;
    // Release: publishes the message bytes; pairs with the parent's Acquire load.
    layout.word(&segment, 2)?.store(block.get(), Ordering::Release);
    // Release: tells the parent we are pinned and attached.
    layout.word(&segment, 3)?.store(1, Ordering::Release);

    for round in 0..(WARMUP + iters) / ROUND {
        for i in 0..ROUND {
            ends.cacheline_echo(round * ROUND + i + 1);
        }
        for _ in 0..ROUND {
            ends.queue_echo()?;
        }
    }
    Ok(())
}
