//! `shmlane journal inspect`, run as the built binary on journals these tests wrote with
//! `shmlane_journal`: a healthy one over three files, one with a torn tail and one with a
//! garbage tail (written by hand after the last record), and a missing directory. Inspect
//! must change nothing: the files are compared byte for byte before and after.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use shmlane_journal::{Journal, JournalConfig, RecordType};

/// Files of 4 KiB: a 1000-byte record fills a quarter of one.
const ROLL: u64 = 4096;
/// Records written: three or so per file.
const RECORDS: u64 = 9;
const LEN: usize = 1000;
/// Bytes a record of `LEN` takes: a 32-byte header, the payload padded to 8.
const EXTENT: u64 = 32 + (LEN as u64).next_multiple_of(8);

/// What the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn shmlane(args: &[&str], code: i32) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_shmlane")).args(args).output().unwrap();
    let run = Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_eq!(
        run.code, code,
        "shmlane {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

fn inspect_json(dir: &Path, code: i32) -> Value {
    let run = shmlane(&["journal", "inspect", dir.to_str().unwrap(), "--json"], code);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn record_type() -> RecordType {
    RecordType { name: "test.Blob".into(), size: 0, align: 8, version: 3 }
}

/// A journal of `RECORDS` records of `LEN` bytes over three files; the timestamps of the
/// first and last record, read back with a tailer.
fn write_journal(dir: &Path) -> (u64, u64) {
    let config =
        JournalConfig { roll_size: ROLL, record_type: record_type(), ..JournalConfig::default() };
    let journal = Journal::open(dir, config).unwrap();
    let mut appender = journal.appender().unwrap();
    for index in 0..RECORDS {
        assert_eq!(appender.append(&[index as u8; LEN]).unwrap(), index);
    }
    drop(appender);
    let mut tailer = journal.tailer(shmlane_journal::TailFrom::Start).unwrap();
    let mut stamps = Vec::new();
    while let Some(record) = tailer.next().unwrap() {
        stamps.push(record.timestamp_ns());
    }
    assert_eq!(stamps.len() as u64, RECORDS);
    (stamps[0], stamps[stamps.len() - 1])
}

/// Every file of `dir` with its bytes, by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The last journal file of `dir`.
fn last_file(dir: &Path) -> PathBuf {
    let mut names: Vec<_> = snapshot(dir).into_iter().map(|(name, _)| name).collect();
    names.retain(|name| name.ends_with(".shj"));
    dir.join(names.last().unwrap())
}

#[test]
fn a_healthy_journal_is_reported_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (first_ns, last_ns) = write_journal(dir.path());
    let before = snapshot(dir.path());
    let report = inspect_json(dir.path(), 0);

    assert_eq!(report["healthy"], true, "{report:#}");
    assert_eq!(report["records"], RECORDS);
    assert_eq!(report["index_range"]["first"], 0);
    assert_eq!(report["index_range"]["last"], RECORDS - 1);
    assert_eq!(report["time_range"]["first_ns"], first_ns);
    assert_eq!(report["time_range"]["last_ns"], last_ns);
    assert!(report["time_range"]["first"].as_str().unwrap().ends_with('Z'));
    assert_eq!(report["type"]["name"], "test.Blob");
    assert_eq!(report["type"]["size"], 0);
    assert_eq!(report["type"]["align"], 8);
    assert_eq!(report["type"]["version"], 3);
    assert_eq!(report["appender"]["state"], "free", "the appender was dropped");
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);

    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{files:#?}");
    let mut next_index = 0;
    for (seq, file) in files.iter().enumerate() {
        assert_eq!(file["seq"], seq as u64);
        assert_eq!(file["name"], format!("{seq:08}.shj"));
        assert_eq!(file["size"], ROLL);
        assert_eq!(file["first_index"], next_index);
        assert_eq!(file["ended"], seq + 1 < files.len(), "all but the last are rolled");
        let records = file["records"].as_u64().unwrap();
        assert!(records > 0);
        assert_eq!(file["used"], 256 + records * EXTENT);
        next_index += records;
    }
    assert_eq!(next_index, RECORDS);

    let text = shmlane(&["journal", "inspect", dir.path().to_str().unwrap()], 0).stdout;
    assert!(text.contains(&format!("{RECORDS}, index 0 to {}", RECORDS - 1)), "{text}");
    assert!(text.contains("00000002.shj"), "{text}");
    assert!(text.contains("ended (rolled)"), "{text}");
    assert!(text.contains(&format!("({last_ns} ns)")), "{text}");
    assert_eq!(snapshot(dir.path()), before, "inspect changed the journal");
}

/// Writes `word` as the state word of the slot after the last record, plus a few bytes
/// after it, as a dead appender or a stray writer would leave them.
fn damage_tail(dir: &Path, word: u64) -> (u64, u64) {
    let report = inspect_json(dir, 0);
    let last = report["files"].as_array().unwrap().last().unwrap().clone();
    let offset = last["used"].as_u64().unwrap();
    let index = last["first_index"].as_u64().unwrap() + last["records"].as_u64().unwrap();
    let file = fs::OpenOptions::new().write(true).open(last_file(dir)).unwrap();
    file.write_all_at(&word.to_le_bytes(), offset).unwrap();
    file.write_all_at(&[0xAB; 40], offset + 8).unwrap();
    (offset, index)
}

#[test]
fn a_torn_tail_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path());
    // `WRIT` with a length: a record its appender did not finish.
    let writing = (u64::from(u32::from_le_bytes(*b"WRIT")) << 32) | 40;
    let (offset, index) = damage_tail(dir.path(), writing);
    let before = snapshot(dir.path());

    let report = inspect_json(dir.path(), 4);
    assert_eq!(report["healthy"], false);
    assert_eq!(report["records"], RECORDS, "the complete records are all counted");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0]["kind"], "torn tail");
    assert_eq!(problems[0]["offset"], offset);
    assert_eq!(problems[0]["index"], index);
    assert_eq!(problems[0]["path"], last_file(dir.path()).to_str().unwrap());

    let run = shmlane(&["journal", "inspect", dir.path().to_str().unwrap()], 4);
    assert!(
        run.stdout.contains(&format!(
            "torn tail in {}",
            last_file(dir.path()).file_name().unwrap().to_str().unwrap()
        )),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("1 problem(s)"), "{}", run.stderr);
    assert_eq!(snapshot(dir.path()), before, "inspect changed the journal");
}

#[test]
fn garbage_after_the_last_record_is_a_corrupt_tail() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path());
    let (offset, index) = damage_tail(dir.path(), 0xDEAD_BEEF_0BAD_F00D);
    let before = snapshot(dir.path());

    let report = inspect_json(dir.path(), 4);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0]["kind"], "corrupt tail");
    assert_eq!(problems[0]["offset"], offset);
    assert_eq!(problems[0]["index"], index);
    assert!(problems[0]["reason"].as_str().unwrap().contains("garbage"), "{problems:#?}");
    assert_eq!(report["records"], RECORDS);
    assert_eq!(snapshot(dir.path()), before, "inspect changed the journal");
}

#[test]
fn a_missing_directory_or_an_empty_one_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let run = shmlane(&["journal", "inspect", missing.to_str().unwrap()], 3);
    assert!(run.stderr.contains("no such directory"), "{}", run.stderr);
    assert!(!missing.exists(), "inspect created the directory");
    let run = shmlane(&["journal", "inspect", dir.path().to_str().unwrap(), "--json"], 3);
    assert!(run.stderr.contains("no journal files"), "{}", run.stderr);
    assert_eq!(snapshot(dir.path()).len(), 0, "inspect created files");
}
