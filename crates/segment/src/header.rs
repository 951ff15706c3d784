//! The segment header: a fixed `#[repr(C)]` record at offset 0.
//!
//! | offset | size | field                | meaning                                              |
//! |-------:|-----:|----------------------|------------------------------------------------------|
//! | 0      | 8    | `magic`              | `b"SHMLANE\0"`                                       |
//! | 8      | 4    | `format_version`     | [`FORMAT_VERSION`]; other versions are refused       |
//! | 12     | 4    | `header_size`        | [`HEADER_SIZE`] (128); user regions start there      |
//! | 16     | 8    | `layout_fingerprint` | caller's [`Fingerprint`](crate::Fingerprint) of what is stored |
//! | 24     | 8    | `total_size`         | bytes of the whole segment; must equal the file size |
//! | 32     | 4    | `creator_pid`        | pid of the creating process                          |
//! | 36     | 4    | `backing`            | 1 POSIX shm, 2 file in a directory, 3 memfd          |
//! | 40     | 8    | `creator_start_time` | creator's start time (ticks since boot), see [`ProcessId`] |
//! | 48     | 8    | `created_unix_ns`    | creation time, nanoseconds since the Unix epoch      |
//! | 56     | 4    | `init_state`         | atomic: 0 empty, 1 initializing, 2 ready             |
//! | 60     | 4    | reserved             | zero                                                 |
//! | 64     | 8    | `creator_token`      | creator's presence token, its proof of life ([`crate::presence`]) |
//! | 72     | 56   | reserved             | zero                                                 |
//!
//! All fields are little-endian native integers (segments never leave the host).
//!
//! Initialisation protocol: the file starts zero-filled (`Empty`). The creator writes every
//! field but `init_state`, stores `Initializing` (Release), lays out its structures, then stores
//! `Ready` (Release). An opener loads `init_state` with Acquire, which pairs with those stores,
//! and only then copies the other fields out and validates them. A creator that died while the
//! state was `Initializing` is detected with its presence token (pid and start time are kept
//! for reports). Before that, the creator of a
//! file in a directory (POSIX shm included) holds an exclusive `flock` on it from right after
//! creating it until it publishes `Ready`. A file without a published header whose lock is
//! free is refused by an opener once its timeout runs out (at once if the file is older than
//! `EMPTY_GRACE`), and called stale by discovery once it is older than `EMPTY_GRACE`.
//!
//! This module writes and publishes the header (creators), copies it out (openers and
//! discovery), and, in `validate`, checks a copy before anything in it is believed.

use crate::sync::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::mapping::Mapping;
pub use crate::offset::HEADER_SIZE;
use crate::offset::OffsetError;
use crate::{Liveness, ProcessId, RoleOwner};

mod validate;

pub(crate) use validate::{Expected, validate_identity, validate_ready};

/// Magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"SHMLANE\0";
/// The only header format this build understands.
pub const FORMAT_VERSION: u32 = 2;

/// Byte offset of the atomic `init_state` word.
pub(crate) const INIT_STATE_OFFSET: u64 = 56;

/// The header as plain data, copied out of (or into) the mapping; never referenced in place.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RawHeader {
    /// `b"SHMLANE\0"`.
    pub magic: [u8; 8],
    /// Header format version.
    pub format_version: u32,
    /// Size of the header region.
    pub header_size: u32,
    /// Caller-supplied fingerprint of the layout.
    pub layout_fingerprint: u64,
    /// Size of the whole segment.
    pub total_size: u64,
    /// Creator's pid.
    pub creator_pid: u32,
    /// Backing kind (1 POSIX shm, 2 directory file, 3 memfd).
    pub backing: u32,
    /// Creator's start time in clock ticks since boot.
    pub creator_start_time: u64,
    /// Creation time in nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Initialisation state (accessed atomically in the mapping).
    pub init_state: u32,
    /// Zero.
    pub reserved0: u32,
    /// The creator's presence token ([`crate::presence`]); never zero in a published header.
    pub creator_token: u64,
    /// Zero.
    pub reserved: [u32; 14],
}

const _: () = {
    assert!(size_of::<RawHeader>() as u64 == HEADER_SIZE);
    assert!(std::mem::offset_of!(RawHeader, init_state) as u64 == INIT_STATE_OFFSET);
    assert!(std::mem::offset_of!(RawHeader, creator_pid) == 32);
    assert!(std::mem::offset_of!(RawHeader, creator_start_time) == 40);
    assert!(std::mem::offset_of!(RawHeader, creator_token) == 64);
};

/// Values of the `init_state` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum InitState {
    /// Nothing written yet (a fresh, zero-filled file).
    Empty = 0,
    /// The creator wrote its identity and is laying out the segment.
    Initializing = 1,
    /// Fully initialised; safe to use.
    Ready = 2,
}

impl InitState {
    pub(crate) fn from_raw(raw: u32) -> Option<InitState> {
        match raw {
            0 => Some(InitState::Empty),
            1 => Some(InitState::Initializing),
            2 => Some(InitState::Ready),
            _ => None,
        }
    }
}

