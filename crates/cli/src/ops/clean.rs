//! `shmlane clean`: removes what dead processes left behind (with `--force`, live segments
//! too), never a file that is not proven ours.

use std::collections::HashSet;
use std::process::ExitCode;

use shmlane::discovery::{self, SegmentEntry, Verdict};
use shmlane_segment::DiscoveryError;

use super::{OpsError, Scope, exit_codes, finish, show};

/// `shmlane clean`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Remove stale segments: those whose creator and every peer are proven dead \
                  (services whose publishers, subscribers and listeners are all dead, payload \
                  segments of such topics or of topics gone, registrations of dead nodes, plain \
                  segments of dead creators, files that never got past an empty header). Each \
                  is checked again just before it is removed. One that cannot be removed \
                  (another user's, in a sticky directory such as /dev/shm) is reported, the \
                  others removed all the same, and the exit code is 1.\n\n\
                  Only files named `shmlane.*` whose header proves them ours are touched: \
                  corrupt files are reported and left alone, even with --force; remove them by \
                  hand once you know nobody uses them. Segments in use are kept unless --force \
                  is given.",
        "\n\n",
        exit_codes!()
    ),
    after_help = exit_codes!()
)]
pub struct CleanArgs {
    #[command(flatten)]
    scope: Scope,
    /// Say what would be removed, and remove nothing
    #[arg(long)]
    dry_run: bool,
    /// Also remove live segments (listed first). Their processes keep their mappings, but
    /// nobody new can find them: use only when those processes are to be restarted
    #[arg(long)]
    force: bool,
}

/// Runs `shmlane clean`.
pub fn clean(args: CleanArgs) -> ExitCode {
    finish(run(&args))
}

/// One segment on one line: name, kind, state, creator and peers.
fn describe(entry: &SegmentEntry) -> String {
    let creator = match (entry.segment.creator, entry.segment.creator_owner) {
        (Some(creator), Some(owner)) => {
            format!("creator {} {}", creator.pid, show::liveness(owner.liveness()))
        }
        _ => "no creator recorded".into(),
    };
    format!(
        "{} ({}, {}; {}; {})",
        entry.segment.name,
        show::kind(&entry.kind),
        show::verdict(&entry.verdict).0,
        creator,
        show::peers(entry)
    )
}

/// Removes the scope's stale segments (and with `--force` its live ones), reports each, and
/// sweeps the presence files of ended processes.
fn run(args: &CleanArgs) -> Result<(), OpsError> {
    let scope = &args.scope;
    let entries: Vec<SegmentEntry> = discovery::segments(scope.root())?
        .into_iter()
        .filter(|entry| scope.selects(entry))
        .collect();
    let with_verdict =
        |wanted: fn(&Verdict) -> bool| entries.iter().filter(move |entry| wanted(&entry.verdict));
    let live: Vec<&SegmentEntry> =
        with_verdict(|verdict| matches!(verdict, Verdict::Alive | Verdict::Initializing)).collect();
    let stale: Vec<&SegmentEntry> = with_verdict(|verdict| *verdict == Verdict::Stale).collect();
    let corrupt =
        |verdict: &Verdict| matches!(verdict, Verdict::Corrupt { .. } | Verdict::Unreadable { .. });
    for entry in with_verdict(corrupt) {
        println!("left alone: {}", describe(entry));
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    let mut removed = 0;
    // Each file that cannot be removed is reported, and the others removed all the same.
    let mut not_removed = 0;
    let mut failed = |entry: &SegmentEntry, error: &DiscoveryError| {
        println!("could not remove {}: {error}", describe(entry));
        not_removed += 1;
    };
    if args.force {
        if !live.is_empty() {
            let doing = if args.dry_run { "--force would remove" } else { "--force: removing" };
            println!("{doing} {} live segment(s):", live.len());
            for entry in &live {
                println!("  {}", describe(entry));
            }
        }
        for entry in live.iter().chain(&stale) {
            if !args.dry_run {
                match shmlane_segment::remove_in(scope.dir(), &entry.segment.name) {
                    Ok(()) => {}
                    Err(DiscoveryError::Remove { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        failed(entry, &error);
                        continue;
                    }
                }
            }
            if entry.verdict == Verdict::Stale {
                println!("{verb} {}", describe(entry));
            }
            removed += 1;
        }
    } else if args.dry_run {
        for entry in &stale {
            println!("{verb} {}", describe(entry));
            removed += 1;
        }
    } else {
        let names: HashSet<_> = stale.iter().map(|entry| &entry.segment.name).collect();
        let removal =
            discovery::remove_stale(scope.root(), |entry| names.contains(&entry.segment.name))?;
        for entry in &removal.removed {
            println!("{verb} {}", describe(entry));
            removed += 1;
        }
        for (entry, error) in &removal.failed {
            failed(entry, error);
        }
    }
    if !args.dry_run && scope.root().is_none() {
        // Presence files (`shmlane-live.*`) of processes that ended: each removed only while
        // this process holds its lock, so never a live one's.
        let (swept, failed) = shmlane_segment::presence::remove_dead();
        if swept > 0 {
            println!("removed {swept} presence file(s) of ended processes");
        }
        for (path, error) in failed {
            println!("left alone: {} ({error})", path.display());
        }
    }
    let kept = if args.force { 0 } else { live.len() };
    let left = entries.len() - live.len() - stale.len();
    let not_removed_text =
        if not_removed > 0 { format!("; could not remove {not_removed}") } else { String::new() };
    println!(
        "{verb} {removed} segment(s); kept {kept} live{}; left {left} corrupt or unreadable \
         alone{not_removed_text}",
        if kept > 0 { " (--force removes them)" } else { "" }
    );
    if not_removed > 0 {
        return Err(OpsError::NotRemoved { count: not_removed });
    }
    Ok(())
}
