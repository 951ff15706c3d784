//! The sparse index: seeks by index and by time over many files land on the exact record
//! from an index entry, reading fewer records than the stride; a damaged entry is refused
//! (the seek still lands right, from the file's start) and inspect reports it; recovery
//! rewrites a missing entry and drops the entries of a torn tail; a version 1 file (no
//! index) is still read; and index bytes overwritten at random never make a seek hand out a
//! wrong record.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{Read, STRIDE, assert_complete, config, journal_files, payload, read_all};
use proptest::prelude::*;
use shmlane_journal::{
    FILE_HEADER_SIZE, INDEX_ENTRY_SIZE, Journal, JournalConfig, ProblemKind, RECORD_HEADER_SIZE,
    TailFrom,
};

const ROLL: u64 = 4096;
const RECORDS: u64 = 400;

/// Where the index region of a file of `ROLL` bytes with stride `STRIDE` starts (the crate
/// docs' formula, restated).
fn index_start() -> u64 {
    let capacity = (ROLL - FILE_HEADER_SIZE - 8) / (RECORD_HEADER_SIZE * u64::from(STRIDE));
    ROLL - capacity * INDEX_ENTRY_SIZE
}

/// The offset of index slot `slot` in a file.
fn slot_offset(slot: u64) -> u64 {
    index_start() + slot * INDEX_ENTRY_SIZE
}

/// A journal of `RECORDS` records of `payload(index)` over many files.
fn write_journal(dir: &Path) -> Journal {
    let journal = Journal::open(dir, config(ROLL)).unwrap();
    let mut appender = journal.appender().unwrap();
    for index in 0..RECORDS {
        appender.append(&payload(index)).unwrap();
    }
    journal
}

/// The first index of each file, read from the headers (offset 24).
fn first_indices(dir: &Path) -> Vec<(PathBuf, u64)> {
    journal_files(dir)
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            let first = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
            (path, first)
        })
        .collect()
}

/// Asserts that every seek, by index and by time, hands out exactly the record it should:
/// the record of the index, or the first stamped at or after the time; with a `sound` index,
/// after reading at most `STRIDE` records. Returns the seek reports of the index seeks.
fn assert_seeks_land(
    journal: &Journal,
    records: &[Read],
    sound: bool,
) -> Vec<shmlane_journal::SeekReport> {
    let mut reports = Vec::new();
    for (target, time, bytes) in records {
        let mut tailer = journal.tailer(TailFrom::Index(*target)).unwrap();
        let record = tailer.next().unwrap().expect("the record of the index");
        assert_eq!((record.index(), record.payload()), (*target, &bytes[..]));
        reports.push(tailer.seek_report());

        let first_at_time = records.iter().find(|r| r.1 >= *time).unwrap();
        let mut tailer = journal.tailer(TailFrom::Time(*time)).unwrap();
        let record = tailer.next().unwrap().expect("a record at the time");
        assert_eq!(record.index(), first_at_time.0, "the first record stamped at or after it");
        let report = tailer.seek_report();
        assert!(!sound || report.skipped <= u64::from(STRIDE), "a time seek read {report:?}");
    }
    reports
}

#[test]
fn seeks_by_index_and_time_land_on_the_exact_record_from_an_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let journal = write_journal(dir.path());
    let records = read_all(&journal).unwrap();
    assert_complete(&records, RECORDS);
    let files = first_indices(dir.path());
    assert!(files.len() >= 10, "many files: {}", files.len());

    let reports = assert_seeks_land(&journal, &records, true);
    let mut from_entries = 0;
    for (target, report) in (0..).zip(&reports) {
        let (seq, first) = files.iter().enumerate().rev().find(|(_, f)| f.1 <= target).unwrap();
        assert_eq!(report.file_seq, seq as u64, "the file holding record {target}");
        assert_eq!(report.index_fault, None);
        let number = target - first.1;
        // The last indexed record at or before the target: at most `STRIDE - 1` before it.
        let entry = (number >= u64::from(STRIDE)).then(|| target - number % u64::from(STRIDE));
        assert_eq!(report.entry, entry, "record {target}");
        assert_eq!(report.skipped, number % u64::from(STRIDE), "record {target}");
        from_entries += u64::from(entry.is_some());
    }
    assert!(from_entries > RECORDS / 2, "most seeks start from an entry: {from_entries}");
    let inspection = Journal::inspect(dir.path()).unwrap();
    assert!(inspection.is_healthy(), "{:?}", inspection.problems);
    let entries: u64 = inspection.files.iter().map(|f| f.index_entries).sum();
    let expected: u64 =
        inspection.files.iter().map(|f| f.records.saturating_sub(1) / u64::from(STRIDE)).sum();
    assert_eq!(entries, expected, "an entry for every stride-th record of each file");
}

