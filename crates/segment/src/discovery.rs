//! Finding our segments on disk, telling live ones from stale ones, and removing them.
//!
//! Only files whose name starts with [`NAME_PREFIX`](crate::NAME_PREFIX) are looked at, and
//! only ones whose header proves them ours and whose creator is proven dead are removed as
//! stale, or ones without a published header that hold nothing but what our creator writes
//! before publishing it (an empty file, a zero header, or our magic and the start of our
//! header), whose creator no longer holds the file's creation lock, and that are older than
//! [`EMPTY_GRACE`]. Corrupt or foreign files are reported, never removed automatically.
//! Staleness here is about the creator only; the upper crates refine it with their own peer
//! lists.
//!
//! The creation lock is a `flock` a creator takes on its file right after creating it and
//! holds until it publishes the header `Ready`; the kernel drops it when the creator dies. It
//! proves a creator that is still sizing or writing its file alive, however long that takes
//! (gigabytes to allocate and fault in). Only the instant between creating the file and
//! locking it is covered by the file's age alone. Removal takes the same lock, exclusively, so
//! two processes that judged one file stale never remove a new segment created under its name
//! meanwhile. Headers are read with `pread`, never through a mapping: a file truncated under
//! discovery gives a short read, not a `SIGBUS`.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::io::Errno;
use zerocopy::IntoBytes;

use crate::header::{
    self, FORMAT_VERSION, HEADER_SIZE, InitState, MAGIC, RawHeader, validate_identity,
};
use crate::segment::SHM_DIR;
use crate::{Liveness, ProcessId, RoleOwner, SegmentName, os};

/// How old (by modification time) a file without a published header must be before it counts
/// as stale, when its creator does not hold its creation lock: a live creator takes the lock
/// within microseconds of creating the file.
pub const EMPTY_GRACE: Duration = Duration::from_secs(10);

/// What discovery knows about one segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: SegmentName,
    /// Its path.
    pub path: PathBuf,
    /// File size in bytes.
    pub size: u64,
    /// The recorded creator, when the header got that far (pid and start time, for reports).
    pub creator: Option<ProcessId>,
    /// The creator's presence token, by which its liveness is told.
    pub creator_owner: Option<RoleOwner>,
    /// Creation time from the header.
    pub created_at: Option<SystemTime>,
    /// Verdict.
    pub status: SegmentStatus,
    identity: (u64, u64),
}

/// The verdict on a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentStatus {
    /// Initialised, and its creator runs (or cannot be checked).
    Alive,
    /// Its creator runs (or holds the creation lock) and has not finished initialising it yet.
    Initializing,
    /// Its creator is proven dead, or it kept an unpublished header of ours (or stayed empty)
    /// past [`EMPTY_GRACE`] without a creator holding its creation lock.
    Stale,
    /// It carries our prefix but is not a valid segment; left alone.
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// We may not read it (another user's segment).
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// Errors from listing and removing segments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The directory could not be listed.
    #[error("cannot list {dir}: {source}; check that it exists and is readable")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A file could not be removed.
    #[error("cannot remove {path}: {source}; check the directory's permissions")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

/// Lists our segments in `/dev/shm`.
pub fn list() -> Result<Vec<SegmentInfo>, DiscoveryError> {
    list_in(Path::new(SHM_DIR))
}

/// Lists our segments in a directory, sorted by name.
pub fn list_in(dir: &Path) -> Result<Vec<SegmentInfo>, DiscoveryError> {
    let read_dir = |source| DiscoveryError::ReadDir { dir: dir.to_owned(), source };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let Some(name) =
            entry.file_name().to_str().and_then(|n| SegmentName::from_file_name(n).ok())
        else {
            continue;
        };
        found.push(inspect(name, entry.path()));
    }
    found.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(found)
}

/// Removes the segment `name` from `/dev/shm`.
pub fn remove(name: &SegmentName) -> Result<(), DiscoveryError> {
    remove_in(Path::new(SHM_DIR), name)
}

/// Removes the segment `name` from a directory. Mapped handles keep working.
pub fn remove_in(dir: &Path, name: &SegmentName) -> Result<(), DiscoveryError> {
    let path = dir.join(name.file_name());
    std::fs::remove_file(&path).map_err(|source| DiscoveryError::Remove { path, source })
}

