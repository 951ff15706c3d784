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
//! With the `loom` feature the crate also builds `model` (hidden): its lock-free protocols (the block
//! pool's free list, role claims) compiled a second time over loom's atomics; nothing else
//! changes.

mod copy;
#[cfg(feature = "crash-points")]
pub mod crash;
mod crash_point;
mod discovery;
mod fingerprint;
pub mod header;
pub mod hint;
mod liveness;
mod mapping;
#[cfg(feature = "loom")]
#[doc(hidden)]
pub mod model;
mod name;
mod offset;
mod os;
mod pool;
pub mod presence;
mod role;
mod segment;
mod sync;
mod transfer;

pub use discovery::{
    DiscoveryError, EMPTY_GRACE, Removal, SegmentInfo, SegmentStatus, list, list_in, remove,
    remove_in, remove_stale, remove_stale_in, remove_stale_matching,
};
pub use fingerprint::Fingerprint;
pub use liveness::{Liveness, ProcessId};
pub use name::{NAME_PREFIX, NameError, SegmentName};
pub use offset::SharedView;
pub use offset::{Carver, HEADER_SIZE, LayoutError, Offset, OffsetError, Region, RegionLayout};
pub use pool::{AllocError, BlockOffset, BlockPool, FreeError, PoolError, PoolStats};
pub use role::{Claimed, RoleClaim, RoleError, RoleOwner};
pub use segment::{Backing, CreateError, OpenError, Segment, SegmentBuilder, SegmentRef};
pub use transfer::TransferError;
