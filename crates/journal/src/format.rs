//! The bytes on disk: the file header, the record header and its state word, the checksum.
//! Both tables are in the crate docs; this module encodes and validates them and nothing else.
//!
//! Every value here is read by copy out of a file that anyone with write access may have
//! changed, and checked before it is believed.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::RecordType;

/// Magic bytes at offset 0 of every journal file.
pub const MAGIC: [u8; 8] = *b"SHMLJRN\0";
/// The file format this build writes. It also reads version 1 (no index: [`FileHeader::validate`]).
pub const FORMAT_VERSION: u32 = 2;
/// The first format, without the index: its checksum covers bytes `0..128` only.
const FORMAT_VERSION_1: u32 = 1;
/// Bytes of the file header; the first record starts here.
pub const FILE_HEADER_SIZE: u64 = 256;
/// Offset of the header checksum field; version 2's checksum covers every other header byte,
/// version 1's only the bytes before it.
const HEADER_CHECKSUM_AT: usize = 128;
/// Longest record type name, in bytes.
pub const TYPE_NAME_MAX: usize = 64;
/// Bytes of a record header; the payload follows.
pub const RECORD_HEADER_SIZE: u64 = 32;
/// Records start at multiples of this.
pub const RECORD_ALIGN: u64 = 8;
/// Room every file keeps after its last record for the end marker (one state word).
pub const END_RESERVE: u64 = 8;
/// Smallest file (roll size) accepted.
pub const MIN_FILE_SIZE: u64 = 4096;
/// Largest file accepted, written or read (a header claiming more is refused).
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// Largest file sequence number accepted (so that the next one never overflows).
pub const MAX_SEQ: u64 = 1 << 48;
/// Largest first index a file header may hold (so that indices never overflow).
pub const MAX_FIRST_INDEX: u64 = 1 << 62;
/// Bytes of an index entry: index, timestamp, offset.
pub const INDEX_ENTRY_SIZE: u64 = 24;
/// Largest index stride accepted (records per index entry).
pub const MAX_INDEX_STRIDE: u32 = 1 << 16;

/// State of a record slot being written: the payload is not complete yet.
pub(crate) const STATE_WRITING: u32 = u32::from_le_bytes(*b"WRIT");
/// State of a complete, published record.
pub(crate) const STATE_COMMITTED: u32 = u32::from_le_bytes(*b"COMT");
/// State of the end marker: no more records in this file; read the next one.
pub(crate) const STATE_END: u32 = u32::from_le_bytes(*b"END!");

/// The file header as plain data, copied out of (or into) the mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub(crate) struct FileHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    pub header_size: u32,
    pub file_seq: u64,
    pub first_index: u64,
    pub created_unix_ns: u64,
    pub file_size: u64,
    pub type_size: u32,
    pub type_align: u32,
    pub type_version: u32,
    pub type_name_len: u32,
    pub type_name: [u8; TYPE_NAME_MAX],
    pub header_checksum: u32,
    pub index_stride: u32,
    pub reserved: [u8; 120],
}

const _: () = assert!(size_of::<FileHeader>() as u64 == FILE_HEADER_SIZE);

/// What a valid file header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub seq: u64,
    pub first_index: u64,
    pub created_unix_ns: u64,
    pub file_size: u64,
    pub record_type: RecordType,
    /// Records per index entry; 0: the file has no index.
    pub index_stride: u32,
}

impl FileInfo {
    /// Entries the file's index region holds.
    pub fn index_capacity(&self) -> u64 {
        index_capacity(self.file_size, self.index_stride)
    }

    /// Where the index region starts: records (and the end marker) end at or before it.
    pub fn records_end(&self) -> u64 {
        records_end(self.file_size, self.index_stride)
    }
}

/// Entries the index region of a file of `file_size` bytes with one entry every `stride`
/// records holds: one for every `stride`-th record of the most records the file could hold
/// (all empty, `RECORD_HEADER_SIZE` bytes each), so it never runs out. 0 without an index.
pub(crate) fn index_capacity(file_size: u64, stride: u32) -> u64 {
    let most_records =
        file_size.saturating_sub(FILE_HEADER_SIZE + END_RESERVE) / RECORD_HEADER_SIZE;
    most_records.checked_div(u64::from(stride)).unwrap_or(0)
}

