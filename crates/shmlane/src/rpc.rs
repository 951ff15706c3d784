//! Request/response: a [`Server`] answers the requests of many [`Client`]s, each response
//! correlated to its request.
//!
//! Built on two topics of the `rpc` kind: `{service}.req` (clients publish, the server
//! subscribes; overflow policy Block, so a busy server slows clients down instead of losing
//! their requests) and `{service}.resp` (the server publishes, every client subscribes;
//! drop-oldest). Each request carries a tag, `(client's response slot + 1) << 48 |
//! incarnation << 32 | sequence`, where the incarnation is the low 16 bits of the client's
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
use crate::topic::{Overflow, Publisher, Sample, Subscriber, Topic};

/// Bits of a tag below the client's slot.
const SLOT_SHIFT: u32 = 48;
/// Bits of a tag below the client's incarnation: the sequence, wrapping at 2^32.
const INCARNATION_SHIFT: u32 = 32;

/// Creates or opens an [`Rpc`] service; made by [`Node::rpc`].
#[derive(Debug)]
pub struct RpcBuilder<'n, Req, Resp> {
    node: &'n Node,
    service: String,
    max_clients: u32,
    capacity: u32,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

/// A request/response service of `Req` and `Resp`, opened by name.
#[derive(Debug)]
pub struct Rpc<Req, Resp> {
    requests: Topic<Req>,
    responses: Topic<Resp>,
}

/// Answers requests. One per service.
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
    tag: u64,
}

/// Sends requests and receives their responses.
#[derive(Debug)]
pub struct Client<Req, Resp> {
    requests: Publisher<Req>,
    responses: Subscriber<Resp>,
    /// This client's tag prefix: its response subscriber slot + 1, and its incarnation.
    prefix: u64,
    next: Cell<u32>,
}

/// A request sent and not yet answered: pass it to [`Client::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the response is matched to this; pass it to Client::receive"]
pub struct Pending {
    tag: u64,
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
    /// 64; a power of two).
    pub fn capacity(mut self, n: u32) -> Self {
        self.capacity = n;
        self
    }

    /// Opens the service, creating it with these settings if it does not exist.
    pub fn open_or_create(self) -> Result<Rpc<Req, Resp>, TopicError> {
        check_name("service name", &self.service)?;
        let requests = self
            .node
            .topic::<Req>(&format!("{}.req", self.service))
            .of_kind("rpc")
            .max_publishers(self.max_clients)
            .max_subscribers(1)
            .subscriber_capacity(self.capacity)
            .overflow(Overflow::Block)
            .open_or_create()?;
        let responses = self
            .node
            .topic::<Resp>(&format!("{}.resp", self.service))
            .of_kind("rpc")
            .max_publishers(1)
            .max_subscribers(self.max_clients)
            .subscriber_capacity(self.capacity)
            .open_or_create()?;
        Ok(Rpc { requests, responses })
    }
}

impl<Req: ZeroCopy, Resp: ZeroCopy> Rpc<Req, Resp> {
    /// Becomes the server (one at a time).
    pub fn server(&self) -> Result<Server<Req, Resp>, ConnectError> {
        let requests = self.requests.subscriber()?;
        let responses = self.responses.publisher()?;
        Ok(Server { requests, responses })
    }

    /// Becomes a client.
    pub fn client(&self) -> Result<Client<Req, Resp>, ConnectError> {
        let responses = self.responses.subscriber()?;
        let requests = self.requests.publisher()?;
        let incarnation = responses.generation() & 0xffff;
        let prefix = (responses.slot() as u64 + 1) << SLOT_SHIFT | incarnation << INCARNATION_SHIFT;
        Ok(Client { requests, responses, prefix, next: Cell::new(0) })
    }
}

impl<Req: ZeroCopy, Resp: ZeroCopy> Server<Req, Resp> {
    /// The next request, if one is queued.
    pub fn receive(&self) -> Result<Option<Request<'_, Req>>, ReceiveError> {
        Ok(self.requests.receive()?.map(|sample| {
            let tag = sample.tag();
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
        let tag = sample.tag();
        Ok(Request { sample, tag })
    }

    /// Sends `response` to the client that sent `request`.
    pub fn respond(&self, request: &Request<'_, Req>, response: Resp) -> Result<(), PublishError> {
        let mut loan = self.responses.loan()?;
        *loan = response;
        crash_point!("shmlane.respond.loaned");
        // The tag names the client's response slot (a peer's word: `publish` checks it).
        let slot = ((request.tag >> SLOT_SHIFT) as usize).wrapping_sub(1);
        self.responses.send_tagged(loan, request.tag, Some(slot))?;
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
    /// Sends `request` (waiting up to 1 s if the server's queue for this client is full).
    pub fn send(&self, request: Req) -> Result<Pending, PublishError> {
        let sequence = self.next.get();
        self.next.set(sequence.wrapping_add(1));
        let tag = self.prefix | u64::from(sequence);
        let mut loan = self.requests.loan()?;
        *loan = request;
        self.requests.send_tagged(loan, tag, None)?;
        crash_point!("shmlane.call.sent");
        Ok(Pending { tag })
    }

    /// The response to `pending`, if it has come. Responses to other clients, and late ones
    /// to this client's earlier requests, are dropped on the way.
    /// Skips at most a queue's worth of other responses per call (a server that floods us
    /// cannot keep us here): `None` then, and the next call goes on.
    pub fn receive(&self, pending: Pending) -> Result<Option<Sample<'_, Resp>>, ReceiveError> {
        let config = self.responses.topic_config();
        let bound = config.subscriber_capacity as usize * config.max_publishers as usize + 1;
        for _ in 0..bound {
            let Some(sample) = self.responses.receive()? else { break };
            if sample.tag() == pending.tag {
                return Ok(Some(sample));
            }
        }
        Ok(None)
    }

    /// Waits with `strategy` for the response to `pending`, up to `timeout`.
    pub fn receive_with(
        &self,
        pending: Pending,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Sample<'_, Resp>, ReceiveError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let sample = self.responses.receive_with(strategy, left)?;
            if sample.tag() == pending.tag {
                return Ok(sample);
            }
        }
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
