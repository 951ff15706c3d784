//! shmlane's typed facade: `shmlane-pubsub` (busy-polled `receive`; `shmlane-pubsub-block`
//! the same under [`Overflow::Block`]) and `shmlane-blocking` (`receive_with` the
//! futex-backed `Blocking` strategy). Each direction is a `Topic<u64>`
//! with one publisher and one subscriber; a message is a loan of `payload / 8` words in the
//! publisher's pool, of which the sender writes the sequence number in place and the receiver
//! reads it in place: no byte of the payload is copied.
//!
//! The throughput mode's topics ([`StreamTopic`]) carry a `#[repr(C)]` type per payload size
//! instead, one way, under [`Overflow::Block`]: `shmlane-pubsub` sends and receives one
//! sample per call, `shmlane-pubsub-batch` uses the batch calls ([`Batched`]).

use shmlane::notify::Blocking;
use shmlane::{Node, Overflow, PublishError, Publisher, Sample, Subscriber, Topic};

use super::link::{HANG, Link, LinkError, Side, expect_seq, spin_until};

/// The two topics of one facade transport for one payload size: `{prefix}-ping` (initiator
/// → echo) and `{prefix}-pong`.
#[derive(Debug)]
pub struct Topics {
    topics: [Topic<u64>; 2],
    words: usize,
}

impl Topics {
    /// Creates (initiator) or opens (echo side) the two topics of `prefix` for `payload`-byte
    /// messages, under `overflow`.
    pub fn new(
        node: &Node,
        prefix: &str,
        payload: u64,
        overflow: Overflow,
        side: Side,
    ) -> Result<Topics, String> {
        let words = (payload / 8) as usize;
        let open = |direction: &str| {
            let service = format!("{prefix}-{direction}");
            let builder = node
                .topic::<u64>(&service)
                .max_publishers(1)
                .max_subscribers(1)
                .subscriber_capacity(4)
                .max_held(2)
                .max_loans(2)
                .max_slice_len(words as u32)
                .overflow(overflow);
            match side {
                Side::Initiator => builder.create(),
                Side::Echo => builder.open(),
            }
            .map_err(|e| format!("topic {service}: {e}"))
        };
        Ok(Topics { topics: [open("ping")?, open("pong")?], words })
    }

    /// `side`'s end: it publishes on its outbound topic and subscribes to its inbound one.
    pub fn link(&self, side: Side, blocking: bool) -> Result<PubSub, LinkError> {
        let publisher = self.topics[side.outbound()]
            .publisher()
            .map_err(|e| LinkError::shmlane("claim a publisher slot", e))?;
        let subscriber = self.topics[side.inbound()]
            .subscriber()
            .map_err(|e| LinkError::shmlane("claim a subscriber slot", e))?;
        let strategy = blocking.then(Blocking::new);
        Ok(PubSub { publisher, subscriber, words: self.words, strategy })
    }
}

/// Checks that a send of message `seq` succeeded and reached the one subscriber.
#[inline(always)]
fn delivered_once(seq: u64, sent: Result<usize, PublishError>) -> Result<(), LinkError> {
    match sent {
        Ok(1) => Ok(()),
        Ok(_) => Err(LinkError::Shmlane(format!("message {seq} reached no subscriber"))),
        Err(e) => Err(LinkError::shmlane("send", e)),
    }
}

/// One process's end of a facade transport.
#[derive(Debug)]
pub struct PubSub {
    publisher: Publisher<u64>,
    subscriber: Subscriber<u64>,
    words: usize,
    /// `Some` for `shmlane-blocking`.
    strategy: Option<Blocking>,
}

