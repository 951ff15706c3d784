//! A peer that shrinks a segment's file under a reader.
//!
//! POSIX shm (and directory-backed) segments are plain files: any process that may write the
//! file may `ftruncate` it smaller, and every process mapping it then gets `SIGBUS` on its first
//! access to a page past the new end. That is how mappings work; no library can catch it
//! without a signal handler. shmlane's answer is the sealed memfd backing (`Backing::Memfd`,
//! handed to peers with `send_fd`/`receive`): `F_SEAL_SHRINK` and `F_SEAL_GROW` make every
//! resize fail with `EPERM`, for every descriptor of the file, and `F_SEAL_SEAL` keeps anyone
//! from lifting them. A peer can still punch holes (`fallocate(PUNCH_HOLE)`): the pages read
//! back as zeros, never as a fault.
//!
//! Discovery reads headers with `pread`, not through a mapping: listing a directory while a
//! file in it is truncated never faults.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{FallocateFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::process::Signal;
use shmlane_reliability::Flag;
use shmlane_segment::{Backing, HEADER_SIZE, Segment, SegmentBuilder, SegmentName};
use shmlane_testkit::{
    ChildProc, Cleanup, child_spec, exit_child, fail, report, segment_path, spawn_child, split_spec,
};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(20);
/// Size of the segments here: 16 pages.
const SIZE: u64 = 16 * PAGE;
const PAGE: u64 = 4096;
/// What the last page holds.
const LAST_PAGE_VALUE: u8 = 0x5a;
/// How long the discovery child lists while a file is truncated under it.
const LIST_FOR: Duration = Duration::from_secs(2);

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("read-posix", [name, flag]) => {
            let segment = Segment::builder(*name).open().unwrap_or_else(|e| fail(3, e));
            read_after_attack(&segment, flag);
        }
        ("read-memfd", [socket, flag]) => {
            let stream = UnixStream::connect(socket).unwrap_or_else(|e| fail(3, e));
            let segment = SegmentBuilder::new("received").receive(&stream, false);
            read_after_attack(&segment.unwrap_or_else(|e| fail(3, e)), flag);
        }
        ("list-while-truncated", [dir]) => list_while_truncated(Path::new(dir)),
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// The reader: maps the segment (reading its last page once), waits for the attack, then reads
/// its first and its last page.
fn read_after_attack(segment: &Segment, flag: &str) {
    let last_page = |segment: &Segment| {
        let mut byte = [0u8; 1];
        segment.read_bytes(SIZE - 1, &mut byte).unwrap_or_else(|e| fail(3, e));
        byte[0]
    };
    report("mapped", last_page(segment));
    let deadline = Instant::now() + TIMEOUT;
    while !Flag::is_raised(flag) {
        if Instant::now() > deadline {
            fail(4, "the parent never attacked");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut header = [0u8; 8];
    segment.read_bytes(0, &mut header).unwrap_or_else(|e| fail(3, e));
    report("first-page", String::from_utf8_lossy(&header[..7]));
    // Past the cut of a shrunk file: SIGBUS here, in the memory access itself.
    report("last-page", last_page(segment));
}

/// A segment of `SIZE` bytes whose last page holds `LAST_PAGE_VALUE`.
fn create(builder: SegmentBuilder) -> Segment {
    let segment = builder.size(SIZE).create().expect("create");
    segment.write_bytes(SIZE - 1, &[LAST_PAGE_VALUE]).expect("write the last page");
    segment
}

/// Waits for the reader to map the segment.
fn wait_mapped(reader: &mut ChildProc) {
    assert_eq!(reader.report_u64("mapped", TIMEOUT), u64::from(LAST_PAGE_VALUE));
}

#[test]
fn a_posix_shm_segment_shrunk_under_a_reader_kills_it_with_sigbus_past_the_cut() {
    let name = shmlane_testkit::unique_name("rel-sigbus", "posix");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    let _segment = create(Segment::builder(&name));
    let flag = Flag::new("posix-shrink");
    let mut reader = spawn_child("read-posix", &[&name, flag.path()]);
    wait_mapped(&mut reader);

    // The hostile peer: anyone who may write the file (here its owner) cuts it to one page.
    let file = rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).unwrap();
    rustix::fs::ftruncate(&file, PAGE).expect("a POSIX shm file can be shrunk");
    flag.raise();

    assert_eq!(reader.report("first-page", TIMEOUT), "SHMLANE", "pages before the cut read");
    reader.expect_signal(Signal::BUS, "touching a cut page", TIMEOUT);
}

#[test]
fn a_sealed_memfd_segment_cannot_be_resized_through_any_descriptor_and_its_reader_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reader.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let name = shmlane_testkit::unique_name("rel-sigbus", "memfd");
    let segment = create(Segment::builder(&name).backing(Backing::Memfd));
    let flag = Flag::new("memfd-shrink");
    let mut reader = spawn_child("read-memfd", &[socket.to_str().unwrap(), flag.path()]);
    let stream = accept_within(&listener, &mut reader);
    segment.send_fd(&stream).expect("send the memfd");
    wait_mapped(&mut reader);

    // The hostile peer holds the descriptor (here its creator), and opens the file afresh
    // through /proc, as any process allowed to see our descriptors could.
    let reopened: OwnedFd = rustix::fs::open(
        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&segment.fd())),
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("reopen the memfd through /proc");
    for fd in [segment.fd(), reopened.as_fd()] {
        assert_eq!(rustix::fs::ftruncate(fd, PAGE), Err(Errno::PERM), "shrink");
        assert_eq!(rustix::fs::ftruncate(fd, 2 * SIZE), Err(Errno::PERM), "grow");
        // The seals cannot be changed any more (F_SEAL_SEAL) ...
        assert_eq!(rustix::fs::fcntl_add_seals(fd, SealFlags::WRITE), Err(Errno::PERM));
    }
    // ... and growing by fallocate is refused as well.
    let grow = rustix::fs::fallocate(&reopened, FallocateFlags::empty(), 0, 2 * SIZE);
    assert_eq!(grow, Err(Errno::PERM), "fallocate past the end");
    // What a peer can do: punch a hole. The pages read back as zeros, not as a fault.
    let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    rustix::fs::fallocate(&reopened, punch, SIZE - PAGE, PAGE).expect("punch the last page");
    flag.raise();

    assert_eq!(reader.report("first-page", TIMEOUT), "SHMLANE");
    assert_eq!(reader.report_u64("last-page", TIMEOUT), 0, "a punched page reads as zeros");
    reader.expect_success(TIMEOUT);
    let size = rustix::fs::fstat(segment.fd()).unwrap().st_size;
    assert_eq!(u64::try_from(size).unwrap(), SIZE, "the size never changed");
}

