//! loom model of the index entry protocol (`shmlane_journal::model::publish`: `write_entry`
//! and `read_entry`, over loom's atomics and a heap file whose payload bytes are loom cells):
//! a reader racing the appender sees slot 0 empty, or an entry whose record is committed,
//! whole and valid, with the entry's index and timestamp. Writing the entry's offset with a
//! Relaxed store instead of Release, or loading it Relaxed instead of Acquire, lets the reader
//! see the offset before the other words, and fails the model (both checked).
//!
//! Run by `cargo test --features loom` from the workspace root.

use std::sync::Arc;

use loom::thread;
use shmlane_journal::model::publish;
use shmlane_journal::model::{
    FILE_HEADER_SIZE, HeapFile, IndexEntry, RECORD_HEADER_SIZE, Slot, extent,
};
use shmlane_workspace::model;

/// Payload bytes of every record: not a multiple of 8.
const LEN: u32 = 12;

/// The payload of record `index`.
fn payload(index: u64) -> [u8; LEN as usize] {
    std::array::from_fn(|at| (index as u8) * 16 + at as u8 + 1)
}

#[test]
fn a_visible_index_entry_names_its_record_committed_and_whole() {
    model::check(|| {
        // Stride 1: slot 0 names the file's record number 1.
        let file = Arc::new(HeapFile::with_index(0, 2, LEN, 1));
        let second = FILE_HEADER_SIZE + extent(LEN);
        let entry = IndexEntry { index: 1, timestamp_ns: 11, offset: second };
        let appender = {
            let file = file.clone();
            thread::spawn(move || {
                let end = file.records_end();
                publish::append(&*file, end, FILE_HEADER_SIZE, 0, 10, &payload(0)).unwrap();
                publish::append(&*file, end, second, 1, 11, &payload(1)).unwrap();
                // As the appender does: right after publishing the record.
                assert!(publish::write_entry(&*file, file.entry_offset(0), entry));
            })
        };
        // A seek: the entry, then the record it names, validated.
        if let Some(seen) = publish::read_entry(&*file, file.entry_offset(0)).unwrap() {
            assert_eq!(seen, entry, "a visible entry is whole");
            let Slot::Committed { len } = publish::slot_at(&*file, seen.offset).unwrap() else {
                panic!("the record of a visible entry is committed");
            };
            let mut buf = Vec::new();
            let header = publish::read_record(
                &*file,
                file.records_end(),
                seen.offset,
                len,
                seen.index,
                &mut buf,
            )
            .unwrap_or_else(|reason| panic!("the record of a visible entry: {reason}"));
            assert_eq!(header.timestamp_ns, seen.timestamp_ns);
            assert_eq!(&buf[RECORD_HEADER_SIZE as usize..], &payload(1));
        }
        appender.join().unwrap();
        assert_eq!(publish::read_entry(&*file, file.entry_offset(0)).unwrap(), Some(entry));
    });
}
