//! Hostile bytes in the segment-level queues (`SharedOverflow`, `SharedSpsc`, `SharedMpmc`),
//! as property tests (proptest): a queue of 1 to 64 slots is initialised between two guard
//! regions, then random operations (pushes, evictions, pops, slices, peeks, claims and
//! releases of ends, a second attach, snapshots) interleave with writes a hostile peer could
//! make anywhere in the queue's region: descriptor bytes, role and counter words, `head`,
//! `tail`, participant entries (role, announcement), slot stamps and values.
//!
//! Every case must end in error values or correct behaviour:
//! - no panic, no crash (the properties run in proptest's fork mode: a SIGSEGV or SIGBUS fails
//!   the case that caused it) and no hang (a case past [`CASE_TIMEOUT_MS`] fails);
//! - the queue writes nothing outside itself: the guard regions before and after it, and the
//!   rest of its region beyond the largest queue attached, keep their pattern;
//! - a queue never invents a value: everything popped, evicted, peeked or snapshotted is a
//!   value some push wrote or that lay in the region's words after a mutation;
//! - until the first mutation of a case the queue is exactly its model (a FIFO, with the
//!   overflowing queue evicting the oldest), so each case also checks the protocol it corrupts;
//! - errors tell the truth: `Corrupt { head, tail }` only for indices no queue can have (and the
//!   ones that are in shared memory), `Taken` only for a role word naming a process not proven
//!   dead, `NoFreeEntry` only when every entry is held so, a refused attach only after the
//!   descriptor changed, lengths never above the capacity;
//! - the region is usable again: initialised anew after the case, the queue is a FIFO.
//!
//! `BlockPool` free lists and state words are fuzzed by `crates/segment/tests/hostile_input.rs`
//! (descriptor, free-list head, links and states, with its own invariants); the word-level
//! random corruption loops of `crates/queue/tests/*_shared.rs` cover one capacity each with a
//! fixed seed: these properties add every capacity, byte-level writes anywhere in the region,
//! guard regions, the value and model oracles, and the long mode.
//!
//! CI runs [`CI_CASES`] cases per property; `SHMLANE_FUZZ_CASES=1000000` is the long mode,
//! `SHMLANE_FUZZ_SEED` repeats a run. The segment lives in a private directory.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use shmlane_queue::mpmc::{MpmcConsumer, MpmcProducer, SharedMpmc};
use shmlane_queue::overflow::{Corrupt, SharedOverflow, TryPushError};
use shmlane_queue::spsc::{PopError, PushError, SharedSpsc};
use shmlane_queue::{ClaimError, QueueError};
use shmlane_reliability::{FUZZ_CASES_ENV, FUZZ_SEED_ENV, RunDir, Tally, fuzz_cases, fuzz_seed};
use shmlane_segment::{
    Backing, Carver, Fingerprint, Liveness, Region, RegionLayout, RoleError, RoleOwner, Segment,
};

/// Cases per property in CI.
const CI_CASES: u32 = 2048;
/// A case running longer than this (milliseconds) fails as a hang.
const CASE_TIMEOUT_MS: u32 = 10_000;
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

// The mirror of the queues' regions (`crates/queue/src/{overflow,spsc,mpmc}/shared.rs`),
// checked against `layout` and the initialised words in every case.
const HEAD_AT: u64 = 128;
const TAIL_AT: u64 = 256;
/// SPSC role words, MPMC `lost` and `skipped`.
const WORDS_AT: u64 = 64;
const ENTRIES_AT: u64 = 384;
const ENTRY: u64 = 128;
const SLOT: u64 = 16;

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

    fn slots_at(self) -> u64 {
        match self {
            // After `seen` (at 384).
            Kind::Overflow => 512,
            Kind::Spsc => 384,
            Kind::Mpmc => ENTRIES_AT + 2 * PARTICIPANTS * ENTRY,
        }
    }

    /// Bytes of a queue of `capacity` slots (its `layout` size).
    fn size(self, capacity: u64) -> u64 {
        self.slots_at() + SLOT * capacity
    }

    fn layout(self, capacity: u64) -> RegionLayout {
        let layout = match self {
            Kind::Overflow => SharedOverflow::layout(capacity),
            Kind::Spsc => SharedSpsc::<u64>::layout(capacity),
            Kind::Mpmc => SharedMpmc::<u64>::layout(capacity, PARTICIPANTS, PARTICIPANTS),
        };
        layout.expect("the layout of a valid capacity")
    }
}

