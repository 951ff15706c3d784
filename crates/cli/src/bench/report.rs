//! The results: one table per payload size on stdout, and the JSON file of `--json`, whose
//! shape other tools rely on (`machine`, then one row per transport and payload size). The
//! throughput mode's tables and JSON have the same shape, with rates instead of latencies.

use std::fs::File;
use std::io::{BufWriter, Write};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Transport;

/// Quantiles reported, with their column names.
pub const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];

/// A histogram of round-trip times in ns, from 1 ns to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("constant, valid bounds")
}

/// The round trips of one transport with one payload size.
#[derive(Debug)]
pub struct Measurement {
    /// The transport.
    pub transport: Transport,
    /// Bytes per message.
    pub payload: u64,
    /// Round-trip times in ns (with `--rate`: twice the one-way latency from the intended
    /// start).
    pub histogram: Histogram<u64>,
}

impl Measurement {
    /// One-way latency in ns at `quantile`.
    pub fn one_way(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 2.0
    }

    /// The mean one-way latency in ns of the round trips up to p99 (the rare long ones left
    /// out): finer than any percentile where the clock ticks in steps of 10 ns, as a KVM
    /// guest's does, so it shows a difference of a few ns between two builds.
    pub fn trimmed_mean(&self) -> f64 {
        let cut = self.histogram.value_at_quantile(0.99);
        let (mut sum, mut count) = (0.0, 0u64);
        for value in self.histogram.iter_recorded() {
            let at = value.value_iterated_to();
            if at > cut {
                break;
            }
            let n = value.count_at_value();
            sum += self.histogram.median_equivalent(at) as f64 * n as f64;
            count += n;
        }
        if count == 0 { 0.0 } else { sum / count as f64 / 2.0 }
    }

    /// The largest one-way latency in ns.
    pub fn max(&self) -> f64 {
        self.histogram.max() as f64 / 2.0
    }
}

/// Where the run ran.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// The CPU model.
    pub cpu: String,
    /// The initiator's and the echo process's CPUs.
    pub cores: [usize; 2],
}

/// A payload size for people: `8 B`, `4 KiB`, `1 MiB`.
pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// Prints one table per payload size.
pub fn print(measurements: &[Measurement], machine: &Machine, rate: Option<f64>) {
    print_heading(machine, rate);
    let mut payloads: Vec<u64> = measurements.iter().map(|row| row.payload).collect();
    payloads.dedup();
    for payload in payloads {
        let rows: Vec<&Measurement> =
            measurements.iter().filter(|row| row.payload == payload).collect();
        print_table(payload, &rows);
    }
    if machine.cores[0] == machine.cores[1] {
        println!("\n(both processes ran on one CPU: these numbers measure context switches)");
    }
}

/// Where the run ran and what it measures.
fn print_heading(machine: &Machine, rate: Option<f64>) {
    println!(
        "shmlane bench on {}, CPUs {} and {}",
        machine.cpu, machine.cores[0], machine.cores[1]
    );
    match rate {
        Some(hz) => println!(
            "one-way latency in ns from each intended start (fixed rate {hz} Hz): late start + \
             round trip / 2"
        ),
        None => println!("one-way latency in ns: round trip / 2, back to back"),
    }
}

/// The table of one payload size: a row per transport, with its p50 over `cacheline`'s.
fn print_table(payload: u64, rows: &[&Measurement]) {
    let floor =
        rows.iter().find(|row| row.transport == Transport::Cacheline).map(|row| row.one_way(0.5));
    let iters = rows.first().map_or(0, |row| row.histogram.len());
    println!("\npayload {} ({iters} round trips per transport)", size(payload));
    print!("{:<22}", "transport");
    for (name, _) in QUANTILES {
        print!("{name:>10}");
    }
    println!("{:>10}{:>16}", "max", "p50/cacheline");
    for row in rows {
        print!("{:<22}", row.transport.name());
        for (_, quantile) in QUANTILES {
            print!("{:>10.0}", row.one_way(quantile));
        }
        let ratio = floor
            .map_or("-".to_owned(), |floor| format!("{:.2}", row.one_way(0.5) / floor.max(0.5)));
        println!("{:>10.0}{ratio:>16}", row.max());
    }
}

