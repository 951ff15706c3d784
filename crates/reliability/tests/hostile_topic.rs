//! Hostile bytes in a live topic. Property tests (proptest) create a topic with a publisher,
//! two subscribers and samples in flight (some held, some queued, history on in some cases),
//! then interleave writes a hostile peer could make — to the control segment (segment and
//! topic headers, publisher and subscriber entries: role, generation, drop and event words,
//! ack words, the submission and completion queues' descriptors, indices, stamps, values and
//! line words) and to the publisher's payload segment (its header, the blocks' length and tag
//! prefixes, their elements) — with the ways a user goes on: sends, slices, loans, receives,
//! waits, new publishers and subscribers, the topic opened again and used, discovery and
//! inspection. Every case ends with both subscribers drained (or the isolation check).
//!
//! Every case must end in error values or correct behaviour:
//! - no panic and no crash: the properties run in a child process (proptest's fork mode), so a
//!   SIGSEGV or SIGBUS (a read outside a mapping) fails the case that caused it, and a case
//!   that runs past 10 s fails as a hang;
//! - every element of every sample is read, and holds a value some publisher wrote (or, once
//!   any bytes changed, the zero of a never-written block or slot) unless payload bytes were
//!   changed (or, for a sample that travels inline in its queue slot, the slots' line words:
//!   any `T` then, never UB);
//! - the code writes only the words its protocol writes: the headers, the queue descriptors and
//!   every padding byte of the control segment, and the payload header, stay as they were;
//! - the publisher's pool never runs dry while it holds fewer loans than `max_loans`, and its
//!   blocks stay accounted for (`Publisher::block_counts`);
//! - errors tell the truth: `NoFreeSlot` only when every slot is held by a process not proven
//!   dead, `TooManyHeld` only at `max_held`, queue and layout errors only after queue or
//!   entry bytes changed, an intact topic always opens again;
//! - discovery reads whatever it finds, and reads an intact header back with the topic's
//!   settings and the slots actually held;
//! - isolation (the second property): with the corruption kept away from one subscriber (its
//!   entry, its queues and ack words), the publisher's role and generation words, the headers
//!   and the payload, but let loose on every word another subscriber writes (its entry and
//!   queues, and the publishers' `space` event counts), that subscriber receives every later
//!   sample in order, or the policy's own error (block, reject) while another subscriber is
//!   stuck.
//!
//! Each property runs over two sample types: [`Wide`] (64 bytes) takes a payload block, `u64`
//! travels inline in the queue slot's value word (`shmlane::topic::INLINE_MAX`), so a hostile
//! stamp or queue word may forge an inline sample in a block topic (the stamp's `INLINE_FLAG`,
//! or a word of generation 0) or a block in an inline one, and hostile slot words are an
//! inline sample's value. The samples of a `u64` run are checked as those of a `Wide` run, but
//! values no publisher wrote are allowed once a submission slot's words changed
//! (`Changed::lines`): a wrong `u64`, never UB.
//!
//! CI runs [`CI_CASES`] cases per property and sample type; `SHMLANE_FUZZ_CASES=1000000` is the
//! long mode, and `SHMLANE_FUZZ_SEED` repeats a run (a failure prints its seed and minimal
//! case). Segments live in a private directory (a node `root`), never in /dev/shm.
//!
//! [`Mirror`] addresses the segments as `crates/shmlane/src/topic/layout.rs` lays them out, and
//! each connection's queues where `SharedOverflow::raw_layout` says their words are; every case
//! first checks it against what the facade wrote (magics, capacities, role words, generations,
//! acks, sizes), so it cannot drift silently.

mod fuzzing;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use shmlane::discovery::{Verdict, inspect, segments};
use shmlane::notify::Blocking;
use shmlane::topic::INLINE_MAX;
use shmlane::{
    ConnectError, Loan, Node, Overflow, PublishError, Publisher, ReceiveError, Sample, Subscriber,
    TopicConfig, ZeroCopy,
};
use shmlane_queue::overflow::{INLINE_FLAG, SharedOverflow};
use shmlane_queue::raw::RawLayout;
use shmlane_reliability::{RunDir, Tally};
use shmlane_segment::{Liveness, RoleOwner, SegmentName};
use shmlane_testkit::dead_owner;

use crate::fuzzing::{fail, run_property};

/// Cases per property (and sample type) in CI.
const CI_CASES: u32 = 512;
/// How long a send under the block policy waits for room.
const BLOCK_TIMEOUT: Duration = Duration::from_micros(200);
/// A publisher on a reopened topic whose header a peer changed is claimed only if its payload
/// segment stays below this (see docs/reliability.md: header settings size payload segments).
const PAYLOAD_BUDGET: u64 = 16 << 20;

const PUBLISHERS: usize = 2;
const SUBSCRIBERS: usize = 3;
const CONNECTIONS: usize = PUBLISHERS * SUBSCRIBERS;
/// Subscriber slots of the two subscribers made first (the isolation property protects `B`).
const A: usize = 0;
const B: usize = 1;

// The mirror of the layouts (x86_64: `CachePadded` is 128 bytes).
/// `size_of::<CachePadded<_>>()`: an ack word, a queue index.
const PADDED: u64 = 128;
/// `size_of::<CachePadded<PublisherEntry>>()` and of a `SubscriberEntry`: the protocol's words
/// in the first 128 bytes, the holder's counters (`SlotCounters`, aligned to 128) after them.
const ENTRY: u64 = 256;
/// Where an entry's counters start, and their bytes (six words, written by the holder).
const COUNTERS_AT: u64 = 128;
const COUNTERS_LEN: u64 = 48;
const SEGMENT_HEADER_LEN: u64 = 128;
const TOPIC_HEADER_AT: u64 = 128;
/// `size_of::<TopicHeader>()`, in a 256-byte region.
const TOPIC_HEADER_LEN: u64 = 208;
const TOPIC_HEADER_REGION: u64 = 256;
/// Bytes of a publisher entry its protocol writes: role, generation, space event.
const PUBLISHER_WORDS: u64 = 24;
/// Where a publisher entry's `space` event count starts (after its role and generation words).
const PUBLISHER_SPACE_AT: u64 = 16;
/// Bytes of a subscriber entry its protocol writes: role, generation, drops, event.
const SUBSCRIBER_WORDS: u64 = 32;
const DATA_HEADER_AT: u64 = 128;
/// `size_of::<DataHeader>()`.
const DATA_HEADER_LEN: u64 = 56;
/// Where the blocks of a base pool start, and their size: `[len, tag, value]` padded to a
/// pair of cache lines (blocks start on 128-byte boundaries), for a [`Wide`] value (64 bytes)
/// as for a `u64` (the block of a slice of one).
const BLOCKS_AT: u64 = 256;
const BLOCK_SIZE: u64 = 128;
const _: () = assert!((16 + size_of::<Wide>() as u64).next_multiple_of(128) == BLOCK_SIZE);
const _: () = assert!((16 + size_of::<u64>() as u64).next_multiple_of(128) == BLOCK_SIZE);
/// Words of a submission queue's slot, `[stamp, value]`: both sample types take the narrowest
/// (`Element::queue_stride`), `Wide` because it travels in a block, `u64` because it fits the
/// value word, where it travels inline (the stamp flagged with `INLINE_FLAG`).
const SUBMISSION_STRIDE: usize = 2;
/// Words of a completion queue's slot.
const COMPLETION_STRIDE: usize = 8;
/// Where an inline sample's words start in a slot: its value word (`SharedOverflow::raw_layout`
/// gives the value's offset, checked against this in `Ctx::check_mirror`).
const LINE_AT: u64 = 8;
/// Inline words of a submission queue's slot.
const LINE_WORDS: u64 = SUBMISSION_STRIDE as u64 - 1;

/// Where a connection's queue of `capacity` slots of `stride` words (a `SharedOverflow`) keeps
/// its words.
fn queue_words(capacity: u64, stride: usize) -> RawLayout {
    SharedOverflow::raw_layout_strided(capacity, stride).expect("a queue capacity")
}

// ---------------------------------------------------------------------------------------------
// The sample types.
// ---------------------------------------------------------------------------------------------

/// A sample of 64 bytes: too large to travel inline, so it takes a payload block.
type Wide = [u64; 8];
const _: () = assert!(size_of::<Wide>() > INLINE_MAX);
const _: () = assert!(size_of::<u64>() <= INLINE_MAX);

/// A sample type of the properties, made of one of the unique `u64`s a case writes.
trait Value: ZeroCopy + Copy + PartialEq + std::fmt::Debug + 'static {
    /// Whether its samples travel inline in the queue slots (as the facade decides:
    /// `words::inline::<T>()`), rather than in payload blocks.
    const INLINE: bool = size_of::<Self>() <= INLINE_MAX && align_of::<Self>() <= 8;

    /// The value made of `value` (every word of it).
    fn of(value: u64) -> Self;

    /// The `u64` it was made of, if it is one `of` made (a mix of words is not).
    fn value(&self) -> Option<u64>;
}

impl Value for u64 {
    fn of(value: u64) -> Self {
        value
    }

    fn value(&self) -> Option<u64> {
        Some(*self)
    }
}

impl Value for Wide {
    fn of(value: u64) -> Self {
        [value; 8]
    }

    fn value(&self) -> Option<u64> {
        self.iter().all(|&word| word == self[0]).then_some(self[0])
    }
}

// ---------------------------------------------------------------------------------------------
// What a case is.
// ---------------------------------------------------------------------------------------------

/// The topic's settings (two publisher and three subscriber slots).
#[derive(Debug, Clone, Copy)]
struct Shape {
    capacity: u32,
    max_held: u32,
    max_loans: u32,
    history: u32,
    overflow: Overflow,
}

