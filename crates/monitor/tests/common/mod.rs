//! What the monitor's tests share: the child roles (the monitor itself, and the processes that
//! make live topics), and clients for its HTTP and WebSocket endpoints.
//!
//! Every test binary has a `child_entry` test that calls [`child_entry`]; a test re-executes
//! its binary as a child with a role ([`shmlane_testkit::spawn_child`]). Every test names its
//! services in a namespace of its own ([`namespace`]), so tests never share topics.

#![allow(dead_code)] // each test binary uses some of these

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use shmlane::{Node, Topic};
use shmlane_testkit::{
    ChildProc, ORPHAN_LIMIT, child_spec, exit_child, fail, report, sleep_until_killed, spawn_child,
    split_spec,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The payload of the test topics: a sequence number and a marker the peek test looks for.
pub type Payload = [u64; 4];
/// The marker in a payload's second word.
pub const MARKER: u64 = 0x5348_4d4c_414e_4521; // "!ENALMHS" little-endian: "SHMLANE!"
/// Deadline for what a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// A namespace unique to this process and `tag`.
pub fn namespace(tag: &str) -> String {
    format!("m{}{tag}", std::process::id())
}

/// Runs the child role this process was started for, if any.
pub fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("monitor", [interval_ms, peek, max_clients]) => {
            let config = shmlane_monitor::Config {
                listen: "127.0.0.1:0".parse().expect("an address"),
                interval: Duration::from_millis(parse(interval_ms)),
                peek: *peek == "1",
                max_clients: parse(max_clients) as usize,
                ..shmlane_monitor::Config::default()
            };
            let outcome = shmlane_monitor::run(config, |addr| report("addr", addr));
            if let Err(e) = outcome {
                fail(3, e);
            }
        }
        ("publish", [namespace, service, hz]) => publish(namespace, service, parse(hz)),
        ("subscribe", [namespace, service]) => subscribe(namespace, service),
        ("stall", [namespace, service]) => stall(namespace, service),
        ("services", [namespace]) => services(namespace),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

fn parse(arg: &str) -> u64 {
    arg.parse().unwrap_or_else(|_| fail(2, format!("not a number: {arg}")))
}

fn node(namespace: &str, name: &str) -> Node {
    Node::builder(name).namespace(namespace).create().unwrap_or_else(|e| fail(3, e))
}

fn topic(node: &Node, service: &str) -> Topic<Payload> {
    node.topic::<Payload>(service).open_or_create().unwrap_or_else(|e| fail(3, e))
}

/// Publishes on `service` at about `hz` samples a second until killed.
fn publish(namespace: &str, service: &str, hz: u64) {
    let node = node(namespace, "pub");
    let publisher = topic(&node, service).publisher().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    let period = Duration::from_secs_f64(1.0 / hz.max(1) as f64);
    let started = Instant::now();
    let mut next = started;
    let mut sequence = 0;
    while started.elapsed() < ORPHAN_LIMIT {
        sequence += 1;
        if let Err(e) = publisher.send_copy([sequence, MARKER, sequence * 2, 7]) {
            fail(3, format!("send {sequence}: {e}"));
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    fail(shmlane_testkit::EXIT_ORPHANED, "nobody killed me");
}

/// Receives from `service` as samples come, until killed.
fn subscribe(namespace: &str, service: &str) {
    let node = node(namespace, "sub");
    let subscriber = topic(&node, service).subscriber().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    let started = Instant::now();
    while started.elapsed() < ORPHAN_LIMIT {
        while let Ok(Some(sample)) = subscriber.receive() {
            drop(sample);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    fail(shmlane_testkit::EXIT_ORPHANED, "nobody killed me");
}

/// Subscribes to `service` and never receives: its queue fills, then drops.
fn stall(namespace: &str, service: &str) {
    let node = node(namespace, "stall");
    let _subscriber = topic(&node, service).subscriber().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    sleep_until_killed();
}

/// A topic, an event and an rpc service whose counters then hold still: topic `ticks` (a
/// publisher that sent 10, a subscriber that took 4, one that took none), event `bell` (a
/// listener that took 3 notifications), rpc `adder` (a server and a client, one request).
fn services(namespace: &str) {
    let node = node(namespace, "services");
    let ticks = topic(&node, "ticks");
    let taker = ticks.subscriber().unwrap_or_else(|e| fail(3, e));
    let _staller = ticks.subscriber().unwrap_or_else(|e| fail(3, e));
    let publisher = ticks.publisher().unwrap_or_else(|e| fail(3, e));
    for sequence in 1..=10 {
        publisher.send_copy([sequence, MARKER, 0, 0]).unwrap_or_else(|e| fail(3, e));
    }
    for _ in 0..4 {
        match taker.receive() {
            Ok(Some(sample)) => drop(sample),
            other => fail(3, format!("expected a sample: {other:?}")),
        }
    }
    let bell = node.event("bell").open_or_create().unwrap_or_else(|e| fail(3, e));
    let listener = bell.listener().unwrap_or_else(|e| fail(3, e));
    let notifier = bell.notifier().unwrap_or_else(|e| fail(3, e));
    for id in [1, 2, 3] {
        notifier.notify(id).unwrap_or_else(|e| fail(3, e));
    }
    let _taken = listener.try_take();
    let adder = node.rpc::<u64, u64>("adder").open_or_create().unwrap_or_else(|e| fail(3, e));
    let _server = adder.server().unwrap_or_else(|e| fail(3, e));
    let client = adder.client().unwrap_or_else(|e| fail(3, e));
    let _pending = client.send(41).unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    sleep_until_killed();
}

/// Removes, when dropped, the segments a test's namespace left in `/dev/shm` (those of
/// children killed with SIGKILL). Take it first in a test, so it drops after the children and
/// the monitor, whose drops kill them.
pub struct Leftovers(String);

impl Leftovers {
    pub fn of(namespace: &str) -> Leftovers {
        Leftovers(namespace.to_owned())
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let ours = |entry: &shmlane::discovery::SegmentEntry| {
            entry.namespace.as_deref() == Some(self.0.as_str())
        };
        if let Ok(removal) = shmlane::discovery::remove_stale(None, ours) {
            for (entry, error) in removal.failed {
                eprintln!("cannot remove {}: {error}", entry.segment.name);
            }
        }
    }
}

/// A monitor running as a child process, and where it listens.
pub struct Monitor {
    pub child: ChildProc,
    pub addr: SocketAddr,
}

impl Monitor {
    /// Starts a monitor sampling every `interval_ms`, with peeks on or off, taking at most
    /// `max_clients` WebSocket clients.
    pub fn start(interval_ms: u64, peek: bool, max_clients: usize) -> Monitor {
        let args = [interval_ms.to_string(), u8::from(peek).to_string(), max_clients.to_string()];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn_child("monitor", &args);
        let addr = child.report("addr", WAIT);
        let addr = addr.parse().unwrap_or_else(|e| panic!("monitor address {addr:?}: {e}"));
        Monitor { child, addr }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its resident set size in KiB, from `/proc/PID/status`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid()))
            .expect("the monitor's /proc status");
        let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("a VmRSS line");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
    }
}

/// A child running `role` with `args`, once it reported ready.
pub fn start(role: &str, args: &[&str]) -> ChildProc {
    let mut child = spawn_child(role, args);
    child.report("ready", WAIT);
    child
}

/// `GET url`: the status and the body parsed as JSON.
pub async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("GET {url} ({status}): not JSON ({e}): {text}"));
    (status, json)
}

/// The value of the monitor's own unlabelled metric `metric` (a counter or a gauge), from its
/// `/metrics` parsed by a Prometheus text-format parser.
pub async fn own_metric(monitor: &Monitor, metric: &str) -> f64 {
    let text = reqwest::get(monitor.url("/metrics")).await.unwrap().text().await.unwrap();
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let sample = scrape.samples.iter().find(|sample| sample.metric == metric);
    match sample.map(|sample| &sample.value) {
        Some(prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Gauge(value)) => {
            *value
        }
        other => panic!("{metric}: {other:?}"),
    }
}

/// A WebSocket client of `/api/live`.
pub type Live = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `/api/live`.
pub async fn connect(monitor: &Monitor) -> Live {
    let url = format!("ws://{}/api/live", monitor.addr);
    let (socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    socket
}

/// The next JSON text message, skipping pings; panics on close or after [`WAIT`].
pub async fn next_json(socket: &mut Live) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {WAIT:?}"))
            .expect("the WebSocket stays open")
            .expect("a WebSocket message");
        match message {
            Message::Text(text) => {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
            }
            Message::Close(frame) => panic!("the monitor closed the WebSocket: {frame:?}"),
            _ => {}
        }
    }
}

