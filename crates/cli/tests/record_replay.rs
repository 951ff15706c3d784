//! `shmlane record` and `shmlane replay`, run as the built binary against topics of this test
//! process: a recorder on a live topic at full rate under the block policy keeps every sample
//! in order; a replay into another topic reproduces the sequence; a paced replay takes at least
//! the recorded time and --from skips what came before; and the errors a user meets.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shmlane::notify::Blocking;
use shmlane::{FromBytes, Immutable, IntoBytes, KnownLayout, Node, Overflow};
use shmlane_journal::{Journal, JournalConfig, TailFrom};

/// A sample of 64 bytes: too large to travel inline, so the recorder reads it from a block.
#[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[zerocopy(crate = "shmlane::zerocopy")]
#[repr(C)]
struct Tick {
    sequence: u64,
    words: [u64; 7],
}

fn tick(sequence: u64) -> Tick {
    Tick { sequence, words: [sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15); 7] }
}

const TIMEOUT: Duration = Duration::from_secs(60);

fn node(tag: &str) -> Node {
    let namespace = format!("rr{}{tag}", std::process::id());
    Node::builder("test").namespace(namespace).create().unwrap()
}

/// Starts `shmlane ARGS` with stdout piped.
fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child`; returns its stdout's JSON report after asserting it exited 0.
fn report(child: Child) -> Value {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Starts a recorder of `service` into `out`, returned once its subscriber is in place.
fn start_recorder(node: &Node, service: &str, out: &Path) -> Child {
    let ns = node.namespace();
    let mut child =
        start(&["record", service, "--out", out.to_str().unwrap(), "--namespace", ns, "--json"]);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "recording", "the recorder's first line");
    child
}

fn interrupt(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
}

#[test]
fn a_recording_at_full_rate_keeps_every_sample_and_replays_in_order() {
    const COUNT: u64 = 100_000;
    let node = node("full");
    let dir = tempfile::tempdir().unwrap();
    let topic = node.topic::<Tick>("ticks").overflow(Overflow::Block).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let recorder = start_recorder(&node, "ticks", dir.path());
    shmlane_testkit::wait_for("the recorder", TIMEOUT, || publisher.subscribers() == 1);
    publisher.set_block_timeout(TIMEOUT);
    for sequence in 0..COUNT {
        assert_eq!(publisher.send_copy(tick(sequence)).unwrap(), 1);
    }
    // Every sample is queued or recorded: wait until the recorder took the last one.
    shmlane_testkit::wait_for("the recorder to drain", TIMEOUT, || {
        publisher.block_counts().held == 0
    });
    interrupt(&recorder);
    let recorded = &report(recorder)["services"][0];
    assert_eq!((recorded["records"].as_u64(), recorded["drops"].as_u64()), (Some(COUNT), Some(0)));

    // The journal holds each sample, in order, byte for byte.
    let journal_dir = dir.path().join("ticks");
    let inspection = Journal::inspect(&journal_dir).unwrap();
    let config =
        JournalConfig { record_type: inspection.record_type.unwrap(), ..Default::default() };
    let journal = Journal::open(&journal_dir, config).unwrap();
    let mut tailer = journal.tailer(TailFrom::Start).unwrap();
    for sequence in 0..COUNT {
        let record = tailer.next().unwrap().expect("every sample recorded");
        assert_eq!(record.payload(), tick(sequence).as_bytes(), "record {sequence}");
    }
    assert!(tailer.next().unwrap().is_none());

    // Replayed as fast as possible into another topic, under its block policy: all, in order.
    let replayed = node.topic::<Tick>("replayed").overflow(Overflow::Block).create().unwrap();
    let subscriber = replayed.subscriber().unwrap();
    let ns = node.namespace();
    let journal_arg = journal_dir.to_str().unwrap();
    let replay = start(&[
        "replay",
        journal_arg,
        "--into",
        "replayed",
        "--namespace",
        ns,
        "--speed",
        "max",
        "--wait-subscribers",
        "1",
        "--json",
    ]);
    let mut strategy = Blocking::new();
    for sequence in 0..COUNT {
        let sample = subscriber.receive_with(&mut strategy, Some(TIMEOUT)).unwrap();
        assert_eq!(*sample, tick(sequence));
    }
    assert_eq!(report(replay)["records"].as_u64(), Some(COUNT));
}

#[test]
fn a_paced_replay_keeps_the_recorded_spacing_and_starts_where_asked() {
    const COUNT: u64 = 20;
    let node = node("paced");
    let dir = tempfile::tempdir().unwrap();
    let topic = node.topic::<u64>("beats").create().unwrap();
    let publisher = topic.publisher().unwrap();
    let recorder = start_recorder(&node, "beats", dir.path());
    shmlane_testkit::wait_for("the recorder", TIMEOUT, || publisher.subscribers() == 1);
    for sequence in 0..COUNT {
        publisher.send_copy(sequence).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&recorder);
    assert_eq!(report(recorder)["services"][0]["records"].as_u64(), Some(COUNT));

    let journal_dir = dir.path().join("beats");
    let replayed = node.topic::<u64>("paced").subscriber_capacity(64).create().unwrap();
    let subscriber = replayed.subscriber().unwrap();
    let (ns, journal_arg) = (node.namespace(), journal_dir.to_str().unwrap());
    let replay = start(&[
        "replay",
        journal_arg,
        "--into",
        "paced",
        "--namespace",
        ns,
        "--wait-subscribers",
        "1",
        "--json",
    ]);
    let paced = report(replay);
    assert_eq!(paced["records"].as_u64(), Some(COUNT));
    // Never faster than recorded (a lower bound: how close it comes is the lateness report's).
    let (recorded, took) = (paced["recorded_span_ns"].as_u64(), paced["replay_span_ns"].as_u64());
    assert!(recorded.unwrap() >= 19 * 20_000_000, "{paced}");
    assert!(took.unwrap() >= recorded.unwrap() * 99 / 100, "{paced}");
    assert!(paced["lateness_ns"]["p50"].is_u64(), "{paced}");
    let got: Vec<u64> = std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());

    // From 100 ms after the first record: the first (at 0) is left out, the last (at 380 ms
    // or later) is in.
    let replay = start(&[
        "replay",
        journal_arg,
        "--into",
        "paced",
        "--namespace",
        ns,
        "--speed",
        "max",
        "--from",
        "+100ms",
        "--json",
    ]);
    let records = report(replay)["records"].as_u64().unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| *s)).collect();
    assert!((1..COUNT).contains(&records), "{records}");
    assert_eq!(got.first(), Some(&(COUNT - records)), "{got:?}");
    assert_eq!(got.last(), Some(&(COUNT - 1)));
}

#[test]
fn missing_topics_and_recordings_and_another_type_are_errors() {
    let node = node("errors");
    let dir = tempfile::tempdir().unwrap();
    let (ns, out) = (node.namespace(), dir.path().to_str().unwrap());
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_shmlane")).args(args).output();
    let missing = run(&["record", "absent", "--out", out, "--namespace", ns]).unwrap();
    assert_eq!(missing.status.code(), Some(3), "{}", String::from_utf8_lossy(&missing.stderr));
    let empty = run(&["replay", out, "--into", "x", "--namespace", ns]).unwrap();
    assert_eq!(empty.status.code(), Some(3), "{}", String::from_utf8_lossy(&empty.stderr));

    // A recording of u64s replayed into a topic of another type is refused, naming both.
    let topic = node.topic::<u64>("words").create().unwrap();
    let publisher = topic.publisher().unwrap();
    let recorder = start_recorder(&node, "words", dir.path());
    shmlane_testkit::wait_for("the recorder", TIMEOUT, || publisher.subscribers() == 1);
    publisher.send_copy(1).unwrap();
    shmlane_testkit::wait_for("the record", TIMEOUT, || {
        Journal::inspect(dir.path().join("words")).is_ok_and(|i| i.records == 1)
    });
    interrupt(&recorder);
    report(recorder);
    let _other = node.topic::<u32>("other").create().unwrap();
    let journal_dir = dir.path().join("words");
    let wrong =
        run(&["replay", journal_dir.to_str().unwrap(), "--into", "other", "--namespace", ns]);
    let wrong = wrong.unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("u32") && stderr.contains("u64"), "{stderr}");
}

#[test]
fn shmlane_bridge_runs_the_bridge_binary() {
    // `cargo test --workspace` builds shmlane-bridge beside shmlane; alone, this package's
    // tests do not.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_shmlane"));
    if !exe.with_file_name("shmlane-bridge").is_file() {
        println!(
            "SKIPPED: shmlane-bridge is not built next to {} (cargo build -p shmlane-bridge)",
            exe.display()
        );
        return;
    }
    let output = Command::new(exe).args(["bridge", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(text.contains("--connect") && text.contains("--listen"), "{text}");
}
