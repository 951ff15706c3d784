//! [`Journal::inspect`]: a read-only report on a journal directory, for tools (`shmlane
//! journal inspect`): its files, records, index and time ranges, recorded type, appender, and
//! whatever is torn or corrupt.
//!
//! Nothing is created, locked or written: files are mapped read-only, the control segment is
//! opened read-only (and only if it exists), and the appender role is read, never claimed. The
//! records are walked with the tailers' and recovery's own validation
//! ([`read_record`](crate::records::read_record): bounds, index, checksum), and each index
//! entry is compared with the record it names.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use shmlane_segment::{Liveness, RoleOwner};

use crate::files::{self, JournalFile};
use crate::format::{self, FILE_HEADER_SIZE, IndexEntry, Slot};
use crate::index;
use crate::journal::Journal;
use crate::records::{read_record, slot_at};
use crate::{OpenError, RecordType, control};

/// What [`Journal::inspect`] found in a journal directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// The journal files whose header is valid, in sequence order (the others are in
    /// `problems`).
    pub files: Vec<FileReport>,
    /// The recorded type, from the first valid file's header.
    pub record_type: Option<RecordType>,
    /// Complete records that passed validation, over all files.
    pub records: u64,
    /// Index of the first such record.
    pub first_index: Option<u64>,
    /// Index of the last such record.
    pub last_index: Option<u64>,
    /// Publication time of the first record, ns since the Unix epoch.
    pub first_timestamp_ns: Option<u64>,
    /// Publication time of the last record, ns since the Unix epoch.
    pub last_timestamp_ns: Option<u64>,
    /// Who holds the appender role.
    pub appender: AppenderState,
    /// A record being written by the live appender right now (file, offset, index): not a
    /// problem.
    pub in_progress: Option<(u64, u64, u64)>,
    /// What is torn or corrupt; empty for a healthy journal.
    pub problems: Vec<Problem>,
}

impl Inspection {
    /// Whether nothing is torn or corrupt.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One journal file, as its header and records say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    /// Its sequence number.
    pub seq: u64,
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes (preallocated whole).
    pub size: u64,
    /// Index of its first record.
    pub first_index: u64,
    /// When it was created, ns since the Unix epoch.
    pub created_unix_ns: u64,
    /// The type its header records.
    pub record_type: RecordType,
    /// Complete, valid records in it (up to the first that is not).
    pub records: u64,
    /// Publication time of its first record.
    pub first_timestamp_ns: Option<u64>,
    /// Publication time of its last record.
    pub last_timestamp_ns: Option<u64>,
    /// Bytes used: the offset after its last valid record.
    pub used: u64,
    /// Whether it is ended (sealed with the end marker: the journal rolled to the next file).
    pub ended: bool,
    /// Records per index entry (0: the file has no index).
    pub index_stride: u32,
    /// Index entries that match the records they name.
    pub index_entries: u64,
}

/// The appender role of a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppenderState {
    /// The journal has no control segment (`shmlane.journal`): no appender.
    NoControl,
    /// Nobody holds the role.
    Free,
    /// Held by `owner`, whose process is `liveness` (only [`Liveness::Dead`] is proof of death;
    /// the next [`Journal::appender`] takes the role over from a dead one).
    Held {
        /// The owner.
        owner: RoleOwner,
        /// Its pid as its presence file records it, if still on record.
        pid: Option<u32>,
        /// Whether it runs.
        liveness: Liveness,
    },
    /// The control segment could not be read.
    Unreadable(String),
}

impl AppenderState {
    /// Whether an appender may be writing (held by a process not proven dead).
    pub fn may_be_writing(&self) -> bool {
        matches!(self, AppenderState::Held { liveness, .. } if *liveness != Liveness::Dead)
    }
}

/// What kind of damage a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A record its appender died while writing (the next appender removes it).
    TornTail,
    /// The last file's records end in one that fails validation or in a garbage state word
    /// (the next appender removes it and what follows).
    CorruptTail,
    /// A record that fails validation in a file before the last: tailers cannot read past it.
    CorruptRecord,
    /// A file before the last that is not ended (its appender died while rolling).
    NotEnded,
    /// A file that cannot be used: missing, bad header, wrong length, foreign.
    BadFile,
    /// A file that does not start at the index its predecessor ended at.
    Gap,
    /// A file that records another type than the first.
    TypeMismatch,
    /// Index entries that do not match their records, are missing, or name records past the
    /// file's last: seeks into the file refuse them and read it from its start.
    BadIndex,
    /// The control segment cannot be read.
    Control,
}

