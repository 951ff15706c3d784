//! Sample peeks: the latest sample of a topic a page shows, read as an ordinary subscriber
//! through the facade's run-time typed API (`node.raw_topic(service).open()`, which adopts
//! the type the topic records).
//!
//! The subscriber exists only while some client holds a [`Lease`] on the topic: the first
//! lease starts a thread that opens a node, the topic and a subscriber; the last lease dropped
//! stops it, which releases the subscriber slot and the node. Its thread drains the queue
//! (every 10 ms, or woken by publishers on topics whose overflow policy makes publishers wait
//! for subscribers, so the monitor never holds them up), keeps a copy of the last sample's
//! first [`PEEK_BYTES`] bytes, and publishes that at most once per interval. Its slot shows
//! in the live view with `"monitor": true`, and is left out of the service's rates and fill.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use shmlane::notify::Blocking;
use shmlane::{Node, Overflow, RawSample, RawSubscriber, ReceiveError};
use tokio::sync::watch;

use crate::names::{self, ServiceRef};

/// Bytes of a sample a peek shows (the rest is counted, not copied out).
pub(crate) const PEEK_BYTES: usize = 4096;
/// Topics peeked at once, over all clients.
const MAX_TOPICS: usize = 32;
/// How often the thread drains a drop-oldest topic's queue.
const POLL: Duration = Duration::from_millis(10);
/// How long it sleeps in a blocking wait before looking at its stop flag again.
const WAIT: Duration = Duration::from_millis(100);
/// Samples taken in one go before it looks at its stop flag and publishes.
const DRAIN_MAX: u64 = 65_536;
/// The node name the peek subscribers register under.
const NODE_NAME: &str = "shmlane-monitor";

/// What a peek shows: `{"status", "error", "type_name", "element_size", "received", "drops",
/// "sample"}`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PeekState {
    /// `opening`, `live` or `error`.
    pub(crate) status: &'static str,
    /// Why it failed (status `error`).
    pub(crate) error: Option<String>,
    /// The payload type's recorded name.
    pub(crate) type_name: Option<String>,
    /// Bytes of one element.
    pub(crate) element_size: Option<u64>,
    /// Samples the peek subscriber received.
    pub(crate) received: u64,
    /// Samples dropped for it (its queue was full between two drains).
    pub(crate) drops: u64,
    /// The last sample received.
    pub(crate) sample: Option<PeekSample>,
}

/// A sample's first bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PeekSample {
    /// Elements in the sample.
    pub(crate) elements: usize,
    /// Its size in bytes.
    pub(crate) bytes: usize,
    /// Its first [`PEEK_BYTES`] bytes (or all of them), two lowercase hex digits each.
    pub(crate) hex: String,
    /// Whether `hex` stops short of the whole sample.
    pub(crate) truncated: bool,
}

/// Why a peek could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeekError {
    /// The monitor runs with `--no-peek`.
    #[error("peeking is off: the monitor runs with --no-peek")]
    Disabled,
    /// Not a topic's id.
    #[error(
        "{0:?} is not a topic's id: peek takes one such as `app.topic.ticks` (rpc and event \
         services cannot be peeked at)"
    )]
    NotATopic(String),
    /// Too many topics peeked at already.
    #[error("{MAX_TOPICS} topics are peeked at already, the most at once: close one first")]
    TooMany,
    /// The thread could not be started.
    #[error("cannot start a peek thread: {0} (out of threads?)")]
    Thread(std::io::Error),
}

/// The topics peeked at, and the settings of new peeks.
#[derive(Debug)]
pub(crate) struct Peeks {
    root: Option<PathBuf>,
    enabled: bool,
    /// How often a peek publishes.
    interval: Duration,
    topics: Mutex<HashMap<String, Peeked>>,
}

/// One topic peeked at.
#[derive(Debug)]
struct Peeked {
    leases: usize,
    stop: Arc<AtomicBool>,
    state: watch::Receiver<Arc<PeekState>>,
}

