//! loom model of the release of a dead subscriber's slot (`crates/shmlane/src/topic`): a
//! publisher that finds a subscriber proven dead takes back the blocks it had, stops serving
//! it, and frees the slot's role word with a compare-exchange from the dead owner's word to 0,
//! while new subscribers claim the same slot (by CAS from 0, or by taking over the dead owner),
//! bump its generation, and wait for the publisher's ack of that generation.
//!
//! Checked, whatever the interleaving: exactly one subscriber owns the slot at the end, and the
//! role word names it; the release never frees the slot of the subscriber that took it over
//! (the publisher then serves it: its generation is acknowledged); the new owner pops only
//! samples queued for its own generation (each value is tagged with the generation it was
//! queued for: 1 is the dead one's); every block is in exactly one place at the end: free in
//! the publisher's pool, or held (queued or in the new owner's hand), never both and never
//! neither (the dead one's blocks are all back).
//!
//! The protocol steps are the facade's own (`crates/shmlane/src/topic/handoff.rs`, compiled
//! over loom's atomics as `shmlane::model`): `claim`, `SubscriberSlot::{take, wanted,
//! release_if_dead}` and `Ack::{serve, is_for}`, over the real overflow queue and the real
//! `RoleClaim` (their loom instances). The model supplies the rest of the publisher as the
//! facade does it inside those steps' clean-ups (`empty_connection`, `take_back`, the push of
//! `publish`, without history, limits or collection) and the subscriber's pop.
//!
//! Releasing with a plain store of 0 instead of the compare-exchange fails both models: a
//! subscriber that took the slot over between the publisher's load of the dead owner and its
//! release loses the slot while it believes it holds it and is no longer served; in the second
//! model, another subscriber then claims the freed word beside it (two owners). Each of those
//! three checks catches it alone.

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use shmlane::model::{Ack, SubscriberSlot, claim};
use shmlane_queue::model::overflow::{self, Consumer, Heap, Producer};
use shmlane_segment::RoleOwner;
use shmlane_workspace::model;

/// The dead subscriber's generation of the slot (acknowledged by the publisher).
const DEAD_GENERATION: u64 = 1;
/// The publisher's payload blocks: 0 queued for the dead subscriber, 1 in its hand, 2 returned
/// by it (not yet collected), 3 free.
const BLOCKS: usize = 4;

/// An owner word (an opaque presence token: the models supply the proof of death).
fn owner(pid: u32) -> RoleOwner {
    RoleOwner::from_raw(u64::from(pid) << 32 | 7).expect("a non-zero word")
}

/// The subscriber that died holding the slot.
fn dead() -> RoleOwner {
    owner(1)
}

/// A queued value: the generation it was queued for (the model's tag) and the block.
fn value(generation: u64, block: usize) -> u64 {
    generation << 32 | block as u64
}

fn block_of(value: u64) -> usize {
    value as u32 as usize
}

/// The subscriber slot's shared words.
struct Slot {
    role: AtomicU64,
    generation: AtomicU64,
    ack: AtomicU64,
    /// The subscriber's end of the submission queue, and whether a subscriber connected to it.
    /// The lock only hands the end over between threads; the protocol never relies on it.
    end: Mutex<(Consumer<Heap>, bool)>,
}

impl Slot {
    fn words(&self) -> SubscriberSlot<'_> {
        SubscriberSlot { role: &self.role, generation: &self.generation }
    }
}

/// What a new subscriber got: its generation if it claimed the slot, and the sample it popped.
struct Joined {
    me: RoleOwner,
    generation: Option<u64>,
    popped: Option<u64>,
}

/// A new subscriber process: `Subscriber::new` (claim, generation bump), then one `receive`
/// (`connect`: take the queue end only once our generation is acknowledged, then pop).
/// `proves_death`: whether it can prove the dead owner's death; one that cannot (its liveness
/// is unknown to it) claims only a free slot.
fn subscribe(slot: &Slot, me: RoleOwner, proves_death: bool) -> Joined {
    let is_dead = |o: RoleOwner| proves_death && o == dead();
    let Some((role, _)) = claim(&slot.role, me, is_dead) else {
        return Joined { me, generation: None, popped: None };
    };
    // The process stays subscribed past the model's end: a drop would free the word before
    // the final checks.
    std::mem::forget(role);
    let mine = slot.words().take();
    if !Ack(&slot.ack).is_for(mine) {
        return Joined { me, generation: Some(mine), popped: None };
    }
    let mut end = slot.end.lock().unwrap();
    assert!(!end.1, "two subscribers connected to one slot");
    end.1 = true;
    let popped = end.0.pop();
    if let Some(v) = popped {
        assert_eq!(v >> 32, mine, "a new subscriber got a sample queued for another");
    }
    Joined { me, generation: Some(mine), popped }
}

/// The publisher's side of the slot: its connection and its (private) block pool.
struct Publisher {
    slot: Arc<Slot>,
    /// The subscriber generation being served (0: none).
    served: u64,
    submission: Producer<Heap>,
    completion: Consumer<Heap>,
    /// Per block: the slot's holder bit.
    held: [bool; BLOCKS],
    /// Per block: whether it is on the free list.
    free: [bool; BLOCKS],
}

impl Publisher {
    /// `reclaim_subscriber_if_dead`: if the role word names a dead owner, take back its
    /// blocks, stop serving it, and free the word only if it still names that owner.
    fn reclaim_if_dead(&mut self) -> bool {
        let slot = self.slot.clone();
        slot.words().release_if_dead(
            |owner| owner == dead(),
            |_| {
                self.clean();
                self.served = 0;
            },
        )
    }

