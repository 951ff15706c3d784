//! Discovery lists services with their kind, payload type and live participants.

use shmlane::Node;
use shmlane::discovery::{ServiceKind, list};
use shmlane_segment::Liveness;

#[test]
fn services_are_listed_with_their_kind_type_and_participants() {
    let namespace = format!("d{}", std::process::id());
    let node = Node::builder("test").namespace(&namespace).create().unwrap();
    let topic = node.topic::<u64>("ticks").create().unwrap();
    let _publisher = topic.publisher().unwrap();
    let _subscribers = [topic.subscriber().unwrap(), topic.subscriber().unwrap()];
    let event = node.event("bell").open_or_create().unwrap();
    let _listener = event.listener().unwrap();
    let _rpc = node.rpc::<u64, u64>("adder").open_or_create().unwrap();

    let mut ours: Vec<_> =
        list(None).unwrap().into_iter().filter(|s| s.namespace == namespace).collect();
    ours.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = ours.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(
        names,
        [
            ("adder.req", ServiceKind::Rpc),
            ("adder.resp", ServiceKind::Rpc),
            ("bell", ServiceKind::Event),
            ("ticks", ServiceKind::Topic),
        ],
        "payload segments are not services"
    );
    let ticks = &ours[3];
    assert!(ticks.problem.is_none(), "{:?}", ticks.problem);
    let (type_name, size, version) = ticks.payload.clone().unwrap();
    assert_eq!((type_name.as_str(), size, version), ("u64", 8, 0));
    let me = std::process::id();
    assert_eq!(ticks.publishers.len(), 1);
    assert_eq!(ticks.subscribers.len(), 2);
    for peer in ticks.publishers.iter().chain(&ticks.subscribers) {
        assert_eq!((peer.pid, peer.liveness), (Some(me), Liveness::Alive));
    }
    assert_eq!(ours[2].subscribers.len(), 1, "the listener");
}

#[test]
fn nodes_are_listed_with_liveness_and_a_heartbeat_that_moves() {
    use std::time::Duration;
    let namespace = format!("n{}", std::process::id());
    let beating = Node::builder("beating")
        .namespace(&namespace)
        .heartbeat(Duration::from_millis(10))
        .create()
        .unwrap();
    let manual = Node::builder("manual").namespace(&namespace).create().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    manual.heartbeat();
    let ours = |name: &str| {
        shmlane::discovery::nodes(None)
            .unwrap()
            .into_iter()
            .find(|n| n.namespace == namespace && n.name == name)
            .unwrap_or_else(|| panic!("node {name} not listed"))
    };
    let (b, m) = (ours("beating"), ours("manual"));
    assert_eq!((b.pid, b.liveness), (Some(std::process::id()), Liveness::Alive));
    assert!(b.heartbeat_age.unwrap() < Duration::from_millis(150), "{b:?}");
    assert!(m.heartbeat_age.unwrap() < Duration::from_millis(150), "{m:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(ours("manual").heartbeat_age.unwrap() >= Duration::from_millis(200), "no thread");
    assert!(ours("beating").heartbeat_age.unwrap() < Duration::from_millis(150));
    drop(beating);
    assert!(
        shmlane::discovery::nodes(None)
            .unwrap()
            .iter()
            .all(|n| n.name != "beating" || n.namespace != namespace),
        "a dropped node is unregistered"
    );
    drop(manual);
}
