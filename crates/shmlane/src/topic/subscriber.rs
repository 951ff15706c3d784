//! [`Subscriber`] and [`Sample`]: take offsets from each publisher's submission queue, read
//! the payload where it lies (mapped read-only), hand the block back when the sample drops.
//!
//! Returns are batched: a dropped sample's block is handed back by the next `receive` that
//! finds nothing queued (or that would otherwise exceed `max_held`), so the cache-line transfer
//! of the return is paid while idle, not between taking a sample and answering it.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmlane_notify::WaitStrategy;
use shmlane_queue::overflow::{Consumer, LINE_WORDS, Line, Owned, OwnedOverflow, Producer};
use shmlane_segment::{Liveness, Segment, SegmentRef, crash_point};

use super::handoff::{self, Ack, Membership, SubscriberSlot};
use super::layout::Element;
use super::layout::{
    DATA_HEADER_AT, DATA_MAGIC, DataHeader, PublisherEntry, SubscriberEntry, VERSION,
};
use super::words::{self, QueuedBlock};
use super::{DATA_FINGERPRINT, OpenTopic, Overflow};
use crate::counters::SlotCounters;
use crate::error::{ConnectError, ReceiveError};
use crate::payload::ZeroCopy;
use crate::sync::{AtomicU64, Ordering};
use zerocopy::{Immutable, IntoBytes};

/// A topic's receiving end. It owns its share of the topic (it can be stored in a struct and
/// outlives the [`Topic`](super::Topic) it came from) and is `Send`: move it to the thread
/// that receives. One thread uses it at a time (it is not `Sync`), and its [`Sample`]s stay on
/// that thread (they are neither `Send` nor `Sync`). A topic has up to `max_subscribers` at
/// once (1 to [`MAX_PARTICIPANTS`](crate::topic::MAX_PARTICIPANTS), 63).
///
/// ```
/// use std::time::Duration;
/// use shmlane::{Node, notify::Blocking};
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let topic = node.topic::<u64>("subscriber-doc").open_or_create()?;
/// let subscriber = topic.subscriber()?;
/// let publisher = topic.publisher()?;
///
/// let receiver = std::thread::spawn(move || -> Result<u64, shmlane::ReceiveError> {
///     let mut strategy = Blocking::new(); // sleeps on a futex until a sample comes
///     let mut sum = 0;
///     for _ in 0..3 {
///         sum += *subscriber.receive_with(&mut strategy, Some(Duration::from_secs(5)))?;
///     }
///     assert!(subscriber.receive()?.is_none()); // never blocks
///     Ok(sum)
/// });
/// for value in [1, 2, 3] {
///     publisher.send_copy(value)?;
/// }
/// assert_eq!(receiver.join().expect("the receiver panicked")?, 6);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug)]
pub struct Subscriber<T> {
    connections: RefCell<Vec<FromPublisher>>,
    slot: usize,
    /// This subscriber's generation of its slot.
    generation: u64,
    entry: SegmentRef<SubscriberEntry>,
    publishers: Vec<SegmentRef<PublisherEntry>>,
    /// Publisher to poll first next time (round robin).
    next: Cell<usize>,
    /// Claims until the next one that looks for publishers not connected yet first.
    until_discovery: Cell<u32>,
    /// Publisher slots not connected yet (connections are never undone).
    unconnected: Cell<usize>,
    held: Cell<u32>,
    /// Blocks of dropped samples not handed back yet (they count against `max_held`).
    unreturned: Cell<u32>,
    /// Whether publishers may block on our queue (the block policy): then every pop and
    /// return notifies them.
    wakes_publishers: bool,
    /// Inline samples claimed together with an earlier one, not handed out yet.
    ahead: RefCell<Ahead>,
    /// Released after the fields above are dropped (our blocks handed back) ...
    /// Our role in the slot, released (and the roster bumped) after the fields above.
    _membership: Membership<SegmentRef<AtomicU64>>,
    /// ... and before our share of the topic, whose last handle cleans up what nobody holds.
    topic: Arc<OpenTopic>,
    _payload: PhantomData<fn() -> T>,
}

// SAFETY: what keeps a `Subscriber` from being `Send` automatically is the `Rc<Payload>`s of its
// mapped payload segments. Every clone of each of them is held either by the subscriber itself
// or by a `Sample`, and a `Sample` borrows its subscriber: while one exists the subscriber cannot
// be moved to another thread. So a subscriber that is sent takes every clone of its `Rc`s with
// it, and no two threads ever touch one reference count. Everything else it holds is `Send`.
unsafe impl<T> Send for Subscriber<T> {}

/// Most inline samples one claim takes off a queue ([`Consumer::pop_lines_when`]): a
/// `receive` that finds several queued claims them at once and hands out the rest from
/// private memory in the next calls, so in a stream the claim's atomic instruction is paid
/// once per batch and the slots' lines are fetched together.
const AHEAD: usize = 16;

/// Every this many claims from the queues (a claim takes up to [`AHEAD`] inline samples), one
/// looks for new publishers before it polls the connected ones (see `Subscriber::passes`).
const DISCOVER_EVERY: u32 = 16;

/// One pass of a receive over the publisher slots (`Subscriber::passes`).
#[derive(Clone, Copy, Debug)]
enum Pass {
    /// The connected publishers only.
    Connected,
    /// Those not connected before this receive, each connected if it acknowledged us.
    New,
    /// All: connected, and connected now.
    All,
}

/// Inline samples claimed ahead of their `receive`: `lines[next..len]`, from publisher
/// `publisher`, oldest first. They are the subscriber's (off the queue: no overflow policy
/// evicts them), and lost with it, as a sample taken and not yet read would be.
#[derive(Debug)]
struct Ahead {
    publisher: u32,
    next: usize,
    len: usize,
    lines: Box<[(u64, Line); AHEAD]>,
}

