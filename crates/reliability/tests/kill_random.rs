//! Randomised kills: a publisher process and a subscriber process exchange self-checking
//! samples; again and again one of them is killed (SIGKILL) after a random delay — during its
//! start-up, its join, a send or a receive, wherever it happens to be — or, one time in three,
//! is restarted armed with a random crash point and hit count and dies there by itself. It is
//! then restarted, and the run goes on only once the survivor exchanges fresh samples with the
//! newcomer. The subscriber checks every sample (intact, never read twice, in order, and under
//! the block policy none lost); the publisher checks its block accounting as it goes, and at
//! the end, its subscriber gone, that every block is free again. Nothing may be left in
//! /dev/shm.
//!
//! Bounded for CI: 25 kills per overflow policy. `SHMLANE_KILL_ITERS=N` runs N per policy (the
//! long mode), `SHMLANE_KILL_SEED=S` repeats a run (every run prints its seed).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use shmlane::notify::Blocking;
use shmlane::{Node, Overflow, ReceiveError};
use shmlane_reliability::{CRASH_AT_ENV, Flag, Stamped, assert_nothing_left};
use shmlane_testkit::{
    ChildProc, Rng, arg_u64, child_spec, env_u64, exit_child, fail, process_lock, report, seed,
    spawn_child_with_env, split_spec, wait_for,
};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Kills per policy in CI.
const DEFAULT_ITERATIONS: u64 = 25;
/// Samples of the current publisher a subscriber must get before the next kill.
const FRESH: u64 = 20;
/// Longest random delay before a kill: spans a child's start-up, so kills land in it too.
const MAX_DELAY_US: u64 = 40_000;

/// Crash points a restarted publisher may be armed with (each is reached while it publishes to
/// a live subscriber), and the largest hit count to draw.
const PUBLISHER_POINTS: [(&str, u64); 5] = [
    ("shmlane.node.registering", 1),
    ("shmlane.publisher.pool_created", 1),
    ("shmlane.loan.taken", 100),
    ("shmlane.send.unloaned", 100),
    ("shmlane.send.pushed", 100),
];
/// The same for a restarted subscriber.
const SUBSCRIBER_POINTS: [(&str, u64); 4] = [
    ("shmlane.node.registering", 1),
    ("shmlane.subscribe.claimed", 1),
    ("shmlane.receive.popped", 100),
    ("shmlane.give_back.before_push", 100),
];

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("pub", [ns, epoch, stop]) => child_publish(ns, arg_u64(epoch), stop),
        ("sub", [ns, stop, policy]) => child_subscribe(ns, stop, *policy == "block"),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

fn child_node(ns: &str, name: &str) -> Node {
    Node::builder(name).namespace(ns).create().unwrap_or_else(|e| fail(3, e))
}

