//! Peers in another pid namespace (containers sharing `/dev/shm` but not a pid namespace):
//! while they run they keep their roles, subscriber slots, held samples and segments, whatever
//! our `/proc` says about their pids; once killed they are found dead and reclaimed.
//!
//! Each child runs under `unshare --pid --fork --mount-proc` (pid 1 of a namespace of its own,
//! a pid that in ours belongs to init, which started long before). Needs root or user
//! namespaces; where `unshare` is refused the tests print why and skip.

use std::time::{Duration, Instant};

use shmlane::{ConnectError, Node};
use shmlane_reliability::{PacedSender, Stamped, files_of, finish, hold_samples, test_node};
use shmlane_segment::{
    Claimed, HEADER_SIZE, Liveness, Offset, RoleClaim, RoleError, RoleOwner, Segment, SegmentStatus,
};
use shmlane_testkit::{
    ChildProc, UNSHARE_PID, arg_u64, child_spec, exit_child, fail, pid_namespaces, process_lock,
    report, sleep_until_killed, spawn_child_in_mount_namespace, spawn_child_under, split_spec,
    unique_name, wait_for,
};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Where the role word sits in the segment a child creates.
const WORD: Offset<std::sync::atomic::AtomicU64> = Offset::new(HEADER_SIZE);

