//! Every segment in a directory with a verdict that counts its peers, and the removal of the
//! stale ones.
//!
//! A segment is stale when its creator and every peer are proven dead: for a service, the
//! holders of its publisher, subscriber or listener slots; for a payload segment, its topic's
//! (its queued samples name the segment, so it stays while its topic is in use); a node
//! registration and a plain segment have only their creator. A file that never got a header is
//! stale only if what it holds is zeros or the start of our magic: anything else with our
//! prefix is reported as corrupt and never removed.
//!
//! Segments of this user are mapped read-only to be read. Another user's are never mapped:
//! their owner could shrink them under the mapping and crash us with `SIGBUS` (the tools run
//! as root, or in shared multi-user setups). They are read from a private copy taken with
//! `pread` ([`SegmentBuilder::open_copy`]): control segments and node registrations whole, up
//! to [`MAX_COPY`] bytes, payload segments only up to their own header.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmlane_segment::header::MAGIC;
use shmlane_segment::{
    Backing, DiscoveryError, Fingerprint, HEADER_SIZE, Liveness, OffsetError, OpenError, Removal,
    RoleOwner, Segment, SegmentBuilder, SegmentInfo, SegmentName, SegmentStatus,
};

use super::names::{SegmentKind, kind_of};
use super::{Counters, NodeInfo, Peer, ServiceInfo, ServiceKind};
use crate::error::{CorruptError, TopicError};
use crate::node::{NODE_FINGERPRINT, NodeRecordCopy, monotonic_ns};
use crate::topic::layout::{Layout, TopicHeader};

/// Where POSIX shared memory lives.
const SHM_DIR: &str = "/dev/shm";
/// The largest segment of another user that is copied to be read (a control segment or a
/// node registration; at their default settings topics take tens of KiB). A larger one is
/// reported unreadable, to be read by its owner.
pub(crate) const MAX_COPY: u64 = 64 << 20;

/// The verdict on a segment, its peers counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// In use: its creator or one of its peers runs (or cannot be checked).
    Alive,
    /// Its creator runs and has not finished initialising it.
    Initializing,
    /// Its creator and every peer are proven dead (or it never got past an empty header):
    /// nothing can be lost by removing it.
    Stale,
    /// It carries our prefix but is not a valid segment or service; left alone.
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// It cannot be read: not with our permissions, or (another user's) it changed size while
    /// it was copied to be read.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// One segment file: what it is, the verdict on it, and what it holds.
#[derive(Debug, Clone)]
pub struct SegmentEntry {
    /// The file (name, path, size, creator, the segment crate's creator-only status).
    pub segment: SegmentInfo,
    /// The namespace, for the facade's segments.
    pub namespace: Option<String>,
    /// What it is for, by its name.
    pub kind: SegmentKind,
    /// The verdict, peers counted.
    pub verdict: Verdict,
    /// For a service's control segment: the service and the holders of its slots.
    pub service: Option<ServiceInfo>,
    /// For a node registration that could be read: the node.
    pub node: Option<NodeInfo>,
}

/// Every segment in `/dev/shm`, or in `root`, sorted by name, with its verdict.
pub fn segments(root: Option<&Path>) -> Result<Vec<SegmentEntry>, DiscoveryError> {
    let place = Place::new(root);
    let listed = shmlane_segment::list_in(&place.dir)?;
    let mut entries: Vec<SegmentEntry> = listed.into_iter().map(|s| entry(&place, s)).collect();
    let topic_stale: HashMap<String, bool> = entries
        .iter()
        .filter(|e| matches!(e.kind, SegmentKind::Service(_)))
        .map(|e| (e.segment.name.as_str().to_owned(), e.verdict == Verdict::Stale))
        .collect();
    for entry in &mut entries {
        if let SegmentKind::Payload { control, .. } = &entry.kind
            && entry.verdict == Verdict::Stale
            && topic_stale.get(control) == Some(&false)
        {
            entry.verdict = Verdict::Alive;
        }
    }
    Ok(entries)
}

