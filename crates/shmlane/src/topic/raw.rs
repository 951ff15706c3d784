//! Topics whose payload type is described at run time by a [`TypeSpec`] instead of a Rust
//! type: for the C ABI and Python, and for tools that carry any topic (a recorder, a bridge).
//! The same topics as [`Topic`](super::Topic)'s, in the same shared memory, with the same
//! semantics (zero copy, inline small samples, history, overflow policies, crash recovery);
//! only the views differ: a loan and a sample are bytes, `len × size` of them.
//!
//! ```
//! use shmlane::{Node, TopicConfig, TypeSpec};
//!
//! # let namespace = format!("doc{}", std::process::id());
//! let node = Node::builder("doc").namespace(namespace).create()?;
//! // A Rust process uses `node.topic::<u64>("raw-doc")`; this one knows the type by its
//! // description alone (the Rust type's name, size, alignment and version).
//! let spec = TypeSpec::new("u64", 8, 8, 0);
//! let topic = node.raw_topic("raw-doc").type_spec(spec).config(TopicConfig::default()).open_or_create()?;
//! let typed = node.topic::<u64>("raw-doc").open()?; // the same topic
//! let subscriber = typed.subscriber()?;
//! let publisher = topic.publisher()?;
//!
//! let mut loan = publisher.loan(1)?; // one element: 8 bytes
//! loan.copy_from_slice(&7u64.to_ne_bytes());
//! publisher.send(loan)?;
//! assert_eq!(*subscriber.receive()?.expect("sent above"), 7);
//!
//! // Opened without a type, a raw topic takes the one the topic records.
//! let any = node.raw_topic("raw-doc").open()?;
//! assert_eq!(any.type_spec().size, 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use shmlane_notify::WaitStrategy;
use zerocopy::IntoBytes;

use super::publisher::Place;
use super::subscriber::{Drained, Received};
use super::{
    BlockCounts, DEFAULT_MAX_POOL_BYTES, Mode, OpenTopic, Opening, Publisher, Subscriber,
    TopicConfig,
};
use crate::error::{ConnectError, PublishError, ReceiveError, TopicError};
use crate::node::Node;
use crate::payload::TypeSpec;

/// The type parameter of the typed machinery when the type is known only at run time (no
/// value of it exists; the element's layout comes from the topic).
#[derive(Debug)]
pub(crate) enum Untyped {}

/// Creates or opens a [`RawTopic`]; made by [`Node::raw_topic`].
#[derive(Debug)]
pub struct RawTopicBuilder<'n> {
    node: &'n Node,
    kind: &'static str,
    service: String,
    spec: Option<TypeSpec>,
    config: TopicConfig,
    max_pool_bytes: u64,
}

impl<'n> RawTopicBuilder<'n> {
    pub(crate) fn new(node: &'n Node, service: &str) -> Self {
        RawTopicBuilder {
            node,
            kind: "topic",
            service: service.to_owned(),
            spec: None,
            config: TopicConfig::default(),
            max_pool_bytes: DEFAULT_MAX_POOL_BYTES,
        }
    }

    /// The payload type: checked against the type the topic records (the same rules as for a
    /// Rust type, [`TypeSpec::fingerprint`]), and recorded by a create. Without it, only an
    /// existing topic can be opened, as whatever type it records.
    pub fn type_spec(mut self, spec: TypeSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// The settings a create uses (default [`TopicConfig::default`]); an open takes the
    /// creator's.
    pub fn config(mut self, config: TopicConfig) -> Self {
        self.config = config;
        self
    }

    /// As [`TopicBuilder::max_pool_bytes`](super::TopicBuilder::max_pool_bytes).
    pub fn max_pool_bytes(mut self, bytes: u64) -> Self {
        self.max_pool_bytes = bytes;
        self
    }

    /// Creates the topic (its type given); fails if it exists.
    pub fn create(self) -> Result<RawTopic, TopicError> {
        self.build(Mode::Create)
    }

    /// Opens an existing topic.
    pub fn open(self) -> Result<RawTopic, TopicError> {
        self.build(Mode::Open)
    }

    /// Opens the topic, creating it (its type given) if it does not exist.
    pub fn open_or_create(self) -> Result<RawTopic, TopicError> {
        self.build(Mode::OpenOrCreate)
    }

    /// A topic of another service kind (`rpc`: one of a request/response pair).
    pub(crate) fn of_kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    fn build(self, mode: Mode) -> Result<RawTopic, TopicError> {
        let opening = Opening {
            node: self.node,
            kind: self.kind,
            service: self.service,
            config: self.config,
            max_pool_bytes: self.max_pool_bytes,
        };
        Ok(RawTopic { open: opening.open(mode, self.spec)? })
    }
}

/// A publish/subscribe service whose payload type is described at run time: the topic a
/// [`Topic`](super::Topic) of the same type opens. Cloning is cheap (a reference count).
#[derive(Debug, Clone)]
pub struct RawTopic {
    open: Arc<OpenTopic>,
}

impl RawTopic {
    /// The service name.
    pub fn service(&self) -> &str {
        &self.open.service
    }

