//! loom model of the subscriber hand-off of a topic (`crates/shmlane/src/topic`): when a
//! subscriber slot changes hands, the publisher empties the slot's submission queue and only
//! then acknowledges the new subscriber's generation (Release); the new subscriber pops only
//! after it sees that acknowledgement (Acquire). So the newcomer never receives a sample that
//! was queued for its predecessor (whose blocks the publisher has taken back and may reuse).
//!
//! The facade itself is built on segments, which loom cannot host, so this model restates the
//! three steps it checks, with the real overflow queue (`shmlane_queue::overflow`) and loom
//! atomics: `Publisher::serve_subscribers` + `clean` (publisher.rs), `Subscriber::new`'s
//! generation bump and `Subscriber::connect` (subscriber.rs). Keep them in step.
//!
//! Acknowledging before emptying the queue fails this model from three preemptions on (the
//! default bound of `model.rs`; with one or two it passes). Weakening the ack to Relaxed does
//! not: a pop CASes `head`, which always reads the latest value, so it cannot take an evicted
//! position. The ack's Release/Acquire is there for the completion queue, whose producer the
//! newcomer resumes from the shared indices.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use shmlane_queue::model::overflow;
use shmlane_workspace::model;

/// The slot's shared words.
struct Slot {
    generation: AtomicU64,
    ack: AtomicU64,
}

#[test]
fn a_new_subscriber_never_receives_its_predecessors_samples() {
    model::check(|| {
        let slot = Arc::new(Slot { generation: AtomicU64::new(1), ack: AtomicU64::new(1) });
        let (mut submission, mut consumer) = overflow::new(2);
        // Generation 1 is served and has a sample queued (value = generation << 32 | n).
        submission.push(1 << 32).unwrap();

        let newcomer = {
            let slot = slot.clone();
            thread::spawn(move || {
                // `Subscriber::new`: take the slot, bump its generation.
                let mine = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
                // `Subscriber::connect`: pop only once the publisher acknowledged us.
                // Acquire: pairs with the publisher's Release ack after cleaning.
                if slot.ack.load(Ordering::Acquire) != mine {
                    return None;
                }
                Some((mine, consumer.pop()))
            })
        };

        // The publisher's next send: `serve_subscribers`.
        let mut served = 1;
        // Acquire: pairs with the subscriber's AcqRel generation bump.
        let generation = slot.generation.load(Ordering::Acquire);
        if generation != served {
            // `clean`: empty the queue (the blocks go back to the pool), then acknowledge.
            while submission.evict().unwrap().is_some() {}
            served = generation;
            // Release: the eviction above happens before the newcomer's first pop.
            slot.ack.store(generation, Ordering::Release);
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
