//! Publish/subscribe: a [`Topic`] of `T` found by name, [`Publisher`]s that loan a payload
//! block, write it in place and send it, and [`Subscriber`]s whose [`Sample`]s read it where
//! it lies. See the `layout` module for what lives where, and `docs/architecture.md` for the
//! protocol.
//!
//! Ownership of payload blocks stays with their publisher: reference counts are in its private
//! memory (one bit per subscriber per block), subscribers map payloads read-only and hand
//! blocks back through a completion queue, and the publisher validates every offset it gets
//! back. A subscriber that dies is found out when its queue stops draining (checked by pid and
//! start time at most every 10 ms); the publisher then takes back every block it held and frees
//! its slot.

mod handoff;
pub(crate) mod layout;
pub(crate) mod pool;
mod publisher;
mod raw;
mod subscriber;
pub(crate) mod words;

use std::marker::PhantomData;
use std::sync::Arc;

use shmlane_queue::overflow::{OwnedOverflow, SharedOverflow};
use shmlane_segment::{Fingerprint, Liveness, RoleClaim, RoleOwner, Segment};

pub use pool::BlockCounts;
pub use publisher::{Loan, Publisher, SliceLoan};
pub use raw::{RawLoan, RawPublisher, RawSample, RawSubscriber, RawTopic, RawTopicBuilder};
pub use subscriber::{Sample, Subscriber};
pub use words::INLINE_MAX;

use crate::error::{ConfigError, CorruptError, TopicError};
use crate::node::{Node, check_name};
use crate::payload::{TypeInfo, TypeSpec, ZeroCopy};
use crate::sync::{self, AtomicU64, Ordering};
use layout::{Element, Layout, TopicHeader};

/// Fingerprint of the queues inside a topic's control segment.
pub(crate) const QUEUE_FINGERPRINT: Fingerprint =
    Fingerprint::new("shmlane.topic offsets").with_u64(2);
/// Fingerprint of a topic's control segment (its header is checked field by field too).
pub(crate) const SEGMENT_FINGERPRINT: Fingerprint = Fingerprint::new("shmlane.topic").with_u64(3);
/// Fingerprint of a publisher's payload segment.
pub(crate) const DATA_FINGERPRINT: Fingerprint =
    Fingerprint::new("shmlane.topic payload").with_u64(1);
/// Most publishers or subscribers a topic may have (a block's holders are a 64-bit mask, one
/// bit of which marks the history).
pub const MAX_PARTICIPANTS: u32 = 63;

/// What a publisher does when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u32)]
pub enum Overflow {
    /// Evict the subscriber's oldest queued sample and count it as dropped: the publisher
    /// never waits (market data, audio).
    DropOldest = 1,
    /// Wait (back-pressure) until every subscriber has room, up to the publisher's block
    /// timeout; a subscriber proven dead stops being waited for.
    Block = 2,
    /// Refuse the send (`PublishError::SubscriberFull`) if any subscriber is full; nothing
    /// is delivered.
    Reject = 3,
}

impl Overflow {
    fn from_raw(raw: u32) -> Option<Overflow> {
        [Overflow::DropOldest, Overflow::Block, Overflow::Reject]
            .into_iter()
            .find(|policy| *policy as u32 == raw)
    }
}

/// A topic's settings, fixed when it is created (by [`TopicBuilder`]). They are checked when
/// the topic is created or opened, and refused with [`TopicError::InvalidConfig`]: each field
/// within the range its documentation gives, and at most 2^24 payload blocks per publisher
/// (`max_loans + history + max_subscribers × (subscriber_capacity + max_held)`), whose payload
/// segment must also fit within [`TopicBuilder::max_pool_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    /// Publishers at once (1 to [`MAX_PARTICIPANTS`], 63).
    pub max_publishers: u32,
    /// Subscribers at once (1 to [`MAX_PARTICIPANTS`], 63).
    pub max_subscribers: u32,
    /// Samples queued per subscriber (a power of two, 1 to 65 536).
    pub subscriber_capacity: u32,
    /// Samples one subscriber may hold at once (1 to 65 536).
    pub max_held: u32,
    /// Loans one publisher may have out at once (1 to 65 536).
    pub max_loans: u32,
    /// Elements each base payload block holds (`Publisher::loan_slice`); 1 for single
    /// values. Larger slices go to payload segments added on demand.
    pub max_slice_len: u32,
    /// Samples each publisher keeps for subscribers that join later (at most
    /// `subscriber_capacity`).
    pub history: u32,
    /// What a full subscriber queue does to a send.
    pub overflow: Overflow,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            max_publishers: 2,
            max_subscribers: 8,
            subscriber_capacity: 64,
            max_held: 8,
            max_loans: 4,
            max_slice_len: 1,
            history: 0,
            overflow: Overflow::DropOldest,
        }
    }
}

