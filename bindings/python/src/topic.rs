//! Topics from Python: [`Topic`], its [`Publisher`] whose loans are writable NumPy arrays over
//! payload blocks ([`Loan`]), and its subscriber (in `subscriber`).

use std::ffi::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMemoryView};
use shmlane::{Overflow, RawLoan, RawPublisher, RawTopic, TopicConfig};

use crate::buffer::Exported;
use crate::dtype::{dtype_of, frombuffer};
use crate::errors::{ToPyErr, lend_error};
use crate::lender::{LendError, Lender};
use crate::subscriber::Subscriber;
use crate::wait::{strategy_named, timeout};

/// A publish/subscribe topic, opened by `Node.topic`.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Topic {
    topic: RawTopic,
    /// The dtype its loans and samples are seen as.
    dtype: Py<PyAny>,
}

impl Topic {
    pub(crate) fn new(topic: RawTopic, dtype: Py<PyAny>) -> Self {
        Topic { topic, dtype }
    }
}

#[pymethods]
impl Topic {
    /// The service name.
    #[getter]
    fn service(&self) -> &str {
        self.topic.service()
    }

    /// The payload type's recorded name.
    #[getter]
    fn type_name(&self) -> &str {
        &self.topic.type_spec().name
    }

    /// Bytes of one element.
    #[getter]
    fn size(&self) -> u64 {
        self.topic.type_spec().size
    }

    /// Alignment of one element.
    #[getter]
    fn align(&self) -> u64 {
        self.topic.type_spec().align
    }

    /// The payload type's layout version.
    #[getter]
    fn version(&self) -> u64 {
        self.topic.type_spec().version
    }

    /// The dtype of the arrays over loans and samples.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.dtype.clone_ref(py)
    }

    /// The settings the topic was created with.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, &self.topic.config())
    }

    /// Claims a publisher slot.
    #[pyo3(signature = (block_timeout=None))]
    fn publisher(&self, py: Python<'_>, block_timeout: Option<f64>) -> PyResult<Publisher> {
        let block_timeout = timeout(block_timeout)?;
        let raw = self.topic.publisher().map_err(|e| e.to_py())?;
        if let Some(t) = block_timeout {
            raw.set_block_timeout(t);
        }
        let blocking = self.topic.config().overflow == Overflow::Block;
        Ok(Publisher {
            lender: Arc::new(Lender::new(raw)),
            loans: Arc::new(AtomicUsize::new(0)),
            dtype: self.dtype.clone_ref(py),
            blocking,
        })
    }

    /// Claims a subscriber slot.
    #[pyo3(signature = (strategy="blocking"))]
    fn subscriber(&self, py: Python<'_>, strategy: &str) -> PyResult<Subscriber> {
        let strategy = strategy_named(strategy)?;
        let raw = self.topic.subscriber().map_err(|e| e.to_py())?;
        Ok(Subscriber::new(raw, strategy, self.dtype.clone_ref(py)))
    }

    fn __repr__(&self) -> String {
        format!("<shmlane.Topic {:?} of {}>", self.topic.service(), self.topic.type_spec())
    }
}

/// A topic's settings as a dict.
fn config_dict<'py>(py: Python<'py>, config: &TopicConfig) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("max_publishers", config.max_publishers)?;
    dict.set_item("max_subscribers", config.max_subscribers)?;
    dict.set_item("subscriber_capacity", config.subscriber_capacity)?;
    dict.set_item("max_held", config.max_held)?;
    dict.set_item("max_loans", config.max_loans)?;
    dict.set_item("max_slice_len", config.max_slice_len)?;
    dict.set_item("history", config.history)?;
    let overflow = match config.overflow {
        Overflow::DropOldest => "drop_oldest",
        Overflow::Block => "block",
        Overflow::Reject => "reject",
        _ => "unknown",
    };
    dict.set_item("overflow", overflow)?;
    Ok(dict)
}

/// An overflow policy by name.
pub(crate) fn overflow_named(name: &str) -> PyResult<Overflow> {
    Ok(match name {
        "drop_oldest" => Overflow::DropOldest,
        "block" => Overflow::Block,
        "reject" => Overflow::Reject,
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown overflow policy {name:?}: use 'drop_oldest', 'block' or 'reject'"
            )));
        }
    })
}

/// The lender of a publisher: its loans borrow it.
type PubLender = Lender<RawPublisher, RawLoan<'static>>;

/// A topic's sending end. Loans are NumPy arrays written in place, then sent; any thread may
/// use it, one at a time.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Publisher {
    lender: Arc<PubLender>,
    /// `Loan` objects alive (sent or not): their arrays point into our payload segments, so
    /// we are not closed while one exists.
    loans: Arc<AtomicUsize>,
    dtype: Py<PyAny>,
    /// The topic's policy is `block`: a send may wait, with the GIL released.
    blocking: bool,
}