impl Shape {
    fn config(&self) -> TopicConfig {
        TopicConfig {
            max_publishers: PUBLISHERS as u32,
            max_subscribers: SUBSCRIBERS as u32,
            subscriber_capacity: self.capacity,
            max_held: self.max_held,
            max_loans: self.max_loans,
            max_slice_len: 1,
            history: self.history,
            overflow: self.overflow,
        }
    }

    /// Blocks of the publisher's base pool (`TopicConfig::blocks`).
    fn blocks(&self) -> u64 {
        u64::from(self.max_loans)
            + u64::from(self.history)
            + SUBSCRIBERS as u64 * u64::from(self.capacity + self.max_held)
    }
}

/// A byte a peer writes, by what it is.
#[derive(Debug, Clone)]
enum Spot {
    SegmentHeader(u8),
    TopicHeader(u8),
    Publisher {
        slot: u8,
        word: u8,
    },
    Subscriber {
        slot: u8,
        word: u8,
    },
    Ack(u8),
    /// The roster word.
    Roster,
    Queue {
        connection: u8,
        completion: bool,
        part: QueuePart,
    },
    /// A slot of the first publisher's submission queue to `A` or `B` (by `subscriber`'s
    /// parity), which their receives read: its value word (an inline `u64`'s bytes), or its
    /// word `line` modulo the slot's words (its stamp, whose flag says "inline", or the value).
    Slot {
        subscriber: u8,
        slot: u8,
        line: Option<u8>,
    },
    ControlAnywhere(u32),
    DataHeader(u8),
    Block {
        block: u16,
        word: u8,
    },
    PayloadAnywhere(u32),
}

#[derive(Debug, Clone)]
enum QueuePart {
    Descriptor(u8),
    Head,
    Tail,
    Seen,
    Stamp(u8),
    Value(u8),
    /// A slot's line word (an inline sample's bytes).
    Line {
        slot: u8,
        word: u8,
    },
}

/// What is written there: a byte, an aligned `u32` (header settings are `u32`s), or an aligned
/// `u64`.
#[derive(Debug, Clone)]
enum Write {
    Byte(u8),
    Half(u32),
    Word(Word),
}

/// A queued value: `generation << 32 | pool << 24 | index`, the generation relative to the
/// first publisher's (the topic's own hostile word, beside those of every structure,
/// `fuzzing::Word`).
#[derive(Debug, Clone)]
struct QueuedValue {
    generation: i8,
    pool: u8,
    index: u16,
}

type Word = fuzzing::Word<QueuedValue>;
type Mutation = fuzzing::Mutation<Spot, Write>;
type Step = fuzzing::Step<Spot, Write, Op>;

#[derive(Debug, Clone, Copy)]
enum Who {
    A,
    B,
}

#[derive(Debug, Clone)]
enum Op {
    /// The first publisher sends this many samples.
    Send(u8),
    /// It sends a slice of this many elements (beyond 1, from a pool added for it).
    SendSlice(u8),
    /// It takes a loan and keeps it.
    HoldLoan,
    /// It drops a loan it keeps.
    DropLoan,
    /// A subscriber receives up to `count` samples, keeping them or not.
    Receive { who: Who, count: u8, keep: bool },
    /// A subscriber drops the samples it keeps.
    Release(Who),
    /// A subscriber waits (blocking strategy) up to a millisecond for a sample.
    Wait(Who),
    /// A new publisher claims a slot, sends this many samples, leaves.
    ClaimPublisher(u8),
    /// A new subscriber claims a slot, receives up to this many samples, leaves.
    ClaimSubscriber(u8),
    /// The topic opened again, a publisher and a subscriber made on it, this many samples.
    Reopen(u8),
    /// `discovery::segments` and `discovery::inspect`.
    Discover,
    /// Subscriber counts, drops, the publisher's block counts.
    Count,
}

#[derive(Debug, Clone)]
struct Case {
    shape: Shape,
    /// Samples sent (and some received and held) before the first step.
    presend: u8,
    steps: Vec<Step>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let capacity = prop_oneof![Just(1u32), Just(2), Just(4), Just(8)];
    (capacity, 1u32..=3, 1u32..=3, 0usize..3, 0usize..3).prop_map(
        |(capacity, max_held, max_loans, history, overflow)| Shape {
            capacity,
            max_held,
            max_loans,
            history: [0, 1, capacity][history],
            overflow: [Overflow::DropOldest, Overflow::Block, Overflow::Reject][overflow],
        },
    )
}

fn word() -> impl Strategy<Value = Word> {
    let value = (-1i8..=1, 0u8..3, 0u16..80).prop_map(|(generation, pool, index)| QueuedValue {
        generation,
        pool,
        index,
    });
    fuzzing::word(-20..=20, 2, value)
}

fn write() -> impl Strategy<Value = Write> {
    let half = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(3),
        Just(63),
        Just(64),
        Just(1 << 16),
        Just(1 << 20),
        Just(u32::MAX),
        any::<u32>(),
    ];
    prop_oneof![
        1 => any::<u8>().prop_map(Write::Byte),
        1 => half.prop_map(Write::Half),
        3 => word().prop_map(Write::Word),
    ]
}

fn spot() -> impl Strategy<Value = Spot> {
    let part = prop_oneof![
        1 => any::<u8>().prop_map(QueuePart::Descriptor),
        2 => Just(QueuePart::Head),
        2 => Just(QueuePart::Tail),
        2 => Just(QueuePart::Seen),
        2 => any::<u8>().prop_map(QueuePart::Stamp),
        2 => any::<u8>().prop_map(QueuePart::Value),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(slot, word)| QueuePart::Line { slot, word }),
    ];
    let line = prop_oneof![
        1 => Just(None),
        2 => Just(Some(0u8)),
        1 => any::<u8>().prop_map(Some),
    ];
    prop_oneof![
        1 => any::<u8>().prop_map(Spot::SegmentHeader),
        3 => any::<u8>().prop_map(Spot::TopicHeader),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(slot, word)| Spot::Publisher { slot, word }),
        4 => (any::<u8>(), any::<u8>()).prop_map(|(slot, word)| Spot::Subscriber { slot, word }),
        2 => any::<u8>().prop_map(Spot::Ack),
        1 => Just(Spot::Roster),
        8 => (any::<u8>(), any::<bool>(), part).prop_map(|(connection, completion, part)| {
            Spot::Queue { connection, completion, part }
        }),
        4 => (any::<u8>(), any::<u8>(), line).prop_map(|(subscriber, slot, line)| {
            Spot::Slot { subscriber, slot, line }
        }),
        2 => any::<u32>().prop_map(Spot::ControlAnywhere),
        1 => any::<u8>().prop_map(Spot::DataHeader),
        2 => (any::<u16>(), any::<u8>()).prop_map(|(block, word)| Spot::Block { block, word }),
        1 => any::<u32>().prop_map(Spot::PayloadAnywhere),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let who = || prop_oneof![Just(Who::A), Just(Who::B)];
    prop_oneof![
        6 => (1u8..=4).prop_map(Op::Send),
        1 => (1u8..=3).prop_map(Op::SendSlice),
        1 => Just(Op::HoldLoan),
        1 => Just(Op::DropLoan),
        6 => (who(), 1u8..=4, any::<bool>())
            .prop_map(|(who, count, keep)| Op::Receive { who, count, keep }),
        2 => who().prop_map(Op::Release),
        1 => who().prop_map(Op::Wait),
        2 => (0u8..=2).prop_map(Op::ClaimPublisher),
        2 => (0u8..=4).prop_map(Op::ClaimSubscriber),
        3 => (0u8..=2).prop_map(Op::Reopen),
        1 => Just(Op::Discover),
        1 => Just(Op::Count),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let step = prop_oneof![
        2 => (spot(), write()).prop_map(|(spot, write)| Step::Mutate(Mutation { spot, write })),
        3 => op().prop_map(Step::Op),
    ];
    (shape(), 0u8..=10, prop::collection::vec(step, 1..=14))
        .prop_map(|(shape, presend, steps)| Case { shape, presend, steps })
}

// ---------------------------------------------------------------------------------------------
// The segments' layout, mirrored.
// ---------------------------------------------------------------------------------------------

/// What a byte of the control segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Headers,
    /// The roster word every subscriber bumps when it joins or leaves.
    Roster,
    Publisher(usize),
    Subscriber(usize),
    Ack(usize),
    Queue(usize),
    /// Alignment padding between regions.
    Gap,
}

/// The control segment's regions, as `Layout::new` carves them.
#[derive(Debug)]
struct Mirror {
    roster_at: u64,
    publishers_at: u64,
    subscribers_at: u64,
    acks_at: u64,
    /// Per connection `p * SUBSCRIBERS + s`: (offset, capacity, stride) of the submission and
    /// the completion queue.
    queues: Vec<[(u64, u64, usize); 2]>,
    size: u64,
}

impl Mirror {
    fn new(shape: &Shape) -> Mirror {
        let mut cursor = SEGMENT_HEADER_LEN;
        let mut place = |size: u64| {
            let at = cursor.next_multiple_of(128);
            cursor = at + size;
            at
        };
        place(TOPIC_HEADER_REGION);
        let roster_at = place(PADDED);
        let publishers_at = place(PUBLISHERS as u64 * ENTRY);
        let subscribers_at = place(SUBSCRIBERS as u64 * ENTRY);
        let acks_at = place(CONNECTIONS as u64 * PADDED);
        let capacity = u64::from(shape.capacity);
        let completion = (capacity + u64::from(shape.max_held)).next_power_of_two();
        let queues = (0..CONNECTIONS)
            .map(|_| {
                let submission = place(queue_words(capacity, SUBMISSION_STRIDE).size);
                let returns = place(queue_words(completion, COMPLETION_STRIDE).size);
                [
                    (submission, capacity, SUBMISSION_STRIDE),
                    (returns, completion, COMPLETION_STRIDE),
                ]
            })
            .collect();
        Mirror { roster_at, publishers_at, subscribers_at, acks_at, queues, size: cursor }
    }

