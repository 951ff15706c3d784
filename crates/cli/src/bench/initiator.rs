//! The initiator: validates the options, starts and pins the echo process, runs every round
//! trip and records it, then reports. A watchdog thread kills the echo process if the run
//! stops making progress (see `echo_process`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use shmlane::Node;
use shmlane_segment::NAME_PREFIX;

use super::cores::{self, Choice};
use super::echo_process::{EchoProcess, Watchdog};
use super::link::{Link, LinkError, Side};
use super::plan::{Control, ControlSegment, Phase, Plan, Resources, wait_for, wait_word};
use super::report::{self, Machine, Measurement};
use super::stream::{Connections, Listeners};
use super::{
    BenchArgs, BenchError, DEFAULT_BYTES, DEFAULT_ITERS, MIN_DEFAULT_ITERS, Mode, Transport, plot,
};

/// Where POSIX shared memory lives.
const SHM_DIR: &str = "/dev/shm";

/// Each side's ends of every transport of every payload size, `[size][transport]`.
pub type Links<'r> = [Vec<Box<dyn Link + 'r>>];

/// Runs the bench with `args` and prints (and writes) the results.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    let choice = cores::choose(args.cores).map_err(BenchError::Usage)?;
    let transports = sorted(&args.transports, &Transport::ALL);
    if let Some(streaming) = transports.iter().find(|t| !Transport::ALL.contains(t)) {
        return Err(BenchError::Usage(format!(
            "{streaming} streams only: measure it with --mode throughput"
        )));
    }
    let payloads = sorted(&args.payloads, &[8, 64, 4096, 1 << 20]);
    // Opened now, so a bad path fails before the run rather than after it.
    let json = args.json.as_deref().map(create).transpose()?;
    let svg = args.plot.as_deref().map(create).transpose()?;
    for warning in &choice.warnings {
        eprintln!("warning: {warning}");
    }
    let run = format!("bench_{}", std::process::id());
    let plan = Plan {
        run: run.clone(),
        cpu: choice.echo,
        transports,
        phases: phases(&args, &payloads),
        round: args.round,
        turn_warmup: args.turn_warmup,
        uds: None,
        tcp_port: None,
        mode: Mode::Latency,
        rounds: 0,
    };
    let outcome = measure(plan, &choice, args.rate);
    let left = remove_leftovers(&run);
    let measurements = outcome?;
    if !left.is_empty() {
        eprintln!("warning: removed segments the run left behind (a bug): {left:?}");
    }
    let machine = Machine { cpu: cores::cpu_model(), cores: [choice.initiator, choice.echo] };
    report::print(&measurements, &machine, args.rate);
    write_outputs(&args, json, svg, &measurements, &machine)
}

/// `given` sorted without duplicates, or `default` if nothing was given.
pub fn sorted<T: Clone + Ord>(given: &[T], default: &[T]) -> Vec<T> {
    let mut list = if given.is_empty() { default.to_vec() } else { given.to_vec() };
    list.sort();
    list.dedup();
    list
}

/// Each payload size's round trips: `--iters` and `--warmup`, or the defaults for its size.
fn phases(args: &BenchArgs, payloads: &[u64]) -> Vec<Phase> {
    payloads
        .iter()
        .map(|&payload| {
            let iters = args.iters.unwrap_or_else(|| {
                (DEFAULT_BYTES / payload).clamp(MIN_DEFAULT_ITERS, DEFAULT_ITERS)
            });
            Phase { payload, iters, warmup: args.warmup.unwrap_or(iters / 10) }
        })
        .collect()
}

/// Creates the output file `path` (a usage error if it cannot be).
pub fn create(path: &Path) -> Result<File, BenchError> {
    File::create(path)
        .map_err(|e| BenchError::Usage(format!("cannot write {}: {e}", path.display())))
}