/// A client's hold on a topic's peek: [`state`](Lease::state) changes as samples come; the
/// subscriber goes when the last lease on its topic is dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    peeks: Arc<Peeks>,
    id: String,
    /// The peek's latest state.
    pub(crate) state: watch::Receiver<Arc<PeekState>>,
}

impl Lease {
    /// The topic's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Peeks {
    /// Peeks at topics in `root` (`/dev/shm` if `None`), publishing every `interval`; none at
    /// all unless `enabled`.
    pub(crate) fn new(root: Option<PathBuf>, enabled: bool, interval: Duration) -> Peeks {
        Peeks { root, enabled, interval, topics: Mutex::new(HashMap::new()) }
    }

    /// Whether peeks are allowed.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Topics peeked at now.
    pub(crate) fn active(&self) -> usize {
        self.topics().len()
    }

    /// The ids of the topics peeked at now.
    pub(crate) fn peeked(&self) -> HashSet<String> {
        self.topics().keys().cloned().collect()
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Peeked>> {
        // A panic elsewhere while holding the lock leaves the map consistent (every change
        // is a single insert, update or remove).
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A lease on the peek of topic `id` (`{namespace}.topic.{service}`), starting its
    /// subscriber if nobody peeks at it yet.
    pub(crate) fn lease(self: &Arc<Self>, id: &str) -> Result<Lease, PeekError> {
        if !self.enabled {
            return Err(PeekError::Disabled);
        }
        let not_a_topic = || PeekError::NotATopic(id.to_owned());
        let Ok(ServiceRef::Id(name)) = names::parse(id) else { return Err(not_a_topic()) };
        let mut parts = name.as_str().splitn(3, '.');
        let (Some(namespace), Some("topic"), Some(service)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(not_a_topic());
        };
        let mut topics = self.topics();
        if let Some(peeked) = topics.get_mut(id) {
            peeked.leases += 1;
            let state = peeked.state.clone();
            return Ok(Lease { peeks: Arc::clone(self), id: id.to_owned(), state });
        }
        if topics.len() >= MAX_TOPICS {
            return Err(PeekError::TooMany);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let opening = PeekState { status: "opening", ..PeekState::default() };
        let (sender, state) = watch::channel(Arc::new(opening));
        let thread = Thread {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            root: self.root.clone(),
            stop: Arc::clone(&stop),
            sender,
            interval: self.interval,
        };
        std::thread::Builder::new()
            .name(format!("peek {id}"))
            .spawn(move || thread.run())
            .map_err(PeekError::Thread)?;
        topics.insert(id.to_owned(), Peeked { leases: 1, stop, state: state.clone() });
        Ok(Lease { peeks: Arc::clone(self), id: id.to_owned(), state })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut topics = self.peeks.topics();
        if let Some(peeked) = topics.get_mut(&self.id) {
            peeked.leases -= 1;
            if peeked.leases == 0 {
                // Release: the thread's Acquire load sees the flag and ends (dropping the
                // subscriber); nothing else is published through it.
                peeked.stop.store(true, Ordering::Release);
                topics.remove(&self.id);
            }
        }
    }
}

/// A peek's thread: one subscriber, and where to publish what it sees.
struct Thread {
    namespace: String,
    service: String,
    root: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    sender: watch::Sender<Arc<PeekState>>,
    interval: Duration,
}

impl Thread {
    fn stopped(&self) -> bool {
        // Acquire: pairs with the Release store of the last lease's drop.
        self.stop.load(Ordering::Acquire) || self.sender.is_closed()
    }

    fn run(self) {
        let mut node = Node::builder(NODE_NAME).namespace(&self.namespace);
        if let Some(root) = &self.root {
            node = node.root(root);
        }
        let opened = node.create().map_err(|e| e.to_string()).and_then(|node| {
            let topic = node.raw_topic(&self.service).open().map_err(|e| e.to_string())?;
            let subscriber = topic.subscriber().map_err(|e| e.to_string())?;
            Ok((node, topic, subscriber))
        });
        let (_node, topic, subscriber) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let error = format!("cannot peek at {}: {error}", self.service);
                let failed =
                    PeekState { status: "error", error: Some(error), ..Default::default() };
                self.sender.send_replace(Arc::new(failed));
                return;
            }
        };
        let spec = topic.type_spec();
        let mut state = PeekState {
            status: "live",
            type_name: Some(spec.name.clone()),
            element_size: Some(spec.size),
            ..PeekState::default()
        };
        self.sender.send_replace(Arc::new(state.clone()));
        // Publishers of a blocking or rejecting topic wait for (or fail on) a full subscriber
        // queue: wake on each of their notifications instead of polling.
        let woken = topic.config().overflow != Overflow::DropOldest;
        let mut strategy = Blocking::new();
        let mut published = Instant::now();
        let mut dirty = false;
        while !self.stopped() {
            let drained = drain(&subscriber, &mut state);
            dirty |= drained.taken > 0;
            if let Some(error) = drained.error {
                state.status = "error";
                state.error = Some(error);
                dirty = true;
            }
            if dirty && published.elapsed() >= self.interval {
                state.drops = subscriber.drops();
                self.sender.send_replace(Arc::new(state.clone()));
                published = Instant::now();
                dirty = false;
            }
            if drained.taken >= DRAIN_MAX {
                continue;
            }
            if woken {
                match subscriber.receive_with(&mut strategy, Some(WAIT)) {
                    Ok(sample) => {
                        take(&subscriber, sample, &mut state, false);
                        dirty = true;
                    }
                    Err(ReceiveError::TimedOut(_)) => {}
                    Err(e) => {
                        state.status = "error";
                        state.error = Some(e.to_string());
                        dirty = true;
                        std::thread::sleep(WAIT);
                    }
                }
            } else {
                std::thread::sleep(POLL);
            }
        }
    }
}

/// What one drain took.
struct Drained {
    taken: u64,
    error: Option<String>,
}

/// Receives what is queued (up to [`DRAIN_MAX`]), copying out the last sample.
fn drain(subscriber: &RawSubscriber, state: &mut PeekState) -> Drained {
    let mut drained = Drained { taken: 0, error: None };
    loop {
        match subscriber.receive() {
            Ok(Some(sample)) => {
                drained.taken += 1;
                take(subscriber, sample, state, drained.taken >= DRAIN_MAX);
                if drained.taken >= DRAIN_MAX {
                    return drained;
                }
            }
            Ok(None) => return drained,
            Err(e) => {
                drained.error = Some(e.to_string());
                return drained;
            }
        }
    }
}

/// Counts `sample`, and copies it out if it is the last one queued (or `keep`). Copies read
/// the shared bytes by copy ([`RawSample::to_vec`]): a publisher may write them at any time.
fn take(subscriber: &RawSubscriber, sample: RawSample<'_>, state: &mut PeekState, keep: bool) {
    state.received += 1;
    state.status = "live";
    state.error = None;
    if keep || !subscriber.has_pending() {
        let elements = sample.len();
        let bytes = sample.to_vec();
        drop(sample);
        state.sample = Some(PeekSample {
            elements,
            bytes: bytes.len(),
            hex: hex(&bytes[..bytes.len().min(PEEK_BYTES)]),
            truncated: bytes.len() > PEEK_BYTES,
        });
    }
}

/// Two lowercase hex digits per byte.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x7f, 0xab, 0xff]), "007fabff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn only_topics_are_peeked_at_and_only_when_enabled() {
        let peeks = Arc::new(Peeks::new(None, true, Duration::from_millis(250)));
        for id in ["ticks", "app.event.bell", "app.rpc.adder.req", "app.topic.", "x"] {
            assert!(matches!(peeks.lease(id), Err(PeekError::NotATopic(_))), "{id}");
        }
        let off = Arc::new(Peeks::new(None, false, Duration::from_millis(250)));
        assert!(matches!(off.lease("app.topic.ticks"), Err(PeekError::Disabled)));
        assert_eq!(peeks.active(), 0);
    }
}
