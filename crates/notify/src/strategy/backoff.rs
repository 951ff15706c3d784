//! [`Backoff`]: spin, then yield, then park.

use std::time::{Duration, Instant};

use super::super::sync::{spin_loop, yield_now};
use super::blocking::park;
use super::{Signal, TimedOut, expired};

/// Spins for a while, then yields for a while, then parks on the futex: busy-poll latency for
/// data that arrives soon after the previous, near-zero CPU through long gaps.
///
/// [`adaptive`](Backoff::adaptive) makes it learn whether spinning pays: a peer on the same
/// core cannot run while we spin, so every spin there is wasted.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    spins: u32,
    yields: u32,
    recheck: Option<Duration>,
    /// Adaptive: the most spins the next wait makes (at most `spins`); `None`: always `spins`.
    budget: Option<u32>,
}

impl Backoff {
    /// 10 000 spins (a few µs to tens of µs), 100 yields, then parking with a 100 ms re-check.
    pub const fn new() -> Self {
        Backoff {
            spins: 10_000,
            yields: 100,
            recheck: Some(Duration::from_millis(100)),
            budget: None,
        }
    }

    /// Spins only as long as spinning has lately paid: after a wait that its spins did not end
    /// (it yielded or parked) the next wait spins half as long, down to
    /// [`MIN_ADAPTIVE_SPINS`]; after one a spin ended, twice as long, up to
    /// [`spins`](Backoff::spins). For a waiter whose peer may share its core (a publisher
    /// waiting for room that a subscriber on the same CPU makes), where spinning only delays
    /// the yield that lets the peer run.
    pub const fn adaptive(mut self) -> Self {
        self.budget = Some(u32::MAX);
        self
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

/// The fewest spins an [adaptive](Backoff::adaptive) wait makes (well under a microsecond), so
/// that it notices when spinning starts to pay again.
pub const MIN_ADAPTIVE_SPINS: u32 = 16;

impl Backoff {
    /// The spins the next wait makes.
    fn spin_budget(&self) -> u32 {
        self.budget.map_or(self.spins, |budget| budget.min(self.spins))
    }

    /// Adapts the budget to how the last wait ended.
    fn learn(&mut self, spin_ended_it: bool) {
        let spins = self.spin_budget();
        if let Some(budget) = &mut self.budget {
            *budget = if spin_ended_it {
                spins.saturating_mul(2).max(MIN_ADAPTIVE_SPINS)
            } else {
                (spins / 2).max(MIN_ADAPTIVE_SPINS)
            };
        }
    }

    fn wait<S: Signal + ?Sized, T>(
        &mut self,
        signal: &S,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        let spins = self.spin_budget();
        for spin in 0..spins {
            if let Some(value) = poll() {
                // A value at the first poll says nothing about spinning.
                if spin > 0 {
                    self.learn(true);
                }
                return Ok(value);
            }
            if spin % SPINS_PER_CLOCK_READ == SPINS_PER_CLOCK_READ - 1 && expired(deadline) {
                return poll().ok_or(TimedOut);
            }
            spin_loop();
        }
        self.learn(false);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_spins_halve_after_failed_spinning_and_double_after_paid_spinning() {
        let mut backoff = Backoff::new().spins(1_000).adaptive();
        assert_eq!(backoff.spin_budget(), 1_000, "starts at the full spins");
        let mut expected = 1_000;
        for _ in 0..10 {
            backoff.learn(false);
            expected = (expected / 2).max(MIN_ADAPTIVE_SPINS);
            assert_eq!(backoff.spin_budget(), expected);
        }
        assert_eq!(backoff.spin_budget(), MIN_ADAPTIVE_SPINS, "never below the floor");
        for _ in 0..10 {
            backoff.learn(true);
            expected = (expected * 2).min(1_000);
            assert_eq!(backoff.spin_budget(), expected);
        }
        assert_eq!(backoff.spin_budget(), 1_000, "never above `spins`");
        // Setting fewer spins later caps the learnt budget.
        assert_eq!(backoff.spins(100).spin_budget(), 100);
    }

    #[test]
    fn a_fixed_backoff_never_adapts() {
        let mut backoff = Backoff::new().spins(300);
        backoff.learn(false);
        backoff.learn(false);
        assert_eq!(backoff.spin_budget(), 300);
    }
}
