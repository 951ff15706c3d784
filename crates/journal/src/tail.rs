//! The [`Tailer`]: a reader of a journal, in any process, while it is written.
//!
//! A tailer follows one position (file, offset, next index). It reads a record only after an
//! Acquire load of its state word shows `Committed`, copies it out (header and payload) into
//! a buffer of its own and validates the copy (bounds, index, checksum) before handing out
//! the payload: what it hands out is exactly what the checksum covered, whatever a faulty
//! process writes into the file meanwhile. A record that fails is an error, and the tailer
//! stays before it. At an end marker it moves to the next file, which must start at the next
//! index.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use shmlane_notify::{EventCount, TimedOut, WaitStrategy};
use shmlane_segment::SegmentRef;

use crate::TailError;
use crate::files::JournalFile;
use crate::format::{self, FILE_HEADER_SIZE, RECORD_HEADER_SIZE, Slot};
use crate::index::Start;
use crate::records::{read_record, slot_at};

/// Where a tailer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailFrom {
    /// At the first record of the first file.
    Start,
    /// At the record with this index (or the first after it, once written).
    Index(u64),
    /// At the first record stamped at or after this time (ns since the Unix epoch).
    Time(u64),
}

/// A record handed out by a [`Tailer`]: valid until the tailer's next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'t> {
    index: u64,
    timestamp_ns: u64,
    payload: &'t [u8],
}

impl<'t> Record<'t> {
    /// The record's index: 0 for the journal's first record, then consecutive.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// When the appender published it, in ns since the Unix epoch (never decreasing).
    pub fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }

    /// The payload, checksum verified.
    pub fn payload(&self) -> &'t [u8] {
        self.payload
    }
}

/// How a tailer's seek found where to start ([`Tailer::seek_report`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeekReport {
    /// The file the seek started in.
    pub file_seq: u64,
    /// The index of the record the seek started from through the file's index (`None`: the
    /// file's first record, or a tailer from the start).
    pub entry: Option<u64>,
    /// Why the file's index entry was refused (it did not match its record, so the file is
    /// damaged): the seek then started from the file's first record.
    pub index_fault: Option<&'static str>,
    /// Records read and passed over so far to reach the target: at most the file's index
    /// stride when its index is sound (fewer for a seek by index once the appender has
    /// written the entries of the records before the target); without an index, or with the
    /// entry refused, up to every record of the file before the target.
    pub skipped: u64,
}

/// Records still to skip after a seek.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Skip {
    Nothing,
    BelowIndex(u64),
    BeforeTime(u64),
}

/// A tailer's position.
#[derive(Debug)]
struct Cursor {
    dir: PathBuf,
    file: JournalFile,
    offset: u64,
    next_index: u64,
    skip: Skip,
    /// Records passed over because of `skip`.
    skipped: u64,
}

/// A reader of a journal (see [`Journal::tailer`](crate::Journal::tailer)). Never blocks in
/// [`next`](Self::next); [`next_with`](Self::next_with) waits at the end with a
/// [`WaitStrategy`].
#[derive(Debug)]
pub struct Tailer {
    published: SegmentRef<CachePadded<EventCount>>,
    cursor: Cursor,
    /// The copy of the current record: header, then payload.
    buf: Vec<u8>,
    /// Where the seek started: (file, entry, index fault).
    seek: (u64, Option<u64>, Option<&'static str>),
}

impl Tailer {
    /// A tailer reading `file` from `at`, skipping records as `skip` says.
    pub(crate) fn new(
        published: SegmentRef<CachePadded<EventCount>>,
        dir: PathBuf,
        file: JournalFile,
        at: Start,
        skip: Skip,
    ) -> Tailer {
        let seek = (file.info.seq, at.from_entry.then_some(at.index), at.fault);
        let cursor =
            Cursor { dir, file, offset: at.offset, next_index: at.index, skip, skipped: 0 };
        Tailer { published, cursor, buf: Vec::new(), seek }
    }

