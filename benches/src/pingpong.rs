//! Cross-process machinery for benches that compare several transports in alternating rounds
//! of one run (`pubsub_vs_iceoryx2`, `throughput`): the [`Link`] every transport implements,
//! the round loops (ping-pong, and one-way runs for throughput), the cache-line floor, shmlane
//! pub/sub ends for any payload size, the peer process handle and its start-up, interruption
//! by signals, the run's names and removal of its leftovers.
//!
//! The initiator (the bench process) sends message `seq` and waits for its echo; the echo
//! process (the bench binary re-executed by [`peer::spawn`](crate::peer::spawn)) waits for
//! `seq` and sends it back. Every wait is a busy poll bounded by [`HANG`].

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use shmlane::{Node, Overflow, Publisher, Sample, Subscriber, Topic};
use shmlane_segment::{Carver, NAME_PREFIX, Offset, RegionLayout, Segment, SharedView};

/// Longest any single wait may take before the peer counts as hung.
pub const HANG: Duration = Duration::from_secs(10);

/// Set by [`stop_on_signals`]' handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT, SIGTERM and SIGHUP into a flag that [`spin_until`] and [`check_interrupt`]
/// turn into a panic, so a bench stopped by Ctrl-C unwinds (dropping, and so removing, what it
/// created) instead of dying with its shared-memory files in place.
pub fn stop_on_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `sigaction` is given a fully initialized `sigaction` struct (zeroed, then the
        // handler and an empty mask set) and a valid signal number; the handler only stores to
        // an atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        assert_eq!(rc, 0, "sigaction({signal})");
    }
}

/// Panics if a signal asked the bench to stop.
pub fn check_interrupt() {
    assert!(!INTERRUPTED.load(Ordering::Relaxed), "interrupted by a signal");
}

/// Busy-polls `poll` until it yields a value; panics after [`HANG`] or on a signal. The clock
/// is read only every few thousand polls, so a wait that ends quickly reads no clock.
#[inline(always)]
pub fn spin_until<R>(what: &str, mut poll: impl FnMut() -> Option<R>) -> R {
    let mut deadline = None;
    let mut polls = 0u32;
    loop {
        if let Some(value) = poll() {
            return value;
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(4096) {
            check_interrupt();
            let now = Instant::now();
            assert!(now < *deadline.get_or_insert(now + HANG), "hung waiting for {what}");
        }
        std::hint::spin_loop();
    }
}

/// Which process an end belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Starts each round trip (the bench process); creates what is shared.
    Initiator,
    /// Returns each message (the re-executed peer); opens what the initiator created.
    Echo,
}

impl Side {
    /// Index of the direction this side sends on: 0 = initiator → echo ("ping"), 1 = "pong".
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

/// Names of the two directions, indexed by [`Side::outbound`].
pub const DIRECTIONS: [&str; 2] = ["ping", "pong"];

/// One process's end of a transport under test, for one payload size.
pub trait Link {
    /// Sends message `seq` (its sequence number written into the payload's first word).
    fn send(&mut self, seq: u64);
    /// Busy-polls for message `seq`, reads its first word in place and checks it is `seq`.
    fn receive(&mut self, seq: u64);
    /// Whether the peer's end is attached, so that a message sent now reaches it.
    fn peer_attached(&self) -> bool {
        true
    }
    /// Sends messages `first..first + count` back to back (one-way streams): one by one unless
    /// the link has a batch send.
    #[inline(always)]
    fn send_all(&mut self, first: u64, count: u64) {
        (first..first + count).for_each(|seq| self.send(seq));
    }
    /// Receives messages `first..first + count` (one-way streams), checking each: one by one
    /// unless the link has a batch receive.
    #[inline(always)]
    fn receive_all(&mut self, first: u64, count: u64) {
        (first..first + count).for_each(|seq| self.receive(seq));
    }
}

/// The round loops of a [`Link`], compiled for each link type (one virtual call per round,
/// none per message).
pub trait Rounds {
    /// Initiator: round trips `first..first + count`, each timed into `histogram` if given.
    fn initiate(&mut self, first: u64, count: u64, histogram: Option<&mut Histogram<u64>>);
    /// Echo side: returns messages `first..first + count`.
    fn echo(&mut self, first: u64, count: u64);
    /// One-way: sends messages `first..first + count` back to back.
    fn send_run(&mut self, first: u64, count: u64);
    /// One-way: receives messages `first..first + count`, checking each.
    fn receive_run(&mut self, first: u64, count: u64);
    /// [`Link::peer_attached`].
    fn attached(&self) -> bool;
}

impl<L: Link> Rounds for L {
    fn initiate(&mut self, first: u64, count: u64, mut histogram: Option<&mut Histogram<u64>>) {
        for seq in first..first + count {
            let start = Instant::now();
            self.send(seq);
            self.receive(seq);
            let rtt = start.elapsed().as_nanos() as u64;
            if let Some(histogram) = histogram.as_deref_mut() {
                histogram.record(rtt).expect("round trip within the histogram's range");
            }
        }
    }

