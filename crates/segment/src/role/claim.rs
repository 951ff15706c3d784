//! The claim protocol of a role word: one CAS to take a free role, a second to take it over
//! from an owner proven dead, a Release CAS back to free on drop.
//!
//! With the `loom` feature this file is compiled twice: here over std's atomics (what
//! segments use) and in `crate::model` over loom's, so the models check this very code.

use std::ops::Deref;

use super::sync::{AtomicU64, Ordering};
use super::{Claimed, RoleError, RoleOwner};
use crate::Liveness;

/// A held role; released (the word set back to free) on drop.
///
/// `W` is how the claim reaches its word: a `&AtomicU64`, or an owning pointer such as a
/// [`SegmentRef`](crate::SegmentRef) for handles that own their share of the segment.
#[derive(Debug)]
pub struct RoleClaim<W: Deref<Target = AtomicU64>> {
    word: W,
    mine: RoleOwner,
}

impl<W: Deref<Target = AtomicU64>> RoleClaim<W> {
    /// Claims the role in `word` for `me`, taking it over if its owner is proven dead.
    pub fn claim(word: W, me: RoleOwner) -> Result<(Self, Claimed), RoleError> {
        Self::claim_with(word, me, |owner| owner.liveness() == Liveness::Dead)
    }

    /// [`claim`](Self::claim) with the proof of death supplied by the caller (for models).
    pub fn claim_with(
        word: W,
        me: RoleOwner,
        is_dead: impl Fn(RoleOwner) -> bool,
    ) -> Result<(Self, Claimed), RoleError> {
        // The claim is built only once the word is ours: dropping it releases the role.
        // Acquire on success: pairs with the Release of the previous owner's `drop`, so its
        // last writes to what the role guards are visible to us.
        let held = match word.compare_exchange(0, me.to_raw(), Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return Ok((RoleClaim { word, mine: me }, Claimed::Free)),
            Err(held) => held,
        };
        let owner = RoleOwner::held(held);
        if !is_dead(owner) {
            return Err(RoleError::Taken(owner));
        }
        // Acquire: as above, for whatever the dead owner managed to write. If another process
        // took the role over first, the CAS fails and that one holds it.
        match word.compare_exchange(held, me.to_raw(), Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Ok((RoleClaim { word, mine: me }, Claimed::TakenOver(owner))),
            Err(now) => Err(RoleError::Taken(RoleOwner::from_raw(now).unwrap_or(owner))),
        }
    }
}

impl<W: Deref<Target = AtomicU64>> Drop for RoleClaim<W> {
    fn drop(&mut self) {
        // Release: pairs with the next claimer's Acquire. Only if the word is still ours (a
        // corrupting peer may have overwritten it; then it is not ours to free).
        let _ =
            self.word.compare_exchange(self.mine.to_raw(), 0, Ordering::Release, Ordering::Relaxed);
    }
}
