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

/// One futex word of a multi-word wait ([`wait_any`]): sleep while it holds `expected`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watched<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) expected: u32,
    /// Its sleepers: the kernel's on a real OS, read by the loom instance's model only.
    #[allow(dead_code)]
    pub(crate) queue: &'a WaitQueue,
}

/// Most words one `futex_waitv` call sleeps on (the kernel's limit); a wait on more polls
/// (see [`wait_any`](crate::wait_any)).
#[allow(dead_code)] // the loom instance (`model`) does not export it
pub const WAITV_MAX: usize = 128;

/// Polls `words` with growing sleeps (50 µs to 1 ms) until one no longer holds its expected
/// value or `deadline` passes: the fallback of [`wait_any`] where `futex_waitv` is missing
/// (Linux before 5.16, other Unix) or the words are more than [`WAITV_MAX`].
#[allow(dead_code)] // the loom instance has a model of its own
fn poll_any(words: &[Watched<'_>], deadline: Option<Instant>) -> FutexWait {
    use std::time::Duration;
    let mut nap = Duration::from_micros(50);
    let mut slept = false;
    loop {
        // Relaxed: the caller re-reads the words with the ordering it needs.
        if words.iter().any(|w| w.word.load(super::sync::Ordering::Relaxed) != w.expected) {
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

    /// Whether `futex_waitv` answered `ENOSYS` once (Linux before 5.16): then every multi-word
    /// wait polls.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Sleeps while every word of `words` holds its expected value, until one is woken (or
    /// changes) or `deadline` passes: one `futex_waitv` (Linux 5.16+) for up to
    /// [`WAITV_MAX`] words, shared (not private) futexes as in [`WaitQueue::wait`]; polling
    /// ([`poll_any`]) for more, or on older kernels.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn wait_any(words: &[Watched<'_>], deadline: Option<Instant>) -> FutexWait {
        use rustix::io::Errno;
        use rustix::thread::futex::{self, Wait, WaitFlags, WaitPtr, WaitvFlags};
        use rustix::time::ClockId;
        use std::sync::atomic::Ordering::Relaxed;
        if words.len() > WAITV_MAX || words.is_empty() || NO_WAITV.load(Relaxed) {
            return poll_any(words, deadline);
        }
        let mut waits = [Wait::new(); WAITV_MAX];
        for (wait, watched) in waits.iter_mut().zip(words) {
            wait.val = u64::from(watched.expected);
            wait.uaddr = WaitPtr::new(watched.word.as_ptr().cast());
            // No PRIVATE flag: the word may be in a segment other processes wake.
            wait.flags = WaitFlags::SIZE_U32;
        }
        // futex_waitv's timeout is absolute, on the clock given.
        let timeout = deadline.map(absolute);
        loop {
            return match futex::waitv(&waits[..words.len()], WaitvFlags::empty(), timeout.as_ref(), ClockId::Monotonic) {
                Ok(_) => FutexWait::Woken,
                Err(Errno::AGAIN) => FutexWait::Changed,
                Err(Errno::TIMEDOUT) => FutexWait::TimedOut,
                Err(Errno::INTR) => continue,
                Err(Errno::NOSYS) => {
                    NO_WAITV.store(true, Relaxed);
                    poll_any(words, deadline)
                }
                // As in `WaitQueue::wait`: degrade to a short sleep, never a busy loop.
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                    FutexWait::Woken
                }
            };
        }
    }

    /// [`wait_any`] on words given by address, which this process may not read (their owner
    /// may unmap them at any moment: only the kernel looks at them, and an address that is
    /// gone is its `EFAULT`). Returns after a wake-up, a change, an error or `deadline`; where
    /// `futex_waitv` is missing it sleeps 1 ms instead (the caller re-checks the words where it
    /// may read them). The reactor's sleep.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn wait_any_raw(words: &[(*const AtomicU32, u32)], deadline: Option<Instant>) {
        use rustix::io::Errno;
        use rustix::thread::futex::{self, Wait, WaitFlags, WaitPtr, WaitvFlags};
        use rustix::time::ClockId;
        use std::sync::atomic::Ordering::Relaxed;
        let nap = || std::thread::sleep(std::time::Duration::from_millis(1));
        if words.len() > WAITV_MAX || words.is_empty() || NO_WAITV.load(Relaxed) {
            return nap();
        }
        let mut waits = [Wait::new(); WAITV_MAX];
        for (wait, &(word, expected)) in waits.iter_mut().zip(words) {
            wait.val = u64::from(expected);
            wait.uaddr = WaitPtr::new(word.cast_mut().cast());
            wait.flags = WaitFlags::SIZE_U32;
        }
        let timeout = deadline.map(absolute);
        let waits = &waits[..words.len()];
        // Woken, changed, timed out, interrupted, or an address gone: the caller looks.
        let slept = futex::waitv(waits, WaitvFlags::empty(), timeout.as_ref(), ClockId::Monotonic);
        if slept == Err(Errno::NOSYS) {
            NO_WAITV.store(true, Relaxed);
            nap();
        }
    }

    /// `deadline` as an absolute `CLOCK_MONOTONIC` time, as `futex_waitv` takes it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn absolute(deadline: Instant) -> rustix::time::Timespec {
        use rustix::time::{ClockId, Timespec, clock_gettime};
        let left = deadline.saturating_duration_since(Instant::now());
        let now = clock_gettime(ClockId::Monotonic);
        let nanos = now.tv_nsec as u64 + u64::from(left.subsec_nanos());
        Timespec {
            tv_sec: now
                .tv_sec
                .saturating_add(i64::try_from(left.as_secs()).unwrap_or(i64::MAX))
                .saturating_add((nanos / 1_000_000_000) as i64),
            tv_nsec: (nanos % 1_000_000_000) as _,
        }
    }

    /// Other Unix: no futex; the caller re-checks the words every 1 ms.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn wait_any_raw(_words: &[(*const AtomicU32, u32)], _deadline: Option<Instant>) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }

    /// Other Unix: no futex, so the multi-word wait polls ([`poll_any`]).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn wait_any(words: &[Watched<'_>], deadline: Option<Instant>) -> FutexWait {
        poll_any(words, deadline)
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

    /// `futex_waitv`, modelled: registers with each word's queue (checking the word under its
    /// lock, as the kernel does under each bucket's), then sleeps until any `wake` on them. A
    /// wait with a deadline returns `TimedOut` without sleeping, as `WaitQueue::wait` does.
    pub(crate) fn wait_any(words: &[Watched<'_>], deadline: Option<Instant>) -> FutexWait {
        model::wait_any(words, deadline.is_some())
    }
}

