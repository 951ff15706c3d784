//! The Rust side of the Python binding's tests: a process using shmlane's typed API
//! (`node.topic::<Tick>()`, `node.event()`), driven by its arguments and standard input,
//! reporting on standard output one line per step. Exits non-zero with a message on failure.
//!
//! ```text
//! shmlane-py-peer type-name                    the recorded name of `Tick`
//! shmlane-py-peer publish NS SERVICE COUNT     ticks 1..=COUNT to the first subscriber
//! shmlane-py-peer subscribe NS SERVICE COUNT   receives and checks ticks 1..=COUNT
//! shmlane-py-peer publish-bytes NS SERVICE LEN one slice of LEN bytes (pattern `byte_at`)
//! shmlane-py-peer reclaim NS SERVICE           watches a subscriber killed holding samples
//! shmlane-py-peer notify NS SERVICE ID...      notifies each id once
//! shmlane-py-peer listen NS SERVICE COUNT      waits for COUNT event ids
//! shmlane-py-peer serve NS SERVICE COUNT       answers COUNT requests (u64 x: 2x + 2)
//! shmlane-py-peer call NS SERVICE X...         calls with each x, reports the responses
//! shmlane-py-peer echo NS SIDE...              answers pings on ping-SIDE on pong-SIDE (busy)
//! shmlane-py-peer initiate NS SIDE ROUND       per stdin line, ROUND ping-pongs: the RTTs (ns)
//! ```
//!
//! `echo` and `initiate` are the Rust ends of `bench/latency.py`.
//!
//! Publishers stay alive until their standard input closes, so that what they sent can still
//! be read.

#![forbid(unsafe_code)]

use std::io::BufRead;
use std::time::{Duration, Instant};

use shmlane::notify::Blocking;
use shmlane::{FromBytes, Immutable, IntoBytes, KnownLayout, Node};

/// The tick both sides agree on: in Python,
/// `np.dtype([("instrument", "u4"), ("size", "u4"), ("price", "f8"), ("sequence", "u8"),
/// ("timestamp_ns", "u8")], align=True)` with `type_name="shmlane_py_peer::Tick"`.
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[zerocopy(crate = "shmlane::zerocopy")]
#[repr(C)]
struct Tick {
    instrument: u32,
    size: u32,
    price: f64,
    sequence: u64,
    timestamp_ns: u64,
}

impl Tick {
    /// Tick number `k` of a test stream.
    fn nth(k: u64) -> Tick {
        Tick {
            instrument: 7,
            size: 100 + k as u32,
            price: k as f64 / 4.0,
            sequence: k,
            timestamp_ns: 1000 * k,
        }
    }
}

/// A sample large enough to travel in a payload block (not inline).
type Wide = [u64; 64];

/// Byte `i` of a `publish-bytes` slice.
fn byte_at(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

const TIMEOUT: Duration = Duration::from_secs(20);

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["type-name"] => {
            println!("{}", std::any::type_name::<Tick>());
            Ok(())
        }
        ["publish", ns, service, count] => publish(ns, service, count.parse().unwrap_or(0)),
        ["subscribe", ns, service, count] => subscribe(ns, service, count.parse().unwrap_or(0)),
        ["publish-bytes", ns, service, len] => publish_bytes(ns, service, len.parse().unwrap_or(0)),
        ["reclaim", ns, service] => reclaim(ns, service),
        ["notify", ns, service, ids @ ..] => notify(ns, service, ids),
        ["listen", ns, service, count] => listen(ns, service, count.parse().unwrap_or(0)),
        ["serve", ns, service, count] => serve(ns, service, count.parse().unwrap_or(0)),
        ["call", ns, service, xs @ ..] => call(ns, service, xs),
        ["echo", ns, sides @ ..] => echo(ns, sides),
        ["initiate", ns, side, round] => initiate(ns, side, round.parse().unwrap_or(1)),
        _ => Err("usage: see the doc comment of bindings/python/peer/src/main.rs".into()),
    };
    if let Err(e) = result {
        eprintln!("shmlane-py-peer {}: {e}", args.join(" "));
        std::process::exit(1);
    }
}

