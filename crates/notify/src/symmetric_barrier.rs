//! The event count's fences without `membarrier`: both halves of the Dekker pair are full
//! SeqCst fences. Used where the kernel has no `membarrier` (Unix other than Linux), and by
//! the loom instance (`model`), which cannot model a barrier run in another thread: its
//! models check this symmetric protocol, and the asymmetric one (`barrier.rs`) rests on the
//! kernel's contract and the cross-process tests.

use super::sync::{Ordering, fence};

/// The notifier's fence, between its change of the condition and its load of `waiters`.
pub(crate) fn notifier_fence() {
    fence(Ordering::SeqCst);
}

/// The waiter's fence, between its addition to `waiters` and its re-check of the condition.
pub(crate) fn waiter_fence() {
    fence(Ordering::SeqCst);
}

/// Whether this process's notifiers skip the hardware fence: never without `membarrier`.
pub fn asymmetric_notify() -> bool {
    false
}

/// `deadline` as it is: no sleep is ever capped here.
pub(crate) fn sleep_deadline(
    deadline: Option<std::time::Instant>,
) -> (Option<std::time::Instant>, bool) {
    (deadline, false)
}