// ---------------------------------------------------------------------------------------------
// What a case is.
// ---------------------------------------------------------------------------------------------

/// Where in the queue's region a peer writes.
#[derive(Debug, Clone)]
enum Spot {
    Descriptor(u8),
    /// The words at 64..128: SPSC roles, MPMC `lost` and `skipped`.
    Words(u8),
    Head,
    Tail,
    /// An MPMC participant entry's role word or announcement.
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
    Word(Word),
}

#[derive(Debug, Clone)]
enum Word {
    Zero,
    One,
    Max,
    Any(u64),
    /// The current value plus this.
    Near(i64),
    /// The current value plus this many laps of the ring.
    Laps(i8),
    LiveOwner,
    DeadOwner,
    /// The current value with the MPMC skip bit (bit 63) set.
    Skip,
    Flip(u8),
}

#[derive(Debug, Clone)]
struct Mutation {
    spot: Spot,
    write: Write,
}

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
enum Step {
    Mutate(Mutation),
    Op(Op),
}

#[derive(Debug, Clone)]
struct Case {
    capacity: u64,
    steps: Vec<Step>,
}

fn word() -> impl Strategy<Value = Word> {
    prop_oneof![
        1 => Just(Word::Zero),
        1 => Just(Word::One),
        1 => Just(Word::Max),
        1 => any::<u64>().prop_map(Word::Any),
        3 => (-3i64..=3).prop_map(Word::Near),
        2 => (-2i8..=2).prop_map(Word::Laps),
        1 => Just(Word::LiveOwner),
        1 => Just(Word::DeadOwner),
        1 => Just(Word::Skip),
        1 => (0u8..64).prop_map(Word::Flip),
    ]
}

