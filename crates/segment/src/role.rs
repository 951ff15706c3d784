//! Exclusive roles shared across processes (the producer of a queue, its consumer, ...),
//! claimed with one CAS on a 64-bit word that names the owner.
//!
//! ```text
//!  63                                        0
//! +-------------------------------------------+
//! |  the owner's presence token (random, != 0) |     0: the role is free
//! +-------------------------------------------+
//! ```
//!
//! The token names the owner's presence file ([`crate::presence`]), whose lock the owner holds
//! for as long as it lives: a pid would mean nothing to a peer in another pid namespace. A
//! taken role is handed to someone else only with proof that its owner is dead
//! ([`Liveness::Dead`]), never on a timeout: a slow but live owner keeps its role, and so does
//! one whose liveness cannot be told. The claim is released when the [`RoleClaim`] drops.

use std::fmt;

use crate::Liveness;
use crate::presence;
use crate::sync;

mod claim;

pub use claim::RoleClaim;

/// A role owner as stored in a role word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleOwner(u64);

impl RoleOwner {
    /// The owner word for the calling process (registering its presence on first use).
    pub fn current() -> std::io::Result<RoleOwner> {
        presence::current().map(RoleOwner)
    }

    /// The owner's pid (in its own pid namespace) as its presence file records it; `None` once
    /// the file is gone or unreadable. For reports only: never a proof of anything.
    pub fn pid(self) -> Option<u32> {
        presence::identity(self.0).and_then(|identity| identity.pid)
    }

    /// Whether the owner still runs (only [`Liveness::Dead`] is proof of death).
    pub fn liveness(self) -> Liveness {
        presence::liveness(self.0)
    }

    /// The raw word.
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// The owner a taken role word names (the claim's CAS from 0 failed, so `raw` is not 0).
    pub(crate) const fn held(raw: u64) -> RoleOwner {
        RoleOwner(raw)
    }

    /// Interprets a raw word; `None` for the free role.
    pub fn from_raw(raw: u64) -> Option<RoleOwner> {
        (raw != 0).then_some(RoleOwner(raw))
    }
}

impl fmt::Display for RoleOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid() {
            Some(pid) => write!(f, "pid {pid} (presence {:016x})", self.0),
            None => write!(f, "presence {:016x} (no pid on record)", self.0),
        }
    }
}

/// Why a role could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// A live (or unverifiable) process holds the role.
    #[error(
        "the role is held by {0}, which is alive: only one may hold it; stop that process first"
    )]
    Taken(RoleOwner),
}

/// How a claim was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The role was free.
    Free,
    /// The role was taken over from an owner proven dead, which may have left work half done.
    TakenOver(RoleOwner),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{AtomicU64, Ordering};

    #[test]
    fn a_second_claim_in_the_same_process_fails_and_leaves_the_first_intact() {
        let word = AtomicU64::new(0);
        let me = RoleOwner::current().unwrap();
        let (first, how) = RoleClaim::claim(&word, me).unwrap();
        assert_eq!(how, Claimed::Free);
        assert_eq!(RoleClaim::claim(&word, me).unwrap_err(), RoleError::Taken(me));
        assert_eq!(word.load(Ordering::Relaxed), me.to_raw(), "the failed claim released ours");
        drop(first);
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dead_owner_is_taken_over_and_a_live_one_is_not() {
        let me = RoleOwner::current().unwrap();
        // A token without a presence file: its owner's file was removed after its death.
        let gone = RoleOwner::from_raw(0x5eed_dead_0000_0001).unwrap();
        let word = AtomicU64::new(gone.to_raw());
        let (claim, how) = RoleClaim::claim(&word, me).unwrap();
        assert_eq!(how, Claimed::TakenOver(gone));
        drop(claim);
        let word = AtomicU64::new(me.to_raw());
        let other = RoleOwner::from_raw(0x5eed_dead_0000_0002).unwrap();
        assert_eq!(RoleClaim::claim(&word, other).unwrap_err(), RoleError::Taken(me));
    }
}
