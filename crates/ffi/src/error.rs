//! The error codes, the thread-local message of the last failure, and [`guard`], which every
//! entry point runs its body in so that no panic crosses the boundary.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use shmlane::discovery::DiscoveryError;
use shmlane::{
    CallError, ConnectError, NodeError, NotifyError, PublishError, ReceiveError, TopicError,
};
use shmlane_segment::{CreateError, OpenError};

/// What a call of this library returns: `SHMLANE_OK` (0), or why it failed, with a message
/// from `shmlane_last_error_message`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum shmlane_error {
    /// Success.
    SHMLANE_OK = 0,
    /// A pointer argument that may not be NULL was NULL.
    SHMLANE_ERROR_NULL_ARGUMENT = 1,
    /// An argument is out of its range: a string that is not UTF-8, an unknown enum value, a
    /// NULL buffer with a non-zero length.
    SHMLANE_ERROR_INVALID_ARGUMENT = 2,
    /// A handle is not one of the kind the function takes. A destroyed handle is usually
    /// caught too (its magic word is cleared), but using one is undefined behaviour.
    SHMLANE_ERROR_INVALID_HANDLE = 3,
    /// A sample, loan or request given to a handle it did not come from.
    SHMLANE_ERROR_FOREIGN = 4,
    /// A sample, loan or request already released, sent or dropped (or one never filled in).
    SHMLANE_ERROR_RELEASED = 5,
    /// A handle cannot be destroyed while samples or loans it lent out are not given back.
    SHMLANE_ERROR_BUSY = 6,
    /// A node, namespace or service name is not 1 to 64 ASCII letters, digits, '-' or '_'.
    SHMLANE_ERROR_INVALID_NAME = 7,
    /// A setting or a type layout is out of range.
    SHMLANE_ERROR_INVALID_CONFIG = 8,
    /// The service carries another payload type (the message names both).
    SHMLANE_ERROR_TYPE_MISMATCH = 9,
    /// The service does not exist and cannot be created without its payload type.
    SHMLANE_ERROR_TYPE_REQUIRED = 10,
    /// A create found the service existing.
    SHMLANE_ERROR_ALREADY_EXISTS = 11,
    /// An open found no such service.
    SHMLANE_ERROR_NOT_FOUND = 12,
    /// The service's shared memory is not valid (remove it with `shmlane clean`), or was
    /// made by another shmlane version.
    SHMLANE_ERROR_CORRUPT = 13,
    /// Every publisher, subscriber, listener, server or client slot is held by a live process.
    SHMLANE_ERROR_NO_FREE_SLOT = 14,
    /// Every payload block is loaned or held (or `max_loans` loans are out).
    SHMLANE_ERROR_OUT_OF_BLOCKS = 15,
    /// A loan of 0 or more than 2^32 - 1 elements, or bytes that are not whole elements.
    SHMLANE_ERROR_BAD_LENGTH = 16,
    /// The reject policy refused a send: a subscriber's queue is full.
    SHMLANE_ERROR_SUBSCRIBER_FULL = 17,
    /// A wait ended at its timeout (a receive, a listener, a response, or the block policy).
    SHMLANE_ERROR_TIMEOUT = 18,
    /// The subscriber holds as many samples as the topic allows (`max_held`).
    SHMLANE_ERROR_TOO_MANY_HELD = 19,
    /// An event id at or beyond the service's `max_event_id`.
    SHMLANE_ERROR_BAD_EVENT_ID = 20,
    /// The system refused (permissions, no space, no memory, a failed system call).
    SHMLANE_ERROR_SYSTEM = 21,
    /// shmlane panicked (a bug: please report it with the message); the handle in use may be
    /// left inconsistent and should be destroyed.
    SHMLANE_ERROR_PANIC = 22,
}

use shmlane_error::*;

/// A failed call: its code and message.
#[derive(Debug)]
pub(crate) struct Failure {
    code: shmlane_error,
    message: String,
}

impl Failure {
    pub(crate) fn new(code: shmlane_error, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    /// A NULL pointer given for `what`.
    pub(crate) fn null(what: &str) -> Self {
        Failure::new(SHMLANE_ERROR_NULL_ARGUMENT, format!("{what} is NULL"))
    }

    /// Stores the message as this thread's last and returns the code.
    fn record(self) -> shmlane_error {
        let message = CString::new(self.message.replace('\0', "\\0")).unwrap_or_default();
        // `try_with`: during thread teardown the slot may be gone; the code still goes back.
        let _ = LAST_ERROR.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = message;
            }
        });
        self.code
    }
}

