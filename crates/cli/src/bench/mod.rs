//! `shmlane bench`: cross-process ping-pong latency of every transport, in one run.
//!
//! The `bench` process (the initiator) re-executes itself as `shmlane bench-echo` (the echo
//! side); each is pinned to its own CPU (the child first: a pinned parent's children inherit
//! its single CPU). Both build an end of every transport for every payload size, then run
//! round trips: the initiator sends, the echo side returns, the round-trip time is recorded
//! into an HdrHistogram and one-way latency is reported as half of it. Payload sizes and
//! transports take turns (`--round` trips each per turn, fewer for sizes with fewer trips, so
//! every size spreads over the whole run), so drift over the run (frequency, host noise) hits
//! them alike: every table compares each transport with `cacheline`, the physical floor, and
//! sizes can be compared with each other, all measured side by side.
//!
//! With `--rate`, round trips start on a fixed schedule and latency counts from the intended
//! start: a round trip that starts late because the previous one was slow carries that delay
//! (no coordinated omission).
//!
//! With `--mode throughput`, the initiator publishes instead and the echo process only
//! receives: each transport streams `--messages` messages per payload size and round, as fast
//! as it can, the receiver checking every sequence number; transports and sizes take turns
//! within each round, and the report gives messages/s (min, median, max over the rounds) and
//! GB/s (see `throughput`).

mod cores;
mod echo;
mod echo_process;
mod initiator;
mod link;
mod memory;
mod plan;
mod plot;
mod pubsub;
mod report;
mod sequenced;
mod stream;
mod throughput;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

pub use echo::EchoArgs;
pub use echo::run as echo;
use link::LinkError;

/// A transport measured by the bench.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Two bare atomics in a shared segment, busy polled: the physical floor.
    Cacheline,
    /// A bare atomic each way that names one of four blocks, whose first word carries the
    /// message, read in place: the floor of any transport whose payload lies outside the
    /// line the receiver polls (two dependent cache lines per message).
    CachelineBlock,
    /// Raw FUTEX_WAIT / FUTEX_WAKE on a shared word for every message.
    Futex,
    /// A pipe each way (the echo process's stdin and stdout).
    Pipe,
    /// A Unix stream socket.
    Uds,
    /// TCP over loopback, TCP_NODELAY.
    Tcp,
    /// shmlane's SPSC queue in a segment, busy polled (payloads by loan from a block pool).
    ShmlaneSpsc,
    /// shmlane's publish/subscribe facade: loan, send, busy-polled receive (drop-oldest
    /// topics, the default policy).
    ShmlanePubsub,
    /// The same under `Overflow::Block`, whose subscribers claim samples without a CAS.
    ShmlanePubsubBlock,
    /// The facade with the futex-backed Blocking wait strategy.
    ShmlaneBlocking,
    /// Throughput mode only: the facade's batch calls, `send_copies` of 16 samples (one
    /// wake-up check per batch) and `drain` (inline samples 16 to a claim, no `Sample` each).
    ShmlanePubsubBatch,
}