/// How a receive takes its element: whether it may come inline, its words in a queue line,
/// and how the kept copy of an inline value is made from its line
/// ([`Subscriber::receive_place`]).
struct Reading<R> {
    inline: bool,
    line_words: usize,
    read: R,
}

/// The subscriber's side of one publisher slot.
#[derive(Debug)]
struct FromPublisher {
    ack: SegmentRef<AtomicU64>,
    queues: (OwnedOverflow, OwnedOverflow),
    /// The queue ends, once the publisher acknowledged this subscriber's generation.
    ends: Option<(Consumer<Owned>, Producer<Owned>)>,
    /// The publisher's payload segments mapped so far, by pool (all of one generation).
    payloads: Vec<Option<Rc<Payload>>>,
    /// Blocks of dropped samples to hand back (room for `max_held`: never reallocates).
    returns: Vec<u64>,
}

/// A publisher's payload segment, mapped read-only, with its validated geometry.
#[derive(Debug)]
struct Payload {
    generation: u32,
    segment: Segment,
    blocks_at: u64,
    block_size: u64,
    elements_at: u64,
    blocks: u64,
    /// Elements a block holds.
    max_len: u64,
}

/// A received sample: derefs to the payload in shared memory, without a copy. Dropping it
/// gives the block back to its publisher (handed over when the subscriber is next idle: see
/// [`Subscriber::flush_returns`]). It borrows its subscriber and stays on its thread (neither
/// `Send` nor `Sync`: it points into the subscriber's mapping, shared through an `Rc`).
///
/// ```
/// use shmlane::Node;
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let topic = node.topic::<f32>("sample-doc").max_slice_len(4).open_or_create()?;
/// let (publisher, subscriber) = (topic.publisher()?, topic.subscriber()?);
/// publisher.send_copy(0.5)?;
/// let mut frames = publisher.loan_slice(3)?;
/// frames.copy_from_slice(&[1.0, 2.0, 3.0]);
/// publisher.send_slice(frames)?;
///
/// let one = subscriber.receive()?.expect("sent above");
/// assert_eq!((*one, one.len()), (0.5, 1)); // `Deref`: read in place
/// let three = subscriber.receive()?.expect("sent above");
/// assert_eq!(three.as_slice(), [1.0, 2.0, 3.0]); // every element sent, in place
/// assert_eq!(three.read_all(), [1.0, 2.0, 3.0]); // by copy, for publishers not trusted
/// drop((one, three)); // the blocks go back to the publisher
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Sample<'s, T: ZeroCopy> {
    subscriber: &'s Subscriber<T>,
    /// The publisher slot it came from (below 64).
    publisher: u32,
    place: Received<T>,
}

/// Where a sample's value is: in a block, or (`I`) the copy of an inline value, kept as the
/// typed value itself (a `T`: only its bytes are copied, with loads as wide as the claim's
/// stores) or, untyped, as the line's words.
#[derive(Debug)]
pub(crate) enum Received<I = Line> {
    /// In a payload block of its publisher, read in place.
    Block(Lent),
    /// Copied out of the queue slot it came in (a `T` of at most
    /// [`INLINE_MAX`](super::INLINE_MAX) bytes at the start of the line words).
    Inline(I),
}

/// What a drain hands over: an inline sample's words (copied by the claim), or a sample
/// received as usual.
pub(crate) enum Drained<'a, S> {
    Line(&'a Line),
    Sample(S),
}

/// A payload block lent to a sample.
#[derive(Debug)]
pub(crate) struct Lent {
    value: QueuedBlock,
    /// The first element.
    ptr: NonNull<u8>,
    payload: Rc<Payload>,
    /// Elements sent, read from the block and clamped the first time asked (0: not yet), so
    /// one sample has one length whatever its block's length word does afterwards.
    len: Cell<u32>,
}

impl<T> Subscriber<T> {
    pub(crate) fn new(topic: &Arc<OpenTopic>) -> Result<Self, ConnectError> {
        let config = topic.config;
        let me = topic.node.id();
        let mut claimed = None;
        for s in 0..config.max_subscribers as usize {
            let entry = SegmentRef::try_map(&topic.segment, |seg| topic.layout.subscriber(seg, s))?;
            let role =
                handoff::claim(entry.project(|e| &e.role), me, |o| o.liveness() == Liveness::Dead);
            if let Some((role, how)) = role {
                if let shmlane_segment::Claimed::TakenOver(dead) = how {
                    crate::events::slot_taken_over(&topic.service, "subscriber", s, dead);
                }
                claimed = Some((s, entry, role));
                break;
            }
        }
        let Some((slot, entry, role)) = claimed else {
            return Err(ConnectError::NoFreeSlot {
                what: "subscriber",
                max: config.max_subscribers,
            });
        };
        crash_point!("shmlane.subscribe.claimed");
        let roster = SegmentRef::try_map(&topic.segment, |seg| topic.layout.roster(seg))?;
        let membership = Membership::new(role, roster);
        let generation = SubscriberSlot { role: &entry.role, generation: &entry.generation }.take();
        membership.joined();
        // A dead predecessor's gauge of held samples is not ours.
        SlotCounters::set(&entry.counters.held, 0);
        let subscribers = config.max_subscribers as usize;
        let mut publishers = Vec::new();
        let mut connections = Vec::new();
        for p in 0..config.max_publishers as usize {
            publishers
                .push(SegmentRef::try_map(&topic.segment, |seg| topic.layout.publisher(seg, p))?);
            let c = p * subscribers + slot;
            connections.push(FromPublisher {
                ack: SegmentRef::try_map(&topic.segment, |seg| topic.layout.ack(seg, c))?,
                queues: topic.attach_queues(c)?,
                ends: None,
                payloads: Vec::new(),
                returns: Vec::with_capacity(config.max_held as usize),
            });
        }
        let unconnected = Cell::new(connections.len());
        Ok(Subscriber {
            connections: RefCell::new(connections),
            slot,
            generation,
            entry,
            publishers,
            next: Cell::new(0),
            until_discovery: Cell::new(0),
            unconnected,
            held: Cell::new(0),
            unreturned: Cell::new(0),
            wakes_publishers: config.overflow == super::Overflow::Block,
            ahead: RefCell::new(Ahead {
                publisher: 0,
                next: 0,
                len: 0,
                lines: Box::new([(0, [0; LINE_WORDS]); AHEAD]),
            }),
            _membership: membership,
            topic: Arc::clone(topic),
            _payload: PhantomData,
        })
    }

