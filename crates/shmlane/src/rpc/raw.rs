//! Request/response with payload types described at run time ([`TypeSpec`]): the service a
//! typed [`Rpc`](super::Rpc) of the same types opens, with requests and responses as bytes.
//!
//! ```
//! use std::time::Duration;
//! use shmlane::{Node, TypeSpec, notify::Blocking};
//!
//! # let namespace = format!("doc{}", std::process::id());
//! let node = Node::builder("doc").namespace(namespace).create()?;
//! let typed = node.rpc::<u64, u64>("raw-rpc-doc").open_or_create()?;
//! let server = typed.server()?; // a Rust server ...
//!
//! let u64_spec = TypeSpec::new("u64", 8, 8, 0);
//! let rpc = node.raw_rpc("raw-rpc-doc").types(u64_spec.clone(), u64_spec).open_or_create()?;
//! let client = rpc.client()?; // ... and a client that knows the types by description
//! let pending = client.send(&20u64.to_ne_bytes())?;
//! let request = server.receive()?.expect("sent above");
//! server.respond(&request, *request * 2 + 2)?;
//! let response = client.receive_with(pending, &mut Blocking::new(), Some(Duration::from_secs(5)))?;
//! assert_eq!(&response[..], &42u64.to_ne_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::ops::Deref;
use std::time::Duration;

use shmlane_notify::WaitStrategy;
use shmlane_segment::crash_point;

use super::{CallError, Pending, RpcTag, as_role, take_response, topic_configs, wait_response};
use crate::error::{ConnectError, PublishError, ReceiveError, TopicError};
use crate::node::{Node, check_name};
use crate::payload::TypeSpec;
use crate::topic::{RawPublisher, RawSample, RawSubscriber, RawTopic};

/// Creates or opens a [`RawRpc`]; made by [`Node::raw_rpc`].
#[derive(Debug)]
pub struct RawRpcBuilder<'n> {
    node: &'n Node,
    service: String,
    types: Option<(TypeSpec, TypeSpec)>,
    max_clients: u32,
    capacity: u32,
}

impl<'n> RawRpcBuilder<'n> {
    pub(crate) fn new(node: &'n Node, service: &str) -> Self {
        RawRpcBuilder {
            node,
            service: service.to_owned(),
            types: None,
            max_clients: 8,
            capacity: 64,
        }
    }

    /// The request and response types: checked against the service's, and recorded by a
    /// create. Without them, only an existing service can be opened, as whatever types it
    /// records.
    pub fn types(mut self, request: TypeSpec, response: TypeSpec) -> Self {
        self.types = Some((request, response));
        self
    }

    /// As [`RpcBuilder::max_clients`](super::RpcBuilder::max_clients).
    pub fn max_clients(mut self, n: u32) -> Self {
        self.max_clients = n;
        self
    }

    /// As [`RpcBuilder::capacity`](super::RpcBuilder::capacity).
    pub fn capacity(mut self, n: u32) -> Self {
        self.capacity = n;
        self
    }

    /// Opens the service, creating it with these settings (and types) if it does not exist.
    pub fn open_or_create(self) -> Result<RawRpc, TopicError> {
        check_name("service name", &self.service)?;
        let (request_config, response_config) = topic_configs(self.max_clients, self.capacity);
        let (request_spec, response_spec) = self.types.unzip();
        let topic = |suffix: &str, spec: Option<TypeSpec>, config| {
            let builder = self.node.raw_topic(&format!("{}.{suffix}", self.service));
            let builder = builder.of_kind("rpc").config(config);
            match spec {
                Some(spec) => builder.type_spec(spec).open_or_create(),
                None => builder.open(),
            }
        };
        let requests = topic("req", request_spec, request_config)?;
        let responses = topic("resp", response_spec, response_config)?;
        Ok(RawRpc { requests, responses })
    }
}

/// A request/response service whose types are described at run time: one [`RawServer`] and
/// up to `max_clients` [`RawClient`]s, with the roles and rules of [`Rpc`](super::Rpc).
#[derive(Debug, Clone)]
pub struct RawRpc {
    requests: RawTopic,
    responses: RawTopic,
}

impl RawRpc {
    /// The request type.
    pub fn request_type(&self) -> &TypeSpec {
        self.requests.type_spec()
    }

    /// The response type.
    pub fn response_type(&self) -> &TypeSpec {
        self.responses.type_spec()
    }

    /// Becomes the server (one at a time).
    pub fn server(&self) -> Result<RawServer, ConnectError> {
        let requests = self.requests.subscriber().map_err(|e| as_role(e, "server"))?;
        let responses = self.responses.publisher().map_err(|e| as_role(e, "server"))?;
        Ok(RawServer { requests, responses })
    }

    /// Becomes a client.
    pub fn client(&self) -> Result<RawClient, ConnectError> {
        let responses = self.responses.subscriber().map_err(|e| as_role(e, "client"))?;
        let requests = self.requests.publisher().map_err(|e| as_role(e, "client"))?;
        let (slot, generation) = responses.slot_and_generation();
        let prefix = RpcTag::new(slot, generation, 0);
        Ok(RawClient { requests, responses, prefix, next: Cell::new(0) })
    }
}

