//! Events: payload-free notifications carrying an event id, from any number of
//! [`Notifier`]s to every [`Listener`], which may block until one arrives.
//!
//! Segment `{namespace}.event.{service}`:
//!
//! | region | content |
//! |---|---|
//! | header (128 B) | magic `SHMLEVNT`, version, `max_listeners`, `max_event_id` (read by copy) |
//! | listeners | `max_listeners` × (role word, `EventCount`, then `ceil(max_event_id / 64)` words of pending-id bits) |
//!
//! A notifier sets the id's bit in every held listener slot (`fetch_or`, Release) and notifies
//! that listener's event count (no system call unless it sleeps). A listener takes all pending
//! ids at once by swapping each word to zero (Acquire). The same id notified twice before the
//! listener looks is seen once: events are level, not counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_notify::{EventCount, WaitStrategy};
use shmlane_segment::{
    Carver, Fingerprint, Offset, OffsetError, Region, RegionLayout, RoleClaim, Segment, SegmentRef,
    SharedView,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::counters::SlotCounters;
use crate::error::{
    ConfigError, ConnectError, CorruptError, NotifyError, ReceiveError, TopicError,
};
use crate::node::{Node, check_name};
use crate::sync::{AtomicU64, Ordering};

const MAGIC: [u8; 8] = *b"SHMLEVNT";
const VERSION: u32 = 1;
pub(crate) const SEGMENT_FINGERPRINT: Fingerprint = Fingerprint::new("shmlane.event").with_u64(2);
/// Largest `max_event_id`.
pub const MAX_EVENT_ID: u32 = 1 << 16;

/// An event id: a number below the service's `max_event_id`.
pub type EventId = u32;

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Header {
    magic: [u8; 8],
    version: u32,
    max_listeners: u32,
    max_event_id: u32,
    reserved: u32,
}

/// A listener slot's fixed part; its pending-id words follow in their own region.
#[repr(C)]
#[derive(Debug)]
struct ListenerEntry {
    role: AtomicU64,
    event: EventCount,
    /// Its holder's counters (written by it alone, on their own line).
    counters: SlotCounters,
}

// SAFETY: a `#[repr(C)]` aggregate of an atomic, an event count and counters (all `SharedView`).
unsafe impl SharedView for ListenerEntry {}

#[derive(Debug, Clone)]
struct Layout {
    header: Region,
    /// Per listener: (entry, pending-id words).
    listeners: Vec<(Region, Region)>,
    words: u64,
    size: u64,
}

impl Layout {
    fn new(max_listeners: u32, max_event_id: u32) -> Result<Layout, TopicError> {
        let invalid =
            |e: shmlane_segment::LayoutError| TopicError::InvalidConfig(ConfigError::TooLarge(e));
        let mut carver = Carver::new();
        let header = carver.place(RegionLayout { size: 128, align: 128 }).map_err(invalid)?;
        let words = u64::from(max_event_id).div_ceil(64);
        let mut listeners = Vec::new();
        for _ in 0..max_listeners {
            let entry =
                RegionLayout { size: size_of::<CachePadded<ListenerEntry>>() as u64, align: 128 };
            let entry = carver.place(entry).map_err(invalid)?;
            let bits =
                carver.place(RegionLayout { size: words * 8, align: 128 }).map_err(invalid)?;
            listeners.push((entry, bits));
        }
        Ok(Layout { header, listeners, words, size: carver.total_size() })
    }

    fn entry<'s>(&self, segment: &'s Segment, l: usize) -> Result<&'s ListenerEntry, OffsetError> {
        let at: Offset<ListenerEntry> = self.listeners[l].0.offset_of(0)?;
        segment.get(at)
    }

    fn bits<'s>(&self, segment: &'s Segment, l: usize) -> Result<&'s [AtomicU64], OffsetError> {
        let at: Offset<AtomicU64> = self.listeners[l].1.offset_of(0)?;
        segment.get_slice(at, self.words)
    }
}

