//! Hostile bytes in a segment give errors, never panics, undefined behaviour or out-of-bounds
//! accesses.
//!
//! Every test works on real files in a private temporary directory (`Backing::Dir`), so nothing
//! lands in `/dev/shm`:
//!
//! - the header tests corrupt one field of a valid segment at a time and check the exact
//!   [`OpenError`], through both `open` and `open_read_only`;
//! - the random tests throw thousands of seeded files (random bytes of random lengths, and valid
//!   segments with a few bytes changed) at `open` and at discovery, and check that every outcome
//!   is `Ok` for a valid header or an error that truly describes the file;
//! - the pool tests lie in a [`BlockPool`]'s descriptor and free list and check `attach`,
//!   `alloc` and `free`, then mutate the pool region at random and check the pool's invariants.
//!
//! The random tests are seeded: set `SHMLANE_HOSTILE_SEED` to explore other cases. A failure
//! names the seed of the case that failed.

use std::fs::{self, OpenOptions};
use std::mem::offset_of;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;
use shmlane_segment::header::{FORMAT_VERSION, InitState, MAGIC, RawHeader};
use shmlane_segment::{
    AllocError, Backing, BlockOffset, BlockPool, Carver, EMPTY_GRACE, Fingerprint, FreeError,
    HEADER_SIZE, Offset, OffsetError, OpenError, PoolError, ProcessId, Region, RegionLayout,
    Segment, SegmentBuilder, SegmentStatus, TransferError, list_in, remove_stale_in,
};
use shmlane_testkit::{Rng, seed_or};
use tempfile::TempDir;
use zerocopy::FromBytes;

/// The user name of every segment here (each test has its own directory).
const NAME: &str = "hostile";
/// The layout fingerprint every valid segment here carries.
const FP: Fingerprint = Fingerprint::new("shmlane-segment/tests/hostile_input").with_u64(1);
/// Size of the valid segment the header tests corrupt.
const SIZE: u64 = 4096;

// Header fields: byte offset of each, from the table in `crates/segment/src/header.rs`.
const MAGIC_AT: u64 = 0;
const VERSION_AT: u64 = 8;
const HEADER_SIZE_AT: u64 = 12;
const FINGERPRINT_AT: u64 = 16;
const TOTAL_SIZE_AT: u64 = 24;
const CREATOR_PID_AT: u64 = 32;
const BACKING_AT: u64 = 36;
const START_TIME_AT: u64 = 40;
const CREATED_AT: u64 = 48;
const INIT_STATE_AT: u64 = 56;
const RESERVED0_AT: u64 = 60;
const TOKEN_AT: u64 = 64;
const RESERVED_AT: u64 = 72;
const RESERVED_LEN: u64 = 56;

/// The `backing` code of a file in a directory.
const DIR_BACKING: u32 = 2;
const EMPTY: u32 = InitState::Empty as u32;
const INITIALIZING: u32 = InitState::Initializing as u32;
const READY: u32 = InitState::Ready as u32;

/// A valid segment file in its own temporary directory, created and then closed: the tests
/// change its bytes on disk and open it again.
struct Fixture {
    dir: TempDir,
    /// The file's bytes right after creation.
    pristine: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_size(SIZE)
    }

    fn with_size(size: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let creator = Segment::builder(NAME)
            .backing(Backing::Dir(dir.path().to_owned()))
            .size(size)
            .fingerprint(FP)
            .unlink_on_drop(false)
            .create()
            .expect("create the valid segment");
        drop(creator);
        let pristine = fs::read(dir.path().join(format!("shmlane.{NAME}"))).expect("read it");
        assert_eq!(pristine.len() as u64, size);
        Fixture { dir, pristine }
    }

    /// A directory with no segment in it yet.
    fn empty() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            pristine: vec![],
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(format!("shmlane.{NAME}"))
    }

    /// An opener that expects our fingerprint and does not wait.
    fn builder(&self) -> SegmentBuilder {
        Segment::builder(NAME)
            .backing(Backing::Dir(self.dir.path().to_owned()))
            .open_timeout(Duration::ZERO)
            .fingerprint(FP)
    }

    fn open(&self) -> Result<Segment, OpenError> {
        self.builder().open()
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) {
        OpenOptions::new()
            .write(true)
            .open(self.path())
            .and_then(|file| file.write_all_at(bytes, offset))
            .expect("write into the segment file");
    }

    fn write_u32(&self, offset: u64, value: u32) {
        self.write_at(offset, &value.to_le_bytes());
    }

    fn write_u64(&self, offset: u64, value: u64) {
        self.write_at(offset, &value.to_le_bytes());
    }

    /// Names `creator` as the segment's creator (pid and start time).
    fn write_creator(&self, creator: ProcessId) {
        self.write_u32(CREATOR_PID_AT, creator.pid);
        self.write_u64(START_TIME_AT, creator.start_time);
    }

    /// Makes the segment one still initialising by a creator proven dead; returns that creator.
    fn write_dead_creator(&self) -> ProcessId {
        let dead = dead_process();
        self.write_creator(dead);
        self.write_u64(TOKEN_AT, GONE_TOKEN);
        self.write_u32(INIT_STATE_AT, INITIALIZING);
        dead
    }

    /// Puts the file back as it was created.
    fn restore(&self) {
        fs::write(self.path(), &self.pristine).expect("restore the segment file");
    }
}

