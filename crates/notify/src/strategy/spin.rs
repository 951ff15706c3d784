//! Strategies that never sleep: [`BusySpin`] and [`Yield`].

use std::time::Instant;

use super::super::sync::{spin_loop, yield_now};
use super::{Signal, TimedOut, expired};

/// Polls in a tight loop with a spin hint: the lowest latency, one core fully used. Pin the
/// waiting thread to a core of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusySpin;

/// Polls between which the clock is not read (reading it costs about as much as a poll).
const POLLS_PER_CLOCK_READ: u32 = 64;

impl BusySpin {
    #[inline]
    fn wait<S: Signal + ?Sized, T>(
        &mut self,
        _signal: &S,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        loop {
            for _ in 0..POLLS_PER_CLOCK_READ {
                if let Some(value) = poll() {
                    return Ok(value);
                }
                spin_loop();
            }
            if expired(deadline) {
                return poll().ok_or(TimedOut);
            }
        }
    }
}

impl_wait_strategy!(BusySpin);

/// Polls, yielding the CPU (`sched_yield`) between polls: as fast as [`BusySpin`] when the core
/// is otherwise idle, and it lets other runnable threads of the core go first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Yield;

impl Yield {
    fn wait<S: Signal + ?Sized, T>(
        &mut self,
        _signal: &S,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        loop {
            if let Some(value) = poll() {
                return Ok(value);
            }
            if expired(deadline) {
                return poll().ok_or(TimedOut);
            }
            yield_now();
        }
    }
}

impl_wait_strategy!(Yield);
