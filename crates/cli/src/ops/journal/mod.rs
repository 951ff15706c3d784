//! `shmlane journal inspect DIR`: a journal's files, records, index and time ranges, recorded
//! type, appender and any torn or corrupt record, from `shmlane_journal::Journal::inspect`,
//! which changes nothing (no appender role taken, no tail repaired, no file created). This
//! module runs it and decides the exit code; `text` and `json` write the report.

mod json;
mod text;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use shmlane_journal::{Inspection, Journal, OpenError};

use super::{OpsError, finish};

/// The exit codes of `journal inspect`, as its help states them.
macro_rules! journal_exit_codes {
    () => {
        "Exit codes:
  0  success: the journal is healthy
  1  error: the directory or a journal file could not be read
  2  bad arguments
  3  no such directory, or no journal files in it
  4  the journal has a torn or corrupt record or file (shown in the report)"
    };
}

/// `shmlane journal`.
#[derive(Debug, clap::Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Debug, clap::Subcommand)]
enum JournalCommand {
    /// Show a journal's files, records, index and time ranges, type, appender and damage
    /// (read-only).
    Inspect(JournalInspectArgs),
}

/// `shmlane journal inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Show a journal directory (shmlane-journal) in detail: each file (name, sequence \
         number, size, first record index, creation time, records in it, index entries that \
         match their records, whether it is ended), \
         the total record count, index range and time range, the recorded type, who holds the \
         appender role (free, or a pid alive or dead), and any torn or corrupt tail or record \
         (where, and what is wrong). Every record is checksum-verified.\n\n\
         Read-only: nothing is written, repaired or created, and the appender role is never \
         taken, so it may run beside a live appender (the report is then a snapshot). The \
         next appender removes a torn tail when it takes over.",
        "\n\n",
        journal_exit_codes!()
    ),
    after_help = journal_exit_codes!()
)]
pub struct JournalInspectArgs {
    /// The journal's directory (as given to `Journal::open`)
    dir: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// Runs `shmlane journal ...`.
pub fn journal(args: JournalArgs) -> ExitCode {
    match args.command {
        JournalCommand::Inspect(args) => finish(inspect(&args)),
    }
}

/// Inspects the journal, prints its report, and returns what it found.
fn inspect(args: &JournalInspectArgs) -> Result<(), OpsError> {
    let inspection = match Journal::inspect(&args.dir) {
        Ok(inspection) => inspection,
        Err(OpenError::Dir { source, .. })
            if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) =>
        {
            return Err(OpsError::NoJournal { dir: args.dir.clone(), why: "no such directory" });
        }
        Err(e) => return Err(OpsError::Journal(e)),
    };
    if inspection.files.is_empty() && inspection.problems.is_empty() {
        return Err(OpsError::NoJournal { dir: args.dir.clone(), why: "no journal files in it" });
    }
    if args.json {
        let json = json::to_json(&inspection);
        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
    } else {
        print!("{}", text::text(&inspection));
    }
    outcome(&inspection)
}

/// An error if anything is torn or corrupt.
fn outcome(inspection: &Inspection) -> Result<(), OpsError> {
    match inspection.problems.len() {
        0 => Ok(()),
        count => Err(OpsError::JournalDamaged { dir: inspection.dir.clone(), count }),
    }
}

/// `2025-12-06T03:10:00.123456789Z` (UTC) for ns since the Unix epoch.
fn utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let nanos = unix_ns % 1_000_000_000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The file name of a journal file's path.
fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(utc(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(utc(1_764_990_245_500_000_000), "2025-12-06T03:04:05.500000000Z");
    }
}
