//! `shmlane list`: every segment with the `shmlane.` prefix, with its kind, size, creator,
//! verdict and peers.

use std::process::ExitCode;

use serde_json::json;
use shmlane::discovery::{self, SegmentEntry};

use super::{OpsError, Scope, exit_codes, finish, show};

/// `shmlane list`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "List every segment whose file name starts with `shmlane.`: services (topic, \
                  rpc, event), payload segments, node registrations and plain segments, with \
                  size, creator pid, state and peers.\n\n\
                  States: alive (its creator or a peer runs), initializing, stale (its creator \
                  and every peer are dead: `shmlane clean` removes it), corrupt (not a valid \
                  segment: left alone), unreadable (no permission, or another user's file \
                  resized while it was read). Peers are the holders of a service's publisher \
                  and subscriber (or listener) slots; a payload segment belongs to its topic \
                  and a node registration to its node.",
        "\n\n",
        exit_codes!()
    ),
    after_help = exit_codes!()
)]
pub struct ListArgs {
    #[command(flatten)]
    scope: Scope,
    /// Print one JSON object: {"dir": ..., "segments": [...]}
    #[arg(long)]
    json: bool,
}

/// Runs `shmlane list`.
pub fn list(args: ListArgs) -> ExitCode {
    finish(run(&args))
}

/// Lists the scope's segments, as JSON or as a table.
fn run(args: &ListArgs) -> Result<(), OpsError> {
    let entries: Vec<_> = discovery::segments(args.scope.root())?
        .into_iter()
        .filter(|entry| args.scope.selects(entry))
        .collect();
    if args.json {
        let segments: Vec<_> = entries.iter().map(show::entry_json).collect();
        let out = json!({ "dir": args.scope.dir(), "segments": segments });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    if entries.is_empty() {
        println!("no shmlane segments in {}", args.scope.dir().display());
        return Ok(());
    }
    print_table(&entries);
    Ok(())
}

/// A row per segment, columns padded to their widest cell, then the count of each state.
fn print_table(entries: &[SegmentEntry]) {
    let rows: Vec<[String; 6]> = entries.iter().map(row).collect();
    let header = ["NAME", "KIND", "SIZE", "CREATOR", "STATE", "PEERS"].map(String::from);
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let count =
        |word: &str| entries.iter().filter(|entry| show::verdict(&entry.verdict).0 == word).count();
    println!(
        "\n{} segments: {} alive, {} stale, {} corrupt or unreadable",
        entries.len(),
        count("alive") + count("initializing"),
        count("stale"),
        count("corrupt") + count("unreadable")
    );
}

/// The table's cells for one segment.
fn row(entry: &SegmentEntry) -> [String; 6] {
    let creator = entry.segment.creator.map_or("-".into(), |creator| creator.pid.to_string());
    [
        entry.segment.name.to_string(),
        show::kind(&entry.kind).into(),
        show::size(entry.segment.size),
        creator,
        show::verdict(&entry.verdict).0.into(),
        show::peers(entry),
    ]
}
