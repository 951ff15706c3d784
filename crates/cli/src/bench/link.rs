//! What every transport implements: one direction of sending and one of receiving. The
//! initiator sends then receives (a round trip), the echo side receives then sends. Every wait
//! is bounded, so a dead or hung peer ends the bench with an error instead of a hang.

use std::io;
use std::time::{Duration, Instant};

/// Longest any single wait may take before the peer counts as hung.
pub const HANG: Duration = Duration::from_secs(10);

/// One process's end of a transport under test, built for one payload size.
pub trait Link {
    /// Sends message `seq`: the payload (by copy, or by loan for shmlane's transports) with the
    /// sequence number in its first 8 bytes. The echo side sends back what it received.
    fn send(&mut self, seq: u64) -> Result<(), LinkError>;
    /// Waits for message `seq` and checks it is that one.
    fn receive(&mut self, seq: u64) -> Result<(), LinkError>;
    /// Whether the peer's end is attached, so that a message sent now reaches it.
    fn peer_attached(&self) -> bool {
        true
    }
    /// Throughput mode: sends messages `first..first + count` back to back (compiled for
    /// each transport: one virtual call per run, none per message).
    fn send_run(&mut self, first: u64, count: u64) -> Result<(), LinkError> {
        (first..first + count).try_for_each(|seq| self.send(seq))
    }
    /// Throughput mode: receives messages `first..first + count`, checking each.
    fn receive_run(&mut self, first: u64, count: u64) -> Result<(), LinkError> {
        (first..first + count).try_for_each(|seq| self.receive(seq))
    }
}

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nothing arrived within [`HANG`].
    #[error("nothing arrived for {HANG:?} while waiting for {0}: the other process hung or died")]
    Hung(&'static str),
    /// The peer closed its end.
    #[error("the other process closed the connection (it exited or was killed)")]
    Closed,
    /// A message other than the expected one arrived.
    #[error("expected message {expected}, got {got}: messages were lost or reordered (a bug)")]
    OutOfOrder {
        /// The sequence number due.
        expected: u64,
        /// The one that came.
        got: u64,
    },
    /// A system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A shmlane call failed.
    #[error("{0}")]
    Shmlane(String),
}

impl LinkError {
    /// Wraps a shmlane error.
    pub fn shmlane(what: &str, error: impl std::fmt::Display) -> Self {
        LinkError::Shmlane(format!("{what}: {error}"))
    }
}

/// Checks that message `got` is the one due.
#[inline(always)]
pub fn expect_seq(expected: u64, got: u64) -> Result<(), LinkError> {
    if expected == got { Ok(()) } else { Err(LinkError::OutOfOrder { expected, got }) }
}

/// Busy-polls `poll` until it yields a value; [`LinkError::Hung`] after [`HANG`]. The clock is
/// read only every few thousand polls, so a wait that ends quickly reads no clock. `poll`
/// returns a small `Option` (errors ride inside `R`): each poll is as cheap as it can be, which
/// is what decides how soon a spinning receiver sees a message.
#[inline(always)]
pub fn spin_until<R>(
    what: &'static str,
    mut poll: impl FnMut() -> Option<R>,
) -> Result<R, LinkError> {
    let mut deadline = None;
    let mut polls = 0u32;
    loop {
        if let Some(value) = poll() {
            return Ok(value);
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(4096) {
            let now = Instant::now();
            if now >= *deadline.get_or_insert(now + HANG) {
                return Err(LinkError::Hung(what));
            }
        }
        std::hint::spin_loop();
    }
}

/// Which process an end belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Starts each round trip (the `bench` process).
    Initiator,
    /// Returns each message (the re-executed `bench-echo` process).
    Echo,
}

impl Side {
    /// Index of the direction this side sends on: 0 = initiator → echo, 1 = echo → initiator.
    pub fn outbound(self) -> usize {
        match self {
            Side::Initiator => 0,
            Side::Echo => 1,
        }
    }

    /// Index of the direction this side receives on.
    pub fn inbound(self) -> usize {
        1 - self.outbound()
    }
}
