//! Crash injection in segment creation: a creator killed (SIGKILL, at the `segment.create.*`
//! crash points) before it published its segment `Ready`. Openers get a clear error within
//! their open timeout, discovery calls the file stale once nothing can still be at work on it,
//! `remove_stale` removes it, and survivors racing `open_or_create` recreate it: one creates
//! and initialises, the others open that one segment. A creator that is merely stalled before
//! publishing (SIGSTOP) keeps its file however old it is: it holds the creation lock.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use shmlane_reliability::CRASH_AT_ENV;
use shmlane_segment::{
    BlockPool, Carver, CreateError, EMPTY_GRACE, Fingerprint, OpenError, Region, Segment,
    SegmentBuilder, SegmentStatus,
};
use shmlane_testkit::{
    ChildProc, Cleanup, SHM_DIR, child_spec, exit_child, fail, process_lock, report, segment_path,
    spawn_child, spawn_child_with_env, split_spec, stop_when, unique_name,
};

/// Deadline of every wait on a child (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(20);
/// Openers' timeout in these tests.
const OPEN_TIMEOUT: Duration = Duration::from_millis(200);
/// Slack on top of it for a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(800);
/// Blocks in the pool every segment here holds.
const BLOCKS: u32 = 16;
/// Exit code of a creator that was not killed at its armed point.
const EXIT_NOT_KILLED: i32 = 5;
/// Survivors racing `open_or_create`.
const SURVIVORS: usize = 3;

/// The creation crash points, in the order they are reached, and what an opener reports
/// once the creator died there.
const POINTS: [(&str, Leaves); 4] = [
    ("segment.create.opened", Leaves::EmptyFile),
    ("segment.create.sized", Leaves::ZeroHeader),
    ("segment.create.initializing", Leaves::DeadCreator),
    ("segment.create.before_ready", Leaves::DeadCreator),
];

/// What a creator killed at a point leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaves {
    /// A zero-length file: no header, no creator recorded.
    EmptyFile,
    /// A sized, zero-filled file: no header yet.
    ZeroHeader,
    /// A header naming its (dead) creator, state `Initializing`.
    DeadCreator,
}

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("create", [name]) => {
            let result = builder(name).create_with(init_pool);
            fail(EXIT_NOT_KILLED, format!("create returned {result:?} though a point was armed"));
        }
        ("survivor", [name]) => child_survivor(name),
        ("churn", [name]) => loop {
            // Creates and removes the segment again and again, to be stopped in the middle.
            let segment = Segment::builder(*name).size(8 << 20).create();
            drop(segment.unwrap_or_else(|e| fail(3, e)));
        },
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

fn fingerprint() -> Fingerprint {
    Fingerprint::new("reliability.crash_segment").with_u64(u64::from(BLOCKS))
}

/// The pool's region and the segment's size.
fn layout() -> (Region, u64) {
    let mut carver = Carver::new();
    let pool = carver.place(BlockPool::layout(64, 64, BLOCKS).expect("pool layout"));
    (pool.expect("place the pool"), carver.total_size())
}

fn builder(name: &str) -> SegmentBuilder {
    Segment::builder(name).size(layout().1).fingerprint(fingerprint()).open_timeout(OPEN_TIMEOUT)
}

fn init_pool(segment: &Segment) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    BlockPool::init_in(segment, layout().0, 64, 64, BLOCKS)?;
    Ok(())
}

/// Races the others to `open_or_create`; reports whether it created and the file's inode, once
/// it allocated a block from the pool it got and freed it again. (Whether the pool is whole is
/// for the parent to check once every survivor is done: meanwhile another may hold a block.)
fn child_survivor(name: &str) {
    let segment = builder(name)
        .open_timeout(Duration::from_secs(5))
        .unlink_on_drop(false)
        .open_or_create_with(init_pool)
        .unwrap_or_else(|e| fail(3, format!("open_or_create: {e}")));
    let pool = BlockPool::attach(&segment, layout().0).unwrap_or_else(|e| fail(3, e));
    let block = pool.alloc().unwrap_or_else(|e| fail(3, e));
    pool.free(block).unwrap_or_else(|e| fail(3, e));
    let inode = std::fs::metadata(segment.path().unwrap_or(Path::new("/")))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or_else(|e| fail(3, e));
    report("created", segment.is_creator());
    report("inode", inode);
}

