//! The instructions of the hot path, in one thread: what one message costs a publisher and a
//! subscriber when every line it touches is already in the cache, so that nothing but the
//! code's own length is measured. In a ping-pong between two processes the path from a
//! subscriber's claim of one sample to the store that publishes the next runs between two
//! cache-line transfers, and every nanosecond of it shows in the one-way latency (issue 15:
//! cutting the inline send's path moved `shmlane bench`'s 8 B pub/sub p50 by 10-15 ns).
//!
//! Per message, each in a loop of its own, the loops taking turns round by round:
//!
//! - `loan+send / receive`: a `Topic<u64>` (1 publisher, 1 subscriber slot, capacity 4, the
//!   ping-pong bench's settings), `loan`, write, `send`, then `receive` and drop the sample;
//! - `send_copy / receive`: the same with `send_copy`;
//! - `loan_slice 4 KiB / receive`: the same topic, a slice of 512 `u64` in a payload block
//!   (the sequence number written and read in place, nothing copied): the block path;
//! - `receive, nothing queued`: one empty poll (what a spinning subscriber repeats);
//! - `overflow queue push/pop`: the subscriber queue alone (`push_inline`, `pop_line_when`),
//!   the floor under the two first;
//! - `stamped SPSC push/pop`: the segment SPSC queue's protocol on the heap.
//!
//! `cargo bench -p shmlane-benches --bench hot_path [-- --rounds N]`; `-- --test` is a smoke
//! run of one short round.

use std::hint::black_box;
use std::time::Instant;

use shmlane::{Node, Publisher, Subscriber};
use shmlane_benches::peer;
use shmlane_benches::rounds::spread;
use shmlane_queue::{overflow, spsc};

/// Recorded rounds unless `--rounds` says otherwise.
const ROUNDS: usize = 5;
/// Messages per loop and round.
const MESSAGES: u64 = 10_000_000;
/// Elements of the block path's slice (4 KiB).
const SLICE: usize = 512;

/// One message through the facade: loan, write in place, send, receive, drop.
#[inline(never)]
fn loan_send_receive(publisher: &Publisher<u64>, subscriber: &Subscriber<u64>, seq: u64) -> u64 {
    let mut loan = publisher.loan().expect("loan");
    *loan = seq;
    publisher.send(loan).expect("send");
    let sample = subscriber.receive().expect("receive").expect("a sample was sent");
    *sample
}

/// One message by copy.
#[inline(never)]
fn copy_receive(publisher: &Publisher<u64>, subscriber: &Subscriber<u64>, seq: u64) -> u64 {
    publisher.send_copy(seq).expect("send_copy");
    let sample = subscriber.receive().expect("receive").expect("a sample was sent");
    *sample
}

/// One message in a payload block: loan a slice, write its first element, send, receive,
/// read the first element in place, drop.
#[inline(never)]
fn slice_receive(publisher: &Publisher<u64>, subscriber: &Subscriber<u64>, seq: u64) -> u64 {
    let mut loan = publisher.loan_slice(SLICE).expect("loan_slice");
    loan[0] = seq;
    publisher.send_slice(loan).expect("send_slice");
    let sample = subscriber.receive().expect("receive").expect("a sample was sent");
    sample.as_slice()[0]
}

/// One poll of an empty subscriber.
#[inline(never)]
fn empty_poll(subscriber: &Subscriber<u64>) -> bool {
    subscriber.receive().expect("receive").is_none()
}

fn main() {
    let smoke = peer::smoke_test();
    let mut rounds = if smoke { 1 } else { ROUNDS };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args.next().and_then(|n| n.parse().ok()).expect("--rounds needs a number");
        }
    }
    assert!(rounds > 0, "--rounds must be at least 1");
    let messages = if smoke { 10_000 } else { MESSAGES };

    let namespace = format!("hotpath{}", std::process::id());
    let node = Node::builder("hot-path").namespace(namespace).create().expect("a node");
    let topic = node
        .topic::<u64>("hot")
        .max_publishers(1)
        .max_subscribers(1)
        .subscriber_capacity(4)
        .max_held(2)
        .max_loans(2)
        .max_slice_len(SLICE as u32)
        .create()
        .expect("the topic");
    let (publisher, subscriber) = (topic.publisher().expect("a"), topic.subscriber().expect("b"));
    let (mut queue_in, mut queue_out) = overflow::new_strided(4, 2);
    let (mut spsc_in, mut spsc_out) = spsc::new_stamped::<u64>(4);

    let names = [
        "loan+send / receive",
        "send_copy / receive",
        "loan_slice 4 KiB / receive",
        "receive, nothing queued",
        "overflow queue push/pop",
        "stamped SPSC push/pop",
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    // Round 0 warms up and is not recorded.
    for round in 0..=rounds {
        let mut times = Vec::new();
        let mut time = |f: &mut dyn FnMut(u64)| {
            let start = Instant::now();
            (0..messages).for_each(&mut *f);
            times.push(start.elapsed().as_secs_f64() * 1e9 / messages as f64);
        };
        time(&mut |seq| assert_eq!(loan_send_receive(&publisher, &subscriber, seq), seq));
        time(&mut |seq| assert_eq!(copy_receive(&publisher, &subscriber, seq), seq));
        time(&mut |seq| assert_eq!(slice_receive(&publisher, &subscriber, seq), seq));
        time(&mut |_| assert!(empty_poll(&subscriber)));
        time(&mut |seq| {
            queue_in.push_inline(&[seq]).expect("a queue of our own");
            let (_, line) = queue_out.pop_line_when(|_| true, 1).expect("pushed");
            assert_eq!(black_box(line[0]), seq);
        });
        time(&mut |seq| {
            spsc_in.try_push(seq).expect("room");
            assert_eq!(black_box(spsc_out.try_pop()), Ok(seq));
        });
        if round > 0 {
            times.into_iter().zip(&mut ns).for_each(|(t, all)| all.push(t));
        }
    }
    println!("one thread, {messages} messages per loop and round, {rounds} rounds: ns per message");
    println!("{:<26}{:>8}{:>8}{:>8}", "", "min", "median", "max");
    for (name, all) in names.iter().zip(&ns) {
        let (min, median, max) = spread(all);
        println!("{name:<26}{min:>8.1}{median:>8.1}{max:>8.1}");
    }
}
