//! [`Publisher`] and [`Loan`]: write a sample in place in the publisher's payload segment, then
//! hand its offset to every subscriber.
//!
//! Private state: the payload pools (see [`pool`](super::pool)), and per subscriber slot the
//! subscriber generation served, the queue ends, and how many blocks it has (capped at its
//! queue capacity plus `max_held`, so no subscriber can drain the pool).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmlane_notify::{Backoff, WaitStrategy};

use shmlane_queue::overflow::{Consumer, LINE_WORDS, Line, Owned, Producer};
use shmlane_segment::{Claimed, Liveness, RoleClaim, RoleOwner, SegmentRef, crash_point};

use super::handoff::{self, Ack, Roster, SubscriberSlot};
use super::layout::Element;
use super::layout::{PublisherEntry, SubscriberEntry};
use super::pool::{BlockCounts, Pools};
use super::words::{self, BlockId, Holders, QueuedBlock};
use super::{OpenTopic, Overflow};
use crate::counters::SlotCounters;
use crate::error::{ConnectError, PublishError};
use crate::payload::ZeroCopy;
use crate::sync::{AtomicU64, Ordering};
use zerocopy::IntoBytes;

/// Default wait of a send under [`Overflow::Block`].
const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a blocked send checks that the subscriber it waits for is alive (and how often
/// a drop-oldest send checks a subscriber stuck at its limit).
const LIVENESS_SLICE: Duration = Duration::from_millis(10);
/// Sends between two looks at the subscriber slots while the roster holds still.
const LOOK_EVERY: u32 = 1024;

/// A subscriber holding at most this many of our blocks once a send is queued (the new one and
/// one it has not given back yet) is keeping up, likely polling for the next sample: the send
/// hands the block's first lines to the shared cache for it (see `Pools::demote`). Behind a
/// backlog (a stream) the demote would only cost the publisher.
const CAUGHT_UP: u64 = 2;

/// Milliseconds of `CLOCK_MONOTONIC_COARSE`: paces liveness checks on the send path, where a
/// lagging subscriber under drop-oldest makes every send evict (about 10 ns to read here,
/// against 30 to 50 ns for `Instant::now`; its resolution of a few ms is plenty).
fn coarse_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (now.tv_sec as u64).saturating_mul(1000).saturating_add(now.tv_nsec as u64 / 1_000_000)
}

/// A topic's sending end. It owns its share of the topic (it can be stored in a struct and
/// outlives the [`Topic`](super::Topic) it came from) and is `Send`: move it to the thread that
/// publishes. One thread uses it at a time (it is not `Sync`: its loans and private block table
/// are unsynchronised). A topic has up to `max_publishers` at once (1 to
/// [`MAX_PARTICIPANTS`](crate::topic::MAX_PARTICIPANTS), 63).
///
/// ```
/// use shmlane::Node;
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let topic = node.topic::<u64>("publisher-doc").open_or_create()?;
/// let subscriber = topic.subscriber()?;
/// let publisher = topic.publisher()?;
///
/// let mut loan = publisher.loan()?; // a block of shared memory, written in place
/// *loan = 42;
/// assert_eq!(publisher.send(loan)?, 1); // queued for one subscriber
/// publisher.send_copy(43)?; // loan, write and send in one call
///
/// assert_eq!(*subscriber.receive()?.expect("sent above"), 42);
/// assert_eq!(*subscriber.receive()?.expect("sent above"), 43);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Publisher<T> {
    state: RefCell<State>,
    /// Loans out now (inline ones too): at most `max_loans`. Outside `state` so that an
    /// inline loan costs no borrow of it.
    loans: Cell<u32>,
    entry: SegmentRef<PublisherEntry>,
    subscribers: Vec<SegmentRef<SubscriberEntry>>,
    /// Per subscriber slot, the ack word of our connection to it.
    acks: Vec<SegmentRef<AtomicU64>>,
    /// The topic's roster word: the subscriber slots changed hands since our last look.
    roster: SegmentRef<AtomicU64>,
    block_timeout: Cell<Duration>,
    /// The layout of the topic's payload element.
    element: Element,
    /// Our publisher slot.
    slot: usize,
    generation: u32,
    /// The previous holder's generation, whose payload segments had samples still queued for
    /// a subscriber when we took the slot: removed once none is left (at our drop at the
    /// latest; else by the topic's last handle).
    departed: Option<u32>,
    /// Released after the fields above are dropped (our payloads handled) ...
    _role: RoleClaim<SegmentRef<AtomicU64>>,
    /// ... and before our share of the topic, whose last handle cleans up what nobody holds.
    topic: Arc<OpenTopic>,
    _payload: PhantomData<fn(T)>,
}

#[derive(Debug)]
struct State {
    /// The last `history` samples sent, oldest first (each block also marked with
    /// `Holders::HISTORY`).
    history: VecDeque<Sent>,
    pools: Pools,
    connections: Vec<ToSubscriber>,
    /// Bit `s` set: connection `s` is served (`served != 0`); sends skip the others.
    serving: u64,
    /// In a batch send: subscribers whose wake-up waits for the batch's end.
    wakes: Option<Holders>,
    /// How a send waits for room (Block policy). Adaptive, and kept from wait to wait: it
    /// learns that spinning is wasted when the subscriber shares our core.
    room_wait: Backoff,
    /// The roster word at our last look at the subscriber slots.
    roster_seen: u64,
    /// Sends until we look at the slots even with the roster unchanged (0: at the next).
    until_look: u32,
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        // A sample `send` reported delivered stays receivable after we leave: while one is
        // still queued, our payload segments keep their names (the subscriber maps them
        // before it takes the sample). The next holder of our slot removes them once nothing
        // names them, or the topic's last handle does.
        if state.connections.iter().any(|c| c.served != 0 && !c.submission.is_empty()) {
            state.pools.keep_files();
        }
        if let Some(departed) = self.departed
            && !self.topic.has_queued(self.slot, departed)
        {
            Pools::remove(&self.topic, self.slot, departed);
            crate::events::payloads_removed(&self.topic.service, self.slot, departed);
        }
    }
}

