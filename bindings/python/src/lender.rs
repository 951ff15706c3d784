//! [`Lender`]: a facade handle that is `Send` but not `Sync` (a `RawSubscriber` or a
//! `RawPublisher`), shared by the Python threads that hold it, and what it lends out (samples,
//! loans), whose Rust lifetimes borrow it and are erased here.
//!
//! The rules that make this sound, kept by this module alone:
//!
//! - The parent and every child are touched (used, created, dropped) only by the thread that
//!   holds `lock`, so one thread at a time, as their `Send`-but-not-`Sync` types allow.
//! - The lock is never waited for: a Python thread that finds it held raises
//!   [`LendError::Busy`] (another thread is blocked in a wait on the same handle), and a child
//!   dropped then is queued in `deferred` and dropped by the holder before it lets go. So a
//!   thread holding the GIL never waits for one that needs it, and a waiting thread may keep
//!   the lock while it takes the GIL back between slices of its wait.
//! - A child borrows the parent for `'static`: the parent stays in place (inside the `Arc`,
//!   never moved) until every child is gone. [`close`](Lender::close) refuses while children
//!   are out, and each child's Python object holds an `Arc` of its lender.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Why the parent could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LendError {
    /// Another thread holds it (blocked in a wait or a blocking send).
    Busy,
    /// It was closed.
    Closed,
    /// [`close`](Lender::close) found this many children still out.
    Lent(usize),
}

/// A child (a sample or a loan) on the heap, at an address that does not change while it
/// lives: Python reads or writes the bytes it points at, an inline payload among them.
///
/// It has no `Drop`: only its lender disposes of it, under the lock ([`Lender::dispose`]).
/// One that is forgotten leaks (its block stays held), which is safe.
#[derive(Debug)]
pub(crate) struct Child<C>(NonNull<C>);

// SAFETY: a child moves between threads only as a token: it is dereferenced and dropped only
// by the thread holding its lender's lock (see the module's rules), never by two at once.
unsafe impl<C> Send for Child<C> {}
// SAFETY: as for `Send`: `&Child` gives no access to the child without the lender's lock.
unsafe impl<C> Sync for Child<C> {}

/// The heap room a child was in, once [`Held::consume`] took the child out: kept while Python
/// may still read it (the array over an inline loan that was sent), freed when dropped. It
/// holds no value, so it needs no lock.
#[derive(Debug)]
pub(crate) struct Shell<C>(NonNull<MaybeUninit<C>>);

// SAFETY: it owns an allocation and no value; freeing it touches nothing shared.
unsafe impl<C> Send for Shell<C> {}
// SAFETY: `&Shell` gives no access at all.
unsafe impl<C> Sync for Shell<C> {}

impl<C> Drop for Shell<C> {
    fn drop(&mut self) {
        // SAFETY: the allocation came from `Box::new` of a `C` (`lend`), whose layout
        // `MaybeUninit<C>` shares; its value was moved out (`consume`), so nothing is dropped,
        // only the room freed, once (we own it).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// What [`Held::lend`] made: a child and what `view` read of it, nothing (`make` had none to
/// give), or `make`'s error.
pub(crate) type Lent<C, V, E> = Result<Option<(Child<C>, V)>, E>;

/// A parent `P` (with a `'static`-erased child type `C` that borrows it) shared by threads.
pub(crate) struct Lender<P, C> {
    /// Held by whoever uses the parent or a child.
    lock: Mutex<()>,
    /// Children dropped while another thread held `lock`, for the holder to drop. Dropped
    /// before `parent` (field order), which they borrow.
    deferred: Mutex<Vec<Child<C>>>,
    /// `None` once closed.
    parent: UnsafeCell<Option<P>>,
    /// Children not yet dropped (`deferred` ones included).
    lent: AtomicUsize,
}

// SAFETY: the parent is `Send`, and the parent and the children (which may reach parts of it
// that are not `Sync`, such as `Rc`s and `Cell`s) are touched only under `lock`: one thread at
// a time, each of which may own them since they are `Send`, or reach them only through the
// parent. `deferred` only stores children, never touches them, outside the lock.
unsafe impl<P: Send, C> Send for Lender<P, C> {}
// SAFETY: as for `Send`: every access through `&Lender` goes through `lock`.
unsafe impl<P: Send, C> Sync for Lender<P, C> {}

impl<P, C> std::fmt::Debug for Lender<P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lender").field("lent", &self.lent()).finish()
    }
}