impl TopicConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let in_range = |setting: &'static str, value: u32, min: u32, max: u32| {
            let range = ConfigError::OutOfRange { setting, value, min, max };
            if (min..=max).contains(&value) { Ok(()) } else { Err(range) }
        };
        in_range("max_publishers", self.max_publishers, 1, MAX_PARTICIPANTS)?;
        in_range("max_subscribers", self.max_subscribers, 1, MAX_PARTICIPANTS)?;
        let capacity = self.subscriber_capacity;
        if !capacity.is_power_of_two() || capacity > 1 << 16 {
            return Err(ConfigError::SubscriberCapacity(capacity));
        }
        if self.history > capacity {
            return Err(ConfigError::HistoryTooLong { history: self.history, capacity });
        }
        in_range("max_slice_len", self.max_slice_len, 1, u32::MAX)?;
        if self.blocks() > words::MAX_BLOCKS {
            return Err(ConfigError::TooManyBlocks {
                blocks: self.blocks(),
                max: words::MAX_BLOCKS,
            });
        }
        in_range("max_held", self.max_held, 1, 1 << 16)?;
        in_range("max_loans", self.max_loans, 1, 1 << 16)?;
        Ok(())
    }

    /// Payload blocks each publisher needs so that it never runs out: its loans and history,
    /// plus every subscriber's full queue and full hands.
    fn blocks(&self) -> u64 {
        u64::from(self.max_loans)
            + u64::from(self.history)
            + u64::from(self.max_subscribers)
                * (u64::from(self.subscriber_capacity) + u64::from(self.max_held))
    }
}

/// Creates or opens a [`Topic`]; made by [`Node::topic`].
#[derive(Debug)]
pub struct TopicBuilder<'n, T> {
    node: &'n Node,
    /// The segment name's kind: `topic`, or `rpc` for the topics of a request/response pair.
    kind: &'static str,
    service: String,
    config: TopicConfig,
    type_version: u64,
    max_pool_bytes: u64,
    _payload: PhantomData<fn() -> T>,
}

/// Default of [`TopicBuilder::max_pool_bytes`]: 1 GiB.
pub const DEFAULT_MAX_POOL_BYTES: u64 = 1 << 30;

impl<'n, T: ZeroCopy> TopicBuilder<'n, T> {
    pub(crate) fn new(node: &'n Node, service: &str) -> Self {
        TopicBuilder {
            node,
            kind: "topic",
            service: service.to_owned(),
            config: TopicConfig::default(),
            type_version: 0,
            max_pool_bytes: DEFAULT_MAX_POOL_BYTES,
            _payload: PhantomData,
        }
    }

    /// A topic of another service kind (its name checked by that service's builder).
    pub(crate) fn of_kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    /// All the settings at once (a service made of topics).
    pub(crate) fn with_config(mut self, config: TopicConfig) -> Self {
        self.config = config;
        self
    }

    /// The largest payload segment a publisher of this process creates for the topic's base
    /// pool (every block for `max_slice_len` elements), default [`DEFAULT_MAX_POOL_BYTES`].
    /// The topic's settings come from its control segment, which another process wrote (and
    /// may have rewritten): settings that need more are refused when the topic is opened or
    /// created, so they cannot make this process allocate more than it agreed to (payload
    /// memory, and the publisher's private block table: 13 bytes per block).
    pub fn max_pool_bytes(mut self, bytes: u64) -> Self {
        self.max_pool_bytes = bytes;
        self
    }

    /// Publishers at once (default 2; 1 to [`MAX_PARTICIPANTS`], 63).
    pub fn max_publishers(mut self, n: u32) -> Self {
        self.config.max_publishers = n;
        self
    }

    /// Subscribers at once (default 8; 1 to [`MAX_PARTICIPANTS`], 63).
    pub fn max_subscribers(mut self, n: u32) -> Self {
        self.config.max_subscribers = n;
        self
    }

    /// Samples queued per subscriber before the overflow policy applies (default 64; a power
    /// of two).
    pub fn subscriber_capacity(mut self, n: u32) -> Self {
        self.config.subscriber_capacity = n;
        self
    }

