//! [`Backoff`]: spin, then yield, then park.

use std::time::{Duration, Instant};

use super::super::sync::{spin_loop, yield_now};
use super::blocking::park;
use super::{Signal, TimedOut, expired};

/// Spins for a while, then yields for a while, then parks on the futex: busy-poll latency for
/// data that arrives soon after the previous, near-zero CPU through long gaps.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    spins: u32,
    yields: u32,
    recheck: Option<Duration>,
}

impl Backoff {
    /// 10 000 spins (a few µs to tens of µs), 100 yields, then parking with a 100 ms re-check.
    pub const fn new() -> Self {
        Backoff { spins: 10_000, yields: 100, recheck: Some(Duration::from_millis(100)) }
    }

    /// Polls with a spin hint between them before yielding.
    pub const fn spins(mut self, spins: u32) -> Self {
        self.spins = spins;
        self
    }

    /// Polls with a `sched_yield` between them before parking.
    pub const fn yields(mut self, yields: u32) -> Self {
        self.yields = yields;
        self
    }

    /// Once parked, re-polls at least this often without a notify (see
    /// [`Blocking`](super::Blocking)); `None` trusts notifies alone.
    pub const fn recheck_every(mut self, recheck: Option<Duration>) -> Self {
        self.recheck = recheck;
        self
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Spins between reads of the clock.
const SPINS_PER_CLOCK_READ: u32 = 64;

impl Backoff {
    fn wait<S: Signal + ?Sized, T>(
        &mut self,
        signal: &S,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        for spin in 0..self.spins {
            if let Some(value) = poll() {
                return Ok(value);
            }
            if spin % SPINS_PER_CLOCK_READ == SPINS_PER_CLOCK_READ - 1 && expired(deadline) {
                return poll().ok_or(TimedOut);
            }
            spin_loop();
        }
        for _ in 0..self.yields {
            if let Some(value) = poll() {
                return Ok(value);
            }
            if expired(deadline) {
                return poll().ok_or(TimedOut);
            }
            yield_now();
        }
        park(signal, deadline, self.recheck, &mut poll)
    }
}

impl_wait_strategy!(Backoff);
