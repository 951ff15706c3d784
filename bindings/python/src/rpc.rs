//! Request/response from Python, over the facade's run-time typed rpc ([`RawRpc`]): one
//! [`Server`] answering [`Request`]s, [`Client`]s whose responses are [`Sample`]s.

use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use shmlane::{RawClient, RawRequest, RawRpc, RawSample, RawServer, ReceiveError};

use crate::buffer::Exported;
use crate::dtype::{Payload, frombuffer, view_dtype};
use crate::errors::{TimedOut, ToPyErr, lend_error};
use crate::lender::{Child, Held, Lender};
use crate::subscriber::{Sample, SampleOwner};
use crate::topic::{SendBytes, contiguous};
use crate::wait::{Strategy, sliced, strategy_named, timeout};

/// One side's payload type from `Node.rpc`'s `request=` or `response=`: None (take the
/// recorded one), a dtype (or anything `numpy.dtype` takes), or a dict of `Node.topic`'s type
/// arguments (`dtype`, `size`, `align`, `type_name`, `version`).
pub(crate) fn payload_arg(arg: Option<&Bound<'_, PyAny>>) -> PyResult<Payload> {
    let Some(arg) = arg else {
        return Payload::from_args(None, None, None, None, 0);
    };
    let Ok(dict) = arg.cast::<PyDict>() else {
        return Payload::from_args(Some(arg), None, None, None, 0);
    };
    for key in dict.keys() {
        let key: String = key.extract()?;
        if !["dtype", "size", "align", "type_name", "version"].contains(&key.as_str()) {
            return Err(PyTypeError::new_err(format!(
                "unknown payload key {key:?}: use dtype, size, align, type_name, version"
            )));
        }
    }
    let get = |key: &str| dict.get_item(key).map(|v| v.filter(|v| !v.is_none()));
    Payload::from_args(
        get("dtype")?.as_ref(),
        get("size")?.map(|v| v.extract()).transpose()?,
        get("align")?.map(|v| v.extract()).transpose()?,
        get("type_name")?.map(|v| v.extract()).transpose()?,
        get("version")?.map(|v| v.extract()).transpose()?.unwrap_or(0),
    )
}

/// A request/response service, opened by `Node.rpc`.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Rpc {
    rpc: RawRpc,
    service: String,
    request_dtype: Py<PyAny>,
    response_dtype: Py<PyAny>,
}

impl Rpc {
    pub(crate) fn new(
        py: Python<'_>,
        rpc: RawRpc,
        service: String,
        (request, response): (&Payload, &Payload),
    ) -> PyResult<Self> {
        let request_dtype = view_dtype(py, request.dtype.as_ref(), rpc.request_type())?;
        let response_dtype = view_dtype(py, response.dtype.as_ref(), rpc.response_type())?;
        Ok(Rpc { rpc, service, request_dtype, response_dtype })
    }
}

/// A type's four fields as a dict.
fn type_dict<'py>(py: Python<'py>, spec: &shmlane::TypeSpec) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("type_name", &spec.name)?;
    dict.set_item("size", spec.size)?;
    dict.set_item("align", spec.align)?;
    dict.set_item("version", spec.version)?;
    Ok(dict)
}

#[pymethods]
impl Rpc {
    /// The request type: `type_name`, `size`, `align`, `version`.
    #[getter]
    fn request_type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        type_dict(py, self.rpc.request_type())
    }

    /// The response type: `type_name`, `size`, `align`, `version`.
    #[getter]
    fn response_type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        type_dict(py, self.rpc.response_type())
    }

    /// Becomes the server (one at a time).
    #[pyo3(signature = (strategy="blocking"))]
    fn server(&self, py: Python<'_>, strategy: &str) -> PyResult<Server> {
        let strategy = RefCell::new(strategy_named(strategy)?);
        let raw = self.rpc.server().map_err(|e| e.to_py())?;
        Ok(Server {
            lender: Arc::new(Lender::new(ServerState { raw, strategy })),
            request_dtype: self.request_dtype.clone_ref(py),
            response_dtype: self.response_dtype.clone_ref(py),
        })
    }

    /// Becomes a client.
    #[pyo3(signature = (strategy="blocking"))]
    fn client(&self, py: Python<'_>, strategy: &str) -> PyResult<Client> {
        let strategy = RefCell::new(strategy_named(strategy)?);
        let raw = self.rpc.client().map_err(|e| e.to_py())?;
        Ok(Client {
            lender: Arc::new(Lender::new(ClientState { raw, strategy })),
            request_dtype: self.request_dtype.clone_ref(py),
            response_dtype: self.response_dtype.clone_ref(py),
        })
    }

    fn __repr__(&self) -> String {
        let (request, response) = (self.rpc.request_type(), self.rpc.response_type());
        format!("<shmlane.Rpc {:?}: {request} -> {response}>", self.service)
    }
}

