//! Cross-process benches: the bench binary re-executes itself as the peer process, and both
//! sides read one clock.

use std::ffi::OsStr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hdrhistogram::Histogram;

/// First argument of a bench binary started as the peer.
const CHILD_FLAG: &str = "--bench-child";

/// The peer's arguments, if this process was started by [`spawn`].
pub fn child_args() -> Option<Vec<String>> {
    let mut args = std::env::args().skip(1);
    (args.next().as_deref() == Some(CHILD_FLAG)).then(|| args.collect())
}

/// Whether this run is a smoke test (`cargo bench -- --test`): a few iterations only.
pub fn smoke_test() -> bool {
    std::env::args().any(|arg| arg == "--test")
}

/// Starts this bench binary as the peer with `args`; stdin and stdout are the given pipes
/// (or inherited), stderr is inherited.
pub fn spawn(args: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    let exe = std::env::current_exe().expect("path of the bench binary");
    Command::new(exe)
        .arg(CHILD_FLAG)
        .args(args.iter().map(OsStr::new))
        .stdin(stdin)
        .stdout(stdout)
        .spawn()
        .expect("start the peer process")
}

/// `CLOCK_MONOTONIC` in ns: the same clock in every process of the host.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// CPU time (user + system) this process has used so far, from `getrusage(RUSAGE_SELF)`.
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` writes a whole `rusage` to the pointer, which is valid for writes of
    // one; RUSAGE_SELF is a valid `who`, so it cannot fail (it returns 0).
    let usage = unsafe {
        let rc = libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        assert_eq!(rc, 0, "getrusage(RUSAGE_SELF)");
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// A histogram of ns values from 1 ns to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Quantiles every latency table reports, with their column names.
pub const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];