impl Link for PubSub {
    #[inline(always)]
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        let delivered = if self.words == 1 {
            let mut loan = self.publisher.loan().map_err(|e| LinkError::shmlane("loan", e))?;
            *loan = seq;
            self.publisher.send(loan)
        } else {
            let mut loan =
                self.publisher.loan_slice(self.words).map_err(|e| LinkError::shmlane("loan", e))?;
            loan[0] = seq;
            self.publisher.send_slice(loan)
        };
        delivered_once(seq, delivered)
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        // The sequence number: the value itself (`Deref`) for a one-word message, the first
        // element of the slice otherwise.
        let words = self.words;
        let first = move |sample: &Sample<'_, u64>| {
            if words == 1 { **sample } else { sample.as_slice()[0] }
        };
        let got = match &mut self.strategy {
            None => spin_until("a sample", || {
                self.subscriber
                    .receive()
                    .map(|received| received.map(|sample| first(&sample)))
                    .transpose()
            })?
            .map_err(|e| LinkError::shmlane("receive", e))?,
            Some(strategy) => match self.subscriber.receive_with(strategy, Some(HANG)) {
                Ok(sample) => first(&sample),
                Err(shmlane::ReceiveError::TimedOut(_)) => return Err(LinkError::Hung("a sample")),
                Err(e) => return Err(LinkError::shmlane("receive", e)),
            },
        };
        expect_seq(seq, got)
    }

    /// Whether the peer's subscriber is being served (so no message can miss it).
    fn peer_attached(&self) -> bool {
        self.publisher.subscribers() == 1
    }
}

/// Subscriber capacity of the throughput mode's topics (and slots of its SPSC queues).
pub const STREAM_CAPACITY: u32 = 256;

pub use super::sequenced::{Seq1K, Seq8, Seq64, Seq64K, Sequenced};

/// Payload sizes the throughput mode has a type for.
pub const STREAM_PAYLOADS: [u64; 4] = [8, 64, 1 << 10, 64 << 10];

/// Largest payload sent with `send_copy` (the whole value written); larger ones are loaned
/// and only their sequence number is written in place.
pub(super) const BY_COPY_MAX: usize = 64;

/// The throughput mode's topic of one payload size (`stream{phase}`): one publisher (the
/// initiator), one subscriber (the echo side), capacity [`STREAM_CAPACITY`],
/// [`Overflow::Block`], the other settings the facade's defaults.
#[derive(Debug)]
pub enum StreamTopic {
    /// 8 bytes.
    B8(Topic<Seq8>),
    /// 64 bytes.
    B64(Topic<Seq64>),
    /// 1 KiB.
    K1(Topic<Seq1K>),
    /// 64 KiB.
    K64(Topic<Seq64K>),
}

impl StreamTopic {
    /// Creates (initiator) or opens (echo side) topic `name` for `payload`-byte messages (one
    /// of [`STREAM_PAYLOADS`]).
    pub fn new(node: &Node, name: &str, payload: u64, side: Side) -> Result<StreamTopic, String> {
        fn open<P: Sequenced>(node: &Node, name: &str, side: Side) -> Result<Topic<P>, String> {
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
            .map_err(|e| format!("topic {name}: {e}"))
        }
        Ok(match payload {
            8 => StreamTopic::B8(open(node, name, side)?),
            64 => StreamTopic::B64(open(node, name, side)?),
            1024 => StreamTopic::K1(open(node, name, side)?),
            65536 => StreamTopic::K64(open(node, name, side)?),
            _ => return Err(format!("no throughput payload type of {payload} bytes")),
        })
    }

    /// `side`'s end: the initiator publishes, the echo side subscribes; through the batch
    /// calls if `batched` ([`Batched`]).
    pub fn link(&self, side: Side, batched: bool) -> Result<Box<dyn Link + '_>, LinkError> {
        fn end<P: Sequenced>(
            topic: &Topic<P>,
            side: Side,
            batched: bool,
        ) -> Result<Box<dyn Link>, LinkError> {
            let end = match side {
                Side::Initiator => StreamEnd::Publisher(
                    topic
                        .publisher()
                        .map_err(|e| LinkError::shmlane("claim a publisher slot", e))?,
                ),
                Side::Echo => StreamEnd::Subscriber(
                    topic
                        .subscriber()
                        .map_err(|e| LinkError::shmlane("claim a subscriber slot", e))?,
                ),
            };
            Ok(if batched { Box::new(Batched(end)) } else { Box::new(end) })
        }
        match self {
            StreamTopic::B8(topic) => end(topic, side, batched),
            StreamTopic::B64(topic) => end(topic, side, batched),
            StreamTopic::K1(topic) => end(topic, side, batched),
            StreamTopic::K64(topic) => end(topic, side, batched),
        }
    }
}

