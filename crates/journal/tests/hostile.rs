//! Hostile and corrupt files: bytes of a journal's files (headers and records) overwritten,
//! files truncated, extended or replaced, then the journal opened, tailed, recovered and
//! appended to. Only error values or valid records may come out (every record handed out
//! is one the appender wrote), never a panic, in bounded time.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{config, journal_files, payload};
use proptest::prelude::*;
use shmlane_journal::{FileError, Journal, OpenError, TailError, TailFrom};

const ROLL: u64 = 4096;
const RECORDS: u64 = 60;

/// A clean journal of `RECORDS` records over several files, made once: (file name, bytes).
fn template() -> &'static Vec<(String, Vec<u8>)> {
    static TEMPLATE: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), config(ROLL)).unwrap();
        let mut appender = journal.appender().unwrap();
        for index in 0..RECORDS {
            appender.append(&payload(index)).unwrap();
        }
        journal_files(dir.path())
            .into_iter()
            .map(|path| {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                (name, fs::read(&path).unwrap())
            })
            .collect()
    })
}

/// One change to the files.
#[derive(Clone, Debug)]
enum Damage {
    /// Overwrite bytes at an offset (reduced modulo the file's length) of file `file`.
    Write { file: usize, offset: usize, bytes: Vec<u8> },
    /// Overwrite bytes in the header (the first 256 bytes).
    WriteHeader { file: usize, offset: usize, bytes: Vec<u8> },
    /// Overwrite a record's 8-byte state word with any value (a huge length, say).
    Word { file: usize, record_slot: usize, word: u64 },
    /// Cut the file to a length (reduced modulo its length).
    Truncate { file: usize, len: usize },
    /// Append garbage to the file.
    Extend { file: usize, bytes: Vec<u8> },
    /// Remove the file.
    Remove { file: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    let bytes = proptest::collection::vec(any::<u8>(), 1..16);
    prop_oneof![
        4 => (0..8usize, 0..ROLL as usize, bytes.clone())
            .prop_map(|(file, offset, bytes)| Damage::Write { file, offset, bytes }),
        2 => (0..8usize, 0..256usize, bytes.clone())
            .prop_map(|(file, offset, bytes)| Damage::WriteHeader { file, offset, bytes }),
        2 => (0..8usize, 0..40usize, any::<u64>())
            .prop_map(|(file, record_slot, word)| Damage::Word { file, record_slot, word }),
        1 => (0..8usize, 0..ROLL as usize).prop_map(|(file, len)| Damage::Truncate { file, len }),
        1 => (0..8usize, bytes).prop_map(|(file, bytes)| Damage::Extend { file, bytes }),
        1 => (0..8usize).prop_map(|file| Damage::Remove { file }),
    ]
}

/// Writes the template into `dir` with `damages` applied.
fn lay_out(dir: &Path, damages: &[Damage]) {
    let mut files: Vec<Option<(String, Vec<u8>)>> = template().iter().cloned().map(Some).collect();
    let count = files.len();
    for damage in damages {
        let pick = |file: usize| file % count;
        match damage {
            Damage::Write { file, offset, bytes } | Damage::WriteHeader { file, offset, bytes } => {
                if let Some((_, data)) = &mut files[pick(*file)] {
                    overwrite(data, *offset, bytes);
                }
            }
            Damage::Word { file, record_slot, word } => {
                if let Some((_, data)) = &mut files[pick(*file)] {
                    // Record slots of the template's payloads lie at various multiples of 8;
                    // this hits state words and other fields alike.
                    overwrite(data, 256 + record_slot * 40, &word.to_le_bytes());
                }
            }
            Damage::Truncate { file, len } => {
                if let Some((_, data)) = &mut files[pick(*file)] {
                    let len = len % data.len().max(1);
                    data.truncate(len);
                }
            }
            Damage::Extend { file, bytes } => {
                if let Some((_, data)) = &mut files[pick(*file)] {
                    data.extend_from_slice(bytes);
                }
            }
            Damage::Remove { file } => files[pick(*file)] = None,
        }
    }
    for (name, data) in files.into_iter().flatten() {
        fs::write(dir.join(name), data).unwrap();
    }
}

fn overwrite(data: &mut [u8], offset: usize, bytes: &[u8]) {
    let len = data.len();
    if len == 0 {
        return;
    }
    for (k, byte) in bytes.iter().enumerate() {
        data[(offset + k) % len] = *byte;
    }
}

/// Tails the whole journal: every record handed out must be one the appender wrote, in
/// order; the walk ends at the end or at an error, within a bounded number of steps.
fn tail_everything(journal: &Journal) -> Result<u64, TailError> {
    let mut tailer = journal.tailer(TailFrom::Start)?;
    for read in 0..10 * RECORDS {
        let Some(record) = tailer.next()? else { return Ok(read) };
        assert_eq!(record.payload(), &payload(record.index())[..], "a record handed out is valid");
    }
    panic!("the tailer handed out more records than were ever written");
}

fn exercise(dir: &Path) {
    let journal = match Journal::open(dir, config(ROLL)) {
        Ok(journal) => journal,
        Err(OpenError::File(_) | OpenError::TypeMismatch { .. }) => return,
        Err(other) => panic!("an unexpected kind of error: {other}"),
    };
    let _ = tail_everything(&journal);
    let _ = journal.tailer(TailFrom::Index(RECORDS / 2)).map(|mut t| t.next().map(|r| r.is_some()));
    let _ = journal.tailer(TailFrom::Time(u64::MAX)).map(|mut t| t.next().map(|r| r.is_some()));
    // Recovery over the damage, then an append, then the journal read again.
    if let Ok(mut appender) = journal.appender() {
        let next = appender.next_index();
        if let Ok(index) = appender.append(&payload(next)) {
            assert_eq!(index, next);
        }
        drop(appender);
        let _ = tail_everything(&journal);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn damaged_files_give_errors_or_valid_records(damages in proptest::collection::vec(damage(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        lay_out(dir.path(), &damages);
        exercise(dir.path());
    }
}

#[test]
fn the_template_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path(), &[]);
    let journal = Journal::open(dir.path(), config(ROLL)).unwrap();
    assert_eq!(tail_everything(&journal).unwrap(), RECORDS);
    assert!(template().len() >= 3, "the template spans several files");
}

#[test]
fn a_torn_record_in_the_middle_is_an_error_and_the_tailer_stays_before_it() {
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path(), &[]);
    let first: PathBuf = journal_files(dir.path())[0].clone();
    let mut data = fs::read(&first).unwrap();
    // Record 1's payload starts after record 0 (32 + 0 bytes: payload(0) is empty).
    data[256 + 32 + 32] ^= 0xFF;
    fs::write(&first, data).unwrap();
    let journal = Journal::open(dir.path(), config(ROLL)).unwrap();
    let mut tailer = journal.tailer(TailFrom::Start).unwrap();
    assert_eq!(tailer.next().unwrap().map(|r| r.index()), Some(0));
    for _ in 0..2 {
        match tailer.next() {
            Err(TailError::Corrupt { offset, .. }) => assert_eq!(offset, 256 + 32),
            other => panic!("a corrupt record was not refused: {other:?}"),
        }
    }
}

#[test]
fn foreign_and_truncated_files_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    lay_out(dir.path(), &[]);
    let first = journal_files(dir.path())[0].clone();
    let original = fs::read(&first).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("truncated", original[..100].to_vec()),
        ("wrong magic", [b"NOTAJRNL".as_slice(), &original[8..]].concat()),
        ("shortened", original[..original.len() - 8].to_vec()),
        ("version", {
            let mut data = original.clone();
            data[8] = 9;
            data
        }),
    ];
    for (what, data) in cases {
        fs::write(&first, &data).unwrap();
        let err = Journal::open(dir.path(), config(ROLL)).unwrap_err();
        let expected = match what {
            "truncated" => matches!(err, OpenError::File(FileError::Truncated { .. })),
            "wrong magic" => matches!(err, OpenError::File(FileError::BadMagic { .. })),
            "shortened" => matches!(err, OpenError::File(FileError::SizeMismatch { .. })),
            _ => matches!(err, OpenError::File(FileError::Version { .. })),
        };
        assert!(expected, "{what}: {err}");
    }
}
