//! [`FileMap`]: a journal file's shared mapping, and the only unsafe code of the crate.
//!
//! Every access is checked against the mapping's length. Bytes are read by volatile copy
//! (another process may be writing them), state words only through `AtomicU64`, and nothing
//! hands out a reference to non-atomic bytes except [`FileMap::slice_mut`], whose caller
//! proves exclusive ownership of the range (the appender, past the published tail).
//!
//! The file keeps its length for the mapping's life: journal files are preallocated whole and
//! never truncated. A process that shrinks one anyway makes the others `SIGBUS` on their next
//! access past the new end, a risk shared by every mapped file of one user.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{MmapOptions, MmapRaw};

use crate::publish::Memory;
use crate::sync::AtomicU64;

/// A shared mapping of a whole journal file.
#[derive(Debug)]
pub(crate) struct FileMap {
    raw: MmapRaw,
}

impl FileMap {
    /// Maps all of `file` (opened read-write when `writable`).
    pub fn new(file: &File, writable: bool) -> io::Result<FileMap> {
        let options = MmapOptions::new();
        let raw =
            if writable { options.map_raw(file)? } else { options.map_raw_read_only(file)? };
        Ok(FileMap { raw })
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.raw.len() as u64
    }

    /// The start of `len` bytes at `offset` as an index into the mapping, if they lie inside it.
    fn range(&self, offset: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(offset).ok()?;
        (start.checked_add(len)? <= self.raw.len()).then_some(start)
    }

    /// Copies `buf.len()` bytes at `offset` out; `false` (and nothing copied) if they do not
    /// lie inside the mapping.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Some(start) = self.range(offset, buf.len()) else { return false };
        // SAFETY: `range` checked that `start..start + buf.len()` lies inside the mapping,
        // which lives as long as `self`.
        let src = unsafe { self.raw.as_ptr().add(start) };
        let done = buf.len() / 8 * 8;
        for (at, chunk) in (0..).step_by(8).zip(buf.chunks_exact_mut(8)) {
            // SAFETY: `at + 8 <= buf.len()`, so in bounds as above; `[u8; 8]` needs no
            // alignment. Volatile: each byte is read once, whatever a writer does meanwhile.
            let word = unsafe { src.add(at).cast::<[u8; 8]>().read_volatile() };
            chunk.copy_from_slice(&word);
        }
        for (at, byte) in buf.iter_mut().enumerate().skip(done) {
            // SAFETY: `at < buf.len()`, in bounds as above.
            *byte = unsafe { src.add(at).read_volatile() };
        }
        true
    }

    /// Copies `bytes` in at `offset`; `false` (and nothing written) if they do not lie inside
    /// the mapping. Only the appender writes, and only where no tailer reads yet.
    pub fn write(&self, offset: u64, bytes: &[u8]) -> bool {
        let Some(start) = self.range(offset, bytes.len()) else { return false };
        // SAFETY: in bounds (checked by `range`) of a mapping that lives as long as `self`;
        // `bytes` is our own memory, so the ranges do not overlap. A write to a read-only
        // mapping faults, so only the appender (which maps read-write) calls this.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.raw.as_mut_ptr().add(start),
                bytes.len(),
            );
        }
        true
    }

    /// The state word at `offset`, if it lies inside the mapping and is 8-aligned.
    pub fn word(&self, offset: u64) -> Option<&AtomicU64> {
        let start = self.range(offset, 8)?;
        // SAFETY: in bounds (checked by `range`); the mapping starts page-aligned.
        let ptr = unsafe { self.raw.as_ptr().add(start) };
        if !(ptr as usize).is_multiple_of(align_of::<AtomicU64>()) {
            return None;
        }
        // SAFETY: 8 aligned bytes inside a mapping that lives as long as the borrow of `self`;
        // every bit pattern is a valid `AtomicU64`, and these bytes are written only through
        // atomics by every process that follows the format.
        Some(unsafe { &*ptr.cast::<AtomicU64>() })
    }

    /// The `len` bytes at `offset` for writing in place, if they lie inside the mapping.
    ///
    /// # Safety
    /// No process following the format reads or writes it meanwhile (the appender's
    /// reserved record, past the published tail). The mapping must be writable.
    pub unsafe fn slice_mut(&mut self, offset: u64, len: usize) -> Option<&mut [u8]> {
        let start = self.range(offset, len)?;
        // SAFETY: in bounds (checked by `range`); `&mut self` makes this the only reference
        // into the mapping in this process, and no other process touches the range (the
        // caller's contract).
        Some(unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().add(start), len) })
    }

    /// Maps the pages of `len` bytes at `offset` in, writable, as the first write to each page
    /// would, without writing anything (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14 or later).
    /// The mapping must be writable.
    pub fn prefault(&self, offset: u64, len: u64) -> io::Result<()> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
        let len = usize::try_from(len).map_err(|_| invalid())?;
        let start = self.range(offset, len).ok_or_else(invalid)?;
        self.raw.advise_range(memmap2::Advice::PopulateWrite, start, len)
    }

    /// Writes the pages of `len` bytes at `offset` back to the file and waits (`msync`).
    pub fn flush(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        if len == 0 {
            return Ok(());
        }
        self.raw.flush_range(offset, len)
    }
}

/// The protocol's view of a file: the mapping's own checked accessors.
impl Memory for FileMap {
    fn word(&self, offset: u64) -> Option<&AtomicU64> {
        FileMap::word(self, offset)
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        FileMap::read(self, offset, buf)
    }

    fn write(&self, offset: u64, bytes: &[u8]) -> bool {
        FileMap::write(self, offset, bytes)
    }
}
