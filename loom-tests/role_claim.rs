//! loom models of exclusive role claims (`shmlane_segment::RoleClaim`): one holder at a time,
//! takeover only from a dead owner, and by one claimant only.

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use loom::thread;
use shmlane_segment::model::{Claimed, RoleClaim, RoleOwner};
use shmlane_workspace::model;

/// An owner word (an opaque presence token: the models supply the proof of death).
fn owner(pid: u32) -> RoleOwner {
    RoleOwner::from_raw(u64::from(pid) << 32 | 7).expect("a non-zero word")
}

/// Two claimants race for a role; `dead` is what the proof of death says of the old owner.
fn race(initial: u64, dead: Option<RoleOwner>) -> Vec<Option<Claimed>> {
    let word = Arc::new(AtomicU64::new(initial));
    let handles: Vec<_> = [2, 3]
        .into_iter()
        .map(|pid| {
            let word = word.clone();
            thread::spawn(move || {
                let is_dead = |o: RoleOwner| Some(o) == dead;
                let (claim, how) = RoleClaim::claim_with(&*word, owner(pid), is_dead).ok()?;
                // While held, the word names us.
                assert_eq!(word.load(loom::sync::atomic::Ordering::Relaxed), owner(pid).to_raw());
                drop(claim);
                Some(how)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn racing_claims_on_a_free_role_never_overlap() {
    model::check(|| {
        let results = race(0, None);
        // The first always wins; the second wins only if the first already released.
        assert!(results.contains(&Some(Claimed::Free)));
        assert!(results.iter().all(|r| matches!(r, None | Some(Claimed::Free))));
    });
}

#[test]
fn a_dead_owner_is_taken_over_by_exactly_one_claimant_at_a_time() {
    model::check(|| {
        let dead = owner(1);
        let results = race(dead.to_raw(), Some(dead));
        let taken_over = results.iter().filter(|r| **r == Some(Claimed::TakenOver(dead))).count();
        assert_eq!(taken_over, 1, "{results:?}");
    });
}

#[test]
fn a_live_owner_is_never_taken_over() {
    model::check(|| {
        let live = owner(1);
        assert_eq!(race(live.to_raw(), None), [None, None]);
    });
}
