//! Set-up shared by the journal's tests: deterministic payloads and reading a journal back.

#![allow(dead_code)]

use shmlane_journal::{Journal, JournalConfig, TailError, TailFrom};

/// The payload of record `index`: 0 to 250 bytes, a pattern that names its index.
pub fn payload(index: u64) -> Vec<u8> {
    let len = (index * 37 % 251) as usize;
    (0..len).map(|k| (index as u8).wrapping_mul(31).wrapping_add(k as u8)).collect()
}

/// The index stride of [`config`]: small, so that even 4 KiB files hold index entries (and
/// damage, crashes and recovery reach them).
pub const STRIDE: u32 = 4;

/// A configuration with files of `roll_size` bytes and an index entry every [`STRIDE`]
/// records.
pub fn config(roll_size: u64) -> JournalConfig {
    JournalConfig { roll_size, index_stride: STRIDE, ..JournalConfig::default() }
}

/// A record read back: index, timestamp, payload.
pub type Read = (u64, u64, Vec<u8>);

/// Every record a tailer from the start finds now, or the first error.
pub fn read_all(journal: &Journal) -> Result<Vec<Read>, TailError> {
    let mut tailer = journal.tailer(TailFrom::Start)?;
    let mut records = Vec::new();
    while let Some(record) = tailer.next()? {
        records.push((record.index(), record.timestamp_ns(), record.payload().to_vec()));
    }
    Ok(records)
}

/// Asserts that `records` are records `0..count` with their payloads, timestamps never
/// decreasing.
pub fn assert_complete(records: &[Read], count: u64) {
    assert_eq!(records.len() as u64, count, "records read back");
    let mut last = 0;
    for (expected, (index, timestamp, bytes)) in (0..).zip(records) {
        assert_eq!(*index, expected, "indices are consecutive from 0");
        assert_eq!(bytes, &payload(expected), "payload of record {expected}");
        assert!(*timestamp >= last, "timestamps never decrease");
        last = *timestamp;
    }
}

/// The journal files in `dir`, by name.
pub fn journal_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read the journal directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "shj"))
        .collect();
    files.sort();
    files
}
