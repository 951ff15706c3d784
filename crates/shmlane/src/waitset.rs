//! [`WaitSet`]: one thread waits on many sources at once (subscribers, rpc servers and
//! clients, event listeners), on deadlines ("this topic delivers at least every 5 ms") and on
//! intervals, with one system call to sleep on all of them
//! ([`shmlane_notify::wait_any`]: `futex_waitv` on Linux 5.16+).
//!
//! ```
//! use std::time::Duration;
//! use shmlane::{Node, WaitSet, waitset::Ready, notify::Blocking};
//!
//! # let namespace = format!("doc{}", std::process::id());
//! let node = Node::builder("doc").namespace(namespace).create()?;
//! let (bids, asks) = (node.topic::<u64>("ws-bids").open_or_create()?, node.topic::<u64>("ws-asks").open_or_create()?);
//! let (bid_sub, ask_sub) = (bids.subscriber()?, asks.subscriber()?);
//! let heartbeat = node.event("ws-heartbeat").open_or_create()?.listener()?;
//!
//! let waitset = WaitSet::new();
//! let bid = waitset.attach(&bid_sub);
//! let ask = waitset.attach_deadline(&ask_sub, Duration::from_millis(500)); // reported if silent
//! let beat = waitset.attach(&heartbeat);
//!
//! asks.publisher()?.send_copy(101)?;
//! let ready = waitset.wait(&mut Blocking::new(), Some(Duration::from_secs(5)))?;
//! assert_eq!(ready, [Ready::Data(ask.id())]);
//! assert_eq!(*ask_sub.receive()?.expect("ready"), 101);
//! # let _ = (bid, beat);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A source is ready while something is queued for it: a wait returns at once until it is
//! taken, so take what a [`Ready::Data`] names (or some of it: it stays ready). Timers are
//! checked whenever the set looks at its sources, and the sleep ends by the earliest one; a
//! timer fires no earlier than due, and late by the strategy's wake-up latency plus, while
//! parked, the kernel's timer slack (50 µs by default on Linux).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use shmlane_notify::{AnyOf, EventCount, TimedOut, WaitStrategy};

use crate::event::Listener;
use crate::payload::ZeroCopy;
use crate::rpc::{Client, RawClient, RawServer, Server};
use crate::topic::{RawSubscriber, Subscriber};

/// What a [`WaitSet`] can wait on: something other processes notify through an event count,
/// and that can tell, without taking it, whether something is there.
pub trait Source: private::Sealed {
    /// The event count notified when something arrives.
    #[doc(hidden)]
    fn signal(&self) -> &EventCount;
    /// Whether something is there now.
    #[doc(hidden)]
    fn is_ready(&self) -> bool;
}

mod private {
    pub trait Sealed {}
}

macro_rules! source {
    ($({$($param:ident),*})? $source:ty, |$s:ident| $subscriber:expr) => {
        impl$(<$($param: ZeroCopy),*>)? private::Sealed for $source {}
        impl$(<$($param: ZeroCopy),*>)? Source for $source {
            fn signal(&self) -> &EventCount {
                let $s = self;
                $subscriber.signal()
            }
            fn is_ready(&self) -> bool {
                let $s = self;
                $subscriber.has_pending()
            }
        }
    };
}

source!({T} Subscriber<T>, |s| s);
source!(RawSubscriber, |s| s);
source!(Listener, |s| s);
source!({Req, Resp} Server<Req, Resp>, |s| s.requests());
source!({Req, Resp} Client<Req, Resp>, |s| s.responses());
source!(RawServer, |s| s.requests());
source!(RawClient, |s| s.responses());

/// Names an attachment of a [`WaitSet`] (unique within it, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentId(u64);

/// What a wait found, one per attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Something is there to take from this source.
    Data(AttachmentId),
    /// This source's deadline passed with nothing from it (reported once per deadline; the
    /// next is counted from now).
    Missed(AttachmentId),
    /// This interval's period came round.
    Tick(AttachmentId),
}

impl Ready {
    /// The attachment it is about.
    pub fn id(self) -> AttachmentId {
        match self {
            Ready::Data(id) | Ready::Missed(id) | Ready::Tick(id) => id,
        }
    }
}

/// Why a wait returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Nothing is attached, so nothing could ever be ready.
    #[error("the wait set has no attachment: attach a source or an interval before waiting")]
    NothingAttached,
    /// The timeout passed with nothing ready.
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
}

/// A source, deadline or interval attached to a [`WaitSet`]; dropping it detaches it.
#[derive(Debug)]
#[must_use = "dropping an Attachment detaches it at once"]
pub struct Attachment<'w, 'a> {
    set: &'w WaitSet<'a>,
    id: AttachmentId,
}

impl Attachment<'_, '_> {
    /// Its id, as [`Ready::id`] reports it.
    pub fn id(&self) -> AttachmentId {
        self.id
    }

    /// Whether `ready` is about this attachment.
    pub fn is(&self, ready: Ready) -> bool {
        ready.id() == self.id
    }
}

impl Drop for Attachment<'_, '_> {
    fn drop(&mut self) {
        self.set.detach(self.id);
    }
}

/// Waits on many sources, deadlines and intervals at once (see the [module](self) docs).
/// Sources are borrowed for `'a`; the set is used by one thread (not `Sync`), as its sources
/// are.
#[derive(Debug, Default)]
pub struct WaitSet<'a> {
    state: RefCell<State<'a>>,
}

#[derive(Default)]
struct State<'a> {
    entries: Vec<Entry<'a>>,
    /// The sources' event counts, in `entries` order (rebuilt on attach and detach).
    /// Shared with a wait in progress, so that waiting does not copy it.
    signals: std::rc::Rc<[&'a EventCount]>,
    next_id: u64,
}

