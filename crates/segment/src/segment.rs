//! Creating and opening named segments: the builder, the handle, and their errors.

use std::error::Error;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{io, thread};

use rustix::io::Errno;
use zerocopy::IntoBytes;

use crate::discovery::{self, Cleared};
use crate::header::{
    self, FORMAT_VERSION, INIT_STATE_OFFSET, InitState, MAGIC, PUBLISH, RawHeader,
};
use crate::mapping::Mapping;
use crate::name::{NameError, SegmentName};
use crate::offset::{HEADER_SIZE, Offset, OffsetError, SharedView};
use crate::{Fingerprint, Liveness, ProcessId, os};

/// Default permissions: read-write for the owner only.
const DEFAULT_MODE: u32 = 0o600;
/// Default cap on segment sizes read from files and headers (64 GiB).
const DEFAULT_MAX_SIZE: u64 = 64 << 30;
/// Default time an opener waits for a creator to finish initialising.
const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_millis(500);
/// Where POSIX shared memory lives on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Where a segment's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Backing {
    /// POSIX shared memory (`shm_open`, a file in `/dev/shm`): found by name. The default.
    #[default]
    PosixShm,
    /// A file `shmlane.NAME` in a directory: a hugetlbfs mount, a tmpfs of your own, or a disk
    /// (persistent; slower to fault in).
    Dir(PathBuf),
    /// An anonymous memfd, sealed against shrinking and growing. It has no path: hand it to
    /// peers with [`Segment::send_fd`] and [`SegmentBuilder::receive`].
    Memfd,
}

impl Backing {
    fn code(&self) -> u32 {
        match self {
            Backing::PosixShm => 1,
            Backing::Dir(_) => 2,
            Backing::Memfd => 3,
        }
    }
}

/// Who must own a segment file for `open` to accept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerCheck {
    CurrentUser,
    Uid(u32),
    Any,
}

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

/// Where an open segment's file is.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    Path(PathBuf),
    Memfd,
}

/// Configures and then creates or opens a [`Segment`].
///
/// ```
/// use shmlane_segment::{Fingerprint, Segment};
/// let name = format!("doc-builder-{}", std::process::id());
/// let fingerprint = Fingerprint::new("doc-example");
/// let created = Segment::builder(&name).size(4096).fingerprint(fingerprint).create()?;
/// let opened = Segment::builder(&name).fingerprint(fingerprint).open()?;
/// assert_eq!(opened.len(), 4096);
/// # drop(created);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SegmentBuilder {
    pub(crate) name: String,
    size: Option<u64>,
    mode: u32,
    backing: Backing,
    populate: bool,
    lock: bool,
    huge_pages: bool,
    fingerprint: Fingerprint,
    open_timeout: Duration,
    max_size: u64,
    owner: OwnerCheck,
    unlink_on_drop: Option<bool>,
}

/// The caller's initialisation of a fresh segment, run before it is published `Ready`.
type InitResult = Result<(), Box<dyn Error + Send + Sync>>;

impl SegmentBuilder {
    /// Starts a builder for the segment `name` (validated when used).
    pub fn new(name: impl Into<String>) -> Self {
        SegmentBuilder {
            name: name.into(),
            size: None,
            mode: DEFAULT_MODE,
            backing: Backing::default(),
            populate: false,
            lock: false,
            huge_pages: false,
            fingerprint: Fingerprint::from_raw(0),
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            max_size: DEFAULT_MAX_SIZE,
            owner: OwnerCheck::CurrentUser,
            unlink_on_drop: None,
        }
    }

