//! Wait strategies: how a consumer (or a producer facing a full queue) spends the time until
//! its next poll succeeds, trading latency against CPU, as Aeron's idle strategies and the
//! Disruptor's wait strategies do.
//!
//! | strategy | waits by | wake-up latency | CPU while idle |
//! |---|---|---|---|
//! | [`BusySpin`] | spinning | a cache-line transfer | one core |
//! | [`Yield`] | `sched_yield` | a cache-line transfer, or a time slice if another thread runs | one core, shared |
//! | [`Backoff`] | spins, then yields, then parks on the futex | as `BusySpin` at first, a futex wake-up once parked | near zero once parked |
//! | [`Blocking`] | parking on the futex | a futex wake-up (µs) | near zero |
//! | [`Periodic`] | parking until just before the next expected arrival, then spinning | as `BusySpin` for periodic traffic | a small fraction of a core |
//!
//! Every strategy is used the same way: [`WaitStrategy::wait_for`] polls until the poll
//! yields a value, and the other side calls [`EventCount::notify_one`] or
//! [`notify_all`](EventCount::notify_all) after each change that may make the poll succeed
//! (cheap: no system call unless someone is parked).

mod backoff;
mod blocking;
mod periodic;
mod spin;

use std::time::Instant;

pub use backoff::Backoff;
pub use blocking::Blocking;
pub use periodic::{MIN_INTERVALS, Periodic, PeriodicStats, TARGET_SPIN, WINDOW};
pub use spin::{BusySpin, Yield};

use super::EventCount;

/// How to wait for a poll to succeed. Strategies are values (some learn), owned by the waiting
/// side; `wait_for` is generic so the poll inlines into the strategy's loop.
pub trait WaitStrategy {
    /// Calls `poll` until it returns `Some`, waiting between calls in this strategy's way, and
    /// returns the value. `signal` is the event count the other side notifies after each
    /// change that may make `poll` succeed. Gives up with [`TimedOut`] once a poll made at or
    /// after `deadline` (none: no limit) came back empty.
    fn wait_for<T>(
        &mut self,
        signal: &EventCount,
        deadline: Option<Instant>,
        poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut>;
}

/// Nothing arrived before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "nothing arrived before the deadline: the other side is slow, stopped, or not notifying \
     the event count after it publishes; retry, or use a longer timeout"
)]
pub struct TimedOut;

/// Whether `deadline` has passed (reads the clock only if there is one).
#[inline]
fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// The earlier of two optional deadlines (none is "never").
#[inline]
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
