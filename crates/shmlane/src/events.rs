//! What the facade tells operators: `tracing` events (target `shmlane`) when it recovers from
//! dead peers, removes what they left, or refuses what it finds, with structured fields
//! (`service`, `slot`, `pid`, counts). Cold paths only: nothing here runs per sample. Install
//! any `tracing` subscriber to see them (the `shmlane` CLI and the examples print them,
//! filtered by `RUST_LOG`).

use shmlane_segment::RoleOwner;

/// A slot (`role`: publisher, subscriber, listener) of `service` was taken over from a
/// process proven dead.
pub(crate) fn slot_taken_over(service: &str, role: &'static str, slot: usize, dead: RoleOwner) {
    tracing::warn!(
        target: "shmlane",
        service,
        role,
        slot,
        dead_pid = dead.pid(),
        dead_presence = format_args!("{:016x}", dead.to_raw()),
        "took over a slot whose holder is proven dead"
    );
}

/// A publisher found subscriber `slot` of `service` dead: took back its `blocks` and freed
/// the slot.
pub(crate) fn subscriber_reclaimed(service: &str, slot: usize, blocks: u64, dead: RoleOwner) {
    tracing::warn!(
        target: "shmlane",
        service,
        slot,
        blocks,
        dead_pid = dead.pid(),
        "a subscriber is proven dead: took its blocks back and freed its slot"
    );
}

/// The payload segments of `service`'s publisher `slot` that no longer have a holder were
/// removed (`generation`: which ones; 0 for every generation).
pub(crate) fn payloads_removed(service: &str, slot: usize, generation: u32) {
    tracing::info!(
        target: "shmlane",
        service,
        slot,
        generation,
        "removed the payload segments of a publisher that is gone"
    );
}

/// A sample queued for this subscriber named a payload segment it could not read (gone,
/// not ready or invalid): skipped and counted as a drop.
pub(crate) fn unreadable_sample(service: &str, publisher: usize, generation: u32) {
    tracing::debug!(
        target: "shmlane",
        service,
        publisher,
        generation,
        "skipped a sample whose payload segment cannot be read (counted in drops)"
    );
}

/// `service` was opened with another payload type than the one it records.
pub(crate) fn type_refused(service: &str, ours: &str, theirs: &str) {
    tracing::warn!(
        target: "shmlane",
        service,
        ours,
        theirs,
        "refused a service recorded with another payload type"
    );
}

/// A node's start-up sweep removed `removed` dead registrations of `namespace`, and could not
/// remove `failed` files.
pub(crate) fn dead_nodes_swept(namespace: &str, removed: usize, failed: usize) {
    if removed > 0 {
        tracing::info!(target: "shmlane", namespace, removed, "removed dead nodes' registrations");
    }
    if failed > 0 {
        tracing::warn!(
            target: "shmlane",
            namespace,
            failed,
            "could not remove some stale files (see Node::sweep_errors)"
        );
    }
}
