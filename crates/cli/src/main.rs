//! `shmlane`: the command-line tool of shmlane.
//!
//! - `shmlane bench`: cross-process ping-pong latency of every transport (the physical floor,
//!   kernel IPC, and each shmlane layer) on two pinned cores, in one run, with percentiles,
//!   ratios to the floor, JSON and an SVG plot.
//! - `shmlane list`, `shmlane inspect NAME`, `shmlane clean`: our segments and services, their
//!   state and peers, and removal of what dead processes left behind.
//! - `shmlane journal inspect DIR`: a journal's files, records, ranges, appender and damage,
//!   read-only.
//! - `shmlane record SERVICE... --out DIR`, `shmlane replay DIR --into SERVICE`: topics to
//!   journals and back.

mod bench;
mod bridge;
mod flow;
#[cfg(feature = "monitor")]
mod monitor;
mod ops;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Zero-copy shared-memory IPC: latency bench and operations on segments and services.
#[derive(Debug, Parser)]
#[command(name = "shmlane", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure cross-process ping-pong latency of every transport on two pinned cores.
    Bench(bench::BenchArgs),
    /// List shmlane segments and services: kind, size, creator, alive or stale, peers.
    List(ops::ListArgs),
    /// Show one segment or service in detail: header, pool usage, queue fill, peers.
    Inspect(ops::InspectArgs),
    /// Remove stale segments (creator and every peer dead).
    Clean(ops::CleanArgs),
    /// Operations on journals (shmlane-journal directories): `journal inspect DIR`.
    Journal(ops::JournalArgs),
    /// Record topics into journals (as an ordinary subscriber) until stopped.
    Record(flow::RecordArgs),
    /// Republish a recording into a topic, with its recorded spacing or as fast as possible.
    Replay(flow::ReplayArgs),
    /// Serve a live web view (page, REST, WebSocket, Prometheus) of services, peers and nodes.
    #[cfg(feature = "monitor")]
    Monitor(monitor::MonitorArgs),
    /// Carry topics, rpc and events to other hosts over zenoh (runs `shmlane-bridge`).
    Bridge(bridge::BridgeArgs),
    /// The echo side of `bench`, started by `bench` itself.
    #[command(hide = true)]
    BenchEcho(bench::EchoArgs),
}

fn main() -> ExitCode {
    log_to_stderr();
    match Cli::parse().command {
        Command::Bench(args) => bench::run(args),
        Command::BenchEcho(args) => bench::echo(args),
        Command::List(args) => ops::list(args),
        Command::Inspect(args) => ops::inspect(args),
        Command::Clean(args) => ops::clean(args),
        Command::Journal(args) => ops::journal(args),
        Command::Record(args) => flow::record(args),
        Command::Replay(args) => flow::replay(args),
        Command::Bridge(args) => bridge::run(args),
        #[cfg(feature = "monitor")]
        Command::Monitor(args) => monitor::run(args),
    }
}

/// Prints the library's `tracing` events (dead peers taken over, stale files removed, ...) on
/// stderr, filtered by `RUST_LOG` (default: warnings and errors), e.g.
/// `RUST_LOG=shmlane=info,shmlane_segment=debug`.
fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
