//! Runnable examples of shmlane live in this folder as `[[example]]` targets; this library
//! holds what they share: choosing and pinning CPUs, the host-wide clock, CPU time, paced
//! sleeps, bounded waits on child processes, and printing shmlane's recovery events.
#![forbid(unsafe_code)]

use std::error::Error;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::thread::CpuSet;

/// The examples' error type.
pub type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The first `n` CPUs of this process's affinity mask, read before anything is pinned (after
/// a pin, the mask holds one CPU). Fewer if fewer are allowed; an error if none.
pub fn allowed_cpus(n: usize) -> AnyResult<Vec<usize>> {
    let allowed = rustix::thread::sched_getaffinity(None)?;
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).take(n).collect();
    if cpus.is_empty() {
        return Err("no CPU in the affinity mask".into());
    }
    Ok(cpus)
}

/// The first two allowed CPUs (the same one twice, with a warning, if only one is allowed).
pub fn first_two_cpus() -> AnyResult<(usize, usize)> {
    match allowed_cpus(2)?[..] {
        [a, b] => Ok((a, b)),
        [a, ..] => {
            eprintln!("warning: only CPU {a} is available; both processes share it");
            Ok((a, a))
        }
        [] => Err("no CPU in the affinity mask".into()),
    }
}

/// Pins the calling thread to one CPU by id.
pub fn pin(cpu: usize) -> AnyResult<()> {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))?;
    Ok(())
}

/// `CLOCK_MONOTONIC` in ns: the same clock in every process of the host (vDSO, no system
/// call).
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// CPU time (user + system) this process has used: `CLOCK_PROCESS_CPUTIME_ID`, the sum
/// `getrusage(RUSAGE_SELF)` reports, in ns and without `unsafe`.
pub fn cpu_time() -> Duration {
    let used = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(used.tv_sec as u64, used.tv_nsec as u32)
}

/// Sleeps until `spin_before` ahead of `due_ns` (`CLOCK_MONOTONIC`), then spins until it, so
/// the wake-up is on time despite timer slack; returns the time then.
pub fn wait_until(due_ns: u64, spin_before: Duration) -> u64 {
    loop {
        let now = monotonic_ns();
        if now >= due_ns {
            return now;
        }
        let left = Duration::from_nanos(due_ns - now);
        if left > spin_before {
            std::thread::sleep(left - spin_before);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Waits for `child` to exit, up to `deadline`.
pub fn wait_until_exit(child: &mut Child, deadline: Instant) -> AnyResult<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            return Err("a child process did not exit in time".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Prints shmlane's `tracing` events (a dead peer's slot taken over, its blocks reclaimed,
/// stale files removed) on stderr, filtered by `RUST_LOG` (default: warnings and errors).
pub fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
