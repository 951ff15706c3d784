//! `shmlane journal inspect --json`: the report as one JSON object.

use serde_json::{Value, json};
use shmlane_journal::{AppenderState, FileReport, Inspection, Problem};

use super::{file_name, utc};
use crate::ops::show;

/// The whole report as one JSON object.
pub(super) fn to_json(inspection: &Inspection) -> Value {
    let index_range = match (inspection.first_index, inspection.last_index) {
        (Some(first), Some(last)) => json!({ "first": first, "last": last }),
        _ => Value::Null,
    };
    let time_range = match (inspection.first_timestamp_ns, inspection.last_timestamp_ns) {
        (Some(first), Some(last)) => json!({
            "first_ns": first,
            "first": utc(first),
            "last_ns": last,
            "last": utc(last),
        }),
        _ => Value::Null,
    };
    json!({
        "dir": inspection.dir.display().to_string(),
        "healthy": inspection.is_healthy(),
        "type": inspection.record_type.as_ref().map(|kind| json!({
            "name": kind.name,
            "size": kind.size,
            "align": kind.align,
            "version": kind.version,
        })),
        "records": inspection.records,
        "index_range": index_range,
        "time_range": time_range,
        "appender": appender_json(&inspection.appender),
        "writing": inspection.in_progress.map(|(seq, offset, index)| json!({
            "file_seq": seq,
            "offset": offset,
            "index": index,
        })),
        "files": inspection.files.iter().map(file_json).collect::<Vec<_>>(),
        "problems": inspection.problems.iter().map(problem_json).collect::<Vec<_>>(),
    })
}

/// `{"state": "free"}`, `{"state": "held", "pid": 42, "liveness": "alive", ...}`, ...
fn appender_json(appender: &AppenderState) -> Value {
    match appender {
        AppenderState::NoControl => json!({ "state": "none" }),
        AppenderState::Free => json!({ "state": "free" }),
        AppenderState::Held { owner, pid, liveness } => json!({
            "state": "held",
            "pid": pid,
            "liveness": show::liveness(*liveness),
            "presence": format!("{:016x}", owner.to_raw()),
        }),
        AppenderState::Unreadable(reason) => json!({ "state": "unknown", "reason": reason }),
    }
}

fn file_json(file: &FileReport) -> Value {
    json!({
        "name": file_name(&file.path),
        "path": file.path.display().to_string(),
        "seq": file.seq,
        "size": file.size,
        "used": file.used,
        "first_index": file.first_index,
        "created_unix_ns": file.created_unix_ns,
        "created": utc(file.created_unix_ns),
        "records": file.records,
        "first_timestamp_ns": file.first_timestamp_ns,
        "last_timestamp_ns": file.last_timestamp_ns,
        "ended": file.ended,
        "index_stride": file.index_stride,
        "index_entries": file.index_entries,
    })
}

fn problem_json(problem: &Problem) -> Value {
    json!({
        "kind": problem.kind.name(),
        "path": problem.path.display().to_string(),
        "file_seq": problem.file_seq,
        "offset": problem.offset,
        "index": problem.index,
        "reason": problem.reason,
    })
}
