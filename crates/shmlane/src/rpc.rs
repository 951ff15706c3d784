//! Request/response: a [`Server`] answers the requests of many [`Client`]s, each response
//! correlated to its request.
//!
//! Built on two topics of the `rpc` kind: `{service}.req` (clients publish, the server
//! subscribes; overflow policy Block, so a busy server slows clients down instead of losing
//! their requests) and `{service}.resp` (the server publishes, every client subscribes;
//! drop-oldest). Each request carries a tag (`RpcTag`: the client's response slot + 1, its
//! incarnation and a sequence number), where the incarnation is the low 16 bits of the client's
//! subscriber generation: a client that takes over the slots of one that died never takes an
//! answer meant for its predecessor for its own. The server sends the response to that
//! subscriber slot alone, with the same tag, and the client keeps the response whose tag is its
//! pending one (a late answer to a request it gave up on is dropped).

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

use shmlane_notify::WaitStrategy;
use shmlane_segment::crash_point;

use crate::error::{ConnectError, PublishError, ReceiveError, TopicError};
use crate::node::{Node, check_name};
use crate::payload::ZeroCopy;
use crate::topic::{Overflow, Publisher, Sample, Subscriber, Topic, TopicConfig};

mod raw;
pub use raw::{RawClient, RawRequest, RawRpc, RawRpcBuilder, RawServer};

/// Bits of a tag below the client's slot.
const SLOT_SHIFT: u32 = 48;
/// Bits of a tag below the client's incarnation: the sequence, wrapping at 2^32.
const INCARNATION_SHIFT: u32 = 32;

/// The tag of a request and of its response, written into the block's tag word:
///
/// ```text
///  RpcTag (u64)
///  63                48 47               32 31                                 0
/// +--------------------+-------------------+------------------------------------+
/// | client's slot + 1  |    incarnation    |   sequence (wraps at 2^32)         |
/// +--------------------+-------------------+------------------------------------+
/// ```
///
/// The slot is the client's response subscriber slot (below 63, so the field is 1 to 63 and a
/// client's tag is never 0, the tag of an untagged sample); the incarnation is the low 16 bits
/// of that slot's subscriber generation. A request's tag is a client's word: the server reads
/// the slot from it only to address the response, which goes to no one if it names no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RpcTag(u64);

impl RpcTag {
    /// The tag of request `sequence` of the client at response slot `slot` (below
    /// [`MAX_PARTICIPANTS`](crate::topic::MAX_PARTICIPANTS)) whose subscriber generation there
    /// is `generation`.
    #[inline]
    fn new(slot: usize, generation: u64, sequence: u32) -> RpcTag {
        debug_assert!(slot < crate::topic::MAX_PARTICIPANTS as usize);
        let incarnation = generation & 0xffff;
        RpcTag((slot as u64 + 1) << SLOT_SHIFT | incarnation << INCARNATION_SHIFT)
            .with_sequence(sequence)
    }

    /// The same client's tag of request `sequence`.
    #[inline]
    fn with_sequence(self, sequence: u32) -> RpcTag {
        RpcTag(self.0 & !u64::from(u32::MAX) | u64::from(sequence))
    }

    /// A tag as read from a block (any value).
    #[inline]
    fn from_raw(raw: u64) -> RpcTag {
        RpcTag(raw)
    }

    /// The word to write into a block.
    #[inline]
    fn to_raw(self) -> u64 {
        self.0
    }

    /// The client's response slot, if the tag names one (its field is not 0).
    #[inline]
    fn client_slot(self) -> Option<usize> {
        ((self.0 >> SLOT_SHIFT) as usize).checked_sub(1)
    }

    /// The incarnation: the low 16 bits of the client's subscriber generation.
    #[cfg(test)]
    fn incarnation(self) -> u16 {
        (self.0 >> INCARNATION_SHIFT) as u16
    }

    /// The request's sequence number.
    #[cfg(test)]
    fn sequence(self) -> u32 {
        self.0 as u32
    }
}