/// Checks an event service's settings: 1 to 64 listeners, ids below 1 to [`MAX_EVENT_ID`].
fn check_settings(max_listeners: u32, max_event_id: u32) -> Result<(), ConfigError> {
    for (setting, value, max) in
        [("max_listeners", max_listeners, 64), ("max_event_id", max_event_id, MAX_EVENT_ID)]
    {
        if !(1..=max).contains(&value) {
            return Err(ConfigError::OutOfRange { setting, value, min: 1, max });
        }
    }
    Ok(())
}

/// Creates or opens an [`Event`] service; made by [`Node::event`].
#[derive(Debug)]
pub struct EventBuilder<'n> {
    node: &'n Node,
    service: String,
    max_listeners: u32,
    max_event_id: u32,
}

/// An event service, opened by name. Create [`Notifier`]s and [`Listener`]s from it: they own
/// their share of the service (they can be stored in a struct, moved to another thread, and
/// outlive the `Event`). Cloning an `Event` is cheap (a reference count). Ids are below
/// `max_event_id` (1 to [`MAX_EVENT_ID`], 65 536); up to `max_listeners` listeners at once (1
/// to 64); any number of notifiers.
///
/// ```
/// use shmlane::Node;
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let event = node.event("event-doc").max_event_id(16).open_or_create()?;
/// let listener = event.listener()?; // sees the ids notified once it has joined
/// let notifier = event.notifier()?;
///
/// notifier.notify(3)?;
/// notifier.notify(3)?; // seen once: events say "this happened", not how often
/// notifier.notify(9)?;
/// assert_eq!(listener.try_take(), [3, 9]);
/// assert!(notifier.notify(16).is_err()); // ids are below max_event_id
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    open: Arc<OpenEvent>,
}

/// What this process holds of one event service; the last handle to drop (event, notifier or
/// listener) removes the segment's name if no live listener is left.
#[derive(Debug)]
struct OpenEvent {
    segment: Arc<Segment>,
    layout: Layout,
    node: Node,
    max_event_id: u32,
}

/// Sends event ids to every listener. `Send` and `Sync`: one notifier may be shared by
/// threads.
///
/// ```
/// use shmlane::Node;
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let event = node.event("notifier-doc").open_or_create()?;
/// let listener = event.listener()?;
/// let notifier = event.notifier()?;
/// std::thread::scope(|s| {
///     for id in [1, 2] {
///         let notifier = &notifier; // shared by reference
///         s.spawn(move || notifier.notify(id).expect("an id below max_event_id"));
///     }
/// });
/// assert_eq!(listener.try_take(), [1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Notifier {
    listeners: Vec<(SegmentRef<ListenerEntry>, SegmentRef<[AtomicU64]>)>,
    event: Arc<OpenEvent>,
}

/// Receives event ids. `Send`: move it to the thread that waits. (It is `Sync` too, its state
/// being atomics in shared memory; threads that share one listener split the ids between them.)
///
/// ```
/// use std::time::Duration;
/// use shmlane::{Node, notify::Blocking};
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let event = node.event("listener-doc").open_or_create()?;
/// let listener = event.listener()?;
/// let notifier = event.notifier()?;
///
/// let waiter = std::thread::spawn(move || {
///     listener.wait(&mut Blocking::new(), Some(Duration::from_secs(5))) // sleeps on a futex
/// });
/// notifier.notify(7)?;
/// assert_eq!(waiter.join().expect("the listener panicked")?, [7]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    entry: SegmentRef<ListenerEntry>,
    bits: SegmentRef<[AtomicU64]>,
    /// Ids are below this: bits past it in the last word (only a faulty peer sets them) are
    /// cleared and ignored.
    max_event_id: u32,
    /// Released before our share of the service, whose last handle removes an unused name.
    _role: RoleClaim<SegmentRef<AtomicU64>>,
    _event: Arc<OpenEvent>,
}

impl<'n> EventBuilder<'n> {
    pub(crate) fn new(node: &'n Node, service: &str) -> Self {
        EventBuilder { node, service: service.to_owned(), max_listeners: 8, max_event_id: 64 }
    }

    /// Listeners at once (default 8, at most 64).
    pub fn max_listeners(mut self, n: u32) -> Self {
        self.max_listeners = n;
        self
    }

    /// Event ids are below this (default 64, at most 65 536).
    pub fn max_event_id(mut self, n: u32) -> Self {
        self.max_event_id = n;
        self
    }