/// The `--json` file.
#[derive(Serialize)]
struct Json<'m> {
    machine: &'m Machine,
    results: Vec<Row>,
}

/// One transport and payload size in the `--json` file.
#[derive(Serialize)]
struct Row {
    transport: &'static str,
    payload_bytes: u64,
    iters: u64,
    p50_ns: f64,
    /// The mean up to p99 ([`Measurement::trimmed_mean`]).
    trimmed_mean_ns: f64,
    p90_ns: f64,
    p99_ns: f64,
    p999_ns: f64,
    p9999_ns: f64,
    max_ns: f64,
}

/// Writes `{"machine": …, "results": […]}` to `file`.
pub fn write_json(
    file: File,
    machine: &Machine,
    measurements: &[Measurement],
) -> Result<(), String> {
    let results = measurements
        .iter()
        .map(|measurement| Row {
            transport: measurement.transport.name(),
            payload_bytes: measurement.payload,
            iters: measurement.histogram.len(),
            p50_ns: measurement.one_way(0.5),
            trimmed_mean_ns: measurement.trimmed_mean(),
            p90_ns: measurement.one_way(0.9),
            p99_ns: measurement.one_way(0.99),
            p999_ns: measurement.one_way(0.999),
            p9999_ns: measurement.one_way(0.9999),
            max_ns: measurement.max(),
        })
        .collect();
    write_pretty(file, &Json { machine, results })
}

/// One transport's streaming rate at one payload size (throughput mode).
#[derive(Debug)]
pub struct Throughput {
    /// The transport.
    pub transport: Transport,
    /// Bytes per message.
    pub payload: u64,
    /// Messages per round.
    pub messages: u64,
    /// Messages per second, one per recorded round.
    pub rates: Vec<f64>,
}

impl Throughput {
    /// Minimum, median and maximum of the rounds' messages/s.
    pub fn spread(&self) -> [f64; 3] {
        spread(&self.rates)
    }

    /// GB/s (10^9 bytes) of payload at `rate` messages/s.
    pub fn gb_per_s(&self, rate: f64) -> f64 {
        rate * self.payload as f64 / 1e9
    }
}

/// Minimum, median and maximum of `values` (`NaN`s if empty).
pub fn spread(values: &[f64]) -> [f64; 3] {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return [f64::NAN; 3];
    }
    let median =
        if n.is_multiple_of(2) { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 } else { sorted[n / 2] };
    [sorted[0], median, sorted[n - 1]]
}

