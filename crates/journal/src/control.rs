//! The journal's control segment: the file `shmlane.journal` in the journal directory, a
//! shmlane segment (validated header, file backed) holding what the processes of a journal
//! share besides its files.
//!
//! ```text
//! offset            size  what
//! 128               8     appender role word (shmlane_segment::RoleClaim): 0 free, else the
//!                         appender's presence token
//! 256               128   EventCount the appender notifies after each publish (tailers wait)
//! ```
//!
//! All-zero words are a free role and an idle event count, so the segment needs no
//! initialisation. Its contents are never needed again after every process closed the
//! journal: deleting it (with no process attached) loses nothing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crossbeam_utils::CachePadded;
use shmlane_notify::EventCount;
use shmlane_segment::{
    Backing, Carver, Fingerprint, LayoutError, Offset, OffsetError, RegionLayout, Segment,
    SegmentRef,
};

use crate::OpenError;

/// The control segment's name (its file is `shmlane.journal`).
const NAME: &str = "journal";
/// What the control segment holds, and its layout's version.
const FINGERPRINT: Fingerprint = Fingerprint::new("shmlane-journal.control").with_u64(1);

/// The shared words of a journal.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    /// The appender's role word.
    pub appender: SegmentRef<AtomicU64>,
    /// Notified by the appender after it publishes; tailers wait on it.
    pub published: SegmentRef<CachePadded<EventCount>>,
}

impl Control {
    /// Opens the control segment of the journal in `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<Control, OpenError> {
        let (role, event, size) = layout().map_err(|e| OpenError::ControlLayout(Box::new(e)))?;
        let segment = Segment::builder(NAME)
            .backing(Backing::Dir(dir.to_owned()))
            .size(size)
            .fingerprint(FINGERPRINT)
            .unlink_on_drop(false)
            .open_or_create()?;
        let segment = Arc::new(segment);
        let bad = |e: OffsetError| OpenError::ControlLayout(Box::new(e));
        let appender = SegmentRef::try_map(&segment, |s| s.get(Offset::new(role))).map_err(bad)?;
        let published =
            SegmentRef::try_map(&segment, |s| s.get(Offset::new(event))).map_err(bad)?;
        Ok(Control { appender, published })
    }
}

/// Offsets of the role word and the event count, and the segment's size.
fn layout() -> Result<(u64, u64, u64), LayoutError> {
    let mut carver = Carver::new();
    let role = carver.place(RegionLayout { size: 8, align: 8 })?;
    let event = carver.place(RegionLayout {
        size: size_of::<CachePadded<EventCount>>() as u64,
        align: align_of::<CachePadded<EventCount>>() as u64,
    })?;
    Ok((role.offset, event.offset, carver.total_size()))
}