/// What one send queued: a block, or a small value inline in the queue slot.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Block(BlockId),
    Inline(Line),
}

impl State {
    /// Connection `s` now serves subscriber generation `generation` (0: none).
    #[inline]
    fn set_served(&mut self, s: usize, generation: u64) {
        self.connections[s].served = generation;
        let bit = 1u64 << s;
        if generation == 0 {
            self.serving &= !bit;
        } else {
            self.serving |= bit;
        }
    }
}

/// The slots of `targets` set in `serving`, lowest first.
#[inline]
fn serving_in(serving: u64, targets: &Range<usize>) -> impl Iterator<Item = usize> + use<> {
    // `targets` lies within the subscriber slots, fewer than 64.
    let below = |n: usize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut bits = serving & below(targets.end) & !below(targets.start);
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let s = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        Some(s)
    })
}

/// The publisher's side of one subscriber slot.
#[derive(Debug)]
struct ToSubscriber {
    /// The subscriber generation being served (0: none).
    served: u64,
    submission: Producer<Owned>,
    completion: Consumer<Owned>,
    /// Blocks this subscriber has queued or in hand.
    outstanding: u64,
    /// When its liveness was last checked while it was not draining its queue ([`coarse_ms`]).
    checked: Option<u64>,
}

/// A sample on loan: write it in place, then [`Publisher::send`] it. Dropped without sending,
/// it goes back. Its bytes are whatever its place last held (every bit pattern is a valid
/// `T`): set every field you publish.
///
/// A `T` of at most [`INLINE_MAX`](crate::topic::INLINE_MAX) bytes is lent in the loan itself
/// and travels inline in each subscriber's queue slot (one cache line for the subscriber to
/// read); a larger one is a payload block in shared memory, written in place and never copied.
#[derive(Debug)]
pub struct Loan<'p, T: ZeroCopy> {
    publisher: &'p Publisher<T>,
    place: Place,
}

/// Where a loan's sample is written.
#[derive(Debug)]
pub(crate) enum Place {
    /// A payload block (its elements at `ptr`).
    Block { block: BlockId, ptr: NonNull<u8> },
    /// The loan itself (the element at the start of the line words): copied into each
    /// subscriber's queue slot by the send.
    Inline(Line),
}

impl<T> Publisher<T> {
    pub(crate) fn new(topic: &Arc<OpenTopic>) -> Result<Self, ConnectError> {
        let config = topic.config;
        let me = topic.node.id();
        let mut claimed = None;
        for p in 0..config.max_publishers as usize {
            let entry = SegmentRef::try_map(&topic.segment, |s| topic.layout.publisher(s, p))?;
            let role =
                handoff::claim(entry.project(|e| &e.role), me, |o| o.liveness() == Liveness::Dead);
            if let Some((role, how)) = role {
                if let Claimed::TakenOver(dead) = how {
                    crate::events::slot_taken_over(&topic.service, "publisher", p, dead);
                }
                claimed = Some((p, entry, role));
                break;
            }
        }
        let Some((slot, entry, role)) = claimed else {
            return Err(ConnectError::NoFreeSlot { what: "publisher", max: config.max_publishers });
        };
        // Acquire: pairs with the previous holder's Release store of its generation.
        let previous = entry.generation.load(Ordering::Acquire) as u32;
        let mut departed = None;
        if previous != 0 {
            // The previous holder's payloads: subscribers that mapped them keep them; samples
            // still queued name them, so they stay until those are received (or evicted).
            if topic.has_queued(slot, previous) {
                departed = Some(previous);
            } else {
                Pools::remove(topic, slot, previous);
                crate::events::payloads_removed(&topic.service, slot, previous);
            }
        }
        let generation = previous.wrapping_add(1).max(1);
        let max_len = u64::from(config.max_slice_len);
        let pools = Pools::new(topic, slot, generation, max_len, config.blocks())?;
        crash_point!("shmlane.publisher.pool_created");
        // Release: publishes the payload segment to subscribers that load it with Acquire.
        entry.generation.store(u64::from(generation), Ordering::Release);

        let subscribers_max = config.max_subscribers as usize;
        let mut subscribers = Vec::with_capacity(subscribers_max);
        let mut acks = Vec::with_capacity(subscribers_max);
        let mut connections = Vec::with_capacity(subscribers_max);
        for s in 0..subscribers_max {
            subscribers
                .push(SegmentRef::try_map(&topic.segment, |seg| topic.layout.subscriber(seg, s))?);
            let c = slot * subscribers_max + s;
            let (submission, completion) = topic.attach_queues(c)?;
            acks.push(SegmentRef::try_map(&topic.segment, |seg| topic.layout.ack(seg, c))?);
            connections.push(ToSubscriber {
                served: 0,
                submission: submission.producer()?,
                completion: completion.consumer()?,
                outstanding: 0,
                checked: None,
            });
        }
        let state = State {
            history: VecDeque::with_capacity(config.history as usize + 1),
            pools,
            connections,
            serving: 0,
            wakes: None,
            room_wait: Backoff::new().spins(1_000).yields(10).adaptive(),
            roster_seen: 0,
            until_look: 0,
        };
        let roster = SegmentRef::try_map(&topic.segment, |seg| topic.layout.roster(seg))?;
        Ok(Publisher {
            state: RefCell::new(state),
            loans: Cell::new(0),
            entry,
            subscribers,
            acks,
            roster,
            block_timeout: Cell::new(DEFAULT_BLOCK_TIMEOUT),
            element: topic.element,
            slot,
            generation,
            departed,
            _role: role,
            topic: Arc::clone(topic),
            _payload: PhantomData,
        })
    }