#[test]
fn a_seek_past_the_end_waits_at_the_last_entry_for_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config(1 << 20)).unwrap();
    let mut appender = journal.appender().unwrap();
    for index in 0..10 {
        appender.append(&payload(index)).unwrap();
    }
    let mut tailer = journal.tailer(TailFrom::Index(13)).unwrap();
    assert!(tailer.next().unwrap().is_none());
    assert_eq!(tailer.seek_report().entry, Some(8), "from the last entry");
    for index in 10..14 {
        appender.append(&payload(index)).unwrap();
    }
    assert_eq!(tailer.next().unwrap().map(|r| r.index()), Some(13));
    let mut tailer = journal.tailer(TailFrom::Time(u64::MAX)).unwrap();
    assert!(tailer.next().unwrap().is_none(), "nothing stamped that late");
    assert_eq!(tailer.seek_report().entry, Some(12));
}

/// One way to damage index entry `slot` of a file, given the file's bytes.
fn damages(bytes: &[u8], slot: u64) -> Vec<(&'static str, u64, Vec<u8>)> {
    let at = slot_offset(slot);
    let word = |offset: u64| u64::from_le_bytes(bytes[offset as usize..][..8].try_into().unwrap());
    let (index, time, offset) = (word(at), word(at + 8), word(at + 16));
    // The entry before: a true entry, in the wrong slot.
    let before = slot_offset(slot - 1);
    vec![
        ("timestamp", at + 8, (time + 1).to_le_bytes().to_vec()),
        ("index", at, (index + 1).to_le_bytes().to_vec()),
        ("offset", at + 16, (offset + 8).to_le_bytes().to_vec()),
        ("another record's entry", at, bytes[before as usize..][..24].to_vec()),
        ("offset past the records", at + 16, (ROLL - 8).to_le_bytes().to_vec()),
        ("garbage", at + 3, vec![0xA5; 13]),
        ("time far past", at + 8, u64::MAX.to_le_bytes().to_vec()),
    ]
}

#[test]
fn a_damaged_index_entry_is_refused_and_the_seek_still_lands_right() {
    let dir = tempfile::tempdir().unwrap();
    let journal = write_journal(dir.path());
    let records = read_all(&journal).unwrap();
    let (path, first) = first_indices(dir.path())[3].clone();
    let original = fs::read(&path).unwrap();
    let slot = 2;
    let indexed = first + (slot + 1) * u64::from(STRIDE);
    for (what, offset, bytes) in damages(&original, slot) {
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&bytes, offset).unwrap();

        // A seek that picks the damaged entry refuses it and reads the file from its start.
        for from in [TailFrom::Index(indexed + 1), TailFrom::Time(records[indexed as usize + 1].1)]
        {
            let mut tailer = journal.tailer(from).unwrap();
            let record = tailer.next().unwrap().expect("a record");
            if let TailFrom::Index(target) = from {
                assert_eq!(record.index(), target, "{what}");
            }
            assert_eq!(record.payload(), &payload(record.index())[..], "{what}");
            let report = tailer.seek_report();
            if report.index_fault.is_some() {
                assert_eq!(report.entry, None, "{what}");
            } else {
                // A time seek the damage misled to an earlier entry: still the right record.
                assert!(report.entry.is_some_and(|e| e < indexed), "{what}: {report:?}");
            }
        }
        let mut tailer = journal.tailer(TailFrom::Index(indexed + 1)).unwrap();
        tailer.next().unwrap();
        let fault = tailer.seek_report().index_fault;
        assert!(fault.is_some(), "{what}: the damage was not detected");
        assert_seeks_land(&journal, &records, false);

        let inspection = Journal::inspect(dir.path()).unwrap();
        let kinds: Vec<_> = inspection.problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [ProblemKind::BadIndex], "{what}: {:?}", inspection.problems);
        assert_eq!(inspection.problems[0].index, Some(indexed), "{what}");
        assert_eq!(inspection.records, RECORDS, "{what}");
        file.write_all_at(&original[offset as usize..][..bytes.len()], offset).unwrap();
    }
    assert!(Journal::inspect(dir.path()).unwrap().is_healthy());
}

/// Records of 24 bytes in one file, so that record `i` lies at `256 + 56 i`.
fn fixed(index: u64) -> [u8; 24] {
    [index as u8; 24]
}

fn one_file_journal(dir: &Path, records: u64) -> Journal {
    let journal = Journal::open(dir, config(1 << 20)).unwrap();
    let mut appender = journal.appender().unwrap();
    for index in 0..records {
        appender.append(&fixed(index)).unwrap();
    }
    journal
}

