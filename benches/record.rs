//! What recording a topic costs its publisher, against adding one more busy subscriber: the
//! issue's goal is "no more". A publisher pinned to one core streams 32-byte samples
//! (`send_copy`, drop-oldest, so it never waits for anyone) to consumer processes, in
//! alternating rounds of the same run:
//!
//! - `1 subscriber`: one busy subscriber;
//! - `2 subscribers`: two busy subscribers;
//! - `subscriber + recorder`: one busy subscriber and a recorder, which does what
//!   `shmlane record` does: a run-time typed subscriber appending every sample to a journal
//!   (durability off) in a temporary directory.
//!
//! The consumers share the other core (this machine has two), equally in both two-consumer
//! set-ups. Reports the publisher's ns per send and sends/s, each consumer's share received,
//! and the ratio of the recorder set-up to the two-subscriber one.
//!
//! `cargo bench -p shmlane-benches --bench record [-- --messages N]`

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use shmlane::notify::BusySpin;
use shmlane::{Node, Overflow, TopicConfig, TypeSpec};
use shmlane_benches::peer;
use shmlane_benches::pingpong::remove_entries;
use shmlane_benches::{pin, two_cpus};
use shmlane_journal::{Journal, JournalConfig, RecordType};

/// The sample: 32 bytes, inline in the queue slot, as a small market-data tick.
type Tick = [u64; 4];
/// The last sample of a round: tells the consumers to stop.
const STOP: u64 = u64::MAX;
const SETUPS: [&str; 3] = ["1 subscriber", "2 subscribers", "subscriber + recorder"];
const HANG: Duration = Duration::from_secs(30);

fn config() -> TopicConfig {
    TopicConfig {
        subscriber_capacity: 1024,
        overflow: Overflow::DropOldest,
        ..TopicConfig::default()
    }
}

fn main() {
    if let Some(args) = peer::child_args() {
        return child(&args);
    }
    let mut messages: u64 = if peer::smoke_test() { 20_000 } else { 2_000_000 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--messages" {
            messages = args.next().and_then(|n| n.parse().ok()).expect("--messages needs a number");
        }
    }
    let rounds = if peer::smoke_test() { 1 } else { 5 };
    let namespace = format!("bench_record_{}", std::process::id());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let outcome = std::panic::catch_unwind(|| run(&namespace, dir.path(), messages, rounds));
    let left = remove_entries(Path::new("/dev/shm"), |file| {
        file.starts_with(&format!("shmlane.{namespace}."))
    });
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(left.is_empty(), "segments left in /dev/shm after the run: {left:?}");
}

