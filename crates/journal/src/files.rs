//! The files of a journal directory: their names, listing them, creating a file (preallocated,
//! header written, then renamed into place so nobody sees it half made) and opening one
//! (header copied out and validated).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FallocateFlags, OFlags};
use rustix::io::Errno;
use zerocopy::{FromBytes, IntoBytes};

use crate::FileError;
use crate::format::{FILE_HEADER_SIZE, FileHeader, FileInfo, MAX_SEQ};
use crate::mapping::FileMap;

/// File-name extension of journal files.
pub(crate) const EXTENSION: &str = "shj";
/// Digits of the sequence number in a file name (more once it outgrows them).
const SEQ_DIGITS: usize = 8;

/// The name of file `seq`: `00000042.shj`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:0SEQ_DIGITS$}.{EXTENSION}")
}

/// The path of file `seq` in `dir`.
pub(crate) fn path_of(dir: &Path, seq: u64) -> PathBuf {
    dir.join(file_name(seq))
}

/// The sequence number a journal file name stands for; `None` for any other name.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".shj")?;
    let seq = digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())??;
    (seq <= MAX_SEQ && file_name(seq) == name).then_some(seq)
}

/// The sequence numbers of the journal files in `dir`, ascending.
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>, FileError> {
    let io = |source| FileError::Io { op: "read the directory", path: dir.to_owned(), source };
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Removes the temporary files of creations that a dead appender left unfinished.
pub(crate) fn remove_leftovers(dir: &Path) -> Result<(), FileError> {
    let io = |source| FileError::Io { op: "remove a leftover", path: dir.to_owned(), source };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        // `.NNNNNNNN.shj.PID.tmp`
        let leftover = name
            .to_str()
            .and_then(|name| name.strip_prefix('.')?.strip_suffix(".tmp")?.rsplit_once('.'))
            .is_some_and(|(name, pid)| {
                parse_name(name).is_some() && pid.bytes().all(|b| b.is_ascii_digit())
            });
        if leftover {
            fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}

/// An open journal file: its validated header and its mapping.
#[derive(Debug)]
pub(crate) struct JournalFile {
    pub path: PathBuf,
    pub info: FileInfo,
    pub map: FileMap,
    /// `info.records_end()`, where records end and the index region starts.
    pub records_end: u64,
}

impl JournalFile {
    /// Opens file `seq` of `dir` and validates its header against its name and length.
    pub fn open(dir: &Path, seq: u64, writable: bool) -> Result<JournalFile, FileError> {
        let path = path_of(dir, seq);
        let (file, info) = read_header(&path, seq, writable)?;
        let map = FileMap::new(&file, writable).map_err(|source| FileError::Io {
            op: "mmap",
            path: path.clone(),
            source,
        })?;
        // The length was checked against the header; a file that changed since is refused.
        if map.len() != info.file_size {
            return Err(FileError::SizeMismatch {
                path,
                header: info.file_size,
                actual: map.len(),
            });
        }
        Ok(JournalFile { path, records_end: info.records_end(), info, map })
    }

    /// Creates file `info.seq` in `dir`: a temporary file preallocated to `info.file_size`
    /// (so a full file system fails here, never later with `SIGBUS`), its header written,
    /// renamed into place without replacing anything. With `durable`, the header and the
    /// directory entry reach the disk before this returns.
    pub fn create(dir: &Path, info: FileInfo, durable: bool) -> Result<JournalFile, FileError> {
        let path = path_of(dir, info.seq);
        // Named for this process: two processes may race to create the first file.
        let tmp = dir.join(format!(".{}.{}.tmp", file_name(info.seq), std::process::id()));
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| FileError::Io { op, path, source }
        };
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        let made = (|| {
            preallocate(&file, info.file_size, &tmp)?;
            let map = FileMap::new(&file, true).map_err(io("mmap", &tmp))?;
            map.write(0, FileHeader::new(&info).as_bytes());
            if durable {
                map.flush(0, FILE_HEADER_SIZE).map_err(io("msync", &tmp))?;
            }
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &tmp,
                rustix::fs::CWD,
                &path,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(|errno| match errno {
                Errno::EXIST => FileError::Exists { path: path.clone() },
                errno => FileError::Io { op: "rename", path: path.clone(), source: errno.into() },
            })?;
            if durable {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))?;
            }
            Ok(map)
        })();
        match made {
            Ok(map) => Ok(JournalFile { path, records_end: info.records_end(), info, map }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// Opens `path` (never through a symlink) and copies out and validates its header.
pub(crate) fn read_header(
    path: &Path,
    seq: u64,
    writable: bool,
) -> Result<(File, FileInfo), FileError> {
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => FileError::Missing { path: path.to_owned() },
            _ => FileError::Io { op: "open", path: path.to_owned(), source },
        })?;
    let meta = file.metadata().map_err(|source| FileError::Io {
        op: "fstat",
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { path: path.to_owned() });
    }
    let mut bytes = [0u8; FILE_HEADER_SIZE as usize];
    if meta.len() < FILE_HEADER_SIZE {
        return Err(FileError::Truncated { path: path.to_owned(), size: meta.len() });
    }
    file.read_exact_at(&mut bytes, 0).map_err(|source| match source.kind() {
        io::ErrorKind::UnexpectedEof => FileError::Truncated { path: path.to_owned(), size: 0 },
        _ => FileError::Io { op: "read the header", path: path.to_owned(), source },
    })?;
    let header = FileHeader::read_from_bytes(&bytes)
        .map_err(|_| FileError::Truncated { path: path.to_owned(), size: meta.len() })?;
    let info = header
        .validate(seq, meta.len())
        .map_err(|fault| FileError::from_fault(path.to_owned(), fault))?;
    Ok((file, info))
}

/// Gives `file` real blocks for all `len` bytes (`fallocate`; where the file system has none,
/// writes zeros), so that no later store into its mapping can find the disk full.
fn preallocate(file: &File, len: u64, path: &Path) -> Result<(), FileError> {
    match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(Errno::NOSPC | Errno::DQUOT | Errno::FBIG) => {
            Err(FileError::NoSpace { path: path.to_owned(), size: len })
        }
        Err(Errno::OPNOTSUPP) => write_zeros(file, len, path),
        Err(errno) => {
            Err(FileError::Io { op: "fallocate", path: path.to_owned(), source: errno.into() })
        }
    }
}

/// The fallback of [`preallocate`]: writes `len` zero bytes.
fn write_zeros(file: &File, len: u64, path: &Path) -> Result<(), FileError> {
    let zeros = vec![0u8; 1 << 16];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|source| {
            if source.raw_os_error() == Some(Errno::NOSPC.raw_os_error()) {
                FileError::NoSpace { path: path.to_owned(), size: len }
            } else {
                FileError::Io { op: "write zeros", path: path.to_owned(), source }
            }
        })?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_names_are_journal_files() {
        assert_eq!(file_name(42), "00000042.shj");
        assert_eq!(parse_name("00000042.shj"), Some(42));
        assert_eq!(parse_name("123456789.shj"), Some(123_456_789));
        for other in ["42.shj", "0000004a.shj", "00000042.shj.tmp", "+0000042.shj", "x.shj", ""] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}
