//! A ring slot: a sequence word saying which position the value belongs to, and the value.
//! SPSC and MPMC rings give the sequence their own meanings (see each module).

use std::fmt;
use std::mem::MaybeUninit;

use super::sync::{AtomicU64, UnsafeCell};

/// One slot of a ring.
#[repr(C)]
pub struct Slot<T> {
    pub(crate) seq: AtomicU64,
    pub(crate) value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: a slot's value is accessed only by the one producer or consumer that the ring's
// protocol gives it to at that moment (checked through `seq` with Acquire/Release), so values
// move between threads (or processes) but are never shared: `T: Send` suffices.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Slot<T> {
    /// An empty slot whose sequence word holds `seq` (what each ring starts its slots at:
    /// SPSC 0, MPMC the slot's index).
    pub fn new(seq: u64) -> Self {
        Slot { seq: AtomicU64::new(seq), value: UnsafeCell::new(MaybeUninit::uninit()) }
    }
}

/// Reads a slot's value by one volatile copy: the value is read exactly once into a private
/// `T`, so the compiler cannot fetch it again from memory another process may be writing (a
/// corrupting peer only changes which `T` we get, for the `T: FromBytes` of shared rings).
///
/// # Safety
/// `value` points to a slot's value that the ring's protocol gives to the caller now, written
/// by its producer.
#[inline(always)]
pub(crate) unsafe fn read_value<T>(value: *const MaybeUninit<T>) -> T {
    // SAFETY: the caller's contract: a written value of ours; `MaybeUninit<T>` has `T`'s
    // layout, so the cast pointer is valid and aligned for `T`.
    unsafe { value.cast::<T>().read_volatile() }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

on_shared_memory! {
// SAFETY: `SharedView`'s contract: every bit pattern is a valid `Slot<T>` (an atomic, and a
// cell of `MaybeUninit<T>` with `T: FromBytes`), and every byte another process may write is
// in an atomic or behind an `UnsafeCell` (which tolerates mutation through other paths while a
// shared reference to it exists); the value is only ever read through raw pointers, by one
// volatile copy (`read_value`), never through a reference.
unsafe impl<T: zerocopy::FromBytes + Send> shmlane_segment::SharedView for Slot<T> {}
}