/// Where the records of a file of `file_size` bytes end, and its index region starts.
pub(crate) fn records_end(file_size: u64, stride: u32) -> u64 {
    file_size - index_capacity(file_size, stride) * INDEX_ENTRY_SIZE
}

/// Why a file header was refused (the caller adds the path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    Magic,
    Version(u32),
    Checksum,
    Field(&'static str),
    Size { header: u64, actual: u64 },
    Seq { header: u64, name: u64 },
}

impl FileHeader {
    /// The header of a new file.
    pub fn new(info: &FileInfo) -> FileHeader {
        let name = info.record_type.name.as_bytes();
        let mut type_name = [0; TYPE_NAME_MAX];
        type_name[..name.len()].copy_from_slice(name);
        let mut header = FileHeader {
            magic: MAGIC,
            format_version: FORMAT_VERSION,
            header_size: FILE_HEADER_SIZE as u32,
            file_seq: info.seq,
            first_index: info.first_index,
            created_unix_ns: info.created_unix_ns,
            file_size: info.file_size,
            type_size: info.record_type.size,
            type_align: info.record_type.align,
            type_version: info.record_type.version,
            type_name_len: name.len() as u32,
            type_name,
            header_checksum: 0,
            index_stride: info.index_stride,
            reserved: [0; 120],
        };
        header.header_checksum = header.checksum();
        header
    }

    /// The checksum of a header of this header's version: CRC-32C of every byte but the
    /// checksum field's (version 1: of the bytes before it).
    fn checksum(&self) -> u32 {
        let (before, rest) = self.as_bytes().split_at(HEADER_CHECKSUM_AT);
        let crc = crc32c::crc32c(before);
        match self.format_version {
            FORMAT_VERSION_1 => crc,
            _ => crc32c::crc32c_append(crc, &rest[4..]),
        }
    }

    /// Checks a header copied out of the file named for `seq` whose length is `actual`.
    pub fn validate(&self, seq: u64, actual: u64) -> Result<FileInfo, HeaderFault> {
        if self.magic != MAGIC {
            return Err(HeaderFault::Magic);
        }
        if !matches!(self.format_version, FORMAT_VERSION_1 | FORMAT_VERSION) {
            return Err(HeaderFault::Version(self.format_version));
        }
        if self.header_checksum != self.checksum() {
            return Err(HeaderFault::Checksum);
        }
        if u64::from(self.header_size) != FILE_HEADER_SIZE {
            return Err(HeaderFault::Field("header_size"));
        }
        if self.file_size != actual {
            return Err(HeaderFault::Size { header: self.file_size, actual });
        }
        if !(MIN_FILE_SIZE..=MAX_FILE_SIZE).contains(&self.file_size)
            || !self.file_size.is_multiple_of(RECORD_ALIGN)
        {
            return Err(HeaderFault::Field("file_size"));
        }
        if self.first_index > MAX_FIRST_INDEX {
            return Err(HeaderFault::Field("first_index"));
        }
        if self.file_seq != seq {
            return Err(HeaderFault::Seq { header: self.file_seq, name: seq });
        }
        let name_len = self.type_name_len as usize;
        let name = self
            .type_name
            .get(..name_len)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .ok_or(HeaderFault::Field("type_name"))?;
        if !self.type_align.is_power_of_two() {
            return Err(HeaderFault::Field("type_align"));
        }
        // Version 1 has no index; its bytes 132.. are reserved (and not checksummed).
        let index_stride = match self.format_version {
            FORMAT_VERSION_1 => 0,
            _ => self.index_stride,
        };
        if index_stride > MAX_INDEX_STRIDE {
            return Err(HeaderFault::Field("index_stride"));
        }
        Ok(FileInfo {
            seq,
            first_index: self.first_index,
            created_unix_ns: self.created_unix_ns,
            file_size: self.file_size,
            record_type: RecordType {
                name: name.to_owned(),
                size: self.type_size,
                align: self.type_align,
                version: self.type_version,
            },
            index_stride,
        })
    }
}

