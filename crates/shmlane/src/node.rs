//! [`Node`]: one participant (a process, or a part of one) in a namespace, and where its
//! shared memory lives.

use std::path::PathBuf;

use shmlane_segment::{Backing, RoleOwner, SegmentBuilder};

use crate::error::NodeError;
use crate::payload::ZeroCopy;
use crate::topic::TopicBuilder;

/// Environment variable naming the default namespace.
pub const NAMESPACE_ENV: &str = "SHMLANE_NAMESPACE";
/// The namespace when neither the builder nor [`NAMESPACE_ENV`] names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Longest namespace or service name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A participant: its name, its process identity (pid + start time, which survives pid
/// reuse), the namespace that keeps independent applications on one host apart, and where
/// its segments live. Services are opened through it.
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
}

/// Configures a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    name: String,
    namespace: Option<String>,
    root: Option<PathBuf>,
}

impl Node {
    /// A builder for a node called `name`.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder { name: name.into(), namespace: None, root: None }
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

    /// This process's identity as services record it.
    pub fn id(&self) -> RoleOwner {
        self.me
    }

    /// A publish/subscribe topic of `T` called `service`, to create or open.
    pub fn topic<T: ZeroCopy>(&self, service: &str) -> TopicBuilder<'_, T> {
        TopicBuilder::new(self, service)
    }

    /// A request/response service called `service`, to open or create.
    pub fn rpc<Req: ZeroCopy, Resp: ZeroCopy>(
        &self,
        service: &str,
    ) -> crate::rpc::RpcBuilder<'_, Req, Resp> {
        crate::rpc::RpcBuilder::new(self, service)
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

    /// Creates the node.
    pub fn create(self) -> Result<Node, NodeError> {
        check_name("node name", &self.name)?;
        let namespace = match self.namespace {
            Some(namespace) => namespace,
            None => std::env::var(NAMESPACE_ENV).unwrap_or_else(|_| DEFAULT_NAMESPACE.into()),
        };
        check_name("namespace", &namespace)?;
        let me = RoleOwner::current().map_err(NodeError::Identity)?;
        Ok(Node { name: self.name, namespace, root: self.root, me })
    }
}

/// Checks a namespace, node or service name: 1 to 64 letters, digits, `-` or `_`.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), NodeError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(NodeError::InvalidName { what, name: name.to_owned() }) }
}
