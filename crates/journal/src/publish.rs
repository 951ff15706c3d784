//! The record publish protocol, and nothing else: what the appender stores into a file's
//! record slots and in which order, and how a reader loads and copies a record out. The
//! appender, the tailers and recovery all go through these functions; `model` (feature
//! `loom`) compiles this file a second time over loom's atomics and a heap "file", for the
//! models in `loom-tests/journal_publish.rs`, so a change here is a change to what loom
//! checks.
//!
//! Writer, for a record of `len` bytes at `offset` (see the crate docs for the format):
//!
//! 1. [`claim`]: the state word becomes `Writing | len` (Relaxed: readers wait at it as at
//!    an empty slot);
//! 2. the payload is written at `offset + 32` ([`write_payload`], or in place through a
//!    reservation), then [`commit`] writes index, timestamp and checksum after the word;
//! 3. [`commit`] publishes with a Release store of `Committed | len`.
//!
//! At a roll, [`roll`] creates the next file first and only then stores the end marker
//! (Release) where the next record would have gone.
//!
//! Reader: [`slot_at`] loads the word with Acquire; only at `Committed | len` does
//! [`read_record`] copy the rest of the header and the payload out, load the word again and
//! validate the copy (word unchanged, bounds, index, checksum).
//!
//! Index entries: after publishing every `stride`-th record of a file, the appender writes
//! its entry ([`write_entry`]): index and timestamp, then the offset with a Release store
//! (0 is an empty slot). A reader ([`read_entry`]) loads the offset with Acquire, then the
//! rest; it trusts an entry only once the record it names validates as that record.

use super::sync::{AtomicU64, Ordering};
use crate::format::{
    self, INDEX_ENTRY_SIZE, IndexEntry, RECORD_HEADER_SIZE, RecordHeader, STATE_COMMITTED,
    STATE_END, Slot,
};

/// Bytes of the state word at the start of every record slot.
const WORD: u64 = 8;

/// The memory of one journal file, as the protocol touches it: the shared mapping, or the
/// loom model's heap file.
pub trait Memory {
    /// The state word at `offset`, if it lies inside the file and is 8-aligned.
    fn word(&self, offset: u64) -> Option<&AtomicU64>;
    /// Copies `buf.len()` bytes at `offset` out; `false` if they do not lie inside the file.
    fn read(&self, offset: u64, buf: &mut [u8]) -> bool;
    /// Copies `bytes` in at `offset`; `false` if they do not lie inside the file. Only the
    /// appender writes, and only past the published tail.
    fn write(&self, offset: u64, bytes: &[u8]) -> bool;
}

/// Step 1: marks the slot at `offset` as being written with a record of `len` bytes.
/// `false` if the word is not in the file (the caller checked that the record fits).
pub fn claim<M: Memory + ?Sized>(memory: &M, offset: u64, len: u32) -> bool {
    let Some(word) = memory.word(offset) else { return false };
    // Relaxed: tailers wait at a `Writing` word as at an empty one; only a recovering
    // appender reads it, after our death.
    word.store(format::word(format::STATE_WRITING, len), Ordering::Relaxed);
    true
}

/// Step 2, by copy: writes `payload` as the payload of the claimed record at `offset`.
pub fn write_payload<M: Memory + ?Sized>(memory: &M, offset: u64, payload: &[u8]) -> bool {
    memory.write(offset + RECORD_HEADER_SIZE, payload)
}

