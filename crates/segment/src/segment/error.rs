//! The errors of creating and opening a segment: [`CreateError`] for `create` (and the create
//! half of `open_or_create`), [`OpenError`] for every way an existing segment is refused.
//!
//! Each variant's message says what happened and what to do about it.

use std::error::Error;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::ProcessId;
use crate::header::FORMAT_VERSION;
use crate::name::{NameError, SegmentName};
use crate::offset::HEADER_SIZE;

/// Errors from `create` (and the create half of `open_or_create`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The name was refused.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No size was given, or it is below the header size or above the configured maximum.
    #[error("segment size {size} is invalid: give a size between {min} and {max} bytes")]
    InvalidSize {
        /// Requested size.
        size: u64,
        /// Smallest valid size (the header).
        min: u64,
        /// Configured maximum (`SegmentBuilder::max_size`).
        max: u64,
    },
    /// A file with this name exists (`O_EXCL`), possibly a planted symlink.
    #[error(
        "segment {name} already exists at {path}: open it instead, or remove it if stale \
         (`shmlane clean`)"
    )]
    AlreadyExists {
        /// Segment name.
        name: SegmentName,
        /// Path of the existing file.
        path: PathBuf,
    },
    /// Another process kept a lock on the new file past `open_timeout`.
    #[error(
        "another process kept a lock on {path}, which this process had just created, for \
         {waited:?}: find it with `fuser {path}` (or lsof) and stop it, or raise open_timeout"
    )]
    Locked {
        /// The file (removed again).
        path: PathBuf,
        /// How long we tried.
        waited: Duration,
    },
    /// The directory refused the file.
    #[error("permission denied creating {path}: check the directory's permissions")]
    PermissionDenied {
        /// Path that could not be created.
        path: PathBuf,
    },
    /// The backing file system has no room for the segment.
    #[error(
        "no space for a {size}-byte segment at {path}: free space there or make it larger \
         (in Docker, raise /dev/shm with `docker run --shm-size=1g`)"
    )]
    NoSpace {
        /// Requested size.
        size: u64,
        /// Where it was to be created.
        path: PathBuf,
    },
    /// Huge pages were asked for but none are available.
    #[error(
        "no huge pages available for a {size}-byte segment: reserve them first \
         (`echo N > /proc/sys/vm/nr_hugepages`) or create without huge pages"
    )]
    HugePagesUnavailable {
        /// Requested size (rounded to whole huge pages).
        size: u64,
    },
    /// Huge pages are not possible on this backing.
    #[error(
        "POSIX shm lives on tmpfs and cannot use huge pages: use Backing::Memfd, or \
         Backing::Dir with a hugetlbfs mount"
    )]
    HugePagesUnsupported,
    /// `populate` was asked for and faulting the pages in failed.
    #[error(
        "could not pre-fault the segment's pages: {0}; create without `populate` or free memory"
    )]
    Populate(#[source] io::Error),
    /// The caller's initialisation failed; the segment was removed.
    #[error("segment initialisation failed (the segment was removed): {0}")]
    Init(#[source] Box<dyn Error + Send + Sync>),
    /// `open_or_create` found the segment but could not open it.
    #[error("the segment exists but cannot be opened: {0}")]
    Existing(#[source] OpenError),
    /// Any other system error.
    #[error("{op} failed while creating the segment: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

/// Errors from `open`, `open_read_only` and `receive`: every way a segment can be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name was refused.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No segment of that name exists.
    #[error(
        "segment {name} does not exist at {path}: create it first, or check the name and backing"
    )]
    NotFound {
        /// Segment name.
        name: SegmentName,
        /// Path looked up.
        path: PathBuf,
    },
    /// Memfd segments have no name to open by.
    #[error("memfd segments cannot be opened by name: receive them with SegmentBuilder::receive")]
    NotNamed,
    /// The file at the segment's path is a symlink; it was not followed.
    #[error("{path} is a symbolic link; refusing to follow it (someone planted it: remove it)")]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// The file is not accessible with our permissions.
    #[error("permission denied opening {path}: the segment belongs to another user or mode")]
    PermissionDenied {
        /// The path.
        path: PathBuf,
    },
    /// The file is not a regular file.
    #[error("the segment file is not a regular file: refusing to map it")]
    NotRegularFile,
    /// The file is owned by someone else.
    #[error(
        "the segment file is owned by uid {found}, expected uid {expected}: it may have been \
         planted; use SegmentBuilder::expected_owner if this is intended"
    )]
    WrongOwner {
        /// Expected owner.
        expected: u32,
        /// Actual owner.
        found: u32,
    },
    /// The file is smaller than a header (zero-length after the open timeout).
    #[error(
        "the segment file holds {size} bytes, less than a {HEADER_SIZE}-byte header: its \
         creator died before sizing it, or it is not a segment; remove it (`shmlane clean`)"
    )]
    TooSmall {
        /// File size.
        size: u64,
    },
    /// The file (or the header's size) is larger than the configured maximum.
    #[error(
        "the segment claims {size} bytes, above the limit of {max}: raise max_size if intended"
    )]
    TooLarge {
        /// Claimed size.
        size: u64,
        /// Configured maximum.
        max: u64,
    },
    /// The magic bytes are wrong: not a shmlane segment.
    #[error("bad magic {found:02x?}: this file is not a shmlane segment (or it was overwritten)")]
    BadMagic {
        /// The bytes found.
        found: [u8; 8],
    },
    /// The header format version is not ours.
    #[error(
        "segment format version {found} is not supported (this build reads {FORMAT_VERSION}): \
         use the same shmlane version in every process"
    )]
    UnsupportedVersion {
        /// Version found.
        found: u32,
    },
    /// The header size field is wrong.
    #[error("header size {found} is not {HEADER_SIZE}: the header is corrupt")]
    BadHeaderSize {
        /// Value found.
        found: u32,
    },
    /// The header's total size disagrees with the file's size.
    #[error(
        "the header says {header} bytes but the file holds {file}: the segment was resized or \
         corrupted; recreate it"
    )]
    SizeMismatch {
        /// Size in the header.
        header: u64,
        /// Size of the file.
        file: u64,
    },
    /// The layout fingerprint differs from the one expected.
    #[error(
        "layout fingerprint {found:#018x} differs from the expected {expected:#018x}: the \
         creator stores other types or sizes; build every process from the same version"
    )]
    FingerprintMismatch {
        /// Expected fingerprint.
        expected: u64,
        /// Fingerprint in the header.
        found: u64,
    },
    /// The creator pid field cannot be a process.
    #[error("creator pid {found} is not a valid pid: the header is corrupt")]
    BadCreator {
        /// Value found.
        found: u32,
    },
    /// The creator's presence token is zero: no creator of ours publishes that.
    #[error("the header names no creator (presence token 0): the header is corrupt")]
    NoCreatorToken,
    /// The backing field is unknown or disagrees with how the segment was opened.
    #[error(
        "backing code {found} does not match this segment's backing ({expected}): the header is corrupt"
    )]
    BadBacking {
        /// Expected code.
        expected: u32,
        /// Code found.
        found: u32,
    },
    /// Reserved header bytes are not zero.
    #[error("reserved header bytes are not zero: the header is corrupt or from a newer format")]
    BadReserved,
    /// The init state word holds no known state.
    #[error("init state {found} is not a known state: the header is corrupt; remove the segment")]
    CorruptState {
        /// Value found.
        found: u32,
    },
    /// The creator died before finishing initialisation.
    #[error(
        "the segment is stale: its creator{} died before finishing initialisation; remove it \
         (`shmlane clean`) and create it again", creator.map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Stale {
        /// The creator, if it had recorded itself.
        creator: Option<ProcessId>,
    },
    /// The creator is alive but did not finish initialisation within the open timeout.
    #[error(
        "the creator ({creator}) is still initialising after {waited:?}: retry, or raise open_timeout"
    )]
    InitTimeout {
        /// The live creator.
        creator: ProcessId,
        /// How long we waited.
        waited: Duration,
    },
    /// A live creator holds the file's creation lock but has not published its header within
    /// the open timeout (it is still sizing or writing a large segment).
    #[error(
        "the segment's creator is alive (it holds the file's creation lock) but has not \
         published the header after {waited:?}: retry, or raise open_timeout"
    )]
    Unpublished {
        /// How long we waited.
        waited: Duration,
    },
    /// Any other system error.
    #[error("{op} failed while opening the segment: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
}
