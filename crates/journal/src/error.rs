//! The errors, one enum per operation family: a journal file ([`FileError`]), opening a journal
//! ([`OpenError`]), claiming the appender ([`AppenderError`]), appending ([`AppendError`]) and
//! tailing ([`TailError`]).

use std::io;
use std::path::PathBuf;

use shmlane_segment::RoleOwner;

use crate::RecordType;
use crate::format::HeaderFault;

/// A journal file could not be created, opened, or trusted.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A system call on the file failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file (or directory).
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The file system has no room for a new file.
    #[error(
        "no space for the {size}-byte journal file {path}: free space on its file system, or \
         configure a smaller roll size"
    )]
    NoSpace {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file the journal continues in does not exist.
    #[error(
        "journal file {path} is missing: it was removed or never written; the journal cannot continue past it"
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file by that name already exists (created by another appender).
    #[error("journal file {path} already exists: is another appender writing this journal?")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Not a regular file.
    #[error("{path} is not a regular file: remove it from the journal directory")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Shorter than a file header.
    #[error(
        "journal file {path} is truncated ({size} bytes): it was cut short or is not a journal file"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// No journal magic at the start.
    #[error(
        "{path} is not a shmlane journal file (wrong magic): remove it from the journal directory"
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// Written by a format version this build does not read.
    #[error(
        "journal file {path} has format version {found}; this build reads versions 1 to {}: \
         read it with a newer build",
        crate::format::FORMAT_VERSION
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The header's checksum does not match it.
    #[error("journal file {path} has a corrupt header (checksum mismatch): restore it from a copy")]
    HeaderChecksum {
        /// The file.
        path: PathBuf,
    },
    /// A header field holds an impossible value.
    #[error("journal file {path} has an invalid header field `{field}`: the file is corrupt")]
    BadField {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
    },
    /// The file's length differs from the one its header records.
    #[error(
        "journal file {path} is {actual} bytes long but its header says {header}: it was truncated or extended"
    )]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// The header's size.
        header: u64,
        /// The file's length.
        actual: u64,
    },
    /// The header's sequence number is not the one the file is named for.
    #[error(
        "journal file {path} holds sequence number {header}, not {name} as its name says: it was renamed or copied over"
    )]
    SeqMismatch {
        /// The file.
        path: PathBuf,
        /// The header's sequence number.
        header: u64,
        /// The name's.
        name: u64,
    },
}

impl FileError {
    pub(crate) fn from_fault(path: PathBuf, fault: HeaderFault) -> FileError {
        match fault {
            HeaderFault::Magic => FileError::BadMagic { path },
            HeaderFault::Version(found) => FileError::Version { path, found },
            HeaderFault::Checksum => FileError::HeaderChecksum { path },
            HeaderFault::Field(field) => FileError::BadField { path, field },
            HeaderFault::Size { header, actual } => {
                FileError::SizeMismatch { path, header, actual }
            }
            HeaderFault::Seq { header, name } => FileError::SeqMismatch { path, header, name },
        }
    }
}

/// [`Journal::open`](crate::Journal::open) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is unusable.
    #[error("invalid journal configuration: {0}")]
    Config(&'static str),
    /// The directory could not be created or read.
    #[error("cannot {op} the journal directory {path}: {source}")]
    Dir {
        /// What was being done.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The control segment (appender role, wake-ups) could not be opened or created.
    #[error("cannot open the journal's control file `shmlane.journal`: {0}")]
    Control(#[from] shmlane_segment::CreateError),
    /// The control segment does not have the layout this build expects.
    #[error(
        "the journal's control file `shmlane.journal` has an unexpected layout ({0}): delete it while no process uses the journal"
    )]
    ControlLayout(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A journal file is unusable.
    #[error(transparent)]
    File(#[from] FileError),
    /// The journal records another type than the configuration names.
    #[error(
        "the journal records {found:?}, not {expected:?}: open it with the record type it was created with"
    )]
    TypeMismatch {
        /// The type in the journal's files.
        found: RecordType,
        /// The configuration's.
        expected: RecordType,
    },
}

/// [`Journal::appender`](crate::Journal::appender) failed.
#[derive(Debug, thiserror::Error)]
pub enum AppenderError {
    /// A live appender holds the journal.
    #[error(
        "the journal already has an appender, {0}, which is alive: only one may append; stop it first"
    )]
    Taken(RoleOwner),
    /// This process's identity (its presence file in /dev/shm) could not be registered.
    #[error("cannot register this process as an appender (its presence file in /dev/shm): {0}")]
    Identity(io::Error),
    /// Recovering the tail failed: a file is unusable.
    #[error(transparent)]
    File(#[from] FileError),
}

/// [`Appender::append`](crate::Appender::append) or a reservation failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The record is larger than a file holds.
    #[error(
        "a record of {len} bytes does not fit in a journal file (at most {max} bytes): configure a larger roll size, or split the record"
    )]
    TooLarge {
        /// The record's length.
        len: usize,
        /// The largest that fits.
        max: u32,
    },
    /// Rolling to the next file failed (the full file system is [`FileError::NoSpace`]);
    /// nothing was appended, and the next append tries again.
    #[error("cannot roll the journal to its next file: {0}")]
    Roll(#[from] FileError),
    /// The record was appended with `index`, but writing it to disk (per the durability
    /// policy) failed.
    #[error(
        "record {index} is in the journal but could not be made durable: {source}; call `flush` to retry"
    )]
    Sync {
        /// The record's index.
        index: u64,
        /// The system's error.
        source: io::Error,
    },
}

impl AppendError {
    /// Whether the file system is full (the append may succeed once space is freed).
    pub fn is_no_space(&self) -> bool {
        matches!(self, AppendError::Roll(FileError::NoSpace { .. }))
    }
}

/// A [`Tailer`](crate::Tailer) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A journal file is unusable.
    #[error(transparent)]
    File(#[from] FileError),
    /// The journal has no files.
    #[error(
        "the journal directory {path} holds no journal files: open it with `Journal::open` first"
    )]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// A record failed validation; the tailer stays before it.
    #[error(
        "corrupt record at byte {offset} of {path}: {reason}; the journal cannot be read past it"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The record's offset in the file.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The next file does not start where the previous one ended.
    #[error(
        "journal file {path} starts at index {found} but the previous one ended at {expected}: a file is missing or foreign"
    )]
    Gap {
        /// The file.
        path: PathBuf,
        /// The index the previous file ended at.
        expected: u64,
        /// The index this one starts at.
        found: u64,
    },
}
