//! The record publish protocol (`publish.rs`) compiled a second time over loom's atomics, for
//! the models in `loom-tests/journal_publish.rs` (feature `loom`), with a heap file and a heap
//! directory in place of the mapped files. The file is the one the appender, the tailers and
//! recovery run on the mapping, minus what `on_disk!` wraps (the crash points), so a change to
//! it is a change to what loom checks; the rest of the crate, and its public API, are the same
//! with or without the feature.
//!
//! [`HeapFile`] keeps, for every 8-byte word of a file past its header, a loom `AtomicU64`
//! (what [`Memory::word`](publish::Memory::word) hands out: state words) and a loom
//! `UnsafeCell` of 8 bytes (what `read` and `write` copy: header fields and payload). A
//! payload read that is not ordered after its write by the protocol's Release/Acquire pair is
//! then a causality violation loom reports, whatever the bytes read. The two views of a word
//! are separate here, unlike in a file: the protocol never reads or writes one word both ways
//! (recovery's zeroing does, but it runs only with the appender role held, not modelled).
//!
//! [`HeapDir`] holds the files by sequence number, each slot a loom `UnsafeCell` written once
//! when the appender creates the file: the model gives the file system no ordering of its own,
//! so a tailer that opens the next file after an end marker is ordered after its creation only
//! by the marker's Release store, which is what the protocol promises.

#![allow(unsafe_code)]

use std::sync::Arc;

use loom::cell::UnsafeCell;

use crate::format::{self, END_RESERVE};
pub use crate::format::{
    FILE_HEADER_SIZE, INDEX_ENTRY_SIZE, IndexEntry, RECORD_HEADER_SIZE, RecordHeader, Slot,
};

/// Drops the on-disk items (the crash points) from this instance (see the crate root).
macro_rules! on_disk {
    ($($item:tt)*) => {};
}

/// loom's atomics, where the std build has `crate::sync`.
mod sync {
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
}

// The second instance is the point (see above): clippy's duplicate_mod warns against exactly it.
#[allow(clippy::duplicate_mod)]
#[path = "publish.rs"]
pub mod publish;

use publish::Memory;
use sync::AtomicU64;

/// Bytes a record of `len` payload bytes takes in a file, header and padding included.
pub fn extent(len: u32) -> u64 {
    format::extent(len)
}

/// One 8-byte word of a [`HeapFile`]: its atomic view and its plain bytes (see the module docs).
#[derive(Debug)]
struct Word {
    atomic: AtomicU64,
    bytes: UnsafeCell<[u8; 8]>,
}

/// A journal file on the heap, from the end of its (absent) header to its end: records, then
/// its index region (if it has one).
#[derive(Debug)]
pub struct HeapFile {
    first_index: u64,
    words: Box<[Word]>,
    /// Slots of the index region at the end.
    entries: u64,
}

// SAFETY: the words' cells are only touched through loom's `with`/`with_mut`, which check every
// access for a race (that is the model's point); the atomics are `Sync` themselves.
unsafe impl Sync for HeapFile {}
// SAFETY: as above; nothing in a `HeapFile` is tied to the thread that made it.
unsafe impl Send for HeapFile {}

impl HeapFile {
    /// A zeroed file whose first record gets `first_index`, with room for `records` records of
    /// `len` bytes and the end marker.
    pub fn new(first_index: u64, records: u64, len: u32) -> HeapFile {
        HeapFile::with_index(first_index, records, len, 0)
    }

    /// As [`new`](Self::new), followed by an index region of `entries` slots.
    pub fn with_index(first_index: u64, records: u64, len: u32, entries: u64) -> HeapFile {
        let bytes = records * extent(len) + END_RESERVE + entries * INDEX_ENTRY_SIZE;
        let words = (0..bytes / 8)
            .map(|_| Word { atomic: AtomicU64::new(0), bytes: UnsafeCell::new([0; 8]) })
            .collect();
        HeapFile { first_index, words, entries }
    }

    /// Where the records end and the index region starts (the size without an index).
    pub fn records_end(&self) -> u64 {
        self.size() - self.entries * INDEX_ENTRY_SIZE
    }

    /// The offset of index slot `slot`.
    pub fn entry_offset(&self, slot: u64) -> u64 {
        format::entry_offset(self.records_end(), slot)
    }

    /// The index of the file's first record.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The file's size in bytes, as its header would say.
    pub fn size(&self) -> u64 {
        FILE_HEADER_SIZE + self.words.len() as u64 * 8
    }

    /// The words holding `len` bytes at `offset`, with the offset into the first of them.
    fn span(&self, offset: u64, len: usize) -> Option<(&[Word], usize)> {
        let start = offset.checked_sub(FILE_HEADER_SIZE)?;
        let end = start.checked_add(len as u64)?;
        let words = self.words.get((start / 8) as usize..end.div_ceil(8) as usize)?;
        Some((words, (start % 8) as usize))
    }
}

impl Memory for HeapFile {
    fn word(&self, offset: u64) -> Option<&AtomicU64> {
        let (words, skip) = self.span(offset, 8)?;
        (skip == 0).then(|| &words[0].atomic)
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Some((words, mut skip)) = self.span(offset, buf.len()) else { return false };
        let mut done = 0;
        for word in words {
            // SAFETY: loom checks that no write to this cell races with this read.
            let bytes = word.bytes.with(|bytes| unsafe { *bytes });
            let n = (8 - skip).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
            (done, skip) = (done + n, 0);
        }
        true
    }

    fn write(&self, offset: u64, data: &[u8]) -> bool {
        let Some((words, mut skip)) = self.span(offset, data.len()) else { return false };
        let mut done = 0;
        for word in words {
            let n = (8 - skip).min(data.len() - done);
            // SAFETY: loom checks that no other access to this cell races with this write.
            word.bytes.with_mut(|bytes| unsafe {
                (&mut *bytes)[skip..skip + n].copy_from_slice(&data[done..done + n]);
            });
            (done, skip) = (done + n, 0);
        }
        true
    }
}

/// A journal directory on the heap: file `seq` is created once by the appender and opened by
/// tailers (see the module docs).
#[derive(Debug)]
pub struct HeapDir {
    files: Box<[UnsafeCell<Option<Arc<HeapFile>>>]>,
}

// SAFETY: as for `HeapFile`: every access to a slot goes through loom's checked cell API.
unsafe impl Sync for HeapDir {}
// SAFETY: as above.
unsafe impl Send for HeapDir {}

impl HeapDir {
    /// A directory with room for files `0..files`, none created.
    pub fn new(files: usize) -> HeapDir {
        HeapDir { files: (0..files).map(|_| UnsafeCell::new(None)).collect() }
    }

    /// Creates file `seq` (as the appender's `JournalFile::create` does) and returns it.
    pub fn create(&self, seq: u64, file: HeapFile) -> Arc<HeapFile> {
        let file = Arc::new(file);
        let slot = &self.files[seq as usize];
        // SAFETY: loom checks that no open of this file races with its creation.
        slot.with_mut(|slot| unsafe { *slot = Some(file.clone()) });
        file
    }

    /// Opens file `seq`: `None` if it does not exist (yet).
    pub fn open(&self, seq: u64) -> Option<Arc<HeapFile>> {
        let slot = self.files.get(seq as usize)?;
        // SAFETY: loom checks that no creation of this file races with this read.
        slot.with(|slot| unsafe { (*slot).clone() })
    }
}
