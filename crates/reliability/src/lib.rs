//! shmlane's reliability suite lives in `tests/` of this package: real processes killed with
//! SIGKILL at named crash points (see `shmlane_segment::crash`) and at random instants,
//! hostile bytes written into live segments, permissions and limits, and a bounded soak.
//! Every test has a watchdog (the testkit's bounded waits), so a hang fails instead of
//! blocking CI. This library holds what the tests share.
#![forbid(unsafe_code)]
// Test-only: its helpers (paced senders over publishers) have no use for `Debug`.
#![allow(missing_debug_implementations)]

pub use shmlane_segment::crash::CRASH_AT_ENV;

/// Defines a self-checking sample type with `$check` check words.
macro_rules! stamped {
    ($(#[$doc:meta])* $name:ident, $check:literal) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            zerocopy::FromBytes,
            zerocopy::IntoBytes,
            zerocopy::KnownLayout,
            zerocopy::Immutable,
        )]
        #[repr(C)]
        pub struct $name {
            /// The sender's incarnation.
            pub epoch: u64,
            /// Its sequence number within the epoch.
            pub seq: u64,
            /// Derived from `epoch` and `seq`.
            pub check: [u64; $check],
        }

        impl Stamp for $name {
            fn new(epoch: u64, seq: u64) -> $name {
                $name { epoch, seq, check: std::array::from_fn(|i| check_word(epoch, seq, i)) }
            }

            fn id(&self) -> (u64, u64) {
                (self.epoch, self.seq)
            }
        }
    };
}

stamped!(
    /// A sample that checks itself: `epoch` (which publisher incarnation sent it) and `seq`
    /// name it, `check` is derived from both, so a torn read or a block reused under a reader
    /// shows as [`Stamp::is_intact`] false. 64 bytes: it travels in a payload block.
    Stamped,
    6
);

stamped!(
    /// [`Stamped`] in 48 bytes (`shmlane::topic::INLINE_MAX`): it travels inline in its queue
    /// slot.
    SmallStamped,
    4
);

/// A self-checking sample ([`Stamped`], [`SmallStamped`]).
pub trait Stamp: shmlane::ZeroCopy + Copy + PartialEq + std::fmt::Debug {
    /// The sample `seq` of `epoch`.
    fn new(epoch: u64, seq: u64) -> Self;
    /// (epoch, seq).
    fn id(&self) -> (u64, u64);
    /// Whether its check words match its epoch and seq.
    fn is_intact(&self) -> bool {
        let (epoch, seq) = self.id();
        *self == Self::new(epoch, seq)
    }
}

/// Check word `i` of sample `seq` of `epoch`.
fn check_word(epoch: u64, seq: u64, i: usize) -> u64 {
    (epoch << 40 ^ seq).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i as u32 * 9)
}

impl Stamped {
    /// The sample `seq` of `epoch` (see [`Stamp::new`]).
    pub fn new(epoch: u64, seq: u64) -> Stamped {
        <Stamped as Stamp>::new(epoch, seq)
    }

    /// Whether `check` matches `epoch` and `seq`.
    pub fn is_intact(&self) -> bool {
        <Stamped as Stamp>::is_intact(self)
    }
}

/// A go signal from a test to its children (testkit children have no stdin): a file the
/// parent creates and children poll for. Removed when dropped.
#[derive(Debug)]
pub struct Flag(std::path::PathBuf);

impl Flag {
    /// A new, lowered flag with a unique path.
    pub fn new(tag: &str) -> Flag {
        let name = shmlane_testkit::unique_name("shmlane-flag", tag);
        Flag(std::env::temp_dir().join(name))
    }

