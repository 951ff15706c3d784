//! The hand-over of a subscriber slot: how publishers follow the subscribers that hold a slot
//! over time, so that a newcomer never receives a sample queued for its predecessor (whose
//! blocks the publisher takes back and reuses), and a dead holder's slot is freed without ever
//! freeing the slot of the subscriber that took it over.
//!
//! The words, in the topic segment: per subscriber slot its role word (a `RoleClaim`) and its
//! generation; per connection (publisher slot × subscriber slot) the ack word, the subscriber
//! generation that publisher serves.
//!
//! | step | who | what | ordering (pairs with) |
//! |---|---|---|---|
//! | [`claim`] | subscriber | claim the role: free, or taken over from a holder proven dead | the claim's Acquire CAS (the last holder's Release) |
//! | [`SubscriberSlot::take`] | subscriber | bump the generation (never 0) | AcqRel (`wanted`'s Acquire) |
//! | [`SubscriberSlot::wanted`] | publisher | the generation to serve: 0 if the role word is free | Acquire (`take`) |
//! | [`Ack::serve`] | publisher | empty the connection, then store the ack | Release (`is_for`'s Acquire) |
//! | [`Ack::is_for`] | subscriber | pop only once the ack names its generation | Acquire (`serve`) |
//! | [`SubscriberSlot::release_if_dead`] | publisher | a holder proven dead: clean, then CAS its role word to 0 | Release (the next claim's Acquire) |
//! | [`Roster::bump`] | subscriber after `take` and after its role is released; publisher after `release_if_dead` | +1 on the topic's roster word | Release (`changed`'s Acquire) |
//! | [`Roster::changed`] | publisher, each send | look at the slots (`wanted`) only if the roster moved since the last look | Acquire (`bump`) |
//!
//! With the `loom` feature this file is compiled twice: in the facade over std's atomics, and
//! in `crate::model` over loom's, where `loom-tests/subscriber_handoff.rs` and
//! `loom-tests/role_release.rs` drive it: what they check is this code.

use std::ops::Deref;

use shmlane_segment::{Claimed, RoleOwner};

use super::sync::{AtomicU64, Ordering, RoleClaim};

/// Claims the role in `word` for `me`: free, or taken over from a holder `is_dead` proves
/// dead. A slot freed between the two steps of a takeover (a publisher released its dead
/// subscriber) is free: claimed on a second try.
pub fn claim<W: Deref<Target = AtomicU64> + Clone>(
    word: W,
    me: RoleOwner,
    is_dead: impl Fn(RoleOwner) -> bool,
) -> Option<(RoleClaim<W>, Claimed)> {
    match RoleClaim::claim_with(word.clone(), me, &is_dead) {
        Ok(claimed) => Some(claimed),
        // Relaxed: only decides whether to try again; the claim's CAS synchronises.
        Err(_) if word.load(Ordering::Relaxed) == 0 => {
            RoleClaim::claim_with(word, me, &is_dead).ok()
        }
        Err(_) => None,
    }
}

/// The words of one subscriber slot: its role word and its generation.
#[derive(Debug, Clone, Copy)]
pub struct SubscriberSlot<'a> {
    /// The slot's role word (0: free).
    pub role: &'a AtomicU64,
    /// The slot's generation: bumped by each subscriber that takes the slot.
    pub generation: &'a AtomicU64,
}

impl SubscriberSlot<'_> {
    /// Subscriber, once its role is claimed: takes the next generation of the slot (never 0,
    /// which means "nobody" to publishers).
    pub fn take(&self) -> u64 {
        // AcqRel: Release publishes the claim before publishers see the new generation
        // (`wanted`'s Acquire); Acquire orders us after the previous holder's bump.
        let generation = self.generation.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        if generation != 0 {
            return generation;
        }
        // AcqRel: as above.
        self.generation.fetch_add(1, Ordering::AcqRel).wrapping_add(1)
    }

    /// Publisher: the generation the slot's holder asks to be served, or 0 for a free slot.
    #[inline]
    pub fn wanted(&self) -> u64 {
        // Acquire (both): the role word's value only (a claim publishes nothing); the
        // generation load pairs with the subscriber's AcqRel bump in `take`.
        if self.role.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.generation.load(Ordering::Acquire)
    }

    /// Publisher: if the slot's holder is proven dead by `is_dead`, calls `clean` (take back
    /// every block it had, stop serving it), then frees the slot if its role word still names
    /// the dead holder, so that every publisher cleans its connection too and a new subscriber
    /// claims the slot as a free one. Returns whether the holder was dead.
    pub fn release_if_dead(
        &self,
        is_dead: impl FnOnce(RoleOwner) -> bool,
        clean: impl FnOnce(RoleOwner),
    ) -> bool {
        // Acquire: only the holder's identity is used; a claim is an Acquire CAS and publishes
        // nothing (the subscriber's state is ordered by its AcqRel generation bump).
        let raw = self.role.load(Ordering::Acquire);
        let Some(dead) = RoleOwner::from_raw(raw).filter(|&owner| is_dead(owner)) else {
            return false;
        };
        clean(dead);
        // Release: pairs with the Acquire of the next claim, as a holder's own release does.
        // Not a plain store: a subscriber that took the slot over since our load keeps it (the
        // CAS fails) and is served from scratch, its generation being new.
        let _ = self.role.compare_exchange(raw, 0, Ordering::Release, Ordering::Relaxed);
        true
    }
}

