//! Private copies of segment files, for tools that read segments this process does not own.
//!
//! Whoever may write a file may shrink it, and a process that maps the file then gets `SIGBUS`
//! on its next access past the new end. That is a fair risk between the processes of one user,
//! who trust each other anyway, but not for a tool that reads another user's segments (root's
//! `shmlane list`, say): their owner could crash it at will. So such a file is never mapped.
//! [`SegmentBuilder::open_copy`] reads it with `pread` into a memfd of this process's own,
//! seals that against shrinking and growing, and maps the copy, validated as `open` validates
//! a file: a file that shrinks while it is copied gives a short read, hence an error, never a
//! signal.
//!
//! A copy is a snapshot: what a live owner writes while it is taken may be torn across the
//! chunks read, as through a mapping; readers validate it as they validate any shared bytes.

use std::io;
use std::path::Path;
use std::time::Duration;

use rustix::io::Errno;

use crate::segment::Location;
use crate::{OpenError, Segment, SegmentBuilder, SegmentName, os};

/// Bytes read and written at a time.
const CHUNK: u64 = 1 << 20;

/// How much of the file a copy holds.
#[derive(Clone, Copy, Debug)]
enum Extent {
    /// All of it, if it holds at most this many bytes.
    Whole { max: u64 },
    /// Its first bytes, up to this many; the rest of the copy reads as zeros.
    Head { len: u64 },
}

impl SegmentBuilder {
    /// Opens the segment file at `path` (where this builder's name and backing put it) as a
    /// private, read-only copy taken with `pread`, for reading segments of other users: the
    /// file itself is never mapped, so its owner cannot make this process `SIGBUS` by
    /// shrinking it. The file's owner, and the header against the builder's fingerprint,
    /// backing and size limit, are checked as [`open_read_only`] checks them; nothing is
    /// waited for (a copy never changes), so a header that a live creator has not published
    /// gives `InitTimeout` or `Unpublished` at once.
    ///
    /// A file larger than `max_copy` bytes gives [`OpenError::TooLarge`] with `max` =
    /// `max_copy`, and one that shrinks while it is copied an [`OpenError::Io`].
    ///
    /// [`open_read_only`]: SegmentBuilder::open_read_only
    pub fn open_copy(self, path: &Path, max_copy: u64) -> Result<Segment, OpenError> {
        self.copy(path, Extent::Whole { max: max_copy })
    }

    /// [`open_copy`](Self::open_copy) of the first `len` bytes of the file only, whatever its
    /// size: the copy is as long as the file, but past `len` it reads as zeros. For reading
    /// the regions at the start of a segment too large to copy whole (a payload segment's
    /// header).
    pub fn open_head_copy(self, path: &Path, len: u64) -> Result<Segment, OpenError> {
        self.copy(path, Extent::Head { len })
    }

    fn copy(self, path: &Path, extent: Extent) -> Result<Segment, OpenError> {
        let name = SegmentName::new(&self.name)?;
        let io = |op| move |errno: Errno| OpenError::Io { op, source: os::io_error(errno) };
        let file = match os::file_open(path, false, false, 0) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(OpenError::NotFound { name, path: path.to_owned() }),
            Err(Errno::LOOP) => return Err(OpenError::Symlink { path: path.to_owned() }),
            Err(Errno::ACCESS | Errno::PERM) => {
                return Err(OpenError::PermissionDenied { path: path.to_owned() });
            }
            Err(errno) => return Err(io("open")(errno)),
        };
        let facts = os::fstat(&file).map_err(io("fstat"))?;
        if !facts.regular {
            return Err(OpenError::NotRegularFile);
        }
        if let Some(expected) = self.allowed_uid().filter(|&uid| uid != facts.uid) {
            return Err(OpenError::WrongOwner { expected, found: facts.uid });
        }
        let copied = match extent {
            Extent::Whole { max } if facts.size > max => {
                return Err(OpenError::TooLarge { size: facts.size, max });
            }
            Extent::Whole { .. } => facts.size,
            Extent::Head { len } => len.min(facts.size),
        };
        let copy = os::memfd(&name.file_name(), false).map_err(io("memfd_create"))?;
        // Sparse: pages come into being as they are written; a head copy's tail never is.
        rustix::fs::ftruncate(&copy, facts.size).map_err(io("ftruncate"))?;
        let mut chunk = vec![0u8; copied.min(CHUNK) as usize];
        let mut at = 0;
        while at < copied {
            // At most CHUNK, which fits a usize.
            let want = &mut chunk[..(copied - at).min(CHUNK) as usize];
            if os::read_at(&file, want, at).map_err(io("pread"))? < want.len() {
                return Err(OpenError::Io {
                    op: "pread",
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was copied: its owner is resizing it; retry",
                    ),
                });
            }
            write_all_at(&copy, want, at).map_err(io("pwrite"))?;
            at += want.len() as u64;
        }
        os::seal(&copy).map_err(io("fcntl(F_ADD_SEALS)"))?;
        // The copy is checked as the file would be (its backing against the builder's).
        let location = Location::Path(path.to_owned());
        match self.open_timeout(Duration::ZERO).attach_fd(copy, name, location, false) {
            // Whether a creator still writes a header it has not published is for the file's
            // creation lock to say, not the copy's, which nobody holds.
            Err(OpenError::Stale { creator: None } | OpenError::TooSmall { size: 0 })
                if os::creation_locked(&file) =>
            {
                Err(OpenError::Unpublished { waited: Duration::ZERO })
            }
            other => other,
        }
    }
}

/// Writes all of `bytes` at `offset` with `pwrite`.
fn write_all_at(fd: impl std::os::fd::AsFd, bytes: &[u8], offset: u64) -> Result<(), Errno> {
    let mut done = 0;
    while done < bytes.len() {
        match rustix::io::pwrite(&fd, &bytes[done..], offset + done as u64) {
            Ok(0) => return Err(Errno::NOSPC),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}
