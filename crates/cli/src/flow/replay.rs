//! `shmlane replay DIR --into SERVICE`: republishes a recording into a topic, with the
//! recorded spacing (scaled by --speed) or as fast as the topic takes it.

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;
use shmlane::{PublishError, RawPublisher};
use shmlane_journal::{Journal, JournalConfig, TailFrom};

use super::recording::Recording;
use super::{FlowError, Scope, finish, flow_exit_codes, node};

/// `shmlane replay`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Republish a recording (a directory `shmlane record` wrote: OUT/SERVICE) into topic \
         SERVICE, opened or created with the recorded type and settings (a topic that exists \
         must carry the same type). With --speed 1.0 (the default) samples keep their recorded \
         spacing: each is sent when its recorded offset from the first has passed (scaled by \
         the speed; the wait sleeps, then spins for the last 100 µs); the report gives how late \
         the sends were (p50, p99, max). With --speed max, as fast as the topic takes them. \
         TIME is ns since the Unix epoch, an RFC 3339 time (2026-12-06T10:00:00Z), or +DURATION \
         from the first record (+1.5s).",
        "\n\n",
        flow_exit_codes!()
    ),
    after_help = flow_exit_codes!()
)]
pub struct ReplayArgs {
    /// The recording's directory (one service's: OUT/SERVICE)
    dir: PathBuf,
    /// The topic to publish into
    #[arg(long, value_name = "SERVICE")]
    into: String,
    #[command(flatten)]
    scope: Scope,
    /// Speed factor of the recorded spacing (2.0: twice as fast), or `max`
    #[arg(long, default_value = "1.0")]
    speed: Speed,
    /// Start at the first record at or after TIME
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Stop before the first record after TIME
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Wait for this many subscribers before the first send
    #[arg(long, default_value_t = 0, value_name = "N")]
    wait_subscribers: usize,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

/// `--speed`.
#[derive(Debug, Clone, Copy)]
enum Speed {
    Factor(f64),
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Speed, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!("{s:?}: give a positive number or `max`")),
        }
    }
}

/// What a replay did.
#[derive(Debug, Serialize)]
struct Report {
    service: String,
    records: u64,
    bytes: u64,
    /// Recorded span from the first to the last record sent (ns).
    recorded_span_ns: u64,
    /// Wall time from the first send to the last (ns).
    replay_span_ns: u64,
    /// How late sends were against their recorded offsets (ns), with --speed other than max.
    lateness_ns: Option<Lateness>,
}

#[derive(Debug, Serialize)]
struct Lateness {
    p50: u64,
    p99: u64,
    max: u64,
}

/// Runs `shmlane replay`.
pub fn replay(args: ReplayArgs) -> std::process::ExitCode {
    finish(run(&args))
}

/// The last stretch of a paced wait, spent spinning instead of sleeping.
const SPIN: Duration = Duration::from_micros(100);

