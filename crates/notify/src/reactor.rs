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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use super::event_count::{EventCount, PreparedWait};

/// Completes once the event count of `wait` is notified after `wait` was prepared (see the
/// [module](self) docs for the protocol). Dropping it cancels the wait.
pub fn notified(wait: PreparedWait<'_>) -> Notified<'_> {
    Notified { wait, id: None }
}

/// The future of [`notified`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Notified<'a> {
    wait: PreparedWait<'a>,
    /// Our registration with the reactor, once made.
    id: Option<u64>,
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
        let reactor = match Reactor::get() {
            Ok(reactor) => reactor,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let this = &mut *self;
        let mut table = reactor.lock();
        match this.id.and_then(|id| table.regs.iter_mut().find(|r| r.id == id)) {
            Some(reg) => {
                if !reg.waker.will_wake(cx.waker()) {
                    reg.waker = cx.waker().clone();
                }
                return Poll::Pending;
            }
            None => {
                let id = table.next_id;
                table.next_id += 1;
                let (word, key) = this.wait.word_and_key();
                table.regs.push(Reg { id, word, key, waker: cx.waker().clone() });
                this.id = Some(id);
            }
        }
        drop(table);
        // A new word: the reactor rebuilds what it sleeps on.
        reactor.control.notify_one();
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id
            && let Ok(reactor) = Reactor::get()
        {
            reactor.lock().regs.retain(|r| r.id != id);
        }
        // Then `wait` drops: its waiter count goes.
    }
}

/// The process's reactor: the table of pending waits and the event count that wakes it.
struct Reactor {
    table: Mutex<Table>,
    control: EventCount,
}

#[derive(Default)]
struct Table {
    regs: Vec<Reg>,
    next_id: u64,
}

/// A pending wait: sleep while `*word == key`, then wake `waker`.
struct Reg {
    id: u64,
    /// The event count's futex word: read only under the table's lock, while registered (its
    /// future, which borrows the event count, deregisters under the lock before it goes).
    word: *const AtomicU32,
    key: u32,
    waker: Waker,
}

// SAFETY: `word` is only dereferenced by the reactor thread under the table's lock while the
// registration exists, which keeps the word alive (see `Reg::word`); the rest is `Send`.
unsafe impl Send for Reg {}

/// Most words one sleep takes ([`crate::WAITV_MAX`]), the reactor's own among them.
const SLEEP_WORDS: usize = crate::WAITV_MAX;

impl Reactor {
    /// The reactor, started on first use.
    fn get() -> Result<&'static Reactor, ReactorError> {
        static REACTOR: OnceLock<Result<&'static Reactor, ReactorError>> = OnceLock::new();
        REACTOR
            .get_or_init(|| {
                let reactor: &'static Reactor = Box::leak(Box::new(Reactor {
                    table: Mutex::new(Table::default()),
                    control: EventCount::new(),
                }));
                std::thread::Builder::new()
                    .name("shmlane-reactor".into())
                    .spawn(move || reactor.run())
                    .map(|_| reactor)
                    .map_err(|e| ReactorError(e.to_string()))
            })
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A waker that panicked inside `wake` poisons nothing we rely on: the table stays
        // consistent between statements.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reactor thread: wake the futures whose words changed, sleep on the rest.
    fn run(&self) -> ! {
        let mut woken = Vec::new();
        let mut words = Vec::new();
        loop {
            // Announced before the table is read: a registration after this notifies us.
            let control = self.control.prepare_wait();
            words.clear();
            {
                let mut table = self.lock();
                table.regs.retain(|reg| {
                    // SAFETY: registered, so the word is alive (see `Reg::word`).
                    // Acquire: pairs with the Release bump of the notifier, as a waiter's
                    // check in `PreparedWait::wait_until` does.
                    let changed = unsafe { &*reg.word }.load(Ordering::Acquire) != reg.key;
                    if changed {
                        woken.push(reg.waker.clone());
                    }
                    !changed
                });
                for reg in &table.regs {
                    if !words.iter().any(|&(word, _)| std::ptr::eq(word, reg.word)) {
                        words.push((reg.word, reg.key));
                    }
                }
            }
            woken.drain(..).for_each(Waker::wake);
            if words.len() < SLEEP_WORDS {
                words.push(control.word_and_key());
                crate::futex::wait_any_raw(&words, None);
            } else {
                // Too many to sleep on at once: poll them (under the lock, above) every 1 ms.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            drop(control);
        }
    }
}