/// What a removal of stale segments did: the segments it removed, and the stale ones it could
/// not remove, each with the error that kept it ([`DiscoveryError::Remove`]: another user's
/// file in a sticky directory such as `/dev/shm`, a directory we may not write). A removal
/// goes on past such a file: one file it cannot remove never keeps it from the others.
#[derive(Debug)]
pub struct Removal<T = SegmentInfo> {
    /// What was removed.
    pub removed: Vec<T>,
    /// What was judged stale but could not be removed, with why.
    pub failed: Vec<(T, DiscoveryError)>,
}

/// Removes every stale segment in `/dev/shm`; returns what it removed and what it could not.
pub fn remove_stale() -> Result<Removal, DiscoveryError> {
    remove_stale_in(Path::new(SHM_DIR))
}

/// Removes every stale segment in a directory; returns what it removed and what it could not.
pub fn remove_stale_in(dir: &Path) -> Result<Removal, DiscoveryError> {
    remove_stale_matching(dir, |_| true)
}

/// Removes the stale segments in a directory whose names `select` accepts; returns what it
/// removed and what it could not (it goes on past those). Fails only if the directory cannot
/// be listed.
pub fn remove_stale_matching(
    dir: &Path,
    select: impl Fn(&SegmentName) -> bool,
) -> Result<Removal, DiscoveryError> {
    let mut removal = Removal { removed: Vec::new(), failed: Vec::new() };
    let stale = list_in(dir)?.into_iter().filter(|i| i.status == SegmentStatus::Stale);
    for info in stale.filter(|i| select(&i.name)) {
        match remove_judged(&info.path, info.identity) {
            Ok(true) => removal.removed.push(info),
            Ok(false) => {}
            Err(source) => {
                let error = DiscoveryError::Remove { path: info.path.clone(), source };
                removal.failed.push((info, error));
            }
        }
    }
    Ok(removal)
}

/// What [`clear_stale`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cleared {
    /// The file was stale and is gone.
    Removed,
    /// The path no longer names the file judged (removed, or a new segment took the name).
    Replaced,
    /// The file is still there and not stale (its creator may be at work).
    Kept,
}

/// Removes the segment file at `path` if it is still the file `judged` (device and inode) and
/// discovery calls it stale: for `open_or_create`, which then creates the segment afresh.
pub(crate) fn clear_stale(
    name: &SegmentName,
    path: &Path,
    judged: (u64, u64),
) -> Result<Cleared, DiscoveryError> {
    let info = inspect(name.clone(), path.to_owned());
    if info.identity != judged {
        return Ok(Cleared::Replaced);
    }
    if info.status != SegmentStatus::Stale {
        return Ok(Cleared::Kept);
    }
    match remove_judged(&info.path, info.identity) {
        Ok(true) => Ok(Cleared::Removed),
        // Removed by someone else, replaced, or locked by a creator meanwhile: look again.
        Ok(false) => Ok(Cleared::Replaced),
        Err(source) => Err(DiscoveryError::Remove { path: info.path, source }),
    }
}

/// Removes the file at `path` if it is still the file judged stale (`identity`: device and
/// inode) and no creator holds its creation lock. Returns whether it removed it.
fn remove_judged(path: &Path, identity: (u64, u64)) -> io::Result<bool> {
    let fd = match os::file_open(path, false, false, 0) {
        Ok(fd) => fd,
        // Gone, or replaced by something we would not have judged (a symlink).
        Err(Errno::NOENT | Errno::LOOP) => return Ok(false),
        Err(errno) => return Err(os::io_error(errno)),
    };
    let facts = os::fstat(&fd).map_err(os::io_error)?;
    if (facts.device, facts.inode) != identity {
        return Ok(false); // A new segment of the same name.
    }
    unlink_if_same(path, &fd)
}