fn run(args: &ReplayArgs) -> Result<(), FlowError> {
    let dir = &args.dir;
    let journal_error = |reason: String| FlowError::Journal { dir: dir.clone(), reason };
    let inspection = Journal::inspect(dir)
        .map_err(|e| FlowError::NotFound(format!("no recording in {}: {e}", dir.display())))?;
    let record_type = inspection
        .record_type
        .clone()
        .ok_or_else(|| FlowError::NotFound(format!("no journal files in {}", dir.display())))?;
    let recording = Recording::read(dir)?;
    let (spec, config) = match &recording {
        Some(recording) => (recording.type_spec(), recording.topic_config()),
        // A journal written by other means: its record type, default settings.
        None => {
            let spec = shmlane::TypeSpec::new(
                record_type.name.clone(),
                u64::from(record_type.size.max(1)),
                u64::from(record_type.align.max(1)),
                u64::from(record_type.version),
            );
            (spec, shmlane::TopicConfig::default())
        }
    };
    let first_ns = inspection.first_timestamp_ns.unwrap_or(0);
    let from = args.from.as_deref().map(|t| parse_time(t, first_ns)).transpose()?;
    let to = args.to.as_deref().map(|t| parse_time(t, first_ns)).transpose()?;

    let node = node("shmlane-replay", &args.scope)?;
    let topic = node
        .raw_topic(&args.into)
        .type_spec(spec)
        .config(config)
        .open_or_create()
        .map_err(|source| FlowError::Topic { service: args.into.clone(), source })?;
    let publisher = topic
        .publisher()
        .map_err(|e| FlowError::Join { service: args.into.clone(), reason: e.to_string() })?;
    while publisher.subscribers() < args.wait_subscribers {
        std::thread::sleep(Duration::from_millis(1));
    }

    let journal_config = JournalConfig { record_type, ..JournalConfig::default() };
    let journal = Journal::open(dir, journal_config).map_err(|e| journal_error(e.to_string()))?;
    let start = from.map_or(TailFrom::Start, TailFrom::Time);
    let mut tailer = journal.tailer(start).map_err(|e| journal_error(e.to_string()))?;

    let mut lateness = Histogram::<u64>::new(3).map_err(|e| FlowError::Usage(e.to_string()))?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut first: Option<(u64, Instant)> = None;
    let mut last = (0u64, Instant::now());
    loop {
        let record = match tailer.next() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => return Err(journal_error(e.to_string())),
        };
        let stamp = record.timestamp_ns();
        if to.is_some_and(|to| stamp > to) {
            break;
        }
        let (first_stamp, started) = *first.get_or_insert((stamp, Instant::now()));
        if let Speed::Factor(speed) = args.speed {
            let offset = Duration::from_nanos(stamp.saturating_sub(first_stamp));
            let due = started + offset.div_f64(speed);
            wait_until(due);
            let late = Instant::now().saturating_duration_since(due);
            lateness.saturating_record(u64::try_from(late.as_nanos()).unwrap_or(u64::MAX));
        }
        send(&publisher, record.payload())
            .map_err(|e| FlowError::Flow { service: args.into.clone(), reason: e.to_string() })?;
        records += 1;
        bytes += record.payload().len() as u64;
        last = (stamp, Instant::now());
    }
    let report = Report {
        service: args.into.clone(),
        records,
        bytes,
        recorded_span_ns: first.map_or(0, |(stamp, _)| last.0.saturating_sub(stamp)),
        replay_span_ns: first.map_or(0, |(_, at)| {
            u64::try_from(last.1.saturating_duration_since(at).as_nanos()).unwrap_or(u64::MAX)
        }),
        lateness_ns: (matches!(args.speed, Speed::Factor(_)) && records > 0).then(|| Lateness {
            p50: lateness.value_at_quantile(0.5),
            p99: lateness.value_at_quantile(0.99),
            max: lateness.max(),
        }),
    };
    print_report(&report, args.json);
    Ok(())
}

/// Sends `payload`, waiting while every block is loaned or held (subscribers still reading).
fn send(publisher: &RawPublisher, payload: &[u8]) -> Result<usize, PublishError> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match publisher.send_copy(payload) {
            Err(PublishError::OutOfBlocks) if Instant::now() < give_up => std::thread::yield_now(),
            other => return other,
        }
    }
}

/// Sleeps until `SPIN` before `due`, then spins until it.
fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now + SPIN {
        std::thread::sleep(due - now - SPIN);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

/// A TIME argument: ns since the Unix epoch, an RFC 3339 time, or +DURATION after `first_ns`.
fn parse_time(text: &str, first_ns: u64) -> Result<u64, FlowError> {
    let bad = |why: String| FlowError::Usage(format!("bad time {text:?}: {why}"));
    if let Some(offset) = text.strip_prefix('+') {
        let offset = humantime::parse_duration(offset).map_err(|e| bad(e.to_string()))?;
        let offset = u64::try_from(offset.as_nanos()).map_err(|e| bad(e.to_string()))?;
        return Ok(first_ns.saturating_add(offset));
    }
    if let Ok(ns) = text.parse::<u64>() {
        return Ok(ns);
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|e| bad(e.to_string()))?;
    let since = time.duration_since(UNIX_EPOCH).map_err(|e| bad(e.to_string()))?;
    u64::try_from(since.as_nanos()).map_err(|e| bad(e.to_string()))
}

fn print_report(report: &Report, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(report) {
            println!("{text}");
        }
        return;
    }
    print!(
        "{}: {} records, {} bytes replayed over {:.3} s (recorded over {:.3} s)",
        report.service,
        report.records,
        report.bytes,
        report.replay_span_ns as f64 / 1e9,
        report.recorded_span_ns as f64 / 1e9
    );
    match &report.lateness_ns {
        Some(l) => println!("; sends late by p50 {} ns, p99 {} ns, max {} ns", l.p50, l.p99, l.max),
        None => println!(),
    }
}