/// The record header as plain data, copied out of the mapping. `len` and `state` are the two
/// halves of the state word (little-endian), which is written and read only atomically.
// `pub` for the loom models (`model` re-exports it); `format` itself is private.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RecordHeader {
    /// Payload bytes.
    pub len: u32,
    /// `STATE_WRITING`, `STATE_COMMITTED` or `STATE_END`.
    pub state: u32,
    /// The record's index.
    pub index: u64,
    /// Publication time, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// CRC-32C of `len`, `index`, `timestamp_ns` and the payload.
    pub checksum: u32,
    /// Zero.
    pub reserved: u32,
}

const _: () = assert!(size_of::<RecordHeader>() as u64 == RECORD_HEADER_SIZE);

/// An index entry as plain data: where the record it names lies, and its index and time. In
/// the file, three words written and read only atomically (`publish::write_entry`,
/// `publish::read_entry`); `pub` for the loom models, as `RecordHeader`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The record's index.
    pub index: u64,
    /// The record's timestamp, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// The record's offset in the file; never 0 in an entry (0 marks an empty slot).
    pub offset: u64,
}

/// The offset of entry `slot` of the index region that starts at `records_end`.
pub(crate) fn entry_offset(records_end: u64, slot: u64) -> u64 {
    records_end + slot * INDEX_ENTRY_SIZE
}

/// What a state word says about its slot (`pub` for the loom models, as `RecordHeader`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Zero: nothing written here yet.
    Empty,
    /// A record of `len` bytes is being written (or its writer died while writing it).
    Writing {
        /// Payload bytes.
        len: u32,
    },
    /// A complete record of `len` bytes.
    Committed {
        /// Payload bytes.
        len: u32,
    },
    /// The file ends here; the next file continues the journal.
    End,
    /// None of the above: corrupt.
    Garbage(u64),
}

/// The state word for `state` and `len`.
pub(crate) const fn word(state: u32, len: u32) -> u64 {
    ((state as u64) << 32) | len as u64
}

/// Decodes a state word.
pub(crate) fn slot(word: u64) -> Slot {
    let (state, len) = ((word >> 32) as u32, word as u32);
    match state {
        0 if len == 0 => Slot::Empty,
        STATE_WRITING => Slot::Writing { len },
        STATE_COMMITTED => Slot::Committed { len },
        STATE_END if len == 0 => Slot::End,
        _ => Slot::Garbage(word),
    }
}

/// Bytes a record of `len` payload bytes takes in the file, header and padding included.
pub(crate) const fn extent(len: u32) -> u64 {
    RECORD_HEADER_SIZE + (len as u64).next_multiple_of(RECORD_ALIGN)
}

/// Whether a record of `len` bytes at `offset` fits in a file whose records end at
/// `records_end` ([`FileInfo::records_end`]), leaving room for the end marker after it.
pub(crate) fn fits(offset: u64, len: u32, records_end: u64) -> bool {
    offset
        .checked_add(extent(len))
        .and_then(|end| end.checked_add(END_RESERVE))
        .is_some_and(|end| end <= records_end)
}

/// The largest payload a file whose records end at `records_end` holds.
pub(crate) fn max_payload(records_end: u64) -> u32 {
    let room = records_end.saturating_sub(FILE_HEADER_SIZE + RECORD_HEADER_SIZE + END_RESERVE);
    u32::try_from(room & !(RECORD_ALIGN - 1)).unwrap_or(!(RECORD_ALIGN as u32 - 1))
}