impl std::fmt::Debug for State<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("attachments", &self.entries.len()).finish()
    }
}

struct Entry<'a> {
    id: AttachmentId,
    kind: Kind<'a>,
}

enum Kind<'a> {
    /// A source, with a deadline if it has one.
    Source { source: &'a dyn Source, deadline: Option<Timer> },
    /// An interval.
    Interval(Timer),
}

/// A period and when it is next due.
#[derive(Clone, Copy)]
struct Timer {
    every: Duration,
    due: Instant,
}

impl Timer {
    fn new(every: Duration) -> Timer {
        Timer { every, due: Instant::now() + every }
    }
}

impl<'a> WaitSet<'a> {
    /// An empty set.
    pub fn new() -> Self {
        WaitSet::default()
    }

    /// Attaches `source`: a wait reports [`Ready::Data`] while something is there.
    pub fn attach(&self, source: &'a impl Source) -> Attachment<'_, 'a> {
        self.add(Kind::Source { source, deadline: None })
    }

    /// Attaches `source` with a deadline: as [`attach`](Self::attach), and a wait also
    /// reports [`Ready::Missed`] when `within` passed since it was last seen ready (or
    /// attached).
    pub fn attach_deadline(&self, source: &'a impl Source, within: Duration) -> Attachment<'_, 'a> {
        self.add(Kind::Source { source, deadline: Some(Timer::new(within)) })
    }

    /// Attaches an interval: a wait reports [`Ready::Tick`] every `every` (a period that has
    /// fallen behind by more than one is skipped, not reported twice).
    pub fn attach_interval(&self, every: Duration) -> Attachment<'_, 'a> {
        self.add(Kind::Interval(Timer::new(every)))
    }

    /// Attachments now.
    pub fn len(&self) -> usize {
        self.state.borrow().entries.len()
    }

    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits with `strategy` until something is ready, up to `timeout`; returns what is, in
    /// attachment order. Busy strategies poll every source in turn; parking ones sleep on all
    /// of them at once ([`WaitStrategy::wait_for_any`]), and no longer than the next timer.
    pub fn wait(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Vec<Ready>, WaitError> {
        if self.is_empty() {
            return Err(WaitError::NothingAttached);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let signals = std::rc::Rc::clone(&self.state.borrow().signals);
        let mut ready = Vec::new();
        loop {
            let wake_by = earliest(deadline, self.next_timer());
            let found = strategy.wait_for_any(&AnyOf(&signals), wake_by, || {
                self.collect(&mut ready);
                (!ready.is_empty()).then_some(())
            });
            match found {
                Ok(()) => return Ok(ready),
                Err(TimedOut) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    self.collect(&mut ready);
                    return if ready.is_empty() { Err(TimedOut.into()) } else { Ok(ready) };
                }
                // A timer's turn: the next poll reports it.
                Err(TimedOut) => {}
            }
        }
    }

    /// [`wait`](Self::wait), then calls `process` with each ready attachment; returns how
    /// many. `process` may detach attachments (drop them) and attach new ones.
    pub fn wait_and_process(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
        mut process: impl FnMut(Ready),
    ) -> Result<usize, WaitError> {
        let ready = self.wait(strategy, timeout)?;
        let count = ready.len();
        ready.into_iter().for_each(&mut process);
        Ok(count)
    }

    fn add(&self, kind: Kind<'a>) -> Attachment<'_, 'a> {
        let mut state = self.state.borrow_mut();
        let id = AttachmentId(state.next_id);
        state.next_id += 1;
        state.entries.push(Entry { id, kind });
        state.rebuild_signals();
        Attachment { set: self, id }
    }

    fn detach(&self, id: AttachmentId) {
        let mut state = self.state.borrow_mut();
        state.entries.retain(|entry| entry.id != id);
        state.rebuild_signals();
    }

    /// The earliest timer.
    fn next_timer(&self) -> Option<Instant> {
        let state = self.state.borrow();
        state.entries.iter().filter_map(|entry| entry.timer().map(|t| t.due)).min()
    }

    /// Fills `ready` with what is ready now (clearing it first), and moves the timers of
    /// what it reports.
    fn collect(&self, ready: &mut Vec<Ready>) {
        ready.clear();
        let mut state = self.state.borrow_mut();
        // The clock is read only if a timer is attached (a busy poll stays a few loads).
        let mut now = None;
        let mut clock = || *now.get_or_insert_with(Instant::now);
        for entry in &mut state.entries {
            match &mut entry.kind {
                Kind::Source { source, deadline } => {
                    if source.is_ready() {
                        ready.push(Ready::Data(entry.id));
                        if let Some(timer) = deadline {
                            timer.due = clock() + timer.every;
                        }
                    } else if let Some(timer) = deadline
                        && clock() >= timer.due
                    {
                        ready.push(Ready::Missed(entry.id));
                        timer.due = clock() + timer.every;
                    }
                }
                Kind::Interval(timer) => {
                    let at = clock();
                    if at >= timer.due {
                        ready.push(Ready::Tick(entry.id));
                        timer.due += timer.every;
                        if timer.due <= at {
                            timer.due = at + timer.every;
                        }
                    }
                }
            }
        }
    }
}

impl<'a> State<'a> {
    fn rebuild_signals(&mut self) {
        self.signals = self
            .entries
            .iter()
            .filter_map(|entry| match entry.kind {
                Kind::Source { source, .. } => Some(source.signal()),
                Kind::Interval(_) => None,
            })
            .collect();
    }
}

impl Entry<'_> {
    fn timer(&self) -> Option<&Timer> {
        match &self.kind {
            Kind::Source { deadline, .. } => deadline.as_ref(),
            Kind::Interval(timer) => Some(timer),
        }
    }
}

/// The earlier of two optional instants (none is "never").
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