/// Opens read-write and read-only; both must refuse the file with the given error.
macro_rules! assert_refused {
    ($builder:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {{
        let builder: SegmentBuilder = $builder;
        let outcomes = [("read-write", builder.clone().open()), ("read-only", builder.open_read_only())];
        for (mode, outcome) in outcomes {
            match outcome {
                Err($pattern) $(if $guard)? => {}
                other => panic!(
                    "{mode} open: expected Err({}), got {other:?}",
                    stringify!($pattern $(if $guard)?)
                ),
            }
        }
    }};
}

/// Writes each value of `$values` (named `$value`) to the header field at `$at` with
/// `$fx.$write`, and checks with [`assert_refused!`] that `$fx.builder()` refuses it so.
macro_rules! assert_field_refused {
    ($fx:ident.$write:ident($at:expr, $value:ident in $values:expr), $($refused:tt)+) => {
        for $value in $values {
            $fx.$write($at, $value);
            assert_refused!($fx.builder(), $($refused)+);
        }
    };
}

/// Start time (field 22 of `/proc/PID/stat`) of a process, if it exists.
fn start_time_of(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_ascii_whitespace().nth(19)?.parse().ok()
}

/// A presence token without a presence file: its process is proven dead (the file of a dead
/// process is removed only after the proof).
const GONE_TOKEN: u64 = 0xdead_0000_5e9e_0001;

/// A process that existed and is now gone (reaped), with its real start time.
fn dead_process() -> ProcessId {
    let mut child = Command::new("true").spawn().expect("spawn `true`");
    let pid = child.id();
    // Unreaped, the child's /proc entry stays (as a zombie) until `wait`.
    let start_time = start_time_of(pid).expect("the unreaped child has a /proc entry");
    child.wait().expect("reap the child");
    assert!(start_time_of(pid).is_none(), "pid {pid} was reused at once");
    ProcessId { pid, start_time }
}

// ---------------------------------------------------------------------------------------------
// 1. One header field at a time.
// ---------------------------------------------------------------------------------------------

#[test]
fn header_layout_matches_the_documented_table() {
    assert_eq!(offset_of!(RawHeader, magic) as u64, MAGIC_AT);
    assert_eq!(offset_of!(RawHeader, format_version) as u64, VERSION_AT);
    assert_eq!(offset_of!(RawHeader, header_size) as u64, HEADER_SIZE_AT);
    assert_eq!(offset_of!(RawHeader, layout_fingerprint) as u64, FINGERPRINT_AT);
    assert_eq!(offset_of!(RawHeader, total_size) as u64, TOTAL_SIZE_AT);
    assert_eq!(offset_of!(RawHeader, creator_pid) as u64, CREATOR_PID_AT);
    assert_eq!(offset_of!(RawHeader, backing) as u64, BACKING_AT);
    assert_eq!(offset_of!(RawHeader, creator_start_time) as u64, START_TIME_AT);
    assert_eq!(offset_of!(RawHeader, created_unix_ns) as u64, CREATED_AT);
    assert_eq!(offset_of!(RawHeader, init_state) as u64, INIT_STATE_AT);
    assert_eq!(offset_of!(RawHeader, reserved0) as u64, RESERVED0_AT);
    assert_eq!(offset_of!(RawHeader, creator_token) as u64, TOKEN_AT);
    assert_eq!(offset_of!(RawHeader, reserved) as u64, RESERVED_AT);
    assert_eq!(RESERVED_AT + RESERVED_LEN, HEADER_SIZE);
    assert_eq!(size_of::<RawHeader>() as u64, HEADER_SIZE);
}

#[test]
fn an_untouched_segment_opens_both_ways() {
    let fx = Fixture::new();
    let me = ProcessId::current().expect("our own ProcessId");
    let header = RawHeader::read_from_bytes(&fx.pristine[..HEADER_SIZE as usize]).expect("header");
    assert_eq!(header.init_state, READY);
    assert_eq!(header.backing, DIR_BACKING);
    for outcome in [fx.open(), fx.builder().open_read_only()] {
        let segment = outcome.expect("an untouched segment opens");
        assert_eq!(segment.len(), SIZE);
        assert_eq!(segment.fingerprint(), FP);
        assert_eq!(segment.creator(), me);
        assert!(!segment.is_creator());
    }
}

#[test]
fn bad_magic_is_refused() {
    let fx = Fixture::new();
    for i in 0..MAGIC.len() {
        let mut magic = MAGIC;
        magic[i] ^= 0x20;
        fx.write_at(MAGIC_AT, &magic);
        assert_refused!(fx.builder(), OpenError::BadMagic { found } if found == magic);
    }
    fx.write_at(MAGIC_AT, &[0; 8]);
    assert_refused!(fx.builder(), OpenError::BadMagic { found } if found == [0; 8]);
}

#[test]
fn another_format_version_is_refused() {
    let fx = Fixture::new();
    assert_field_refused!(
        fx.write_u32(VERSION_AT, version in [0, FORMAT_VERSION + 1, u32::MAX]),
        OpenError::UnsupportedVersion { found } if found == version
    );
}

#[test]
fn a_wrong_header_size_is_refused() {
    let fx = Fixture::new();
    assert_field_refused!(
        fx.write_u32(HEADER_SIZE_AT, size in [0, 64, 127, 129, 256, 4096, u32::MAX]),
        OpenError::BadHeaderSize { found } if found == size
    );
}

#[test]
fn a_header_with_another_fingerprint_is_refused() {
    let fx = Fixture::new();
    assert_field_refused!(
        fx.write_u64(FINGERPRINT_AT, fingerprint in [0, FP.get() ^ 1, u64::MAX]),
        OpenError::FingerprintMismatch { expected, found }
                if expected == FP.get() && found == fingerprint
    );
}

#[test]
fn an_opener_expecting_another_layout_is_refused() {
    let fx = Fixture::new();
    let other = Fingerprint::new("some other layout");
    assert_refused!(
        fx.builder().fingerprint(other),
        OpenError::FingerprintMismatch { expected, found }
            if expected == other.get() && found == FP.get()
    );
}

#[test]
fn a_total_size_that_disagrees_with_the_file_is_refused() {
    let fx = Fixture::new();
    assert_field_refused!(
        fx.write_u64(TOTAL_SIZE_AT, total in [0, 1, HEADER_SIZE, SIZE - 1, SIZE + 1, 2 * SIZE]),
        OpenError::SizeMismatch { header, file } if header == total && file == SIZE
    );
}

#[test]
fn a_total_size_above_the_limit_is_too_large() {
    let fx = Fixture::new();
    let max = 1 << 20;
    for total in [max + 1, 1 << 40, u64::MAX] {
        fx.write_u64(TOTAL_SIZE_AT, total);
        assert_refused!(
            fx.builder().max_size(max),
            OpenError::TooLarge { size, max: limit } if size == total && limit == max
        );
    }
    // The default limit (64 GiB) refuses an absurd claim too.
    fx.write_u64(TOTAL_SIZE_AT, u64::MAX);
    assert_refused!(fx.builder(), OpenError::TooLarge { size: u64::MAX, .. });
}

#[test]
fn a_creator_pid_that_cannot_be_a_process_is_refused() {
    let fx = Fixture::new();
    assert_field_refused!(
        fx.write_u32(CREATOR_PID_AT, pid in [0, i32::MAX as u32 + 1, u32::MAX]),
        OpenError::BadCreator { found } if found == pid
    );
}

#[test]
fn a_backing_code_that_does_not_match_is_refused() {
    let fx = Fixture::new();
    assert_field_refused!(
        fx.write_u32(BACKING_AT, code in [0, 1, 3, 4, u32::MAX]),
        OpenError::BadBacking { expected, found } if expected == DIR_BACKING && found == code
    );
}

#[test]
fn any_nonzero_reserved_byte_is_refused() {
    let fx = Fixture::new();
    for at in (RESERVED0_AT..RESERVED0_AT + 4).chain(RESERVED_AT..RESERVED_AT + RESERVED_LEN) {
        fx.write_at(at, &[1]);
        assert_refused!(fx.builder(), OpenError::BadReserved);
        fx.write_at(at, &[0]);
    }
    fx.write_at(RESERVED_AT, &[0xff; RESERVED_LEN as usize]);
    assert_refused!(fx.builder(), OpenError::BadReserved);
}

#[test]
fn a_zero_creator_token_is_refused() {
    let fx = Fixture::new();
    fx.write_u64(TOKEN_AT, 0);
    assert_refused!(fx.builder(), OpenError::NoCreatorToken);
}

#[test]
fn an_unknown_init_state_is_corrupt() {
    let fx = Fixture::new();
    assert_field_refused!(
        fx.write_u32(INIT_STATE_AT, state in [3, 4, 0x100, READY << 16, u32::MAX]),
        OpenError::CorruptState { found } if found == state
    );
}

#[test]
fn informational_fields_accept_any_value() {
    // `creator_start_time` and `created_unix_ns` are reported, not validated.
    let fx = Fixture::new();
    for value in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
        fx.write_u64(START_TIME_AT, value);
        fx.write_u64(CREATED_AT, value);
        for outcome in [fx.open(), fx.builder().open_read_only()] {
            let segment = outcome.expect("informational fields do not make a segment invalid");
            assert_eq!(segment.creator().start_time, value);
            assert_eq!(segment.created_at(), UNIX_EPOCH + Duration::from_nanos(value));
        }
    }
}

#[test]
fn initializing_with_a_dead_creator_is_stale() {
    let fx = Fixture::new();
    let dead = fx.write_dead_creator();
    assert_refused!(fx.builder(), OpenError::Stale { creator: Some(creator) } if creator == dead);
}

#[test]
fn a_dead_creator_is_reported_without_waiting_out_the_timeout() {
    let fx = Fixture::new();
    let dead = fx.write_dead_creator();
    let started = Instant::now();
    let outcome = fx.builder().open_timeout(Duration::from_secs(30)).open();
    assert!(matches!(outcome, Err(OpenError::Stale { creator: Some(c) }) if c == dead));
    assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
}

#[test]
fn initializing_by_a_creator_whose_presence_lock_is_free_is_stale() {
    // A presence file that nobody holds locked: its process ended (and it was not swept yet).
    let fx = Fixture::new();
    let token = 0xdead_0000_5e9e_0000 | u64::from(std::process::id());
    let file = shmlane_testkit::Cleanup(shmlane_segment::presence::path_of(token));
    fs::write(&file.0, "shmlane presence 1\npid 1\n").expect("plant a presence file");
    fx.write_u64(TOKEN_AT, token);
    fx.write_u32(INIT_STATE_AT, INITIALIZING);
    assert_refused!(fx.builder(), OpenError::Stale { creator: Some(_) });
}