#[pymethods]
impl Publisher {
    /// Loans room for `n` elements in shared memory: a writable NumPy array of `n` elements of
    /// the topic's dtype (for a topic of raw bytes, `n` rows of `size` bytes) to fill, then
    /// `send`. Dropped without a send (with every view of it), the loan goes back.
    #[pyo3(signature = (n=1))]
    fn loan<'py>(slf: &Bound<'py, Self>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        let held = this.lender.hold().map_err(|e| lend_error(e, "publisher", "loans"))?;
        // SAFETY: the closure keeps the publisher only in the loan it returns.
        let lent = unsafe {
            held.lend(
                |publisher| publisher.loan(n).map(Some),
                |loan| {
                    let bytes: &mut [u8] = loan;
                    (bytes.as_mut_ptr() as usize, bytes.len())
                },
            )
        };
        drop(held);
        let lent = lent.map_err(|e| lend_error(e, "publisher", "loans"))?;
        let (child, (ptr, len)) = match lent {
            Ok(Some(lent)) => lent,
            Ok(None) => return Err(crate::errors::Error::new_err("the publisher made no loan")),
            Err(e) => return Err(e.to_py()),
        };
        // Relaxed: a count; the `Loan`'s `Arc` of the lender keeps what it counts alive.
        this.loans.fetch_add(1, Ordering::Relaxed);
        let loan = Loan {
            exported: Exported::new(child, ptr, len),
            lender: Arc::clone(&this.lender),
            loans: Arc::clone(&this.loans),
            elements: n,
        };
        let loan = Bound::new(py, loan)?;
        frombuffer(loan.as_any(), this.dtype.bind(py))
    }

    /// Publishes a loan (the array `loan` returned, a view of it, or the `Loan` itself) to
    /// every subscriber; returns how many it was queued for. The array is made read-only: the
    /// block is the subscribers' now.
    fn send(&self, py: Python<'_>, loan: &Bound<'_, PyAny>) -> PyResult<usize> {
        let Some(found) = find_loan(loan)? else {
            return Err(PyTypeError::new_err(
                "send takes an array from this publisher's loan(); use send_copy for other data",
            ));
        };
        let found = found.get();
        if !Arc::ptr_eq(&found.lender, &self.lender) {
            return Err(PyValueError::new_err("this loan belongs to another publisher"));
        }
        let Some(child) = found.exported.state().child.take() else {
            return Err(PyValueError::new_err("this loan was sent already"));
        };
        let held = match self.lender.hold() {
            Ok(held) => held,
            Err(e) => {
                found.exported.state().child = Some(child);
                return Err(lend_error(e, "publisher", "loans"));
            }
        };
        let send = |child| held.consume(child, |publisher, loan| publisher.send(loan));
        let sent = if self.blocking { py.detach(|| send(child)) } else { send(child) };
        drop(held);
        let sent = match sent {
            Ok((sent, shell)) => {
                found.exported.state().shell = Some(shell);
                sent
            }
            Err((e, child)) => {
                found.exported.state().child = Some(child);
                return Err(lend_error(e, "publisher", "loans"));
            }
        };
        if loan.hasattr("setflags")? {
            let kwargs = PyDict::new(py);
            kwargs.set_item("write", false)?;
            loan.call_method("setflags", (), Some(&kwargs))?;
        }
        sent.map_err(|e| e.to_py())
    }

    /// Sends a copy of `data` (bytes, or any C-contiguous buffer: an array of the topic's
    /// dtype) as whole elements; returns how many subscribers it was queued for.
    fn send_copy(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let buffer = contiguous(data, self.dtype.bind(py))?;
        let bytes = SendBytes::of(&buffer);
        let sent = if self.blocking {
            py.detach(|| self.lender.with(|publisher| publisher.send_copy(bytes.get())))
        } else {
            self.lender.with(|publisher| publisher.send_copy(bytes.get()))
        };
        sent.map_err(|e| lend_error(e, "publisher", "loans"))?.map_err(|e| e.to_py())
    }

    /// Bytes of one element.
    #[getter]
    fn element_size(&self) -> PyResult<usize> {
        self.with(RawPublisher::element_size)
    }

    /// The dtype of the loans' arrays.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.dtype.clone_ref(py)
    }

    /// Subscribers served.
    fn subscribers(&self) -> PyResult<usize> {
        self.with(RawPublisher::subscribers)
    }

    /// This publisher's payload blocks by state: `total`, `free`, `loaned`, `held` (by
    /// subscribers) and `history`.
    fn block_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let counts = self.with(RawPublisher::block_counts)?;
        let dict = PyDict::new(py);
        dict.set_item("total", counts.total)?;
        dict.set_item("free", counts.free)?;
        dict.set_item("loaned", counts.loaned)?;
        dict.set_item("held", counts.held)?;
        dict.set_item("history", counts.history)?;
        Ok(dict)
    }

    /// Gives the publisher slot back now. Refused while loans (or arrays over them, sent or
    /// not) are alive.
    fn close(&self) -> PyResult<()> {
        // Relaxed: a count (see `loans`).
        let loans = self.loans.load(Ordering::Relaxed);
        if loans > 0 {
            return Err(lend_error(LendError::Lent(loans), "publisher", "loans"));
        }
        self.lender.close().map_err(|e| lend_error(e, "publisher", "loans"))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.close()
    }

    fn __repr__(&self) -> String {
        format!("<shmlane.Publisher, {} loans out>", self.lender.lent())
    }
}

