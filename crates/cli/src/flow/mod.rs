//! `shmlane record` and `shmlane replay`: topics to journals and back, through the facade's
//! run-time typed API (`shmlane::RawTopic`), so any topic can be recorded without its Rust
//! type. A recording is a directory per service: the journal (`shmlane-journal`) of its
//! samples, and `recording.json`, the topic's full type and settings for the replay.

mod record;
mod recording;
mod replay;

use std::path::PathBuf;
use std::process::ExitCode;

pub use record::{RecordArgs, record};
pub use replay::{ReplayArgs, replay};

/// The exit codes of `record` and `replay`, as their help states them.
macro_rules! flow_exit_codes {
    () => {
        "Exit codes:
  0  success
  1  error: a topic, journal or file could not be opened, read or written
  2  bad arguments
  3  no such topic, or no recording in the directory"
    };
}
use flow_exit_codes;

/// What `record` and `replay` fail with.
#[derive(Debug, thiserror::Error)]
enum FlowError {
    /// The topic could not be opened.
    #[error("cannot open topic {service:?}: {source}")]
    Topic {
        service: String,
        #[source]
        source: shmlane::TopicError,
    },
    /// A node, publisher or subscriber could not be made.
    #[error("cannot join topic {service:?}: {reason}")]
    Join { service: String, reason: String },
    /// The journal could not be opened, appended to or read.
    #[error("journal {}: {reason}", dir.display())]
    Journal { dir: PathBuf, reason: String },
    /// The recording's description could not be read or written.
    #[error("{}: {reason}", path.display())]
    Recording { path: PathBuf, reason: String },
    /// A sample could not be received or sent.
    #[error("topic {service:?}: {reason}")]
    Flow { service: String, reason: String },
    /// No such topic or recording.
    #[error("{0}")]
    NotFound(String),
    /// A bad argument value.
    #[error("{0}")]
    Usage(String),
}

impl FlowError {
    fn exit_code(&self) -> u8 {
        match self {
            FlowError::NotFound(_) => 3,
            FlowError::Topic { source: shmlane::TopicError::Open(_), .. } => 3,
            FlowError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// The exit code of an outcome, with its error on stderr.
fn finish(outcome: Result<(), FlowError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlane: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The node `record` or `replay` joins with.
fn node(name: &str, scope: &Scope) -> Result<shmlane::Node, FlowError> {
    let mut builder = shmlane::Node::builder(name);
    if let Some(namespace) = &scope.namespace {
        builder = builder.namespace(namespace.clone());
    }
    if let Some(root) = &scope.root {
        builder = builder.root(root.clone());
    }
    builder.create().map_err(|e| FlowError::Join { service: String::new(), reason: e.to_string() })
}

/// Where the topics are.
#[derive(Debug, Clone, clap::Args)]
struct Scope {
    /// The namespace of the services [default: $SHMLANE_NAMESPACE, else "default"]
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Directory that holds the segments, as given to `Node::builder(..).root(DIR)`
    /// [default: /dev/shm]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}
