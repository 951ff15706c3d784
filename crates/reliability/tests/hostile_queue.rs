//! Hostile bytes in the segment-level queues (`SharedOverflow`, `SharedSpsc`, `SharedMpmc`),
//! as property tests (proptest): a queue of 1 to 64 slots is initialised between two guard
//! regions, then random operations (pushes, evictions, pops, slices, peeks, claims and
//! releases of ends, a second attach, snapshots) interleave with writes a hostile peer could
//! make anywhere in the queue's region: descriptor bytes and byte runs, role, counter and
//! `seen` words, `head`, `tail` (alone, or both moved together to any place with any gap),
//! participant entries (role, announcement), slot stamps and values. Written words are
//! anything, small, near the current word or the live `tail`, laps away, near the 2^63 bound
//! of positions or the top of the counter range, live or dead owners.
//!
//! Every case must end in error values or correct behaviour:
//! - no panic, no crash (the properties run in proptest's fork mode: a SIGSEGV or SIGBUS fails
//!   the case that caused it) and no hang (a case past 10 s fails);
//! - the queue writes nothing outside itself: the guard regions before and after it, and the
//!   rest of its region beyond the largest queue attached, keep their pattern;
//! - a queue never invents a value: everything popped, evicted, peeked or snapshotted is a
//!   value some push wrote or that lay in the region's words after a mutation;
//! - until the first mutation of a case the queue is exactly its model (a FIFO, with the
//!   overflowing queue evicting the oldest), so each case also checks the protocol it corrupts;
//! - errors tell the truth: `Corrupt { head, tail }` only for indices no queue can have (and the
//!   ones that are in shared memory), `Taken` only for a role word naming a process not proven
//!   dead, `NoFreeEntry` only when every entry is held so, a refused attach only after the
//!   descriptor changed, an accepted one only of a queue that fits the region, lengths never
//!   above the capacity (checked after every step);
//! - the region is usable again: the overflowing queue after `reset`, every queue initialised
//!   anew after the case, is a FIFO for three laps of the ring.
//!
//! These properties are the one fuzzer of the queues' words (the queue crate's tests play a
//! crashed or hostile peer only in named cases); `BlockPool` free lists and state words are
//! fuzzed by `crates/segment/tests/hostile_input.rs` (descriptor, free-list head, links and
//! states, with its own invariants). The queues' words are where each kind's `raw_layout` says.
//!
//! CI runs [`CI_CASES`] cases per property; `SHMLANE_FUZZ_CASES=1000000` is the long mode,
//! `SHMLANE_FUZZ_SEED` repeats a run. The segment lives in a private directory.

mod fuzzing;

use std::collections::{HashSet, VecDeque};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use shmlane_queue::mpmc::{MpmcConsumer, MpmcProducer, MpmcStats, SharedMpmc};
use shmlane_queue::overflow::{self, Corrupt, SharedOverflow, TryPushError};
use shmlane_queue::raw::{CAPACITY_AT, DESCRIPTOR_LEN, MAGIC_AT, RawLayout};
use shmlane_queue::spsc::{self, PopError, PushError, SharedSpsc};
use shmlane_queue::{ClaimError, QueueError};
use shmlane_reliability::{RunDir, Tally};
use shmlane_segment::{
    Backing, Carver, Fingerprint, Liveness, Region, RegionLayout, RoleError, RoleOwner, Segment,
};
use shmlane_testkit::{dead_owner, me};

use crate::fuzzing::{fail, run_property};

/// Cases per property in CI.
const CI_CASES: u32 = 2048;
/// The largest queue; every queue's region is laid out for it.
const MAX_CAPACITY: u64 = 64;
/// Bytes of each guard region, and their pattern.
const GUARD: u64 = 256;
const GUARD_BYTE: u8 = 0x5a;
const FINGERPRINT: Fingerprint = Fingerprint::new("shmlane.hostile queue").with_u64(1);
/// MPMC participants of each kind.
const PARTICIPANTS: u64 = 2;
/// The 2^63 bound every shared index stays below.
const MAX_POSITION: u64 = 1 << 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Overflow,
    Spsc,
    Mpmc,
}

impl Kind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            Kind::Overflow => b"SHMLOVFL",
            Kind::Spsc => b"SHMLSPSC",
            Kind::Mpmc => b"SHMLMPMC",
        }
    }

    /// What this kind's `overflow`, `spsc` or `mpmc` (one of the kinds' `layout` or
    /// `raw_layout`) gives for a queue of `capacity` slots (MPMC: [`PARTICIPANTS`] of each).
    fn pick<T>(
        self,
        capacity: u64,
        overflow: fn(u64) -> Result<T, QueueError>,
        spsc: fn(u64) -> Result<T, QueueError>,
        mpmc: fn(u64, u64, u64) -> Result<T, QueueError>,
    ) -> T {
        let layout = match self {
            Kind::Overflow => overflow(capacity),
            Kind::Spsc => spsc(capacity),
            Kind::Mpmc => mpmc(capacity, PARTICIPANTS, PARTICIPANTS),
        };
        layout.expect("the layout of a valid capacity")
    }

    /// Where the words of a queue of `capacity` slots live (its kind's `raw_layout`).
    fn raw(self, capacity: u64) -> RawLayout {
        let (overflow, spsc) = (SharedOverflow::raw_layout, SharedSpsc::<u64>::raw_layout);
        self.pick(capacity, overflow, spsc, SharedMpmc::<u64>::raw_layout)
    }

    /// Bytes of a queue of `capacity` slots (its `layout` size).
    fn size(self, capacity: u64) -> u64 {
        self.raw(capacity).size
    }

    fn layout(self, capacity: u64) -> RegionLayout {
        let (overflow, spsc) = (SharedOverflow::layout, SharedSpsc::<u64>::layout);
        self.pick(capacity, overflow, spsc, SharedMpmc::<u64>::layout)
    }
}

// ---------------------------------------------------------------------------------------------
// What a case is.
// ---------------------------------------------------------------------------------------------

