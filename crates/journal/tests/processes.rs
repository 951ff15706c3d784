//! The journal across real processes: tailer processes following a live appender process,
//! appenders killed (SIGKILL) at the crash points of an append and of a roll and the journal
//! recovered after them, and the appender role refused to a second process while the first
//! lives and taken over once it is dead.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{assert_complete, config, journal_files, payload, read_all};
use shmlane_journal::{AppenderError, Journal, TailFrom};
use shmlane_notify::Blocking;
use shmlane_segment::crash::CRASH_AT_ENV;
use shmlane_testkit::{
    EXIT_FAILED, EXIT_ORDER, arg_u64, child_spec, exit_child, fail, report, sleep_until_killed,
    spawn_child, spawn_child_with_env, split_spec,
};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Small files, so that every test crosses several rolls.
const ROLL: u64 = 8192;

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("append", [dir, count]) => child_append(Path::new(dir), arg_u64(count)),
        ("tail", [dir, count]) => child_tail(Path::new(dir), arg_u64(count)),
        ("hold", [dir, count]) => {
            let journal = open(Path::new(dir));
            let mut appender = journal.appender().unwrap_or_else(|e| fail(EXIT_FAILED, e));
            for index in 0..arg_u64(count) {
                appender.append(&payload(index)).unwrap_or_else(|e| fail(EXIT_FAILED, e));
            }
            report("holding", 1);
            sleep_until_killed();
        }
        _ => fail(EXIT_FAILED, format!("unknown role {spec}")),
    }
    exit_child()
}

fn open(dir: &Path) -> Journal {
    Journal::open(dir, config(ROLL)).unwrap_or_else(|e| fail(EXIT_FAILED, e))
}

/// Appends records `0..count`, pausing now and then so that the tailers catch up and sleep.
fn child_append(dir: &Path, count: u64) {
    let journal = open(dir);
    let mut appender = journal.appender().unwrap_or_else(|e| fail(EXIT_FAILED, e));
    let first = appender.next_index();
    for index in first..first + count {
        let appended = appender.append(&payload(index)).unwrap_or_else(|e| fail(EXIT_FAILED, e));
        if appended != index {
            fail(EXIT_ORDER, format!("appended {index} as {appended}"));
        }
        if index % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    report("appended", count);
}

/// Follows the journal with a blocking wait until it has read `count` records, each in order
/// with its payload.
fn child_tail(dir: &Path, count: u64) {
    let journal = open(dir);
    let mut tailer = journal.tailer(TailFrom::Start).unwrap_or_else(|e| fail(EXIT_FAILED, e));
    report("ready", 1);
    let mut strategy = Blocking::new();
    for expected in 0..count {
        let record = match tailer.next_with(&mut strategy, Some(TIMEOUT)) {
            Ok(Some(record)) => record,
            Ok(None) => fail(EXIT_FAILED, format!("timed out waiting for record {expected}")),
            Err(e) => fail(EXIT_FAILED, e),
        };
        if record.index() != expected || record.payload() != payload(expected) {
            fail(EXIT_ORDER, format!("expected record {expected}, read {}", record.index()));
        }
    }
    report("read", count);
}

#[test]
fn two_tailer_processes_follow_a_live_appender_process() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path(), config(ROLL)).unwrap());
    let path = dir.path().to_str().unwrap();
    let count = 3000;
    let mut tailers: Vec<_> =
        (0..2).map(|_| spawn_child("tail", &[path, &count.to_string()])).collect();
    for tailer in &mut tailers {
        assert_eq!(tailer.report_u64("ready", TIMEOUT), 1);
    }
    let mut appender = spawn_child("append", &[path, &count.to_string()]);
    assert_eq!(appender.report_u64("appended", TIMEOUT), count);
    appender.expect_success(TIMEOUT);
    for tailer in &mut tailers {
        assert_eq!(tailer.report_u64("read", TIMEOUT), count, "every record, in order");
        tailer.expect_success(TIMEOUT);
    }
    assert!(journal_files(dir.path()).len() > 5, "the tailers crossed several rolls");
}

/// Kills an appender process at `point` (`NAME:N`) and takes the journal over.
fn kill_appender_at(point: &str) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path(), config(ROLL)).unwrap());
    let path = dir.path().to_str().unwrap();
    let name = point.split(':').next().unwrap();
    let mut child = spawn_child_with_env("append", &[path, "100000"], &[(CRASH_AT_ENV, point)]);
    child.expect_crash(name, TIMEOUT);
    // The killed child's presence file in /dev/shm; a missing one is proof of death too.
    let _ = shmlane_segment::presence::remove_dead();
    let journal = Journal::open(dir.path(), config(ROLL)).unwrap();
    (dir, journal)
}