/// What a server's lender holds.
#[derive(Debug)]
pub(crate) struct ServerState {
    raw: RawServer,
    strategy: RefCell<Strategy>,
}

/// The lender of a server: its requests borrow it.
type ServerLender = Lender<ServerState, RawRequest<'static>>;

/// Answers requests. Any thread may use it, one at a time (a call while another thread waits
/// raises `Busy`).
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Server {
    lender: Arc<ServerLender>,
    request_dtype: Py<PyAny>,
    response_dtype: Py<PyAny>,
}

/// A request received: the child, its bytes' address and length, its client slot.
type Received = (Child<RawRequest<'static>>, (usize, usize, usize));

impl Server {
    fn receive_once(
        held: &Held<'_, ServerState, RawRequest<'static>>,
        wait: Option<std::time::Duration>,
    ) -> PyResult<Option<Received>> {
        let make = |state: &'static ServerState| match wait {
            None => state.raw.receive(),
            Some(wait) => {
                let mut strategy = state.strategy.borrow_mut();
                match state.raw.receive_with(&mut *strategy, Some(wait)) {
                    Ok(request) => Ok(Some(request)),
                    Err(ReceiveError::TimedOut(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        let view = |request: &mut RawRequest<'static>| {
            let bytes: &[u8] = request;
            (bytes.as_ptr() as usize, bytes.len(), request.client())
        };
        // SAFETY: `make` keeps the server only in the request it returns.
        let got = unsafe { held.lend(make, view) };
        got.map_err(|e| lend_error(e, "server", "requests"))?.map_err(|e| e.to_py())
    }

    fn receive_within(
        &self,
        py: Python<'_>,
        timeout: Option<Option<std::time::Duration>>,
    ) -> PyResult<Option<Request>> {
        let held = self.lender.hold().map_err(|e| lend_error(e, "server", "requests"))?;
        let got = match timeout {
            None => Self::receive_once(&held, None)?,
            Some(timeout) => sliced(py, timeout, |slice| Self::receive_once(&held, Some(slice)))?,
        };
        drop(held);
        let Some((child, (ptr, len, client))) = got else { return Ok(None) };
        let size: usize = self.request_dtype.bind(py).getattr("itemsize")?.extract()?;
        Ok(Some(Request {
            exported: Exported::new(child, ptr, len),
            lender: Arc::clone(&self.lender),
            elements: len / size.max(1),
            client,
            dtype: self.request_dtype.clone_ref(py),
        }))
    }
}

#[pymethods]
impl Server {
    /// The next request, or None; with a timeout (seconds), waits up to that long with the GIL
    /// released.
    #[pyo3(signature = (timeout=None))]
    fn receive(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Request>> {
        self.receive_within(py, crate::rpc::timeout(timeout)?.map(Some))
    }

    /// Waits for the next request with the GIL released, for ever or up to `timeout` seconds
    /// (then raises `TimedOut`).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Request> {
        let timeout = crate::rpc::timeout(timeout)?;
        self.receive_within(py, Some(timeout))?.ok_or_else(|| {
            TimedOut::new_err("no request arrived before the timeout: retry, or wait longer")
        })
    }

    /// Sends `response` (bytes, or an array of the response dtype: whole elements) to the
    /// client that sent `request`.
    fn respond(
        &self,
        py: Python<'_>,
        request: &Bound<'_, Request>,
        response: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let request = request.get();
        if !Arc::ptr_eq(&request.lender, &self.lender) {
            return Err(PyValueError::new_err("this request was received by another server"));
        }
        let buffer = contiguous(response, self.response_dtype.bind(py))?;
        let bytes = SendBytes::of(&buffer);
        let state = request.exported.state();
        let Some(child) = state.child.as_ref() else {
            return Err(PyValueError::new_err("this request was released"));
        };
        let held = self.lender.hold().map_err(|e| lend_error(e, "server", "requests"))?;
        // SAFETY: the request is this server's (checked above: it holds our lender).
        let sent = unsafe {
            held.with_child(child, |server, request| server.raw.respond(request, bytes.get()))
        };
        sent.map_err(|e| lend_error(e, "server", "requests"))?.map_err(|e| e.to_py())
    }

    /// Gives the server role back now. Refused while requests are held.
    fn close(&self) -> PyResult<()> {
        self.lender.close().map_err(|e| lend_error(e, "server", "requests"))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close()
    }
}

/// A received request: its bytes in shared memory, read-only, as a `Sample`'s; answer it
/// with `Server.respond`.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Request {
    exported: Exported<RawRequest<'static>>,
    lender: Arc<ServerLender>,
    elements: usize,
    client: usize,
    dtype: Py<PyAny>,
}

#[pymethods]
impl Request {
    /// A read-only NumPy array over the request in place (no copy).
    #[getter]
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        frombuffer(slf.as_any(), slf.get().dtype.bind(slf.py()))
    }

    /// `numpy.asarray(request)`.
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__<'py>(
        slf: &Bound<'py, Self>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let array = Self::array(slf)?;
        let array = match dtype {
            Some(dtype) => array.call_method1("astype", (dtype,))?,
            None => array,
        };
        if copy == Some(true) { array.call_method0("copy") } else { Ok(array) }
    }

    /// Elements received.
    fn __len__(&self) -> usize {
        self.elements
    }

    /// Bytes received.
    #[getter]
    fn nbytes(&self) -> usize {
        self.exported.len()
    }

    /// The client slot that sent it.
    #[getter]
    fn client(&self) -> usize {
        self.client
    }

    /// A copy of its bytes.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        match self.exported.to_vec() {
            Some(bytes) => Ok(PyBytes::new(py, &bytes)),
            None => Err(PyValueError::new_err("this request was released")),
        }
    }

    /// Gives the block back now. Refused while arrays or memoryviews over it are alive.
    fn release(&self) -> PyResult<()> {
        if let Some(child) = self.exported.release("request")? {
            self.lender.dispose(child);
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// # Safety
    ///
    /// Called by Python with a valid `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let owner = slf.as_any();
        // SAFETY: Python's `view`; `slf` holds the request.
        unsafe { slf.get().exported.export(owner, view, flags, true, "this request was released") }
    }

    /// # Safety
    ///
    /// Called by Python for a view `__getbuffer__` filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exported.unexport();
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(child) = self.exported.state().child.take() {
            self.lender.dispose(child);
        }
    }
}