/// Creates or opens an [`Rpc`] service; made by [`Node::rpc`].
#[derive(Debug)]
pub struct RpcBuilder<'n, Req, Resp> {
    node: &'n Node,
    service: String,
    max_clients: u32,
    capacity: u32,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

/// A request/response service of `Req` and `Resp`, opened by name: one [`Server`] and up to
/// `max_clients` [`Client`]s at once (1 to [`MAX_PARTICIPANTS`](crate::topic::MAX_PARTICIPANTS),
/// 63: they are the publishers of its request topic and the subscribers of its response topic).
/// The server and clients own their share of the service: they outlive the `Rpc`.
///
/// ```
/// use std::time::Duration;
/// use shmlane::{Node, notify::Blocking};
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let rpc = node.rpc::<u64, u64>("rpc-doc").max_clients(4).open_or_create()?;
/// let (server, client) = (rpc.server()?, rpc.client()?);
///
/// let pending = client.send(20)?;
/// let request = server.receive()?.expect("sent above");
/// server.respond(&request, *request * 2 + 2)?;
/// let timeout = Some(Duration::from_secs(5));
/// let response = client.receive_with(pending, &mut Blocking::new(), timeout)?;
/// assert_eq!(*response, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Rpc<Req, Resp> {
    requests: Topic<Req>,
    responses: Topic<Resp>,
}

/// Answers requests. One per service. `Send`, not `Sync` (it is a subscriber and a
/// publisher): move it to the thread that serves.
///
/// ```
/// use std::time::Duration;
/// use shmlane::{Node, notify::Blocking};
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let rpc = node.rpc::<u64, u64>("server-doc").open_or_create()?;
/// let (server, client) = (rpc.server()?, rpc.client()?);
/// let timeout = Some(Duration::from_secs(5));
///
/// type Error = Box<dyn std::error::Error + Send + Sync>;
/// let serving = std::thread::spawn(move || -> Result<(), Error> {
///     let mut strategy = Blocking::new();
///     for _ in 0..2 {
///         let request = server.receive_with(&mut strategy, timeout)?;
///         server.respond(&request, *request + 1)?;
///     }
///     Ok(())
/// });
/// for n in [1, 41] {
///     assert_eq!(*client.call(n, &mut Blocking::new(), timeout)?, n + 1);
/// }
/// serving.join().expect("the server panicked")?;
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct Server<Req, Resp> {
    requests: Subscriber<Req>,
    responses: Publisher<Resp>,
}

/// A received request: derefs to the payload in shared memory; answer it with
/// [`Server::respond`].
#[derive(Debug)]
pub struct Request<'s, Req: ZeroCopy> {
    sample: Sample<'s, Req>,
    tag: RpcTag,
}

/// Sends requests and receives their responses. `Send`, not `Sync` (it is a publisher and a
/// subscriber, and numbers its requests in a `Cell`): move it to the thread that calls.
///
/// ```
/// use std::time::Duration;
/// use shmlane::{Node, notify::Blocking};
///
/// # let namespace = format!("doc{}", std::process::id());
/// let node = Node::builder("doc").namespace(namespace).create()?;
/// let rpc = node.rpc::<u64, u64>("client-doc").open_or_create()?;
/// let (server, client) = (rpc.server()?, rpc.client()?);
///
/// let first = client.send(1)?; // several requests in flight
/// let second = client.send(2)?;
/// while let Some(request) = server.receive()? {
///     server.respond(&request, *request * 10)?;
/// }
/// // Each response is matched to its request; waiting for one drops the others met on the way.
/// let (mut strategy, timeout) = (Blocking::new(), Some(Duration::from_secs(5)));
/// assert_eq!(*client.receive_with(first, &mut strategy, timeout)?, 10);
/// assert_eq!(*client.receive_with(second, &mut strategy, timeout)?, 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client<Req, Resp> {
    requests: Publisher<Req>,
    responses: Subscriber<Resp>,
    /// This client's tag of sequence 0: its response subscriber slot, and its incarnation.
    prefix: RpcTag,
    next: Cell<u32>,
}