    fn echo(&mut self, first: u64, count: u64) {
        for seq in first..first + count {
            self.receive(seq);
            self.send(seq);
        }
    }

    fn send_run(&mut self, first: u64, count: u64) {
        self.send_all(first, count);
    }

    fn receive_run(&mut self, first: u64, count: u64) {
        self.receive_all(first, count);
    }

    fn attached(&self) -> bool {
        self.peer_attached()
    }
}

/// The transports' order in round `round`: reversed every other round.
pub fn order(round: u64, transports: usize) -> Vec<usize> {
    let forward: Vec<usize> = (0..transports).collect();
    if round.is_multiple_of(2) { forward } else { forward.into_iter().rev().collect() }
}

/// A payload size for people: `8 B`, `4 KiB`, `1 MiB`.
pub fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// Reads the bench's options from the command line: each `(--NAME, value)` of `numbers` as
/// `--NAME N` (at least 1), and `--cores A,B`, whose CPUs it returns (default: the first two
/// of the affinity mask, [`two_cpus`](crate::two_cpus)). Other arguments (cargo's `--bench`,
/// `--test`) are ignored.
pub fn options(numbers: &mut [(&str, &mut u64)]) -> (usize, usize) {
    let mut cores = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--cores" {
            let pair = args.next().expect("--cores needs A,B");
            let (a, b) = pair.split_once(',').expect("--cores needs A,B");
            cores = Some((a.trim().parse().expect("CPU id"), b.trim().parse().expect("CPU id")));
        } else if let Some((name, value)) = numbers.iter_mut().find(|(name, _)| *name == arg) {
            **value = args
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("{name} needs a number of at least 1"));
        }
    }
    cores.unwrap_or_else(crate::two_cpus)
}

/// The cache-line floor's words and the start-up flag, one cache line pair each, in a shared
/// segment.
#[repr(C)]
#[derive(Debug)]
pub struct Lanes {
    /// The last sequence number sent each way, indexed by [`Side::outbound`].
    pub words: [CachePadded<AtomicU64>; 2],
    /// Set by the echo process once it is pinned and attached to every transport.
    pub ready: CachePadded<AtomicU64>,
}

// SAFETY: a `#[repr(C)]` aggregate of atomics and padding: every bit pattern is valid and
// every access is atomic.
unsafe impl SharedView for Lanes {}

impl Lanes {
    /// Where the lanes lie in their segment, and the segment's size.
    pub fn layout() -> (Offset<Lanes>, u64) {
        let mut carver = Carver::new();
        let layout = RegionLayout { size: size_of::<Lanes>() as u64, align: 128 };
        let region = carver.place(layout).expect("lanes layout");
        (region.offset_of(0).expect("lanes offset"), carver.total_size())
    }

    /// `side`'s end of the cache-line floor.
    pub fn cacheline(&self, side: Side) -> Cacheline<'_> {
        Cacheline { outbound: &self.words[side.outbound()], inbound: &self.words[side.inbound()] }
    }
}

/// The floor: one `AtomicU64` each way, the sequence number itself the message.
#[derive(Debug)]
pub struct Cacheline<'a> {
    outbound: &'a AtomicU64,
    inbound: &'a AtomicU64,
}

impl Link for Cacheline<'_> {
    #[inline(always)]
    fn send(&mut self, seq: u64) {
        // Release: pairs with the peer's Acquire load; nothing else rides on it.
        self.outbound.store(seq, Ordering::Release);
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) {
        // Acquire: pairs with the peer's Release store.
        spin_until("the cache-line word", || {
            (self.inbound.load(Ordering::Acquire) == seq).then_some(())
        });
    }
}

/// The two `Topic<u64>`s of a shmlane pub/sub transport for one payload size: `{prefix}-ping`
/// (initiator → echo) and `{prefix}-pong`, one publisher and one subscriber each, capacity 4,
/// 2 held, 2 loans (the settings of `shmlane bench`).
#[derive(Debug)]
pub struct ShmlaneTopics {
    topics: [Topic<u64>; 2],
    words: usize,
}

