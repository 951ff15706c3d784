//! Waiting on event counts from async code, with any executor: [`notified`] turns a
//! [`PreparedWait`] into a future that completes once its event count is notified. One
//! reactor thread per process (started on first use) sleeps on every event count a pending
//! future waits for, in one `futex_waitv`, and wakes the futures' wakers; thousands of pending
//! futures cost that one sleeping thread, and nothing polls while idle.
//!
//! The protocol is the event count's ([`EventCount`]) with the reactor sleeping in the
//! future's place: the future announces itself (`prepare_wait`, before its last check of the
//! condition), registers its key with the reactor and returns `Pending`; the reactor compares
//! each registered word with its key (under the table's lock) and sleeps while all are
//! unchanged. A registration wakes the reactor through its own event count so that it sleeps
//! on the new word too. A dropped future deregisters under the same lock, so the reactor never
//! reads a word whose owner may have unmapped it; the kernel may still be asleep on such a
//! word's address, which costs nothing and is not a memory access of ours.
//!
//! Limits: one `futex_waitv` takes 128 words, one of which is the reactor's own; with more
//! distinct event counts pending at once (or before Linux 5.16, or off Linux) the reactor
//! polls the registered words every 50 µs to 1 ms instead of sleeping on them.
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use shmlane_notify::{EventCount, reactor};
//!
//! static READY: AtomicBool = AtomicBool::new(false);
//! static EVENT: EventCount = EventCount::new();
//!
//! async fn until_ready() {
//!     while !READY.load(Ordering::Acquire) {
//!         let wait = EVENT.prepare_wait();
//!         if READY.load(Ordering::Acquire) {
//!             break; // dropping `wait` cancels it
//!         }
//!         reactor::notified(wait).await.expect("the reactor thread started");
//!     }
//! }
//!
//! let notifier = std::thread::spawn(|| {
//!     READY.store(true, Ordering::Release);
//!     EVENT.notify_all();
//! });
//! // Any executor: here a minimal one that parks the thread between polls.
//! # fn block_on<F: std::future::Future>(future: F) -> F::Output {
//! #     use std::task::{Context, Poll, Wake, Waker};
//! #     struct Unpark(std::thread::Thread);
//! #     impl Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
//! #     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
//! #     let mut future = std::pin::pin!(future);
//! #     loop {
//! #         if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) { return out; }
//! #         std::thread::park();
//! #     }
//! # }
//! block_on(until_ready());
//! notifier.join().unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::event_count::{EventCount, PreparedWait};
use super::sync::{AtomicU32, Mutex, MutexGuard, Ordering};

on_shared_memory! {
    /// Completes once the event count of `wait` is notified after `wait` was prepared (see
    /// the [module](self) docs for the protocol). Dropping it cancels the wait.
    pub fn notified(wait: PreparedWait<'_>) -> Notified<'_> {
        Notified { wait, id: None, registry: None }
    }
}

in_model! {
    /// A future of `wait` served by `registry` (the model's own, not a process-wide one).
    pub fn notified_by<'a>(registry: &'a Registry, wait: PreparedWait<'a>) -> Notified<'a> {
        Notified { wait, id: None, registry: Some(registry) }
    }
}

/// The future of [`notified`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Notified<'a> {
    wait: PreparedWait<'a>,
    /// Our registration with the reactor, once made.
    id: Option<u64>,
    /// The registry serving it: the process's reactor when `None`.
    registry: Option<&'a Registry>,
}

/// The reactor thread could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot start shmlane's reactor thread ({0}): free threads or memory, or wait with a \
     blocking strategy instead"
)]
pub struct ReactorError(String);

impl Future for Notified<'_> {
    type Output = Result<(), ReactorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.wait.is_notified() {
            return Poll::Ready(Ok(()));
        }
        let registry = match self.registry {
            Some(registry) => registry,
            None => match Registry::process() {
                Ok(registry) => registry,
                Err(e) => return Poll::Ready(Err(e)),
            },
        };
        let this = &mut *self;
        if registry.register(&mut this.id, &this.wait, cx.waker()) {
            // A new word: the reactor rebuilds what it sleeps on.
            registry.control.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let registry = match self.registry {
                Some(registry) => Some(registry),
                None => Registry::process().ok(),
            };
            if let Some(registry) = registry {
                registry.lock().regs.retain(|r| r.id != id);
            }
        }
        // Then `wait` drops: its waiter count goes.
    }
}

/// The pending waits a reactor serves, and the event count that wakes it when one is added
/// (the process has one, behind [`notified`]; the loom models make their own).
#[derive(Debug)]
#[doc(hidden)]
pub struct Registry {
    table: Mutex<Table>,
    control: EventCount,
    /// Set (1) to end the turns (the loom models' reactors stop; the process's never does).
    stopped: AtomicU32,
}

#[derive(Debug, Default)]
struct Table {
    regs: Vec<Reg>,
    next_id: u64,
}

/// A pending wait: sleep while the epoch of `*event` is `key`, then wake `waker`.
#[derive(Debug)]
struct Reg {
    id: u64,
    /// The event count: read only under the table's lock, while registered (its future,
    /// which borrows the event count, deregisters under the lock before it goes).
    event: *const EventCount,
    key: u32,
    waker: Waker,
}

// SAFETY: `event` is only dereferenced under the table's lock while the registration exists,
// which keeps the event count alive (see `Reg::event`); the rest is `Send`.
unsafe impl Send for Reg {}