fn node(namespace: &str) -> Result<Node> {
    Ok(Node::builder("rust-peer").namespace(namespace).create()?)
}

/// Prints a report line at once.
fn report(line: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed stdout (the test gave up) leaves nothing to report to.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Polls `done` every millisecond until it holds, or fails after `TIMEOUT`.
fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > TIMEOUT {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Reads standard input until it closes (the test is done with us).
fn until_stdin_closes() {
    for _ in std::io::stdin().lock().lines().map_while(std::result::Result::ok) {}
}

/// Publishes ticks `1..=count` once a subscriber is there, half by loan, half by copy.
fn publish(namespace: &str, service: &str, count: u64) -> Result {
    let node = node(namespace)?;
    let topic = node.topic::<Tick>(service).subscriber_capacity(1024).open_or_create()?;
    let publisher = topic.publisher()?;
    wait_until("a subscriber", || Ok(publisher.subscribers() >= 1))?;
    for k in 1..=count {
        if k % 2 == 0 {
            publisher.send_copy(Tick::nth(k))?;
        } else {
            let mut tick = publisher.loan()?;
            *tick = Tick::nth(k);
            publisher.send(tick)?;
        }
    }
    report(format_args!("sent {count}"));
    until_stdin_closes();
    Ok(())
}

/// Receives ticks `1..=count` in order and checks each one.
fn subscribe(namespace: &str, service: &str, count: u64) -> Result {
    let node = node(namespace)?;
    let topic = node.topic::<Tick>(service).subscriber_capacity(1024).open_or_create()?;
    let subscriber = topic.subscriber()?;
    report("ready");
    let mut strategy = Blocking::new();
    let mut sum = 0;
    for k in 1..=count {
        let tick = subscriber.receive_with(&mut strategy, Some(TIMEOUT))?;
        if *tick != Tick::nth(k) {
            return Err(format!("tick {k}: got {:?}, want {:?}", *tick, Tick::nth(k)).into());
        }
        sum += tick.sequence;
    }
    report(format_args!("sum {sum}"));
    Ok(())
}

/// Sends one slice of `len` bytes on an existing topic of `u8`.
fn publish_bytes(namespace: &str, service: &str, len: usize) -> Result {
    let node = node(namespace)?;
    let topic = node.topic::<u8>(service).open()?;
    let publisher = topic.publisher()?;
    wait_until("a subscriber", || Ok(publisher.subscribers() >= 1))?;
    let mut bytes = publisher.loan_slice(len)?;
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = byte_at(i);
    }
    publisher.send_slice(bytes)?;
    report(format_args!("sent {len}"));
    until_stdin_closes();
    Ok(())
}

/// Creates a topic of `Wide` with room for one subscriber, sends it three samples, and once
/// told (a line on standard input) that it was killed, sends until it is found dead; reports
/// the block counts then, and sends 7 to the next subscriber.
fn reclaim(namespace: &str, service: &str) -> Result {
    let node = node(namespace)?;
    let topic = node.topic::<Wide>(service).max_subscribers(1).subscriber_capacity(4);
    let topic = topic.max_held(4).create()?;
    let publisher = topic.publisher()?;
    report("ready");
    wait_until("a subscriber", || Ok(publisher.subscribers() == 1))?;
    for k in 1..=3 {
        publisher.send_copy([k; 64])?;
    }
    report("sent 3");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() != "killed" {
        return Err(format!("expected 'killed', got {line:?}").into());
    }
    let mut sends = 0;
    wait_until("the dead subscriber to be found", || {
        publisher.send_copy([100 + sends; 64])?;
        sends += 1;
        Ok(publisher.subscribers() == 0)
    })?;
    let counts = publisher.block_counts();
    report(format_args!(
        "reclaimed held={} loaned={} free={} total={} consistent={}",
        counts.held,
        counts.loaned,
        counts.free,
        counts.total,
        counts.is_consistent()
    ));
    wait_until("a new subscriber", || Ok(publisher.subscribers() == 1))?;
    publisher.send_copy([7; 64])?;
    report("sent 7");
    until_stdin_closes();
    Ok(())
}

/// Notifies each id once.
fn notify(namespace: &str, service: &str, ids: &[&str]) -> Result {
    let node = node(namespace)?;
    let event = node.event(service).open_or_create()?;
    let notifier = event.notifier()?;
    let mut listeners = 0;
    for id in ids {
        listeners = notifier.notify(id.parse()?)?;
    }
    report(format_args!("notified {listeners}"));
    Ok(())
}

/// Waits for `count` distinct event ids and reports them, ascending.
fn listen(namespace: &str, service: &str, count: usize) -> Result {
    let node = node(namespace)?;
    let event = node.event(service).open_or_create()?;
    let listener = event.listener()?;
    report("ready");
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < count {
        ids.extend(listener.wait(&mut Blocking::new(), Some(TIMEOUT))?);
    }
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    report(format_args!("ids {}", ids.join(",")));
    Ok(())
}

/// Serves `Rpc<u64, u64>`: answers `count` requests x with 2x + 2, then waits for its standard
/// input to close (the clients read their responses meanwhile).
fn serve(namespace: &str, service: &str, count: u64) -> Result {
    let node = node(namespace)?;
    let rpc = node.rpc::<u64, u64>(service).open_or_create()?;
    let server = rpc.server()?;
    report("ready");
    let mut strategy = Blocking::new();
    for _ in 0..count {
        let request = server.receive_with(&mut strategy, Some(TIMEOUT))?;
        server.respond(&request, *request * 2 + 2)?;
    }
    report(format_args!("served {count}"));
    until_stdin_closes();
    Ok(())
}

/// Calls `Rpc<u64, u64>` with each x and reports the responses.
fn call(namespace: &str, service: &str, xs: &[&str]) -> Result {
    let node = node(namespace)?;
    let rpc = node.rpc::<u64, u64>(service).open_or_create()?;
    let client = rpc.client()?;
    let mut responses = Vec::new();
    for x in xs {
        let response = client.call(x.parse()?, &mut Blocking::new(), Some(TIMEOUT))?;
        responses.push(response.to_string());
    }
    report(format_args!("responses {}", responses.join(",")));
    Ok(())
}

/// Sent on a ping topic to make `echo` exit.
const STOP: u64 = u64::MAX;

/// Answers every ping of each side with the same value on its pong topic, busy polling, until
/// a `STOP`.
fn echo(namespace: &str, sides: &[&str]) -> Result {
    let node = node(namespace)?;
    let mut pairs = Vec::new();
    for side in sides {
        let ping = node.topic::<u64>(&format!("ping-{side}")).open_or_create()?.subscriber()?;
        let pong = node.topic::<u64>(&format!("pong-{side}")).open_or_create()?.publisher()?;
        pairs.push((ping, pong));
    }
    report("ready");
    loop {
        for (ping, pong) in &pairs {
            if let Some(sample) = ping.receive()? {
                let value = *sample;
                drop(sample);
                if value == STOP {
                    return Ok(());
                }
                pong.send_copy(value)?;
            }
        }
    }
}

/// For each line on stdin, `round` busy ping-pongs on `ping-SIDE`/`pong-SIDE`; prints their
/// round-trip times (ns) on one line.
fn initiate(namespace: &str, side: &str, round: usize) -> Result {
    let node = node(namespace)?;
    let ping = node.topic::<u64>(&format!("ping-{side}")).open_or_create()?.publisher()?;
    let pong = node.topic::<u64>(&format!("pong-{side}")).open_or_create()?.subscriber()?;
    report("ready");
    let mut seq = 0;
    let mut rtts = Vec::with_capacity(round);
    for line in std::io::stdin().lock().lines() {
        line?;
        rtts.clear();
        for _ in 0..round {
            seq += 1;
            let start = Instant::now();
            let mut loan = ping.loan()?;
            *loan = seq;
            ping.send(loan)?;
            let answer = loop {
                if let Some(sample) = pong.receive()? {
                    break *sample;
                }
                if start.elapsed() > TIMEOUT {
                    return Err("the echo does not answer".into());
                }
            };
            rtts.push(start.elapsed().as_nanos().to_string());
            if answer != seq {
                return Err(format!("answer {answer} to {seq}").into());
            }
        }
        report(rtts.join(" "));
    }
    Ok(())
}