#[test]
fn recovery_rewrites_a_missing_entry() {
    let dir = tempfile::tempdir().unwrap();
    let journal = one_file_journal(dir.path(), 41);
    let path = journal_files(dir.path())[0].clone();
    // The entry of record 40 (slot 9), as if its appender died between publishing the record
    // and writing the entry.
    let index_start = {
        let capacity = ((1 << 20) - FILE_HEADER_SIZE - 8) / (32 * u64::from(STRIDE));
        (1 << 20) - capacity * INDEX_ENTRY_SIZE
    };
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0; 24], index_start + 9 * INDEX_ENTRY_SIZE).unwrap();
    let mut tailer = journal.tailer(TailFrom::Index(40)).unwrap();
    assert_eq!(tailer.next().unwrap().map(|r| r.index()), Some(40));
    assert_eq!(tailer.seek_report().entry, Some(36), "the entry before");
    let inspection = Journal::inspect(dir.path()).unwrap();
    assert_eq!(inspection.problems.len(), 1, "{:?}", inspection.problems);
    assert_eq!(inspection.problems[0].kind, ProblemKind::BadIndex);

    let appender = journal.appender().unwrap();
    assert_eq!(appender.recovery().index_repaired, 1, "{:?}", appender.recovery());
    assert!(appender.recovery().torn.is_empty());
    let mut tailer = journal.tailer(TailFrom::Index(40)).unwrap();
    assert_eq!(tailer.next().unwrap().map(|r| r.index()), Some(40));
    assert_eq!(tailer.seek_report().entry, Some(40), "the entry rewritten");
    assert!(Journal::inspect(dir.path()).unwrap().is_healthy());
}

#[test]
fn recovery_drops_the_entries_of_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let journal = one_file_journal(dir.path(), 41);
    let path = journal_files(dir.path())[0].clone();
    // Record 30's payload damaged: recovery removes records 30 to 40, and with them the
    // entries of 32, 36 and 40.
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xFF], 256 + 56 * 30 + 32).unwrap();
    let mut appender = journal.appender().unwrap();
    let recovery = appender.recovery().clone();
    assert_eq!(recovery.torn.len(), 1, "{recovery:?}");
    assert_eq!(recovery.torn[0].index, 30);
    assert_eq!(recovery.index_repaired, 3, "{recovery:?}");
    assert!(Journal::inspect(dir.path()).unwrap().is_healthy());
    let mut tailer = journal.tailer(TailFrom::Index(36)).unwrap();
    assert!(tailer.next().unwrap().is_none(), "record 36 is gone");
    assert_eq!(tailer.seek_report().entry, Some(28), "from the last entry kept");

    // Appended again, records 30 to 44 get new entries, which seeks use.
    for index in 30..45 {
        assert_eq!(appender.append(&fixed(index)).unwrap(), index);
    }
    assert_eq!(tailer.next().unwrap().map(|r| r.index()), Some(36));
    for (target, entry) in [(36, 36), (41, 40), (44, 44)] {
        let mut tailer = journal.tailer(TailFrom::Index(target)).unwrap();
        let record = tailer.next().unwrap().unwrap();
        assert_eq!((record.index(), record.payload()), (target, &fixed(target)[..]));
        assert_eq!(tailer.seek_report().entry, Some(entry));
    }
    assert!(Journal::inspect(dir.path()).unwrap().is_healthy());
}

#[test]
fn a_version_1_journal_without_an_index_is_read_and_continued() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = JournalConfig { index_stride: 0, ..config(ROLL) };
    let journal = Journal::open(dir.path(), v1).unwrap();
    let mut appender = journal.appender().unwrap();
    for index in 0..100 {
        appender.append(&payload(index)).unwrap();
    }
    drop((appender, journal));
    // The headers rewritten as version 1 wrote them: version 1, bytes 132.. reserved, the
    // checksum over bytes 0..128.
    for path in journal_files(dir.path()) {
        let mut header = [0u8; 256];
        let file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        file.read_exact_at(&mut header, 0).unwrap();
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        header[132..].fill(0);
        let checksum = crc32c::crc32c(&header[..128]);
        header[128..132].copy_from_slice(&checksum.to_le_bytes());
        file.write_all_at(&header, 0).unwrap();
    }
    let journal = Journal::open(dir.path(), config(ROLL)).unwrap();
    let records = read_all(&journal).unwrap();
    assert_complete(&records, 100);
    for report in assert_seeks_land(&journal, &records, false) {
        assert_eq!(report.entry, None, "a version 1 file has no index");
    }
    let mut appender = journal.appender().unwrap();
    let old_files = journal_files(dir.path()).len();
    for index in 100..300 {
        appender.append(&payload(index)).unwrap();
    }
    let records = read_all(&journal).unwrap();
    assert_complete(&records, 300);
    let reports = assert_seeks_land(&journal, &records, false);
    assert!(reports[..100].iter().all(|r| r.entry.is_none()), "the old files have no index");
    assert!(reports[100..].iter().any(|r| r.entry.is_some()), "the new files have one");
    let inspection = Journal::inspect(dir.path()).unwrap();
    assert!(inspection.is_healthy(), "{:?}", inspection.problems);
    assert!(inspection.files[..old_files].iter().all(|f| f.index_stride == 0));
    assert!(inspection.files[old_files..].iter().all(|f| f.index_stride == STRIDE));
}

