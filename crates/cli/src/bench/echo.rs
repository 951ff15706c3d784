//! The echo side of `shmlane bench`: `shmlane bench-echo --plan JSON`, started by the
//! initiator. It pins itself, connects, and for each payload size returns every message (in
//! throughput mode: receives every message, and counts finished runs in `Control::done`).

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use shmlane::Node;

use super::link::Side;
use super::plan::{ControlSegment, Plan, Resources, wait_for, wait_word};
use super::stream::Connections;
use super::{BenchError, Mode, Transport};

/// `shmlane bench-echo`'s options.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// The plan, as JSON.
    #[arg(long)]
    plan: String,
}

/// Runs the echo side; reports failures on stderr (stdout may be the bench's pipe).
pub fn run(args: EchoArgs) -> ExitCode {
    let outcome = serde_json::from_str(&args.plan)
        .map_err(|e| BenchError::Usage(format!("bad plan: {e}")))
        .and_then(|plan| echo(&plan));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shmlane bench-echo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Pins, connects and attaches as `plan` says, then returns every message of the schedule.
fn echo(plan: &Plan) -> Result<(), BenchError> {
    super::cores::pin(plan.cpu).map_err(BenchError::Setup)?;
    let control = ControlSegment::open(&plan.run)?;
    let words = control.words()?;
    let connections =
        Connections::connect(plan.has(Transport::Pipe), plan.uds.as_deref(), plan.tcp_port)
            .map_err(|e| BenchError::Setup(format!("connect to the bench process: {e}")))?;
    let node = Node::builder("bench-echo")
        .namespace(plan.run.as_str())
        .create()
        .map_err(|e| BenchError::Setup(format!("node: {e}")))?;
    // Release: tells the initiator we are pinned and connected.
    words.ready.store(1, Ordering::Release);
    wait_word("the bench process's resources", &words.created, 1, || Ok(()))?;
    let resources = Resources::every(plan, &node, Side::Echo)?;
    let mut links = Resources::all_links(&resources, plan, Side::Echo, &connections)?;
    wait_for(
        "the bench process's subscribers",
        || links.iter().flatten().all(|link| link.peer_attached()),
        || Ok(()),
    )?;
    // Release: our ends exist and serve the initiator's.
    words.attached.store(1, Ordering::Release);
    if plan.mode == Mode::Throughput {
        let mut done = 0;
        return plan.stream_schedule(|_, phase, transport, first, count| {
            links[phase][transport].receive_run(first, count).map_err(|source| {
                BenchError::Link {
                    transport: plan.transports[transport],
                    payload: plan.phases[phase].payload,
                    source,
                }
            })?;
            done += 1;
            // Release: nothing rides on it but the count; the initiator stops its clock.
            words.done.store(done, Ordering::Release);
            Ok(())
        });
    }
    plan.schedule(
        |phase, transport, seq, _| {
            let link = &mut links[phase][transport];
            link.receive(seq).and_then(|()| link.send(seq)).map_err(|source| BenchError::Link {
                transport: plan.transports[transport],
                payload: plan.phases[phase].payload,
                source,
            })
        },
        |_| {},
    )?;
    Ok(())
}
