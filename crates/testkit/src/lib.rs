//! Test-only harness for shmlane's tests.
//!
//! A test that needs a peer re-executes its own test binary as a child ([`spawn_child`]):
//! `current_exe --exact child_entry --nocapture --test-threads=1` with [`CHILD_ENV`]`=role:args`
//! in its environment. The test file's own `child_entry` test reads that with [`child_spec`]
//! and [`split_spec`], runs the role and exits with a code; without the variable it returns at
//! once, so it passes as an ordinary test. Children report values to the parent as stdout lines
//! [`REPORT_PREFIX`]`KEY VALUE` ([`report`]), which [`ChildProc::report`] waits for. Every wait
//! on a child has a deadline: a hang kills the child and fails the test instead of blocking CI.
//!
//! Beside the children: [`unique_name`] and [`segment_path`] name a test's segments and
//! [`Cleanup`] removes them; [`Rng`] and [`seed`] make randomised tests replayable; [`me`] and
//! [`dead_owner`] are the role owners a test writes to play a live or a dead peer; and, with
//! the `queue` feature, `queue::RawQueue` reaches a shared queue's words where the queue says
//! they are.

#![forbid(unsafe_code)]
// Test-only: its handles (children, cleanups) have no use for `Debug`.
#![allow(missing_debug_implementations)]

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

#[cfg(feature = "queue")]
pub mod queue;
mod rng;
mod segment;

pub use rng::{Rng, SEED_ENV, env_u64, seed, seed_or};
pub use segment::{dead_owner, me, segment_path, unique_segment};

