//! Two "hosts" on this machine (two namespaces), two `shmlane-bridge` processes joined over TCP
//! on 127.0.0.1, and publishers, subscribers, servers, clients, notifiers and listeners as
//! child processes (this binary re-executed, see `shmlane_testkit`). Every test checks that
//! nothing of its namespaces is left in /dev/shm.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BridgeProc, Hosts, STATS_TIMEOUT, await_bridge, fail, node};
use shmlane::notify::Blocking;
use shmlane::{Node, Overflow, Topic};
use shmlane_testkit::{
    ChildProc, EXIT_ORDER, arg_u64, child_spec, process_lock, report, spawn_child, split_spec,
};

const CHILD: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Child roles.

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    let code = match role {
        "publish" => publish(&args),
        "subscribe" => subscribe(&args),
        "serve" => serve(&args),
        "call" => call(&args),
        "notify" => notify(&args),
        "listen" => listen(&args),
        other => fail(&format!("unknown role {other}")),
    };
    std::process::exit(code);
}

fn policy(name: &str) -> Overflow {
    match name {
        "block" => Overflow::Block,
        _ => Overflow::DropOldest,
    }
}

/// The test topic: u64 elements, slices of up to 4 in the base pool (longer ones in segments
/// added for their size), `policy`, type `version`.
fn open_topic(node: &Node, service: &str, policy: Overflow, version: u64) -> Topic<u64> {
    node.topic::<u64>(service)
        .overflow(policy)
        .max_slice_len(4)
        .type_version(version)
        .open_or_create()
        .expect("open the test topic")
}

/// A sample's length in slice mode: 1 to 17 elements, from its index.
fn slice_len(index: u64) -> usize {
    1 + (index % 17) as usize
}

/// `publish:NS SERVICE COUNT POLICY VERSION TAG INTERVAL_US SLICES STOP_FILE`: waits for a
/// subscriber (the bridge), then sends `TAG << 32 | i` for i in 0..COUNT (COUNT 0: until
/// STOP_FILE exists), as slices of `slice_len(i)` copies if SLICES is 1. Reports `ready`,
/// `sent`, `max_send_us`; a failed send fails the child.
fn publish(args: &[&str]) -> i32 {
    let [namespace, service, count, policy_name, version, tag, interval, slices, stop_file] = args
    else {
        return fail("publish: bad arguments");
    };
    let node = node(namespace);
    let topic = open_topic(&node, service, policy(policy_name), arg_u64(version));
    let publisher = topic.publisher().expect("a publisher");
    if let Err(why) = await_bridge(&publisher) {
        return fail(why);
    }
    report("ready", 1);
    let (count, tag, interval) = (arg_u64(count), arg_u64(tag), arg_u64(interval));
    let slices = *slices == "1";
    let mut max_send = Duration::ZERO;
    let mut sent = 0u64;
    while count == 0 || sent < count {
        if count == 0 && Path::new(stop_file).exists() {
            break;
        }
        let value = tag << 32 | sent;
        let started = Instant::now();
        let result = if slices {
            let mut loan = match publisher.loan_slice(slice_len(sent)) {
                Ok(loan) => loan,
                Err(e) => return fail(&format!("loan_slice: {e}")),
            };
            loan.fill(value);
            publisher.send_slice(loan).map(|_| ())
        } else {
            publisher.send_copy(value).map(|_| ())
        };
        if let Err(e) = result {
            return fail(&format!("send {sent}: {e}"));
        }
        max_send = max_send.max(started.elapsed());
        sent += 1;
        if interval > 0 {
            std::thread::sleep(Duration::from_micros(interval));
        }
    }
    report("sent", sent);
    report("max_send_us", max_send.as_micros());
    // Stay until the test is done, so that nothing we sent is cut short by our exit.
    let linger = Instant::now() + CHILD;
    while !Path::new(stop_file).exists() && Instant::now() < linger {
        std::thread::sleep(Duration::from_millis(10));
    }
    0
}