    /// How the seek that made this tailer found where to start: the file, the index entry it
    /// started from, and how many records it has passed over so far.
    pub fn seek_report(&self) -> SeekReport {
        let (file_seq, entry, index_fault) = self.seek;
        SeekReport { file_seq, entry, index_fault, skipped: self.cursor.skipped }
    }

    /// The next record, or `None` if the appender has not published it yet.
    // Not an `Iterator`: the record borrows the tailer's buffer until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, TailError> {
        match self.cursor.advance(&mut self.buf)? {
            Some(len) => self.take(len).map(Some),
            None => Ok(None),
        }
    }

    /// The next record, waiting for it with `strategy` (the appender notifies after each
    /// publish) for at most `timeout` (`None`: no limit); `None` if it timed out.
    pub fn next_with(
        &mut self,
        strategy: &mut impl WaitStrategy,
        timeout: Option<Duration>,
    ) -> Result<Option<Record<'_>>, TailError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let (cursor, buf) = (&mut self.cursor, &mut self.buf);
        let ready =
            strategy.wait_for(&self.published, deadline, || cursor.advance(buf).transpose());
        match ready {
            Err(TimedOut) => Ok(None),
            Ok(len) => self.take(len?).map(Some),
        }
    }

    /// The index of the next record this tailer hands out (or skips to).
    pub fn next_index(&self) -> u64 {
        match self.cursor.skip {
            Skip::BelowIndex(index) => index.max(self.cursor.next_index),
            _ => self.cursor.next_index,
        }
    }

    /// Copies out, validates and hands out the committed record of `len` bytes at the cursor.
    fn take(&mut self, len: u32) -> Result<Record<'_>, TailError> {
        let cursor = &mut self.cursor;
        let header =
            read_record(&cursor.file, cursor.offset, len, cursor.next_index, &mut self.buf)
                .map_err(|reason| cursor.corrupt(reason))?;
        cursor.step(len);
        Ok(Record {
            index: header.index,
            timestamp_ns: header.timestamp_ns,
            payload: &self.buf[RECORD_HEADER_SIZE as usize..],
        })
    }
}

impl Cursor {
    /// Moves over end markers and records a seek skips; `Some(len)` once at a committed
    /// record to hand out, `None` at the end.
    fn advance(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, TailError> {
        loop {
            match slot_at(&self.file, self.offset).map_err(|reason| self.corrupt(reason))? {
                Slot::Empty | Slot::Writing { .. } => return Ok(None),
                Slot::End => self.next_file()?,
                Slot::Garbage(_) => return Err(self.corrupt("its state word is garbage")),
                Slot::Committed { len } => {
                    let wanted = |index: u64, timestamp: u64| match self.skip {
                        Skip::Nothing => true,
                        Skip::BelowIndex(first) => index >= first,
                        Skip::BeforeTime(first) => timestamp >= first,
                    };
                    if matches!(self.skip, Skip::Nothing) {
                        return Ok(Some(len));
                    }
                    let header = read_record(&self.file, self.offset, len, self.next_index, buf)
                        .map_err(|reason| self.corrupt(reason))?;
                    if wanted(header.index, header.timestamp_ns) {
                        self.skip = Skip::Nothing;
                        return Ok(Some(len));
                    }
                    self.step(len);
                    self.skipped += 1;
                }
            }
        }
    }

    fn step(&mut self, len: u32) {
        self.offset += format::extent(len);
        self.next_index += 1;
    }

    /// Moves to the next file, which must continue at the next index.
    fn next_file(&mut self) -> Result<(), TailError> {
        let file = JournalFile::open(&self.dir, self.file.info.seq + 1, false)?;
        if file.info.first_index != self.next_index {
            return Err(TailError::Gap {
                path: file.path,
                expected: self.next_index,
                found: file.info.first_index,
            });
        }
        self.file = file;
        self.offset = FILE_HEADER_SIZE;
        Ok(())
    }

    fn corrupt(&self, reason: &'static str) -> TailError {
        TailError::Corrupt { path: self.file.path.clone(), offset: self.offset, reason }
    }
}