    /// Samples one subscriber may hold at once (default 8).
    pub fn max_held(mut self, n: u32) -> Self {
        self.config.max_held = n;
        self
    }

    /// Loans one publisher may have out at once (default 4).
    pub fn max_loans(mut self, n: u32) -> Self {
        self.config.max_loans = n;
        self
    }

    /// Elements each payload block holds, for payloads sized at run time such as audio frames
    /// (default 1: single values). Every block of the base pool is sized for this many; a
    /// larger slice makes the publisher add a payload segment for its size class.
    pub fn max_slice_len(mut self, n: u32) -> Self {
        self.config.max_slice_len = n;
        self
    }

    /// Samples each publisher keeps and hands to subscribers that join later, oldest first
    /// (default 0; at most `subscriber_capacity`).
    pub fn history(mut self, n: u32) -> Self {
        self.config.history = n;
        self
    }

    /// What a full subscriber queue does to a send (default drop-oldest).
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.config.overflow = policy;
        self
    }

    /// The payload type's layout version, recorded with the topic: bump it when `T` changes
    /// layout without changing name or size.
    pub fn type_version(mut self, version: u64) -> Self {
        self.type_version = version;
        self
    }

    /// Creates the topic; fails if it exists.
    pub fn create(self) -> Result<Topic<T>, TopicError> {
        self.build(Mode::Create)
    }

    /// Opens an existing topic (its settings are the creator's).
    pub fn open(self) -> Result<Topic<T>, TopicError> {
        self.build(Mode::Open)
    }

    /// Opens the topic, creating it with this builder's settings if it does not exist.
    pub fn open_or_create(self) -> Result<Topic<T>, TopicError> {
        self.build(Mode::OpenOrCreate)
    }

    fn build(self, mode: Mode) -> Result<Topic<T>, TopicError> {
        let spec = TypeSpec::of::<T>(self.type_version);
        let open = Opening {
            node: self.node,
            kind: self.kind,
            service: self.service,
            config: self.config,
            max_pool_bytes: self.max_pool_bytes,
        }
        .open(mode, Some(spec))?;
        Ok(Topic { open, _payload: PhantomData })
    }
}

/// What a builder (typed or run-time typed) hands over to create or open a topic.
pub(crate) struct Opening<'n> {
    pub(crate) node: &'n Node,
    pub(crate) kind: &'static str,
    pub(crate) service: String,
    pub(crate) config: TopicConfig,
    pub(crate) max_pool_bytes: u64,
}