    /// Opens the service, creating it with these settings if it does not exist.
    pub fn open_or_create(self) -> Result<Event, TopicError> {
        check_name("service name", &self.service)?;
        check_settings(self.max_listeners, self.max_event_id).map_err(TopicError::InvalidConfig)?;
        let layout = Layout::new(self.max_listeners, self.max_event_id)?;
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            max_listeners: self.max_listeners,
            max_event_id: self.max_event_id,
            reserved: 0,
        };
        let segment = self
            .node
            .segment(&format!("event.{}", self.service))
            .fingerprint(SEGMENT_FINGERPRINT)
            .size(layout.size)
            .unlink_on_drop(false)
            .open_or_create_with(|s| {
                s.write_bytes(layout.header.offset, header.as_bytes())?;
                Ok(())
            })?;
        let mut bytes = [0u8; size_of::<Header>()];
        segment.read_bytes(layout.header.offset, &mut bytes)?;
        let found: Header = zerocopy::transmute!(bytes);
        found.check_magic()?;
        if found.version != VERSION {
            let (found, expected) = (found.version, VERSION);
            return Err(TopicError::Corrupt(CorruptError::Version { found, expected }));
        }
        if found.reserved != 0 {
            return Err(TopicError::Corrupt(CorruptError::Reserved));
        }
        found.check_settings()?;
        let layout = Layout::new(found.max_listeners, found.max_event_id)?;
        if segment.len() < layout.size {
            let (len, needed) = (segment.len(), layout.size);
            return Err(TopicError::Corrupt(CorruptError::TooSmall { len, needed }));
        }
        let open = OpenEvent {
            segment: Arc::new(segment),
            layout,
            node: self.node.clone(),
            max_event_id: found.max_event_id,
        };
        Ok(Event { open: Arc::new(open) })
    }
}

impl Event {
    /// Event ids are below this.
    pub fn max_event_id(&self) -> u32 {
        self.open.max_event_id
    }

    /// A notifier (any number may exist).
    pub fn notifier(&self) -> Result<Notifier, ConnectError> {
        let open = &self.open;
        let listeners = (0..open.layout.listeners.len())
            .map(|l| {
                let entry = SegmentRef::try_map(&open.segment, |s| open.layout.entry(s, l))?;
                let bits = SegmentRef::try_map(&open.segment, |s| open.layout.bits(s, l))?;
                Ok((entry, bits))
            })
            .collect::<Result<_, OffsetError>>()?;
        Ok(Notifier { listeners, event: Arc::clone(open) })
    }

    /// Claims a listener slot (taking over one whose holder is proven dead); pending ids left
    /// by a previous holder are cleared.
    pub fn listener(&self) -> Result<Listener, ConnectError> {
        let open = &self.open;
        for l in 0..open.layout.listeners.len() {
            let entry = SegmentRef::try_map(&open.segment, |s| open.layout.entry(s, l))?;
            if let Ok((role, how)) = RoleClaim::claim(entry.project(|e| &e.role), open.node.id()) {
                if let shmlane_segment::Claimed::TakenOver(dead) = how {
                    let service = open.segment.name().as_str();
                    crate::events::slot_taken_over(service, "listener", l, dead);
                }
                let bits = SegmentRef::try_map(&open.segment, |s| open.layout.bits(s, l))?;
                for word in bits.iter() {
                    // Relaxed: only we read these from now on; notifiers set bits atomically.
                    word.store(0, Ordering::Relaxed);
                }
                return Ok(Listener {
                    entry,
                    bits,
                    max_event_id: open.max_event_id,
                    _role: role,
                    _event: Arc::clone(open),
                });
            }
        }
        let max = open.layout.listeners.len() as u32;
        Err(ConnectError::NoFreeSlot { what: "listener", max })
    }
}

impl Drop for OpenEvent {
    fn drop(&mut self) {
        let held = (0..self.layout.listeners.len()).any(|l| {
            self.layout.entry(&self.segment, l).is_ok_and(|e| {
                // Acquire: pairs with a claim's Release drop.
                shmlane_segment::RoleOwner::from_raw(e.role.load(Ordering::Acquire))
                    .is_some_and(|o| o.liveness() != shmlane_segment::Liveness::Dead)
            })
        });
        if !held {
            let _ = self.segment.unlink();
        }
    }
}