/// The kind in this binary's segment names ([`unique_name`]).
const SEGMENTS: &str = "rel-crashseg";

/// Discovery's verdict on the segment `name` in /dev/shm.
fn status_of(name: &str) -> SegmentStatus {
    let listed = shmlane_segment::list().expect("list /dev/shm");
    let info = listed.into_iter().find(|i| i.name.as_str() == name);
    info.expect("the segment is listed").status
}

/// Removes the segment `name` if discovery calls it stale (and nothing else of /dev/shm, where
/// other tests run); whether it did.
fn remove_if_stale(name: &str) -> bool {
    let removed =
        shmlane_segment::remove_stale_matching(Path::new(SHM_DIR), |n| n.as_str() == name)
            .expect("remove_stale");
    assert!(removed.failed.is_empty(), "{:?}", removed.failed);
    !removed.removed.is_empty()
}

/// Makes the file look `EMPTY_GRACE` plus a second old (its modification time), as if it had
/// been left there that long.
fn age(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).expect("open to age");
    let past = SystemTime::now() - EMPTY_GRACE - Duration::from_secs(1);
    file.set_modified(past).expect("set the modification time");
}

/// Whether someone holds an exclusive `flock` on `file` (a creator's creation lock).
fn creation_locked(file: &std::fs::File) -> bool {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(file, FlockOperation::Unlock);
            false
        }
        Err(errno) => errno == rustix::io::Errno::WOULDBLOCK,
    }
}

/// Spawns a creator armed to die at `point` and waits for its SIGKILL.
fn creator_killed_at(name: &str, point: &str) {
    let mut creator = spawn_child_with_env("create", &[name], &[(CRASH_AT_ENV, point)]);
    creator.expect_crash(point, TIMEOUT);
}

/// Opens the dead creator's segment; checks the error and that it came within the timeout.
fn check_opener(name: &str, point: &str, leaves: Leaves) -> Duration {
    let started = Instant::now();
    let result = builder(name).open();
    let waited = started.elapsed();
    match (leaves, &result) {
        (Leaves::EmptyFile, Err(OpenError::TooSmall { size: 0 })) => {}
        (Leaves::ZeroHeader, Err(OpenError::Stale { creator: None })) => {}
        (Leaves::DeadCreator, Err(OpenError::Stale { creator: Some(_) })) => {
            // A recorded creator proven dead: no need to wait out the timeout.
            assert!(waited < OPEN_TIMEOUT, "{point}: the dead creator took {waited:?} to see");
        }
        _ => panic!("{point}: opening gave {result:?}, expected what a {leaves:?} gives"),
    }
    assert!(waited < OPEN_TIMEOUT + SLACK, "{point}: the opener took {waited:?}");
    waited
}

/// Spawns the survivors at once and checks that exactly one created the segment, all got the
/// same file, and its pool is whole once they are done.
fn race_survivors(name: &str, point: &str) -> Duration {
    let started = Instant::now();
    let mut survivors: Vec<ChildProc> =
        (0..SURVIVORS).map(|_| spawn_child("survivor", &[name])).collect();
    let mut creators = 0;
    let mut inodes = Vec::new();
    for survivor in &mut survivors {
        creators += u32::from(survivor.report("created", TIMEOUT) == "true");
        inodes.push(survivor.report_u64("inode", TIMEOUT));
        survivor.expect_success(TIMEOUT);
    }
    let took = started.elapsed();
    assert_eq!(creators, 1, "{point}: exactly one survivor creates the segment again");
    inodes.dedup();
    assert_eq!(inodes.len(), 1, "{point}: every survivor has the same file");
    let segment = builder(name).open().expect("the recreated segment opens");
    let pool = BlockPool::attach(&segment, layout().0).expect("its pool");
    assert_eq!((pool.capacity(), pool.stats().allocated), (BLOCKS, 0), "{point}");
    took
}

