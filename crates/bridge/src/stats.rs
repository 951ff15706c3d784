//! Per-service counters, and the statistics a bridge reports ([`Stats`], as JSON by
//! [`Stats::to_json`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::keys::Kind;

/// How often one service may log the same kind of trouble.
const LOG_EVERY_MS: u64 = 5_000;

/// A service the bridge carries: its name and its counters, shared by the threads and zenoh
/// callbacks that carry it. All counters are Relaxed: each is a count on its own, read by
/// copy for statistics, and publishes nothing.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// Samples, requests or event messages from zenoh delivered locally.
    pub(crate) samples_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    /// Samples, answers or event messages sent to zenoh.
    pub(crate) samples_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Lost: local sends that failed, gaps in a sender's sequence, the bridge's own local
    /// subscriber's overflow drops.
    pub(crate) drops: AtomicU64,
    /// Messages refused because the two hosts' types differ.
    pub(crate) type_mismatches: AtomicU64,
    /// Messages that were not valid (bad attachment, wrong length, oversized).
    pub(crate) malformed: AtomicU64,
    /// Samples or events the bridge itself delivered locally, seen again and not sent back.
    pub(crate) echoes: AtomicU64,
    /// Rpc calls that got no answer or failed.
    pub(crate) errors: AtomicU64,
    /// Carried out now (an out carrier runs).
    pub(crate) out_active: AtomicBool,
    /// Carried in now (the bridge delivered here, or serves local rpc clients).
    pub(crate) in_active: AtomicBool,
    /// The out carrier holds a local subscriber or listener: a remote peer listens.
    pub(crate) matched: AtomicBool,
    /// Milliseconds since the bridge started of the last warning (0: none yet).
    last_warning_ms: AtomicU64,
    started: Instant,
}

impl Service {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: a statistic (see the type's comment).
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a flag.
    pub(crate) fn set(flag: &AtomicBool, value: bool) {
        // Relaxed: a statistic.
        flag.store(value, Ordering::Relaxed);
    }

    /// Whether a warning may be logged now (at most one per service every 5 s, so a peer
    /// that sends garbage at line rate cannot flood the log; the counters count every one).
    pub(crate) fn may_warn(&self) -> bool {
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        // Relaxed: a rate limit; losing a race logs one line more or less.
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOG_EVERY_MS {
            return false;
        }
        self.last_warning_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn stats(&self) -> ServiceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let flag = |f: &AtomicBool| f.load(Ordering::Relaxed);
        ServiceStats {
            namespace: self.namespace.clone(),
            service: self.name.clone(),
            kind: self.kind,
            out: flag(&self.out_active),
            into: flag(&self.in_active),
            matched: flag(&self.matched),
            samples_in: get(&self.samples_in),
            bytes_in: get(&self.bytes_in),
            samples_out: get(&self.samples_out),
            bytes_out: get(&self.bytes_out),
            drops: get(&self.drops),
            type_mismatches: get(&self.type_mismatches),
            malformed: get(&self.malformed),
            echoes: get(&self.echoes),
            errors: get(&self.errors),
        }
    }
}

/// Every service the bridge has carried, by (namespace, kind, name).
#[derive(Debug)]
pub(crate) struct Registry {
    services: Mutex<BTreeMap<(String, Kind, String), Arc<Service>>>,
    /// Messages on the bridge's keys that named no valid service.
    pub(crate) unattributed: AtomicU64,
    started: Instant,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            services: Mutex::new(BTreeMap::new()),
            unattributed: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// The service's entry, made on first use.
    pub(crate) fn service(&self, namespace: &str, kind: Kind, name: &str) -> Arc<Service> {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), kind, name.to_owned());
        Arc::clone(services.entry(key).or_insert_with(|| {
            Arc::new(Service {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                kind,
                samples_in: AtomicU64::new(0),
                bytes_in: AtomicU64::new(0),
                samples_out: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
                drops: AtomicU64::new(0),
                type_mismatches: AtomicU64::new(0),
                malformed: AtomicU64::new(0),
                echoes: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                out_active: AtomicBool::new(false),
                in_active: AtomicBool::new(false),
                matched: AtomicBool::new(false),
                last_warning_ms: AtomicU64::new(0),
                started: self.started,
            })
        }))
    }

    pub(crate) fn stats(&self, bridge: u64, peers: usize) -> Stats {
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        Stats {
            bridge,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            peers,
            // Relaxed: a statistic.
            unattributed: self.unattributed.load(Ordering::Relaxed),
            services: services.values().map(|s| s.stats()).collect(),
        }
    }
}

/// One service's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub service: String,
    /// Topic, rpc or event.
    pub kind: Kind,
    /// Carried out now.
    pub out: bool,
    /// Carried in now.
    pub into: bool,
    /// Out: a remote peer listens, and the bridge holds a local subscriber (topics) or
    /// listener (events) for it.
    pub matched: bool,
    /// Samples (topics), requests served (rpc) or event messages from zenoh delivered here.
    pub samples_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Samples, answers or event messages sent to zenoh.
    pub samples_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
    /// Lost on the way: failed local sends, gaps in a sender's sequence numbers, and the
    /// bridge's own subscriber's overflow drops.
    pub drops: u64,
    /// Refused for a type mismatch between the hosts.
    pub type_mismatches: u64,
    /// Invalid messages dropped (bad attachment, wrong length, oversized).
    pub malformed: u64,
    /// Samples and events this bridge delivered locally and did not send back.
    pub echoes: u64,
    /// Rpc calls that failed or went unanswered.
    pub errors: u64,
}

/// What [`Bridge::stats`](crate::Bridge::stats) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// The bridge's id (as it travels in every message).
    pub bridge: u64,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// zenoh peers and routers connected now.
    pub peers: usize,
    /// Messages on the bridge's keys that named no valid service.
    pub unattributed: u64,
    /// Each service carried so far.
    pub services: Vec<ServiceStats>,
}

impl Stats {
    /// The statistics as one JSON object:
    /// `{"bridge":"…","uptime_ms":…,"peers":…,"unattributed":…,"services":[{"namespace":…,
    /// "service":…,"kind":"topic","out":…,"in":…,"matched":…,"samples_in":…, …}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let services: Vec<serde_json::Value> = self
            .services
            .iter()
            .map(|s| {
                serde_json::json!({
                    "namespace": s.namespace,
                    "service": s.service,
                    "kind": s.kind.as_str(),
                    "out": s.out,
                    "in": s.into,
                    "matched": s.matched,
                    "samples_in": s.samples_in,
                    "bytes_in": s.bytes_in,
                    "samples_out": s.samples_out,
                    "bytes_out": s.bytes_out,
                    "drops": s.drops,
                    "type_mismatches": s.type_mismatches,
                    "malformed": s.malformed,
                    "echoes": s.echoes,
                    "errors": s.errors,
                })
            })
            .collect();
        serde_json::json!({
            "bridge": format!("{:016x}", self.bridge),
            "uptime_ms": self.uptime_ms,
            "peers": self.peers,
            "unattributed": self.unattributed,
            "services": services,
        })
    }
}
