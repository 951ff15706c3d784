//! The REST endpoints against a real monitor on 127.0.0.1, with services made by a child
//! process: each answer checked field by field against the facade's own discovery
//! (`discovery::list`, `inspect`, `nodes`), and the errors as JSON with their status codes.

#![forbid(unsafe_code)]

mod common;

use common::{Monitor, get_json, namespace, start};
use serde_json::Value;
use shmlane::discovery::{self, Peer, ServiceKind};
use shmlane_segment::{Liveness, SegmentName};

#[test]
fn child_entry() {
    common::child_entry();
}

fn liveness(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        Liveness::Unknown => "unknown",
    }
}

/// `json` is `peer`, field by field.
fn check_peer(json: &Value, peer: &Peer, what: &str) {
    assert_eq!(json["slot"], peer.slot, "{what}: slot");
    assert_eq!(json["pid"], serde_json::json!(peer.pid), "{what}: pid");
    assert_eq!(json["liveness"], liveness(peer.liveness), "{what}: liveness");
    assert_eq!(json["drops"], peer.drops, "{what}: drops");
    let c = &peer.counters;
    let counters = &json["counters"];
    for (name, value) in [
        ("sent", c.sent),
        ("loans_failed", c.loans_failed),
        ("received", c.received),
        ("held", c.held),
        ("timeouts", c.timeouts),
        ("notifications", c.notifications),
    ] {
        assert_eq!(counters[name], value, "{what}: counters.{name}");
    }
}