/// The ack word of one connection: the subscriber generation its publisher serves.
#[derive(Debug, Clone, Copy)]
pub struct Ack<'a>(pub &'a AtomicU64);

impl Ack<'_> {
    /// Publisher: starts serving generation `wanted` (from [`SubscriberSlot::wanted`]) on a
    /// connection that served `served`, and returns the generation now served. A connection
    /// we did not serve that a previous holder of our publisher slot left acknowledged at
    /// `wanted` is adopted as it is (its queued samples stay for their subscriber). Otherwise
    /// `clean` empties the connection (its blocks taken back; for a new subscriber, the history
    /// queued), and only then is `wanted` acknowledged.
    #[cold]
    pub fn serve(&self, served: u64, wanted: u64, clean: impl FnOnce()) -> u64 {
        // Acquire: pairs with the previous holder's Release in its `serve`.
        if served == 0 && wanted != 0 && self.0.load(Ordering::Acquire) == wanted {
            return wanted;
        }
        clean();
        // Release: the cleaning above happens before the subscriber's Acquire in `is_for`.
        self.0.store(wanted, Ordering::Release);
        wanted
    }

    /// Subscriber: whether its publisher serves `generation`, so that the connection's queues
    /// hold only what was queued for it.
    #[inline]
    pub fn is_for(&self, generation: u64) -> bool {
        // Acquire: pairs with the publisher's Release in `serve`, after it emptied the queues.
        self.0.load(Ordering::Acquire) == generation
    }
}

/// The topic's roster word: bumped after every change of who holds a subscriber slot, so that
/// a publisher reads the slots' words (`wanted`, one cache line per slot) only when the roster
/// moved since its last look, instead of on every send. A look that sees a bump sees the
/// change made before it (Release/Acquire); one that does not is a send made just before the
/// change. A peer that writes the word can only make publishers look more often, or (holding
/// it still while it changes the slots) delay a change until the publisher's periodic look.
#[derive(Debug, Clone, Copy)]
pub struct Roster<'a>(pub &'a AtomicU64);

impl Roster<'_> {
    /// After a change of who holds a subscriber slot: publishers look at the slots again.
    pub fn bump(&self) {
        // Release: pairs with the Acquire load in `changed`, publishing the change (the
        // generation taken, the role released) to the publisher that sees this bump; an RMW,
        // so the bumps form one release sequence and a later value carries the earlier ones.
        self.0.fetch_add(1, Ordering::Release);
    }

    /// Publisher, before it looks at the slots: whether the roster moved since `seen` (which
    /// is updated, so that a bump during the look makes the next call true).
    #[inline]
    pub fn changed(&self, seen: &mut u64) -> bool {
        // Acquire: pairs with the Release bumps.
        let now = self.0.load(Ordering::Acquire);
        let changed = now != *seen;
        *seen = now;
        changed
    }
}

/// A subscriber's hold on its slot: its role claim, and the roster it bumps once it has taken
/// the slot's generation ([`joined`](Self::joined)) and again when it goes, after its role
/// is released (so a publisher that sees the bump sees the slot free).
#[derive(Debug)]
pub struct Membership<W: Deref<Target = AtomicU64>> {
    role: Option<RoleClaim<W>>,
    roster: W,
}

impl<W: Deref<Target = AtomicU64>> Membership<W> {
    /// Holds `role` in the topic whose roster word is `roster`.
    pub fn new(role: RoleClaim<W>, roster: W) -> Self {
        Membership { role: Some(role), roster }
    }

    /// The slot's generation is taken ([`SubscriberSlot::take`]): publishers look again.
    pub fn joined(&self) {
        Roster(&self.roster).bump();
    }
}

impl<W: Deref<Target = AtomicU64>> Drop for Membership<W> {
    fn drop(&mut self) {
        drop(self.role.take());
        Roster(&self.roster).bump();
    }
}
