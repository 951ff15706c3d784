//! Tooling and discovery over another user's files, which that user may resize or make
//! unremovable at will (only when the tests run as root: children drop to `nobody`).
//!
//! - Resizing: `nobody` owns a live topic and event whose files it shrinks and regrows in a
//!   loop, while root runs `shmlane list`, `inspect` and `clean` (the built binary) and
//!   `discovery::segments`, `inspect` and `remove_stale` (in this process) hundreds of times.
//!   Root is not the owner, so discovery reads those files from private copies, never through
//!   a mapping: no run dies of a signal (this process included), each says what it read or
//!   that the file was unreadable or corrupt at that instant, and nothing live is removed.
//! - Removing: in a sticky directory holding stale segments of root and of `nobody`, `nobody`
//!   removes its own and reports root's as not removable, whatever their order:
//!   `remove_stale_in` (segment crate), `discovery::remove_stale`, `Node::create` (its sweep
//!   of dead nodes) and `shmlane clean`.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use shmlane::Node;
use shmlane::discovery::{self, Verdict};
use shmlane_segment::{Backing, Segment, SegmentName};
use shmlane_testkit::{
    become_user, child_spec, exit_child, fail, is_root, nobody, report, spawn_child, split_spec,
};

/// Deadline of every wait on a child (a watchdog: a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds of `list`, `inspect` and `clean` runs (each binary and library call once a round).
const ROUNDS: usize = 120;
/// The longest the resizing child resizes if nobody stops it.
const RESIZE_LIMIT: Duration = Duration::from_secs(60);