#[test]
fn rest_answers_are_what_discovery_says() {
    let ns = namespace("rest");
    let _leftovers = common::Leftovers::of(&ns);
    let monitor = Monitor::start(100, true, 64);
    let _services = start("services", &[&ns]);
    common::runtime().block_on(async {
        // GET /api/services, against discovery::list.
        let (status, json) = get_json(&monitor.url(&format!("/api/services?namespace={ns}"))).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["dir"], "/dev/shm");
        let listed: Vec<_> =
            discovery::list(None).unwrap().into_iter().filter(|s| s.namespace == ns).collect();
        let answered = json["services"].as_array().expect("a services array");
        assert_eq!(answered.len(), listed.len(), "{json}");
        assert_eq!(listed.len(), 4, "ticks, bell, adder.req, adder.resp: {listed:?}");
        for service in &listed {
            let kind = match service.kind {
                ServiceKind::Topic => "topic",
                ServiceKind::Rpc => "rpc",
                ServiceKind::Event => "event",
            };
            let id = service.segment.name.as_str();
            let json = answered
                .iter()
                .find(|s| s["id"] == id)
                .unwrap_or_else(|| panic!("{id} not answered: {answered:?}"));
            assert_eq!(json["namespace"], ns);
            assert_eq!(json["name"], service.name);
            assert_eq!(json["kind"], kind);
            assert_eq!(json["state"], "alive");
            assert_eq!(json["problem"], serde_json::json!(service.problem));
            match &service.payload {
                Some((name, size, version)) => {
                    assert_eq!(json["payload_type"]["name"], *name);
                    assert_eq!(json["payload_type"]["size"], *size);
                    assert_eq!(json["payload_type"]["version"], *version);
                }
                None => assert!(json["payload_type"].is_null(), "{json}"),
            }
            let segment = &json["segment"];
            assert_eq!(segment["size"], service.segment.size);
            assert_eq!(segment["file"], service.segment.path.display().to_string());
            assert_eq!(
                segment["creator_pid"],
                serde_json::json!(service.segment.creator.map(|c| c.pid))
            );
            for (side, peers) in
                [("publishers", &service.publishers), ("subscribers", &service.subscribers)]
            {
                let array = json[side].as_array().expect("a peer array");
                assert_eq!(array.len(), peers.len(), "{id} {side}");
                for (json, peer) in array.iter().zip(peers) {
                    check_peer(json, peer, &format!("{id} {side}"));
                }
            }
        }
        // What the child did shows in the counters.
        let ticks = answered.iter().find(|s| s["name"] == "ticks").unwrap();
        assert_eq!(ticks["publishers"][0]["counters"]["sent"], 10);
        let received: Vec<_> = ticks["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["counters"]["received"])
            .collect();
        assert_eq!(received, [4, 0]);
        let bell = answered.iter().find(|s| s["name"] == "bell").unwrap();
        assert_eq!(bell["subscribers"][0]["counters"]["notifications"], 3);

        // GET /api/services/{id}, against discovery::inspect.
        let id = format!("{ns}.topic.ticks");
        let (status, json) = get_json(&monitor.url(&format!("/api/services/{id}"))).await;
        assert_eq!(status, 200, "{json}");
        let inspection = discovery::inspect(None, &SegmentName::new(&id).unwrap()).unwrap();
        let header = inspection.header.expect("a header");
        assert_eq!(json["id"], id);
        assert_eq!(json["layout"], "topic control segment");
        assert_eq!(json["layout"], serde_json::json!(inspection.layout));
        assert_eq!(json["header"]["total_size"], header.total_size);
        assert_eq!(json["header"]["creator_pid"], header.creator_pid);
        assert_eq!(json["header"]["format_version"], header.format_version);
        assert_eq!(json["header"]["created_unix_ns"], header.created_unix_ns);
        assert_eq!(
            json["header"]["layout_fingerprint"],
            format!("{:#018x}", header.layout_fingerprint)
        );
        assert_eq!(json["header"]["init_state"], "ready");
        let topic = inspection.topic.expect("the topic's detail");
        let t = &json["topic"];
        assert_eq!(t["type"]["name"], topic.type_name);
        assert_eq!(t["type"]["size"], topic.type_size);
        assert_eq!(t["type"]["align"], topic.type_align);
        assert_eq!(t["type"]["version"], topic.type_version);
        let config = &topic.config;
        for (name, value) in [
            ("max_publishers", config.max_publishers),
            ("max_subscribers", config.max_subscribers),
            ("subscriber_capacity", config.subscriber_capacity),
            ("max_held", config.max_held),
            ("max_loans", config.max_loans),
            ("max_slice_len", config.max_slice_len),
            ("history", config.history),
        ] {
            assert_eq!(t["config"][name], value, "config.{name}");
        }
        assert_eq!(t["config"]["overflow"], format!("{:?}", config.overflow));
        assert_eq!(t["problems"], serde_json::json!(topic.problems));
        assert_eq!(t["publishers"].as_array().unwrap().len(), topic.publishers.len());
        for (json, publisher) in t["publishers"].as_array().unwrap().iter().zip(&topic.publishers) {
            check_peer(json, &publisher.peer, "inspected publisher");
            assert_eq!(json["generation"], publisher.generation);
            let pools = json["pools"].as_array().unwrap();
            assert_eq!(pools.len(), publisher.pools.len());
            for (json, pool) in pools.iter().zip(&publisher.pools) {
                assert_eq!(json["name"], pool.name.as_str());
                assert_eq!(json["blocks"], pool.blocks);
                assert_eq!(json["block_size"], pool.block_size);
                assert_eq!(json["max_len"], pool.max_len);
                assert_eq!(json["queued"], serde_json::json!(pool.queued));
            }
        }
        assert_eq!(t["subscribers"].as_array().unwrap().len(), topic.subscribers.len());
        for (json, subscriber) in
            t["subscribers"].as_array().unwrap().iter().zip(&topic.subscribers)
        {
            check_peer(json, &subscriber.peer, "inspected subscriber");
            assert_eq!(json["generation"], subscriber.generation);
            let queues = json["queues"].as_array().unwrap();
            assert_eq!(queues.len(), subscriber.queues.len());
            for (json, queue) in queues.iter().zip(&subscriber.queues) {
                assert_eq!(json["publisher"], queue.publisher);
                assert_eq!(json["served"], queue.served);
                assert_eq!(json["queued"], queue.queued);
                assert_eq!(json["inline"], queue.inline);
                assert_eq!(json["capacity"], queue.capacity);
                assert_eq!(json["returned"], queue.returned);
            }
        }
        // The staller took none of the 10 (the taker's 6 left may sit in its private read-ahead).
        assert_eq!(t["subscribers"][1]["queues"][0]["queued"], 10, "{t}");

        // A bare name one service has resolves to it; one that two have is a conflict.
        let (status, bare) =
            get_json(&monitor.url(&format!("/api/services/ticks?namespace={ns}"))).await;
        assert_eq!((status, &bare["id"]), (200, &json["id"]), "{bare}");
        let (status, error) =
            get_json(&monitor.url(&format!("/api/services/adder?namespace={ns}"))).await;
        assert_eq!(status, 409, "{error}");
        assert_eq!(error["error"], "ambiguous");
        let candidates = error["candidates"].as_array().unwrap();
        assert_eq!(candidates, &[format!("{ns}.rpc.adder.req"), format!("{ns}.rpc.adder.resp")]);
        let (status, request) =
            get_json(&monitor.url(&format!("/api/services/{ns}.rpc.adder.req"))).await;
        assert_eq!(status, 200, "{request}");
        assert_eq!(request["kind"], "rpc");
        assert_eq!(request["publishers"][0]["counters"]["sent"], 1, "the client's request");
        let (status, event) =
            get_json(&monitor.url(&format!("/api/services/{ns}.event.bell"))).await;
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["layout"], "event service");
        assert!(event["topic"].is_null());

        // GET /api/nodes, against discovery::nodes.
        let (status, json) = get_json(&monitor.url(&format!("/api/nodes?namespace={ns}"))).await;
        assert_eq!(status, 200, "{json}");
        let nodes: Vec<_> =
            discovery::nodes(None).unwrap().into_iter().filter(|n| n.namespace == ns).collect();
        let answered = json["nodes"].as_array().unwrap();
        assert_eq!(answered.len(), nodes.len());
        assert_eq!(nodes.len(), 1, "the child's one node");
        for (json, node) in answered.iter().zip(&nodes) {
            assert_eq!(json["namespace"], node.namespace);
            assert_eq!(json["name"], node.name);
            assert_eq!(json["pid"], serde_json::json!(node.pid));
            assert_eq!(json["liveness"], liveness(node.liveness));
            let id = json["id"].as_str().unwrap();
            assert!(id.starts_with(&format!("{ns}.node.services.")), "{id}");
            assert_eq!(json["heartbeat_age_ns"].is_null(), node.heartbeat_age.is_none());
        }
    });
}

