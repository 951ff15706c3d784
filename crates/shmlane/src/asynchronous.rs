//! async/await over the blocking API: `receive_async`, `wait_async`, `call_async`. Any
//! executor: a pending future waits through `shmlane_notify::reactor`, one process-wide thread
//! that sleeps on every pending source at once (`futex_waitv`) and wakes the tasks; nothing
//! polls while idle. The futures borrow their source, which stays `!Sync`: run them on one
//! thread (tokio's `LocalSet` or a current-thread runtime), or move the source into a task.
//! Cancellation is safe: a sample is taken only by the poll that returns it, so a dropped
//! future loses nothing, and dropping deregisters its wait.

use shmlane_notify::EventCount;
use shmlane_notify::reactor;

use crate::error::ReceiveError;

/// Polls `poll` until it yields, sleeping on `signal` (notified after every change that may
/// make it succeed) through the reactor in between: the event count's protocol (announce,
/// re-check, sleep), with the reactor sleeping for the task.
pub(crate) async fn until<R>(
    signal: &EventCount,
    mut poll: impl FnMut() -> Result<Option<R>, ReceiveError>,
) -> Result<R, ReceiveError> {
    loop {
        if let Some(value) = poll()? {
            return Ok(value);
        }
        let wait = signal.prepare_wait();
        if let Some(value) = poll()? {
            return Ok(value);
        }
        reactor::notified(wait).await?;
    }
}
