//! The run-time typed API ([`RawTopic`], [`RawRpc`]): the same topics as the typed API's,
//! joined by a process that knows the payload type only by its description ([`TypeSpec`]),
//! as the C ABI and Python do. Checked between real processes, both ways, for values that
//! travel inline, in blocks and as slices; and the errors: a type that differs, a layout no
//! type has, a create without a type, bytes that are not whole elements.

use std::time::Duration;

use shmlane::notify::Blocking;
use shmlane::{
    ConfigError, Node, PublishError, TopicConfig, TopicError, TypeInfo, TypeSpec, ZeroCopy,
};
use shmlane_testkit::{
    child_spec, exit_child, fail, process_lock, report, spawn_child, split_spec,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A market-data tick of 64 bytes: more than travels inline, so it goes in a block.
#[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Quote {
    instrument: u32,
    size: u32,
    bid: f64,
    ask: f64,
    sequence: u64,
    venue: [u8; 32],
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn node(tag: &str) -> Node {
    let namespace = format!("r{}{tag}", std::process::id());
    Node::builder("test").namespace(namespace).create().unwrap()
}

fn spec_of<T: ZeroCopy>() -> TypeSpec {
    TypeSpec::from(TypeInfo::of::<T>(0))
}

fn quote(sequence: u64) -> Quote {
    let mut venue = [0; 32];
    venue[..4].copy_from_slice(b"XNAS");
    Quote {
        instrument: 7,
        size: 100,
        bid: sequence as f64,
        ask: sequence as f64 + 0.5,
        sequence,
        venue,
    }
}

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("raw_publish", [namespace, count]) => raw_publish(namespace, count.parse().unwrap()),
        ("raw_subscribe", [namespace, count]) => raw_subscribe(namespace, count.parse().unwrap()),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Publishes `count` quotes through the raw API (loans and copies alternating), a slice of
/// three `u64`s and one inline `u64`, once the test's subscriber is served.
fn raw_publish(namespace: &str, count: u64) {
    let node = Node::builder("raw-pub").namespace(namespace).create().unwrap();
    let quotes = node.raw_topic("quotes").type_spec(spec_of::<Quote>()).open().unwrap();
    let words = node.raw_topic("words").open().unwrap(); // adopts the recorded u64
    let (quotes, words) = (quotes.publisher().unwrap(), words.publisher().unwrap());
    shmlane_testkit::wait_for("the subscribers", TIMEOUT, || {
        quotes.subscribers() == 1 && words.subscribers() == 1
    });
    for sequence in 1..=count {
        let value = quote(sequence);
        if sequence % 2 == 0 {
            quotes.send_copy(value.as_bytes()).unwrap();
        } else {
            let mut loan = loop {
                match quotes.loan(1) {
                    Ok(loan) => break loan,
                    Err(_) => std::thread::yield_now(),
                }
            };
            loan.copy_from_slice(value.as_bytes());
            quotes.send(loan).unwrap();
        }
    }
    let mut slice = words.loan(3).unwrap();
    slice.copy_from_slice([1u64, 2, 3].as_bytes());
    words.send(slice).unwrap();
    words.send_copy(&42u64.to_ne_bytes()).unwrap();
    report("sent", count);
}

/// Receives `count` quotes through the raw API and checks each against the typed value.
fn raw_subscribe(namespace: &str, count: u64) {
    let node = Node::builder("raw-sub").namespace(namespace).create().unwrap();
    let topic = node.raw_topic("quotes").open().unwrap();
    if topic.type_spec() != &spec_of::<Quote>() {
        fail(3, format!("adopted {}, not Quote", topic.type_spec()));
    }
    let subscriber = topic.subscriber().unwrap();
    report("ready", 1);
    let mut strategy = Blocking::new();
    for sequence in 1..=count {
        let sample = subscriber.receive_with(&mut strategy, Some(TIMEOUT)).unwrap();
        if (sample.len(), &sample[..]) != (1, quote(sequence).as_bytes()) {
            fail(4, format!("quote {sequence}: {} elements, {:?}", sample.len(), &sample[..]));
        }
    }
    report("received", count);
}

#[test]
fn a_raw_publisher_process_reaches_a_typed_subscriber_in_blocks_slices_and_inline() {
    let _serial = process_lock();
    let node = node("rawpub");
    let quotes = node.topic::<Quote>("quotes").subscriber_capacity(1024).create().unwrap();
    let words = node.topic::<u64>("words").max_slice_len(4).create().unwrap();
    let (quotes, words) = (quotes.subscriber().unwrap(), words.subscriber().unwrap());
    let mut child = spawn_child("raw_publish", &[node.namespace(), "500"]);
    assert_eq!(child.report_u64("sent", TIMEOUT), 500);
    for sequence in 1..=500 {
        let sample = quotes.receive().unwrap().expect("every quote was queued before the report");
        assert_eq!(*sample, quote(sequence));
    }
    let slice = words.receive().unwrap().expect("the slice");
    assert_eq!(slice.as_slice(), [1, 2, 3]);
    drop(slice);
    assert_eq!(*words.receive().unwrap().expect("the inline word"), 42);
    child.expect_success(TIMEOUT);
}

#[test]
fn a_typed_publisher_reaches_a_raw_subscriber_process() {
    let _serial = process_lock();
    let node = node("rawsub");
    let topic = node.topic::<Quote>("quotes").subscriber_capacity(1024).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let mut child = spawn_child("raw_subscribe", &[node.namespace(), "500"]);
    child.report("ready", TIMEOUT);
    shmlane_testkit::wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
    for sequence in 1..=500 {
        assert_eq!(publisher.send_copy(quote(sequence)).unwrap(), 1);
    }
    assert_eq!(child.report_u64("received", TIMEOUT), 500);
    child.expect_success(TIMEOUT);
}

#[test]
fn raw_samples_are_read_in_place_and_loans_written_in_place() {
    let node = node("inplace");
    let config = TopicConfig { max_slice_len: 1024, ..TopicConfig::default() };
    let spec = TypeSpec::new("audio::Frame", 8, 4, 1); // two f32 channels
    let topic = node.raw_topic("frames").type_spec(spec).config(config).create().unwrap();
    let (publisher, subscriber) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
    let mut loan = publisher.loan(1024).unwrap();
    assert_eq!((loan.len(), loan.len() * 8), (1024, loan.as_ref().len()));
    let written = loan.as_ptr() as usize;
    loan.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    publisher.send(loan).unwrap();
    let sample = subscriber.receive().unwrap().expect("sent above");
    assert_eq!((sample.len(), sample.as_ref().len()), (1024, 8192));
    assert!(sample.iter().enumerate().all(|(i, &b)| b == i as u8));
    assert_eq!(sample.to_vec(), &sample[..]);
    // Another mapping of the same block: the publisher's and the subscriber's addresses differ,
    // but neither copied (the subscriber's lies in its own mapping, not a private buffer).
    assert_ne!(sample.as_ptr() as usize, written);
    assert_eq!(subscriber.held(), 1);
    drop(sample);
    assert_eq!(subscriber.held(), 0);
}

/// `RawSubscriber::drain` hands every queued sample over as bytes, in order: inline elements
/// in batches (exactly the element's bytes) and a slice in a block, holding none.
#[test]
fn a_raw_drain_hands_over_inline_samples_and_slices_as_bytes() {
    let node = node("drain");
    let config = TopicConfig { max_slice_len: 4, ..TopicConfig::default() };
    let spec = TypeSpec::new("audio::Frame", 8, 4, 1);
    let topic = node.raw_topic("frames").type_spec(spec).config(config).create().unwrap();
    let (publisher, subscriber) = (topic.publisher().unwrap(), topic.subscriber().unwrap());
    for i in 0..20u8 {
        publisher.send_copy(&[i; 8]).unwrap();
    }
    publisher.send_copy(&[99; 24]).unwrap(); // three elements: a block
    publisher.send_copy(&[100; 8]).unwrap();
    let mut got = Vec::new();
    assert_eq!(subscriber.drain(usize::MAX, |bytes| got.push(bytes.to_vec())).unwrap(), 22);
    let mut expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 8]).collect();
    expected.extend([vec![99; 24], vec![100; 8]]);
    assert_eq!(got, expected);
    assert_eq!(subscriber.held(), 0);
    assert_eq!(subscriber.drain(8, |_| panic!("nothing is queued")).unwrap(), 0);
}