/// Removes the stale segments in `/dev/shm`, or in `root`, that `select` accepts; returns
/// what it removed and what it could not remove (another user's files in a sticky directory,
/// a directory we may not write), going on past those. Each one is checked again just before
/// its removal (its creator and peers still dead, the file still the one judged), so a process
/// that joined a service meanwhile keeps it. Fails only if the directory cannot be listed.
pub fn remove_stale(
    root: Option<&Path>,
    select: impl Fn(&SegmentEntry) -> bool,
) -> Result<Removal<SegmentEntry>, DiscoveryError> {
    let place = Place::new(root);
    let mut chosen: HashMap<SegmentName, SegmentEntry> = segments(root)?
        .into_iter()
        .filter(|entry| entry.verdict == Verdict::Stale && select(entry))
        .map(|entry| (entry.segment.name.clone(), entry))
        .collect();
    let removal = shmlane_segment::remove_stale_matching(&place.dir, |name| {
        chosen.contains_key(name) && still_stale(&place, name)
    })?;
    let removed =
        removal.removed.into_iter().filter_map(|info| chosen.remove(&info.name)).collect();
    let failed = removal
        .failed
        .into_iter()
        .filter_map(|(info, error)| Some((chosen.remove(&info.name)?, error)))
        .collect();
    Ok(Removal { removed, failed })
}

/// Where segments are looked for, and how to open them there.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) dir: PathBuf,
    /// Whether `dir` is `/dev/shm`, where both POSIX shm and directory backings are found.
    shm: bool,
}

impl Place {
    pub(crate) fn new(root: Option<&Path>) -> Place {
        let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        match root {
            None => Place { dir: PathBuf::from(SHM_DIR), shm: true },
            Some(dir) => Place { dir: dir.to_owned(), shm: same(dir, Path::new(SHM_DIR)) },
        }
    }

    /// Opens `name` read-only without waiting for a creator still at work, whoever owns the
    /// file: mapped if it is ours, else as a private copy of `extent` of it (see the module
    /// documentation). In `/dev/shm` a segment may record either backing (a node rooted at
    /// `/dev/shm` records a directory): the other is tried too.
    pub(crate) fn open(
        &self,
        name: &SegmentName,
        fingerprint: Fingerprint,
        extent: Extent,
    ) -> Result<Segment, OpenError> {
        let path = self.dir.join(name.file_name());
        // The owner is checked on the descriptor that is then mapped: a file replaced
        // meanwhile by another user's is refused, never mapped.
        let open = |builder: SegmentBuilder| match builder.clone().open_read_only() {
            Err(OpenError::WrongOwner { .. }) => {
                let builder = builder.any_owner();
                match extent {
                    Extent::Whole => match builder.open_copy(&path, MAX_COPY) {
                        Err(OpenError::TooLarge { size, max: MAX_COPY }) => Err(OpenError::Io {
                            op: "copy",
                            source: std::io::Error::other(format!(
                                "another user's segment of {size} bytes, more than the \
                                 {MAX_COPY} discovery copies to read: read it as its owner"
                            )),
                        }),
                        other => other,
                    },
                    Extent::Head(len) => builder.open_head_copy(&path, len),
                }
            }
            other => other,
        };
        let builder =
            Segment::builder(name.as_str()).fingerprint(fingerprint).open_timeout(Duration::ZERO);
        let in_dir = builder.clone().backing(Backing::Dir(self.dir.clone()));
        if !self.shm {
            return open(in_dir);
        }
        match open(builder) {
            Err(OpenError::BadBacking { .. }) => open(in_dir),
            other => other,
        }
    }
}

/// How much of another user's segment is copied to read it (ours are mapped whole).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extent {
    /// All of it, up to [`MAX_COPY`] bytes.
    Whole,
    /// Its first bytes only, this many: the rest of the copy reads as zeros.
    Head(u64),
}

