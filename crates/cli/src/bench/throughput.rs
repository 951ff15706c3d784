//! `shmlane bench --mode throughput`: one-way streaming between the two pinned processes.
//!
//! The initiator publishes, the echo process receives and checks every sequence number; no
//! message may be lost (`shmlane-spsc` waits for room in its 256-slot queue, `shmlane-pubsub`
//! is a topic with capacity 256 under `Overflow::Block`). Each run of messages is timed by
//! the initiator from its first send until the echo process has stored, in `Control::done`,
//! that it received the run's last message. A warm-up round (a tenth of the messages) is
//! discarded; in every recorded round each payload size, and within it each transport,
//! makes one run, the transports' order reversed every other round, so the host's phases hit
//! them alike and each round's ratio compares runs a few ms apart.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::cores;
use super::initiator::{create, remove_leftovers, sorted, with_echo};
use super::link::{Link, spin_until};
use super::plan::{Phase, Plan, wait_word};
use super::pubsub::STREAM_PAYLOADS;
use super::report::{self, Machine, Throughput};
use super::{BenchArgs, BenchError, Mode, Transport};

/// Messages per transport, payload size and round when `--messages` is not given.
const DEFAULT_MESSAGES: u64 = 1_000_000;
/// The transports that can stream.
const STREAMING: [Transport; 3] =
    [Transport::ShmlaneSpsc, Transport::ShmlanePubsub, Transport::ShmlanePubsubBatch];

/// Runs the throughput mode with `args` and prints (and writes) the results.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    let latency_only = [
        ("--iters", args.iters.is_some()),
        ("--warmup", args.warmup.is_some()),
        ("--rate", args.rate.is_some()),
        ("--plot", args.plot.is_some()),
    ];
    if let Some((option, _)) = latency_only.iter().find(|(_, given)| *given) {
        return Err(usage(format!("{option} applies to the latency mode only")));
    }
    let transports = sorted(&args.transports, &STREAMING);
    if let Some(other) = transports.iter().find(|t| !STREAMING.contains(t)) {
        return Err(usage(format!(
            "{other} cannot stream: the throughput mode measures shmlane-spsc, shmlane-pubsub \
             and shmlane-pubsub-batch"
        )));
    }
    let payloads = sorted(&args.payloads, &STREAM_PAYLOADS);
    if let Some(other) = payloads.iter().find(|p| !STREAM_PAYLOADS.contains(p)) {
        return Err(usage(format!(
            "no throughput payload type of {other} bytes: use 8, 64, 1K or 64K"
        )));
    }
    let choice = cores::choose(args.cores).map_err(BenchError::Usage)?;
    let json = args.json.as_deref().map(create).transpose()?;
    for warning in &choice.warnings {
        eprintln!("warning: {warning}");
    }
    let messages = args.messages.unwrap_or(DEFAULT_MESSAGES);
    let run = format!("bench_{}", std::process::id());
    let plan = Plan {
        run: run.clone(),
        cpu: choice.echo,
        transports: transports.clone(),
        phases: payloads
            .iter()
            .map(|&payload| Phase { payload, warmup: messages / 10, iters: messages })
            .collect(),
        round: messages,
        turn_warmup: 0,
        uds: None,
        tcp_port: None,
        mode: Mode::Throughput,
        rounds: args.rounds,
    };
    let outcome = with_echo(plan, &choice, |plan, links, words, echo, progress| {
        let mut rates = vec![vec![Vec::new(); plan.transports.len()]; plan.phases.len()];
        let mut done = 0;
        plan.stream_schedule(|round, phase, transport, first, count| {
            let failed = |source| BenchError::Link {
                transport: plan.transports[transport],
                payload: plan.phases[phase].payload,
                source,
            };
            // The echo process polls this run's link once it has counted the previous run.
            wait_word("the echo process to finish a run", &words.done, done, || {
                echo.check_running()
            })?;
            let link: &mut dyn Link = links[phase][transport].as_mut();
            let start = Instant::now();
            link.send_run(first, count).map_err(failed)?;
            // Acquire: pairs with the echo process's Release store once it has the last one.
            spin_until("the echo process to receive a run", || {
                (words.done.load(Ordering::Acquire) > done).then_some(())
            })
            .map_err(failed)?;
            let elapsed = start.elapsed().as_secs_f64().max(1e-9);
            done += 1;
            if round > 0 {
                rates[phase][transport].push(count as f64 / elapsed);
            }
            progress(count);
            Ok(())
        })?;
        Ok(rates)
    });
    let left = remove_leftovers(&run);
    let rates = outcome?;
    if !left.is_empty() {
        eprintln!("warning: removed segments the run left behind (a bug): {left:?}");
    }
    let rows: Vec<Throughput> = payloads
        .iter()
        .zip(rates)
        .flat_map(|(&payload, rates)| {
            transports.iter().zip(rates).map(move |(&transport, rates)| Throughput {
                transport,
                payload,
                messages,
                rates,
            })
        })
        .collect();
    let machine = Machine { cpu: cores::cpu_model(), cores: [choice.initiator, choice.echo] };
    report::print_throughput(&rows, &machine);
    if let (Some(file), Some(path)) = (json, &args.json) {
        report::write_throughput_json(file, &machine, &rows)
            .map_err(|reason| BenchError::Output { path: path.clone(), reason })?;
    }
    Ok(())
}

/// A usage error of the throughput mode.
fn usage(message: String) -> BenchError {
    BenchError::Usage(format!("--mode throughput: {message}"))
}
