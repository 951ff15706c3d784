//! A file's sparse index: where seeks start, what the appender writes, and what recovery
//! repairs. The region and its entries are in the crate docs; the atomic stores and loads of
//! an entry are `publish`'s ([`write_entry`](publish::write_entry),
//! [`read_entry`](publish::read_entry)).
//!
//! Slot `s` of a file with stride `K` names the file's record number `(s + 1) K` (from 0): its
//! index must be the file's `first_index + (s + 1) K`. The appender fills the slots in order,
//! so a sound index is a prefix of filled slots, found by binary search. Nothing read from a
//! slot is believed before [`verify`] found the record it names at its offset, committed,
//! passing the tailers' validation (bounds, index, checksum) with the entry's timestamp; a
//! slot that fails makes the seek read the file from its first record instead (slower, never
//! wrong).

use crate::files::JournalFile;
use crate::format::{self, FILE_HEADER_SIZE, FileInfo, IndexEntry, Slot};
use crate::publish;
use crate::records::{read_record, slot_at};

/// What a seek looks for in a file.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// The record with this index.
    Index(u64),
    /// The first record stamped at or after this time.
    Time(u64),
}

/// Where a seek starts reading a file: a record known to come before the target (or be it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Start {
    /// Offset of the record to read first.
    pub offset: u64,
    /// Its index.
    pub index: u64,
    /// Whether that record was found through an index entry (not the file's first record).
    pub from_entry: bool,
    /// Why the index entry the seek picked was refused (the seek then starts at the file's
    /// first record).
    pub fault: Option<&'static str>,
}

impl Start {
    /// The file's first record.
    pub fn first(info: &FileInfo) -> Start {
        Start { offset: FILE_HEADER_SIZE, index: info.first_index, from_entry: false, fault: None }
    }
}

/// The index the record named by `slot` has: `None` for a file without an index, or past any
/// index there can be.
pub(crate) fn slot_index(info: &FileInfo, slot: u64) -> Option<u64> {
    let records = slot.checked_add(1)?.checked_mul(u64::from(info.index_stride))?;
    (records > 0).then(|| info.first_index.checked_add(records)).flatten()
}

/// The slot that names the record of `index` in `info`'s file, if it has one.
pub(crate) fn slot_of(info: &FileInfo, index: u64) -> Option<u64> {
    let stride = u64::from(info.index_stride);
    let number = index.checked_sub(info.first_index)?;
    if stride == 0 || number == 0 || !number.is_multiple_of(stride) {
        return None;
    }
    let slot = number / stride - 1;
    (slot < info.index_capacity()).then_some(slot)
}

/// The index of the first record at or after `next_index` that gets an index entry
/// (`u64::MAX`: none, the file has no index).
pub(crate) fn next_indexed(info: &FileInfo, next_index: u64) -> u64 {
    let stride = u64::from(info.index_stride);
    let number = next_index.saturating_sub(info.first_index).max(1);
    number
        .checked_next_multiple_of(stride)
        .and_then(|number| info.first_index.checked_add(number))
        .filter(|_| stride > 0)
        .unwrap_or(u64::MAX)
}

/// The entry in `slot` as the file holds it (unverified): `Ok(None)` if the slot is empty or
/// past the region.
pub(crate) fn entry(file: &JournalFile, slot: u64) -> Result<Option<IndexEntry>, &'static str> {
    if slot >= file.info.index_capacity() {
        return Ok(None);
    }
    publish::read_entry(&file.map, format::entry_offset(file.records_end, slot))
}

/// Writes `entry` into `slot` (the appender, or recovery, with the role held).
pub(crate) fn write(file: &JournalFile, slot: u64, entry: IndexEntry) {
    if slot < file.info.index_capacity() {
        publish::write_entry(&file.map, format::entry_offset(file.records_end, slot), entry);
    }
}

/// Empties `slot` (recovery, with the role held).
pub(crate) fn clear(file: &JournalFile, slot: u64) {
    if slot < file.info.index_capacity() {
        publish::clear_entry(&file.map, format::entry_offset(file.records_end, slot));
    }
}

/// The entry in `slot`, checked against the record it names: that record lies at the entry's
/// offset, is committed and valid (bounds, index, checksum), has the index the slot stands
/// for and the entry's timestamp. The error says what failed.
pub(crate) fn verify(
    file: &JournalFile,
    slot: u64,
    buf: &mut Vec<u8>,
) -> Result<IndexEntry, &'static str> {
    let entry = entry(file, slot)?.ok_or("the index entry is empty")?;
    if Some(entry.index) != slot_index(&file.info, slot) {
        return Err("the index entry names another record than its slot stands for");
    }
    if entry.offset < FILE_HEADER_SIZE || entry.offset >= file.records_end {
        return Err("the index entry points outside the file's records");
    }
    let Ok(Slot::Committed { len }) = slot_at(file, entry.offset) else {
        return Err("the index entry points at no complete record");
    };
    let header = read_record(file, entry.offset, len, entry.index, buf)
        .map_err(|_| "the index entry points at no valid record of its index")?;
    if header.timestamp_ns != entry.timestamp_ns {
        return Err("the index entry's timestamp is not its record's");
    }
    Ok(entry)
}

