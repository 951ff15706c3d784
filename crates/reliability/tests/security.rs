//! Who may touch a segment. Beyond `crates/segment/tests/cross_process.rs` (POSIX shm created
//! 0600, exclusive creation, planted symlinks refused in /dev/shm and in a directory, a 0600
//! segment not openable by `nobody`):
//!
//! - directory-backed segments are created 0600 as well, exclusively, and never over a file
//!   that is already there;
//! - another user (a child that drops to `nobody`; only when the tests run as root) cannot
//!   open, remove or replace our segments, POSIX or directory-backed, nor get them removed as
//!   stale by listing them;
//! - a memfd segment sent by another user is refused unless that user is expected.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmlane_segment::{
    Backing, CreateError, DiscoveryError, HEADER_SIZE, OpenError, Segment, SegmentBuilder,
    SegmentName, SegmentStatus, TransferError,
};
use shmlane_testkit::{
    ChildProc, Cleanup, SHM_DIR, become_user, child_spec, exit_child, fail, is_root, nobody,
    report, segment_path, spawn_child, split_spec,
};

/// Deadline of every wait (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(20);
/// What our segments hold at `HEADER_SIZE`, to see that nobody changed them.
const MARK: &[u8] = b"ours, untouched";

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("intruder", [posix, dir, dir_name, uid, gid]) => {
            become_user(uid, gid);
            intrude(posix, Path::new(dir), dir_name);
        }
        ("sender", [socket, uid, gid]) => {
            become_user(uid, gid);
            send_own_segment(Path::new(socket));
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// As another user, tries every way at our segments; reports each refusal.
fn intrude(posix: &str, dir: &Path, dir_name: &str) {
    let check = |what: &str, refused: bool, got: &dyn std::fmt::Debug| {
        if !refused {
            fail(6, format!("{what} was allowed: {got:?}"));
        }
        report("refused", what);
    };
    let denied =
        |r: &Result<Segment, OpenError>| matches!(r, Err(OpenError::PermissionDenied { .. }));
    let r = Segment::builder(posix).any_owner().open();
    check("open-posix", denied(&r), &r);
    let r = Segment::builder(posix).any_owner().open_read_only();
    check("read-posix", denied(&r), &r);
    let in_dir = || Segment::builder(dir_name).backing(Backing::Dir(dir.to_owned())).any_owner();
    let r = in_dir().open();
    check("open-dir", denied(&r), &r);
    let r = in_dir().open_read_only();
    check("read-dir", denied(&r), &r);

    // Replacing: exclusive creation does not open, truncate or chmod the existing file.
    let r = Segment::builder(posix).size(4096).create();
    check("create-posix", matches!(r, Err(CreateError::AlreadyExists { .. })), &r);
    let r = in_dir().size(4096).create();
    check("create-dir", matches!(r, Err(CreateError::AlreadyExists { .. })), &r);
    let r = Segment::builder(posix).size(4096).open_or_create();
    let existing = matches!(r, Err(CreateError::Existing(OpenError::PermissionDenied { .. })));
    check("open-or-create-posix", existing, &r);

    // Removing: /dev/shm is sticky, so only the owner (or root) removes a file there.
    let name = SegmentName::new(posix).unwrap_or_else(|e| fail(3, e));
    let r = shmlane_segment::remove(&name);
    let eperm = |r: &Result<(), DiscoveryError>| {
        matches!(r, Err(DiscoveryError::Remove { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied)
    };
    check("remove-posix", eperm(&r), &r);
    // Discovery cannot read it, so it never judges it stale.
    let listed = shmlane_segment::list().unwrap_or_else(|e| fail(3, e));
    let status = listed.iter().find(|i| i.name == name).map(|i| i.status.clone());
    check("list-posix", matches!(status, Some(SegmentStatus::Unreadable { .. })), &status);
    let removed = shmlane_segment::remove_stale_matching(Path::new(SHM_DIR), |n| n == &name);
    let untouched = removed.as_ref().is_ok_and(|r| r.removed.is_empty() && r.failed.is_empty());
    check("remove-stale-posix", untouched, &removed);
    report("done", "all refused");
}

/// As another user, creates a memfd segment and sends it to the parent.
fn send_own_segment(socket: &Path) {
    let segment = Segment::builder("theirs")
        .backing(Backing::Memfd)
        .size(4096)
        .create()
        .unwrap_or_else(|e| fail(3, e));
    let stream = UnixStream::connect(socket).unwrap_or_else(|e| fail(3, e));
    for _ in 0..2 {
        segment.send_fd(&stream).unwrap_or_else(|e| fail(3, e));
    }
    report("sent", 2);
    // Stay until the parent has received both.
    let mut byte = [0u8; 1];
    let _ = std::io::Read::read(&mut &stream, &mut byte);
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A segment holding `MARK`.
fn marked(builder: SegmentBuilder) -> Segment {
    let segment = builder.size(4096).create().expect("create");
    segment.write_bytes(HEADER_SIZE, MARK).expect("mark");
    segment
}

fn assert_marked(path: &Path) {
    let bytes = std::fs::read(path).expect("read the segment file");
    assert_eq!(bytes.len(), 4096, "{path:?} was resized");
    assert_eq!(&bytes[HEADER_SIZE as usize..][..MARK.len()], MARK, "{path:?} was changed");
    assert_eq!(mode_of(path), 0o600, "{path:?} changed mode");
}

#[test]
fn directory_backed_segments_are_created_0600_exclusively_and_never_over_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let backing = Backing::Dir(dir.path().to_owned());
    let in_dir = |name: &str| Segment::builder(name).backing(backing.clone());
    let name = "private";
    let segment = marked(in_dir(name));
    let path = segment.path().expect("a path").to_owned();
    assert_eq!(mode_of(&path), 0o600);

    match in_dir(name).size(8192).create() {
        Err(CreateError::AlreadyExists { path: p, .. }) => assert_eq!(p, path),
        other => panic!("creating over a live segment gave {other:?}"),
    }
    assert_marked(&path);

    // A plain file already under a segment's name (planted, or left by something else).
    let planted = dir.path().join(SegmentName::new("planted").unwrap().file_name());
    std::fs::write(&planted, b"precious").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        in_dir("planted").size(4096).create(),
        Err(CreateError::AlreadyExists { .. })
    ));
    assert!(matches!(
        in_dir("planted").size(4096).open_or_create(),
        Err(CreateError::Existing(OpenError::TooSmall { .. }))
    ));
    assert_eq!(std::fs::read(&planted).unwrap(), b"precious", "not truncated or overwritten");
    assert_eq!(mode_of(&planted), 0o644, "not chmod-ed");
}

/// A 0755 directory for a directory-backed segment, so that only the file's own mode keeps
/// another user out.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn another_user_cannot_open_remove_or_replace_our_segments() {
    if !is_root() {
        eprintln!("skipped: dropping to `nobody` needs root, and these tests do not run as root");
        return;
    }
    let posix = shmlane_testkit::unique_name("rel-security", "posix");
    let posix_path = segment_path(&posix);
    let _cleanup = Cleanup(posix_path.clone());
    let _posix = marked(Segment::builder(&posix));
    let dir = open_dir();
    let _in_dir = marked(Segment::builder("secret").backing(Backing::Dir(dir.path().to_owned())));
    let dir_path = dir.path().join("shmlane.secret");

    let (uid, gid) = nobody();
    let args = [posix.as_str(), dir.path().to_str().unwrap(), "secret", &uid, &gid];
    let mut intruder = spawn_child("intruder", &args);
    let refusals = [
        "open-posix",
        "read-posix",
        "open-dir",
        "read-dir",
        "create-posix",
        "create-dir",
        "open-or-create-posix",
        "remove-posix",
        "list-posix",
        "remove-stale-posix",
    ];
    for what in refusals {
        assert_eq!(intruder.report("refused", TIMEOUT), what);
    }
    assert_eq!(intruder.report("done", TIMEOUT), "all refused");
    intruder.expect_success(TIMEOUT);
    assert_marked(&posix_path);
    assert_marked(&dir_path);
}