    fn publisher(&self, p: usize) -> u64 {
        self.publishers_at + p as u64 * ENTRY
    }

    fn subscriber(&self, s: usize) -> u64 {
        self.subscribers_at + s as u64 * ENTRY
    }

    fn ack(&self, c: usize) -> u64 {
        self.acks_at + c as u64 * PADDED
    }

    /// The part `at` belongs to, and its offset within that part.
    fn part(&self, at: u64) -> (Part, u64) {
        let within = |start: u64, count: usize, stride: u64| {
            (start..start + count as u64 * stride)
                .contains(&at)
                .then(|| (((at - start) / stride) as usize, (at - start) % stride))
        };
        if at < TOPIC_HEADER_AT + TOPIC_HEADER_REGION {
            return (Part::Headers, at);
        }
        if (self.roster_at..self.roster_at + PADDED).contains(&at) {
            return (Part::Roster, at - self.roster_at);
        }
        if let Some((p, rel)) = within(self.publishers_at, PUBLISHERS, ENTRY) {
            return (Part::Publisher(p), rel);
        }
        if let Some((s, rel)) = within(self.subscribers_at, SUBSCRIBERS, ENTRY) {
            return (Part::Subscriber(s), rel);
        }
        if let Some((c, rel)) = within(self.acks_at, CONNECTIONS, PADDED) {
            return (Part::Ack(c), rel);
        }
        for (c, queues) in self.queues.iter().enumerate() {
            for &(start, capacity, stride) in queues {
                if (start..start + queue_words(capacity, stride).size).contains(&at) {
                    return (Part::Queue(c), at - start);
                }
            }
        }
        (Part::Gap, 0)
    }

    /// Whether `at` is a word of a submission queue's slot: an inline sample's bytes, or the
    /// stamp that says whether the slot's value word is one (a flag flipped there makes a
    /// block's word read as an inline sample's value).
    fn line(&self, at: u64) -> bool {
        self.queues.iter().any(|[(start, capacity, stride), _]| {
            let words = queue_words(*capacity, *stride);
            (start + words.slots..start + words.size).contains(&at)
        })
    }

    /// Whether the facade's protocol writes the byte at `at` after creation (everything else
    /// is written once, when the segment is created).
    fn writable(&self, at: u64) -> bool {
        match self.part(at) {
            (Part::Publisher(_), rel) => rel < PUBLISHER_WORDS || counters(rel),
            (Part::Subscriber(_), rel) => rel < SUBSCRIBER_WORDS || counters(rel),
            (Part::Ack(_) | Part::Roster, rel) => rel < 8,
            (Part::Queue(_), rel) => {
                let queue = queue_words(1, SUBMISSION_STRIDE);
                let seen = queue.seen.expect("an overflowing queue's `seen`");
                [queue.head, queue.tail, seen].iter().any(|&word| (word..word + 8).contains(&rel))
                    || rel >= queue.slots
            }
            (Part::Headers | Part::Gap, _) => false,
        }
    }
}

/// Whether byte `rel` of an entry is one of its holder's counters.
fn counters(rel: u64) -> bool {
    (COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN).contains(&rel)
}