    /// The next sample from any publisher, if one is queued: the publisher slot it came from
    /// and where it is (held: it counts against `max_held` until released). `inline` and
    /// `line_words` describe the element (constants for a typed subscriber, so its receive
    /// compiles as if written for its type).
    /// `read` makes the kept copy of an inline value from its line.
    #[inline(always)]
    pub(crate) fn receive_place<I>(
        &self,
        inline: bool,
        line_words: usize,
        read: impl Fn(&Line) -> I,
    ) -> Result<Option<(u32, Received<I>)>, ReceiveError> {
        let place = self.receive_place_uncounted(inline, line_words, read)?;
        if place.is_some() {
            let counters = &self.entry.counters;
            SlotCounters::add(&counters.received, 1);
            SlotCounters::set(&counters.held, u64::from(self.held.get()));
        }
        Ok(place)
    }

    /// [`Subscriber::drain`] for an element of the given layout: inline samples by the batch
    /// ([`take_inline`](Self::take_inline)), anything else through `receive`, each handed to
    /// `each`.
    pub(crate) fn drain_with<S>(
        &self,
        inline: bool,
        line_words: usize,
        limit: usize,
        mut receive: impl FnMut() -> Result<Option<S>, ReceiveError>,
        mut each: impl FnMut(Drained<'_, S>),
    ) -> Result<usize, ReceiveError> {
        let mut done = 0;
        let mut batch = [(0, [0; LINE_WORDS]); AHEAD];
        while done < limit {
            if inline {
                let room = (limit - done).min(AHEAD);
                match self.take_inline(line_words, &mut batch[..room]) {
                    Ok(0) => break,
                    Ok(n) => {
                        SlotCounters::add(&self.entry.counters.received, n as u64);
                        batch[..n].iter().for_each(|(_, line)| each(Drained::Line(line)));
                        done += n;
                        continue;
                    }
                    // A block first: `receive` takes it.
                    Err(()) => {}
                }
            }
            match receive()? {
                Some(sample) => each(Drained::Sample(sample)),
                None => break,
            }
            done += 1;
        }
        Ok(done)
    }

    /// Inline samples for [`drain`](Subscriber::drain), copied into `out` (those a `receive`
    /// took ahead first, else one batch claim from the next publisher with inline samples
    /// queued first): not held, not counted. `Ok(0)`: the queues are empty; `Err(())`: one
    /// starts with something else (a block: `receive` takes it).
    fn take_inline(&self, line_words: usize, out: &mut [(u64, Line)]) -> Result<usize, ()> {
        let mut ahead = self.ahead.borrow_mut();
        if ahead.next < ahead.len {
            let n = (ahead.len - ahead.next).min(out.len());
            out[..n].copy_from_slice(&ahead.lines[ahead.next..ahead.next + n]);
            ahead.next += n;
            return Ok(n);
        }
        drop(ahead);
        let mut connections = self.connections.borrow_mut();
        let count = connections.len();
        for (pass, p) in self.visits(count) {
            let connection = &mut connections[p];
            if !self.polls(connection, pass) {
                continue;
            }
            let Some((submission, _)) = connection.ends.as_mut() else { continue };
            match self.claim_inline(p, count, submission, line_words, out) {
                Ok(0) => continue,
                taken => return taken,
            }
        }
        Ok(0)
    }

    /// The passes of one claim over the publisher slots: usually the connected publishers,
    /// then, only if they had nothing, the others (connecting to those that acknowledged us);
    /// every [`DISCOVER_EVERY`]-th claim all in one pass. So a receive that finds nothing has
    /// looked at every publisher, as a waiter needs, while under a steady stream the slots of
    /// publishers not connected cost nothing, and a new publisher's samples wait at most
    /// `DISCOVER_EVERY` claims however busy the others keep us.
    #[inline(always)]
    fn passes(&self) -> &'static [Pass] {
        if self.unconnected.get() == 0 {
            return &[Pass::Connected];
        }
        let left = self.until_discovery.get();
        if left == 0 {
            self.until_discovery.set(DISCOVER_EVERY - 1);
            &[Pass::All]
        } else {
            self.until_discovery.set(left - 1);
            &[Pass::Connected, Pass::New]
        }
    }

    /// The publisher slots one claim visits, with the pass of each: round robin from
    /// `next`, in each of [`passes`](Self::passes).
    #[inline(always)]
    fn visits(&self, count: usize) -> impl Iterator<Item = (Pass, usize)> + use<T> {
        let start = self.next.get();
        self.passes().iter().flat_map(move |&pass| {
            (0..count)
                .map(move |i| (pass, if start + i < count { start + i } else { start + i - count }))
        })
    }

    /// Whether `pass` polls `connection`, connecting it first if the pass looks for new
    /// publishers.
    #[inline(always)]
    fn polls(&self, connection: &mut FromPublisher, pass: Pass) -> bool {
        match (connection.ends.is_some(), pass) {
            (true, Pass::New) => false,
            (true, _) => true,
            (false, Pass::Connected) => false,
            (false, _) => self.connect(connection),
        }
    }