    /// The settings the topic was created with.
    pub fn config(&self) -> TopicConfig {
        self.open.config
    }

    /// The payload type (as given, or as the topic records it).
    pub fn type_spec(&self) -> &TypeSpec {
        &self.open.type_spec
    }

    /// Claims a publisher slot, as [`Topic::publisher`](super::Topic::publisher).
    pub fn publisher(&self) -> Result<RawPublisher, ConnectError> {
        Ok(RawPublisher { inner: Publisher::new(&self.open)? })
    }

    /// Claims a subscriber slot, as [`Topic::subscriber`](super::Topic::subscriber).
    pub fn subscriber(&self) -> Result<RawSubscriber, ConnectError> {
        Ok(RawSubscriber { inner: Subscriber::new(&self.open)? })
    }
}

/// A [`RawTopic`]'s sending end: a [`Publisher`] whose loans are bytes. `Send`, not `Sync`,
/// as a typed publisher.
#[derive(Debug)]
pub struct RawPublisher {
    inner: Publisher<Untyped>,
}

impl RawPublisher {
    /// Loans room for `len` elements (`len × size` bytes) to write in place, then
    /// [`send`](Self::send) it: one element of at most
    /// [`INLINE_MAX`](crate::topic::INLINE_MAX) bytes travels inline, as a typed sample does;
    /// anything else is a payload block (beyond the topic's `max_slice_len`, from a segment
    /// added for its size class, as [`Publisher::loan_slice`]).
    #[inline]
    pub fn loan(&self, len: usize) -> Result<RawLoan<'_>, PublishError> {
        let mut slot = None;
        self.loan_into(len, &mut slot)?;
        slot.ok_or(PublishError::BadSliceLen { len })
    }

    /// [`loan`](Self::loan) into `slot` (overwriting it): for bindings that keep loans in a
    /// table of their own, so that the loan is made where it is kept rather than moved there.
    #[doc(hidden)]
    #[inline]
    pub fn loan_into<'s>(
        &'s self,
        len: usize,
        slot: &mut Option<RawLoan<'s>>,
    ) -> Result<(), PublishError> {
        let elements = u64::try_from(len).ok().filter(|n| (1..=u64::from(u32::MAX)).contains(n));
        let elements = elements.ok_or(PublishError::BadSliceLen { len })?;
        let bytes = len.checked_mul(self.inner.element_size() as usize);
        let bytes = bytes.ok_or(PublishError::BadSliceLen { len })?;
        let place = self.inner.loan_place(elements)?;
        *slot = Some(RawLoan { publisher: &self.inner, place: Some(place), bytes, len });
        Ok(())
    }

    /// Publishes a loan to every subscriber, as [`Publisher::send`]; returns how many it was
    /// queued for.
    #[inline]
    pub fn send(&self, mut loan: RawLoan<'_>) -> Result<usize, PublishError> {
        match loan.place.take() {
            Some(place) => self.inner.send_place(place),
            None => Ok(0),
        }
    }

    /// Runs `f`, in which this publisher's sends wake each subscriber once, at the end,
    /// instead of after every sample (a wake-up check costs a full memory fence, and a wake
    /// a system call per sample to a subscriber that sleeps between them): the batch form of
    /// [`send_copy`](Self::send_copy) and [`send`](Self::send), as
    /// [`Publisher::send_copies`] is for typed values. A send that has to wait for room under
    /// [`Overflow::Block`](crate::Overflow::Block) wakes its subscribers first.
    ///
    /// ```
    /// # use shmlane::{Node, TypeSpec};
    /// # let node = Node::builder("doc").namespace(format!("doc{}", std::process::id())).create()?;
    /// let topic = node.raw_topic("raw-batch-doc").type_spec(TypeSpec::new("u64", 8, 8, 0));
    /// let topic = topic.open_or_create()?;
    /// let (publisher, subscriber) = (topic.publisher()?, topic.subscriber()?);
    /// let sent: Result<Vec<usize>, _> =
    ///     publisher.in_batch(|| (1..=3u64).map(|v| publisher.send_copy(&v.to_ne_bytes())).collect());
    /// assert_eq!(sent?, [1, 1, 1]);
    /// assert_eq!(subscriber.drain(usize::MAX, |_| {})?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_batch<R>(&self, f: impl FnOnce() -> R) -> R {
        self.inner.batched(f)
    }

    /// Sends `bytes` by copy: a whole number of elements, 1 to 2^32 - 1 of them.
    pub fn send_copy(&self, bytes: &[u8]) -> Result<usize, PublishError> {
        self.inner.send_bytes(bytes, 0, None)
    }

    /// [`send_copy`](Self::send_copy) with a correlation tag, to subscriber slot `only` if
    /// given (the raw rpc).
    pub(crate) fn send_tagged(
        &self,
        bytes: &[u8],
        tag: u64,
        only: Option<usize>,
    ) -> Result<usize, PublishError> {
        self.inner.send_bytes(bytes, tag, only)
    }

    /// Bytes of one element.
    pub fn element_size(&self) -> usize {
        self.inner.element_size() as usize
    }

    /// As [`Publisher::set_block_timeout`].
    pub fn set_block_timeout(&self, timeout: Duration) {
        self.inner.set_block_timeout(timeout);
    }

    /// As [`Publisher::subscribers`].
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers()
    }

    /// As [`Publisher::block_counts`].
    pub fn block_counts(&self) -> BlockCounts {
        self.inner.block_counts()
    }
}