impl Transport {
    /// Every transport, in report order.
    pub const ALL: [Transport; 10] = [
        Transport::Cacheline,
        Transport::CachelineBlock,
        Transport::Futex,
        Transport::Pipe,
        Transport::Uds,
        Transport::Tcp,
        Transport::ShmlaneSpsc,
        Transport::ShmlanePubsub,
        Transport::ShmlanePubsubBlock,
        Transport::ShmlaneBlocking,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Cacheline => "cacheline",
            Transport::CachelineBlock => "cacheline-block",
            Transport::Futex => "futex",
            Transport::Pipe => "pipe",
            Transport::Uds => "uds",
            Transport::Tcp => "tcp",
            Transport::ShmlaneSpsc => "shmlane-spsc",
            Transport::ShmlanePubsub => "shmlane-pubsub",
            Transport::ShmlanePubsubBlock => "shmlane-pubsub-block",
            Transport::ShmlaneBlocking => "shmlane-blocking",
            Transport::ShmlanePubsubBatch => "shmlane-pubsub-batch",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `shmlane bench` measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Ping-pong round trips: one-way latency percentiles.
    #[default]
    Latency,
    /// One-way streaming: messages/s and GB/s.
    Throughput,
}

/// Recorded round trips per transport and payload when `--iters` is not given.
const DEFAULT_ITERS: u64 = 20_000;
/// Bytes each transport may move per payload size by default: bigger payloads get fewer
/// round trips, so the default run stays under a minute.
const DEFAULT_BYTES: u64 = 2 << 30;
/// Fewest recorded round trips per transport a default run makes.
const MIN_DEFAULT_ITERS: u64 = 1_000;
/// Largest payload: beyond it, a run is about memory bandwidth, not IPC.
const MAX_PAYLOAD: u64 = 256 << 20;

/// `shmlane bench`'s options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Every transport and payload size runs in the same run, taking turns, and each table shows the \
ratio of each transport's p50 to `cacheline` (two atomics in shared memory: the floor). Payloads over 8 \
bytes are copied by cacheline, futex, pipe, uds and tcp, and loaned (written and read in place) \
by the shmlane transports. cacheline-block is the floor of a payload read in place from a line \
other than the one polled: an atomic that names a block, whose first word is the message, at \
every payload size.

Exit codes: 0 done, 1 the run failed, 2 bad arguments.")]
pub struct BenchArgs {
    /// What to measure: ping-pong latency, or one-way streaming throughput (transports
    /// shmlane-spsc, shmlane-pubsub and shmlane-pubsub-batch, payloads 8, 64, 1K, 64K)
    #[arg(long, value_enum, default_value_t = Mode::Latency)]
    mode: Mode,
    /// Throughput mode: messages per transport, payload size and round [default: 1000000]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Throughput mode: recorded rounds (after one warm-up round of a tenth of the messages)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// The two CPUs to pin the processes to [default: the first two allowed CPUs that are not
    /// SMT siblings]
    #[arg(long, value_name = "A,B", value_parser = cores::parse_pair)]
    cores: Option<(usize, usize)>,
    /// Transports to measure, repeatable or comma-separated [default: all]
    #[arg(long = "transport", value_name = "NAME", value_delimiter = ',')]
    transports: Vec<Transport>,
    /// Recorded round trips per transport and payload [default: 20000, fewer for payloads
    /// over 100 KiB so the run takes under a minute]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    iters: Option<u64>,
    /// Round trips per transport and payload discarded before recording [default: a tenth of
    /// the recorded ones]
    #[arg(long)]
    warmup: Option<u64>,
    /// Payload size in bytes, a multiple of 8; K and M suffixes mean KiB and MiB; repeatable
    /// or comma-separated [default: 8,64,4K,1M]
    #[arg(long = "payload", value_name = "BYTES", value_delimiter = ',', value_parser = parse_payload)]
    payloads: Vec<u64>,
    /// Start round trips on a fixed schedule of HZ per second; latency counts from each
    /// intended start, so a late start is charged to the transport
    #[arg(long, value_name = "HZ", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Round trips per transport before switching to the next (for the payload size with the
    /// most round trips; sizes with fewer make proportionally fewer per turn)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    round: u64,
    /// Round trips each transport makes unrecorded at the start of each of its turns: after
    /// the others' turns its lines and code are out of the caches (0 records them)
    #[arg(long, value_name = "N", default_value_t = 10)]
    turn_warmup: u64,
    /// Write the results as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the latency distributions of all transports to FILE (SVG, log scales)
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// Parses a payload size: `4096`, `4K`, `4KiB`, `1M`, `1MiB`.
fn parse_payload(arg: &str) -> Result<u64, String> {
    let arg = arg.trim();
    let digits = arg.find(|c: char| !c.is_ascii_digit()).unwrap_or(arg.len());
    let (number, unit) = arg.split_at(digits);
    let number: u64 = number.parse().map_err(|_| format!("`{arg}` is not a size in bytes"))?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        _ => return Err(format!("unknown unit `{unit}`: use K (KiB) or M (MiB)")),
    };
    let bytes = number.checked_mul(scale).ok_or(format!("`{arg}` is too large"))?;
    if bytes < 8 || !bytes.is_multiple_of(8) || bytes > MAX_PAYLOAD {
        return Err(format!(
            "payloads are whole 8-byte words (they carry a sequence number) from 8 bytes to \
             {} MiB; got {bytes}",
            MAX_PAYLOAD >> 20
        ));
    }
    Ok(bytes)
}

/// Parses `--rate`: a positive, finite number of round trips per second.
fn parse_rate(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(hz) if hz.is_finite() && hz > 0.0 => Ok(hz),
        _ => Err(format!("`{arg}` is not a positive rate in Hz")),
    }
}

/// Why `shmlane bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments cannot be honoured.
    #[error("{0}")]
    Usage(String),
    /// Setting up a transport, a segment or the echo process failed.
    #[error("{0}")]
    Setup(String),
    /// A round trip failed.
    #[error("{transport} with {payload}-byte payloads: {source}")]
    Link {
        /// The transport.
        transport: Transport,
        /// The payload size.
        payload: u64,
        /// What went wrong.
        source: LinkError,
    },
    /// The echo process failed or had to be killed.
    #[error("the echo process {0}")]
    Echo(String),
    /// An output file could not be written.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl BenchError {
    fn exit_code(&self) -> ExitCode {
        match self {
            BenchError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs `shmlane bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    let outcome = match args.mode {
        Mode::Latency => initiator::run(args),
        Mode::Throughput => throughput::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shmlane bench: {error}");
            error.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes_take_binary_suffixes() {
        assert_eq!(parse_payload("8"), Ok(8));
        assert_eq!(parse_payload("4K"), Ok(4096));
        assert_eq!(parse_payload("1MiB"), Ok(1 << 20));
        assert!(parse_payload("12").is_err(), "not a whole number of words");
        assert!(parse_payload("0").is_err());
        assert!(parse_payload("1G").is_err());
        assert!(parse_payload("1T").is_err());
    }

    #[test]
    fn rates_are_positive_and_finite() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-5").is_err());
        assert!(parse_rate("inf").is_err());
    }
}
