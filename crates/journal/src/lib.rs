//! A memory-mapped, append-only journal on disk (after Chronicle Queue): one [`Appender`]
//! writes records, any number of [`Tailer`]s in any process read them while it writes, and
//! every record survives the appender's crash once published.
//!
//! ```
//! use shmlane_journal::notify::Blocking;
//! use shmlane_journal::{Journal, JournalConfig, TailFrom};
//!
//! let dir = tempfile::tempdir()?;
//! let journal = Journal::open(dir.path(), JournalConfig::default())?;
//! let mut appender = journal.appender()?;
//! assert_eq!(appender.append(b"first")?, 0);
//! let mut reservation = appender.reserve(6)?; // written in place, in the file
//! reservation.as_mut_slice().copy_from_slice(b"second");
//! assert_eq!(reservation.commit()?, 1);
//!
//! let mut tailer = journal.tailer(TailFrom::Start)?;
//! let record = tailer.next()?.expect("a record");
//! assert_eq!((record.index(), record.payload()), (0, &b"first"[..]));
//! assert_eq!(tailer.next()?.map(|r| r.payload().to_vec()), Some(b"second".to_vec()));
//! assert!(tailer.next()?.is_none()); // never blocks; `next_with` waits:
//! let timeout = Some(std::time::Duration::from_millis(1));
//! assert!(tailer.next_with(&mut Blocking::new(), timeout)?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Files
//!
//! A journal is a directory holding `00000000.shj`, `00000001.shj`, ... (the file sequence
//! number, 8 digits or more), rolled by size ([`JournalConfig::roll_size`], 64 MiB by
//! default), and `shmlane.journal`, a small shmlane segment with the appender's role word and
//! the event count tailers wait on. Each file is preallocated whole (`fallocate`) before it
//! is used, so a full file system is an error when a file is created, never `SIGBUS` on a
//! store into the mapping. Files are created under a temporary name and renamed into place
//! with their header written. The appender maps the pages of its file in ahead of its records
//! ([`JournalConfig::prefault`]), so that appends take no page faults. All integers are
//! little-endian.
//!
//! File header (256 bytes; validated on every open, copied out first):
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 8 | `magic` | `b"SHMLJRN\0"` |
//! | 8 | 4 | `format_version` | 2 (version 1, without the index, is read too); others are refused |
//! | 12 | 4 | `header_size` | 256: the first record starts there |
//! | 16 | 8 | `file_seq` | the sequence number; must match the file name |
//! | 24 | 8 | `first_index` | index of the file's first record |
//! | 32 | 8 | `created_unix_ns` | creation time; every record is stamped at or after it |
//! | 40 | 8 | `file_size` | bytes of the file; must equal its length |
//! | 48 | 4 | `type_size` | size of the recorded type (0: variable-length bytes) |
//! | 52 | 4 | `type_align` | its alignment (a power of two) |
//! | 56 | 4 | `type_version` | its layout version |
//! | 60 | 4 | `type_name_len` | bytes of the type name, at most 64 |
//! | 64 | 64 | `type_name` | the type name, UTF-8, zero-padded |
//! | 128 | 4 | `header_checksum` | CRC-32C of bytes 0..128 then 132..256 (version 1: of 0..128) |
//! | 132 | 4 | `index_stride` | records per index entry, at most 65536; 0: no index (version 1: none) |
//! | 136 | 120 | reserved | zero |
//!
//! Records follow, each at a multiple of 8: a 32-byte header, then the payload, zero-padded
//! to a multiple of 8. They end at `records_end`, where the file's index region starts and
//! runs to the end of the file (an empty region, and `records_end = file_size`, without an
//! index).
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 4 | `len` | payload bytes |
//! | 4 | 4 | `state` | `WRIT` being written, `COMT` committed, `END!` end of file (with `len` 0), 0 nothing yet |
//! | 8 | 8 | `index` | the record's index: the file's `first_index`, then consecutive |
//! | 16 | 8 | `timestamp_ns` | publication time, ns since the Unix epoch, never decreasing |
//! | 24 | 4 | `checksum` | CRC-32C of `len`, `index`, `timestamp_ns` and the payload |
//! | 28 | 4 | reserved | zero |
//!
//! `len` and `state` form the 64-bit *state word*, written and read only atomically. The
//! appender stores `WRIT | len`, writes the payload and the other fields, then publishes with
//! a Release store of `COMT | len`; a tailer loads the word with Acquire and reads nothing
//! else before it sees `COMT`. A file always keeps 8 bytes after its last record for the end
//! marker: the appender creates the next file, then stores `END!` where the next record would
//! have gone, and tailers that see it move on to the next file.
//!
//! The index region is a sparse index of the file's records: slot `s` (from 0) names the
//! file's record number `(s + 1) * index_stride` (its first record is number 0). It has
//! `capacity = (file_size - 264) / (32 * index_stride)` slots of 24 bytes (enough for the
//! most records the file could hold, every one empty), so `records_end = file_size - 24 *
//! capacity`; with the default stride of 64 that is 1.2% of the file. A slot:
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 8 | `index` | the record's index: the file's `first_index + (s + 1) * index_stride` |
//! | 8 | 8 | `timestamp_ns` | the record's timestamp |
//! | 16 | 8 | `offset` | the record's offset in the file; 0: the slot is empty |
//!
//! The three words are written and read only atomically: the appender writes a slot right
//! after publishing its record, `index` and `timestamp_ns` first, then `offset` with a Release
//! store; a reader loads `offset` with Acquire. Slots fill in order, so a seek finds the last
//! entry before its target by binary search, then *verifies* it: the record at its offset
//! must be committed and valid (bounds, index, checksum) with the entry's index (the one its
//! slot stands for) and timestamp. From a verified entry it reads at most `index_stride`
//! records to reach the target; an entry that fails makes it read the file from its first
//! record ([`SeekReport`] says which happened). The appender writes no other index bytes and
//! syncs the region only when it seals a file under a durability policy other than `None`.
//!
//! # Crashes and hostile files
//!
//! An appender killed at any instant loses at most the record it was writing: the next one
//! ([`Journal::appender`], which takes the role over from a dead appender by its presence
//! lock) zeroes what follows the last complete record of the last file and continues with
//! the next index ([`Appender::recovery`] reports it). It also makes the index of the last
//! two files match the records kept: entries missing (their appender died between publishing
//! a record and writing its entry) or wrong are rewritten, and those of removed records are
//! cleared. Durability against power loss is the
//! [`Durability`] policy's. Every field read from a file is copied out and validated; a
//! truncated, foreign or corrupt file or record gives an error value ([`FileError`],
//! [`TailError::Corrupt`]), never a panic or an out-of-bounds read.
//!
//! With the `crash-points` feature (tests only), `SHMLANE_CRASH_AT=NAME[:N]` kills the process
//! at `journal.append.before_publish` (record written, not published),
//! `journal.append.after_publish` (just published) or `journal.roll.before_seal` (next file
//! created, current one not sealed).
//!
//! Seeking ([`TailFrom::Index`], [`TailFrom::Time`]) finds the file by a binary search over
//! the file headers (first index, creation time), then the record through that file's index,
//! as above.