/// Room for `len` elements on loan ([`RawPublisher::loan`]): derefs to its bytes, written in
/// place. Dropped without sending, it goes back. Its bytes are whatever the place last held.
#[derive(Debug)]
pub struct RawLoan<'p> {
    publisher: &'p Publisher<Untyped>,
    /// `None` once sent.
    place: Option<Place>,
    bytes: usize,
    len: usize,
}

impl RawLoan<'_> {
    /// Elements loaned.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a loan has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Deref for RawLoan<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.place {
            // SAFETY: the block is loaned to us alone, in our writable mapping, with room for
            // `len` elements (`take_block`): `bytes` bytes at `ptr`, every one a valid `u8`.
            Some(Place::Block { ptr, .. }) => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), self.bytes)
            },
            // One element of at most `INLINE_MAX` bytes (`loan_place`).
            Some(Place::Inline(line)) => &line.as_bytes()[..self.bytes],
            None => &[],
        }
    }
}

impl DerefMut for RawLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.place {
            // SAFETY: as in `deref`; `&mut self` makes this the only reference to the block.
            Some(Place::Block { ptr, .. }) => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), self.bytes)
            },
            Some(Place::Inline(line)) => &mut line.as_mut_bytes()[..self.bytes],
            None => &mut [],
        }
    }
}

impl Drop for RawLoan<'_> {
    fn drop(&mut self) {
        if let Some(place) = self.place.take() {
            self.publisher.unloan(&place);
        }
    }
}

/// A [`RawTopic`]'s receiving end: a [`Subscriber`] whose samples are bytes. `Send`, not
/// `Sync`, as a typed subscriber; its samples stay on its thread.
#[derive(Debug)]
pub struct RawSubscriber {
    inner: Subscriber<Untyped>,
}

