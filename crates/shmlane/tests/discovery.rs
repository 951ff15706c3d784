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

#[test]
fn counters_show_what_each_slot_holder_did() {
    use shmlane::discovery::{Counters, ServiceInfo};
    use shmlane::notify::Blocking;
    use std::time::Duration;

    let namespace = format!("c{}", std::process::id());
    let node = Node::builder("test").namespace(&namespace).create().unwrap();
    let service = |name: &str| -> ServiceInfo {
        let found = list(None).unwrap().into_iter();
        found.into_iter().find(|s| s.namespace == namespace && s.name == name).expect("listed")
    };

    // A publisher sends 5 (2 inline, 3 in blocks) and runs out of loans once; a subscriber
    // takes 4 and holds 2 of them.
    let topic = node.topic::<[u64; 8]>("wide").max_loans(1).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    for n in 0..5 {
        publisher.send_copy([n; 8]).unwrap();
    }
    let loan = publisher.loan().unwrap();
    assert!(publisher.loan().is_err(), "one loan at a time");
    drop(loan);
    let held = [subscriber.receive().unwrap().unwrap(), subscriber.receive().unwrap().unwrap()];
    for _ in 0..2 {
        drop(subscriber.receive().unwrap().unwrap());
    }
    let wide = service("wide");
    let sent = Counters { sent: 5, loans_failed: 1, ..Counters::default() };
    assert_eq!(wide.publishers[0].counters, sent);
    let received = Counters { received: 4, held: 2, ..Counters::default() };
    assert_eq!(wide.subscribers[0].counters, received);
    drop(held);
    assert_eq!(service("wide").subscribers[0].counters.held, 0);

    // A listener counts the notifications it took; an rpc client its timed-out waits.
    let event = node.event("bell").open_or_create().unwrap();
    let listener = event.listener().unwrap();
    let notifier = event.notifier().unwrap();
    for id in [1, 2, 3] {
        notifier.notify(id).unwrap();
    }
    assert_eq!(listener.try_take(), [1, 2, 3]);
    assert_eq!(service("bell").subscribers[0].counters.notifications, 3);
    let rpc = node.rpc::<u64, u64>("slow").open_or_create().unwrap();
    let (_server, client) = (rpc.server().unwrap(), rpc.client().unwrap());
    let pending = client.send(1).unwrap();
    let timeout = Some(Duration::from_millis(5));
    assert!(client.receive_with(pending, &mut Blocking::new(), timeout).is_err());
    assert_eq!(service("slow.req").publishers[0].counters.sent, 1, "the request");
    assert_eq!(service("slow.resp").subscribers[0].counters.timeouts, 1);
}