impl Notifier {
    /// Signals `id` to every listener; returns how many listener slots are held.
    pub fn notify(&self, id: EventId) -> Result<usize, NotifyError> {
        if id >= self.event.max_event_id {
            return Err(NotifyError::BadEventId { id, max: self.event.max_event_id });
        }
        let (word, bit) = PendingIds::of(id);
        let bit = bit.to_raw();
        let mut listeners = 0;
        for (entry, bits) in &self.listeners {
            // Relaxed: a listener that appears after this load misses this event, as it would
            // have by joining a moment later.
            if entry.role.load(Ordering::Relaxed) == 0 {
                continue;
            }
            // Release: pairs with the listener's Acquire swap.
            bits[word].fetch_or(bit, Ordering::Release);
            entry.event.notify_one();
            listeners += 1;
        }
        Ok(listeners)
    }
}

impl Listener {
    /// Takes every pending event id (ascending), without blocking.
    pub fn try_take(&self) -> Vec<EventId> {
        let mut ids = Vec::new();
        self.take_into(&mut ids);
        ids
    }

    /// Waits with `strategy` until at least one event id is pending, up to `timeout`, and
    /// takes them all.
    pub fn wait(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Vec<EventId>, ReceiveError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let poll = || {
            let ids = self.try_take();
            (!ids.is_empty()).then_some(ids)
        };
        Ok(strategy.wait_for(&self.entry.event, deadline, poll)?)
    }

    /// Whether an event id is pending (a snapshot; never takes it).
    pub fn has_pending(&self) -> bool {
        // Relaxed: a hint; `try_take` swaps with Acquire.
        self.bits.iter().any(|word| word.load(Ordering::Relaxed) != 0)
    }

    /// The event count notifiers notify after setting a pending id.
    pub(crate) fn signal(&self) -> &shmlane_notify::EventCount {
        &self.entry.event
    }

    /// Pending event ids, awaited (at least one), as [`wait`](Self::wait) from async code.
    pub async fn wait_async(&self) -> Result<Vec<EventId>, ReceiveError> {
        crate::asynchronous::until(self.signal(), || {
            let ids = self.try_take();
            Ok((!ids.is_empty()).then_some(ids))
        })
        .await
    }

    fn take_into(&self, ids: &mut Vec<EventId>) {
        for (w, word) in self.bits.iter().enumerate() {
            // Relaxed first: most words are empty, and a swap would dirty the line.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            // Acquire: pairs with the notifiers' Release fetch_or.
            let pending = word.swap(0, Ordering::Acquire);
            // Only ids below `max_event_id` exist: a word past it (or the bits of the last one
            // past it) hold nothing a notifier can set.
            let before = ids.len();
            ids.extend(PendingIds::from_raw(pending).ids(w, self.max_event_id));
            SlotCounters::add(&self.entry.counters.notifications, (ids.len() - before) as u64);
        }
    }
}

/// Offsets of the listener role words and counters of an event segment, from its header (for
/// discovery, over a read-only mapping).
pub(crate) fn listener_offsets(segment: &Segment) -> Result<Vec<(u64, u64)>, TopicError> {
    let header_at = shmlane_segment::HEADER_SIZE.next_multiple_of(128);
    let mut bytes = [0u8; size_of::<Header>()];
    segment.read_bytes(header_at, &mut bytes)?;
    let header: Header = zerocopy::transmute!(bytes);
    header.check_magic()?;
    header.check_settings()?;
    let layout = Layout::new(header.max_listeners, header.max_event_id)?;
    let counters = std::mem::offset_of!(ListenerEntry, counters) as u64;
    Ok(layout.listeners.iter().map(|(entry, _)| (entry.offset, entry.offset + counters)).collect())
}

impl Header {
    /// Checks the magic (what an opener and discovery both need, with the settings).
    fn check_magic(&self) -> Result<(), TopicError> {
        if self.magic != MAGIC {
            let found = self.magic;
            return Err(TopicError::Corrupt(CorruptError::BadMagic {
                kind: "event service",
                found,
            }));
        }
        Ok(())
    }