impl RawSubscriber {
    /// The next sample from any publisher, if one is queued. Never blocks, no system call.
    #[inline]
    pub fn receive(&self) -> Result<Option<RawSample<'_>>, ReceiveError> {
        let element = self.inner.element();
        let place =
            self.inner.receive_place(element.inline(), element.line_words(), |line| *line)?;
        Ok(place.map(|(publisher, place)| RawSample { subscriber: self, publisher, place }))
    }

    /// Hands up to `limit` queued samples to `f` and returns how many, as
    /// [`Subscriber::drain`]: inline samples in batches straight from the claim's copies, the
    /// others received and released one by one. Never blocks.
    pub fn drain(&self, limit: usize, mut f: impl FnMut(&[u8])) -> Result<usize, ReceiveError> {
        let element = self.inner.element();
        let size = element.size as usize;
        let (inline, words) = (element.inline(), element.line_words());
        self.inner.drain_with(
            inline,
            words,
            limit,
            || self.receive(),
            |drained| match drained {
                // One element of at most `INLINE_MAX` bytes.
                Drained::Line(line) => f(&line.as_bytes()[..size]),
                Drained::Sample(sample) => f(&sample),
            },
        )
    }

    /// [`receive`](Self::receive) into `slot` (overwriting it), returning whether a sample
    /// came: for bindings that keep samples in a table of their own, so that the sample is
    /// made where it is kept rather than moved there.
    #[doc(hidden)]
    #[inline]
    pub fn receive_into<'s>(
        &'s self,
        slot: &mut Option<RawSample<'s>>,
    ) -> Result<bool, ReceiveError> {
        let element = self.inner.element();
        match self.inner.receive_place(element.inline(), element.line_words(), |line| *line)? {
            Some((publisher, place)) => {
                *slot = Some(RawSample { subscriber: self, publisher, place });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Waits for the next sample with `strategy`, up to `timeout`, as
    /// [`Subscriber::receive_with`].
    pub fn receive_with(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<RawSample<'_>, ReceiveError> {
        self.inner.wait_with(strategy, timeout, || self.receive())
    }

    /// The next sample, awaited, as [`Subscriber::receive_async`].
    pub async fn receive_async(&self) -> Result<RawSample<'_>, ReceiveError> {
        crate::asynchronous::until(self.signal(), || self.receive()).await
    }

    /// Bytes of one element.
    pub fn element_size(&self) -> usize {
        self.inner.element().size as usize
    }

    /// As [`Subscriber::flush_returns`].
    pub fn flush_returns(&self) {
        self.inner.flush_returns();
    }

    /// As [`Subscriber::drops`].
    pub fn drops(&self) -> u64 {
        self.inner.drops()
    }

    /// As [`Subscriber::held`].
    pub fn held(&self) -> u32 {
        self.inner.held()
    }

    /// As [`Subscriber::has_pending`].
    pub fn has_pending(&self) -> bool {
        self.inner.has_pending()
    }

    /// The event count publishers notify.
    pub(crate) fn signal(&self) -> &shmlane_notify::EventCount {
        self.inner.signal()
    }

    /// Counts an rpc response wait that timed out.
    pub(crate) fn count_timeout(&self) {
        self.inner.count_timeout();
    }

    /// The subscriber slot held and this holder's generation of it (the raw rpc's client tag).
    pub(crate) fn slot_and_generation(&self) -> (usize, u64) {
        (self.inner.slot(), self.inner.generation())
    }

    /// The settings of its topic.
    pub(crate) fn topic_config(&self) -> TopicConfig {
        self.inner.topic_config()
    }
}

/// A received sample of a [`RawTopic`]: derefs to its bytes in shared memory (`len() ×
/// element size`), without a copy; dropping it gives the block back. The same rules as
/// [`Sample`](super::Sample): it borrows its subscriber, stays on its thread, and a reader
/// that does not trust its publishers copies with [`to_vec`](Self::to_vec).
#[derive(Debug)]
pub struct RawSample<'s> {
    subscriber: &'s RawSubscriber,
    publisher: u32,
    place: Received,
}

impl RawSample<'_> {
    /// Elements sent (at least 1).
    #[inline]
    pub fn len(&self) -> usize {
        self.place.len()
    }

    /// Always false: a sample has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The sender's correlation tag (0 for plain sends).
    pub(crate) fn tag(&self) -> u64 {
        self.place.tag()
    }

    /// The publisher slot it came from.
    pub(crate) fn publisher_slot(&self) -> usize {
        self.publisher as usize
    }

    /// Its bytes by copy, read with volatile loads (see [`Sample::read`](super::Sample::read)).
    pub fn to_vec(&self) -> Vec<u8> {
        let bytes: &[u8] = self;
        // SAFETY: each `i < bytes.len()` is in bounds of the slice (a live mapping).
        (0..bytes.len())
            .map(|i| unsafe { std::ptr::read_volatile(bytes.as_ptr().add(i)) })
            .collect()
    }
}

impl Deref for RawSample<'_> {
    type Target = [u8];

    /// The sample's bytes in place (an inline sample's private copy). Sound as
    /// [`Sample`](super::Sample)'s `Deref` is.
    #[inline]
    fn deref(&self) -> &[u8] {
        self.place.bytes(self.subscriber.inner.element())
    }
}

impl Drop for RawSample<'_> {
    #[inline]
    fn drop(&mut self) {
        self.subscriber.inner.release(self.publisher, &self.place);
    }
}