/// A request sent and not yet answered: pass it to [`Client::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the response is matched to this; pass it to Client::receive"]
pub struct Pending {
    tag: RpcTag,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The request could not be sent.
    #[error("cannot send the request: {0}")]
    Send(#[from] PublishError),
    /// No response came in time (the server is slow, stopped, or gone).
    #[error("no response: {0}")]
    Receive(#[from] ReceiveError),
}

impl<'n, Req: ZeroCopy, Resp: ZeroCopy> RpcBuilder<'n, Req, Resp> {
    pub(crate) fn new(node: &'n Node, service: &str) -> Self {
        RpcBuilder {
            node,
            service: service.to_owned(),
            max_clients: 8,
            capacity: 64,
            _types: PhantomData,
        }
    }

    /// Clients at once (default 8, at most [`MAX_PARTICIPANTS`](crate::topic::MAX_PARTICIPANTS), 63).
    pub fn max_clients(mut self, n: u32) -> Self {
        self.max_clients = n;
        self
    }

    /// Requests queued at the server per client, and responses queued per client (default
    /// 64; a power of two, at most 65,536).
    pub fn capacity(mut self, n: u32) -> Self {
        self.capacity = n;
        self
    }

    /// Opens the service, creating it with these settings if it does not exist.
    pub fn open_or_create(self) -> Result<Rpc<Req, Resp>, TopicError> {
        check_name("service name", &self.service)?;
        let (requests, responses) = topic_configs(self.max_clients, self.capacity);
        let requests = self
            .node
            .topic::<Req>(&format!("{}.req", self.service))
            .of_kind("rpc")
            .with_config(requests)
            .open_or_create()?;
        let responses = self
            .node
            .topic::<Resp>(&format!("{}.resp", self.service))
            .of_kind("rpc")
            .with_config(responses)
            .open_or_create()?;
        Ok(Rpc { requests, responses })
    }
}

/// The settings of a service's request and response topics: the clients publish requests to
/// the one server (which blocks them while full), the server publishes responses to them.
fn topic_configs(max_clients: u32, capacity: u32) -> (TopicConfig, TopicConfig) {
    let requests = TopicConfig {
        max_publishers: max_clients,
        max_subscribers: 1,
        subscriber_capacity: capacity,
        overflow: Overflow::Block,
        ..TopicConfig::default()
    };
    let responses = TopicConfig {
        max_publishers: 1,
        max_subscribers: max_clients,
        subscriber_capacity: capacity,
        ..TopicConfig::default()
    };
    (requests, responses)
}

impl<Req: ZeroCopy, Resp: ZeroCopy> Rpc<Req, Resp> {
    /// Becomes the server (one at a time).
    pub fn server(&self) -> Result<Server<Req, Resp>, ConnectError> {
        let requests = self.requests.subscriber().map_err(|e| as_role(e, "server"))?;
        let responses = self.responses.publisher().map_err(|e| as_role(e, "server"))?;
        Ok(Server { requests, responses })
    }

    /// Becomes a client.
    pub fn client(&self) -> Result<Client<Req, Resp>, ConnectError> {
        let responses = self.responses.subscriber().map_err(|e| as_role(e, "client"))?;
        let requests = self.requests.publisher().map_err(|e| as_role(e, "client"))?;
        let prefix = RpcTag::new(responses.slot(), responses.generation(), 0);
        Ok(Client { requests, responses, prefix, next: Cell::new(0) })
    }
}

/// The response to `pending` among what `receive` takes (at most a full queue from every
/// publisher, `config`'s, plus one: a server that floods us cannot keep us here); responses
/// to other requests met on the way are dropped.
fn take_response<S>(
    pending: Pending,
    config: TopicConfig,
    mut receive: impl FnMut() -> Result<Option<S>, ReceiveError>,
    tag: impl Fn(&S) -> u64,
) -> Result<Option<S>, ReceiveError> {
    let bound = config.subscriber_capacity as usize * config.max_publishers as usize + 1;
    for _ in 0..bound {
        let Some(sample) = receive()? else { break };
        if RpcTag::from_raw(tag(&sample)) == pending.tag {
            return Ok(Some(sample));
        }
    }
    Ok(None)
}

/// Waits with `wait` (given the time left) for the response to `pending`, up to `timeout`,
/// dropping responses to other requests; a timeout is counted by `count_timeout`.
fn wait_response<S>(
    pending: Pending,
    timeout: Option<Duration>,
    mut wait: impl FnMut(Option<Duration>) -> Result<S, ReceiveError>,
    tag: impl Fn(&S) -> u64,
    count_timeout: impl Fn(),
) -> Result<S, ReceiveError> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let sample = wait(left).inspect_err(|e| {
            if matches!(e, ReceiveError::TimedOut(_)) {
                count_timeout();
            }
        })?;
        if RpcTag::from_raw(tag(&sample)) == pending.tag {
            return Ok(sample);
        }
    }
}

