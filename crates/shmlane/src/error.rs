//! The error enums, one per operation family.

use shmlane_queue::QueueError;
use shmlane_segment::{CreateError, LayoutError, OffsetError, OpenError, RoleError};

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
    Register(#[source] CreateError),
    /// The node's registration record could not be laid out (its size is fixed: a bug).
    #[error("cannot lay out the node's registration record: {0}")]
    Layout(#[source] LayoutError),
    /// The node's registration record does not lie in its segment (its size is fixed: a bug).
    #[error("cannot find the node's registration record in its segment: {0}")]
    Offset(#[source] OffsetError),
    /// The heartbeat thread could not be started.
    #[error(
        "cannot start the node's heartbeat thread: {0}; free threads or memory, or leave \
         NodeBuilder::heartbeat unset and call Node::heartbeat from your own loop"
    )]
    Heartbeat(#[source] std::io::Error),
}

/// Creating or opening a topic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// A bad service name.
    #[error(transparent)]
    Name(#[from] NodeError),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(#[source] ConfigError),
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
    /// A topic created through the run-time typed API needs its type described.
    #[error(
        "the topic {service:?} does not exist and cannot be created without its payload type: \
         give RawTopicBuilder::type_spec, or open a topic another process created"
    )]
    TypeRequired {
        /// The service name.
        service: String,
    },
    /// The control segment is not a valid service of its kind.
    #[error("the service's control segment is corrupt ({0}): remove it with `shmlane clean`")]
    Corrupt(#[source] CorruptError),
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
        "all {max} {what} slots of the service are held by live processes: stop one of them, \
         or create the service with more (its builder's max_{what}s)"
    )]
    NoFreeSlot {
        /// "publisher", "subscriber", "client", "server" or "listener".
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
    /// A layout offset failed.
    #[error("the topic's layout does not fit its segment: {0}")]
    Offset(#[from] OffsetError),
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
    /// Bytes sent through the run-time typed API that are not whole elements.
    #[error(
        "{len} bytes are not a whole number of the topic's {element_size}-byte elements: send \
         1 to 4294967295 elements"
    )]
    BadByteLen {
        /// Bytes given.
        len: usize,
        /// Bytes of one element.
        element_size: u64,
    },
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

/// A batch send ([`Publisher::send_copies`](crate::Publisher::send_copies)) that stopped: the
/// first `sent` values were sent, the next one failed with `error`.
#[derive(Debug, thiserror::Error)]
#[error("the batch stopped after {sent} values: {error}")]
pub struct BatchError {
    /// Values sent before the failure (in order, from the first).
    pub sent: usize,
    /// Why the next one was not.
    #[source]
    pub error: PublishError,
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
    /// An async wait could not start the reactor thread.
    #[error(transparent)]
    Reactor(#[from] shmlane_notify::reactor::ReactorError),
}

/// Signalling an event ([`Notifier::notify`](crate::Notifier::notify)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// An event id at or beyond the service's `max_event_id`.
    #[error(
        "event id {id} is out of range: the service takes ids below {max} (raise max_event_id \
         when creating it)"
    )]
    BadEventId {
        /// The id given.
        id: u32,
        /// The service's `max_event_id`.
        max: u32,
    },
}

/// Why settings were refused: the caller's ([`TopicError::InvalidConfig`]), or those a control
/// segment records ([`CorruptError::Settings`]). Each names the setting and its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count is outside its range.
    #[error("{setting} is {value}: use {min} to {max}")]
    OutOfRange {
        /// The setting, as its builder method is called.
        setting: &'static str,
        /// The value given.
        value: u32,
        /// Its smallest value.
        min: u32,
        /// Its largest value.
        max: u32,
    },
    /// `subscriber_capacity` is not a power of two, or is above 65 536.
    #[error("subscriber_capacity is {0}: use a power of two from 1 to 65536")]
    SubscriberCapacity(u32),
    /// `history` is longer than `subscriber_capacity`.
    #[error("history is {history}: use at most subscriber_capacity ({capacity})")]
    HistoryTooLong {
        /// The history asked for.
        history: u32,
        /// The subscriber capacity.
        capacity: u32,
    },
    /// A publisher would need more payload blocks than a pool can index.
    #[error(
        "{blocks} payload blocks per publisher (max_loans + history + max_subscribers × \
         (subscriber_capacity + max_held)): lower these settings to need at most {max}"
    )]
    TooManyBlocks {
        /// Blocks the settings need.
        blocks: u64,
        /// The most a pool indexes.
        max: u64,
    },
    /// A publisher's base payload segment would be larger than this process agreed to.
    #[error(
        "its settings ({blocks} blocks of {max_slice_len} elements of {element_size} bytes) \
         need a payload segment of {} bytes per publisher, above this process's \
         max_pool_bytes ({max_pool_bytes}): raise TopicBuilder::max_pool_bytes if that is \
         intended", bytes_or_overflow(*.bytes)
    )]
    PoolTooLarge {
        /// Blocks per publisher.
        blocks: u64,
        /// Elements per block.
        max_slice_len: u32,
        /// Bytes per element.
        element_size: u64,
        /// Bytes of the payload segment (`None`: beyond 2^64).
        bytes: Option<u64>,
        /// This process's limit (`TopicBuilder::max_pool_bytes`).
        max_pool_bytes: u64,
    },
    /// The service's control segment would not fit 64-bit offsets.
    #[error("the service does not fit a segment: {0}")]
    TooLarge(#[source] LayoutError),
    /// A payload type described at run time has a layout no type has.
    #[error(
        "a payload element of {size} bytes aligned to {align} cannot be carried: use a size of \
         1 to 4294967295 bytes, a multiple of an alignment that is a power of two up to 4096"
    )]
    TypeLayout {
        /// Bytes of one element.
        size: u64,
        /// Its alignment.
        align: u64,
    },
}

/// What is wrong with a service's control segment ([`TopicError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptError {
    /// The service header does not start with the magic of its kind.
    #[error("bad magic {found:02x?}: not a shmlane {kind}")]
    BadMagic {
        /// The kind expected: "topic" or "event service".
        kind: &'static str,
        /// The bytes found.
        found: [u8; 8],
    },
    /// Reserved header bytes are set.
    #[error("reserved header bytes are set")]
    Reserved,
    /// The service header is of another format version.
    #[error(
        "format version {found}, this build reads {expected}: use the same shmlane version in \
         every process"
    )]
    Version {
        /// The version found.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// The recorded overflow policy is none this build knows.
    #[error("overflow policy {0} is unknown")]
    Overflow(u32),
    /// The recorded settings are impossible: no creator could have written them.
    #[error("impossible settings: {0}")]
    Settings(#[source] ConfigError),
    /// The segment is smaller than its recorded settings need.
    #[error("the segment holds {len} bytes, its settings need {needed}")]
    TooSmall {
        /// The segment's length.
        len: u64,
        /// What the settings need.
        needed: u64,
    },
}

/// `bytes` in a message, "over 2^64" for `None`.
fn bytes_or_overflow(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "over 2^64".into(), |b| b.to_string())
}
