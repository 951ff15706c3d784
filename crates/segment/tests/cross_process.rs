//! Cross-process behaviour of segments, with real processes.
//!
//! Each test that needs a peer re-executes this test binary as a child:
//! `current_exe --exact child_entry --nocapture --test-threads=1` with `SHMLANE_CHILD=role:args`
//! in its environment. [`child_entry`] then runs that role and exits with a code (0 on success,
//! 101 when the role panicked, others as documented on each role); without the variable it
//! returns at once, so it passes as an ordinary test. Children report values to the parent as
//! stdout lines `@@shmlane KEY VALUE`. Every wait on a child has a deadline: a hang kills the
//! child and fails the test instead of blocking CI.
//!
//! Segment names carry the pid and a counter; every file a test creates is removed on success
//! and, through [`Cleanup`] guards, on failure too.
//!
//! The tests that make or sweep stale segments in `/dev/shm` hold [`process_lock`], so one
//! test's `remove_stale()` never takes another's stale segment from under it.

use std::io::{IoSlice, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use shmlane_segment::{
    AllocError, Backing, BlockOffset, BlockPool, Carver, CreateError, Fingerprint, HEADER_SIZE,
    Offset, OffsetError, OpenError, PoolError, ProcessId, Region, RegionLayout, Segment,
    SegmentBuilder, SegmentName, SegmentStatus, TransferError,
};
use shmlane_testkit::{
    CHILD_TIMEOUT, Cleanup, SHM_DIR, child_spec, exit_child, process_lock, report, segment_path,
    spawn_child, split_spec, unique_name, unique_segment,
};

// ---------------------------------------------------------------------------------------------
// Harness (the child-process machinery is `shmlane_testkit`): names, file helpers.
// ---------------------------------------------------------------------------------------------

/// Exit code of a child whose environment cannot run the role (for example no `unshare`).
const EXIT_SKIP: i32 = 77;
/// Exit code of a churn child that was handed a block another process still held.
const EXIT_DOUBLE_HANDOUT: i32 = 3;

/// The kind in this binary's segment names ([`unique_name`]).
const SEGMENTS: &str = "xproc";

/// Whether a path exists as anything, a dangling symlink included.
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("alloc-one", [name, capacity]) => child_alloc_one(name, capacity.parse().unwrap()),
        ("churn", [name, capacity, id, iterations]) => child_churn(
            name,
            capacity.parse().unwrap(),
            id.parse().unwrap(),
            iterations.parse().unwrap(),
        ),
        ("memfd-receiver", [socket]) => child_memfd_receiver(Path::new(socket)),
        ("die-in-init", [name]) => child_die_in_init(name),
        ("mode-under-umask", [dir]) => child_mode_under_umask(Path::new(dir)),
        ("as-nobody", [private, shared, uid, gid]) => {
            child_as_nobody(private, shared, uid.parse().unwrap(), gid.parse().unwrap())
        }
        ("tmpfs-no-space", [dir, name]) => child_tmpfs_no_space(Path::new(dir), name),
        ("writer", [name]) => child_writer(name),
        ("list", [name]) => child_list(name),
        ("open-drop", [name]) => child_open_drop(name),
        ("send-to-dead-peer", [name]) => child_send_to_dead_peer(name),
        _ => panic!("unknown child role {spec:?}"),
    }
    exit_child();
}

// ---------------------------------------------------------------------------------------------
// A segment holding a block pool and two control words, laid out the same way everywhere.
// ---------------------------------------------------------------------------------------------

const BLOCK_SIZE: u64 = 64;

struct PoolLayout {
    pool: Region,
    /// A child publishes a block offset here.
    slot: Offset<AtomicU64>,
    /// Churn children count themselves in here before starting.
    ready: Offset<AtomicU32>,
    size: u64,
}

fn pool_layout(capacity: u32) -> PoolLayout {
    let mut carver = Carver::new();
    let pool = carver.place(BlockPool::layout(BLOCK_SIZE, BLOCK_SIZE, capacity).unwrap()).unwrap();
    let control = carver.place(RegionLayout { size: 16, align: 8 }).unwrap();
    PoolLayout {
        pool,
        slot: control.offset_of(0).unwrap(),
        ready: control.offset_of(8).unwrap(),
        size: carver.total_size(),
    }
}

fn pool_fingerprint(capacity: u32) -> Fingerprint {
    Fingerprint::new("cross-process-pool").with_u64(BLOCK_SIZE).with_u64(u64::from(capacity))
}

fn create_pool_segment(name: &str, capacity: u32) -> Segment {
    let layout = pool_layout(capacity);
    Segment::builder(name)
        .size(layout.size)
        .fingerprint(pool_fingerprint(capacity))
        .create_with(|segment| {
            BlockPool::init_in(segment, layout.pool, BLOCK_SIZE, BLOCK_SIZE, capacity)?;
            Ok(())
        })
        .expect("create the pool segment")
}

fn open_pool_segment(name: &str, capacity: u32) -> Segment {
    Segment::builder(name)
        .fingerprint(pool_fingerprint(capacity))
        .open()
        .expect("open the parent's pool segment")
}

