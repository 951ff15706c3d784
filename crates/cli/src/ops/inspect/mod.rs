//! `shmlane inspect NAME`: one segment in detail: its header, and for a topic its settings,
//! pools, queue fill levels, drops and peers. This module finds the segment and decides the
//! exit code; `text` and `json` write the report.

mod json;
mod text;

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmlane::discovery::{self, InspectError, Inspection, Verdict};
use shmlane_segment::header::RawHeader;
use shmlane_segment::{NAME_PREFIX, ProcessId, SegmentName};

use super::{OpsError, Scope, exit_codes, finish};

/// `shmlane inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Show one segment in detail: its header (magic, format, size, creator, \
                  creation time, init state, layout fingerprint), its state and peers with \
                  liveness; for a topic also its settings, each publisher's payload pools with \
                  the blocks its queues hold, and each subscriber's queue fill level and drops.\n\n\
                  Pool use counts the blocks queued for subscribers or handed back and not yet \
                  collected: blocks on loan, kept for the history or in a subscriber's hands are \
                  known only to their own process, so it is a lower bound.",
        "\n\n",
        exit_codes!()
    ),
    after_help = exit_codes!()
)]
pub struct InspectArgs {
    /// A segment name as `shmlane list` shows it (`app.topic.ticks`), its file name
    /// (`shmlane.app.topic.ticks`), or a service name (`ticks`; with --namespace to choose
    /// among namespaces; an rpc service has two topics, `NAME.req` and `NAME.resp`)
    name: String,
    #[command(flatten)]
    scope: Scope,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// Runs `shmlane inspect`.
pub fn inspect(args: InspectArgs) -> ExitCode {
    finish(run(&args))
}

/// Finds the segment, prints its report, and returns what its state means.
fn run(args: &InspectArgs) -> Result<(), OpsError> {
    let name = resolve(&args.scope, &args.name)?;
    let inspection = match discovery::inspect(args.scope.root(), &name) {
        Ok(inspection) => inspection,
        // Removed since we resolved the name.
        Err(InspectError::NotFound { .. }) => return Err(not_found(&args.scope, &args.name)),
        Err(e) => return Err(e.into()),
    };
    if args.json {
        let json = json::to_json(&inspection);
        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
    } else {
        print!("{}", text::text(&inspection));
    }
    outcome(&name, &inspection)
}

/// An error if the segment is corrupt or unreadable, or its topic has problems.
fn outcome(name: &SegmentName, inspection: &Inspection) -> Result<(), OpsError> {
    let problems = inspection.topic.iter().flat_map(|topic| &topic.problems);
    let name = name.to_string();
    match &inspection.entry.verdict {
        Verdict::Corrupt { reason } => Err(OpsError::Corrupt { name, reason: reason.clone() }),
        Verdict::Unreadable { reason } => {
            Err(OpsError::Unreadable { name, reason: reason.clone() })
        }
        _ => match problems.cloned().collect::<Vec<_>>() {
            problems if problems.is_empty() => Ok(()),
            problems => Err(OpsError::Corrupt { name, reason: problems.join("; ") }),
        },
    }
}

/// No segment or service `name` in the scope's directory.
fn not_found(scope: &Scope, name: &str) -> OpsError {
    OpsError::NotFound { name: name.to_owned(), dir: scope.dir().to_owned() }
}

/// The segment `name` means: a segment name, a file name, or a service name.
fn resolve(scope: &Scope, name: &str) -> Result<SegmentName, OpsError> {
    match segment_named(scope, name) {
        Some(segment) => Ok(segment),
        None => service_segment(scope, name),
    }
}

/// The segment whose segment name or file name is `name`, if its file exists.
fn segment_named(scope: &Scope, name: &str) -> Option<SegmentName> {
    let exists =
        |segment: &SegmentName| scope.dir().join(segment.file_name()).symlink_metadata().is_ok();
    [Some(name), name.strip_prefix(NAME_PREFIX)]
        .into_iter()
        .flatten()
        .filter_map(|candidate| SegmentName::new(candidate).ok())
        .find(exists)
}

/// The one segment of service `name` in the scope (an rpc service's `NAME.req` or
/// `NAME.resp` as well): not found, or ambiguous, if there is not exactly one.
fn service_segment(scope: &Scope, name: &str) -> Result<SegmentName, OpsError> {
    let found: Vec<SegmentName> = discovery::segments(scope.root())?
        .into_iter()
        .filter(|entry| scope.selects(entry))
        .filter(|entry| {
            entry.service.as_ref().is_some_and(|service| {
                let base = service.name.strip_suffix(".req").or(service.name.strip_suffix(".resp"));
                service.name == name || base == Some(name)
            })
        })
        .map(|entry| entry.segment.name)
        .collect();
    match found.as_slice() {
        [] => Err(not_found(scope, name)),
        [one] => Ok(one.clone()),
        _ => Err(OpsError::Ambiguous {
            name: name.to_owned(),
            found: found.iter().map(ToString::to_string).collect(),
        }),
    }
}

/// The header's backing code in words.
fn backing(code: u32) -> String {
    match code {
        1 => "POSIX shm".into(),
        2 => "file in a directory".into(),
        3 => "memfd".into(),
        other => format!("unknown ({other})"),
    }
}

/// The header's init state in words.
fn init_state(raw: u32) -> String {
    match raw {
        0 => "empty".into(),
        1 => "initializing".into(),
        2 => "ready".into(),
        other => format!("unknown ({other})"),
    }
}

/// The header's magic, printable.
fn magic(header: &RawHeader) -> String {
    header.magic.escape_ascii().to_string()
}

/// The process that created the segment.
fn creator(header: &RawHeader) -> ProcessId {
    header.creator()
}

/// When the segment was created.
fn created(header: &RawHeader) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(header.created_unix_ns)
}
