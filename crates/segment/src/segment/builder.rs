//! The [`SegmentBuilder`]: a segment's options, their defaults, and who may own its file.
//!
//! Setting an option checks nothing; `create`, `open` and `receive` validate the name and the
//! options when they run. Openers accept only files owned by the expected owner (by default
//! the effective uid of this process).

use std::time::Duration;

use super::Backing;
use crate::{Fingerprint, os};

/// Default permissions: read-write for the owner only.
const DEFAULT_MODE: u32 = 0o600;
/// Default cap on segment sizes read from files and headers (64 GiB).
const DEFAULT_MAX_SIZE: u64 = 64 << 30;
/// Default time an opener waits for a creator to finish initialising.
const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_millis(500);

/// Who must own a segment file for `open` to accept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerCheck {
    CurrentUser,
    Uid(u32),
    Any,
}

/// Configures and then creates or opens a [`Segment`](crate::Segment).
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
    pub(super) size: Option<u64>,
    pub(super) mode: u32,
    pub(super) backing: Backing,
    pub(super) populate: bool,
    pub(super) lock: bool,
    pub(super) huge_pages: bool,
    pub(super) fingerprint: Fingerprint,
    pub(super) open_timeout: Duration,
    pub(super) max_size: u64,
    owner: OwnerCheck,
    pub(super) unlink_on_drop: Option<bool>,
}

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
    /// works unlocked; check [`Segment::is_locked`](crate::Segment::is_locked).
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

    /// The uid that must own segment files and send memfds, or `None` for anyone.
    pub(crate) fn allowed_uid(&self) -> Option<u32> {
        match self.owner {
            OwnerCheck::CurrentUser => Some(os::effective_uid()),
            OwnerCheck::Uid(uid) => Some(uid),
            OwnerCheck::Any => None,
        }
    }
}
