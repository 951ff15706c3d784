//! What both processes agree on: the plan (passed to the echo process as JSON), the order of
//! round trips, the small control segment through which they start, and the resources each
//! payload size needs.
//!
//! Start-up: the initiator creates every payload size's segment and topics and its ends,
//! then stores `created = 1`; the echo side opens them, builds its ends, waits until its
//! publishers serve the initiator's subscribers, and stores `attached = 1`; the initiator
//! waits for `attached = 1` and for its own publishers to serve the echo side's subscribers.
//! Then both run the schedule, in which payload sizes take turns as transports do.
//!
//! In throughput mode the same start-up builds one-way ends instead ([`Mode::Throughput`]):
//! the initiator publishes, the echo side receives and counts finished runs in
//! [`Control::done`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use serde::{Deserialize, Serialize};
use shmlane::{Node, Overflow};
use shmlane_segment::{Carver, Fingerprint, Offset, RegionLayout, Segment, SharedView};

use super::link::{HANG, Link, LinkError, Side};
use super::memory::{self, PhaseSegment};
use super::pubsub::{StreamTopic, Topics};
use super::stream::Connections;
use super::{BenchError, Mode, Transport};

/// One payload size's share of the run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Phase {
    /// Bytes per message.
    pub payload: u64,
    /// Round trips per transport discarded first (throughput: messages of the warm-up round).
    pub warmup: u64,
    /// Round trips per transport recorded (throughput: messages per recorded round).
    pub iters: u64,
}

/// Everything the echo process needs to know, passed as JSON on its command line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// This run's name: the namespace of its topics and the prefix of its segments.
    pub run: String,
    /// The echo process's CPU.
    pub cpu: usize,
    /// Transports, in the order they alternate.
    pub transports: Vec<Transport>,
    /// Payload sizes, in order.
    pub phases: Vec<Phase>,
    /// Round trips per transport before switching to the next.
    pub round: u64,
    /// Round trips each transport makes unrecorded at the start of each of its turns (after
    /// the other transports' turns it comes back to cold caches).
    #[serde(default)]
    pub turn_warmup: u64,
    /// The initiator's Unix socket (`uds`).
    pub uds: Option<PathBuf>,
    /// The initiator's loopback TCP port (`tcp`).
    pub tcp_port: Option<u16>,
    /// What is measured.
    #[serde(default)]
    pub mode: Mode,
    /// Throughput mode: recorded rounds (after the warm-up round).
    #[serde(default)]
    pub rounds: u64,
}

impl Plan {
    /// Whether `transport` is measured.
    pub fn has(&self, transport: Transport) -> bool {
        self.transports.contains(&transport)
    }

    /// Calls `round_trip(phase, transport, seq, recorded)` for every round trip of payload
    /// size number `phase` and transport number `transport`, in schedule order: `seq` counts
    /// each pair's round trips from 1, and `recorded` says whether this one counts (each pair
    /// makes `warmup + iters` trips of which the last `iters` are recorded, plus
    /// `turn_warmup` unrecorded ones at the start of each of its turns).
    /// The run is cut into turns: in each, every payload size in order, and within it every
    /// transport in order, makes its share of round trips: `round` for the size with the
    /// most, proportionally fewer for the others, so that every size is spread evenly over the
    /// whole run and drift (host phases, frequency) hits sizes alike, as it hits transports.
    /// The share starts with `turn_warmup` trips that are not recorded: after the other
    /// transports' and sizes' turns, a transport's first trips find its lines and code out of
    /// the caches (every `round` trips, so at about the p99.9 mark with the default 1000),
    /// which measures the alternation, not the transport.
    /// `after_turn(trips)` after each turn.
    pub fn schedule<E>(
        &self,
        mut round_trip: impl FnMut(usize, usize, u64, bool) -> Result<(), E>,
        mut after_turn: impl FnMut(u64),
    ) -> Result<(), E> {
        let totals: Vec<u64> = self.phases.iter().map(|phase| phase.warmup + phase.iters).collect();
        let turns = totals.iter().map(|total| total.div_ceil(self.round)).max().unwrap_or(0);
        // Where turn `turn` starts for a size of `total` trips (`turns` splits it evenly).
        let start = |total: u64, turn: u64| {
            u64::try_from(u128::from(total) * u128::from(turn) / u128::from(turns)).unwrap_or(total)
        };
        // Round trips made so far by each pair (recorded or not).
        let mut made = vec![vec![0u64; self.transports.len()]; self.phases.len()];
        for turn in 0..turns {
            let mut trips = 0;
            for (phase, &total) in totals.iter().enumerate() {
                let (from, to) = (start(total, turn), start(total, turn + 1));
                if from == to {
                    continue;
                }
                let warmup = self.phases[phase].warmup;
                for (transport, made) in made[phase].iter_mut().enumerate() {
                    for _ in 0..self.turn_warmup {
                        *made += 1;
                        round_trip(phase, transport, *made, false)?;
                    }
                    for trip in from..to {
                        *made += 1;
                        round_trip(phase, transport, *made, trip >= warmup)?;
                    }
                }
                trips += (to - from + self.turn_warmup) * self.transports.len() as u64;
            }
            after_turn(trips);
        }
        Ok(())
    }