/// Where in the queue's region a peer writes.
#[derive(Debug, Clone)]
enum Spot {
    Descriptor(u8),
    /// Between the descriptor and `head`: SPSC roles, MPMC `lost` and `skipped`.
    Words(u8),
    Head,
    Tail,
    /// Both indices, to one place: `head` gets the write, `tail` as much more as the gap
    /// (modulo the capacity + 2: a queue that can be, full, or one too many).
    Indices {
        gap: u8,
    },
    /// An MPMC participant entry's role word or announcement; an SPSC role word; the
    /// overflowing queue's `seen`.
    Entry {
        index: u8,
        announcement: bool,
    },
    /// A slot's stamp (sequence word) or value.
    Slot {
        index: u8,
        value: bool,
    },
    Anywhere(u16),
}

#[derive(Debug, Clone)]
enum Write {
    Byte(u8),
    /// A run of bytes (garbage across several fields).
    Bytes(Vec<u8>),
    Word(Word),
}

/// The queues' own hostile words (beside those of every structure, `fuzzing::Word`).
#[derive(Debug, Clone)]
enum QueueWord {
    /// The current value plus this many laps of the ring.
    Laps(i8),
    /// Below 32.
    Small(u8),
    /// The live `tail` plus this (a position just published, claimed or not yet reached),
    /// with the MPMC skip bit (bit 63) if `skip`.
    FromTail { delta: i32, skip: bool },
    /// 2^63 (the bound of positions) plus this.
    AroundLimit(i8),
    /// `u64::MAX` minus this (modulo 16).
    BelowMax(u8),
    /// The current value with the MPMC skip bit (bit 63) set.
    Skip,
}

type Word = fuzzing::Word<QueueWord>;
type Mutation = fuzzing::Mutation<Spot, Write>;
type Step = fuzzing::Step<Spot, Write, Op>;

#[derive(Debug, Clone)]
enum Op {
    /// Pushes (the overflowing queue evicting when full).
    Push(u8),
    /// Pushes that refuse when full.
    TryPush(u8),
    /// Overflow: the producer evicts the oldest; SPSC: peeks; MPMC: a second producer pushes.
    Evict,
    Pop(u8),
    /// SPSC: `push_slice`; others: pushes from a second producer (MPMC) or `try_push`.
    PushSlice(u8),
    /// SPSC: `pop_slice`; others: pops from a second consumer (MPMC) or `pop`.
    PopSlice(u8),
    ClaimProducer,
    ClaimConsumer,
    DropProducer,
    DropConsumer,
    /// Attach the queue again; a success replaces the view used for claims.
    Reattach,
    /// Lengths, snapshots, statistics.
    Inspect,
}

#[derive(Debug, Clone)]
struct Case {
    capacity: u64,
    steps: Vec<Step>,
}

fn word() -> impl Strategy<Value = Word> {
    let from_tail = prop_oneof![-20i32..=20, (-20i32..=20).prop_map(|d| d * 1000)];
    let own = prop_oneof![
        2 => (-2i8..=2).prop_map(QueueWord::Laps),
        1 => (0u8..32).prop_map(QueueWord::Small),
        3 => (from_tail, any::<bool>())
            .prop_map(|(delta, skip)| QueueWord::FromTail { delta, skip }),
        1 => (-20i8..=20).prop_map(QueueWord::AroundLimit),
        1 => (0u8..16).prop_map(QueueWord::BelowMax),
        1 => Just(QueueWord::Skip),
    ];
    fuzzing::word(-3..=3, 9, own)
}

fn spot() -> impl Strategy<Value = Spot> {
    prop_oneof![
        1 => any::<u8>().prop_map(Spot::Descriptor),
        1 => any::<u8>().prop_map(Spot::Words),
        3 => Just(Spot::Head),
        3 => Just(Spot::Tail),
        2 => any::<u8>().prop_map(|gap| Spot::Indices { gap }),
        2 => (any::<u8>(), any::<bool>())
            .prop_map(|(index, announcement)| Spot::Entry { index, announcement }),
        5 => (any::<u8>(), any::<bool>()).prop_map(|(index, value)| Spot::Slot { index, value }),
        1 => any::<u16>().prop_map(Spot::Anywhere),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..=8).prop_map(Op::Push),
        2 => (1u8..=8).prop_map(Op::TryPush),
        2 => Just(Op::Evict),
        5 => (1u8..=8).prop_map(Op::Pop),
        2 => (1u8..=8).prop_map(Op::PushSlice),
        2 => (1u8..=8).prop_map(Op::PopSlice),
        1 => Just(Op::ClaimProducer),
        1 => Just(Op::ClaimConsumer),
        1 => Just(Op::DropProducer),
        1 => Just(Op::DropConsumer),
        1 => Just(Op::Reattach),
        1 => Just(Op::Inspect),
    ]
}

fn case(kind: Kind) -> impl Strategy<Value = Case> {
    let capacity = if kind == Kind::Mpmc {
        prop_oneof![Just(2u64), Just(4), Just(8), Just(MAX_CAPACITY)].boxed()
    } else {
        prop_oneof![Just(1u64), Just(2), Just(4), Just(8), Just(MAX_CAPACITY)].boxed()
    };
    let step = prop_oneof![
        1 => (spot(), prop_oneof![
            2 => any::<u8>().prop_map(Write::Byte),
            1 => prop::collection::vec(any::<u8>(), 2..=16).prop_map(Write::Bytes),
            6 => word().prop_map(Write::Word),
        ])
        .prop_map(|(spot, write)| Step::Mutate(Mutation { spot, write })),
        3 => op().prop_map(Step::Op),
    ];
    (capacity, prop::collection::vec(step, 1..=24))
        .prop_map(|(capacity, steps)| Case { capacity, steps })
}

// ---------------------------------------------------------------------------------------------
// The segment and the oracles every kind shares.
// ---------------------------------------------------------------------------------------------