#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// Wraps what only the on-disk journal has (its crash points): kept here, dropped by
/// `model`, which compiles the protocol over loom's atomics (and redefines this macro).
macro_rules! on_disk {
    ($($item:tt)*) => { $($item)* };
}

mod append;
mod config;
mod control;
mod error;
mod files;
mod format;
mod index;
mod inspect;
mod journal;
mod mapping;
#[cfg(feature = "loom")]
#[doc(hidden)]
pub mod model;
mod publish;
mod records;
mod recover;
mod sync;
mod tail;

pub use append::{Appender, Recovery, Reservation};
pub use config::{
    DEFAULT_INDEX_STRIDE, DEFAULT_PREFAULT, DEFAULT_ROLL_SIZE, Durability, JournalConfig,
    RecordType,
};
pub use error::{AppendError, AppenderError, FileError, OpenError, TailError};
pub use format::{
    FILE_HEADER_SIZE, INDEX_ENTRY_SIZE, MAX_INDEX_STRIDE, MIN_FILE_SIZE, RECORD_HEADER_SIZE,
};
pub use inspect::{AppenderState, FileReport, Inspection, Problem, ProblemKind};
pub use journal::Journal;
pub use recover::TornRecord;
pub use tail::{Record, SeekReport, TailFrom, Tailer};

/// The wait strategies [`Tailer::next_with`] takes (`shmlane-notify`).
pub use shmlane_notify as notify;

/// Now, in ns since the Unix epoch (0 for a clock set before it). `clock_gettime` itself:
/// `SystemTime::now().duration_since(UNIX_EPOCH)` and its 128-bit ns took 18 ns more per call
/// on the reference machine (37 ns against 55), a quarter of an append.
pub(crate) fn now_unix_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    // `tv_nsec` is below 10^9; a clock set before the epoch gives 0, past 2554 saturates.
    u64::try_from(now.tv_sec).map_or(0, |secs| {
        secs.saturating_mul(1_000_000_000).saturating_add(now.tv_nsec.unsigned_abs())
    })
}