/// A full topic slot table is a full table of rpc `role`s (clients or the one server).
fn as_role(error: ConnectError, role: &'static str) -> ConnectError {
    match error {
        ConnectError::NoFreeSlot { max, .. } => ConnectError::NoFreeSlot { what: role, max },
        other => other,
    }
}

impl<Req: ZeroCopy, Resp: ZeroCopy> Server<Req, Resp> {
    /// The next request, if one is queued.
    pub fn receive(&self) -> Result<Option<Request<'_, Req>>, ReceiveError> {
        Ok(self.requests.receive()?.map(|sample| {
            let tag = RpcTag::from_raw(sample.tag());
            Request { sample, tag }
        }))
    }

    /// Waits with `strategy` for the next request, up to `timeout`.
    pub fn receive_with(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Request<'_, Req>, ReceiveError> {
        let sample = self.requests.receive_with(strategy, timeout)?;
        let tag = RpcTag::from_raw(sample.tag());
        Ok(Request { sample, tag })
    }

    /// The next request, awaited (cancel-safe, as [`Subscriber::receive_async`]).
    pub async fn receive_async(&self) -> Result<Request<'_, Req>, ReceiveError> {
        let sample = self.requests.receive_async().await?;
        let tag = RpcTag::from_raw(sample.tag());
        Ok(Request { sample, tag })
    }

    /// Its request subscriber (for a WaitSet).
    pub(crate) fn requests(&self) -> &Subscriber<Req> {
        &self.requests
    }

    /// Sends `response` to the client that sent `request`.
    pub fn respond(&self, request: &Request<'_, Req>, response: Resp) -> Result<(), PublishError> {
        let mut loan = self.responses.loan_block()?;
        *loan = response;
        crash_point!("shmlane.respond.loaned");
        // The tag names the client's response slot (a peer's word: `publish` checks it); a tag
        // that names none sends to no one (a slot beyond every topic's).
        let slot = request.tag.client_slot().unwrap_or(usize::MAX);
        self.responses.send_tagged(loan, request.tag.to_raw(), Some(slot))?;
        Ok(())
    }
}

impl<Req: ZeroCopy> Request<'_, Req> {
    /// The client slot that sent it.
    pub fn client(&self) -> usize {
        self.sample.publisher_slot()
    }

    /// The request by copy, read with volatile loads, as [`Sample::read`] does: for a server
    /// that does not trust its clients to leave a request alone while it reads it.
    pub fn read(&self) -> Req {
        self.sample.read()
    }
}

impl<Req: ZeroCopy> Deref for Request<'_, Req> {
    type Target = Req;

    fn deref(&self) -> &Req {
        &self.sample
    }
}