/// Whether the isolation property keeps mutations away from byte `rel` of `part`: the
/// headers, the first publisher's entry but its `space` event count (which every subscriber
/// writes: another subscriber's bug may garble it), and everything of subscriber `B`. Every
/// other word a subscriber writes (its own entry, its queues' consumer and completion words,
/// the roster every subscriber bumps) is fair game.
fn protected(part: Part, rel: u64) -> bool {
    match part {
        Part::Headers => true,
        Part::Roster => false,
        Part::Publisher(p) => p == 0 && !(PUBLISHER_SPACE_AT..PUBLISHER_WORDS).contains(&rel),
        Part::Subscriber(s) => s == B,
        Part::Ack(c) | Part::Queue(c) => c % SUBSCRIBERS == B,
        Part::Gap => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The environment of a run, and of a case.
// ---------------------------------------------------------------------------------------------

/// What every case of a run shares.
struct Env {
    root: PathBuf,
    node: Node,
    /// Our own process as a role owner, and one proven dead.
    me: RoleOwner,
    dead: RoleOwner,
    cases: AtomicU32,
    tally: Tally,
}

/// What the cases of a run count (see `Tally`): mutations written (not skipped by the
/// isolation property), samples received and checked, claims refused, sends refused by the
/// block or reject policy, reopens refused (a changed header), intact topics inspected and
/// compared, samples seen reaching the isolated subscriber, samples whose value no publisher
/// wrote (payload bytes, or for inline samples line words, were changed).
const COUNTS: &[&str] = &[
    "mutations",
    "samples",
    "hostile samples",
    "refused claims",
    "refused sends",
    "refused opens",
    "intact topics inspected",
    "samples reaching the isolated subscriber",
];

impl Env {
    fn new(root: &Path) -> Env {
        // Several children of one parent (after a crash, proptest starts another) each have
        // their own namespace.
        let namespace = format!("h{}", std::process::id());
        let node = Node::builder("hostile")
            .namespace(namespace)
            .root(root)
            .create()
            .expect("create the fuzzing node");
        Env {
            root: root.to_owned(),
            me: node.id(),
            dead: dead_owner(),
            node,
            cases: AtomicU32::new(0),
            tally: Tally::new(COUNTS),
        }
    }

    /// The file name of `{namespace}.{suffix}`.
    fn file(&self, suffix: &str) -> PathBuf {
        self.root.join(format!("shmlane.{}.{suffix}", self.node.namespace()))
    }

    /// Removes every file of topic `service`.
    fn remove_topic(&self, service: &str) {
        let prefix = format!("shmlane.{}.topic.{service}", self.node.namespace());
        let Ok(dir) = std::fs::read_dir(&self.root) else { return };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(rest) = name.strip_prefix(&prefix)
                && (rest.is_empty() || rest.starts_with('.'))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// What was changed so far in a case.
#[derive(Debug, Clone, Copy, Default)]
struct Changed {
    /// The segment or topic header.
    headers: bool,
    /// Entries or ack words.
    entries: bool,
    /// Queue descriptors, indices or slots.
    queues: bool,
    /// A queue slot's line words (an inline sample's bytes).
    lines: bool,
    /// The first publisher's payload segment.
    payload: bool,
}

/// One case's view of its topic's files.
struct Ctx<'e> {
    env: &'e Env,
    service: String,
    shape: Shape,
    protect: bool,
    mirror: Mirror,
    control: File,
    payload: File,
    payload_len: u64,
    /// Words of a sample value (of `T`).
    value_words: u64,
    /// Whether samples travel inline (`Value::INLINE` of `T`).
    inline: bool,
    /// The payload header as created.
    data_header: Vec<u8>,
    /// Every value a publisher wrote into a block.
    written: RefCell<HashSet<u64>>,
    next: Cell<u64>,
    changed: Cell<Changed>,
    /// The control segment as last seen (after the last mutation or operation).
    seen: RefCell<Vec<u8>>,
}

impl<'e> Ctx<'e> {
    fn new<V: Value>(
        env: &'e Env,
        service: &str,
        shape: Shape,
        protect: bool,
    ) -> Result<Self, TestCaseError> {
        let open = |path: PathBuf| {
            File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| fail(format!("open {}: {e}", path.display())))
        };
        let control = open(env.file(&format!("topic.{service}")))?;
        let payload = open(env.file(&format!("topic.{service}.p0.g1")))?;
        let payload_len = payload.metadata().map_err(fail)?.len();
        let ctx = Ctx {
            env,
            service: service.to_owned(),
            shape,
            protect,
            mirror: Mirror::new(&shape),
            control,
            payload,
            payload_len,
            value_words: size_of::<V>() as u64 / 8,
            inline: V::INLINE,
            data_header: Vec::new(),
            written: RefCell::new(HashSet::new()),
            next: Cell::new(1000),
            changed: Cell::new(Changed::default()),
            seen: RefCell::new(Vec::new()),
        };
        let data_header = ctx.read_payload(DATA_HEADER_AT, DATA_HEADER_LEN)?;
        let seen = ctx.read_control()?;
        Ok(Ctx { data_header, seen: RefCell::new(seen), ..ctx })
    }

    fn read_control(&self) -> Result<Vec<u8>, TestCaseError> {
        let mut bytes = vec![0; self.mirror.size as usize];
        self.control.read_exact_at(&mut bytes, 0).map_err(fail)?;
        Ok(bytes)
    }

    fn read_payload(&self, at: u64, len: u64) -> Result<Vec<u8>, TestCaseError> {
        let mut bytes = vec![0; len as usize];
        self.payload.read_exact_at(&mut bytes, at).map_err(fail)?;
        Ok(bytes)
    }

    fn word(file: &File, at: u64) -> Result<u64, TestCaseError> {
        let mut bytes = [0; 8];
        file.read_exact_at(&mut bytes, at).map_err(fail)?;
        Ok(u64::from_ne_bytes(bytes))
    }

    fn control_word(&self, at: u64) -> Result<u64, TestCaseError> {
        Self::word(&self.control, at)
    }

    /// A fresh sample value, recorded as written.
    fn fresh(&self) -> u64 {
        let value = self.next.get();
        self.next.set(value + 1);
        self.written.borrow_mut().insert(value);
        value
    }

    /// Checks the mirror against the topic just set up: a publisher in slot 0 serving
    /// subscribers in slots 0 and 1.
    fn check_mirror(&self) -> Result<(), TestCaseError> {
        let control = self.control.metadata().map_err(fail)?.len();
        prop_assert_eq!(control, self.mirror.size, "control segment size");
        let magic = |file: &File, at: u64| -> Result<[u8; 8], TestCaseError> {
            Ok(Self::word(file, at)?.to_ne_bytes())
        };
        prop_assert_eq!(&magic(&self.control, TOPIC_HEADER_AT)?, b"SHMLTOPC");
        let words = queue_words(1, SUBMISSION_STRIDE);
        prop_assert_eq!([words.slot_size, words.value], [SUBMISSION_STRIDE as u64 * 8, LINE_AT]);
        prop_assert_eq!(LINE_AT + LINE_WORDS * 8, words.slot_size);
        for queues in &self.mirror.queues {
            for &(at, capacity, stride) in queues {
                // The descriptor's element: a slot of `stride` words, aligned to its size.
                let slot = stride as u64 * 8;
                prop_assert_eq!(
                    [self.control_word(at + 24)?, self.control_word(at + 32)?],
                    [slot, slot]
                );
                prop_assert_eq!(&magic(&self.control, at)?, b"SHMLOVFL", "queue at {}", at);
                prop_assert_eq!(self.control_word(at + 16)?, capacity, "capacity at {}", at);
            }
        }
        let me = self.env.me.to_raw();
        let words = |at: u64| -> Result<[u64; 2], TestCaseError> {
            Ok([self.control_word(at)?, self.control_word(at + 8)?])
        };
        prop_assert_eq!(words(self.mirror.publisher(0))?, [me, 1]);
        prop_assert_eq!(words(self.mirror.publisher(1))?, [0, 0]);
        prop_assert_eq!(words(self.mirror.subscriber(A))?, [me, 1]);
        prop_assert_eq!(words(self.mirror.subscriber(B))?, [me, 1]);
        prop_assert_eq!(words(self.mirror.subscriber(2))?, [0, 0]);
        prop_assert_eq!(self.control_word(self.mirror.ack(A))?, 1);
        prop_assert_eq!(self.control_word(self.mirror.ack(B))?, 1);
        prop_assert_eq!(&magic(&self.payload, DATA_HEADER_AT)?, b"SHMLDATA");
        let data = |at: u64| Self::word(&self.payload, DATA_HEADER_AT + at);
        prop_assert_eq!(
            [data(24)?, data(32)?, data(40)?],
            [BLOCK_SIZE, self.shape.blocks(), BLOCKS_AT]
        );
        prop_assert_eq!(self.payload_len, BLOCKS_AT + BLOCK_SIZE * self.shape.blocks());
        Ok(())
    }

    /// Applies `mutation` (unless the isolation property protects its bytes).
    fn mutate(&self, mutation: &Mutation) -> Result<(), TestCaseError> {
        let m = &self.mirror;
        let (control, at) = match &mutation.spot {
            Spot::SegmentHeader(at) => (true, u64::from(*at) % SEGMENT_HEADER_LEN),
            Spot::TopicHeader(at) => (true, TOPIC_HEADER_AT + u64::from(*at) % TOPIC_HEADER_LEN),
            Spot::Publisher { slot, word } => {
                let entry = m.publisher(usize::from(*slot) % PUBLISHERS);
                (true, entry + u64::from(*word) % (PUBLISHER_WORDS / 8) * 8)
            }
            Spot::Subscriber { slot, word } => {
                let entry = m.subscriber(usize::from(*slot) % SUBSCRIBERS);
                (true, entry + u64::from(*word) % (SUBSCRIBER_WORDS / 8) * 8)
            }
            Spot::Ack(c) => (true, m.ack(usize::from(*c) % CONNECTIONS)),
            Spot::Roster => (true, m.roster_at),
            Spot::Queue { connection, completion, part } => {
                let (queue, capacity, stride) =
                    m.queues[usize::from(*connection) % CONNECTIONS][usize::from(*completion)];
                let words = queue_words(capacity, stride);
                let line_words = stride as u64 - 1;
                let slot = |i: u8| words.slots + u64::from(i) % capacity * words.slot_size;
                let rel = match part {
                    QueuePart::Descriptor(at) => u64::from(*at) % words.head,
                    QueuePart::Head => words.head,
                    QueuePart::Tail => words.tail,
                    QueuePart::Seen => words.seen.expect("an overflowing queue's `seen`"),
                    QueuePart::Stamp(i) => slot(*i),
                    QueuePart::Value(i) => slot(*i) + words.value,
                    QueuePart::Line { slot: i, word } => {
                        slot(*i) + LINE_AT + u64::from(*word) % line_words * 8
                    }
                };
                (true, queue + rel)
            }
            Spot::Slot { subscriber, slot, line } => {
                let (queue, capacity, stride) = m.queues[[A, B][usize::from(*subscriber) % 2]][0];
                let words = queue_words(capacity, stride);
                let slot = queue + words.slots + u64::from(*slot) % capacity * words.slot_size;
                let rel = match line {
                    None => words.value,
                    // Any word of the slot: its stamp (whose flag says "inline") or its words.
                    Some(word) => u64::from(*word) % stride as u64 * 8,
                };
                (true, slot + rel)
            }
            Spot::ControlAnywhere(at) => (true, u64::from(*at) % m.size),
            Spot::DataHeader(at) => (false, DATA_HEADER_AT + u64::from(*at) % DATA_HEADER_LEN),
            Spot::Block { block, word } => {
                let block = u64::from(*block) % self.shape.blocks();
                // Its length and tag words, and every word of its (first) value.
                let word = u64::from(*word) % (2 + self.value_words);
                (false, BLOCKS_AT + block * BLOCK_SIZE + word * 8)
            }
            Spot::PayloadAnywhere(at) => (false, u64::from(*at) % self.payload_len),
        };
        let file = if control { &self.control } else { &self.payload };
        let (at, bytes) = match &mutation.write {
            Write::Byte(byte) => (at, vec![*byte]),
            Write::Half(half) => (at & !3, half.to_ne_bytes().to_vec()),
            Write::Word(word) => {
                let at = at & !7;
                let current = Self::word(file, at)?;
                (at, self.word_value(word, current).to_ne_bytes().to_vec())
            }
        };
        let len = if control { m.size } else { self.payload_len };
        if at + bytes.len() as u64 > len {
            return Ok(());
        }
        let mut changed = self.changed.get();
        if control {
            let parts: Vec<(Part, u64)> =
                (at..at + bytes.len() as u64).map(|b| m.part(b)).collect();
            if self.protect && parts.iter().any(|&(part, rel)| protected(part, rel)) {
                return Ok(());
            }
            changed.lines |= (at..at + bytes.len() as u64).any(|b| m.line(b));
            for (part, _) in parts {
                match part {
                    Part::Headers => changed.headers = true,
                    Part::Roster | Part::Publisher(_) | Part::Subscriber(_) | Part::Ack(_) => {
                        changed.entries = true
                    }
                    Part::Queue(_) => changed.queues = true,
                    Part::Gap => {}
                }
            }
        } else {
            if self.protect {
                return Ok(());
            }
            changed.payload = true;
        }
        file.write_all_at(&bytes, at).map_err(fail)?;
        self.env.tally.count("mutations");
        self.changed.set(changed);
        *self.seen.borrow_mut() = self.read_control()?;
        Ok(())
    }

    fn word_value(&self, word: &Word, current: u64) -> u64 {
        word.value(current, (self.env.me, self.env.dead), |value| {
            let generation = 1u32.wrapping_add_signed(i32::from(value.generation));
            u64::from(generation) << 32 | u64::from(value.pool) << 24 | u64::from(value.index)
        })
    }

    /// After an operation: the control segment changed only where the protocol writes, and
    /// the payload header not at all.
    fn check_writes(&self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.read_control()?;
        let seen = self.seen.replace(Vec::new());
        for (at, (&was, &is)) in seen.iter().zip(&now).enumerate() {
            let at = at as u64;
            if was != is && !self.mirror.writable(at) {
                return Err(fail(format!(
                    "{op:?} wrote byte {at:#x} ({:?}, {was:#x} -> {is:#x}), which the \
                     protocol never writes",
                    self.mirror.part(at)
                )));
            }
        }
        *self.seen.borrow_mut() = now;
        if !self.changed.get().payload {
            let header = self.read_payload(DATA_HEADER_AT, DATA_HEADER_LEN)?;
            prop_assert_eq!(&header, &self.data_header, "{:?} changed the payload header", op);
        }
        Ok(())
    }

    /// A received sample: every element is read (a sample outside its mapping would crash
    /// the process here) and, unless payload bytes were changed (or, for an inline `T`, the
    /// queue slots' line words), is a value some publisher wrote or, once any bytes changed, a
    /// block's initial zero (for an inline `T`, a slot's). A value no publisher wrote is
    /// counted as hostile.
    fn check_sample<V: Value>(&self, sample: &Sample<'_, V>) -> Result<(), TestCaseError> {
        self.env.tally.count("samples");
        let elements = sample.as_slice();
        prop_assert!(!elements.is_empty() && elements.len() == sample.len());
        prop_assert_eq!(**sample, elements[0]);
        prop_assert_eq!(sample.read(), elements[0]);
        let changed = self.changed.get();
        let hostile = changed.payload || (self.inline && changed.lines);
        // Only a hostile word (a forged queue word, a reused generation) names a block (or,
        // inline, a slot) nothing was written to.
        let zero = changed.headers || changed.entries || changed.queues || changed.payload;
        let written = self.written.borrow();
        for element in elements {
            match element.value() {
                Some(0) if zero => {}
                Some(value) if written.contains(&value) => {}
                _ if hostile => {
                    self.env.tally.count("hostile samples");
                    return Ok(());
                }
                _ => return Err(fail(format!("a sample holds {element:x?}, which nobody wrote"))),
            }
        }
        Ok(())
    }

    /// A claim failed with `error`: it must tell the truth.
    fn check_connect_error(
        &self,
        error: &ConnectError,
        reopened: bool,
    ) -> Result<(), TestCaseError> {
        self.env.tally.count("refused claims");
        let changed = self.changed.get();
        match error {
            ConnectError::NoFreeSlot { what, .. } if !reopened || !changed.headers => {
                let publishers = *what == "publisher";
                let count = if publishers { PUBLISHERS } else { SUBSCRIBERS };
                for slot in 0..count {
                    let entry = if publishers {
                        self.mirror.publisher(slot)
                    } else {
                        self.mirror.subscriber(slot)
                    };
                    let owner = RoleOwner::from_raw(self.control_word(entry)?);
                    prop_assert!(
                        owner.is_some_and(|o| o.liveness() != Liveness::Dead),
                        "{} slot {} is free or dead, yet: {}",
                        what,
                        slot,
                        error
                    );
                }
                Ok(())
            }
            ConnectError::NoFreeSlot { .. } => Ok(()),
            _ if changed.queues || changed.entries || (reopened && changed.headers) => Ok(()),
            _ => Err(fail(format!("a claim failed on an intact topic: {error}"))),
        }
    }
}

/// Checks a send's outcome under `policy`.
fn check_sent(
    ctx: &Ctx<'_>,
    sent: Result<usize, PublishError>,
    policy: Overflow,
) -> Result<(), TestCaseError> {
    match sent {
        Ok(delivered) => {
            prop_assert!(delivered <= SUBSCRIBERS, "delivered to {} subscribers", delivered);
            Ok(())
        }
        Err(PublishError::SubscriberFull) if policy == Overflow::Reject => {
            ctx.env.tally.count("refused sends");
            Ok(())
        }
        Err(PublishError::Timeout(_)) if policy == Overflow::Block => {
            ctx.env.tally.count("refused sends");
            Ok(())
        }
        Err(e) => Err(fail(format!("send under {policy:?}: {e}"))),
    }
}

/// One sample from `publisher`, which holds `loans` of its `max_loans`: the pool may run dry
/// only when every loan is out.
fn send_one<V: Value>(
    ctx: &Ctx<'_>,
    publisher: &Publisher<V>,
    loans: usize,
    config: &TopicConfig,
) -> Result<(), TestCaseError> {
    match publisher.loan() {
        Ok(mut loan) => {
            *loan = V::of(ctx.fresh());
            check_sent(ctx, publisher.send(loan), config.overflow)
        }
        Err(PublishError::OutOfBlocks) => {
            prop_assert_eq!(loans, config.max_loans as usize, "the pool ran dry");
            Ok(())
        }
        Err(e) => Err(fail(format!("loan: {e}"))),
    }
}

/// Receives once, checking the sample and the error.
fn receive<'s, V: Value>(
    ctx: &Ctx<'_>,
    subscriber: &'s Subscriber<V>,
    max_held: u32,
) -> Result<Option<Sample<'s, V>>, TestCaseError> {
    match subscriber.receive() {
        Ok(Some(sample)) => {
            ctx.check_sample(&sample)?;
            Ok(Some(sample))
        }
        Ok(None) => Ok(None),
        Err(ReceiveError::TooManyHeld(max)) => {
            prop_assert!(max == max_held && subscriber.held() == max_held, "TooManyHeld({})", max);
            Ok(None)
        }
        Err(e) => Err(fail(format!("receive: {e}"))),
    }
}