/// Answers requests, as [`Server`](super::Server). `Send`, not `Sync`.
#[derive(Debug)]
pub struct RawServer {
    requests: RawSubscriber,
    responses: RawPublisher,
}

/// A received request: derefs to its bytes in shared memory; answer it with
/// [`RawServer::respond`].
#[derive(Debug)]
pub struct RawRequest<'s> {
    sample: RawSample<'s>,
    tag: RpcTag,
}

impl RawServer {
    /// The next request, if one is queued.
    pub fn receive(&self) -> Result<Option<RawRequest<'_>>, ReceiveError> {
        Ok(self.requests.receive()?.map(|sample| {
            let tag = RpcTag::from_raw(sample.tag());
            RawRequest { sample, tag }
        }))
    }

    /// Waits with `strategy` for the next request, up to `timeout`.
    pub fn receive_with(
        &self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<RawRequest<'_>, ReceiveError> {
        let sample = self.requests.receive_with(strategy, timeout)?;
        let tag = RpcTag::from_raw(sample.tag());
        Ok(RawRequest { sample, tag })
    }

    /// The next request, awaited (cancel-safe).
    pub async fn receive_async(&self) -> Result<RawRequest<'_>, ReceiveError> {
        let sample = self.requests.receive_async().await?;
        let tag = RpcTag::from_raw(sample.tag());
        Ok(RawRequest { sample, tag })
    }

    /// Its request subscriber (for a WaitSet).
    pub(crate) fn requests(&self) -> &RawSubscriber {
        &self.requests
    }

    /// Sends `response` (whole elements of the response type) to the client that sent
    /// `request`.
    pub fn respond(&self, request: &RawRequest<'_>, response: &[u8]) -> Result<(), PublishError> {
        crash_point!("shmlane.respond.loaned");
        // The tag names the client's response slot (a peer's word: the send checks it); a tag
        // that names none sends to no one.
        let slot = request.tag.client_slot().unwrap_or(usize::MAX);
        self.responses.send_tagged(response, request.tag.to_raw(), Some(slot))?;
        Ok(())
    }
}

impl RawRequest<'_> {
    /// The client slot that sent it.
    pub fn client(&self) -> usize {
        self.sample.publisher_slot()
    }

    /// Elements sent (at least 1).
    pub fn len(&self) -> usize {
        self.sample.len()
    }

    /// Always false: a request has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Its bytes by copy (volatile loads), as [`RawSample::to_vec`].
    pub fn to_vec(&self) -> Vec<u8> {
        self.sample.to_vec()
    }
}

impl Deref for RawRequest<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.sample
    }
}

/// Sends requests and receives their responses, as [`Client`](super::Client). `Send`, not
/// `Sync`.
#[derive(Debug)]
pub struct RawClient {
    requests: RawPublisher,
    responses: RawSubscriber,
    /// This client's tag of sequence 0: its response subscriber slot, and its incarnation.
    prefix: RpcTag,
    next: Cell<u32>,
}

impl RawClient {
    /// The response to `pending`, awaited.
    pub async fn receive_async(&self, pending: Pending) -> Result<RawSample<'_>, ReceiveError> {
        crate::asynchronous::until(self.responses.signal(), || self.receive(pending)).await
    }

    /// Sends `request` and awaits its response.
    pub async fn call_async(&self, request: &[u8]) -> Result<RawSample<'_>, CallError> {
        let pending = self.send(request)?;
        Ok(self.receive_async(pending).await?)
    }

    /// Its response subscriber (for a WaitSet).
    pub(crate) fn responses(&self) -> &RawSubscriber {
        &self.responses
    }

    /// Sends `request` (whole elements of the request type), waiting up to 1 s if the
    /// server's queue for this client is full.
    pub fn send(&self, request: &[u8]) -> Result<Pending, PublishError> {
        let sequence = self.next.get();
        let tag = self.prefix.with_sequence(sequence);
        self.requests.send_tagged(request, tag.to_raw(), None)?;
        self.next.set(sequence.wrapping_add(1));
        crash_point!("shmlane.call.sent");
        Ok(Pending { tag })
    }

    /// The response to `pending`, if it has come, as [`Client::receive`](super::Client::receive).
    pub fn receive(&self, pending: Pending) -> Result<Option<RawSample<'_>>, ReceiveError> {
        let config = self.responses.topic_config();
        take_response(pending, config, || self.responses.receive(), |s| s.tag())
    }

    /// Waits with `strategy` for the response to `pending`, up to `timeout`.
    pub fn receive_with(
        &self,
        pending: Pending,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<RawSample<'_>, ReceiveError> {
        let wait = |left| self.responses.receive_with(strategy, left);
        wait_response(pending, timeout, wait, |s| s.tag(), || self.responses.count_timeout())
    }

    /// Sends `request` and waits for its response with `strategy`, up to `timeout`.
    pub fn call(
        &self,
        request: &[u8],
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<RawSample<'_>, CallError> {
        let pending = self.send(request)?;
        Ok(self.receive_with(pending, strategy, timeout)?)
    }
}