impl ProblemKind {
    /// A short name: `torn tail`, `corrupt record`, ...
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::TornTail => "torn tail",
            ProblemKind::CorruptTail => "corrupt tail",
            ProblemKind::CorruptRecord => "corrupt record",
            ProblemKind::NotEnded => "not ended",
            ProblemKind::BadFile => "bad file",
            ProblemKind::Gap => "gap",
            ProblemKind::TypeMismatch => "type mismatch",
            ProblemKind::BadIndex => "bad index",
            ProblemKind::Control => "control file",
        }
    }
}

/// Something torn or corrupt: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The kind.
    pub kind: ProblemKind,
    /// The file (or the control segment, or the directory).
    pub path: PathBuf,
    /// The file's sequence number, for a journal file.
    pub file_seq: Option<u64>,
    /// The record's offset in the file, for a record.
    pub offset: Option<u64>,
    /// The index the record has or would have had, for a record.
    pub index: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// What the walk of one file found wrong in its index.
#[derive(Default)]
struct IndexFaults {
    /// Entries that say something else than their record: the first (slot, what it says,
    /// what it should say) and how many.
    wrong: Option<(u64, IndexEntry, IndexEntry)>,
    wrong_count: u64,
    /// Records with no entry: the last (slot, record index) and how many.
    missing: Option<(u64, u64)>,
    missing_count: u64,
}