/// What the cases of a run count (see `Tally`): mutations written; values popped, evicted or
/// peeked, each checked; operations checked against the model (before any mutation); claims
/// refused (corrupt indices, a live role, no free entry); pushes refused for corrupt indices;
/// attaches refused for a changed descriptor; and, of the overflowing queue, values evicted by
/// `push` and by `evict`, and evictions refused for corrupt indices.
const COUNTS: &[&str] = &[
    "mutations",
    "values",
    "modelled",
    "refused claims",
    "refused pushes",
    "refused attaches",
    "evicted by push",
    "evicted by evict",
    "refused evicts",
];

/// Whether a run of `kind` must reach `what` (some counts have no path in some kinds).
fn reachable(kind: Kind, what: &str) -> bool {
    match what {
        // MPMC pushes have no corrupt-index refusal apart from a full queue.
        "refused pushes" => kind != Kind::Mpmc,
        "evicted by push" | "evicted by evict" | "refused evicts" => kind == Kind::Overflow,
        _ => true,
    }
}

/// One queue's segment: the queue's region between two guard regions.
struct Bench {
    kind: Kind,
    /// Where the queue's words live (all but its size are the same for every capacity).
    raw: RawLayout,
    dir: std::path::PathBuf,
    segment: Segment,
    region: Region,
    before: Region,
    after: Region,
    me: RoleOwner,
    dead: RoleOwner,
    tally: Tally,
}

impl Bench {
    fn new(kind: Kind, dir: &std::path::Path) -> Bench {
        let mut carver = Carver::new();
        let guard = RegionLayout { size: GUARD, align: 128 };
        let before = carver.place(guard).expect("the first guard");
        let region = carver.place(kind.layout(MAX_CAPACITY)).expect("the queue's region");
        let after = carver.place(guard).expect("the second guard");
        let segment = Segment::builder(format!("hq-{kind:?}-{}", std::process::id()))
            .backing(Backing::Dir(dir.to_owned()))
            .fingerprint(FINGERPRINT)
            .size(carver.total_size())
            .create()
            .expect("create the queue segment");
        Bench {
            kind,
            raw: kind.raw(MAX_CAPACITY),
            dir: dir.to_owned(),
            segment,
            region,
            before,
            after,
            me: me(),
            dead: dead_owner(),
            tally: Tally::new(COUNTS),
        }
    }

    fn word(&self, rel: u64) -> u64 {
        let mut bytes = [0; 8];
        let _ = self.segment.read_bytes(self.region.offset + rel, &mut bytes);
        u64::from_ne_bytes(bytes)
    }

    /// Fills the guards and the region with the guard pattern (the queue is initialised over
    /// its own part of it).
    fn fill_guards(&self) {
        let end = self.after.offset + self.after.len;
        let pattern = vec![GUARD_BYTE; (end - self.before.offset) as usize];
        self.segment.write_bytes(self.before.offset, &pattern).expect("write the guards");
    }

    /// Every byte outside the queue (guards, and the region beyond `used` bytes) still holds
    /// the pattern.
    fn check_guards(&self, used: u64, after: &str) -> Result<(), TestCaseError> {
        let ranges = [
            (self.before.offset, self.before.len),
            (self.region.offset + used, self.region.len - used),
            (self.after.offset, self.after.len),
        ];
        for (start, len) in ranges {
            let mut bytes = vec![0; len as usize];
            self.segment.read_bytes(start, &mut bytes).map_err(fail)?;
            if let Some(at) = bytes.iter().position(|&b| b != GUARD_BYTE) {
                let at = start + at as u64;
                return Err(fail(format!(
                    "{after}: byte {at:#x} outside the queue (region {:#x}+{used:#x}) changed",
                    self.region.offset
                )));
            }
        }
        Ok(())
    }

    /// Every aligned word of the region: what a pop could find there.
    fn region_words(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.region.len / 8).map(|i| self.word(i * 8))
    }

    /// Applies `mutation` to the queue of `capacity` slots; returns whether it changed the
    /// descriptor.
    fn mutate(&self, mutation: &Mutation, capacity: u64) -> Result<bool, TestCaseError> {
        let (raw, size) = (self.raw, self.kind.size(capacity));
        let rel = match &mutation.spot {
            Spot::Descriptor(at) => u64::from(*at) % DESCRIPTOR_LEN,
            Spot::Words(at) => DESCRIPTOR_LEN + u64::from(*at) % (raw.head - DESCRIPTOR_LEN),
            Spot::Head => raw.head,
            Spot::Tail => raw.tail,
            Spot::Indices { gap } => {
                let head = match &mutation.write {
                    Write::Word(word) => self.word_value(word, raw.head, capacity),
                    Write::Byte(byte) => u64::from(*byte),
                    Write::Bytes(bytes) => bytes.iter().fold(0, |w, &b| w << 8 | u64::from(b)),
                };
                let tail = head.wrapping_add(u64::from(*gap) % (capacity + 2));
                self.write(raw.head, &head.to_ne_bytes())?;
                self.write(raw.tail, &tail.to_ne_bytes())?;
                return Ok(false);
            }
            Spot::Entry { index, announcement } => match (raw.entries, raw.roles, raw.seen) {
                (Some(entries), ..) => {
                    let entry = u64::from(*index) % (2 * PARTICIPANTS);
                    entries.at
                        + entry * entries.size
                        + entries.announcement * u64::from(*announcement)
                }
                (None, Some(roles), _) => roles[usize::from(*index % 2)],
                (None, None, Some(seen)) => seen,
                (None, None, None) => unreachable!("every kind has entries, roles or `seen`"),
            },
            Spot::Slot { index, value } => {
                raw.slots
                    + u64::from(*index) % capacity * raw.slot_size
                    + raw.value * u64::from(*value)
            }
            Spot::Anywhere(at) => u64::from(*at) % size,
        };
        let (rel, bytes) = match &mutation.write {
            Write::Byte(byte) => (rel, vec![*byte]),
            Write::Bytes(bytes) => (rel, bytes.clone()),
            Write::Word(word) => {
                let rel = rel & !7;
                (rel, self.word_value(word, rel, capacity).to_ne_bytes().to_vec())
            }
        };
        if rel + bytes.len() as u64 > size {
            return Ok(false);
        }
        self.write(rel, &bytes)?;
        Ok(rel < DESCRIPTOR_LEN)
    }

    /// The value `word` makes of the word at `rel` of a queue of `capacity` slots.
    fn word_value(&self, word: &Word, rel: u64, capacity: u64) -> u64 {
        let current = self.word(rel);
        word.value(current, (self.me, self.dead), |own| match *own {
            QueueWord::Laps(laps) => current.wrapping_add_signed(i64::from(laps) * capacity as i64),
            QueueWord::Small(value) => u64::from(value % 32),
            QueueWord::FromTail { delta, skip } => {
                let tail = self.word(self.raw.tail);
                tail.wrapping_add_signed(i64::from(delta)) | u64::from(skip) << 63
            }
            QueueWord::AroundLimit(delta) => MAX_POSITION.wrapping_add_signed(i64::from(delta)),
            QueueWord::BelowMax(below) => u64::MAX - u64::from(below % 16),
            QueueWord::Skip => current | 1 << 63,
        })
    }

    /// Writes `bytes` at `rel` of the region, counting a mutation.
    fn write(&self, rel: u64, bytes: &[u8]) -> Result<(), TestCaseError> {
        self.segment.write_bytes(self.region.offset + rel, bytes).map_err(fail)?;
        self.tally.count("mutations");
        Ok(())
    }
}

