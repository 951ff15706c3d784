//! The receiving end from Python: [`Subscriber`], whose [`Sample`]s are read-only NumPy views
//! over the payload in shared memory.

use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmlane::{RawSample, RawSubscriber, ReceiveError};

use crate::buffer::Exported;
use crate::dtype::frombuffer;
use crate::errors::{TimedOut, ToPyErr, lend_error};
use crate::lender::{Child, Held, Lender};
use crate::wait::{Strategy, sliced};

/// What a subscriber's lender holds: the facade's subscriber and its wait strategy.
#[derive(Debug)]
pub(crate) struct SubState {
    raw: RawSubscriber,
    strategy: RefCell<Strategy>,
}

/// The lender of a subscriber: its samples borrow it.
type SubLender = Lender<SubState, RawSample<'static>>;

/// What a receive gives before it becomes a `Sample`: the child and its bytes.
type Received = (Child<RawSample<'static>>, (usize, usize, usize));

/// A topic's receiving end. Any thread may use it, one at a time: a call while another
/// thread waits in `wait` or `receive(timeout=...)` raises `Busy`.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Subscriber {
    lender: Arc<SubLender>,
    dtype: Py<PyAny>,
}

impl Subscriber {
    pub(crate) fn new(raw: RawSubscriber, strategy: Strategy, dtype: Py<PyAny>) -> Self {
        let state = SubState { raw, strategy: RefCell::new(strategy) };
        Subscriber { lender: Arc::new(Lender::new(state)), dtype }
    }

    /// The lock of the subscriber, or `Busy`.
    fn hold(&self) -> PyResult<Held<'_, SubState, RawSample<'static>>> {
        self.lender.hold().map_err(|e| lend_error(e, "subscriber", "samples"))
    }