    /// One claim of the inline samples queued in a row (up to `out.len()`) from publisher
    /// `p` (of `count`), copied into `out`: how many (the round robin then moves past `p`,
    /// whose publisher is told of the room), or `Err(())` if the queue starts with something
    /// else (a block).
    #[inline(always)]
    fn claim_inline(
        &self,
        p: usize,
        count: usize,
        submission: &mut Consumer<Owned>,
        line_words: usize,
        out: &mut [(u64, Line)],
    ) -> Result<usize, ()> {
        let mut refused = false;
        let is_inline = |raw| {
            let inline = QueuedBlock::from_raw(raw).is_inline();
            refused |= !inline;
            inline
        };
        let n = submission.pop_lines_when(is_inline, line_words, out);
        if n > 0 {
            crash_point!("shmlane.receive.popped");
            if self.wakes_publishers {
                self.publishers[p].space.notify_one();
            }
            self.next.set(if p + 1 == count { 0 } else { p + 1 });
            return Ok(n);
        }
        if refused { Err(()) } else { Ok(0) }
    }

    /// [`receive_place`](Self::receive_place) without counting what it takes.
    #[inline(always)]
    fn receive_place_uncounted<I>(
        &self,
        inline: bool,
        line_words: usize,
        read: impl Fn(&Line) -> I,
    ) -> Result<Option<(u32, Received<I>)>, ReceiveError> {
        let max_held = self.topic.config.max_held;
        let mut connections = self.connections.borrow_mut();
        if self.held.get() + self.unreturned.get() >= max_held {
            self.hand_back(&mut connections);
            if self.held.get() >= max_held {
                return Err(ReceiveError::TooManyHeld(max_held));
            }
        }
        let mut ahead = self.ahead.borrow_mut();
        if ahead.next < ahead.len {
            let value = read(&ahead.lines[ahead.next].1);
            ahead.next += 1;
            self.held.set(self.held.get() + 1);
            return Ok(Some((ahead.publisher, Received::Inline(value))));
        }
        let reading = Reading { inline, line_words, read };
        let count = connections.len();
        if self.unconnected.get() == 0 {
            // Every publisher slot connected (the steady state): poll them round robin.
            let start = self.next.get();
            for i in 0..count {
                let p = if start + i < count { start + i } else { start + i - count };
                let taken = self.take_from(p, count, &mut connections[p], &reading, &mut ahead);
                if taken.is_some() {
                    return Ok(taken);
                }
            }
        } else {
            for (pass, p) in self.visits(count) {
                let connection = &mut connections[p];
                if !self.polls(connection, pass) {
                    continue;
                }
                let taken = self.take_from(p, count, connection, &reading, &mut ahead);
                if taken.is_some() {
                    return Ok(taken);
                }
            }
        }
        // Idle: the time to hand back the blocks of dropped samples.
        self.hand_back(&mut connections);
        Ok(None)
    }

    /// The next sample queued by publisher `p` (of `count`), if it has one ready (connected:
    /// `connection.ends` is set), with the publisher it came from: the body of a receive's
    /// round robin.
    #[inline(always)]
    fn take_from<I>(
        &self,
        p: usize,
        count: usize,
        connection: &mut FromPublisher,
        reading: &Reading<impl Fn(&Line) -> I>,
        ahead: &mut Ahead,
    ) -> Option<(u32, Received<I>)> {
        let Reading { inline, line_words, ref read } = *reading;
        let (submission, completion) = connection.ends.as_mut()?;
        // Payload segments this call mapped (or failed to map) and values it could not
        // read: bounds the work a peer that keeps queueing bad values makes us do.
        let mut cold_steps = 0;
        if inline {
            // Inline samples, as many as are queued in a row (up to `AHEAD`), with one
            // claim; anything else (a block, which a tagged send of a small `T` uses) is
            // taken one at a time below.
            let lines = &mut ahead.lines[..];
            match self.claim_inline(p, count, submission, line_words, lines) {
                Ok(0) => return None,
                Ok(n) => {
                    self.held.set(self.held.get() + 1);
                    // `p < max_publishers <= 63`.
                    (ahead.publisher, ahead.next, ahead.len) = (p as u32, 1, n);
                    return Some((p as u32, Received::Inline(read(&ahead.lines[0].1))));
                }
                Err(()) => {}
            }
        }
        loop {
            // A sample is taken only once its payload segment is mapped: while it is
            // queued, its publisher's segment keeps its name, even after the publisher
            // left. Its block's first line is on its way during the claim.
            let payloads = &connection.payloads;
            let mut unmapped = None;
            let ready = |raw| {
                let value = QueuedBlock::from_raw(raw);
                if value.is_inline() {
                    return true;
                }
                match mapped_for(payloads, value) {
                    Some(mapped) => {
                        prefetch(mapped, value);
                        true
                    }
                    None => {
                        unmapped = Some(value);
                        false
                    }
                }
            };
            // A small `T` may come inline: its words are copied with the claim.
            let popped = if inline {
                submission.pop_line_when(ready, line_words).map(|(raw, line)| (raw, Some(line)))
            } else {
                submission.pop_when(ready).map(|raw| (raw, None))
            };
            let value = match (popped, unmapped) {
                (Some((raw, Some(line))), _) if QueuedBlock::from_raw(raw).is_inline() => {
                    crash_point!("shmlane.receive.popped");
                    if self.wakes_publishers {
                        self.publishers[p].space.notify_one();
                    }
                    self.next.set(if p + 1 == count { 0 } else { p + 1 });
                    self.held.set(self.held.get() + 1);
                    return Some((p as u32, Received::Inline(read(&line))));
                }
                (Some((raw, _)), _) => QueuedBlock::from_raw(raw),
                (None, Some(value)) if cold_steps < MAX_COLD_STEPS => {
                    cold_steps += 1;
                    if self.map_early(&mut connection.payloads, p, value) {
                        continue;
                    }
                    // Unmappable (gone, not ready, invalid): taken and handed back below.
                    match submission.pop() {
                        Some(raw) => QueuedBlock::from_raw(raw),
                        None => return None,
                    }
                }
                _ => return None,
            };
            crash_point!("shmlane.receive.popped");
            if self.wakes_publishers {
                // Room in our queue: wake a publisher blocked on it (no system call unless
                // one sleeps).
                self.publishers[p].space.notify_one();
            }
            match self.locate(&mut connection.payloads, p, value) {
                Some((ptr, payload)) => {
                    self.next.set(if p + 1 == count { 0 } else { p + 1 });
                    self.held.set(self.held.get() + 1);
                    return Some((
                        p as u32,
                        Received::Block(Lent { value, ptr, payload, len: Cell::new(0) }),
                    ));
                }
                // Not readable (its payload segment is gone, not ready or invalid): hand it
                // back, and count it as dropped.
                None => {
                    let _ = completion.push(value.to_raw());
                    self.count_unreadable(p, value);
                    cold_steps += 1;
                    if cold_steps >= MAX_COLD_STEPS {
                        return None;
                    }
                }
            }
        }
    }

