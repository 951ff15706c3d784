//! The futex edge: sleep while a 32-bit word holds an expected value, and wake the sleepers.
//!
//! | build | `wait` | `wake` |
//! |---|---|---|
//! | Linux, Android | `FUTEX_WAIT` without `FUTEX_PRIVATE_FLAG`: the kernel keys the queue by the page's inode and offset, so sleepers in other processes that map the word are found | `FUTEX_WAKE`, same key |
//! | other Unix (fallback) | sleeps 50 µs, doubling to 1 ms, until the word changes or the deadline passes | nothing: sleepers notice the word change |
//! | `loom` | a `Mutex` + `Condvar` per word, which also returns spuriously when told to | `Condvar::notify_*` |
//!
//! A [`WaitQueue`] travels with each futex word: zero-sized on a real OS (the kernel holds the
//! queue), the Mutex + Condvar under loom. `EINTR` is retried with the time left.

use std::time::Instant;

use super::sync::AtomicU32;

/// How a [`WaitQueue::wait`] ended. Every outcome but `TimedOut` may be spurious: callers
/// re-check the word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken by a `wake`, or spuriously.
    Woken,
    /// The word no longer held the expected value when the wait began.
    Changed,
    /// The deadline passed.
    TimedOut,
}

on_shared_memory! {
    /// The sleepers of one futex word: none here, the kernel holds them (see the module table).
    #[derive(Debug, Default)]
    #[repr(C)]
    pub(crate) struct WaitQueue {}
}

in_model! {
    /// The sleepers of one futex word (see the module table).
    #[derive(Debug, Default)]
    pub(crate) struct WaitQueue {
        model: model::Model,
    }
}

on_shared_memory! {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    impl WaitQueue {
        pub(crate) const fn new() -> Self {
            WaitQueue {}
        }

        /// Sleeps while `word` holds `expected`, until woken or `deadline`.
        pub(crate) fn wait(
            &self,
            word: &AtomicU32,
            expected: u32,
            deadline: Option<Instant>,
        ) -> FutexWait {
            use rustix::io::Errno;
            use rustix::thread::futex;
            loop {
                let timeout = match deadline {
                    None => None,
                    Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => Some(futex::Timespec {
                            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                            tv_nsec: left.subsec_nanos().into(),
                        }),
                        _ => return FutexWait::TimedOut,
                    },
                };
                // No PRIVATE flag: the word may be in a segment other processes wait on.
                return match futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()) {
                    Ok(()) => FutexWait::Woken,
                    Err(Errno::AGAIN) => FutexWait::Changed,
                    Err(Errno::TIMEDOUT) => FutexWait::TimedOut,
                    Err(Errno::INTR) => continue,
                    // EFAULT/EINVAL/ENOSYS cannot come from a valid `&AtomicU32` on Linux ≥ 2.6; if
                    // a sandbox refuses futexes anyway, degrade to a short sleep, never a busy loop.
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_micros(100));
                        FutexWait::Woken
                    }
                };
            }
        }

        /// Wakes up to `count` sleepers of `word`; returns how many woke.
        pub(crate) fn wake(&self, word: &AtomicU32, count: u32) -> usize {
            // The kernel reads the count as an `int`: `u32::MAX` would be -1 and wake one sleeper.
            // `INT_MAX` means "all", as in glibc.
            let count = count.min(i32::MAX as u32);
            // An error here (only EFAULT/EINVAL, impossible for a valid reference) leaves sleepers
            // to their deadlines, which is all a failed wake can do.
            rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), count).unwrap_or(0)
        }
    }
}

on_shared_memory! {
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    impl WaitQueue {
        pub(crate) const fn new() -> Self {
            WaitQueue {}
        }

        /// Fallback without a futex: polls `word` with growing sleeps (50 µs to 1 ms).
        pub(crate) fn wait(
            &self,
            word: &AtomicU32,
            expected: u32,
            deadline: Option<Instant>,
        ) -> FutexWait {
            use std::time::Duration;
            let mut nap = Duration::from_micros(50);
            let mut slept = false;
            loop {
                // Relaxed: the caller re-reads the word with the ordering it needs.
                if word.load(super::sync::Ordering::Relaxed) != expected {
                    return if slept { FutexWait::Woken } else { FutexWait::Changed };
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return FutexWait::TimedOut;
                }
                std::thread::sleep(deadline.map_or(nap, |d| nap.min(d - now)));
                slept = true;
                nap = (nap * 2).min(Duration::from_millis(1));
            }
        }

        /// Nothing to do: sleepers poll the word.
        pub(crate) fn wake(&self, _word: &AtomicU32, _count: u32) -> usize {
            0
        }
    }
}

in_model! {
    impl WaitQueue {
        /// A queue whose first `spurious` waits return at once, as a real futex may.
        pub(crate) fn with_spurious_wakeups(spurious: usize) -> Self {
            WaitQueue { model: model::Model::new(spurious) }
        }

        /// Sleeps on the model's Condvar while `word` holds `expected`. A wait with a deadline
        /// returns `TimedOut` without sleeping: a timer may fire at any moment, and this is the
        /// moment that tests the caller's timeout path (loom's Condvar never times out).
        pub(crate) fn wait(
            &self,
            word: &AtomicU32,
            expected: u32,
            deadline: Option<Instant>,
        ) -> FutexWait {
            self.model.wait(word, expected, deadline.is_some())
        }

        /// Wakes up to `count` sleepers.
        pub(crate) fn wake(&self, word: &AtomicU32, count: u32) -> usize {
            self.model.wake(word, count)
        }
    }
}

in_model! {
    mod model {
        use loom::sync::{Condvar, Mutex};

        use super::FutexWait;
        use super::super::sync::{AtomicU32, Ordering};

        /// The kernel's futex hash bucket, modelled: the lock makes "compare the word, then sleep"
        /// atomic with respect to `wake`, as the bucket lock does.
        #[derive(Debug, Default)]
        pub(super) struct Model {
            /// Count of sleepers, as the kernel's queue would hold them.
            sleepers: Mutex<usize>,
            condvar: Condvar,
            /// Waits that still return spuriously, at once. Instrumentation, not shared state.
            spurious: std::sync::atomic::AtomicUsize,
        }

        impl Model {
            pub(super) fn new(spurious: usize) -> Self {
                Model { spurious: spurious.into(), ..Model::default() }
            }

            pub(super) fn wait(&self, word: &AtomicU32, expected: u32, timed: bool) -> FutexWait {
                let spurious = self
                    .spurious
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |left| left.checked_sub(1),
                    )
                    .is_ok();
                let mut sleepers = self.sleepers.lock().unwrap();
                // Relaxed: the kernel reads the word with no ordering either; the bucket lock
                // orders it against `wake`.
                if word.load(Ordering::Relaxed) != expected {
                    return FutexWait::Changed;
                }
                if spurious {
                    return FutexWait::Woken;
                }
                if timed {
                    return FutexWait::TimedOut;
                }
                *sleepers += 1;
                sleepers = self.condvar.wait(sleepers).unwrap();
                *sleepers -= 1;
                FutexWait::Woken
            }

            pub(super) fn wake(&self, _word: &AtomicU32, count: u32) -> usize {
                let sleepers = self.sleepers.lock().unwrap();
                let woken = (*sleepers).min(count as usize);
                if count == 1 {
                    self.condvar.notify_one();
                } else {
                    self.condvar.notify_all();
                }
                woken
            }
        }
    }
}
