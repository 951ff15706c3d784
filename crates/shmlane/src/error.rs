//! The error enums, one per operation family.

use shmlane_queue::QueueError;
use shmlane_segment::{CreateError, OffsetError, OpenError, RoleError};

/// Creating a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A name has characters or a length that cannot be used.
    #[error("invalid {what} {name:?}: use 1 to 64 ASCII letters, digits, '-' or '_'")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// This process's identity could not be read (`/proc/self/stat`).
    #[error("cannot identify this process: {0}")]
    Identity(#[source] std::io::Error),
    /// The node's registration segment could not be created.
    #[error("cannot register the node: {0}")]
    Register(String),
}

/// Creating or opening a topic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// A bad service name.
    #[error(transparent)]
    Name(#[from] NodeError),
    /// A setting is out of range.
    #[error("invalid topic setting: {0}")]
    InvalidConfig(String),
    /// The control segment could not be created.
    #[error("cannot create the topic: {0}")]
    Create(#[from] CreateError),
    /// The control segment could not be opened.
    #[error("cannot open the topic: {0}")]
    Open(#[from] OpenError),
    /// The topic carries another payload type.
    #[error(
        "the topic carries {found_name} ({found_size} bytes, align {found_align}, version \
         {found_version}), not {name} ({size} bytes, align {align}, version {version}): every \
         process must use the same payload type"
    )]
    TypeMismatch {
        /// Our type.
        name: String,
        /// Its size.
        size: u64,
        /// Its alignment.
        align: u64,
        /// Its version.
        version: u64,
        /// The topic's type name (as recorded, possibly truncated).
        found_name: String,
        /// The topic's type size.
        found_size: u64,
        /// The topic's type alignment.
        found_align: u64,
        /// The topic's type version.
        found_version: u64,
    },
    /// The control segment is not a valid topic.
    #[error("the topic's control segment is corrupt ({0}): remove it with `shmlane clean`")]
    Corrupt(String),
    /// A queue in the control segment failed validation.
    #[error("a queue of the topic is corrupt: {0}")]
    Queue(#[from] QueueError),
    /// A layout offset failed.
    #[error("the topic's layout does not fit its segment: {0}")]
    Offset(#[from] OffsetError),
}

/// Creating a publisher or a subscriber.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Every slot of that kind is held by a live process.
    #[error(
        "all {max} {what} slots of the topic are held by live processes: raise max_{what}s \
         when creating the topic, or stop one of them"
    )]
    NoFreeSlot {
        /// "publisher" or "subscriber".
        what: &'static str,
        /// The topic's maximum.
        max: u32,
    },
    /// A role word could not be claimed.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The publisher's data segment could not be created.
    #[error("cannot create the publisher's payload segment: {0}")]
    Create(#[from] CreateError),
    /// A queue of the connection failed validation.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A queue's indices are impossible (a peer corrupted them).
    #[error(transparent)]
    CorruptQueue(#[from] shmlane_queue::overflow::Corrupt),
    /// The topic's layout does not hold together.
    #[error("the topic's layout does not fit its segment: {0}; remove it with `shmlane clean`")]
    Layout(String),
    /// A layout offset failed.
    #[error("the topic's layout does not fit its segment: {0}")]
    Offset(#[from] OffsetError),
}

impl From<TopicError> for ConnectError {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::Offset(e) => ConnectError::Offset(e),
            other => ConnectError::Layout(other.to_string()),
        }
    }
}

/// Loaning a payload slot or sending it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Every payload block is loaned out or held.
    #[error(
        "all payload blocks are loaned or held by subscribers: send or drop loans, or raise \
         max_loans when creating the topic"
    )]
    OutOfBlocks,
    /// An empty slice loan, or one beyond 2^32 - 1 elements.
    #[error("a slice of {len} elements cannot be loaned: use 1 to 4294967295 elements")]
    BadSliceLen {
        /// Elements asked for.
        len: usize,
    },
    /// A payload segment for a slice larger than `max_slice_len` could not be added.
    #[error("cannot add a payload segment for a large slice: {0}")]
    Grow(#[source] shmlane_segment::CreateError),
    /// The reject policy refused a send because a subscriber's queue was full.
    #[error("subscriber queue full (overflow policy Reject): retry later, or use DropOldest")]
    SubscriberFull,
    /// The block policy waited its whole timeout for a subscriber with a full queue.
    #[error(
        "a subscriber's queue stayed full for {0:?} (overflow policy Block): it is slow or \
         stopped; raise the publisher's block timeout, or use DropOldest"
    )]
    Timeout(std::time::Duration),
}

/// Receiving a sample.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The subscriber holds as many samples as the topic allows.
    #[error(
        "this subscriber already holds {0} samples, the topic's max_held: drop some first, or \
         raise max_held when creating the topic"
    )]
    TooManyHeld(u32),
    /// Nothing arrived before the deadline.
    #[error(transparent)]
    TimedOut(#[from] shmlane_notify::TimedOut),
    /// An event id at or beyond the service's `max_event_id`.
    #[error("event id {id} is out of range: the service takes ids below {max}")]
    BadEventId {
        /// The id given.
        id: u32,
        /// The service's `max_event_id`.
        max: u32,
    },
}
