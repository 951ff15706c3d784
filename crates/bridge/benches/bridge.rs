//! The bridge against zenoh itself, in one run, over the same loopback TCP link.
//!
//! - **zenoh**: a zenoh publisher process and a zenoh subscriber process (peers joined over
//!   TCP on 127.0.0.1), the baseline.
//! - **bridge**: a shmlane publisher → `shmlane-bridge` (host A) → zenoh over the same kind of
//!   link → `shmlane-bridge` (host B) → a shmlane subscriber: four processes.
//!
//! "Host" A (the publisher, and bridge A) runs pinned to CPU 0 and host B (the subscriber, and
//! bridge B) to CPU 1, for both paths: each host has one core, as two machines would. One-way
//! latency (8 B and 4 KiB, one message every 500 µs, the send's `CLOCK_MONOTONIC` time in the
//! payload, read by the receiver on the same host clock) goes into HdrHistogram; throughput
//! (8 B and 64 KiB, sent as fast as the Block policy and zenoh's blocking congestion control
//! let) is messages per second from the tenth of the messages on. Rounds alternate zenoh and
//! bridge for each workload, the bridge first in every other round. `cargo bench -p
//! shmlane-bridge --bench bridge -- --test` is a smoke run (one short round).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlane::notify::Blocking;
use shmlane::{Node, Overflow, TopicConfig, TypeSpec};
use zenoh::Wait;
use zenoh::qos::CongestionControl;

/// The environment variable that makes this binary a child role.
const ROLE_ENV: &str = "SHMLANE_BRIDGE_BENCH_ROLE";
/// Prefix of a child's report lines.
const REPORT: &str = "@@bench ";
/// Gap between latency messages.
const LATENCY_INTERVAL: Duration = Duration::from_micros(500);
/// How long any child or wait may take.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Latency,
    Throughput,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Latency => "lat",
            Workload::Throughput => "tput",
        }
    }

    fn parse(s: &str) -> Workload {
        if s == "lat" { Workload::Latency } else { Workload::Throughput }
    }
}

/// Sizes, counts and rounds of a run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    latency_messages: u64,
    throughput_small: u64,
    throughput_large: u64,
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        child(&role, &args);
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let plan = if smoke {
        Plan { rounds: 1, latency_messages: 300, throughput_small: 20_000, throughput_large: 300 }
    } else {
        Plan {
            rounds: 3,
            latency_messages: 6_000,
            throughput_small: 300_000,
            throughput_large: 4_000,
        }
    };
    // `--only tput8` (or lat8, lat4096, tput65536): one workload, for profiling.
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    run(plan, smoke, only.as_deref());
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// What one run of one workload measured.
#[derive(Debug, Default)]
struct Measured {
    latencies_ns: Vec<u64>,
    messages_per_s: Vec<f64>,
}

fn run(plan: Plan, smoke: bool, only: Option<&str>) {
    let started = Instant::now();
    let pid = std::process::id();
    let (ns_a, ns_b) = (format!("bbench{pid}a"), format!("bbench{pid}b"));
    let cpus = Cpus::find();
    if cpus.is_none() {
        println!("fewer than two CPUs: the processes run unpinned");
    }
    let workloads = [
        (Workload::Latency, 8usize),
        (Workload::Latency, 4096),
        (Workload::Throughput, 8),
        (Workload::Throughput, 65536),
    ];
    let mut results: Vec<[Measured; 2]> = workloads.iter().map(|_| Default::default()).collect();
    for round in 0..plan.rounds {
        let bridges = Bridges::start(&ns_a, &ns_b, round, cpus);
        for (w, &(workload, size)) in workloads.iter().enumerate() {
            if only.is_some_and(|only| only != format!("{}{size}", workload.name())) {
                continue;
            }
            let count = match (workload, size) {
                (Workload::Latency, _) => plan.latency_messages,
                (Workload::Throughput, s) if s <= 8 => plan.throughput_small,
                _ => plan.throughput_large,
            };
            let spec = Job { workload, size, count };
            let service = format!("bench{round}-{}-{size}", workload.name());
            // Every other round the bridged path goes first: neither profits from the order.
            let (zenoh, bridged) = if round % 2 == 0 {
                let zenoh = spec.run_zenoh(cpus);
                (zenoh, spec.run_bridged(&ns_a, &ns_b, &service, cpus))
            } else {
                let bridged = spec.run_bridged(&ns_a, &ns_b, &service, cpus);
                (spec.run_zenoh(cpus), bridged)
            };
            for (slot, measured) in [zenoh, bridged].into_iter().enumerate() {
                let into = &mut results[w][slot];
                into.latencies_ns.extend(measured.latencies_ns);
                into.messages_per_s.extend(measured.messages_per_s);
            }
        }
        bridges.stop();
    }
    print_results(&workloads, &results, plan, smoke);
    for namespace in [&ns_a, &ns_b] {
        let left = shm_files(namespace);
        assert!(left.is_empty(), "left in /dev/shm: {left:?}");
    }
    println!("(run took {:.1} s)", started.elapsed().as_secs_f64());
}