impl RawHeader {
    /// The creator recorded in this header.
    pub fn creator(&self) -> ProcessId {
        ProcessId { pid: self.creator_pid, start_time: self.creator_start_time }
    }

    /// The creator's role-owner word (its presence token); `None` for a zero token.
    pub fn creator_owner(&self) -> Option<RoleOwner> {
        RoleOwner::from_raw(self.creator_token)
    }

    /// Whether the creator still runs, by its presence token (pids mean nothing across pid
    /// namespaces). A zero token is no identity: never proof of death.
    pub fn creator_liveness(&self) -> Liveness {
        self.creator_owner().map_or(Liveness::Unknown, RoleOwner::liveness)
    }

    /// A header describing a fresh segment, state `Empty` (the state is published separately).
    pub(crate) fn new(
        fingerprint: u64,
        total_size: u64,
        creator: ProcessId,
        creator_token: u64,
        backing: u32,
        created_unix_ns: u64,
    ) -> RawHeader {
        RawHeader {
            magic: MAGIC,
            format_version: FORMAT_VERSION,
            header_size: HEADER_SIZE as u32,
            layout_fingerprint: fingerprint,
            total_size,
            creator_pid: creator.pid,
            backing,
            creator_start_time: creator.start_time,
            created_unix_ns,
            init_state: InitState::Empty as u32,
            reserved0: 0,
            creator_token,
            reserved: [0; 14],
        }
    }
}

/// Ordering used to publish a state: pairs with the Acquire load of [`OBSERVE`], so a reader
/// that sees `Initializing` also sees the identity fields, and one that sees `Ready` sees the
/// whole layout.
pub(crate) const PUBLISH: Ordering = Ordering::Release;
/// Ordering used to read a state; pairs with [`PUBLISH`].
pub(crate) const OBSERVE: Ordering = Ordering::Acquire;

/// Writes every field of `header` but the state word into a fresh mapping: openers may already
/// be polling that word, so it is only ever accessed atomically (see [`publish`]).
pub(crate) fn write_fields(mapping: &Mapping, header: &RawHeader) -> Result<(), OffsetError> {
    let (before_state, from_state) = header.as_bytes().split_at(INIT_STATE_OFFSET as usize);
    mapping.write(0, before_state)?;
    mapping.write(INIT_STATE_OFFSET + 4, &from_state[4..])
}

/// Stores the header's state word. Release: publishes every byte written before (the identity
/// fields for `Initializing`, the caller's layout for `Ready`); pairs with the opener's Acquire.
pub(crate) fn publish(mapping: &Mapping, state: InitState) -> Result<(), OffsetError> {
    let word = mapping.view::<crate::sync::AtomicU32>(INIT_STATE_OFFSET)?;
    word.store(state as u32, PUBLISH);
    Ok(())
}

/// Takes a private copy of a file's header with `pread`, in [`snapshot`]'s order: the state
/// word first, then the other fields. No mapping is involved, so a file truncated meanwhile
/// gives `Ok(None)`, never a `SIGBUS`. For discovery, which only reports what it reads; `open`
/// maps the segment and takes a [`snapshot`].
pub(crate) fn read_at(fd: impl std::os::fd::AsFd) -> Result<Option<RawHeader>, rustix::io::Errno> {
    const STATE_AT: usize = INIT_STATE_OFFSET as usize;
    let mut bytes = [0u8; HEADER_SIZE as usize];
    if crate::os::read_at(&fd, &mut bytes[STATE_AT..STATE_AT + 4], INIT_STATE_OFFSET)? < 4 {
        return Ok(None);
    }
    // The kernel's copy is no atomic load, so there is no Acquire to pair with the creator's
    // PUBLISH; this fence keeps the fields' read after the state's on CPUs that reorder loads.
    // Were a field still read torn, the lock a creator holds until it publishes `Ready` still
    // keeps discovery from removing its file.
    crate::sync::fence(OBSERVE);
    let (before_state, from_state) = bytes.split_at_mut(STATE_AT);
    let read = crate::os::read_at(&fd, before_state, 0)?
        + crate::os::read_at(&fd, &mut from_state[4..], INIT_STATE_OFFSET + 4)?;
    if read < HEADER_SIZE as usize - 4 {
        return Ok(None);
    }
    Ok(Some(zerocopy::transmute!(bytes)))
}

/// Takes a private copy of a mapped header: the state word first, with an atomic Acquire load
/// that pairs with the creator's [`PUBLISH`] stores, then the other fields by plain copy (the
/// state word itself is never copied non-atomically: the creator may be storing it).
pub(crate) fn snapshot(mapping: &Mapping) -> Result<RawHeader, OffsetError> {
    let init_state = mapping.load_u32(INIT_STATE_OFFSET, OBSERVE)?;
    let mut bytes = [0u8; HEADER_SIZE as usize];
    let (before_state, from_state) = bytes.split_at_mut(INIT_STATE_OFFSET as usize);
    mapping.read(0, before_state)?;
    mapping.read(INIT_STATE_OFFSET + 4, &mut from_state[4..])?;
    let header: RawHeader = zerocopy::transmute!(bytes);
    Ok(RawHeader { init_state, ..header })
}