/// Environment variable that turns a test binary's `child_entry` into a child role:
/// `role:arg arg ...`.
pub const CHILD_ENV: &str = "SHMLANE_CHILD";
/// Prefix of the stdout lines a child reports on (libtest prints its own lines too).
pub const REPORT_PREFIX: &str = "@@shmlane ";
/// Exit code of a child that saw values out of order: a gap or a duplicate.
pub const EXIT_ORDER: i32 = 2;
/// Exit code of a child whose check or call failed, or whose wait timed out (the reason is on
/// its stderr).
pub const EXIT_FAILED: i32 = 3;
/// Exit code of a child left waiting to be killed whose parent went away.
pub const EXIT_ORPHANED: i32 = 4;
/// Deadline for a child's report or exit.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child waiting to be killed lives if nobody kills it.
pub const ORPHAN_LIMIT: Duration = Duration::from_secs(120);
/// Where POSIX shared memory lives.
pub const SHM_DIR: &str = "/dev/shm";
/// Deadline for a child to stop after SIGSTOP.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh name `{kind}.{tag}.{pid}.{counter}`: unique per process and call.
pub fn unique_name(kind: &str, tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{kind}.{tag}.{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The path of `file_name` in [`SHM_DIR`].
pub fn shm_file(file_name: impl AsRef<Path>) -> PathBuf {
    Path::new(SHM_DIR).join(file_name)
}

/// Removes a path when dropped (also when the test panics), ignoring "already gone".
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Takes the process-wide lock that serialises heavy tests of one binary, even if a test
/// holding it panicked.
pub fn process_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The child's role spec from [`CHILD_ENV`], or `None` in the parent.
pub fn child_spec() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// A numeric argument of a child's role; ends the child (code 2) if it is not a number.
pub fn arg_u64(arg: &str) -> u64 {
    arg.parse().unwrap_or_else(|_| fail(2, format!("not a number: {arg}")))
}

/// Splits a role spec `role:arg arg ...` into the role and its arguments.
pub fn split_spec(spec: &str) -> (&str, Vec<&str>) {
    let (role, args) = spec.split_once(':').unwrap_or((spec, ""));
    (role, args.split_whitespace().collect())
}

/// A child process running one role of this binary, with its reports and stderr collected.
/// Dropping it kills and reaps the child if it still runs.
pub struct ChildProc {
    role: String,
    child: Child,
    reports: Receiver<String>,
    pending: VecDeque<String>,
    stderr: Arc<Mutex<String>>,
    reaped: bool,
}

/// A wrapper for [`spawn_child_under`]: the child runs as pid 1 of a new pid namespace with its
/// own `/proc`, and is killed (SIGKILL) when the wrapper dies, so killing the [`ChildProc`]
/// kills it.
pub const UNSHARE_PID: &[&str] =
    &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"];

/// Whether this machine lets us run a child in a new pid namespace ([`UNSHARE_PID`]); the
/// error says why not (not root, no `unshare`, a sandbox that refuses namespaces).
pub fn pid_namespaces() -> Result<(), String> {
    let (program, args) = UNSHARE_PID.split_first().expect("a program");
    let output = Command::new(program)
        .args(args)
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{} true` failed ({}): {}",
            UNSHARE_PID.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Starts this test binary as a child running `role` with `args`.
pub fn spawn_child(role: &str, args: &[&str]) -> ChildProc {
    spawn_child_with_env(role, args, &[])
}

/// [`spawn_child`] with extra environment variables (for example a crash point to arm).
pub fn spawn_child_with_env(role: &str, args: &[&str], env: &[(&str, &str)]) -> ChildProc {
    spawn_child_under(&[], role, args, env)
}

/// [`spawn_child_with_env`] in a mount namespace of its own (`unshare --mount --propagation
/// private`, root only), after the shell command `setup` ran there: for example a tmpfs or a
/// `/proc` mount that only the child sees. `setup` reads the child's environment (`env`).
pub fn spawn_child_in_mount_namespace(
    setup: &str,
    role: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> ChildProc {
    let script = format!("{setup} && exec \"$0\" \"$@\"");
    let wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", &script];
    spawn_child_under(&wrapper, role, args, env)
}

/// [`spawn_child_with_env`] run by a wrapper command (`wrapper` is its program and arguments,
/// which end where the test binary's path goes), for example [`UNSHARE_PID`] to put the child
/// in a pid namespace of its own. [`ChildProc::pid`] is then the wrapper's.
pub fn spawn_child_under(
    wrapper: &[&str],
    role: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> ChildProc {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut command = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut command = Command::new(program);
            command.args(wrapper_args).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    let mut child = command
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role}:{}", args.join(" ")))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let (sender, reports) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest's "test child_entry ... " has no newline: the first report follows it.
            if let Some(at) = line.find(REPORT_PREFIX)
                && sender.send(line[at + REPORT_PREFIX.len()..].to_owned()).is_err()
            {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&stderr);
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        *sink.lock().unwrap_or_else(|p| p.into_inner()) = text;
    });
    ChildProc {
        role: role.to_owned(),
        child,
        reports,
        pending: VecDeque::new(),
        stderr,
        reaped: false,
    }
}

impl ChildProc {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stderr so far (complete once it has exited).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        let status = self.child.wait().expect("reap the killed child");
        self.reaped = true;
        status
    }

    /// Kills the child and fails the test if it had already exited on its own.
    pub fn kill_while_running(&mut self) {
        let status = self.kill();
        if status.signal() != Some(Signal::KILL.as_raw()) {
            self.drain_stderr();
            panic!(
                "child `{}` exited ({status}) before it was killed. stderr:\n{}",
                self.role,
                self.stderr()
            );
        }
    }

    /// Stops the child (SIGSTOP) and waits until it is stopped, so its memory holds still.
    pub fn stop(&mut self) {
        signal(self, Signal::STOP);
        let stat = format!("/proc/{}/stat", self.pid());
        wait_for("the child to stop", STOP_TIMEOUT, || {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            let state = text.rfind(')').and_then(|at| text[at + 1..].split_whitespace().next());
            matches!(state, Some("T" | "t"))
        });
    }

    /// Lets a stopped child run again (SIGCONT).
    pub fn resume(&self) {
        signal(self, Signal::CONT);
    }

    /// The child's exit status if it has exited (then reaped, its stderr complete), without
    /// waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait on a child")?;
        self.reaped = true;
        self.drain_stderr();
        Some(status)
    }

    /// Fails the test (with the child's stderr) if the child has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_wait() {
            panic!("child `{}` exited early ({status}). stderr:\n{}", self.role, self.stderr());
        }
    }

    /// Lets the stderr reader see EOF before anyone reads the text.
    fn drain_stderr(&self) {
        let drained = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&self.stderr) > 1 && Instant::now() < drained {
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// [`report`](Self::report), but `None` if the child exits without sending it (for a
    /// child whose set-up may be refused by the machine; its stderr says why).
    pub fn try_report(&mut self, key: &str, timeout: Duration) -> Option<String> {
        let value_of = |line: &str| line.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned);
        if let Some(at) = self.pending.iter().position(|line| value_of(line).is_some()) {
            return self.pending.remove(at).and_then(|line| value_of(&line));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.reports.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => match value_of(&line) {
                    Some(value) => return Some(value),
                    None => self.pending.push_back(line),
                },
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    self.drain_stderr();
                    panic!(
                        "child `{}` sent no `{key}` report within {timeout:?}; killed it. \
                         stderr:\n{}",
                        self.role,
                        self.stderr()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.wait(Duration::from_secs(10));
                    return None;
                }
            }
        }
    }

    /// Waits for the report `key` and returns its value; fails if the child hangs or exits
    /// without sending it.
    pub fn report(&mut self, key: &str, timeout: Duration) -> String {
        match self.try_report(key, timeout) {
            Some(value) => value,
            None => {
                let status = self.try_wait();
                panic!(
                    "child `{}` exited ({status:?}) without reporting `{key}`. stderr:\n{}",
                    self.role,
                    self.stderr()
                )
            }
        }
    }

    /// [`report`](Self::report), parsed as a number.
    pub fn report_u64(&mut self, key: &str, timeout: Duration) -> u64 {
        let value = self.report(key, timeout);
        value.parse().unwrap_or_else(|_| panic!("report `{key}` is not a number: {value:?}"))
    }

    /// Waits for the child to exit, killing it and failing the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait().expect("try_wait on a child") {
                Some(status) => {
                    self.reaped = true;
                    self.drain_stderr();
                    return status;
                }
                None if Instant::now() >= deadline => {
                    self.kill();
                    self.drain_stderr();
                    panic!(
                        "child `{}` still running after {timeout:?}: killed it (a hang). \
                         stderr:\n{}",
                        self.role,
                        self.stderr()
                    );
                }
                None => thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Waits for the child to die of `signal` (`why`: what should have killed it); fails the
    /// test if it ended any other way, or hangs past `timeout`.
    pub fn expect_signal(&mut self, signal: Signal, why: &str, timeout: Duration) {
        let status = self.wait(timeout);
        assert_eq!(
            status.signal(),
            Some(signal.as_raw()),
            "child `{}` was to die of {signal:?} ({why}), got {status}. stderr:\n{}",
            self.role,
            self.stderr()
        );
    }

    /// Waits for a child armed with the crash point `point` to kill itself there (SIGKILL).
    pub fn expect_crash(&mut self, point: &str, timeout: Duration) {
        self.expect_signal(Signal::KILL, &format!("its crash point {point}"), timeout);
    }

    /// Waits for the child and fails unless it exited with code 0.
    pub fn expect_success(&mut self, timeout: Duration) {
        let status = self.wait(timeout);
        assert!(
            status.success(),
            "child `{}` failed with {status}. stderr:\n{}",
            self.role,
            self.stderr()
        );
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // A failing test must not leave its child running.
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to a child.
pub fn signal(child: &ChildProc, signal: Signal) {
    let pid = Pid::from_raw(child.pid() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Stops `child` again and again, at varied moments, until `caught` holds for what it left in
/// memory (then it stays stopped, ready to be killed at that instant) or `attempts` run out.
/// Returns whether it was caught.
pub fn stop_when(child: &mut ChildProc, attempts: u64, mut caught: impl FnMut() -> bool) -> bool {
    for attempt in 0..attempts {
        child.stop();
        if caught() {
            return true;
        }
        child.resume();
        thread::sleep(Duration::from_micros(attempt * 37 % 500));
    }
    child.stop();
    false
}

/// A spinning wait on a racing peer, for tests that cannot afford [`wait_for`]'s sleeps: each
/// [`wait`](Spin::wait) spins once, and every so many waits yields instead (the peer may share
/// our core) and checks the deadline.
#[derive(Debug)]
pub struct Spin {
    deadline: Instant,
    yield_every: u32,
    waits: u32,
}

impl Spin {
    /// Waits that give up at `deadline`, yielding every 64.
    pub fn until(deadline: Instant) -> Spin {
        Spin { deadline, yield_every: 64, waits: 0 }
    }

    /// The same, yielding every `waits` waits.
    pub fn yielding_every(self, waits: u32) -> Spin {
        Spin { yield_every: waits.max(1), ..self }
    }

    /// One more wait for `what`; `Err` once the deadline has passed.
    pub fn wait(&mut self, what: &str) -> Result<(), String> {
        self.waits = self.waits.wrapping_add(1);
        if !self.waits.is_multiple_of(self.yield_every) {
            std::hint::spin_loop();
            return Ok(());
        }
        if Instant::now() >= self.deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::yield_now();
        Ok(())
    }
}

/// Spins ([`Spin`]) until `done` holds; `Err` once `deadline` passes.
pub fn spin_until(
    what: &str,
    deadline: Instant,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let mut spin = Spin::until(deadline);
    while !done() {
        spin.wait(what)?;
    }
    Ok(())
}

/// Polls `done` until it holds, failing the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_micros(200));
    }
}

/// The child side of a report line.
pub fn report(key: &str, value: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{REPORT_PREFIX}{key} {value}");
    let _ = out.flush();
}

/// Ends a child with `code`, explaining why on stderr.
pub fn fail(code: i32, message: impl Display) -> ! {
    eprintln!("{message}");
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

/// Keeps a child alive (holding whatever it holds) until the parent kills it; exits with
/// [`EXIT_ORPHANED`] if the parent goes away or after [`ORPHAN_LIMIT`], so a failed test
/// leaves no process behind.
pub fn sleep_until_killed() -> ! {
    let parent = std::os::unix::process::parent_id();
    let started = Instant::now();
    while std::os::unix::process::parent_id() == parent && started.elapsed() < ORPHAN_LIMIT {
        thread::sleep(Duration::from_millis(10));
    }
    fail(EXIT_ORPHANED, "nobody killed me: the parent is gone or forgot");
}

/// Ends a child that finished its role: flushes stdout and exits with code 0.
pub fn exit_child() -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

/// Whether this process runs as root (tests that act as another user need it, and say they
/// are skipped otherwise).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid and gid of `nobody` from /etc/passwd, or the usual 65534.
pub fn nobody() -> (String, String) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let fields = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"nobody") && f.len() > 3);
    fields.map_or(("65534".into(), "65534".into()), |f| (f[2].into(), f[3].into()))
}

/// Drops the calling thread (a child's, which runs its role and starts every thread it uses)
/// to `uid` and `gid` with no supplementary groups; ends the child if that fails.
pub fn become_user(uid: &str, gid: &str) {
    use rustix::process::{Gid, Uid};
    let number = |s: &str| s.parse::<u32>().unwrap_or_else(|e| fail(2, e));
    rustix::thread::set_thread_groups(&[]).unwrap_or_else(|e| fail(3, e));
    rustix::thread::set_thread_gid(Gid::from_raw(number(gid))).unwrap_or_else(|e| fail(3, e));
    rustix::thread::set_thread_uid(Uid::from_raw(number(uid))).unwrap_or_else(|e| fail(3, e));
    if rustix::process::geteuid().as_raw() != number(uid) {
        fail(3, "still root after set_thread_uid");
    }
}
