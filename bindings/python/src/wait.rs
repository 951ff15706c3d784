//! Waiting from Python: the wait strategies by name, timeouts in seconds, and waits cut into
//! slices so that a signal (Ctrl-C) is seen while the GIL is released.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmlane::notify::{Chosen, UnknownStrategy};

/// The longest a wait runs with the GIL released before it checks for signals: a sample or
/// event that arrives wakes it at once; this only bounds how late Ctrl-C is seen.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// A wait strategy chosen by name: `"blocking"` (the default), `"spin"`, `"yield"`,
/// `"backoff"` or `"periodic"`.
pub(crate) type Strategy = Chosen;

/// The strategy called `name`.
pub(crate) fn strategy_named(name: &str) -> PyResult<Strategy> {
    name.parse().map_err(|e: UnknownStrategy| PyValueError::new_err(e.to_string()))
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
