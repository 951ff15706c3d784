//! The Python exceptions: `shmlane.Error` and its subclasses, each carrying the facade's
//! message (which says what to do), and the conversions from the facade's error enums.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::{PyErr, create_exception};
use shmlane::{ConnectError, NodeError, NotifyError, PublishError, ReceiveError, TopicError};
use shmlane_segment::{CreateError, OpenError};

use crate::lender::LendError;

create_exception!(shmlane, Error, PyException, "Base class of every shmlane error.");
create_exception!(
    shmlane,
    TypeMismatch,
    Error,
    "The service records another payload type (name, size, alignment or version)."
);
create_exception!(
    shmlane,
    TypeRequired,
    Error,
    "The topic does not exist and cannot be created without its payload type."
);
create_exception!(shmlane, NotFound, Error, "The service does not exist (open).");
create_exception!(shmlane, AlreadyExists, Error, "The service exists already (create).");
create_exception!(shmlane, InvalidConfig, Error, "A name or a setting is out of range.");
create_exception!(shmlane, Corrupt, Error, "A service's shared memory failed validation.");
create_exception!(shmlane, NoFreeSlot, Error, "Every slot of that kind is held by a live process.");
create_exception!(shmlane, OutOfBlocks, Error, "Every payload block is loaned or held.");
create_exception!(
    shmlane,
    SubscriberFull,
    Error,
    "A subscriber's queue is full (overflow policy 'reject', or 'block' past its timeout)."
);
create_exception!(shmlane, TimedOut, Error, "Nothing arrived before the timeout.");
create_exception!(shmlane, TooManyHeld, Error, "The subscriber holds max_held samples already.");
create_exception!(
    shmlane,
    Busy,
    Error,
    "Another thread is using this subscriber or publisher (blocked in a wait or a send)."
);
create_exception!(shmlane, Closed, Error, "The handle was closed.");
create_exception!(
    shmlane,
    InUse,
    Error,
    "The handle cannot be closed: samples or loans it lent are still alive."
);

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("TypeMismatch", py.get_type::<TypeMismatch>())?;
    m.add("TypeRequired", py.get_type::<TypeRequired>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("AlreadyExists", py.get_type::<AlreadyExists>())?;
    m.add("InvalidConfig", py.get_type::<InvalidConfig>())?;
    m.add("Corrupt", py.get_type::<Corrupt>())?;
    m.add("NoFreeSlot", py.get_type::<NoFreeSlot>())?;
    m.add("OutOfBlocks", py.get_type::<OutOfBlocks>())?;
    m.add("SubscriberFull", py.get_type::<SubscriberFull>())?;
    m.add("TimedOut", py.get_type::<TimedOut>())?;
    m.add("TooManyHeld", py.get_type::<TooManyHeld>())?;
    m.add("Busy", py.get_type::<Busy>())?;
    m.add("Closed", py.get_type::<Closed>())?;
    m.add("InUse", py.get_type::<InUse>())?;
    Ok(())
}

/// A facade error as the Python exception of its kind.
pub(crate) trait ToPyErr {
    /// The exception.
    fn to_py(&self) -> PyErr;
}

impl ToPyErr for NodeError {
    fn to_py(&self) -> PyErr {
        match self {
            NodeError::InvalidName { .. } => InvalidConfig::new_err(self.to_string()),
            _ => Error::new_err(self.to_string()),
        }
    }
}

impl ToPyErr for TopicError {
    fn to_py(&self) -> PyErr {
        let message = self.to_string();
        match self {
            TopicError::TypeMismatch { .. } => TypeMismatch::new_err(message),
            TopicError::TypeRequired { .. } => TypeRequired::new_err(message),
            TopicError::Name(e) => e.to_py(),
            TopicError::InvalidConfig(_) => InvalidConfig::new_err(message),
            TopicError::Corrupt(_) | TopicError::Queue(_) => Corrupt::new_err(message),
            TopicError::Create(CreateError::AlreadyExists { .. }) => {
                AlreadyExists::new_err(message)
            }
            TopicError::Open(OpenError::NotFound { .. }) => NotFound::new_err(message),
            _ => Error::new_err(message),
        }
    }
}

impl ToPyErr for ConnectError {
    fn to_py(&self) -> PyErr {
        match self {
            ConnectError::NoFreeSlot { .. } => NoFreeSlot::new_err(self.to_string()),
            ConnectError::Queue(_) | ConnectError::CorruptQueue(_) => {
                Corrupt::new_err(self.to_string())
            }
            _ => Error::new_err(self.to_string()),
        }
    }
}

impl ToPyErr for PublishError {
    fn to_py(&self) -> PyErr {
        let message = self.to_string();
        match self {
            PublishError::OutOfBlocks => OutOfBlocks::new_err(message),
            PublishError::SubscriberFull | PublishError::Timeout(_) => {
                SubscriberFull::new_err(message)
            }
            PublishError::BadByteLen { .. } | PublishError::BadSliceLen { .. } => {
                pyo3::exceptions::PyValueError::new_err(message)
            }
            _ => Error::new_err(message),
        }
    }
}

impl ToPyErr for ReceiveError {
    fn to_py(&self) -> PyErr {
        match self {
            ReceiveError::TooManyHeld(_) => TooManyHeld::new_err(self.to_string()),
            ReceiveError::TimedOut(_) => TimedOut::new_err(self.to_string()),
            _ => Error::new_err(self.to_string()),
        }
    }
}

impl ToPyErr for NotifyError {
    fn to_py(&self) -> PyErr {
        pyo3::exceptions::PyValueError::new_err(self.to_string())
    }
}

impl ToPyErr for shmlane::discovery::DiscoveryError {
    fn to_py(&self) -> PyErr {
        Error::new_err(self.to_string())
    }
}

/// A [`LendError`] of a handle called `what` ("subscriber", "publisher"), whose children are
/// `children` ("samples", "loans").
pub(crate) fn lend_error(error: LendError, what: &str, children: &str) -> PyErr {
    match error {
        LendError::Busy => Busy::new_err(format!(
            "this {what} is in use by another thread (blocked in a wait or a send): use one \
             {what} per thread, or wait for that call to return"
        )),
        LendError::Closed => Closed::new_err(format!("this {what} was closed")),
        LendError::Lent(n) => InUse::new_err(format!(
            "this {what} cannot be closed while {n} of its {children} are alive: release them \
             and delete the NumPy arrays over them first"
        )),
    }
}