    /// Hands the blocks of dropped samples back to their publishers now.
    /// [`receive`](Self::receive) does it by itself whenever it finds nothing queued (or would
    /// exceed `max_held`), and so does dropping the subscriber: call this to return them while
    /// the subscriber stops receiving for a while.
    pub fn flush_returns(&self) {
        let mut connections = self.connections.borrow_mut();
        self.hand_back(&mut connections);
    }

    /// Samples meant for this subscriber that were dropped (evicted from its full queue, or
    /// over its limit), since the slot was created.
    pub fn drops(&self) -> u64 {
        // Relaxed: a statistic.
        self.entry.drops.load(Ordering::Relaxed)
    }

    /// The settings of its topic.
    pub(crate) fn topic_config(&self) -> super::TopicConfig {
        self.topic.config
    }

    /// The subscriber slot this subscriber holds.
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// This subscriber's generation of its slot (unique among the slot's holders).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Samples this subscriber holds now.
    pub fn held(&self) -> u32 {
        self.held.get()
    }

    /// Whether a sample is queued for this subscriber (a snapshot: `receive` may still find
    /// nothing if the sample is unreadable, and a sample may come right after). Reads each
    /// connected publisher's queue head; never takes anything.
    pub fn has_pending(&self) -> bool {
        let ahead = self.ahead.borrow();
        if ahead.next < ahead.len {
            return true;
        }
        let mut connections = self.connections.borrow_mut();
        connections.iter_mut().any(|connection| {
            (connection.ends.is_some() || self.connect(connection))
                && connection.ends.as_ref().is_some_and(|(submission, _)| !submission.is_empty())
        })
    }

    /// The event count publishers notify after each sample they queue for this subscriber.
    pub(crate) fn signal(&self) -> &shmlane_notify::EventCount {
        &self.entry.event
    }

    /// Takes the queue ends of `connection` once its publisher acknowledged our generation.
    #[cold]
    fn connect(&self, connection: &mut FromPublisher) -> bool {
        if !Ack(&connection.ack).is_for(self.generation) {
            return false;
        }
        match (connection.queues.0.consumer(), connection.queues.1.producer()) {
            (Ok(consumer), Ok(producer)) => {
                // Only drop-oldest publishers take queued samples back while we run: under the
                // other policies they push only where there is room and empty our queue only
                // once we left or are proven dead, so our claims need no CAS.
                let consumer = match self.topic.config.overflow {
                    Overflow::DropOldest => consumer,
                    Overflow::Block | Overflow::Reject => consumer.exclusive(),
                };
                connection.ends = Some((consumer, producer));
                self.unconnected.set(self.unconnected.get().saturating_sub(1));
                true
            }
            _ => false,
        }
    }

    /// A sample from publisher `p` could not be read: counted as a drop, and reported.
    #[cold]
    #[inline(never)]
    fn count_unreadable(&self, p: usize, value: QueuedBlock) {
        // Relaxed: a statistic.
        self.entry.drops.fetch_add(1, Ordering::Relaxed);
        crate::events::unreadable_sample(&self.topic.service, p, value.generation());
    }

    /// Maps the payload segment of `value` from publisher `p` while the value is still
    /// queued; whether it is mapped now. Out of line, so the receive path stays small.
    #[cold]
    #[inline(never)]
    fn map_early(
        &self,
        payloads: &mut Vec<Option<Rc<Payload>>>,
        p: usize,
        value: QueuedBlock,
    ) -> bool {
        self.remap(payloads, p, value.generation(), value.block().pool()).is_some()
    }

    /// Resolves `value` from publisher `p` to a pointer to the elements of one of its
    /// blocks, mapping the segment (read-only) the first time; `None`
    /// if it is not a valid block. The block itself is not read here: its length word is read
    /// when asked for ([`Sample::len`]), so the block's cache miss (prefetched by `receive`)
    /// is not waited for inside `receive`.
    fn locate(
        &self,
        payloads: &mut Vec<Option<Rc<Payload>>>,
        p: usize,
        value: QueuedBlock,
    ) -> Option<(NonNull<u8>, Rc<Payload>)> {
        let generation = value.generation();
        let (pool, block) = (value.block().pool(), value.block().index() as u64);
        // Every mapped pool is of one generation: if this one is, so are the others.
        let mapped = match payloads.get(pool) {
            Some(Some(mapped)) if mapped.generation == generation => mapped,
            _ => self.remap(payloads, p, generation, pool)?,
        };
        if block >= mapped.blocks {
            return None;
        }
        let start = mapped.blocks_at + block * mapped.block_size;
        // Room for the most elements a block of this pool holds (`map` checked the geometry).
        let element = self.topic.element;
        let bytes = element.size * mapped.max_len;
        let align = element.align as usize;
        let ptr = mapped.segment.ptr(start + mapped.elements_at, bytes, align).ok()?;
        Some((ptr, Rc::clone(mapped)))
    }

