//! Named shared-memory segments for shmlane.
//!
//! A [`Segment`] is a file in `/dev/shm` (POSIX shm), in a directory of the caller's choice
//! (a disk or a hugetlbfs mount), or an anonymous sealed memfd handed to peers over a Unix
//! socket. Every segment starts with a validated [`header`] and is addressed by
//! relative offsets ([`Offset`], [`Region`]), never by pointers, so each process may map it at
//! a different address. Structures are placed with a [`Carver`] when the segment is created and
//! found again at the same offsets by openers.
//!
//! The bytes of a segment are shared with processes that are not trusted: this crate never
//! creates a reference to non-atomic bytes a peer can write, reads everything else by copy, and
//! validates every size, offset and index it reads before use. Bad bytes give an error value,
//! never a panic or an out-of-bounds access.
//!
//! [`BlockPool`] is a lock-free, ABA-safe pool of fixed-size blocks that lives inside a segment
//! and is shared by many processes. [`ProcessId`] identifies a process across pid reuse, and
//! [`RoleClaim`] gives a process an exclusive role that is taken over only from a dead owner.
//!
//! With the `loom` feature the crate's atomics come from loom, and only the parts that loom can
//! model (the block pool on heap-allocated atomics, layouts, names, liveness) are built.
#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(feature = "loom"))]
mod copy;
#[cfg(feature = "crash-points")]
pub mod crash;
mod crash_point;
#[cfg(not(feature = "loom"))]
mod discovery;
mod fingerprint;
#[cfg(not(feature = "loom"))]
pub mod header;
mod liveness;
#[cfg(not(feature = "loom"))]
mod mapping;
mod name;
mod offset;
#[cfg(not(feature = "loom"))]
mod os;
mod pool;
pub mod presence;
mod role;
#[cfg(not(feature = "loom"))]
mod segment;
mod sync;
#[cfg(not(feature = "loom"))]
mod transfer;

#[cfg(not(feature = "loom"))]
pub use discovery::{
    DiscoveryError, EMPTY_GRACE, Removal, SegmentInfo, SegmentStatus, list, list_in, remove,
    remove_in, remove_stale, remove_stale_in, remove_stale_matching,
};
pub use fingerprint::Fingerprint;
pub use liveness::{Liveness, ProcessId};
pub use name::{NAME_PREFIX, NameError, SegmentName};
#[cfg(not(feature = "loom"))]
pub use offset::SharedView;
pub use offset::{Carver, HEADER_SIZE, LayoutError, Offset, OffsetError, Region, RegionLayout};
pub use pool::{AllocError, BlockOffset, BlockPool, FreeError, PoolError, PoolStats};
pub use role::{Claimed, RoleClaim, RoleError, RoleOwner};
#[cfg(not(feature = "loom"))]
pub use segment::{Backing, CreateError, OpenError, Segment, SegmentBuilder, SegmentRef};
#[cfg(not(feature = "loom"))]
pub use transfer::TransferError;
