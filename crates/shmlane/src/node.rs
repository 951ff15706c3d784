//! [`Node`]: one participant (a process, or a part of one) in a namespace, and where its
//! shared memory lives.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use shmlane_segment::{
    Backing, DiscoveryError, Fingerprint, Removal, RoleOwner, Segment, SegmentBuilder, SharedView,
    crash_point,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::NodeError;
use crate::payload::ZeroCopy;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::topic::TopicBuilder;

/// Environment variable naming the default namespace.
pub const NAMESPACE_ENV: &str = "SHMLANE_NAMESPACE";
/// The namespace when neither the builder nor [`NAMESPACE_ENV`] names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Longest namespace or service name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A participant: its name, its process identity (a presence token, which survives pid
/// reuse and holds across pid namespaces), the namespace that keeps independent applications
/// on one host apart, and where its segments live. Services are opened through it.
///
/// Each node registers itself in a small segment `{namespace}.node.{name}.{pid}.{n}` (removed
/// when its last clone drops) with its identity and a heartbeat: the `CLOCK_MONOTONIC` time of
/// its last [`heartbeat`](Node::heartbeat), beaten by a background thread if the builder asks
/// for one. Discovery lists nodes with their liveness and heartbeat age, so a process that is
/// alive but hung shows up as such.
///
/// ```
/// let node = shmlane::Node::builder("doc-node").namespace("doc").create()?;
/// assert_eq!(node.namespace(), "doc");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    namespace: String,
    root: Option<PathBuf>,
    me: RoleOwner,
    registration: Arc<Registration>,
    /// What the sweep of dead nodes at creation could not do.
    sweep_errors: Arc<[DiscoveryError]>,
}

/// A node's registration segment; removed when the last clone of the node drops.
#[derive(Debug)]
struct Registration {
    segment: Segment,
    at: shmlane_segment::Offset<NodeRecord>,
}

/// What a node's registration segment holds (after the segment header).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct NodeRecord {
    /// The node's `RoleOwner` (its process's presence token).
    pub(crate) owner: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds of the last heartbeat (0: never).
    pub(crate) heartbeat_ns: AtomicU64,
}

// SAFETY: a `#[repr(C)]` pair of atomics.
unsafe impl SharedView for NodeRecord {}

/// Fingerprint of a node registration segment.
pub(crate) const NODE_FINGERPRINT: Fingerprint = Fingerprint::new("shmlane.node").with_u64(1);

/// The node registration's record, as discovery reads it by copy.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct NodeRecordCopy {
    pub(crate) owner: u64,
    pub(crate) heartbeat_ns: u64,
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the host.
pub(crate) fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}

/// Configures a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    name: String,
    namespace: Option<String>,
    root: Option<PathBuf>,
    heartbeat: Option<Duration>,
}

impl Node {
    /// A builder for a node called `name`.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder { name: name.into(), namespace: None, root: None, heartbeat: None }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace its services live in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The directory segments live in, if not `/dev/shm`.
    pub fn root(&self) -> Option<&std::path::Path> {
        self.root.as_deref()
    }

    /// Removes the registrations of this namespace's nodes whose processes are proven dead
    /// (killed before they could remove their own); returns those it removed and those it
    /// could not (another user's in a sticky directory such as `/dev/shm`, or in a directory
    /// we may not write), going on past these. Fails only if the directory cannot be listed.
    /// Node creation does this too ([`sweep_errors`](Node::sweep_errors)).
    pub fn remove_dead_nodes(&self) -> Result<Removal, DiscoveryError> {
        remove_dead_nodes(&self.namespace, self.root.as_deref())
    }

    /// What the sweep of dead nodes' registrations at this node's creation could not do: each
    /// registration it could not remove, or why it could not list the directory; every error
    /// names its file or directory. Empty when it did all it found to do. Creation goes on
    /// regardless (these are other processes' leftovers); fix the permissions, or sweep as
    /// their owner, then call [`remove_dead_nodes`](Node::remove_dead_nodes) again.
    pub fn sweep_errors(&self) -> &[DiscoveryError] {
        &self.sweep_errors
    }

    /// Records that the node is alive and making progress now (see [`Node`]).
    pub fn heartbeat(&self) {
        // Relaxed: readers copy the word; it publishes nothing else.
        self.registration.record().heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
    }

    /// This process's identity as services record it.
    pub fn id(&self) -> RoleOwner {
        self.me
    }