/// A journal's files, (name, bytes), and its records.
type Template = (Vec<(String, Vec<u8>)>, Vec<Read>);

/// A clean journal of `RECORDS` records, made once.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let journal = write_journal(dir.path());
        let records = read_all(&journal).unwrap();
        let files = journal_files(dir.path())
            .into_iter()
            .map(|path| {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                (name, fs::read(&path).unwrap())
            })
            .collect();
        (files, records)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Index bytes overwritten anywhere (any file, any slot, any field) never make a seek
    /// hand out another record than the right one; recovery then repairs the last two
    /// files' indices, and seeks still land right.
    #[test]
    fn overwritten_index_bytes_never_misdirect_a_seek(
        damages in proptest::collection::vec(
            (0..64usize, 0..(ROLL - index_start()), proptest::collection::vec(any::<u8>(), 1..24)),
            1..6,
        ),
        probes in proptest::collection::vec(0..RECORDS, 24),
    ) {
        let (files, records) = template();
        let dir = tempfile::tempdir().unwrap();
        for (k, (name, bytes)) in files.iter().enumerate() {
            let mut bytes = bytes.clone();
            for (file, offset, data) in &damages {
                if file % files.len() == k {
                    let at = (index_start() + offset) as usize;
                    let end = (at + data.len()).min(bytes.len());
                    bytes[at..end].copy_from_slice(&data[..end - at]);
                }
            }
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let journal = Journal::open(dir.path(), config(ROLL)).unwrap();
        let check = |journal: &Journal| {
            for &target in &probes {
                let mut tailer = journal.tailer(TailFrom::Index(target)).unwrap();
                let record = tailer.next().unwrap().expect("the record");
                assert_eq!((record.index(), record.payload()), (target, &payload(target)[..]));
                let time = records[target as usize].1;
                let expected = records.iter().find(|r| r.1 >= time).unwrap().0;
                let mut tailer = journal.tailer(TailFrom::Time(time)).unwrap();
                assert_eq!(tailer.next().unwrap().map(|r| r.index()), Some(expected));
            }
        };
        check(&journal);
        let _ = Journal::inspect(dir.path()).unwrap();
        let appender = journal.appender().unwrap();
        prop_assert!(appender.recovery().torn.is_empty(), "records were not damaged");
        drop(appender);
        check(&journal);
        assert_complete(&read_all(&journal).unwrap(), RECORDS);
    }
}

#[test]
fn without_prefault_or_index_the_journal_reads_back_the_same() {
    for (index_stride, prefault) in [(0, 0), (STRIDE, 0), (1, 4096), (STRIDE, 1 << 30)] {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig { index_stride, prefault, ..config(8192) };
        let journal = Journal::open(dir.path(), config).unwrap();
        let mut appender = journal.appender().unwrap();
        for index in 0..200 {
            appender.append(&payload(index)).unwrap();
        }
        let records = read_all(&journal).unwrap();
        assert_complete(&records, 200);
        let reports = assert_seeks_land(&journal, &records, index_stride > 0);
        let indexed = reports.iter().any(|r| r.entry.is_some());
        assert_eq!(indexed, index_stride > 0, "stride {index_stride}");
    }
}

#[test]
fn an_index_stride_or_prefault_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        JournalConfig { index_stride: shmlane_journal::MAX_INDEX_STRIDE + 1, ..config(ROLL) },
        JournalConfig { prefault: (1 << 30) + 1, ..config(ROLL) },
    ] {
        let err = Journal::open(dir.path(), bad).unwrap_err();
        assert!(matches!(err, shmlane_journal::OpenError::Config(_)), "{err}");
    }
    let largest = JournalConfig { index_stride: shmlane_journal::MAX_INDEX_STRIDE, ..config(ROLL) };
    assert!(Journal::open(dir.path(), largest).is_ok());
}