impl Opening<'_> {
    /// Creates or opens the topic carrying `spec` (checked against what it records); with no
    /// `spec`, opens it as whatever type it records.
    pub(crate) fn open(
        self,
        mode: Mode,
        spec: Option<TypeSpec>,
    ) -> Result<Arc<OpenTopic>, TopicError> {
        if self.kind == "topic" {
            check_name("service name", &self.service)?;
        }
        self.config.check().map_err(TopicError::InvalidConfig)?;
        if let Some(spec) = &spec {
            spec.check().map_err(TopicError::InvalidConfig)?;
            self.check_pool_bytes(&self.config, Element::from_spec(spec))?;
        }
        // Opening without a type, the layout is only known once the header is read (below).
        let element = spec.as_ref().map_or(Element { size: 8, align: 8 }, Element::from_spec);
        let layout = Layout::new(&self.config, element)?;
        let builder = self
            .node
            .segment(&format!("{}.{}", self.kind, self.service))
            .fingerprint(SEGMENT_FINGERPRINT)
            .size(layout.size)
            .unlink_on_drop(false);
        let init = |segment: &Segment| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            use zerocopy::IntoBytes;
            debug_assert_eq!(layout.header.offset, TopicHeader::offset());
            let spec = spec.as_ref().ok_or("no type to create the topic with")?;
            let header = TopicHeader::new(&self.config, spec);
            segment.write_bytes(layout.header.offset, header.as_bytes())?;
            for c in 0..layout.connections_len() {
                let (submission, completion) = layout.connection(c);
                let capacity = u64::from(self.config.subscriber_capacity);
                let stride = layout.stride;
                SharedOverflow::init_in_strided(
                    segment,
                    submission,
                    capacity,
                    stride,
                    QUEUE_FINGERPRINT,
                )?;
                let capacity = layout.completion_capacity;
                SharedOverflow::init_in(segment, completion, capacity, QUEUE_FINGERPRINT)?;
            }
            Ok(())
        };
        let segment = match (mode, &spec) {
            (Mode::Create, Some(_)) => builder.create_with(init)?,
            (Mode::OpenOrCreate, Some(_)) => builder.open_or_create_with(init)?,
            (Mode::Open, _) => builder.open()?,
            (Mode::Create, None) => {
                return Err(TopicError::TypeRequired { service: self.service });
            }
            (Mode::OpenOrCreate, None) => match builder.open() {
                Err(shmlane_segment::OpenError::NotFound { .. }) => {
                    return Err(TopicError::TypeRequired { service: self.service });
                }
                other => other?,
            },
        };
        let (header, config) = TopicHeader::read(&segment)?;
        let recorded = header.type_spec();
        let adopted = spec.is_none();
        let spec = match spec {
            Some(spec) => spec,
            // Whatever the topic records, if it is a layout we can carry. Its fingerprint is
            // taken as recorded (a name longer than the header keeps is truncated there).
            None => {
                recorded.check().map_err(|e| TopicError::Corrupt(CorruptError::Settings(e)))?;
                recorded.clone()
            }
        };
        let type_fingerprint = header.type_fingerprint;
        if !adopted && type_fingerprint != spec.fingerprint() {
            crate::events::type_refused(&self.service, &spec.name, &recorded.name);
            return Err(TopicError::TypeMismatch {
                name: spec.name,
                size: spec.size,
                align: spec.align,
                version: spec.version,
                found_name: recorded.name,
                found_size: recorded.size,
                found_align: recorded.align,
                found_version: recorded.version,
            });
        }
        let element = Element::from_spec(&spec);
        self.check_pool_bytes(&config, element)?;
        let layout = Layout::new(&config, element)?;
        if segment.len() < layout.size {
            let (len, needed) = (segment.len(), layout.size);
            return Err(TopicError::Corrupt(CorruptError::TooSmall { len, needed }));
        }
        Ok(Arc::new(OpenTopic {
            node: self.node.clone(),
            kind: self.kind,
            service: self.service,
            segment: Arc::new(segment),
            layout,
            config,
            type_spec: spec,
            type_fingerprint,
            element,
        }))
    }

    /// Refuses settings whose base payload pool is larger than `max_pool_bytes`.
    fn check_pool_bytes(&self, config: &TopicConfig, element: Element) -> Result<(), TopicError> {
        let pool_bytes = element
            .block_geometry(config.max_slice_len)
            .and_then(|(_, block_size)| block_size.checked_mul(config.blocks()));
        if pool_bytes.is_some_and(|bytes| bytes <= self.max_pool_bytes) {
            return Ok(());
        }
        Err(TopicError::InvalidConfig(ConfigError::PoolTooLarge {
            blocks: config.blocks(),
            max_slice_len: config.max_slice_len,
            element_size: element.size,
            bytes: pool_bytes,
            max_pool_bytes: self.max_pool_bytes,
        }))
    }
}

pub(crate) enum Mode {
    Create,
    Open,
    OpenOrCreate,
}

/// A publish/subscribe service of `T`, opened by name. Create [`Publisher`]s and
/// [`Subscriber`]s from it: they own their share of the topic, so they can be stored in a
/// struct and moved to the thread that uses them, and they outlive the `Topic` they came from.
/// Cloning a `Topic` is cheap (a reference count).
///
/// The control segment stays while any process has the topic open; the last handle of the
/// last process to drop (topic, publisher or subscriber), finding no live publisher or
/// subscriber, removes it.
#[derive(Debug)]
pub struct Topic<T> {
    open: Arc<OpenTopic>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic { open: Arc::clone(&self.open), _payload: PhantomData }
    }
}

/// What this process holds of one open topic: its control segment mapped, and its settings.
/// Shared (`Arc`) by the [`Topic`] handles and by every publisher and subscriber made from
/// them; the last of these to drop runs the topic's clean-up.
#[derive(Debug)]
pub(crate) struct OpenTopic {
    node: Node,
    kind: &'static str,
    service: String,
    segment: Arc<Segment>,
    layout: Layout,
    config: TopicConfig,
    /// The payload type, as this process opened it.
    type_spec: TypeSpec,
    /// The type's fingerprint as the topic records it (payload segments carry it too).
    type_fingerprint: u64,
    /// The layout of one element of the payload type.
    element: Element,
}

impl<T: ZeroCopy> Topic<T> {
    /// The service name.
    pub fn service(&self) -> &str {
        &self.open.service
    }

    /// The settings the topic was created with.
    pub fn config(&self) -> TopicConfig {
        self.open.config
    }