    /// Takes a free block and records `len` in it; returns it with a pointer to its elements.
    fn take_block(&self, len: u64) -> Result<(BlockId, NonNull<u8>), PublishError> {
        if self.loans.get() >= self.topic.config.max_loans {
            return Err(self.loan_failed());
        }
        let mut state = self.state.borrow_mut();
        // Returned blocks are collected only when no free one is left (and after each send):
        // reading the queues of returns on every loan would cost a cache-line transfer.
        let block = match state.pools.take_free(len) {
            Some(block) => block,
            None => match self.take_block_slow(&mut state, len) {
                Ok(block) => block,
                Err(PublishError::OutOfBlocks) => return Err(self.loan_failed()),
                Err(e) => return Err(e),
            },
        };
        self.loans.set(self.loans.get() + 1);
        let elements = state.pools.elements(block, len);
        crash_point!("shmlane.loan.taken");
        Ok((block, elements))
    }

    /// No block was free: collects returns, then adds a pool for `len` if its size class
    /// has none or, failing that, takes back the blocks of dead subscribers.
    #[cold]
    fn take_block_slow(&self, state: &mut State, len: u64) -> Result<BlockId, PublishError> {
        self.take_returns(state);
        match state.pools.take(&self.topic, len) {
            Err(PublishError::OutOfBlocks) => {
                self.reclaim_dead_subscribers(state);
                state.pools.take(&self.topic, len)
            }
            other => other,
        }
    }

    /// Counts a loan refused for want of a block; returns the error to give.
    #[cold]
    fn loan_failed(&self) -> PublishError {
        SlotCounters::add(&self.entry.counters.loans_failed, 1);
        PublishError::OutOfBlocks
    }

    /// Wakes the subscribers a batch send queued samples for since its last wake-up.
    fn wake_deferred(&self, state: &mut State) {
        let Some(wakes) = state.wakes.as_mut() else { return };
        let woken = std::mem::replace(wakes, Holders::NONE);
        for (s, entry) in self.subscribers.iter().enumerate() {
            if woken.contains(Holders::subscriber(s)) {
                entry.event.notify_one();
            }
        }
    }

    /// A loan dropped without sending: its block (if any) is free again.
    pub(crate) fn unloan(&self, place: &Place) {
        self.end_loan();
        if let Place::Block { block, .. } = *place {
            let mut state = self.state.borrow_mut();
            state.pools.unloan(block);
            state.pools.free_if_unused(block);
        }
    }

    /// A loan ended (sent or given back).
    #[inline(always)]
    fn end_loan(&self) {
        self.loans.set(self.loans.get() - 1);
    }

    /// An inline loan: counted against `max_loans` like any other, with no block to take.
    #[inline(always)]
    fn loan_inline(&self) -> Result<Place, PublishError> {
        let loans = self.loans.get();
        if loans >= self.topic.config.max_loans {
            return Err(self.loan_failed());
        }
        self.loans.set(loans + 1);
        Ok(Place::Inline([0; LINE_WORDS]))
    }

    /// How long a send under [`Overflow::Block`] waits for room (default 1 s).
    pub fn set_block_timeout(&self, timeout: Duration) {
        self.block_timeout.set(timeout);
    }

    /// Sends `sent` to every served subscriber (or to slot `only`): makes room as the
    /// overflow policy says, delivers, keeps it in the history, then takes in returns.
    #[inline]
    fn publish(&self, sent: Sent, tag: u64, only: Option<usize>) -> Result<usize, PublishError> {
        let delivered = match sent {
            Sent::Inline(line) => self.publish_inline(&line, self.element.line_words(), only)?,
            Sent::Block(block) => self.publish_block(block, tag, only)?,
        };
        SlotCounters::add(&self.entry.counters.sent, 1);
        Ok(delivered)
    }

    /// [`publish`](Self::publish) of an inline value, the first `words` words of `line`
    /// (a constant for a typed publisher): the path of small samples, with no block to account
    /// for, so that as little as possible lies between a subscriber's claim of the previous
    /// sample and the store that publishes this one. Not counted.
    #[inline(always)]
    fn publish_inline(
        &self,
        line: &Line,
        words: usize,
        only: Option<usize>,
    ) -> Result<usize, PublishError> {
        let targets = self.targets(only);
        let mut state = self.state.borrow_mut();
        self.follow_roster(&mut state);
        if let Err(e) = self.make_room(&mut state, targets.clone()) {
            self.take_returns(&mut state);
            return Err(e);
        }
        crash_point!("shmlane.send.unloaned");
        let (delivered, stuck) = self.deliver_inline(&mut state, &line[..words], targets);
        self.keep_in_history(&mut state, Sent::Inline(*line));
        if !stuck.is_empty() {
            self.check_stuck(&mut state, stuck);
        }
        Ok(delivered)
    }

