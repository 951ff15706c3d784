//! Reading the record slots of a file: the state word at an offset, and a whole record copied
//! out and validated (bounds, index, checksum) before anyone sees its bytes. Shared by the
//! tailers and the appender's recovery; the protocol itself is `publish`'s.

use crate::files::JournalFile;
use crate::format::{RecordHeader, Slot};
use crate::publish;

/// The slot at `offset`: what its state word says (Acquire load); an error if the word lies
/// outside the file or is unaligned (the offset came from a corrupt length).
pub(crate) fn slot_at(file: &JournalFile, offset: u64) -> Result<Slot, &'static str> {
    publish::slot_at(&file.map, offset)
}

/// Copies the committed record of `len` bytes at `offset` into `buf` (header, then payload)
/// and validates it as the record of `index`. On success `buf` holds exactly
/// `RECORD_HEADER_SIZE + len` bytes.
pub(crate) fn read_record(
    file: &JournalFile,
    offset: u64,
    len: u32,
    index: u64,
    buf: &mut Vec<u8>,
) -> Result<RecordHeader, &'static str> {
    publish::read_record(&file.map, file.records_end, offset, len, index, buf)
}
