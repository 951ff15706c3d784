//! Two processes sharing one segment: the parent creates it (with a block pool and a
//! ping-pong cache line pair), the child opens it by name, allocates a block, writes a message
//! into it and hands over the block's offset; then both ping-pong through the shared cache
//! lines, pinned to two cores, and the parent prints the latency percentiles.
//!
//! The ping-pong of two bare atomics is the physical floor any shared-memory transport pays;
//! the queue and facade crates will be measured against it by `shmlane bench`.
//!
//! ```text
//! cargo run --release -p shmlane-examples --example segment_pingpong -- [--iters N] [--cores A,B]
//! ```

use std::error::Error;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use rustix::thread::CpuSet;
use shmlane_segment::{
    BlockOffset, BlockPool, Carver, Fingerprint, Offset, Region, RegionLayout, Segment,
};

type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const FINGERPRINT: Fingerprint = Fingerprint::new("example.segment_pingpong").with_u64(1);
const BLOCK_SIZE: u64 = 256;
const BLOCKS: u32 = 16;
const WARMUP: u64 = 10_000;
/// Values the mailbox takes besides a block offset.
const EMPTY: u64 = 0;

/// Where things live in the segment: the same `Carver` calls in both processes.
struct Layout {
    /// `[ping, pong, mailbox, ready]`, each on its own cache line.
    control: Region,
    pool: Region,
    size: u64,
}

impl Layout {
    fn new() -> AnyResult<Layout> {
        let mut carver = Carver::new();
        let line = size_of::<CachePadded<AtomicU64>>() as u64;
        let control = carver.place(RegionLayout { size: 4 * line, align: 128 })?;
        let pool = carver.place(BlockPool::layout(BLOCK_SIZE, 64, BLOCKS)?)?;
        Ok(Layout { control, pool, size: carver.total_size() })
    }

    fn word<'s>(&self, segment: &'s Segment, index: u64) -> AnyResult<&'s AtomicU64> {
        let line = size_of::<CachePadded<AtomicU64>>() as u64;
        let at: Offset<CachePadded<AtomicU64>> = self.control.offset_of(index * line)?;
        Ok(&**segment.get(at)?)
    }
}

fn main() -> ExitCode {
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
            Ok(())
        })?;
    println!(
        "created segment {} ({} bytes) at {}",
        segment.name(),
        segment.len(),
        segment.path().map(|p| p.display().to_string()).unwrap_or_default()
    );

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
    let ping = layout.word(&segment, 0)?;
    let pong = layout.word(&segment, 1)?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for seq in 1..=WARMUP + iters {
        let start = Instant::now();
        // Release: pairs with the child's Acquire load; nothing else rides on it.
        ping.store(seq, Ordering::Release);
        // Acquire: pairs with the child's Release store of the echo.
        while pong.load(Ordering::Acquire) != seq {
            std::hint::spin_loop();
        }
        if seq > WARMUP {
            histogram.record(start.elapsed().as_nanos() as u64)?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    println!(
        "\ncache-line ping-pong between two processes, cores {core_a} and {core_b}, {iters} round trips"
    );
    println!("{:>8} {:>10}", "pct", "one-way ns");
    for pct in [50.0, 90.0, 99.0, 99.9, 99.99] {
        println!("{pct:>8} {:>10}", histogram.value_at_quantile(pct / 100.0) / 2);
    }
    println!("{:>8} {:>10}", "max", histogram.max() / 2);
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
    let pool = BlockPool::attach(&segment, layout.pool)?;
    let block = pool.alloc()?;
    let text = format!("hello from pid {}", std::process::id());
    segment.write_bytes(block.get(), text.as_bytes())?;
    // Release: publishes the message bytes; pairs with the parent's Acquire load.
    layout.word(&segment, 2)?.store(block.get(), Ordering::Release);
    // Release: tells the parent we are pinned and attached.
    layout.word(&segment, 3)?.store(1, Ordering::Release);

    let ping = layout.word(&segment, 0)?;
    let pong = layout.word(&segment, 1)?;
    for seq in 1..=WARMUP + iters {
        // Acquire: pairs with the parent's Release store of `ping`.
        while ping.load(Ordering::Acquire) != seq {
            std::hint::spin_loop();
        }
        // Release: pairs with the parent's Acquire spin on `pong`.
        pong.store(seq, Ordering::Release);
    }
    Ok(())
}

/// The first two CPUs this process may run on (one twice if it may use only one).
fn first_two_cpus() -> AnyResult<(usize, usize)> {
    let allowed = rustix::thread::sched_getaffinity(None)?;
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).take(2).collect();
    match cpus[..] {
        [a, b] => Ok((a, b)),
        [a] => {
            eprintln!("warning: only CPU {a} is available; both processes share it");
            Ok((a, a))
        }
        _ => Err("no CPU in the affinity mask".into()),
    }
}

/// Pins the calling thread to one CPU by id.
fn pin(cpu: usize) -> AnyResult<()> {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))?;
    Ok(())
}