fn namespace(tag: &str) -> String {
    format!("pn{}{tag}", std::process::id())
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("claim", [name]) => child_claim(name),
        ("hold", [ns, keep]) => child_hold(ns, keep.parse().unwrap_or(1)),
        ("publish", [ns, count]) => child_publish(ns, count.parse().unwrap_or(1)),
        ("register", []) => {
            report_identity();
            sleep_until_killed()
        }
        ("judge_hidden", [live, live_pid, live_start, dead]) => {
            child_judge_hidden(live, live_pid, live_start, dead)
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Whether this machine can run the tests; prints why not.
fn namespaces_or_skip(test: &str) -> bool {
    match pid_namespaces() {
        Ok(()) => true,
        Err(why) => {
            println!("SKIPPED {test}: no pid namespace for a child: {why}");
            false
        }
    }
}

/// A child in a pid namespace of its own, and its presence token.
fn spawn_in_namespace(role: &str, args: &[&str]) -> (ChildProc, RoleOwner) {
    let mut child = spawn_child_under(UNSHARE_PID, role, args, &[]);
    // The child sees itself as pid 1: proof that it runs in a namespace of its own.
    assert_eq!(child.report_u64("pid", TIMEOUT), 1, "{role}: not in a new pid namespace");
    let token = RoleOwner::from_raw(child.report_u64("token", TIMEOUT)).expect("non-zero");
    (child, token)
}

/// Kills the child (its `unshare`, which has the kernel kill the namespace's pid 1) and waits
/// until its presence proves it dead.
fn kill(child: &mut ChildProc, owner: RoleOwner) {
    let killed = Instant::now();
    child.kill_while_running();
    wait_for("the killed child's death", TIMEOUT, || owner.liveness() == Liveness::Dead);
    println!("found dead {:?} after the kill", killed.elapsed());
}

/// Reports the child's pid as it sees it, and its presence token.
fn report_identity() {
    report("pid", std::process::id());
    report("token", RoleOwner::current().unwrap_or_else(|e| fail(3, e)).to_raw());
}

/// Creates segment `name` with a role word, claims the role, reports, waits to be killed.
fn child_claim(name: &str) {
    report_identity();
    let segment = Segment::builder(name)
        .size(HEADER_SIZE + 64)
        .unlink_on_drop(false)
        .create()
        .unwrap_or_else(|e| fail(3, e));
    let word = segment.get(WORD).unwrap_or_else(|e| fail(3, e));
    let me = RoleOwner::current().unwrap_or_else(|e| fail(3, e));
    let (_claim, _) = RoleClaim::claim(word, me).unwrap_or_else(|e| fail(3, e));
    report("claimed", me.to_raw());
    sleep_until_killed()
}

/// Reports its identity, then subscribes and holds samples (see `hold_samples`).
fn child_hold(ns: &str, keep: usize) {
    report_identity();
    let node = Node::builder("child").namespace(ns).create().unwrap_or_else(|e| fail(3, e));
    hold_samples(&node, keep, TIMEOUT)
}

/// Under a `/proc` mounted with `hidepid=2`, as `nobody`: judges a live root process (hidden
/// from us in `/proc`) and a killed one, by presence token and by pid.
fn child_judge_hidden(live: &str, live_pid: &str, live_start: &str, dead: &str) {
    become_nobody();
    let hidden = std::fs::read(format!("/proc/{live_pid}/stat")).is_err();
    report("hidden", u64::from(hidden));
    let live = RoleOwner::from_raw(arg_u64(live)).unwrap_or_else(|| fail(2, "token 0"));
    let dead = RoleOwner::from_raw(arg_u64(dead)).unwrap_or_else(|| fail(2, "token 0"));
    let by_pid = shmlane_segment::ProcessId {
        pid: u32::try_from(arg_u64(live_pid)).unwrap_or_else(|e| fail(2, e)),
        start_time: arg_u64(live_start),
    };
    report("live", format!("{:?}", live.liveness()));
    report("live_by_pid", format!("{:?}", by_pid.liveness()));
    report("dead", format!("{:?}", dead.liveness()));
}

/// Drops this thread (the one that runs the role) to `nobody` with no supplementary groups.
fn become_nobody() {
    use rustix::process::{Gid, Uid};
    rustix::thread::set_thread_groups(&[]).unwrap_or_else(|e| fail(3, e));
    rustix::thread::set_thread_gid(Gid::from_raw(65534)).unwrap_or_else(|e| fail(3, e));
    rustix::thread::set_thread_uid(Uid::from_raw(65534)).unwrap_or_else(|e| fail(3, e));
}

/// Publishes `count` samples once a subscriber is there, reports, waits to be killed.
fn child_publish(ns: &str, count: u64) {
    report_identity();
    let node = Node::builder("child").namespace(ns).create().unwrap_or_else(|e| fail(3, e));
    let topic = node.topic::<Stamped>("t").open().unwrap_or_else(|e| fail(3, e));
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
    for seq in 1..=count {
        publisher.send_copy(Stamped::new(7, seq)).unwrap_or_else(|e| fail(3, e));
    }
    report("sent", count);
    sleep_until_killed()
}

#[test]
fn a_role_and_a_segment_held_in_another_pid_namespace_stay_theirs_until_they_die() {
    if !namespaces_or_skip("role in another pid namespace") {
        return;
    }
    let _serial = process_lock();
    let name = unique_name("shmlane", "pidns-claim");
    let (mut child, owner) = spawn_in_namespace("claim", &[&name]);
    assert_eq!(child.report_u64("claimed", TIMEOUT), owner.to_raw());
    let token = owner.to_raw();

    let segment = Segment::builder(name.as_str()).open().expect("open the child's segment");
    let word = segment.get(WORD).expect("the role word");
    let me = RoleOwner::current().expect("our identity");
    // Its pid (1 in its namespace) names init in ours: liveness must not go by the pid.
    assert_eq!(owner.liveness(), Liveness::Alive);
    assert_eq!(owner.pid(), Some(1), "the presence file records the pid the child sees");
    assert_eq!(RoleClaim::claim(word, me).unwrap_err(), RoleError::Taken(owner));
    assert_eq!(segment.creator().pid, 1);
    assert_eq!(segment.creator_liveness(), Liveness::Alive);
    let listed = shmlane_segment::list().expect("list /dev/shm");
    let status = listed.iter().find(|i| i.name.as_str() == name).map(|i| i.status.clone());
    assert_eq!(status, Some(SegmentStatus::Alive));
    let removed = shmlane_segment::remove_stale().expect("remove stale segments").removed;
    assert!(removed.iter().all(|i| i.name.as_str() != name), "removed a live segment");
    let (swept, _) = shmlane_segment::presence::remove_dead();
    assert_eq!(owner.liveness(), Liveness::Alive, "swept a live presence ({swept} swept)");
    assert!(segment.path().is_some_and(|p| p.exists()));

    kill(&mut child, owner);
    let (claim, how) = RoleClaim::claim(word, me).expect("take the dead owner's role");
    assert_eq!(how, Claimed::TakenOver(owner));
    drop(claim);
    assert_eq!(segment.creator_liveness(), Liveness::Dead);
    let removed = shmlane_segment::remove_stale().expect("remove stale segments").removed;
    assert!(removed.iter().any(|i| i.name.as_str() == name), "the dead child's segment stayed");
    shmlane_segment::presence::remove_dead();
    assert_eq!(owner.liveness(), Liveness::Dead, "a swept presence stays dead");
    assert!(!shmlane_segment::presence::path_of(token).exists(), "its presence was swept");
}

#[test]
fn a_subscriber_in_another_pid_namespace_keeps_its_slot_and_samples_until_killed() {
    if !namespaces_or_skip("subscriber in another pid namespace") {
        return;
    }
    let _serial = process_lock();
    let ns = namespace("sub");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_subscribers(1).subscriber_capacity(8);
    let topic = topic.max_held(4).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let all_free = publisher.block_counts();
    let (mut child, owner) = spawn_in_namespace("hold", &[&ns, "3"]);
    child.report("ready", TIMEOUT);
    wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
    let mut sender = PacedSender::new(&publisher, 1);
    sender.until_held(3);
    child.report("holding", TIMEOUT);
    let files = files_of(&ns);

    // While it runs: its slot is not given away, its blocks stay its own however many sends
    // and sweeps look at it, and no file of it is removed.
    for _ in 0..200 {
        sender.send();
    }
    let other = topic.subscriber();
    assert!(matches!(other, Err(ConnectError::NoFreeSlot { .. })), "{other:?}");
    drop(other);
    let dead_nodes = node.remove_dead_nodes().expect("sweep dead nodes").removed;
    assert!(dead_nodes.is_empty(), "a live node in another namespace was removed");
    let removed = shmlane::discovery::remove_stale(None, |_| true).expect("sweep").removed;
    assert!(removed.iter().all(|e| !e.segment.name.as_str().contains(&ns)), "{removed:?}");
    assert_eq!(files_of(&ns), files);
    assert_eq!(publisher.subscribers(), 1);
    assert!(publisher.block_counts().held >= 3, "{:?}", publisher.block_counts());
    child.assert_running();

    // Killed, it is found dead: its blocks come back and its slot is free again.
    kill(&mut child, owner);
    let took = sender.until_reclaimed(TIMEOUT);
    println!("blocks back {took:?} after the kill");
    assert_eq!(publisher.block_counts(), all_free);
    let subscriber = topic.subscriber().expect("the dead subscriber's slot");
    sender.send();
    assert!(subscriber.receive().unwrap().is_some_and(|s| s.is_intact()));
    drop(subscriber);
    drop(publisher);
    drop(topic);
    finish(node, &ns, 1, "the killed subscriber's node");
}

#[test]
fn a_publisher_in_another_pid_namespace_keeps_its_payload_segment_until_killed() {
    if !namespaces_or_skip("publisher in another pid namespace") {
        return;
    }
    let _serial = process_lock();
    let ns = namespace("pub");
    let node = test_node(&ns);
    let topic = node.topic::<Stamped>("t").max_subscribers(1).subscriber_capacity(16);
    let topic = topic.create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let (mut child, owner) = spawn_in_namespace("publish", &[&ns, "10"]);
    child.report("sent", TIMEOUT);
    // A publisher of ours sweeps the payload files of publishers it finds dead; a node sweeps
    // dead nodes. Neither may touch the live child's.
    let files = files_of(&ns);
    let ours = topic.publisher().unwrap();
    assert!(node.remove_dead_nodes().expect("sweep dead nodes").removed.is_empty());
    shmlane::discovery::remove_stale(None, |_| true).expect("sweep");
    assert!(files.iter().all(|f| files_of(&ns).contains(f)), "{files:?} -> {:?}", files_of(&ns));
    let got: Vec<u64> =
        std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| s.seq)).collect();
    assert_eq!(got, (1..=10).collect::<Vec<_>>(), "the live publisher's samples");
    kill(&mut child, owner);
    drop(ours);
    drop(subscriber);
    drop(topic);
    finish(node, &ns, 1, "the killed publisher's node");
}

