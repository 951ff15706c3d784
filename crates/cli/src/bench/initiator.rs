//! The initiator: validates the options, starts and pins the echo process, runs every round
//! trip and records it, then reports. A watchdog thread kills the echo process if the run
//! stops making progress, so no wait (a blocking `read` included) outlasts a hung peer.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use shmlane::Node;
use shmlane_segment::NAME_PREFIX;

use super::cores::{self, Choice};
use super::link::{HANG, Side};
use super::plan::{ControlSegment, Phase, Plan, Resources, wait_for, wait_word};
use super::report::{self, Machine, Measurement};
use super::stream::Listeners;
use super::{
    BenchArgs, BenchError, DEFAULT_BYTES, DEFAULT_ITERS, MIN_DEFAULT_ITERS, Transport, plot,
};

/// Where POSIX shared memory lives.
const SHM_DIR: &str = "/dev/shm";

/// Runs the bench with `args` and prints (and writes) the results.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    let choice = cores::choose(args.cores).map_err(BenchError::Usage)?;
    let mut transports =
        if args.transports.is_empty() { Transport::ALL.to_vec() } else { args.transports.clone() };
    transports.sort();
    transports.dedup();
    let mut payloads =
        if args.payloads.is_empty() { vec![8, 64, 4096, 1 << 20] } else { args.payloads.clone() };
    payloads.sort();
    payloads.dedup();
    // Opened now, so a bad path fails before the run rather than after it.
    let json = args.json.as_deref().map(create).transpose()?;
    let svg = args.plot.as_deref().map(create).transpose()?;
    for warning in &choice.warnings {
        eprintln!("warning: {warning}");
    }
    let phases = payloads
        .iter()
        .map(|&payload| {
            let iters = args.iters.unwrap_or_else(|| {
                (DEFAULT_BYTES / payload).clamp(MIN_DEFAULT_ITERS, DEFAULT_ITERS)
            });
            Phase { payload, iters, warmup: args.warmup.unwrap_or(iters / 10) }
        })
        .collect();
    let run = format!("bench_{}", std::process::id());
    let plan = Plan {
        run: run.clone(),
        cpu: choice.echo,
        transports,
        phases,
        round: args.round,
        uds: None,
        tcp_port: None,
    };
    let outcome = measure(plan, &choice, args.rate);
    let left = remove_leftovers(&run);
    let measurements = outcome?;
    if !left.is_empty() {
        eprintln!("warning: removed segments the run left behind (a bug): {left:?}");
    }
    let machine = Machine { cpu: cores::cpu_model(), cores: [choice.initiator, choice.echo] };
    report::print(&measurements, &machine, args.rate);
    if let (Some(file), Some(path)) = (json, &args.json) {
        report::write_json(file, &machine, &measurements)
            .map_err(|reason| BenchError::Output { path: path.clone(), reason })?;
    }
    if let (Some(file), Some(path)) = (svg, &args.plot) {
        drop(file);
        plot::draw(path, &measurements, &machine)
            .map_err(|reason| BenchError::Output { path: path.clone(), reason })?;
    }
    Ok(())
}

fn create(path: &Path) -> Result<File, BenchError> {
    File::create(path)
        .map_err(|e| BenchError::Usage(format!("cannot write {}: {e}", path.display())))
}