/// The value the `alloc-one` child writes into its block.
fn alloc_one_value(pid: u32) -> u64 {
    0x5eed_0000_0000_0000 | u64::from(pid)
}

// ---------------------------------------------------------------------------------------------
// 1. A child allocates from the parent's pool and writes through an atomic.
// ---------------------------------------------------------------------------------------------

fn child_alloc_one(name: &str, capacity: u32) {
    let segment = open_pool_segment(name, capacity);
    assert!(!segment.is_creator());
    assert_eq!(segment.creator().pid, std::os::unix::process::parent_id());
    let layout = pool_layout(capacity);
    let pool = BlockPool::attach(&segment, layout.pool).expect("attach to the parent's pool");
    let block = pool.alloc().expect("a free block");
    let value = segment.get::<AtomicU64>(block.typed()).unwrap();
    value.store(alloc_one_value(std::process::id()), Ordering::Release);
    segment.get(layout.slot).unwrap().store(block.get(), Ordering::Release);
    report("offset", block.get());
    // Exits without freeing: the block stays allocated for the parent to see.
}

#[test]
fn child_allocates_from_parents_pool_and_parent_sees_its_write() {
    const CAPACITY: u32 = 16;
    let (name, _cleanup) = unique_segment(SEGMENTS, "alloc-one");
    let segment = create_pool_segment(&name, CAPACITY);
    let layout = pool_layout(CAPACITY);
    let pool = BlockPool::attach(&segment, layout.pool).unwrap();
    assert_eq!(pool.stats().allocated, 0);

    let mut child = spawn_child("alloc-one", &[&name, &CAPACITY.to_string()]);
    let reported: u64 = child.report("offset", CHILD_TIMEOUT).parse().unwrap();
    let child_pid = child.pid();
    child.expect_success(CHILD_TIMEOUT);

    let block = BlockOffset::from_raw(reported);
    assert!(pool.contains(block), "the child reported {reported:#x}, not a block of the pool");
    assert_eq!(segment.get(layout.slot).unwrap().load(Ordering::Acquire), reported);
    let value = segment.get::<AtomicU64>(block.typed()).unwrap().load(Ordering::Acquire);
    assert_eq!(value, alloc_one_value(child_pid));
    assert_eq!(pool.stats().allocated, 1, "the child's block shows as allocated to the parent");

    // The parent can free what the child allocated, and the block is then handed out again.
    pool.free(block).unwrap();
    assert_eq!(pool.stats().allocated, 0);
    let mut all: Vec<_> = (0..CAPACITY).map(|_| pool.alloc().unwrap()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), CAPACITY as usize);
    assert!(all.contains(&block));
}

// ---------------------------------------------------------------------------------------------
// 2. Many processes alloc/free on one pool: no block handed out twice, none lost.
// ---------------------------------------------------------------------------------------------

/// Processes in the churn test.
const CHURN_CHILDREN: u32 = 4;

fn child_churn(name: &str, capacity: u32, id: u64, iterations: u32) {
    const MAX_HELD: u32 = 4;
    let segment = open_pool_segment(name, capacity);
    let layout = pool_layout(capacity);
    let pool = BlockPool::attach(&segment, layout.pool).unwrap();
    let stamp = |block: BlockOffset| segment.get::<AtomicU64>(block.typed()).unwrap();

    // Start together, so the processes really overlap.
    let ready = segment.get(layout.ready).unwrap();
    ready.fetch_add(1, Ordering::AcqRel);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready.load(Ordering::Acquire) < CHURN_CHILDREN {
        assert!(Instant::now() < deadline, "the other churn children never started");
        thread::yield_now();
    }

    let mut held = Vec::with_capacity(MAX_HELD as usize);
    let (mut allocs, mut exhausted) = (0u64, 0u64);
    for i in 0..iterations {
        let want = 1 + (i % MAX_HELD) as usize;
        while held.len() < want {
            match pool.alloc() {
                Ok(block) => {
                    let previous = stamp(block).swap(id, Ordering::AcqRel);
                    if previous != 0 {
                        eprintln!(
                            "child {id}: block {:#x} was handed to me while child {previous} \
                             held it (iteration {i})",
                            block.get()
                        );
                        std::process::exit(EXIT_DOUBLE_HANDOUT);
                    }
                    held.push(block);
                    allocs += 1;
                }
                Err(AllocError::Exhausted { .. }) => {
                    exhausted += 1;
                    break;
                }
                Err(error) => panic!("child {id}: alloc failed: {error}"),
            }
        }
        for block in held.drain(..) {
            let previous = stamp(block).swap(0, Ordering::AcqRel);
            if previous != id {
                eprintln!(
                    "child {id}: my block {:#x} was stamped by child {previous} while I held it \
                     (iteration {i})",
                    block.get()
                );
                std::process::exit(EXIT_DOUBLE_HANDOUT);
            }
            pool.free(block).unwrap_or_else(|e| panic!("child {id}: free failed: {e}"));
        }
        if i % 64 == 0 {
            thread::yield_now();
        }
    }
    report("allocs", allocs);
    report("exhausted", exhausted);
}