    /// [`publish`](Self::publish) of a loaned block (tagged if `tag != 0`), not counted.
    fn publish_block(
        &self,
        block: BlockId,
        tag: u64,
        only: Option<usize>,
    ) -> Result<usize, PublishError> {
        let sent = Sent::Block(block);
        let targets = self.targets(only);
        let mut state = self.state.borrow_mut();
        // A block stays marked loaned until the send is done: a value a peer forged into a
        // queue may name it, and its release must not free it while it is being handed out.
        if tag != 0 {
            state.pools.set_tag(block, tag);
        }
        self.follow_roster(&mut state);
        if let Err(e) = self.make_room(&mut state, targets.clone()) {
            self.take_returns(&mut state);
            state.pools.unloan(block);
            state.pools.free_if_unused(block);
            return Err(e);
        }
        crash_point!("shmlane.send.unloaned");
        let (delivered, stuck) = self.deliver_block(&mut state, block, targets);
        self.keep_in_history(&mut state, sent);
        state.pools.unloan(block);
        state.pools.free_if_unused(block);
        if !stuck.is_empty() {
            // After the block's holders are complete: cleaning a dead subscriber out may free it.
            self.check_stuck(&mut state, stuck);
        }
        // Returns are taken in after the sample is on its way, off the critical path, and the
        // next loan's block is made ready for writing.
        self.take_returns(&mut state);
        state.pools.warm_next();
        Ok(delivered)
    }

    /// The subscriber slots a send goes to: all, or slot `only`.
    #[inline]
    fn targets(&self, only: Option<usize>) -> Range<usize> {
        match only {
            // A slot named by a peer (a request's tag) may be anything: none if out of range.
            Some(s) if s < self.subscribers.len() => s..s + 1,
            Some(_) => 0..0,
            None => 0..self.subscribers.len(),
        }
    }

    /// Whether the send may go ahead under the topic's overflow policy: drop-oldest always
    /// (it evicts while delivering), reject if every target has room, block once they have.
    #[inline(always)]
    fn make_room(&self, state: &mut State, targets: Range<usize>) -> Result<(), PublishError> {
        match self.topic.config.overflow {
            Overflow::DropOldest => Ok(()),
            Overflow::Reject => {
                if !serving_in(state.serving, &targets).all(|s| self.has_room(state, s)) {
                    self.take_returns(state);
                    if !serving_in(state.serving, &targets).all(|s| self.has_room(state, s)) {
                        return Err(PublishError::SubscriberFull);
                    }
                }
                Ok(())
            }
            Overflow::Block => self.wait_for_room(state, targets),
        }
    }

    /// Queues `block` for every served subscriber in `targets`, evicting under drop-oldest;
    /// returns how many it was queued for, and the subscribers that are not draining their
    /// queues (at their limit, or evicted from), to be checked for death. The block counts
    /// against each subscriber's limit of blocks. Once queued, its first lines go to the
    /// shared cache if a subscriber is keeping up ([`CAUGHT_UP`]).
    fn deliver_block(
        &self,
        state: &mut State,
        block: BlockId,
        targets: Range<usize>,
    ) -> (usize, Holders) {
        let limit = self.outstanding_limit();
        let mut delivered = 0;
        let mut stuck = Holders::NONE;
        let mut caught_up = false;
        for s in serving_in(state.serving, &targets) {
            if state.connections[s].outstanding >= limit {
                self.take_returns_from(state, s);
                if state.connections[s].outstanding >= limit {
                    // Relaxed: a statistic.
                    self.subscribers[s].drops.fetch_add(1, Ordering::Relaxed);
                    stuck.insert(Holders::subscriber(s));
                    continue;
                }
            }
            let submission = &mut state.connections[s].submission;
            match submission.push(QueuedBlock::new(self.generation, block).to_raw()) {
                Ok(evicted) => {
                    state.pools.holders(block).insert(Holders::subscriber(s));
                    state.connections[s].outstanding += 1;
                    caught_up |= state.connections[s].outstanding <= CAUGHT_UP;
                    delivered += 1;
                    self.queued(state, s, evicted, &mut stuck);
                }
                // A corrupt queue: serve that slot again from scratch on the next send.
                Err(_) => state.set_served(s, 0),
            }
        }
        if caught_up {
            state.pools.demote(block);
        }
        (delivered, stuck)
    }

    /// Queues the inline value `words` for every served subscriber in `targets`, as
    /// [`deliver_block`](Self::deliver_block) does a block (it takes no block).
    #[inline(always)]
    fn deliver_inline(
        &self,
        state: &mut State,
        words: &[u64],
        targets: Range<usize>,
    ) -> (usize, Holders) {
        let mut delivered = 0;
        let mut stuck = Holders::NONE;
        for s in serving_in(state.serving, &targets) {
            match state.connections[s].submission.push_inline(words) {
                Ok(evicted) => {
                    delivered += 1;
                    self.queued(state, s, evicted, &mut stuck);
                }
                // A corrupt queue: serve that slot again from scratch on the next send.
                Err(_) => state.set_served(s, 0),
            }
        }
        (delivered, stuck)
    }

    /// A sample was queued for subscriber `s`, evicting `evicted` (drop-oldest): the evicted
    /// one is taken back and counted as dropped, and the subscriber woken (at the batch's end
    /// in a batch).
    #[inline(always)]
    fn queued(&self, state: &mut State, s: usize, evicted: Option<u64>, stuck: &mut Holders) {
        let entry = &self.subscribers[s];
        if let Some(evicted) = evicted {
            // Under the other policies the subscriber's claims are stores, not CASes: a send
            // that evicted would race them (`Consumer::exclusive`).
            debug_assert_eq!(
                self.topic.config.overflow,
                Overflow::DropOldest,
                "a send evicted a sample of a subscriber that claims without a CAS"
            );
            Self::take_back(state, self.generation, evicted, s);
            // Relaxed: a statistic.
            entry.drops.fetch_add(1, Ordering::Relaxed);
            stuck.insert(Holders::subscriber(s));
        }
        crash_point!("shmlane.send.pushed");
        match &mut state.wakes {
            Some(wakes) => wakes.insert(Holders::subscriber(s)),
            None => entry.event.notify_one(),
        }
    }