    /// Checks the recorded settings.
    fn check_settings(&self) -> Result<(), TopicError> {
        check_settings(self.max_listeners, self.max_event_id)
            .map_err(|e| TopicError::Corrupt(CorruptError::Settings(e)))
    }
}

/// One word of a listener's pending-id bitset, which holds `ceil(max_event_id / 64)` words:
///
/// ```text
///  word w (u64)
///  63                                  1      0
/// +-------------+---------------------+--------+
/// | id 64w + 63 |         ...         | id 64w |
/// +-------------+---------------------+--------+
/// ```
///
/// A notifier sets an id's bit (`fetch_or`); the listener swaps the word to zero and reads the
/// ids out. Bits of ids at or beyond `max_event_id` (in the last word) exist only if a faulty
/// peer set them: they are never read out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingIds(u64);

impl PendingIds {
    /// The word index of `id`, and the word with only `id`'s bit set.
    #[inline]
    fn of(id: EventId) -> (usize, PendingIds) {
        ((id / 64) as usize, PendingIds(1 << (id % 64)))
    }

    /// A word as swapped out of the bitset (any value).
    #[inline]
    fn from_raw(raw: u64) -> PendingIds {
        PendingIds(raw)
    }

    /// The word to `fetch_or` into the bitset.
    #[inline]
    fn to_raw(self) -> u64 {
        self.0
    }

    /// The ids this word, word `w` of the bitset, holds below `max_event_id`, ascending.
    fn ids(self, w: usize, max_event_id: u32) -> impl Iterator<Item = EventId> {
        let first = w as u64 * 64;
        let valid = u64::from(max_event_id).saturating_sub(first);
        let mut pending = if valid < 64 { self.0 & ((1u64 << valid) - 1) } else { self.0 };
        std::iter::from_fn(move || {
            let bit = pending.trailing_zeros();
            pending &= pending.checked_sub(1)?;
            Some(w as u32 * 64 + bit)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_past_max_event_id_set_by_a_peer_are_never_handed_out() {
        let namespace = format!("evmask{}", std::process::id());
        let node = Node::builder("t").namespace(namespace).create().unwrap();
        let event = node.event("e").max_event_id(70).open_or_create().unwrap();
        let listener = event.listener().unwrap();
        // A faulty peer sets every bit of both words: ids 70..128 do not exist.
        for word in event.open.layout.bits(&event.open.segment, 0).unwrap() {
            word.store(u64::MAX, Ordering::Relaxed);
        }
        let ids = listener.try_take();
        assert_eq!(ids, (0..70).collect::<Vec<_>>());
        let mut handlers = vec![0u32; event.max_event_id() as usize];
        for id in listener.try_take().into_iter().chain(ids) {
            handlers[id as usize] += 1; // what user code does with an id: never out of range
        }
        assert_eq!(handlers.iter().sum::<u32>(), 70);
    }

    #[test]
    fn pending_ids_round_trip_at_their_limits() {
        for id in [0, 1, 63, 64, 65, 127, MAX_EVENT_ID - 1] {
            let (w, bit) = PendingIds::of(id);
            assert_eq!(bit.to_raw().count_ones(), 1);
            let read = PendingIds::from_raw(bit.to_raw());
            assert_eq!(read.ids(w, MAX_EVENT_ID).collect::<Vec<_>>(), [id]);
        }
        assert_eq!(PendingIds::of(MAX_EVENT_ID - 1), (1023, PendingIds(1 << 63)));
    }

    #[test]
    fn pending_ids_at_or_past_max_event_id_are_never_read_out() {
        let full = PendingIds::from_raw(u64::MAX);
        assert_eq!(full.ids(0, 64).count(), 64);
        assert_eq!(full.ids(1, 70).collect::<Vec<_>>(), (64..70).collect::<Vec<_>>());
        assert_eq!(full.ids(2, 70).count(), 0);
        assert_eq!(full.ids(1023, MAX_EVENT_ID).last(), Some(MAX_EVENT_ID - 1));
        assert_eq!(PendingIds::from_raw(0).ids(0, 64).count(), 0);
    }
}