#[test]
fn concurrent_processes_never_share_or_lose_a_block() {
    // Two children holding their most already exhaust the pool: `Exhausted` is exercised too.
    const CAPACITY: u32 = 6;
    const CHILDREN: u64 = CHURN_CHILDREN as u64;
    const ITERATIONS: u32 = 50_000;
    let (name, _cleanup) = unique_segment(SEGMENTS, "churn");
    let segment = create_pool_segment(&name, CAPACITY);
    let layout = pool_layout(CAPACITY);
    let pool = BlockPool::attach(&segment, layout.pool).unwrap();

    let capacity = CAPACITY.to_string();
    let iterations = ITERATIONS.to_string();
    let mut children: Vec<_> = (1..=CHILDREN)
        .map(|id| spawn_child("churn", &[&name, &capacity, &id.to_string(), &iterations]))
        .collect();
    let mut total_allocs = 0u64;
    for child in &mut children {
        let status = child.wait(Duration::from_secs(120));
        assert_ne!(
            status.code(),
            Some(EXIT_DOUBLE_HANDOUT),
            "a block was handed out twice. stderr:\n{}",
            child.stderr()
        );
        assert!(status.success(), "churn child failed with {status}. stderr:\n{}", child.stderr());
        let allocs: u64 = child.report("allocs", CHILD_TIMEOUT).parse().unwrap();
        assert!(allocs > 0, "a churn child never got a block");
        total_allocs += allocs;
    }
    // Each iteration asks for one to four blocks; exhaustion only trims a few of them.
    assert!(total_allocs >= CHILDREN * u64::from(ITERATIONS), "only {total_allocs} allocations");
    assert_eq!(segment.get(layout.ready).unwrap().load(Ordering::Acquire), CHURN_CHILDREN);

    assert_eq!(pool.stats().allocated, 0, "every block was freed");
    let mut blocks: Vec<_> = (0..CAPACITY).map(|_| pool.alloc().expect("no block lost")).collect();
    assert_eq!(pool.alloc(), Err(AllocError::Exhausted { capacity: CAPACITY }));
    for &block in &blocks {
        let stamp = segment.get::<AtomicU64>(block.typed()).unwrap();
        assert_eq!(stamp.load(Ordering::Acquire), 0, "every child cleared its stamps");
    }
    blocks.sort();
    blocks.dedup();
    assert_eq!(blocks.len(), CAPACITY as usize, "capacity distinct blocks");
    for block in blocks {
        pool.free(block).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Memfd segments over a Unix socket.
// ---------------------------------------------------------------------------------------------

const MEMFD_SIZE: u64 = 4096;
const MEMFD_VALUE: u64 = 0x00fd_5ea1_ed00_0001;

fn memfd_fingerprint() -> Fingerprint {
    Fingerprint::new("cross-process-memfd").with_u64(MEMFD_SIZE)
}

fn memfd_value_offset() -> Offset<AtomicU64> {
    Offset::new(HEADER_SIZE)
}

fn child_memfd_receiver(socket: &Path) {
    let stream = UnixStream::connect(socket).expect("connect to the parent");
    let segment = SegmentBuilder::new("received")
        .fingerprint(memfd_fingerprint())
        .receive(&stream, true)
        .expect("receive the parent's memfd segment");
    assert!(segment.path().is_none());
    assert_eq!(segment.len(), MEMFD_SIZE);
    segment.get(memfd_value_offset()).unwrap().store(MEMFD_VALUE, Ordering::Release);

    // The seals hold: no peer can shrink (or grow) the file under the other mappings.
    match rustix::fs::ftruncate(segment.fd(), 0) {
        Err(Errno::PERM) => {}
        other => panic!("shrinking a sealed memfd gave {other:?}, expected EPERM"),
    }
    match rustix::fs::ftruncate(segment.fd(), 2 * MEMFD_SIZE) {
        Err(Errno::PERM) => {}
        other => panic!("growing a sealed memfd gave {other:?}, expected EPERM"),
    }
    let size = rustix::fs::fstat(segment.fd()).unwrap().st_size;
    assert_eq!(u64::try_from(size).unwrap(), MEMFD_SIZE);
    report("truncate", "EPERM");
}

#[test]
fn memfd_segment_passes_to_a_child_which_writes_but_cannot_resize_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("peer.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let segment = Segment::builder(unique_name(SEGMENTS, "memfd"))
        .backing(Backing::Memfd)
        .size(MEMFD_SIZE)
        .fingerprint(memfd_fingerprint())
        .create()
        .unwrap();
    assert!(segment.path().is_none());

    let mut child = spawn_child("memfd-receiver", &[socket.to_str().unwrap()]);
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait() {
                    panic!("the child exited ({status}) before connecting: {}", child.stderr());
                }
                assert!(Instant::now() < deadline, "the child never connected");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    segment.send_fd(&stream).unwrap();
    assert_eq!(child.report("truncate", CHILD_TIMEOUT), "EPERM");
    child.expect_success(CHILD_TIMEOUT);

    assert_eq!(segment.get(memfd_value_offset()).unwrap().load(Ordering::Acquire), MEMFD_VALUE);
    let size = rustix::fs::fstat(segment.fd()).unwrap().st_size;
    assert_eq!(u64::try_from(size).unwrap(), MEMFD_SIZE);
}

/// Sends one descriptor the way `Segment::send_fd` does (tag byte `S`), but for any fd.
fn send_raw_fd(socket: &UnixStream, fd: BorrowedFd<'_>) {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    rustix::net::sendmsg(socket, &[IoSlice::new(b"S")], &mut control, SendFlags::empty()).unwrap();
}

#[test]
fn receiving_an_unsealed_memfd_is_refused() {
    // A real segment's bytes, copied into a plain memfd: only the seals differ.
    let original = Segment::builder(unique_name(SEGMENTS, "unsealed"))
        .backing(Backing::Memfd)
        .size(MEMFD_SIZE)
        .fingerprint(memfd_fingerprint())
        .create()
        .unwrap();
    let mut bytes = vec![0u8; MEMFD_SIZE as usize];
    original.read_bytes(0, &mut bytes).unwrap();
    let plain = rustix::fs::memfd_create(
        "shmlane-test-unsealed",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&plain, MEMFD_SIZE).unwrap();
    assert_eq!(rustix::io::pwrite(&plain, &bytes, 0).unwrap(), bytes.len());
    let receiver = || SegmentBuilder::new("unsealed").fingerprint(memfd_fingerprint());
    let (sender, socket) = UnixStream::pair().unwrap();

    send_raw_fd(&sender, plain.as_fd());
    match receiver().receive(&socket, true) {
        Err(TransferError::NotSealed { found }) => assert_eq!(found, SealFlags::empty()),
        other => panic!("an unsealed memfd gave {other:?}"),
    }

    // Sealed against shrinking only: a peer could still grow it and add seals. Refused too.
    rustix::fs::fcntl_add_seals(&plain, SealFlags::SHRINK).unwrap();
    send_raw_fd(&sender, plain.as_fd());
    match receiver().receive(&socket, true) {
        Err(TransferError::NotSealed { found }) => assert_eq!(found, SealFlags::SHRINK),
        other => panic!("a memfd sealed only against shrinking gave {other:?}"),
    }

    // With every required seal the same bytes are accepted: the seals were the only reason.
    rustix::fs::fcntl_add_seals(&plain, SealFlags::GROW | SealFlags::SEAL).unwrap();
    send_raw_fd(&sender, plain.as_fd());
    let received = receiver().receive(&socket, false).expect("a fully sealed copy is accepted");
    assert_eq!(received.len(), MEMFD_SIZE);
    assert_eq!(received.creator(), original.creator());
}

#[test]
fn sending_a_posix_shm_segment_is_refused() {
    let (name, _cleanup) = unique_segment(SEGMENTS, "send-posix");
    let segment = Segment::builder(&name).size(4096).create().unwrap();
    let (sender, receiver) = UnixStream::pair().unwrap();
    assert!(matches!(segment.send_fd(&sender), Err(TransferError::NotMemfd)));
    // Nothing went over the socket.
    receiver.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let nothing = (&receiver).read(&mut byte).unwrap_err();
    assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock);
}

/// With SIGPIPE at its default action (as in a C host or a Rust binary that restores it),
/// sending to a peer that is gone must be an error, not a signal that kills the sender.
fn child_send_to_dead_peer(name: &str) {
    // SAFETY: `signal` with SIG_DFL installs no handler; this child runs one thread here.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(previous, libc::SIG_ERR);
    let segment = Segment::builder(name).size(4096).backing(Backing::Memfd).create().unwrap();
    let (sender, receiver) = UnixStream::pair().unwrap();
    drop(receiver);
    match segment.send_fd(&sender) {
        Err(TransferError::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(Errno::PIPE.raw_os_error()));
        }
        other => panic!("expected EPIPE, got {other:?}"),
    }
}

