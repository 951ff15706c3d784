//! loom models of the journal's record publish protocol (`shmlane_journal::model::publish`:
//! the file the appender, the tailers and recovery run on the mapping, compiled over loom's
//! atomics and a heap file whose payload bytes are loom cells). A tailer that copies a payload
//! the protocol has not ordered after its writing is a causality violation loom reports, and
//! every record it accepts has passed the reader's own validation (word unchanged, index,
//! checksum).
//!
//! The writer and the reader below are the appender's and the tailer's steps in the same
//! order (`Appender::reserve`/`publish`/`roll`, `Cursor::advance`/`Tailer::take`), each step
//! one call into `publish`.

use std::sync::Arc as FileArc;

use loom::sync::Arc;
use loom::thread;
use shmlane_journal::model::publish;
use shmlane_journal::model::{
    FILE_HEADER_SIZE, HeapDir, HeapFile, RECORD_HEADER_SIZE, RecordHeader, Slot, extent,
};
use shmlane_workspace::model;

/// Payload bytes of every record: not a multiple of 8, so the last payload word is padded.
const LEN: u32 = 12;

/// The payload of record `index`: different for every index and every byte.
fn payload(index: u64) -> [u8; LEN as usize] {
    std::array::from_fn(|at| (index as u8) * 16 + at as u8 + 1)
}

/// The appender's side: its file, the offset of its next record and that record's index.
struct Writer {
    dir: Arc<HeapDir>,
    seq: u64,
    file: FileArc<HeapFile>,
    offset: u64,
    next_index: u64,
}

impl Writer {
    /// Creates file 0 (room for `records` records) in `dir`.
    fn new(dir: Arc<HeapDir>, records: u64) -> Writer {
        let file = dir.create(0, HeapFile::new(0, records, LEN));
        Writer { dir, seq: 0, file, offset: FILE_HEADER_SIZE, next_index: 0 }
    }

    /// Appends record `next_index`: claim, payload, fields, Release publish.
    fn append(&mut self) {
        let index = self.next_index;
        let header: RecordHeader = publish::append(
            &*self.file,
            self.file.size(),
            self.offset,
            index,
            index,
            &payload(index),
        )
        .expect("the record fits");
        assert_eq!(header.index, index);
        self.offset += extent(LEN);
        self.next_index += 1;
    }

    /// Rolls to the next file (room for `records` records): created, then this one sealed.
    fn roll(&mut self, records: u64) {
        let (dir, seq, first_index) = (&self.dir, self.seq + 1, self.next_index);
        let next = publish::roll(&*self.file, self.offset, false, || {
            Ok::<_, ()>(dir.create(seq, HeapFile::new(first_index, records, LEN)))
        })
        .unwrap();
        (self.seq, self.file, self.offset) = (seq, next, FILE_HEADER_SIZE);
    }
}

/// A tailer's side: its file, offset and the index it expects next.
struct Reader {
    dir: Arc<HeapDir>,
    seq: u64,
    file: FileArc<HeapFile>,
    offset: u64,
    next_index: u64,
    buf: Vec<u8>,
    /// `next_index` at every end marker the reader crossed.
    ends: Vec<u64>,
}

impl Reader {
    fn new(dir: Arc<HeapDir>) -> Reader {
        let file = dir.open(0).expect("file 0 is created before the tailer starts");
        Reader {
            dir,
            seq: 0,
            file,
            offset: FILE_HEADER_SIZE,
            next_index: 0,
            buf: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The next record as `(index, payload)`, or `None` if none is published yet: the
    /// Acquire load of its word, then (at `Committed`) the copy and its validation; at an end
    /// marker, on to the next file, which must exist and continue at the next index.
    fn poll(&mut self) -> Option<(u64, Vec<u8>)> {
        loop {
            match publish::slot_at(&*self.file, self.offset).expect("the word is in the file") {
                Slot::Empty | Slot::Writing { .. } => return None,
                Slot::Garbage(word) => panic!("a garbage state word {word:#x}"),
                Slot::End => {
                    let next = self
                        .dir
                        .open(self.seq + 1)
                        .expect("the next file exists once the end marker is seen");
                    assert_eq!(next.first_index(), self.next_index, "the next file continues");
                    self.ends.push(self.next_index);
                    (self.seq, self.file, self.offset) = (self.seq + 1, next, FILE_HEADER_SIZE);
                }
                Slot::Committed { len } => {
                    let size = self.file.size();
                    let header = publish::read_record(
                        &*self.file,
                        size,
                        self.offset,
                        len,
                        self.next_index,
                        &mut self.buf,
                    )
                    .unwrap_or_else(|reason| panic!("a published record is whole: {reason}"));
                    self.offset += extent(len);
                    self.next_index += 1;
                    return Some((header.index, self.buf[RECORD_HEADER_SIZE as usize..].to_vec()));
                }
            }
        }
    }

    /// Polls until `count` records were read, yielding while there is none.
    fn read(&mut self, count: usize) -> Vec<(u64, Vec<u8>)> {
        let mut got = Vec::new();
        while got.len() < count {
            match self.poll() {
                Some(record) => got.push(record),
                None => thread::yield_now(),
            }
        }
        got
    }
}

/// `(index, payload)` of records `0..count`.
fn expected(count: u64) -> Vec<(u64, Vec<u8>)> {
    (0..count).map(|index| (index, payload(index).to_vec())).collect()
}

#[test]
fn a_tailer_racing_an_appender_sees_nothing_or_the_whole_record() {
    model::check(|| {
        let dir = Arc::new(HeapDir::new(1));
        let mut writer = Writer::new(dir.clone(), 1);
        let mut reader = Reader::new(dir);
        let appender = thread::spawn(move || writer.append());
        // Racing the appender: nothing yet, or all of record 0 with a valid checksum.
        let first = reader.poll();
        if let Some(record) = &first {
            assert_eq!(record, &expected(1)[0]);
        }
        appender.join().unwrap();
        // After the appender: the record, once.
        let rest: Vec<_> = reader.poll().into_iter().collect();
        let seen: Vec<_> = first.into_iter().chain(rest).collect();
        assert_eq!(seen, expected(1));
        assert_eq!(reader.poll(), None);
    });
}

#[test]
fn records_are_seen_in_order_each_whole() {
    model::check(|| {
        let dir = Arc::new(HeapDir::new(1));
        let mut writer = Writer::new(dir.clone(), 3);
        let mut reader = Reader::new(dir);
        let appender = thread::spawn(move || {
            for _ in 0..3 {
                writer.append();
            }
        });
        assert_eq!(reader.read(3), expected(3));
        appender.join().unwrap();
        assert_eq!(reader.poll(), None);
    });
}

#[test]
fn the_end_marker_is_seen_after_the_files_last_record_with_the_next_file_there() {
    model::check(|| {
        let dir = Arc::new(HeapDir::new(2));
        let mut writer = Writer::new(dir.clone(), 1);
        let mut reader = Reader::new(dir);
        let appender = thread::spawn(move || {
            writer.append();
            writer.roll(1);
            writer.append();
        });
        // `poll` checks that the next file exists and continues at the next index.
        assert_eq!(reader.read(2), expected(2));
        assert_eq!(reader.ends, [1], "crossed once, right after record 0");
        appender.join().unwrap();
        assert_eq!(reader.poll(), None);
    });
}
