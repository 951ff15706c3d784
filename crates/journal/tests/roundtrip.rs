//! Appending and reading back in one process: order, indices, timestamps, reopening, rolling
//! across files, seeking, reservations, and the appender's exclusivity within a process.

mod common;

use std::time::Duration;

use common::{assert_complete, config, journal_files, payload, read_all};
use shmlane_journal::{
    AppendError, AppenderError, Durability, Journal, JournalConfig, OpenError, RecordType, TailFrom,
};
use shmlane_notify::BusySpin;

#[test]
fn records_appended_are_read_back_in_order_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        let mut appender = journal.appender().unwrap();
        for index in 0..1000 {
            assert_eq!(appender.append(&payload(index)).unwrap(), index);
        }
    }
    let journal = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    assert_complete(&read_all(&journal).unwrap(), 1000);
    let mut appender = journal.appender().unwrap();
    assert_eq!(appender.recovery().taken_over, None, "the first appender closed cleanly");
    assert!(appender.recovery().torn.is_empty());
    assert_eq!(appender.append(&payload(1000)).unwrap(), 1000, "appending continues");
    assert_complete(&read_all(&journal).unwrap(), 1001);
}

#[test]
fn records_roll_across_small_files_and_a_tailer_follows_the_roll() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config(4096)).unwrap();
    let mut appender = journal.appender().unwrap();
    let mut tailer = journal.tailer(TailFrom::Start).unwrap();
    let mut strategy = BusySpin;
    for index in 0..500 {
        appender.append(&payload(index)).unwrap();
        // The tailer keeps up, crossing each end marker as the appender rolls.
        let record = tailer.next_with(&mut strategy, Some(Duration::from_secs(5))).unwrap();
        let record = record.expect("the record just appended");
        assert_eq!((record.index(), record.payload()), (index, &payload(index)[..]));
    }
    assert!(tailer.next().unwrap().is_none());
    let files = journal_files(dir.path());
    assert!(files.len() >= 10, "500 records of up to 250 bytes fill many 4 KiB files: {files:?}");
    assert_eq!(appender.file_seq() as usize, files.len() - 1);
    assert_complete(&read_all(&journal).unwrap(), 500);
}

#[test]
fn seeking_by_index_and_time_lands_on_the_right_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config(4096)).unwrap();
    let mut appender = journal.appender().unwrap();
    for index in 0..300 {
        appender.append(&payload(index)).unwrap();
    }
    let records = read_all(&journal).unwrap();
    for target in [0, 1, 57, 150, 299] {
        let mut tailer = journal.tailer(TailFrom::Index(target)).unwrap();
        let record = tailer.next().unwrap().expect("a record at the index");
        assert_eq!(record.index(), target);
        assert_eq!(record.payload(), &payload(target)[..]);

        let time = records[target as usize].1;
        let mut tailer = journal.tailer(TailFrom::Time(time)).unwrap();
        let record = tailer.next().unwrap().expect("a record at the time");
        let first_at_time = records.iter().position(|r| r.1 >= time).unwrap() as u64;
        assert_eq!(record.index(), first_at_time, "the first record stamped at or after it");
    }
    // Past the end: the tailer waits for the index to be written.
    let mut tailer = journal.tailer(TailFrom::Index(302)).unwrap();
    assert!(tailer.next().unwrap().is_none());
    assert_eq!(tailer.next_index(), 302);
    for index in 300..303 {
        appender.append(&payload(index)).unwrap();
    }
    assert_eq!(tailer.next().unwrap().map(|r| r.index()), Some(302));
}

#[test]
fn a_reservation_is_written_in_place_and_an_abandoned_one_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let mut appender = journal.appender().unwrap();
    {
        let mut abandoned = appender.reserve(100).unwrap();
        abandoned.as_mut_slice().fill(0xAB);
    }
    let mut reservation = appender.reserve(3).unwrap();
    assert_eq!(reservation.as_mut_slice(), &[0, 0, 0], "reserved bytes start zeroed");
    reservation.as_mut_slice().copy_from_slice(b"abc");
    assert_eq!(reservation.commit().unwrap(), 0);
    let records = read_all(&journal).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].2, b"abc");
    // The abandoned record's bytes are gone: a new appender finds nothing torn after it.
    drop(appender);
    let appender = journal.appender().unwrap();
    assert!(appender.recovery().torn.is_empty(), "{:?}", appender.recovery());
    assert_eq!(appender.next_index(), 1);
}

#[test]
fn a_record_larger_than_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config(4096)).unwrap();
    let mut appender = journal.appender().unwrap();
    let max = appender.max_record_len() as usize;
    assert!(matches!(appender.append(&vec![1; max + 1]), Err(AppendError::TooLarge { .. })));
    assert_eq!(appender.append(&vec![1; max]).unwrap(), 0, "the largest record fits");
    assert_eq!(appender.append(&[2]).unwrap(), 1, "and the next goes into a new file");
    assert_eq!(appender.file_seq(), 1);
}

#[test]
fn every_durability_policy_appends_and_reads_back() {
    for durability in [
        Durability::PerRecord,
        Durability::EveryRecords(7),
        Durability::EveryInterval(Duration::from_millis(1)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), JournalConfig { durability, ..config(8192) });
        let journal = journal.unwrap();
        let mut appender = journal.appender().unwrap();
        for index in 0..60 {
            appender.append(&payload(index)).unwrap();
        }
        appender.flush().unwrap();
        assert_complete(&read_all(&journal).unwrap(), 60);
    }
}

#[test]
fn a_second_appender_in_the_same_process_is_refused_until_the_first_drops() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let other = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let first = journal.appender().unwrap();
    assert!(matches!(other.appender(), Err(AppenderError::Taken(_))));
    drop(first);
    assert_eq!(other.appender().unwrap().recovery().taken_over, None);
}

#[test]
fn a_journal_opened_with_another_record_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ticks = JournalConfig {
        record_type: RecordType::of::<[u64; 2]>("tick", 3),
        ..JournalConfig::default()
    };
    drop(Journal::open(dir.path(), ticks.clone()).unwrap());
    assert!(Journal::open(dir.path(), ticks).is_ok());
    let err = Journal::open(dir.path(), JournalConfig::default()).unwrap_err();
    assert!(matches!(err, OpenError::TypeMismatch { .. }), "{err}");
    let bad = JournalConfig { roll_size: 100, ..JournalConfig::default() };
    assert!(matches!(Journal::open(dir.path(), bad), Err(OpenError::Config(_))));
}
