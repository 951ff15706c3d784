//! Recovery of a file's tail when an appender takes over: every complete record is checked
//! (index and checksum), and whatever follows the last good one, a record its writer did not
//! finish or one that fails its checksum, is zeroed, so the next record is written there.
//!
//! Invariant restored: after the last complete record of a file comes a zero word (more
//! records may follow) or the end marker, and every word after that is zero until the end
//! of the file (zeros are what a fresh preallocated file reads as). A record still being
//! written (`Writing`) names its length, so only its extent is zeroed; anything else that is
//! wrong (a bad checksum, a garbage word) gives no trustworthy extent, and the rest of the
//! file's records area is zeroed, word by word where a word is not zero already.
//!
//! The file's index is made to match what is kept: the entry of every kept record that has
//! one is rewritten if it is missing (its appender died between publishing the record and
//! writing the entry) or wrong, and the entries of the records removed are cleared.

use crate::files::JournalFile;
use crate::format::{self, FILE_HEADER_SIZE, IndexEntry, Slot};
use crate::index::Repair;
use crate::records::{read_record, slot_at};
use crate::sync::Ordering;

/// A record that recovery removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornRecord {
    /// The file's sequence number.
    pub file_seq: u64,
    /// The record's offset in the file.
    pub offset: u64,
    /// The index it would have had.
    pub index: u64,
    /// Why it was removed.
    pub reason: &'static str,
}

/// Where a file's records end.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Offset of the slot after the last complete record.
    pub offset: u64,
    /// Index of the next record.
    pub next_index: u64,
    /// Timestamp of the last complete record (0 if none).
    pub last_timestamp: u64,
    /// Whether the end marker is at `offset`.
    pub sealed: bool,
    /// What was removed after the last complete record.
    pub torn: Option<TornRecord>,
    /// What was done to the file's index.
    pub index: Repair,
}

/// Walks the records of `file` (mapped writable, with the appender role held), zeroes what
/// follows the last complete one, and makes the index match.
pub(crate) fn repair_tail(file: &JournalFile, buf: &mut Vec<u8>) -> Tail {
    let mut tail = walk_and_repair(file, buf);
    tail.index.drop_from(file, tail.next_index);
    tail
}

fn walk_and_repair(file: &JournalFile, buf: &mut Vec<u8>) -> Tail {
    let size = file.records_end;
    let mut tail = Tail {
        offset: FILE_HEADER_SIZE,
        next_index: file.info.first_index,
        last_timestamp: 0,
        sealed: false,
        torn: None,
        index: Repair::default(),
    };
    loop {
        let (reason, claimed) = match slot_at(file, tail.offset) {
            Ok(Slot::Empty) => return tail,
            Ok(Slot::End) => return Tail { sealed: true, ..tail },
            Ok(Slot::Committed { len }) => {
                match read_record(file, tail.offset, len, tail.next_index, buf) {
                    Ok(header) => {
                        let entry = IndexEntry {
                            index: header.index,
                            timestamp_ns: header.timestamp_ns,
                            offset: tail.offset,
                        };
                        tail.index.keep(file, entry);
                        tail.offset += format::extent(len);
                        tail.next_index += 1;
                        tail.last_timestamp = header.timestamp_ns;
                        continue;
                    }
                    Err(reason) => (reason, None),
                }
            }
            Ok(Slot::Writing { len }) => ("its appender died while writing it", Some(len)),
            Ok(Slot::Garbage(_)) => ("its state word is garbage", None),
            Err(reason) => (reason, None),
        };
        let end = match claimed {
            Some(len) if format::fits(tail.offset, len, size) => tail.offset + format::extent(len),
            _ => size,
        };
        zero(file, tail.offset, end);
        tail.torn = Some(TornRecord {
            file_seq: file.info.seq,
            offset: tail.offset,
            index: tail.next_index,
            reason,
        });
        return tail;
    }
}

/// Zeroes the words in `from..to` (8-aligned) that are not zero, through atomics: tailers may
/// be loading the first of them.
pub(crate) fn zero(file: &JournalFile, from: u64, to: u64) {
    for offset in (from..to).step_by(8) {
        let Some(word) = file.map.word(offset) else { return };
        // Relaxed: the appender publishes its next record at or after `from` with a Release
        // store, which orders these stores before it for any tailer that Acquires that word.
        if word.load(Ordering::Relaxed) != 0 {
            word.store(0, Ordering::Relaxed);
        }
    }
}
