//! The crate's lock-free protocols compiled a second time over loom's atomics, for the models
//! in `loom-tests/` (feature `loom`). The files are the ones the crate runs on shared memory
//! (`pool/free_list.rs`, `role/claim.rs`), so a change to them is a change to what loom checks;
//! the rest of the crate, and its public API, are the same with or without the feature.

/// loom's atomics, where the std build has `crate::sync`.
mod sync {
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
}

// The second instance is the point (see above): clippy's duplicate_mod warns against exactly it.
#[allow(clippy::duplicate_mod)]
#[path = "role/claim.rs"]
mod claim;
#[allow(clippy::duplicate_mod)]
#[path = "pool/free_list.rs"]
mod free_list;

pub use claim::RoleClaim;
pub use free_list::BlockPool;

pub use crate::pool::{AllocError, BlockOffset, FreeError, PoolError, PoolStats};
pub use crate::role::{Claimed, RoleError, RoleOwner};