#[test]
fn a_creator_pid_that_is_not_ours_proves_nothing_while_its_token_lives() {
    // The pid of a process that is gone from our /proc (as a peer in another pid namespace
    // is), with a live presence token (ours): the creator is alive, so the open waits for it.
    let fx = Fixture::new();
    let dead = dead_process();
    fx.write_creator(dead);
    fx.write_u32(INIT_STATE_AT, INITIALIZING);
    let timeout = Duration::from_millis(20);
    assert_refused!(
        fx.builder().open_timeout(timeout),
        OpenError::InitTimeout { creator, .. } if creator == dead
    );
    let found = list_in(fx.dir.path()).expect("list the directory");
    assert_eq!(found[0].status, SegmentStatus::Initializing, "not stale: its creator lives");
}

#[test]
fn initializing_by_a_live_creator_times_out() {
    let fx = Fixture::new();
    let me = ProcessId::current().expect("our own ProcessId");
    fx.write_u32(INIT_STATE_AT, INITIALIZING);
    let timeout = Duration::from_millis(20);
    assert_refused!(
        fx.builder().open_timeout(timeout),
        OpenError::InitTimeout { creator, waited } if creator == me && waited >= timeout
    );
}

#[test]
fn an_empty_header_past_the_timeout_is_stale_without_a_creator() {
    let fx = Fixture::new();
    fx.write_u32(INIT_STATE_AT, EMPTY);
    assert_refused!(fx.builder(), OpenError::Stale { creator: None });
    let started = Instant::now();
    assert_refused!(
        fx.builder().open_timeout(Duration::from_millis(5)),
        OpenError::Stale { creator: None }
    );
    assert!(started.elapsed() >= Duration::from_millis(10), "both opens waited 5 ms");
}

#[test]
fn a_zero_length_file_is_too_small() {
    let fx = Fixture::new();
    fs::write(fx.path(), []).expect("truncate the file");
    assert_refused!(fx.builder(), OpenError::TooSmall { size: 0 });
    assert_refused!(
        fx.builder().open_timeout(Duration::from_millis(5)),
        OpenError::TooSmall { size: 0 }
    );
}

#[test]
fn a_file_shorter_than_a_header_is_too_small() {
    let fx = Fixture::new();
    for len in [1, 8, 56, 60, 100, HEADER_SIZE - 1] {
        fs::write(fx.path(), &fx.pristine[..len as usize]).expect("write a short file");
        assert_refused!(fx.builder(), OpenError::TooSmall { size } if size == len);
    }
}

#[test]
fn a_file_larger_than_max_size_is_too_large() {
    let fx = Fixture::new();
    assert_refused!(
        fx.builder().max_size(SIZE - 1),
        OpenError::TooLarge { size: SIZE, max } if max == SIZE - 1
    );
    assert_refused!(fx.builder().max_size(0), OpenError::TooLarge { size: SIZE, max: 0 });
}

#[test]
fn a_grown_or_truncated_file_is_a_size_mismatch() {
    let fx = Fixture::new();
    for len in [HEADER_SIZE, 200, SIZE - 1, SIZE + 1, 2 * SIZE] {
        fx.restore();
        let file = OpenOptions::new().write(true).open(fx.path()).expect("open the file");
        file.set_len(len).expect("resize the file");
        assert_refused!(
            fx.builder(),
            OpenError::SizeMismatch { header: SIZE, file } if file == len
        );
    }
}

// Hostile files rather than hostile bytes: what is found under the segment's name.

#[test]
fn a_symlink_under_the_name_is_not_followed() {
    let fx = Fixture::new();
    let target = fx.dir.path().join("target");
    fs::rename(fx.path(), &target).expect("move the segment away");
    std::os::unix::fs::symlink(&target, fx.path()).expect("plant a symlink");
    assert_refused!(fx.builder(), OpenError::Symlink { path } if path == fx.path());
}

#[test]
fn a_file_owned_by_someone_else_is_refused() {
    let fx = Fixture::new();
    let owner = fs::metadata(fx.path()).expect("stat the file").uid();
    let expected = owner.wrapping_add(1);
    assert_refused!(
        fx.builder().expected_owner(expected),
        OpenError::WrongOwner { expected: e, found } if e == expected && found == owner
    );
}

/// Runs `f` on another thread; `None` if it was still blocked after two seconds, in which case
/// the FIFO at `fifo` is opened for writing to release it.
fn without_blocking<T: Send + 'static>(
    fifo: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(value) => Some(value),
        Err(_) => {
            // A reader blocked in open(O_RDONLY) on a FIFO returns once a writer appears.
            let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK;
            let _writer = rustix::fs::open(fifo, flags, rustix::fs::Mode::empty());
            let _ = rx.recv_timeout(Duration::from_secs(2));
            None
        }
    }
}

#[test]
fn a_fifo_under_the_name_is_refused_without_blocking() {
    let fx = Fixture::empty();
    let fifo = fx.path();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("make a FIFO");
    let builder = fx.builder();
    let rw = without_blocking(&fifo, move || builder.open().map(drop));
    let builder = fx.builder();
    let ro = without_blocking(&fifo, move || builder.open_read_only().map(drop));
    let dir = fx.dir.path().to_owned();
    let listed =
        without_blocking(&fifo, move || list_in(&dir).map(|found| found[0].status.clone()));
    assert!(matches!(rw, Some(Err(OpenError::NotRegularFile))), "open: {rw:?}");
    assert!(matches!(ro, Some(Err(OpenError::NotRegularFile))), "open_read_only: {ro:?}");
    assert!(matches!(listed, Some(Ok(SegmentStatus::Corrupt { .. }))), "list_in: {listed:?}");
}

// Discovery reads the same headers.

#[test]
fn discovery_reports_corrupt_headers_and_never_removes_them() {
    let fx = Fixture::new();
    let bad_magic = fx.dir.path().join("shmlane.bad-magic");
    let bad_state = fx.dir.path().join("shmlane.bad-state");
    let short = fx.dir.path().join("shmlane.short");
    let mut bytes = fx.pristine.clone();
    bytes[..8].copy_from_slice(b"NOTSHMLN");
    fs::write(&bad_magic, &bytes).expect("write a file with bad magic");
    let mut bytes = fx.pristine.clone();
    bytes[INIT_STATE_AT as usize..][..4].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&bad_state, &bytes).expect("write a file with an unknown state");
    fs::write(&short, &fx.pristine[..100]).expect("write a short file");

    let found = list_in(fx.dir.path()).expect("list the directory");
    let status = |name: &str| {
        found.iter().find(|info| info.name.as_str() == name).map(|info| info.status.clone())
    };
    assert_eq!(found.len(), 4);
    assert_eq!(status(NAME), Some(SegmentStatus::Alive));
    assert!(matches!(status("bad-magic"), Some(SegmentStatus::Corrupt { .. })));
    assert!(matches!(status("bad-state"), Some(SegmentStatus::Corrupt { .. })));
    // Our creator sizes a file in one step, from empty to at least a header.
    assert!(matches!(status("short"), Some(SegmentStatus::Corrupt { .. })));

    assert_nothing_removed(fx.dir.path(), [fx.path(), bad_magic, bad_state, short]);
}

/// Removes the stale segments of `dir`: there must be none, and every one of `paths` is left.
fn assert_nothing_removed(dir: &Path, paths: impl IntoIterator<Item = PathBuf>) {
    let removed = remove_stale_in(dir).expect("remove stale segments").removed;
    assert!(removed.is_empty(), "removed {removed:?}");
    for path in paths {
        assert!(path.exists(), "{} was removed", path.display());
    }
}

/// Older than [`EMPTY_GRACE`]: a file without a published header this old has no live creator.
const OLD: Duration = EMPTY_GRACE.saturating_mul(6);

