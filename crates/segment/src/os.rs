//! Thin, typed wrappers over the system calls segments need (rustix underneath).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
///
/// A request larger than the free space the file system reports is refused with `ENOSPC`
/// before anything is allocated: on tmpfs, `fallocate` would otherwise take page after page of
/// RAM (gigabytes for a large request) before it finds out and gives them back. `fallocate`
/// stays the authority, as the free space may shrink meanwhile.
pub(crate) fn reserve(fd: impl AsFd, len: u64) -> Result<(), Errno> {
    if free_bytes(&fd).is_some_and(|free| len > free) {
        return Err(Errno::NOSPC);
    }
    match fs::fallocate(&fd, FallocateFlags::empty(), 0, len) {
        Err(Errno::OPNOTSUPP) => fs::ftruncate(&fd, len),
        other => other,
    }
}

/// Bytes a new file may still take on the file system holding `fd` (the root reserve counts for
/// root), or `None` if it has no limit (a tmpfs mounted with `size=0`, a memfd) or cannot say.
fn free_bytes(fd: impl AsFd) -> Option<u64> {
    let vfs = fs::fstatvfs(fd).ok()?;
    if vfs.f_blocks == 0 {
        return None;
    }
    let blocks = if effective_uid() == 0 { vfs.f_bfree } else { vfs.f_bavail };
    Some(blocks.saturating_mul(vfs.f_frsize))
}

/// Takes the exclusive creation lock (`flock`) on a file a creator has just made: held until
/// the header is published, so discovery can tell a live creator that is still sizing or
/// writing its file (locked) from a dead one (the kernel drops the lock with its last
/// descriptor). A prober or remover holds the lock for microseconds; one that holds it longer
/// than `timeout` (only a faulty or hostile process) gets `Err(WOULDBLOCK)`: non-blocking
/// attempts, so the creator never waits without bound.
pub(crate) fn lock_creation(fd: impl AsFd, timeout: Duration) -> Result<(), Errno> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_micros(20);
    loop {
        match fs::flock(&fd, fs::FlockOperation::NonBlockingLockExclusive) {
            Err(Errno::WOULDBLOCK) if started.elapsed() < timeout => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(2));
            }
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// Releases the creation lock (the header is published).
pub(crate) fn unlock_creation(fd: impl AsFd) -> Result<(), Errno> {
    fs::flock(fd, fs::FlockOperation::Unlock)
}

/// Whether a live process holds the creation lock of the file behind `fd` (a descriptor of our
/// own, not the creator's: `flock` locks belong to open file descriptions). A shared probe, so
/// two probers never see each other. `false` when the file system has no locks.
pub(crate) fn creation_locked(fd: impl AsFd) -> bool {
    // The probe's own shared lock goes away with `fd` (or at once, below).
    match fs::flock(&fd, fs::FlockOperation::NonBlockingLockShared) {
        Err(errno) => errno == Errno::WOULDBLOCK,
        Ok(()) => {
            let _ = fs::flock(&fd, fs::FlockOperation::Unlock);
            false
        }
    }
}

/// A remover's hold on a file, taken by [`lock_for_removal`]: released when dropped (with the
/// descriptor it was taken through).
#[must_use]
pub(crate) struct RemovalLock {
    /// The read-write descriptor that holds the removers' record lock (none when the removal
    /// fell back to an exclusive `flock` on the caller's descriptor).
    _writer: Option<OwnedFd>,
}

/// Locks the file behind `fd` for a removal: `None` if a creator holds its creation lock, or
/// another remover kept it for more than a few milliseconds.
///
/// Removers exclude one another with an open-file-description record lock (`F_OFD_SETLK`) on
/// the file's first byte, which `flock` never sees, and check for a creator with a *shared*
/// `flock`. So a removal in progress never looks like a creator at work to a
/// [`creation_locked`] probe (whose shared lock succeeds beside it), and a creator cannot lock
/// the file meanwhile. The record lock needs a descriptor open for writing, taken again
/// through `/proc/self/fd` (the same file, even if renamed); where that is refused (no write
/// permission, no `/proc`), removers fall back to an exclusive `flock`, which a probe in that
/// instant takes for a creator: the safe side.
pub(crate) fn lock_for_removal(fd: impl AsFd) -> Option<RemovalLock> {
    let Some(writer) = reopen_writable(&fd) else {
        return flock_for_removal(&fd).then_some(RemovalLock { _writer: None });
    };
    for attempt in 0..50 {
        match ofd_lock_first_byte(&writer) {
            Ok(()) => {
                return match fs::flock(&fd, fs::FlockOperation::NonBlockingLockShared) {
                    Err(Errno::WOULDBLOCK) => None,
                    // Locked shared, or a file system without `flock`: nothing to tell.
                    _ => Some(RemovalLock { _writer: Some(writer) }),
                };
            }
            // Another remover: it holds the lock for the few system calls of its removal.
            Err(Errno::AGAIN | Errno::ACCESS) => {
                std::thread::sleep(Duration::from_micros(100 << (attempt / 10)));
            }
            Err(Errno::INTR) => {}
            // No record locks here (`EINVAL`, `ENOLCK`): serialise with `flock` instead.
            Err(_) => return flock_for_removal(&fd).then_some(RemovalLock { _writer: None }),
        }
    }
    None
}

/// The fallback: an exclusive `flock`, retried for a few milliseconds while probers hold it
/// briefly. `false` if a creator holds it (on a file system without locks: `true`).
fn flock_for_removal(fd: impl AsFd) -> bool {
    for attempt in 0..50 {
        match fs::flock(&fd, fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return true,
            Err(Errno::WOULDBLOCK) => {
                std::thread::sleep(Duration::from_micros(100 << (attempt / 10)));
            }
            Err(_) => return true,
        }
    }
    false
}

