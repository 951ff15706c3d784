//! A bounded soak: 4 publisher processes and 4 subscriber processes on one topic for a fixed
//! time, once under `Overflow::Block` and once under `Overflow::DropOldest`, counting:
//!
//! - block: no loss — every subscriber receives every sample of every publisher, in each
//!   publisher's order, and counts no drop;
//! - drop-oldest: drops exactly accounted — per subscriber, what it received from each
//!   publisher is in that publisher's order, and the samples it never received, summed over the
//!   publishers (sent minus received), are exactly its drop counter;
//! - every sample intact (`Stamped`: a torn read or a block reused under its reader shows);
//! - memory flat: each process's RSS (`VmRSS`) at the start and at the end of the steady phase,
//!   and the topic's files in /dev/shm (names and sizes), do not grow;
//! - nothing of the topic is left in /dev/shm afterwards.
//!
//! The steady phase starts a fifth into the run (after the pools and queues have been
//! touched). Each run lasts [`DEFAULT_SECS`] seconds; `SHMLANE_SOAK_SECS` sets another length
//! (the long mode, see docs/reliability.md). Every wait has a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shmlane::notify::Blocking;
use shmlane::{Node, Overflow, ReceiveError};
use shmlane_reliability::{Flag, Stamped, assert_nothing_left, files_of, rss_kib};
use shmlane_testkit::{
    ChildProc, arg_u64, child_spec, exit_child, fail, process_lock, report, spawn_child,
    split_spec, wait_for,
};

/// Seconds each policy runs unless `SHMLANE_SOAK_SECS` says otherwise.
const DEFAULT_SECS: u64 = 5;
/// The environment variable that sets the run's length in seconds.
const SECS_ENV: &str = "SHMLANE_SOAK_SECS";
const PUBLISHERS: u64 = 4;
const SUBSCRIBERS: u64 = 4;
const CAPACITY: u32 = 64;
/// Deadline of every wait for a child (beyond the run itself).
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a publisher under the block policy waits for room before the send fails: a
/// subscriber that takes this long to make room is stuck (a hang), not slow.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS growth over the steady phase tolerated per process: the allocator's and the kernel's
/// page granularity, nothing that scales with the samples sent.
const RSS_SLACK_KIB: u64 = 512;
/// Exit code of a child that found a sample out of order, torn, or a send refused.
const EXIT_BROKEN: i32 = 6;

fn secs() -> u64 {
    shmlane_testkit::env_u64(SECS_ENV).unwrap_or(DEFAULT_SECS)
}