/// The lock, held (by one thread: a `MutexGuard` is not `Send`). It may be kept across
/// several calls (the slices of one wait); letting go drops the deferred children.
pub(crate) struct Held<'l, P, C> {
    lender: &'l Lender<P, C>,
    /// `None` only inside `drop`.
    guard: Option<MutexGuard<'l, ()>>,
}

impl<P, C> std::fmt::Debug for Held<'_, P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("lender", self.lender).finish()
    }
}

impl<P, C> Drop for Held<'_, P, C> {
    fn drop(&mut self) {
        loop {
            self.lender.drain();
            self.guard = None;
            // A child queued after the drain, by a thread that found the lock still held
            // before we let go, would wait for the next holder: if there is one, take the
            // lock again to drop it (or leave it to whoever took the lock meanwhile, who will).
            if self.lender.deferred_list().is_empty() {
                return;
            }
            match self.lender.try_lock() {
                Some(guard) => self.guard = Some(guard),
                None => return,
            }
        }
    }
}

impl<P, C> Lender<P, C> {
    /// A lender of `parent`.
    pub(crate) fn new(parent: P) -> Self {
        Lender {
            lock: Mutex::new(()),
            deferred: Mutex::new(Vec::new()),
            parent: UnsafeCell::new(Some(parent)),
            lent: AtomicUsize::new(0),
        }
    }

