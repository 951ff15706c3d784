//! One-way streams between two processes for the `throughput` bench: a payload type per size
//! (a `#[repr(C)]` struct whose first word is the sequence number), shmlane pub/sub under
//! `Overflow::Block`, and shmlane's SPSC queue alone (with a block pool for payloads over 8
//! bytes), each as a [`Link`] of which the initiator only sends and the peer only receives.

use std::fmt::Debug;

use shmlane::{Node, Overflow, Publisher, Subscriber, Topic};
use shmlane_queue::spsc::{self, SharedSpsc};
use shmlane_segment::{BlockOffset, BlockPool, Carver, Fingerprint, Region, Segment};

use crate::pingpong::{HANG, Link, Rounds, Side, spin_until};

/// Samples queued per subscriber (shmlane), slots of the SPSC queue, and iceoryx2's
/// subscriber buffer.
pub const STREAM_CAPACITY: u32 = 256;
/// Payload sizes, bytes: one type each.
pub const SIZES: [usize; 4] = [8, 64, 1 << 10, 64 << 10];
/// Samples per `send_copies` call of the batching shmlane publisher.
pub const BATCH: usize = 16;
/// Largest payload sent by copy (`send_copy`: the whole value written); larger ones are
/// loaned and only their sequence number is written in place.
pub const BY_COPY_MAX: usize = 64;

// The throughput mode of `shmlane bench` streams the same payload types: one definition.
#[path = "../../crates/cli/src/bench/sequenced.rs"]
mod sequenced;
pub use sequenced::{Seq1K, Seq8, Seq64, Seq64K, Sequenced};

/// The shmlane topic of one payload size: one publisher (the initiator), one subscriber (the
/// peer), capacity [`STREAM_CAPACITY`], [`Overflow::Block`], the facade's defaults otherwise
/// (`max_held` 8, `max_loans` 4).
#[derive(Debug)]
pub enum ShmlaneStream {
    /// 8 bytes.
    B8(Topic<Seq8>),
    /// 64 bytes.
    B64(Topic<Seq64>),
    /// 1 KiB.
    K1(Topic<Seq1K>),
    /// 64 KiB.
    K64(Topic<Seq64K>),
}

impl ShmlaneStream {
    /// Creates (initiator) or opens (peer) topic `name` for `payload`-byte messages (one of
    /// [`SIZES`]).
    pub fn new(node: &Node, name: &str, payload: usize, side: Side) -> ShmlaneStream {
        fn open<P: Sequenced>(node: &Node, name: &str, side: Side) -> Topic<P> {
            let builder = node
                .topic::<P>(name)
                .max_publishers(1)
                .max_subscribers(1)
                .subscriber_capacity(STREAM_CAPACITY)
                .overflow(Overflow::Block);
            match side {
                Side::Initiator => builder.create(),
                Side::Echo => builder.open(),
            }
            .unwrap_or_else(|e| panic!("topic {name}: {e}"))
        }
        match payload {
            8 => ShmlaneStream::B8(open(node, name, side)),
            64 => ShmlaneStream::B64(open(node, name, side)),
            1024 => ShmlaneStream::K1(open(node, name, side)),
            65536 => ShmlaneStream::K64(open(node, name, side)),
            _ => panic!("no payload type of {payload} bytes"),
        }
    }

    /// `side`'s end: the initiator publishes (in batches of [`BATCH`] with `send_copies` if
    /// `batch`, for payloads sent by copy), the peer subscribes.
    pub fn end(&self, side: Side, batch: bool) -> Box<dyn Rounds> {
        fn end<P: Sequenced>(topic: &Topic<P>, side: Side, batch: bool) -> Box<dyn Rounds> {
            match side {
                Side::Initiator => Box::new(ShmlaneEnd::Publisher(
                    topic.publisher().expect("claim a publisher slot"),
                    (batch && size_of::<P>() <= BY_COPY_MAX).then(|| Vec::with_capacity(BATCH)),
                )),
                Side::Echo => Box::new(ShmlaneEnd::Subscriber(
                    topic.subscriber().expect("claim a subscriber slot"),
                    batch && size_of::<P>() <= BY_COPY_MAX,
                )),
            }
        }
        match self {
            ShmlaneStream::B8(topic) => end(topic, side, batch),
            ShmlaneStream::B64(topic) => end(topic, side, batch),
            ShmlaneStream::K1(topic) => end(topic, side, batch),
            ShmlaneStream::K64(topic) => end(topic, side, batch),
        }
    }
}

