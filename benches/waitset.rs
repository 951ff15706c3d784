//! WaitSet wake-up latency against one blocking receive, in alternating rounds of one run:
//! cross-process ping-pong on two pinned cores, both sides blocking (each message wakes a
//! sleeping peer). The echo process always answers through `receive_with(Blocking)`; the
//! initiator waits for the answer in one of four ways:
//!
//! - `receive_with`: `Subscriber::receive_with(&mut Blocking)` on the answer topic;
//! - `waitset-1`, `waitset-8`, `waitset-64`: a `WaitSet` waited on with `Blocking`, holding the
//!   answer topic's subscriber and 0, 7 or 63 subscribers of topics nobody publishes to (one
//!   `futex_waitv` on all of them), then `receive`;
//! - `receive_async`: `Subscriber::receive_async` awaited on a minimal executor (the thread
//!   parks; the reactor thread sleeps on the topic and unparks it).
//!
//! Then, in this process alone, what a busy-polling WaitSet pays per attachment: a `wait` with
//! `BusySpin` on 1, 8 and 64 subscribers, of which only the last has a sample queued.
//!
//! `cargo bench -p shmlane-benches --bench waitset [-- --iters N]`

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlane::notify::{Blocking, BusySpin};
use shmlane::{Node, Overflow, Subscriber, Topic, WaitSet};
use shmlane_benches::peer::{self, QUANTILES};
use shmlane_benches::pingpong::remove_entries;
use shmlane_benches::{pin, two_cpus};

/// Round trips per way of waiting before switching to the next.
const ROUND: u64 = 200;
/// Round trips per way discarded before recording.
const WARMUP: u64 = 1_000;
/// Longest any single wait may take before the run is declared hung.
const HANG: Duration = Duration::from_secs(10);
/// Topics nobody publishes to, attached beside the answer topic (63 for `waitset-64`).
const IDLE: usize = 63;

const WAYS: [&str; 5] = ["receive_with", "waitset-1", "waitset-8", "waitset-64", "receive_async"];

fn topic(node: &Node, name: &str) -> Topic<u64> {
    let builder = node.topic::<u64>(name).max_publishers(1).max_subscribers(1);
    builder.subscriber_capacity(4).overflow(Overflow::Block).open_or_create().expect("topic")
}

fn main() {
    if let Some(args) = peer::child_args() {
        return child(&args);
    }
    let mut iters: u64 = if peer::smoke_test() { ROUND } else { 20_000 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--iters" {
            iters = args.next().and_then(|n| n.parse().ok()).expect("--iters needs a number");
        }
    }
    let namespace = format!("bench_waitset_{}", std::process::id());
    let outcome = std::panic::catch_unwind(|| run(&namespace, iters));
    let left = remove_entries(Path::new("/dev/shm"), |file| {
        file.starts_with(&format!("shmlane.{namespace}."))
    });
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(left.is_empty(), "segments left in /dev/shm after the run: {left:?}");
}

fn run(namespace: &str, iters: u64) {
    let rounds = (WARMUP + iters).div_ceil(ROUND);
    let (core_a, core_b) = two_cpus();
    let node = Node::builder("initiator").namespace(namespace).create().expect("node");
    let (ping, pong) = (topic(&node, "ping"), topic(&node, "pong"));
    let ping_pub = ping.publisher().expect("ping publisher");
    let pong_sub = pong.subscriber().expect("pong subscriber");
    let idle_topics: Vec<_> = (0..IDLE).map(|i| topic(&node, &format!("idle{i}"))).collect();
    let idle: Vec<Subscriber<u64>> =
        idle_topics.iter().map(|t| t.subscriber().expect("idle subscriber")).collect();
    let sets: Vec<WaitSet<'_>> = [0, 7, IDLE].iter().map(|_| WaitSet::new()).collect();
    let mut attachments = Vec::new();
    for (set, idle_count) in sets.iter().zip([0, 7, IDLE]) {
        attachments.push(set.attach(&pong_sub));
        attachments.extend(idle[..idle_count].iter().map(|s| set.attach(s)));
    }

    // Pinned before the parent pins itself: a pinned parent's children inherit its one CPU.
    let total = rounds * ROUND * WAYS.len() as u64;
    let mut child = peer::spawn(
        &[namespace, &core_b.to_string(), &total.to_string()],
        Stdio::null(),
        Stdio::inherit(),
    );
    pin(core_a);
    let deadline = Instant::now() + HANG;
    while ping_pub.subscribers() == 0 {
        assert!(Instant::now() < deadline, "the peer did not start");
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut histograms: Vec<Histogram<u64>> = WAYS.iter().map(|_| peer::histogram()).collect();
    let mut blocking = Blocking::new();
    let mut seq = 0;
    for round in 0..rounds {
        for (way, histogram) in histograms.iter_mut().enumerate() {
            for _ in 0..ROUND {
                seq += 1;
                let start = Instant::now();
                ping_pub.send_copy(seq).expect("ping");
                let answer = match way {
                    0 => pong_sub.receive_with(&mut blocking, Some(HANG)).expect("hung"),
                    4 => block_on(pong_sub.receive_async()).expect("receive"),
                    _ => {
                        let ready = sets[way - 1].wait(&mut blocking, Some(HANG)).expect("hung");
                        debug_assert_eq!(ready.len(), 1);
                        pong_sub.receive().expect("receive").expect("ready")
                    }
                };
                let rtt = start.elapsed().as_nanos() as u64;
                assert_eq!(*answer, seq);
                if round * ROUND >= WARMUP {
                    histogram.record(rtt).expect("in range");
                }
            }
        }
    }
    let status = child.wait().expect("wait for the peer");
    assert!(status.success(), "the peer failed: {status}");

    println!(
        "\nWaitSet wake-up ping-pong, both sides blocking, processes on cores {core_a} and \
         {core_b}: {} round trips per way in alternating rounds of {ROUND}; one-way ns (RTT / 2)",
        histograms[0].len()
    );
    print!("{:>13}", "wait");
    for (name, _) in QUANTILES {
        print!(" {name:>9}");
    }
    println!(" {:>9} {:>12}", "max", "p50/receive");
    for (name, histogram) in WAYS.iter().zip(&histograms) {
        print!("{name:>13}");
        for (_, q) in QUANTILES {
            print!(" {:>9}", histogram.value_at_quantile(q) / 2);
        }
        let ratio = histogram.value_at_quantile(0.5) as f64
            / histograms[0].value_at_quantile(0.5).max(1) as f64;
        println!(" {:>9} {ratio:>12.3}", histogram.max() / 2);
    }
    drop(attachments);
    scan_cost(&node);
    idle_cost(&idle);
}

/// Runs `future` to completion on this thread, parking it while the future is pending.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return output;
        }
        std::thread::park();
    }
}