fn print_results(
    workloads: &[(Workload, usize)],
    results: &[[Measured; 2]],
    plan: Plan,
    smoke: bool,
) {
    let paths = ["zenoh pub/sub", "shmlane→bridge→zenoh→bridge→shmlane"];
    println!(
        "\nbridge bench{}: {} round(s), host A on CPU 0, host B on CPU 1, TCP over 127.0.0.1",
        if smoke { " (smoke run: --test)" } else { "" },
        plan.rounds
    );
    for (w, &(workload, size)) in workloads.iter().enumerate() {
        if results[w].iter().all(|m| m.latencies_ns.is_empty() && m.messages_per_s.is_empty()) {
            continue;
        }
        match workload {
            Workload::Latency => {
                println!(
                    "\none-way latency, {size} B, µs ({} messages per round, 1 every 500 µs):",
                    plan.latency_messages
                );
                println!(
                    "  {:<38} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    "path", "p50", "p90", "p99", "p99.9", "max"
                );
                let mut p50 = [0.0; 2];
                for (slot, path) in paths.iter().enumerate() {
                    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                        .expect("histogram bounds");
                    for &ns in &results[w][slot].latencies_ns {
                        histogram.saturating_record(ns.max(1));
                    }
                    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
                    p50[slot] = us(0.5);
                    println!(
                        "  {path:<38} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                        us(0.5),
                        us(0.9),
                        us(0.99),
                        us(0.999),
                        histogram.max() as f64 / 1000.0
                    );
                }
                if p50[0] > 0.0 {
                    println!(
                        "  bridge p50 / zenoh p50: {:.2} (goal: at most 1.20)",
                        p50[1] / p50[0]
                    );
                }
            }
            Workload::Throughput => {
                println!(
                    "\nthroughput, {size} B, messages/s (median of rounds; each round's in brackets):"
                );
                let mut medians = [0.0; 2];
                for (slot, path) in paths.iter().enumerate() {
                    let mut rates = results[w][slot].messages_per_s.clone();
                    rates.sort_by(f64::total_cmp);
                    medians[slot] = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
                    let each: Vec<String> =
                        results[w][slot].messages_per_s.iter().map(|r| format!("{r:.0}")).collect();
                    println!("  {path:<38} {:>12.0}  [{}]", medians[slot], each.join(", "));
                }
                if medians[0] > 0.0 {
                    println!(
                        "  bridge / zenoh: {:.2} (goal: at least 0.80)",
                        medians[1] / medians[0]
                    );
                }
            }
        }
    }
}

/// One workload at one size.
#[derive(Debug, Clone, Copy)]
struct Job {
    workload: Workload,
    size: usize,
    count: u64,
}

impl Job {
    fn args(&self) -> Vec<String> {
        vec![self.workload.name().into(), self.size.to_string(), self.count.to_string()]
    }

