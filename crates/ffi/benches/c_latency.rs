//! C-to-Rust against Rust-to-Rust pub/sub latency, in alternating rounds of one run: busy
//! ping-pong of a `u64` (inline in the queue slot) between an initiator on one pinned core and
//! a Rust echo process on the other. The initiators take turns: this bench (the facade's typed
//! API: loan, write in place, send; busy `receive`) and a C program
//! (`benches/c/pingpong.c`, compiled here with the system C compiler against
//! `libshmlane_ffi.so`: loan, write, send; busy `shmlane_subscriber_receive`, release). Each has
//! its own pair of topics, both of which the echo polls.
//!
//! Prints one-way latency percentiles (RTT / 2) and the ratio of C to Rust (the issue's goal:
//! within 1.1 at p50). `cargo bench -p shmlane-ffi --bench c_latency [-- --iters N]`

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlane::{Node, Topic};

/// Round trips per initiator before the other takes over.
const ROUND: usize = 1_000;
/// Rounds discarded before recording.
const WARMUP_ROUNDS: usize = 10;
const HANG: Duration = Duration::from_secs(10);
/// Sent to the echo to make it exit.
const STOP: u64 = u64::MAX;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--echo") {
        return echo(&args[2], args[3].parse().expect("cpu"));
    }
    let smoke = args.iter().any(|a| a == "--test");
    let mut iters: usize = if smoke { 2 * ROUND } else { 200_000 };
    if let Some(at) = args.iter().position(|a| a == "--iters") {
        iters = args.get(at + 1).and_then(|n| n.parse().ok()).expect("--iters needs a number");
    }
    let warmup = if smoke { 1 } else { WARMUP_ROUNDS };
    let rounds = warmup + iters.div_ceil(ROUND);
    let namespace = format!("bench_ffi_{}", std::process::id());
    let outcome = std::panic::catch_unwind(|| run(&namespace, rounds, warmup));
    let leftovers: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    e.file_name().to_string_lossy().starts_with(&format!("shmlane.{namespace}."))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    for path in &leftovers {
        let _ = std::fs::remove_file(path);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(leftovers.is_empty(), "segments left in /dev/shm: {leftovers:?}");
}

/// The first two CPUs of this process's mask.
fn two_cpus() -> (usize, usize) {
    let allowed = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    let ids: Vec<usize> =
        (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).take(2).collect();
    (ids[0], *ids.get(1).unwrap_or(&ids[0]))
}

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

fn topic(node: &Node, name: &str) -> Topic<u64> {
    let builder = node.topic::<u64>(name).max_publishers(1).max_subscribers(1);
    builder.subscriber_capacity(4).open_or_create().expect("topic")
}