    /// Throughput mode: calls `run(round, phase, transport, first, count)` for each run of
    /// messages `first..first + count` in schedule order. Round 0 is the warm-up (each
    /// phase's `warmup` messages; skipped if 0), rounds `1..=rounds` are recorded (`iters`
    /// messages each). In every round each payload size in order, and within it every
    /// transport, makes one run; the transports' order is reversed every other round.
    /// Sequence numbers continue from run to run of a transport and size, from 1.
    pub fn stream_schedule<E>(
        &self,
        mut run: impl FnMut(u64, usize, usize, u64, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        for round in 0..=self.rounds {
            for (phase, sizes) in self.phases.iter().enumerate() {
                let (first, count) = match round {
                    0 => (1, sizes.warmup),
                    _ => (1 + sizes.warmup + (round - 1) * sizes.iters, sizes.iters),
                };
                if count == 0 {
                    continue;
                }
                let transports = 0..self.transports.len();
                let order: Vec<usize> = if round.is_multiple_of(2) {
                    transports.collect()
                } else {
                    transports.rev().collect()
                };
                for transport in order {
                    run(round, phase, transport, first, count)?;
                }
            }
        }
        Ok(())
    }
}

/// The control words, one cache line each.
#[repr(C)]
pub struct Control {
    /// Set to 1 by the echo process once it is pinned and connected.
    pub ready: CachePadded<AtomicU64>,
    /// Set to 1 by the initiator once every payload size's resources exist.
    pub created: CachePadded<AtomicU64>,
    /// Set to 1 by the echo process once it is attached to all of them.
    pub attached: CachePadded<AtomicU64>,
    /// Throughput mode: runs the echo process has received in full.
    pub done: CachePadded<AtomicU64>,
}

// SAFETY: a `#[repr(C)]` aggregate of atomics and padding: every bit pattern is valid and every
// access is atomic.
unsafe impl SharedView for Control {}

const CONTROL_FINGERPRINT: Fingerprint = Fingerprint::new("shmlane-cli.bench.control");

/// The control segment `{run}.control`.
#[derive(Debug)]
pub struct ControlSegment {
    segment: Segment,
    at: Offset<Control>,
}

impl ControlSegment {
    /// Where the words lie, and the segment's size.
    fn layout() -> Result<(Offset<Control>, u64), BenchError> {
        let mut carver = Carver::new();
        let layout = RegionLayout { size: size_of::<Control>() as u64, align: 128 };
        let setup =
            |error: &dyn std::fmt::Display| BenchError::Setup(format!("control layout: {error}"));
        let region = carver.place(layout).map_err(|e| setup(&e))?;
        Ok((region.offset_of(0).map_err(|e| setup(&e))?, carver.total_size()))
    }

    /// Creates it (initiator).
    pub fn create(run: &str) -> Result<Self, BenchError> {
        let (at, size) = Self::layout()?;
        let segment = Segment::builder(format!("{run}.control"))
            .size(size)
            .fingerprint(CONTROL_FINGERPRINT)
            .create()
            .map_err(|e| BenchError::Setup(format!("create the control segment: {e}")))?;
        Ok(ControlSegment { segment, at })
    }

