//! Opening a segment, or creating it if there is none: the race between processes that all
//! call `open_or_create` for one name, and the removal of a file left by a dead creator.
//!
//! Invariants: exactly one racer creates (`O_EXCL`), the others open what it published; a
//! file in the way is removed only when discovery judges it stale, as `remove_stale` would,
//! never while its creator may still be at work. The retries are bounded.

use std::io;

use super::create::InitResult;
use super::{CreateError, OpenError, Segment, SegmentBuilder};
use crate::discovery::{self, Cleared};
use crate::name::SegmentName;
use crate::os;

impl SegmentBuilder {
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
        let path = self.backing.path_of(&name);
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
}