/// Where to start reading `file` for `target`: the record of the last index entry before
/// it, verified, or the file's first record (no index, no entry before the target, or the
/// entry refused, with the reason in [`Start::fault`]). From there, at most `index_stride`
/// records come before the target in a file whose index is sound.
pub(crate) fn seek(file: &JournalFile, target: Target, buf: &mut Vec<u8>) -> Start {
    let info = &file.info;
    let first = Start::first(info);
    let stride = u64::from(info.index_stride);
    if stride == 0 {
        return first;
    }
    // Slots whose record comes before the target (or is it): a prefix of the filled slots.
    let before = match target {
        Target::Index(index) => {
            let limit =
                (index.saturating_sub(info.first_index) / stride).min(info.index_capacity());
            partition(limit, |slot| matches!(entry(file, slot), Ok(Some(_))))
        }
        // Strictly before: the first record stamped at `time` may follow others stamped then.
        Target::Time(time) => partition(
            info.index_capacity(),
            |slot| matches!(entry(file, slot), Ok(Some(entry)) if entry.timestamp_ns < time),
        ),
    };
    let Some(slot) = before.checked_sub(1) else { return first };
    match verify(file, slot, buf) {
        Ok(entry) => {
            let precedes = match target {
                Target::Index(index) => entry.index <= index,
                Target::Time(time) => entry.timestamp_ns < time,
            };
            if !precedes {
                // Changed since the search read it: a file being damaged under us.
                return Start { fault: Some("the index entry changed while it was read"), ..first };
            }
            Start { offset: entry.offset, index: entry.index, from_entry: true, fault: None }
        }
        Err(reason) => Start { fault: Some(reason), ..first },
    }
}

/// The number of slots in `0..limit` for which `holds` is true, if they are a prefix (binary
/// search); in a damaged index, where they are not, some count for which the slot before
/// holds (the caller verifies that slot).
fn partition(limit: u64, holds: impl Fn(u64) -> bool) -> u64 {
    let (mut low, mut high) = (0, limit);
    while low < high {
        let mid = low + (high - low) / 2;
        if holds(mid) { low = mid + 1 } else { high = mid }
    }
    low
}

/// What recovery did to a file's index.
#[derive(Debug, Default)]
pub(crate) struct Repair {
    /// Entries written because they were missing or wrong.
    pub rewritten: u64,
    /// Entries removed because their record is not kept.
    pub cleared: u64,
}

impl Repair {
    /// Whether anything was changed.
    pub fn any(&self) -> bool {
        self.rewritten + self.cleared > 0
    }

    /// Makes the entry of the kept record `entry` (walked and validated by recovery) right
    /// if the record has one: rewrites it if it is missing or says anything else.
    pub fn keep(&mut self, file: &JournalFile, entry: IndexEntry) {
        let Some(slot) = slot_of(&file.info, entry.index) else { return };
        if self::entry(file, slot) != Ok(Some(entry)) {
            write(file, slot, entry);
            self.rewritten += 1;
        }
    }

    /// Removes the entries of records at and after `next_index` (not kept): the run of
    /// filled slots from the first such record's slot on. An appender fills slots in order,
    /// so its stale entries are that run; a filled slot past an empty one was never written
    /// by one, fails [`verify`] and is overwritten when its record is appended.
    pub fn drop_from(&mut self, file: &JournalFile, next_index: u64) {
        let stride = u64::from(file.info.index_stride);
        let Some(number) = next_index.checked_sub(file.info.first_index) else { return };
        if stride == 0 {
            return;
        }
        // The slots of records numbered `number` and later.
        let mut slot = number.div_ceil(stride).saturating_sub(1);
        while let Ok(Some(_)) = entry(file, slot) {
            clear(file, slot);
            self.cleared += 1;
            slot += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordType;

    fn info(first_index: u64, index_stride: u32) -> FileInfo {
        FileInfo {
            seq: 0,
            first_index,
            created_unix_ns: 0,
            file_size: 8192,
            record_type: RecordType::bytes(),
            index_stride,
        }
    }

    #[test]
    fn slots_name_every_strideth_record_after_the_first() {
        let info = info(100, 4);
        assert_eq!(slot_index(&info, 0), Some(104));
        assert_eq!(slot_index(&info, 2), Some(112));
        assert_eq!(slot_of(&info, 112), Some(2));
        for not_indexed in [0, 99, 100, 101, 103, 113] {
            assert_eq!(slot_of(&info, not_indexed), None, "{not_indexed}");
        }
        assert_eq!(slot_of(&info, 100 + 4 * (info.index_capacity() + 1)), None, "past the region");
        assert_eq!(next_indexed(&info, 100), 104);
        assert_eq!(next_indexed(&info, 104), 104);
        assert_eq!(next_indexed(&info, 105), 108);
        let none = self::info(100, 0);
        assert_eq!((slot_index(&none, 0), slot_of(&none, 100)), (None, None));
        assert_eq!(next_indexed(&none, 100), u64::MAX);
        assert_eq!(slot_index(&self::info(u64::MAX, 1), 0), None, "no overflow");
    }

    #[test]
    fn partition_finds_the_end_of_a_prefix() {
        for limit in 0..20 {
            for prefix in 0..=limit {
                assert_eq!(partition(limit, |slot| slot < prefix), prefix);
            }
        }
        // Not a prefix: some count whose slot before holds.
        let holds = |slot: u64| slot.is_multiple_of(3);
        let count = partition(10, holds);
        assert!(count == 0 || holds(count - 1));
    }
}