/// Subscriber queue capacity of the shmlane topics (iceoryx2's subscriber buffer is set to
/// the same).
pub const SHMLANE_CAPACITY: u32 = 4;
/// Samples a shmlane subscriber may hold (iceoryx2's default borrowed samples is the same).
pub const SHMLANE_MAX_HELD: u32 = 2;
/// Loans a shmlane publisher may have (iceoryx2's default loaned samples is the same).
pub const SHMLANE_MAX_LOANS: u32 = 2;

impl ShmlaneTopics {
    /// Creates (initiator) or opens (echo) the topics of `prefix` for `payload`-byte messages
    /// (a multiple of 8), under `overflow`.
    pub fn new(
        node: &Node,
        prefix: &str,
        payload: usize,
        overflow: Overflow,
        side: Side,
    ) -> ShmlaneTopics {
        assert!(payload >= 8 && payload.is_multiple_of(8), "payload {payload} not whole words");
        let words = payload / 8;
        let open = |direction: &str| {
            let service = format!("{prefix}-{direction}");
            let builder = node
                .topic::<u64>(&service)
                .max_publishers(1)
                .max_subscribers(1)
                .subscriber_capacity(SHMLANE_CAPACITY)
                .max_held(SHMLANE_MAX_HELD)
                .max_loans(SHMLANE_MAX_LOANS)
                .max_slice_len(words as u32)
                .overflow(overflow);
            match side {
                Side::Initiator => builder.create(),
                Side::Echo => builder.open(),
            }
            .unwrap_or_else(|e| panic!("topic {service}: {e}"))
        };
        ShmlaneTopics { topics: [open(DIRECTIONS[0]), open(DIRECTIONS[1])], words }
    }

    /// `side`'s end: it publishes on its outbound topic and subscribes to its inbound one.
    pub fn link(&self, side: Side) -> ShmlanePubSub {
        ShmlanePubSub {
            publisher: self.topics[side.outbound()].publisher().expect("claim a publisher slot"),
            subscriber: self.topics[side.inbound()].subscriber().expect("claim a subscriber slot"),
            words: self.words,
        }
    }
}

/// One process's end of a shmlane pub/sub transport: `loan` (one word) or `loan_slice`, the
/// sequence number written in place, `send`; `receive` busy polled, the sequence read in place
/// (`Deref` or `as_slice()[0]`).
#[derive(Debug)]
pub struct ShmlanePubSub {
    publisher: Publisher<u64>,
    subscriber: Subscriber<u64>,
    words: usize,
}

impl Link for ShmlanePubSub {
    #[inline(always)]
    fn send(&mut self, seq: u64) {
        let delivered = if self.words == 1 {
            let mut loan = self.publisher.loan().expect("loan");
            *loan = seq;
            self.publisher.send(loan)
        } else {
            let mut loan = self.publisher.loan_slice(self.words).expect("loan a slice");
            loan[0] = seq;
            self.publisher.send_slice(loan)
        }
        .expect("send");
        assert_eq!(delivered, 1, "message {seq} reached no subscriber");
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) {
        let words = self.words;
        let first = move |sample: &Sample<'_, u64>| {
            if words == 1 { **sample } else { sample.as_slice()[0] }
        };
        let got = spin_until("a shmlane sample", || {
            self.subscriber.receive().expect("receive").map(|sample| first(&sample))
        });
        assert_eq!(got, seq, "shmlane messages lost or reordered");
    }

    fn peer_attached(&self) -> bool {
        self.publisher.subscribers() == 1
    }
}

/// The names of everything one run creates, derived from its kind and the initiator's pid.
#[derive(Debug, Clone)]
pub struct RunNames {
    /// The segment of the [`Lanes`].
    pub lanes: String,
    /// shmlane's namespace for the topics.
    pub namespace: String,
    /// The run's id, from which iceoryx2's names are derived.
    pub run: String,
}

impl RunNames {
    /// The names of run `run` of a bench of kind `kind` (letters, digits, `_`).
    pub fn new(kind: &str, run: &str) -> RunNames {
        RunNames {
            lanes: format!("bench.{kind}.{run}"),
            namespace: format!("bench_{kind}_{run}"),
            run: run.to_owned(),
        }
    }