#[test]
fn a_creator_killed_at_each_creation_point_is_refused_quickly_listed_stale_and_removed() {
    let _serial = process_lock();
    for (point, leaves) in POINTS {
        let name = unique_name(SEGMENTS, "removed");
        let path = segment_path(&name);
        let _cleanup = Cleanup(path.clone());
        creator_killed_at(&name, point);
        let waited = check_opener(&name, point, leaves);

        if leaves != Leaves::DeadCreator {
            // Nothing names a creator: a young file may belong to one still at work.
            assert_eq!(status_of(&name), SegmentStatus::Initializing, "{point}");
            assert!(!remove_if_stale(&name), "{point}: a young headerless file was removed");
            age(&path);
        }
        assert_eq!(status_of(&name), SegmentStatus::Stale, "{point}");
        assert!(remove_if_stale(&name), "{point}: remove_stale did not remove it");
        assert!(!path.exists(), "{point}: the file is still there");
        eprintln!("{point}: the opener gave up after {waited:?}");
    }
}

#[test]
fn survivors_racing_open_or_create_after_a_creator_died_get_one_fresh_segment() {
    let _serial = process_lock();
    for (point, leaves) in POINTS {
        let name = unique_name(SEGMENTS, "recreated");
        let path = segment_path(&name);
        let _cleanup = Cleanup(path.clone());
        creator_killed_at(&name, point);
        let dead = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));

        if leaves != Leaves::DeadCreator {
            // Young and without a header: not provably abandoned yet, so not taken over.
            match builder(&name).open_or_create() {
                Err(CreateError::Existing(
                    OpenError::TooSmall { .. } | OpenError::Stale { .. },
                )) => {}
                other => panic!("{point}: open_or_create over a young file gave {other:?}"),
            }
            age(&path);
        }
        let took = race_survivors(&name, point);
        let now = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_ne!(now.ok(), dead.ok(), "{point}: the dead creator's file is still there");
        eprintln!("{point}: {SURVIVORS} survivor processes recovered in {took:?}");
    }
}

#[test]
fn a_creator_stalled_before_publishing_keeps_its_file_however_old_until_it_dies() {
    let _serial = process_lock();
    let name = unique_name(SEGMENTS, "stalled");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    let mut creator = spawn_child("churn", &[&name]);
    // Stop it while its file exists without a published header, after it took the creation
    // lock (sizing 8 MiB takes a while). The microseconds between creating the file and
    // locking it are covered by the file's age alone (`EMPTY_GRACE`), which `age` fakes here.
    let unpublished = || {
        let Ok(file) = std::fs::File::open(&path) else { return false };
        let mut header = Vec::new();
        let read = std::io::Read::read_to_end(&mut std::io::Read::take(&file, 128), &mut header);
        // Empty, or the state word (offset 56) still zero.
        let headerless = read.is_ok() && (header.len() < 60 || header[56..60] == [0; 4]);
        headerless && creation_locked(&file)
    };
    assert!(stop_when(&mut creator, 5_000, unpublished), "never caught before publishing");
    age(&path);

    // Old, and no header: but its creator holds the creation lock, so it is at work.
    assert_eq!(status_of(&name), SegmentStatus::Initializing);
    assert!(!remove_if_stale(&name), "a live creator's file was removed");
    match builder(&name).open() {
        Err(OpenError::Unpublished { waited }) => assert!(waited >= OPEN_TIMEOUT),
        other => panic!("opening a stalled creator's file gave {other:?}"),
    }
    match builder(&name).open_or_create() {
        Err(CreateError::Existing(OpenError::Unpublished { .. })) => {}
        other => panic!("open_or_create over a stalled creator's file gave {other:?}"),
    }
    assert!(path.exists());

    creator.kill();
    assert_eq!(status_of(&name), SegmentStatus::Stale);
    assert!(remove_if_stale(&name));
    assert!(!path.exists());
}