/// Writes `bytes` as the file of segment `name` in `dir`, last modified `age` ago.
fn plant(dir: &Path, name: &str, bytes: &[u8], age: Duration) -> PathBuf {
    let path = dir.join(format!("shmlane.{name}"));
    fs::write(&path, bytes).expect("write the file");
    let file = OpenOptions::new().write(true).open(&path).expect("open the file");
    file.set_modified(SystemTime::now() - age).expect("set its modification time");
    path
}

/// The valid segment's bytes with the state word back at `Empty`: what a creator that wrote its
/// header and died before publishing it leaves.
fn unpublished(fx: &Fixture) -> Vec<u8> {
    let mut bytes = fx.pristine.clone();
    bytes[INIT_STATE_AT as usize..][..4].copy_from_slice(&EMPTY.to_le_bytes());
    bytes
}

/// Lists `dir` and returns the status of each segment named in `names`.
fn statuses(dir: &Path, names: &[&str]) -> Vec<(String, SegmentStatus)> {
    let found = list_in(dir).expect("list the directory");
    let status = |name: &str| found.iter().find(|info| info.name.as_str() == name);
    names
        .iter()
        .map(|&name| {
            let info = status(name).unwrap_or_else(|| panic!("{name} is not listed: {found:?}"));
            (name.to_owned(), info.status.clone())
        })
        .collect()
}

#[test]
fn discovery_never_removes_an_old_file_without_a_header_that_our_creator_cannot_have_left() {
    let fx = Fixture::new();
    let dir = fx.dir.path();
    // Not empty but shorter than a header: zeros, foreign bytes, or even the start of ours.
    let mut planted = vec![
        plant(dir, "tiny", b"not ours", OLD),
        plant(dir, "short-zeros", &[0; 100], OLD),
        plant(dir, "short-ours", &unpublished(&fx)[..100], OLD),
    ];
    // A header's worth or more, the state word zero, and something our creator never writes.
    let mut foreign = vec![0xab; SIZE as usize];
    foreign[INIT_STATE_AT as usize..][..4].fill(0);
    let mut late_byte = vec![0; SIZE as usize];
    late_byte[RESERVED_AT as usize + 10] = 1;
    let mut bad_magic = vec![0; SIZE as usize];
    bad_magic[..8].copy_from_slice(b"NOTSHMLN");
    let mut other_version = unpublished(&fx);
    other_version[VERSION_AT as usize..][..4].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let mut other_size = unpublished(&fx);
    other_size[TOTAL_SIZE_AT as usize..][..8].copy_from_slice(&(2 * SIZE).to_le_bytes());
    let mut reserved = unpublished(&fx);
    reserved[(RESERVED_AT + RESERVED_LEN - 1) as usize] = 1;
    let mut no_magic = unpublished(&fx);
    no_magic[MAGIC_AT as usize..][..8].fill(0);
    planted.extend([
        plant(dir, "foreign", &foreign, OLD),
        plant(dir, "late-byte", &late_byte, OLD),
        plant(dir, "bad-magic", &bad_magic, OLD),
        plant(dir, "other-version", &other_version, OLD),
        plant(dir, "other-size", &other_size, OLD),
        plant(dir, "reserved", &reserved, OLD),
        plant(dir, "no-magic", &no_magic, OLD),
    ]);

    let names = [
        "tiny",
        "short-zeros",
        "short-ours",
        "foreign",
        "late-byte",
        "bad-magic",
        "other-version",
        "other-size",
        "reserved",
        "no-magic",
    ];
    for (name, status) in statuses(dir, &names) {
        assert!(matches!(status, SegmentStatus::Corrupt { .. }), "{name}: {status:?}");
    }
    assert_nothing_removed(dir, planted);
}

#[test]
fn discovery_removes_an_old_file_that_our_creator_died_before_publishing() {
    let fx = Fixture::new();
    let dir = fx.dir.path();
    // Killed before sizing the file, before writing its header, while writing it (magic,
    // version, header size and fingerprint in; the rest still zero), and after writing it.
    let mut half_written = vec![0; SIZE as usize];
    half_written[..TOTAL_SIZE_AT as usize].copy_from_slice(&fx.pristine[..TOTAL_SIZE_AT as usize]);
    let planted = [
        plant(dir, "empty", &[], OLD),
        plant(dir, "zeros", &[0; SIZE as usize], OLD),
        plant(dir, "half-written", &half_written, OLD),
        plant(dir, "unpublished", &unpublished(&fx), OLD),
    ];

    let names = ["empty", "zeros", "half-written", "unpublished"];
    for (name, status) in statuses(dir, &names) {
        assert_eq!(status, SegmentStatus::Stale, "{name}");
    }
    let removed = remove_stale_in(dir).expect("remove stale segments").removed;
    let mut removed: Vec<&str> = removed.iter().map(|info| info.name.as_str()).collect();
    removed.sort_unstable();
    assert_eq!(removed, ["empty", "half-written", "unpublished", "zeros"]);
    for path in planted {
        assert!(!path.exists(), "{} was left", path.display());
    }
    assert!(fx.path().exists(), "the live segment was removed");
}

#[test]
fn discovery_leaves_a_young_file_without_a_header_to_its_creator() {
    let fx = Fixture::new();
    let dir = fx.dir.path();
    let young = Duration::ZERO;
    let planted = [
        plant(dir, "empty", &[], young),
        plant(dir, "zeros", &[0; SIZE as usize], young),
        plant(dir, "unpublished", &unpublished(&fx), young),
    ];

    for (name, status) in statuses(dir, &["empty", "zeros", "unpublished"]) {
        assert_eq!(status, SegmentStatus::Initializing, "{name}");
    }
    assert_nothing_removed(dir, planted);
}

#[test]
fn discovery_calls_a_segment_with_a_dead_initialising_creator_stale() {
    let fx = Fixture::new();
    let dead = fx.write_dead_creator();
    let found = list_in(fx.dir.path()).expect("list the directory");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].status, SegmentStatus::Stale);
    assert_eq!(found[0].creator, Some(dead));
}

#[test]
fn a_received_memfd_with_a_corrupt_header_is_refused() {
    let name = format!("hostile-memfd-{}", std::process::id());
    let creator = Segment::builder(&name)
        .backing(Backing::Memfd)
        .size(SIZE)
        .fingerprint(FP)
        .create()
        .expect("create a memfd segment");
    // The header is not writable through the segment: corrupt it through the descriptor.
    let file = fs::File::from(creator.fd().try_clone_to_owned().expect("dup the memfd"));
    file.write_at(b"NOTSHMLN", MAGIC_AT).expect("corrupt the magic");
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    creator.send_fd(&ours).expect("send the descriptor");
    let received = Segment::builder(&name)
        .fingerprint(FP)
        .open_timeout(Duration::ZERO)
        .receive(&theirs, false);
    assert!(
        matches!(received, Err(TransferError::Open(OpenError::BadMagic { found })) if &found == b"NOTSHMLN"),
        "{received:?}"
    );
}

#[test]
fn a_region_at_the_end_of_the_address_space_gives_an_error() {
    // Regions may be read from a segment by upper layers: their arithmetic must not overflow,
    // and no offset whose value would run past 2^64 may be handed out.
    for region in [Region { offset: u64::MAX - 3, len: 16 }, Region { offset: u64::MAX, len: 8 }] {
        for at in [0, 4, 8, u64::MAX - 8, u64::MAX] {
            let outcome = panic::catch_unwind(|| region.offset_of::<u64>(at));
            assert!(
                matches!(outcome, Ok(Err(OffsetError::OutOfBounds { .. }))),
                "{region:?}.offset_of({at}): {outcome:?}"
            );
        }
    }
    let last = Region { offset: u64::MAX - 16, len: 16 };
    assert_eq!(last.offset_of::<u64>(8).map(Offset::get), Ok(u64::MAX - 8));
    let fine = Region { offset: 128, len: 16 };
    assert_eq!(fine.offset_of::<u64>(8).map(Offset::get), Ok(136));
}

