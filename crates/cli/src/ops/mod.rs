//! Operations on segments and services: `list`, `inspect`, `clean`, over the facade's
//! read-only discovery (`shmlane::discovery`); and on journals: `journal inspect`.
//!
//! Every command exits with one of the codes of `exit_codes!`, documented in its `--help`.

mod clean;
mod inspect;
mod journal;
mod list;
mod show;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shmlane::discovery::SegmentEntry;
use shmlane_segment::DiscoveryError;

pub use clean::{CleanArgs, clean};
pub use inspect::{InspectArgs, inspect};
pub use journal::{JournalArgs, journal};
pub use list::{ListArgs, list};

/// The exit codes of `list`, `inspect` and `clean`, as their help states them.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  error: the directory or a segment could not be read, or a file could not be removed
  2  bad arguments, or a NAME that matches several services
  3  no such segment or service
  4  the segment is corrupt (carries the shmlane. prefix but is not a valid segment)"
    };
}
use exit_codes;

/// Where POSIX shared memory lives.
const SHM_DIR: &str = "/dev/shm";

/// Which segments a command looks at.
#[derive(Debug, Clone, clap::Args)]
struct Scope {
    /// Directory that holds the segments, as given to `Node::builder(..).root(DIR)`
    /// [default: /dev/shm]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Only segments of this namespace (whose names start with `NAMESPACE.`)
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

impl Scope {
    fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    fn dir(&self) -> &Path {
        self.root().unwrap_or(Path::new(SHM_DIR))
    }

    fn selects(&self, entry: &SegmentEntry) -> bool {
        self.namespace.as_ref().is_none_or(|namespace| {
            entry
                .segment
                .name
                .as_str()
                .strip_prefix(namespace.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        })
    }
}

/// Why a command failed, with its exit code.
#[derive(Debug, thiserror::Error)]
enum OpsError {
    /// The directory could not be listed, or a file not removed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The segment could not be inspected.
    #[error(transparent)]
    Inspect(#[from] shmlane::discovery::InspectError),
    /// No segment or service of that name.
    #[error(
        "no segment or service {name:?} in {}: see `shmlane list` for the names there (and \
         --root for another directory)", dir.display()
    )]
    NotFound {
        /// The name given.
        name: String,
        /// The directory looked in.
        dir: PathBuf,
    },
    /// A service name that several segments answer to.
    #[error("{name:?} names several services: {}; give one of these segment names", found.join(", "))]
    Ambiguous {
        /// The name given.
        name: String,
        /// The segments it could mean.
        found: Vec<String>,
    },
    /// The segment is corrupt (already shown).
    #[error(
        "segment {name} is corrupt: {reason}. `shmlane clean` leaves it alone; remove the file by \
         hand once you know no process uses it"
    )]
    Corrupt {
        /// The segment.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Stale segments that could not be removed (each already shown).
    #[error(
        "{count} segment(s) could not be removed (shown above); the others were: run `shmlane \
         clean` as their owner, or check the directory's permissions"
    )]
    NotRemoved {
        /// How many.
        count: usize,
    },
    /// The segment could not be read.
    #[error("segment {name} cannot be read: {reason}; run as its owner")]
    Unreadable {
        /// The segment.
        name: String,
        /// Why.
        reason: String,
    },
    /// No journal at that path.
    #[error("no journal in {}: {why}", dir.display())]
    NoJournal {
        /// The directory given.
        dir: PathBuf,
        /// What is missing.
        why: &'static str,
    },
    /// The journal directory could not be read.
    #[error(transparent)]
    Journal(shmlane_journal::OpenError),
    /// The journal has torn or corrupt records or files (already shown).
    #[error(
        "the journal in {} has {count} problem(s) (shown above): a torn or corrupt tail is \
         removed by the next appender; anything else needs the damaged file restored or removed",
        dir.display()
    )]
    JournalDamaged {
        /// The directory.
        dir: PathBuf,
        /// How many problems.
        count: usize,
    },
}

impl OpsError {
    fn exit_code(&self) -> u8 {
        match self {
            OpsError::Discovery(_)
            | OpsError::Inspect(_)
            | OpsError::NotRemoved { .. }
            | OpsError::Unreadable { .. }
            | OpsError::Journal(_) => 1,
            OpsError::Ambiguous { .. } => 2,
            OpsError::NotFound { .. } | OpsError::NoJournal { .. } => 3,
            OpsError::Corrupt { .. } | OpsError::JournalDamaged { .. } => 4,
        }
    }
}

/// Reports a failure on stderr and turns the outcome into the exit code.
fn finish(outcome: Result<(), OpsError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlane: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