/// Accepts the child's connection, failing if it exits or never connects.
fn accept_within(listener: &UnixListener, child: &mut ChildProc) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                child.assert_running();
                assert!(Instant::now() < deadline, "the sender never connected");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn a_memfd_segment_sent_by_another_user_is_refused_unless_that_user_is_expected() {
    if !is_root() {
        eprintln!("skipped: dropping to `nobody` needs root, and these tests do not run as root");
        return;
    }
    let dir = open_dir();
    let socket: PathBuf = dir.path().join("receiver.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (uid, gid) = nobody();
    let mut sender = spawn_child("sender", &[socket.to_str().unwrap(), &uid, &gid]);
    let stream = accept_within(&listener, &mut sender);
    let their_uid: u32 = uid.parse().unwrap();

    match SegmentBuilder::new("from-nobody").receive(&stream, false) {
        Err(TransferError::UntrustedPeer { expected: 0, found }) => assert_eq!(found, their_uid),
        other => panic!("a segment sent by uid {their_uid} gave {other:?}"),
    }
    // The uid was the only reason: expecting that user, the same sender's segment is taken.
    let accepted = SegmentBuilder::new("from-nobody")
        .expected_owner(their_uid)
        .receive(&stream, false)
        .expect("a segment of the expected user");
    assert_eq!(accepted.len(), 4096);
    assert_eq!(sender.report_u64("sent", TIMEOUT), 2);
    drop(stream);
    sender.expect_success(TIMEOUT);
}
