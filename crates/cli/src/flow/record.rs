//! `shmlane record SERVICE... --out DIR`: records topics into journals, as an ordinary
//! subscriber of each, until stopped (SIGINT or SIGTERM), a count, or a duration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use shmlane::notify::Blocking;
use shmlane::{RawSubscriber, RawTopic};
use shmlane_journal::{Appender, Durability, Journal, JournalConfig};

use super::recording::Recording;
use super::{FlowError, Scope, finish, flow_exit_codes, node};

/// `shmlane record`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Record topics into journals (shmlane-journal), one directory per service under \
         --out: OUT/SERVICE holds the journal and recording.json (the topic's full type and \
         settings, for `shmlane replay`). The recorder is an ordinary subscriber of each topic \
         (run-time typed: no Rust type needed), so publishers pay what one more subscriber \
         costs; under the topic's overflow policy a recorder that falls behind is waited for \
         (block) or drops (drop-oldest, counted in the report). Prints `recording` on stdout \
         once every subscriber is in place, and a report when it stops: on SIGINT or SIGTERM, \
         after --count records, or after --duration.",
        "\n\n",
        flow_exit_codes!()
    ),
    after_help = flow_exit_codes!()
)]
pub struct RecordArgs {
    /// The services (topics) to record
    #[arg(required = true)]
    services: Vec<String>,
    /// The directory to record into (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    scope: Scope,
    /// Stop after this many records (over all services)
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long (e.g. 10s, 1m)
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Sync the journal to disk every N records (default: never; the page cache survives the
    /// recorder's crash, not the machine's)
    #[arg(long, value_name = "N")]
    sync_every: Option<u32>,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

/// What was recorded of one service.
#[derive(Debug, Serialize)]
struct Report {
    service: String,
    dir: PathBuf,
    #[serde(rename = "type")]
    type_name: String,
    records: u64,
    bytes: u64,
    /// Samples the recorder's subscriber dropped (its queue full under drop-oldest).
    drops: u64,
}

/// One topic being recorded.
struct Recorder {
    service: String,
    subscriber: RawSubscriber,
    sink: Sink,
    type_name: String,
    _topic: RawTopic,
}

/// A recorder's journal and counts.
struct Sink {
    dir: PathBuf,
    appender: Appender,
    records: u64,
    bytes: u64,
}

impl Sink {
    /// Appends one sample's bytes.
    fn append(&mut self, payload: &[u8]) -> Result<(), FlowError> {
        match self.appender.append(payload) {
            Ok(_) => {
                self.records += 1;
                self.bytes += payload.len() as u64;
                Ok(())
            }
            Err(e) => Err(FlowError::Journal { dir: self.dir.clone(), reason: e.to_string() }),
        }
    }
}

/// Runs `shmlane record`.
pub fn record(args: RecordArgs) -> std::process::ExitCode {
    finish(run(&args))
}

/// Most samples taken from one topic before the next is looked at.
const BATCH: usize = 256;

fn run(args: &RecordArgs) -> Result<(), FlowError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| FlowError::Usage(format!("cannot handle signal {signal}: {e}")))?;
    }
    let node = node("shmlane-record", &args.scope)?;
    let durability = args.sync_every.map_or(Durability::None, Durability::EveryRecords);
    let mut recorders = Vec::new();
    for service in &args.services {
        recorders.push(open(&node, service, &args.out, durability)?);
    }
    println!("recording");
    let deadline = args.duration.map(|d| Instant::now() + d);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut total = 0;
    let mut idle_rounds = 0u32;
    // Acquire: pairs with the signal handler's store (signal-hook stores with SeqCst).
    while !stop.load(Ordering::Acquire)
        && total < limit
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let mut taken = 0;
        for recorder in &mut recorders {
            let room = usize::try_from(limit - total).unwrap_or(BATCH).min(BATCH);
            let n = recorder.drain(room)?;
            total += n as u64;
            taken += n;
        }
        if taken > 0 {
            idle_rounds = 0;
        } else if recorders.len() == 1 {
            // One topic: sleep on its event (woken by the next send), looking at the clock
            // and the stop flag every 50 ms.
            let recorder = &mut recorders[0];
            match recorder
                .subscriber
                .receive_with(&mut Blocking::new(), Some(Duration::from_millis(50)))
            {
                Ok(sample) => {
                    recorder.sink.append(&sample)?;
                    total += 1;
                }
                Err(shmlane::ReceiveError::TimedOut(_)) => {}
                Err(e) => return Err(recorder.flow_error(e)),
            }
        } else {
            // Several topics (until a WaitSet can sleep on all of them): yield while they are
            // busy, then poll every 100 µs.
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds < 1000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
    let mut reports = Vec::new();
    for recorder in &mut recorders {
        let sink = &mut recorder.sink;
        sink.appender.flush().map_err(|e| FlowError::Journal {
            dir: sink.dir.clone(),
            reason: format!("cannot sync: {e}"),
        })?;
        reports.push(Report {
            service: recorder.service.clone(),
            dir: sink.dir.clone(),
            type_name: recorder.type_name.clone(),
            records: sink.records,
            bytes: sink.bytes,
            drops: recorder.subscriber.drops(),
        });
    }
    print_reports(&reports, args.json);
    Ok(())
}

/// Joins `service` as a subscriber and opens its journal under `out`.
fn open(
    node: &shmlane::Node,
    service: &str,
    out: &Path,
    durability: Durability,
) -> Result<Recorder, FlowError> {
    let topic = node.raw_topic(service).open().map_err(|source| match source {
        shmlane::TopicError::Open(_) => FlowError::NotFound(format!(
            "no topic {service:?} in namespace {:?}: see `shmlane list`",
            node.namespace()
        )),
        source => FlowError::Topic { service: service.to_owned(), source },
    })?;
    let recording = Recording::new(service, node.namespace(), topic.type_spec(), topic.config());
    let dir = out.join(service);
    let journal_error = |reason: String| FlowError::Journal { dir: dir.clone(), reason };
    let config = JournalConfig {
        durability,
        record_type: recording.record_type()?,
        ..JournalConfig::default()
    };
    let journal = Journal::open(&dir, config).map_err(|e| journal_error(e.to_string()))?;
    recording.write(&dir)?;
    let appender = journal.appender().map_err(|e| journal_error(e.to_string()))?;
    let subscriber = topic
        .subscriber()
        .map_err(|e| FlowError::Join { service: service.to_owned(), reason: e.to_string() })?;
    Ok(Recorder {
        service: service.to_owned(),
        subscriber,
        sink: Sink { dir, appender, records: 0, bytes: 0 },
        type_name: topic.type_spec().to_string(),
        _topic: topic,
    })
}

impl Recorder {
    /// Appends up to `room` queued samples; returns how many.
    fn drain(&mut self, room: usize) -> Result<usize, FlowError> {
        for n in 0..room {
            match self.subscriber.receive() {
                Ok(Some(sample)) => self.sink.append(&sample)?,
                Ok(None) => return Ok(n),
                Err(e) => return Err(self.flow_error(e)),
            }
        }
        Ok(room)
    }

    fn flow_error(&self, e: shmlane::ReceiveError) -> FlowError {
        FlowError::Flow { service: self.service.clone(), reason: e.to_string() }
    }
}

fn print_reports(reports: &[Report], json: bool) {
    if json {
        let all = serde_json::json!({ "services": reports });
        println!("{all}");
        return;
    }
    for r in reports {
        println!(
            "{}: {} records, {} bytes, {} dropped, type {}, in {}",
            r.service,
            r.records,
            r.bytes,
            r.drops,
            r.type_name,
            r.dir.display()
        );
    }
}
