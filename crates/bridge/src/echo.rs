//! No loops: what a bridge delivered into a local service from zenoh reaches its own local
//! subscriber (or listener) too, and must not go back out.
//!
//! The facade does not tell a subscriber which publisher slot a sample came from, so a bridge
//! that carries a topic both ways recognises its own samples by content: every sample it
//! publishes locally while its out subscriber exists is recorded, in order, and the out side
//! skips a sample equal to the oldest record (one publisher's samples reach a subscriber in
//! order). After the subscriber's queue dropped samples (drop-oldest), records of ours that
//! were dropped are skipped past: a sample equal to a later record ends them. The records are
//! bounded by what the subscriber can have queued or held.
//!
//! What this cannot tell apart: a local publisher's sample byte-for-byte equal to one of ours
//! in flight at the same moment. Then one of the two equal samples is skipped and the other
//! sent, so the remote host still gets exactly the samples it did not publish, with equal ones
//! possibly swapped in order. With a facade that named a sample's publisher slot the check
//! would be exact (see the crate's documentation).

use std::collections::{BTreeSet, VecDeque};

/// The samples this bridge published into one local topic and has not yet seen come back.
#[derive(Debug, Default)]
pub(crate) struct TopicEcho {
    /// (record id, payload), oldest first.
    records: VecDeque<(u64, Vec<u8>)>,
    next_id: u64,
    /// Records are kept while the bridge's own subscriber exists.
    recording: bool,
    /// At most this many records (older ones were necessarily received or dropped).
    limit: usize,
}

impl TopicEcho {
    /// Starts recording (the bridge's subscriber now exists); `limit` bounds the records.
    pub(crate) fn start(&mut self, limit: usize) {
        self.records.clear();
        self.recording = true;
        self.limit = limit.max(1);
    }

    /// Stops recording (the subscriber is gone).
    pub(crate) fn stop(&mut self) {
        self.records.clear();
        self.recording = false;
    }

    /// Records a sample about to be published locally; `None` if not recording.
    pub(crate) fn record(&mut self, payload: &[u8]) -> Option<u64> {
        if !self.recording {
            return None;
        }
        if self.records.len() >= self.limit {
            self.records.pop_front();
        }
        let id = self.next_id;
        self.next_id += 1;
        self.records.push_back((id, payload.to_vec()));
        Some(id)
    }

    /// Forgets a record whose publish failed (the sample reached no one).
    pub(crate) fn forget(&mut self, id: u64) {
        if let Some(at) = self.records.iter().rposition(|(r, _)| *r == id) {
            self.records.remove(at);
        }
    }

    /// Whether a sample the bridge's subscriber received is one of the bridge's own (and
    /// then consumes its record). `dropped`: the subscriber's queue dropped samples since the
    /// last call, so records older than a match may be of dropped samples.
    pub(crate) fn take(&mut self, bytes: &[u8], dropped: bool) -> bool {
        let Some((_, oldest)) = self.records.front() else { return false };
        if oldest.as_slice() == bytes {
            self.records.pop_front();
            return true;
        }
        if !dropped {
            return false;
        }
        match self.records.iter().position(|(_, payload)| payload.as_slice() == bytes) {
            Some(at) => {
                self.records.drain(..=at);
                true
            }
            None => false,
        }
    }
}

/// The event ids this bridge notified locally and its own listener has not yet taken. Events
/// are levels, not counts: an id notified twice before a listener looks is seen once. The
/// bridge notifies and its listener takes under one lock, so every id the bridge set is in
/// `expected` when its listener takes it, and one take clears it. An id a local notifier set
/// at the same time coalesces with the bridge's, as it would with any notifier's.
#[derive(Debug, Default)]
pub(crate) struct EventEcho {
    expected: BTreeSet<u32>,
    recording: bool,
}

impl EventEcho {
    /// Starts recording (the bridge's listener now exists).
    pub(crate) fn start(&mut self) {
        self.expected.clear();
        self.recording = true;
    }

    /// Stops recording.
    pub(crate) fn stop(&mut self) {
        self.expected.clear();
        self.recording = false;
    }

    /// Records an id about to be notified.
    pub(crate) fn record(&mut self, id: u32) {
        if self.recording {
            self.expected.insert(id);
        }
    }

    /// Whether an id the bridge's listener took was the bridge's own.
    pub(crate) fn take(&mut self, id: u32) -> bool {
        self.expected.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(bytes: &[u8]) -> &[u8] {
        bytes
    }

    #[test]
    fn own_samples_are_skipped_in_order() {
        let mut echo = TopicEcho::default();
        assert_eq!(echo.record(z(b"a")), None, "not recording yet");
        echo.start(8);
        echo.record(z(b"a"));
        echo.record(z(b"b"));
        assert!(!echo.take(b"local", false));
        assert!(echo.take(b"a", false));
        assert!(!echo.take(b"a", false), "a local sample equal to an already-seen one");
        assert!(echo.take(b"b", false));
        assert!(!echo.take(b"b", false));
    }

    #[test]
    fn dropped_records_are_skipped_past_only_after_drops() {
        let mut echo = TopicEcho::default();
        echo.start(8);
        echo.record(z(b"a"));
        echo.record(z(b"b"));
        assert!(!echo.take(b"b", false), "without drops, only the oldest matches");
        assert!(echo.take(b"b", true), "after drops, a later record matches");
        assert!(!echo.take(b"a", false), "and the dropped one is gone");
    }

    #[test]
    fn failed_publishes_are_forgotten_and_records_bounded() {
        let mut echo = TopicEcho::default();
        echo.start(2);
        let id = echo.record(z(b"x")).expect("recording");
        echo.forget(id);
        assert!(!echo.take(b"x", true));
        for b in [b"1", b"2", b"3"] {
            echo.record(z(b));
        }
        assert!(echo.take(b"2", false), "the oldest record fell off");
        echo.stop();
        assert!(!echo.take(b"3", true));
    }

    #[test]
    fn events_coalesce() {
        let mut echo = EventEcho::default();
        echo.record(3);
        assert!(!echo.take(3), "not recording");
        echo.start();
        echo.record(3);
        echo.record(3);
        assert!(echo.take(3));
        assert!(!echo.take(3), "one take clears a coalesced id");
    }
}