/// The first bytes of a file, up to a header's worth, read without following a link or
/// blocking on a FIFO.
pub(crate) fn header_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    let mode = rustix::fs::fstat(&fd)?.st_mode;
    if rustix::fs::FileType::from_raw_mode(mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::with_capacity(HEADER_SIZE as usize);
    std::fs::File::from(fd).take(HEADER_SIZE).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether the bytes of a file without a complete header are what our creator leaves: zeros,
/// or the start of a header it was writing.
fn looks_ours(bytes: &[u8]) -> bool {
    let n = bytes.len().min(MAGIC.len());
    bytes.iter().all(|&b| b == 0) || (n > 0 && bytes[..n] == MAGIC[..n])
}

fn entry(place: &Place, segment: SegmentInfo) -> SegmentEntry {
    let (namespace, kind) = kind_of(segment.name.as_str());
    let mut entry = SegmentEntry {
        verdict: first_verdict(&segment),
        namespace: namespace.map(str::to_owned),
        segment,
        kind,
        service: None,
        node: None,
    };
    // A complete header (even a dead creator's): read what the segment holds.
    let complete = match entry.segment.status {
        SegmentStatus::Alive => true,
        SegmentStatus::Stale => entry.segment.creator.is_some(),
        _ => false,
    };
    match entry.kind.clone() {
        SegmentKind::Service(kind) => describe_service(place, &mut entry, kind, complete),
        SegmentKind::Node { name } if complete => describe_node(place, &mut entry, name),
        _ => {}
    }
    entry
}

/// Fills in `entry.service`, reading the slots if the header is `complete`; a dead creator's
/// service with a live peer is alive.
fn describe_service(place: &Place, entry: &mut SegmentEntry, kind: ServiceKind, complete: bool) {
    let mut info = ServiceInfo {
        namespace: entry.namespace.clone().unwrap_or_default(),
        name: entry.segment.name.as_str().splitn(3, '.').nth(2).unwrap_or_default().to_owned(),
        kind,
        payload: None,
        publishers: Vec::new(),
        subscribers: Vec::new(),
        segment: entry.segment.clone(),
        problem: None,
    };
    if complete {
        let slots = |s: &Segment| slots(s, kind);
        match read(place, &entry.segment.name, fingerprint(kind), Extent::Whole, slots) {
            Ok(slots) => {
                let live = slots.peers().any(|peer| peer.liveness != Liveness::Dead);
                if entry.verdict == Verdict::Stale && live {
                    entry.verdict = Verdict::Alive;
                }
                (info.payload, info.publishers, info.subscribers) =
                    (slots.payload, slots.publishers, slots.subscribers);
            }
            Err((verdict, problem)) => {
                if let Some(verdict) = verdict {
                    entry.verdict = verdict;
                }
                info.problem = Some(problem.to_string());
            }
        }
    }
    entry.service = Some(info);
}

/// Fills in `entry.node` from the registration record.
fn describe_node(place: &Place, entry: &mut SegmentEntry, name: String) {
    match read(place, &entry.segment.name, NODE_FINGERPRINT, Extent::Whole, read_node) {
        Ok(Some((pid, liveness, heartbeat_age))) => {
            let namespace = entry.namespace.clone().unwrap_or_default();
            entry.node = Some(NodeInfo { namespace, name, pid, liveness, heartbeat_age });
        }
        // The node died before writing its record.
        Ok(None) => {}
        Err((verdict, _)) => {
            if let Some(verdict) = verdict {
                entry.verdict = verdict;
            }
        }
    }
}

/// The verdict from the file and its creator alone.
fn first_verdict(segment: &SegmentInfo) -> Verdict {
    match &segment.status {
        SegmentStatus::Alive => Verdict::Alive,
        status @ (SegmentStatus::Initializing | SegmentStatus::Stale)
            if segment.creator.is_none() =>
        {
            match header_bytes(&segment.path) {
                Ok(bytes) if !looks_ours(&bytes) => Verdict::Corrupt {
                    reason: "no shmlane header: neither zero-filled nor starting with its magic"
                        .into(),
                },
                Ok(_) if *status == SegmentStatus::Stale => Verdict::Stale,
                Ok(_) => Verdict::Initializing,
                Err(e) => Verdict::Unreadable { reason: e.to_string() },
            }
        }
        SegmentStatus::Initializing => Verdict::Initializing,
        SegmentStatus::Stale => Verdict::Stale,
        SegmentStatus::Corrupt { reason } => Verdict::Corrupt { reason: reason.clone() },
        SegmentStatus::Unreadable { reason } => Verdict::Unreadable { reason: reason.clone() },
    }
}

/// Why discovery could not read what a segment holds. Its message becomes a [`Verdict`]'s
/// reason or a service's problem.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The segment could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A word or header lies outside the segment.
    #[error(transparent)]
    Offset(#[from] OffsetError),
    /// A service's header or settings did not validate (boxed: a rare error kept small).
    #[error(transparent)]
    Service(Box<TopicError>),
    /// A payload segment's header did not validate.
    #[error(transparent)]
    Payload(#[from] super::inspect::PayloadError),
}

impl From<TopicError> for ReadError {
    fn from(e: TopicError) -> ReadError {
        ReadError::Service(Box::new(e))
    }
}

/// Opens `name` read-only ([`Place::open`]) and reads it with `f`. On failure: the verdict the
/// failure implies (`None`: it vanished, keep the one we have) and the error.
pub(crate) fn read<T, E: Into<ReadError>>(
    place: &Place,
    name: &SegmentName,
    fingerprint: Fingerprint,
    extent: Extent,
    f: impl FnOnce(&Segment) -> Result<T, E>,
) -> Result<T, (Option<Verdict>, ReadError)> {
    match place.open(name, fingerprint, extent) {
        Ok(segment) => f(&segment).map_err(|e| {
            let e = e.into();
            (Some(Verdict::Corrupt { reason: e.to_string() }), e)
        }),
        Err(e) => {
            let reason = e.to_string();
            let verdict = match e {
                OpenError::NotFound { .. } => None,
                OpenError::Stale { .. } => Some(Verdict::Stale),
                OpenError::InitTimeout { .. } | OpenError::Unpublished { .. } => {
                    Some(Verdict::Initializing)
                }
                OpenError::PermissionDenied { .. } | OpenError::Io { .. } => {
                    Some(Verdict::Unreadable { reason })
                }
                _ => Some(Verdict::Corrupt { reason }),
            };
            Err((verdict, e.into()))
        }
    }
}

/// The fingerprint of a service's control segment.
pub(crate) fn fingerprint(kind: ServiceKind) -> Fingerprint {
    match kind {
        ServiceKind::Event => crate::event::SEGMENT_FINGERPRINT,
        ServiceKind::Topic | ServiceKind::Rpc => crate::topic::SEGMENT_FINGERPRINT,
    }
}

/// What a service's control segment records: its payload type and slot holders.
pub(crate) struct Slots {
    pub(crate) payload: Option<(String, u64, u64)>,
    pub(crate) publishers: Vec<Peer>,
    pub(crate) subscribers: Vec<Peer>,
}

impl Slots {
    fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.publishers.iter().chain(&self.subscribers)
    }
}

pub(crate) fn slots(segment: &Segment, kind: ServiceKind) -> Result<Slots, ReadError> {
    match kind {
        ServiceKind::Event => {
            let listeners = crate::event::listener_offsets(segment)?;
            let subscribers = listeners
                .into_iter()
                .enumerate()
                .filter_map(|(l, (role, counters))| {
                    peer(segment, l, role, None, Some(counters)).transpose()
                })
                .collect::<Result<_, _>>()?;
            Ok(Slots { payload: None, publishers: Vec::new(), subscribers })
        }
        ServiceKind::Topic | ServiceKind::Rpc => {
            let (header, config, layout) = topic_layout(segment)?;
            let publishers = (0..config.max_publishers as usize)
                .filter_map(|p| {
                    let counters = Some(layout.publisher_counters_at(p));
                    peer(segment, p, layout.publisher_role_at(p), None, counters).transpose()
                })
                .collect::<Result<_, _>>()?;
            let subscribers = (0..config.max_subscribers as usize)
                .filter_map(|s| {
                    let drops = Some(layout.subscriber_drops_at(s));
                    let counters = Some(layout.subscriber_counters_at(s));
                    peer(segment, s, layout.subscriber_role_at(s), drops, counters).transpose()
                })
                .collect::<Result<_, _>>()?;
            let payload = Some((header.type_name(), header.type_size, header.type_version));
            Ok(Slots { payload, publishers, subscribers })
        }
    }
}

/// A topic's validated header, settings and layout, checked to fit its segment.
pub(crate) fn topic_layout(
    segment: &Segment,
) -> Result<(TopicHeader, crate::TopicConfig, Layout), TopicError> {
    let (header, config) = TopicHeader::read(segment)?;
    let element = crate::topic::layout::Element::from_spec(&header.type_spec());
    let layout = Layout::new(&config, element)?;
    if segment.len() < layout.size {
        let (len, needed) = (segment.len(), layout.size);
        return Err(TopicError::Corrupt(CorruptError::TooSmall { len, needed }));
    }
    Ok((header, config, layout))
}

/// A word of the segment, by copy.
pub(crate) fn read_u64(segment: &Segment, at: u64) -> Result<u64, OffsetError> {
    let mut bytes = [0u8; 8];
    segment.read_bytes(at, &mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

/// The holder of the slot whose role word is at `role_at`, if held.
pub(crate) fn peer(
    segment: &Segment,
    slot: usize,
    role_at: u64,
    drops_at: Option<u64>,
    counters_at: Option<u64>,
) -> Result<Option<Peer>, OffsetError> {
    let Some(owner) = RoleOwner::from_raw(read_u64(segment, role_at)?) else { return Ok(None) };
    let drops = drops_at.map(|at| read_u64(segment, at)).transpose()?.unwrap_or(0);
    let counters =
        counters_at.map(|at| read_counters(segment, at)).transpose()?.unwrap_or_default();
    Ok(Some(Peer { slot, pid: owner.pid(), liveness: owner.liveness(), drops, counters }))
}

/// A slot's counters at `at`, by copy (each word as it was when read).
fn read_counters(segment: &Segment, at: u64) -> Result<Counters, OffsetError> {
    let mut words = [0u8; 8 * crate::counters::COUNTERS];
    segment.read_bytes(at, &mut words)?;
    let word = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&words[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(bytes)
    };
    Ok(Counters {
        sent: word(0),
        loans_failed: word(1),
        received: word(2),
        held: word(3),
        timeouts: word(4),
        notifications: word(5),
    })
}

/// What a node registration says: its pid (if its presence file records one), liveness and
/// heartbeat age.
type NodeFacts = (Option<u32>, Liveness, Option<Duration>);

/// A node registration's facts; `None` before the node wrote them.
fn read_node(segment: &Segment) -> Result<Option<NodeFacts>, OffsetError> {
    let mut bytes = [0u8; size_of::<NodeRecordCopy>()];
    let at = HEADER_SIZE.next_multiple_of(64);
    segment.read_bytes(at, &mut bytes)?;
    let record: NodeRecordCopy = zerocopy::transmute!(bytes);
    let Some(owner) = RoleOwner::from_raw(record.owner) else { return Ok(None) };
    let heartbeat_age = (record.heartbeat_ns != 0)
        .then(|| Duration::from_nanos(monotonic_ns().saturating_sub(record.heartbeat_ns)));
    Ok(Some((owner.pid(), owner.liveness(), heartbeat_age)))
}

/// Whether segment `name` is still stale, checked afresh just before removing it (the
/// segment crate checks its creator and that the file is the one judged).
fn still_stale(place: &Place, name: &SegmentName) -> bool {
    let service_stale = |name: &SegmentName, kind: ServiceKind| {
        let opened = place.open(name, fingerprint(kind), Extent::Whole);
        match opened {
            Err(OpenError::NotFound { .. } | OpenError::Stale { .. }) => true,
            Err(_) => false,
            Ok(segment) => {
                segment.creator_liveness() == Liveness::Dead
                    && slots(&segment, kind)
                        .is_ok_and(|slots| slots.peers().all(|p| p.liveness == Liveness::Dead))
            }
        }
    };
    match kind_of(name.as_str()).1 {
        SegmentKind::Service(kind) => service_stale(name, kind),
        SegmentKind::Payload { control, .. } => {
            let kind = match kind_of(&control).1 {
                SegmentKind::Service(kind) => kind,
                _ => return false,
            };
            SegmentName::new(&control).is_ok_and(|control| service_stale(&control, kind))
        }
        SegmentKind::Node { .. } | SegmentKind::Plain => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zeros_or_the_start_of_our_magic_pass_for_a_header_being_written() {
        assert!(looks_ours(&[]));
        assert!(looks_ours(&[0; 128]));
        assert!(looks_ours(b"SHML"));
        let mut partial = [0u8; 128];
        partial[..8].copy_from_slice(&MAGIC);
        partial[40] = 7;
        assert!(looks_ours(&partial));
        assert!(!looks_ours(b"hello"));
        assert!(!looks_ours(&[0xab; 128]));
        let mut late = [0u8; 128];
        late[100] = 1;
        assert!(!looks_ours(&late));
    }
}