fn run(namespace: &str, dir: &Path, messages: u64, rounds: usize) {
    let (core_a, core_b) = two_cpus();
    let node = Node::builder("publisher").namespace(namespace).create().expect("node");
    let builder = node.topic::<Tick>("feed").subscriber_capacity(config().subscriber_capacity);
    let topic = builder.overflow(config().overflow).create().expect("topic");
    let publisher = topic.publisher().expect("publisher");
    // Per set-up and round: ns per send, and what each consumer received.
    let mut results: Vec<Vec<(f64, Vec<u64>)>> = SETUPS.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (setup, name) in SETUPS.iter().enumerate() {
            let roles: &[&str] = match setup {
                0 => &["subscribe"],
                1 => &["subscribe", "subscribe"],
                _ => &["subscribe", "record"],
            };
            let journal = dir.join(format!("r{round}s{setup}"));
            // Pinned before the parent pins itself: a pinned parent's children inherit it.
            let mut children: Vec<Child> = roles
                .iter()
                .map(|role| {
                    let args = [*role, namespace, &core_b.to_string(), journal.to_str().unwrap()];
                    peer::spawn(&args, Stdio::null(), Stdio::piped())
                })
                .collect();
            pin(core_a);
            let deadline = Instant::now() + HANG;
            while publisher.subscribers() < roles.len() {
                assert!(Instant::now() < deadline, "{name}: the consumers did not start");
                std::thread::sleep(Duration::from_millis(1));
            }
            let start = Instant::now();
            for seq in 0..messages {
                publisher.send_copy([seq, seq, seq, seq]).expect("send");
            }
            let ns_per_send = start.elapsed().as_nanos() as f64 / messages as f64;
            // The stop sample, until every consumer has left (one that lags may evict it).
            while publisher.subscribers() > 0 {
                publisher.send_copy([STOP; 4]).expect("send");
                std::thread::sleep(Duration::from_micros(100));
            }
            let received = children.iter_mut().map(received).collect();
            results[setup].push((ns_per_send, received));
        }
    }

    println!(
        "\nrecording vs one more subscriber: publisher on core {core_a}, consumers on core \
         {core_b}; {messages} sends of 32 B per round, {rounds} rounds alternating"
    );
    println!(
        "{:>22} {:>12} {:>12} {:>24}",
        "set-up", "ns/send p50", "Msends/s", "received (of sent)"
    );
    let medians: Vec<f64> = results
        .iter()
        .zip(SETUPS)
        .map(|(rounds, name)| {
            let mut ns: Vec<f64> = rounds.iter().map(|(ns, _)| *ns).collect();
            ns.sort_by(f64::total_cmp);
            let median = ns[ns.len() / 2];
            let shares: Vec<String> = rounds[ns.len() / 2]
                .1
                .iter()
                .map(|&n| format!("{:.0}%", n as f64 * 100.0 / messages as f64))
                .collect();
            println!("{name:>22} {median:>12.1} {:>12.2} {:>24}", 1e3 / median, shares.join(" + "));
            median
        })
        .collect();
    println!(
        "recorder / second subscriber, publisher's ns per send: {:.3} (rounds: {})",
        medians[2] / medians[1],
        results[2]
            .iter()
            .zip(&results[1])
            .map(|((r, _), (s, _))| format!("{:.2}", r / s))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// What a consumer reported receiving (its stdout's last line), once it exited.
fn received(child: &mut Child) -> u64 {
    let stdout = child.stdout.take().expect("piped");
    let last = BufReader::new(stdout).lines().map_while(Result::ok).last().unwrap_or_default();
    let status = child.wait().expect("wait for a consumer");
    assert!(status.success(), "a consumer failed: {status}");
    last.trim().parse().unwrap_or(0)
}

/// A consumer: `subscribe|record NAMESPACE CORE JOURNAL_DIR`; prints how many samples it took.
fn child(args: &[String]) {
    let [role, namespace, core, journal] = args else { panic!("ROLE NAMESPACE CORE DIR") };
    pin(core.parse().expect("core"));
    let node = Node::builder(role.as_str()).namespace(namespace.as_str()).create().expect("node");
    let mut count = 0u64;
    match role.as_str() {
        "subscribe" => {
            let topic = node.topic::<Tick>("feed").open().expect("topic");
            let subscriber = topic.subscriber().expect("subscriber");
            loop {
                let sample = subscriber.receive_with(&mut BusySpin, Some(HANG)).expect("hung");
                if sample[0] == STOP {
                    break;
                }
                count += 1;
            }
        }
        _ => {
            // As `shmlane record`: the topic opened by its recorded type, every sample's bytes
            // appended as one record.
            let topic = node.raw_topic("feed").open().expect("topic");
            let spec: &TypeSpec = topic.type_spec();
            let record_type = RecordType {
                name: spec.name.chars().take(64).collect(),
                size: spec.size as u32,
                align: spec.align as u32,
                version: spec.version as u32,
            };
            let config = JournalConfig { record_type, ..JournalConfig::default() };
            let journal = Journal::open(journal, config).expect("journal");
            let mut appender = journal.appender().expect("appender");
            let subscriber = topic.subscriber().expect("subscriber");
            loop {
                let sample = subscriber.receive_with(&mut BusySpin, Some(HANG)).expect("hung");
                if sample[..8] == STOP.to_ne_bytes() {
                    break;
                }
                appender.append(&sample).expect("append");
                count += 1;
            }
        }
    }
    println!("{count}");
}
