//! [`Blocking`]: park on the futex until notified.

use std::time::{Duration, Instant};

use super::super::EventCount;
use super::{AnyOf, Signal, TimedOut, WaitStrategy, earliest, expired};

/// Parks on the event count's futex until notified: no CPU while idle, a futex wake-up of
/// latency (microseconds; about 20 µs when the waiter's core is idle in a VM).
///
/// It re-polls at least every `recheck` interval even without a notify (default 100 ms), a
/// backstop against missed wake-ups that the protocol cannot prevent: a peer that corrupts the
/// event count, or a notifier that forgot to notify.
#[derive(Debug, Clone, Copy)]
pub struct Blocking {
    recheck: Option<Duration>,
}

impl Blocking {
    /// Blocking with the default 100 ms re-check.
    pub const fn new() -> Self {
        Blocking { recheck: Some(Duration::from_millis(100)) }
    }

    /// Re-polls at least this often without a notify; `None` trusts notifies alone.
    pub const fn recheck_every(mut self, recheck: Option<Duration>) -> Self {
        self.recheck = recheck;
        self
    }
}

impl Default for Blocking {
    fn default() -> Self {
        Blocking::new()
    }
}

impl WaitStrategy for Blocking {
    fn wait_for<T>(
        &mut self,
        signal: &EventCount,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        park(signal, deadline, self.recheck, &mut poll)
    }

    fn wait_for_any<T>(
        &mut self,
        signals: &AnyOf<'_>,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        park(signals, deadline, self.recheck, &mut poll)
    }
}

/// The blocking loop, shared by the strategies that end up parking: poll; announce a waiter;
/// poll again (a value published before the announcement is seen here); sleep until notified,
/// the next re-check, or `deadline`.
pub(super) fn park<S: Signal + ?Sized, T>(
    signal: &S,
    deadline: Option<Instant>,
    recheck: Option<Duration>,
    poll: &mut impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    loop {
        if let Some(value) = poll() {
            return Ok(value);
        }
        let wait = signal.prepare_wait();
        // Read the clock before the poll, so a timeout is reported only after a poll made at
        // or after the deadline.
        let timed_out = expired(deadline);
        if let Some(value) = poll() {
            return Ok(value);
        }
        if timed_out {
            return Err(TimedOut);
        }
        let wake_by = earliest(deadline, recheck.and_then(|r| Instant::now().checked_add(r)));
        S::wait_until(wait, wake_by);
    }
}