/// Accepts the child's connection, failing if it exits or never connects.
fn accept_within(listener: &UnixListener, child: &mut ChildProc) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                child.assert_running();
                assert!(Instant::now() < deadline, "the reader never connected");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Lists `dir` again and again for `LIST_FOR` while a thread flips a segment file in it
/// between one page and nothing, so that it shrinks between discovery's size check and its
/// read of the header. Reports how many listings saw the file sized and how many empty.
fn list_while_truncated(dir: &Path) {
    let path = dir.join(SegmentName::new("flipped").unwrap().file_name());
    let file = std::fs::File::create(&path).unwrap_or_else(|e| fail(3, e));
    let stop = AtomicBool::new(false);
    let (mut sized, mut empty) = (0u64, 0u64);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Relaxed: a stop request; nothing else is published through it.
            while !stop.load(Ordering::Relaxed) {
                let _ = file.set_len(PAGE);
                let _ = file.set_len(0);
            }
        });
        let started = Instant::now();
        while started.elapsed() < LIST_FOR {
            let listed = shmlane_segment::list_in(dir).unwrap_or_else(|e| fail(3, e));
            match listed.first().map(|info| info.size) {
                Some(0) => empty += 1,
                Some(size) if size >= HEADER_SIZE => sized += 1,
                other => fail(3, format!("listed {other:?}")),
            }
        }
        // Relaxed: as above.
        stop.store(true, Ordering::Relaxed);
    });
    report("sized", sized);
    report("empty", empty);
}

#[test]
fn listing_a_directory_while_a_file_in_it_is_truncated_never_faults() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut lister = spawn_child("list-while-truncated", &[dir.path().to_str().unwrap()]);
    let status = lister.wait(TIMEOUT);
    assert!(
        status.success(),
        "discovery must survive a file truncated under it, got {status}. stderr:\n{}",
        lister.stderr()
    );
    // The race was on: discovery saw the file both with and without its page.
    assert!(lister.report_u64("sized", TIMEOUT) > 0);
    assert!(lister.report_u64("empty", TIMEOUT) > 0);
}