/// Publishes `Stamped(epoch, 1..)` about every 100 µs until `stop` is raised, checking its
/// block accounting now and then; then waits for its subscriber to leave and reports its
/// block counts.
fn child_publish(ns: &str, epoch: u64, stop: &str) {
    let node = child_node(ns, "pub");
    let topic = node.topic::<Stamped>("t").open().unwrap_or_else(|e| fail(3, e));
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    publisher.set_block_timeout(TIMEOUT);
    let mut seq = 0;
    while !Flag::is_raised(stop) {
        seq += 1;
        publisher.send_copy(Stamped::new(epoch, seq)).unwrap_or_else(|e| fail(3, e));
        if seq % 256 == 0 {
            let counts = publisher.block_counts();
            if !counts.is_consistent() {
                fail(4, format!("blocks unaccounted for after {seq} sends: {counts:?}"));
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    wait_for("the subscriber to leave", TIMEOUT, || publisher.subscribers() == 0);
    let c = publisher.block_counts();
    report("counts", format!("{} {} {} {} {}", c.total, c.free, c.loaned, c.held, c.history));
}

/// Receives and checks samples until `stop` is raised, keeping the last two in hand; reports
/// "fresh EPOCH" once it got `FRESH` samples of a publisher epoch.
fn child_subscribe(ns: &str, stop: &str, lossless: bool) {
    let node = child_node(ns, "sub");
    let topic = node.topic::<Stamped>("t").open().unwrap_or_else(|e| fail(3, e));
    let subscriber = topic.subscriber().unwrap_or_else(|e| fail(3, e));
    let mut held = std::collections::VecDeque::new();
    let (mut epoch, mut seq, mut of_epoch, mut received) = (0, 0, 0, 0u64);
    while !Flag::is_raised(stop) {
        let sample = match subscriber.receive_with(&mut Blocking::new(), Some(TIMEOUT / 10)) {
            Ok(sample) => sample,
            Err(ReceiveError::TimedOut(_)) => continue, // its publisher is being restarted
            Err(e) => fail(3, e),
        };
        let got = *sample;
        if !got.is_intact() {
            fail(4, format!("torn sample {got:?}"));
        }
        if got.epoch < epoch || (got.epoch == epoch && got.seq <= seq) {
            fail(4, format!("{got:?} after epoch {epoch} seq {seq}: out of order or read twice"));
        }
        if lossless && got.epoch == epoch && got.seq != seq + 1 {
            fail(4, format!("seq {} after {seq} under the block policy: lost samples", got.seq));
        }
        of_epoch = if got.epoch == epoch { of_epoch + 1 } else { 1 };
        (epoch, seq) = (got.epoch, got.seq);
        received += 1;
        if of_epoch == FRESH {
            report("fresh", epoch);
        }
        held.push_back(sample);
        if held.len() > 2 {
            held.pop_front();
        }
    }
    drop(held);
    report("received", received);
}

/// The run: `iterations` kills under `policy`.
struct Run {
    ns: String,
    stop: Flag,
    policy: &'static str,
    epoch: u64,
    publisher: ChildProc,
    subscriber: ChildProc,
}

impl Run {
    fn spawn_publisher(&mut self, armed: Option<&str>) -> ChildProc {
        self.epoch += 1;
        let epoch = self.epoch.to_string();
        let env: Vec<_> = armed.map(|point| (CRASH_AT_ENV, point)).into_iter().collect();
        spawn_child_with_env("pub", &[&self.ns, &epoch, self.stop.path()], &env)
    }

    fn spawn_subscriber(&self, armed: Option<&str>) -> ChildProc {
        let env: Vec<_> = armed.map(|point| (CRASH_AT_ENV, point)).into_iter().collect();
        spawn_child_with_env("sub", &[&self.ns, self.stop.path(), self.policy], &env)
    }

    /// Waits until the subscriber got `FRESH` samples of the current publisher.
    fn wait_fresh(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.subscriber.report_u64("fresh", left) == self.epoch {
                return;
            }
        }
    }
}

/// Kills `child` if it still runs; fails the test if it had ended any other way than SIGKILL
/// (a check failed in it, or it crashed).
fn kill(child: &mut ChildProc, who: &str) {
    match child.try_wait() {
        None => child.kill_while_running(),
        Some(status) => assert_eq!(
            status.signal(),
            Some(9),
            "the {who} ended by itself ({status}); stderr:\n{}",
            child.stderr()
        ),
    }
}

fn random_kills(policy: Overflow, name: &'static str) {
    let _serial = process_lock();
    let iterations = env_u64("SHMLANE_KILL_ITERS").unwrap_or(DEFAULT_ITERATIONS);
    println!("{name}: {iterations} kills");
    let mut rng = Rng::new(seed("SHMLANE_KILL_SEED"));
    let ns = format!("kr{}{name}", std::process::id());
    let node = Node::builder("test").namespace(&ns).create().unwrap();
    let topic = node.topic::<Stamped>("t").max_publishers(1).max_subscribers(1);
    let topic = topic.subscriber_capacity(16).max_held(4).overflow(policy).create().unwrap();
    let stop = Flag::new(name);
    // Epochs start at 1: a subscriber's first sample is always of a new epoch.
    let mut run = Run {
        ns: ns.clone(),
        policy: name,
        epoch: 1,
        publisher: spawn_child_with_env("pub", &[&ns, "1", stop.path()], &[]),
        subscriber: spawn_child_with_env("sub", &[&ns, stop.path(), name], &[]),
        stop,
    };
    run.wait_fresh();

    let mut recoveries = Vec::new();
    let mut crashed_at = Vec::new();
    for _ in 0..iterations {
        let kill_publisher = rng.below(2) == 0;
        std::thread::sleep(Duration::from_micros(rng.below(MAX_DELAY_US)));
        let killed = Instant::now();
        // One time in three the newcomer is armed: it dies at a crash point by itself, then
        // an unarmed one replaces it.
        let points: &[(&str, u64)] =
            if kill_publisher { &PUBLISHER_POINTS } else { &SUBSCRIBER_POINTS };
        let (point, most) = points[rng.below(points.len() as u64) as usize];
        let armed = format!("{point}:{}", 1 + rng.below(most));
        let armed = (rng.below(3) == 0).then_some(armed.as_str());
        if kill_publisher {
            kill(&mut run.publisher, "publisher");
            if let Some(point) = armed {
                run.publisher = run.spawn_publisher(Some(point));
                run.publisher.expect_crash(point, TIMEOUT);
            }
            run.publisher = run.spawn_publisher(None);
        } else {
            kill(&mut run.subscriber, "subscriber");
            if let Some(point) = armed {
                run.subscriber = run.spawn_subscriber(Some(point));
                run.subscriber.expect_crash(point, TIMEOUT);
            }
            run.subscriber = run.spawn_subscriber(None);
        }
        crashed_at.extend(armed.map(str::to_owned));
        run.wait_fresh();
        if armed.is_none() {
            recoveries.push(killed.elapsed());
        }
    }

    run.stop.raise();
    let received = run.subscriber.report_u64("received", TIMEOUT);
    run.subscriber.expect_success(TIMEOUT);
    let counts = run.publisher.report("counts", TIMEOUT);
    run.publisher.expect_success(TIMEOUT);
    let counts: Vec<u64> = counts.split(' ').map(|n| n.parse().unwrap()).collect();
    let [total, free, loaned, held, history] = counts[..] else { panic!("counts {counts:?}") };
    assert_eq!(
        (free, loaned, held, history),
        (total, 0, 0, 0),
        "{name}: blocks not all back at the end"
    );
    recoveries.sort();
    println!(
        "{name}: {iterations} kills ({} at crash points: {crashed_at:?}); the last subscriber \
         checked {received} samples; kill to {FRESH} fresh samples through the restarted \
         process: min {:?}, median {:?}, max {:?}",
        crashed_at.len(),
        recoveries.first().copied().unwrap_or_default(),
        recoveries.get(recoveries.len() / 2).copied().unwrap_or_default(),
        recoveries.last().copied().unwrap_or_default(),
    );
    drop(topic);
    node.remove_dead_nodes().expect("sweep dead nodes");
    drop(node);
    assert_nothing_left(&ns);
}

#[test]
fn random_kills_under_drop_oldest() {
    random_kills(Overflow::DropOldest, "drop");
}

#[test]
fn random_kills_under_block() {
    random_kills(Overflow::Block, "block");
}