/// Sends in `RawPublisher::in_batch` wake a subscriber that sleeps on them: at the end of the
/// batch, and before each wait for room under Block (a subscriber left asleep would re-check
/// only after `Blocking`'s 100 ms period, past the 80 ms block timeout); nested batches wake
/// once, at the outer end.
#[test]
fn a_raw_batch_wakes_a_sleeping_subscriber_before_waiting_for_room() {
    let node = node("rawbatch");
    let config = TopicConfig {
        subscriber_capacity: 4,
        overflow: shmlane::Overflow::Block,
        ..TopicConfig::default()
    };
    let topic = node.raw_topic("batch").type_spec(spec_of::<u64>()).config(config).create();
    let topic = topic.unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    assert_eq!(publisher.subscribers(), 1);
    publisher.set_block_timeout(Duration::from_millis(80));
    let reader = std::thread::spawn(move || {
        let mut strategy = Blocking::new();
        let mut got = Vec::new();
        while got.len() < 64 {
            let sample = subscriber.receive_with(&mut strategy, Some(TIMEOUT)).unwrap();
            got.push(u64::from_ne_bytes(sample[..8].try_into().unwrap()));
        }
        got
    });
    let sent: Result<Vec<usize>, _> = publisher.in_batch(|| {
        (0..64u64).map(|v| publisher.in_batch(|| publisher.send_copy(&v.to_ne_bytes()))).collect()
    });
    assert!(sent.unwrap().iter().all(|&n| n == 1));
    assert_eq!(reader.join().unwrap(), (0..64).collect::<Vec<u64>>());
}

