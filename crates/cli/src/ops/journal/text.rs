//! `shmlane journal inspect`'s text report: one `key value` line per field, then the files
//! and the problems.

use std::fmt::Write as _;

use shmlane_journal::{AppenderState, FileReport, Inspection, Problem, RecordType};

use super::{file_name, utc};
use crate::ops::show;

/// The whole report.
pub(super) fn text(inspection: &Inspection) -> String {
    let mut out = String::new();
    field(&mut out, "journal", inspection.dir.display().to_string());
    let kind =
        inspection.record_type.as_ref().map_or("unknown (no readable file)".into(), type_text);
    field(&mut out, "type", kind);
    field(&mut out, "records", records_text(inspection));
    if let (Some(first), Some(last)) = (inspection.first_timestamp_ns, inspection.last_timestamp_ns)
    {
        field(&mut out, "first", format!("{} ({first} ns)", utc(first)));
        field(&mut out, "last", format!("{} ({last} ns)", utc(last)));
    }
    field(&mut out, "appender", appender_text(&inspection.appender));
    if let Some((seq, offset, index)) = inspection.in_progress {
        let value = format!("record {index} at byte {offset} of file {seq}, by the live appender");
        field(&mut out, "writing", value);
    }
    field(&mut out, "files", inspection.files.len().to_string());
    for file in &inspection.files {
        let _ = writeln!(out, "  {}", file_text(file));
    }
    for problem in &inspection.problems {
        field(&mut out, "problem", problem_text(problem));
    }
    if inspection.is_healthy() {
        field(&mut out, "health", "ok: every record verified".into());
    }
    out
}

/// One `key value` line.
fn field(out: &mut String, key: &str, value: String) {
    let _ = writeln!(out, "{key:<12} {value}");
}

/// `"bytes": variable length, align 1, version 0`.
fn type_text(kind: &RecordType) -> String {
    let size = match kind.size {
        0 => "variable length".into(),
        size => format!("{size} bytes"),
    };
    format!("{:?}: {size}, align {}, version {}", kind.name, kind.align, kind.version)
}

/// `12, index 0 to 11`.
fn records_text(inspection: &Inspection) -> String {
    match (inspection.first_index, inspection.last_index) {
        (Some(first), Some(last)) => format!("{}, index {first} to {last}", inspection.records),
        _ => format!("{} (none readable)", inspection.records),
    }
}

/// `free`, `pid 42 (alive), presence 0123...`, ...
pub(super) fn appender_text(appender: &AppenderState) -> String {
    match appender {
        AppenderState::NoControl => "none (no control file shmlane.journal)".into(),
        AppenderState::Free => "free".into(),
        AppenderState::Held { owner, pid, liveness } => format!(
            "pid {} ({}), presence {:016x}",
            show::pid(*pid),
            show::liveness(*liveness),
            owner.to_raw()
        ),
        AppenderState::Unreadable(reason) => format!("unknown: {reason}"),
    }
}

/// One file: name, sequence, size and use, first index, records, index entries, creation
/// time, state.
fn file_text(file: &FileReport) -> String {
    let records = match file.records {
        1 => "1 record".to_owned(),
        n => format!("{n} records"),
    };
    let index = match (file.index_stride, file.index_entries) {
        (0, _) => "no index".to_owned(),
        (stride, 1) => format!("1 index entry (every {stride})"),
        (stride, n) => format!("{n} index entries (every {stride})"),
    };
    format!(
        "{}  seq {}  {} ({} used)  first index {}  {records}  {index}  created {}  {}",
        file_name(&file.path),
        file.seq,
        show::size(file.size),
        show::size(file.used),
        file.first_index,
        utc(file.created_unix_ns),
        if file.ended { "ended (rolled)" } else { "open" }
    )
}

/// `torn tail in 00000002.shj at byte 456 (index 12): why`.
fn problem_text(problem: &Problem) -> String {
    let mut where_ = file_name(&problem.path);
    if let Some(offset) = problem.offset {
        let _ = write!(where_, " at byte {offset}");
    }
    if let Some(index) = problem.index {
        let _ = write!(where_, " (index {index})");
    }
    format!("{} in {where_}: {}", problem.kind.name(), problem.reason)
}
