//! shmlane: zero-copy shared-memory publish/subscribe between processes on one host.
//!
//! A [`Node`] names a participant and the namespace its services live in. A [`Topic`] of a
//! [`ZeroCopy`] type is found by name; a [`Publisher`] loans a payload block, writes the
//! sample in place and sends it; every [`Subscriber`] receives a [`Sample`] that reads it
//! where it lies, with no copy, and hands the block back when dropped.
//!
//! ```
//! use shmlane::{FromBytes, Immutable, IntoBytes, KnownLayout, Node, ZeroCopy};
//!
//! #[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
//! #[zerocopy(crate = "shmlane::zerocopy")] // the derives through shmlane: no zerocopy dependency
//! #[repr(C)]
//! struct Tick {
//!     price: f64,
//!     sequence: u64,
//! }
//!
//! let node = Node::builder("doc").namespace(format!("doc{}", std::process::id())).create()?;
//! let topic = node.topic::<Tick>("ticks").open_or_create()?;
//! let subscriber = topic.subscriber()?; // usually in another process
//! let publisher = topic.publisher()?;
//!
//! let mut tick = publisher.loan()?; // a block in shared memory
//! tick.price = 101.25;
//! tick.sequence = 1;
//! publisher.send(tick)?;
//!
//! let sample = subscriber.receive()?.expect("sent above");
//! assert_eq!((sample.price, sample.sequence), (101.25, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Besides topics: [`Rpc`] (a [`Server`] answering many [`Client`]s, responses matched to
//! requests) and [`Event`] (payload-free notifications with ids, listeners that sleep). A
//! [`WaitSet`] waits on many of them at once, with deadlines and intervals.
//!
//! Publishers, subscribers, servers, clients, notifiers and listeners own their share of their
//! service: store them in structs, move them to the threads that use them; they outlive the
//! [`Topic`], [`Rpc`] or [`Event`] they came from. Only what they lend out borrows them (a
//! [`Loan`] its publisher, a [`Sample`] its subscriber, a [`Request`] its server), and those
//! stay on their thread. The user guide (`docs/guide.md`, every example of which is a doc test)
//! goes through each pattern and says which types are `Send` and `Sync`, and why.
//!
//! Hot paths (`loan`, `send`, `receive`, dropping a sample) touch only shared and private
//! memory: no allocation, no system call unless a subscriber sleeps in a blocking receive.
//!
//! # Crash points
//!
//! For the reliability tests (`crates/reliability`), built with the `crash-points` feature: a
//! process whose environment has `SHMLANE_CRASH_AT=NAME` (or `NAME:N`) kills itself with SIGKILL
//! the first (or N-th) time it reaches point `NAME` (see `shmlane_segment::crash`). Without the
//! feature the points compile to nothing. The instants at which a peer may die:
//!
//! | point | in | the instant |
//! |---|---|---|
//! | `shmlane.node.registering` | [`NodeBuilder::create`] | registration segment created, its record (owner, heartbeat) not yet written |
//! | `shmlane.publisher.pool_created` | [`Topic::publisher`] | slot claimed, new payload segment created, its generation not yet published |
//! | `shmlane.loan.taken` | [`Publisher::loan`] | a block off the free list, on loan, not yet sent |
//! | `shmlane.send.unloaned` | [`Publisher::send`] | the loan ended, the sample in no queue yet |
//! | `shmlane.send.pushed` | [`Publisher::send`], per subscriber | the sample in this subscriber's queue (holder bit set), its wake-up not yet sent; with two subscribers, hit `2k - 1` is send `k` after its first push |
//! | `shmlane.serve.cleaned` | a send, when a subscriber joined | the joiner's connection emptied (history queued), its generation not yet acknowledged |
//! | `shmlane.subscribe.claimed` | [`Topic::subscriber`] | slot claimed, its generation not yet bumped |
//! | `shmlane.receive.popped` | [`Subscriber::receive`] | a sample off the queue, not yet handed out: its block neither in hand nor returned |
//! | `shmlane.give_back.before_push` | dropping a [`Sample`] | the sample gone, its block not yet in the completion queue |
//! | `shmlane.respond.loaned` | [`Server::respond`] | the server holds a request and a loaned response, not yet sent |
//! | `shmlane.call.sent` | [`Client::send`] | the request queued at the server, its response not yet received |

mod asynchronous;
mod counters;
pub mod discovery;
mod error;
pub mod event;
mod events;
#[cfg(feature = "loom")]
#[doc(hidden)]
pub mod model;
mod node;
mod payload;
pub mod rpc;
mod sync;
pub mod topic;
pub mod waitset;

pub use error::{
    BatchError, ConfigError, ConnectError, CorruptError, NodeError, NotifyError, PublishError,
    ReceiveError, TopicError,
};
pub use event::{Event, EventBuilder, EventId, Listener, Notifier};
pub use node::{DEFAULT_NAMESPACE, NAMESPACE_ENV, Node, NodeBuilder};
pub use payload::{TypeInfo, TypeSpec, ZeroCopy};
pub use rpc::{
    CallError, Client, Pending, RawClient, RawRequest, RawRpc, RawRpcBuilder, RawServer, Request,
    Rpc, RpcBuilder, Server,
};
pub use shmlane_notify as notify;
/// The segment errors inside [`TopicError::Create`] and [`TopicError::Open`] (to tell "exists"
/// from "not found" without depending on `shmlane-segment`).
pub use shmlane_segment::{CreateError, OpenError};
pub use topic::{
    BlockCounts, DEFAULT_MAX_POOL_BYTES, Loan, Overflow, Publisher, RawLoan, RawPublisher,
    RawSample, RawSubscriber, RawTopic, RawTopicBuilder, Sample, SliceLoan, Subscriber, Topic,
    TopicBuilder, TopicConfig,
};
pub use waitset::{Attachment, AttachmentId, Ready, WaitError, WaitSet};

// zerocopy and its derives, so that a user's `Cargo.toml` needs only shmlane (see `ZeroCopy`).
pub use zerocopy;
pub use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// The user guide's examples are doc tests: `cargo test --doc` compiles and runs every one of
// them, so the guide cannot drift from the API. Only doc tests see this item.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
pub struct GuideDoctests;
