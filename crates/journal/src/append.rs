//! The [`Appender`]: the one writer of a journal, claimed with proof of death, and its
//! [`Reservation`]s, records written in place.
//!
//! A record is written in three steps, so that a tailer in another process sees it only
//! whole and a recovering appender knows how far a dead one got:
//!
//! 1. the state word becomes `Writing | len` (tailers treat it as "nothing yet");
//! 2. the payload, then index, timestamp and checksum are written after it;
//! 3. the state word becomes `Committed | len` with a Release store, then the event count is
//!    notified (a fence and a load unless a tailer sleeps);
//! 4. every `index_stride`-th record of a file, its index entry is written (three word
//!    stores, the offset last with Release): one comparison per record otherwise.
//!
//! Before step 1, when less than [`JournalConfig::prefault`](crate::JournalConfig::prefault)
//! bytes of the file lie mapped in ahead of the record, the next chunk is (one `madvise`): one
//! comparison per record otherwise.
//!
//! The steps themselves, and the roll's order (next file created, then the end marker), are
//! `publish`'s, which the loom models check (`loom-tests/journal_publish.rs`).
//!
//! Crash points (with the `crash-points` feature, in `publish`): `journal.append.before_publish`
//! (between steps 2 and 3), `journal.append.after_publish` (right after step 3's store), and
//! `journal.roll.before_seal` (the next file exists, the current one is not sealed yet).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_utils::CachePadded;
use shmlane_notify::EventCount;
use shmlane_segment::{RoleClaim, RoleError, RoleOwner, SegmentRef};

use crate::control::Control;
use crate::files::{self, JournalFile};
use crate::format::{self, FILE_HEADER_SIZE, FileInfo, IndexEntry, RECORD_HEADER_SIZE};
use crate::recover::{self, TornRecord};
use crate::sync::AtomicU64;
use crate::{AppendError, AppenderError, Durability, FileError, JournalConfig, now_unix_ns};
use crate::{index, publish};

/// What taking the appender role found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The previous appender, proven dead, whose role was taken over (`None`: the role was
    /// free, the previous appender closed cleanly or there was none).
    pub taken_over: Option<RoleOwner>,
    /// Records removed from the tails of the last two files (unfinished or failing their
    /// checksum); every complete record before them is kept.
    pub torn: Vec<TornRecord>,
    /// Whether the next-to-last file had to be sealed (its appender died while rolling).
    pub sealed_previous: bool,
    /// Index entries of the last two files rewritten (missing, because their appender died
    /// before writing them, or wrong) or removed (naming records removed as torn).
    pub index_repaired: u64,
}

/// The one writer of a journal (see [`Journal::appender`](crate::Journal::appender)).
/// Releases the role when dropped, after a final sync unless the durability is `None`.
#[derive(Debug)]
pub struct Appender {
    dir: PathBuf,
    config: JournalConfig,
    published: SegmentRef<CachePadded<EventCount>>,
    file: JournalFile,
    /// Offset of the next record (or of the end marker, once `sealed`).
    offset: u64,
    next_index: u64,
    /// The index of the next record that gets an index entry (`u64::MAX`: none).
    next_indexed: u64,
    last_timestamp: u64,
    /// The end marker is at `offset`: the next record goes into a new file.
    sealed: bool,
    /// `max_record_len()`, computed once.
    max_len: u32,
    /// Bytes of `file` before this offset are mapped in (`JournalConfig::prefault`);
    /// `u64::MAX` once the file is, or prefaulting is off or failed.
    prefaulted: u64,
    /// Bytes of `file` before this offset are on disk (as far as the policy asks).
    synced_to: u64,
    unsynced_records: u32,
    last_sync: Instant,
    recovery: Recovery,
    // Last: released after the final sync in `drop`.
    _claim: RoleClaim<SegmentRef<AtomicU64>>,
}

