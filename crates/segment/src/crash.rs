//! Crash points: named instants at which a test makes this process die, as `kill -9` would,
//! to prove that survivors recover from a peer that died exactly there.
//!
//! Built only with the `crash-points` feature (tests enable it; release builds of users do
//! not). Each crate that places points has a `crash-points` feature that forwards to this
//! one, because [`crash_point!`](crate::crash_point!) checks the feature of the crate it
//! expands in. Without the feature a point expands to nothing.
//!
//! A process is armed by its environment: `SHMLANE_CRASH_AT=NAME` kills it (SIGKILL, sent to
//! itself: no destructor, no unwinding, no flush) the first time it reaches point `NAME`;
//! `NAME:N` the N-th time. Names are `crate.operation.instant`, listed where they are placed
//! (`docs/reliability.md` has the table).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Environment variable that arms a process: `NAME` or `NAME:N`.
pub const CRASH_AT_ENV: &str = "SHMLANE_CRASH_AT";

/// The armed point and the hit on which to die, read once.
fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(CRASH_AT_ENV).ok()?;
            Some(match spec.rsplit_once(':') {
                Some((name, n)) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                    (name.to_owned(), n.parse().unwrap_or(1))
                }
                _ => (spec, 1),
            })
        })
        .as_ref()
}

/// Called by [`crash_point!`](crate::crash_point!): dies here if `point` is the armed one and
/// this is the armed hit.
#[doc(hidden)]
pub fn reached(point: &'static str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some((name, on_hit)) = armed() else { return };
    if name != point {
        return;
    }
    // Relaxed: a counter of this process's own hits; nothing is published through it.
    if HITS.fetch_add(1, Ordering::Relaxed) + 1 == *on_hit {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        // SIGKILL to ourselves is delivered before `kill` returns; never go on past the point.
        std::process::abort();
    }
}
