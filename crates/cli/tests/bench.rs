//! `shmlane bench` as a user runs it: every transport with a few round trips, the JSON shape
//! other tools rely on, the plot, the fixed-rate mode, the throughput mode (a smoke run, not a
//! timed test), and clear refusals of bad arguments.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn shmlane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane")).args(args).output().expect("run shmlane")
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("shmlane-cli-test-{}-{name}", std::process::id()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const TRANSPORTS: [&str; 10] = [
    "cacheline",
    "cacheline-block",
    "futex",
    "pipe",
    "uds",
    "tcp",
    "shmlane-spsc",
    "shmlane-pubsub",
    "shmlane-pubsub-block",
    "shmlane-blocking",
];

#[test]
fn every_transport_runs_and_the_json_has_exactly_the_documented_shape() {
    let (json, svg) = (temp_file("all.json"), temp_file("all.svg"));
    let output = shmlane(&[
        "bench",
        "--iters",
        "200",
        "--warmup",
        "20",
        "--round",
        "50",
        "--payload",
        "8,4K",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "bench failed: {stderr}");
    assert!(!stderr.contains("left behind"), "{stderr}");
    for transport in TRANSPORTS {
        assert_eq!(stdout.matches(&format!("\n{transport} ")).count(), 2, "{transport}:\n{stdout}");
    }
    assert!(stdout.contains("payload 8 B") && stdout.contains("payload 4 KiB"), "{stdout}");

    let value: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let top = value.as_object().unwrap();
    assert_eq!(top.keys().collect::<Vec<_>>(), ["machine", "results"]);
    let machine = top["machine"].as_object().unwrap();
    assert_eq!(machine.keys().collect::<Vec<_>>(), ["cores", "cpu"]);
    assert!(machine["cpu"].is_string());
    let cores = machine["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 2);
    assert!(cores.iter().all(Value::is_u64));

    let results = top["results"].as_array().unwrap();
    assert_eq!(results.len(), 2 * TRANSPORTS.len());
    let mut keys = [
        "transport",
        "payload_bytes",
        "iters",
        "p50_ns",
        "trimmed_mean_ns",
        "p90_ns",
        "p99_ns",
        "p999_ns",
        "p9999_ns",
        "max_ns",
    ];
    keys.sort_unstable();
    for row in results {
        let row = row.as_object().unwrap();
        let mut found: Vec<&str> = row.keys().map(String::as_str).collect();
        found.sort_unstable();
        assert_eq!(found, keys);
        assert!(TRANSPORTS.contains(&row["transport"].as_str().unwrap()));
        assert!([8, 4096].contains(&row["payload_bytes"].as_u64().unwrap()));
        assert_eq!(row["iters"].as_u64(), Some(200), "warm-up trips are not recorded");
        let quantiles: Vec<f64> = ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns"]
            .iter()
            .map(|key| row[*key].as_f64().unwrap())
            .collect();
        assert!(quantiles[0] > 0.0, "{row:?}");
        // The mean of the round trips up to p99 lies between the smallest of them and p99.
        let mean = row["trimmed_mean_ns"].as_f64().unwrap();
        assert!(mean > 0.0 && mean <= quantiles[2], "{row:?}");
        assert!(
            quantiles.windows(2).all(|pair| pair[0] <= pair[1]),
            "quantiles not ordered: {row:?}"
        );
    }

    let plot = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert!(plot.starts_with("<svg"), "not an SVG file");
    for transport in TRANSPORTS {
        assert!(
            plot.contains(&format!("\n{transport}\n</text>")),
            "{transport} missing from the legend"
        );
    }
}

#[test]
fn a_fixed_rate_run_counts_from_the_intended_start() {
    let json = temp_file("rate.json");
    let output = shmlane(&[
        "bench",
        "--transport",
        "cacheline,pipe",
        "--iters",
        "300",
        "--warmup",
        "0",
        "--rate",
        "20000",
        "--payload",
        "64",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("fixed rate 20000 Hz"));
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let transports: Vec<&str> = value["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["cacheline", "pipe"]);
}

fn assert_refused(args: &[&str], message: &str) {
    let output = shmlane(args);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?} was not refused: {stderr}");
    assert!(stderr.contains(message), "{args:?}: expected `{message}` in: {stderr}");
}

#[test]
fn bad_arguments_are_refused_with_a_clear_message() {
    assert_refused(&["bench", "--transport", "carrier-pigeon"], "possible values");
    assert_refused(&["bench", "--cores", "0,100000"], "core 100000 is not available");
    assert_refused(&["bench", "--cores", "0"], "expected two CPU ids");
    assert_refused(&["bench", "--iters", "0"], "0 is not in 1..");
    assert_refused(&["bench", "--payload", "12"], "whole 8-byte words");
    assert_refused(&["bench", "--rate", "0"], "positive rate");
    let unwritable = "/nonexistent-dir/out.json";
    assert_refused(&["bench", "--iters", "1", "--json", unwritable], "cannot write");
}

#[test]
fn the_throughput_mode_streams_every_payload_and_reports_rates() {
    let json = temp_file("throughput.json");
    let output = shmlane(&[
        "bench",
        "--mode",
        "throughput",
        "--messages",
        "3000",
        "--rounds",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "bench failed: {stderr}");
    assert!(!stderr.contains("left behind"), "{stderr}");
    for payload in ["8 B", "64 B", "1 KiB", "64 KiB"] {
        assert!(stdout.contains(&format!("payload {payload} (3000 messages")), "{stdout}");
    }
    for transport in ["shmlane-spsc", "shmlane-pubsub", "shmlane-pubsub-batch"] {
        // A table row: the transport's name, then numbers (the ratio lines have words).
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some(transport)
                    && words.next().is_some_and(|word| word.parse::<f64>().is_ok())
            })
            .collect();
        assert_eq!(rows.len(), 4, "{transport}:\n{stdout}");
        for row in rows {
            // min, median, max (M msgs/s), GB/s, median / spsc: all positive numbers.
            let numbers: Vec<f64> =
                row.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
            assert_eq!(numbers.len(), 5, "{row}");
            assert!(numbers.iter().all(|n| *n > 0.0), "{row}");
            assert!(numbers[0] <= numbers[1] && numbers[1] <= numbers[2], "{row}");
        }
    }
    assert_eq!(stdout.matches("shmlane-pubsub / shmlane-spsc per round: min ").count(), 4);
    assert_eq!(stdout.matches("shmlane-pubsub-batch / shmlane-spsc per round: min ").count(), 4);
    assert!(stdout.contains("(goal >= 0.50)"), "{stdout}");
    // Above 64 B the batch row copies and the other loans: said under the 1 KiB and 64 KiB
    // tables.
    let copying = "(shmlane-pubsub-batch copies each whole sample in with `send_copies`;";
    assert_eq!(stdout.matches(copying).count(), 2, "{stdout}");

    let value: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let results = value["results"].as_array().unwrap();
    assert_eq!(results.len(), 12);
    for row in results {
        assert_eq!(row["messages"].as_u64(), Some(3000));
        assert_eq!(row["msgs_per_s"].as_array().map(Vec::len), Some(2), "{row}");
        assert!(row["median_gb_per_s"].as_f64().is_some_and(|gb| gb > 0.0), "{row}");
    }
}

#[test]
fn the_throughput_mode_refuses_what_it_cannot_measure() {
    assert_refused(&["bench", "--mode", "throughput", "--transport", "pipe"], "cannot stream");
    assert_refused(&["bench", "--mode", "throughput", "--payload", "4K"], "8, 64, 1K or 64K");
    assert_refused(&["bench", "--mode", "throughput", "--rate", "100"], "latency mode only");
    assert_refused(&["bench", "--mode", "throughput", "--messages", "0"], "0 is not in 1..");
    // The batch calls stream; a ping-pong has one message in flight, no batch to make.
    assert_refused(&["bench", "--transport", "shmlane-pubsub-batch"], "streams only");
}