    /// `follow_subscribers` and `start_serving` for this slot: a changed generation (or a
    /// freed slot) is cleaned before the new generation is acknowledged; a generation already
    /// acknowledged by a previous serving is adopted.
    fn serve(&mut self) {
        let slot = self.slot.clone();
        let wanted = slot.words().wanted();
        if wanted == self.served {
            return;
        }
        let served = self.served;
        self.served = Ack(&slot.ack).serve(served, wanted, || self.clean());
    }

    /// `clean`: empties the connection and takes back every block the slot's holder had.
    fn clean(&mut self) {
        while let Ok(Some(v)) = self.submission.evict() {
            self.release(v);
        }
        while self.completion.pop().is_some() {}
        for block in 0..BLOCKS {
            if self.held[block] {
                self.held[block] = false;
                self.free_if_unused(block);
            }
        }
    }

    /// `release`: the subscriber gave back (or lost) a block.
    fn release(&mut self, v: u64) {
        let block = block_of(v);
        if block < BLOCKS && self.held[block] {
            self.held[block] = false;
            self.free_if_unused(block);
        }
    }

    fn free_if_unused(&mut self, block: usize) {
        if !self.held[block] {
            self.free[block] = true;
        }
    }

    /// `loan` then `publish`: take a free block, follow the slot, queue the block for the
    /// generation served (if any).
    fn send(&mut self) {
        let block = self.free.iter().position(|&f| f).expect("the pool never runs dry here");
        self.free[block] = false;
        self.serve();
        if self.served != 0 {
            let evicted = self.submission.push(value(self.served, block)).unwrap();
            self.held[block] = true;
            if let Some(v) = evicted {
                self.release(v);
            }
        }
        self.free_if_unused(block);
    }
}

/// The dead subscriber's slot, with `claimants` (pid, whether it proves the death) racing the
/// publisher's release; checks the end state.
fn race(claimants: &[(u32, bool)]) {
    let (mut submission, mut consumer) = overflow::new(2);
    let (mut returns, completion) = overflow::new(2);
    // The dead subscriber (generation 1, served): it took blocks 1 and 2, returned 2, and
    // block 0 is queued for it.
    for block in [1, 2] {
        submission.push(value(DEAD_GENERATION, block)).unwrap();
        consumer.pop().unwrap();
    }
    returns.push(value(DEAD_GENERATION, 2)).unwrap();
    submission.push(value(DEAD_GENERATION, 0)).unwrap();
    let slot = Arc::new(Slot {
        role: AtomicU64::new(dead().to_raw()),
        generation: AtomicU64::new(DEAD_GENERATION),
        ack: AtomicU64::new(DEAD_GENERATION),
        end: Mutex::new((consumer, false)),
    });
    let mut publisher = Publisher {
        slot: slot.clone(),
        served: DEAD_GENERATION,
        submission,
        completion,
        held: [true, true, true, false],
        free: [false, false, false, true],
    };

    let newcomers: Vec<_> = claimants
        .iter()
        .map(|&(pid, proves_death)| {
            let slot = slot.clone();
            thread::spawn(move || subscribe(&slot, owner(pid), proves_death))
        })
        .collect();

    // A send under drop-oldest found the dead subscriber stuck (`check_stuck`), then the next
    // send follows the slot and queues a sample.
    publisher.reclaim_if_dead();
    publisher.send();

    let joined: Vec<Joined> = newcomers.into_iter().map(|h| h.join().unwrap()).collect();
    // The publisher's next send follows the slot again.
    publisher.serve();

    let owners: Vec<&Joined> = joined.iter().filter(|j| j.generation.is_some()).collect();
    assert_eq!(owners.len(), 1, "the slot has {} owners", owners.len());
    let (me, mine) = (owners[0].me, owners[0].generation.unwrap());
    // Relaxed (both): every thread has been joined.
    let word = slot.role.load(Ordering::Relaxed);
    assert_eq!(word, me.to_raw(), "the release freed the slot of a live subscriber");
    let acked = slot.ack.load(Ordering::Relaxed);
    assert!(publisher.served == mine && acked == mine, "the slot's owner is not served");

    // Where every block really is: in the new owner's hand, or still queued.
    let mut places = [0u32; BLOCKS];
    for popped in joined.iter().filter_map(|j| j.popped) {
        places[block_of(popped)] += 1;
    }
    let mut end = slot.end.lock().unwrap();
    while let Some(v) = end.0.pop() {
        assert_eq!(v >> 32, mine, "a sample for another generation is left for the owner");
        places[block_of(v)] += 1;
    }
    for (block, &places) in places.iter().enumerate() {
        let (held, free) = (publisher.held[block], publisher.free[block]);
        assert!(places <= 1, "block {block} is in {places} places");
        assert!(!(free && places == 1), "block {block} is both free and held");
        assert_eq!(held, places == 1, "block {block}: holder bit {held}, not where it is");
        assert_eq!(free, !held, "block {block} is neither free nor held (leaked)");
    }
}

#[test]
fn a_takeover_racing_the_release_keeps_the_slot_and_is_served_from_scratch() {
    model::check(|| race(&[(2, true)]));
}

#[test]
fn a_takeover_and_a_claim_by_cas_racing_the_release_leave_exactly_one_owner() {
    // Subscriber 3 cannot prove the death: it claims only the word the release freed.
    model::check(|| race(&[(2, true), (3, false)]));
}