#[test]
fn sending_to_a_dead_peer_is_an_error_not_sigpipe() {
    let mut child = spawn_child("send-to-dead-peer", &[&unique_name(SEGMENTS, "dead-peer")]);
    child.expect_success(CHILD_TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// 4. A creator killed during initialisation leaves a stale segment that is detected and swept.
// ---------------------------------------------------------------------------------------------

fn stale_fingerprint() -> Fingerprint {
    Fingerprint::new("cross-process-stale")
}

fn child_die_in_init(name: &str) {
    let result =
        Segment::builder(name).size(4096).fingerprint(stale_fingerprint()).create_with(|_| {
            report("initializing", std::process::id());
            loop {
                thread::sleep(Duration::from_secs(3600));
            }
        });
    panic!("create_with returned although init never ends: {result:?}");
}

#[test]
fn creator_killed_during_init_leaves_a_stale_segment_that_is_detected_and_removed() {
    let _stale = process_lock();
    let name = unique_name(SEGMENTS, "killed-in-init");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    let open = |timeout| {
        Segment::builder(&name).fingerprint(stale_fingerprint()).open_timeout(timeout).open()
    };

    let mut child = spawn_child("die-in-init", &[&name]);
    let child_pid = child.pid();
    assert_eq!(child.report("initializing", CHILD_TIMEOUT), child_pid.to_string());

    // While the creator lives, openers wait for it and then time out; nobody calls it stale.
    match open(Duration::from_millis(50)) {
        Err(OpenError::InitTimeout { creator, .. }) => assert_eq!(creator.pid, child_pid),
        other => panic!("opening while the creator initialises gave {other:?}"),
    }
    let listed = shmlane_segment::list().unwrap();
    let info = listed.iter().find(|i| i.path == path).expect("the segment is listed");
    assert_eq!(info.status, SegmentStatus::Initializing);

    let status = child.kill();
    assert!(!status.success());

    let started = Instant::now();
    match open(Duration::from_secs(5)) {
        Err(OpenError::Stale { creator: Some(creator) }) => assert_eq!(creator.pid, child_pid),
        other => panic!("opening after the creator died gave {other:?}"),
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(1), "the dead creator took {waited:?} to detect");

    let listed = shmlane_segment::list().unwrap();
    let info = listed.iter().find(|i| i.path == path).expect("the segment is listed");
    assert_eq!(info.status, SegmentStatus::Stale);
    assert_eq!(info.creator.map(|c| c.pid), Some(child_pid));

    let removed = shmlane_segment::remove_stale().unwrap().removed;
    assert!(removed.iter().any(|i| i.path == path), "remove_stale removed {removed:?}");
    assert!(!exists(&path), "the stale file is gone from /dev/shm");
    assert!(matches!(open(Duration::from_millis(50)), Err(OpenError::NotFound { .. })));
}

// ---------------------------------------------------------------------------------------------
// 5. Permissions, exclusive creation and planted symlinks.
// ---------------------------------------------------------------------------------------------

#[test]
fn created_segment_is_private_by_default() {
    let name = unique_name(SEGMENTS, "mode-default");
    let segment = Segment::builder(&name).size(4096).create().unwrap();
    assert_eq!(mode_of(segment.path().unwrap()), 0o600);
}

fn child_mode_under_umask(dir: &Path) {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // The umask is in force: an ordinary file loses every group and other bit.
    let probe = dir.join("probe");
    drop(std::fs::File::create(&probe).unwrap());
    assert_eq!(mode_of(&probe), 0o600);
    for mode in [0o640, 0o666, 0o604] {
        let name = unique_name(SEGMENTS, "mode-umask");
        let segment = Segment::builder(&name).size(4096).mode(mode).create().unwrap();
        let found = mode_of(segment.path().unwrap());
        assert_eq!(found, mode, "mode {mode:o} came out as {found:o} under umask 077");
        report("mode", format!("{found:o}"));
    }
}

#[test]
fn explicit_mode_is_applied_exactly_whatever_the_umask() {
    let name = unique_name(SEGMENTS, "mode-640");
    let segment = Segment::builder(&name).size(4096).mode(0o640).create().unwrap();
    assert_eq!(mode_of(segment.path().unwrap()), 0o640);

    // In a child with umask 077, which would strip every group and other bit from the mode.
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("mode-under-umask", &[dir.path().to_str().unwrap()]);
    for expected in ["640", "666", "604"] {
        assert_eq!(child.report("mode", CHILD_TIMEOUT), expected);
    }
    child.expect_success(CHILD_TIMEOUT);
}

#[test]
fn second_create_of_a_name_fails_and_leaves_the_first_intact() {
    let name = unique_name(SEGMENTS, "exists");
    let path = segment_path(&name);
    let first = Segment::builder(&name).size(4096).create().unwrap();
    first.write_bytes(HEADER_SIZE, b"first").unwrap();
    match Segment::builder(&name).size(8192).create() {
        Err(CreateError::AlreadyExists { name: n, path: p }) => {
            assert_eq!(n.as_str(), name);
            assert_eq!(p, path);
        }
        other => panic!("a second create gave {other:?}"),
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096, "not resized");
    let opened = Segment::builder(&name).open().unwrap();
    let mut bytes = [0u8; 5];
    opened.read_bytes(HEADER_SIZE, &mut bytes).unwrap();
    assert_eq!(&bytes, b"first");
    assert!(first.is_creator() && !opened.is_creator());
}

/// Plants a symlink at a segment's path; checks that create and open refuse it and that
/// neither the symlink's target nor a dangling target is touched.
fn check_planted_symlink(backing: Backing, dir: &Path) {
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("precious");
    std::fs::write(&target, b"do not touch").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let name = unique_name(SEGMENTS, "symlink");
    let link = dir.join(SegmentName::new(&name).unwrap().file_name());
    symlink(&target, &link).unwrap();
    let _cleanup = Cleanup(link.clone());
    let builder = || Segment::builder(&name).backing(backing.clone()).size(4096);

    match builder().create() {
        Err(CreateError::AlreadyExists { path, .. }) => assert_eq!(path, link),
        other => panic!("create over a planted symlink gave {other:?}"),
    }
    match builder().open() {
        Err(OpenError::Symlink { path }) => assert_eq!(path, link),
        other => panic!("open of a planted symlink gave {other:?}"),
    }
    match builder().open_read_only() {
        Err(OpenError::Symlink { path }) => assert_eq!(path, link),
        other => panic!("read-only open of a planted symlink gave {other:?}"),
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"do not touch");
    assert_eq!(mode_of(&target), 0o644);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

    // A dangling symlink: create must not make its target spring into existence.
    std::fs::remove_file(&link).unwrap();
    let missing = targets.path().join("missing");
    symlink(&missing, &link).unwrap();
    assert!(matches!(builder().create(), Err(CreateError::AlreadyExists { .. })));
    assert!(matches!(builder().open(), Err(OpenError::Symlink { .. })));
    assert!(!exists(&missing), "create followed a dangling symlink");
}

#[test]
fn planted_symlink_in_a_directory_backing_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    check_planted_symlink(Backing::Dir(dir.path().to_owned()), dir.path());
}

#[test]
fn planted_symlink_in_dev_shm_is_refused_and_its_target_untouched() {
    check_planted_symlink(Backing::PosixShm, Path::new(SHM_DIR));
}

/// The uid and gid of `nobody` from /etc/passwd, or the usual 65534.
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"nobody") && fields.len() > 3)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .unwrap_or((65534, 65534))
}