/// Steps 2 and 3: writes the header fields after the state word of the claimed record at
/// `offset` (its payload already written), then publishes it. Returns the header written.
pub fn commit<M: Memory + ?Sized>(
    memory: &M,
    offset: u64,
    len: u32,
    index: u64,
    timestamp_ns: u64,
    checksum: u32,
) -> RecordHeader {
    use zerocopy::IntoBytes;

    let header = RecordHeader {
        len,
        state: format::STATE_WRITING,
        index,
        timestamp_ns,
        checksum,
        reserved: 0,
    };
    // Everything but the state word (the first 8 bytes).
    memory.write(offset + WORD, &header.as_bytes()[WORD as usize..]);
    on_disk! {
        shmlane_segment::crash_point!("journal.append.before_publish");
    }
    if let Some(word) = memory.word(offset) {
        // Release: pairs with the Acquire load in `slot_at`; the payload and the header
        // fields written above are visible to whoever sees `Committed`.
        word.store(format::word(STATE_COMMITTED, len), Ordering::Release);
    }
    on_disk! {
        shmlane_segment::crash_point!("journal.append.after_publish");
    }
    RecordHeader { state: STATE_COMMITTED, ..header }
}

// The models' writer (`model::publish::append`): the appender composes the same steps around
// its reservation (claim in `reserve`, the payload in place, `commit`).
#[allow(dead_code)]
/// Writes and publishes a whole record of `payload` at `offset` (claim, payload, fields,
/// publish) and returns its header; `None` (nothing written) if the record does not fit in
/// a file whose records end at `size` with room for the end marker, or is too long.
pub fn append<M: Memory + ?Sized>(
    memory: &M,
    size: u64,
    offset: u64,
    index: u64,
    timestamp_ns: u64,
    payload: &[u8],
) -> Option<RecordHeader> {
    let len = u32::try_from(payload.len()).ok()?;
    if !format::fits(offset, len, size) || !claim(memory, offset, len) {
        return None;
    }
    write_payload(memory, offset, payload);
    let checksum = format::record_checksum(len, index, timestamp_ns, payload);
    Some(commit(memory, offset, len, index, timestamp_ns, checksum))
}

/// Takes back a claimed, unpublished record at `offset`: the word becomes zero again. The
/// caller zeroed the rest of the record's extent first.
pub fn retract<M: Memory + ?Sized>(memory: &M, offset: u64) {
    if let Some(word) = memory.word(offset) {
        // Release: orders the caller's zeroing before the word a tailer may load next.
        word.store(0, Ordering::Release);
    }
}

/// Stores the end marker at `offset`: no more records in this file.
pub fn seal<M: Memory + ?Sized>(memory: &M, offset: u64) {
    if let Some(word) = memory.word(offset) {
        // Release: pairs with the Acquire load in `slot_at`; the next file was created
        // before (`roll`), so a reader that sees the marker finds it.
        word.store(format::word(STATE_END, 0), Ordering::Release);
    }
}

/// Rolls to the next file: `create` makes it (and may fail, leaving this file as it was),
/// then the end marker is stored at `offset` of this file unless it is `sealed` already.
/// In this order, so that whoever sees the marker finds the next file.
pub fn roll<M: Memory + ?Sized, F, E>(
    memory: &M,
    offset: u64,
    sealed: bool,
    create: impl FnOnce() -> Result<F, E>,
) -> Result<F, E> {
    let next = create()?;
    on_disk! {
        shmlane_segment::crash_point!("journal.roll.before_seal");
    }
    if !sealed {
        seal(memory, offset);
    }
    Ok(next)
}

/// The slot at `offset`: what its state word says; an error if the word lies outside the
/// file or is unaligned (the offset came from a corrupt length).
pub fn slot_at<M: Memory + ?Sized>(memory: &M, offset: u64) -> Result<Slot, &'static str> {
    let word = memory.word(offset).ok_or("the record lies outside the file")?;
    // Acquire: pairs with the appender's Release store of a `Committed` or `End` word, so
    // everything it wrote before (the record's header fields and payload, or the next file)
    // is visible to us.
    Ok(format::slot(word.load(Ordering::Acquire)))
}