thread_local! {
    /// The message of the last call on this thread that failed.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs an entry point's body: a panic becomes `SHMLANE_ERROR_PANIC`, a failure its code, each
/// with its message stored as this thread's last.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> shmlane_error {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SHMLANE_OK,
        Ok(Err(failure)) => failure.record(),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let message = format!(
                "shmlane panicked ({what}): a bug, please report it; destroy the handle that was \
                 in use"
            );
            Failure::new(SHMLANE_ERROR_PANIC, message).record()
        }
    }
}

/// The message of the most recent call on this thread that failed, NUL-terminated (empty if
/// none has failed). Valid until the next call of this library on this thread; copy it to
/// keep it. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn shmlane_last_error_message() -> *const c_char {
    static EMPTY: &std::ffi::CStr = c"";
    let message = catch_unwind(|| {
        LAST_ERROR.try_with(|last| last.try_borrow().map(|m| m.as_ptr()).ok()).ok().flatten()
    });
    message.ok().flatten().unwrap_or(EMPTY.as_ptr())
}

/// The name of an error code ("SHMLANE_ERROR_TIMEOUT"), a static string; "SHMLANE_UNKNOWN"
/// for a number that is no code.
#[unsafe(no_mangle)]
pub extern "C" fn shmlane_error_name(code: c_int) -> *const c_char {
    let name = match code {
        0 => c"SHMLANE_OK",
        1 => c"SHMLANE_ERROR_NULL_ARGUMENT",
        2 => c"SHMLANE_ERROR_INVALID_ARGUMENT",
        3 => c"SHMLANE_ERROR_INVALID_HANDLE",
        4 => c"SHMLANE_ERROR_FOREIGN",
        5 => c"SHMLANE_ERROR_RELEASED",
        6 => c"SHMLANE_ERROR_BUSY",
        7 => c"SHMLANE_ERROR_INVALID_NAME",
        8 => c"SHMLANE_ERROR_INVALID_CONFIG",
        9 => c"SHMLANE_ERROR_TYPE_MISMATCH",
        10 => c"SHMLANE_ERROR_TYPE_REQUIRED",
        11 => c"SHMLANE_ERROR_ALREADY_EXISTS",
        12 => c"SHMLANE_ERROR_NOT_FOUND",
        13 => c"SHMLANE_ERROR_CORRUPT",
        14 => c"SHMLANE_ERROR_NO_FREE_SLOT",
        15 => c"SHMLANE_ERROR_OUT_OF_BLOCKS",
        16 => c"SHMLANE_ERROR_BAD_LENGTH",
        17 => c"SHMLANE_ERROR_SUBSCRIBER_FULL",
        18 => c"SHMLANE_ERROR_TIMEOUT",
        19 => c"SHMLANE_ERROR_TOO_MANY_HELD",
        20 => c"SHMLANE_ERROR_BAD_EVENT_ID",
        21 => c"SHMLANE_ERROR_SYSTEM",
        22 => c"SHMLANE_ERROR_PANIC",
        _ => c"SHMLANE_UNKNOWN",
    };
    name.as_ptr()
}

impl From<NodeError> for Failure {
    fn from(error: NodeError) -> Self {
        let code = match error {
            NodeError::InvalidName { .. } => SHMLANE_ERROR_INVALID_NAME,
            _ => SHMLANE_ERROR_SYSTEM,
        };
        Failure::new(code, error.to_string())
    }
}

/// The code of a segment that could not be opened.
fn open_code(error: &OpenError) -> shmlane_error {
    match error {
        OpenError::NotFound { .. } => SHMLANE_ERROR_NOT_FOUND,
        OpenError::InvalidName(_) => SHMLANE_ERROR_INVALID_NAME,
        OpenError::PermissionDenied { .. }
        | OpenError::InitTimeout { .. }
        | OpenError::Unpublished { .. }
        | OpenError::Io { .. } => SHMLANE_ERROR_SYSTEM,
        _ => SHMLANE_ERROR_CORRUPT,
    }
}