in_model! {
    mod model {
        use loom::sync::{Arc, Condvar, Mutex};

        use super::FutexWait;
        use super::super::sync::{AtomicU32, Ordering};

        /// The kernel's futex hash bucket, modelled: the lock makes "compare the word, then sleep"
        /// atomic with respect to `wake`, as the bucket lock does.
        #[derive(Debug, Default)]
        pub(super) struct Model {
            /// Count of sleepers, as the kernel's queue would hold them.
            sleepers: Mutex<usize>,
            condvar: Condvar,
            /// Multi-word waiters registered on this word ([`wait_any`]).
            multi: Mutex<Vec<Arc<Multi>>>,
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
                let mut woken = (*sleepers).min(count as usize);
                if count == 1 {
                    self.condvar.notify_one();
                } else {
                    self.condvar.notify_all();
                }
                drop(sleepers);
                // Multi-word waiters too (a real wake wakes at most `count` of all sleepers;
                // waking them all here is a superset, which only adds spurious wake-ups).
                for multi in self.multi.lock().unwrap().drain(..) {
                    *multi.woken.lock().unwrap() = true;
                    multi.condvar.notify_one();
                    woken += 1;
                }
                woken
            }
        }

        /// One multi-word waiter: set and signalled by a `wake` on any of its words.
        #[derive(Debug, Default)]
        pub(super) struct Multi {
            woken: Mutex<bool>,
            condvar: Condvar,
        }

        /// See `super::wait_any`.
        pub(super) fn wait_any(words: &[super::Watched<'_>], timed: bool) -> FutexWait {
            let me = Arc::new(Multi::default());
            let mut outcome = None;
            for watched in words {
                let mut multi = watched.queue.model.multi.lock().unwrap();
                // Relaxed: as in `Model::wait`, the lock orders it against `wake`.
                if watched.word.load(Ordering::Relaxed) != watched.expected {
                    outcome = Some(FutexWait::Changed);
                    break;
                }
                multi.push(Arc::clone(&me));
            }
            if outcome.is_none() {
                outcome = Some(if timed {
                    FutexWait::TimedOut
                } else {
                    let mut woken = me.woken.lock().unwrap();
                    while !*woken {
                        woken = me.condvar.wait(woken).unwrap();
                    }
                    FutexWait::Woken
                });
            }
            for watched in words {
                watched.queue.model.multi.lock().unwrap().retain(|m| !Arc::ptr_eq(m, &me));
            }
            outcome.unwrap_or(FutexWait::Woken)
        }
    }
}