/// Child processes enter here; in the parent (no `SHMLANE_CHILD`) this test does nothing.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("resize", [dir, namespace, stop, uid, gid]) => {
            become_user(uid, gid);
            resize(Path::new(dir), namespace, Path::new(stop));
        }
        ("leave", [dir, namespace, plains @ ..]) => leave(Path::new(dir), namespace, plains),
        ("leave-as", [uid, gid, dir, namespace, plains @ ..]) => {
            become_user(uid, gid);
            leave(Path::new(dir), namespace, plains);
        }
        ("sweep", [uid, gid, how, dir, namespace]) => {
            become_user(uid, gid);
            sweep(how, Path::new(dir), namespace);
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// A node in `namespace`, its segments in `dir` (POSIX shm for `/dev/shm`).
fn node(dir: &Path, namespace: &str, name: &str) -> Node {
    let builder = Node::builder(name).namespace(namespace);
    let builder = if dir == Path::new("/dev/shm") { builder } else { builder.root(dir) };
    builder.create().unwrap_or_else(|e| fail(3, format!("node {name}: {e}")))
}

/// The files of `namespace` in `dir`, by name.
fn files_of(dir: &Path, namespace: &str) -> Vec<PathBuf> {
    let prefix = format!("shmlane.{namespace}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| fail(3, e))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// As another user: holds a live topic (a publisher with samples queued for a subscriber) and
/// an event with a listener, then regrows and shrinks their files (whole with their bytes,
/// half, nothing, and again) until `stop` appears or its parent dies. It never touches its own
/// mappings meanwhile; it restores the files before it drops its handles, which removes them.
fn resize(dir: &Path, namespace: &str, stop: &Path) {
    let node = node(dir, namespace, "resizer");
    let topic = node.topic::<u64>("ticks").create().unwrap_or_else(|e| fail(3, e));
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    let _subscriber = topic.subscriber().unwrap_or_else(|e| fail(3, e));
    for value in 1..=3 {
        publisher.send_copy(value).unwrap_or_else(|e| fail(3, e));
    }
    let event = node.event("bell").open_or_create().unwrap_or_else(|e| fail(3, e));
    let _listener = event.listener().unwrap_or_else(|e| fail(3, e));
    let files: Vec<(File, Vec<u8>)> = files_of(dir, namespace)
        .iter()
        .map(|path| {
            let file = File::options().read(true).write(true).open(path);
            let file = file.unwrap_or_else(|e| fail(3, format!("{}: {e}", path.display())));
            let bytes = std::fs::read(path).unwrap_or_else(|e| fail(3, e));
            (file, bytes)
        })
        .collect();
    let restore = |(file, bytes): &(File, Vec<u8>)| {
        file.set_len(bytes.len() as u64).unwrap_or_else(|e| fail(3, e));
        file.write_all_at(bytes, 0).unwrap_or_else(|e| fail(3, e));
    };
    report("files", files.len());
    let (started, parent) = (Instant::now(), std::os::unix::process::parent_id());
    // Until told to stop, or orphaned (the parent died), or after the limit.
    let go_on = || {
        !stop.exists()
            && std::os::unix::process::parent_id() == parent
            && started.elapsed() < RESIZE_LIMIT
    };
    let mut round = 0u64;
    while go_on() {
        let phase = round % 3;
        for entry @ (file, bytes) in &files {
            match phase {
                0 => restore(entry),
                1 => file.set_len(bytes.len() as u64 / 2).unwrap_or_else(|e| fail(3, e)),
                _ => file.set_len(0).unwrap_or_else(|e| fail(3, e)),
            }
        }
        // Varied, so that readers meet every phase at every step of their reads; whole for
        // longer, so that they read it whole too.
        let whole = if phase == 0 { 1000 } else { 0 };
        std::thread::sleep(Duration::from_micros(200 + whole + round * 389 % 1000));
        round += 1;
    }
    files.iter().for_each(restore);
    report("rounds", round);
    // The handles drop here, whole again, and remove their files.
}

/// Leaves stale segments in `dir`: plain ones called `plains` (readable by every user), and
/// a node registration, a topic control segment and a payload segment in `namespace`, then
/// exits without removing them.
fn leave(dir: &Path, namespace: &str, plains: &[&str]) {
    for name in plains {
        let builder = Segment::builder(*name).backing(Backing::Dir(dir.to_owned()));
        let segment = builder.mode(0o644).size(4096).unlink_on_drop(false).create();
        segment.unwrap_or_else(|e| fail(3, e));
    }
    let node = node(dir, namespace, "gone");
    let topic = node.topic::<u64>("left").create().unwrap_or_else(|e| fail(3, e));
    let publisher = topic.publisher().unwrap_or_else(|e| fail(3, e));
    publisher.send_copy(1).unwrap_or_else(|e| fail(3, e));
    report("left", 1);
    // Exits at once: no handle is dropped, so the files stay, their creator dead.
    exit_child()
}

/// As another user, removes what is stale in `dir` one way (`how`), and reports the names it
/// removed and the names it could not remove (each for want of permission).
fn sweep(how: &str, dir: &Path, namespace: &str) {
    let names = |names: Vec<String>| names.into_iter().collect::<BTreeSet<_>>();
    let denied = |error: &shmlane_segment::DiscoveryError| match error {
        shmlane_segment::DiscoveryError::Remove { source, .. } => {
            source.kind() == std::io::ErrorKind::PermissionDenied
        }
        _ => false,
    };
    let (removed, failed) = match how {
        "segment" => {
            let removal = shmlane_segment::remove_stale_in(dir).unwrap_or_else(|e| fail(3, e));
            if !removal.failed.iter().all(|(_, e)| denied(e)) {
                fail(5, format!("failed for another reason: {:?}", removal.failed));
            }
            let removed = removal.removed.iter().map(|info| info.name.to_string()).collect();
            (removed, removal.failed.iter().map(|(info, _)| info.name.to_string()).collect())
        }
        "facade" => {
            let removal =
                discovery::remove_stale(Some(dir), |_| true).unwrap_or_else(|e| fail(3, e));
            if !removal.failed.iter().all(|(_, e)| denied(e)) {
                fail(5, format!("failed for another reason: {:?}", removal.failed));
            }
            let name = |entry: &discovery::SegmentEntry| entry.segment.name.to_string();
            let removed = removal.removed.iter().map(name).collect();
            (removed, removal.failed.iter().map(|(entry, _)| name(entry)).collect())
        }
        "node" => {
            // Its sweep of the namespace's dead nodes meets another user's registration.
            let node = node(dir, namespace, "sweeper");
            if !node.sweep_errors().iter().all(denied) {
                fail(5, format!("failed for another reason: {:?}", node.sweep_errors()));
            }
            report("creation_errors", node.sweep_errors().len());
            let removal = node.remove_dead_nodes().unwrap_or_else(|e| fail(3, e));
            let removed = removal.removed.iter().map(|info| info.name.to_string()).collect();
            (removed, removal.failed.iter().map(|(info, _)| info.name.to_string()).collect())
        }
        _ => fail(2, format!("unknown sweep {how}")),
    };
    let line = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(",");
    report("removed", line(names(removed)));
    report("failed", line(names(failed)));
}

/// Whether these tests can run as another user; if not, says why (they are then skipped).
fn other_user_possible() -> bool {
    if is_root() {
        return true;
    }
    eprintln!("skipped: dropping to `nobody` needs root, and these tests do not run as root");
    false
}

/// A directory every user may write (with the sticky bit: each removes only their own files).
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// Runs the built `shmlane` with `args`, as `user` (uid, gid) if given.
fn shmlane(args: &[&str], user: Option<(u32, u32)>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shmlane"));
    command.args(args);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command.output().expect("run shmlane")
}

/// Fails unless the run ended by itself (no signal) with one of `codes`.
fn ended(run: &Output, args: &[&str], codes: &[i32]) -> i32 {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(
        run.status.signal(),
        None,
        "shmlane {args:?} was killed by a signal\nstdout:\n{}\nstderr:\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    let code = run.status.code().unwrap_or(-1);
    assert!(
        codes.contains(&code),
        "shmlane {args:?} exited {code}, expected one of {codes:?}\nstdout:\n{}\nstderr:\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    code
}

/// Removes what a failed run left of `namespace` in `/dev/shm`.
struct ShmLeftovers(String);

impl Drop for ShmLeftovers {
    fn drop(&mut self) {
        for path in files_of(Path::new("/dev/shm"), &self.0) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What the readers saw of the resizing child's topic.
#[derive(Default)]
struct Seen {
    /// Read whole: alive, with its publisher and subscriber.
    whole: usize,
    /// Caught resized: a verdict or a problem that says so.
    resized: usize,
}

/// `nobody` resizes its live topic's and event's files in `dir` (in `/dev/shm` with
/// `in_shm`) while root lists, inspects and cleans.
fn resized_under_discovery(in_shm: bool) {
    let (uid, gid) = nobody();
    let shared = shared_dir();
    let namespace = format!("foreign{}{}", std::process::id(), u8::from(in_shm));
    let _leftovers = ShmLeftovers(namespace.clone());
    let dir = if in_shm { PathBuf::from("/dev/shm") } else { shared.path().to_owned() };
    let stop = shared.path().join("stop");
    let args = [dir.to_str().unwrap(), &namespace, stop.to_str().unwrap(), &uid, &gid];
    let mut child = spawn_child("resize", &args);
    let files = child.report_u64("files", TIMEOUT);
    let names: Vec<String> = files_of(&dir, &namespace)
        .iter()
        .map(|path| {
            path.file_name().unwrap().to_string_lossy().trim_start_matches("shmlane.").into()
        })
        .collect();
    // Control segments of the topic and event, a payload segment, a node registration.
    assert_eq!(names.len() as u64, files, "{names:?}");
    assert!(names.len() >= 4, "{names:?}");
    for path in files_of(&dir, &namespace) {
        let owner = std::fs::metadata(&path).unwrap().uid();
        assert_eq!(owner.to_string(), uid, "{} is not the other user's", path.display());
    }
    let topic = format!("{namespace}.topic.ticks");

    // The binary's scope: the directory, or the namespace in /dev/shm (other tests' files are
    // there too; `clean` must not touch those).
    let scope: Vec<&str> = if in_shm {
        vec!["--namespace", &namespace]
    } else {
        vec!["--root", dir.to_str().unwrap()]
    };
    let root = (!in_shm).then_some(dir.as_path());
    let ours = |entry: &discovery::SegmentEntry| entry.namespace.as_deref() == Some(&namespace);
    let mut seen = Seen::default();
    for round in 0..ROUNDS {
        let list: Vec<&str> = ["list", "--json"].iter().copied().chain(scope.clone()).collect();
        let run = shmlane(&list, None);
        ended(&run, &list, &[0]);
        let listed: Value = serde_json::from_slice(&run.stdout).expect("list --json prints JSON");
        for segment in listed["segments"].as_array().unwrap() {
            let state = segment["state"].as_str().unwrap_or_default();
            assert!(
                ["alive", "initializing", "corrupt", "unreadable"].contains(&state),
                "a live segment of another user listed as {state}: {segment}"
            );
            if segment["name"] == topic.as_str() {
                let publishers = segment["service"]["publishers"].as_array().map_or(0, Vec::len);
                let subscribers = segment["service"]["subscribers"].as_array().map_or(0, Vec::len);
                if state == "alive" && publishers == 1 && subscribers == 1 {
                    seen.whole += 1;
                } else if state != "alive" || !segment["service"]["problem"].is_null() {
                    seen.resized += 1;
                }
            }
        }

        let name = &names[round % names.len()];
        let inspect: Vec<&str> = ["inspect", name].iter().copied().chain(scope.clone()).collect();
        let run = shmlane(&inspect, None);
        // 1: unreadable at that instant (it shrank while it was copied); 4: corrupt at that
        // instant (its size disagreed with its header).
        match ended(&run, &inspect, &[0, 1, 4]) {
            0 => assert!(run.stdout.starts_with(b"segment"), "{run:?}"),
            _ => {
                let stderr = String::from_utf8_lossy(&run.stderr);
                let why =
                    ["cannot be read", "is corrupt"].iter().any(|phrase| stderr.contains(phrase));
                assert!(stderr.starts_with("shmlane: segment ") && why, "{stderr}");
            }
        }

        let clean: Vec<&str> = ["clean"].iter().copied().chain(scope.clone()).collect();
        let run = shmlane(&clean, None);
        ended(&run, &clean, &[0]);
        let cleaned = String::from_utf8_lossy(&run.stdout);
        assert!(cleaned.contains("removed 0 segment(s)"), "{cleaned}");

        // The same in this process: a SIGBUS here would end the test binary.
        let entries = discovery::segments(root).expect("list the directory");
        for entry in entries.iter().filter(|entry| ours(entry)) {
            assert_ne!(entry.verdict, Verdict::Stale, "{entry:?}");
        }
        let segment = SegmentName::new(name).unwrap();
        let inspection = discovery::inspect(root, &segment).expect("inspect");
        assert_ne!(inspection.entry.verdict, Verdict::Stale, "{:?}", inspection.entry);
        let removal = discovery::remove_stale(root, ours).expect("remove_stale");
        assert!(removal.removed.is_empty() && removal.failed.is_empty(), "{removal:?}");
        child.assert_running();
    }

    File::create(&stop).unwrap();
    let rounds = child.report_u64("rounds", TIMEOUT);
    child.expect_success(TIMEOUT);
    assert!(files_of(&dir, &namespace).is_empty(), "the child removes its own files");
    eprintln!(
        "{ROUNDS} rounds of list, inspect and clean (binary and library) over {rounds} resizes \
         of {files} files: read whole {} times, caught resized {} times",
        seen.whole, seen.resized
    );
    assert!(seen.whole > 0, "the readers never read the topic whole: the test proves nothing");
    assert!(seen.resized > 0, "the readers never caught a resized file: the test proves nothing");
    let _ = shmlane_segment::presence::remove_dead();
}

#[test]
fn another_users_files_resized_under_list_inspect_and_clean_in_a_directory_never_crash_them() {
    if other_user_possible() {
        resized_under_discovery(false);
    }
}

#[test]
fn another_users_files_resized_under_list_inspect_and_clean_in_dev_shm_never_crash_them() {
    if other_user_possible() {
        resized_under_discovery(true);
    }
}

/// The names of the segments in `dir`.
fn segment_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            entry.ok()?.file_name().to_str()?.strip_prefix("shmlane.").map(String::from)
        })
        .collect()
}

/// Leaves stale segments as root (`user` None) or as `user`; returns their names.
fn left_by(
    dir: &Path,
    user: Option<(&str, &str)>,
    namespace: &str,
    plains: &[&str],
) -> BTreeSet<String> {
    let before = segment_names(dir);
    let mut args = vec![dir.to_str().unwrap(), namespace];
    args.extend(plains);
    let mut child = match user {
        None => spawn_child("leave", &args),
        Some((uid, gid)) => {
            let mut all = vec![uid, gid];
            all.extend(args);
            spawn_child("leave-as", &all)
        }
    };
    child.report("left", TIMEOUT);
    child.expect_success(TIMEOUT);
    segment_names(dir).difference(&before).cloned().collect()
}

/// A comma-separated report as a set.
fn set(report: &str) -> BTreeSet<String> {
    report.split(',').filter(|part| !part.is_empty()).map(String::from).collect()
}

#[test]
fn removal_goes_on_past_another_users_stale_files_and_reports_them() {
    if !other_user_possible() {
        return;
    }
    let (uid, gid) = nobody();
    let dir = shared_dir();
    let dir = dir.path();
    // Root's stale segments, readable by everyone (so that `nobody` judges them stale and tries
    // them): plain ones named to sort before and between the other user's, and a dead node's
    // registration, topic and payload segment.
    let roots = left_by(dir, None, "ra", &["a-root", "c-root"]);
    for name in &roots {
        let path = dir.join(format!("shmlane.{name}"));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert_eq!(roots.len(), 5, "{roots:?}");
    let theirs = || left_by(dir, Some((&uid, &gid)), "rb", &["b-nobody", "d-nobody"]);
    let dir_arg = dir.to_str().unwrap();

    for how in ["segment", "facade"] {
        let left = theirs();
        assert_eq!(left.len(), 5, "{left:?}");
        let mut sweeper = spawn_child("sweep", &[&uid, &gid, how, dir_arg, "rb"]);
        assert_eq!(set(&sweeper.report("removed", TIMEOUT)), left, "{how}: its own, all of them");
        assert_eq!(set(&sweeper.report("failed", TIMEOUT)), roots, "{how}: root's, each reported");
        sweeper.expect_success(TIMEOUT);
        assert_eq!(segment_names(dir), roots, "{how}");
    }

    // Node creation sweeps its namespace's dead nodes, meets root's and goes on.
    let mut sweeper = spawn_child("sweep", &[&uid, &gid, "node", dir_arg, "ra"]);
    assert_eq!(sweeper.report_u64("creation_errors", TIMEOUT), 1);
    assert_eq!(sweeper.report("removed", TIMEOUT), "");
    let node_registration = roots.iter().find(|n| n.contains(".node.")).expect("root's node");
    assert_eq!(&sweeper.report("failed", TIMEOUT), node_registration);
    sweeper.expect_success(TIMEOUT);
    assert_eq!(segment_names(dir), roots, "the sweeper's own registration is gone");

    // `shmlane clean`, as the other user.
    let user: (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
    let mut help = Command::new(env!("CARGO_BIN_EXE_shmlane"));
    let help = help.arg("--help").uid(user.0).gid(user.1).output();
    if !help.as_ref().is_ok_and(|help| help.status.success()) {
        eprintln!("`shmlane clean` as nobody skipped: nobody cannot run the binary: {help:?}");
        return;
    }
    let left = theirs();
    let args = ["clean", "--root", dir_arg];
    let run = shmlane(&args, Some(user));
    ended(&run, &args, &[1]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    for name in &left {
        assert!(stdout.contains(&format!("removed {name} (")), "{name} not removed:\n{stdout}");
    }
    for name in &roots {
        assert!(stdout.contains(&format!("could not remove {name} (")), "{name}:\n{stdout}");
    }
    let summary = format!(
        "removed {} segment(s); kept 0 live; left 0 corrupt or unreadable alone; could not remove {}",
        left.len(),
        roots.len()
    );
    assert!(stdout.contains(&summary), "{stdout}");
    assert!(
        stderr.contains(&format!("{} segment(s) could not be removed", roots.len())),
        "{stderr}"
    );
    assert_eq!(segment_names(dir), roots);
    let _ = shmlane_segment::presence::remove_dead();
}
