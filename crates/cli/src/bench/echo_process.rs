//! The echo process as the initiator sees it: started, checked, joined, and watched by a
//! watchdog thread that kills it if the run stops making progress, so that no wait (a blocking
//! `read` included) outlasts a hung peer.

use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::link::HANG;
use super::plan::Plan;
use super::{BenchError, Transport};

/// The echo process; killed if still running when dropped.
pub struct EchoProcess {
    child: Child,
}

impl EchoProcess {
    /// Re-executes this program as `shmlane bench-echo` with `plan`; its stdin and stdout are
    /// piped if the `pipe` transport is measured.
    pub fn spawn(plan: &Plan) -> Result<EchoProcess, BenchError> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Setup(format!("path of this program: {e}")))?;
        let plan_json =
            serde_json::to_string(plan).map_err(|e| BenchError::Setup(format!("plan: {e}")))?;
        let pipe = || if plan.has(Transport::Pipe) { Stdio::piped() } else { Stdio::null() };
        let child = Command::new(exe)
            .args(["bench-echo", "--plan", &plan_json])
            .stdin(pipe())
            .stdout(pipe())
            .spawn()
            .map_err(|e| BenchError::Setup(format!("start the echo process: {e}")))?;
        Ok(EchoProcess { child })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its stdin and stdout, the initiator's ends of the `pipe` transport (`None` without
    /// `pipe`, or once taken).
    pub fn take_pipe(&mut self) -> Option<(ChildStdin, ChildStdout)> {
        self.child.stdin.take().zip(self.child.stdout.take())
    }

    /// The child process, for waits that give up when it exits.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// An error if the echo process has exited.
    pub fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Echo(format!("exited early ({status})"))),
            Err(e) => Err(BenchError::Echo(format!("cannot be waited for: {e}"))),
        }
    }

    /// `error`, with the echo process's exit status if it died (the likelier cause).
    pub fn explain(&mut self, error: BenchError) -> BenchError {
        thread::sleep(Duration::from_millis(100));
        match self.child.try_wait() {
            Ok(Some(status)) => BenchError::Echo(format!("exited ({status}), so: {error}")),
            _ => error,
        }
    }

    /// Waits for the echo process to finish and checks it succeeded.
    pub fn join(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + HANG;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(BenchError::Echo(format!("failed ({status})"))),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
                Ok(None) => return Err(BenchError::Echo("did not exit after the run".into())),
                Err(e) => return Err(BenchError::Echo(format!("cannot be waited for: {e}"))),
            }
        }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills the echo process if no round of round trips completes for longer than a wait may
/// take ([`HANG`], plus slack): then every wait of the initiator ends too.
pub struct Watchdog {
    rounds: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// How often the watchdog looks.
    const TICK: Duration = Duration::from_millis(250);

    /// Starts watching the echo process `pid`.
    pub fn start(pid: u32) -> Watchdog {
        let rounds = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&rounds), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let (mut last, mut since) = (0, Instant::now());
            // Relaxed: a flag polled each tick; nothing rides on it.
            while !stopped.load(Ordering::Relaxed) {
                thread::sleep(Self::TICK);
                // Relaxed: a progress counter; only its changing matters.
                let now = seen.load(Ordering::Relaxed);
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() > HANG * 2 {
                    eprintln!(
                        "shmlane bench: no progress for {:?}: killing the echo process",
                        HANG * 2
                    );
                    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                    return;
                }
            }
        });
        Watchdog { rounds, stop, thread: Some(thread) }
    }

    /// Notes that a round completed.
    pub fn progress(&self) {
        // Relaxed: see `start`.
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops watching, and waits for the watchdog thread to end.
    pub fn stop(mut self) {
        // Relaxed: see `start`.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Relaxed: see `start`. The thread exits within a tick; it is not joined here.
        self.stop.store(true, Ordering::Relaxed);
    }
}
