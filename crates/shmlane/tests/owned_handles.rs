//! Handles own their share of their service: an engine struct stores a topic's publisher
//! without borrowing the topic, handles move to the threads that use them, and they outlive
//! the `Topic`, `Rpc` or `Event` they came from (whose clean-up waits for the last of them).

use std::path::Path;
use std::thread;
use std::time::Duration;

use shmlane::notify::Blocking;
use shmlane::{Client, Event, Listener, Node, Notifier, Publisher, Rpc, Server, Subscriber, Topic};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Quote {
    sequence: u64,
    price: f64,
}

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

fn node(tag: &str) -> Node {
    let namespace = format!("own{}{tag}", std::process::id());
    Node::builder("test").namespace(namespace).create().unwrap()
}

fn control_segment(node: &Node, kind: &str, service: &str) -> bool {
    Path::new(&format!("/dev/shm/shmlane.{}.{kind}.{service}", node.namespace())).exists()
}

#[test]
fn every_handle_is_send_and_the_services_are_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Node>();
    send_sync::<Topic<Quote>>();
    send_sync::<Rpc<Quote, u64>>();
    send_sync::<Event>();
    send_sync::<Notifier>();
    send::<Publisher<Quote>>();
    send::<Subscriber<Quote>>();
    send::<Server<Quote, u64>>();
    send::<Client<Quote, u64>>();
    send::<Listener>();
}

/// What an engine embeds: its publisher, with no topic to borrow from.
struct Engine {
    quotes: Publisher<Quote>,
    sent: u64,
}

impl Engine {
    fn open(node: &Node) -> Engine {
        let topic = node.topic::<Quote>("engine").subscriber_capacity(1024).open_or_create();
        // The topic handle is dropped here; the publisher keeps the topic open.
        Engine { quotes: topic.unwrap().publisher().unwrap(), sent: 0 }
    }

    fn quote(&mut self, price: f64) {
        self.sent += 1;
        let mut loan = self.quotes.loan().unwrap();
        *loan = Quote { sequence: self.sent, price };
        self.quotes.send(loan).unwrap();
    }
}

#[test]
fn an_engine_owns_its_publisher_and_runs_on_another_thread() {
    let node = node("engine");
    let mut engine = Engine::open(&node);
    let subscriber = node.topic::<Quote>("engine").open().unwrap().subscriber().unwrap();
    let receiver = thread::spawn(move || {
        let mut strategy = Blocking::new();
        (1..=500)
            .map(|_| subscriber.receive_with(&mut strategy, TIMEOUT).map(|s| s.read()).unwrap())
            .collect::<Vec<_>>()
    });
    while engine.quotes.subscribers() == 0 {
        thread::yield_now();
    }
    let engine = thread::spawn(move || {
        for i in 0..500 {
            engine.quote(100.0 + i as f64);
        }
        engine
    })
    .join()
    .unwrap();
    let received = receiver.join().unwrap();
    let expected: Vec<_> =
        (1..=500).map(|i| Quote { sequence: i, price: 99.0 + i as f64 }).collect();
    assert_eq!(received, expected);
    assert!(control_segment(&node, "topic", "engine"), "the engine's publisher holds it open");
    drop(engine);
    assert!(!control_segment(&node, "topic", "engine"), "the last handle removed the topic");
}

#[test]
fn a_publisher_and_subscriber_outlive_their_topic_handle() {
    let node = node("outlive");
    let topic = node.topic::<Quote>("outlive").open_or_create().unwrap();
    let (publisher, subscriber) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
    drop(topic);
    publisher.send_copy(Quote { sequence: 1, price: 1.5 }).unwrap();
    let sample = subscriber.receive().unwrap().expect("sent after the topic handle dropped");
    assert_eq!(sample.read(), Quote { sequence: 1, price: 1.5 });
    drop(sample);
    drop(publisher);
    assert!(control_segment(&node, "topic", "outlive"), "the subscriber holds it open");
    drop(subscriber);
    assert!(!control_segment(&node, "topic", "outlive"));
}

#[test]
fn a_server_answers_from_its_own_thread_after_the_rpc_handle_drops() {
    let node = node("rpc");
    let rpc = node.rpc::<Quote, u64>("prices").open_or_create().unwrap();
    let (server, client) = (rpc.server().unwrap(), rpc.client().unwrap());
    drop(rpc);
    let server = thread::spawn(move || {
        let mut strategy = Blocking::new();
        for _ in 0..3 {
            let request = server.receive_with(&mut strategy, TIMEOUT).unwrap();
            let answer = request.read().sequence * 10;
            server.respond(&request, answer).unwrap();
        }
    });
    let mut strategy = Blocking::new();
    for sequence in 1..=3 {
        let response = client.call(Quote { sequence, price: 0.0 }, &mut strategy, TIMEOUT).unwrap();
        assert_eq!(*response, sequence * 10);
    }
    server.join().unwrap();
}

#[test]
fn a_listener_waits_on_its_own_thread_after_the_event_handle_drops() {
    let node = node("event");
    let event = node.event("ready").open_or_create().unwrap();
    let (listener, notifier) = (event.listener().unwrap(), event.notifier().unwrap());
    drop(event);
    let waiter = thread::spawn(move || listener.wait(&mut Blocking::new(), TIMEOUT).unwrap());
    notifier.notify(7).unwrap();
    assert_eq!(waiter.join().unwrap(), vec![7]);
    assert!(control_segment(&node, "event", "ready"), "the notifier holds it open");
    drop(notifier);
    assert!(!control_segment(&node, "event", "ready"));
}