    /// Total size in bytes, header included (see [`Carver::total_size`](crate::Carver)).
    /// Rounded up to whole huge pages when huge pages are used.
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }

    /// Permission bits of a created file (default `0o600`), applied exactly (no umask).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Where the bytes live (default POSIX shm).
    pub fn backing(mut self, backing: Backing) -> Self {
        self.backing = backing;
        self
    }

    /// Fault every page in at create/open, so the first message does not pay page faults.
    pub fn populate(mut self, yes: bool) -> Self {
        self.populate = yes;
        self
    }

    /// Lock the pages in RAM (`mlock`). Best effort: above `RLIMIT_MEMLOCK` the segment still
    /// works unlocked; check [`Segment::is_locked`].
    pub fn lock(mut self, yes: bool) -> Self {
        self.lock = yes;
        self
    }

    /// Back the segment with huge pages (memfd with `MFD_HUGETLB`, or a `Dir` on hugetlbfs).
    pub fn huge_pages(mut self, yes: bool) -> Self {
        self.huge_pages = yes;
        self
    }

    /// Layout fingerprint written at creation and required at open (default 0).
    pub fn fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = fingerprint;
        self
    }

    /// How long `open` waits for a creator that is still initialising (default 500 ms).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Largest segment accepted from a file or a header (default 64 GiB).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Accept segment files owned by `uid` (default: only our effective uid).
    pub fn expected_owner(mut self, uid: u32) -> Self {
        self.owner = OwnerCheck::Uid(uid);
        self
    }

    /// Accept segment files whatever their owner (for shared multi-user setups).
    pub fn any_owner(mut self) -> Self {
        self.owner = OwnerCheck::Any;
        self
    }

    /// Remove the name when the handle drops (default: yes for the creator, no for openers).
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = Some(yes);
        self
    }

    /// Creates a new segment; fails with `AlreadyExists` if the name is taken.
    pub fn create(self) -> Result<Segment, CreateError> {
        self.create_with(|_| Ok(()))
    }

    /// Creates a new segment and runs `init` on it before publishing it `Ready`: openers never
    /// see a half-initialised layout. If `init` fails the segment is removed.
    pub fn create_with(
        self,
        init: impl FnOnce(&Segment) -> InitResult,
    ) -> Result<Segment, CreateError> {
        let name = SegmentName::new(&self.name)?;
        let mut size = self.size.unwrap_or(0);
        self.check_size(size)?;
        let (fd, location) = self.create_file(&name)?;
        // From here on, a failure must not leave the file behind.
        let mut cleanup = RemoveOnError(match &location {
            Location::Path(path) => Some(path.clone()),
            Location::Memfd => None,
        });
        let io = |op| move |errno: Errno| CreateError::Io { op, source: os::io_error(errno) };
        if let Location::Path(path) = &location {
            // Held until `Ready`: proves us alive to discovery while the file has no header.
            // Best effort: on a file system without locks discovery goes by the file's age.
            // Bounded: a process that keeps a lock on our new file fails the creation.
            if os::lock_creation(&fd, self.open_timeout) == Err(Errno::WOULDBLOCK) {
                return Err(CreateError::Locked { path: path.clone(), waited: self.open_timeout });
            }
        }
        crate::crash_point!("segment.create.opened");

        if self.huge_pages {
            let page = os::fstat(&fd).map_err(io("fstat"))?.block_size.max(1);
            size = size.div_ceil(page).saturating_mul(page);
            self.check_size(size)?;
        }
        if matches!(location, Location::Path(_)) {
            os::set_mode(&fd, self.mode).map_err(io("fchmod"))?;
        }
        os::reserve(&fd, size).map_err(|errno| match errno {
            Errno::NOSPC | Errno::NOMEM if self.huge_pages => {
                CreateError::HugePagesUnavailable { size }
            }
            Errno::NOSPC | Errno::FBIG => CreateError::NoSpace { size, path: self.path_of(&name) },
            other => io("fallocate")(other),
        })?;
        if matches!(location, Location::Memfd) {
            os::seal(&fd).map_err(io("fcntl(F_ADD_SEALS)"))?;
        }
        crate::crash_point!("segment.create.sized");

        let creator = ProcessId::current()
            .map_err(|source| CreateError::Io { op: "read /proc/self/stat", source })?;
        let creator_token = crate::presence::current()
            .map_err(|source| CreateError::Io { op: "register presence", source })?;
        let mapping = Mapping::new(fd.as_fd(), size, true)
            .map_err(|source| CreateError::Io { op: "mmap", source })?;
        if self.populate {
            mapping.populate().map_err(CreateError::Populate)?;
        }
        let locked = self.lock && mapping.lock().is_ok();
        let created_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let header = RawHeader::new(
            self.fingerprint.get(),
            size,
            creator,
            creator_token,
            self.backing.code(),
            created_unix_ns,
        );
        // Every field but the state word, which openers may already be polling: it is only
        // ever accessed atomically.
        let (before_state, from_state) = header.as_bytes().split_at(INIT_STATE_OFFSET as usize);
        mapping.write(0, before_state).map_err(offset_bug)?;
        mapping.write(INIT_STATE_OFFSET + 4, &from_state[4..]).map_err(offset_bug)?;
        publish_state(&mapping, InitState::Initializing)?;

        let segment = Segment {
            mapping,
            fd,
            name,
            location,
            header: RawHeader { init_state: InitState::Ready as u32, ..header },
            created: true,
            locked,
            unlink_on_drop: self.unlink_on_drop.unwrap_or(true),
        };
        // From here on the segment's own unlink, which checks that the path still names our
        // file, removes it on failure (whatever `unlink_on_drop` says).
        cleanup.0 = None;
        crate::crash_point!("segment.create.initializing");
        let published = init(&segment).map_err(CreateError::Init).and_then(|()| {
            crate::crash_point!("segment.create.before_ready");
            publish_state(&segment.mapping, InitState::Ready)
        });
        if let Err(error) = published {
            let _ = segment.unlink();
            return Err(error);
        }
        if matches!(segment.location, Location::Path(_)) {
            // Published: from now on our pid, not the lock, tells discovery we are alive. A
            // failed unlock keeps the file locked: removals then wait for our descriptor to
            // close, which is safe.
            let _ = os::unlock_creation(&segment.fd);
        }
        Ok(segment)
    }

    /// Opens an existing segment read-write, validating its header.
    pub fn open(self) -> Result<Segment, OpenError> {
        self.open_named(true)
    }

    /// Opens an existing segment read-only: this process cannot corrupt it.
    pub fn open_read_only(self) -> Result<Segment, OpenError> {
        self.open_named(false)
    }

    /// Opens the segment, or creates it (running `init`) if it does not exist yet.
    /// [`Segment::is_creator`] tells which happened. A file left by a creator that died before
    /// publishing it is removed and the segment created afresh, if discovery calls it stale
    /// (see [`remove_stale`](crate::remove_stale)); one whose creator may still be at work gives
    /// [`CreateError::Existing`].
    pub fn open_or_create_with(
        self,
        init: impl Fn(&Segment) -> InitResult,
    ) -> Result<Segment, CreateError> {
        let name = SegmentName::new(&self.name)?;
        let path = self.path_of(&name);
        // A racing creator may remove its file on failure between our two attempts, and a
        // stale file is removed before creating afresh: retry.
        for _ in 0..8 {
            match self.clone().create_with(&init) {
                Err(CreateError::AlreadyExists { .. }) => {}
                other => return other,
            }
            // The file `open` is about to judge, to recognise it afterwards.
            let judged = os::lstat(&path).ok().map(|f| (f.device, f.inode));
            match self.clone().open() {
                Err(OpenError::NotFound { .. }) => continue,
                Ok(segment) => return Ok(segment),
                // Left by a creator that died before publishing it: removed if discovery
                // judges it stale (its creator proven dead, or headerless, unlocked and old),
                // exactly as `remove_stale` would, then created again.
                Err(open @ (OpenError::Stale { .. } | OpenError::TooSmall { size: 0 })) => {
                    match judged.map(|judged| discovery::clear_stale(&name, &path, judged)) {
                        Some(Ok(Cleared::Removed)) => {
                            tracing::info!(
                                target: "shmlane_segment",
                                segment = name.as_str(),
                                "removed a stale segment (its creator died before it was ready) \
                                 to create it afresh"
                            );
                            continue;
                        }
                        None | Some(Ok(Cleared::Replaced)) => continue,
                        Some(Ok(Cleared::Kept) | Err(_)) => {
                            return Err(CreateError::Existing(open));
                        }
                    }
                }
                Err(open) => return Err(CreateError::Existing(open)),
            }
        }
        Err(CreateError::Io {
            op: "open_or_create",
            source: io::Error::other("the segment kept appearing and vanishing; retry"),
        })
    }

    /// [`open_or_create_with`](Self::open_or_create_with) with no initialisation.
    pub fn open_or_create(self) -> Result<Segment, CreateError> {
        self.open_or_create_with(|_| Ok(()))
    }

    fn check_size(&self, size: u64) -> Result<(), CreateError> {
        if size < HEADER_SIZE || size > self.max_size {
            return Err(CreateError::InvalidSize { size, min: HEADER_SIZE, max: self.max_size });
        }
        Ok(())
    }

    fn path_of(&self, name: &SegmentName) -> PathBuf {
        match &self.backing {
            Backing::PosixShm => Path::new(SHM_DIR).join(name.file_name()),
            Backing::Dir(dir) => dir.join(name.file_name()),
            Backing::Memfd => PathBuf::from(format!("memfd:{}", name.file_name())),
        }
    }

    fn create_file(&self, name: &SegmentName) -> Result<(OwnedFd, Location), CreateError> {
        let path = self.path_of(name);
        let fd = match &self.backing {
            Backing::PosixShm if self.huge_pages => return Err(CreateError::HugePagesUnsupported),
            Backing::PosixShm => os::shm_open(&name.file_name(), true, true, self.mode),
            Backing::Dir(_) => os::file_open(&path, true, true, self.mode),
            Backing::Memfd => {
                let fd =
                    os::memfd(&name.file_name(), self.huge_pages).map_err(|errno| match errno {
                        Errno::INVAL | Errno::NOENT if self.huge_pages => {
                            CreateError::HugePagesUnavailable { size: self.size.unwrap_or(0) }
                        }
                        other => {
                            CreateError::Io { op: "memfd_create", source: os::io_error(other) }
                        }
                    })?;
                return Ok((fd, Location::Memfd));
            }
        };
        match fd {
            Ok(fd) => Ok((fd, Location::Path(path))),
            Err(Errno::EXIST) => Err(CreateError::AlreadyExists { name: name.clone(), path }),
            Err(Errno::ACCESS | Errno::PERM) => Err(CreateError::PermissionDenied { path }),
            Err(errno) => {
                Err(CreateError::Io { op: "open(O_CREAT|O_EXCL)", source: os::io_error(errno) })
            }
        }
    }

    fn open_named(self, writable: bool) -> Result<Segment, OpenError> {
        let name = SegmentName::new(&self.name)?;
        let path = self.path_of(&name);
        let fd = match &self.backing {
            Backing::PosixShm => os::shm_open(&name.file_name(), false, writable, 0),
            Backing::Dir(_) => os::file_open(&path, false, writable, 0),
            Backing::Memfd => return Err(OpenError::NotNamed),
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(OpenError::NotFound { name, path }),
            Err(Errno::LOOP) => return Err(OpenError::Symlink { path }),
            Err(Errno::ACCESS | Errno::PERM) => return Err(OpenError::PermissionDenied { path }),
            Err(errno) => {
                return Err(OpenError::Io { op: "open", source: os::io_error(errno) });
            }
        };
        self.attach_fd(fd, name, Location::Path(path), writable)
    }

    /// Validates and maps an open segment file: the common half of `open` and `receive`.
    pub(crate) fn attach_fd(
        &self,
        fd: OwnedFd,
        name: SegmentName,
        location: Location,
        writable: bool,
    ) -> Result<Segment, OpenError> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(20);
        let mut mapping: Option<Mapping> = None;
        let header = loop {
            let facts = os::fstat(&fd)
                .map_err(|errno| OpenError::Io { op: "fstat", source: os::io_error(errno) })?;
            self.check_file(&facts)?;
            let timed_out = started.elapsed() >= self.open_timeout;
            if facts.size >= HEADER_SIZE {
                if mapping.as_ref().is_none_or(|m| m.len() != facts.size) {
                    mapping = Some(
                        Mapping::new(fd.as_fd(), facts.size, writable)
                            .map_err(|source| OpenError::Io { op: "mmap", source })?,
                    );
                }
                let map = mapping.as_ref().ok_or(OpenError::TooSmall { size: facts.size })?;
                let header =
                    header::snapshot(map).map_err(|_| OpenError::TooSmall { size: facts.size })?;
                let state = InitState::from_raw(header.init_state)
                    .ok_or(OpenError::CorruptState { found: header.init_state })?;
                if state != InitState::Empty {
                    validate_identity(&header)?;
                    match state {
                        InitState::Ready => break header,
                        _ if header.creator_liveness() == Liveness::Dead => {
                            return Err(OpenError::Stale { creator: Some(header.creator()) });
                        }
                        _ if timed_out => {
                            return Err(OpenError::InitTimeout {
                                creator: header.creator(),
                                waited: started.elapsed(),
                            });
                        }
                        _ => {}
                    }
                } else if timed_out || discovery::abandoned_unpublished(&fd, &facts) {
                    return Err(unpublished(&fd, started, OpenError::Stale { creator: None }));
                }
            } else if facts.size > 0 {
                // A creator sizes its file in one step, from empty to its whole size: a file
                // shorter than a header is no segment in the making. Nothing to wait for.
                return Err(OpenError::TooSmall { size: facts.size });
            } else if timed_out || discovery::abandoned_unpublished(&fd, &facts) {
                return Err(unpublished(&fd, started, OpenError::TooSmall { size: 0 }));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        let mapping = mapping.ok_or(OpenError::TooSmall { size: 0 })?;
        self.validate(&header, mapping.len(), &location)?;
        if self.populate {
            mapping
                .populate()
                .map_err(|source| OpenError::Io { op: "madvise(MADV_POPULATE)", source })?;
        }
        let locked = self.lock && mapping.lock().is_ok();
        Ok(Segment {
            mapping,
            fd,
            name,
            location,
            header,
            created: false,
            locked,
            unlink_on_drop: self.unlink_on_drop.unwrap_or(false),
        })
    }

    /// The uid that must own segment files and send memfds, or `None` for anyone.
    pub(crate) fn allowed_uid(&self) -> Option<u32> {
        match self.owner {
            OwnerCheck::CurrentUser => Some(os::effective_uid()),
            OwnerCheck::Uid(uid) => Some(uid),
            OwnerCheck::Any => None,
        }
    }

    fn check_file(&self, facts: &os::FileFacts) -> Result<(), OpenError> {
        if !facts.regular {
            return Err(OpenError::NotRegularFile);
        }
        if let Some(expected) = self.allowed_uid().filter(|&uid| uid != facts.uid) {
            return Err(OpenError::WrongOwner { expected, found: facts.uid });
        }
        if facts.size > self.max_size {
            return Err(OpenError::TooLarge { size: facts.size, max: self.max_size });
        }
        Ok(())
    }

    /// Checks the fields of a `Ready` header against the file and the builder.
    fn validate(
        &self,
        header: &RawHeader,
        file_size: u64,
        location: &Location,
    ) -> Result<(), OpenError> {
        if header.total_size > self.max_size {
            return Err(OpenError::TooLarge { size: header.total_size, max: self.max_size });
        }
        if header.total_size != file_size {
            return Err(OpenError::SizeMismatch { header: header.total_size, file: file_size });
        }
        let expected_backing = match location {
            Location::Memfd => Backing::Memfd.code(),
            Location::Path(_) => self.backing.code(),
        };
        if header.backing != expected_backing {
            return Err(OpenError::BadBacking {
                expected: expected_backing,
                found: header.backing,
            });
        }
        if header.reserved0 != 0 || header.reserved != [0; 14] {
            return Err(OpenError::BadReserved);
        }
        if header.layout_fingerprint != self.fingerprint.get() {
            return Err(OpenError::FingerprintMismatch {
                expected: self.fingerprint.get(),
                found: header.layout_fingerprint,
            });
        }
        Ok(())
    }
}

