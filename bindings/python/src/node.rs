//! [`Node`] from Python: a participant, and where its topics and events are opened.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmlane::{DEFAULT_MAX_POOL_BYTES, TopicConfig};

use crate::dtype::{Payload, view_dtype};
use crate::errors::ToPyErr;
use crate::event::Event;
use crate::rpc::{Rpc, payload_arg};
use crate::topic::{Topic, overflow_named};
use crate::wait::timeout;

/// A participant: its name, the namespace its services live in, and the directory they live
/// in (`/dev/shm` unless `root` is given).
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Node {
    node: shmlane::Node,
}

#[pymethods]
impl Node {
    /// Creates and registers a node. `namespace` defaults to `$SHMLANE_NAMESPACE`, else
    /// `"default"`; `heartbeat` (seconds) starts a thread that beats the node's heartbeat.
    #[new]
    #[pyo3(signature = (name, namespace=None, root=None, heartbeat=None))]
    fn new(
        name: String,
        namespace: Option<String>,
        root: Option<PathBuf>,
        heartbeat: Option<f64>,
    ) -> PyResult<Self> {
        let mut builder = shmlane::Node::builder(name);
        if let Some(namespace) = namespace {
            builder = builder.namespace(namespace);
        }
        if let Some(root) = root {
            builder = builder.root(root);
        }
        if let Some(interval) = timeout(heartbeat)? {
            builder = builder.heartbeat(interval);
        }
        Ok(Node { node: builder.create().map_err(|e| e.to_py())? })
    }

    /// The node's name.
    #[getter]
    fn name(&self) -> &str {
        self.node.name()
    }

    /// The namespace its services live in.
    #[getter]
    fn namespace(&self) -> &str {
        self.node.namespace()
    }

    /// The directory its segments live in, or None for `/dev/shm`.
    #[getter]
    fn root(&self) -> Option<PathBuf> {
        self.node.root().map(PathBuf::from)
    }

    /// Records that the node is alive and making progress.
    fn heartbeat(&self) {
        self.node.heartbeat();
    }

    /// Removes the registrations of this namespace's nodes whose processes are dead; returns
    /// how many it removed.
    fn remove_dead_nodes(&self, py: Python<'_>) -> PyResult<usize> {
        let removal = py.detach(|| self.node.remove_dead_nodes()).map_err(|e| e.to_py())?;
        Ok(removal.removed.len())
    }

    /// Opens (or creates) the topic `service`.
    ///
    /// Its payload: a NumPy `dtype` (size and alignment from it, the type name given or
    /// derived), or raw bytes of `size` (and `align`, `type_name`), or nothing to open an
    /// existing topic as the type it records. `version` is the type's layout version. `mode` is
    /// `"open_or_create"`, `"create"` or `"open"`; the other settings apply to a create.
    #[pyo3(signature = (
        service, *, dtype=None, size=None, align=None, type_name=None, version=0,
        mode="open_or_create", max_publishers=None, max_subscribers=None,
        subscriber_capacity=None, max_held=None, max_loans=None, max_slice_len=None,
        history=None, overflow=None, max_pool_bytes=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn topic(
        &self,
        py: Python<'_>,
        service: &str,
        dtype: Option<&Bound<'_, PyAny>>,
        size: Option<u64>,
        align: Option<u64>,
        type_name: Option<String>,
        version: u64,
        mode: &str,
        max_publishers: Option<u32>,
        max_subscribers: Option<u32>,
        subscriber_capacity: Option<u32>,
        max_held: Option<u32>,
        max_loans: Option<u32>,
        max_slice_len: Option<u32>,
        history: Option<u32>,
        overflow: Option<&str>,
        max_pool_bytes: Option<u64>,
    ) -> PyResult<Topic> {
        let payload = Payload::from_args(dtype, size, align, type_name, version)?;
        let mut config = TopicConfig::default();
        let settings = [
            (&mut config.max_publishers, max_publishers),
            (&mut config.max_subscribers, max_subscribers),
            (&mut config.subscriber_capacity, subscriber_capacity),
            (&mut config.max_held, max_held),
            (&mut config.max_loans, max_loans),
            (&mut config.max_slice_len, max_slice_len),
            (&mut config.history, history),
        ];
        for (setting, value) in settings {
            if let Some(value) = value {
                *setting = value;
            }
        }
        if let Some(overflow) = overflow {
            config.overflow = overflow_named(overflow)?;
        }
        let mut builder = self
            .node
            .raw_topic(service)
            .config(config)
            .max_pool_bytes(max_pool_bytes.unwrap_or(DEFAULT_MAX_POOL_BYTES));
        if let Some(spec) = payload.spec.clone() {
            builder = builder.type_spec(spec);
        }
        let topic = py.detach(|| match mode {
            "open_or_create" => Ok(builder.open_or_create()),
            "create" => Ok(builder.create()),
            "open" => Ok(builder.open()),
            _ => Err(mode.to_owned()),
        });
        let topic = topic
            .map_err(|mode| {
                PyValueError::new_err(format!(
                    "unknown mode {mode:?}: use 'open_or_create', 'create' or 'open'"
                ))
            })?
            .map_err(|e| e.to_py())?;
        let dtype = view_dtype(py, payload.dtype.as_ref(), topic.type_spec())?;
        Ok(Topic::new(topic, dtype))
    }

    /// Opens (or creates, with these settings) the event service `service`: ids below
    /// `max_event_id` (1 to 65536), up to `max_listeners` listeners (1 to 64).
    #[pyo3(signature = (service, *, max_listeners=8, max_event_id=64))]
    fn event(
        &self,
        py: Python<'_>,
        service: &str,
        max_listeners: u32,
        max_event_id: u32,
    ) -> PyResult<Event> {
        let builder =
            self.node.event(service).max_listeners(max_listeners).max_event_id(max_event_id);
        let event = py.detach(|| builder.open_or_create()).map_err(|e| e.to_py())?;
        Ok(Event::new(event, service.to_owned()))
    }

    /// Opens (or creates, with these types and settings) the request/response service
    /// `service`. `request` and `response` are each a dtype, or a dict of `topic`'s type
    /// arguments (`dtype`, `size`, `align`, `type_name`, `version`); give both to create, or
    /// neither to open an existing service as the types it records.
    #[pyo3(signature = (service, request=None, response=None, *, max_clients=8, capacity=64))]
    fn rpc(
        &self,
        py: Python<'_>,
        service: &str,
        request: Option<&Bound<'_, PyAny>>,
        response: Option<&Bound<'_, PyAny>>,
        max_clients: u32,
        capacity: u32,
    ) -> PyResult<Rpc> {
        let request = payload_arg(request)?;
        let response = payload_arg(response)?;
        let mut builder = self.node.raw_rpc(service).max_clients(max_clients).capacity(capacity);
        match (request.spec.clone(), response.spec.clone()) {
            (Some(req), Some(resp)) => builder = builder.types(req, resp),
            (None, None) => {}
            _ => {
                return Err(PyValueError::new_err(
                    "give both the request and the response type, or neither",
                ));
            }
        }
        let rpc = py.detach(|| builder.open_or_create()).map_err(|e| e.to_py())?;
        Rpc::new(py, rpc, service.to_owned(), (&request, &response))
    }

    fn __repr__(&self) -> String {
        format!("<shmlane.Node {:?} in namespace {:?}>", self.node.name(), self.node.namespace())
    }
}