/// `subscribe:NS SERVICE EXPECT POLICY VERSION MODE QUIET_MS STOP_FILE`: receives until
/// EXPECT samples came (EXPECT 0: until STOP_FILE exists), then QUIET_MS more for samples
/// that should not come. Each sample is `TAG << 32 | i`; per tag, MODE `strict` wants i = 0,
/// 1, 2, ... (exit EXIT_ORDER otherwise), `gaps` wants i increasing; `slices` also checks
/// each sample's length and elements. Reports `ready`, `received`, `extra`, and `tag_T`
/// (samples of tag T) for each tag.
fn subscribe(args: &[&str]) -> i32 {
    let [namespace, service, expect, policy_name, version, mode, quiet, stop_file] = args else {
        return fail("subscribe: bad arguments");
    };
    let node = node(namespace);
    let topic = open_topic(&node, service, policy(policy_name), arg_u64(version));
    let subscriber = topic.subscriber().expect("a subscriber");
    report("ready", 1);
    let expect = arg_u64(expect);
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut received = 0u64;
    let mut extra = 0u64;
    let mut strategy = Blocking::new();
    let deadline = Instant::now() + CHILD;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if let Some(until) = quiet_until
            && now >= until
        {
            break;
        }
        if expect == 0 && Path::new(stop_file).exists() {
            break;
        }
        if now >= deadline {
            eprintln!("subscriber: timed out with {received} of {expect}");
            break;
        }
        let wait = quiet_until.unwrap_or(deadline).min(now + Duration::from_millis(50)) - now;
        let sample = match subscriber.receive_with(&mut strategy, Some(wait)) {
            Ok(sample) => sample,
            Err(shmlane::ReceiveError::TimedOut(_)) => continue,
            Err(e) => return fail(&format!("receive: {e}")),
        };
        let values = sample.read_all();
        let value = values[0];
        let (tag, index) = (value >> 32, value & 0xffff_ffff);
        if *mode == "slices"
            && (values.len() != slice_len(index) || values.iter().any(|v| *v != value))
        {
            return fail(&format!(
                "sample {index}: a slice of {} elements {values:?}",
                values.len()
            ));
        }
        let expected = next.entry(tag).or_insert(0);
        let in_order = match *mode {
            "gaps" => index >= *expected,
            _ => index == *expected,
        };
        if !in_order {
            eprintln!("tag {tag}: got index {index}, expected {}", *expected);
            return EXIT_ORDER;
        }
        *expected = index + 1;
        *counts.entry(tag).or_insert(0) += 1;
        if quiet_until.is_some() {
            extra += 1;
        } else {
            received += 1;
        }
        if expect > 0 && received == expect && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(arg_u64(quiet)));
        }
    }
    report("received", received);
    report("extra", extra);
    for (tag, count) in counts {
        report(&format!("tag_{tag}"), count);
    }
    0
}

/// `serve:NS SERVICE STOP_FILE`: the server of rpc SERVICE (u64 → u64), answering
/// `2 × request + 1` until STOP_FILE exists. Reports `ready` and `served`.
fn serve(args: &[&str]) -> i32 {
    let [namespace, service, stop_file] = args else { return fail("serve: bad arguments") };
    let node = node(namespace);
    let rpc = node.rpc::<u64, u64>(service).open_or_create().expect("the rpc service");
    let server = rpc.server().expect("the server role");
    report("ready", 1);
    let mut served = 0u64;
    let mut strategy = Blocking::new();
    while !Path::new(stop_file).exists() {
        let request = match server.receive_with(&mut strategy, Some(Duration::from_millis(50))) {
            Ok(request) => request,
            Err(shmlane::ReceiveError::TimedOut(_)) => continue,
            Err(e) => return fail(&format!("receive: {e}")),
        };
        let value = request.read();
        if let Err(e) = server.respond(&request, value * 2 + 1) {
            return fail(&format!("respond: {e}"));
        }
        served += 1;
    }
    report("served", served);
    0
}