/// Writes the `--json` file and draws the `--plot` file, into the files opened for them.
fn write_outputs(
    args: &BenchArgs,
    json: Option<File>,
    svg: Option<File>,
    measurements: &[Measurement],
    machine: &Machine,
) -> Result<(), BenchError> {
    if let (Some(file), Some(path)) = (json, &args.json) {
        report::write_json(file, machine, measurements)
            .map_err(|reason| BenchError::Output { path: path.clone(), reason })?;
    }
    if let (Some(file), Some(path)) = (svg, &args.plot) {
        drop(file);
        plot::draw(path, measurements, machine)
            .map_err(|reason| BenchError::Output { path: path.clone(), reason })?;
    }
    Ok(())
}

/// Starts the echo process, runs every payload size, and returns the histograms.
fn measure(plan: Plan, choice: &Choice, rate: Option<f64>) -> Result<Vec<Measurement>, BenchError> {
    with_echo(plan, choice, |plan, links, _, _, after_turn| {
        let histograms = round_trips(plan, links, rate, after_turn)?;
        Ok(measurements(plan, histograms))
    })
}

/// Starts the echo process and sets up every payload size's ends of every transport; once
/// the echo process is attached, calls `run(plan, links, control words, echo process,
/// progress)` (`progress(units)` after each turn: round trips, or messages in throughput
/// mode), then waits for the echo process to finish. Its error, if it fails, is explained
/// by the echo process's exit.
pub fn with_echo<R>(
    mut plan: Plan,
    choice: &Choice,
    run: impl FnOnce(
        &Plan,
        &mut Links<'_>,
        &Control,
        &mut EchoProcess,
        &mut dyn FnMut(u64),
    ) -> Result<R, BenchError>,
) -> Result<R, BenchError> {
    let listeners = listen(&mut plan)?;
    let control = ControlSegment::create(&plan.run)?;
    let words = control.words()?;
    let node = Node::builder("bench")
        .namespace(plan.run.as_str())
        .create()
        .map_err(|e| setup("node", e))?;

    let mut echo = EchoProcess::spawn(&plan)?;
    let watchdog = Watchdog::start(echo.id());
    let connections = connect(&mut echo, &listeners, choice, words)?;
    let progress = progress_bar(&plan);
    let resources = Resources::every(&plan, &node, Side::Initiator)?;
    let mut links = Resources::all_links(&resources, &plan, Side::Initiator, &connections)?;
    attach(&mut echo, words, &links)?;

    let mut after_turn = |units| {
        watchdog.progress();
        progress.inc(units);
    };
    let outcome = match run(&plan, &mut links, words, &mut echo, &mut after_turn) {
        Ok(outcome) => outcome,
        Err(error) => return Err(echo.explain(error)),
    };
    drop(links);
    drop(resources);
    progress.finish_and_clear();
    echo.join()?;
    watchdog.stop();
    Ok(outcome)
}

/// Binds the listening sockets of the socket transports, and writes where they are into
/// `plan` for the echo process.
fn listen(plan: &mut Plan) -> Result<Listeners, BenchError> {
    let listeners = Listeners::bind(plan.has(Transport::Uds), plan.has(Transport::Tcp))
        .map_err(|e| setup("listen for the echo process", e))?;
    plan.uds = listeners.uds_path().map(Path::to_path_buf);
    plan.tcp_port = listeners.tcp_port().map_err(|e| setup("TCP port", e))?;
    Ok(listeners)
}

/// Pins this process, accepts the echo process's connections and waits until it is ready.
fn connect(
    echo: &mut EchoProcess,
    listeners: &Listeners,
    choice: &Choice,
    words: &Control,
) -> Result<Connections, BenchError> {
    // After the child is started: it must not inherit our single CPU.
    cores::pin(choice.initiator).map_err(BenchError::Setup)?;
    let pipe = echo.take_pipe();
    let connections = listeners
        .accept(echo.child(), pipe)
        .map_err(|e| setup("accept the echo process's connections", e))?;
    wait_word("the echo process to start", &words.ready, 1, || echo.check_running())?;
    Ok(connections)
}