/// Sends `value` as a text message.
pub async fn send_json(socket: &mut Live, value: Value) {
    socket.send(Message::text(value.to_string())).await.expect("send on the WebSocket");
}

/// A service of a snapshot's or delta's `services` by id.
pub fn service<'a>(message: &'a Value, id: &str) -> Option<&'a Value> {
    message["services"].as_array()?.iter().find(|service| service["id"] == id)
}

/// Applies snapshots and deltas to a view of the services, by id.
#[derive(Debug, Default)]
pub struct View {
    pub services: std::collections::BTreeMap<String, Value>,
    pub seq: u64,
}

impl View {
    /// Takes in one message; returns its type.
    pub fn apply(&mut self, message: &Value) -> String {
        let kind = message["type"].as_str().unwrap_or_default().to_owned();
        if kind == "snapshot" {
            self.services.clear();
        }
        if kind == "snapshot" || kind == "delta" {
            for service in message["services"].as_array().into_iter().flatten() {
                let id = service["id"].as_str().expect("a service id").to_owned();
                self.services.insert(id, service.clone());
            }
            for id in message["removed"].as_array().into_iter().flatten() {
                self.services.remove(id.as_str().unwrap_or_default());
            }
            let seq = message["seq"].as_u64().expect("a seq");
            assert!(seq > self.seq || kind == "snapshot", "seq goes up: {seq} after {}", self.seq);
            self.seq = seq;
        }
        kind
    }
}

/// Reads messages into `view` until `done` holds for it; panics after `timeout`.
pub async fn until(
    socket: &mut Live,
    view: &mut View,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&View) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(view) {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        let message = next_json(socket).await;
        view.apply(&message);
    }
}

/// A tokio runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
