//! [`JournalConfig`]: roll size, durability, and the recorded type.

use std::time::Duration;

use crate::OpenError;
use crate::format::{MAX_FILE_SIZE, MIN_FILE_SIZE, RECORD_ALIGN, TYPE_NAME_MAX};

/// Default size of each journal file: 64 MiB.
pub const DEFAULT_ROLL_SIZE: u64 = 64 << 20;

/// How a journal is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Size of each file, preallocated whole when it is created; a record that does not fit
    /// in the rest of a file starts the next. A multiple of 8, from 4 KiB to 1 TiB. Default
    /// [`DEFAULT_ROLL_SIZE`].
    pub roll_size: u64,
    /// When appended records are written to disk (only the appender's matters).
    pub durability: Durability,
    /// What the records hold, stored in every file's header and checked on open.
    pub record_type: RecordType,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            roll_size: DEFAULT_ROLL_SIZE,
            durability: Durability::None,
            record_type: RecordType::bytes(),
        }
    }
}

impl JournalConfig {
    /// Checks the values.
    pub(crate) fn validate(&self) -> Result<(), OpenError> {
        if !(MIN_FILE_SIZE..=MAX_FILE_SIZE).contains(&self.roll_size)
            || !self.roll_size.is_multiple_of(RECORD_ALIGN)
        {
            return Err(OpenError::Config("roll_size must be a multiple of 8 from 4 KiB to 1 TiB"));
        }
        if self.record_type.name.len() > TYPE_NAME_MAX {
            return Err(OpenError::Config("record_type.name must be at most 64 bytes"));
        }
        if !self.record_type.align.is_power_of_two() {
            return Err(OpenError::Config("record_type.align must be a power of two"));
        }
        if self.durability == Durability::EveryRecords(0) {
            return Err(OpenError::Config("Durability::EveryRecords needs at least 1 record"));
        }
        Ok(())
    }
}

/// When the appender writes records to disk (`msync`, which waits for the device, like
/// `fdatasync`). Records are visible to tailers at once whatever the policy, and survive a
/// crash of the appender's *process* without any sync (they are in the page cache); the
/// policy decides what survives a crash of the *machine* (power loss, kernel panic).
///
/// | policy | lost on power loss | cost |
/// |---|---|---|
/// | `None` | whatever the kernel has not written back yet (up to ~30 s by default) | nothing on the append path |
/// | `EveryRecords(n)` | at most the last `n - 1` records | one `msync` per `n` records |
/// | `EveryInterval(d)` | records of the last `d`, and those after the last append | one `msync` per append that finds `d` passed |
/// | `PerRecord` | nothing that `append` returned | one `msync` per record, each a device flush: the slowest by far |
///
/// `EveryInterval` is checked when appending (there is no background thread): an appender
/// that stops appending leaves its last records unsynced until [`Appender::flush`] or drop.
///
/// [`Appender::flush`]: crate::Appender::flush
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Never sync; the kernel writes pages back when it likes.
    #[default]
    None,
    /// Sync after every `n` records (`n >= 1`).
    EveryRecords(u32),
    /// Sync on the first append at least this long after the previous sync.
    EveryInterval(Duration),
    /// Sync after every record, before `append` returns.
    PerRecord,
}

/// The type a journal records, as stored in each file's header: a name (at most 64 bytes),
/// its size and alignment (0 and 1 for variable-length bytes), and a version to bump when its
/// layout changes. Openers must name the same type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordType {
    /// A name, such as `"orders.v2::Fill"`.
    pub name: String,
    /// Size in bytes; 0 for variable-length records.
    pub size: u32,
    /// Alignment in bytes (a power of two); the journal aligns payloads to 8.
    pub align: u32,
    /// The layout's version.
    pub version: u32,
}

impl RecordType {
    /// Variable-length bytes (the default): name `"bytes"`, size 0, alignment 1, version 0.
    pub fn bytes() -> RecordType {
        RecordType { name: "bytes".to_owned(), size: 0, align: 1, version: 0 }
    }

    /// The fixed-size type `T`, under `name` at `version`.
    pub fn of<T>(name: &str, version: u32) -> RecordType {
        RecordType {
            name: name.to_owned(),
            size: u32::try_from(size_of::<T>()).unwrap_or(u32::MAX),
            align: u32::try_from(align_of::<T>()).unwrap_or(u32::MAX),
            version,
        }
    }
}