    /// Opens it (echo side).
    pub fn open(run: &str) -> Result<Self, BenchError> {
        let (at, _) = Self::layout()?;
        let segment = Segment::builder(format!("{run}.control"))
            .fingerprint(CONTROL_FINGERPRINT)
            .open_timeout(HANG)
            .open()
            .map_err(|e| BenchError::Setup(format!("open the control segment: {e}")))?;
        Ok(ControlSegment { segment, at })
    }

    /// The words.
    pub fn words(&self) -> Result<&Control, BenchError> {
        self.segment.get(self.at).map_err(|e| BenchError::Setup(format!("control words: {e}")))
    }
}

/// Polls `done` every 50 µs until it holds; `alive` is asked too, and its error returned.
pub fn wait_for(
    what: &str,
    mut done: impl FnMut() -> bool,
    mut alive: impl FnMut() -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + HANG;
    while !done() {
        alive()?;
        if Instant::now() >= deadline {
            return Err(BenchError::Setup(format!("timed out after {HANG:?} waiting for {what}")));
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    Ok(())
}

/// Waits until `word` holds `value`.
pub fn wait_word(
    what: &str,
    word: &AtomicU64,
    value: u64,
    alive: impl FnMut() -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    // Acquire: pairs with the other process's Release store of `value`, after which its
    // resources for this step exist.
    wait_for(what, || word.load(Ordering::Acquire) == value, alive)
}

/// The shared resources of one payload size: its segment (`cacheline`, `futex`,
/// `shmlane-spsc`) and the facade's topics (throughput mode: one [`StreamTopic`]).
#[derive(Debug)]
pub struct Resources {
    segment: Option<PhaseSegment>,
    pubsub: Option<Topics>,
    pubsub_block: Option<Topics>,
    blocking: Option<Topics>,
    stream: Option<StreamTopic>,
    stream_batch: Option<StreamTopic>,
}

impl Resources {
    /// Creates (initiator) or opens (echo side) what payload size number `phase` of `plan`
    /// needs.
    pub fn new(plan: &Plan, phase: usize, node: &Node, side: Side) -> Result<Self, BenchError> {
        let payload = plan.phases[phase].payload;
        let needs_segment = [
            Transport::Cacheline,
            Transport::CachelineBlock,
            Transport::Futex,
            Transport::ShmlaneSpsc,
        ]
        .iter()
        .any(|&transport| plan.has(transport));
        let depth = match plan.mode {
            Mode::Latency => memory::PING_PONG,
            Mode::Throughput => memory::STREAM,
        };
        let segment = if needs_segment {
            let name = format!("{}.phase{phase}", plan.run);
            let segment = match side {
                Side::Initiator => PhaseSegment::create(&name, payload, depth),
                Side::Echo => PhaseSegment::open(&name, payload, depth),
            };
            Some(segment.map_err(BenchError::Setup)?)
        } else {
            None
        };
        if plan.mode == Mode::Throughput {
            let stream = |transport, prefix: &str| -> Result<Option<StreamTopic>, BenchError> {
                if !plan.has(transport) {
                    return Ok(None);
                }
                let name = format!("{prefix}{phase}");
                StreamTopic::new(node, &name, payload, side).map(Some).map_err(BenchError::Setup)
            };
            return Ok(Resources {
                segment,
                pubsub: None,
                pubsub_block: None,
                blocking: None,
                stream: stream(Transport::ShmlanePubsub, "stream")?,
                stream_batch: stream(Transport::ShmlanePubsubBatch, "batch")?,
            });
        }
        let topics = |transport, prefix: &str, overflow| -> Result<Option<Topics>, BenchError> {
            if !plan.has(transport) {
                return Ok(None);
            }
            Topics::new(node, &format!("{prefix}{phase}"), payload, overflow, side)
                .map(Some)
                .map_err(BenchError::Setup)
        };
        Ok(Resources {
            segment,
            pubsub: topics(Transport::ShmlanePubsub, "pubsub", Overflow::DropOldest)?,
            pubsub_block: topics(Transport::ShmlanePubsubBlock, "pubblock", Overflow::Block)?,
            blocking: topics(Transport::ShmlaneBlocking, "blocking", Overflow::DropOldest)?,
            stream: None,
            stream_batch: None,
        })
    }

    /// Creates (initiator) or opens (echo side) what every payload size of `plan` needs, in
    /// its order.
    pub fn every(plan: &Plan, node: &Node, side: Side) -> Result<Vec<Self>, BenchError> {
        (0..plan.phases.len()).map(|phase| Resources::new(plan, phase, node, side)).collect()
    }

    /// `side`'s ends of every transport of every payload size, `[size][transport]`, from
    /// `resources` ([`every`](Self::every)).
    pub fn all_links<'r>(
        resources: &'r [Resources],
        plan: &Plan,
        side: Side,
        connections: &Connections,
    ) -> Result<Vec<Vec<Box<dyn Link + 'r>>>, BenchError> {
        plan.phases
            .iter()
            .zip(resources)
            .map(|(phase, resources)| resources.links(plan, phase.payload, side, connections))
            .collect()
    }

    /// `side`'s ends of every transport of `plan`, in its order.
    pub fn links<'r>(
        &'r self,
        plan: &Plan,
        payload: u64,
        side: Side,
        connections: &Connections,
    ) -> Result<Vec<Box<dyn Link + 'r>>, BenchError> {
        plan.transports
            .iter()
            .map(|&transport| {
                self.link(transport, payload, side, connections)
                    .map_err(|source| BenchError::Link { transport, payload, source })
            })
            .collect()
    }

    /// `side`'s end of `transport`, from what was set up for it.
    fn link<'r>(
        &'r self,
        transport: Transport,
        payload: u64,
        side: Side,
        connections: &Connections,
    ) -> Result<Box<dyn Link + 'r>, LinkError> {
        let missing = || LinkError::Shmlane(format!("{transport} was not set up"));
        let segment = || self.segment.as_ref().ok_or_else(missing);
        match transport {
            Transport::Cacheline => segment()?.cacheline(side),
            Transport::CachelineBlock => segment()?.cacheline_block(side),
            Transport::Futex => segment()?.futex(side),
            Transport::ShmlaneSpsc => segment()?.spsc(side),
            Transport::Pipe | Transport::Uds | Transport::Tcp => {
                Ok(Box::new(connections.link(transport, payload)?))
            }
            Transport::ShmlanePubsub => match &self.stream {
                Some(stream) => stream.link(side, false),
                None => Ok(Box::new(self.pubsub.as_ref().ok_or_else(missing)?.link(side, false)?)),
            },
            Transport::ShmlanePubsubBlock => {
                Ok(Box::new(self.pubsub_block.as_ref().ok_or_else(missing)?.link(side, false)?))
            }
            Transport::ShmlaneBlocking => {
                Ok(Box::new(self.blocking.as_ref().ok_or_else(missing)?.link(side, true)?))
            }
            Transport::ShmlanePubsubBatch => {
                self.stream_batch.as_ref().ok_or_else(missing)?.link(side, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(totals: &[(u64, u64)], transports: usize, round: u64) -> Plan {
        Plan {
            run: "test".into(),
            cpu: 0,
            transports: Transport::ALL[..transports].to_vec(),
            phases: totals
                .iter()
                .map(|&(warmup, iters)| Phase { payload: 8, warmup, iters })
                .collect(),
            round,
            turn_warmup: 0,
            uds: None,
            tcp_port: None,
            mode: Mode::Latency,
            rounds: 0,
        }
    }

    /// One round trip of the schedule: `(phase, transport, seq, recorded)`.
    type Trip = (usize, usize, u64, bool);

    /// The schedule's round trips in order, and each turn's count.
    fn trips(plan: &Plan) -> (Vec<Trip>, Vec<u64>) {
        let (mut order, mut turns) = (Vec::new(), Vec::new());
        plan.schedule::<()>(
            |phase, transport, seq, recorded| {
                order.push((phase, transport, seq, recorded));
                Ok(())
            },
            |trips| turns.push(trips),
        )
        .unwrap();
        (order, turns)
    }

    /// `(seq, recorded)` of the trips of one size and transport, in order.
    fn of_pair(order: &[Trip], phase: usize, transport: usize) -> Vec<(u64, bool)> {
        order
            .iter()
            .filter(|trip| (trip.0, trip.1) == (phase, transport))
            .map(|trip| (trip.2, trip.3))
            .collect()
    }

    #[test]
    fn every_size_and_transport_makes_all_its_trips_in_order() {
        let plan = plan(&[(1, 9), (0, 3), (2, 0)], 2, 4);
        let (order, turns) = trips(&plan);
        for (phase, warmup, total) in [(0, 1, 10), (1, 0, 3), (2, 2, 2)] {
            for transport in 0..2 {
                let expected: Vec<(u64, bool)> =
                    (1..=total).map(|seq| (seq, seq > warmup)).collect();
                assert_eq!(
                    of_pair(&order, phase, transport),
                    expected,
                    "size {phase} transport {transport}"
                );
            }
        }
        assert_eq!(turns.len(), 3, "ceil(10 / 4) turns");
        assert_eq!(turns.iter().sum::<u64>(), order.len() as u64);
    }

    #[test]
    fn each_turn_of_a_transport_starts_with_unrecorded_trips_and_the_sequence_continues() {
        let mut plan = plan(&[(1, 9), (0, 2)], 2, 5);
        plan.turn_warmup = 2;
        let (order, turns) = trips(&plan);
        // Trips `1..=last`, those in `unrecorded` not recorded.
        let trips = |last: u64, unrecorded: &[u64]| -> Vec<(u64, bool)> {
            (1..=last).map(|seq| (seq, !unrecorded.contains(&seq))).collect()
        };
        for transport in 0..2 {
            // Size 0: two turns of 5 trips (the first turn's first trip the size's warm-up),
            // each after 2 unrecorded ones.
            assert_eq!(of_pair(&order, 0, transport), trips(14, &[1, 2, 3, 8, 9]));
            // Size 1: one trip a turn, after 2 unrecorded ones.
            assert_eq!(of_pair(&order, 1, transport), trips(6, &[1, 2, 4, 5]));
        }
        // Recorded: each pair's `iters`.
        for (phase, iters) in [(0, 9), (1, 2)] {
            for transport in 0..2 {
                let recorded = of_pair(&order, phase, transport).iter().filter(|t| t.1).count();
                assert_eq!(recorded as u64, iters);
            }
        }
        assert_eq!(turns, vec![(5 + 2 + 1 + 2) * 2, (5 + 2 + 1 + 2) * 2]);
        assert_eq!(turns.iter().sum::<u64>(), order.len() as u64);
    }

    #[test]
    fn sizes_take_turns_over_the_whole_run() {
        let plan = plan(&[(0, 100), (0, 10)], 1, 10);
        let (order, turns) = trips(&plan);
        assert_eq!(turns, vec![11; 10], "each turn: 10 trips of the big size, 1 of the small");
        // The small size's trips are spread: one after each tenth of the big size's.
        let small: Vec<usize> =
            order.iter().enumerate().filter(|(_, trip)| trip.0 == 1).map(|(at, _)| at).collect();
        assert_eq!(small, (0..10).map(|turn| turn * 11 + 10).collect::<Vec<_>>());
    }

    #[test]
    fn streams_warm_up_then_alternate_and_continue_their_sequence() {
        let mut plan = plan(&[(2, 5)], 2, 1);
        plan.mode = Mode::Throughput;
        plan.rounds = 2;
        let mut runs = Vec::new();
        plan.stream_schedule::<()>(|round, phase, transport, first, count| {
            runs.push((round, phase, transport, first, count));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            runs,
            [
                (0, 0, 0, 1, 2),
                (0, 0, 1, 1, 2),
                (1, 0, 1, 3, 5),
                (1, 0, 0, 3, 5),
                (2, 0, 0, 8, 5),
                (2, 0, 1, 8, 5)
            ]
        );
    }
}
