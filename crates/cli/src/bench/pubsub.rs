//! shmlane's typed facade: `shmlane-pubsub` (busy-polled `receive`) and `shmlane-blocking`
//! (`receive_with` the futex-backed `Blocking` strategy). Each direction is a `Topic<u64>`
//! with one publisher and one subscriber; a message is a loan of `payload / 8` words in the
//! publisher's pool, of which the sender writes the sequence number in place and the receiver
//! reads it in place: no byte of the payload is copied.

use shmlane::notify::Blocking;
use shmlane::{Node, Publisher, Sample, Subscriber, Topic};

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
    /// messages.
    pub fn new(node: &Node, prefix: &str, payload: u64, side: Side) -> Result<Topics, String> {
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
                .max_slice_len(words as u32);
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
        }
        .map_err(|e| LinkError::shmlane("send", e))?;
        if delivered != 1 {
            return Err(LinkError::Shmlane(format!("message {seq} reached no subscriber")));
        }
        Ok(())
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