/// `call:NS SERVICE COUNT BASE`: a client of rpc SERVICE; retries until a first call is
/// answered (the bridges are still connecting), then makes COUNT calls with requests BASE,
/// BASE + 1, ..., each answered by `2 × request + 1` within 5 s. Reports `first` and `calls`.
fn call(args: &[&str]) -> i32 {
    let [namespace, service, count, base] = args else { return fail("call: bad arguments") };
    let node = node(namespace);
    let rpc = node.rpc::<u64, u64>(service).open_or_create().expect("the rpc service");
    let client = rpc.client().expect("a client");
    let mut strategy = Blocking::new();
    let base = arg_u64(base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.call(base, &mut strategy, Some(Duration::from_millis(300))) {
            Ok(answer) if *answer == base * 2 + 1 => break,
            Ok(answer) => return fail(&format!("first call: {} for {base}", *answer)),
            Err(_) if Instant::now() < deadline => continue,
            Err(e) => return fail(&format!("no first answer in 30 s: {e}")),
        }
    }
    report("first", 1);
    for i in 0..arg_u64(count) {
        let request = base + i;
        match client.call(request, &mut strategy, Some(Duration::from_secs(5))) {
            Ok(answer) if *answer == request * 2 + 1 => {}
            Ok(answer) => return fail(&format!("call {i}: {} for {request}", *answer)),
            Err(e) => return fail(&format!("call {i}: {e}")),
        }
    }
    report("calls", arg_u64(count));
    0
}