#[test]
fn errors_are_json_with_their_status() {
    let ns = namespace("errors");
    let _leftovers = common::Leftovers::of(&ns);
    let monitor = Monitor::start(100, true, 64);
    common::runtime().block_on(async {
        let cases = [
            (format!("/api/services/{ns}.topic.nothing"), 404, "not_found"),
            (format!("/api/services/nothing?namespace={ns}"), 404, "not_found"),
            (format!("/api/services/{ns}.rpc.nothing.req"), 404, "not_found"),
            ("/api/nope".to_owned(), 404, "no_route"),
            ("/nope/deeper".to_owned(), 404, "no_route"),
            ("/api/services/bad!name".to_owned(), 400, "bad_name"),
            ("/api/services/tick%20s".to_owned(), 400, "bad_name"),
            (format!("/api/services/{ns}.topic.a%2Fb"), 400, "bad_name"),
            (format!("/api/services/{ns}.queue.ticks"), 400, "bad_name"),
            (format!("/api/services/{ns}.rpc.adder"), 400, "bad_name"),
            (format!("/api/services/{}", "x".repeat(65)), 400, "bad_name"),
            ("/api/services/%FF".to_owned(), 400, "bad_name"),
            ("/api/services?namespace=bad.ns".to_owned(), 400, "bad_name"),
            ("/api/nodes?namespace=".to_owned(), 400, "bad_name"),
            ("/api/live".to_owned(), 400, "bad_upgrade"),
        ];
        for (path, status, code) in cases {
            let (got, json) = get_json(&monitor.url(&path)).await;
            assert_eq!(got, status, "{path}: {json}");
            assert_eq!(json["error"], code, "{path}: {json}");
            assert_eq!(json["status"], status, "{path}: {json}");
            let message = json["message"].as_str().unwrap_or_default();
            assert!(message.len() > 10, "{path}: a message that says what to do: {json}");
        }
    });
}
