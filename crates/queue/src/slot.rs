//! A ring slot: a sequence word saying which position the value belongs to, and the value.
//! SPSC and MPMC rings give the sequence their own meanings (see each module).

use std::fmt;
use std::mem::MaybeUninit;

use crate::sync::{AtomicU64, UnsafeCell};

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

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

// SAFETY: a slot is an atomic plus a cell of `T: FromBytes` (every bit pattern valid, and
// `MaybeUninit` in any case), so any bytes a peer writes are a valid `Slot<T>`; the value is
// accessed only through raw pointers under the ring's protocol, by copy.
#[cfg(not(feature = "loom"))]
unsafe impl<T: zerocopy::FromBytes + Send> shmlane_segment::SharedView for Slot<T> {}