/// One process's end of a throughput topic.
#[derive(Debug)]
enum StreamEnd<P: Sequenced> {
    Publisher(Publisher<P>),
    Subscriber(Subscriber<P>),
}

impl<P: Sequenced> Link for StreamEnd<P> {
    /// `send_copy` of the whole value up to [`BY_COPY_MAX`] bytes, else `loan`, the sequence
    /// number written in place, `send`. Under `Overflow::Block` a full queue makes it wait.
    #[inline(always)]
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        let StreamEnd::Publisher(publisher) = self else {
            return Err(LinkError::Shmlane("a subscriber end does not send".into()));
        };
        let delivered = if size_of::<P>() <= BY_COPY_MAX {
            publisher.send_copy(P::with_seq(seq))
        } else {
            let mut loan = publisher.loan().map_err(|e| LinkError::shmlane("loan", e))?;
            loan.set_seq(seq);
            publisher.send(loan)
        };
        delivered_once(seq, delivered)
    }

    /// Busy-polled `receive`, the sequence number read in place (`Deref`).
    #[inline(always)]
    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        let StreamEnd::Subscriber(subscriber) = self else {
            return Err(LinkError::Shmlane("a publisher end does not receive".into()));
        };
        let got = spin_until("a sample", || {
            subscriber.receive().map(|received| received.map(|sample| sample.seq())).transpose()
        })?
        .map_err(|e| LinkError::shmlane("receive", e))?;
        expect_seq(seq, got)
    }

    fn peer_attached(&self) -> bool {
        match self {
            StreamEnd::Publisher(publisher) => publisher.subscribers() == 1,
            StreamEnd::Subscriber(_) => true,
        }
    }
}

/// Samples per `send_copies` call of `shmlane-pubsub-batch`: as many as a subscriber's claim
/// takes at once.
const BATCH: usize = 16;

/// `shmlane-pubsub-batch`: a stream end that sends with `send_copies` of [`BATCH`] values
/// (one wake-up check per batch) and receives with `drain` (inline samples up to 16 to a
/// claim, each handed over without a `Sample`). Every value is written whole, whatever its
/// size, as `send_copies` copies it; every sequence number is checked.
#[derive(Debug)]
struct Batched<P: Sequenced>(StreamEnd<P>);

impl<P: Sequenced> Link for Batched<P> {
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        self.send_run(seq, 1)
    }

    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        self.receive_run(seq, 1)
    }

    fn peer_attached(&self) -> bool {
        self.0.peer_attached()
    }

    fn send_run(&mut self, first: u64, count: u64) -> Result<(), LinkError> {
        let StreamEnd::Publisher(publisher) = &self.0 else {
            return Err(LinkError::Shmlane("a subscriber end does not send".into()));
        };
        // On the heap: 16 of the 64 KiB type are 1 MiB.
        let mut batch: Box<[P]> = std::iter::repeat_n(P::with_seq(0), BATCH).collect();
        let end = first + count;
        let mut seq = first;
        while seq < end {
            let n = (end - seq).min(BATCH as u64) as usize;
            for (value, seq) in batch[..n].iter_mut().zip(seq..) {
                value.set_seq(seq);
            }
            publisher.send_copies(&batch[..n]).map_err(|e| LinkError::shmlane("send", e))?;
            seq += n as u64;
        }
        Ok(())
    }

    fn receive_run(&mut self, first: u64, count: u64) -> Result<(), LinkError> {
        let StreamEnd::Subscriber(subscriber) = &self.0 else {
            return Err(LinkError::Shmlane("a publisher end does not receive".into()));
        };
        let end = first + count;
        let mut next = first;
        // The first sample out of order, (expected, got): the drain goes on, the run fails.
        let mut wrong = None;
        spin_until("a sample", || {
            let left = usize::try_from(end - next).unwrap_or(usize::MAX);
            let drained = subscriber.drain(left, |sample| {
                if sample.seq() != next && wrong.is_none() {
                    wrong = Some((next, sample.seq()));
                }
                next += 1;
            });
            match drained {
                Err(e) => Some(Err(LinkError::shmlane("receive", e))),
                Ok(_) => (next == end).then_some(Ok(())),
            }
        })??;
        match wrong {
            Some((expected, got)) => expect_seq(expected, got),
            None => Ok(()),
        }
    }
}