/// The checksum of a record: CRC-32C over its length, index, timestamp and payload.
pub(crate) fn record_checksum(len: u32, index: u64, timestamp_ns: u64, payload: &[u8]) -> u32 {
    let mut fields = [0u8; 20];
    fields[..4].copy_from_slice(&len.to_le_bytes());
    fields[4..12].copy_from_slice(&index.to_le_bytes());
    fields[12..].copy_from_slice(&timestamp_ns.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&fields), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_round_trip_and_anything_else_is_garbage() {
        assert_eq!(slot(0), Slot::Empty);
        assert_eq!(slot(word(STATE_WRITING, 7)), Slot::Writing { len: 7 });
        assert_eq!(slot(word(STATE_COMMITTED, 9)), Slot::Committed { len: 9 });
        assert_eq!(slot(word(STATE_END, 0)), Slot::End);
        assert!(matches!(slot(word(STATE_END, 1)), Slot::Garbage(_)));
        assert!(matches!(slot(5), Slot::Garbage(5)));
    }

    #[test]
    fn a_record_fits_only_with_room_for_the_end_marker() {
        assert_eq!(extent(0), 32);
        assert_eq!(extent(1), 40);
        assert!(fits(FILE_HEADER_SIZE, max_payload(4096), 4096));
        assert!(!fits(FILE_HEADER_SIZE, max_payload(4096) + 1, 4096));
        assert!(!fits(u64::MAX - 4, 0, u64::MAX));
    }

    fn info(index_stride: u32) -> FileInfo {
        FileInfo {
            seq: 3,
            first_index: 40,
            created_unix_ns: 1,
            file_size: 8192,
            record_type: RecordType::bytes(),
            index_stride,
        }
    }

    #[test]
    fn a_header_survives_its_own_validation_and_a_flipped_bit_does_not() {
        let info = info(16);
        let header = FileHeader::new(&info);
        assert_eq!(header.validate(3, 8192), Ok(info));
        assert_eq!(header.validate(4, 8192).unwrap_err(), HeaderFault::Seq { header: 3, name: 4 });
        // A bit flipped before the checksum field, and one in the index stride after it.
        for at in [30, 132] {
            let mut bytes = header.as_bytes().to_vec();
            bytes[at] ^= 1;
            let flipped = FileHeader::read_from_bytes(&bytes).unwrap();
            assert_eq!(flipped.validate(3, 8192).unwrap_err(), HeaderFault::Checksum, "{at}");
        }
    }

    #[test]
    fn a_version_1_header_reads_as_a_file_without_an_index() {
        // Version 1: bytes 132.. reserved and unchecked, the checksum over bytes 0..128.
        let mut header = FileHeader::new(&info(0));
        header.format_version = FORMAT_VERSION_1;
        header.index_stride = 7; // whatever a version 1 writer left there is not a stride
        header.header_checksum = crc32c::crc32c(&header.as_bytes()[..HEADER_CHECKSUM_AT]);
        let read = header.validate(3, 8192).unwrap();
        assert_eq!(read, info(0));
        assert_eq!((read.index_capacity(), read.records_end()), (0, 8192));
        header.format_version = 3;
        assert_eq!(header.validate(3, 8192).unwrap_err(), HeaderFault::Version(3));
    }

    #[test]
    fn a_stride_past_the_largest_is_refused() {
        let header = FileHeader::new(&info(MAX_INDEX_STRIDE + 1));
        assert_eq!(header.validate(3, 8192).unwrap_err(), HeaderFault::Field("index_stride"));
        assert!(FileHeader::new(&info(MAX_INDEX_STRIDE)).validate(3, 8192).is_ok());
    }

    #[test]
    fn the_index_region_holds_an_entry_for_every_stride_of_the_most_records_that_fit() {
        for file_size in [MIN_FILE_SIZE, 8192, 64 << 20, MAX_FILE_SIZE] {
            for stride in [1, 2, 3, 64, 1000, MAX_INDEX_STRIDE] {
                let capacity = index_capacity(file_size, stride);
                let end = records_end(file_size, stride);
                assert_eq!(end, file_size - capacity * INDEX_ENTRY_SIZE);
                assert!(end.is_multiple_of(RECORD_ALIGN) && end > FILE_HEADER_SIZE);
                // Empty records, the densest: the file's `n`-th (from 0) lies at
                // `256 + 32 n`; entry `slot` names its `(slot + 1) * stride`-th.
                let most = (end - FILE_HEADER_SIZE - END_RESERVE) / RECORD_HEADER_SIZE;
                assert!(most / u64::from(stride) <= capacity, "{file_size} {stride}");
                assert!(max_payload(end) > 0);
            }
            assert_eq!(index_capacity(file_size, 0), 0);
            assert_eq!(records_end(file_size, 0), file_size);
        }
        assert_eq!(index_capacity(4096, 64), 1);
    }
}
