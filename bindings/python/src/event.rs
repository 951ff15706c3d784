//! Events from Python: payload-free notifications carrying an id.

use pyo3::prelude::*;
use shmlane::notify::Blocking;
use shmlane::{EventId, ReceiveError};

use crate::errors::{TimedOut, ToPyErr};
use crate::wait::{sliced, timeout};

/// An event service, opened by `Node.event`.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Event {
    event: shmlane::Event,
    service: String,
}

impl Event {
    pub(crate) fn new(event: shmlane::Event, service: String) -> Self {
        Event { event, service }
    }
}

#[pymethods]
impl Event {
    /// Event ids are below this.
    #[getter]
    fn max_event_id(&self) -> u32 {
        self.event.max_event_id()
    }

    /// A notifier (any number may exist).
    fn notifier(&self) -> PyResult<Notifier> {
        Ok(Notifier { notifier: self.event.notifier().map_err(|e| e.to_py())? })
    }

    /// Claims a listener slot: it sees the ids notified from now on.
    fn listener(&self) -> PyResult<Listener> {
        Ok(Listener { listener: self.event.listener().map_err(|e| e.to_py())? })
    }

    fn __repr__(&self) -> String {
        format!("<shmlane.Event {:?}>", self.service)
    }
}

/// Sends event ids to every listener. Any thread may use it, at once.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Notifier {
    notifier: shmlane::Notifier,
}

#[pymethods]
impl Notifier {
    /// Signals `id` to every listener; returns how many listener slots are held.
    fn notify(&self, id: EventId) -> PyResult<usize> {
        self.notifier.notify(id).map_err(|e| e.to_py())
    }
}

/// Receives event ids. Threads sharing one listener split the ids between them.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Listener {
    listener: shmlane::Listener,
}

#[pymethods]
impl Listener {
    /// Every pending id (ascending), without blocking; `[]` if none.
    fn try_take(&self) -> Vec<EventId> {
        self.listener.try_take()
    }

    /// Waits with the GIL released until ids are pending, for ever or up to `timeout` seconds
    /// (then raises `TimedOut`), and takes them all (ascending).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<EventId>> {
        let timeout = crate::event::timeout(timeout)?;
        let ids = sliced(py, timeout, |slice| {
            match self.listener.wait(&mut Blocking::new(), Some(slice)) {
                Ok(ids) => Ok(Some(ids)),
                Err(ReceiveError::TimedOut(_)) => Ok(None),
                Err(e) => Err(e.to_py()),
            }
        })?;
        ids.ok_or_else(|| {
            TimedOut::new_err(
                "no event arrived before the timeout: the notifier is slow, stopped or gone; \
                 retry, or wait longer",
            )
        })
    }
}