/// CPU used by the whole process while 1000 futures await topics nobody publishes to.
fn idle_cost(idle: &[Subscriber<u64>]) {
    use std::task::{Context, Waker};
    let seconds = if peer::smoke_test() { 0.1 } else { 2.0 };
    let mut futures: Vec<_> =
        (0..1000).map(|i| Box::pin(idle[i % idle.len()].receive_async())).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for future in &mut futures {
        assert!(future.as_mut().poll(&mut cx).is_pending(), "nothing was sent");
    }
    let before = peer::cpu_time();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let used = peer::cpu_time() - before;
    println!(
        "
idle: 1000 futures pending on {} quiet topics for {seconds} s: {:.3} ms of CPU \
         ({:.4}% of a core)",
        idle.len(),
        used.as_secs_f64() * 1e3,
        used.as_secs_f64() / seconds * 100.0
    );
}

/// A busy `wait` on `n` subscribers whose last alone has a sample: ns per call, per attachment.
fn scan_cost(node: &Node) {
    let calls: u32 = if peer::smoke_test() { 1_000 } else { 200_000 };
    println!("\nbusy-polling WaitSet (BusySpin), the last of N attachments ready, {calls} waits:");
    println!("{:>4} {:>10} {:>16}", "N", "ns/wait", "ns/attachment");
    for n in [1usize, 8, 64] {
        let topics: Vec<_> = (0..n).map(|i| topic(node, &format!("scan{n}_{i}"))).collect();
        let subscribers: Vec<_> = topics.iter().map(|t| t.subscriber().expect("sub")).collect();
        let publisher = topics[n - 1].publisher().expect("publisher");
        publisher.send_copy(1).expect("send");
        let set = WaitSet::new();
        let _attached: Vec<_> = subscribers.iter().map(|s| set.attach(s)).collect();
        let mut spin = BusySpin;
        for _ in 0..calls / 10 {
            set.wait(&mut spin, None).expect("ready");
        }
        let start = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(set.wait(&mut spin, None).expect("ready"));
        }
        let per_wait = start.elapsed().as_nanos() as f64 / f64::from(calls);
        println!("{n:>4} {per_wait:>10.1} {:>16.2}", per_wait / n as f64);
    }
}

/// The echo side: `NAMESPACE CORE MESSAGES`.
fn child(args: &[String]) {
    let [namespace, core, messages] = args else { panic!("peer needs NAMESPACE CORE MESSAGES") };
    pin(core.parse().expect("core"));
    let node = Node::builder("echo").namespace(namespace.as_str()).create().expect("node");
    let (ping, pong) = (topic(&node, "ping"), topic(&node, "pong"));
    let ping_sub = ping.subscriber().expect("ping subscriber");
    let pong_pub = pong.publisher().expect("pong publisher");
    let deadline = Instant::now() + HANG;
    while pong_pub.subscribers() == 0 {
        assert!(Instant::now() < deadline, "the initiator is gone");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut blocking = Blocking::new();
    for _ in 0..messages.parse::<u64>().expect("messages") {
        let seq = *ping_sub.receive_with(&mut blocking, Some(HANG)).expect("hung");
        pong_pub.send_copy(seq).expect("pong");
    }
}
