//! Discovery: the services in a directory (`/dev/shm` by default), their kind and payload type,
//! and who holds their publisher, subscriber and listener slots, with liveness; every segment
//! with a verdict that counts those peers ([`segments`]), the removal of stale ones
//! ([`remove_stale`]), and the state of one segment in detail ([`inspect`]).
//!
//! Read-only: each segment of this user is mapped read-only, and another user's is read from a
//! private copy taken with `pread`, never mapped, so its owner cannot crash discovery with
//! `SIGBUS` by shrinking it. What is read is copied out and validated, so discovery never
//! disturbs a service and bad bytes give an error value, not a panic or a signal.

mod entries;
mod inspect;
mod names;

use std::path::Path;

use shmlane_segment::{SegmentInfo, SegmentStatus};

pub use entries::{SegmentEntry, Verdict, remove_stale, segments};
pub use inspect::{
    InspectError, Inspection, PoolDetail, PublisherDetail, QueueFill, SubscriberDetail,
    TopicDetail, inspect,
};
pub use names::SegmentKind;
pub use shmlane_segment::{DiscoveryError, Liveness, Removal};

/// What a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Publish/subscribe.
    Topic,
    /// One of the two topics of a request/response service (`NAME.req`, `NAME.resp`).
    Rpc,
    /// Events.
    Event,
}

/// A participant holding a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The slot index.
    pub slot: usize,
    /// Its process's pid (in its own pid namespace) as its presence file records it; `None`
    /// once that file is gone.
    pub pid: Option<u32>,
    /// Whether that process runs (by its presence token).
    pub liveness: Liveness,
    /// Samples dropped for it (subscribers only; 0 otherwise).
    pub drops: u64,
    /// Its counters, as it wrote them.
    pub counters: Counters,
}

/// A slot holder's counters, written by the holder alone (one store per count, on a cache
/// line nobody else writes) and read here by copy. Counts are per slot: a process that takes
/// over a slot continues its predecessor's counts (so they only grow, as Prometheus counters
/// may), except `held`, a gauge it resets. Fields that do not apply to a role stay 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Samples sent (publishers; for an rpc's request topic, the client's requests; for its
    /// response topic, the server's responses).
    pub sent: u64,
    /// Loans refused for want of a free block (publishers).
    pub loans_failed: u64,
    /// Samples received (subscribers).
    pub received: u64,
    /// Samples held now (subscribers).
    pub held: u64,
    /// Waits for a response that timed out (an rpc client's response subscriber).
    pub timeouts: u64,
    /// Event notifications taken (listeners).
    pub notifications: u64,
}

/// One service found.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name (for request/response, with `.req` or `.resp`).
    pub name: String,
    /// What it is.
    pub kind: ServiceKind,
    /// The payload type's recorded name, size and version (topics).
    pub payload: Option<(String, u64, u64)>,
    /// Publisher slots held (topics).
    pub publishers: Vec<Peer>,
    /// Subscriber slots held (topics), or listener slots (events).
    pub subscribers: Vec<Peer>,
    /// The segment itself (size, creator, status).
    pub segment: SegmentInfo,
    /// Why the service's own header could not be read, if it could not.
    pub problem: Option<String>,
}

impl ServiceInfo {
    /// Every slot holder: publishers, then subscribers (or listeners).
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.publishers.iter().chain(&self.subscribers)
    }
}

/// The services in `/dev/shm`, or in `root`.
pub fn list(root: Option<&Path>) -> Result<Vec<ServiceInfo>, DiscoveryError> {
    Ok(segments(root)?.into_iter().filter_map(|entry| entry.service).collect())
}

/// A registered node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its process's pid (in its own pid namespace) as its presence file records it; `None`
    /// once that file is gone.
    pub pid: Option<u32>,
    /// Whether that process runs (by its presence token).
    pub liveness: Liveness,
    /// Time since its last heartbeat, if it ever beat.
    pub heartbeat_age: Option<std::time::Duration>,
}

/// The nodes registered in `/dev/shm`, or in `root` (registrations left by dead processes are
/// in [`segments`]).
pub fn nodes(root: Option<&Path>) -> Result<Vec<NodeInfo>, DiscoveryError> {
    Ok(segments(root)?
        .into_iter()
        .filter(|entry| entry.segment.status == SegmentStatus::Alive)
        .filter_map(|entry| entry.node)
        .collect())
}