    /// The baseline: a zenoh subscriber process (host B) listening, a zenoh publisher process
    /// (host A) connecting.
    fn run_zenoh(&self, cpus: Option<Cpus>) -> Measured {
        let port = free_port();
        let key =
            format!("bench/{}/zenoh/{}-{}", std::process::id(), self.workload.name(), self.size);
        let mut args = self.args();
        args.extend([key, port.to_string()]);
        let mut sub = ChildRole::spawn("zsub", &args, cpus.map(|c| (c, 1)));
        sub.expect("ready");
        let mut publisher = ChildRole::spawn("zpub", &args, cpus.map(|c| (c, 0)));
        let measured = sub.measured(self.workload);
        publisher.finish();
        sub.finish();
        measured
    }

    /// The bridged path: a shmlane subscriber on host B (it creates the topic there), a
    /// shmlane publisher on host A (it waits for bridge A's subscriber).
    fn run_bridged(&self, ns_a: &str, ns_b: &str, service: &str, cpus: Option<Cpus>) -> Measured {
        let mut args = self.args();
        args.extend([ns_b.to_owned(), service.to_owned()]);
        let mut sub = ChildRole::spawn("ssub", &args, cpus.map(|c| (c, 1)));
        sub.expect("ready");
        let mut args = self.args();
        args.extend([ns_a.to_owned(), service.to_owned()]);
        let mut publisher = ChildRole::spawn("spub", &args, cpus.map(|c| (c, 0)));
        let measured = sub.measured(self.workload);
        publisher.finish();
        sub.finish();
        measured
    }
}

/// The two bridge processes of a round.
struct Bridges {
    a: Child,
    b: Child,
}

impl Bridges {
    fn start(ns_a: &str, ns_b: &str, round: usize, cpus: Option<Cpus>) -> Bridges {
        let port = free_port();
        let key = format!("bench{}r{round}/{{service}}", std::process::id());
        let bridge = |namespace: &str, rule: &str, endpoint: &str, host: usize| {
            let listen = format!("tcp/127.0.0.1:{port}");
            if let Some(cpus) = cpus {
                cpus.pin(host);
            }
            let child = Command::new(env!("CARGO_BIN_EXE_shmlane-bridge"))
                .args(["--namespace", namespace, "--key", &key, rule, "bench*", endpoint, &listen])
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("start shmlane-bridge");
            if let Some(cpus) = cpus {
                cpus.unpin();
            }
            child
        };
        let a = bridge(ns_a, "--out", "--listen", 0);
        let b = bridge(ns_b, "--in", "--connect", 1);
        Bridges { a, b }
    }

    fn stop(mut self) {
        for child in [&mut self.a, &mut self.b] {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        for child in [&mut self.a, &mut self.b] {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        assert!(status.success(), "a bridge exited with {status}");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        panic!("a bridge did not stop within 20 s of SIGTERM");
                    }
                }
            }
        }
    }
}

/// A child running one role of this binary, its report lines collected.
struct ChildRole {
    role: String,
    child: Child,
    lines: Receiver<String>,
}

impl ChildRole {
    fn spawn(role: &str, args: &[String], cpu: Option<(Cpus, usize)>) -> ChildRole {
        if let Some((cpus, host)) = cpu {
            cpus.pin(host);
        }
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .args(args)
            .env(ROLE_ENV, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a bench child");
        if let Some((cpus, _)) = cpu {
            cpus.unpin();
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(report) = line.strip_prefix(REPORT)
                    && sender.send(report.to_owned()).is_err()
                {
                    break;
                }
            }
        });
        ChildRole { role: role.to_owned(), child, lines }
    }

    /// Waits for the report `key` and returns its value.
    fn expect(&mut self, key: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(value) = line.strip_prefix(key).and_then(|v| v.strip_prefix(' ')) {
                        return value.to_owned();
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("bench child {} sent no `{key}` (exited or hung)", self.role);
                }
            }
        }
    }

    fn measured(&mut self, workload: Workload) -> Measured {
        match workload {
            Workload::Latency => {
                let line = self.expect("latencies");
                let latencies_ns = line.split(',').filter_map(|v| v.parse().ok()).collect();
                Measured { latencies_ns, messages_per_s: Vec::new() }
            }
            Workload::Throughput => {
                let rate = self.expect("rate").parse().expect("a rate");
                Measured { latencies_ns: Vec::new(), messages_per_s: vec![rate] }
            }
        }
    }

    fn finish(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "bench child {} failed: {status}", self.role);
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = self.child.kill();
                    panic!("bench child {} did not finish", self.role);
                }
            }
        }
    }
}