    /// The lock if it is free. A poisoned lock (a panic in a facade call, a bug) is taken all
    /// the same: the facade's handles stay valid across its panics.
    fn try_lock(&self) -> Option<MutexGuard<'_, ()>> {
        match self.lock.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Takes the lock without waiting.
    pub(crate) fn hold(&self) -> Result<Held<'_, P, C>, LendError> {
        let guard = self.try_lock().ok_or(LendError::Busy)?;
        Ok(Held { lender: self, guard: Some(guard) })
    }

    /// Runs `f` on the parent, holding the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&P) -> R) -> Result<R, LendError> {
        self.hold()?.with(f)
    }

    /// Drops `child` now if the lock is free, else queues it for the thread holding the lock.
    pub(crate) fn dispose(&self, child: Child<C>) {
        match self.hold() {
            // SAFETY: we hold the lock.
            Ok(_held) => unsafe { self.drop_child(child) },
            Err(_) => {
                self.deferred_list().push(child);
                // The holder drops it on its way out (see `Held`'s `Drop`); if it let go
                // between our attempt and the push, we take the lock now and drop it ourselves.
                drop(self.hold());
            }
        }
    }

    /// Closes the parent (its slot goes back at once) unless children are out.
    pub(crate) fn close(&self) -> Result<(), LendError> {
        let held = self.hold()?;
        self.drain();
        let lent = self.lent();
        if lent > 0 {
            return Err(LendError::Lent(lent));
        }
        // SAFETY: we hold the lock and no child is out, so nothing borrows the parent.
        let parent = unsafe { (*self.parent.get()).take() };
        drop(parent);
        drop(held);
        Ok(())
    }

    /// Children not yet dropped.
    pub(crate) fn lent(&self) -> usize {
        // Relaxed: a count; the lock orders every access to what it counts.
        self.lent.load(Ordering::Relaxed)
    }

    /// Drops the deferred children; called with the lock held.
    fn drain(&self) {
        let children = std::mem::take(&mut *self.deferred_list());
        for child in children {
            // SAFETY: our callers hold the lock.
            unsafe { self.drop_child(child) };
        }
    }

    fn deferred_list(&self) -> MutexGuard<'_, Vec<Child<C>>> {
        self.deferred.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// # Safety
    ///
    /// The caller holds the lock, and `child` came from this lender's `lend`.
    unsafe fn drop_child(&self, child: Child<C>) {
        // SAFETY: `child` came from `lend` (`Box::leak`) and is dropped once (moved here);
        // the caller holds the lock, so nothing else touches it or the parent it borrows.
        drop(unsafe { Box::from_raw(child.0.as_ptr()) });
        // Relaxed: as in `lent`.
        self.lent.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<P, C> Held<'_, P, C> {
    /// The parent, or `Closed`.
    fn parent(&self) -> Result<&P, LendError> {
        // SAFETY: we hold the lock, so no other thread touches the parent, and `close` (which
        // replaces it) holds the lock too: the shared reference lives only while we hold it.
        unsafe { (*self.lender.parent.get()).as_ref() }.ok_or(LendError::Closed)
    }

    /// Runs `f` on the parent.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&P) -> R) -> Result<R, LendError> {
        Ok(f(self.parent()?))
    }

    /// Makes a child with `make` and, once it is on the heap, reads what Python needs of it
    /// (its address and length) with `view`.
    ///
    /// # Safety
    ///
    /// `make` must not keep the `'static` reference anywhere but in the child it returns
    /// (which this lender then owns): the parent lives only as long as its children.
    pub(crate) unsafe fn lend<E, V>(
        &self,
        make: impl FnOnce(&'static P) -> Result<Option<C>, E>,
        view: impl FnOnce(&mut C) -> V,
    ) -> Result<Lent<C, V, E>, LendError>
    where
        P: 'static,
    {
        let parent = self.parent()?;
        // SAFETY: the reference outlives the lock only inside the child (the caller's
        // promise), which is touched only under the lock; the parent is not replaced while a
        // child is out (`close` checks `lent`, and a child's `Arc` keeps the lender, so `Drop`
        // cannot run), and it never moves (it stays in this `UnsafeCell` inside an `Arc`).
        let parent: &'static P = unsafe { &*std::ptr::from_ref(parent) };
        let child = match make(parent) {
            Ok(Some(child)) => child,
            Ok(None) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(e)),
        };
        let ptr = NonNull::from(Box::leak(Box::new(child)));
        // Relaxed: as in `lent`.
        self.lender.lent.fetch_add(1, Ordering::Relaxed);
        // SAFETY: just allocated; we hold the lock; no other reference exists yet.
        let viewed = view(unsafe { &mut *ptr.as_ptr() });
        Ok(Ok(Some((Child(ptr), viewed))))
    }

    /// Runs `f` on the parent and `child`.
    ///
    /// # Safety
    ///
    /// `child` came from this lender's `lend` (its Python object holds this lender's `Arc`):
    /// the lock we hold is the one that guards it.
    pub(crate) unsafe fn with_child<R>(
        &self,
        child: &Child<C>,
        f: impl FnOnce(&P, &C) -> R,
    ) -> Result<R, LendError> {
        let parent = self.parent()?;
        // SAFETY: `child` came from our `lend` (the caller's promise) and is still out (it is
        // dropped only by value, not while borrowed here); we hold its lender's lock, so no
        // other thread touches it.
        Ok(f(parent, unsafe { child.0.as_ref() }))
    }

    /// Takes `child` out and runs `f` on the parent and the child (for a loan, the send that
    /// consumes it); the room it was in is handed back, to be kept while Python may read it.
    pub(crate) fn consume<R>(
        &self,
        child: Child<C>,
        f: impl FnOnce(&P, C) -> R,
    ) -> Result<(R, Shell<C>), (LendError, Child<C>)> {
        let parent = match self.parent() {
            Ok(parent) => parent,
            Err(e) => return Err((e, child)),
        };
        // SAFETY: `child` came from `lend` (`Box::leak`) and is given back once (it is moved
        // here); we hold the lock. Its value is moved out, its room kept (the `Shell`), which
        // frees it without dropping anything.
        let value = unsafe { std::ptr::read(child.0.as_ptr()) };
        let shell = Shell(child.0.cast::<MaybeUninit<C>>());
        // Relaxed: as in `lent`.
        self.lender.lent.fetch_sub(1, Ordering::Relaxed);
        Ok((f(parent, value), shell))
    }
}

impl<P, C> Drop for Lender<P, C> {
    fn drop(&mut self) {
        // `&mut self`: no other thread holds the lock. Children still deferred borrow the
        // parent, which is dropped after this (a field).
        let children = std::mem::take(self.deferred.get_mut().unwrap_or_else(|e| e.into_inner()));
        for child in children {
            // SAFETY: `child` came from `lend` and is dropped once; we have `&mut self`.
            drop(unsafe { Box::from_raw(child.0.as_ptr()) });
        }
    }
}