/// Starts the echo process, runs every payload size, and returns the histograms.
fn measure(
    mut plan: Plan,
    choice: &Choice,
    rate: Option<f64>,
) -> Result<Vec<Measurement>, BenchError> {
    let listeners = Listeners::bind(plan.has(Transport::Uds), plan.has(Transport::Tcp))
        .map_err(|e| setup("listen for the echo process", e))?;
    plan.uds = listeners.uds_path().map(Path::to_path_buf);
    plan.tcp_port = listeners.tcp_port().map_err(|e| setup("TCP port", e))?;
    let control = ControlSegment::create(&plan.run)?;
    let words = control.words()?;
    let node = Node::builder("bench")
        .namespace(plan.run.as_str())
        .create()
        .map_err(|e| setup("node", e))?;

    let mut echo = EchoProcess::spawn(&plan)?;
    let watchdog = Watchdog::start(echo.child.id());
    // After the child is started: it must not inherit our single CPU.
    cores::pin(choice.initiator).map_err(BenchError::Setup)?;
    let pipe = echo.child.stdin.take().zip(echo.child.stdout.take());
    let connections = listeners
        .accept(&mut echo.child, pipe)
        .map_err(|e| setup("accept the echo process's connections", e))?;
    wait_word("the echo process to start", &words.ready, 1, || echo.check_running())?;

    let total: u64 =
        plan.phases.iter().map(|p| (p.warmup + p.iters) * plan.transports.len() as u64).sum();
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let resources = Resources::every(&plan, &node, Side::Initiator)?;
    let mut links = Resources::all_links(&resources, &plan, Side::Initiator, &connections)?;
    // Release: every payload size's segment and topics exist.
    words.created.store(1, Ordering::Release);
    wait_word("the echo process to attach", &words.attached, 1, || echo.check_running())?;
    wait_for(
        "the echo process's subscribers",
        || links.iter().flatten().all(|l| l.peer_attached()),
        || echo.check_running(),
    )?;

    let mut histograms: Vec<Vec<Histogram<u64>>> = plan
        .phases
        .iter()
        .map(|_| plan.transports.iter().map(|_| report::histogram()).collect())
        .collect();
    let mut pacer = rate.map(Pacer::new);
    let outcome = plan.schedule(
        |k, t, i| {
            let late = pacer.as_mut().map_or(Duration::ZERO, Pacer::wait);
            let link = &mut links[k][t];
            let start = Instant::now();
            let trip = link.send(i + 1).and_then(|()| link.receive(i + 1));
            let elapsed = start.elapsed();
            trip.map_err(|source| BenchError::Link {
                transport: plan.transports[t],
                payload: plan.phases[k].payload,
                source,
            })?;
            if i >= plan.phases[k].warmup {
                // One way = late start + round trip / 2, kept as twice that.
                let ns = (2 * late + elapsed).as_nanos();
                histograms[k][t].saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
            }
            Ok(())
        },
        |trips| {
            watchdog.progress();
            progress.inc(trips);
        },
    );
    if let Err(error) = outcome {
        return Err(echo.explain(error));
    }
    drop(links);
    drop(resources);
    let mut measurements = Vec::new();
    for (phase, histograms) in plan.phases.iter().zip(histograms) {
        measurements.extend(plan.transports.iter().zip(histograms).map(
            |(&transport, histogram)| Measurement { transport, payload: phase.payload, histogram },
        ));
    }
    progress.finish_and_clear();
    echo.join()?;
    watchdog.stop();
    Ok(measurements)
}

fn setup(what: &str, error: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("{what}: {error}"))
}

/// The fixed-rate schedule of `--rate`.
struct Pacer {
    start: Instant,
    period: Duration,
    sent: u32,
}

impl Pacer {
    fn new(hz: f64) -> Pacer {
        Pacer { start: Instant::now(), period: Duration::from_secs_f64(1.0 / hz), sent: 0 }
    }

    /// Waits for the next intended start (sleeping, then spinning for the last 100 µs);
    /// returns how late it is.
    fn wait(&mut self) -> Duration {
        let due = self.start + self.period * self.sent;
        self.sent = self.sent.saturating_add(1);
        loop {
            let now = Instant::now();
            if now >= due {
                return now - due;
            }
            let left = due - now;
            if left > Duration::from_micros(200) {
                thread::sleep(left - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// The echo process; killed if still running when dropped.
struct EchoProcess {
    child: Child,
}

impl EchoProcess {
    fn spawn(plan: &Plan) -> Result<EchoProcess, BenchError> {
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

    /// An error if the echo process has exited.
    fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Echo(format!("exited early ({status})"))),
            Err(e) => Err(BenchError::Echo(format!("cannot be waited for: {e}"))),
        }
    }

    /// `error`, with the echo process's exit status if it died (the likelier cause).
    fn explain(&mut self, error: BenchError) -> BenchError {
        thread::sleep(Duration::from_millis(100));
        match self.child.try_wait() {
            Ok(Some(status)) => BenchError::Echo(format!("exited ({status}), so: {error}")),
            _ => error,
        }
    }

    /// Waits for the echo process to finish and checks it succeeded.
    fn join(&mut self) -> Result<(), BenchError> {
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
struct Watchdog {
    rounds: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// How often the watchdog looks.
    const TICK: Duration = Duration::from_millis(250);

    fn start(pid: u32) -> Watchdog {
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
    fn progress(&self) {
        // Relaxed: see `start`.
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    fn stop(mut self) {
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

/// Removes every segment of run `run` still in [`SHM_DIR`] (there are some only if a process
/// died or a bug leaked them); returns their names.
fn remove_leftovers(run: &str) -> Vec<PathBuf> {
    let prefix = format!("{NAME_PREFIX}{run}.");
    let Ok(entries) = std::fs::read_dir(SHM_DIR) else { return Vec::new() };
    let left: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(&prefix))
        })
        .collect();
    for path in &left {
        let _ = std::fs::remove_file(path);
    }
    left
}