impl Publisher {
    fn with<R>(&self, f: impl FnOnce(&RawPublisher) -> R) -> PyResult<R> {
        self.lender.with(f).map_err(|e| lend_error(e, "publisher", "loans"))
    }
}

/// `data`'s buffer (bytes, or any C-contiguous buffer: an array of `dtype`, or of any dtype
/// if `dtype` is one of bytes), exported until it drops.
pub(crate) fn contiguous(
    data: &Bound<'_, PyAny>,
    dtype: &Bound<'_, PyAny>,
) -> PyResult<Contiguous> {
    if data.hasattr("dtype")? && data.hasattr("__array_interface__")? {
        let given = dtype_of(&data.getattr("dtype")?)?;
        // An element of a sub-array dtype ((f32, 2)) is a row of its base dtype; a payload
        // seen as bytes takes any array.
        let element = dtype.getattr("base")?;
        let uint8 = dtype_of(&pyo3::types::PyString::new(data.py(), "uint8"))?;
        if !element.eq(&uint8)? && !given.eq(&element)? {
            return Err(PyTypeError::new_err(format!(
                "an array of dtype {given} where the payload's dtype is {dtype}"
            )));
        }
    }
    let buffer = PyUntypedBuffer::get(data)?;
    if !buffer.is_c_contiguous() {
        return Err(PyBufferError::new_err(
            "a C-contiguous buffer is needed (np.ascontiguousarray)",
        ));
    }
    Ok(Contiguous(buffer))
}

/// A C-contiguous buffer, exported while this lives.
#[derive(Debug)]
pub(crate) struct Contiguous(PyUntypedBuffer);

/// The bytes of an exported buffer, carried into a call with the GIL released.
#[derive(Clone, Copy)]
pub(crate) struct SendBytes<'a>(&'a [u8]);

// SAFETY: the bytes stay exported (alive, unmoved) while the `PyUntypedBuffer` they borrow
// lives, whichever thread reads them; they are read only (a `&[u8]`), and while the GIL is
// released no Python code of ours writes them (a writer in another Python thread would be a
// race of that program's own making, as for any extension that reads a buffer without the GIL).
unsafe impl Send for SendBytes<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for SendBytes<'_> {}

impl<'a> SendBytes<'a> {
    /// The bytes of `buffer`.
    pub(crate) fn of(Contiguous(buffer): &'a Contiguous) -> Self {
        // SAFETY: the buffer is exported (kept alive and unmoved) for as long as `buffer`
        // lives, which the returned borrow cannot outlast; it is C-contiguous (a `Contiguous`
        // is made only by `contiguous`, which checks), so it is `len_bytes` bytes at `buf_ptr`.
        SendBytes(unsafe {
            std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes())
        })
    }

    /// The bytes.
    pub(crate) fn get(self) -> &'a [u8] {
        self.0
    }
}

/// The loan behind `obj`: a `Loan`, or an array over one (through `base` and
/// `memoryview.obj`).
fn find_loan<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, Loan>>> {
    let mut current = obj.clone();
    for _ in 0..64 {
        if let Ok(loan) = current.cast::<Loan>() {
            return Ok(Some(loan.clone()));
        }
        let next = if let Ok(view) = current.cast::<PyMemoryView>() {
            view.getattr("obj")?
        } else if current.hasattr("base")? {
            current.getattr("base")?
        } else {
            return Ok(None);
        };
        if next.is_none() {
            return Ok(None);
        }
        current = next;
    }
    Ok(None)
}

/// Room for elements on loan, exported as a writable buffer: `Publisher.loan` returns a NumPy
/// array over it. Dropped unsent (with every array over it), the block goes back.
#[pyclass(module = "shmlane", frozen)]
#[derive(Debug)]
pub struct Loan {
    exported: Exported<RawLoan<'static>>,
    lender: Arc<PubLender>,
    loans: Arc<AtomicUsize>,
    elements: usize,
}

#[pymethods]
impl Loan {
    /// Elements loaned.
    fn __len__(&self) -> usize {
        self.elements
    }

    /// Bytes loaned.
    #[getter]
    fn nbytes(&self) -> usize {
        self.exported.len()
    }

    /// Whether it was sent.
    #[getter]
    fn sent(&self) -> bool {
        !self.exported.held()
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
        // SAFETY: Python's `view`; `slf` holds the loan.
        unsafe { slf.get().exported.export(owner, view, flags, false, "this loan was sent") }
    }

    /// # Safety
    ///
    /// Called by Python for a view `__getbuffer__` filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exported.unexport();
    }

    fn __repr__(&self) -> String {
        let state = if self.exported.held() { "on loan" } else { "sent" };
        format!("<shmlane.Loan of {} elements, {state}>", self.elements)
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(child) = self.exported.state().child.take() {
            self.lender.dispose(child);
        }
        // Relaxed: a count (see `Publisher::loans`).
        self.loans.fetch_sub(1, Ordering::Relaxed);
    }
}