    /// Runs `body`, then removes whatever files of the run are left (dropping removes them,
    /// unless the peer had to be killed), so a failed or interrupted run leaves nothing behind
    /// either; then re-raises `body`'s panic, or panics if shmlane segments were left.
    pub fn run_and_clean(&self, body: impl FnOnce() + std::panic::UnwindSafe) {
        let outcome = std::panic::catch_unwind(body);
        let ours = |file: &str| {
            file == format!("{NAME_PREFIX}{}", self.lanes)
                || file.starts_with(&format!("{NAME_PREFIX}{}.", self.namespace))
        };
        let left = remove_entries(Path::new("/dev/shm"), ours);
        #[cfg(feature = "iceoryx2")]
        let iox2_left = crate::iox2::Iox2Files::for_run(&self.run).remove_leftovers();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        assert!(left.is_empty(), "shmlane segments left in /dev/shm after the run: {left:?}");
        #[cfg(feature = "iceoryx2")]
        if !iox2_left.is_empty() {
            println!("removed iceoryx2's leftovers of the run: {iox2_left:?}");
        }
    }
}

/// What each process of a run holds besides its transports: the [`Lanes`] segment (created
/// by the initiator, opened by the peer), a shmlane node in the run's namespace and, with
/// the `iceoryx2` feature, an iceoryx2 node with the run's own files. Keep it after the
/// transports built on it (fields drop in order).
#[derive(Debug)]
pub struct RunNodes {
    lanes: Segment,
    /// The shmlane node.
    pub node: Node,
    /// The iceoryx2 node.
    #[cfg(feature = "iceoryx2")]
    pub iox2: iceoryx2::prelude::Node<iceoryx2::prelude::ipc::Service>,
}

impl RunNodes {
    /// `side`'s segment and nodes of run `names`.
    pub fn new(names: &RunNames, side: Side) -> RunNodes {
        let builder = Segment::builder(&names.lanes);
        let lanes = match side {
            Side::Initiator => {
                builder.size(Lanes::layout().1).populate(true).create().map_err(|e| e.to_string())
            }
            Side::Echo => builder.open_timeout(HANG).open().map_err(|e| e.to_string()),
        }
        .unwrap_or_else(|e| panic!("the lanes segment: {e}"));
        let node_name = match side {
            Side::Initiator => "bench-initiator",
            Side::Echo => "bench-echo",
        };
        let node = Node::builder(node_name)
            .namespace(names.namespace.as_str())
            .create()
            .expect("shmlane node");
        RunNodes {
            lanes,
            node,
            #[cfg(feature = "iceoryx2")]
            iox2: crate::iox2::Iox2Files::for_run(&names.run).node(),
        }
    }

    /// The lanes.
    pub fn lanes(&self) -> &Lanes {
        self.lanes.get(Lanes::layout().0).expect("lanes")
    }
}

/// Initiator: waits until the peer has said it is ready in `lanes` (pinned and attached),
/// then until `attached` (the peer's ends are served).
pub fn await_peer(lanes: &Lanes, peer: &mut Peer, attached: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG;
    // Acquire: pairs with the peer's Release store once it is attached everywhere.
    while lanes.ready.load(Ordering::Acquire) == 0 {
        peer.check_alive();
        check_interrupt();
        assert!(Instant::now() < deadline, "the peer did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    while !attached() {
        assert!(Instant::now() < deadline, "the peer's subscribers did not join");
        std::thread::yield_now();
    }
}

/// Peer: waits until `attached` (the initiator's subscribers existed before the peer started:
/// they are served), then tells the initiator it is ready.
pub fn announce_ready(lanes: &Lanes, attached: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG;
    while !attached() {
        check_interrupt();
        assert!(Instant::now() < deadline, "the initiator's subscribers are not there");
        std::thread::yield_now();
    }
    // Release: tells the initiator we are pinned and attached.
    lanes.ready.store(1, Ordering::Release);
}

/// The peer process; killed if still running when dropped (the initiator is unwinding), so no
/// spinner outlives the bench.
#[derive(Debug)]
pub struct Peer(pub Child);

impl Peer {
    /// Waits (up to [`HANG`]) for the peer to exit, and checks it succeeded.
    pub fn join(mut self) {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for the peer") {
                assert!(status.success(), "the peer failed: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the peer did not exit");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Panics if the peer has exited.
    pub fn check_alive(&mut self) {
        if let Some(status) = self.0.try_wait().expect("poll the peer") {
            panic!("the peer exited early: {status}");
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Removes the entries of `dir` whose file name `ours` accepts (directories with their
/// contents); returns the paths it found.
pub fn remove_entries(dir: &Path, ours: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.file_name().and_then(|f| f.to_str()).is_some_and(&ours))
        .collect();
    for path in &found {
        let _ =
            if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    }
    found
}
