//! Thin, typed wrappers over the system calls segments need (rustix underneath).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self, FallocateFlags, FileType, Mode, OFlags, SealFlags};
use rustix::io::Errno;

/// The seals every memfd segment carries: its size is fixed for good.
pub(crate) const REQUIRED_SEALS: SealFlags =
    SealFlags::SHRINK.union(SealFlags::GROW).union(SealFlags::SEAL);

fn open_flags(create: bool, writable: bool) -> OFlags {
    let access = if writable { OFlags::RDWR } else { OFlags::RDONLY };
    let create = if create { OFlags::CREATE | OFlags::EXCL } else { OFlags::empty() };
    // NONBLOCK: a FIFO planted under a segment's name would block a read-only open until a
    // writer appears; with it the open returns and `fstat` refuses the file. Regular files
    // ignore the flag.
    access | create | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK
}

/// `shm_open` with `O_NOFOLLOW` added (rustix adds only `O_CLOEXEC`).
pub(crate) fn shm_open(
    file_name: &str,
    create: bool,
    writable: bool,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    let flags = rustix::shm::OFlags::from_bits_retain(open_flags(create, writable).bits());
    rustix::shm::open(file_name, flags, Mode::from_raw_mode(mode))
}

/// Opens (or exclusively creates) a file in a directory, never following a symlink.
pub(crate) fn file_open(
    path: &Path,
    create: bool,
    writable: bool,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    fs::open(path, open_flags(create, writable), Mode::from_raw_mode(mode))
}

/// An anonymous memfd that allows sealing, optionally on huge pages.
pub(crate) fn memfd(file_name: &str, huge_pages: bool) -> Result<OwnedFd, Errno> {
    let mut flags = fs::MemfdFlags::CLOEXEC | fs::MemfdFlags::ALLOW_SEALING;
    if huge_pages {
        flags |= fs::MemfdFlags::HUGETLB;
    }
    fs::memfd_create(file_name, flags)
}

/// Sets the exact mode (the umask applied at `open` only ever removes bits).
pub(crate) fn set_mode(fd: impl AsFd, mode: u32) -> Result<(), Errno> {
    fs::fchmod(fd, Mode::from_raw_mode(mode))
}

/// Gives the file `len` bytes, all backed by real pages now (`posix_fallocate` semantics), so a
/// full file system is `ENOSPC` here and not a `SIGBUS` on first touch. File systems without
/// `fallocate` fall back to `ftruncate`.
pub(crate) fn reserve(fd: impl AsFd, len: u64) -> Result<(), Errno> {
    match fs::fallocate(&fd, FallocateFlags::empty(), 0, len) {
        Err(Errno::OPNOTSUPP) => fs::ftruncate(&fd, len),
        other => other,
    }
}

/// Seals a memfd against shrinking and growing, and against further seal changes.
pub(crate) fn seal(fd: impl AsFd) -> Result<(), Errno> {
    fs::fcntl_add_seals(fd, REQUIRED_SEALS)
}

/// The seals on a file (empty for files that cannot be sealed).
pub(crate) fn seals(fd: impl AsFd) -> SealFlags {
    fs::fcntl_get_seals(fd).unwrap_or(SealFlags::empty())
}

/// What `fstat` says about an open segment file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileFacts {
    pub(crate) regular: bool,
    pub(crate) uid: u32,
    pub(crate) size: u64,
    pub(crate) block_size: u64,
    pub(crate) device: u64,
    pub(crate) inode: u64,
}

pub(crate) fn facts(stat: &fs::Stat) -> FileFacts {
    FileFacts {
        regular: FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile,
        uid: stat.st_uid,
        size: u64::try_from(stat.st_size).unwrap_or(0),
        block_size: u64::try_from(stat.st_blksize).unwrap_or(0),
        device: stat.st_dev,
        inode: stat.st_ino,
    }
}

pub(crate) fn fstat(fd: impl AsFd) -> Result<FileFacts, Errno> {
    fs::fstat(fd).map(|stat| facts(&stat))
}

/// `lstat`: facts about the path itself, not a symlink's target.
pub(crate) fn lstat(path: &Path) -> Result<FileFacts, Errno> {
    fs::lstat(path).map(|stat| facts(&stat))
}

pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// An `io::Error` for an errno, to carry as an error source.
pub(crate) fn io_error(errno: Errno) -> io::Error {
    io::Error::from(errno)
}