// ---------------------------------------------------------------------------------------------
// 2. Random files.
// ---------------------------------------------------------------------------------------------

/// A byte that is often a boundary value.
fn interesting_byte(rng: &mut Rng) -> u8 {
    match rng.below(4) {
        0 => 0,
        1 => 0xff,
        2 => rng.below(10) as u8,
        _ => rng.next_u64() as u8,
    }
}

/// Environment variable overriding the base seed of the random tests.
const SEED_ENV: &str = "SHMLANE_HOSTILE_SEED";

/// Runs `cases` seeded cases of `check`, reporting the seed of a case that panics or fails.
fn for_each_case(what: &str, cases: u64, mut check: impl FnMut(&mut Rng) -> Result<(), String>) {
    let base = seed_or(SEED_ENV, 0x5eed_0f5b_1a4e_0000);
    for case in 0..cases {
        let seed = base ^ case.wrapping_mul(0xd1b5_4a32_d192_ed03);
        let mut rng = Rng::new(seed);
        match panic::catch_unwind(AssertUnwindSafe(|| check(&mut rng))) {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => panic!("{what}: case {case} (seed {seed:#x}): {failure}"),
            Err(_) => panic!("{what}: case {case} (seed {seed:#x}) panicked (message above)"),
        }
    }
}

/// Largest segment the random tests accept (well above any file they write).
const RANDOM_MAX: u64 = 1 << 20;

/// The header at the start of `bytes`, if the file is long enough to hold one.
fn header_of(bytes: &[u8]) -> Option<RawHeader> {
    let head = bytes.get(..HEADER_SIZE as usize)?;
    Some(RawHeader::read_from_bytes(head).expect("128 bytes are a RawHeader"))
}

/// Whether the fields that say "a shmlane segment of our format, by some process" are valid.
fn identity_valid(h: &RawHeader) -> bool {
    h.magic == MAGIC
        && h.format_version == FORMAT_VERSION
        && u64::from(h.header_size) == HEADER_SIZE
        && (1..=i32::MAX as u32).contains(&h.creator_pid)
        && h.creator_token != 0
}

/// Whether `bytes` is a segment our random-test opener must accept (the header docs' rules).
fn is_valid(bytes: &[u8]) -> bool {
    header_of(bytes).is_some_and(|h| {
        h.init_state == READY
            && identity_valid(&h)
            && h.total_size == bytes.len() as u64
            && h.backing == DIR_BACKING
            && h.reserved0 == 0
            && h.reserved == [0; 14]
            && h.layout_fingerprint == FP.get()
    })
}

/// Checks what `open` made of `bytes`: `Ok` exactly when the header is valid, and otherwise an
/// error whose claim about the file is true.
fn judge_open(bytes: &[u8], outcome: &Result<Segment, OpenError>) -> Result<(), String> {
    let len = bytes.len() as u64;
    let Some(h) = header_of(bytes) else {
        return match outcome {
            Err(OpenError::TooSmall { size }) if *size == len => Ok(()),
            other => Err(format!("a {len}-byte file: expected TooSmall, got {other:?}")),
        };
    };
    let valid = is_valid(bytes);
    let identity_valid = identity_valid(&h);
    // Errors that say "this identity field is wrong", true of this header.
    let identity_claim = |e: &OpenError| match e {
        OpenError::BadMagic { found } => *found == h.magic && h.magic != MAGIC,
        OpenError::UnsupportedVersion { found } => {
            *found == h.format_version && *found != FORMAT_VERSION
        }
        OpenError::BadHeaderSize { found } => {
            *found == h.header_size && u64::from(*found) != HEADER_SIZE
        }
        OpenError::BadCreator { found } => {
            *found == h.creator_pid && !(1..=i32::MAX as u32).contains(found)
        }
        OpenError::NoCreatorToken => h.creator_token == 0,
        _ => false,
    };
    let true_claim = |e: &OpenError| match h.init_state {
        EMPTY => matches!(e, OpenError::Stale { creator: None }),
        INITIALIZING => {
            identity_claim(e)
                || (identity_valid
                    && match e {
                        OpenError::Stale { creator: Some(c) } => *c == h.creator(),
                        OpenError::InitTimeout { creator, .. } => *creator == h.creator(),
                        _ => false,
                    })
        }
        READY => {
            identity_claim(e)
                || (identity_valid
                    && match e {
                        OpenError::TooLarge { size, max } => {
                            *max == RANDOM_MAX && *size == h.total_size && *size > RANDOM_MAX
                        }
                        OpenError::SizeMismatch { header, file } => {
                            *header == h.total_size && *file == len && *header != len
                        }
                        OpenError::BadBacking { expected, found } => {
                            *expected == DIR_BACKING && *found == h.backing && *found != *expected
                        }
                        OpenError::BadReserved => h.reserved0 != 0 || h.reserved != [0; 14],
                        OpenError::FingerprintMismatch { expected, found } => {
                            *expected == FP.get()
                                && *found == h.layout_fingerprint
                                && *found != *expected
                        }
                        _ => false,
                    })
        }
        state => matches!(e, OpenError::CorruptState { found } if *found == state),
    };
    match outcome {
        Ok(segment) if valid => {
            if segment.len() != len
                || segment.creator() != h.creator()
                || segment.fingerprint() != FP
            {
                return Err(format!("opened {segment:?}, which does not match the file"));
            }
            Ok(())
        }
        Ok(segment) => Err(format!("accepted an invalid header {h:?} as {segment:?}")),
        Err(e) if valid => Err(format!("refused a valid {len}-byte segment: {e:?}")),
        Err(e) if true_claim(e) => Ok(()),
        Err(e) => Err(format!("{e:?} does not describe the {len}-byte file with header {h:?}")),
    }
}

/// Writes `bytes` as the segment file, opens it (read-write or read-only) and lists the
/// directory, and checks both outcomes.
fn try_file(fx: &Fixture, bytes: &[u8], read_only: bool) -> Result<(), String> {
    fs::write(fx.path(), bytes).map_err(|e| format!("writing the file: {e}"))?;
    let builder = fx.builder().max_size(RANDOM_MAX);
    let outcome = if read_only { builder.open_read_only() } else { builder.open() };
    judge_open(bytes, &outcome)?;
    drop(outcome);
    let found = list_in(fx.dir.path()).map_err(|e| format!("list_in failed: {e}"))?;
    match found.as_slice() {
        [info] if info.size == bytes.len() as u64 => {}
        other => return Err(format!("list_in found {other:?}")),
    }
    // A valid segment whose creator is alive (the mutated ones are ours) is listed as alive.
    let ours = header_of(bytes).is_some_and(|h| {
        Some(h.creator()) == ProcessId::current().ok()
            && Some(h.creator_token) == shmlane_segment::presence::current().ok()
    });
    if is_valid(bytes) && ours && found[0].status != SegmentStatus::Alive {
        return Err(format!("a valid live segment was listed as {:?}", found[0].status));
    }
    Ok(())
}

#[test]
fn random_files_give_a_truthful_outcome() {
    let fx = Fixture::empty();
    for_each_case("random file", 3000, |rng| {
        let len = (if rng.percent(50) { rng.below(4097) } else { rng.below(257) }) as usize;
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes);
        // Plant plausible values now and then so that cases get past the first checks.
        if len >= HEADER_SIZE as usize {
            let mut plant = |at: u64, value: &[u8]| {
                bytes[at as usize..][..value.len()].copy_from_slice(value);
            };
            if rng.percent(50) {
                plant(MAGIC_AT, &MAGIC);
            }
            if rng.percent(50) {
                plant(VERSION_AT, &FORMAT_VERSION.to_le_bytes());
                plant(HEADER_SIZE_AT, &(HEADER_SIZE as u32).to_le_bytes());
            }
            if rng.percent(50) {
                plant(INIT_STATE_AT, &(rng.below(3) as u32).to_le_bytes());
            }
            if rng.percent(30) {
                plant(TOTAL_SIZE_AT, &(len as u64).to_le_bytes());
                plant(BACKING_AT, &DIR_BACKING.to_le_bytes());
                plant(RESERVED0_AT, &[0; 4]);
                plant(RESERVED_AT, &[0; RESERVED_LEN as usize]);
                plant(FINGERPRINT_AT, &FP.get().to_le_bytes());
            }
        }
        let read_only = rng.percent(50);
        try_file(&fx, &bytes, read_only)
    });
}

