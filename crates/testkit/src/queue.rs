//! Shared queues under test: [`QueueSegment`], a segment holding one queue and the control
//! words a test shares with its child processes, and [`RawQueue`], direct access to a queue's
//! words where its kind's `raw_layout` says they are, to watch a peer's progress or to play a
//! crashed or hostile peer by writing them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmlane_queue::QueueError;
use shmlane_queue::raw::{DESCRIPTOR_LEN, RawEntries, RawLayout};
use shmlane_segment::{Carver, Fingerprint, Offset, OffsetError, Region, RegionLayout, Segment};

/// Deadline for a whole stream of values between processes (debug builds on two loaded cores).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(90);

/// A test's segment: one queue's region, then a cache line of control words (progress
/// counters, flags) that the test and its child processes share.
#[derive(Debug, Clone, Copy)]
pub struct QueueSegment {
    /// The queue's region.
    pub queue: Region,
    /// The control words.
    pub control: Region,
    /// Bytes of the segment.
    pub size: u64,
    /// The segment's fingerprint: names the test and the queue's capacity.
    pub fingerprint: Fingerprint,
}

impl QueueSegment {
    /// The segment of test `test` for a queue of `capacity` slots laid out as `queue` (its
    /// kind's `layout`).
    pub fn new(test: &str, capacity: u64, queue: RegionLayout) -> QueueSegment {
        let mut carver = Carver::new();
        let queue = carver.place(queue).expect("place the queue");
        let control = carver.place(RegionLayout { size: 64, align: 64 }).expect("place controls");
        let fingerprint = Fingerprint::new(test).with_u64(capacity);
        QueueSegment { queue, control, size: carver.total_size(), fingerprint }
    }

    /// Creates the segment `name`, `init` writing the queue into its region.
    pub fn create(
        &self,
        name: &str,
        init: impl FnOnce(&Segment, Region) -> Result<(), QueueError>,
    ) -> Segment {
        Segment::builder(name)
            .size(self.size)
            .fingerprint(self.fingerprint)
            .create_with(|segment| Ok(init(segment, self.queue)?))
            .expect("create the queue segment")
    }

    /// Opens the segment `name` another process created.
    pub fn open(&self, name: &str) -> Segment {
        let builder = Segment::builder(name).fingerprint(self.fingerprint);
        builder.open().expect("open the parent's queue segment")
    }

    /// Opens the segment `name` read-only.
    pub fn open_read_only(&self, name: &str) -> Segment {
        let builder = Segment::builder(name).fingerprint(self.fingerprint);
        builder.open_read_only().expect("open the queue segment read-only")
    }

    /// Control word `index` of `segment`.
    pub fn control<'s>(&self, segment: &'s Segment, index: u64) -> &'s AtomicU64 {
        let offset = self.control.offset_of::<AtomicU64>(index * 8).expect("a control word");
        segment.get(offset).expect("the control words")
    }
}

/// The words of one queue of a segment.
#[derive(Debug, Clone, Copy)]
pub struct RawQueue<'s> {
    segment: &'s Segment,
    base: u64,
    capacity: u64,
    layout: RawLayout,
}

impl<'s> RawQueue<'s> {
    /// The queue of `capacity` slots in `region` of `segment`, its words where `layout` (the
    /// kind's `raw_layout` for that capacity) puts them.
    pub fn new(segment: &'s Segment, region: Region, capacity: u64, layout: RawLayout) -> Self {
        assert!(layout.size <= region.len, "{layout:?} does not fit in {region:?}");
        RawQueue { segment, base: region.offset, capacity, layout }
    }

