//! Private copies of segment files (`SegmentBuilder::open_copy`, `open_head_copy`), how tools
//! read segments they do not own: checked as `open` checks a file, never the file itself, so
//! whatever happens to the file afterwards (rewritten, shrunk, emptied) does not reach them.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use shmlane_segment::{Backing, Fingerprint, HEADER_SIZE, OpenError, Segment, SegmentBuilder};

const SIZE: u64 = 64 << 10;
const FINGERPRINT: Fingerprint = Fingerprint::new("test.copy");
/// What the segment holds right after its header, and in its last bytes.
const HEAD: &[u8] = b"head of the segment";
const TAIL: &[u8] = b"tail";
/// Generous: a copy of the whole test segment.
const MAX_COPY: u64 = 1 << 20;

/// A segment `name` in `dir` holding `HEAD` and `TAIL`; with its path.
fn segment(dir: &Path, name: &str) -> (Segment, PathBuf) {
    let segment = builder(dir, name).size(SIZE).create().expect("create");
    segment.write_bytes(HEADER_SIZE, HEAD).unwrap();
    segment.write_bytes(SIZE - TAIL.len() as u64, TAIL).unwrap();
    let path = segment.path().unwrap().to_owned();
    (segment, path)
}

fn builder(dir: &Path, name: &str) -> SegmentBuilder {
    Segment::builder(name).backing(Backing::Dir(dir.to_owned())).fingerprint(FINGERPRINT)
}

/// `len` bytes at `at`.
fn bytes(segment: &Segment, at: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    segment.read_bytes(at, &mut bytes).unwrap();
    bytes
}

fn inode(fd: impl AsFd) -> u64 {
    rustix::fs::fstat(fd).unwrap().st_ino
}

#[test]
fn a_copy_holds_the_files_bytes_checked_as_open_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let (original, path) = segment(dir.path(), "copied");

    let copy = builder(dir.path(), "copied").open_copy(&path, MAX_COPY).expect("copy");
    assert_eq!(copy.len(), SIZE);
    assert!(copy.is_read_only());
    assert_eq!((copy.creator(), copy.fingerprint()), (original.creator(), FINGERPRINT));
    assert_eq!(bytes(&copy, HEADER_SIZE, HEAD.len()), HEAD);
    assert_eq!(bytes(&copy, SIZE - TAIL.len() as u64, TAIL.len()), TAIL);
    assert_ne!(inode(copy.fd()), inode(original.fd()), "a copy, not the file");
    assert_eq!(copy.path(), Some(path.as_path()), "named after the file it copies");

    // Refused as `open` refuses the file: another layout, backing or owner, or too large.
    let other = Segment::builder("copied").backing(Backing::Dir(dir.path().to_owned()));
    let refused = other.fingerprint(Fingerprint::new("other")).open_copy(&path, MAX_COPY);
    assert!(matches!(refused, Err(OpenError::FingerprintMismatch { .. })), "{refused:?}");
    let refused = Segment::builder("copied").fingerprint(FINGERPRINT).open_copy(&path, MAX_COPY);
    assert!(matches!(refused, Err(OpenError::BadBacking { .. })), "{refused:?}");
    let me = rustix::process::geteuid().as_raw();
    let refused = builder(dir.path(), "copied").expected_owner(me + 1).open_copy(&path, MAX_COPY);
    assert!(matches!(refused, Err(OpenError::WrongOwner { .. })), "{refused:?}");
    let refused = builder(dir.path(), "copied").open_copy(&path, SIZE - 1);
    assert!(
        matches!(refused, Err(OpenError::TooLarge { size: SIZE, max }) if max == SIZE - 1),
        "{refused:?}"
    );
    let missing = dir.path().join("shmlane.missing");
    let refused = builder(dir.path(), "missing").open_copy(&missing, MAX_COPY);
    assert!(matches!(refused, Err(OpenError::NotFound { .. })), "{refused:?}");
}

#[test]
fn a_copy_is_private_so_the_file_rewritten_or_shrunk_afterwards_does_not_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let (original, path) = segment(dir.path(), "private");
    let copy = builder(dir.path(), "private").open_copy(&path, MAX_COPY).expect("copy");

    original.write_bytes(HEADER_SIZE, b"rewritten").unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_len(SIZE / 2).unwrap();
    // Past the cut: through a mapping of the file this would be SIGBUS.
    assert_eq!(bytes(&copy, SIZE - TAIL.len() as u64, TAIL.len()), TAIL);
    assert_eq!(bytes(&copy, HEADER_SIZE, HEAD.len()), HEAD, "the copy keeps what it copied");
    // A copy taken now sees the file as it is: shorter than its header says.
    let shrunk = builder(dir.path(), "private").open_copy(&path, MAX_COPY);
    assert!(matches!(shrunk, Err(OpenError::SizeMismatch { .. })), "{shrunk:?}");
    file.set_len(0).unwrap();
    let emptied = builder(dir.path(), "private").open_copy(&path, MAX_COPY);
    assert!(matches!(emptied, Err(OpenError::TooSmall { size: 0 })), "{emptied:?}");
    // The file's creation lock speaks for a creator still at work (here, this test).
    rustix::fs::flock(&file, FlockOperation::LockExclusive).unwrap();
    let unpublished = builder(dir.path(), "private").open_copy(&path, MAX_COPY);
    assert!(matches!(unpublished, Err(OpenError::Unpublished { .. })), "{unpublished:?}");
}

#[test]
fn a_head_copy_holds_the_files_first_bytes_and_zeros_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_original, path) = segment(dir.path(), "head");
    let head = HEADER_SIZE + HEAD.len() as u64;

    let copy = builder(dir.path(), "head").open_head_copy(&path, head).expect("head copy");
    assert_eq!(copy.len(), SIZE, "as long as the file");
    assert_eq!(bytes(&copy, HEADER_SIZE, HEAD.len()), HEAD);
    assert_eq!(bytes(&copy, SIZE - TAIL.len() as u64, TAIL.len()), [0; TAIL.len()]);
    // A head copy is never refused for the file's size.
    builder(dir.path(), "head").open_head_copy(&path, SIZE * 2).expect("a head past the end");
}