/// The error for a file whose header was not published within the open timeout:
/// `Unpublished` while a live creator holds the creation lock, else `otherwise`.
fn unpublished(fd: &OwnedFd, started: Instant, otherwise: OpenError) -> OpenError {
    if os::creation_locked(fd) {
        OpenError::Unpublished { waited: started.elapsed() }
    } else {
        otherwise
    }
}

/// Checks the fields that say "this is a shmlane segment of our format, written by a process".
pub(crate) fn validate_identity(header: &RawHeader) -> Result<(), OpenError> {
    if header.magic != MAGIC {
        return Err(OpenError::BadMagic { found: header.magic });
    }
    if header.format_version != FORMAT_VERSION {
        return Err(OpenError::UnsupportedVersion { found: header.format_version });
    }
    if u64::from(header.header_size) != HEADER_SIZE {
        return Err(OpenError::BadHeaderSize { found: header.header_size });
    }
    if header.creator_pid == 0 || header.creator_pid > i32::MAX as u32 {
        return Err(OpenError::BadCreator { found: header.creator_pid });
    }
    if header.creator_token == 0 {
        return Err(OpenError::NoCreatorToken);
    }
    Ok(())
}

/// Stores the header's state word. Release: publishes every byte written before (the identity
/// fields for `Initializing`, the caller's layout for `Ready`); pairs with the opener's Acquire.
fn publish_state(mapping: &Mapping, state: InitState) -> Result<(), CreateError> {
    let word = mapping.view::<crate::sync::AtomicU32>(INIT_STATE_OFFSET).map_err(offset_bug)?;
    word.store(state as u32, PUBLISH);
    Ok(())
}

/// Offsets inside the header are constants checked at compile time; failing them is a bug.
fn offset_bug(error: OffsetError) -> CreateError {
    CreateError::Io { op: "header write", source: io::Error::other(error) }
}

/// Removes a half-created file unless disarmed.
struct RemoveOnError(Option<PathBuf>);

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

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