/// Most event counts one sleep takes ([`crate::WAITV_MAX`]), the reactor's own among them.
const SLEEP_WORDS: usize = super::futex::WAITV_MAX;

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry {
            table: Mutex::new(Table::default()),
            control: EventCount::new(),
            stopped: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A waker that panicked inside `wake` poisons nothing we rely on: the table stays
        // consistent between statements.
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `wait` with `waker` (or updates the waker of registration `id`); whether it
    /// is a new registration, which the reactor must be told of.
    fn register(&self, id: &mut Option<u64>, wait: &PreparedWait<'_>, waker: &Waker) -> bool {
        let mut table = self.lock();
        if let Some(reg) = id.and_then(|id| table.regs.iter_mut().find(|r| r.id == id)) {
            if !reg.waker.will_wake(waker) {
                reg.waker = waker.clone();
            }
            return false;
        }
        let new = table.next_id;
        table.next_id += 1;
        let (event, key) = wait.event_and_key();
        table.regs.push(Reg { id: new, event, key, waker: waker.clone() });
        *id = Some(new);
        true
    }

    /// One turn of the reactor: wakes the futures whose event counts were notified, then
    /// sleeps on the rest and on its own event count until one of them is (or `deadline`).
    /// Returns false, doing nothing, once [`stop`](Self::stop) was called.
    pub fn turn(&self, deadline: Option<std::time::Instant>) -> bool {
        // Announced before the table (and the stop flag) is read: a registration or a stop
        // after this notifies us.
        let control = self.control.prepare_wait();
        // Acquire: pairs with the Release store in `stop` (the fences of the event count
        // order it against that store, as for any condition).
        if self.stopped.load(Ordering::Acquire) != 0 {
            return false;
        }
        let mut woken = Vec::new();
        let mut watched: Vec<(*const EventCount, u32)> = Vec::new();
        {
            let mut table = self.lock();
            table.regs.retain(|reg| {
                // SAFETY: registered, so the event count is alive (see `Reg::event`).
                let unchanged = unsafe { EventCount::epoch_is(reg.event, reg.key) };
                if !unchanged {
                    woken.push(reg.waker.clone());
                }
                unchanged
            });
            for reg in &table.regs {
                if !watched.iter().any(|&(event, _)| std::ptr::eq(event, reg.event)) {
                    watched.push((reg.event, reg.key));
                }
            }
        }
        woken.into_iter().for_each(Waker::wake);
        if watched.len() < SLEEP_WORDS {
            let (event, key) = control.event_and_key();
            watched.push((event, key));
            if self.sleep(&watched, deadline) {
                // A notify may have been missed: every future polls its condition again (and
                // registers anew if it is still unmet).
                let woken: Vec<Waker> = self.lock().regs.drain(..).map(|reg| reg.waker).collect();
                woken.into_iter().for_each(Waker::wake);
            }
        } else {
            // Too many to sleep on at once: poll them (under the lock, above) every 1 ms.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(control);
        true
    }

    /// Ends the turns: the current one wakes, and every later one returns false.
    pub fn stop(&self) {
        // Release: pairs with the Acquire load in `turn`.
        self.stopped.store(1, Ordering::Release);
        self.control.notify_one();
    }
}

on_shared_memory! {
    impl Registry {
        /// The process's registry, its reactor thread started on first use.
        fn process() -> Result<&'static Registry, ReactorError> {
            static REACTOR: std::sync::OnceLock<Result<&'static Registry, ReactorError>> =
                std::sync::OnceLock::new();
            REACTOR
                .get_or_init(|| {
                    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
                    std::thread::Builder::new()
                        .name("shmlane-reactor".into())
                        .spawn(move || while registry.turn(None) {})
                        .map(|_| registry)
                        .map_err(|e| ReactorError(e.to_string()))
                })
                .clone()
        }

        /// Sleeps on the futex words of `watched` (addresses only: the kernel alone looks at
        /// them, so an event count unmapped meanwhile is its `EFAULT`, not our access). Returns
        /// whether the sleep was capped because a waiter of this process could not fence
        /// against light notifiers (see `barrier`): then every registered future re-checks.
        fn sleep(
            &self,
            watched: &[(*const EventCount, u32)],
            deadline: Option<std::time::Instant>,
        ) -> bool {
            let words: Vec<_> = watched
                .iter()
                // SAFETY: `epoch_ptr` computes an address within the event count, which was
                // alive under the lock when it was registered; it reads nothing.
                .map(|&(event, key)| (unsafe { EventCount::epoch_ptr(event) }, key))
                .collect();
            let (until, capped) = super::barrier::sleep_deadline(deadline);
            super::futex::wait_any_raw(&words, until);
            capped
        }
    }
}

in_model! {
    impl Registry {
        /// Never used in the model (its futures name their registry).
        fn process() -> Result<&'static Registry, ReactorError> {
            Err(ReactorError("no process-wide reactor in the model".into()))
        }

        /// The model's `futex_waitv` on the event counts of `watched` (never capped: the
        /// model's fences are symmetric).
        fn sleep(
            &self,
            watched: &[(*const EventCount, u32)],
            deadline: Option<std::time::Instant>,
        ) -> bool {
            let words: Vec<_> = watched
                .iter()
                // SAFETY: the model's event counts live for the whole model (its tests keep
                // them in `Arc`s until every thread is joined).
                .map(|&(event, key)| unsafe { &*event }.watched(key))
                .collect();
            super::futex::wait_any(&words, deadline);
            false
        }
    }
}