#[test]
fn valid_segments_with_a_few_bytes_changed_give_a_truthful_outcome() {
    let bases: Vec<Vec<u8>> =
        [HEADER_SIZE, 1000, SIZE].iter().map(|&size| Fixture::with_size(size).pristine).collect();
    let fx = Fixture::empty();
    let mut opened = 0u32;
    for_each_case("mutated segment", 6000, |rng| {
        let mut bytes = bases[rng.below(bases.len() as u64) as usize].clone();
        for _ in 0..1 + rng.below(8) {
            let at = if rng.percent(85) {
                rng.below(HEADER_SIZE)
            } else {
                rng.below(bytes.len() as u64)
            };
            bytes[at as usize] = interesting_byte(rng);
        }
        if rng.percent(10) {
            if rng.percent(50) {
                bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
            } else {
                bytes.resize(bytes.len() + 1 + rng.below(64) as usize, 0);
            }
        }
        let read_only = rng.percent(50);
        opened += u32::from(is_valid(&bytes));
        try_file(&fx, &bytes, read_only)
    });
    // The mutations land on fields that need not be checked often enough to reach `Ok` too.
    assert!(opened > 100, "only {opened} mutated segments were valid");
}

// ---------------------------------------------------------------------------------------------
// 3. Pool descriptor and free-list lies.
// ---------------------------------------------------------------------------------------------

const BLOCK_SIZE: u64 = 64;
const BLOCK_ALIGN: u64 = 64;
const COUNT: u32 = 8;
/// Bytes of another structure placed after the pool.
const TRAILER: u64 = 4096;

// Pool descriptor fields (`PoolDescriptor` in `crates/segment/src/pool.rs`), from the region
// start.
const D_MAGIC: u64 = 0;
const D_VERSION: u64 = 8;
const D_COUNT: u64 = 12;
const D_BLOCK_SIZE: u64 = 16;
const D_BLOCK_ALIGN: u64 = 24;
/// Start of the descriptor's reserved bytes, which must be zero.
const D_RESERVED: u64 = 32;
/// End of the descriptor; all of it is validated.
const D_END: u64 = 64;
/// The free-list head, on its own cache line.
const HEAD_AT: u64 = 128;
/// The link words, one `u32` per block.
const LINKS_AT: u64 = HEAD_AT + size_of::<CachePadded<AtomicU64>>() as u64;
/// The state words, one `u32` per block.
const STATES_AT: u64 = LINKS_AT + 4 * COUNT as u64;
/// The empty free list / end of chain.
const NIL: u32 = u32::MAX;
const ALLOCATED: u32 = 1;

fn pack(tag: u32, index: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

/// A segment holding a pool of `COUNT` blocks followed by a trailer, opened a second time as a
/// peer would.
struct PoolFixture {
    dir: TempDir,
    creator: Segment,
    opener: Segment,
    region: Region,
    trailer: Region,
}

impl PoolFixture {
    fn new() -> PoolFixture {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let mut carver = Carver::new();
        let layout = BlockPool::layout(BLOCK_SIZE, BLOCK_ALIGN, COUNT).expect("pool layout");
        let region = carver.place(layout).expect("place the pool");
        let trailer = carver.place(RegionLayout { size: TRAILER, align: 64 }).expect("trailer");
        let builder = Segment::builder(NAME)
            .backing(Backing::Dir(dir.path().to_owned()))
            .fingerprint(FP)
            .open_timeout(Duration::ZERO);
        let creator = builder
            .clone()
            .size(carver.total_size())
            .create_with(|segment| {
                BlockPool::init_in(segment, region, BLOCK_SIZE, BLOCK_ALIGN, COUNT)?;
                Ok(())
            })
            .expect("create the pool segment");
        let opener = builder.open().expect("open the pool segment");
        PoolFixture { dir, creator, opener, region, trailer }
    }

    fn write(&self, at: u64, bytes: &[u8]) {
        self.creator.write_bytes(self.region.offset + at, bytes).expect("write in the pool region");
    }

    fn attach(&self) -> Result<BlockPool<'_>, PoolError> {
        BlockPool::attach(&self.opener, self.region)
    }

    fn attach_error(&self) -> PoolError {
        match self.attach() {
            Ok(pool) => panic!("attach accepted a corrupt descriptor: {pool:?}"),
            Err(e) => e,
        }
    }

    fn word32(&self, at: u64) -> &AtomicU32 {
        self.opener.get(Offset::new(self.region.offset + at)).expect("a word of the pool")
    }

    fn head(&self) -> &AtomicU64 {
        self.opener.get(Offset::new(self.region.offset + HEAD_AT)).expect("the free-list head")
    }

    fn link(&self, index: u32) -> &AtomicU32 {
        self.word32(LINKS_AT + 4 * u64::from(index))
    }

    fn state(&self, index: u32) -> &AtomicU32 {
        self.word32(STATES_AT + 4 * u64::from(index))
    }

    /// Offset of block 0 in the segment.
    fn first_block(&self) -> u64 {
        let after_states = STATES_AT + 4 * u64::from(COUNT);
        self.region.offset + after_states.next_multiple_of(BLOCK_ALIGN)
    }
}

#[test]
fn an_untouched_pool_attaches_and_hands_out_its_blocks() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("an untouched pool attaches");
    assert_eq!(pool.capacity(), COUNT);
    assert_eq!(pool.block_size(), BLOCK_SIZE);
    let first = pool.alloc().expect("a fresh pool has blocks");
    assert_eq!(first.get(), fx.first_block());
    assert_eq!(fx.state(0).load(Ordering::Relaxed), ALLOCATED);
    pool.free(first).expect("free the block");
}

#[test]
fn a_pool_with_bad_magic_is_refused() {
    let fx = PoolFixture::new();
    fx.write(D_MAGIC, b"NOTAPOOL");
    assert_eq!(fx.attach_error(), PoolError::BadMagic);
    fx.write(D_MAGIC, &[0; 8]);
    assert_eq!(fx.attach_error(), PoolError::BadMagic);
}

#[test]
fn a_pool_descriptor_with_nonzero_reserved_bytes_is_refused() {
    for at in D_RESERVED..D_END {
        let fx = PoolFixture::new();
        fx.write(at, &[0x01]);
        assert_eq!(
            fx.attach_error(),
            PoolError::Corrupt("reserved descriptor bytes are not zero"),
            "reserved byte {at}"
        );
    }
}

#[test]
fn a_pool_of_another_version_is_refused() {
    let fx = PoolFixture::new();
    for version in [0, 2, u32::MAX] {
        fx.write(D_VERSION, &version.to_le_bytes());
        assert_eq!(fx.attach_error(), PoolError::UnsupportedVersion(version));
    }
}

#[test]
fn a_block_count_beyond_the_region_is_corrupt() {
    let fx = PoolFixture::new();
    // COUNT + 1 would need more than the region (its blocks would overlap the trailer).
    for count in [COUNT + 1, 1000, u32::MAX - 1] {
        fx.write(D_COUNT, &count.to_le_bytes());
        assert!(matches!(fx.attach_error(), PoolError::Corrupt(_)), "count {count}");
    }
}

#[test]
fn a_block_count_of_zero_or_nil_is_corrupt() {
    let fx = PoolFixture::new();
    for count in [0, u32::MAX] {
        fx.write(D_COUNT, &count.to_le_bytes());
        assert!(matches!(fx.attach_error(), PoolError::Corrupt(_)), "count {count}");
    }
}