/// The state of a case every kind shares: values that may be found, the model, the largest
/// queue attached.
struct Seen {
    values: HashSet<u64>,
    /// The queue's exact content while no mutation happened.
    model: Option<VecDeque<u64>>,
    next: u64,
    /// Bytes of the largest queue attached (what may be written).
    used: u64,
    /// Whether the descriptor was changed.
    descriptor: bool,
}

impl Seen {
    fn new(bench: &Bench, capacity: u64) -> Seen {
        let mut seen = Seen {
            values: HashSet::new(),
            model: Some(VecDeque::new()),
            next: 1 << 40,
            used: bench.kind.size(capacity),
            descriptor: false,
        };
        seen.values.extend(bench.region_words());
        seen
    }

    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.values.insert(self.next);
        self.next
    }

    /// Applies a mutation step to the queue of `capacity` slots (and returns `None`), or
    /// returns the operation of an operation step.
    fn op<'c>(
        &mut self,
        bench: &Bench,
        step: &'c Step,
        capacity: u64,
    ) -> Result<Option<&'c Op>, TestCaseError> {
        match step {
            Step::Mutate(mutation) => {
                let descriptor = bench.mutate(mutation, capacity)?;
                self.model = None;
                self.descriptor |= descriptor;
                self.values.extend(bench.region_words());
                Ok(None)
            }
            Step::Op(op) => Ok(Some(op)),
        }
    }

    /// A value the queue gave out: one that could be in it, and the model's next if modelled.
    fn check_out(&mut self, bench: &Bench, value: u64, what: &str) -> Result<(), TestCaseError> {
        bench.tally.count("values");
        prop_assert!(
            self.values.contains(&value),
            "{} gave {:#x}, which nobody wrote",
            what,
            value
        );
        if let Some(model) = &mut self.model {
            bench.tally.count("modelled");
            prop_assert_eq!(model.pop_front(), Some(value), "{} out of order", what);
        }
        Ok(())
    }

    /// The queue said it was empty.
    fn check_empty(&self, what: &str) -> Result<(), TestCaseError> {
        if let Some(model) = &self.model {
            prop_assert!(model.is_empty(), "{} found nothing; the model holds {:?}", what, model);
        }
        Ok(())
    }

    /// The queue refused a push as full.
    fn check_full(&self, capacity: u64, what: &str) -> Result<(), TestCaseError> {
        if let Some(model) = &self.model {
            prop_assert_eq!(model.len() as u64, capacity, "{} refused a push", what);
        }
        Ok(())
    }

    /// Pops up to `count` values with `pop` (`what`), checking each, until it finds nothing.
    fn pop(
        &mut self,
        bench: &Bench,
        count: u8,
        what: &str,
        mut pop: impl FnMut() -> Option<u64>,
    ) -> Result<(), TestCaseError> {
        for _ in 0..count {
            match pop() {
                Some(value) => self.check_out(bench, value, what)?,
                None => {
                    self.check_empty(what)?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn pushed(&mut self, value: u64) {
        if let Some(model) = &mut self.model {
            model.push_back(value);
        }
    }
}

/// Checks that shared `head` and `tail` (as a claim reported them) are in shared memory now
/// and impossible for a queue of `capacity`.
fn check_corrupt_indices(
    bench: &Bench,
    head: u64,
    tail: u64,
    capacity: u64,
) -> Result<(), TestCaseError> {
    bench.tally.count("refused claims");
    prop_assert_eq!((head, tail), (bench.word(bench.raw.head), bench.word(bench.raw.tail)));
    prop_assert!(
        head.abs_diff(tail) > capacity || head.max(tail) >= MAX_POSITION,
        "indices {} and {} refused for a queue of {}",
        head,
        tail,
        capacity
    );
    Ok(())
}

/// A claim refused for a role word: it must name a process not proven dead.
fn check_taken(bench: &Bench, owner: RoleOwner, word: u64) -> Result<(), TestCaseError> {
    bench.tally.count("refused claims");
    prop_assert_eq!(bench.word(word), owner.to_raw(), "Taken names another owner");
    prop_assert!(owner.liveness() != Liveness::Dead, "Taken by a dead owner");
    Ok(())
}

/// A refused attach: only after the descriptor changed.
fn check_refused_attach(bench: &Bench, seen: &Seen, e: QueueError) -> Result<(), TestCaseError> {
    bench.tally.count("refused attaches");
    prop_assert!(seen.descriptor, "an intact descriptor was refused: {}", e);
    Ok(())
}

/// After a case: the region initialised anew holds a plain FIFO (and the bytes beyond `used`,
/// the largest queue attached in the case, are still the guard pattern).
fn check_fresh_fifo(bench: &Bench, capacity: u64, used: u64) -> Result<(), TestCaseError> {
    let (segment, region) = (&bench.segment, bench.region);
    match bench.kind {
        Kind::Overflow => {
            let queue = SharedOverflow::init_in(segment, region, capacity, FINGERPRINT);
            check_overflow_fifo(&queue.map_err(fail)?)?;
        }
        Kind::Spsc => {
            let queue = SharedSpsc::<u64>::init_in(segment, region, capacity, FINGERPRINT);
            let queue = queue.map_err(fail)?;
            let (mut producer, mut consumer) =
                (queue.producer().map_err(fail)?, queue.consumer().map_err(fail)?);
            check_laps(
                capacity,
                |values| {
                    prop_assert_eq!(producer.push_slice(values), values.len());
                    Ok(())
                },
                || consumer.try_pop().ok(),
            )?;
        }
        Kind::Mpmc => {
            let queue = init_mpmc(bench, capacity)?;
            let (mut producer, mut consumer) =
                (queue.producer().map_err(fail)?, queue.consumer().map_err(fail)?);
            check_laps(
                capacity,
                |values| {
                    for &v in values {
                        prop_assert_eq!(producer.try_push(v), Ok(()));
                    }
                    Ok(())
                },
                || consumer.try_pop().ok(),
            )?;
            prop_assert_eq!(queue.stats(), MpmcStats { lost: 0, skipped: 0 });
        }
    }
    bench.check_guards(used, "the fresh queue")
}

/// A fresh MPMC queue of `capacity` slots in the bench's region.
fn init_mpmc(bench: &Bench, capacity: u64) -> Result<SharedMpmc<'_, u64>, TestCaseError> {
    let (segment, region) = (&bench.segment, bench.region);
    SharedMpmc::<u64>::init_in(segment, region, capacity, PARTICIPANTS, PARTICIPANTS, FINGERPRINT)
        .map_err(fail)
}

/// Three laps of a ring of `capacity` slots, one lap at a time: `push` pushes a lap's values
/// (checking), then `pop` must give back exactly those.
fn check_laps(
    capacity: u64,
    mut push: impl FnMut(&[u64]) -> Result<(), TestCaseError>,
    mut pop: impl FnMut() -> Option<u64>,
) -> Result<(), TestCaseError> {
    for lap in 0..3 {
        let values: Vec<u64> = (0..capacity).map(|v| (lap * capacity + v) * 7 + 1).collect();
        push(&values)?;
        let popped: Vec<u64> = std::iter::from_fn(&mut pop).take(64).collect();
        prop_assert_eq!(popped, values);
    }
    Ok(())
}

/// A fresh or reset overflowing queue is a FIFO for three laps, evicting nothing.
fn check_overflow_fifo(queue: &SharedOverflow<'_>) -> Result<(), TestCaseError> {
    let (mut producer, mut consumer) =
        (queue.producer().map_err(fail)?, queue.consumer().map_err(fail)?);
    let push = |values: &[u64]| {
        for &v in values {
            prop_assert_eq!(producer.push(v), Ok(None));
        }
        Ok(())
    };
    check_laps(queue.capacity() as u64, push, || consumer.pop())
}

/// Checks the words of a queue just initialised with `capacity` slots are where its
/// `raw_layout` says.
fn check_initialised(bench: &Bench, capacity: u64) -> Result<(), TestCaseError> {
    let raw = bench.raw;
    prop_assert_eq!(&bench.word(MAGIC_AT).to_ne_bytes(), bench.kind.magic());
    prop_assert_eq!(bench.word(CAPACITY_AT), capacity);
    prop_assert_eq!((bench.word(raw.head), bench.word(raw.tail)), (0, 0));
    for i in 0..capacity {
        // SPSC and overflow slots start unstamped; MPMC slot i starts at sequence i.
        let seq = if bench.kind == Kind::Mpmc { i } else { 0 };
        prop_assert_eq!(bench.word(raw.slots + i * raw.slot_size), seq, "slot {}", i);
    }
    Ok(())
}

/// An attach that succeeded found a queue of `view` slots: one that fits the region (laid out
/// for [`MAX_CAPACITY`]), and the case's own while the descriptor is intact.
fn check_attached(
    seen: &mut Seen,
    bench: &Bench,
    view: u64,
    capacity: u64,
) -> Result<(), TestCaseError> {
    prop_assert!(view <= MAX_CAPACITY, "attached {} slots in a region for {}", view, MAX_CAPACITY);
    if !seen.descriptor {
        prop_assert_eq!(view, capacity);
    }
    seen.used = seen.used.max(bench.kind.size(view));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The overflowing queue.
// ---------------------------------------------------------------------------------------------

fn run_overflow(bench: &Bench, case: &Case) -> Result<(), TestCaseError> {
    let capacity = case.capacity;
    let mut queue = SharedOverflow::init_in(&bench.segment, bench.region, capacity, FINGERPRINT)
        .map_err(fail)?;
    check_initialised(bench, capacity)?;
    let mut seen = Seen::new(bench, capacity);
    let mut view = capacity;
    let mut producer: Option<overflow::Producer<overflow::Shared<'_>>> = None;
    let mut consumer: Option<overflow::Consumer<overflow::Shared<'_>>> = None;
    // After each step, and once more after the last.
    for step in case.steps.iter().map(Some).chain([None]) {
        let len = queue.len();
        prop_assert!(len as u64 <= view && queue.is_empty() == (len == 0), "len {}", len);
        if let Some(producer) = &producer {
            prop_assert!(producer.len() <= producer.capacity());
        }
        if let Some(consumer) = &consumer {
            prop_assert!(consumer.len() <= consumer.capacity());
        }
        let Some(step) = step else { break };
        let Some(op) = seen.op(bench, step, capacity)? else { continue };
        // An end is claimed on first use (and again after a refusal).
        let wants_producer =
            matches!(op, Op::Push(_) | Op::TryPush(_) | Op::Evict | Op::PushSlice(_));
        if (wants_producer && producer.is_none()) || matches!(op, Op::ClaimProducer) {
            producer = None;
            match queue.producer() {
                Ok(end) => producer = Some(end),
                Err(Corrupt { head, tail }) => check_corrupt_indices(bench, head, tail, view)?,
            }
        }
        let wants_consumer = matches!(op, Op::Pop(_) | Op::PopSlice(_));
        if (wants_consumer && consumer.is_none()) || matches!(op, Op::ClaimConsumer) {
            consumer = None;
            match queue.consumer() {
                Ok(end) => consumer = Some(end),
                Err(Corrupt { head, tail }) => check_corrupt_indices(bench, head, tail, view)?,
            }
        }
        match *op {
            Op::Push(count) => {
                let Some(producer) = producer.as_mut() else { continue };
                let ring = producer.capacity() as u64;
                for _ in 0..count {
                    let value = seen.fresh();
                    match producer.push(value) {
                        Ok(evicted) => {
                            if let Some(evicted) = evicted {
                                bench.tally.count("evicted by push");
                                seen.check_out(bench, evicted, "an eviction by push")?;
                            } else if let Some(model) = &seen.model {
                                prop_assert!((model.len() as u64) < view, "push evicted nothing");
                            }
                            seen.pushed(value);
                        }
                        Err(Corrupt { head, tail }) => {
                            bench.tally.count("refused pushes");
                            prop_assert!(seen.model.is_none(), "push refused an intact queue");
                            prop_assert_eq!(head, bench.word(bench.raw.head));
                            prop_assert!(tail.checked_sub(head).is_none_or(|used| used > ring));
                        }
                    }
                }
            }
            Op::TryPush(count) | Op::PushSlice(count) => {
                let Some(producer) = producer.as_mut() else { continue };
                for _ in 0..count {
                    let value = seen.fresh();
                    match producer.try_push(value) {
                        Ok(()) => seen.pushed(value),
                        Err(TryPushError::Full) => seen.check_full(view, "try_push")?,
                        Err(TryPushError::Corrupt(Corrupt { head, .. })) => {
                            bench.tally.count("refused pushes");
                            prop_assert!(seen.model.is_none(), "try_push refused an intact queue");
                            prop_assert_eq!(head, bench.word(bench.raw.head));
                        }
                    }
                }
            }
            Op::Evict => {
                let Some(producer) = producer.as_mut() else { continue };
                match producer.evict() {
                    Ok(Some(value)) => {
                        bench.tally.count("evicted by evict");
                        seen.check_out(bench, value, "evict")?;
                    }
                    Ok(None) => seen.check_empty("evict")?,
                    Err(Corrupt { head, .. }) => {
                        bench.tally.count("refused evicts");
                        prop_assert!(seen.model.is_none(), "evict refused an intact queue");
                        prop_assert_eq!(head, bench.word(bench.raw.head));
                    }
                }
            }
            Op::Pop(count) | Op::PopSlice(count) => {
                let Some(consumer) = consumer.as_mut() else { continue };
                seen.pop(bench, count, "pop", || consumer.pop())?;
            }
            Op::ClaimProducer | Op::ClaimConsumer => {}
            Op::DropProducer => producer = None,
            Op::DropConsumer => consumer = None,
            Op::Reattach => match SharedOverflow::attach(&bench.segment, bench.region, FINGERPRINT)
            {
                Ok(attached) => {
                    queue = attached;
                    view = attached.capacity() as u64;
                    check_attached(&mut seen, bench, view, capacity)?;
                }
                Err(e) => check_refused_attach(bench, &seen, e)?,
            },
            Op::Inspect => {
                match SharedOverflow::snapshot(&bench.segment, bench.region, FINGERPRINT) {
                    Ok(snapshot) => {
                        prop_assert!(snapshot.values.len() as u64 <= snapshot.capacity);
                        for value in snapshot.values {
                            prop_assert!(seen.values.contains(&value), "snapshot: {:#x}", value);
                        }
                        if let Some(model) = &seen.model {
                            prop_assert_eq!(model.len(), queue.len());
                        }
                    }
                    Err(e) => {
                        prop_assert!(seen.model.is_none(), "snapshot of an intact queue: {}", e)
                    }
                }
            }
        }
        bench.check_guards(seen.used, &format!("{op:?}"))?;
    }
    // `reset` (the case's ends are not used again) makes the last view attached a FIFO again.
    queue.reset();
    check_overflow_fifo(&queue)?;
    bench.check_guards(seen.used, "the reset queue")?;
    check_fresh_fifo(bench, capacity, seen.used)
}

// ---------------------------------------------------------------------------------------------
// The SPSC queue.
// ---------------------------------------------------------------------------------------------

/// A refused SPSC claim tells the truth.
fn check_spsc_claim(
    bench: &Bench,
    error: ClaimError,
    role_at: u64,
    view: u64,
) -> Result<(), TestCaseError> {
    match error {
        ClaimError::Corrupt { head, tail } => check_corrupt_indices(bench, head, tail, view),
        ClaimError::Taken(RoleError::Taken(owner)) => check_taken(bench, owner, role_at),
        e => Err(fail(format!("SPSC claim: {e}"))),
    }
}

fn run_spsc(bench: &Bench, case: &Case) -> Result<(), TestCaseError> {
    let capacity = case.capacity;
    let mut queue = SharedSpsc::<u64>::init_in(&bench.segment, bench.region, capacity, FINGERPRINT)
        .map_err(fail)?;
    check_initialised(bench, capacity)?;
    let mut seen = Seen::new(bench, capacity);
    let mut view = capacity;
    let roles = bench.raw.roles.expect("an SPSC queue's role words");
    let mut producer: Option<spsc::Producer<u64, spsc::Shared<'_, u64>>> = None;
    let mut consumer: Option<spsc::Consumer<u64, spsc::Shared<'_, u64>>> = None;
    // After each step, and once more after the last.
    for step in case.steps.iter().map(Some).chain([None]) {
        let len = queue.len();
        prop_assert!(len as u64 <= view && queue.is_empty() == (len == 0), "len {}", len);
        if let Some(producer) = producer.as_mut() {
            let capacity = producer.capacity();
            prop_assert!(producer.len() <= capacity && producer.slots() <= capacity);
        }
        if let Some(consumer) = &consumer {
            let capacity = consumer.capacity();
            prop_assert!(consumer.len() <= capacity && consumer.slots() <= capacity);
        }
        let Some(step) = step else { break };
        let Some(op) = seen.op(bench, step, capacity)? else { continue };
        let wants_producer = matches!(op, Op::Push(_) | Op::TryPush(_) | Op::PushSlice(_));
        if (wants_producer && producer.is_none()) || matches!(op, Op::ClaimProducer) {
            producer = None; // releases our role before claiming it again
            match queue.producer() {
                Ok(end) => producer = Some(end),
                Err(e) => check_spsc_claim(bench, e, roles[0], view)?,
            }
        }
        let wants_consumer = matches!(op, Op::Pop(_) | Op::PopSlice(_) | Op::Evict);
        if (wants_consumer && consumer.is_none()) || matches!(op, Op::ClaimConsumer) {
            consumer = None;
            match queue.consumer() {
                Ok(end) => consumer = Some(end),
                Err(e) => check_spsc_claim(bench, e, roles[1], view)?,
            }
        }
        match *op {
            Op::Push(count) | Op::TryPush(count) => {
                let Some(producer) = producer.as_mut() else { continue };
                for _ in 0..count {
                    let value = seen.fresh();
                    match producer.try_push(value) {
                        Ok(()) => seen.pushed(value),
                        Err(PushError::Full(v)) => {
                            prop_assert_eq!(v, value);
                            seen.check_full(view, "try_push")?;
                        }
                        Err(PushError::Corrupt(v)) => {
                            bench.tally.count("refused pushes");
                            prop_assert_eq!(v, value);
                            prop_assert!(seen.model.is_none(), "try_push refused an intact queue");
                        }
                    }
                }
            }
            Op::PushSlice(count) => {
                let Some(producer) = producer.as_mut() else { continue };
                let values: Vec<u64> = (0..count).map(|_| seen.fresh()).collect();
                let free = seen.model.as_ref().map(|m| view as usize - m.len());
                let pushed = producer.push_slice(&values);
                prop_assert!(pushed <= values.len());
                if let Some(free) = free {
                    prop_assert_eq!(pushed, values.len().min(free), "push_slice");
                }
                for &value in &values[..pushed] {
                    seen.pushed(value);
                }
            }
            Op::Pop(count) => {
                let Some(consumer) = consumer.as_mut() else { continue };
                seen.pop(bench, count, "try_pop", || consumer.try_pop().ok())?;
            }
            Op::PopSlice(count) => {
                let Some(consumer) = consumer.as_mut() else { continue };
                let mut out = vec![0; usize::from(count)];
                let queued = seen.model.as_ref().map(VecDeque::len);
                let popped = consumer.pop_slice(&mut out);
                prop_assert!(popped <= out.len());
                if let Some(queued) = queued {
                    prop_assert_eq!(popped, out.len().min(queued), "pop_slice");
                }
                for &value in &out[..popped] {
                    seen.check_out(bench, value, "pop_slice")?;
                }
            }
            Op::Evict => {
                let Some(consumer) = consumer.as_ref() else { continue };
                match consumer.peek_copy() {
                    Ok(value) => {
                        bench.tally.count("values");
                        prop_assert!(seen.values.contains(&value), "peek gave {:#x}", value);
                        if let Some(model) = &seen.model {
                            prop_assert_eq!(model.front(), Some(&value), "peek");
                        }
                    }
                    Err(PopError::Empty) => seen.check_empty("peek_copy")?,
                }
            }
            Op::ClaimProducer | Op::ClaimConsumer => {}
            Op::DropProducer => producer = None,
            Op::DropConsumer => consumer = None,
            Op::Reattach => {
                match SharedSpsc::<u64>::attach(&bench.segment, bench.region, FINGERPRINT) {
                    Ok(attached) => {
                        view = attached.capacity() as u64;
                        queue = attached;
                        check_attached(&mut seen, bench, view, capacity)?;
                    }
                    Err(e) => check_refused_attach(bench, &seen, e)?,
                }
            }
            Op::Inspect => {
                if let (Some(producer), Some(model)) = (producer.as_mut(), &seen.model) {
                    prop_assert_eq!(producer.len(), model.len());
                }
                if let (Some(consumer), Some(model)) = (&consumer, &seen.model) {
                    prop_assert_eq!(consumer.len(), model.len());
                    prop_assert_eq!(consumer.is_empty(), model.is_empty());
                }
            }
        }
        bench.check_guards(seen.used, &format!("{op:?}"))?;
    }
    drop((producer, consumer));
    check_fresh_fifo(bench, capacity, seen.used)
}

// ---------------------------------------------------------------------------------------------
// The MPMC queue.
// ---------------------------------------------------------------------------------------------

/// A refused MPMC claim tells the truth; `first_entry` is the first entry of the kind claimed
/// (unknown when the view was attached through a changed descriptor, whose participant counts
/// place the entries elsewhere).
fn check_mpmc_claim(
    bench: &Bench,
    error: ClaimError,
    first_entry: Option<u64>,
    view: u64,
) -> Result<(), TestCaseError> {
    match error {
        ClaimError::Corrupt { head, tail } => check_corrupt_indices(bench, head, tail, view),
        ClaimError::NoFreeEntry { .. } if first_entry.is_none() => {
            bench.tally.count("refused claims");
            Ok(())
        }
        ClaimError::NoFreeEntry { max } => {
            bench.tally.count("refused claims");
            let first_entry = first_entry.unwrap_or_default();
            let entries = bench.raw.entries.expect("an MPMC queue's entries");
            prop_assert_eq!(max, PARTICIPANTS);
            for entry in 0..PARTICIPANTS {
                let owner = RoleOwner::from_raw(
                    bench.word(entries.at + (first_entry + entry) * entries.size),
                );
                prop_assert!(
                    owner.is_some_and(|o| o.liveness() != Liveness::Dead),
                    "NoFreeEntry, but entry {} is free or dead",
                    first_entry + entry
                );
            }
            Ok(())
        }
        e => Err(fail(format!("MPMC claim: {e}"))),
    }
}

fn run_mpmc(bench: &Bench, case: &Case, patience: u32) -> Result<(), TestCaseError> {
    let capacity = case.capacity;
    let queue = init_mpmc(bench, capacity)?;
    check_initialised(bench, capacity)?;
    let mut queue = queue.with_patience(patience);
    let mut seen = Seen::new(bench, capacity);
    let mut view = capacity;
    // Whether the view's entries are where the mirror says (see `check_mpmc_claim`).
    let mut known_entries = true;
    let mut producers: Vec<MpmcProducer<'_, u64>> = Vec::new();
    let mut consumers: Vec<MpmcConsumer<'_, u64>> = Vec::new();
    // After each step, and once more after the last.
    for step in case.steps.iter().map(Some).chain([None]) {
        let len = queue.len();
        prop_assert!(len as u64 <= view && queue.is_empty() == (len == 0), "len {}", len);
        let Some(step) = step else { break };
        let Some(op) = seen.op(bench, step, capacity)? else { continue };
        // Push/Pop use the first end, Evict/PushSlice/PopSlice the second (claimed on demand).
        let producer_wanted = match op {
            Op::Push(_) | Op::TryPush(_) => 1,
            Op::Evict | Op::PushSlice(_) => 2,
            Op::ClaimProducer => producers.len() + 1,
            _ => 0,
        };
        while producers.len() < producer_wanted {
            match queue.producer() {
                Ok(end) => producers.push(end),
                Err(e) => {
                    check_mpmc_claim(bench, e, known_entries.then_some(0), view)?;
                    break;
                }
            }
        }
        let consumer_wanted = match op {
            Op::Pop(_) => 1,
            Op::PopSlice(_) => 2,
            Op::ClaimConsumer => consumers.len() + 1,
            _ => 0,
        };
        while consumers.len() < consumer_wanted {
            match queue.consumer() {
                Ok(end) => consumers.push(end),
                Err(e) => {
                    check_mpmc_claim(bench, e, known_entries.then_some(PARTICIPANTS), view)?;
                    break;
                }
            }
        }
        match *op {
            Op::Push(_) | Op::TryPush(_) | Op::PushSlice(_) | Op::Evict => {
                let (index, count) = match *op {
                    Op::Push(count) | Op::TryPush(count) => (0, count),
                    Op::PushSlice(count) => (1, count),
                    _ => (1, 1),
                };
                let Some(producer) = producers.get_mut(index) else { continue };
                for _ in 0..count {
                    let value = seen.fresh();
                    match producer.try_push(value) {
                        Ok(()) => seen.pushed(value),
                        Err(back) => {
                            prop_assert_eq!(back, value, "try_push gave back another value");
                            seen.check_full(view, "try_push")?;
                        }
                    }
                }
            }
            Op::Pop(count) | Op::PopSlice(count) => {
                let index = usize::from(matches!(op, Op::PopSlice(_)));
                let Some(consumer) = consumers.get_mut(index) else { continue };
                seen.pop(bench, count, "try_pop", || consumer.try_pop().ok())?;
            }
            Op::ClaimProducer | Op::ClaimConsumer => {}
            Op::DropProducer => drop(producers.pop()),
            Op::DropConsumer => drop(consumers.pop()),
            Op::Reattach => {
                match SharedMpmc::<u64>::attach(&bench.segment, bench.region, FINGERPRINT) {
                    Ok(attached) => {
                        view = attached.capacity() as u64;
                        queue = attached.with_patience(patience);
                        check_attached(&mut seen, bench, view, capacity)?;
                        // Participant counts may have changed too: the largest region the
                        // descriptor can claim within ours is ours.
                        seen.used = bench.region.len;
                        known_entries &= !seen.descriptor;
                    }
                    Err(e) => check_refused_attach(bench, &seen, e)?,
                }
            }
            Op::Inspect => {
                if let Some(model) = &seen.model {
                    prop_assert_eq!(queue.len(), model.len());
                    prop_assert_eq!(queue.stats().lost + queue.stats().skipped, 0);
                }
            }
        }
        bench.check_guards(seen.used, &format!("{op:?}"))?;
    }
    drop((producers, consumers));
    check_fresh_fifo(bench, capacity, seen.used)
}

// ---------------------------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------------------------

fn property(name: &'static str, kind: Kind) {
    let dir = RunDir::new(&format!("hostile-queue-{kind:?}"));
    let bench = Bench::new(kind, dir.path());
    // Under MPMC, a patience of 1 to 3 polls makes stuck slots reach the repair paths; now and
    // then a longer one lets a stuck slot wait across several operations.
    let strategy = (case(kind), prop_oneof![3 => 1u32..=3, 1 => 4u32..=8]);
    let tally = run_property(name, &dir, COUNTS, CI_CASES, 4096, &strategy, |(case, patience)| {
        bench.fill_guards();
        let result = match kind {
            Kind::Overflow => run_overflow(&bench, &case),
            Kind::Spsc => run_spsc(&bench, &case),
            Kind::Mpmc => run_mpmc(&bench, &case, patience),
        };
        bench.tally.save(&bench.dir);
        result
    });
    for what in COUNTS.iter().filter(|what| reachable(kind, what)) {
        assert!(tally.get(what) > 0, "no case reached {what}: {tally}");
    }
}

#[test]
fn hostile_bytes_in_an_overflowing_queue_give_errors_or_correct_behaviour() {
    property(
        "hostile_bytes_in_an_overflowing_queue_give_errors_or_correct_behaviour",
        Kind::Overflow,
    );
}

#[test]
fn hostile_bytes_in_an_spsc_queue_give_errors_or_correct_behaviour() {
    property("hostile_bytes_in_an_spsc_queue_give_errors_or_correct_behaviour", Kind::Spsc);
}

#[test]
fn hostile_bytes_in_an_mpmc_queue_give_errors_or_correct_behaviour() {
    property("hostile_bytes_in_an_mpmc_queue_give_errors_or_correct_behaviour", Kind::Mpmc);
}
