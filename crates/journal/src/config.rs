//! [`JournalConfig`]: roll size, durability, and the recorded type.

use std::time::Duration;

use crate::OpenError;
use crate::format::{MAX_FILE_SIZE, MAX_INDEX_STRIDE, MIN_FILE_SIZE, RECORD_ALIGN, TYPE_NAME_MAX};

/// Default size of each journal file: 64 MiB.
pub const DEFAULT_ROLL_SIZE: u64 = 64 << 20;
/// Default index stride: an index entry for every 64th record of a file.
pub const DEFAULT_INDEX_STRIDE: u32 = 64;
/// Default prefault: the appender keeps 1 to 2 MiB of its file mapped in ahead.
pub const DEFAULT_PREFAULT: u64 = 1 << 20;

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
    /// Records per index entry in the files the appender creates (stored in each file's
    /// header; existing files keep theirs): a seek by index or time reads at most this many
    /// records after the entry it starts from. The index takes 24 bytes per `index_stride`
    /// times 32 bytes of file (0.6% of it at 128, 1.2% at 64); 0 for no index (seeks read
    /// the file they land in from its start). At most 65536. Default
    /// [`DEFAULT_INDEX_STRIDE`].
    pub index_stride: u32,
    /// Bytes of the file the appender maps in ahead of its next record, a chunk at a time
    /// (`madvise(MADV_POPULATE_WRITE)`, which does for each page what the first write to it
    /// would, without writing): whenever less than this lies mapped ahead, it maps in up to
    /// twice this ahead. 0: off, the first write to each page of a file takes a page fault.
    /// Default [`DEFAULT_PREFAULT`] (1 MiB).
    ///
    /// It changes *when* the appender pays for the pages of a new file, not how much: about
    /// 1 µs per 4 KiB page on the reference machine (ext4, KVM guest) either way. Off, the
    /// appender takes a fault of a few µs every few dozen KiB (the kernel maps a large folio
    /// per fault): at 64 B that is one append in several hundred, the append's p99.9. With
    /// 1 MiB it takes one `madvise` of about 250 µs per MiB of records instead: one 64 B
    /// append in 11 000 (past p99.99), one 1 KiB append in 1 000. Measured in
    /// `benches/journal.rs`. A kernel without `MADV_POPULATE_WRITE` (before 5.14) makes it
    /// stop trying: pages then fault as when off. At most 1 GiB; rounded up to whole pages.
    pub prefault: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            roll_size: DEFAULT_ROLL_SIZE,
            durability: Durability::None,
            record_type: RecordType::bytes(),
            index_stride: DEFAULT_INDEX_STRIDE,
            prefault: DEFAULT_PREFAULT,
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
        if self.index_stride > MAX_INDEX_STRIDE {
            return Err(OpenError::Config("index_stride must be at most 65536 (0: no index)"));
        }
        if self.prefault > 1 << 30 {
            return Err(OpenError::Config("prefault must be at most 1 GiB (0: off)"));
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