    /// Keeps `sent` in the history (if the topic has one), letting the oldest go.
    #[inline(always)]
    fn keep_in_history(&self, state: &mut State, sent: Sent) {
        if self.topic.config.history == 0 {
            return;
        }
        if let Sent::Block(block) = sent {
            state.pools.holders(block).insert(Holders::HISTORY);
        }
        state.history.push_back(sent);
        if state.history.len() > self.topic.config.history as usize
            && let Some(Sent::Block(oldest)) = state.history.pop_front()
        {
            state.pools.holders(oldest).remove(Holders::HISTORY);
            state.pools.free_if_unused(oldest);
        }
    }

    /// The subscribers in `stuck` stopped draining their queues: a subscriber that is
    /// proven dead has its blocks taken back and its slot freed. Each is checked at most once
    /// per [`LIVENESS_SLICE`] (reading its liveness costs microseconds).
    #[cold]
    fn check_stuck(&self, state: &mut State, stuck: Holders) {
        let now = coarse_ms();
        let slice = LIVENESS_SLICE.as_millis() as u64;
        for s in 0..state.connections.len() {
            if !stuck.contains(Holders::subscriber(s)) {
                continue;
            }
            let due = state.connections[s].checked.is_none_or(|at| now.wrapping_sub(at) >= slice);
            if due {
                state.connections[s].checked = Some(now);
                self.reclaim_subscriber_if_dead(state, s);
            }
        }
    }

    /// Whether subscriber slot `s` can take one more sample without an eviction. The queue's
    /// room comes from its producer's cached view of the subscriber's progress, so asking
    /// before every send costs no cache-line transfer while that shows room; a corrupt queue
    /// has room (the push reports it and the slot is served again from scratch).
    #[inline]
    fn has_room(&self, state: &mut State, s: usize) -> bool {
        let limit = self.outstanding_limit();
        let connection = &mut state.connections[s];
        connection.served == 0
            || (connection.submission.has_room().unwrap_or(true) && connection.outstanding < limit)
    }

    /// Most blocks one subscriber may have queued or in hand.
    fn outstanding_limit(&self) -> u64 {
        u64::from(self.topic.config.subscriber_capacity) + u64::from(self.topic.config.max_held)
    }

    /// Waits until every served subscriber has room (the block policy). Subscribers wake us
    /// through our `space` event when they take or return a sample; every slice without room
    /// we also follow subscribers leaving and joining (a new subscriber that took over the slot
    /// of a dead one is served from scratch, its predecessor's queue emptied) and clean out the
    /// one we wait for if it is proven dead.
    #[inline(always)]
    fn wait_for_room(&self, state: &mut State, targets: Range<usize>) -> Result<(), PublishError> {
        // The common case, every subscriber keeping up, reads no clock (a clock read costs
        // more than the rest of a send on some machines).
        if serving_in(state.serving, &targets).all(|s| self.has_room(state, s)) {
            return Ok(());
        }
        self.wait_for_room_slow(state, targets)
    }

    /// [`wait_for_room`](Self::wait_for_room) once a subscriber had no room.
    #[cold]
    fn wait_for_room_slow(
        &self,
        state: &mut State,
        targets: Range<usize>,
    ) -> Result<(), PublishError> {
        // The strategy's learning is kept for the next wait.
        let mut strategy = state.room_wait;
        let waited = self.wait_for_room_with(state, targets, &mut strategy);
        state.room_wait = strategy;
        waited
    }

    fn wait_for_room_with(
        &self,
        state: &mut State,
        targets: Range<usize>,
        strategy: &mut Backoff,
    ) -> Result<(), PublishError> {
        let timeout = self.block_timeout.get();
        let deadline = Instant::now().checked_add(timeout);
        for s in targets {
            loop {
                // Returns are collected only when there is no room: the common case of a
                // subscriber keeping up reads none of its lines here.
                if self.has_room(state, s) {
                    break;
                }
                self.take_returns(state);
                if self.has_room(state, s) {
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(PublishError::Timeout(timeout));
                }
                // A batch's subscribers must see what it queued before we wait for them.
                self.wake_deferred(state);
                let slice = Instant::now() + LIVENESS_SLICE;
                let until = deadline.map_or(slice, |d| d.min(slice));
                let waited = strategy.wait_for(&self.entry.space, Some(until), || {
                    // Acquire: pairs with the subscriber's AcqRel pops and returns.
                    (state.connections[s].submission.len()
                        < state.connections[s].submission.capacity())
                    .then_some(())
                });
                if waited.is_err() {
                    self.follow_subscribers(state);
                    self.reclaim_subscriber_if_dead(state, s);
                }
            }
        }
        Ok(())
    }

    /// If subscriber slot `s`'s holder is proven dead (its presence lock, never a timeout):
    /// takes back every block it had, stops serving it, and frees its slot (if its role word
    /// still names the dead holder), so that every publisher cleans its connection too and a
    /// new subscriber claims the slot as a free one. Returns whether it was dead.
    fn reclaim_subscriber_if_dead(&self, state: &mut State, s: usize) -> bool {
        let is_dead = |owner: RoleOwner| owner.liveness() == Liveness::Dead;
        let released = self.subscriber_slot(s).release_if_dead(is_dead, |dead| {
            crate::events::subscriber_reclaimed(
                &self.topic.service,
                s,
                state.connections[s].outstanding,
                dead,
            );
            self.empty_connection(state, s);
            state.set_served(s, 0);
        });
        if released {
            // The other publishers still serve it: they look at the slots again.
            Roster(&self.roster).bump();
        }
        released
    }