#[test]
fn the_type_is_checked_like_a_rust_type() {
    let node = node("types");
    let _quotes = node.topic::<Quote>("quotes").create().unwrap(); // kept while opened
    let wrong = TypeSpec { version: 1, ..spec_of::<Quote>() };
    let err = node.raw_topic("quotes").type_spec(wrong).open().unwrap_err();
    assert!(matches!(err, TopicError::TypeMismatch { version: 1, found_version: 0, .. }), "{err}");
    let renamed = TypeSpec { name: "Quote".into(), ..spec_of::<Quote>() };
    let err = node.raw_topic("quotes").type_spec(renamed).open().unwrap_err();
    assert!(err.to_string().contains("raw::Quote"), "names the topic's type: {err}");

    // And the other way: a typed open of a topic a raw create made.
    let _bytes =
        node.raw_topic("bytes").type_spec(TypeSpec::new("blob", 16, 1, 0)).create().unwrap();
    let err = node.topic::<[u8; 16]>("bytes").open().unwrap_err();
    assert!(matches!(err, TopicError::TypeMismatch { .. }), "{err}");
    let same = node.raw_topic("bytes").type_spec(TypeSpec::new("blob", 16, 1, 0)).open();
    assert_eq!(same.unwrap().type_spec().size, 16);
}

#[test]
fn a_layout_no_type_has_is_refused() {
    let node = node("layout");
    for (size, align) in [(0, 1), (8, 3), (12, 8), (8, 8192), (u64::MAX, 8)] {
        let spec = TypeSpec::new("bad", size, align, 0);
        let err = node.raw_topic("bad").type_spec(spec).create().unwrap_err();
        let refused = matches!(err, TopicError::InvalidConfig(ConfigError::TypeLayout { .. }));
        assert!(refused, "size {size} align {align}: {err}");
    }
}

#[test]
fn a_topic_cannot_be_created_without_its_type() {
    let node = node("notype");
    for err in [
        node.raw_topic("absent").create().unwrap_err(),
        node.raw_topic("absent").open_or_create().unwrap_err(),
    ] {
        assert!(matches!(err, TopicError::TypeRequired { .. }), "{err}");
    }
    assert!(matches!(node.raw_topic("absent").open().unwrap_err(), TopicError::Open(_)));
}

#[test]
fn bytes_that_are_not_whole_elements_are_refused() {
    let node = node("bytelen");
    let spec = TypeSpec::new("pair", 16, 8, 0);
    let topic = node.raw_topic("pairs").type_spec(spec).create().unwrap();
    let publisher = topic.publisher().unwrap();
    for len in [0, 8, 24] {
        let err = publisher.send_copy(&vec![0; len]).unwrap_err();
        assert!(matches!(err, PublishError::BadByteLen { element_size: 16, .. }), "{err}");
    }
    assert!(matches!(publisher.loan(0).unwrap_err(), PublishError::BadSliceLen { len: 0 }));
    let subscriber = topic.subscriber().unwrap();
    assert_eq!(publisher.send_copy(&[7; 32]).unwrap(), 1);
    assert_eq!(subscriber.receive().unwrap().expect("sent above").len(), 2);
}

#[test]
fn a_raw_client_calls_a_typed_server_and_a_typed_client_a_raw_server() {
    let node = node("rpc");
    let typed = node.rpc::<u64, Quote>("quotes").open_or_create().unwrap();
    let raw = node.raw_rpc("quotes").open_or_create().unwrap(); // adopts both types
    assert_eq!((raw.request_type(), raw.response_type()), (&spec_of::<u64>(), &spec_of::<Quote>()));
    let (server, client) = (typed.server().unwrap(), raw.client().unwrap());
    let pending = client.send(&9u64.to_ne_bytes()).unwrap();
    let request = server.receive().unwrap().expect("sent above");
    server.respond(&request, quote(*request)).unwrap();
    drop(request);
    let response = client.receive_with(pending, &mut Blocking::new(), Some(TIMEOUT)).unwrap();
    assert_eq!(&response[..], quote(9).as_bytes());
    drop(response);
    drop((server, client));

    let (server, client) = (raw.server().unwrap(), typed.client().unwrap());
    let pending = client.send(11).unwrap();
    let request = server.receive().unwrap().expect("sent above");
    assert_eq!(&request[..], &11u64.to_ne_bytes());
    server.respond(&request, quote(11).as_bytes()).unwrap();
    let response = client.receive_with(pending, &mut Blocking::new(), Some(TIMEOUT)).unwrap();
    assert_eq!(*response, quote(11));
}
