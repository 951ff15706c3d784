//! Load: 200 WebSocket clients on a real monitor (a child process) for 10 s while 4 topics run
//! (`SHMLANE_MONITOR_LOAD_SECS` sets the seconds, at least 3), with malformed upgrades and
//! garbage thrown in: the monitor stays up, every client gets its deltas in order, the 201st
//! client is refused with 503, and the monitor's resident memory stays flat (it grows by less
//! than [`RSS_GROWTH_KIB`] from when all clients are connected to the end).

#![forbid(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::{Monitor, connect, namespace, next_json, start};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Clients at once.
const CLIENTS: usize = 200;
/// The most the monitor's RSS may grow during the run, in KiB.
const RSS_GROWTH_KIB: u64 = 8 * 1024;
/// The sampling interval, in milliseconds.
const INTERVAL_MS: u64 = 100;

#[test]
fn child_entry() {
    common::child_entry();
}

/// The run's length: `SHMLANE_MONITOR_LOAD_SECS`, default 10, at least 3.
fn seconds() -> u64 {
    std::env::var("SHMLANE_MONITOR_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .max(3)
}

/// What one client saw.
#[derive(Debug)]
struct Seen {
    deltas: u64,
    closed: Option<String>,
}

/// Reads deltas until `end`, checking that their sequence numbers go up.
async fn client(monitor_addr: std::net::SocketAddr, end: Instant) -> Seen {
    let url = format!("ws://{monitor_addr}/api/live");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
    let mut seen = Seen { deltas: 0, closed: None };
    let mut last = 0;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return seen;
        }
        let Ok(message) = tokio::time::timeout(left, socket.next()).await else { return seen };
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                let seq = value["seq"].as_u64().unwrap_or(last);
                if value["type"] == "delta" {
                    assert!(seq > last, "deltas in order: {seq} after {last}");
                    seen.deltas += 1;
                }
                last = seq;
            }
            Some(Ok(Message::Close(frame))) => {
                seen.closed = Some(format!("{frame:?}"));
                return seen;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                seen.closed = Some(e.to_string());
                return seen;
            }
            None => {
                seen.closed = Some("ended".into());
                return seen;
            }
        }
    }
}

/// Requests that are not WebSocket upgrades, or not HTTP at all.
async fn garbage(addr: std::net::SocketAddr) {
    let requests: [&[u8]; 6] = [
        b"GET /api/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /api/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ???\r\n\r\n",
        b"POST /api/live HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all \x00\xff\r\n\r\n",
        b"GET /api/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\xff\x00\x00\x00\x00\x7f\xff\xff\xff",
        b"GET /api/live HTTP/1.1\r\nHost: x\r\n",
    ];
    for request in requests {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { continue };
        let _ = stream.write_all(request).await;
        let mut answer = vec![0; 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut answer)).await;
    }
}

#[test]
fn two_hundred_clients_and_garbage_leave_the_monitor_up_and_flat() {
    let ns = namespace("load");
    let _leftovers = common::Leftovers::of(&ns);
    let monitor = Monitor::start(INTERVAL_MS, true, CLIENTS);
    let mut children = Vec::new();
    for topic in ["t0", "t1", "t2", "t3"] {
        children.push(start("subscribe", &[&ns, topic]));
        children.push(start("publish", &[&ns, topic, "1000"]));
    }
    let seconds = seconds();
    common::runtime().block_on(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = monitor.rss_kib();
        let started = Instant::now();
        let end = started + Duration::from_secs(seconds) + Duration::from_secs(2);
        let clients: Vec<_> =
            (0..CLIENTS).map(|_| tokio::spawn(client(monitor.addr, end))).collect();
        // All connected, as the monitor counts them.
        let deadline = Instant::now() + common::WAIT;
        loop {
            let connected = common::own_metric(&monitor, "shmlane_monitor_websocket_clients").await;
            if connected == CLIENTS as f64 {
                break;
            }
            assert!(Instant::now() < deadline, "only {connected} clients ever connected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let samples = common::own_metric(&monitor, "shmlane_monitor_samples_total").await;
        // One more is refused before the upgrade, with a JSON 503.
        let url = format!("ws://{}/api/live", monitor.addr);
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 503);
                let body = response.body().as_deref().unwrap_or_default();
                let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
                assert_eq!(json["error"], "too_many_clients");
            }
            other => panic!("client {} was not refused: {other:?}", CLIENTS + 1),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let baseline = monitor.rss_kib();
        let mut peak = baseline;
        let mut rounds = 0;
        while Instant::now() + Duration::from_millis(500) < end {
            garbage(monitor.addr).await;
            rounds += 1;
            peak = peak.max(monitor.rss_kib());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut deltas = Vec::new();
        for client in clients {
            let seen = client.await.expect("a client task");
            assert!(seen.closed.is_none(), "a client was closed: {seen:?}");
            deltas.push(seen.deltas);
        }
        peak = peak.max(monitor.rss_kib());
        // Every client got every sample taken while they were all connected (but the last
        // few, taken as the clients stopped reading).
        let sampled = common::own_metric(&monitor, "shmlane_monitor_samples_total").await - samples;
        let expected = sampled as u64;
        let fewest = deltas.iter().copied().min().unwrap_or(0);
        println!(
            "{CLIENTS} clients for {seconds} s: deltas per client {fewest}..{} ({expected} samples \
             while all were connected), {rounds} rounds of garbage; monitor RSS {idle} KiB without clients, {baseline} \
             KiB with all connected, peak {peak} KiB",
            deltas.iter().max().unwrap_or(&0),
        );
        assert!(fewest + 5 >= expected, "a client got {fewest} deltas of {expected} samples");
        assert!(
            peak <= baseline + RSS_GROWTH_KIB,
            "the monitor's RSS grew from {baseline} KiB to {peak} KiB"
        );
        // Still up and answering, every client gone.
        let (status, json) =
            common::get_json(&monitor.url(&format!("/api/services?namespace={ns}"))).await;
        assert_eq!(status, 200);
        assert_eq!(json["services"].as_array().map(Vec::len), Some(4), "{json}");
        let mut socket = connect(&monitor).await;
        let snapshot = next_json(&mut socket).await;
        assert_eq!(snapshot["type"], "snapshot");
        for topic in ["t0", "t1", "t2", "t3"] {
            let service = common::service(&snapshot, &format!("{ns}.topic.{topic}"))
                .unwrap_or_else(|| panic!("{topic} in the snapshot"));
            let rate = service["rates"]["sent"].as_f64().unwrap();
            assert!(rate > 100.0, "{topic} still publishing: {service}");
        }
    });
    drop(children);
}
