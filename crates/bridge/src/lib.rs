//! Carries shmlane topics, request/response and events between hosts over zenoh.
//!
//! A [`Bridge`] on each host joins one zenoh session (peer to peer over TCP, or through a
//! zenoh router) and carries the services its [`Rule`]s name:
//!
//! - **Topics.** Out: the bridge subscribes to a local topic while a remote peer listens, and
//!   puts each sample on the topic's key. In: it publishes each sample from the network into
//!   the local topic of the same name (created with the sender's type and settings if it does
//!   not exist), where local subscribers receive it zero-copy as from any publisher. Slices of
//!   any length travel as they are.
//! - **Types end to end.** Every sample carries its type (name, size, alignment, version) and
//!   the topic's settings in its zenoh attachment ([`wire`]); a receiving bridge delivers only
//!   into a local topic of the same type, and refuses the rest with a log line that names
//!   both types, counted as `type_mismatches`.
//! - **No loops.** A bridge never receives its own zenoh messages (`Locality::Remote`), and
//!   never sends back out what it delivered locally (see `echo`): two bridges that both carry
//!   a topic both ways do not echo.
//! - **Request/response.** A zenoh queryable per service: the bridge on the server's host is a
//!   client of the local server; the bridge on the clients' host is their local server, and
//!   sends each answer to the calling client alone.
//! - **Events.** Event ids, with the same rules.
//! - **Faults.** A local publisher sees the bridge as one more subscriber, under the topic's
//!   own overflow policy: a remote host that goes away makes the bridge drop its local
//!   subscriber (nothing is waited for), and the link coming back makes it subscribe again.
//!   Malformed or oversized messages are counted and dropped with a rate-limited log line.
//! - **Counters.** Per service ([`Bridge::stats`], [`Stats::to_json`]): samples and bytes
//!   in and out, drops, type mismatches, malformed messages, echoes skipped, rpc errors.
//!
//! The `shmlane-bridge` binary runs one from the command line (`shmlane-bridge --help`);
//! `docs/bridge-draft.md` is the guide.
//!
//! # Known limits
//!
//! - The facade does not tell a subscriber which publisher a sample came from, so a bridge
//!   that carries a topic both ways recognises its own samples by their bytes: a local sample
//!   byte-for-byte equal to one the bridge delivered at the same moment may be sent in its
//!   place (the remote host still gets every sample it did not publish, equal ones possibly
//!   in swapped order). A public `RawSample::publisher_slot()` and `RawPublisher::slot()`
//!   would make this exact.
//! - A type name longer than the 128 bytes a topic records travels as recorded (truncated).
//! - Rpc calls are carried one at a time per service.

#![forbid(unsafe_code)]

mod bridge;
pub mod cli;
mod config;
mod echo;
mod error;
mod event;
mod keys;
mod rpc;
mod stats;
mod topic;
pub mod wire;

pub use bridge::Bridge;
pub use config::{BridgeConfig, Direction, Rule, endpoint, zenoh_config};
pub use error::{BridgeError, ConfigError};
pub use keys::{DEFAULT_TEMPLATE, KeyTemplate, Kind};
pub use stats::{ServiceStats, Stats};