    /// Its path, to pass to children.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8 here")
    }

    /// Raises it.
    pub fn raise(&self) {
        std::fs::write(&self.0, b"go").expect("create the flag file");
    }

    /// Whether the flag at `path` is raised (the children's side).
    pub fn is_raised(path: &str) -> bool {
        std::path::Path::new(path).exists()
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The files of `namespace` in `/dev/shm`.
pub fn files_of(namespace: &str) -> Vec<String> {
    let prefix = format!("{}{namespace}.", shmlane_segment::NAME_PREFIX);
    let Ok(dir) = std::fs::read_dir(shmlane_testkit::SHM_DIR) else { return Vec::new() };
    let mut names: Vec<String> = dir
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

/// Fails the test if anything of `namespace` is left in `/dev/shm` once the test dropped its
/// handles (and removed dead nodes' registrations): the facade must clean up after killed
/// peers by itself. Removes what is left first, so that one failure does not also fail CI's
/// check for leftovers.
pub fn assert_nothing_left(namespace: &str) {
    let left = files_of(namespace);
    for name in &left {
        let _ = std::fs::remove_file(shmlane_testkit::shm_file(name));
    }
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// A node named `test` in `namespace`, for a test's parent process.
pub fn test_node(namespace: &str) -> shmlane::Node {
    shmlane::Node::builder("test").namespace(namespace).create().expect("create the test's node")
}

/// The end of a crash test, once every other handle is dropped: removes the registrations of
/// the nodes killed in `namespace` (there must be `dead_nodes`; `context` says which), drops
/// `node` and checks nothing of the namespace is left ([`assert_nothing_left`]).
pub fn finish(node: shmlane::Node, namespace: &str, dead_nodes: usize, context: &str) {
    let removal = node.remove_dead_nodes().expect("sweep dead nodes");
    assert!(removal.failed.is_empty(), "{context}: {:?}", removal.failed);
    assert_eq!(removal.removed.len(), dead_nodes, "{context}: dead nodes' registrations");
    drop(node);
    assert_nothing_left(namespace);
}

/// Environment variable: cases per property of the hostile-input suites (`hostile_topic`,
/// `hostile_queue`). Unset, each property runs its bounded CI count; the long mode is
/// `SHMLANE_FUZZ_CASES=1000000` (see docs/reliability.md).
pub const FUZZ_CASES_ENV: &str = "SHMLANE_FUZZ_CASES";
/// Environment variable fixing the seed of the hostile-input properties (a failure prints the
/// seed it ran with, to repeat it): `shmlane_testkit::seed(FUZZ_SEED_ENV)`.
pub const FUZZ_SEED_ENV: &str = "SHMLANE_FUZZ_SEED";

/// Cases per property: [`FUZZ_CASES_ENV`] if set, else `ci_cases`.
pub fn fuzz_cases(ci_cases: u32) -> u32 {
    shmlane_testkit::env_u64(FUZZ_CASES_ENV).map_or(ci_cases, |cases| cases as u32)
}

/// This process's resident set size in KiB (`VmRSS` of /proc/self/status), if readable.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A private directory for one run of a property test in proptest's fork mode, shared by the
/// test process and its child: the test process creates it (and removes it, with everything
/// in it, when dropped); the child, which runs the test function again, finds its parent's.
/// Keeps the run's segments out of `/dev/shm` and removes what a crashed child left.
#[derive(Debug)]
pub struct RunDir {
    path: std::path::PathBuf,
    owned: bool,
}

impl RunDir {
    /// The directory of run `tag` of this process, or of its parent if that exists.
    pub fn new(tag: &str) -> RunDir {
        let dir_of = |pid: u32| std::env::temp_dir().join(format!("shmlane-run-{tag}-{pid}"));
        let parents = dir_of(std::os::unix::process::parent_id());
        if parents.is_dir() {
            return RunDir { path: parents, owned: false };
        }
        let path = dir_of(std::process::id());
        std::fs::create_dir_all(&path).expect("create the run directory");
        RunDir { path, owned: true }
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Counts, by name, of what the cases of a property run reached, kept in a file of its
/// [`RunDir`] so that the test process can check what its fork-mode child counted (a run that
/// never reaches the paths it is for must fail, not pass).
#[derive(Debug)]
pub struct Tally {
    names: &'static [&'static str],
    counts: Vec<std::cell::Cell<u64>>,
}

impl Tally {
    /// The file in the run directory.
    const FILE: &'static str = "tally";

    /// All counts zero.
    pub fn new(names: &'static [&'static str]) -> Tally {
        Tally { names, counts: names.iter().map(|_| std::cell::Cell::new(0)).collect() }
    }

    fn cell(&self, name: &str) -> &std::cell::Cell<u64> {
        let at = self.names.iter().position(|n| *n == name);
        &self.counts[at.unwrap_or_else(|| panic!("no count named {name:?}"))]
    }

    /// Adds one to count `name`.
    pub fn count(&self, name: &str) {
        let cell = self.cell(name);
        cell.set(cell.get() + 1);
    }

    /// Count `name`.
    pub fn get(&self, name: &str) -> u64 {
        self.cell(name).get()
    }

    /// Writes the counts to the run directory `dir`.
    pub fn save(&self, dir: &std::path::Path) {
        let bytes: Vec<u8> = self.counts.iter().flat_map(|c| c.get().to_ne_bytes()).collect();
        let _ = std::fs::write(dir.join(Self::FILE), bytes);
    }

    /// The counts saved in the run directory `dir` (zero if none were).
    pub fn load(names: &'static [&'static str], dir: &std::path::Path) -> Tally {
        let tally = Tally::new(names);
        let bytes = std::fs::read(dir.join(Self::FILE)).unwrap_or_default();
        for (cell, word) in tally.counts.iter().zip(bytes.chunks_exact(8)) {
            cell.set(u64::from_ne_bytes(word.try_into().unwrap_or_default()));
        }
        tally
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, count)) in self.names.iter().zip(&self.counts).enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{name} {}", count.get())?;
        }
        Ok(())
    }
}