/// One process's end of a shmlane stream.
#[derive(Debug)]
enum ShmlaneEnd<P: Sequenced> {
    /// With a buffer for batches, if it sends in batches.
    Publisher(Publisher<P>, Option<Vec<P>>),
    /// Draining up to [`BATCH`] samples per call (`drain`), if it receives in batches.
    Subscriber(Subscriber<P>, bool),
}

impl<P: Sequenced> Link for ShmlaneEnd<P> {
    /// `send_copy` of the whole value up to [`BY_COPY_MAX`] bytes, else `loan`, the sequence
    /// number written in place, `send`; a full queue makes it wait (`Overflow::Block`).
    #[inline(always)]
    fn send(&mut self, seq: u64) {
        let ShmlaneEnd::Publisher(publisher, _) = self else {
            panic!("a subscriber does not send")
        };
        let delivered = if size_of::<P>() <= BY_COPY_MAX {
            publisher.send_copy(P::with_seq(seq))
        } else {
            let mut loan = publisher.loan().expect("loan");
            loan.set_seq(seq);
            publisher.send(loan)
        }
        .expect("send");
        assert_eq!(delivered, 1, "message {seq} reached no subscriber");
    }

    /// In batches of [`BATCH`] values by `send_copies` (one wake-up check per batch), if this
    /// end batches; else one by one.
    #[inline(always)]
    fn send_all(&mut self, first: u64, count: u64) {
        let ShmlaneEnd::Publisher(publisher, Some(batch)) = self else {
            (first..first + count).for_each(|seq| self.send(seq));
            return;
        };
        let end = first + count;
        let mut next = first;
        while next < end {
            let n = (end - next).min(BATCH as u64);
            batch.clear();
            batch.extend((next..next + n).map(P::with_seq));
            publisher.send_copies(batch).expect("send a batch");
            next += n;
        }
    }

    /// Busy-polled `receive`, the sequence number read in place (`Deref`).
    #[inline(always)]
    fn receive(&mut self, seq: u64) {
        let ShmlaneEnd::Subscriber(subscriber, _) = self else {
            panic!("a publisher does not receive")
        };
        let got = spin_until("a shmlane sample", || {
            subscriber.receive().expect("receive").map(|sample| sample.seq())
        });
        assert_eq!(got, seq, "shmlane messages lost or reordered");
    }

    /// Batches of up to [`BATCH`] by `drain` (one claim and one counter update per batch, no
    /// `Sample` per message), if this end batches; else one by one.
    #[inline(always)]
    fn receive_all(&mut self, first: u64, count: u64) {
        let ShmlaneEnd::Subscriber(subscriber, true) = self else {
            (first..first + count).for_each(|seq| self.receive(seq));
            return;
        };
        let end = first + count;
        let mut next = first;
        while next < end {
            let limit = ((end - next) as usize).min(BATCH);
            spin_until("shmlane samples", || {
                let n = subscriber
                    .drain(limit, |sample| {
                        assert_eq!(sample.seq(), next, "shmlane messages lost or reordered");
                        next += 1;
                    })
                    .expect("drain");
                (n > 0).then_some(())
            });
        }
    }

    fn peer_attached(&self) -> bool {
        match self {
            ShmlaneEnd::Publisher(publisher, _) => publisher.subscribers() == 1,
            ShmlaneEnd::Subscriber(..) => true,
        }
    }
}

/// The SPSC queue's recorded element contract.
const QUEUE_FINGERPRINT: Fingerprint = Fingerprint::new("shmlane-benches.stream.spsc");

/// shmlane's SPSC queue alone, in a segment of its own: [`STREAM_CAPACITY`] slots of `u64`,
/// and for payloads over 8 bytes a `BlockPool` of payload blocks (every slot's, plus slack).
/// 8 bytes: the sequence number is the queued value. Larger: the producer allocates a block,
/// writes the sequence number in place and queues its offset; the consumer reads it in place
/// and frees the block (what `shmlane bench --transport shmlane-spsc` does).
#[derive(Debug)]
pub struct SpscStream {
    segment: Segment,
    queue: Region,
    pool: Option<Region>,
}

impl SpscStream {
    /// Blocks of the pool: the queue's, one the producer holds, one the consumer holds, slack.
    const POOL_BLOCKS: u32 = STREAM_CAPACITY + 8;

    /// The blocks' alignment: the largest power of two dividing `payload`, at most a cache-line
    /// pair.
    fn align(payload: usize) -> u64 {
        (payload & payload.wrapping_neg()).min(128) as u64
    }

