//! Opening an existing segment: wait for its creator to publish the header, validate the
//! header against the file and the builder, then map it.
//!
//! Invariants: a [`Segment`] is handed out only for a `Ready` header that passed validation;
//! the header is copied out after an Acquire load of its state word, never read in place; the
//! wait is bounded by the builder's `open_timeout`, and ends at once for a creator proven dead
//! or a headerless file discovery would call abandoned.

use std::os::fd::{AsFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use super::{Backing, Location, OpenError, Segment, SegmentBuilder};
use crate::header::{self, InitState, RawHeader};
use crate::mapping::Mapping;
use crate::name::SegmentName;
use crate::offset::HEADER_SIZE;
use crate::{Liveness, discovery, os};

impl SegmentBuilder {
    /// Opens an existing segment read-write, validating its header.
    pub fn open(self) -> Result<Segment, OpenError> {
        self.open_named(true)
    }

    /// Opens an existing segment read-only: this process cannot corrupt it.
    pub fn open_read_only(self) -> Result<Segment, OpenError> {
        self.open_named(false)
    }

    fn open_named(self, writable: bool) -> Result<Segment, OpenError> {
        let name = SegmentName::new(&self.name)?;
        let (fd, path) = self.open_file(&name, writable)?;
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
        let (mapping, header) = self.await_ready(&fd, writable)?;
        let expected = header::Expected {
            file_size: mapping.len(),
            max_size: self.max_size,
            backing: match location {
                Location::Memfd => Backing::Memfd.code(),
                Location::Path(_) => self.backing.code(),
            },
            fingerprint: self.fingerprint.get(),
        };
        header::validate_ready(&header, &expected)?;
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

    /// Polls the file, with a growing pause, until its header is published `Ready`; gives the
    /// mapping and a copy of the header. Maps the file again whenever its size changed.
    fn await_ready(&self, fd: &OwnedFd, writable: bool) -> Result<(Mapping, RawHeader), OpenError> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(20);
        let mut mapping: Option<Mapping> = None;
        let header = loop {
            let facts = os::fstat(fd)
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
                if let Some(header) = judge_header(fd, &facts, map, started, timed_out)? {
                    break header;
                }
            } else if facts.size > 0 {
                // A creator sizes its file in one step, from empty to its whole size: a file
                // shorter than a header is no segment in the making. Nothing to wait for.
                return Err(OpenError::TooSmall { size: facts.size });
            } else if timed_out || discovery::abandoned_unpublished(fd, &facts) {
                return Err(unpublished(fd, started, OpenError::TooSmall { size: 0 }));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        let mapping = mapping.ok_or(OpenError::TooSmall { size: 0 })?;
        Ok((mapping, header))
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
}

/// Judges a copy of the mapped header: `Some` once it is `Ready` (its identity checked),
/// `None` while its creator may still publish it, or the error that refuses it.
fn judge_header(
    fd: &OwnedFd,
    facts: &os::FileFacts,
    map: &Mapping,
    started: Instant,
    timed_out: bool,
) -> Result<Option<RawHeader>, OpenError> {
    let header = header::snapshot(map).map_err(|_| OpenError::TooSmall { size: facts.size })?;
    let state = InitState::from_raw(header.init_state)
        .ok_or(OpenError::CorruptState { found: header.init_state })?;
    if state != InitState::Empty {
        header::validate_identity(&header)?;
        match state {
            InitState::Ready => return Ok(Some(header)),
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
    } else if timed_out || discovery::abandoned_unpublished(fd, facts) {
        return Err(unpublished(fd, started, OpenError::Stale { creator: None }));
    }
    Ok(None)
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
