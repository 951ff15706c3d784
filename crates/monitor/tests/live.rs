//! The WebSocket `/api/live` against a real monitor: a client sees a topic's rate appear when a
//! publisher (a child process) starts, and its publisher turn dead after SIGKILL; a peek shows
//! the samples that publisher sends, through a subscriber that exists only while peeked.

#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use common::{MARKER, Monitor, View, connect, namespace, next_json, send_json, start, until};
use serde_json::json;
use shmlane::discovery;

#[test]
fn child_entry() {
    common::child_entry();
}

#[test]
fn a_rate_appears_when_a_publisher_starts_and_its_peer_dies_with_it() {
    let ns = namespace("live");
    let _leftovers = common::Leftovers::of(&ns);
    let id = format!("{ns}.topic.ticks");
    let monitor = Monitor::start(100, true, 64);
    common::runtime().block_on(async {
        let mut socket = connect(&monitor).await;
        let snapshot = next_json(&mut socket).await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        assert_eq!(snapshot["interval_ms"], 100);
        assert_eq!(snapshot["peek"], true);
        let mut view = View::default();
        view.apply(&snapshot);
        assert!(!view.services.contains_key(&id), "no topic yet");

        // A subscriber makes the topic: it shows, with no rate.
        let _subscriber = start("subscribe", &[&ns, "ticks"]);
        until(&mut socket, &mut view, "the topic", common::WAIT, |v| v.services.contains_key(&id))
            .await;
        let topic = &view.services[&id];
        assert_eq!(topic["kind"], "topic");
        assert_eq!(topic["rates"]["sent"], 0.0, "{topic}");
        assert_eq!(topic["subscribers"].as_array().unwrap().len(), 1);

        // A publisher starts at 500 samples a second: the rate appears, near that.
        let mut publisher = start("publish", &[&ns, "ticks", "500"]);
        until(&mut socket, &mut view, "a send rate", common::WAIT, |v| {
            v.services[&id]["rates"]["sent"].as_f64().unwrap_or(0.0) > 100.0
        })
        .await;
        until(&mut socket, &mut view, "the subscriber's receive rate", common::WAIT, |v| {
            v.services[&id]["rates"]["received"].as_f64().unwrap_or(0.0) > 100.0
        })
        .await;
        let topic = &view.services[&id];
        let rate = topic["rates"]["sent"].as_f64().unwrap();
        assert!(rate < 2000.0, "500/s sent, {rate}/s measured: {topic}");
        let peer = &topic["publishers"][0];
        assert_eq!(peer["pid"], publisher.pid(), "{topic}");
        assert_eq!(peer["liveness"], "alive");
        assert!(peer["rate"].as_f64().unwrap() > 100.0, "{peer}");
        assert!(topic["totals"]["sent"].as_u64().unwrap() > 0);
        assert_eq!(topic["dead_peers"], 0);

        // A peek: a subscriber of the monitor's own shows the latest sample's bytes.
        send_json(&mut socket, json!({"type": "peek", "service": id})).await;
        let mut peeked = None;
        let deadline = std::time::Instant::now() + common::WAIT;
        while peeked.is_none() {
            assert!(std::time::Instant::now() < deadline, "no peeked sample");
            let message = next_json(&mut socket).await;
            if view.apply(&message) == "peek" {
                assert_eq!(message["service"], id, "{message}");
                assert_ne!(message["status"], "error", "{message}");
                if !message["sample"].is_null() {
                    peeked = Some(message);
                }
            }
        }
        let peeked = peeked.unwrap();
        assert_eq!(peeked["type_name"], std::any::type_name::<common::Payload>());
        assert_eq!(peeked["element_size"], 32);
        let sample = &peeked["sample"];
        assert_eq!((sample["elements"].as_u64(), sample["bytes"].as_u64()), (Some(1), Some(32)));
        let hex = sample["hex"].as_str().unwrap();
        let word =
            |i: usize| u64::from_str_radix(&hex[i * 16..i * 16 + 16], 16).unwrap().swap_bytes();
        assert_eq!(word(1), MARKER, "the publisher's marker: {hex}");
        assert_eq!(word(2), word(0) * 2, "sequence, marker, 2 × sequence: {hex}");
        // The peek subscriber is in the topic, marked as the monitor's, and counted nowhere.
        until(&mut socket, &mut view, "the monitor's subscriber", common::WAIT, |v| {
            v.services[&id]["subscribers"].as_array().unwrap().iter().any(|s| s["monitor"] == true)
        })
        .await;
        let ours = |v: &View| {
            v.services[&id]["subscribers"].as_array().unwrap().iter().any(|s| s["monitor"] == true)
        };
        send_json(&mut socket, json!({"type": "unpeek"})).await;
        until(&mut socket, &mut view, "the peek subscriber gone", common::WAIT, |v| !ours(v)).await;
        let subscribers = view.services[&id]["subscribers"].as_array().unwrap().len();
        assert_eq!(subscribers, 1, "only the child's subscriber is left");

        // SIGKILL: the publisher turns dead, and its rate falls to 0.
        publisher.kill_while_running();
        until(&mut socket, &mut view, "a dead publisher", common::WAIT, |v| {
            v.services[&id]["publishers"][0]["liveness"] == "dead"
        })
        .await;
        until(&mut socket, &mut view, "the rate at 0", Duration::from_secs(5), |v| {
            v.services[&id]["rates"]["sent"] == 0.0
        })
        .await;
        let topic = &view.services[&id];
        assert_eq!(topic["dead_peers"], 1, "{topic}");
        assert_eq!(topic["subscribers"][0]["liveness"], "alive");
        // As discovery says.
        let listed = discovery::list(None).unwrap();
        let found = listed.iter().find(|s| s.segment.name.as_str() == id).unwrap();
        assert_eq!(found.publishers[0].liveness, shmlane_segment::Liveness::Dead);
    });
}

#[test]
fn bad_requests_get_an_error_message_and_the_socket_stays_open() {
    let ns = namespace("requests");
    let _leftovers = common::Leftovers::of(&ns);
    let monitor = Monitor::start(100, false, 64);
    common::runtime().block_on(async {
        let mut socket = connect(&monitor).await;
        let snapshot = next_json(&mut socket).await;
        assert_eq!(snapshot["peek"], false, "--no-peek");
        for request in [
            json!({"type": "peek", "service": format!("{ns}.topic.ticks")}),
            json!({"type": "dance"}),
            json!("not an object"),
        ] {
            send_json(&mut socket, request.clone()).await;
            loop {
                let message = next_json(&mut socket).await;
                if message["type"] == "error" {
                    assert!(message["message"].as_str().unwrap().len() > 10, "{message}");
                    break;
                }
                assert_eq!(message["type"], "delta", "{request}: {message}");
            }
        }
        let message = next_json(&mut socket).await;
        assert_eq!(message["type"], "delta", "still served: {message}");

        // A page of another origin may not connect.
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}/api/live", monitor.addr).into_client_request().unwrap();
        request.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 403);
                let body = response.body().as_deref().unwrap_or_default();
                let json: serde_json::Value = serde_json::from_slice(body).unwrap();
                assert_eq!(json["error"], "cross_origin");
            }
            other => panic!("a cross-origin page connected: {other:?}"),
        }
    });
}
