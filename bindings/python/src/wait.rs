//! Waiting from Python: the wait strategies by name, timeouts in seconds, and waits cut into
//! slices so that a signal (Ctrl-C) is seen while the GIL is released.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmlane::notify::{
    Backoff, Blocking, BusySpin, EventCount, Periodic, TimedOut, WaitStrategy, Yield,
};

/// The longest a wait runs with the GIL released before it checks for signals: a sample or
/// event that arrives wakes it at once; this only bounds how late Ctrl-C is seen.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// A wait strategy chosen by name.
#[derive(Debug)]
pub(crate) enum Strategy {
    /// `"blocking"`: sleep on the futex (the default).
    Blocking(Blocking),
    /// `"spin"`: poll without pause (a core to itself).
    Spin(BusySpin),
    /// `"yield"`: poll, yielding the CPU between polls.
    Yield(Yield),
    /// `"backoff"`: spin, then yield, then sleep.
    Backoff(Backoff),
    /// `"periodic"`: learn the arrival period, sleep until just before the next.
    Periodic(Periodic),
}

impl Strategy {
    /// The strategy called `name`.
    pub(crate) fn named(name: &str) -> PyResult<Strategy> {
        Ok(match name {
            "blocking" => Strategy::Blocking(Blocking::new()),
            "spin" => Strategy::Spin(BusySpin),
            "yield" => Strategy::Yield(Yield),
            "backoff" => Strategy::Backoff(Backoff::new()),
            "periodic" => Strategy::Periodic(Periodic::new()),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown wait strategy {name:?}: use 'blocking', 'spin', 'yield', \
                     'backoff' or 'periodic'"
                )));
            }
        })
    }
}

impl WaitStrategy for Strategy {
    fn wait_for<T>(
        &mut self,
        signal: &EventCount,
        deadline: Option<Instant>,
        poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        match self {
            Strategy::Blocking(s) => s.wait_for(signal, deadline, poll),
            Strategy::Spin(s) => s.wait_for(signal, deadline, poll),
            Strategy::Yield(s) => s.wait_for(signal, deadline, poll),
            Strategy::Backoff(s) => s.wait_for(signal, deadline, poll),
            Strategy::Periodic(s) => s.wait_for(signal, deadline, poll),
        }
    }
}

/// A timeout in seconds (`None`: none).
pub(crate) fn timeout(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("timeout {s} is not a number of seconds >= 0"))
            })
        })
        .transpose()
}

/// Calls `attempt` with the GIL released, each time with a slice of what is left of
/// `timeout` (none: wait for ever), until it gives `Some`, checking for signals between
/// slices. `None` once the timeout has passed.
pub(crate) fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> PyResult<Option<T>> + Send,
) -> PyResult<Option<T>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => SLICE,
        };
        let slice = left.min(SLICE);
        if let Some(value) = py.detach(|| attempt(slice))? {
            return Ok(Some(value));
        }
        py.check_signals()?;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(None);
        }
    }
}