/// The progress bar over every round trip (throughput mode: message) of the run.
fn progress_bar(plan: &Plan) -> ProgressBar {
    let total: u64 = match plan.mode {
        // Every trip of the schedule, the turns' warm-ups too: counted by walking it.
        Mode::Latency => {
            let mut total = 0;
            let _ = plan.schedule::<()>(|_, _, _, _| Ok(()), |trips| total += trips);
            total
        }
        Mode::Throughput => plan
            .phases
            .iter()
            .map(|phase| (phase.warmup + plan.rounds * phase.iters) * plan.transports.len() as u64)
            .sum(),
    };
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    )
}

/// Tells the echo process that everything exists, then waits until it is attached and its
/// subscribers are served.
fn attach(echo: &mut EchoProcess, words: &Control, links: &Links<'_>) -> Result<(), BenchError> {
    // Release: every payload size's segment and topics exist.
    words.created.store(1, Ordering::Release);
    wait_word("the echo process to attach", &words.attached, 1, || echo.check_running())?;
    wait_for(
        "the echo process's subscribers",
        || links.iter().flatten().all(|link| link.peer_attached()),
        || echo.check_running(),
    )
}

/// Runs the schedule of `plan` over `links`, paced by `rate` if given, and returns each
/// payload size's histograms (one per transport) of the recorded round trips.
/// `after_turn(trips)` after each turn.
fn round_trips(
    plan: &Plan,
    links: &mut Links<'_>,
    rate: Option<f64>,
    after_turn: &mut dyn FnMut(u64),
) -> Result<Vec<Vec<Histogram<u64>>>, BenchError> {
    let mut histograms: Vec<Vec<Histogram<u64>>> = plan
        .phases
        .iter()
        .map(|_| plan.transports.iter().map(|_| report::histogram()).collect())
        .collect();
    let mut pacer = rate.map(Pacer::new);
    plan.schedule(
        |phase, transport, seq, recorded| {
            let late = pacer.as_mut().map_or(Duration::ZERO, Pacer::wait);
            let elapsed =
                time_round_trip(links[phase][transport].as_mut(), seq).map_err(|source| {
                    BenchError::Link {
                        transport: plan.transports[transport],
                        payload: plan.phases[phase].payload,
                        source,
                    }
                })?;
            if recorded {
                record(&mut histograms[phase][transport], late, elapsed);
            }
            Ok(())
        },
        after_turn,
    )?;
    Ok(histograms)
}

/// Sends message `seq` on `link` and waits for it to come back; returns how long that took.
#[inline(always)]
fn time_round_trip(link: &mut dyn Link, seq: u64) -> Result<Duration, LinkError> {
    let start = Instant::now();
    let outcome = link.send(seq).and_then(|()| link.receive(seq));
    let elapsed = start.elapsed();
    outcome.map(|()| elapsed)
}

/// Records a round trip that started `late` and took `elapsed`: one way = late start + round
/// trip / 2, kept as twice that.
fn record(histogram: &mut Histogram<u64>, late: Duration, elapsed: Duration) {
    let ns = (2 * late + elapsed).as_nanos();
    histogram.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
}

/// The histograms as measurements, payload size by payload size, each in transport order.
fn measurements(plan: &Plan, histograms: Vec<Vec<Histogram<u64>>>) -> Vec<Measurement> {
    let mut measurements = Vec::new();
    for (phase, histograms) in plan.phases.iter().zip(histograms) {
        measurements.extend(plan.transports.iter().zip(histograms).map(
            |(&transport, histogram)| Measurement { transport, payload: phase.payload, histogram },
        ));
    }
    measurements
}

/// A set-up error: `what` failed with `error`.
pub fn setup(what: &str, error: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("{what}: {error}"))
}

/// The fixed-rate schedule of `--rate`.
struct Pacer {
    start: Instant,
    period: Duration,
    sent: u32,
}

impl Pacer {
    /// `hz` round trips a second, from now.
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

/// Removes every segment of run `run` still in [`SHM_DIR`] (there are some only if a process
/// died or a bug leaked them); returns their names.
pub fn remove_leftovers(run: &str) -> Vec<PathBuf> {
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
