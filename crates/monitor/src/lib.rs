//! The live monitor of shmlane (`shmlane monitor`): which topics, rpc services and events
//! exist on a host, who publishes and subscribes, message rates, queue fill, drops, held
//! samples and dead peers, over the web's own protocols.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /` | a page (served from the binary) that lists services and nodes, draws rate and drop sparklines, highlights dead peers and full queues, and peeks at a topic's latest sample |
//! | `GET /api/services[?namespace=NS]` | every service with its slot holders, liveness and counters (JSON) |
//! | `GET /api/services/{name}` | one service in detail, as `shmlane inspect` shows it; `{name}` an id (`app.topic.ticks`) or a name only one service has (`ticks`) |
//! | `GET /api/nodes[?namespace=NS]` | the registered nodes of live processes |
//! | `GET /api/live` | a WebSocket: a snapshot, then a delta every interval |
//! | `GET /metrics` | the Prometheus text format |
//!
//! Errors are JSON `{"error", "message", "status"}` with their status code: 400 for a name the
//! facade would refuse, 404 for an unknown service or path, 409 for a name several services
//! answer to, 503 when `max_clients` WebSocket clients are connected.
//!
//! One sampler task reads shared memory once per interval through the facade's read-only
//! discovery (`shmlane::discovery`), however many clients watch: the WebSocket and `/metrics`
//! are served from its latest sample, the REST endpoints read afresh. The monitor never writes
//! shared memory; the one exception a user asks for is a sample peek, an ordinary subscriber
//! (with a node of its own) that exists only while a page shows that topic, and not at all
//! with [`Config::peek`] off (`--no-peek`).
//!
//! ```no_run
//! let config = shmlane_monitor::Config::default(); // 127.0.0.1:7878, /dev/shm, 250 ms
//! shmlane_monitor::run(config, |addr| eprintln!("listening on http://{addr}"))?;
//! # Ok::<(), shmlane_monitor::MonitorError>(())
//! ```

#![forbid(unsafe_code)]

mod api;
mod error;
mod hub;
mod live;
mod metrics;
mod model;
mod names;
mod page;
mod peek;
mod sampler;
mod server;

pub use error::MonitorError;
pub use server::{
    Config, DEFAULT_INTERVAL, DEFAULT_LISTEN, DEFAULT_MAX_CLIENTS, MAX_INTERVAL, MIN_INTERVAL,
    Monitor, run,
};
