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

/// Implements [`WaitStrategy`] for a strategy whose inherent `wait` is generic over the
/// [`Signal`] it parks on: one event count, or several.
macro_rules! impl_wait_strategy {
    ($strategy:ty) => {
        impl super::WaitStrategy for $strategy {
            #[inline]
            fn wait_for<T>(
                &mut self,
                signal: &super::super::EventCount,
                deadline: Option<Instant>,
                poll: impl FnMut() -> Option<T>,
            ) -> Result<T, TimedOut> {
                self.wait(signal, deadline, poll)
            }

            #[inline]
            fn wait_for_any<T>(
                &mut self,
                signals: &super::AnyOf<'_>,
                deadline: Option<Instant>,
                poll: impl FnMut() -> Option<T>,
            ) -> Result<T, TimedOut> {
                self.wait(signals, deadline, poll)
            }
        }
    };
}

mod backoff;
mod blocking;
mod periodic;
mod spin;

use std::time::Instant;

pub use backoff::{Backoff, MIN_ADAPTIVE_SPINS};
pub use blocking::Blocking;
pub use periodic::{MIN_INTERVALS, Periodic, PeriodicStats, TARGET_SPIN, WINDOW};
pub use spin::{BusySpin, Yield};

use super::EventCount;
use super::event_count::{PreparedWait, WaitOutcome, wait_any};

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

    /// [`wait_for`](Self::wait_for) with several event counts, any of which the other sides
    /// notify (a WaitSet's sources): a strategy that parks sleeps on all of them at once
    /// ([`crate::wait_any`]). The built-in strategies spin, yield and park as they
    /// do on one; by default (a strategy of the caller's) it parks at once, as [`Blocking`].
    fn wait_for_any<T>(
        &mut self,
        signals: &AnyOf<'_>,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        blocking::park(signals, deadline, None, &mut poll)
    }
}

/// What a strategy parks on: one event count, or several as one ([`AnyOf`]).
pub(crate) trait Signal {
    /// A waiter announced on it: dropping it cancels.
    type Prepared<'a>
    where
        Self: 'a;

    /// Announces a waiter and takes its key (see [`EventCount::prepare_wait`]).
    fn prepare_wait(&self) -> Self::Prepared<'_>;

    /// Sleeps until a notify after `prepared`, or `deadline`.
    fn wait_until(prepared: Self::Prepared<'_>, deadline: Option<Instant>) -> WaitOutcome;
}

impl Signal for EventCount {
    type Prepared<'a> = PreparedWait<'a>;

    #[inline]
    fn prepare_wait(&self) -> PreparedWait<'_> {
        EventCount::prepare_wait(self)
    }

    #[inline]
    fn wait_until(prepared: PreparedWait<'_>, deadline: Option<Instant>) -> WaitOutcome {
        prepared.wait_until(deadline)
    }
}

/// Several event counts waited on as one ([`WaitStrategy::wait_for_any`]): a notify on any of
/// them wakes the waiter.
#[derive(Debug, Clone, Copy)]
pub struct AnyOf<'s>(pub &'s [&'s EventCount]);

impl Signal for AnyOf<'_> {
    type Prepared<'a>
        = Vec<PreparedWait<'a>>
    where
        Self: 'a;

    fn prepare_wait(&self) -> Vec<PreparedWait<'_>> {
        EventCount::prepare_waits(self.0)
    }

    fn wait_until(prepared: Vec<PreparedWait<'_>>, deadline: Option<Instant>) -> WaitOutcome {
        wait_any(&prepared, deadline)
    }
}

/// One of the built-in strategies, chosen at run time (by a binding to another language, a
/// command-line option or a configuration file): waits as the strategy it holds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Chosen {
    /// [`BusySpin`] (`"spin"`).
    BusySpin(BusySpin),
    /// [`Yield`] (`"yield"`).
    Yield(Yield),
    /// [`Backoff`] with its defaults (`"backoff"`).
    Backoff(Backoff),
    /// [`Blocking`] with its defaults (`"blocking"`).
    Blocking(Blocking),
    /// [`Periodic`] with its defaults (`"periodic"`).
    Periodic(Periodic),
}

impl Chosen {
    /// The names [`FromStr`](std::str::FromStr) takes.
    pub const NAMES: [&'static str; 5] = ["spin", "yield", "backoff", "blocking", "periodic"];
}

impl std::str::FromStr for Chosen {
    type Err = UnknownStrategy;

    fn from_str(name: &str) -> Result<Chosen, UnknownStrategy> {
        Ok(match name {
            "spin" => Chosen::BusySpin(BusySpin),
            "yield" => Chosen::Yield(Yield),
            "backoff" => Chosen::Backoff(Backoff::new()),
            "blocking" => Chosen::Blocking(Blocking::new()),
            "periodic" => Chosen::Periodic(Periodic::new()),
            other => return Err(UnknownStrategy(other.to_owned())),
        })
    }
}

/// A strategy name [`Chosen`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wait strategy {0:?}: use spin, yield, backoff, blocking or periodic")]
pub struct UnknownStrategy(pub String);

impl WaitStrategy for Chosen {
    fn wait_for<T>(
        &mut self,
        signal: &EventCount,
        deadline: Option<Instant>,
        poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        match self {
            Chosen::BusySpin(s) => s.wait_for(signal, deadline, poll),
            Chosen::Yield(s) => s.wait_for(signal, deadline, poll),
            Chosen::Backoff(s) => s.wait_for(signal, deadline, poll),
            Chosen::Blocking(s) => s.wait_for(signal, deadline, poll),
            Chosen::Periodic(s) => s.wait_for(signal, deadline, poll),
        }
    }

    fn wait_for_any<T>(
        &mut self,
        signals: &AnyOf<'_>,
        deadline: Option<Instant>,
        poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        match self {
            Chosen::BusySpin(s) => s.wait_for_any(signals, deadline, poll),
            Chosen::Yield(s) => s.wait_for_any(signals, deadline, poll),
            Chosen::Backoff(s) => s.wait_for_any(signals, deadline, poll),
            Chosen::Blocking(s) => s.wait_for_any(signals, deadline, poll),
            Chosen::Periodic(s) => s.wait_for_any(signals, deadline, poll),
        }
    }
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