    /// Where the queue and the pool lie, and the segment's size.
    fn layout(payload: usize) -> (Region, Option<Region>, u64) {
        let mut carver = Carver::new();
        let capacity = u64::from(STREAM_CAPACITY);
        let queue = SharedSpsc::<u64>::layout(capacity).expect("queue layout");
        let queue = carver.place(queue).expect("place the queue");
        let pool = (payload > 8).then(|| {
            let layout = BlockPool::layout(payload as u64, Self::align(payload), Self::POOL_BLOCKS)
                .expect("pool layout");
            carver.place(layout).expect("place the pool")
        });
        (queue, pool, carver.total_size())
    }

    /// Creates (initiator) or opens (peer) segment `name` for `payload`-byte messages.
    pub fn new(name: &str, payload: usize, side: Side) -> SpscStream {
        let (queue, pool, size) = Self::layout(payload);
        let fingerprint = Fingerprint::new("shmlane-benches.stream").with_u64(payload as u64);
        let builder = Segment::builder(name).fingerprint(fingerprint);
        let segment = match side {
            Side::Initiator => builder
                .size(size)
                .populate(true)
                .create_with(|segment| {
                    let capacity = u64::from(STREAM_CAPACITY);
                    SharedSpsc::<u64>::init_in(segment, queue, capacity, QUEUE_FINGERPRINT)?;
                    if let Some(pool) = pool {
                        let align = Self::align(payload);
                        BlockPool::init_in(
                            segment,
                            pool,
                            payload as u64,
                            align,
                            Self::POOL_BLOCKS,
                        )?;
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string()),
            Side::Echo => builder.open_timeout(HANG).open().map_err(|e| e.to_string()),
        }
        .unwrap_or_else(|e| panic!("segment {name}: {e}"));
        SpscStream { segment, queue, pool }
    }

    /// `side`'s end: the initiator produces, the peer consumes.
    pub fn end(&self, side: Side) -> Box<dyn Rounds + '_> {
        let queue = SharedSpsc::<u64>::attach(&self.segment, self.queue, QUEUE_FINGERPRINT)
            .expect("attach the queue");
        let pool = self.pool.map(|pool| BlockPool::attach(&self.segment, pool).expect("pool"));
        let segment = &self.segment;
        match side {
            Side::Initiator => {
                let producer = queue.producer().expect("claim the producer role");
                Box::new(SpscEnd::Producer { segment, producer, pool })
            }
            Side::Echo => {
                let consumer = queue.consumer().expect("claim the consumer role");
                Box::new(SpscEnd::Consumer { segment, consumer, pool })
            }
        }
    }
}

/// One process's end of an SPSC stream.
enum SpscEnd<'s> {
    Producer {
        segment: &'s Segment,
        producer: spsc::Producer<u64, spsc::Shared<'s, u64>>,
        pool: Option<BlockPool<'s>>,
    },
    Consumer {
        segment: &'s Segment,
        consumer: spsc::Consumer<u64, spsc::Shared<'s, u64>>,
        pool: Option<BlockPool<'s>>,
    },
}

impl Link for SpscEnd<'_> {
    #[inline(always)]
    fn send(&mut self, seq: u64) {
        let SpscEnd::Producer { segment, producer, pool } = self else {
            panic!("a consumer does not send")
        };
        let value = match pool {
            None => seq,
            Some(pool) => {
                // The queue holds at most all but the blocks in the two processes' hands.
                let block = spin_until("a free block", || pool.alloc().ok());
                segment.write_bytes(block.get(), &seq.to_ne_bytes()).expect("write the block");
                block.get()
            }
        };
        spin_until("room in the queue", || producer.try_push(value).ok());
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) {
        let SpscEnd::Consumer { segment, consumer, pool } = self else {
            panic!("a producer does not receive")
        };
        let value = spin_until("a queued value", || consumer.try_pop().ok());
        let got = match pool {
            None => value,
            Some(pool) => {
                // The offset came from the other process: the pool checks it before any access.
                let block = BlockOffset::from_raw(value);
                assert!(pool.contains(block), "offset {value} is not a block of the pool");
                let mut stamp = [0; 8];
                segment.read_bytes(value, &mut stamp).expect("read the block");
                pool.free(block).expect("free the block");
                u64::from_ne_bytes(stamp)
            }
        };
        assert_eq!(got, seq, "SPSC messages lost or reordered");
    }
}
