//! The buffer protocol for samples and loans: their bytes in shared memory, exported to
//! `memoryview` and NumPy without a copy, with a count of the views still open.

use std::ffi::c_int;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::{PyErr, ffi};

use crate::lender::{Child, Shell};

/// A sample's or loan's child and the views Python has over its bytes.
#[derive(Debug)]
pub(crate) struct Exported<C> {
    state: Mutex<ExportState<C>>,
    /// The bytes' address and length (fixed while the child is held).
    ptr: usize,
    len: usize,
}

#[derive(Debug)]
pub(crate) struct ExportState<C> {
    /// `None` once released or sent.
    pub(crate) child: Option<Child<C>>,
    /// Once sent, the room the child was in: views over an inline loan still point into it.
    pub(crate) shell: Option<Shell<C>>,
    /// Buffer views open over the bytes.
    pub(crate) exports: usize,
}

impl<C> Exported<C> {
    /// `child`, whose bytes are `len` at `ptr`.
    pub(crate) fn new(child: Child<C>, ptr: usize, len: usize) -> Self {
        Exported {
            state: Mutex::new(ExportState { child: Some(child), shell: None, exports: 0 }),
            ptr,
            len,
        }
    }

    /// Bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The state, locked (briefly: never held across a wait or a release of the GIL).
    pub(crate) fn state(&self) -> MutexGuard<'_, ExportState<C>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fills `view` for `owner` (the Python object that holds this), read-only or writable.
    /// Refused once the child is gone (`gone` says why).
    ///
    /// # Safety
    ///
    /// `view` is the `Py_buffer` that `__getbuffer__` was given, and `owner` holds `self`.
    pub(crate) unsafe fn export(
        &self,
        owner: &Bound<'_, PyAny>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
        readonly: bool,
        gone: &str,
    ) -> PyResult<()> {
        let mut state = self.state();
        if state.child.is_none() {
            return Err(PyBufferError::new_err(gone.to_owned()));
        }
        // SAFETY: `view` is valid (the caller's promise). The bytes stay valid while views are
        // open: `exports` counts them, releasing the child is refused while it is non-zero
        // (`release`), and the view holds a reference to `owner`, so the child cannot be
        // dropped with it either. A loan consumed by a send leaves its room (`shell`) with us,
        // and its payload block stays mapped while the publisher lives (which the loan's
        // object keeps). A loan's bytes are ours alone to write until it is sent; a sample's
        // are exported read-only (FillInfo refuses a writable request).
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                owner.as_ptr(),
                self.ptr as *mut std::ffi::c_void,
                self.len as ffi::Py_ssize_t,
                c_int::from(readonly),
                flags,
            )
        };
        if status < 0 {
            return Err(PyErr::fetch(owner.py()));
        }
        state.exports += 1;
        Ok(())
    }

    /// A view was released.
    pub(crate) fn unexport(&self) {
        let mut state = self.state();
        state.exports = state.exports.saturating_sub(1);
    }

    /// Takes the child out, unless views are open over its bytes (`what` names it).
    pub(crate) fn release(&self, what: &str) -> PyResult<Option<Child<C>>> {
        let mut state = self.state();
        if state.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "this {what} has {} open views (NumPy arrays or memoryviews over its bytes): \
                 delete them before releasing it",
                state.exports
            )));
        }
        Ok(state.child.take())
    }

    /// Whether the child is still held.
    pub(crate) fn held(&self) -> bool {
        self.state().child.is_some()
    }

    /// A copy of the bytes (while the child is held).
    pub(crate) fn to_vec(&self) -> Option<Vec<u8>> {
        let state = self.state();
        state.child.as_ref()?;
        // SAFETY: while the child is held (we hold the state lock, so it stays held) its bytes
        // are `len` valid bytes at `ptr` in a live mapping; any bytes are valid `u8`s.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) };
        Some(bytes.to_vec())
    }
}