/// Copies the committed record of `len` bytes at `offset` of a file whose records end at
/// `size` (its index region, if any, follows) into `buf` (header, then payload) and validates
/// it as the record of `index`; call it after
/// [`slot_at`] returned `Committed { len }`. On success `buf` holds exactly
/// `RECORD_HEADER_SIZE + len` bytes.
pub fn read_record<M: Memory + ?Sized>(
    memory: &M,
    size: u64,
    offset: u64,
    len: u32,
    index: u64,
    buf: &mut Vec<u8>,
) -> Result<RecordHeader, &'static str> {
    use zerocopy::FromBytes;

    const PAST_END: &str = "its length runs past the end of the file";
    if !format::fits(offset, len, size) {
        return Err(PAST_END);
    }
    buf.resize(RECORD_HEADER_SIZE as usize + len as usize, 0);
    if !memory.read(offset + WORD, &mut buf[WORD as usize..]) {
        return Err(PAST_END);
    }
    let (header, payload) = buf.split_at(RECORD_HEADER_SIZE as usize);
    let mut header = RecordHeader::read_from_bytes(header).map_err(|_| "short header")?;
    // The word again, after the copy (it is never read as plain bytes): it must still be the
    // one we were handed; a change means a writer that does not follow the format. Relaxed:
    // the same location as the Acquire load before, so no older value than that one.
    let word = memory.word(offset).ok_or(PAST_END)?.load(Ordering::Relaxed);
    (header.len, header.state) = (word as u32, (word >> 32) as u32);
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

/// The three words of the index entry at `at`: index, timestamp, offset; `None` if they do
/// not lie inside the file or are unaligned.
fn entry_words<M: Memory + ?Sized>(memory: &M, at: u64) -> Option<[&AtomicU64; 3]> {
    const _: () = assert!(INDEX_ENTRY_SIZE == 24);
    Some([memory.word(at)?, memory.word(at.checked_add(8)?)?, memory.word(at.checked_add(16)?)?])
}

/// Writes `entry` into the index slot at `at`, after the record it names was published
/// (`commit`). `false` if the slot is not in the file.
pub fn write_entry<M: Memory + ?Sized>(memory: &M, at: u64, entry: IndexEntry) -> bool {
    let Some([index, timestamp, offset]) = entry_words(memory, at) else { return false };
    // Relaxed: published by the Release store of the offset below.
    index.store(entry.index, Ordering::Relaxed);
    timestamp.store(entry.timestamp_ns, Ordering::Relaxed);
    // Release: pairs with the Acquire load in `read_entry`; whoever sees the offset sees the
    // index and timestamp above, and the record's own `Committed` store before them.
    offset.store(entry.offset, Ordering::Release);
    true
}

/// The index entry at `at`: `Ok(None)` for an empty slot (offset 0), an error if the slot
/// does not lie inside the file. What it holds is unverified: a damaged file holds anything.
pub fn read_entry<M: Memory + ?Sized>(
    memory: &M,
    at: u64,
) -> Result<Option<IndexEntry>, &'static str> {
    let [index, timestamp, offset] =
        entry_words(memory, at).ok_or("the index entry lies outside the file")?;
    // Acquire: pairs with the Release store in `write_entry`.
    let offset = offset.load(Ordering::Acquire);
    if offset == 0 {
        return Ok(None);
    }
    // Relaxed: ordered after the Acquire load above.
    let (index, timestamp_ns) = (index.load(Ordering::Relaxed), timestamp.load(Ordering::Relaxed));
    Ok(Some(IndexEntry { index, timestamp_ns, offset }))
}

/// Empties the index slot at `at` (recovery, with the appender role held): the offset first,
/// so that a reader sees an empty slot or words it then fails to verify.
pub fn clear_entry<M: Memory + ?Sized>(memory: &M, at: u64) {
    let Some(words) = entry_words(memory, at) else { return };
    for word in words.into_iter().rev() {
        // Relaxed: a reader that still sees the old offset verifies the entry against its
        // record and refuses it if it no longer matches; an entry rewritten here later is
        // published by `write_entry`'s Release store.
        word.store(0, Ordering::Relaxed);
    }
}