/// What a client's lender holds.
#[derive(Debug)]
pub(crate) struct ClientState {
    raw: RawClient,
    strategy: RefCell<Strategy>,
}

/// The lender of a client: its responses borrow it.
pub(crate) type ClientLender = Lender<ClientState, RawSample<'static>>;

/// A request sent, not yet answered: pass it to `Client.receive` or `Client.wait`.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Pending {
    pending: shmlane::Pending,
    /// The client that sent it.
    client: Arc<ClientLender>,
}

/// Sends requests and receives their responses (`Sample`s). Any thread may use it, one at a
/// time.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Client {
    lender: Arc<ClientLender>,
    request_dtype: Py<PyAny>,
    response_dtype: Py<PyAny>,
}

impl Client {
    fn pending_of(&self, pending: &Bound<'_, Pending>) -> PyResult<shmlane::Pending> {
        let pending = pending.get();
        if !Arc::ptr_eq(&pending.client, &self.lender) {
            return Err(PyValueError::new_err("this request was sent by another client"));
        }
        Ok(pending.pending)
    }

    fn receive_within(
        &self,
        py: Python<'_>,
        pending: shmlane::Pending,
        timeout: Option<Option<std::time::Duration>>,
    ) -> PyResult<Option<Sample>> {
        let once = |held: &Held<'_, ClientState, RawSample<'static>>, wait| {
            let make = |state: &'static ClientState| match wait {
                None => state.raw.receive(pending),
                Some(wait) => {
                    let mut strategy = state.strategy.borrow_mut();
                    match state.raw.receive_with(pending, &mut *strategy, Some(wait)) {
                        Ok(response) => Ok(Some(response)),
                        Err(ReceiveError::TimedOut(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            };
            let view = |sample: &mut RawSample<'static>| {
                let bytes: &[u8] = sample;
                (bytes.as_ptr() as usize, bytes.len(), sample.len())
            };
            // SAFETY: `make` keeps the client only in the response it returns.
            let got = unsafe { held.lend(make, view) };
            got.map_err(|e| lend_error(e, "client", "responses"))?.map_err(|e| e.to_py())
        };
        let held = self.lender.hold().map_err(|e| lend_error(e, "client", "responses"))?;
        let got = match timeout {
            None => once(&held, None)?,
            Some(timeout) => sliced(py, timeout, |slice| once(&held, Some(slice)))?,
        };
        drop(held);
        Ok(got.map(|(child, view)| {
            let owner = SampleOwner::Client(Arc::clone(&self.lender));
            Sample::new(owner, child, view, self.response_dtype.clone_ref(py))
        }))
    }
}

#[pymethods]
impl Client {
    /// Sends `request` (bytes, or an array of the request dtype: whole elements), waiting up
    /// to 1 s with the GIL released if the server's queue for this client is full.
    fn send(&self, py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<Pending> {
        let buffer = contiguous(request, self.request_dtype.bind(py))?;
        let bytes = SendBytes::of(&buffer);
        let sent = py.detach(|| self.lender.with(|client| client.raw.send(bytes.get())));
        let pending = sent.map_err(|e| lend_error(e, "client", "responses"))?;
        let pending = pending.map_err(|e| e.to_py())?;
        Ok(Pending { pending, client: Arc::clone(&self.lender) })
    }

    /// The response to `pending` if it has come, else None; with a timeout (seconds), waits up
    /// to that long with the GIL released. Responses to other requests are dropped.
    #[pyo3(signature = (pending, timeout=None))]
    fn receive(
        &self,
        py: Python<'_>,
        pending: &Bound<'_, Pending>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Sample>> {
        let pending = self.pending_of(pending)?;
        self.receive_within(py, pending, crate::rpc::timeout(timeout)?.map(Some))
    }

    /// Waits for the response to `pending` with the GIL released, for ever or up to `timeout`
    /// seconds (then raises `TimedOut`).
    #[pyo3(signature = (pending, timeout=None))]
    fn wait(
        &self,
        py: Python<'_>,
        pending: &Bound<'_, Pending>,
        timeout: Option<f64>,
    ) -> PyResult<Sample> {
        let pending = self.pending_of(pending)?;
        let timeout = crate::rpc::timeout(timeout)?;
        self.receive_within(py, pending, Some(timeout))?.ok_or_else(no_response)
    }

    /// Sends `request` and waits for its response (see `send` and `wait`).
    #[pyo3(signature = (request, timeout=None))]
    fn call(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Sample> {
        let timeout = crate::rpc::timeout(timeout)?;
        let pending = self.send(py, request)?;
        self.receive_within(py, pending.pending, Some(timeout))?.ok_or_else(no_response)
    }

    /// Gives the client slot back now. Refused while responses are held.
    fn close(&self) -> PyResult<()> {
        self.lender.close().map_err(|e| lend_error(e, "client", "responses"))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close()
    }
}

fn no_response() -> PyErr {
    TimedOut::new_err(
        "no response arrived before the timeout: the server is slow, stopped or gone; retry, \
         or wait longer",
    )
}
