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

use crossbeam_utils::CachePadded;
use shmlane_notify::EventCount;
use shmlane_segment::{
    Backing, Carver, Fingerprint, LayoutError, Offset, OffsetError, RegionLayout, Segment,
    SegmentRef,
};

use crate::OpenError;
use crate::sync::AtomicU64;

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

/// The appender role word of the journal in `dir`, read through a read-only mapping of its
/// control segment (never created, never written): `Ok(None)` if the journal has no control
/// segment (no process opened it with this build, or it was deleted).
pub(crate) fn read_appender_word(
    dir: &Path,
) -> Result<Option<u64>, Box<dyn std::error::Error + Send + Sync>> {
    let (role, _, size) = layout()?;
    let opened = Segment::builder(NAME)
        .backing(Backing::Dir(dir.to_owned()))
        .size(size)
        .fingerprint(FINGERPRINT)
        .unlink_on_drop(false)
        .open_read_only();
    let segment = match opened {
        Ok(segment) => segment,
        Err(shmlane_segment::OpenError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Box::new(e)),
    };
    // Copied out (a read-only handle hands out no atomics): a report only, nothing is decided
    // on it here.
    let mut word = [0u8; 8];
    segment.read_bytes(role, &mut word)?;
    Ok(Some(u64::from_ne_bytes(word)))
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