    /// The payload type's identity as recorded.
    pub fn type_info(&self) -> TypeInfo {
        TypeInfo::of::<T>(self.open.type_spec.version)
    }

    /// Claims a publisher slot (taking over one whose holder is proven dead).
    pub fn publisher(&self) -> Result<Publisher<T>, crate::ConnectError> {
        Publisher::new(&self.open)
    }

    /// Claims a subscriber slot (taking over one whose holder is proven dead).
    pub fn subscriber(&self) -> Result<Subscriber<T>, crate::ConnectError> {
        Subscriber::new(&self.open)
    }
}

impl OpenTopic {
    /// The submission and completion queues of connection `c`, checked to have the slots the
    /// layout gives them (a descriptor a peer rewrote to another stride is refused).
    pub(crate) fn attach_queues(
        &self,
        c: usize,
    ) -> Result<(OwnedOverflow, OwnedOverflow), shmlane_queue::QueueError> {
        let (submission, completion) = self.layout.connection(c);
        let submission = OwnedOverflow::attach(&self.segment, submission, QUEUE_FINGERPRINT)?;
        let completion = OwnedOverflow::attach(&self.segment, completion, QUEUE_FINGERPRINT)?;
        if submission.stride() != self.layout.stride || completion.stride() != 8 {
            return Err(shmlane_queue::QueueError::Corrupt);
        }
        Ok((submission, completion))
    }

    /// Name suffix (after the namespace) of publisher `slot`'s payload segment `generation`.
    fn data_suffix(&self, slot: usize, generation: u32) -> String {
        format!("{}.p{slot}.g{generation}", self.data_prefix())
    }

    /// What every payload segment's name suffix starts with: `{kind}.{service}`.
    fn data_prefix(&self) -> String {
        format!("{}.{}", self.kind, self.service)
    }

    /// Whether a sample of publisher `slot`'s `generation` is still queued for a subscriber
    /// (it names that generation's payload segments, which must stay until it is taken). A
    /// queue that cannot be read counts as holding one.
    fn has_queued(&self, slot: usize, generation: u32) -> bool {
        let subscribers = self.config.max_subscribers as usize;
        (0..subscribers).any(|s| {
            let (submission, _) = self.layout.connection(slot * subscribers + s);
            match SharedOverflow::snapshot(&self.segment, submission, QUEUE_FINGERPRINT) {
                Ok(queued) => queued
                    .values
                    .iter()
                    .any(|&v| words::QueuedBlock::from_raw(v).generation() == generation),
                Err(_) => true,
            }
        })
    }

    /// Whether any publisher or subscriber slot is held by a process not proven dead.
    fn has_live_participants(&self) -> bool {
        let held = |role: &AtomicU64| {
            // Acquire: pairs with the Release of a claim's drop.
            RoleOwner::from_raw(role.load(Ordering::Acquire))
                .is_some_and(|owner| owner.liveness() != Liveness::Dead)
        };
        let publishers = (0..self.config.max_publishers as usize)
            .any(|p| self.layout.publisher(&self.segment, p).is_ok_and(|e| held(&e.role)));
        publishers
            || (0..self.config.max_subscribers as usize)
                .any(|s| self.layout.subscriber(&self.segment, s).is_ok_and(|e| held(&e.role)))
    }

    /// Removes the payload segments of publishers that are gone: ones that died holding a
    /// slot, and ones that left with samples still queued (their segments stay for those).
    /// Called only when no live process takes part in the topic, so nothing can still receive
    /// them. Each slot is claimed first (free, or taken over from a dead holder), so a
    /// publisher that takes it at the same moment keeps what it creates.
    fn remove_departed_payloads(&self) {
        let me = self.node.id();
        for p in 0..self.config.max_publishers as usize {
            let Ok(entry) = self.layout.publisher(&self.segment, p) else { continue };
            let Ok((_slot, _)) = RoleClaim::claim(&entry.role, me) else {
                // Held by a live process.
                continue;
            };
            if pool::Pools::remove_every(self, p) > 0 {
                crate::events::payloads_removed(&self.service, p, 0);
            }
        }
    }
}

impl Drop for OpenTopic {
    fn drop(&mut self) {
        // Our publishers and subscribers hold the topic open, so they are gone; if nobody
        // else's are left, nothing can be lost by removing the name (mappings stay valid), nor
        // the payloads of dead publishers.
        if !self.has_live_participants() {
            let _ = self.segment.unlink();
            self.remove_departed_payloads();
        }
    }
}
