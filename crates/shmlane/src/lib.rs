//! shmlane: zero-copy shared-memory publish/subscribe between processes on one host.
//!
//! A [`Node`] names a participant and the namespace its services live in. A [`Topic`] of a
//! [`ZeroCopy`] type is found by name; a [`Publisher`] loans a payload block, writes the
//! sample in place and sends it; every [`Subscriber`] receives a [`Sample`] that reads it
//! where it lies, with no copy, and hands the block back when dropped.
//!
//! ```
//! use shmlane::{Node, ZeroCopy};
//! use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
//!
//! #[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
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
//! requests) and [`Event`] (payload-free notifications with ids, listeners that sleep).
//!
//! Hot paths (`loan`, `send`, `receive`, dropping a sample) touch only shared and private
//! memory: no allocation, no system call unless a subscriber sleeps in a blocking receive.
#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod discovery;
mod error;
pub mod event;
mod node;
mod payload;
pub mod rpc;
pub mod topic;

pub use error::{ConnectError, NodeError, PublishError, ReceiveError, TopicError};
pub use event::{Event, EventBuilder, EventId, Listener, Notifier};
pub use node::{DEFAULT_NAMESPACE, NAMESPACE_ENV, Node, NodeBuilder};
pub use payload::{TypeInfo, ZeroCopy};
pub use rpc::{CallError, Client, Pending, Request, Rpc, RpcBuilder, Server};
pub use shmlane_notify as notify;
pub use topic::{
    Loan, Overflow, Publisher, Sample, SliceLoan, Subscriber, Topic, TopicBuilder, TopicConfig,
};