fn spot() -> impl Strategy<Value = Spot> {
    prop_oneof![
        1 => any::<u8>().prop_map(Spot::Descriptor),
        1 => any::<u8>().prop_map(Spot::Words),
        3 => Just(Spot::Head),
        3 => Just(Spot::Tail),
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
            1 => any::<u8>().prop_map(Write::Byte),
            3 => word().prop_map(Write::Word),
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

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// What the cases of a run count (see `Tally`): mutations written; values popped, evicted or
/// peeked, each checked; operations checked against the model (before any mutation); claims
/// refused (corrupt indices, a live role, no free entry); pushes refused for corrupt indices;
/// attaches refused for a changed descriptor.
const COUNTS: &[&str] =
    &["mutations", "values", "modelled", "refused claims", "refused pushes", "refused attaches"];

/// One queue's segment: the queue's region between two guard regions.
struct Bench {
    kind: Kind,
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
        let me = RoleOwner::current().expect("our identity");
        // A presence token without a presence file: proven dead.
        let dead = 0xdead_0000_0000_0000 | u64::from(std::process::id());
        Bench {
            kind,
            dir: dir.to_owned(),
            segment,
            region,
            before,
            after,
            me,
            dead: RoleOwner::from_raw(dead).expect("non-zero"),
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
        let size = self.kind.size(capacity);
        let rel = match &mutation.spot {
            Spot::Descriptor(at) => u64::from(*at) % 64,
            Spot::Words(at) => WORDS_AT + u64::from(*at) % 64,
            Spot::Head => HEAD_AT,
            Spot::Tail => TAIL_AT,
            Spot::Entry { index, announcement } if self.kind == Kind::Mpmc => {
                let entry = u64::from(*index) % (2 * PARTICIPANTS);
                ENTRIES_AT + entry * ENTRY + 8 * u64::from(*announcement)
            }
            Spot::Entry { index, .. } => WORDS_AT + 8 * (u64::from(*index) % 2),
            Spot::Slot { index, value } => {
                self.kind.slots_at() + u64::from(*index) % capacity * SLOT + 8 * u64::from(*value)
            }
            Spot::Anywhere(at) => u64::from(*at) % size,
        };
        let (rel, bytes) = match &mutation.write {
            Write::Byte(byte) => (rel, vec![*byte]),
            Write::Word(word) => {
                let rel = rel & !7;
                let current = self.word(rel);
                let value = match *word {
                    Word::Zero => 0,
                    Word::One => 1,
                    Word::Max => u64::MAX,
                    Word::Any(value) => value,
                    Word::Near(delta) => current.wrapping_add_signed(delta),
                    Word::Laps(laps) => {
                        current.wrapping_add_signed(i64::from(laps) * capacity as i64)
                    }
                    Word::LiveOwner => self.me.to_raw(),
                    Word::DeadOwner => self.dead.to_raw(),
                    Word::Skip => current | 1 << 63,
                    Word::Flip(bit) => current ^ 1 << bit,
                };
                (rel, value.to_ne_bytes().to_vec())
            }
        };
        if rel + bytes.len() as u64 > size {
            return Ok(false);
        }
        self.segment.write_bytes(self.region.offset + rel, &bytes).map_err(fail)?;
        self.tally.count("mutations");
        Ok(rel < 128 && !(WORDS_AT..128).contains(&rel))
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

    fn mutated(&mut self, bench: &Bench, descriptor: bool) {
        self.model = None;
        self.descriptor |= descriptor;
        self.values.extend(bench.region_words());
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
    prop_assert_eq!((head, tail), (bench.word(HEAD_AT), bench.word(TAIL_AT)));
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
    let values: Vec<u64> = (0..capacity).map(|v| v * 7 + 1).collect();
    match bench.kind {
        Kind::Overflow => {
            let queue =
                SharedOverflow::init_in(&bench.segment, bench.region, capacity, FINGERPRINT)
                    .map_err(fail)?;
            let (mut producer, mut consumer) =
                (queue.producer().map_err(fail)?, queue.consumer().map_err(fail)?);
            for &v in &values {
                prop_assert_eq!(producer.push(v), Ok(None));
            }
            let popped: Vec<u64> = std::iter::from_fn(|| consumer.pop()).take(64).collect();
            prop_assert_eq!(popped, values);
        }
        Kind::Spsc => {
            let queue =
                SharedSpsc::<u64>::init_in(&bench.segment, bench.region, capacity, FINGERPRINT)
                    .map_err(fail)?;
            let (mut producer, mut consumer) =
                (queue.producer().map_err(fail)?, queue.consumer().map_err(fail)?);
            prop_assert_eq!(producer.push_slice(&values), values.len());
            let popped: Vec<u64> =
                std::iter::from_fn(|| consumer.try_pop().ok()).take(64).collect();
            prop_assert_eq!(popped, values);
        }
        Kind::Mpmc => {
            let queue = SharedMpmc::<u64>::init_in(
                &bench.segment,
                bench.region,
                capacity,
                PARTICIPANTS,
                PARTICIPANTS,
                FINGERPRINT,
            )
            .map_err(fail)?;
            let (mut producer, mut consumer) =
                (queue.producer().map_err(fail)?, queue.consumer().map_err(fail)?);
            for &v in &values {
                prop_assert_eq!(producer.try_push(v), Ok(()));
            }
            let popped: Vec<u64> =
                std::iter::from_fn(|| consumer.try_pop().ok()).take(64).collect();
            prop_assert_eq!(popped, values);
        }
    }
    bench.check_guards(used, "the fresh queue")
}

/// Checks the mirror against a queue just initialised with `capacity` slots.
fn check_mirror(bench: &Bench, capacity: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(bench.kind.layout(capacity).size, bench.kind.size(capacity));
    prop_assert_eq!(&bench.word(0).to_ne_bytes(), bench.kind.magic());
    prop_assert_eq!(bench.word(16), capacity);
    prop_assert_eq!((bench.word(HEAD_AT), bench.word(TAIL_AT)), (0, 0));
    for i in 0..capacity {
        // SPSC and overflow slots start unstamped; MPMC slot i starts at sequence i.
        let seq = if bench.kind == Kind::Mpmc { i } else { 0 };
        prop_assert_eq!(bench.word(bench.kind.slots_at() + i * SLOT), seq, "slot {}", i);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The overflowing queue.
// ---------------------------------------------------------------------------------------------

fn run_overflow(bench: &Bench, case: &Case) -> Result<(), TestCaseError> {
    let capacity = case.capacity;
    let mut queue = SharedOverflow::init_in(&bench.segment, bench.region, capacity, FINGERPRINT)
        .map_err(fail)?;
    check_mirror(bench, capacity)?;
    let mut seen = Seen::new(bench, capacity);
    let mut view = capacity;
    let mut producer = None;
    let mut consumer = None;
    for step in &case.steps {
        let op = match step {
            Step::Mutate(mutation) => {
                let descriptor = bench.mutate(mutation, capacity)?;
                seen.mutated(bench, descriptor);
                continue;
            }
            Step::Op(op) => op,
        };
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
                                seen.check_out(bench, evicted, "an eviction by push")?;
                            } else if let Some(model) = &seen.model {
                                prop_assert!((model.len() as u64) < view, "push evicted nothing");
                            }
                            seen.pushed(value);
                        }
                        Err(Corrupt { head, tail }) => {
                            bench.tally.count("refused pushes");
                            prop_assert!(seen.model.is_none(), "push refused an intact queue");
                            prop_assert_eq!(head, bench.word(HEAD_AT));
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
                            prop_assert_eq!(head, bench.word(HEAD_AT));
                        }
                    }
                }
            }
            Op::Evict => {
                let Some(producer) = producer.as_mut() else { continue };
                match producer.evict() {
                    Ok(Some(value)) => seen.check_out(bench, value, "evict")?,
                    Ok(None) => seen.check_empty("evict")?,
                    Err(Corrupt { head, .. }) => {
                        bench.tally.count("refused pushes");
                        prop_assert!(seen.model.is_none(), "evict refused an intact queue");
                        prop_assert_eq!(head, bench.word(HEAD_AT));
                    }
                }
            }
            Op::Pop(count) | Op::PopSlice(count) => {
                let Some(consumer) = consumer.as_mut() else { continue };
                for _ in 0..count {
                    match consumer.pop() {
                        Some(value) => seen.check_out(bench, value, "pop")?,
                        None => {
                            seen.check_empty("pop")?;
                            break;
                        }
                    }
                }
            }
            Op::ClaimProducer | Op::ClaimConsumer => {}
            Op::DropProducer => producer = None,
            Op::DropConsumer => consumer = None,
            Op::Reattach => match SharedOverflow::attach(&bench.segment, bench.region, FINGERPRINT)
            {
                Ok(attached) => {
                    queue = attached;
                    view = attached.capacity() as u64;
                    seen.used = seen.used.max(bench.kind.size(view));
                    if !seen.descriptor {
                        prop_assert_eq!(view, capacity);
                    }
                }
                Err(e) => check_refused_attach(bench, &seen, e)?,
            },
            Op::Inspect => {
                let len = queue.len();
                prop_assert!(len as u64 <= view && queue.is_empty() == (len == 0));
                if let Some(producer) = &producer {
                    prop_assert!(producer.len() <= producer.capacity());
                }
                if let Some(consumer) = &consumer {
                    prop_assert!(consumer.len() <= consumer.capacity());
                }
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
    check_mirror(bench, capacity)?;
    let mut seen = Seen::new(bench, capacity);
    let mut view = capacity;
    let mut producer = None;
    let mut consumer = None;
    for step in &case.steps {
        let op = match step {
            Step::Mutate(mutation) => {
                let descriptor = bench.mutate(mutation, capacity)?;
                seen.mutated(bench, descriptor);
                continue;
            }
            Step::Op(op) => op,
        };
        let wants_producer = matches!(op, Op::Push(_) | Op::TryPush(_) | Op::PushSlice(_));
        if (wants_producer && producer.is_none()) || matches!(op, Op::ClaimProducer) {
            producer = None; // releases our role before claiming it again
            match queue.producer() {
                Ok(end) => producer = Some(end),
                Err(e) => check_spsc_claim(bench, e, WORDS_AT, view)?,
            }
        }
        let wants_consumer = matches!(op, Op::Pop(_) | Op::PopSlice(_) | Op::Evict);
        if (wants_consumer && consumer.is_none()) || matches!(op, Op::ClaimConsumer) {
            consumer = None;
            match queue.consumer() {
                Ok(end) => consumer = Some(end),
                Err(e) => check_spsc_claim(bench, e, WORDS_AT + 8, view)?,
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
                for _ in 0..count {
                    match consumer.try_pop() {
                        Ok(value) => seen.check_out(bench, value, "try_pop")?,
                        Err(PopError::Empty) => {
                            seen.check_empty("try_pop")?;
                            break;
                        }
                    }
                }
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
                        seen.used = seen.used.max(bench.kind.size(view));
                        if !seen.descriptor {
                            prop_assert_eq!(view, capacity);
                        }
                    }
                    Err(e) => check_refused_attach(bench, &seen, e)?,
                }
            }
            Op::Inspect => {
                let len = queue.len();
                prop_assert!(len as u64 <= view && queue.is_empty() == (len == 0));
                if let Some(producer) = producer.as_mut() {
                    let (len, slots) = (producer.len(), producer.slots());
                    prop_assert!(len <= producer.capacity() && slots <= producer.capacity());
                    if let Some(model) = &seen.model {
                        prop_assert_eq!(len, model.len());
                    }
                }
                if let Some(consumer) = &consumer {
                    prop_assert!(consumer.len() <= consumer.capacity());
                    if let Some(model) = &seen.model {
                        prop_assert_eq!(consumer.len(), model.len());
                        prop_assert_eq!(consumer.is_empty(), model.is_empty());
                    }
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
            prop_assert_eq!(max, PARTICIPANTS);
            for entry in 0..PARTICIPANTS {
                let owner =
                    RoleOwner::from_raw(bench.word(ENTRIES_AT + (first_entry + entry) * ENTRY));
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
    let queue = SharedMpmc::<u64>::init_in(
        &bench.segment,
        bench.region,
        capacity,
        PARTICIPANTS,
        PARTICIPANTS,
        FINGERPRINT,
    )
    .map_err(fail)?;
    check_mirror(bench, capacity)?;
    let mut queue = queue.with_patience(patience);
    let mut seen = Seen::new(bench, capacity);
    let mut view = capacity;
    // Whether the view's entries are where the mirror says (see `check_mpmc_claim`).
    let mut known_entries = true;
    let mut producers: Vec<MpmcProducer<'_, u64>> = Vec::new();
    let mut consumers: Vec<MpmcConsumer<'_, u64>> = Vec::new();
    for step in &case.steps {
        let op = match step {
            Step::Mutate(mutation) => {
                let descriptor = bench.mutate(mutation, capacity)?;
                seen.mutated(bench, descriptor);
                continue;
            }
            Step::Op(op) => op,
        };
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
                for _ in 0..count {
                    match consumer.try_pop() {
                        Ok(value) => seen.check_out(bench, value, "try_pop")?,
                        Err(PopError::Empty) => {
                            seen.check_empty("try_pop")?;
                            break;
                        }
                    }
                }
            }
            Op::ClaimProducer | Op::ClaimConsumer => {}
            Op::DropProducer => drop(producers.pop()),
            Op::DropConsumer => drop(consumers.pop()),
            Op::Reattach => {
                match SharedMpmc::<u64>::attach(&bench.segment, bench.region, FINGERPRINT) {
                    Ok(attached) => {
                        view = attached.capacity() as u64;
                        queue = attached.with_patience(patience);
                        // Participant counts may have changed too: the largest region the
                        // descriptor can claim within ours is ours.
                        seen.used = bench.region.len;
                        known_entries &= !seen.descriptor;
                        if !seen.descriptor {
                            prop_assert_eq!(view, capacity);
                        }
                    }
                    Err(e) => check_refused_attach(bench, &seen, e)?,
                }
            }
            Op::Inspect => {
                let len = queue.len();
                prop_assert!(len as u64 <= view && queue.is_empty() == (len == 0));
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
    let cases = fuzz_cases(CI_CASES);
    let seed = fuzz_seed();
    let config = Config {
        cases,
        fork: true,
        timeout: CASE_TIMEOUT_MS,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        test_name: Some(name),
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let started = Instant::now();
    // Under MPMC, a patience of 1 to 3 polls makes stuck slots reach the repair paths.
    let strategy = (case(kind), 1u32..=3);
    let result = TestRunner::new(config).run(&strategy, |(case, patience)| {
        bench.fill_guards();
        let result = match kind {
            Kind::Overflow => run_overflow(&bench, &case),
            Kind::Spsc => run_spsc(&bench, &case),
            Kind::Mpmc => run_mpmc(&bench, &case, patience),
        };
        bench.tally.save(&bench.dir);
        result
    });
    let elapsed = started.elapsed();
    if let Err(e) = result {
        panic!("{e}\nrepeat with {FUZZ_SEED_ENV}={seed} {FUZZ_CASES_ENV}={cases}");
    }
    let tally = Tally::load(COUNTS, dir.path());
    eprintln!(
        "{name}: {cases} cases in {elapsed:.2?} ({:.0?} per case, seed {seed}): {tally}",
        elapsed / cases.max(1)
    );
    for what in COUNTS {
        // MPMC pushes have no corrupt-index refusal apart from a full queue.
        let optional = *what == "refused pushes" && kind == Kind::Mpmc;
        assert!(optional || tally.get(what) > 0, "{cases} cases reached no {what}: {tally}");
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
