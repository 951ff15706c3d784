//! The [`Segment`] handle: an open, validated segment and checked access to its bytes.
//!
//! A `Segment` exists only for a header that passed validation (opened `Ready`), or one this
//! process created, which it publishes `Ready` once the caller's initialisation succeeds.
//! Every access is checked against the mapping; the header can be copied out through the
//! handle, but never written, viewed in place or pointed into.
//!
//! The submodules build handles: [`SegmentBuilder`] holds the options (`builder`), `backing`
//! makes or finds the file, `create`, `open` and `open_or_create` do those operations, and
//! `error` holds their errors.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::discovery;
use crate::header::RawHeader;
use crate::mapping::Mapping;
use crate::name::SegmentName;
use crate::offset::{HEADER_SIZE, Offset, OffsetError, SharedView};
use crate::{Fingerprint, Liveness, ProcessId};

mod backing;
mod builder;
mod create;
mod error;
mod open;
mod open_or_create;
mod shared_ref;

pub use backing::Backing;
pub(crate) use backing::{Location, SHM_DIR};
pub use builder::SegmentBuilder;
pub use error::{CreateError, OpenError};
pub use shared_ref::SegmentRef;

/// An open, validated shared-memory segment.
///
/// All access goes through byte offsets checked against the mapping: [`read_bytes`]
/// copies out, [`write_bytes`] copies in, and [`get`] gives a shared reference to atomics
/// ([`SharedView`] types) for lock-free protocols.
///
/// [`read_bytes`]: Segment::read_bytes
/// [`write_bytes`]: Segment::write_bytes
/// [`get`]: Segment::get
#[derive(Debug)]
pub struct Segment {
    mapping: Mapping,
    fd: OwnedFd,
    name: SegmentName,
    location: Location,
    header: RawHeader,
    created: bool,
    locked: bool,
    unlink_on_drop: bool,
}

impl Segment {
    /// Starts a [`SegmentBuilder`].
    pub fn builder(name: impl Into<String>) -> SegmentBuilder {
        SegmentBuilder::new(name)
    }

    /// The segment's name.
    pub fn name(&self) -> &SegmentName {
        &self.name
    }

    /// Total mapped size in bytes, header included.
    pub fn len(&self) -> u64 {
        self.mapping.len()
    }

    /// Always false: a segment holds at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether this handle maps the segment read-only.
    pub fn is_read_only(&self) -> bool {
        !self.mapping.is_writable()
    }

    /// Whether this handle created the segment.
    pub fn is_creator(&self) -> bool {
        self.created
    }

    /// Whether the pages are locked in RAM.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The process that created the segment (pid and start time, for reports).
    pub fn creator(&self) -> ProcessId {
        self.header.creator()
    }

    /// Whether the creator still runs, by its presence token: the proof of death that holds
    /// across pid namespaces.
    pub fn creator_liveness(&self) -> Liveness {
        self.header.creator_liveness()
    }

    /// The layout fingerprint stored at creation.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::from_raw(self.header.layout_fingerprint)
    }

    /// When the segment was created.
    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.header.created_unix_ns)
    }

    /// The file's path, or `None` for a memfd.
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::Path(path) => Some(path),
            Location::Memfd => None,
        }
    }

    /// The file descriptor (for example to pass a memfd on with your own protocol).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Copies `buf.len()` bytes at `offset` out of the segment.
    #[inline]
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<(), OffsetError> {
        self.mapping.read(offset, buf)
    }

    /// Copies `bytes` into the segment at `offset`, which must lie after the header
    /// ([`OffsetError::InHeader`] otherwise).
    #[inline]
    pub fn write_bytes(&self, offset: u64, bytes: &[u8]) -> Result<(), OffsetError> {
        past_header(offset)?;
        self.mapping.write(offset, bytes)
    }

    /// Asks the CPU to start loading the cache line at `offset` into its cache, so that a read
    /// of it soon after does not wait for memory or another core (a hint: nothing happens if
    /// `offset` lies outside the segment or the CPU has no prefetch instruction).
    #[inline]
    pub fn prefetch(&self, offset: u64) {
        self.mapping.prefetch(offset);
    }

    /// Asks the CPU to fetch the cache line at `offset` for writing: a store to it soon after
    /// does not wait for the line to come back from another core that read it (a hint, as
    /// [`prefetch`](Self::prefetch); it needs PREFETCHW, and does nothing without it).
    #[inline]
    pub fn prefetch_write(&self, offset: u64) {
        self.mapping.prefetch_write(offset);
    }

    /// Asks the CPU to move the cache line at `offset` from this core's private caches to the
    /// shared cache, so that another core reading it soon (a subscriber, after a send) finds
    /// it there instead of snooping ours (a hint, as [`prefetch`](Self::prefetch); it needs
    /// CLDEMOTE, and does nothing without it).
    #[inline]
    pub fn demote(&self, offset: u64) {
        self.mapping.demote(offset);
    }

    /// A raw pointer to `len` bytes at `offset`, checked to lie in the segment after the
    /// header and to be aligned to `align` (a power of two). For zero-copy payloads whose access a protocol
    /// governs (shmlane's loans and samples); the pointer is valid while `self` lives. Writing
    /// through it on a read-only handle faults.
    #[inline]
    pub fn ptr(
        &self,
        offset: u64,
        len: u64,
        align: usize,
    ) -> Result<std::ptr::NonNull<u8>, OffsetError> {
        past_header(offset)?;
        self.mapping.ptr(offset, len, align)
    }

    /// Resolves an offset to a shared reference, checking bounds and alignment, and that it
    /// lies after the header. Read-only handles get [`OffsetError::ReadOnly`] (a store would
    /// fault).
    pub fn get<T: SharedView>(&self, offset: Offset<T>) -> Result<&T, OffsetError> {
        past_header(offset.get())?;
        self.mapping.view(offset.get())
    }

    /// Resolves `count` consecutive values of `T` starting at `offset` (after the header).
    pub fn get_slice<T: SharedView>(
        &self,
        offset: Offset<T>,
        count: u64,
    ) -> Result<&[T], OffsetError> {
        past_header(offset.get())?;
        self.mapping.view_slice(offset.get(), count)
    }

    /// Whether the handle removes the name when dropped.
    pub fn set_unlink_on_drop(&mut self, yes: bool) {
        self.unlink_on_drop = yes;
    }

    /// Removes the segment's name now, if the file at its path is still this segment. Mapped
    /// handles keep working; new `open`s fail with `NotFound`.
    pub fn unlink(&self) -> io::Result<()> {
        let Location::Path(path) = &self.location else {
            return Ok(());
        };
        // Already gone, or replaced by someone else's file: left alone.
        discovery::unlink_if_same(path, &self.fd).map(drop)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            let _ = self.unlink();
        }
    }
}

/// Refuses offsets inside the header: callers write and view only what they placed after it.
#[inline]
fn past_header(offset: u64) -> Result<(), OffsetError> {
    if offset < HEADER_SIZE { Err(OffsetError::InHeader { offset }) } else { Ok(()) }
}