impl Appender {
    /// Claims the appender role of the journal in `dir` and recovers the tail.
    pub(crate) fn claim(
        dir: &Path,
        config: &JournalConfig,
        control: &Control,
    ) -> Result<Appender, AppenderError> {
        let me = RoleOwner::current().map_err(AppenderError::Identity)?;
        let (claim, how) = RoleClaim::claim(control.appender.clone(), me)
            .map_err(|RoleError::Taken(owner)| AppenderError::Taken(owner))?;
        let mut recovery = Recovery {
            taken_over: match how {
                shmlane_segment::Claimed::TakenOver(owner) => Some(owner),
                shmlane_segment::Claimed::Free => None,
            },
            ..Recovery::default()
        };
        files::remove_leftovers(dir)?;
        let seqs = files::list(dir)?;
        let Some(&last) = seqs.last() else {
            return Err(FileError::Missing { path: files::path_of(dir, 0) }.into());
        };
        let durable = config.durability != Durability::None;
        let mut buf = Vec::new();
        let mut last_timestamp = 0;
        if let [.., previous, _] = seqs[..] {
            let file = JournalFile::open(dir, previous, true)?;
            let tail = recover::repair_tail(&file, &mut buf);
            recovery.torn.extend(tail.torn);
            recovery.index_repaired += tail.index.rewritten + tail.index.cleared;
            last_timestamp = tail.last_timestamp;
            if !tail.sealed {
                // The last appender created the last file but died before sealing this one.
                publish::seal(&file.map, tail.offset);
                recovery.sealed_previous = true;
            }
            if durable && (recovery.sealed_previous || tail.torn.is_some() || tail.index.any()) {
                sync_whole(&file)?;
            }
        }
        let file = JournalFile::open(dir, last, true)?;
        let tail = recover::repair_tail(&file, &mut buf);
        recovery.torn.extend(tail.torn);
        recovery.index_repaired += tail.index.rewritten + tail.index.cleared;
        if durable && (tail.torn.is_some() || tail.index.any()) {
            sync_whole(&file)?;
        }
        let published = control.published.clone();
        // Tailers waiting at a slot that was just sealed or cleared look again.
        published.notify_all();
        Ok(Appender {
            dir: dir.to_owned(),
            config: config.clone(),
            published,
            offset: tail.offset,
            next_index: tail.next_index,
            next_indexed: index::next_indexed(&file.info, tail.next_index),
            last_timestamp: last_timestamp.max(tail.last_timestamp).max(file.info.created_unix_ns),
            sealed: tail.sealed,
            max_len: format::max_payload(format::records_end(
                config.roll_size,
                config.index_stride,
            )),
            prefaulted: 0,
            synced_to: tail.offset,
            file,
            unsynced_records: 0,
            last_sync: Instant::now(),
            recovery,
            _claim: claim,
        })
    }

    /// What taking the role found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The index the next record gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The sequence number of the file being written.
    pub fn file_seq(&self) -> u64 {
        self.file.info.seq
    }

    /// The largest record this journal's configuration accepts.
    pub fn max_record_len(&self) -> u32 {
        self.max_len
    }