fn child_as_nobody(private: &str, shared: &str, uid: u32, gid: u32) {
    use rustix::process::{Gid, Uid};
    // Per-thread credentials on Linux: this thread, which does all the opening, is `nobody`.
    rustix::thread::set_thread_groups(&[]).unwrap();
    rustix::thread::set_thread_gid(Gid::from_raw(gid)).unwrap();
    rustix::thread::set_thread_uid(Uid::from_raw(uid)).unwrap();
    assert_eq!(rustix::process::geteuid().as_raw(), uid);

    // A 0600 segment of another user cannot be opened at all.
    match Segment::builder(private).open() {
        Err(OpenError::PermissionDenied { path }) => assert_eq!(path, segment_path(private)),
        other => panic!("opening another user's 0600 segment gave {other:?}"),
    }
    match Segment::builder(private).any_owner().open_read_only() {
        Err(OpenError::PermissionDenied { .. }) => {}
        other => panic!("reading another user's 0600 segment gave {other:?}"),
    }
    // A readable 0644 segment of another user is refused by the owner check unless expected,
    // and even then it cannot be opened for writing.
    match Segment::builder(shared).open_read_only() {
        Err(OpenError::WrongOwner { expected, found }) => {
            assert_eq!((expected, found), (uid, 0));
        }
        other => panic!("reading a foreign 0644 segment gave {other:?}"),
    }
    let reader = Segment::builder(shared).expected_owner(0).open_read_only().unwrap();
    assert!(reader.is_read_only());
    match Segment::builder(shared).expected_owner(0).open() {
        Err(OpenError::PermissionDenied { .. }) => {}
        other => panic!("writing a foreign 0644 segment gave {other:?}"),
    }
    report("checked", "nobody");
}

