//! Discovery from Python: the services and nodes in a directory, as dicts.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shmlane::discovery::{self, Peer, ServiceKind};
use shmlane_segment::Liveness;

use crate::errors::ToPyErr;

/// A liveness as a string: `"alive"`, `"dead"` or `"unknown"`.
fn liveness(liveness: Liveness) -> &'static str {
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        _ => "unknown",
    }
}

fn peer<'py>(py: Python<'py>, peer: &Peer) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("slot", peer.slot)?;
    dict.set_item("pid", peer.pid)?;
    dict.set_item("liveness", liveness(peer.liveness))?;
    dict.set_item("drops", peer.drops)?;
    Ok(dict)
}

/// The services in `/dev/shm` (or `root`), of every namespace or of `namespace`: dicts with
/// `namespace`, `name`, `kind` (`"topic"`, `"rpc"`, `"event"`), `type_name`, `type_size`,
/// `type_version` (topics; else None), `publishers` and `subscribers` (lists of dicts with
/// `slot`, `pid`, `liveness`, `drops`; listeners for events), `path`, `size` and `problem`.
#[pyfunction]
#[pyo3(signature = (root=None, namespace=None))]
pub(crate) fn list_services<'py>(
    py: Python<'py>,
    root: Option<PathBuf>,
    namespace: Option<&str>,
) -> PyResult<Bound<'py, PyList>> {
    let services = py.detach(|| discovery::list(root.as_deref())).map_err(|e| e.to_py())?;
    let list = PyList::empty(py);
    for service in services {
        if namespace.is_some_and(|namespace| namespace != service.namespace) {
            continue;
        }
        let dict = PyDict::new(py);
        dict.set_item("namespace", &service.namespace)?;
        dict.set_item("name", &service.name)?;
        let kind = match service.kind {
            ServiceKind::Topic => "topic",
            ServiceKind::Rpc => "rpc",
            ServiceKind::Event => "event",
        };
        dict.set_item("kind", kind)?;
        let (type_name, type_size, type_version) = match &service.payload {
            Some((name, size, version)) => (Some(name.as_str()), Some(*size), Some(*version)),
            None => (None, None, None),
        };
        dict.set_item("type_name", type_name)?;
        dict.set_item("type_size", type_size)?;
        dict.set_item("type_version", type_version)?;
        let peers = |peers: &[Peer]| -> PyResult<Bound<'py, PyList>> {
            let list = PyList::empty(py);
            for p in peers {
                list.append(peer(py, p)?)?;
            }
            Ok(list)
        };
        dict.set_item("publishers", peers(&service.publishers)?)?;
        dict.set_item("subscribers", peers(&service.subscribers)?)?;
        dict.set_item("path", service.segment.path.to_string_lossy())?;
        dict.set_item("size", service.segment.size)?;
        dict.set_item("problem", &service.problem)?;
        list.append(dict)?;
    }
    Ok(list)
}

/// The nodes registered in `/dev/shm` (or `root`), of every namespace or of `namespace`:
/// dicts with `namespace`, `name`, `pid`, `liveness` and `heartbeat_age` (seconds since its
/// last heartbeat, or None).
#[pyfunction]
#[pyo3(signature = (root=None, namespace=None))]
pub(crate) fn list_nodes<'py>(
    py: Python<'py>,
    root: Option<PathBuf>,
    namespace: Option<&str>,
) -> PyResult<Bound<'py, PyList>> {
    let nodes = py.detach(|| discovery::nodes(root.as_deref())).map_err(|e| e.to_py())?;
    let list = PyList::empty(py);
    for node in nodes {
        if namespace.is_some_and(|namespace| namespace != node.namespace) {
            continue;
        }
        let dict = PyDict::new(py);
        dict.set_item("namespace", &node.namespace)?;
        dict.set_item("name", &node.name)?;
        dict.set_item("pid", node.pid)?;
        dict.set_item("liveness", liveness(node.liveness))?;
        dict.set_item("heartbeat_age", node.heartbeat_age.map(|age| age.as_secs_f64()))?;
        list.append(dict)?;
    }
    Ok(list)
}