    /// Appends a copy of `payload` and returns its index.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, AppendError> {
        let reservation = self.reserve(payload.len())?;
        let appender = &*reservation.appender;
        publish::write_payload(&appender.file.map, appender.offset, payload);
        reservation.commit()
    }

    /// Reserves `len` bytes for a record written in place (zero-copy); the bytes start zeroed.
    /// [`Reservation::commit`] publishes it; dropping the reservation abandons it. Rolls to a
    /// new file first if the record does not fit in this one.
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>, AppendError> {
        let max = self.max_len;
        let len = u32::try_from(len)
            .ok()
            .filter(|&len| len <= max)
            .ok_or(AppendError::TooLarge { len, max })?;
        if self.sealed || !format::fits(self.offset, len, self.file.records_end) {
            self.roll()?;
        }
        if self.offset + self.config.prefault > self.prefaulted {
            self.prefault();
        }
        // The word is in the file: `offset + 8 <= file_size` holds for every offset.
        publish::claim(&self.file.map, self.offset, len);
        Ok(Reservation { appender: self, len, committed: false })
    }

    /// Writes every record appended so far to disk (`msync`) and waits, whatever the
    /// durability policy.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.map.flush(self.synced_to, self.offset - self.synced_to)?;
        self.synced_to = self.offset;
        self.unsynced_records = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Publishes the reserved record of `len` bytes at `offset`.
    fn publish(&mut self, len: u32) -> Result<u64, AppendError> {
        let index = self.next_index;
        let timestamp_ns = now_unix_ns().max(self.last_timestamp);
        let checksum = {
            let payload = self.payload(len);
            format::record_checksum(len, index, timestamp_ns, payload)
        };
        // The fields, then the Release store of `Committed | len`.
        publish::commit(&self.file.map, self.offset, len, index, timestamp_ns, checksum);
        if index == self.next_indexed {
            self.write_entry(IndexEntry { index, timestamp_ns, offset: self.offset });
        }
        self.offset += format::extent(len);
        self.next_index += 1;
        self.last_timestamp = timestamp_ns;
        self.published.notify_all();
        self.after_publish(index)
    }

    /// Writes the index entry of the record just published (every `index_stride`-th).
    #[cold]
    #[inline(never)]
    fn write_entry(&mut self, entry: IndexEntry) {
        if let Some(slot) = index::slot_of(&self.file.info, entry.index) {
            index::write(&self.file, slot, entry);
        }
        self.next_indexed = index::next_indexed(&self.file.info, entry.index.saturating_add(1));
    }

    /// The payload bytes of the reserved record.
    #[allow(unsafe_code)]
    fn payload(&mut self, len: u32) -> &mut [u8] {
        let at = self.offset + RECORD_HEADER_SIZE;
        // SAFETY: the record's bytes lie past the published tail (the state word at `offset`
        // is `Writing`), where only the appender, which holds the role, writes and no tailer
        // reads.
        unsafe { self.file.map.slice_mut(at, len as usize) }.unwrap_or_default()
    }

    /// Maps in the file up to `2 * prefault` bytes past the next record (`JournalConfig::prefault`).
    #[cold]
    #[inline(never)]
    fn prefault(&mut self) {
        const PAGE: u64 = 4096;
        let chunk = self.config.prefault.next_multiple_of(PAGE);
        let from = self.prefaulted.max(self.offset / PAGE * PAGE);
        let to = (self.offset + 2 * chunk).next_multiple_of(PAGE).min(self.file.info.file_size);
        let done = chunk > 0 && from < to && self.file.map.prefault(from, to - from).is_ok();
        // Off, done to the end, or failed (a kernel before 5.14): no more for this file.
        self.prefaulted = if done && to < self.file.info.file_size { to } else { u64::MAX };
    }

    /// Abandons the reserved record of `len` bytes: zeroes its extent (the state word last).
    fn abandon(&mut self, len: u32) {
        let from = self.offset + 8;
        let to = (self.offset + format::extent(len)).min(self.file.records_end);
        recover::zero(&self.file, from, to);
        publish::retract(&self.file.map, self.offset);
    }

    /// Syncs as the durability policy asks after the record `index` was published.
    fn after_publish(&mut self, index: u64) -> Result<u64, AppendError> {
        let due = match self.config.durability {
            Durability::None => false,
            Durability::PerRecord => true,
            Durability::EveryRecords(n) => {
                self.unsynced_records += 1;
                self.unsynced_records >= n
            }
            Durability::EveryInterval(interval) => self.last_sync.elapsed() >= interval,
        };
        if due {
            self.flush().map_err(|source| AppendError::Sync { index, source })?;
        }
        Ok(index)
    }

    /// Starts the next file: creates it (preallocated: a full file system fails here), then
    /// seals this one, so a tailer that sees the end marker finds the next file.
    fn roll(&mut self) -> Result<(), AppendError> {
        let durable = self.config.durability != Durability::None;
        let info = FileInfo {
            seq: self.file.info.seq + 1,
            first_index: self.next_index,
            created_unix_ns: now_unix_ns().max(self.last_timestamp),
            file_size: self.config.roll_size,
            record_type: self.config.record_type.clone(),
            index_stride: self.config.index_stride,
        };
        // The next file first, then the end marker (unless there already).
        let next = publish::roll(&self.file.map, self.offset, self.sealed, || {
            JournalFile::create(&self.dir, info, durable)
        })?;
        let sealed = std::mem::replace(&mut self.file, next);
        let unsynced = self.synced_to..self.offset + format::END_RESERVE;
        self.last_timestamp = self.last_timestamp.max(self.file.info.created_unix_ns);
        self.offset = FILE_HEADER_SIZE;
        self.synced_to = FILE_HEADER_SIZE;
        self.sealed = false;
        self.next_indexed = index::next_indexed(&self.file.info, self.next_index);
        self.prefaulted = 0;
        // Tailers asleep at the end marker move on to the new file.
        self.published.notify_all();
        if durable {
            // The roll is done whatever this says: the next append goes to the new file.
            // The sealed file's index too (its dirty pages only): recovery rebuilds the index
            // of the last two files only.
            let entries = sealed.records_end..sealed.info.file_size;
            for range in [unsynced, entries] {
                let len = range.end - range.start;
                sealed.map.flush(range.start, len).map_err(|source| FileError::Io {
                    op: "msync",
                    path: sealed.path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        if self.config.durability != Durability::None {
            let _ = self.flush();
        }
    }
}

/// Syncs all of `file` (after recovery changed it).
fn sync_whole(file: &JournalFile) -> Result<(), FileError> {
    file.map.flush(0, file.info.file_size).map_err(|source| FileError::Io {
        op: "msync",
        path: file.path.clone(),
        source,
    })
}

/// A record being written in place ([`Appender::reserve`]): fill
/// [`as_mut_slice`](Self::as_mut_slice), then [`commit`](Self::commit). Dropped without
/// commit, it is abandoned and its bytes zeroed.
#[derive(Debug)]
pub struct Reservation<'a> {
    appender: &'a mut Appender,
    len: u32,
    committed: bool,
}

impl Reservation<'_> {
    /// The record's bytes, in the journal file itself.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.appender.payload(self.len)
    }

    /// The record's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the record is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the record to tailers and returns its index. An [`AppendError::Sync`] means
    /// the record is published but not yet on disk.
    pub fn commit(mut self) -> Result<u64, AppendError> {
        self.committed = true;
        self.appender.publish(self.len)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.appender.abandon(self.len);
        }
    }
}