/// A child's subscriber on topic `t` of `node` (of [`Stamped`]): reports "ready", receives
/// samples in order, checking each, and keeps the last `keep` in hand (dropping older ones),
/// checking those it holds stay intact; reports "holding" once it holds `keep`. Runs until
/// killed; any failure ends the child with a code (3: an error, 4: a bad sample).
pub fn hold_samples(node: &shmlane::Node, keep: usize, timeout: std::time::Duration) -> ! {
    use shmlane_testkit::{fail, report};
    let topic = node.topic::<Stamped>("t").open().unwrap_or_else(|e| fail(3, e));
    let subscriber = topic.subscriber().unwrap_or_else(|e| fail(3, e));
    report("ready", 1);
    let mut held = std::collections::VecDeque::new();
    let mut last = 0;
    let mut reported = false;
    loop {
        let sample = subscriber.receive_with(&mut shmlane::notify::Blocking::new(), Some(timeout));
        let sample = sample.unwrap_or_else(|e| fail(3, e));
        if !sample.is_intact() || sample.seq <= last {
            fail(4, format!("got {:?} after seq {last}", *sample));
        }
        last = sample.seq;
        held.push_back(sample);
        if held.len() > keep {
            held.pop_front();
        }
        if held.len() == keep && !reported {
            report("holding", keep);
            reported = true;
        }
        if held.iter().any(|s| !s.is_intact()) {
            fail(4, "a held sample changed under us");
        }
    }
}

/// Sends `Stamped(epoch, 1..)` through `publisher`, one sample per millisecond (a pace a
/// child subscriber follows), for tests that fill a subscriber's hands and then wait for a
/// dead one's blocks to come back.
pub struct PacedSender<'p> {
    publisher: &'p shmlane::Publisher<Stamped>,
    epoch: u64,
    seq: u64,
}

impl<'p> PacedSender<'p> {
    /// A sender of epoch `epoch`, starting at sequence 1.
    pub fn new(publisher: &'p shmlane::Publisher<Stamped>, epoch: u64) -> Self {
        PacedSender { publisher, epoch, seq: 0 }
    }

    /// Sends the next sample, then pauses a millisecond.
    pub fn send(&mut self) {
        self.seq += 1;
        self.publisher.send_copy(Stamped::new(self.epoch, self.seq)).expect("send a sample");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }

    /// Sends until subscribers hold at least `held` blocks.
    pub fn until_held(&mut self, held: u64) {
        while self.publisher.block_counts().held < held {
            self.send();
        }
    }

    /// Sends until no block is held (sends find a dead subscriber and take its blocks back);
    /// fails the test after `timeout`. Returns how long it took.
    pub fn until_reclaimed(&mut self, timeout: std::time::Duration) -> std::time::Duration {
        let start = std::time::Instant::now();
        while self.publisher.block_counts().held > 0 {
            assert!(start.elapsed() < timeout, "blocks never came back");
            self.send();
        }
        start.elapsed()
    }
}