impl Drop for ChildRole {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The two CPUs "hosts" A and B run on (the first two this process may use), and the mask to
/// restore after pinning a child.
#[derive(Clone, Copy)]
struct Cpus {
    host: [usize; 2],
    all: rustix::thread::CpuSet,
}

impl Cpus {
    fn find() -> Option<Cpus> {
        let all = rustix::thread::sched_getaffinity(None).ok()?;
        let mut usable = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| all.is_set(c));
        Some(Cpus { host: [usable.next()?, usable.next()?], all })
    }

    /// Pins this thread (and so the children it spawns next) to host `h`'s CPU.
    fn pin(&self, h: usize) {
        let mut set = rustix::thread::CpuSet::new();
        set.set(self.host[h]);
        rustix::thread::sched_setaffinity(None, &set).expect("pin to a CPU");
    }

    /// Lets this thread run anywhere it could before.
    fn unpin(&self) {
        rustix::thread::sched_setaffinity(None, &self.all).expect("unpin");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("an ephemeral port")
        .local_addr()
        .expect("its address")
        .port()
}

fn shm_files(namespace: &str) -> Vec<String> {
    let prefix = format!("shmlane.{namespace}.");
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The children.

fn report(key: &str, value: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{REPORT}{key} {value}");
    let _ = stdout.flush();
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the host.
fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn child(role: &str, args: &[String]) {
    let workload = Workload::parse(&args[0]);
    let size: usize = args[1].parse().expect("a size");
    let count: u64 = args[2].parse().expect("a count");
    match role {
        "zpub" | "zsub" => {
            let (key, port) = (&args[3], &args[4]);
            let endpoint = format!("tcp/127.0.0.1:{port}");
            let (listen, connect) =
                if role == "zsub" { (vec![endpoint], vec![]) } else { (vec![], vec![endpoint]) };
            let config =
                shmlane_bridge::zenoh_config(None, &listen, &connect).expect("a zenoh config");
            let session = zenoh::open(config).wait().expect("a zenoh session");
            if role == "zsub" {
                let receiver = Arc::new(Receiving::new(workload, count));
                let sink = Arc::clone(&receiver);
                let _subscriber = session
                    .declare_subscriber(key.as_str())
                    .callback(move |sample| sink.on_message(&sample.payload().to_bytes()))
                    .wait()
                    .expect("a subscriber");
                report("ready", 1);
                receiver.finish();
            } else {
                let publisher = session
                    .declare_publisher(key.as_str())
                    .congestion_control(CongestionControl::Block)
                    .wait()
                    .expect("a publisher");
                let deadline = Instant::now() + TIMEOUT;
                while !publisher.matching_status().wait().is_ok_and(|m| m.matching()) {
                    assert!(Instant::now() < deadline, "the subscriber never matched");
                    std::thread::sleep(Duration::from_millis(5));
                }
                send_all(workload, size, count, |payload| {
                    publisher.put(payload.to_vec()).wait().expect("put");
                });
            }
            let _ = session.close().wait();
        }
        "spub" | "ssub" => {
            let (namespace, service) = (&args[3], &args[4]);
            let node =
                Node::builder("bench").namespace(namespace.as_str()).create().expect("a node");
            let spec = TypeSpec::new(format!("bench.Msg{size}"), size as u64, 8, 0);
            let config = TopicConfig {
                overflow: Overflow::Block,
                max_subscribers: 2,
                ..TopicConfig::default()
            };
            let topic = node
                .raw_topic(service)
                .type_spec(spec)
                .config(config)
                .open_or_create()
                .expect("the topic");
            if role == "ssub" {
                let subscriber = topic.subscriber().expect("a subscriber");
                report("ready", 1);
                let receiver = Receiving::new(workload, count);
                let mut strategy = Blocking::new();
                let deadline = Instant::now() + TIMEOUT;
                while !receiver.done() {
                    assert!(Instant::now() < deadline, "the subscriber timed out");
                    match subscriber.receive_with(&mut strategy, Some(Duration::from_millis(100))) {
                        Ok(sample) => {
                            receiver.on_message(&sample);
                            drop(sample);
                            // What else is queued, before sleeping again.
                            let drained = subscriber.drain(usize::MAX, |s| receiver.on_message(s));
                            drained.expect("drain");
                        }
                        Err(shmlane::ReceiveError::TimedOut(_)) => {}
                        Err(e) => panic!("receive: {e}"),
                    }
                }
                receiver.finish();
            } else {
                let publisher = topic.publisher().expect("a publisher");
                publisher.set_block_timeout(Duration::from_secs(30));
                let deadline = Instant::now() + TIMEOUT;
                while publisher.subscribers() == 0 {
                    assert!(Instant::now() < deadline, "bridge A never subscribed");
                    std::thread::sleep(Duration::from_millis(5));
                }
                send_all(workload, size, count, |payload| {
                    publisher.send_copy(payload).expect("send");
                });
                // Stay until bridge A has taken every sample (its blocks are ours).
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Sends `count` messages of `size` bytes, each starting with its send time (latency: one
/// every `LATENCY_INTERVAL`; throughput: back to back).
fn send_all(workload: Workload, size: usize, count: u64, mut send: impl FnMut(&[u8])) {
    let mut payload = vec![0u8; size];
    let mut next = Instant::now();
    for _ in 0..count {
        if workload == Workload::Latency {
            while Instant::now() < next {
                std::thread::sleep(next - Instant::now());
            }
            next += LATENCY_INTERVAL;
        }
        payload[..8].copy_from_slice(&now_ns().to_le_bytes());
        send(&payload);
    }
}

/// A receiver's measurements: latencies, or the times of the messages that bound the
/// throughput window (from the tenth of them to the last).
struct Receiving {
    workload: Workload,
    count: u64,
    received: AtomicU64,
    latencies: Mutex<Vec<u64>>,
    window: Mutex<(Option<u64>, u64)>,
}

impl Receiving {
    fn new(workload: Workload, count: u64) -> Receiving {
        Receiving {
            workload,
            count,
            received: AtomicU64::new(0),
            latencies: Mutex::new(Vec::with_capacity(count as usize)),
            window: Mutex::new((None, 0)),
        }
    }

    fn on_message(&self, payload: &[u8]) {
        let now = now_ns();
        let Some(sent) =
            payload.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        else {
            return;
        };
        // Relaxed: the count is read by the same thread, or polled as a hint.
        let n = self.received.fetch_add(1, Ordering::Relaxed);
        match self.workload {
            Workload::Latency => {
                // The first tenth warms the path up.
                if n >= self.count / 10 {
                    self.latencies.lock().expect("not poisoned").push(now.saturating_sub(sent));
                }
            }
            Workload::Throughput => {
                let mut window = self.window.lock().expect("not poisoned");
                if n == self.count / 10 {
                    window.0 = Some(now);
                }
                window.1 = now;
            }
        }
    }

    fn done(&self) -> bool {
        self.received.load(Ordering::Relaxed) >= self.count
    }

    /// Waits for every message, then reports.
    fn finish(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.done() {
            assert!(
                Instant::now() < deadline,
                "only {} of {} messages came",
                self.received.load(Ordering::Relaxed),
                self.count
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        match self.workload {
            Workload::Latency => {
                let latencies = self.latencies.lock().expect("not poisoned");
                let line: Vec<String> = latencies.iter().map(u64::to_string).collect();
                report("latencies", line.join(","));
            }
            Workload::Throughput => {
                let (first, last) = *self.window.lock().expect("not poisoned");
                let messages = self.count - self.count / 10 - 1;
                let seconds = last.saturating_sub(first.unwrap_or(last)) as f64 / 1e9;
                report("rate", if seconds > 0.0 { messages as f64 / seconds } else { 0.0 });
            }
        }
    }
}
