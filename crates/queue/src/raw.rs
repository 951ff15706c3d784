//! Where the shared queues keep their words, as offsets from the start of a queue's region: for
//! tests that watch a peer's progress or play a crashed or hostile peer by writing the words
//! directly. Each kind reports its own [`RawLayout`] (`SharedSpsc::raw_layout`,
//! `SharedMpmc::raw_layout`, `SharedOverflow::raw_layout`), computed from the types and
//! constants the queue itself uses, so a test cannot drift from the layout. Hidden: not a
//! stable API.

pub use crate::descriptor::{
    CAPACITY_AT, DESCRIPTOR_LEN, ELEMENT_ALIGN_AT, ELEMENT_SIZE_AT, EXTRA_AT, FINGERPRINT_AT,
    MAGIC_AT, RESERVED0_AT, VERSION_AT,
};
use crate::descriptor::{HEAD_AT, TAIL_AT};

/// The words of one shared queue (see each kind's module documentation for what they hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLayout {
    /// Bytes of the region: the `size` of the kind's `layout`.
    pub size: u64,
    /// `head`.
    pub head: u64,
    /// `tail`.
    pub tail: u64,
    /// SPSC: the producer's and the consumer's role words.
    pub roles: Option<[u64; 2]>,
    /// MPMC: the repair counters `lost` and `skipped`.
    pub repairs: Option<[u64; 2]>,
    /// Overflow: `seen`.
    pub seen: Option<u64>,
    /// MPMC: the participant entries.
    pub entries: Option<RawEntries>,
    /// The first slot.
    pub slots: u64,
    /// Bytes from one slot to the next.
    pub slot_size: u64,
    /// Where a slot's value starts within the slot (its sequence word, or stamp, is first).
    pub value: u64,
}

impl RawLayout {
    /// A queue of `size` bytes whose slots of type `S` start at `slots`, their values `value`
    /// bytes in; `head` and `tail` where every kind keeps them, and no words of its own.
    pub(crate) fn of_slots<S>(size: u64, slots: u64, value: usize) -> RawLayout {
        RawLayout {
            size,
            head: HEAD_AT,
            tail: TAIL_AT,
            roles: None,
            repairs: None,
            seen: None,
            entries: None,
            slots,
            slot_size: size_of::<S>() as u64,
            value: value as u64,
        }
    }
}

/// The MPMC participant entries: producers first, then consumers, each a role word followed by
/// the announced position + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntries {
    /// The first entry.
    pub at: u64,
    /// Bytes from one entry to the next.
    pub size: u64,
    /// How many there are (producers' and consumers').
    pub count: u64,
    /// Where the announcement lives within an entry (its role word is first).
    pub announcement: u64,
}