    /// The word at `at` from the start of the queue's region.
    fn word(&self, at: u64) -> &'s AtomicU64 {
        self.segment.get(Offset::new(self.base + at)).expect("a word of the queue's region")
    }

    /// `head`.
    pub fn head(&self) -> &'s AtomicU64 {
        self.word(self.layout.head)
    }

    /// `tail`.
    pub fn tail(&self) -> &'s AtomicU64 {
        self.word(self.layout.tail)
    }

    /// Stores `head` and `tail` (a peer moving both indices).
    pub fn set_indices(&self, head: u64, tail: u64) {
        self.head().store(head, Ordering::Release);
        self.tail().store(tail, Ordering::Release);
    }

    /// The SPSC producer's role word.
    pub fn producer_role(&self) -> &'s AtomicU64 {
        self.word(self.layout.roles.expect("an SPSC queue")[0])
    }

    /// The SPSC consumer's role word.
    pub fn consumer_role(&self) -> &'s AtomicU64 {
        self.word(self.layout.roles.expect("an SPSC queue")[1])
    }

    /// The overflowing queue's `seen`.
    pub fn seen(&self) -> &'s AtomicU64 {
        self.word(self.layout.seen.expect("an overflowing queue"))
    }

    /// Where MPMC entry `entry` starts.
    fn entry_at(&self, entry: u64) -> u64 {
        let RawEntries { at, size, count, .. } = self.layout.entries.expect("an MPMC queue");
        assert!(entry < count, "entry {entry} of {count}");
        at + entry * size
    }

    /// MPMC entry `entry`'s role word (producers first, then consumers).
    pub fn role(&self, entry: u64) -> &'s AtomicU64 {
        self.word(self.entry_at(entry))
    }

    /// MPMC entry `entry`'s announced position + 1.
    pub fn announce(&self, entry: u64) -> &'s AtomicU64 {
        let announcement = self.layout.entries.expect("an MPMC queue").announcement;
        self.word(self.entry_at(entry) + announcement)
    }

    /// The slot that holds `position`.
    pub fn slot_of(&self, position: u64) -> u64 {
        position & (self.capacity - 1)
    }

    fn slot_at(&self, position: u64) -> u64 {
        self.layout.slots + self.slot_of(position) * self.layout.slot_size
    }

    /// The sequence word (SPSC and overflow: the stamp) of the slot of `position`.
    pub fn stamp(&self, position: u64) -> &'s AtomicU64 {
        self.word(self.slot_at(position))
    }

    /// Every slot's sequence word, slot 0 first.
    pub fn stamps(&self) -> Vec<u64> {
        (0..self.capacity).map(|slot| self.stamp(slot).load(Ordering::Acquire)).collect()
    }

    /// Writes `value` into the slot of `position` (by bytes: an SPSC value is no atomic).
    fn write_value(&self, position: u64, value: u64) {
        let at = self.base + self.slot_at(position) + self.layout.value;
        self.segment.write_bytes(at, &value.to_ne_bytes()).expect("write a slot's value");
    }

    /// What an SPSC or overflow producer killed between its stamp store and its `tail` store
    /// leaves behind: `value` published at `position`, `tail` not moved.
    pub fn stamp_without_tail(&self, position: u64, value: u64) {
        self.write_value(position, value);
        self.stamp(position).store(position + 1, Ordering::Release);
    }

    /// A copy of the descriptor.
    pub fn descriptor(&self) -> [u8; DESCRIPTOR_LEN as usize] {
        let mut bytes = [0; DESCRIPTOR_LEN as usize];
        self.segment.read_bytes(self.base, &mut bytes).expect("read the descriptor");
        bytes
    }

    /// Writes `bytes` at `at` from the start of the region (a descriptor field, say).
    pub fn write_bytes(&self, at: u64, bytes: &[u8]) {
        self.segment.write_bytes(self.base + at, bytes).expect("write the queue's region");
    }
}

/// Values a producer racing its consumer pushes between waits for the consumer to catch up.
pub const CATCH_UP_EVERY: u64 = 8_192;

/// The pace of a producer racing its consumer for the oldest values of an overflowing queue of
/// `capacity` slots, pushing `count` values: a pause after some values (fixed pseudo-random),
/// so the consumer wins some races for the oldest value even against capacity 1; halfway, a
/// wait for the consumer's first pop, so pops happen whatever the scheduling; and every
/// [`CATCH_UP_EVERY`] values a wait until the queue is at most half full, so the ring goes from
/// nearly empty to overflowing again and pops race evictions from every fill level.
#[derive(Debug, Clone, Copy)]
pub struct RacePace {
    /// Values the producer pushes.
    pub count: u64,
    /// Slots of the queue.
    pub capacity: u64,
    /// When a wait gives up.
    pub deadline: Instant,
}

impl RacePace {
    /// Paces the producer after it pushed `value`; `popped` is how many values the consumer
    /// took, `len` how many the queue holds. `Err` if a wait reaches the deadline.
    pub fn after(
        &self,
        value: u64,
        popped: impl Fn() -> u64,
        len: impl Fn() -> u64,
    ) -> Result<(), String> {
        let pause = value.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58; // 0..64
        if pause < 24 {
            for _ in 0..pause * 8 {
                std::hint::spin_loop();
            }
        }
        if value == self.count / 2 {
            crate::spin_until("the consumer's first pop", self.deadline, || popped() > 0)?;
        }
        if value % CATCH_UP_EVERY == CATCH_UP_EVERY - 1 {
            let half_full = || len() <= self.capacity / 2;
            crate::spin_until("the consumer to catch up", self.deadline, half_full)?;
        }
        Ok(())
    }
}

/// `(head, tail)` pairs no queue of 8 slots can have: more queued than it holds, `head` further
/// past `tail` than a dead producer can leave, one of them wrapped, or positions at or beyond
/// the 2^63 bound no queue reaches.
pub const IMPOSSIBLE_INDICES: [(u64, u64); 9] = [
    (0, 9),                       // more queued than the queue holds
    (100, 100 + 9),               // the same, further on
    (20, 10),                     // head further past tail than a dead producer can leave
    (20, 11),                     // the same, just beyond the capacity
    (u64::MAX - 3, 2),            // tail far behind head (a wrapped head)
    (5, u64::MAX),                // tail far ahead
    (u64::MAX - 3, u64::MAX - 1), // positions no queue reaches (2^64 values)
    (1 << 63, (1 << 63) + 2),     // likewise, just at the limit
    (u64::MAX, u64::MAX),         // likewise, empty
];