#[test]
fn a_block_size_of_zero_is_corrupt() {
    let fx = PoolFixture::new();
    fx.write(D_BLOCK_SIZE, &0u64.to_le_bytes());
    assert!(matches!(fx.attach_error(), PoolError::Corrupt(_)));
}

#[test]
fn a_block_alignment_that_is_not_a_power_of_two_is_corrupt() {
    let fx = PoolFixture::new();
    for align in [0, 3, 48, 96, (1 << 63) + 1, u64::MAX] {
        fx.write(D_BLOCK_ALIGN, &align.to_le_bytes());
        assert!(matches!(fx.attach_error(), PoolError::Corrupt(_)), "align {align}");
    }
    // A power of two, but above the 2 MiB limit.
    fx.write(D_BLOCK_SIZE, &(1u64 << 22).to_le_bytes());
    fx.write(D_BLOCK_ALIGN, &(1u64 << 22).to_le_bytes());
    assert!(matches!(fx.attach_error(), PoolError::Corrupt(_)));
}

#[test]
fn a_block_size_that_is_not_a_multiple_of_the_alignment_is_corrupt() {
    let fx = PoolFixture::new();
    for size in [1, 63, 65, 96, 100] {
        fx.write(D_BLOCK_SIZE, &u64::to_le_bytes(size));
        assert!(matches!(fx.attach_error(), PoolError::Corrupt(_)), "block size {size}");
    }
}

#[test]
fn a_huge_block_size_is_corrupt() {
    let fx = PoolFixture::new();
    for size in [!(BLOCK_ALIGN - 1), 1 << 62, 1 << 40] {
        fx.write(D_BLOCK_SIZE, &size.to_le_bytes());
        assert!(matches!(fx.attach_error(), PoolError::Corrupt(_)), "block size {size}");
    }
}

#[test]
fn a_descriptor_alignment_the_region_lacks_is_a_bad_region() {
    // One 256-byte block aligned to 256 fits in the region's length, but the region starts at
    // an offset aligned to 128 only.
    let fx = PoolFixture::new();
    assert_ne!(fx.region.offset % 256, 0);
    fx.write(D_COUNT, &1u32.to_le_bytes());
    fx.write(D_BLOCK_SIZE, &256u64.to_le_bytes());
    fx.write(D_BLOCK_ALIGN, &256u64.to_le_bytes());
    assert!(
        matches!(fx.attach_error(), PoolError::BadRegion { align: 256, offset, .. } if offset == fx.region.offset)
    );
}

#[test]
fn a_smaller_block_count_keeps_every_block_inside_the_region() {
    let fx = PoolFixture::new();
    let end = fx.region.end().expect("region end");
    for count in 1..COUNT {
        fx.write(D_COUNT, &count.to_le_bytes());
        let pool = fx.attach().expect("a smaller count fits");
        assert_eq!(pool.capacity(), count);
        // The links were laid out for COUNT blocks: following them from a smaller pool must
        // end in an error or exhaustion, never in a block outside the pool.
        for _ in 0..COUNT {
            match pool.alloc() {
                Ok(block) => {
                    assert!(block.get() >= fx.region.offset && block.get() + BLOCK_SIZE <= end);
                    assert!(pool.contains(block));
                }
                Err(AllocError::Corrupted(_)) | Err(AllocError::Exhausted { .. }) => break,
            }
        }
    }
}

#[test]
fn a_count_that_fits_a_caller_region_but_not_the_segment_is_refused() {
    // The caller's region claims more than the segment holds; the descriptor's count fits the
    // claim. Nothing outside the segment may be viewed.
    let fx = PoolFixture::new();
    let region = Region { offset: fx.region.offset, len: u64::MAX - fx.region.offset };
    fx.write(D_COUNT, &1_000_000u32.to_le_bytes());
    let error = BlockPool::attach(&fx.opener, region).expect_err("links beyond the segment");
    assert!(matches!(error, PoolError::Offset(OffsetError::OutOfBounds { .. })), "{error:?}");
    // Links and states inside the segment, blocks beyond it.
    fx.write(D_COUNT, &100u32.to_le_bytes());
    let error = BlockPool::attach(&fx.opener, region).expect_err("blocks beyond the segment");
    assert!(matches!(error, PoolError::Corrupt(_)), "{error:?}");
}

#[test]
fn a_pool_region_outside_the_segment_is_refused() {
    let fx = PoolFixture::new();
    for offset in [fx.opener.len(), fx.opener.len() - 32, u64::MAX - 16] {
        let error = BlockPool::attach(&fx.opener, Region { offset, len: fx.region.len })
            .expect_err("no pool outside the segment");
        assert!(matches!(error, PoolError::Offset(OffsetError::OutOfBounds { .. })), "{error:?}");
    }
}

#[test]
fn a_pool_in_a_read_only_mapping_is_refused() {
    let fx = PoolFixture::new();
    let reader = Segment::builder(NAME)
        .backing(Backing::Dir(fx.dir.path().to_owned()))
        .fingerprint(FP)
        .open_read_only()
        .expect("open read-only");
    let error = BlockPool::attach(&reader, fx.region).expect_err("atomics need a writable map");
    assert_eq!(error, PoolError::Offset(OffsetError::ReadOnly));
}

#[test]
fn a_head_naming_a_block_beyond_the_pool_is_corrupted() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("attach");
    for index in [COUNT, COUNT + 1, 1000, NIL - 1] {
        fx.head().store(pack(3, index), Ordering::Relaxed);
        assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))), "head index {index}");
    }
    // NIL is the empty list, not corruption.
    fx.head().store(pack(3, NIL), Ordering::Relaxed);
    assert_eq!(pool.alloc(), Err(AllocError::Exhausted { capacity: COUNT }));
}

#[test]
fn a_link_naming_a_block_beyond_the_pool_is_corrupted() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("attach");
    for link in [COUNT, 1000, NIL - 1] {
        fx.link(0).store(link, Ordering::Relaxed);
        assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))), "link {link}");
    }
    // Nothing was popped: block 0 is still free and first.
    assert_eq!(fx.state(0).load(Ordering::Relaxed), 0);
    assert_eq!(fx.head().load(Ordering::Relaxed) as u32, 0);
}

#[test]
fn a_cyclic_free_list_never_hands_a_block_out_twice() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("attach");
    fx.link(0).store(0, Ordering::Relaxed);
    let first = pool.alloc().expect("block 0 is free");
    assert_eq!(first.get(), fx.first_block());
    assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))));
}

#[test]
fn a_head_naming_an_allocated_block_is_corrupted() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("attach");
    let held = pool.alloc().expect("block 0");
    fx.head().store(pack(9, 0), Ordering::Relaxed);
    assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))));
    // The holder still owns it and can free it.
    assert_eq!(pool.free(held), Ok(()));
}

#[test]
fn a_corrupt_state_word_is_an_error_for_alloc_and_free() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("attach");
    fx.state(0).store(77, Ordering::Relaxed);
    assert!(matches!(pool.alloc(), Err(AllocError::Corrupted(_))));
    let second = pool.alloc().expect("block 1");
    fx.state(1).store(77, Ordering::Relaxed);
    assert_eq!(pool.free(second), Err(FreeError::Corrupted(second.get())));
}

#[test]
fn freeing_an_offset_that_is_not_a_block_is_foreign() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("attach");
    let first = fx.first_block();
    let past_end = first + u64::from(COUNT) * BLOCK_SIZE;
    for offset in [
        0,
        HEADER_SIZE,
        fx.region.offset,
        fx.region.offset + HEAD_AT,
        first - BLOCK_SIZE,
        first + 1,
        first + BLOCK_SIZE / 2,
        past_end - 1,
        past_end,
        fx.trailer.offset,
        fx.trailer.offset + 64,
        u64::MAX,
        u64::MAX - (u64::MAX - first) % BLOCK_SIZE,
    ] {
        assert_eq!(pool.free(BlockOffset::from_raw(offset)), Err(FreeError::Foreign(offset)));
    }
    assert_eq!(pool.stats().allocated, 0);
}