fn run(namespace: &str, rounds: usize, warmup: usize) {
    let (core_a, core_b) = two_cpus();
    let node = Node::builder("initiator").namespace(namespace).create().expect("node");
    let (ping_r, pong_r) = (topic(&node, "ping-r"), topic(&node, "pong-r"));
    let (_ping_c, _pong_c) = (topic(&node, "ping-c"), topic(&node, "pong-c"));
    let (_ping_rr, _pong_rr) = (topic(&node, "ping-rr"), topic(&node, "pong-rr"));
    let publisher = ping_r.publisher().expect("publisher");
    let subscriber = pong_r.subscriber().expect("subscriber");
    // The run-time typed API the C ABI wraps, from Rust: what the ABI itself adds is the rest.
    let raw_publisher = node.raw_topic("ping-rr").open().expect("raw").publisher().expect("pub");
    let raw_subscriber = node.raw_topic("pong-rr").open().expect("raw").subscriber().expect("sub");
    let program = compile_initiator();

    // Pinned before this process pins itself: a pinned parent's children inherit its CPU.
    let exe = std::env::current_exe().expect("the bench's path");
    let mut echo = Command::new(exe)
        .args(["--echo", namespace, &core_b.to_string()])
        .spawn()
        .expect("start the echo process");
    let mut c = Command::new(&program)
        .args([namespace, &core_a.to_string(), &ROUND.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the C initiator");
    pin(core_a);
    let (mut to_c, mut from_c) = (c.stdin.take().expect("piped"), c.stdout.take().expect("piped"));
    let mut ready = [0u8];
    from_c.read_exact(&mut ready).expect("the C initiator started");
    let deadline = Instant::now() + HANG;
    while publisher.subscribers() == 0 {
        assert!(Instant::now() < deadline, "the echo did not start");
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut rust = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut cee = rust.clone();
    let mut raw = rust.clone();
    let mut seq = 0u64;
    let mut bytes = vec![0u8; ROUND * 8];
    for round in 0..rounds {
        for _ in 0..ROUND {
            seq += 1;
            let start = Instant::now();
            let mut loan = publisher.loan().expect("loan");
            *loan = seq;
            publisher.send(loan).expect("send");
            let answer = loop {
                if let Some(sample) = subscriber.receive().expect("receive") {
                    break *sample;
                }
                assert!(start.elapsed() < HANG, "the echo hung");
            };
            let rtt = start.elapsed().as_nanos() as u64;
            assert_eq!(answer, seq);
            if round >= warmup {
                rust.record(rtt).expect("in range");
            }
        }
        for _ in 0..ROUND {
            seq += 1;
            let start = Instant::now();
            let mut loan = raw_publisher.loan(1).expect("loan");
            loan.copy_from_slice(&seq.to_ne_bytes());
            raw_publisher.send(loan).expect("send");
            let answer = loop {
                if let Some(sample) = raw_subscriber.receive().expect("receive") {
                    break u64::from_ne_bytes(sample[..8].try_into().expect("8 bytes"));
                }
                assert!(start.elapsed() < HANG, "the echo hung");
            };
            let rtt = start.elapsed().as_nanos() as u64;
            assert_eq!(answer, seq);
            if round >= warmup {
                raw.record(rtt).expect("in range");
            }
        }
        to_c.write_all(b"g").and_then(|()| to_c.flush()).expect("signal the C initiator");
        from_c.read_exact(&mut bytes).expect("the C round's times");
        if round >= warmup {
            for rtt in bytes.chunks_exact(8) {
                let rtt = u64::from_ne_bytes(rtt.try_into().expect("8 bytes"));
                cee.record(rtt.max(1)).expect("in range");
            }
        }
    }
    drop(to_c);
    assert!(c.wait().expect("the C initiator").success(), "the C initiator failed");
    publisher.send_copy(STOP).expect("stop the echo");
    assert!(echo.wait().expect("the echo").success(), "the echo failed");

    println!(
        "\npub/sub ping-pong of a u64, initiator on core {core_a}, Rust echo on core {core_b}: \
         {} round trips per initiator in alternating rounds of {ROUND}; one-way ns (RTT / 2)",
        rust.len()
    );
    println!(
        "{:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "initiator", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, h) in [("Rust", &rust), ("Rust raw", &raw), ("C", &cee)] {
        let q = |q| h.value_at_quantile(q) / 2;
        println!(
            "{name:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max() / 2
        );
    }
    let ratio = |q| cee.value_at_quantile(q) as f64 / rust.value_at_quantile(q).max(1) as f64;
    println!("C / Rust: p50 {:.3}, p99 {:.3}", ratio(0.5), ratio(0.99));
    let raw_ratio = raw.value_at_quantile(0.5) as f64 / rust.value_at_quantile(0.5).max(1) as f64;
    println!("Rust raw (the API the C ABI wraps) / Rust: p50 {raw_ratio:.3}");
}

/// Compiles `benches/c/pingpong.c` against the header and the cdylib cargo built for this
/// bench (in the `deps` directory next to it).
fn compile_initiator() -> PathBuf {
    let deps = std::env::current_exe().expect("path").parent().expect("dir").to_owned();
    assert!(
        deps.join("libshmlane_ffi.so").exists(),
        "libshmlane_ffi.so missing in {}",
        deps.display()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = deps.join("shmlane-c-pingpong");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args(["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root.join("../../include"))
        .arg(root.join("benches/c/pingpong.c"))
        .arg("-L")
        .arg(&deps)
        .arg("-lshmlane_ffi")
        .arg(format!("-Wl,-rpath,{}", deps.display()))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "{compiler} failed on pingpong.c");
    out
}

/// The echo: answers each ping of either initiator on its pong topic, busy polling both.
fn echo(namespace: &str, cpu: usize) {
    pin(cpu);
    let node = Node::builder("echo").namespace(namespace).create().expect("node");
    let pairs: Vec<_> = ["r", "rr", "c"]
        .iter()
        .map(|side| {
            let ping = topic(&node, &format!("ping-{side}")).subscriber().expect("ping");
            let pong = topic(&node, &format!("pong-{side}")).publisher().expect("pong");
            (ping, pong)
        })
        .collect();
    loop {
        for (ping, pong) in &pairs {
            if let Some(sample) = ping.receive().expect("receive") {
                let value = *sample;
                drop(sample);
                if value == STOP {
                    return;
                }
                pong.send_copy(value).expect("send");
            }
        }
    }
}
