//! The command line of `shmlane-bridge` (and of `shmlane bridge`): [`Args`] (clap) and
//! [`run`], which carries until SIGTERM or SIGINT.
//!
//! ```no_run
//! use clap::Parser;
//!
//! let args = shmlane_bridge::cli::Args::parse_from(["shmlane-bridge", "--out", "ticks-*", "--listen", "7447"]);
//! shmlane_bridge::cli::run(args)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Bridge, BridgeConfig, Direction, Rule, zenoh_config};

/// Carries shmlane topics, request/response and events between hosts over zenoh.
///
/// Patterns are `[NAMESPACE/]GLOB` over service names (`ticks`, `ticks-*`, `prod/orders`).
/// "Out" carries what this host produces (samples of local publishers, a local rpc server,
/// local notifiers) to the other hosts; "in" delivers theirs here.
#[derive(Debug, clap::Parser)]
#[command(name = "shmlane-bridge", version)]
pub struct Args {
    /// Carry matching local services out to the other hosts (repeatable).
    #[arg(long = "out", value_name = "PATTERN")]
    pub out: Vec<String>,
    /// Deliver matching services of the other hosts here (repeatable).
    #[arg(long = "in", value_name = "PATTERN")]
    pub into: Vec<String>,
    /// Carry matching services both ways (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub both: Vec<String>,
    /// The namespace of patterns that name none (default: $SHMLANE_NAMESPACE, else `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The directory segments live in (default /dev/shm).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// A zenoh configuration file (JSON5, as zenohd reads): mode, TLS, authentication, routers.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen on this endpoint (repeatable): PORT (binds 127.0.0.1), HOST:PORT, or a zenoh
    /// endpoint such as tcp/0.0.0.0:7447. Replaces the file's. Default: listen nowhere.
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// Connect to this endpoint (repeatable), as --listen reads it; retried until it answers,
    /// and again whenever the link drops. Replaces the file's.
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Vec<String>,
    /// The key-expression template: `{service}` (and optionally `{namespace}`) as whole
    /// chunks; the bridge appends `/topic`, `/rpc` or `/event`.
    #[arg(long, value_name = "TEMPLATE", default_value = crate::DEFAULT_TEMPLATE)]
    pub key: String,
    /// Print the counters as one JSON line on stdout every SECONDS (and once at exit).
    #[arg(long, value_name = "SECONDS")]
    pub stats: Option<f64>,
    /// How often to look for local services, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub scan_ms: u64,
    /// How long to wait for an rpc answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub rpc_timeout_ms: u64,
    /// How long a sample from the network may wait for a full local subscriber of a Block
    /// topic, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub block_timeout_ms: u64,
    /// The largest zenoh payload accepted, in bytes; larger ones are counted and dropped.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_payload: usize,
    /// Out carriers poll their local topics without ever sleeping: lower latency after quiet
    /// spells, a whole core per carried topic (give it one of its own).
    #[arg(long)]
    pub busy_poll: bool,
}

/// Runs a bridge as `args` say until SIGTERM or SIGINT, printing statistics if asked. Errors
/// are the configuration's or the start's, with messages that say what to fix.
pub fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let namespace = args
        .namespace
        .or_else(|| std::env::var(shmlane::NAMESPACE_ENV).ok())
        .unwrap_or_else(|| shmlane::DEFAULT_NAMESPACE.into());
    let mut rules = Vec::new();
    for (patterns, direction) in
        [(&args.out, Direction::Out), (&args.into, Direction::In), (&args.both, Direction::Both)]
    {
        for pattern in patterns {
            rules.push(Rule::parse(pattern, direction, &namespace)?);
        }
    }
    let stats_every = match args.stats {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => return Err(format!("--stats {s}: give a number of seconds above 0").into()),
        None => None,
    };
    let mut config = BridgeConfig::new(rules)?;
    config.root = args.root;
    config.keys = args.key.parse()?;
    config.zenoh = zenoh_config(args.config.as_deref(), &args.listen, &args.connect)?;
    config.scan_interval = Duration::from_millis(args.scan_ms);
    config.rpc_timeout = Duration::from_millis(args.rpc_timeout_ms);
    config.block_timeout = Duration::from_millis(args.block_timeout_ms);
    config.max_payload = args.max_payload;
    config.busy_poll = args.busy_poll;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let bridge = Bridge::start(config)?;
    let mut next_stats = stats_every.map(|every| Instant::now() + every);
    // Relaxed: the flag is the only thing the signal handler writes.
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if let (Some(at), Some(every)) = (next_stats, stats_every)
            && Instant::now() >= at
        {
            print_stats(&bridge);
            next_stats = Some(at + every);
        }
    }
    if stats_every.is_some() {
        print_stats(&bridge);
    }
    bridge.stop();
    Ok(())
}

/// One JSON line: `{"stats": {...}}` (see `Stats::to_json`).
fn print_stats(bridge: &Bridge) {
    let line = serde_json::json!({ "stats": bridge.stats().to_json() });
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (the reader went away) is no reason to stop carrying.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