    /// Maps publisher `p`'s segment `pool` of `generation` into `payloads` (first dropping
    /// the mappings of another generation: a new holder of the publisher slot).
    #[cold]
    fn remap<'p>(
        &self,
        payloads: &'p mut Vec<Option<Rc<Payload>>>,
        p: usize,
        generation: u32,
        pool: usize,
    ) -> Option<&'p Rc<Payload>> {
        // Generation 0 is no publisher's (an inline word where a block was due: a peer's
        // forgery): it names no segment, and the mappings we have stay.
        if generation == 0 {
            return None;
        }
        if payloads.iter().flatten().any(|m| m.generation != generation) {
            payloads.clear();
        }
        if payloads.len() <= pool {
            payloads.resize(pool + 1, None);
        }
        if payloads[pool].is_none() {
            payloads[pool] = Some(Rc::new(self.map(p, generation, pool)?));
        }
        payloads[pool].as_ref()
    }

    /// Maps publisher `p`'s payload segment `pool` of `generation` read-only and validates its
    /// header: the base pool holds the topic's `max_slice_len` elements per block, an added
    /// one a power of two beyond it.
    fn map(&self, p: usize, generation: u32, pool: usize) -> Option<Payload> {
        let _ = self.publishers.get(p)?;
        let mut suffix = self.topic.data_suffix(p, generation);
        if pool > 0 {
            suffix = format!("{suffix}.x{pool}");
        }
        // No wait: a publisher publishes a generation only once its segment is ready, so one
        // that is not ready (only a faulty peer makes that) is skipped, never waited for.
        let segment = self
            .topic
            .node
            .segment(&suffix)
            .fingerprint(DATA_FINGERPRINT)
            .open_timeout(Duration::ZERO)
            .open_read_only()
            .ok()?;
        let mut bytes = [0u8; size_of::<DataHeader>()];
        segment.read_bytes(DATA_HEADER_AT, &mut bytes).ok()?;
        let header: DataHeader = zerocopy::transmute!(bytes);
        let base_len = u64::from(self.topic.config.max_slice_len);
        let max_len_ok = if pool == 0 {
            header.max_len == base_len
        } else {
            header.max_len > base_len && header.max_len.is_power_of_two()
        };
        let element = self.topic.element;
        let (elements_at, block_size) =
            element.block_geometry(u32::try_from(header.max_len).ok()?)?;
        let fits = header.blocks_at.is_multiple_of(element.align)
            && header.block_size == block_size
            && header.blocks <= super::words::MAX_BLOCKS
            && header
                .block_size
                .checked_mul(header.blocks)
                .and_then(|bytes| bytes.checked_add(header.blocks_at))
                .is_some_and(|end| end <= segment.len());
        let valid = header.magic == DATA_MAGIC
            && header.version == VERSION
            && header.generation == generation
            && header.type_fingerprint == self.topic.type_fingerprint
            && max_len_ok
            && fits;
        valid.then_some(Payload {
            generation,
            segment,
            blocks_at: header.blocks_at,
            block_size: header.block_size,
            elements_at,
            blocks: header.blocks,
            max_len: header.max_len,
        })
    }

    /// A sample received from publisher slot `publisher` is dropped: it is held no more, and
    /// its block (if any) goes back.
    #[inline]
    pub(crate) fn release<I>(&self, publisher: u32, place: &Received<I>) {
        match place {
            Received::Block(lent) => self.give_back(publisher as usize, lent.value),
            Received::Inline(_) => self.set_held(self.held.get() - 1),
        }
    }

    /// Waits with `strategy`, up to `timeout`, for `receive` to give a sample (woken by our
    /// event: every send to us notifies it).
    pub(crate) fn wait_with<S>(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
        mut receive: impl FnMut() -> Result<Option<S>, ReceiveError>,
    ) -> Result<S, ReceiveError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let poll = || match receive() {
            Ok(Some(sample)) => Some(Ok(sample)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
        strategy.wait_for(&self.entry.event, deadline, poll)?
    }

    /// Sets the count of samples held, and its gauge for monitors.
    #[inline]
    fn set_held(&self, held: u32) {
        self.held.set(held);
        SlotCounters::set(&self.entry.counters.held, u64::from(held));
    }

    /// Counts a wait for an rpc response that timed out (this is the client's response
    /// subscriber).
    pub(crate) fn count_timeout(&self) {
        SlotCounters::add(&self.entry.counters.timeouts, 1);
    }

    /// The element's layout (for the run-time typed API).
    pub(crate) fn element(&self) -> Element {
        self.topic.element
    }

    /// Queues `value` to be handed back to publisher `p` ([`hand_back`](Self::hand_back)).
    fn give_back(&self, p: usize, value: QueuedBlock) {
        self.set_held(self.held.get() - 1);
        let mut connections = self.connections.borrow_mut();
        // `held + unreturned <= max_held` (checked in `receive`): within the reserved room.
        connections[p].returns.push(value.to_raw());
        self.unreturned.set(self.unreturned.get() + 1);
    }
}