/// Prints one throughput table per payload size, each with the per-round ratios of
/// `shmlane-pubsub` and `shmlane-pubsub-batch` to `shmlane-spsc`.
pub fn print_throughput(rows: &[Throughput], machine: &Machine) {
    println!(
        "shmlane bench --mode throughput on {}, CPUs {} (sender) and {} (receiver)",
        machine.cpu, machine.cores[0], machine.cores[1]
    );
    let rounds = rows.first().map_or(0, |row| row.rates.len());
    println!(
        "one-way streams, every sequence number checked, nothing dropped; M msgs/s over {rounds} \
         rounds (min, median, max), GB/s at the median"
    );
    let mut payloads: Vec<u64> = rows.iter().map(|row| row.payload).collect();
    payloads.dedup();
    for payload in payloads {
        let rows: Vec<&Throughput> = rows.iter().filter(|row| row.payload == payload).collect();
        let messages = rows.first().map_or(0, |row| row.messages);
        println!("\npayload {} ({messages} messages per transport and round)", size(payload));
        println!(
            "{:<22}{:>10}{:>10}{:>10}{:>10}{:>16}",
            "transport", "min", "median", "max", "GB/s", "median/spsc"
        );
        let spsc = rows.iter().find(|row| row.transport == Transport::ShmlaneSpsc);
        for row in &rows {
            let [min, median, max] = row.spread();
            let ratio = spsc.map_or("-".to_owned(), |spsc| {
                figure(median / spsc.spread()[1].max(f64::MIN_POSITIVE))
            });
            println!(
                "{:<22}{:>10}{:>10}{:>10}{:>10}{ratio:>16}",
                row.transport.name(),
                figure(min / 1e6),
                figure(median / 1e6),
                figure(max / 1e6),
                figure(row.gb_per_s(median))
            );
        }
        if payload > super::pubsub::BY_COPY_MAX as u64
            && rows.iter().any(|row| row.transport == Transport::ShmlanePubsubBatch)
        {
            println!(
                "({} copies each whole sample in with `send_copies`; {} loans its samples and \
                 writes only their sequence numbers)",
                Transport::ShmlanePubsubBatch,
                Transport::ShmlanePubsub
            );
        }
        for transport in [Transport::ShmlanePubsub, Transport::ShmlanePubsubBatch] {
            let pubsub = rows.iter().find(|row| row.transport == transport);
            let (Some(pubsub), Some(spsc)) = (pubsub, spsc) else { continue };
            let ratios: Vec<f64> =
                pubsub.rates.iter().zip(&spsc.rates).map(|(ours, queue)| ours / queue).collect();
            let [min, median, max] = spread(&ratios).map(figure);
            let goal = if payload == 8 { " (goal >= 0.50)" } else { "" };
            println!(
                "{transport} / shmlane-spsc per round: min {min}, median {median}, max \
                 {max}{goal}"
            );
        }
    }
    if machine.cores[0] == machine.cores[1] {
        println!("\n(both processes ran on one CPU: these numbers measure context switches)");
    }
}

/// `x` with three significant digits (at least two decimals below 100), so that a small
/// positive rate or ratio (64 KiB messages on a loaded machine) never prints as zero.
fn figure(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 || x >= 100.0 {
        return format!("{x:.0}");
    }
    let decimals = (2 - x.log10().floor() as i32).clamp(2, 9) as usize;
    format!("{x:.decimals$}")
}

/// The throughput mode's `--json` file.
#[derive(Serialize)]
struct ThroughputJson<'m> {
    machine: &'m Machine,
    results: Vec<ThroughputRow>,
}

/// One transport and payload size in the throughput mode's `--json` file.
#[derive(Serialize)]
struct ThroughputRow {
    transport: &'static str,
    payload_bytes: u64,
    messages: u64,
    msgs_per_s: Vec<f64>,
    min_msgs_per_s: f64,
    median_msgs_per_s: f64,
    max_msgs_per_s: f64,
    median_gb_per_s: f64,
}

/// Writes the throughput mode's `{"machine": …, "results": […]}` to `file`.
pub fn write_throughput_json(
    file: File,
    machine: &Machine,
    rows: &[Throughput],
) -> Result<(), String> {
    let results = rows
        .iter()
        .map(|row| {
            let [min, median, max] = row.spread();
            ThroughputRow {
                transport: row.transport.name(),
                payload_bytes: row.payload,
                messages: row.messages,
                msgs_per_s: row.rates.clone(),
                min_msgs_per_s: min,
                median_msgs_per_s: median,
                max_msgs_per_s: max,
                median_gb_per_s: row.gb_per_s(median),
            }
        })
        .collect();
    write_pretty(file, &ThroughputJson { machine, results })
}

/// Writes `value` as pretty JSON and a newline to `file`.
fn write_pretty(file: File, value: &impl Serialize) -> Result<(), String> {
    let mut out = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| e.to_string())?;
    writeln!(out).and_then(|()| out.flush()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(8), "8 B");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(1000), "1000 B");
    }

    #[test]
    fn spreads_take_the_middle_of_the_rounds() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), [1.0, 2.0, 3.0]);
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), [1.0, 2.5, 4.0]);
        assert!(spread(&[]).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn figures_keep_three_significant_digits_so_small_rates_never_print_as_zero() {
        assert_eq!(figure(0.004_321), "0.00432");
        assert_eq!(figure(0.733), "0.733");
        assert_eq!(figure(5.5), "5.50");
        assert_eq!(figure(55.27), "55.27");
        assert_eq!(figure(105.4), "105");
    }
}