/// The file behind `fd` opened again read-write through `/proc/self/fd`, or `None`.
fn reopen_writable(fd: impl AsFd) -> Option<OwnedFd> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    // No NOFOLLOW: the magic link is what names the open file. NONBLOCK: as in `open_flags`.
    let reopened = fs::open(path, OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty());
    let reopened = reopened.ok()?;
    // The same file, and still a regular one (nothing else is ever removed through this).
    let (ours, again) = (fs::fstat(&fd).ok()?, fs::fstat(&reopened).ok()?);
    let same = (ours.st_dev, ours.st_ino) == (again.st_dev, again.st_ino)
        && FileType::from_raw_mode(again.st_mode) == FileType::RegularFile;
    same.then_some(reopened)
}

/// A non-blocking open-file-description write lock on the first byte of the file behind `fd`
/// (open for writing). It lasts until the description's last descriptor is closed.
fn ofd_lock_first_byte(fd: impl AsFd) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is plain old data; all zeros is a valid value, completed below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = 0;
    lock.l_len = 1;
    // SAFETY: the descriptor is open for the whole call (borrowed through `fd`), and `lock`
    // is a valid `struct flock` that `F_OFD_SETLK` only reads (`l_pid` must be 0, as it is).
    let done = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if done == -1 {
        Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::IO))
    } else {
        Ok(())
    }
}

/// Reads up to `buf.len()` bytes at `offset` with `pread`: no mapping, so a file truncated
/// meanwhile gives a short read, never a `SIGBUS`. Returns how many bytes were read.
pub(crate) fn read_at(fd: impl AsFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(&fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(done)
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
    /// Last modification (the epoch for a time before it).
    pub(crate) modified: SystemTime,
}

pub(crate) fn facts(stat: &fs::Stat) -> FileFacts {
    FileFacts {
        regular: FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile,
        uid: stat.st_uid,
        size: u64::try_from(stat.st_size).unwrap_or(0),
        block_size: u64::try_from(stat.st_blksize).unwrap_or(0),
        device: stat.st_dev,
        inode: stat.st_ino,
        modified: u64::try_from(stat.st_mtime).map_or(UNIX_EPOCH, |secs| {
            UNIX_EPOCH + Duration::new(secs, u32::try_from(stat.st_mtime_nsec).unwrap_or(0))
        }),
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

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_removal_in_progress_never_looks_like_a_creator_and_excludes_other_removers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("judged");
        drop(file_open(&path, true, true, 0o600).unwrap());
        let open = || file_open(&path, false, false, 0).unwrap();
        let remover = open();
        let removal = lock_for_removal(&remover).expect("nobody holds the file");
        // A prober meanwhile sees no creator: the file is as stale as before.
        assert!(!creation_locked(open()), "a remover looked like a creator at work");
        // A second remover waits for the first, then gives up.
        let (second, started) = (open(), std::time::Instant::now());
        assert!(lock_for_removal(&second).is_none(), "two removers held one file");
        assert!(started.elapsed() >= Duration::from_millis(10), "it did not wait for the first");
        drop((removal, remover));
        let removal = lock_for_removal(&second).expect("the first remover let go");
        drop((removal, second));
        // A creator holding its creation lock keeps every remover out at once.
        let creator = open();
        lock_creation(&creator, Duration::ZERO).unwrap();
        assert!(creation_locked(open()));
        assert!(lock_for_removal(open()).is_none(), "removed under a creator at work");
        unlock_creation(&creator).unwrap();
        assert!(lock_for_removal(open()).is_some());
    }

    #[test]
    fn the_creation_lock_gives_up_on_a_holder_that_never_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let fd = file_open(&path, true, true, 0o600).unwrap();
        // Another process holds a shared lock on the new file and does not let go (util-linux
        // `flock`, which takes the lock, then runs `sleep`).
        // A process group of its own, so that killing it kills `sleep` too (which inherits the
        // locked descriptor).
        let mut holder = match std::process::Command::new("flock")
            .arg("--shared")
            .arg(&path)
            .args(["sleep", "30"])
            .process_group(0)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                println!("SKIPPED: no `flock` command to hold the lock from another process: {e}");
                return;
            }
        };
        // Until the holder has its lock, our exclusive lock may still succeed: wait for it.
        let started = std::time::Instant::now();
        let probe = file_open(&path, false, false, 0).unwrap();
        while fs::flock(&probe, fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            fs::flock(&probe, fs::FlockOperation::Unlock).unwrap();
            assert!(started.elapsed() < Duration::from_secs(10), "flock never took the lock");
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = std::time::Instant::now();
        let timeout = Duration::from_millis(50);
        assert_eq!(lock_creation(&fd, timeout), Err(Errno::WOULDBLOCK));
        let waited = started.elapsed();
        assert!(waited >= timeout && waited < Duration::from_secs(2), "{waited:?}");
        let group = rustix::process::Pid::from_raw(holder.id() as i32).unwrap();
        rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
        holder.wait().unwrap();
        // `sleep` may outlive `flock` by an instant: wait for the lock to go.
        let started = std::time::Instant::now();
        while fs::flock(&probe, fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "the lock outlived its holders");
            std::thread::sleep(Duration::from_millis(1));
        }
        fs::flock(&probe, fs::FlockOperation::Unlock).unwrap();
        // The holder's death released its lock: the creator gets it at once.
        assert_eq!(lock_creation(&fd, timeout), Ok(()));
    }
}
