//! The facade's own lock-free protocols compiled a second time over loom's atomics, for the
//! models in `loom-tests/` (feature `loom`): the hand-over of a subscriber slot
//! (`topic/handoff.rs`: the generation bump, the ack after emptying, the release of a dead
//! holder's slot). The file is the one topics run, so a change to it is a change to what loom
//! checks; the rest of the facade, and its public API, are the same with or without the
//! feature.

/// loom's atomics and the segment crate's loom instance of role claims, where the facade has
/// `crate::sync`.
mod sync {
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
    pub(crate) use shmlane_segment::model::RoleClaim;
}

// The second instance is the point (see above): clippy's duplicate_mod warns against exactly it.
#[allow(clippy::duplicate_mod)]
#[path = "topic/handoff.rs"]
mod handoff;

pub use handoff::{Ack, Membership, Roster, SubscriberSlot, claim};
