//! Where a segment's bytes live: the [`Backing`] kinds, the path a name takes on each, and
//! creating or opening the file (or memfd) behind a segment.
//!
//! Files are created with `O_EXCL` and opened without following symlinks, so a planted file
//! or link is refused, never reused. A memfd has no path: it is created here but only ever
//! opened by receiving its descriptor.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::{CreateError, OpenError, SegmentBuilder};
use crate::name::SegmentName;
use crate::os;

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
    /// peers with [`Segment::send_fd`](crate::Segment::send_fd) and
    /// [`SegmentBuilder::receive`].
    Memfd,
}

impl Backing {
    /// The code stored in the header's `backing` field.
    pub(super) fn code(&self) -> u32 {
        match self {
            Backing::PosixShm => 1,
            Backing::Dir(_) => 2,
            Backing::Memfd => 3,
        }
    }

    /// The path of segment `name` on this backing (for a memfd, a `memfd:` name for messages).
    pub(super) fn path_of(&self, name: &SegmentName) -> PathBuf {
        match self {
            Backing::PosixShm => Path::new(SHM_DIR).join(name.file_name()),
            Backing::Dir(dir) => dir.join(name.file_name()),
            Backing::Memfd => PathBuf::from(format!("memfd:{}", name.file_name())),
        }
    }
}

/// Where an open segment's file is.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    Path(PathBuf),
    Memfd,
}

impl SegmentBuilder {
    /// Creates the new, empty file of segment `name` on the builder's backing (`O_EXCL`).
    pub(super) fn create_file(
        &self,
        name: &SegmentName,
    ) -> Result<(OwnedFd, Location), CreateError> {
        let path = self.backing.path_of(name);
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

    /// Opens the existing file of segment `name` on the builder's backing, and gives its path.
    pub(super) fn open_file(
        &self,
        name: &SegmentName,
        writable: bool,
    ) -> Result<(OwnedFd, PathBuf), OpenError> {
        let path = self.backing.path_of(name);
        let fd = match &self.backing {
            Backing::PosixShm => os::shm_open(&name.file_name(), false, writable, 0),
            Backing::Dir(_) => os::file_open(&path, false, writable, 0),
            Backing::Memfd => return Err(OpenError::NotNamed),
        };
        match fd {
            Ok(fd) => Ok((fd, path)),
            Err(Errno::NOENT) => Err(OpenError::NotFound { name: name.clone(), path }),
            Err(Errno::LOOP) => Err(OpenError::Symlink { path }),
            Err(Errno::ACCESS | Errno::PERM) => Err(OpenError::PermissionDenied { path }),
            Err(errno) => Err(OpenError::Io { op: "open", source: os::io_error(errno) }),
        }
    }
}
