//! The hub between the sampler and the WebSocket clients: the latest [`Sample`] (a new client's
//! snapshot, and what `/metrics` reports), and a bounded broadcast of each interval's delta,
//! serialised once for every client.
//!
//! Each client reads the broadcast at its own pace; the channel keeps the last
//! [`lag_limit`] deltas, and a client that falls further behind than that misses one, which
//! drops it (with a close frame, see `live`). So the sampler never waits for a client, and a
//! slow or vanished client holds at most that many shared deltas.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::model::NodeJson;
use crate::peek::{PeekState, Peeks};
use crate::sampler::{Changes, Reading, Sample, Sampler, ServiceState};

/// How far behind (in time) a client may fall before it is dropped.
const LAG_WINDOW: Duration = Duration::from_secs(5);

/// Deltas a client may fall behind before it is dropped: [`LAG_WINDOW`] worth, 8 to 1024.
pub(crate) fn lag_limit(interval: Duration) -> usize {
    let per_window = LAG_WINDOW.as_nanos() / interval.as_nanos().max(1);
    usize::try_from(per_window).unwrap_or(usize::MAX).clamp(8, 1024)
}

/// A message from the monitor to a WebSocket client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerMessage<'a> {
    /// Everything, first thing after connecting.
    Snapshot {
        seq: u64,
        time_unix_ms: u64,
        interval_ms: u64,
        /// Whether peeks are allowed.
        peek: bool,
        services: Vec<&'a ServiceState>,
        nodes: Vec<&'a NodeJson>,
        error: Option<&'a str>,
    },
    /// What changed since the previous message, every interval.
    Delta {
        seq: u64,
        time_unix_ms: u64,
        dt_ms: u64,
        services: Vec<&'a ServiceState>,
        removed: &'a [String],
        nodes: Vec<&'a NodeJson>,
        removed_nodes: &'a [String],
        error: Option<&'a str>,
    },
    /// A peeked topic's latest state.
    Peek {
        /// The topic's id (`null` after an unpeek of nothing).
        service: Option<&'a str>,
        #[serde(flatten)]
        state: &'a PeekState,
    },
    /// A request the monitor could not act on.
    Error { message: String },
}

impl ServerMessage<'_> {
    /// As JSON text.
    pub(crate) fn text(&self) -> Utf8Bytes {
        // Serialising these plain structs to a String cannot fail (no maps with non-string
        // keys, no failing Serialize impls); an empty object is a safe fallback regardless.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into()).into()
    }
}

/// One interval's delta, serialised.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// The sample it leads to.
    pub(crate) seq: u64,
    pub(crate) text: Utf8Bytes,
}

/// The latest sample and, once a client asked for it, its snapshot message.
#[derive(Debug, Default)]
pub(crate) struct Published {
    pub(crate) sample: Sample,
    snapshot: OnceLock<Utf8Bytes>,
}

/// The shared live state.
#[derive(Debug)]
pub(crate) struct Hub {
    latest: watch::Sender<Arc<Published>>,
    deltas: broadcast::Sender<Frame>,
    interval: Duration,
    /// The peeks clients hold.
    pub(crate) peeks: Arc<Peeks>,
    /// WebSocket clients connected now.
    pub(crate) clients: AtomicUsize,
    /// WebSocket clients dropped for falling behind.
    pub(crate) dropped: AtomicU64,
}

impl Hub {
    pub(crate) fn new(interval: Duration, peeks: Arc<Peeks>) -> Hub {
        let (deltas, _) = broadcast::channel(lag_limit(interval));
        let (latest, _) = watch::channel(Arc::new(Published::default()));
        Hub {
            latest,
            deltas,
            interval,
            peeks,
            clients: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The sampling interval.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// The latest sample.
    pub(crate) fn latest(&self) -> Arc<Published> {
        Arc::clone(&self.latest.borrow())
    }

    /// The deltas from now on. Subscribe before taking [`latest`](Self::latest): deltas up to
    /// its `seq` are then the ones to skip, and none is missed.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.deltas.subscribe()
    }

    /// The snapshot message of `published`, serialised once.
    pub(crate) fn snapshot(&self, published: &Published) -> Utf8Bytes {
        published
            .snapshot
            .get_or_init(|| {
                let sample = &published.sample;
                ServerMessage::Snapshot {
                    seq: sample.seq,
                    time_unix_ms: sample.time_unix_ms,
                    interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
                    peek: self.peeks.enabled(),
                    services: sample.services.values().collect(),
                    nodes: sample.nodes.values().collect(),
                    error: sample.error.as_deref(),
                }
                .text()
            })
            .clone()
    }

    /// Makes `reading` the latest sample and broadcasts what changed.
    pub(crate) fn publish(&self, sampler: &mut Sampler, reading: Reading) {
        let previous = self.latest();
        let (sample, changes) = sampler.next(reading, &previous.sample, &self.peeks.peeked());
        let text = delta(&sample, &changes);
        let seq = sample.seq;
        // The latest first, then the delta: a client that subscribed, then took the latest,
        // skips deltas up to its seq and misses none after it.
        self.latest.send_replace(Arc::new(Published { sample, snapshot: OnceLock::new() }));
        // An error only means no client listens now.
        let _ = self.deltas.send(Frame { seq, text });
    }

    /// Counts a client in; the guard counts it out.
    pub(crate) fn client(self: &Arc<Self>) -> ClientGuard {
        // Relaxed: a statistic for /metrics.
        self.clients.fetch_add(1, Ordering::Relaxed);
        ClientGuard { hub: Arc::clone(self) }
    }
}

/// A connected client, counted in [`Hub::clients`] while it lives.
#[derive(Debug)]
pub(crate) struct ClientGuard {
    hub: Arc<Hub>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        // Relaxed: a statistic for /metrics.
        self.hub.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The delta message from `changes` in `sample`.
fn delta(sample: &Sample, changes: &Changes) -> Utf8Bytes {
    ServerMessage::Delta {
        seq: sample.seq,
        time_unix_ms: sample.time_unix_ms,
        dt_ms: changes.dt_ms,
        services: changes.services.iter().filter_map(|id| sample.services.get(id)).collect(),
        removed: &changes.removed,
        nodes: changes.nodes.iter().filter_map(|id| sample.nodes.get(id)).collect(),
        removed_nodes: &changes.removed_nodes,
        error: sample.error.as_deref(),
    }
    .text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_may_fall_five_seconds_behind_within_bounds() {
        assert_eq!(lag_limit(Duration::from_millis(250)), 20);
        assert_eq!(lag_limit(Duration::from_secs(2)), 8, "at least 8");
        assert_eq!(lag_limit(Duration::from_millis(1)), 1024, "at most 1024");
    }
}