/// Removes `path` if it still names the file open as `fd`, holding the file's removal lock
/// while it checks and removes, so that no other remover can remove it and let a new segment
/// take the name in between. Returns whether it removed it; `false` also when a live creator
/// holds the creation lock.
pub(crate) fn unlink_if_same(path: &Path, fd: impl AsFd) -> io::Result<bool> {
    let ours = os::fstat(&fd).map_err(os::io_error)?;
    let Some(_removal) = os::lock_for_removal(&fd) else {
        return Ok(false);
    };
    match os::lstat(path) {
        Ok(there) if (there.device, there.inode) == (ours.device, ours.inode) => {
            match std::fs::remove_file(path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        }
        // Already gone, or the name now belongs to another file: leave it alone.
        _ => Ok(false),
    }
}

fn inspect(name: SegmentName, path: PathBuf) -> SegmentInfo {
    let mut info = SegmentInfo {
        name,
        path,
        size: 0,
        creator: None,
        creator_owner: None,
        created_at: None,
        status: SegmentStatus::Stale,
        identity: (0, 0),
    };
    info.status = match classify(&mut info) {
        Ok(status) | Err(status) => status,
    };
    info
}

/// Fills in what the file says and returns the verdict (`Err` for early verdicts).
fn classify(info: &mut SegmentInfo) -> Result<SegmentStatus, SegmentStatus> {
    let corrupt = |reason: &str| SegmentStatus::Corrupt { reason: reason.to_owned() };
    let unreadable = |reason: String| SegmentStatus::Unreadable { reason };
    let fd = match os::file_open(&info.path, false, false, 0) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(corrupt("a symbolic link, not a segment")),
        Err(errno) => return Err(unreadable(errno.to_string())),
    };
    let facts = os::fstat(&fd).map_err(|e| unreadable(e.to_string()))?;
    info.size = facts.size;
    info.identity = (facts.device, facts.inode);
    if !facts.regular {
        return Err(corrupt("not a regular file"));
    }
    let unpublished = || {
        if abandoned_unpublished(&fd, &facts) {
            SegmentStatus::Stale
        } else {
            SegmentStatus::Initializing
        }
    };
    // Our creator sizes its file in one step, from empty to at least a header.
    match facts.size {
        0 => return Err(unpublished()),
        1..HEADER_SIZE => {
            return Err(corrupt("shorter than a header but not empty: not a shmlane segment"));
        }
        _ => {}
    }
    let header = match header::read_at(&fd) {
        Ok(Some(header)) => header,
        Ok(None) => {
            return Err(unreadable(
                "the file shrank below a header while it was read: list again".to_owned(),
            ));
        }
        Err(errno) => return Err(unreadable(errno.to_string())),
    };
    let state = match InitState::from_raw(header.init_state) {
        None => return Err(corrupt("unknown init state")),
        Some(InitState::Empty) if unpublished_header(&header, facts.size) => {
            return Err(unpublished());
        }
        Some(InitState::Empty) => {
            return Err(corrupt(
                "no published header, and not the start of a shmlane header: not a shmlane \
                 segment",
            ));
        }
        Some(state) => state,
    };
    // Our creator publishes a state only after writing these fields; a header without them is
    // not ours, and its "creator" proves nothing (a pid of 0 is never alive).
    validate_identity(&header).map_err(|e| corrupt(&e.to_string()))?;
    info.creator = Some(header.creator());
    info.creator_owner = header.creator_owner();
    info.created_at = Some(UNIX_EPOCH + Duration::from_nanos(header.created_unix_ns));
    Ok(match (header.creator_liveness(), state) {
        (Liveness::Dead, _) => SegmentStatus::Stale,
        (_, InitState::Ready) => SegmentStatus::Alive,
        _ => SegmentStatus::Initializing,
    })
}

/// Whether the creator of a file without a published header (`fd`, `facts`) is gone: the file
/// is older than [`EMPTY_GRACE`] (old enough for its creator to have locked it) and nobody
/// holds its creation lock. Otherwise its creator may still be at work.
pub(crate) fn abandoned_unpublished(fd: impl AsFd, facts: &os::FileFacts) -> bool {
    let age = facts.modified.elapsed().unwrap_or_default();
    age >= EMPTY_GRACE && !os::creation_locked(fd)
}

/// Whether a header whose state word is still `Empty` holds only what our creator can have left
/// in it before publishing it (it writes every other field into the zero-filled file, then
/// publishes the state): all zeros (nothing written yet), or our magic with the fields whose
/// value we know each byte zero (not written yet) or ours, the total size being the file's.
/// The fingerprint, creator (pid, start time, token) and creation time may hold anything once
/// the magic is there.
///
/// A header of ours caught mid-write before its magic would be judged foreign: reported as
/// corrupt, never removed, which is the safe side.
fn unpublished_header(header: &RawHeader, file_size: u64) -> bool {
    let written_or_zero =
        |found: &[u8], ours: &[u8]| found.iter().zip(ours).all(|(&f, &o)| f == 0 || f == o);
    header.as_bytes().iter().all(|&b| b == 0)
        || (header.magic == MAGIC
            && written_or_zero(header.format_version.as_bytes(), FORMAT_VERSION.as_bytes())
            && written_or_zero(header.header_size.as_bytes(), (HEADER_SIZE as u32).as_bytes())
            && written_or_zero(header.total_size.as_bytes(), file_size.as_bytes())
            && header.reserved0 == 0
            && header.reserved == [0; 14])
}