impl<Req: ZeroCopy, Resp: ZeroCopy> Client<Req, Resp> {
    /// The response to `pending`, awaited; responses to other requests met on the way are
    /// dropped, as [`receive_with`](Self::receive_with) drops them.
    pub async fn receive_async(&self, pending: Pending) -> Result<Sample<'_, Resp>, ReceiveError> {
        crate::asynchronous::until(self.responses.signal(), || self.receive(pending)).await
    }

    /// Sends `request` and awaits its response. Cancelling after the send leaves the response
    /// to be dropped by a later receive, as a timed-out [`call`](Self::call) does.
    pub async fn call_async(&self, request: Req) -> Result<Sample<'_, Resp>, CallError> {
        let pending = self.send(request)?;
        Ok(self.receive_async(pending).await?)
    }

    /// Its response subscriber (for a WaitSet).
    pub(crate) fn responses(&self) -> &Subscriber<Resp> {
        &self.responses
    }

    /// Sends `request` (waiting up to 1 s if the server's queue for this client is full).
    pub fn send(&self, request: Req) -> Result<Pending, PublishError> {
        let sequence = self.next.get();
        self.next.set(sequence.wrapping_add(1));
        let tag = self.prefix.with_sequence(sequence);
        let mut loan = self.requests.loan_block()?;
        *loan = request;
        self.requests.send_tagged(loan, tag.to_raw(), None)?;
        crash_point!("shmlane.call.sent");
        Ok(Pending { tag })
    }

    /// The response to `pending`, if it has come. Responses to other clients, and late ones
    /// to this client's earlier requests, are dropped on the way.
    /// Skips at most a queue's worth of other responses per call (a server that floods us
    /// cannot keep us here): `None` then, and the next call goes on.
    pub fn receive(&self, pending: Pending) -> Result<Option<Sample<'_, Resp>>, ReceiveError> {
        let config = self.responses.topic_config();
        take_response(pending, config, || self.responses.receive(), |s| s.tag())
    }

    /// Waits with `strategy` for the response to `pending`, up to `timeout`.
    pub fn receive_with(
        &self,
        pending: Pending,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Sample<'_, Resp>, ReceiveError> {
        let wait = |left| self.responses.receive_with(strategy, left);
        wait_response(pending, timeout, wait, |s| s.tag(), || self.responses.count_timeout())
    }

    /// Sends `request` and waits for its response with `strategy`, up to `timeout`.
    pub fn call(
        &self,
        request: Req,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Sample<'_, Resp>, CallError> {
        let pending = self.send(request)?;
        Ok(self.receive_with(pending, strategy, timeout)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::MAX_PARTICIPANTS;

    #[test]
    fn tag_fields_round_trip_at_their_limits() {
        let last = MAX_PARTICIPANTS as usize - 1;
        for (slot, generation, sequence) in
            [(0, 1, 0), (last, u64::MAX, u32::MAX), (5, 0x1_0002, 7)]
        {
            let tag = RpcTag::from_raw(RpcTag::new(slot, generation, sequence).to_raw());
            assert_eq!(tag.client_slot(), Some(slot));
            assert_eq!(tag.incarnation(), generation as u16);
            assert_eq!(tag.sequence(), sequence);
            assert_ne!(tag.to_raw(), 0, "a client's tag is never an untagged sample's");
        }
        // The same bits as `(slot + 1) << 48 | incarnation << 32 | sequence`.
        assert_eq!(RpcTag::new(2, 0x1_0005, 9).to_raw(), 3 << 48 | 5 << 32 | 9);
    }

    #[test]
    fn a_new_sequence_keeps_the_client_and_wraps() {
        let prefix = RpcTag::new(4, 3, 0);
        let tag = prefix.with_sequence(u32::MAX);
        assert_eq!((tag.client_slot(), tag.incarnation(), tag.sequence()), (Some(4), 3, u32::MAX));
        assert_eq!(tag.with_sequence(u32::MAX.wrapping_add(1)), prefix);
    }

    #[test]
    fn a_tag_that_names_no_client_addresses_no_slot() {
        assert_eq!(RpcTag::from_raw(0).client_slot(), None);
        assert_eq!(RpcTag::from_raw(u64::from(u32::MAX) | 0xffff << 32).client_slot(), None);
        assert_eq!(RpcTag::from_raw(u64::MAX).client_slot(), Some(0xfffe));
    }
}
