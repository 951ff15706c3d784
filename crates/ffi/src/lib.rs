//! The C ABI of shmlane: opaque handles over the facade's run-time typed API
//! ([`shmlane::RawTopic`], [`shmlane::RawRpc`], [`shmlane::Event`], discovery), for C and C++
//! (`include/shmlane.h`, generated from this crate by cbindgen, and `include/shmlane.hpp`).
//!
//! # Rules of the ABI
//!
//! - **Errors.** Every function that can fail returns a [`shmlane_error`] (`SHMLANE_OK`, 0, on
//!   success) and leaves a message for [`shmlane_last_error_message`] on its thread. No panic
//!   crosses the boundary: each entry point runs in [`std::panic::catch_unwind`], and a panic
//!   becomes `SHMLANE_ERROR_PANIC`.
//! - **Handles** (node, topic, publisher, subscriber, event, notifier, listener, service list,
//!   rpc, server, client, wait set) are boxes handed out as pointers, each with a magic word of its kind
//!   checked on every call: a NULL handle gives `SHMLANE_ERROR_NULL_ARGUMENT`, a pointer to
//!   something else `SHMLANE_ERROR_INVALID_HANDLE`. Destroying clears the magic word before the
//!   box is freed, so a second destroy or a use after destroy is *usually* caught as well, but
//!   that reads freed memory: it is undefined behaviour, not a guarantee.
//! - **Loans, samples and requests** are plain structs ([`shmlane_loan`], [`shmlane_sample`])
//!   with a data pointer and lengths, named to their handle by a token (see the `slots`
//!   module): the lent object lives in the handle's table, so a second release, a stale copy or
//!   a sample given to another subscriber is always caught (`SHMLANE_ERROR_RELEASED`,
//!   `SHMLANE_ERROR_FOREIGN`) without touching freed memory. A handle with loans or samples out
//!   refuses to be destroyed (`SHMLANE_ERROR_BUSY`), so a lent pointer never outlives what it
//!   points into. Reading or writing through `data` after a release, send or drop is not
//!   detected (the struct is zeroed, copies of it are not).
//! - **Threads.** Publishers, subscribers, listeners, servers and clients are used by one
//!   thread at a time (they may move between threads, with their loans and samples);
//!   nodes, topics, events, notifiers, rpc services and service lists may be shared. A wait
//!   set stays on the thread that made it, with the sources attached to it (which refuse to
//!   be destroyed while attached). Concurrent use of a one-thread handle is undefined
//!   behaviour and not detected.
//! - **Pointers** given to a function are valid for the duration of the call only, unless the
//!   function says otherwise; every pointer argument is checked for NULL.

// The C names are the ABI's: `shmlane_topic`, `SHMLANE_OK`.
#![allow(non_camel_case_types)]

// Declared in the order of the header's sections (cbindgen follows it); blank lines keep
// rustfmt from sorting them.
mod error;
mod handle;
mod slots;

mod node;

mod topic;

mod publisher;

mod subscriber;

mod event;

mod rpc;

mod discovery;

mod waitset;

pub use discovery::*;
pub use error::*;
pub use event::*;
pub use node::*;
pub use publisher::*;
pub use rpc::*;
pub use subscriber::*;
pub use topic::*;
pub use waitset::*;

#[cfg(test)]
mod tests {
    /// The handles' thread rules (in the crate docs and the header) hold for what they wrap:
    /// shared handles wrap `Send + Sync` values, one-thread handles `Send` ones (moved with
    /// the loans and samples that borrow them, which never outlive them).
    #[test]
    fn the_thread_rules_hold_for_the_wrapped_types() {
        fn shared<T: Send + Sync>() {}
        fn movable<T: Send>() {}
        shared::<shmlane::Node>();
        shared::<shmlane::RawTopic>();
        shared::<shmlane::Event>();
        shared::<shmlane::Notifier>();
        shared::<shmlane::RawRpc>();
        movable::<shmlane::RawPublisher>();
        movable::<shmlane::RawSubscriber>();
        movable::<shmlane::Listener>();
        movable::<shmlane::RawServer>();
        movable::<shmlane::RawClient>();
    }
}