/// A corruption of a queue's descriptor: what it is, where it writes, the bytes it writes, and
/// the error `attach` must give.
pub type DescriptorCase = (&'static str, u64, Vec<u8>, QueueError);

/// The descriptor corruptions every kind of queue of 8 slots refuses alike, each with its own
/// error; `element` is the queue's (size, align) of a slot (neither 4 nor 16), and
/// `bad_region(capacity)` the error for a capacity too large for the region.
pub fn descriptor_cases(
    fingerprint: Fingerprint,
    (size, align): (u64, u64),
    bad_region: impl Fn(u64) -> QueueError,
) -> Vec<DescriptorCase> {
    use shmlane_queue::raw::{
        CAPACITY_AT, ELEMENT_ALIGN_AT, ELEMENT_SIZE_AT, FINGERPRINT_AT, MAGIC_AT, RESERVED0_AT,
        VERSION_AT,
    };
    let word = |n: u64| n.to_ne_bytes().to_vec();
    let element = |found_size, found_align| QueueError::ElementMismatch {
        size,
        align,
        found_size,
        found_align,
    };
    let version = |n: u32| n.to_ne_bytes().to_vec();
    vec![
        ("magic, one byte", MAGIC_AT + 7, b"M".to_vec(), QueueError::BadMagic),
        (
            "all zero (nothing initialised)",
            0,
            vec![0; DESCRIPTOR_LEN as usize],
            QueueError::BadMagic,
        ),
        ("version 1 (before 2)", VERSION_AT, version(1), QueueError::UnsupportedVersion(1)),
        ("version 0", VERSION_AT, version(0), QueueError::UnsupportedVersion(0)),
        ("reserved0", RESERVED0_AT, version(1), QueueError::Corrupt),
        ("capacity 0", CAPACITY_AT, word(0), QueueError::BadCapacity(0)),
        ("capacity 6", CAPACITY_AT, word(6), QueueError::BadCapacity(6)),
        ("capacity 2^33", CAPACITY_AT, word(1 << 33), QueueError::BadCapacity(1 << 33)),
        ("capacity 2^63", CAPACITY_AT, word(1 << 63), QueueError::BadCapacity(1 << 63)),
        ("capacity u64::MAX", CAPACITY_AT, word(u64::MAX), QueueError::BadCapacity(u64::MAX)),
        ("capacity 16 > region", CAPACITY_AT, word(16), bad_region(16)),
        ("capacity 2^32 > region", CAPACITY_AT, word(1 << 32), bad_region(1 << 32)),
        ("element size 4", ELEMENT_SIZE_AT, word(4), element(4, align)),
        ("element size 16", ELEMENT_SIZE_AT, word(16), element(16, align)),
        ("element align 1", ELEMENT_ALIGN_AT, word(1), element(size, 1)),
        ("element align 16", ELEMENT_ALIGN_AT, word(16), element(size, 16)),
        (
            "fingerprint",
            FINGERPRINT_AT,
            word(7),
            QueueError::FingerprintMismatch { expected: fingerprint.get(), found: 7 },
        ),
    ]
}

/// The error of `attach` in `region` for a queue whose `layout` does not fit it.
pub fn bad_region(layout: RegionLayout, region: Region) -> QueueError {
    QueueError::BadRegion {
        needed: layout.size,
        align: layout.align,
        offset: region.offset,
        len: region.len,
    }
}

impl RawQueue<'_> {
    /// For each case: writes its bytes into the descriptor, checks that `attach` refuses with
    /// the case's error, restores the descriptor and checks that `attach` succeeds again.
    pub fn check_descriptor_cases(
        &self,
        attach: impl Fn() -> Result<(), QueueError>,
        cases: Vec<DescriptorCase>,
    ) {
        let original = self.descriptor();
        for (what, at, bytes, expected) in cases {
            self.write_bytes(at, &bytes);
            assert_eq!(attach(), Err(expected), "corrupt {what}");
            self.write_bytes(0, &original);
            assert_eq!(attach(), Ok(()), "restored after {what}");
        }
    }
}

/// Checks that `attach(region)` refuses regions of `segment` that cannot hold the queue whose
/// intact descriptor starts `region`: one byte short, beyond the segment's end, and at an
/// offset whose end overflows.
pub fn check_region_refusals(
    segment: &Segment,
    region: Region,
    attach: impl Fn(Region) -> Result<(), QueueError>,
) {
    let short = Region { len: region.len - 1, ..region };
    let needed = RegionLayout { size: region.len, align: 128 };
    assert_eq!(attach(short), Err(bad_region(needed, short)), "a region one byte short");
    let outside = Region { offset: segment.len(), len: region.len };
    let overflowing = Region { offset: u64::MAX - 8, len: region.len };
    for (what, region) in [("beyond the segment", outside), ("overflowing", overflowing)] {
        assert!(
            matches!(attach(region), Err(QueueError::Offset(OffsetError::OutOfBounds { .. }))),
            "a region {what}: {:?}",
            attach(region)
        );
    }
}