    /// One receive, waiting up to `wait` (none: not at all).
    fn receive_once(
        held: &Held<'_, SubState, RawSample<'static>>,
        wait: Option<std::time::Duration>,
    ) -> PyResult<Option<Received>> {
        let make = |state: &'static SubState| match wait {
            None => state.raw.receive(),
            Some(wait) => {
                let mut strategy = state.strategy.borrow_mut();
                match state.raw.receive_with(&mut *strategy, Some(wait)) {
                    Ok(sample) => Ok(Some(sample)),
                    Err(ReceiveError::TimedOut(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        let view = |sample: &mut RawSample<'static>| {
            let bytes: &[u8] = sample;
            (bytes.as_ptr() as usize, bytes.len(), sample.len())
        };
        // SAFETY: `make` keeps the subscriber only in the sample it returns.
        let got = unsafe { held.lend(make, view) };
        got.map_err(|e| lend_error(e, "subscriber", "samples"))?.map_err(|e| e.to_py())
    }

    /// Receives, waiting up to `timeout` (none: not at all) with the GIL released; the
    /// subscriber stays ours (others get `Busy`) until it returns.
    fn receive_within(
        &self,
        py: Python<'_>,
        timeout: Option<Option<std::time::Duration>>,
    ) -> PyResult<Option<Sample>> {
        let held = self.hold()?;
        let got = match timeout {
            None => Self::receive_once(&held, None)?,
            Some(timeout) => sliced(py, timeout, |slice| Self::receive_once(&held, Some(slice)))?,
        };
        drop(held);
        Ok(got.map(|received| self.sample(py, received)))
    }

    fn sample(&self, py: Python<'_>, (child, (ptr, len, elements)): Received) -> Sample {
        let owner = SampleOwner::Subscriber(Arc::clone(&self.lender));
        Sample::new(owner, child, (ptr, len, elements), self.dtype.clone_ref(py))
    }

    fn with<R>(&self, f: impl FnOnce(&SubState) -> R) -> PyResult<R> {
        self.lender.with(f).map_err(|e| lend_error(e, "subscriber", "samples"))
    }
}

#[pymethods]
impl Subscriber {
    /// The next sample, or None. Without a timeout it never blocks; with one (seconds) it
    /// waits up to that long with the GIL released.
    #[pyo3(signature = (timeout=None))]
    fn receive(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Sample>> {
        let timeout = crate::wait::timeout(timeout)?;
        self.receive_within(py, timeout.map(Some))
    }

    /// Waits for the next sample with the GIL released, for ever or up to `timeout` seconds
    /// (then raises `TimedOut`).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        let timeout = crate::wait::timeout(timeout)?;
        self.receive_within(py, Some(timeout))?.ok_or_else(|| {
            TimedOut::new_err(
                "no sample arrived before the timeout: the publisher is slow, stopped or gone; \
                 retry, or wait longer",
            )
        })
    }

    /// Samples dropped for this subscriber (its queue was full).
    #[getter]
    fn drops(&self) -> PyResult<u64> {
        self.with(|state| state.raw.drops())
    }

    /// Samples held (received, not yet released).
    #[getter]
    fn held(&self) -> PyResult<u32> {
        self.with(|state| state.raw.held())
    }

    /// Bytes of one element.
    #[getter]
    fn element_size(&self) -> PyResult<usize> {
        self.with(|state| state.raw.element_size())
    }

    /// The dtype of the samples' arrays.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.dtype.clone_ref(py)
    }

    /// Hands the blocks of released samples back to their publishers now (also done by the
    /// next receive).
    fn flush_returns(&self) -> PyResult<()> {
        self.with(|state| state.raw.flush_returns())
    }

    /// Gives the subscriber slot back now. Refused while samples are held.
    fn close(&self) -> PyResult<()> {
        self.lender.close().map_err(|e| lend_error(e, "subscriber", "samples"))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close()
    }

    fn __repr__(&self) -> String {
        format!("<shmlane.Subscriber, {} samples held>", self.lender.lent())
    }
}

/// Whose a sample is (the lender it goes back to).
#[derive(Debug)]
pub(crate) enum SampleOwner {
    /// A subscriber's.
    Subscriber(Arc<SubLender>),
    /// An rpc client's response.
    Client(Arc<crate::rpc::ClientLender>),
}

impl SampleOwner {
    fn dispose(&self, child: Child<RawSample<'static>>) {
        match self {
            SampleOwner::Subscriber(lender) => lender.dispose(child),
            SampleOwner::Client(lender) => lender.dispose(child),
        }
    }
}

/// A received sample: its bytes in shared memory, exported read-only (buffer protocol). The
/// block is held while the sample or any view over it lives, and goes back to its publisher
/// when both are gone, or on `release()`.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Sample {
    exported: Exported<RawSample<'static>>,
    owner: SampleOwner,
    elements: usize,
    dtype: Py<PyAny>,
}

impl Sample {
    /// A sample of `owner`'s: `child`, whose bytes are `len` at `ptr`, `elements` of `dtype`.
    pub(crate) fn new(
        owner: SampleOwner,
        child: Child<RawSample<'static>>,
        (ptr, len, elements): (usize, usize, usize),
        dtype: Py<PyAny>,
    ) -> Self {
        Sample { exported: Exported::new(child, ptr, len), owner, elements, dtype }
    }
}

#[pymethods]
impl Sample {
    /// A read-only NumPy array over the sample in place (no copy): `len(sample)` elements of
    /// the topic's dtype. It keeps the sample held while it lives.
    #[getter]
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        frombuffer(slf.as_any(), slf.get().dtype.bind(slf.py()))
    }

    /// `numpy.asarray(sample)`: the array (a copy only if asked for).
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

    /// The dtype of `array`.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.dtype.clone_ref(py)
    }

    /// Whether it was released.
    #[getter]
    fn released(&self) -> bool {
        !self.exported.held()
    }

    /// A copy of its bytes.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        match self.exported.to_vec() {
            Some(bytes) => Ok(PyBytes::new(py, &bytes)),
            None => Err(PyValueError::new_err("this sample was released")),
        }
    }

    /// Gives the block back now. Refused while arrays or memoryviews over it are alive.
    fn release(&self) -> PyResult<()> {
        if let Some(child) = self.exported.release("sample")? {
            self.owner.dispose(child);
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
        // SAFETY: Python's `view`; `slf` holds the sample.
        unsafe { slf.get().exported.export(owner, view, flags, true, "this sample was released") }
    }

    /// # Safety
    ///
    /// Called by Python for a view `__getbuffer__` filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exported.unexport();
    }

    fn __repr__(&self) -> String {
        let state = if self.exported.held() { "held" } else { "released" };
        format!("<shmlane.Sample of {} elements, {state}>", self.elements)
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        if let Some(child) = self.exported.state().child.take() {
            self.owner.dispose(child);
        }
    }
}
