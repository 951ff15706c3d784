//! loom model of the subscriber hand-off of a topic (`crates/shmlane/src/topic`): when a
//! subscriber slot changes hands, the publisher empties the slot's submission queue and only
//! then acknowledges the new subscriber's generation (Release); the new subscriber pops only
//! after it sees that acknowledgement (Acquire). So the newcomer never receives a sample that
//! was queued for its predecessor (whose blocks the publisher has taken back and may reuse).
//!
//! The steps are the facade's own (`crates/shmlane/src/topic/handoff.rs`, compiled over loom's
//! atomics as `shmlane::model`): `SubscriberSlot::take` (`Subscriber::new`), `Ack::is_for`
//! (`Subscriber::connect`), `SubscriberSlot::wanted` and `Ack::serve` (the publisher's
//! `follow_subscribers`), with the real overflow queue (`shmlane_queue::model::overflow`) as
//! the connection; the model supplies only what the facade does inside `serve`'s clean-up.
//!
//! Acknowledging before emptying the queue fails this model from three preemptions on (the
//! default bound of `model.rs`; with one or two it passes). Weakening the ack to Relaxed does
//! not: a pop CASes `head`, which always reads the latest value, so it cannot take an evicted
//! position. The ack's Release/Acquire is there for the completion queue, whose producer the
//! newcomer resumes from the shared indices.

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use loom::thread;
use shmlane::model::{Ack, Roster, SubscriberSlot};
use shmlane_queue::model::overflow;
use shmlane_workspace::model;

/// The slot's shared words.
struct Slot {
    /// Held throughout (the newcomer claimed it before the model starts).
    role: AtomicU64,
    generation: AtomicU64,
    ack: AtomicU64,
}

impl Slot {
    fn words(&self) -> SubscriberSlot<'_> {
        SubscriberSlot { role: &self.role, generation: &self.generation }
    }
}

#[test]
fn a_new_subscriber_never_receives_its_predecessors_samples() {
    model::check(|| {
        let slot = Arc::new(Slot {
            role: AtomicU64::new(0xfeed),
            generation: AtomicU64::new(1),
            ack: AtomicU64::new(1),
        });
        let (mut submission, mut consumer) = overflow::new(2);
        // Generation 1 is served and has a sample queued (value = generation << 32 | n).
        submission.push(1 << 32).unwrap();

        let newcomer = {
            let slot = slot.clone();
            thread::spawn(move || {
                // `Subscriber::new`: bump the slot's generation.
                let mine = slot.words().take();
                // `Subscriber::connect`: pop only once the publisher acknowledged us.
                if !Ack(&slot.ack).is_for(mine) {
                    return None;
                }
                Some((mine, consumer.pop()))
            })
        };

        // The publisher's next send: `follow_subscribers`, then `start_serving`.
        let mut served = 1;
        let wanted = slot.words().wanted();
        if wanted != served {
            // `empty_connection`: the queue emptied (the blocks go back to the pool).
            served = Ack(&slot.ack)
                .serve(served, wanted, || while submission.evict().unwrap().is_some() {});
        }
        // Then it queues this send's sample for the generation it serves.
        submission.push(served << 32 | 1).unwrap();

        if let Some((mine, popped)) = newcomer.join().unwrap()
            && let Some(value) = popped
        {
            assert_eq!(value >> 32, mine, "the newcomer got a sample queued for another");
        }
    });
}

/// A publisher that looks at the subscriber slots only when the roster moved
/// (`Publisher::follow_roster`) against a subscriber joining the slot (`Subscriber::new`:
/// claim, `take`, `Membership::joined`): a look that sees the bump sees the new generation,
/// so once the join is done the next send serves it. Bumping the roster Relaxed fails this
/// model: the publisher can see the bump, look at the slot before the generation, and not
/// look again.
#[test]
fn a_publisher_following_the_roster_never_misses_a_join() {
    model::check(|| {
        let slot = Arc::new(Slot {
            role: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            ack: AtomicU64::new(0),
        });
        let roster = Arc::new(AtomicU64::new(0));
        let joiner = {
            let (slot, roster) = (slot.clone(), roster.clone());
            thread::spawn(move || {
                // The claim (its Acquire CAS publishes nothing: the role word alone matters).
                slot.role.store(0xfeed, loom::sync::atomic::Ordering::Relaxed);
                let mine = slot.words().take();
                Roster(&roster).bump();
                mine
            })
        };
        // The publisher looked at the slots when the roster was 0 (nobody there).
        let (mut seen, mut served) = (0, 0);
        let mut send = |served: &mut u64| {
            if Roster(&roster).changed(&mut seen) {
                *served = slot.words().wanted();
            }
        };
        send(&mut served);
        let mine = joiner.join().unwrap();
        send(&mut served);
        assert_eq!(served, mine, "a send after the join does not serve the new subscriber");
    });
}