/// `notify:NS SERVICE STOP_FILE`: notifies ids 1, 2 and 3 every 20 ms until STOP_FILE exists.
fn notify(args: &[&str]) -> i32 {
    let [namespace, service, stop_file] = args else { return fail("notify: bad arguments") };
    let node = node(namespace);
    let event = node.event(service).open_or_create().expect("the event service");
    let notifier = event.notifier().expect("a notifier");
    report("ready", 1);
    while !Path::new(stop_file).exists() {
        for id in [1, 2, 3] {
            if let Err(e) = notifier.notify(id) {
                return fail(&format!("notify: {e}"));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    0
}

/// `listen:NS SERVICE`: waits until ids 1, 2 and 3 were each seen (30 s at most); reports
/// `ids` (their number) and fails on any other id.
fn listen(args: &[&str]) -> i32 {
    let [namespace, service] = args else { return fail("listen: bad arguments") };
    let node = node(namespace);
    let event = node.event(service).open_or_create().expect("the event service");
    let listener = event.listener().expect("a listener");
    report("ready", 1);
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut strategy = Blocking::new();
    while seen.len() < 3 && Instant::now() < deadline {
        match listener.wait(&mut strategy, Some(Duration::from_millis(100))) {
            Ok(ids) => {
                if let Some(bad) = ids.iter().find(|id| !(1..=3).contains(*id)) {
                    return fail(&format!("unexpected event id {bad}"));
                }
                seen.extend(ids);
            }
            Err(shmlane::ReceiveError::TimedOut(_)) => {}
            Err(e) => return fail(&format!("wait: {e}")),
        }
    }
    report("ids", seen.len());
    0
}

// ---------------------------------------------------------------------------------------------
// Helpers of the parent.

#[allow(clippy::too_many_arguments)]
fn spawn_publisher(
    hosts: &Hosts,
    namespace: &str,
    service: &str,
    count: u64,
    policy: &str,
    version: u64,
    tag: u64,
    interval_us: u64,
    slices: bool,
) -> ChildProc {
    let args = [
        namespace.to_owned(),
        service.to_owned(),
        count.to_string(),
        policy.to_owned(),
        version.to_string(),
        tag.to_string(),
        interval_us.to_string(),
        if slices { "1" } else { "0" }.to_owned(),
        hosts.stop_path(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_child("publish", &args)
}

#[allow(clippy::too_many_arguments)]
fn spawn_subscriber(
    hosts: &Hosts,
    namespace: &str,
    service: &str,
    expect: u64,
    policy: &str,
    version: u64,
    mode: &str,
    quiet_ms: u64,
) -> ChildProc {
    let args = [
        namespace.to_owned(),
        service.to_owned(),
        expect.to_string(),
        policy.to_owned(),
        version.to_string(),
        mode.to_owned(),
        quiet_ms.to_string(),
        hosts.stop_path(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_child("subscribe", &args)
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// Topics one way: single values, and slices of 1 to 17 elements (beyond the base pool's 4),
/// in order; counters on both sides agree; no type mismatch, nothing malformed.
#[test]
fn topics_one_way_values_and_slices() {
    let _serial = process_lock();
    let hosts = Hosts::new("one");
    let mut a = hosts.bridge_a(&["--out", "*"]);
    let mut b = hosts.bridge_b(&["--in", "*"]);
    a.wait_connected();
    b.wait_connected();
    const N: u64 = 2_000;
    let mut values_sub = spawn_subscriber(&hosts, &hosts.b, "values", N, "block", 0, "strict", 300);
    let mut slices_sub = spawn_subscriber(&hosts, &hosts.b, "slices", N, "block", 0, "slices", 300);
    values_sub.report("ready", CHILD);
    slices_sub.report("ready", CHILD);
    let mut values_pub = spawn_publisher(&hosts, &hosts.a, "values", N, "block", 0, 1, 0, false);
    let mut slices_pub = spawn_publisher(&hosts, &hosts.a, "slices", N, "block", 0, 2, 0, true);
    assert_eq!(values_sub.report_u64("received", CHILD), N);
    assert_eq!(values_sub.report_u64("extra", CHILD), 0);
    assert_eq!(slices_sub.report_u64("received", CHILD), N);
    assert_eq!(values_pub.report_u64("sent", CHILD), N);
    assert_eq!(slices_pub.report_u64("sent", CHILD), N);
    hosts.finish();
    for child in [&mut values_sub, &mut slices_sub, &mut values_pub, &mut slices_pub] {
        child.expect_success(CHILD);
    }
    b.wait_until("B counted every sample in", STATS_TIMEOUT, |b| {
        b.counter("topic", "values", "samples_in") == N
            && b.counter("topic", "slices", "samples_in") == N
    });
    let slice_bytes: u64 = (0..N).map(|i| 8 * slice_len(i) as u64).sum();
    assert_eq!(b.counter("topic", "slices", "bytes_in"), slice_bytes);
    assert_eq!(a.counter("topic", "values", "samples_out"), N);
    assert_eq!(a.counter("topic", "slices", "bytes_out"), slice_bytes);
    for (bridge, name) in [(&a, "values"), (&a, "slices"), (&b, "values"), (&b, "slices")] {
        for counter in ["drops", "type_mismatches", "malformed", "echoes"] {
            assert_eq!(
                bridge.counter("topic", name, counter),
                0,
                "{} {name} {counter}",
                bridge.name
            );
        }
    }
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// Both bridges carry the topic both ways, with a publisher and a subscriber on each host:
/// each subscriber gets its own host's samples and the other's, each exactly once and in
/// order, and nothing more (no echo); each bridge skipped its own samples.
#[test]
fn topics_both_ways_without_echo() {
    let _serial = process_lock();
    let hosts = Hosts::new("both");
    let mut a = hosts.bridge_a(&["--both", "chat"]);
    let mut b = hosts.bridge_b(&["--both", "chat"]);
    a.wait_connected();
    b.wait_connected();
    const N: u64 = 1_000;
    let mut sub_a = spawn_subscriber(&hosts, &hosts.a, "chat", 2 * N, "block", 0, "strict", 1_000);
    let mut sub_b = spawn_subscriber(&hosts, &hosts.b, "chat", 2 * N, "block", 0, "strict", 1_000);
    sub_a.report("ready", CHILD);
    sub_b.report("ready", CHILD);
    // Both bridges hold a subscriber on both sides before anyone publishes.
    a.wait_until("A matched", STATS_TIMEOUT, |a| a.flag("topic", "chat", "matched"));
    b.wait_until("B matched", STATS_TIMEOUT, |b| b.flag("topic", "chat", "matched"));
    let mut pub_a = spawn_publisher(&hosts, &hosts.a, "chat", N, "block", 0, 1, 100, false);
    let mut pub_b = spawn_publisher(&hosts, &hosts.b, "chat", N, "block", 0, 2, 100, false);
    for sub in [&mut sub_a, &mut sub_b] {
        assert_eq!(sub.report_u64("received", CHILD), 2 * N);
        assert_eq!(sub.report_u64("extra", CHILD), 0, "an echo came back");
        assert_eq!(sub.report_u64("tag_1", CHILD), N);
        assert_eq!(sub.report_u64("tag_2", CHILD), N);
    }
    hosts.finish();
    for child in [&mut sub_a, &mut sub_b, &mut pub_a, &mut pub_b] {
        child.expect_success(CHILD);
    }
    for bridge in [&a, &b] {
        assert_eq!(
            bridge.counter("topic", "chat", "samples_out"),
            N,
            "{} sent only its host's",
            bridge.name
        );
        assert_eq!(bridge.counter("topic", "chat", "samples_in"), N, "{}", bridge.name);
        assert_eq!(bridge.counter("topic", "chat", "echoes"), N, "{} skipped its own", bridge.name);
    }
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// 100,000 samples through both bridges under the Block policy, end to end: every one, in
/// order, none dropped anywhere.
#[test]
fn hundred_thousand_in_order_with_block() {
    hundred_thousand_in_order(&["--out", "feed"]);
}

/// The same with bridge A's out carrier busy polling (`--busy-poll`).
#[test]
fn hundred_thousand_in_order_with_block_busy_polled() {
    hundred_thousand_in_order(&["--out", "feed", "--busy-poll"]);
}

fn hundred_thousand_in_order(a_args: &[&str]) {
    let _serial = process_lock();
    let hosts = Hosts::new("block");
    let mut a = hosts.bridge_a(a_args);
    let mut b = hosts.bridge_b(&["--in", "feed"]);
    carry_in_order(&hosts, &mut a, &mut b, 100_000, 7, Duration::from_secs(120));
    assert_eq!(a.counter("topic", "feed", "drops"), 0);
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// Once bridges A and B are connected, `n` samples (tag `tag`) of the Block topic `feed` go
/// from a publisher on A's host to a subscriber on B's within `within`: all of them, in order,
/// nothing more, and B counts every one and drops none.
fn carry_in_order(
    hosts: &Hosts,
    a: &mut BridgeProc,
    b: &mut BridgeProc,
    n: u64,
    tag: u64,
    within: Duration,
) {
    a.wait_connected();
    b.wait_connected();
    let mut sub = spawn_subscriber(hosts, &hosts.b, "feed", n, "block", 0, "strict", 200);
    sub.report("ready", CHILD);
    let mut publisher = spawn_publisher(hosts, &hosts.a, "feed", n, "block", 0, tag, 0, false);
    assert_eq!(sub.report_u64("received", within), n);
    assert_eq!(sub.report_u64("extra", CHILD), 0);
    assert_eq!(publisher.report_u64("sent", CHILD), n);
    hosts.finish();
    sub.expect_success(CHILD);
    publisher.expect_success(CHILD);
    b.wait_until("B counted every sample", STATS_TIMEOUT, |b| {
        b.counter("topic", "feed", "samples_in") == n
    });
    assert_eq!(b.counter("topic", "feed", "drops"), 0);
}

/// More hosts: a zenoh router (a session in router mode, in this test process, as `zenohd`
/// would run) and two bridges in client mode that know only the router. 10,000 samples under
/// the Block policy cross through it, in order, none dropped.
#[test]
fn bridges_meet_through_a_router() {
    use zenoh::Wait;
    let _serial = process_lock();
    let hosts = Hosts::new("router");
    let endpoint = format!("tcp/127.0.0.1:{}", hosts.port);
    let mut config = zenoh::Config::default();
    for (key, value) in [
        ("mode", "\"router\"".to_owned()),
        ("listen/endpoints", format!("[\"{endpoint}\"]")),
        ("scouting/multicast/enabled", "false".to_owned()),
    ] {
        config.insert_json5(key, &value).expect("a router setting");
    }
    let router = zenoh::open(config).wait().expect("the zenoh router");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = dir.path().join("client.json5");
    std::fs::write(
        &client,
        format!("{{ mode: \"client\", connect: {{ endpoints: [\"{endpoint}\"] }} }}\n"),
    )
    .expect("write the client configuration");
    let client = client.display().to_string();
    let mut a = hosts.bridge(&hosts.a, &["--out", "feed"], &["--config", &client]);
    let mut b = hosts.bridge(&hosts.b, &["--in", "feed"], &["--config", &client]);
    carry_in_order(&hosts, &mut a, &mut b, 10_000, 3, Duration::from_secs(60));
    a.terminate();
    b.terminate();
    router.close().wait().expect("close the router");
    hosts.assert_clean();
}

/// The hosts disagree on the type's version: every sample is refused and counted, none is
/// delivered, and the log names both types.
#[test]
fn type_mismatch_is_refused() {
    let _serial = process_lock();
    let hosts = Hosts::new("type");
    let mut a = hosts.bridge_a(&["--out", "typed"]);
    let mut b = hosts.bridge_b(&["--in", "typed"]);
    a.wait_connected();
    b.wait_connected();
    // B's topic records version 2; A's publishes version 1.
    let mut sub = spawn_subscriber(&hosts, &hosts.b, "typed", 0, "drop", 2, "strict", 0);
    sub.report("ready", CHILD);
    let mut publisher = spawn_publisher(&hosts, &hosts.a, "typed", 20, "drop", 1, 0, 1_000, false);
    assert_eq!(publisher.report_u64("sent", CHILD), 20);
    b.wait_until("B refused all 20", STATS_TIMEOUT, |b| {
        b.counter("topic", "typed", "type_mismatches") == 20
    });
    hosts.finish();
    assert_eq!(sub.report_u64("received", CHILD), 0, "a refused sample was delivered");
    sub.expect_success(CHILD);
    publisher.expect_success(CHILD);
    assert_eq!(b.counter("topic", "typed", "samples_in"), 0);
    let log = b.stderr();
    assert!(
        log.contains("u64 (8 bytes, align 8, version 1)")
            && log.contains("u64 (8 bytes, align 8, version 2)"),
        "the refusal names both types:\n{log}"
    );
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// Clients on host A call a server on host B through the bridges; two clients at once each
/// get the answers to their own requests only. With the server gone, a call times out as
/// locally.
#[test]
fn rpc_across() {
    let _serial = process_lock();
    let hosts = Hosts::new("rpc");
    let mut a = hosts.bridge_a(&["--in", "calc"]);
    let mut b = hosts.bridge_b(&["--out", "calc"]);
    a.wait_connected();
    b.wait_connected();
    let mut server = spawn_child("serve", &[&hosts.b, "calc", &hosts.stop_path()]);
    server.report("ready", CHILD);
    let mut first = spawn_child("call", &[&hosts.a, "calc", "200", "1000"]);
    let mut second = spawn_child("call", &[&hosts.a, "calc", "200", "5000000"]);
    for client in [&mut first, &mut second] {
        assert_eq!(client.report_u64("calls", CHILD), 200);
        client.expect_success(CHILD);
    }
    hosts.finish();
    let served = server.report_u64("served", CHILD);
    server.expect_success(CHILD);
    assert!(served >= 402, "the server answered {served} calls");
    assert_eq!(b.counter("rpc", "calc", "type_mismatches"), 0);
    b.wait_until("B stopped serving the gone server", STATS_TIMEOUT, |b| {
        !b.flag("rpc", "calc", "out")
    });
    // No server now: a call through the bridges times out, as it would locally.
    let node = Node::builder("test").namespace(&hosts.a).create().expect("a node");
    let rpc = node.rpc::<u64, u64>("calc").open_or_create().expect("the rpc service");
    let client = rpc.client().expect("a client");
    let started = Instant::now();
    let result = client.call(1, &mut Blocking::new(), Some(Duration::from_millis(500)));
    let timed_out =
        matches!(result, Err(shmlane::CallError::Receive(shmlane::ReceiveError::TimedOut(_))));
    assert!(timed_out, "expected a timeout, got {result:?}");
    drop(result);
    assert!(started.elapsed() < Duration::from_secs(3));
    drop((client, rpc, node));
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// Event ids notified on host A reach a listener on host B.
#[test]
fn events_across() {
    let _serial = process_lock();
    let hosts = Hosts::new("ev");
    let mut a = hosts.bridge_a(&["--out", "alarms"]);
    let mut b = hosts.bridge_b(&["--in", "alarms"]);
    a.wait_connected();
    b.wait_connected();
    let mut notifier = spawn_child("notify", &[&hosts.a, "alarms", &hosts.stop_path()]);
    notifier.report("ready", CHILD);
    // The service exists on B once the first ids arrived; the listener joins then.
    b.wait_until("B delivered events", STATS_TIMEOUT, |b| {
        b.counter("event", "alarms", "samples_in") > 0
    });
    let mut listener = spawn_child("listen", &[&hosts.b, "alarms"]);
    assert_eq!(listener.report_u64("ids", CHILD), 3);
    listener.expect_success(CHILD);
    hosts.finish();
    notifier.expect_success(CHILD);
    assert!(a.counter("event", "alarms", "samples_out") > 0);
    assert_eq!(b.counter("event", "alarms", "type_mismatches"), 0);
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// Bridge A (the one publishers feed) is killed with SIGKILL and restarted on the same port
/// while its publisher keeps running: the publisher never waits on the dead bridge beyond the
/// facade's reclaim, the subscriber on B keeps an increasing sequence, and samples flow again
/// after the restart without restarting anything else.
#[test]
fn bridge_killed_and_restarted() {
    let _serial = process_lock();
    let hosts = Hosts::new("kill");
    let mut a = hosts.bridge_a(&["--out", "stream"]);
    let mut b = hosts.bridge_b(&["--in", "stream"]);
    a.wait_connected();
    b.wait_connected();
    let mut sub = spawn_subscriber(&hosts, &hosts.b, "stream", 0, "block", 0, "gaps", 0);
    sub.report("ready", CHILD);
    let mut publisher = spawn_publisher(&hosts, &hosts.a, "stream", 0, "block", 0, 3, 500, false);
    publisher.report("ready", CHILD);
    b.wait_until("samples flowing", STATS_TIMEOUT, |b| {
        b.counter("topic", "stream", "samples_in") > 200
    });
    a.kill();
    std::thread::sleep(Duration::from_millis(500));
    publisher.assert_running();
    let mut a = a.restart();
    a.wait_connected();
    b.wait_connected();
    a.wait_until("the restarted bridge carries samples", STATS_TIMEOUT, |a| {
        a.counter("topic", "stream", "samples_out") > 200
    });
    let before = b.counter("topic", "stream", "samples_in");
    b.wait_until("B delivers after the restart", STATS_TIMEOUT, |b| {
        b.counter("topic", "stream", "samples_in") > before + 200
    });
    hosts.finish();
    let sent = publisher.report_u64("sent", CHILD);
    let max_send_us = publisher.report_u64("max_send_us", CHILD);
    let received = sub.report_u64("received", CHILD);
    publisher.expect_success(CHILD);
    sub.expect_success(CHILD);
    assert!(received > 400 && received <= sent, "received {received} of {sent}");
    // A Block publisher waits for a dead subscriber only until the facade proves it dead.
    assert!(max_send_us < 1_000_000, "a send waited {max_send_us} µs");
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// The link is cut (the peer bridge B is killed) and restored (B started again): A's
/// publisher, under the Block policy, is never held up; A lets go of its local subscriber
/// while nobody listens and takes one again when B is back; samples flow again.
#[test]
fn link_cut_and_restored() {
    let _serial = process_lock();
    let hosts = Hosts::new("cut");
    let mut a = hosts.bridge_a(&["--out", "ticks"]);
    let mut b = hosts.bridge_b(&["--in", "ticks"]);
    a.wait_connected();
    b.wait_connected();
    let mut sub = spawn_subscriber(&hosts, &hosts.b, "ticks", 0, "block", 0, "gaps", 0);
    sub.report("ready", CHILD);
    let mut publisher = spawn_publisher(&hosts, &hosts.a, "ticks", 0, "block", 0, 4, 300, false);
    publisher.report("ready", CHILD);
    b.wait_until("samples flowing", STATS_TIMEOUT, |b| {
        b.counter("topic", "ticks", "samples_in") > 200
    });
    b.kill();
    a.wait_until("A unmatched", STATS_TIMEOUT, |a| !a.flag("topic", "ticks", "matched"));
    let out_before = a.counter("topic", "ticks", "samples_out");
    std::thread::sleep(Duration::from_millis(300));
    publisher.assert_running();
    let mut b = b.restart();
    b.wait_connected();
    a.wait_until("A matched again", STATS_TIMEOUT, |a| a.flag("topic", "ticks", "matched"));
    a.wait_until("A carries again", STATS_TIMEOUT, |a| {
        a.counter("topic", "ticks", "samples_out") > out_before + 200
    });
    b.wait_until("B delivers again", STATS_TIMEOUT, |b| {
        b.counter("topic", "ticks", "samples_in") > 200
    });
    hosts.finish();
    let max_send_us = publisher.report_u64("max_send_us", CHILD);
    assert!(sub.report_u64("received", CHILD) > 400);
    publisher.expect_success(CHILD);
    sub.expect_success(CHILD);
    assert!(max_send_us < 1_000_000, "a send waited {max_send_us} µs");
    a.terminate();
    b.terminate();
    hosts.assert_clean();
}

/// Garbage on a bridge's keys (no attachment, bad magic, a wrong length, an oversized payload,
/// a token whose key names no service) is counted and dropped; the bridge goes on delivering
/// valid samples.
#[test]
fn malformed_messages_are_counted_and_dropped() {
    use shmlane_bridge::wire;
    use zenoh::Wait;

    let _serial = process_lock();
    let hosts = Hosts::new("bad");
    let connect = format!("tcp/127.0.0.1:{}", hosts.port);
    let listen = format!("tcp/127.0.0.1:{}", hosts.port);
    let mut b =
        hosts.bridge(&hosts.b, &["--in", "*"], &["--listen", &listen, "--max-payload", "1024"]);
    let config = shmlane_bridge::zenoh_config(None, &[], &[connect]).expect("a zenoh config");
    let session = zenoh::open(config).wait().expect("a zenoh session");
    b.wait_connected();
    let mut sub = spawn_subscriber(&hosts, &hosts.b, "raw", 3, "drop", 0, "strict", 300);
    sub.report("ready", CHILD);
    // As a remote bridge would: a liveliness token names each carried service (one of them
    // not a valid service name).
    let key = hosts.template.replace("{service}", "raw") + "/topic";
    let bad_key = hosts.template.replace("{service}", "bad.name") + "/topic";
    let liveliness = session.liveliness();
    let _token = liveliness.declare_token(key.as_str()).wait().expect("a token");
    let _bad_token = liveliness.declare_token(bad_key.as_str()).wait().expect("a token");
    let publisher = session.declare_publisher(key.as_str()).wait().expect("a publisher");
    let deadline = Instant::now() + STATS_TIMEOUT;
    while !publisher.matching_status().wait().expect("matching").matching() {
        assert!(Instant::now() < deadline, "the bridge's subscriber never matched");
        std::thread::sleep(Duration::from_millis(10));
    }
    let spec = shmlane::TypeSpec::of::<u64>(0);
    let config = shmlane::TopicConfig { max_slice_len: 4, ..shmlane::TopicConfig::default() };
    let decl = wire::topic_decl(&spec, &config);
    let good = |seq: u64, len: u32| wire::topic_message(99, seq, &decl, &[len]);
    publisher.put(7u64.to_ne_bytes().to_vec()).wait().expect("put"); // no attachment
    publisher.put(vec![0u8; 8]).attachment(b"garbage".to_vec()).wait().expect("put");
    publisher.put(vec![0u8; 5]).attachment(good(0, 5)).wait().expect("put"); // not whole u64s
    publisher.put(vec![0u8; 2048]).attachment(good(1, 2048)).wait().expect("put"); // oversized
    for i in 0..3u64 {
        publisher.put(i.to_ne_bytes().to_vec()).attachment(good(2 + i, 8)).wait().expect("put");
    }
    assert_eq!(sub.report_u64("received", CHILD), 3);
    hosts.finish();
    sub.expect_success(CHILD);
    b.wait_until("four malformed and one unattributed counted", STATS_TIMEOUT, |b| {
        b.counter("topic", "raw", "malformed") == 4
            && b.stats().and_then(|s| s.get("unattributed")?.as_u64()) == Some(1)
    });
    assert_eq!(b.counter("topic", "raw", "samples_in"), 3);
    drop(publisher);
    session.close().wait().expect("close the session");
    b.terminate();
    hosts.assert_clean();
}
