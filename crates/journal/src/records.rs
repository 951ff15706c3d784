//! Reading the record slots of a file: the state word at an offset, and a whole record copied
//! out and validated (bounds, index, checksum) before anyone sees its bytes. Shared by the
//! tailers and the appender's recovery.

use zerocopy::FromBytes;

use crate::files::JournalFile;
use crate::format::{self, RECORD_HEADER_SIZE, RecordHeader, Slot};

/// The slot at `offset`: what its state word says; an error if the word lies outside the
/// file or is unaligned (the offset came from a corrupt length).
pub(crate) fn slot_at(file: &JournalFile, offset: u64) -> Result<Slot, &'static str> {
    let word = file.map.word(offset).ok_or("the record lies outside the file")?;
    // Acquire: pairs with the appender's Release store of a `Committed` or `End` word, so
    // everything it wrote before (the record's header fields and payload, or the next file)
    // is visible to us.
    Ok(format::slot(word.load(std::sync::atomic::Ordering::Acquire)))
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
    if !format::fits(offset, len, file.info.file_size) {
        return Err("its length runs past the end of the file");
    }
    buf.resize(RECORD_HEADER_SIZE as usize + len as usize, 0);
    if !file.map.read(offset, buf) {
        return Err("its length runs past the end of the file");
    }
    let (header, payload) = buf.split_at(RECORD_HEADER_SIZE as usize);
    let header = RecordHeader::read_from_bytes(header).map_err(|_| "short header")?;
    // The copy's word must be the one we were handed: a changed length means a writer that
    // does not follow the format.
    if format::slot(format::word(header.state, header.len)) != (Slot::Committed { len }) {
        return Err("its state word changed while it was read");
    }
    if header.index != index {
        return Err("its index is not the next one");
    }
    if header.checksum != format::record_checksum(len, header.index, header.timestamp_ns, payload) {
        return Err("its checksum does not match (torn or corrupt)");
    }
    Ok(header)
}