#[test]
fn another_user_cannot_open_a_private_segment() {
    if !is_root() {
        eprintln!("skipped: dropping to `nobody` needs root");
        return;
    }
    let private = unique_name(SEGMENTS, "private");
    let shared = unique_name(SEGMENTS, "shared");
    let _private = Segment::builder(&private).size(4096).create().unwrap();
    let _shared = Segment::builder(&shared).size(4096).mode(0o644).create().unwrap();
    let (uid, gid) = nobody();
    let mut child =
        spawn_child("as-nobody", &[&private, &shared, &uid.to_string(), &gid.to_string()]);
    assert_eq!(child.report("checked", CHILD_TIMEOUT), "nobody");
    child.expect_success(CHILD_TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// 6. Out of space is an error at create, never a SIGBUS later.
// ---------------------------------------------------------------------------------------------

#[test]
fn segment_larger_than_dev_shm_fails_with_no_space_and_leaves_no_file() {
    let vfs = rustix::fs::statvfs(SHM_DIR).unwrap();
    if vfs.f_blocks == 0 {
        eprintln!("skipped: /dev/shm has no size limit");
        return;
    }
    let size = vfs.f_blocks * vfs.f_frsize + (1 << 20);
    let name = unique_name(SEGMENTS, "too-big");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    match Segment::builder(&name).size(size).max_size(u64::MAX).create() {
        Err(CreateError::NoSpace { size: s, path: p }) => {
            assert_eq!(s, size);
            assert_eq!(p, path);
        }
        other => panic!("a {size}-byte segment gave {other:?}"),
    }
    assert!(!exists(&path), "the failed create left {path:?} behind");
}

fn child_tmpfs_no_space(dir: &Path, name: &str) {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    use rustix::thread::{UnshareFlags, unshare_unsafe};
    const KIB: u64 = 1024;
    // SAFETY: only a private mount namespace is requested for this thread; the file descriptor
    // table (`UnshareFlags::FILES`, the hazard `unshare_unsafe` documents) stays shared.
    match unsafe { unshare_unsafe(UnshareFlags::NEWNS) } {
        Ok(()) => {}
        Err(errno @ (Errno::PERM | Errno::INVAL | Errno::NOSYS)) => {
            eprintln!("skipped: unshare(CLONE_NEWNS) failed: {errno}");
            std::process::exit(EXIT_SKIP);
        }
        Err(errno) => panic!("unshare(CLONE_NEWNS): {errno}"),
    }
    // Keep the tmpfs mount out of the parent's namespace.
    mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE).unwrap();
    mount("tmpfs", dir, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, c"size=1M,mode=0700")
        .unwrap();
    let vfs = rustix::fs::statvfs(dir).unwrap();
    assert_eq!(vfs.f_blocks * vfs.f_frsize, 1024 * KIB, "a 1 MiB tmpfs");
    let builder =
        |name: &str, size| Segment::builder(name).backing(Backing::Dir(dir.to_owned())).size(size);
    let file = |name: &str| dir.join(SegmentName::new(name).unwrap().file_name());

    // Larger than the whole file system.
    match builder(name, 2048 * KIB).create() {
        Err(CreateError::NoSpace { size, path }) => {
            assert_eq!(size, 2048 * KIB);
            assert_eq!(path, file(name));
        }
        other => panic!("a 2 MiB segment on a 1 MiB tmpfs gave {other:?}"),
    }
    assert!(!exists(&file(name)), "the failed create left its file behind");

    // A segment that fits has every page backed: touching all of them does not fault.
    let fits = format!("{name}.fits");
    let small = builder(&fits, 512 * KIB).create().expect("512 KiB fits in 1 MiB");
    for offset in (HEADER_SIZE..small.len()).step_by(4096) {
        small.write_bytes(offset, &[0xa5]).unwrap();
    }
    // Smaller than the file system but larger than what is left: refused up front as well.
    match builder(name, 768 * KIB).create() {
        Err(CreateError::NoSpace { size, .. }) => assert_eq!(size, 768 * KIB),
        other => panic!("768 KiB with 512 KiB left gave {other:?}"),
    }
    assert!(!exists(&file(name)), "the failed create left its file behind");
    drop(small);
    assert!(!exists(&file(&fits)));
    report("no-space", "ok");
}

#[test]
fn full_tmpfs_gives_no_space_at_create_not_sigbus() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs in a private namespace needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name(SEGMENTS, "small-tmpfs");
    let mut child = spawn_child("tmpfs-no-space", &[dir.path().to_str().unwrap(), &name]);
    let status = child.wait(CHILD_TIMEOUT);
    if status.code() == Some(EXIT_SKIP) {
        eprintln!("skipped: {}", child.stderr().trim());
        return;
    }
    assert_eq!(
        status.code(),
        Some(0),
        "the child must exit normally (no SIGBUS), got {status}. stderr:\n{}",
        child.stderr()
    );
    assert_eq!(child.report("no-space", CHILD_TIMEOUT), "ok");
    // The mount lived only in the child's namespace: here the directory is the empty original.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// 7. Huge pages.
// ---------------------------------------------------------------------------------------------

/// A number from /proc/meminfo (`key:  N ...`).
fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with(&format!("{key}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn memfd_huge_pages_give_whole_huge_pages_or_huge_pages_unavailable() {
    let free = meminfo("HugePages_Free").unwrap_or(0);
    let overcommit = std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let huge_page = meminfo("Hugepagesize").map_or(2 << 20, |kib| kib * 1024);
    let result = Segment::builder(unique_name(SEGMENTS, "huge"))
        .backing(Backing::Memfd)
        .huge_pages(true)
        .size(4096)
        .create();
    match result {
        Ok(segment) => {
            // Without reserved or overcommittable huge pages only the error is right.
            assert!(free > 0 || overcommit > 0, "huge pages granted with none reserved");
            assert!(segment.len() >= 4096);
            assert_eq!(segment.len() % huge_page, 0, "{} is not whole huge pages", segment.len());
        }
        Err(CreateError::HugePagesUnavailable { size }) => assert!(size >= 4096),
        Err(other) => panic!("huge pages gave {other:?}"),
    }
}

#[test]
fn posix_shm_with_huge_pages_is_unsupported_and_leaves_no_file() {
    let name = unique_name(SEGMENTS, "huge-posix");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    let result = Segment::builder(&name).huge_pages(true).size(4096).create();
    assert!(matches!(result, Err(CreateError::HugePagesUnsupported)), "got {result:?}");
    assert!(!exists(&path));
}

// ---------------------------------------------------------------------------------------------
// 8. Read-only opens.
// ---------------------------------------------------------------------------------------------

const WRITER_TEXT: &[u8] = b"written by the child process";
const WRITER_AT: u64 = 1024;
const WRITER_WORD: Offset<AtomicU64> = Offset::new(2048);
const WRITER_VALUE: u64 = 0x0123_4567_89ab_cdef;

fn child_writer(name: &str) {
    let segment = Segment::builder(name).open().unwrap();
    segment.write_bytes(WRITER_AT, WRITER_TEXT).unwrap();
    segment.get(WRITER_WORD).unwrap().store(WRITER_VALUE, Ordering::Release);
    report("wrote", WRITER_TEXT.len());
}

#[test]
fn read_only_open_sees_another_process_writes_and_cannot_write() {
    let name = unique_name(SEGMENTS, "read-only");
    let pool_layout = BlockPool::layout(BLOCK_SIZE, BLOCK_SIZE, 4).unwrap();
    let pool_region = Region { offset: 4096, len: pool_layout.size };
    let _creator = Segment::builder(&name)
        .size(4096 + pool_layout.size)
        .create_with(|segment| {
            BlockPool::init_in(segment, pool_region, BLOCK_SIZE, BLOCK_SIZE, 4)?;
            Ok(())
        })
        .unwrap();
    let reader = Segment::builder(&name).open_read_only().unwrap();
    assert!(reader.is_read_only());

    let mut child = spawn_child("writer", &[&name]);
    assert_eq!(child.report("wrote", CHILD_TIMEOUT), WRITER_TEXT.len().to_string());
    child.expect_success(CHILD_TIMEOUT);

    let mut text = vec![0u8; WRITER_TEXT.len()];
    reader.read_bytes(WRITER_AT, &mut text).unwrap();
    assert_eq!(text, WRITER_TEXT);
    let mut word = [0u8; 8];
    reader.read_bytes(WRITER_WORD.get(), &mut word).unwrap();
    assert_eq!(u64::from_ne_bytes(word), WRITER_VALUE);

    assert_eq!(reader.write_bytes(WRITER_AT, b"overwrite"), Err(OffsetError::ReadOnly));
    assert_eq!(reader.get(WRITER_WORD).unwrap_err(), OffsetError::ReadOnly);
    assert_eq!(reader.get_slice(WRITER_WORD, 2).unwrap_err(), OffsetError::ReadOnly);
    // A pool needs its atomics: a read-only handle cannot attach to one.
    assert_eq!(
        BlockPool::attach(&reader, pool_region).unwrap_err(),
        PoolError::Offset(OffsetError::ReadOnly)
    );
    // The refused write changed nothing.
    reader.read_bytes(WRITER_AT, &mut text).unwrap();
    assert_eq!(text, WRITER_TEXT);
}

// ---------------------------------------------------------------------------------------------
// 9. Discovery and unlink on drop.
// ---------------------------------------------------------------------------------------------

fn child_list(name: &str) {
    let path = segment_path(name);
    let listed = shmlane_segment::list().unwrap();
    let info = listed.iter().find(|i| i.path == path).expect("the parent's segment is listed");
    report("status", format!("{:?}", info.status));
    report("creator", info.creator.map_or(0, |c| c.pid));
}

#[test]
fn live_segment_lists_alive_and_survives_remove_stale() {
    let _stale = process_lock();
    let name = unique_name(SEGMENTS, "alive");
    let path = segment_path(&name);
    let segment = Segment::builder(&name).size(8192).create().unwrap();

    let listed = shmlane_segment::list().unwrap();
    let info = listed.iter().find(|i| i.path == path).expect("our segment is listed");
    assert_eq!(info.status, SegmentStatus::Alive);
    assert_eq!(info.name.as_str(), name);
    assert_eq!(info.size, 8192);
    assert_eq!(info.creator, Some(ProcessId::current().unwrap()));
    assert_eq!(info.creator, Some(segment.creator()));

    // Another process sees the same verdict.
    let mut child = spawn_child("list", &[&name]);
    assert_eq!(child.report("status", CHILD_TIMEOUT), "Alive");
    assert_eq!(child.report("creator", CHILD_TIMEOUT), std::process::id().to_string());
    child.expect_success(CHILD_TIMEOUT);

    let removed = shmlane_segment::remove_stale().unwrap().removed;
    assert!(!removed.iter().any(|i| i.path == path), "remove_stale removed a live segment");
    assert!(exists(&path));
    Segment::builder(&name).open().expect("still opens after remove_stale");
}

fn child_open_drop(name: &str) {
    let segment = Segment::builder(name).open().unwrap();
    assert!(!segment.is_creator());
    drop(segment);
    report("dropped", name);
}

#[test]
fn creator_drop_unlinks_but_opener_drop_does_not() {
    let name = unique_name(SEGMENTS, "unlink-on-drop");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    let creator = Segment::builder(&name).size(4096).create().unwrap();

    let mut child = spawn_child("open-drop", &[&name]);
    assert_eq!(child.report("dropped", CHILD_TIMEOUT), name);
    child.expect_success(CHILD_TIMEOUT);
    assert!(exists(&path), "an opener in another process removed the segment");
    drop(Segment::builder(&name).open().unwrap());
    assert!(exists(&path), "an opener in this process removed the segment");

    drop(creator);
    assert!(!exists(&path), "the creator's drop left the segment behind");
}

#[test]
fn unlink_on_drop_can_be_turned_off_for_the_creator_and_on_for_an_opener() {
    let name = unique_name(SEGMENTS, "unlink-flipped");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    drop(Segment::builder(&name).size(4096).unlink_on_drop(false).create().unwrap());
    assert!(exists(&path), "a creator with unlink_on_drop(false) removed the segment");

    let opener = Segment::builder(&name).unlink_on_drop(true).open().unwrap();
    assert!(exists(&path));
    drop(opener);
    assert!(!exists(&path), "an opener with unlink_on_drop(true) left the segment");
}