    /// A publish/subscribe topic of `T` called `service`, to create or open.
    pub fn topic<T: ZeroCopy>(&self, service: &str) -> TopicBuilder<'_, T> {
        TopicBuilder::new(self, service)
    }

    /// A publish/subscribe topic called `service` whose payload type is described at run
    /// time ([`TypeSpec`](crate::TypeSpec)), to create or open: for bindings to other
    /// languages and tools that carry any topic. See [`RawTopic`](crate::RawTopic).
    pub fn raw_topic(&self, service: &str) -> crate::topic::RawTopicBuilder<'_> {
        crate::topic::RawTopicBuilder::new(self, service)
    }

    /// A request/response service called `service`, to open or create.
    pub fn rpc<Req: ZeroCopy, Resp: ZeroCopy>(
        &self,
        service: &str,
    ) -> crate::rpc::RpcBuilder<'_, Req, Resp> {
        crate::rpc::RpcBuilder::new(self, service)
    }

    /// A request/response service called `service` whose types are described at run time,
    /// to open or create. See [`RawRpc`](crate::rpc::RawRpc).
    pub fn raw_rpc(&self, service: &str) -> crate::rpc::RawRpcBuilder<'_> {
        crate::rpc::RawRpcBuilder::new(self, service)
    }

    /// An event service called `service`, to open or create.
    pub fn event(&self, service: &str) -> crate::event::EventBuilder<'_> {
        crate::event::EventBuilder::new(self, service)
    }

    /// A segment builder for `{namespace}.{suffix}` in this node's root.
    pub(crate) fn segment(&self, suffix: &str) -> SegmentBuilder {
        let builder = shmlane_segment::Segment::builder(format!("{}.{suffix}", self.namespace));
        match &self.root {
            Some(dir) => builder.backing(Backing::Dir(dir.clone())),
            None => builder,
        }
    }
}

impl NodeBuilder {
    /// The namespace (default: `$SHMLANE_NAMESPACE`, else `default`). Letters, digits, `-`
    /// and `_`, at most 64 bytes.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Keep segments in this directory instead of `/dev/shm` (a hugetlbfs mount, a larger
    /// tmpfs than Docker's 64 MiB `/dev/shm`, or a disk).
    pub fn root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root = Some(dir.into());
        self
    }

    /// Beat the node's heartbeat from a background thread every `interval` while the node
    /// lives (default: no thread; call [`Node::heartbeat`] from your own loop instead).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// Creates the node and registers it.
    pub fn create(self) -> Result<Node, NodeError> {
        check_name("node name", &self.name)?;
        let namespace = match self.namespace {
            Some(namespace) => namespace,
            None => std::env::var(NAMESPACE_ENV).unwrap_or_else(|_| DEFAULT_NAMESPACE.into()),
        };
        check_name("namespace", &namespace)?;
        let me = RoleOwner::current().map_err(NodeError::Identity)?;
        let sweep_errors: Arc<[DiscoveryError]> =
            match remove_dead_nodes(&namespace, self.root.as_deref()) {
                Ok(removal) => removal.failed.into_iter().map(|(_, error)| error).collect(),
                Err(error) => Arc::new([error]),
            };
        static NODES: AtomicU32 = AtomicU32::new(0);
        // Relaxed: a counter that only has to be unique within this process.
        let n = NODES.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("node.{}.{}.{n}", self.name, std::process::id());
        let mut carver = shmlane_segment::Carver::new();
        let layout =
            shmlane_segment::RegionLayout { size: size_of::<NodeRecord>() as u64, align: 64 };
        let region = carver.place(layout).map_err(NodeError::Layout)?;
        let builder = Segment::builder(format!("{namespace}.{suffix}"));
        let builder = match &self.root {
            Some(dir) => builder.backing(Backing::Dir(dir.clone())),
            None => builder,
        };
        let segment = builder
            .fingerprint(NODE_FINGERPRINT)
            .size(carver.total_size())
            .create()
            .map_err(NodeError::Register)?;
        crash_point!("shmlane.node.registering");
        let at = region.offset_of(0).map_err(NodeError::Offset)?;
        let registration = Arc::new(Registration { segment, at });
        let record = registration.record();
        // Relaxed (both): readers copy the words; nothing else is published through them.
        record.owner.store(me.to_raw(), Ordering::Relaxed);
        record.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        if let Some(interval) = self.heartbeat {
            let weak = Arc::downgrade(&registration);
            std::thread::Builder::new()
                .name(format!("shmlane-heartbeat-{}", self.name))
                .spawn(move || beat(weak, interval))
                .map_err(NodeError::Heartbeat)?;
        }
        Ok(Node { name: self.name, namespace, root: self.root, me, registration, sweep_errors })
    }
}

/// Checks a namespace, node or service name: 1 to 64 letters, digits, `-` or `_`.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), NodeError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(NodeError::InvalidName { what, name: name.to_owned() }) }
}

impl Registration {
    fn record(&self) -> &NodeRecord {
        self.segment.get(self.at).expect("placed in the node segment at creation")
    }
}

/// The heartbeat thread: beats until the node is gone.
fn beat(registration: Weak<Registration>, interval: Duration) {
    while let Some(registration) = registration.upgrade() {
        // Relaxed: as in `Node::heartbeat`.
        registration.record().heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        drop(registration);
        std::thread::sleep(interval);
    }
}

/// Removes the stale registrations of `namespace`'s nodes (their creators are proven dead),
/// and the presence files of processes that ended (see `shmlane_segment::presence`).
fn remove_dead_nodes(
    namespace: &str,
    root: Option<&std::path::Path>,
) -> Result<Removal, DiscoveryError> {
    // Presence files we cannot remove are other users' (each user's processes share the one
    // presence directory): left for their owner's sweep, not ours to report.
    let _ = shmlane_segment::presence::remove_dead();
    let prefix = format!("{namespace}.node.");
    let dir = root.unwrap_or(std::path::Path::new("/dev/shm"));
    let removal =
        shmlane_segment::remove_stale_matching(dir, |name| name.as_str().starts_with(&prefix))?;
    crate::events::dead_nodes_swept(namespace, removal.removed.len(), removal.failed.len());
    Ok(removal)
}