impl<T: ZeroCopy> Subscriber<T> {
    /// The next sample from any publisher, if one is queued. Never blocks, no system call.
    #[inline(always)]
    pub fn receive(&self) -> Result<Option<Sample<'_, T>>, ReceiveError> {
        let (inline, line_words) = (words::inline::<T>(), words::line_words::<T>());
        let place =
            self.receive_place(inline, line_words, |line| copy_of(words::line_ref(line)))?;
        Ok(place.map(|(publisher, place)| Sample { subscriber: self, publisher, place }))
    }

    /// Hands up to `limit` queued samples, oldest first per publisher, to `f`, and returns
    /// how many; never blocks. The batch form of [`receive`](Self::receive) for streams of
    /// small samples: inline samples (a `T` of at most
    /// [`INLINE_MAX`](crate::topic::INLINE_MAX) bytes) are taken up to 16 at a time with one
    /// claim and handed to `f` straight from the copies the claim made, with no [`Sample`] per
    /// sample and one update of the counters per batch; anything else is received and
    /// released one by one. `f` sees each sample only during its call (none is held after,
    /// so `max_held` does not limit a drain); it may call this subscriber's methods.
    ///
    /// ```
    /// # use shmlane::Node;
    /// # let node = Node::builder("doc").namespace(format!("doc{}", std::process::id())).create()?;
    /// let topic = node.topic::<u64>("drain-doc").open_or_create()?;
    /// let (publisher, subscriber) = (topic.publisher()?, topic.subscriber()?);
    /// publisher.send_copies(&[1, 2, 3])?;
    /// let mut sum = 0;
    /// assert_eq!(subscriber.drain(usize::MAX, |value| sum += *value)?, 3);
    /// assert_eq!(sum, 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(&self, limit: usize, mut f: impl FnMut(&T)) -> Result<usize, ReceiveError> {
        let (inline, line_words) = (words::inline::<T>(), words::line_words::<T>());
        self.drain_with(
            inline,
            line_words,
            limit,
            || self.receive(),
            |drained| match drained {
                Drained::Line(line) => f(words::line_ref::<T>(line)),
                Drained::Sample(sample) => f(&sample),
            },
        )
    }

    /// Waits for the next sample with `strategy` (see `shmlane_notify`), up to `timeout`.
    pub fn receive_with(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Sample<'_, T>, ReceiveError> {
        self.wait_with(strategy, timeout, || self.receive())
    }

    /// The next sample, awaited: the same as [`receive_with`](Self::receive_with), from async
    /// code with any executor (see the guide's async section). Cancel-safe: a dropped future
    /// takes no sample.
    pub async fn receive_async(&self) -> Result<Sample<'_, T>, ReceiveError> {
        crate::asynchronous::until(self.signal(), || self.receive()).await
    }
}

/// Most payload segments one `receive` maps (or fails to map) plus values it cannot read and
/// skips, per publisher: a peer that fills a queue with values naming unmappable segments or
/// no valid block costs each call bounded work.
const MAX_COLD_STEPS: u32 = 8;

/// The mapped payload segment `value` names, if mapped.
#[inline]
fn mapped_for(payloads: &[Option<Rc<Payload>>], value: QueuedBlock) -> Option<&Payload> {
    match payloads.get(value.block().pool()) {
        Some(Some(mapped)) if mapped.generation == value.generation() => Some(mapped),
        _ => None,
    }
}

/// Starts loading the first line of the block `value` names in `mapped` (its length, tag and
/// first element): the load overlaps the queue claim.
#[inline]
fn prefetch(mapped: &Payload, value: QueuedBlock) {
    let block = value.block().index() as u64;
    if block < mapped.blocks {
        mapped.segment.prefetch(mapped.blocks_at + block * mapped.block_size);
    }
}

impl<T> Subscriber<T> {
    /// Hands the blocks of dropped samples back to their publishers.
    #[inline]
    fn hand_back(&self, connections: &mut [FromPublisher]) {
        if self.unreturned.get() != 0 {
            self.hand_back_now(connections);
        }
    }

    /// [`hand_back`](Self::hand_back) when there is something to hand back.
    #[inline(never)]
    fn hand_back_now(&self, connections: &mut [FromPublisher]) {
        self.unreturned.set(0);
        for (p, connection) in connections.iter_mut().enumerate() {
            if connection.returns.is_empty() {
                continue;
            }
            let Some((_, completion)) = connection.ends.as_mut() else {
                connection.returns.clear();
                continue;
            };
            for value in connection.returns.drain(..) {
                crash_point!("shmlane.give_back.before_push");
                // Sized for every block we can have from this publisher, so nothing is evicted
                // unless a peer corrupted the queue; the publisher's cleanup covers that case.
                let _ = completion.push(value);
            }
            if self.wakes_publishers {
                self.publishers[p].space.notify_one();
            }
        }
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        let mut connections = self.connections.borrow_mut();
        self.hand_back(&mut connections);
    }
}