impl From<TopicError> for Failure {
    fn from(error: TopicError) -> Self {
        let code = match &error {
            TopicError::Name(NodeError::InvalidName { .. }) => SHMLANE_ERROR_INVALID_NAME,
            TopicError::InvalidConfig(_) => SHMLANE_ERROR_INVALID_CONFIG,
            TopicError::TypeMismatch { .. } => SHMLANE_ERROR_TYPE_MISMATCH,
            TopicError::TypeRequired { .. } => SHMLANE_ERROR_TYPE_REQUIRED,
            TopicError::Create(CreateError::AlreadyExists { .. }) => SHMLANE_ERROR_ALREADY_EXISTS,
            TopicError::Create(CreateError::InvalidName(_)) => SHMLANE_ERROR_INVALID_NAME,
            TopicError::Create(CreateError::Existing(open)) => open_code(open),
            TopicError::Open(open) => open_code(open),
            TopicError::Corrupt(_) | TopicError::Queue(_) | TopicError::Offset(_) => {
                SHMLANE_ERROR_CORRUPT
            }
            _ => SHMLANE_ERROR_SYSTEM,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<ConnectError> for Failure {
    fn from(error: ConnectError) -> Self {
        let code = match error {
            ConnectError::NoFreeSlot { .. } => SHMLANE_ERROR_NO_FREE_SLOT,
            ConnectError::Create(_) => SHMLANE_ERROR_SYSTEM,
            _ => SHMLANE_ERROR_CORRUPT,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<PublishError> for Failure {
    fn from(error: PublishError) -> Self {
        let code = match error {
            PublishError::OutOfBlocks => SHMLANE_ERROR_OUT_OF_BLOCKS,
            PublishError::BadByteLen { .. } | PublishError::BadSliceLen { .. } => {
                SHMLANE_ERROR_BAD_LENGTH
            }
            PublishError::SubscriberFull => SHMLANE_ERROR_SUBSCRIBER_FULL,
            PublishError::Timeout(_) => SHMLANE_ERROR_TIMEOUT,
            _ => SHMLANE_ERROR_SYSTEM,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<ReceiveError> for Failure {
    fn from(error: ReceiveError) -> Self {
        let code = match error {
            ReceiveError::TooManyHeld(_) => SHMLANE_ERROR_TOO_MANY_HELD,
            ReceiveError::TimedOut(_) => SHMLANE_ERROR_TIMEOUT,
            _ => SHMLANE_ERROR_SYSTEM,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Send(error) => Failure::from(error),
            CallError::Receive(error) => Failure::from(error),
            other => Failure::new(SHMLANE_ERROR_SYSTEM, other.to_string()),
        }
    }
}

impl From<NotifyError> for Failure {
    fn from(error: NotifyError) -> Self {
        let code = match error {
            NotifyError::BadEventId { .. } => SHMLANE_ERROR_BAD_EVENT_ID,
            _ => SHMLANE_ERROR_SYSTEM,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<DiscoveryError> for Failure {
    fn from(error: DiscoveryError) -> Self {
        Failure::new(SHMLANE_ERROR_SYSTEM, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last_message() -> String {
        // SAFETY: the function returns a NUL-terminated string valid until our next call.
        unsafe { CStr::from_ptr(shmlane_last_error_message()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_an_error_code_with_its_message() {
        let code = guard(|| panic!("boom {}", 42));
        assert_eq!(code, SHMLANE_ERROR_PANIC);
        let message = last_message();
        assert!(message.contains("boom 42"), "{message}");
    }

    #[test]
    fn a_failure_sets_the_message_and_success_keeps_it() {
        let code = guard(|| Err(Failure::null("the node")));
        assert_eq!(code, SHMLANE_ERROR_NULL_ARGUMENT);
        assert_eq!(guard(|| Ok(())), SHMLANE_OK);
        assert_eq!(last_message(), "the node is NULL");
    }

    #[test]
    fn every_code_has_its_name() {
        for code in 0..=22 {
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(shmlane_error_name(code)) }.to_str().unwrap();
            assert!(name.starts_with("SHMLANE_") && name != "SHMLANE_UNKNOWN", "{code}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(shmlane_error_name(23)) };
        assert_eq!(unknown, c"SHMLANE_UNKNOWN");
        assert_eq!(shmlane_error::SHMLANE_ERROR_PANIC as c_int, 22);
    }
}
