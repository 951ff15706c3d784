//! A WebSocket client that stops reading never holds up the others: a monitor sampling every
//! 20 ms keeps a healthy client's deltas coming on time while another client's socket is
//! clogged, then drops the clogged one (counted in `shmlane_monitor_websocket_dropped_total`),
//! whose stream then ends.

#![forbid(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::{Monitor, namespace, start};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[test]
fn child_entry() {
    common::child_entry();
}

#[test]
fn a_clogged_client_is_dropped_and_the_others_keep_their_pace() {
    let ns = namespace("slow");
    let _leftovers = common::Leftovers::of(&ns);
    let monitor = Monitor::start(20, true, 16);
    let mut children = Vec::new();
    for topic in ["a", "b", "c", "d"] {
        children.push(start("subscribe", &[&ns, topic]));
        children.push(start("publish", &[&ns, topic, "2000"]));
    }
    common::runtime().block_on(async {
        // The clogged client: a small receive buffer, and it never reads after the handshake.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(monitor.addr).await.unwrap();
        let url = format!("ws://{}/api/live", monitor.addr);
        let (mut clogged, _) = tokio_tungstenite::client_async(&url, stream).await.unwrap();
        // The healthy client reads everything, timing the gaps between deltas.
        let mut healthy = common::connect(&monitor).await;
        let started = Instant::now();
        let samples = common::own_metric(&monitor, "shmlane_monitor_samples_total").await;
        let deadline = started + Duration::from_secs(60);
        let mut last = Instant::now();
        let mut longest = Duration::ZERO;
        let mut deltas = 0u64;
        let mut checked = Instant::now();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), healthy.next())
                .await
                .expect("the healthy client's deltas stopped")
                .expect("the healthy client stays connected")
                .expect("a message");
            if let Message::Text(_) = message {
                deltas += 1;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            if checked.elapsed() > Duration::from_millis(250) {
                checked = Instant::now();
                if common::own_metric(&monitor, "shmlane_monitor_websocket_dropped_total").await
                    >= 1.0
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the clogged client was never dropped");
        }
        let took = started.elapsed();
        let sampled = common::own_metric(&monitor, "shmlane_monitor_samples_total").await - samples;
        println!(
            "clogged client dropped after {took:?}; the monitor sampled {sampled} times, the \
             healthy client got {deltas} deltas, the longest gap {longest:?}"
        );
        // Every sample reached the healthy client (the last few may be on their way), none
        // far behind: the 5 s a client may fall behind before it is dropped.
        assert!(deltas as f64 >= sampled - 3.0, "{deltas} deltas of {sampled} samples");
        assert!(longest < Duration::from_secs(2), "the healthy client waited {longest:?}");
        // The clogged client's stream ends: what was queued for it, then a close or EOF.
        let end = Instant::now() + common::WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, clogged.next()).await {
                Err(_) => panic!("the clogged client's stream never ended"),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
    });
    drop(children);
}