#[test]
fn a_double_free_is_refused() {
    let fx = PoolFixture::new();
    let pool = fx.attach().expect("attach");
    let block = pool.alloc().expect("a block");
    assert_eq!(pool.free(block), Ok(()));
    assert_eq!(pool.free(block), Err(FreeError::DoubleFree(block.get())));
    // A never-allocated block is free already.
    let last = BlockOffset::from_raw(fx.first_block() + u64::from(COUNT - 1) * BLOCK_SIZE);
    assert_eq!(pool.free(last), Err(FreeError::DoubleFree(last.get())));
}

// ---------------------------------------------------------------------------------------------
// 4. Random corruption of the pool region.
// ---------------------------------------------------------------------------------------------

/// Changes 1 to 8 bytes (or words) of the pool region, mostly where the pool looks.
fn mutate_pool(fx: &PoolFixture, rng: &mut Rng) {
    for _ in 0..1 + rng.below(8) {
        let at = match rng.below(100) {
            0..20 => rng.below(64),
            20..35 => HEAD_AT + rng.below(8),
            35..65 => LINKS_AT + rng.below(4 * u64::from(COUNT)),
            65..90 => STATES_AT + rng.below(4 * u64::from(COUNT)),
            _ => rng.below(fx.region.len),
        };
        if rng.percent(25) {
            // A whole little-endian word of a boundary value.
            let at = at & !3;
            let value: u32 = match rng.below(5) {
                0 => 0,
                1 => NIL,
                2 => rng.below(u64::from(COUNT) + 2) as u32,
                3 => ALLOCATED,
                _ => rng.next_u64() as u32,
            };
            fx.write(at, &value.to_le_bytes()[..(fx.region.len - at).min(4) as usize]);
        } else {
            fx.write(at, &[interesting_byte(rng)]);
        }
    }
}

/// Attaches to a randomly corrupted pool and runs a few operations, checking that every block
/// handed out lies inside the pool and is held by one owner at a time.
fn exercise_pool(fx: &PoolFixture, rng: &mut Rng, pristine: &[u8]) -> Result<(), String> {
    let mut now = vec![0u8; D_END as usize];
    fx.creator.read_bytes(fx.region.offset, &mut now).map_err(|e| e.to_string())?;
    let descriptor_intact = now == pristine[..D_END as usize];
    let pool = match fx.attach() {
        Ok(pool) => pool,
        Err(e) => {
            let truthful = !descriptor_intact
                && match &e {
                    PoolError::BadMagic => now[..8] != pristine[..8],
                    PoolError::UnsupportedVersion(v) => {
                        now[8..12] == v.to_le_bytes() && now[8..12] != pristine[8..12]
                    }
                    PoolError::Corrupt(_) | PoolError::BadRegion { .. } => true,
                    _ => false,
                };
            return if truthful { Ok(()) } else { Err(format!("attach: {e:?}")) };
        }
    };
    if descriptor_intact && pool.capacity() != COUNT {
        return Err(format!("intact descriptor, but {pool:?}"));
    }
    let (start, end) = (fx.region.offset, fx.region.end().expect("region end"));
    let block_size = pool.block_size();
    let mut held: Vec<BlockOffset> = Vec::new();
    let mut freed: Vec<BlockOffset> = Vec::new();
    for _ in 0..2 + rng.below(16) {
        match rng.below(4) {
            0 | 1 => match pool.alloc() {
                Ok(block) => {
                    let inside = block.get() >= start
                        && block.get().checked_add(block_size).is_some_and(|e| e <= end);
                    if !inside || !pool.contains(block) {
                        return Err(format!("alloc gave {block:?} outside {pool:?}"));
                    }
                    if held.contains(&block) {
                        return Err(format!("alloc gave {block:?}, which is still held"));
                    }
                    fx.opener
                        .write_bytes(block.get(), &vec![0xa5; block_size as usize])
                        .map_err(|e| format!("writing a block: {e}"))?;
                    freed.retain(|&b| b != block);
                    held.push(block);
                }
                Err(AllocError::Exhausted { capacity }) if capacity == pool.capacity() => {}
                Err(AllocError::Corrupted(_)) => {}
                Err(e) => return Err(format!("alloc: {e:?}")),
            },
            2 if !held.is_empty() => {
                let block = held.swap_remove(rng.below(held.len() as u64) as usize);
                pool.free(block).map_err(|e| format!("freeing a held block: {e:?}"))?;
                freed.push(block);
            }
            2 if !freed.is_empty() => {
                let block = freed[rng.below(freed.len() as u64) as usize];
                match pool.free(block) {
                    Err(FreeError::DoubleFree(at)) if at == block.get() => {}
                    other => return Err(format!("double free of {block:?}: {other:?}")),
                }
            }
            _ => {
                let offset = match rng.below(3) {
                    0 => rng.next_u64(),
                    _ => start.saturating_sub(64) + rng.below(fx.region.len + 128),
                };
                let block = BlockOffset::from_raw(offset);
                let outcome = pool.free(block);
                match outcome {
                    _ if held.contains(&block) => {
                        outcome.map_err(|e| format!("freeing a held block: {e:?}"))?;
                        held.retain(|&b| b != block);
                        freed.push(block);
                    }
                    Err(FreeError::DoubleFree(at)) if at == offset && freed.contains(&block) => {}
                    _ if freed.contains(&block) => {
                        return Err(format!("free of the freed {offset:#x}: {outcome:?}"));
                    }
                    Err(FreeError::Foreign(at)) if at == offset && !pool.contains(block) => {}
                    _ if !pool.contains(block) => {
                        return Err(format!("free of a foreign {offset:#x}: {outcome:?}"));
                    }
                    Ok(()) => freed.push(block),
                    Err(FreeError::DoubleFree(_) | FreeError::Corrupted(_)) => {}
                    Err(e) => return Err(format!("free of {offset:#x}: {e:?}")),
                }
            }
        }
    }
    let stats = pool.stats();
    if stats.allocated > stats.capacity || stats.capacity != pool.capacity() {
        return Err(format!("stats {stats:?}"));
    }
    Ok(())
}

#[test]
fn random_pool_corruption_gives_errors_not_out_of_pool_blocks() {
    let fx = PoolFixture::new();
    let mut pristine = vec![0u8; fx.region.len as usize];
    fx.creator.read_bytes(fx.region.offset, &mut pristine).expect("snapshot the pool");
    let mut attached = 0u32;
    for_each_case("pool corruption", 20_000, |rng| {
        fx.write(0, &pristine);
        mutate_pool(&fx, rng);
        attached += u32::from(fx.attach().is_ok());
        exercise_pool(&fx, rng, &pristine)
    });
    assert!(attached > 1000, "only {attached} corrupted pools attached");
}

#[test]
fn the_header_cannot_be_written_or_viewed_through_the_segment() {
    let fx = Fixture::new();
    let segment = fx.open().expect("open");
    let before = segment.fingerprint();
    for offset in [0, 56, HEADER_SIZE - 8] {
        assert!(matches!(
            segment.write_bytes(offset, &[0xff; 8]),
            Err(OffsetError::InHeader { offset: o }) if o == offset
        ));
        assert!(matches!(
            segment.get(Offset::<AtomicU64>::new(offset)),
            Err(OffsetError::InHeader { .. })
        ));
        assert!(matches!(segment.ptr(offset, 8, 8), Err(OffsetError::InHeader { .. })));
    }
    // Reading the header is allowed, and it is untouched.
    let mut bytes = [0u8; HEADER_SIZE as usize];
    segment.read_bytes(0, &mut bytes).expect("read the header");
    assert_eq!(&bytes[..], &fx.pristine[..HEADER_SIZE as usize]);
    assert_eq!(segment.fingerprint(), before);
    assert!(segment.write_bytes(HEADER_SIZE, &[1; 8]).is_ok(), "the first byte after it is ours");
}