fn policy(name: &str) -> Overflow {
    match name {
        "block" => Overflow::Block,
        "drop_oldest" => Overflow::DropOldest,
        _ => fail(2, format!("unknown policy {name}")),
    }
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("publish", [ns, id, secs, go, done]) => {
            child_publish(ns, arg_u64(id), arg_u64(secs), go, done)
        }
        ("subscribe", [ns, policy, secs, go, stop]) => {
            child_subscribe(ns, self::policy(policy), arg_u64(secs), go, stop)
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Waits (bounded) for the flag at `path`.
fn wait_flag(path: &str, what: &str) {
    let deadline = Instant::now() + TIMEOUT + Duration::from_secs(secs());
    while !Flag::is_raised(path) {
        if Instant::now() > deadline {
            fail(3, format!("no {what} signal"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reports this process's RSS under `key`.
fn report_rss(key: &str) {
    report(key, rss_kib().unwrap_or_else(|| fail(3, "cannot read VmRSS")));
}

/// Publishes `Stamped(id, 0..)` as fast as it can for `secs` seconds after the go flag,
/// reporting its RSS at the start and the end of the steady phase and how many it sent, then
/// waits for the done flag (so its payload segment outlives the subscribers' draining).
fn child_publish(ns: &str, id: u64, secs: u64, go: &str, done: &str) {
    let node = Node::builder("soakpub").namespace(ns).create().unwrap_or_else(|e| fail(3, e));
    let topic = node.topic::<Stamped>("soak").open().unwrap_or_else(|e| fail(3, e));
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    publisher.set_block_timeout(BLOCK_TIMEOUT);
    wait_for("the subscribers", TIMEOUT, || publisher.subscribers() == SUBSCRIBERS as usize);
    report("ready", id);
    wait_flag(go, "go");
    let started = Instant::now();
    let (steady, end) =
        (started + Duration::from_secs(secs) / 5, started + Duration::from_secs(secs));
    let mut rss_start = None;
    let mut seq = 0;
    while Instant::now() < end {
        if rss_start.is_none() && Instant::now() >= steady {
            rss_start = rss_kib();
        }
        let mut loan = match publisher.loan() {
            Ok(loan) => loan,
            Err(e) => fail(EXIT_BROKEN, format!("loan {seq}: {e}")),
        };
        *loan = Stamped::new(id, seq);
        match publisher.send(loan) {
            Ok(_) => seq += 1,
            // Under the block policy a timeout means a stuck subscriber; nothing else may fail.
            Err(e) => fail(EXIT_BROKEN, format!("send {seq}: {e}")),
        }
    }
    report(
        "rss_start",
        rss_start.unwrap_or_else(|| fail(3, "the run ended before its steady phase")),
    );
    report_rss("rss_end");
    let counts = publisher.block_counts();
    if !counts.is_consistent() {
        fail(EXIT_BROKEN, format!("block accounting broken: {counts:?}"));
    }
    report("sent", seq);
    wait_flag(done, "done");
}

/// Receives from every publisher until the stop flag is raised and its queues ran dry,
/// checking each sample's integrity and each publisher's order (gap-free under the block
/// policy); reports per publisher what it received, its drops, and its RSS at the start and
/// end of the steady phase.
fn child_subscribe(ns: &str, policy: Overflow, secs: u64, go: &str, stop: &str) {
    let node = Node::builder("soaksub").namespace(ns).create().unwrap_or_else(|e| fail(3, e));
    let topic = node.topic::<Stamped>("soak").open().unwrap_or_else(|e| fail(3, e));
    let subscriber = topic.subscriber().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    wait_flag(go, "go");
    let started = Instant::now();
    let steady = started + Duration::from_secs(secs) / 5;
    let deadline = started + Duration::from_secs(secs) + TIMEOUT;
    let mut rss_start = None;
    let mut rss_end = None;
    // Per publisher: samples received, and the next sequence number expected.
    let mut received = [0u64; PUBLISHERS as usize];
    let mut next = [0u64; PUBLISHERS as usize];
    let mut strategy = Blocking::new();
    loop {
        if rss_start.is_none() && Instant::now() >= steady {
            rss_start = rss_kib();
        }
        if Instant::now() > deadline {
            fail(3, format!("still receiving {TIMEOUT:?} after the run: received {received:?}"));
        }
        let stopping = Flag::is_raised(stop);
        if stopping && rss_end.is_none() {
            rss_end = rss_kib();
        }
        let sample = match subscriber.receive_with(&mut strategy, Some(Duration::from_millis(50))) {
            Ok(sample) => sample,
            // The publishers are done: nothing more will come.
            Err(ReceiveError::TimedOut(_)) if stopping => break,
            Err(ReceiveError::TimedOut(_)) => continue,
            Err(e) => fail(EXIT_BROKEN, format!("receive: {e}")),
        };
        let stamped = *sample;
        drop(sample);
        let publisher = stamped.epoch as usize;
        if !stamped.is_intact() || publisher >= PUBLISHERS as usize {
            fail(EXIT_BROKEN, format!("a torn or foreign sample: {stamped:?}"));
        }
        let in_order = match policy {
            Overflow::Block => stamped.seq == next[publisher],
            _ => stamped.seq >= next[publisher],
        };
        if !in_order {
            fail(
                EXIT_BROKEN,
                format!("publisher {publisher}: got {}, expected {}", stamped.seq, next[publisher]),
            );
        }
        next[publisher] = stamped.seq + 1;
        received[publisher] += 1;
    }
    for (p, count) in received.iter().enumerate() {
        report(&format!("received{p}"), count);
    }
    report("drops", subscriber.drops());
    report(
        "rss_start",
        rss_start.unwrap_or_else(|| fail(3, "the run ended before its steady phase")),
    );
    report("rss_end", rss_end.unwrap_or_else(|| fail(3, "no RSS at the end")));
}

/// The topic's files in /dev/shm with their sizes.
fn shm_files(ns: &str) -> BTreeMap<String, u64> {
    files_of(ns)
        .into_iter()
        .filter(|name| !name.contains(".node."))
        .map(|name| {
            let size = std::fs::metadata(shmlane_testkit::shm_file(&name)).map_or(0, |m| m.len());
            (name, size)
        })
        .collect()
}

/// Checks a process's RSS over the steady phase.
fn check_rss(who: &str, child: &mut ChildProc, timeout: Duration) -> (u64, u64) {
    let start = child.report_u64("rss_start", timeout);
    let end = child.report_u64("rss_end", timeout);
    assert!(
        end <= start + RSS_SLACK_KIB,
        "{who}: RSS grew from {start} KiB to {end} KiB over the steady phase"
    );
    (start, end)
}

fn soak(policy_name: &str) {
    let _serial = process_lock();
    let secs = secs();
    let policy = policy(policy_name);
    let ns = format!("soak{}{}", std::process::id(), policy_name.replace('_', ""));
    let node = Node::builder("soak").namespace(ns.as_str()).create().unwrap();
    let topic = node
        .topic::<Stamped>("soak")
        .max_publishers(PUBLISHERS as u32)
        .max_subscribers(SUBSCRIBERS as u32)
        .subscriber_capacity(CAPACITY)
        .overflow(policy)
        .create()
        .unwrap();
    let (go, stop, done) = (Flag::new("soak-go"), Flag::new("soak-stop"), Flag::new("soak-done"));
    let secs_arg = secs.to_string();
    let mut subscribers: Vec<ChildProc> = (0..SUBSCRIBERS)
        .map(|_| {
            let args = [ns.as_str(), policy_name, &secs_arg, go.path(), stop.path()];
            spawn_child("subscribe", &args)
        })
        .collect();
    for subscriber in &mut subscribers {
        subscriber.report("ready", TIMEOUT);
    }
    let mut publishers: Vec<ChildProc> = (0..PUBLISHERS)
        .map(|id| {
            let id = id.to_string();
            let args = [ns.as_str(), &id, &secs_arg, go.path(), done.path()];
            spawn_child("publish", &args)
        })
        .collect();
    for publisher in &mut publishers {
        publisher.report("ready", TIMEOUT);
    }

    go.raise();
    let run = Duration::from_secs(secs);
    std::thread::sleep(run / 5);
    let files_start = shm_files(&ns);
    let waited = run + TIMEOUT;
    let sent: Vec<u64> = publishers.iter_mut().map(|p| p.report_u64("sent", waited)).collect();
    let files_end = shm_files(&ns);
    stop.raise();
    assert_eq!(files_start, files_end, "the topic's files changed over the steady phase");

    let total: u64 = sent.iter().sum();
    let mut report_lines = vec![format!(
        "soak {policy_name}: {secs} s, sent {sent:?} = {total} ({:.0}/s); /dev/shm {} files, \
         {} bytes, unchanged",
        total as f64 / secs as f64,
        files_end.len(),
        files_end.values().sum::<u64>()
    )];
    for (p, publisher) in publishers.iter_mut().enumerate() {
        let (start, end) = check_rss(&format!("publisher {p}"), publisher, TIMEOUT);
        report_lines.push(format!("  publisher {p}: RSS {start} -> {end} KiB"));
    }
    for (s, subscriber) in subscribers.iter_mut().enumerate() {
        let received: Vec<u64> = (0..PUBLISHERS)
            .map(|p| subscriber.report_u64(&format!("received{p}"), waited))
            .collect();
        let drops = subscriber.report_u64("drops", TIMEOUT);
        let missing: u64 = sent.iter().zip(&received).map(|(sent, got)| sent - got).sum();
        for (p, (&sent, &got)) in sent.iter().zip(&received).enumerate() {
            assert!(got <= sent, "subscriber {s} received {got} of publisher {p}'s {sent}");
        }
        match policy {
            Overflow::Block => {
                assert_eq!(received, sent, "subscriber {s} lost samples under the block policy");
                assert_eq!(drops, 0, "subscriber {s} counted drops under the block policy");
            }
            _ => assert_eq!(
                missing, drops,
                "subscriber {s}: {missing} samples never arrived ({received:?} of {sent:?}), \
                 but its drop counter says {drops}"
            ),
        }
        let (start, end) = check_rss(&format!("subscriber {s}"), subscriber, TIMEOUT);
        report_lines.push(format!(
            "  subscriber {s}: received {received:?} = {}, drops {drops}, RSS {start} -> {end} KiB",
            received.iter().sum::<u64>()
        ));
        subscriber.expect_success(TIMEOUT);
    }
    done.raise();
    for publisher in &mut publishers {
        publisher.expect_success(TIMEOUT);
    }
    eprintln!("{}", report_lines.join("\n"));
    drop(topic);
    drop(node);
    assert_nothing_left(&ns);
}

#[test]
fn four_publishers_and_four_subscribers_lose_nothing_under_the_block_policy() {
    soak("block");
}

#[test]
fn four_publishers_and_four_subscribers_account_for_every_drop_under_drop_oldest() {
    soak("drop_oldest");
}
