//! loom model of the async reactor (`shmlane_notify::reactor`, its registry compiled over loom's
//! atomics, Mutex and the multi-word futex model): a task awaiting an event count through the
//! reactor (announce, re-check, register, sleep until its waker runs) while a notifier changes
//! the condition and notifies, and the reactor thread takes turns (wake what changed, sleep on
//! the rest and on its own event count). A lost wake-up leaves the task asleep forever, which
//! loom reports as a deadlock. The facade's `receive_async` and `wait_async` follow the task's
//! steps here (`crates/shmlane/src/asynchronous.rs`).

use std::future::Future;
use std::task::{Context, Wake, Waker};

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use shmlane_notify::model::EventCount;
use shmlane_notify::model::reactor::{Registry, notified_by};
use shmlane_workspace::model;

/// The task's wake-up token: a waker sets it, the task sleeps until it is set and takes it
/// (a Mutex and a Condvar: loom's `park` loses an `unpark` that comes while the thread is
/// blocked on something else, such as the registry's lock, which `std`'s does not).
#[derive(Default)]
struct Token {
    set: Mutex<bool>,
    condvar: Condvar,
}

impl Token {
    fn take(&self) {
        let mut set = self.set.lock().unwrap();
        while !*set {
            set = self.condvar.wait(set).unwrap();
        }
        *set = false;
    }
}

/// A waker that sets the task's token.
struct Unpark(Arc<Token>);

impl Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        *self.0.set.lock().unwrap() = true;
        self.0.condvar.notify_one();
    }
}

/// The task: until `flag` is set, announce on `event`, re-check, then await the reactor's
/// future, sleeping on its token between polls.
fn await_flag(registry: &Registry, event: &EventCount, flag: &AtomicBool) {
    let token = Arc::new(Token::default());
    let waker = Waker::from(std::sync::Arc::new(Unpark(token.clone())));
    let mut cx = Context::from_waker(&waker);
    loop {
        // Acquire: pairs with the notifier's Release store.
        if flag.load(Ordering::Acquire) {
            return;
        }
        let wait = event.prepare_wait();
        // Acquire: as above.
        if flag.load(Ordering::Acquire) {
            return; // dropping `wait` cancels it
        }
        let mut notified = std::pin::pin!(notified_by(registry, wait));
        while notified.as_mut().poll(&mut cx).is_pending() {
            token.take();
        }
    }
}

/// The reactor thread: turns until stopped.
fn reactor(registry: Arc<Registry>) -> thread::JoinHandle<()> {
    thread::spawn(move || while registry.turn(None) {})
}

#[test]
fn an_awaited_notify_is_never_lost_through_the_reactor() {
    model::check(|| {
        let registry = Arc::new(Registry::new());
        let event = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let turning = reactor(registry.clone());
        let notifier = {
            let (event, flag) = (event.clone(), flag.clone());
            thread::spawn(move || {
                // Release: pairs with the task's Acquire loads.
                flag.store(true, Ordering::Release);
                event.notify_one();
            })
        };
        await_flag(&registry, &event, &flag);
        notifier.join().unwrap();
        registry.stop();
        turning.join().unwrap();
        assert_eq!(event.waiters(), 0, "every announced wait ended");
    });
}