/// How the walk of one file's records ended.
enum Stop {
    /// A zero word: no more records (yet).
    Empty,
    /// The end marker.
    Ended,
    /// A record being written, of `len` bytes.
    Writing,
    /// A record or word that fails validation.
    Bad(&'static str),
}

impl Journal {
    /// Reports on the journal in `dir` without changing anything: its files, records, ranges,
    /// recorded type, appender, and any torn or corrupt tail or record. Never takes the
    /// appender role, creates the control segment or repairs a tail, so it may run beside a
    /// live appender (its report is then a snapshot). Fails only if the directory cannot be
    /// read ([`OpenError::Dir`], with [`io::ErrorKind::NotFound`] for a missing one) or listed;
    /// everything wrong inside it is a [`Problem`].
    pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection, OpenError> {
        let dir = dir.as_ref().to_owned();
        let meta = fs::metadata(&dir).map_err(|source| OpenError::Dir {
            op: "read",
            path: dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(OpenError::Dir {
                op: "read",
                path: dir.clone(),
                source: io::Error::from(io::ErrorKind::NotADirectory),
            });
        }
        // Read first: an appender that dies after this shows as a live one, never the reverse.
        let appender = appender_state(&dir);
        let seqs = files::list(&dir)?;
        let mut report = Inspection {
            dir: dir.clone(),
            files: Vec::new(),
            record_type: None,
            records: 0,
            first_index: None,
            last_index: None,
            first_timestamp_ns: None,
            last_timestamp_ns: None,
            appender,
            in_progress: None,
            problems: Vec::new(),
        };
        if let AppenderState::Unreadable(reason) = &report.appender {
            report.problems.push(Problem {
                kind: ProblemKind::Control,
                path: dir.join("shmlane.journal"),
                file_seq: None,
                offset: None,
                index: None,
                reason: reason.clone(),
            });
        }
        let live = report.appender.may_be_writing();
        let mut buf = Vec::new();
        // The index the previous file ended at, if it was read.
        let mut expected: Option<u64> = None;
        let mut previous_seq: Option<u64> = None;
        for (position, &seq) in seqs.iter().enumerate() {
            let last = position + 1 == seqs.len();
            let next_to_last = position + 2 == seqs.len();
            let problem = |kind, path: PathBuf, offset, index, reason: String| Problem {
                kind,
                path,
                file_seq: Some(seq),
                offset,
                index,
                reason,
            };
            if let Some(previous) = previous_seq
                && previous + 1 != seq
            {
                let missing = files::path_of(&dir, previous + 1);
                let reason = format!("files {} to {} are missing", previous + 1, seq - 1);
                report.problems.push(Problem {
                    file_seq: Some(previous + 1),
                    ..problem(ProblemKind::BadFile, missing, None, None, reason)
                });
                expected = None;
            }
            previous_seq = Some(seq);
            let file = match JournalFile::open(&dir, seq, false) {
                Ok(file) => file,
                Err(e) => {
                    let path = files::path_of(&dir, seq);
                    report.problems.push(problem(
                        ProblemKind::BadFile,
                        path,
                        None,
                        None,
                        e.to_string(),
                    ));
                    expected = None;
                    continue;
                }
            };
            let info = &file.info;
            match &report.record_type {
                None => report.record_type = Some(info.record_type.clone()),
                Some(first) if *first != info.record_type => {
                    let reason =
                        format!("it records {:?}, the first file {first:?}", info.record_type);
                    let path = file.path.clone();
                    report.problems.push(problem(
                        ProblemKind::TypeMismatch,
                        path,
                        None,
                        None,
                        reason,
                    ));
                }
                Some(_) => {}
            }
            if let Some(expected) = expected
                && expected != info.first_index
            {
                let reason = format!(
                    "it starts at index {} but the previous file ended at {expected}",
                    info.first_index
                );
                let path = file.path.clone();
                report.problems.push(problem(ProblemKind::Gap, path, None, None, reason));
            }
            let (mut entry, stop, faults) = walk(&file, &mut buf);
            let (offset, index) = (entry.used, info.first_index + entry.records);
            if let Some(problem) = index_problem(&file, &entry, &faults, last && live, &mut buf) {
                report.problems.push(problem);
            }
            let at = |kind, reason: String| {
                problem(kind, file.path.clone(), Some(offset), Some(index), reason)
            };
            match stop {
                Stop::Ended => entry.ended = true,
                Stop::Empty if last => {}
                // The live appender created the last file and is about to end this one.
                Stop::Empty if next_to_last && live => {}
                Stop::Empty => report.problems.push(at(
                    ProblemKind::NotEnded,
                    "a later file exists but this one has no end marker: its appender died \
                     while rolling (the next appender ends it)"
                        .into(),
                )),
                Stop::Writing if last && live => {
                    report.in_progress = Some((seq, offset, index));
                }
                Stop::Writing => report.problems.push(at(
                    ProblemKind::TornTail,
                    "its appender died while writing it (the next appender removes it)".into(),
                )),
                Stop::Bad(reason) if last => report.problems.push(at(
                    ProblemKind::CorruptTail,
                    format!(
                        "{reason} (the next appender removes it and everything after it in \
                         this file)"
                    ),
                )),
                Stop::Bad(reason) => report.problems.push(at(
                    ProblemKind::CorruptRecord,
                    format!("{reason}; tailers cannot read past it"),
                )),
            }
            expected = Some(index);
            if entry.records > 0 {
                report.records += entry.records;
                report.first_index.get_or_insert(info.first_index);
                report.last_index = Some(index - 1);
                report.first_timestamp_ns = report.first_timestamp_ns.or(entry.first_timestamp_ns);
                report.last_timestamp_ns = entry.last_timestamp_ns.or(report.last_timestamp_ns);
            }
            report.files.push(entry);
        }
        Ok(report)
    }
}

/// Walks the records of `file` up to the first that is not complete and valid, comparing each
/// index entry with the record it names.
fn walk(file: &JournalFile, buf: &mut Vec<u8>) -> (FileReport, Stop, IndexFaults) {
    let info = &file.info;
    let mut entry = FileReport {
        seq: info.seq,
        path: file.path.clone(),
        size: info.file_size,
        first_index: info.first_index,
        created_unix_ns: info.created_unix_ns,
        record_type: info.record_type.clone(),
        records: 0,
        first_timestamp_ns: None,
        last_timestamp_ns: None,
        used: FILE_HEADER_SIZE,
        ended: false,
        index_stride: info.index_stride,
        index_entries: 0,
    };
    let mut faults = IndexFaults::default();
    let stop = loop {
        let index = info.first_index + entry.records;
        match slot_at(file, entry.used) {
            Ok(Slot::Empty) => break Stop::Empty,
            Ok(Slot::End) => break Stop::Ended,
            Ok(Slot::Writing { .. }) => break Stop::Writing,
            Ok(Slot::Garbage(_)) => break Stop::Bad("its state word is garbage"),
            Err(reason) => break Stop::Bad(reason),
            Ok(Slot::Committed { len }) => match read_record(file, entry.used, len, index, buf) {
                Ok(header) => {
                    if let Some(slot) = index::slot_of(info, index) {
                        let expected = IndexEntry {
                            index,
                            timestamp_ns: header.timestamp_ns,
                            offset: entry.used,
                        };
                        match index::entry(file, slot) {
                            Ok(Some(found)) if found == expected => entry.index_entries += 1,
                            Ok(None) => {
                                faults.missing = Some((slot, index));
                                faults.missing_count += 1;
                            }
                            Ok(Some(found)) => {
                                faults.wrong.get_or_insert((slot, found, expected));
                                faults.wrong_count += 1;
                            }
                            Err(_) => faults.wrong_count += 1,
                        }
                    }
                    entry.first_timestamp_ns.get_or_insert(header.timestamp_ns);
                    entry.last_timestamp_ns = Some(header.timestamp_ns);
                    entry.records += 1;
                    entry.used += format::extent(len);
                }
                Err(reason) => break Stop::Bad(reason),
            },
        }
    };
    (entry, stop, faults)
}

/// The problem with `file`'s index, if any, from what the walk found (`entry`, `faults`):
/// entries that say something else than their record, records without an entry (but the
/// last one, which a live appender (`live`) may be about to index), and an entry after the
/// last record walked that does not verify (a live appender's entries for records appended
/// since the walk do).
fn index_problem(
    file: &JournalFile,
    entry: &FileReport,
    faults: &IndexFaults,
    live: bool,
    buf: &mut Vec<u8>,
) -> Option<Problem> {
    let info = &file.info;
    let at = |slot| Some(format::entry_offset(file.records_end, slot));
    let problem = |offset, index, reason| Problem {
        kind: ProblemKind::BadIndex,
        path: file.path.clone(),
        file_seq: Some(info.seq),
        offset,
        index,
        reason,
    };
    let next_index = info.first_index + entry.records;
    let after = "seeks into this file refuse it and read the file from its start";
    if let Some((slot, found, expected)) = faults.wrong {
        let count = match faults.wrong_count {
            1 => "1 index entry does not match its record".to_owned(),
            n => format!("{n} index entries do not match their records"),
        };
        let reason = format!(
            "{count}; the first, slot {slot}, says record {} at byte {} stamped {} ns, but \
             record {} is at byte {} stamped {} ns; {after}",
            found.index,
            found.offset,
            found.timestamp_ns,
            expected.index,
            expected.offset,
            expected.timestamp_ns,
        );
        return Some(problem(at(slot), Some(expected.index), reason));
    }
    if faults.wrong_count > 0 {
        let reason = format!("{} index entries are unreadable; {after}", faults.wrong_count);
        return Some(problem(None, None, reason));
    }
    if let Some((slot, index)) = faults.missing {
        // The live appender writes an entry just after publishing its record.
        let pending = live && faults.missing_count == 1 && index + 1 == next_index;
        if !pending {
            let reason = format!(
                "{} record(s) have no index entry, the last record {index} (slot {slot}); seeks \
                 read from the entry before (the next appender rewrites the index of the last \
                 two files)",
                faults.missing_count
            );
            return Some(problem(at(slot), Some(index), reason));
        }
    }
    // The slot after the last one the walk checked: empty, unless its record is one a live
    // appender published after the walk.
    let slot = index::next_indexed(info, next_index);
    let slot = index::slot_of(info, slot)?;
    let stale = index::entry(file, slot).ok().flatten()?;
    let reason = index::verify(file, slot, buf).err()?;
    let reason = format!(
        "index slot {slot} names record {} at byte {}, past the file's last record ({reason})",
        stale.index, stale.offset
    );
    Some(problem(at(slot), Some(stale.index), reason))
}

/// The appender role, read from the control segment without creating or changing it.
fn appender_state(dir: &Path) -> AppenderState {
    match control::read_appender_word(dir) {
        Ok(None) => AppenderState::NoControl,
        Ok(Some(word)) => match RoleOwner::from_raw(word) {
            None => AppenderState::Free,
            Some(owner) => {
                AppenderState::Held { owner, pid: owner.pid(), liveness: owner.liveness() }
            }
        },
        Err(e) => AppenderState::Unreadable(e.to_string()),
    }
}
