//! A full file system: a child process in a mount namespace of its own mounts a 1 MiB tmpfs
//! and appends to a journal there until the disk is full. The append that needs a new file
//! fails with an error value (`fallocate` refused it); no store into a mapping ever finds a
//! page missing (`SIGBUS` would kill the child), and every record appended reads back. Skips,
//! saying why, where mount namespaces are refused (not root, a sandbox).

mod common;

use std::path::Path;
use std::time::Duration;

use common::config;
use shmlane_journal::{Journal, TailFrom};
use shmlane_testkit::{
    EXIT_FAILED, child_spec, exit_child, fail, is_root, report, spawn_child_in_mount_namespace,
    split_spec,
};

const TIMEOUT: Duration = Duration::from_secs(20);
const RECORD: usize = 4000;
/// Mounts a 1 MiB tmpfs at `$0`'s first argument's directory, then runs the test binary.
const TMPFS_ENV: &str = "SHMLANE_JOURNAL_TMPFS";

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    match split_spec(&spec) {
        ("fill", args) if args.len() == 1 => fill(Path::new(args[0])),
        _ => fail(EXIT_FAILED, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Appends records of `RECORD` bytes to a journal in `dir` until an append fails, then reads
/// them back.
fn fill(dir: &Path) {
    let fs = rustix::fs::statvfs(dir).unwrap_or_else(|e| fail(EXIT_FAILED, e));
    report("fs_bytes", fs.f_blocks * fs.f_frsize);
    let journal = Journal::open(dir, config(256 << 10)).unwrap_or_else(|e| fail(EXIT_FAILED, e));
    let mut appender = journal.appender().unwrap_or_else(|e| fail(EXIT_FAILED, e));
    let record = vec![0x5A; RECORD];
    let mut appended = 0u64;
    let error = loop {
        match appender.append(&record) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        if appended > 10_000 {
            fail(EXIT_FAILED, "10000 records fitted in 1 MiB: the tmpfs is not limited");
        }
    };
    report("appended", appended);
    report("no_space", u8::from(error.is_no_space()));
    eprintln!("the append that failed: {error}");
    // The failed roll changed nothing: the appender still works within what it has...
    assert!(appender.append(&record).is_err_and(|e| e.is_no_space()), "still full");
    drop(appender);
    let mut tailer = journal.tailer(TailFrom::Start).unwrap_or_else(|e| fail(EXIT_FAILED, e));
    let mut read = 0u64;
    while let Some(r) = tailer.next().unwrap_or_else(|e| fail(EXIT_FAILED, e)) {
        if r.payload() != record.as_slice() {
            fail(EXIT_FAILED, format!("record {} changed", r.index()));
        }
        read += 1;
    }
    report("read", read);
}

#[test]
fn appending_to_a_full_file_system_gives_an_error_not_sigbus() {
    if !is_root() {
        println!("SKIPPED no_space: needs root to mount a tmpfs in a mount namespace of its own");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let mount = "mount -t tmpfs -o size=1M shmlane-journal \"$SHMLANE_JOURNAL_TMPFS\"";
    let mut child = spawn_child_in_mount_namespace(mount, "fill", &[path], &[(TMPFS_ENV, path)]);
    let Some(fs_bytes) = child.try_report("fs_bytes", TIMEOUT) else {
        println!(
            "SKIPPED no_space: could not mount a tmpfs in a new mount namespace: {}",
            child.stderr()
        );
        return;
    };
    assert_eq!(fs_bytes, (1u64 << 20).to_string(), "the child writes to its 1 MiB tmpfs");
    let appended = child.report_u64("appended", TIMEOUT);
    println!("{appended} records of {RECORD} bytes appended before the 1 MiB tmpfs was full");
    assert_eq!(child.report("no_space", TIMEOUT), "1", "the error says the disk is full");
    // 1 MiB holds three 256 KiB files (and the control segment), of ~63 records each.
    assert!((150..=260).contains(&appended), "{appended} records before the disk was full");
    assert_eq!(child.report_u64("read", TIMEOUT), appended, "every appended record reads back");
    child.expect_success(TIMEOUT);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing left outside the namespace"
    );
}
