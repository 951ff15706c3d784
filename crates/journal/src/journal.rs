//! [`Journal`]: an open journal directory, from which the appender and tailers are made.

use std::fs;
use std::path::{Path, PathBuf};

use crate::append::Appender;
use crate::control::Control;
use crate::files::{self, JournalFile};
use crate::format::FileInfo;
use crate::index::{self, Target};
use crate::tail::{Skip, TailFrom, Tailer};
use crate::{
    AppenderError, Durability, FileError, JournalConfig, OpenError, TailError, now_unix_ns,
};

/// An open journal: a directory of journal files and its control segment. Any number of
/// processes may open one journal; one of them at a time holds its [`Appender`].
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    control: Control,
}

impl Journal {
    /// Opens the journal in `dir`, creating the directory, its control segment
    /// (`shmlane.journal`) and its first file (`00000000.shj`) if they do not exist. The first
    /// file's record type must be `config.record_type`.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal, OpenError> {
        config.validate()?;
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|source| OpenError::Dir {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        let control = Control::open(&dir)?;
        let first = match files::list(&dir)?.first() {
            Some(&seq) => files::read_header(&files::path_of(&dir, seq), seq, false)?.1,
            None => create_first(&dir, &config)?,
        };
        if first.record_type != config.record_type {
            return Err(OpenError::TypeMismatch {
                found: first.record_type,
                expected: config.record_type,
            });
        }
        Ok(Journal { dir, config, control })
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the appender role: refused while another appender lives (in any process), taken
    /// over from one proven dead. Then recovers the tail: a record its dead appender did not
    /// finish, or one that fails its checksum, is removed, and appending continues after the
    /// last complete record ([`Appender::recovery`] tells what was found). Scans the last
    /// file (and the one before, if its appender died while rolling).
    pub fn appender(&self) -> Result<Appender, AppenderError> {
        Appender::claim(&self.dir, &self.config, &self.control)
    }

    /// A tailer starting at `from`. Seeking finds the file by the first index and creation
    /// time in the file headers (a binary search), then the record through the file's index:
    /// it starts at the last indexed record before the target and reads at most the file's
    /// index stride of records before it ([`Tailer::seek_report`] tells how it went). An index
    /// entry that does not match its record is refused, and the file read from its start.
    pub fn tailer(&self, from: TailFrom) -> Result<Tailer, TailError> {
        let seqs = files::list(&self.dir)?;
        let Some(&first) = seqs.first() else {
            return Err(TailError::Empty { path: self.dir.clone() });
        };
        let (target, skip) = match from {
            TailFrom::Start => (None, Skip::Nothing),
            TailFrom::Index(index) => (Some(Target::Index(index)), Skip::BelowIndex(index)),
            TailFrom::Time(time) => (Some(Target::Time(time)), Skip::BeforeTime(time)),
        };
        // The last file whose header says it starts at or before the target: the files that
        // do are a prefix of the list (headers' first indices and creation times grow).
        let mut start = first;
        if let Some(target) = target {
            let (mut low, mut high) = (0, seqs.len());
            while low < high {
                let mid = low + (high - low) / 2;
                let seq = seqs[mid];
                let (_, info) = files::read_header(&files::path_of(&self.dir, seq), seq, false)?;
                let before = match target {
                    Target::Index(index) => info.first_index <= index,
                    // Strictly: every record of earlier files is stamped at or before this
                    // file's creation, so one stamped exactly then may lie in the file before.
                    Target::Time(time) => info.created_unix_ns < time,
                };
                if before { low = mid + 1 } else { high = mid }
            }
            start = low.checked_sub(1).map_or(first, |at| seqs[at]);
        }
        let file = JournalFile::open(&self.dir, start, false)?;
        let at = match target {
            Some(target) => index::seek(&file, target, &mut Vec::new()),
            None => index::Start::first(&file.info),
        };
        Ok(Tailer::new(self.control.published.clone(), self.dir.clone(), file, at, skip))
    }
}

/// Creates the first file of a new journal, or reads the one a racing process created.
fn create_first(dir: &Path, config: &JournalConfig) -> Result<FileInfo, FileError> {
    let info = FileInfo {
        seq: 0,
        first_index: 0,
        created_unix_ns: now_unix_ns(),
        file_size: config.roll_size,
        record_type: config.record_type.clone(),
        index_stride: config.index_stride,
    };
    match JournalFile::create(dir, info, config.durability != Durability::None) {
        Ok(file) => Ok(file.info),
        // Another process created it first (or the race made ours fail): use theirs.
        Err(e) => files::read_header(&files::path_of(dir, 0), 0, false)
            .map(|(_, info)| info)
            .map_err(|_| e),
    }
}
