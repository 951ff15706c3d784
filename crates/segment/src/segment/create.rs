//! Creating a segment: a new file, sized and sealed, stamped with a header naming this
//! process, initialised by the caller, then published `Ready`.
//!
//! Invariants: openers never see a half-initialised layout (the state word goes `Initializing`,
//! then `Ready` only after the caller's `init` succeeded); a failed creation leaves no file
//! behind; the creator of a file in a directory holds its creation lock (best effort) until
//! the file is `Ready`.

use std::error::Error;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::io::Errno;

use super::{CreateError, Location, Segment, SegmentBuilder};
use crate::header::{self, InitState, RawHeader};
use crate::mapping::Mapping;
use crate::name::SegmentName;
use crate::offset::{HEADER_SIZE, OffsetError};
use crate::{ProcessId, os};

/// The caller's initialisation of a fresh segment, run before it is published `Ready`.
pub(super) type InitResult = Result<(), Box<dyn Error + Send + Sync>>;

impl SegmentBuilder {
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
        let size = self.size.unwrap_or(0);
        self.check_size(size)?;
        let (fd, location) = self.create_file(&name)?;
        // From here on, a failure must not leave the file behind.
        let mut cleanup = RemoveOnError(match &location {
            Location::Path(path) => Some(path.clone()),
            Location::Memfd => None,
        });
        if let Location::Path(path) = &location {
            // Held until `Ready`: proves us alive to discovery while the file has no header.
            // Best effort: on a file system without locks discovery goes by the file's age.
            // Bounded: a process that keeps a lock on our new file fails the creation.
            if os::lock_creation(&fd, self.open_timeout) == Err(Errno::WOULDBLOCK) {
                return Err(CreateError::Locked { path: path.clone(), waited: self.open_timeout });
            }
        }
        crate::crash_point!("segment.create.opened");

        let size = self.size_file(&fd, &location, &name, size)?;
        crate::crash_point!("segment.create.sized");

        let (mapping, header, locked) = self.map_and_stamp(&fd, size)?;
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
        publish_ready(segment, init)
    }

    fn check_size(&self, size: u64) -> Result<(), CreateError> {
        if size < HEADER_SIZE || size > self.max_size {
            return Err(CreateError::InvalidSize { size, min: HEADER_SIZE, max: self.max_size });
        }
        Ok(())
    }

    /// Gives the new file its mode and `size` bytes (rounded up to whole huge pages when they
    /// are used), and seals a memfd at that size. Returns the final size.
    fn size_file(
        &self,
        fd: &OwnedFd,
        location: &Location,
        name: &SegmentName,
        mut size: u64,
    ) -> Result<u64, CreateError> {
        let io = |op| move |errno: Errno| CreateError::Io { op, source: os::io_error(errno) };
        if self.huge_pages {
            let page = os::fstat(fd).map_err(io("fstat"))?.block_size.max(1);
            size = size.div_ceil(page).saturating_mul(page);
            self.check_size(size)?;
        }
        if matches!(location, Location::Path(_)) {
            os::set_mode(fd, self.mode).map_err(io("fchmod"))?;
        }
        os::reserve(fd, size).map_err(|errno| match errno {
            Errno::NOSPC | Errno::NOMEM if self.huge_pages => {
                CreateError::HugePagesUnavailable { size }
            }
            Errno::NOSPC | Errno::FBIG => {
                CreateError::NoSpace { size, path: self.backing.path_of(name) }
            }
            other => io("fallocate")(other),
        })?;
        if matches!(location, Location::Memfd) {
            os::seal(fd).map_err(io("fcntl(F_ADD_SEALS)"))?;
        }
        Ok(size)
    }

    /// Maps the sized file and writes a header naming this process, published `Initializing`.
    /// Returns the mapping, the header, and whether the pages are locked in RAM.
    fn map_and_stamp(
        &self,
        fd: &OwnedFd,
        size: u64,
    ) -> Result<(Mapping, RawHeader, bool), CreateError> {
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
        header::write_fields(&mapping, &header).map_err(offset_bug)?;
        header::publish(&mapping, InitState::Initializing).map_err(offset_bug)?;
        Ok((mapping, header, locked))
    }
}

/// Runs the caller's `init` on the `Initializing` segment, then publishes it `Ready` and
/// releases its creation lock. On failure the segment is unlinked.
fn publish_ready(
    segment: Segment,
    init: impl FnOnce(&Segment) -> InitResult,
) -> Result<Segment, CreateError> {
    let published = init(&segment).map_err(CreateError::Init).and_then(|()| {
        crate::crash_point!("segment.create.before_ready");
        header::publish(&segment.mapping, InitState::Ready).map_err(offset_bug)
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
