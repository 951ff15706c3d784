//! Finding our segments on disk, telling live ones from stale ones, and removing them.
//!
//! Only files whose name starts with [`NAME_PREFIX`](crate::NAME_PREFIX) are looked at, and
//! only ones whose header proves them ours and whose creator is proven dead are removed as
//! stale, or ones that stayed without a published header for [`EMPTY_GRACE`] and hold nothing
//! but what our creator writes before publishing it (an empty file, a zero header, or our magic
//! and the start of our header). Corrupt or foreign files are reported, never removed
//! automatically. Staleness here is about the creator only; the upper crates refine it with
//! their own peer lists.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zerocopy::IntoBytes;

use crate::header::{self, FORMAT_VERSION, HEADER_SIZE, InitState, MAGIC, RawHeader};
use crate::mapping::Mapping;
use crate::segment::SHM_DIR;
use crate::{Liveness, ProcessId, SegmentName, os};

/// How old (by modification time) a file without a published header must be before it counts
/// as stale: a live creator publishes the header within microseconds of creating the file.
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
    /// The recorded creator, when the header got that far.
    pub creator: Option<ProcessId>,
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
    /// Its creator runs and has not finished initialising it yet.
    Initializing,
    /// Its creator is proven dead, or it kept an unpublished header of ours (or stayed empty)
    /// past [`EMPTY_GRACE`].
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

/// Removes every stale segment in `/dev/shm` and returns what it removed.
pub fn remove_stale() -> Result<Vec<SegmentInfo>, DiscoveryError> {
    remove_stale_in(Path::new(SHM_DIR))
}

/// Removes every stale segment in a directory and returns what it removed.
pub fn remove_stale_in(dir: &Path) -> Result<Vec<SegmentInfo>, DiscoveryError> {
    remove_stale_matching(dir, |_| true)
}

/// Removes the stale segments in a directory whose names `select` accepts; returns what it
/// removed.
pub fn remove_stale_matching(
    dir: &Path,
    select: impl Fn(&SegmentName) -> bool,
) -> Result<Vec<SegmentInfo>, DiscoveryError> {
    let mut removed = Vec::new();
    let stale = list_in(dir)?.into_iter().filter(|i| i.status == SegmentStatus::Stale);
    for info in stale.filter(|i| select(&i.name)) {
        // Only if the path still names the file we judged (not a new segment of the same name).
        let same = os::lstat(&info.path).is_ok_and(|f| (f.device, f.inode) == info.identity);
        if same {
            match std::fs::remove_file(&info.path) {
                Ok(()) => removed.push(info),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DiscoveryError::Remove { path: info.path, source });
                }
            }
        }
    }
    Ok(removed)
}

fn inspect(name: SegmentName, path: PathBuf) -> SegmentInfo {
    let mut info = SegmentInfo {
        name,
        path,
        size: 0,
        creator: None,
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
    let fd = match os::file_open(&info.path, false, false, 0) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Err(corrupt("a symbolic link, not a segment")),
        Err(errno) => {
            return Err(SegmentStatus::Unreadable { reason: errno.to_string() });
        }
    };
    let facts = os::fstat(&fd).map_err(|e| SegmentStatus::Unreadable { reason: e.to_string() })?;
    info.size = facts.size;
    info.identity = (facts.device, facts.inode);
    if !facts.regular {
        return Err(corrupt("not a regular file"));
    }
    let young = std::fs::symlink_metadata(&info.path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() < EMPTY_GRACE);
    let empty = if young { SegmentStatus::Initializing } else { SegmentStatus::Stale };
    // Our creator sizes its file in one step, from empty to at least a header.
    match facts.size {
        0 => return Err(empty),
        1..HEADER_SIZE => {
            return Err(corrupt("shorter than a header but not empty: not a shmlane segment"));
        }
        _ => {}
    }
    let mapping = Mapping::new(fd.as_fd(), HEADER_SIZE, false)
        .map_err(|e| SegmentStatus::Unreadable { reason: e.to_string() })?;
    let header = header::snapshot(&mapping)
        .map_err(|e| SegmentStatus::Unreadable { reason: e.to_string() })?;
    let state = match InitState::from_raw(header.init_state) {
        None => return Err(corrupt("unknown init state")),
        Some(InitState::Empty) if unpublished_header(&header, facts.size) => return Err(empty),
        Some(InitState::Empty) => {
            return Err(corrupt(
                "no published header, and not the start of a shmlane header: not a shmlane \
                 segment",
            ));
        }
        Some(state) => state,
    };
    if header.magic != MAGIC || header.format_version != FORMAT_VERSION {
        return Err(corrupt("bad magic or unsupported format version"));
    }
    info.creator = Some(header.creator());
    info.created_at = Some(UNIX_EPOCH + Duration::from_nanos(header.created_unix_ns));
    Ok(match (header.creator().liveness(), state) {
        (Liveness::Dead, _) => SegmentStatus::Stale,
        (_, InitState::Ready) => SegmentStatus::Alive,
        _ => SegmentStatus::Initializing,
    })
}

/// Whether a header whose state word is still `Empty` holds only what our creator can have left
/// in it before publishing it (it writes every other field into the zero-filled file, then
/// publishes the state): all zeros (nothing written yet), or our magic with the fields whose
/// value we know each byte zero (not written yet) or ours, the total size being the file's.
/// The fingerprint, creator and creation time may hold anything once the magic is there.
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
            && header.reserved == [0; 17])
}