/// Receives until nothing is queued (holding nothing); a queue that never runs dry is a bug.
fn drain<V: Value>(
    ctx: &Ctx<'_>,
    subscriber: &Subscriber<V>,
    max_held: u32,
) -> Result<(), TestCaseError> {
    for _ in 0..1024 {
        if receive(ctx, subscriber, max_held)?.is_none() {
            return Ok(());
        }
    }
    Err(fail("a subscriber received 1024 samples from queues of at most 8"))
}

/// Receives up to `count` samples from `subscriber`, dropping them.
fn take<V: Value>(
    ctx: &Ctx<'_>,
    subscriber: &Subscriber<V>,
    count: u8,
    max_held: u32,
) -> Result<(), TestCaseError> {
    for _ in 0..count {
        if receive(ctx, subscriber, max_held)?.is_none() {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A case.
// ---------------------------------------------------------------------------------------------

fn run<V: Value>(env: &Env, case: &Case, protect: bool) -> Result<(), TestCaseError> {
    let service = format!("c{}", env.cases.fetch_add(1, Ordering::Relaxed));
    let result = run_topic::<V>(env, &service, case, protect);
    env.remove_topic(&service);
    env.tally.save(&env.root);
    result
}

fn run_topic<V: Value>(
    env: &Env,
    service: &str,
    case: &Case,
    protect: bool,
) -> Result<(), TestCaseError> {
    let shape = case.shape;
    let config = shape.config();
    let topic = env
        .node
        .topic::<V>(service)
        .max_publishers(config.max_publishers)
        .max_subscribers(config.max_subscribers)
        .subscriber_capacity(config.subscriber_capacity)
        .max_held(config.max_held)
        .max_loans(config.max_loans)
        .history(config.history)
        .overflow(config.overflow)
        .create()
        .map_err(fail)?;
    let p0 = topic.publisher().map_err(fail)?;
    p0.set_block_timeout(BLOCK_TIMEOUT);
    let a = topic.subscriber().map_err(fail)?;
    let b = topic.subscriber().map_err(fail)?;
    prop_assert_eq!(p0.subscribers(), 2);
    let ctx = Ctx::new::<V>(env, service, shape, protect)?;
    ctx.check_mirror()?;

    let max_held = config.max_held;
    let mut loans: Vec<Loan<'_, V>> = Vec::new();
    let mut held_a: Vec<Sample<'_, V>> = Vec::new();
    let mut held_b: Vec<Sample<'_, V>> = Vec::new();
    for i in 0..case.presend {
        send_one(&ctx, &p0, 0, &config)?;
        if i % 3 == 0
            && held_a.len() < max_held as usize
            && let Some(sample) = receive(&ctx, &a, max_held)?
        {
            held_a.push(sample);
        }
        if i % 2 == 1 {
            take(&ctx, &b, 1, max_held)?;
        }
    }
    *ctx.seen.borrow_mut() = ctx.read_control()?;

    for step in &case.steps {
        let op = match step {
            Step::Mutate(mutation) => {
                ctx.mutate(mutation)?;
                continue;
            }
            Step::Op(op) => op,
        };
        match *op {
            Op::Send(count) => {
                for _ in 0..count {
                    send_one(&ctx, &p0, loans.len(), &config)?;
                }
            }
            Op::SendSlice(len) => match p0.loan_slice(usize::from(len)) {
                Ok(mut slice) => {
                    for element in slice.iter_mut() {
                        *element = V::of(ctx.fresh());
                    }
                    check_sent(&ctx, p0.send_slice(slice), config.overflow)?;
                }
                Err(PublishError::OutOfBlocks) => {
                    prop_assert_eq!(loans.len(), config.max_loans as usize, "the pool ran dry");
                }
                Err(e) => return Err(fail(format!("loan_slice({len}): {e}"))),
            },
            Op::HoldLoan => match p0.loan() {
                Ok(mut loan) => {
                    prop_assert!(loans.len() < config.max_loans as usize, "a loan beyond max");
                    *loan = V::of(ctx.fresh());
                    let at: *const V = &*loan;
                    let twice = loans.iter().any(|other| std::ptr::eq(&**other, at));
                    prop_assert!(!twice, "one block loaned twice");
                    loans.push(loan);
                }
                Err(PublishError::OutOfBlocks) => {
                    prop_assert_eq!(loans.len(), config.max_loans as usize, "the pool ran dry");
                }
                Err(e) => return Err(fail(format!("loan: {e}"))),
            },
            Op::DropLoan => drop(loans.pop()),
            Op::Receive { who, count, keep } => {
                let (subscriber, held) = match who {
                    Who::A => (&a, &mut held_a),
                    Who::B => (&b, &mut held_b),
                };
                for _ in 0..count {
                    let Some(sample) = receive(&ctx, subscriber, max_held)? else { break };
                    if keep {
                        held.push(sample);
                    }
                }
            }
            Op::Release(Who::A) => held_a.clear(),
            Op::Release(Who::B) => held_b.clear(),
            Op::Wait(who) => {
                let (subscriber, held) = match who {
                    Who::A => (&a, held_a.len()),
                    Who::B => (&b, held_b.len()),
                };
                if held < max_held as usize {
                    let timeout = Some(Duration::from_millis(1));
                    match subscriber.receive_with(&mut Blocking::new(), timeout) {
                        Ok(sample) => ctx.check_sample::<V>(&sample)?,
                        Err(ReceiveError::TimedOut(_)) => {}
                        Err(e) => return Err(fail(format!("receive_with: {e}"))),
                    }
                }
            }
            Op::ClaimPublisher(count) => match topic.publisher() {
                Ok(publisher) => {
                    publisher.set_block_timeout(BLOCK_TIMEOUT);
                    for _ in 0..count {
                        send_one(&ctx, &publisher, 0, &config)?;
                    }
                    let counts = publisher.block_counts();
                    prop_assert!(counts.is_consistent(), "{:?}", counts);
                }
                Err(e) => ctx.check_connect_error(&e, false)?,
            },
            Op::ClaimSubscriber(count) => match topic.subscriber() {
                Ok(subscriber) => take(&ctx, &subscriber, count, max_held)?,
                Err(e) => ctx.check_connect_error(&e, false)?,
            },
            Op::Reopen(count) => reopen::<V>(&ctx, count)?,
            Op::Discover => discover(&ctx)?,
            Op::Count => {
                prop_assert!(p0.subscribers() <= SUBSCRIBERS);
                let _ = (a.drops(), b.drops());
                let counts = p0.block_counts();
                prop_assert!(counts.is_consistent(), "{:?}", counts);
                // An inline loan is lent in the loan itself: it takes no block.
                let blocks = if V::INLINE { 0 } else { loans.len() as u64 };
                prop_assert_eq!(counts.loaned, blocks, "{:?}", counts);
            }
        }
        ctx.check_writes(op)?;
    }

    drop(loans);
    drop(held_a);
    drop(held_b);
    let counts = p0.block_counts();
    prop_assert!(counts.is_consistent() && counts.loaned == 0, "{:?}", counts);
    if protect {
        isolated_subscriber_keeps_receiving(&ctx, &p0, &a, &b)?;
    } else {
        // What is still queued is received and checked too.
        drain(&ctx, &a, max_held)?;
        drain(&ctx, &b, max_held)?;
    }
    Ok(())
}

/// The topic opened again through the node: an intact one must open; a publisher (if its
/// payload fits the budget) and a subscriber are made on it and used.
fn reopen<V: Value>(ctx: &Ctx<'_>, count: u8) -> Result<(), TestCaseError> {
    let path = ctx.env.file(&format!("topic.{}", ctx.service));
    let topic = match ctx.env.node.topic::<V>(&ctx.service).open() {
        Ok(topic) => topic,
        Err(e) => {
            ctx.env.tally.count("refused opens");
            prop_assert!(
                ctx.changed.get().headers || !path.exists(),
                "an intact topic failed to open: {}",
                e
            );
            return Ok(());
        }
    };
    let config = topic.config();
    if !ctx.changed.get().headers {
        prop_assert_eq!(config, ctx.shape.config());
    }
    let block = 16 + size_of::<V>() as u64 * u64::from(config.max_slice_len);
    let blocks = u64::from(config.max_loans)
        + u64::from(config.history)
        + u64::from(config.max_subscribers)
            * (u64::from(config.subscriber_capacity) + u64::from(config.max_held));
    if blocks * block <= PAYLOAD_BUDGET {
        match topic.publisher() {
            Ok(publisher) => {
                publisher.set_block_timeout(BLOCK_TIMEOUT);
                for _ in 0..count {
                    send_one(ctx, &publisher, 0, &config)?;
                }
                let counts = publisher.block_counts();
                prop_assert!(counts.is_consistent(), "{:?}", counts);
            }
            Err(e) => ctx.check_connect_error(&e, true)?,
        }
    }
    match topic.subscriber() {
        Ok(subscriber) => take(ctx, &subscriber, count + 1, config.max_held)?,
        Err(e) => ctx.check_connect_error(&e, true)?,
    }
    Ok(())
}

/// Discovery lists the directory and inspects the topic, whatever its bytes; an intact
/// header is read back with the topic's settings and the slots its role words hold.
fn discover(ctx: &Ctx<'_>) -> Result<(), TestCaseError> {
    let root = Some(ctx.env.root.as_path());
    let listed = segments(root).map_err(|e| fail(format!("segments: {e}")))?;
    let name = format!("{}.topic.{}", ctx.env.node.namespace(), ctx.service);
    let path = ctx.env.file(&format!("topic.{}", ctx.service));
    let found = listed.iter().find(|entry| entry.segment.name.as_str() == name);
    prop_assert_eq!(found.is_some(), path.exists(), "segments() and the directory disagree");
    let name = SegmentName::new(&name).map_err(fail)?;
    let inspection = match inspect(root, &name) {
        Ok(inspection) => inspection,
        // Removed by a reopened topic's drop once no role word named a live holder.
        Err(_) if !path.exists() => return Ok(()),
        Err(e) => return Err(fail(format!("inspect: {e}"))),
    };
    if ctx.changed.get().headers || !path.exists() {
        return Ok(());
    }
    prop_assert_eq!(&inspection.entry.verdict, &Verdict::Alive);
    let Some(topic) = inspection.topic else {
        return Err(fail("inspect could not read an intact topic"));
    };
    prop_assert_eq!(topic.config, ctx.shape.config());
    ctx.env.tally.count("intact topics inspected");
    let held = |at: &dyn Fn(usize) -> u64, count: usize| -> Result<Vec<usize>, TestCaseError> {
        let mut held = Vec::new();
        for slot in 0..count {
            if ctx.control_word(at(slot))? != 0 {
                held.push(slot);
            }
        }
        Ok(held)
    };
    let publishers: Vec<usize> = topic.publishers.iter().map(|p| p.peer.slot).collect();
    let subscribers: Vec<usize> = topic.subscribers.iter().map(|s| s.peer.slot).collect();
    prop_assert_eq!(publishers, held(&|p| ctx.mirror.publisher(p), PUBLISHERS)?);
    prop_assert_eq!(subscribers, held(&|s| ctx.mirror.subscriber(s), SUBSCRIBERS)?);
    Ok(())
}

/// The isolation property's end: `b`, whose words no mutation touched, receives every sample
/// sent from now on, in order, with no drop (drop-oldest); under block or reject a send may
/// fail for `a` or another corrupted slot, but what is sent reaches `b`.
fn isolated_subscriber_keeps_receiving<V: Value>(
    ctx: &Ctx<'_>,
    p0: &Publisher<V>,
    a: &Subscriber<V>,
    b: &Subscriber<V>,
) -> Result<(), TestCaseError> {
    let max_held = ctx.shape.max_held;
    drain(ctx, a, max_held)?;
    drain(ctx, b, max_held)?;
    let drops = b.drops();
    let policy = ctx.shape.overflow;
    let mut delivered = 0;
    for _ in 0..2 * ctx.shape.capacity {
        let value = V::of(ctx.fresh());
        let mut loan = p0.loan().map_err(|e| fail(format!("loan with none out: {e}")))?;
        *loan = value;
        match p0.send(loan) {
            Ok(_) => {
                let got = b.receive().map_err(fail)?.map(|sample| *sample);
                prop_assert_eq!(got, Some(value), "the isolated subscriber missed a sample");
                ctx.env.tally.count("samples reaching the isolated subscriber");
                delivered += 1;
            }
            Err(PublishError::SubscriberFull) if policy == Overflow::Reject => {}
            Err(PublishError::Timeout(_)) if policy == Overflow::Block => {}
            Err(e) => return Err(fail(format!("send under {policy:?}: {e}"))),
        }
        prop_assert!(b.receive().map_err(fail)?.is_none(), "a sample nobody sent reached b");
        drain(ctx, a, max_held)?;
    }
    if policy == Overflow::DropOldest {
        prop_assert_eq!(delivered, 2 * ctx.shape.capacity);
        prop_assert_eq!(b.drops(), drops, "the isolated subscriber counted drops");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------------------------

/// Runs the topic property `name` over samples of `V` in a fork-mode child, `ci_cases` cases
/// in CI.
fn property<V: Value>(name: &'static str, property: &str, protect: bool, ci_cases: u32) {
    let dir = RunDir::new(property);
    let env = Env::new(dir.path());
    let tally = run_property(name, &dir, COUNTS, ci_cases, 1024, &case(), |case| {
        run::<V>(&env, &case, protect)
    });
    // The run reached what it is for (a few per cent of the cases suffice for each). Hostile
    // samples are what the inline runs are for; in a block topic only payload bytes (never
    // written under `protect`) make one, and too rarely to require.
    let mut unreachable =
        vec![if protect { "refused opens" } else { "samples reaching the isolated subscriber" }];
    if !V::INLINE {
        unreachable.push("hostile samples");
    }
    for what in COUNTS.iter().filter(|what| !unreachable.contains(what)) {
        assert!(tally.get(what) > 0, "no case reached {what}: {tally}");
    }
}

#[test]
fn hostile_bytes_in_a_live_topic_give_errors_or_correct_behaviour() {
    property::<Wide>(
        "hostile_bytes_in_a_live_topic_give_errors_or_correct_behaviour",
        "hostile-topic",
        false,
        CI_CASES,
    );
}

#[test]
fn a_subscriber_whose_words_are_intact_keeps_receiving_whatever_else_is_corrupted() {
    property::<Wide>(
        "a_subscriber_whose_words_are_intact_keeps_receiving_whatever_else_is_corrupted",
        "hostile-isolation",
        true,
        CI_CASES,
    );
}

/// The first property over a topic of `u64`s, whose samples travel inline in the queue
/// slots: hostile words in a slot (a forged inline word, a forged block word, any line words)
/// give errors or wrong values of `u64`, never a crash, a hang or a value read from outside.
#[test]
fn hostile_bytes_in_an_inline_topic_give_errors_or_wrong_values_never_ub() {
    property::<u64>(
        "hostile_bytes_in_an_inline_topic_give_errors_or_wrong_values_never_ub",
        "hostile-topic-inline",
        false,
        CI_CASES,
    );
}

/// The isolation property over inline samples: whatever is written into the other
/// subscriber's slots (their line words too), `b` receives exactly the values sent, in order.
#[test]
fn an_inline_subscriber_whose_words_are_intact_keeps_receiving_whatever_else_is_corrupted() {
    property::<u64>(
        "an_inline_subscriber_whose_words_are_intact_keeps_receiving_whatever_else_is_corrupted",
        "hostile-isolation-inline",
        true,
        CI_CASES,
    );
}

/// Found by the properties: a peer rewrites the value queued in a full queue to name the
/// block being sent. The send evicts it and releases that block before the send is done: it
/// went on the free list twice (and was loaned twice: two `&mut` to one block), or onto the
/// free list while another subscriber, whose queue nobody touched, still held it (its sample
/// could be overwritten under it).
#[test]
fn a_forged_queue_entry_naming_the_block_being_sent_does_not_free_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Node::builder("forged").namespace("forged").root(dir.path()).create().unwrap();
    let shape = Shape {
        capacity: 1,
        max_held: 1,
        max_loans: 2,
        history: 0,
        overflow: Overflow::DropOldest,
    };
    let topic = node
        .topic::<Wide>("t")
        .max_publishers(PUBLISHERS as u32)
        .max_subscribers(SUBSCRIBERS as u32)
        .subscriber_capacity(shape.capacity)
        .max_held(shape.max_held)
        .max_loans(shape.max_loans)
        .create()
        .unwrap();
    let publisher = topic.publisher().unwrap();
    let (a, b) = (topic.subscriber().unwrap(), topic.subscriber().unwrap());
    assert_eq!(publisher.subscribers(), 2);
    publisher.send_copy([1; 8]).unwrap(); // both queues (capacity 1) are full
    assert_eq!(b.receive().unwrap().map(|sample| *sample), Some([1; 8])); // b's is empty again
    let mut loan = publisher.loan().unwrap();
    *loan = [0xfeed; 8];
    let open = |name: &str| {
        let path = dir.path().join(format!("shmlane.forged.topic.{name}"));
        File::options().read(true).write(true).open(path).unwrap()
    };
    let (control, payload) = (open("t"), open("t.p0.g1"));
    let word = |file: &File, at: u64| Ctx::word(file, at).unwrap();
    let loaned = (0..shape.blocks())
        .find(|block| word(&payload, BLOCKS_AT + block * BLOCK_SIZE + 16) == 0xfeed)
        .expect("the loaned block in the payload segment");
    // a's queue: position 0 is stamped; its value now names the loaned block.
    let (queue, capacity, stride) = Mirror::new(&shape).queues[A][0];
    let words = queue_words(capacity, stride);
    assert_eq!(word(&control, queue + words.slots), 1);
    let forged = 1u64 << 32 | loaned;
    control.write_all_at(&forged.to_ne_bytes(), queue + words.slots + words.value).unwrap();
    assert_eq!(publisher.send(loan).unwrap(), 2);
    let held = b.receive().unwrap().expect("b's sample");
    assert_eq!(*held, [0xfeed; 8]);
    let counts = publisher.block_counts();
    assert!(counts.is_consistent(), "{counts:?}");
    let (mut first, mut second) = (publisher.loan().unwrap(), publisher.loan().unwrap());
    assert!(!std::ptr::eq(&*first, &*second), "one block loaned twice");
    (*first, *second) = ([0xdead; 8], [0xdead; 8]);
    assert_eq!(*held, [0xfeed; 8], "a block b holds was loaned out and overwritten");
    drop((first, second, held, a));
}

/// The settings of the targeted tests' topics.
const TARGETED: Shape =
    Shape { capacity: 4, max_held: 1, max_loans: 2, history: 0, overflow: Overflow::DropOldest };

/// A targeted test's topic "t" of namespace `namespace` ([`TARGETED`] settings) in a
/// directory of its own, with one publisher serving one subscriber.
struct Targeted<V: Value> {
    subscriber: shmlane::Subscriber<V>,
    publisher: shmlane::Publisher<V>,
    _node: Node,
    dir: tempfile::TempDir,
}

fn targeted<V: Value>(namespace: &str) -> Targeted<V> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Node::builder(namespace).namespace(namespace).root(dir.path()).create().unwrap();
    let topic = node
        .topic::<V>("t")
        .max_publishers(PUBLISHERS as u32)
        .max_subscribers(SUBSCRIBERS as u32)
        .subscriber_capacity(TARGETED.capacity)
        .max_held(TARGETED.max_held)
        .max_loans(TARGETED.max_loans)
        .create()
        .unwrap();
    let publisher = topic.publisher().unwrap();
    let subscriber = topic.subscriber().unwrap();
    assert_eq!(publisher.subscribers(), 1);
    Targeted { subscriber, publisher, _node: node, dir }
}

/// Segment `name` of namespace `namespace` in `dir`, to write into.
fn open_segment(dir: &Path, namespace: &str, name: &str) -> File {
    let path = dir.join(format!("shmlane.{namespace}.topic.{name}"));
    File::options().read(true).write(true).open(path).unwrap()
}

/// Where the slot of `position` of subscriber `A`'s submission queue from publisher 0 is.
fn slot_at(shape: &Shape, position: u64) -> u64 {
    let (queue, capacity, stride) = Mirror::new(shape).queues[A][0];
    let words = queue_words(capacity, stride);
    queue + words.slots + position % capacity * words.slot_size
}

/// Queue descriptors rewritten to claim another slot size are refused when a subscriber
/// attaches, before any slot is read with the wrong stride: a submission queue claiming
/// 64-byte slots where the layout gives 16 (its region is too small for them), and a
/// completion queue claiming 16-byte slots where the layout gives 64 (its region would hold
/// them: the facade checks the stride against its layout). The subscriber already connected
/// is untouched.
#[test]
fn queue_descriptors_rewritten_to_another_stride_are_refused_on_attach() {
    let t = targeted::<u64>("stride");
    let shape = TARGETED;
    let control = open_segment(t.dir.path(), "stride", "t");
    let topic = t._node.topic::<u64>("t").open().unwrap();
    // Publisher 0's queues to the free subscriber slot B.
    let [(submission, _, stride), (completion, _, _)] = Mirror::new(&shape).queues[B];
    assert_eq!(stride, SUBMISSION_STRIDE);
    let (size, align) = (shmlane_queue::raw::ELEMENT_SIZE_AT, shmlane_queue::raw::ELEMENT_ALIGN_AT);
    let element =
        |queue: u64| [Ctx::word(&control, queue + size), Ctx::word(&control, queue + align)];
    let write = |queue: u64, bytes: u64| {
        for at in [size, align] {
            control.write_all_at(&bytes.to_ne_bytes(), queue + at).unwrap();
        }
    };
    for (queue, slot, forged) in [(submission, 16, 64), (completion, 64, 16)] {
        assert_eq!(element(queue).map(Result::unwrap), [slot, slot]);
        write(queue, forged);
        let refused = topic.subscriber().unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("corrupt") || message.contains("region"), "{message}");
        write(queue, slot);
    }
    t.publisher.send_copy(7).unwrap();
    assert_eq!(t.subscriber.receive().unwrap().map(|s| *s), Some(7));
    assert!(topic.subscriber().is_ok(), "the restored descriptors attach");
}

/// A slot whose stamp carries `INLINE_FLAG` holds an inline entry, and a queue word of payload
/// generation 0 reads as one too (`QueuedBlock::is_inline`), whatever its block bits. In a
/// topic whose samples take payload blocks, both forged into queued slots (their value words
/// garbage) are neither read as a block nor as an inline sample: each is skipped and counted
/// as dropped, and the samples queued behind them, and those sent later, arrive as sent.
#[test]
fn a_forged_inline_word_in_a_block_topic_is_skipped_never_read() {
    let t = targeted::<Wide>("inl");
    let (subscriber, publisher, dir) = (&t.subscriber, &t.publisher, &t.dir);
    let shape = TARGETED;
    for value in 1..=3 {
        publisher.send_copy(Wide::of(value)).unwrap();
    }
    let control = open_segment(dir.path(), "inl", "t");
    let words = queue_words(u64::from(shape.capacity), SUBMISSION_STRIDE);
    assert_eq!(Ctx::word(&control, slot_at(&shape, 2)).unwrap(), 3, "position 2's stamp");
    // Position 0: flagged inline, its value word garbage; position 1: generation 0, block 5.
    let at = slot_at(&shape, 0);
    control.write_all_at(&(1 | INLINE_FLAG).to_ne_bytes(), at).unwrap();
    control.write_all_at(&0xbad_u64.to_ne_bytes(), at + LINE_AT).unwrap();
    control.write_all_at(&5_u64.to_ne_bytes(), slot_at(&shape, 1) + words.value).unwrap();
    assert_eq!(subscriber.receive().unwrap().map(|s| *s), Some(Wide::of(3)));
    assert_eq!(subscriber.drops(), 2, "the forged words were not counted as dropped");
    assert!(subscriber.receive().unwrap().is_none(), "a sample nobody sent");
    for value in 10..10 + 2 * u64::from(shape.capacity) {
        publisher.send_copy(Wide::of(value)).unwrap();
        assert_eq!(subscriber.receive().unwrap().map(|s| *s), Some(Wide::of(value)));
    }
    assert_eq!(subscriber.drops(), 2);
    let counts = publisher.block_counts();
    assert!(counts.is_consistent() && counts.loaned == 0, "{counts:?}");
}

/// In a topic whose samples travel inline, a forged block word is read as the block it names
/// (a value its publisher wrote there, never the slot's line words) or, naming no payload
/// segment, skipped and counted as dropped; no crash, and the samples queued behind it, and
/// those sent later, arrive as sent.
#[test]
fn a_forged_block_word_in_an_inline_topic_reads_that_block_or_is_skipped() {
    let t = targeted::<u64>("blk");
    let (subscriber, publisher, dir) = (&t.subscriber, &t.publisher, &t.dir);
    let shape = TARGETED;
    // A slice takes a block whatever the size of `T`: position 0, a block that holds 77.
    let mut slice = publisher.loan_slice(1).unwrap();
    slice[0] = 77;
    publisher.send_slice(slice).unwrap();
    assert_eq!(subscriber.receive().unwrap().map(|s| *s), Some(77));
    // Positions 1 to 3, inline.
    for value in 1..=3 {
        publisher.send_copy(value).unwrap();
    }
    let control = open_segment(dir.path(), "blk", "t");
    let payload = open_segment(dir.path(), "blk", "t.p0.g1");
    let block = (0..shape.blocks())
        .find(|block| Ctx::word(&payload, BLOCKS_AT + block * BLOCK_SIZE + 16).unwrap() == 77)
        .expect("the slice's block in the payload segment");
    let words = queue_words(u64::from(shape.capacity), SUBMISSION_STRIDE);
    let stamp = Ctx::word(&control, slot_at(&shape, 3)).unwrap();
    assert_eq!(stamp, 4 | INLINE_FLAG, "position 3's stamp, flagged inline");
    assert_eq!(Ctx::word(&control, slot_at(&shape, 3) + LINE_AT).unwrap(), 3, "its value");
    // Position 1 names the slice's block (generation 1), position 2 a generation no publisher
    // has (its payload segment does not exist); their stamps lose the inline flag.
    for (position, generation) in [(1, 1u64), (2, 9)] {
        let forged = generation << 32 | block;
        let at = slot_at(&shape, position);
        control.write_all_at(&(position + 1).to_ne_bytes(), at).unwrap();
        control.write_all_at(&forged.to_ne_bytes(), at + words.value).unwrap();
    }
    let mut got = Vec::new();
    while let Some(sample) = subscriber.receive().unwrap() {
        got.push((*sample, sample.len(), sample.read()));
        assert!(got.len() <= 3, "{got:?}");
    }
    assert_eq!(got, [(77, 1, 77), (3, 1, 3)]);
    assert_eq!(subscriber.drops(), 1, "the word naming no segment was not counted as dropped");
    for value in 10..10 + 2 * u64::from(shape.capacity) {
        publisher.send_copy(value).unwrap();
        assert_eq!(subscriber.receive().unwrap().map(|s| *s), Some(value));
    }
    assert_eq!(subscriber.drops(), 1);
    let counts = publisher.block_counts();
    assert!(counts.is_consistent() && counts.loaned == 0, "{counts:?}");
}

/// A block's length word is the publisher's to write, and a subscriber reads it the first time
/// it is asked: one out of range (0, beyond the pool's `max_slice_len`, anything) reads as the
/// nearest valid length, so the slice stays inside the block; one in range is taken as sent.
/// Read once, it stays: a length word changed afterwards does not change the sample's length
/// (`let n = s.len(); s.as_slice()[n - 1]` cannot panic). (A slice takes a block whatever the
/// size of `T`, so `u64` elements do here.)
#[test]
fn a_corrupt_length_word_reads_as_the_nearest_valid_length_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Node::builder("length").namespace("length").root(dir.path()).create().unwrap();
    let topic = node.topic::<u64>("t").max_slice_len(4).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let subscriber = topic.subscriber().unwrap();
    assert_eq!(publisher.subscribers(), 1);
    let path = dir.path().join("shmlane.length.topic.t.p0.g1");
    let payload = File::options().read(true).write(true).open(path).unwrap();
    let cases = [(0, 1), (2, 2), (4, 4), (5, 4), (u64::MAX, 4), (1 << 63, 4)];
    for (i, (written, read)) in cases.into_iter().enumerate() {
        let first = 100 + i as u64;
        let mut loan = publisher.loan_slice(3).unwrap();
        loan.copy_from_slice(&[first, 8, 9]);
        publisher.send_slice(loan).unwrap();
        let sample = subscriber.receive().unwrap().expect("the sample");
        // The block whose first element is `first`: its length word is 16 bytes before it.
        let elements = (0..64)
            .map(|block| BLOCKS_AT + block * BLOCK_SIZE + 16)
            .find(|&at| Ctx::word(&payload, at).unwrap() == first)
            .expect("the sent block in the payload segment");
        payload.write_all_at(&written.to_ne_bytes(), elements - 16).unwrap();
        let n = sample.len();
        assert_eq!(n, read, "length word {written}");
        assert_eq!(sample.as_slice().len(), read);
        assert_eq!(sample.as_slice()[0], first);
        for later in [0, 1, 4, u64::MAX] {
            payload.write_all_at(&later.to_ne_bytes(), elements - 16).unwrap();
            assert_eq!(sample.len(), n, "length word {written}, then {later}");
            assert_eq!(sample.as_slice()[n - 1], sample.read_all()[n - 1]);
        }
        assert_eq!(sample.read(), first);
    }
}

/// `receive` never waits for a payload segment: one that is not ready (a hostile writer set
/// its header back to `Initializing`, its creator alive) is skipped at once, each sample
/// naming it counted as dropped, instead of each costing the default 500 ms open timeout.
#[test]
fn receive_skips_a_payload_segment_that_is_not_ready_without_waiting() {
    const QUEUED: u64 = 32;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Node::builder("stall").namespace("stall").root(dir.path()).create().unwrap();
    let topic = node.topic::<Wide>("t").subscriber_capacity(QUEUED as u32).create().unwrap();
    let publisher = topic.publisher().unwrap();
    let subscriber = topic.subscriber().unwrap();
    assert_eq!(publisher.subscribers(), 1);
    for value in 0..QUEUED {
        publisher.send_copy([value; 8]).unwrap();
    }
    // The subscriber has not mapped the payload segment yet: make it look half-created.
    let path = dir.path().join("shmlane.stall.topic.t.p0.g1");
    let payload = File::options().read(true).write(true).open(path).unwrap();
    const INIT_STATE_AT: u64 = 56;
    payload.write_all_at(&1u32.to_ne_bytes(), INIT_STATE_AT).unwrap();
    let started = std::time::Instant::now();
    let mut calls = 0;
    while subscriber.drops() < QUEUED {
        let call = std::time::Instant::now();
        assert!(subscriber.receive().unwrap().is_none(), "a sample from a not-ready segment");
        assert!(call.elapsed() < Duration::from_millis(100), "receive waited {:?}", call.elapsed());
        calls += 1;
        assert!(calls <= QUEUED, "{calls} calls and {} drops", subscriber.drops());
    }
    println!("{QUEUED} unreadable samples skipped in {calls} calls, {:?}", started.elapsed());
    // Ready again: later samples arrive (the segment is mapped on the next sample).
    payload.write_all_at(&2u32.to_ne_bytes(), INIT_STATE_AT).unwrap();
    publisher.send_copy([7; 8]).unwrap();
    assert_eq!(subscriber.receive().unwrap().map(|s| *s), Some([7; 8]));
}

/// The payload settings in a topic's control segment are another process's word: rewritten to
/// the maximum `check` allows (`max_slice_len` 2^32 - 1, `max_loans` 65536), they would make
/// the next publisher create a payload segment of 2^51 bytes. The opener refuses settings
/// beyond its own `max_pool_bytes` before anything is allocated, and the topic keeps working
/// for those already in it.
#[test]
fn payload_settings_rewritten_to_the_maximum_are_refused_before_any_allocation() {
    const MAX_LOANS_AT: u64 = TOPIC_HEADER_AT + 64;
    const MAX_SLICE_LEN_AT: u64 = TOPIC_HEADER_AT + 68;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Node::builder("huge").namespace("huge").root(dir.path()).create().unwrap();
    let topic = node.topic::<Wide>("t").create().unwrap();
    let publisher = topic.publisher().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let control = File::options()
        .read(true)
        .write(true)
        .open(dir.path().join("shmlane.huge.topic.t"))
        .unwrap();
    control.write_all_at(&u32::MAX.to_ne_bytes(), MAX_SLICE_LEN_AT).unwrap();
    control.write_all_at(&65536u32.to_ne_bytes(), MAX_LOANS_AT).unwrap();
    let rss = shmlane_reliability::rss_kib();
    let reopened = node.topic::<Wide>("t").open();
    assert!(
        matches!(
            &reopened,
            Err(shmlane::TopicError::InvalidConfig(shmlane::ConfigError::PoolTooLarge {
                max_pool_bytes: shmlane::DEFAULT_MAX_POOL_BYTES,
                ..
            }))
        ),
        "{reopened:?}"
    );
    // An opener that agreed to any size opens it (nothing is allocated until a publisher of
    // it is created).
    let agreed = node.topic::<Wide>("t").max_pool_bytes(u64::MAX).open();
    assert!(agreed.is_ok(), "{agreed:?}");
    drop(agreed);
    if let (Some(before), Some(after)) = (rss, shmlane_reliability::rss_kib()) {
        assert!(after < before + 64 * 1024, "resident memory grew from {before} to {after} KiB");
    }
    // Those already in keep their own private copy of the settings.
    publisher.send_copy([5; 8]).unwrap();
    assert_eq!(subscriber.receive().unwrap().map(|s| *s), Some([5; 8]));
    let no_files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(no_files <= 4, "{no_files} files: something was created");
}