#[test]
fn an_appender_killed_before_publishing_loses_only_the_record_it_was_writing() {
    let (_dir, journal) = kill_appender_at("journal.append.before_publish:150");
    let mut appender = journal.appender().unwrap();
    let recovery = appender.recovery().clone();
    assert!(recovery.taken_over.is_some(), "the dead appender's role was taken over");
    assert_eq!(recovery.torn.len(), 1, "{recovery:?}");
    assert_eq!(recovery.torn[0].index, 149, "the record being written is removed");
    assert_eq!(appender.next_index(), 149);
    assert_complete(&read_all(&journal).unwrap(), 149);
    assert_eq!(appender.append(&payload(149)).unwrap(), 149, "appending continues");
    assert_eq!(appender.append(&payload(150)).unwrap(), 150);
    assert_complete(&read_all(&journal).unwrap(), 151);
}

#[test]
fn an_appender_killed_right_after_publishing_keeps_the_record() {
    let (_dir, journal) = kill_appender_at("journal.append.after_publish:150");
    let mut appender = journal.appender().unwrap();
    assert!(appender.recovery().torn.is_empty(), "{:?}", appender.recovery());
    assert_eq!(appender.next_index(), 150, "record 149 was published");
    assert_complete(&read_all(&journal).unwrap(), 150);
    assert_eq!(appender.append(&payload(150)).unwrap(), 150);
    assert_complete(&read_all(&journal).unwrap(), 151);
}

#[test]
fn an_appender_killed_between_publishing_a_record_and_its_index_entry_has_the_entry_rewritten() {
    // Which records get an entry depends on where the files roll: found in a dry run.
    let dry = tempfile::tempdir().unwrap();
    let journal = Journal::open(dry.path(), config(ROLL)).unwrap();
    let mut appender = journal.appender().unwrap();
    for index in 0..200 {
        appender.append(&payload(index)).unwrap();
    }
    let entry = |journal: &Journal, index| {
        journal.tailer(TailFrom::Index(index)).unwrap().seek_report().entry
    };
    let indexed = (100..200).find(|&index| entry(&journal, index) == Some(index)).unwrap();
    drop((appender, journal));

    // Killed right after publishing that record: its entry is not written.
    let (dir, journal) = kill_appender_at(&format!("journal.append.after_publish:{}", indexed + 1));
    let before = entry(&journal, indexed);
    assert!(before.is_none_or(|from| from < indexed), "no entry yet: {before:?}");
    let mut appender = journal.appender().unwrap();
    assert!(appender.recovery().torn.is_empty(), "{:?}", appender.recovery());
    assert_eq!(appender.recovery().index_repaired, 1, "{:?}", appender.recovery());
    assert_eq!(entry(&journal, indexed), Some(indexed), "recovery wrote the entry");
    assert_eq!(appender.append(&payload(indexed + 1)).unwrap(), indexed + 1);
    assert_complete(&read_all(&journal).unwrap(), indexed + 2);
    assert!(Journal::inspect(dir.path()).unwrap().is_healthy());
}

#[test]
fn an_appender_killed_while_rolling_leaves_a_journal_that_reads_across_the_roll() {
    let (dir, journal) = kill_appender_at("journal.roll.before_seal:2");
    assert_eq!(journal_files(dir.path()).len(), 3, "the third file was made, the second unsealed");
    // A tailer started before recovery waits at the unsealed end of the second file...
    let mut early = journal.tailer(TailFrom::Start).unwrap();
    let mut before = 0;
    while early.next().unwrap().is_some() {
        before += 1;
    }
    let mut appender = journal.appender().unwrap();
    assert!(appender.recovery().sealed_previous, "{:?}", appender.recovery());
    assert!(appender.recovery().torn.is_empty());
    let next = appender.next_index();
    assert_eq!(before, next, "every published record was readable before recovery");
    assert_eq!(appender.append(&payload(next)).unwrap(), next);
    // ...and crosses into the third file once recovery sealed the second.
    let record = early.next_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
    assert_eq!(record.map(|r| r.index()), Some(next));
    assert_complete(&read_all(&journal).unwrap(), next + 1);
}

#[test]
fn a_second_appender_process_is_refused_while_the_first_lives_and_takes_over_after_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), config(ROLL)).unwrap();
    let path = dir.path().to_str().unwrap();
    let mut holder = spawn_child("hold", &[path, "10"]);
    assert_eq!(holder.report_u64("holding", TIMEOUT), 1);
    let owner = match journal.appender() {
        Err(AppenderError::Taken(owner)) => owner,
        other => panic!("a live appender's role was not refused: {other:?}"),
    };
    assert_eq!(owner.pid(), Some(holder.pid()), "the refusal names the live appender");
    let refused = spawn_child("append", &[path, "1"]).wait(TIMEOUT);
    assert_eq!(refused.code(), Some(EXIT_FAILED), "another process is refused too");
    holder.kill_while_running();
    let mut appender = journal.appender().unwrap();
    assert_eq!(appender.recovery().taken_over, Some(owner));
    let _ = shmlane_segment::presence::remove_dead();
    assert_eq!(appender.append(&payload(10)).unwrap(), 10);
    assert_complete(&read_all(&journal).unwrap(), 11);
}