    /// The hand-over words of subscriber slot `s` ([`handoff`]).
    #[inline]
    fn subscriber_slot(&self, s: usize) -> SubscriberSlot<'_> {
        let entry = &self.subscribers[s];
        SubscriberSlot { role: &entry.role, generation: &entry.generation }
    }

    /// Subscribers being served now.
    pub fn subscribers(&self) -> usize {
        let mut state = self.state.borrow_mut();
        self.follow_subscribers(&mut state);
        state.connections.iter().filter(|c| c.served != 0).count()
    }

    /// How this publisher's payload blocks are used now, after taking in the blocks
    /// subscribers returned: each block is free, loaned, held by subscribers (queued or in
    /// hand), or kept only for the history, so the four add up to the total. Blocks of a
    /// subscriber that died stay held until a send finds it dead (or a new subscriber takes its
    /// slot). For monitoring and tests: it walks every block.
    pub fn block_counts(&self) -> BlockCounts {
        let mut state = self.state.borrow_mut();
        self.take_returns(&mut state);
        state.pools.counts()
    }

    /// Takes back returned blocks from every served subscriber.
    fn take_returns(&self, state: &mut State) {
        for s in serving_in(state.serving, &(0..state.connections.len())) {
            self.take_returns_from(state, s);
        }
    }

    /// Takes back the blocks subscriber slot `s` returned.
    fn take_returns_from(&self, state: &mut State, s: usize) {
        if state.connections[s].served == 0 {
            return;
        }
        // At most a queue's worth per call: a subscriber that keeps pushing (only a faulty one
        // returns more than it holds) cannot keep us here.
        for _ in 0..state.connections[s].completion.capacity() {
            let Some(value) = state.connections[s].completion.pop() else { break };
            Self::take_back(state, self.generation, value, s);
        }
    }

    /// Subscriber `s` gave back (or lost) `value`: clear its holder bit if the value is one of
    /// our blocks that `s` holds; anything else (a stale generation, a lie) is ignored.
    fn take_back(state: &mut State, generation: u32, value: u64, s: usize) {
        let queued = QueuedBlock::from_raw(value);
        let block = queued.block();
        if queued.generation() != generation || !state.pools.contains(block) {
            return;
        }
        let holder = Holders::subscriber(s);
        if !state.pools.holders(block).contains(holder) {
            return;
        }
        state.pools.holders(block).remove(holder);
        state.connections[s].outstanding -= 1;
        state.pools.free_if_unused(block);
    }

    /// [`follow_subscribers`](Self::follow_subscribers) if the roster moved since our last
    /// look, or [`LOOK_EVERY`] sends passed (a bound on what a peer that holds the roster
    /// still, or a subscriber killed between its two steps, can make us miss).
    #[inline]
    fn follow_roster(&self, state: &mut State) {
        let changed = Roster(&self.roster).changed(&mut state.roster_seen);
        if changed || state.until_look == 0 {
            state.until_look = LOOK_EVERY;
            self.follow_subscribers(state);
        } else {
            state.until_look -= 1;
        }
    }

    /// Follows subscribers joining and leaving: a slot whose generation changed (or that was
    /// freed) is cleaned (its queue emptied, its blocks taken back) before the new generation is
    /// acknowledged, so a new subscriber never sees its predecessor's samples.
    #[inline]
    fn follow_subscribers(&self, state: &mut State) {
        for s in 0..state.connections.len() {
            let generation = self.subscriber_slot(s).wanted();
            if generation != state.connections[s].served {
                self.start_serving(state, s, generation);
            }
        }
    }

    /// Subscriber slot `s` changed hands (its generation is now `generation`): adopts or
    /// cleans the connection, then acknowledges the generation.
    #[cold]
    fn start_serving(&self, state: &mut State, s: usize, generation: u64) {
        // A connection a previous holder of our slot served is adopted: its samples still
        // queued stay for the subscriber (they name the old payload segment, which the
        // subscriber may have mapped; their returns are ignored as another generation).
        let served = state.connections[s].served;
        let served = Ack(&self.acks[s]).serve(served, generation, || {
            self.empty_connection(state, s);
            if generation != 0 {
                self.replay_history(state, s);
                crash_point!("shmlane.serve.cleaned");
            }
        });
        state.set_served(s, served);
    }

    /// Queues the history, oldest first, for the subscriber that just joined slot `s`.
    fn replay_history(&self, state: &mut State, s: usize) {
        for i in 0..state.history.len() {
            let submission = &mut state.connections[s].submission;
            // The queue was just emptied and the history is no longer than it: no eviction.
            match state.history[i] {
                Sent::Block(block) => {
                    let queued = QueuedBlock::new(self.generation, block);
                    if submission.try_push(queued.to_raw()).is_ok() {
                        state.pools.holders(block).insert(Holders::subscriber(s));
                        state.connections[s].outstanding += 1;
                    }
                }
                Sent::Inline(line) => {
                    let words = &line[..self.element.line_words()];
                    let _ = submission.try_push_inline(words);
                }
            }
        }
    }

    /// Empties connection `s` and takes back every block its subscriber had.
    fn empty_connection(&self, state: &mut State, s: usize) {
        while let Ok(Some(value)) = state.connections[s].submission.evict() {
            Self::take_back(state, self.generation, value, s);
        }
        for _ in 0..state.connections[s].completion.capacity() {
            if state.connections[s].completion.pop().is_none() {
                break;
            }
        }
        state.pools.clear_holder(Holders::subscriber(s));
        state.connections[s].outstanding = 0;
    }

    /// Runs `f`, deferring the wake-up check of each subscriber its sends queue for to its
    /// end (and to any wait for room under [`Overflow::Block`]), as
    /// [`send_copies`](Publisher::send_copies) does for its values. Nested, the outer batch
    /// wakes.
    pub(crate) fn batched<R>(&self, f: impl FnOnce() -> R) -> R {
        {
            let mut state = self.state.borrow_mut();
            if state.wakes.is_some() {
                drop(state);
                return f();
            }
            state.wakes = Some(Holders::NONE);
        }
        // Woken also if `f` unwinds, so no subscriber sleeps on samples it was sent.
        struct Wake<'p, T>(&'p Publisher<T>);
        impl<T> Drop for Wake<'_, T> {
            fn drop(&mut self) {
                if let Ok(mut state) = self.0.state.try_borrow_mut() {
                    self.0.wake_deferred(&mut state);
                    state.wakes = None;
                }
            }
        }
        let _wake = Wake(self);
        f()
    }

    /// A place for `len` elements (`1..=u32::MAX`), for the run-time typed API: inline for
    /// one element of a type that travels inline, else a payload block.
    pub(crate) fn loan_place(&self, len: u64) -> Result<Place, PublishError> {
        if len == 1 && self.element.inline() {
            return self.loan_inline();
        }
        let (block, ptr) = self.take_block(len)?;
        Ok(Place::Block { block, ptr })
    }

    /// Sends a loaned place (its loan ends: the send owns it now), as [`send`](Publisher::send).
    pub(crate) fn send_place(&self, place: Place) -> Result<usize, PublishError> {
        self.end_loan();
        let sent = match place {
            Place::Block { block, .. } => Sent::Block(block),
            Place::Inline(line) => Sent::Inline(line),
        };
        self.publish(sent, 0, None)
    }

    /// Sends `bytes` (whole elements) by copy, for the run-time typed API: with a correlation
    /// tag (then in a block, where the tag lives) to subscriber slot `only` if given, as
    /// [`send_tagged`](Publisher::send_tagged).
    pub(crate) fn send_bytes(
        &self,
        bytes: &[u8],
        tag: u64,
        only: Option<usize>,
    ) -> Result<usize, PublishError> {
        let size = self.element.size;
        let bad = || PublishError::BadByteLen { len: bytes.len(), element_size: size };
        let len = bytes.len() as u64;
        if len == 0 || !len.is_multiple_of(size) || len / size > u64::from(u32::MAX) {
            return Err(bad());
        }
        if len == size && tag == 0 && self.element.inline() {
            let mut line: Line = [0; LINE_WORDS];
            line.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
            return self.publish(Sent::Inline(line), 0, only);
        }
        let (block, ptr) = self.take_block(len / size)?;
        // SAFETY: the block was just loaned to us for `len / size` elements: `len` bytes at
        // `ptr` lie in it, in our writable mapping, and nothing else writes them.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        self.end_loan();
        self.publish(Sent::Block(block), tag, only)
    }

    /// Bytes of one payload element.
    pub(crate) fn element_size(&self) -> u64 {
        self.element.size
    }

    /// Takes back the blocks of subscribers proven dead (the pool ran dry).
    fn reclaim_dead_subscribers(&self, state: &mut State) {
        for s in 0..state.connections.len() {
            if state.connections[s].outstanding != 0 {
                self.reclaim_subscriber_if_dead(state, s);
            }
        }
    }
}