#[test]
fn a_proc_with_hidepid_never_proves_a_live_peer_dead() {
    if rustix::process::geteuid().as_raw() != 0 {
        println!("SKIPPED hidepid: needs root to mount /proc in a mount namespace of its own");
        return;
    }
    let _serial = process_lock();
    // A process that registered and was killed: its presence file stays, its lock is gone.
    let mut doomed = shmlane_testkit::spawn_child("register", &[]);
    let _ = doomed.report_u64("pid", TIMEOUT);
    let dead = doomed.report_u64("token", TIMEOUT);
    doomed.kill_while_running();
    let me = RoleOwner::current().expect("our identity").to_raw();
    let process = shmlane_segment::ProcessId::current().expect("our identity");
    let (me, pid, start, dead) =
        (me.to_string(), process.pid.to_string(), process.start_time.to_string(), dead.to_string());
    let hidepid = "mount -t proc -o hidepid=2 proc /proc";
    let args = [&*me, &pid, &start, &dead];
    let mut judge = spawn_child_in_mount_namespace(hidepid, "judge_hidden", &args, &[]);
    let hidden = match judge.try_report("hidden", TIMEOUT) {
        Some(hidden) => hidden,
        None => {
            println!(
                "SKIPPED hidepid: the child could not mount /proc with hidepid=2: {}",
                judge.stderr()
            );
            return;
        }
    };
    assert_eq!(hidden, "1", "our /proc entry was visible to nobody under hidepid=2");
    assert_eq!(judge.report("live", TIMEOUT), "Alive", "a live peer hidden by hidepid");
    assert_eq!(judge.report("live_by_pid", TIMEOUT), "Unknown", "a hidden pid is no proof");
    assert_eq!(judge.report("dead", TIMEOUT), "Dead", "a killed peer under hidepid");
    judge.expect_success(TIMEOUT);
    shmlane_segment::presence::remove_dead();
}