impl<T: ZeroCopy> Sample<'_, T> {
    /// Every element sent: one for [`Publisher::send`](super::Publisher::send), the loan's
    /// length for [`send_slice`](super::Publisher::send_slice).
    pub fn as_slice(&self) -> &[T] {
        match &self.place {
            // SAFETY: as in `deref`, for `len()` elements: `locate` checked the block has room
            // for the pool's `max_len`, and `len` never exceeds it.
            Received::Block(lent) => unsafe {
                std::slice::from_raw_parts(lent.ptr.cast::<T>().as_ptr(), lent.len())
            },
            Received::Inline(value) => std::slice::from_ref(value),
        }
    }

    /// Elements sent (at least 1), read from the block's length word by copy the first time
    /// it is asked for, and the same every time after: `let n = s.len(); s.as_slice()[n - 1]`
    /// never panics. A length out of range (only a faulty publisher writes one) reads as the
    /// nearest of 1 and the most a block of its pool holds.
    pub fn len(&self) -> usize {
        match &self.place {
            Received::Block(lent) => lent.len(),
            Received::Inline(_) => 1,
        }
    }

    /// The first (for single-value topics, the only) element by copy, read with volatile
    /// loads: for a reader that does not trust its publisher to leave a block alone while it
    /// is lent out (see [`Deref`](#impl-Deref-for-Sample<'_,+'_,+T>) for when a reference is
    /// sound). An inline sample is already a private copy.
    pub fn read(&self) -> T {
        match &self.place {
            // `locate` checked the pointer lies in the live read-only mapping, aligned and
            // sized for `T` (the mapping lives as long as our `Rc`); every bit pattern is a
            // valid `T` (`T: FromBytes`), so whatever a writer does meanwhile, the copy is a
            // `T`. A volatile read is one read the compiler cannot repeat or elide.
            // SAFETY: in bounds, aligned and sized for `T` in a live mapping; any bytes are a
            // `T`.
            Received::Block(lent) => unsafe {
                std::ptr::read_volatile(lent.ptr.cast::<T>().as_ptr())
            },
            Received::Inline(value) => copy_of(value),
        }
    }

    /// Every element sent, by copy (volatile loads), as [`read`](Self::read) does for one.
    pub fn read_all(&self) -> Vec<T> {
        let Received::Block(lent) = &self.place else {
            return vec![self.read()];
        };
        let len = lent.len();
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            // SAFETY: as in `read`, for element `i < len`: `locate` checked the block has room
            // for the pool's `max_len` elements, and `len` never exceeds it.
            out.push(unsafe { std::ptr::read_volatile(lent.ptr.cast::<T>().as_ptr().add(i)) });
        }
        out
    }

    /// The publisher slot it came from.
    pub(crate) fn publisher_slot(&self) -> usize {
        self.publisher as usize
    }

    /// The sender's correlation tag (0 for plain sends, and inline samples), by copy.
    pub(crate) fn tag(&self) -> u64 {
        self.place.tag()
    }

    /// Always false: a sample has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A copy of `value` (a `T: ZeroCopy` need not be `Copy`; its bytes are a `T`).
fn copy_of<T: ZeroCopy>(value: &T) -> T {
    T::read_from_bytes(value.as_bytes()).unwrap_or_else(|_| T::new_zeroed())
}

impl<I: IntoBytes + Immutable> Received<I> {
    /// The sample's bytes in place (`len × size` of `element`): see [`Sample`]'s `Deref`
    /// for when a reference into a block is sound.
    pub(crate) fn bytes(&self, element: Element) -> &[u8] {
        match self {
            // SAFETY: `locate` checked that the block has room for the pool's `max_len`
            // elements of `element.size` bytes in the live read-only mapping (kept by the
            // `Rc`), and `len()` never exceeds `max_len`; any bytes are valid `u8`s.
            Received::Block(lent) => unsafe {
                std::slice::from_raw_parts(lent.ptr.as_ptr(), lent.len() * element.size as usize)
            },
            Received::Inline(value) => &value.as_bytes()[..element.size as usize],
        }
    }

    /// The sender's correlation tag (0 for plain sends, and inline samples), by copy.
    pub(crate) fn tag(&self) -> u64 {
        let Received::Block(lent) = self else { return 0 };
        let mut tag = [0u8; 8];
        // In bounds: `locate` checked the block; on a failure the tag reads as 0 (no match).
        let at = lent.block_at() + super::layout::TAG_AT;
        let _ = lent.payload.segment.read_bytes(at, &mut tag);
        u64::from_ne_bytes(tag)
    }

    /// Elements sent (see [`Sample::len`]).
    pub(crate) fn len(&self) -> usize {
        match self {
            Received::Block(lent) => lent.len(),
            Received::Inline(_) => 1,
        }
    }
}

impl Lent {
    /// See [`Sample::len`].
    fn len(&self) -> usize {
        let mut len = self.len.get();
        if len == 0 {
            let mut word = [0u8; 8];
            // In bounds: `locate` checked the block. On a failure the length reads as 1.
            let _ = self.payload.segment.read_bytes(self.block_at(), &mut word);
            // `map` checked `max_len` fits a `u32`.
            len =
                u32::try_from(u64::from_ne_bytes(word).clamp(1, self.payload.max_len)).unwrap_or(1);
            self.len.set(len);
        }
        len as usize
    }

    /// The block's offset in its payload segment (where its length and tag words are).
    fn block_at(&self) -> u64 {
        let block = self.value.block().index() as u64;
        self.payload.blocks_at + block * self.payload.block_size
    }
}

impl<T: ZeroCopy> Deref for Sample<'_, T> {
    type Target = T;

    /// The first (for single-value topics, the only) element, in place (zero copy; an inline
    /// sample's private copy).
    ///
    /// Sound as long as nothing writes the block while the sample lives: shmlane's publisher
    /// never writes a block lent to a subscriber (its holder bit is the subscriber's until the
    /// sample drops), and our mapping is read-only. A process of the same uid that writes the
    /// payload segment anyway (a faulty or hostile publisher) races with this reference; a
    /// reader that does not trust its publishers uses [`Sample::read`], a volatile copy.
    #[inline]
    fn deref(&self) -> &T {
        match &self.place {
            // `locate` checked the pointer lies in the mapped payload segment, aligned and
            // sized for `T`; the mapping lives as long as our `Rc`. The publisher does not
            // write a block while a subscriber holds it (its holder bit is ours until
            // `give_back`); a publisher that breaks that can only change which valid `T` we
            // read (every bit pattern is one), and our mapping is read-only, so we cannot
            // write it either.
            // SAFETY: in bounds, aligned and sized for `T` in a live mapping, and any bytes
            // are a valid `T` (above).
            Received::Block(lent) => unsafe { lent.ptr.cast::<T>().as_ref() },
            Received::Inline(value) => value,
        }
    }
}

impl<T: ZeroCopy> Drop for Sample<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.subscriber.release(self.publisher, &self.place);
    }
}