impl<T: ZeroCopy> Publisher<T> {
    /// Loans a sample to write in place: inline for a small `T` (see [`Loan`]), else a
    /// payload block.
    pub fn loan(&self) -> Result<Loan<'_, T>, PublishError> {
        if words::inline::<T>() {
            return self.loan_inline().map(|place| Loan { publisher: self, place });
        }
        self.loan_block()
    }

    /// Loans a payload block whatever the size of `T` (a tagged send needs one).
    pub(crate) fn loan_block(&self) -> Result<Loan<'_, T>, PublishError> {
        let (block, ptr) = self.take_block(1)?;
        Ok(Loan { publisher: self, place: Place::Block { block, ptr } })
    }

    /// Loans a payload block for `len` elements, for payloads sized at run time such as
    /// audio frames. Up to the topic's `max_slice_len` it comes from the base pool; a larger
    /// slice comes from a payload segment added for its size class (a power of two of
    /// elements), kept for later loans of that class.
    pub fn loan_slice(&self, len: usize) -> Result<SliceLoan<'_, T>, PublishError> {
        let len64 = u64::try_from(len).ok().filter(|n| (1..=u64::from(u32::MAX)).contains(n));
        let len64 = len64.ok_or(PublishError::BadSliceLen { len })?;
        let (block, ptr) = self.take_block(len64)?;
        Ok(SliceLoan { publisher: self, block, ptr: ptr.cast(), len })
    }

    /// Sends a sample by copy (for small `T`: inline in the queue slots up to
    /// [`INLINE_MAX`](crate::topic::INLINE_MAX) bytes, else through a payload block).
    pub fn send_copy(&self, value: T) -> Result<usize, PublishError> {
        if words::inline::<T>() {
            return self.publish_typed(Sent::Inline(words::to_line(&value)));
        }
        let mut loan = self.loan()?;
        *loan = value;
        self.send(loan)
    }

    /// Sends each of `values` by copy, in order, as [`send_copy`](Self::send_copy) would one
    /// by one, but wakes each subscriber once, at the end of the batch, instead of after every
    /// sample: a wake-up check costs a full memory fence, which a stream of small samples
    /// otherwise pays per sample. Subscribers that poll see each sample as soon as it is
    /// queued; a blocked subscriber is woken at the end (or whenever the batch has to wait for
    /// its room under [`Overflow::Block`]). A failure stops the batch: the values before it
    /// were sent ([`BatchError::sent`](crate::BatchError)).
    pub fn send_copies(&self, values: &[T]) -> Result<(), crate::BatchError> {
        if words::inline::<T>() {
            return self.send_inline_copies(values);
        }
        self.batched(|| {
            for (sent, value) in values.iter().enumerate() {
                let result = self.loan_block().and_then(|mut loan| {
                    loan.as_mut_bytes().copy_from_slice(value.as_bytes());
                    self.send(loan)
                });
                if let Err(error) = result {
                    return Err(crate::BatchError { sent, error });
                }
            }
            Ok(())
        })
    }

    /// [`send_copies`](Self::send_copies) of an inline `T`: subscribers are followed and the
    /// send counted once per batch, each value then only finds room and is queued.
    fn send_inline_copies(&self, values: &[T]) -> Result<(), crate::BatchError> {
        let targets = self.targets(None);
        let mut state = self.state.borrow_mut();
        state.wakes = Some(Holders::NONE);
        self.follow_roster(&mut state);
        let mut outcome = Ok(());
        let mut sent = 0;
        for value in values {
            if let Err(error) = self.make_room(&mut state, targets.clone()) {
                self.take_returns(&mut state);
                outcome = Err(crate::BatchError { sent, error });
                break;
            }
            crash_point!("shmlane.send.unloaned");
            let line = words::to_line(value);
            let line_words = &line[..words::line_words::<T>()];
            let (_, stuck) = self.deliver_inline(&mut state, line_words, targets.clone());
            self.keep_in_history(&mut state, Sent::Inline(line));
            if !stuck.is_empty() {
                self.check_stuck(&mut state, stuck);
            }
            sent += 1;
        }
        SlotCounters::add(&self.entry.counters.sent, sent as u64);
        self.wake_deferred(&mut state);
        state.wakes = None;
        outcome
    }

    /// Takes a loan apart for its send: what to queue (the loan count is the send's now).
    fn take_loan(&self, loan: Loan<'_, T>) -> Sent {
        let loan = std::mem::ManuallyDrop::new(loan);
        self.end_loan();
        match &loan.place {
            Place::Block { block, .. } => Sent::Block(*block),
            Place::Inline(line) => Sent::Inline(*line),
        }
    }

    /// Publishes a loaned sample to every subscriber; returns how many it was queued for.
    /// A full subscriber queue is handled by the topic's [`Overflow`] policy: drop-oldest
    /// evicts its oldest sample (counted in that subscriber's drops), block waits for room,
    /// reject refuses the whole send.
    pub fn send(&self, loan: Loan<'_, T>) -> Result<usize, PublishError> {
        let sent = self.take_loan(loan);
        self.publish_typed(sent)
    }

    /// [`publish`](Publisher::publish) to every subscriber, an inline value with the words of
    /// `T` (a constant).
    #[inline(always)]
    fn publish_typed(&self, sent: Sent) -> Result<usize, PublishError> {
        let delivered = match sent {
            Sent::Inline(line) => self.publish_inline(&line, words::line_words::<T>(), None)?,
            Sent::Block(block) => self.publish_block(block, 0, None)?,
        };
        SlotCounters::add(&self.entry.counters.sent, 1);
        Ok(delivered)
    }

    /// [`send`](Self::send) with a correlation tag the subscriber reads back, to subscriber
    /// slot `only` alone if given (a response goes to the client that asked).
    pub(crate) fn send_tagged(
        &self,
        loan: Loan<'_, T>,
        tag: u64,
        only: Option<usize>,
    ) -> Result<usize, PublishError> {
        match self.take_loan(loan) {
            Sent::Block(block) => self.publish(Sent::Block(block), tag, only),
            // The tag lives in a block: an inline loan's value is sent in one.
            Sent::Inline(line) => {
                let mut loan = self.loan_block()?;
                loan.as_mut_bytes().copy_from_slice(words::line_ref::<T>(&line).as_bytes());
                self.send_tagged(loan, tag, only)
            }
        }
    }

    /// Publishes a loaned slice to every subscriber, as [`send`](Self::send) does.
    pub fn send_slice(&self, loan: SliceLoan<'_, T>) -> Result<usize, PublishError> {
        let block = loan.block;
        std::mem::forget(loan);
        self.end_loan();
        self.publish(Sent::Block(block), 0, None)
    }
}

/// A payload block on loan for a slice of `len` elements ([`Publisher::loan_slice`]): fill it
/// in place, then [`Publisher::send_slice`] it. As with [`Loan`], the elements hold whatever
/// the block last held.
#[derive(Debug)]
pub struct SliceLoan<'p, T: ZeroCopy> {
    publisher: &'p Publisher<T>,
    block: BlockId,
    ptr: NonNull<T>,
    len: usize,
}

impl<T: ZeroCopy> Deref for SliceLoan<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: as for `Loan`: `len` elements of our exclusively loaned block, in bounds and
        // aligned (checked in `take_block`), every bit pattern a valid `T`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ZeroCopy> DerefMut for SliceLoan<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference to the block.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ZeroCopy> Drop for SliceLoan<'_, T> {
    fn drop(&mut self) {
        let block = self.block;
        self.publisher.unloan(&Place::Block { block, ptr: self.ptr.cast() });
    }
}

impl<T: ZeroCopy> Deref for Loan<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match &self.place {
            // SAFETY: the block is loaned to us alone (no subscriber holds it: its holder bits
            // are clear) in our writable payload mapping, in bounds and aligned (checked in
            // `take_block`); its bytes are a valid `T` whatever they are (`T: FromBytes`).
            Place::Block { ptr, .. } => unsafe { ptr.cast::<T>().as_ref() },
            Place::Inline(line) => words::line_ref(line),
        }
    }
}

impl<T: ZeroCopy> DerefMut for Loan<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.place {
            // SAFETY: as in `deref`; `&mut self` makes this the only reference to the block.
            Place::Block { ptr, .. } => unsafe { ptr.cast::<T>().as_mut() },
            Place::Inline(line) => words::line_mut(line),
        }
    }
}

impl<T: ZeroCopy> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        self.publisher.unloan(&self.place);
    }
}
