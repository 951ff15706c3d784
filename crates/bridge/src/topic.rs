//! Topics across: out, a thread per local topic that subscribes to it (while a remote peer
//! listens) and puts each sample on the topic's key; in, a zenoh callback that publishes each
//! sample from the network into the local topic of the same name, creating it with the
//! sender's type and settings if it does not exist.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shmlane::notify::Backoff;
use shmlane::{
    Overflow, RawPublisher, RawSubscriber, RawTopic, ReceiveError, TopicError, TypeSpec,
};
use zenoh::Wait;
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample};

use crate::bridge::Context;
use crate::echo::TopicEcho;
use crate::keys::Kind;
use crate::stats::Service;
use crate::wire;

/// How often an out carrier checks whether a remote peer listens.
const MATCH_CHECK: Duration = Duration::from_millis(100);
/// How long a refused type is trusted before the local topic is looked at again.
const RECHECK_REFUSED: Duration = Duration::from_secs(1);

/// Locks a mutex, going on with its data if a holder panicked (every state here stays valid
/// between statements).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The topics this bridge has seen, by (namespace, service).
#[derive(Debug, Default)]
pub(crate) struct Topics {
    states: Mutex<HashMap<(String, String), Arc<TopicState>>>,
}

impl Topics {
    /// The state of a topic, made on first use.
    pub(crate) fn state(&self, ctx: &Context, namespace: &str, name: &str) -> Arc<TopicState> {
        let mut states = lock(&self.states);
        let key = (namespace.to_owned(), name.to_owned());
        Arc::clone(states.entry(key).or_insert_with(|| {
            Arc::new(TopicState {
                service: ctx.registry.service(namespace, Kind::Topic, name),
                key: ctx.keys.key(namespace, name, Kind::Topic),
                echo: Mutex::new(TopicEcho::default()),
                inside: Mutex::new(InSide::default()),
            })
        }))
    }

    /// Drops every local publisher (at shutdown).
    pub(crate) fn clear(&self) {
        lock(&self.states).clear();
    }
}

/// One topic, both ways.
#[derive(Debug)]
pub(crate) struct TopicState {
    service: Arc<Service>,
    key: String,
    /// What the bridge published locally and its out subscriber has not seen yet.
    echo: Mutex<TopicEcho>,
    /// The in side. Held from recording a sample to publishing it, and while the out side
    /// creates its subscriber: a subscriber either exists before a sample is recorded, or is
    /// created after it was published (and never sees it).
    inside: Mutex<InSide>,
}

/// The in side of a topic: its local publisher and what it knows of the senders.
#[derive(Debug, Default)]
struct InSide {
    /// The local topic and the bridge's publisher on it.
    local: Option<(RawTopic, RawPublisher)>,
    /// The declaration last judged, and the verdict.
    judged: Option<(Vec<u8>, Verdict)>,
    /// Each sender's next sequence number (a few senders: a list).
    next_seq: Vec<(u64, u64)>,
}

/// Whether samples with a declaration are delivered.
#[derive(Debug, Clone)]
enum Verdict {
    Deliver,
    /// Refused until `until` (then looked at again): a type mismatch or another failure.
    Refuse {
        mismatch: bool,
        why: String,
        until: Instant,
    },
}

impl TopicState {
    /// Publishes a sample from zenoh into the local topic. Never panics: every fault is
    /// counted and logged.
    pub(crate) fn deliver(&self, ctx: &Context, sample: &Sample) {
        let service = &*self.service;
        let payload = sample.payload();
        if payload.len() > ctx.max_payload {
            Service::add(&service.malformed, 1);
            if service.may_warn() {
                tracing::warn!(
                    service = %service.name, bytes = payload.len(), max = ctx.max_payload,
                    "dropped an oversized sample from zenoh (raise --max-payload if it is genuine)"
                );
            }
            return;
        }
        let Some(attachment) = sample.attachment() else {
            return self.malformed("a sample without the bridge's attachment");
        };
        let attachment = attachment.to_bytes();
        let message = match wire::split_topic(&attachment) {
            Ok(message) => message,
            Err(e) => return self.malformed(&e.to_string()),
        };
        let (prefix, count) = (message.prefix, message.count());
        let mut inside = lock(&self.inside);
        let verdict = match &inside.judged {
            Some((judged, verdict)) if judged.as_slice() == message.decl => match verdict {
                Verdict::Refuse { until, .. } if Instant::now() >= *until => None,
                verdict => Some(verdict.clone()),
            },
            _ => None,
        };
        let verdict = match verdict {
            Some(verdict) => verdict,
            None => {
                let verdict = match wire::read_topic_decl(message.decl) {
                    Ok((spec, config)) => self.judge(ctx, &mut inside, &spec, config),
                    Err(e) => return self.malformed(&e.to_string()),
                };
                inside.judged = Some((message.decl.to_vec(), verdict.clone()));
                verdict
            }
        };
        if let Verdict::Refuse { mismatch, why, .. } = verdict {
            let counter = if mismatch { &service.type_mismatches } else { &service.drops };
            Service::add(counter, u64::from(count));
            if service.may_warn() {
                tracing::warn!(service = %service.name, from = format_args!("{:016x}", prefix.source), "refused samples: {why}");
            }
            return;
        }
        let next = match inside.next_seq.iter_mut().find(|(source, _)| *source == prefix.source) {
            Some((_, next)) => next,
            None => {
                inside.next_seq.push((prefix.source, prefix.seq));
                &mut inside.next_seq.last_mut().expect("just pushed").1
            }
        };
        if prefix.seq > *next {
            Service::add(&service.drops, prefix.seq - *next);
        }
        *next = prefix.seq.wrapping_add(u64::from(count));
        let Some((_, publisher)) = &inside.local else { return };
        let bytes = payload.to_bytes();
        let samples = match message.samples(&bytes) {
            Ok(samples) => samples,
            Err(e) => {
                drop(inside);
                return self.malformed(&e.to_string());
            }
        };
        let size = publisher.element_size();
        // One wake-up of each local subscriber per zenoh message, not per sample.
        publisher.in_batch(|| for sample in samples {
            if !sample.len().is_multiple_of(size) {
                self.malformed(&format!(
                    "{} bytes are not a whole number of {size}-byte elements",
                    sample.len()
                ));
                continue;
            }
            let record = lock(&self.echo).record(sample);
            match publisher.send_copy(sample) {
                Ok(_) => {
                    Service::add(&service.samples_in, 1);
                    Service::add(&service.bytes_in, sample.len() as u64);
                }
                Err(e) => {
                    if let Some(id) = record {
                        lock(&self.echo).forget(id);
                    }
                    Service::add(&service.drops, 1);
                    if service.may_warn() {
                        tracing::warn!(service = %service.name, "a sample from zenoh was not delivered: {e}");
                    }
                }
            }
        });
    }

    /// Decides whether samples of `spec` can be delivered here, opening (or creating, with the
    /// sender's settings) the local topic and its publisher if needed.
    fn judge(
        &self,
        ctx: &Context,
        inside: &mut InSide,
        spec: &TypeSpec,
        config: shmlane::TopicConfig,
    ) -> Verdict {
        let refuse = |mismatch, why: String| Verdict::Refuse {
            mismatch,
            why,
            until: Instant::now() + RECHECK_REFUSED,
        };
        let name = &self.service.name;
        let mismatch = |local: &TypeSpec| {
            refuse(
                true,
                format!(
                    "type mismatch on topic {name:?}: the sending host carries {spec}, this host \
                     carries {local}; use the same payload type (name, size, alignment and \
                     version) on both hosts"
                ),
            )
        };
        if let Some((topic, _)) = &inside.local {
            return if topic.type_spec() == spec {
                Verdict::Deliver
            } else {
                mismatch(topic.type_spec())
            };
        }
        let Some(node) = ctx.node(&self.service.namespace) else {
            return refuse(false, "no node for the namespace (a bug)".into());
        };
        let topic = match node.raw_topic(name).open() {
            Ok(topic) => Ok(topic),
            Err(TopicError::Open(shmlane::OpenError::NotFound { .. })) => {
                node.raw_topic(name).type_spec(spec.clone()).config(config).open_or_create()
            }
            Err(e) => Err(e),
        };
        let topic = match topic {
            Ok(topic) if topic.type_spec() != spec => return mismatch(topic.type_spec()),
            Ok(topic) => topic,
            Err(TopicError::TypeMismatch {
                found_name,
                found_size,
                found_align,
                found_version,
                ..
            }) => {
                return mismatch(&TypeSpec::new(
                    found_name,
                    found_size,
                    found_align,
                    found_version,
                ));
            }
            Err(e) => return refuse(false, format!("cannot open the local topic {name:?}: {e}")),
        };
        let publisher = match topic.publisher() {
            Ok(publisher) => publisher,
            Err(e) => {
                return refuse(false, format!("cannot publish on the local topic {name:?}: {e}"));
            }
        };
        publisher.set_block_timeout(ctx.block_timeout);
        tracing::info!(service = %name, "carrying in: publishing samples from zenoh locally as {spec}");
        Service::set(&self.service.in_active, true);
        inside.local = Some((topic, publisher));
        Verdict::Deliver
    }

    fn malformed(&self, why: &str) {
        Service::add(&self.service.malformed, 1);
        if self.service.may_warn() {
            tracing::warn!(service = %self.service.name, "dropped a malformed sample from zenoh: {why}");
        }
    }

    /// Creates the out side's subscriber (under the in side's lock: see `inside`) and starts
    /// recording the bridge's own samples.
    fn attach(&self, topic: &RawTopic) -> Result<RawSubscriber, shmlane::ConnectError> {
        let _inside = lock(&self.inside);
        let subscriber = topic.subscriber()?;
        let config = topic.config();
        // Our samples the subscriber can have queued or held at once, with room to spare.
        let limit = 2 * config.subscriber_capacity as usize + config.max_held as usize + 16;
        lock(&self.echo).start(limit);
        Service::set(&self.service.matched, true);
        Ok(subscriber)
    }

    /// Drops the out side's subscriber, then stops recording: a sample recorded in between
    /// reached no subscriber of ours, and its record goes with the rest.
    fn detach(&self, subscriber: RawSubscriber) {
        drop(subscriber);
        lock(&self.echo).stop();
        Service::set(&self.service.matched, false);
    }
}

/// Most bytes of samples one message carries (one larger sample goes alone).
const BATCH_BYTES: usize = 64 * 1024;
/// Longest a message waits for more samples while the publisher keeps sending (the first
/// sample after a quiet spell of this long does not wait; in a stream, a message waits one
/// `sched_yield` only when it finds nothing new).
const LINGER: Duration = Duration::from_micros(50);

/// Samples taken from the local topic, to go out in one message.
#[derive(Debug, Default)]
struct Batch {
    payload: Vec<u8>,
    /// Each sample's length (each at most `BATCH_BYTES` when there are several).
    lens: Vec<u32>,
}

impl Batch {
    /// Whether no more samples go in this message.
    fn full(&self) -> bool {
        self.lens.len() >= wire::MAX_BATCH || self.payload.len() >= BATCH_BYTES
    }

    fn add(&mut self, sample: &[u8]) {
        self.payload.extend_from_slice(sample);
        self.lens.push(u32::try_from(sample.len()).unwrap_or(u32::MAX));
    }

    /// Puts the samples in one zenoh message, if there are any.
    fn send(
        &mut self,
        ctx: &Context,
        service: &Service,
        publisher: &zenoh::pubsub::Publisher<'_>,
        decl: &[u8],
        seq: &mut u64,
    ) {
        if self.lens.is_empty() {
            return;
        }
        let count = self.lens.len() as u64;
        let bytes = self.payload.len() as u64;
        let attachment = wire::topic_message(ctx.id, *seq, decl, &self.lens);
        *seq = seq.wrapping_add(count);
        self.lens.clear();
        let payload = ZBytes::from(std::mem::take(&mut self.payload));
        match publisher.put(payload).attachment(attachment).wait() {
            Ok(()) => {
                Service::add(&service.samples_out, count);
                Service::add(&service.bytes_out, bytes);
            }
            Err(e) => {
                Service::add(&service.drops, count);
                if service.may_warn() {
                    tracing::warn!(service = %service.name, "zenoh refused samples: {e}");
                }
            }
        }
    }
}

/// The out carrier of one local topic: runs until `stop` or the bridge stops.
pub(crate) fn carry_out(ctx: &Context, state: &TopicState, topic: &RawTopic, stop: &AtomicBool) {
    let service = &*state.service;
    let spec = topic.type_spec().clone();
    let config = topic.config();
    // A Block topic keeps its back-pressure across the link; the others drop rather than wait.
    let congestion = match config.overflow {
        Overflow::Block => CongestionControl::Block,
        _ => CongestionControl::Drop,
    };
    let publisher = match ctx
        .session
        .declare_publisher(state.key.clone())
        .congestion_control(congestion)
        .allowed_destination(Locality::Remote)
        .wait()
    {
        Ok(publisher) => publisher,
        Err(e) => {
            tracing::error!(service = %service.name, key = %state.key, "cannot declare the zenoh publisher: {e}");
            return;
        }
    };
    // Bridges whose glob rules carry this service in find it by this token.
    let _token = match ctx.session.liveliness().declare_token(state.key.clone()).wait() {
        Ok(token) => Some(token),
        Err(e) => {
            tracing::warn!(service = %service.name, key = %state.key, "cannot declare the liveliness token (only bridges that name this service literally will carry it in): {e}");
            None
        }
    };
    tracing::info!(service = %service.name, key = %state.key, "carrying out samples of {spec}");
    Service::set(&service.out_active, true);
    let decl = wire::topic_decl(&spec, &config);
    let mut seq = 0u64;
    // When the last message went out: a stream lingers for more samples, a lone sample not.
    let mut last_sent: Option<Instant> = None;
    let mut batch = Batch::default();
    let mut subscriber: Option<RawSubscriber> = None;
    let mut drops_seen = 0;
    // A stream of samples is taken without a sleep and a wake-up per sample: the thread
    // yields to the publisher a while before it parks, and spins only while spinning pays
    // (not when the publisher shares our core).
    // Busy polling (`--busy-poll`) spins until a sample comes or the next match check is due.
    let mut strategy = if ctx.busy_poll {
        Backoff::new().spins(u32::MAX)
    } else {
        Backoff::new().spins(200).yields(50).adaptive()
    };
    let mut next_check = Instant::now();
    // Acquire: pairs with the Release store of whoever stops us (nothing else to see).
    while !stop.load(Ordering::Acquire) && !ctx.stopping() {
        let now = Instant::now();
        if now >= next_check {
            next_check = now + MATCH_CHECK;
            let matched = publisher.matching_status().wait().is_ok_and(|m| m.matching());
            match (matched, subscriber.take()) {
                (true, None) => match state.attach(topic) {
                    Ok(s) => {
                        drops_seen = s.drops();
                        subscriber = Some(s);
                    }
                    Err(e) => {
                        if service.may_warn() {
                            tracing::warn!(service = %service.name, "cannot subscribe to the local topic: {e}");
                        }
                    }
                },
                (false, Some(s)) => state.detach(s),
                (_, kept) => subscriber = kept,
            }
        }
        let Some(local) = &subscriber else {
            std::thread::sleep(next_check.saturating_duration_since(Instant::now()));
            continue;
        };
        let wait = next_check.saturating_duration_since(Instant::now());
        let first = match local.receive_with(&mut strategy, Some(wait)) {
            Ok(sample) => sample,
            Err(ReceiveError::TimedOut(_)) => continue,
            Err(e) => {
                if service.may_warn() {
                    tracing::warn!(service = %service.name, "cannot receive from the local topic: {e}");
                }
                std::thread::sleep(MATCH_CHECK);
                continue;
            }
        };
        // The first sample, and then whatever is queued already: as many as fit in one
        // message. While the publisher keeps sending, each yield finds more (on our core it
        // runs during the yield, on another it kept going): the message gathers them for up
        // to `LINGER` rather than going out with the few that one pass found.
        let mut next = Some(first);
        let mut lingered = None;
        loop {
            while let Some(sample) = next.take() {
                let drops = local.drops();
                let dropped = drops != drops_seen;
                if dropped {
                    Service::add(&service.drops, drops.wrapping_sub(drops_seen));
                    drops_seen = drops;
                }
                let bytes: &[u8] = &sample;
                if lock(&state.echo).take(bytes, dropped) {
                    Service::add(&service.echoes, 1);
                } else {
                    if !batch.lens.is_empty() && batch.payload.len() + bytes.len() > BATCH_BYTES {
                        batch.send(ctx, service, &publisher, &decl, &mut seq);
                    }
                    batch.add(bytes);
                }
                drop(sample);
                if !batch.full() {
                    next = local.receive().ok().flatten();
                }
            }
            if batch.full() || batch.lens.is_empty() {
                break;
            }
            // After a quiet spell the message goes at once: nothing says more samples come.
            let streaming = last_sent.is_some_and(|sent: Instant| sent.elapsed() < LINGER);
            let since = *lingered.get_or_insert_with(Instant::now);
            if !streaming || since.elapsed() >= LINGER {
                break;
            }
            std::thread::yield_now();
            next = local.receive().ok().flatten();
            if next.is_none() {
                break;
            }
        }
        batch.send(ctx, service, &publisher, &decl, &mut seq);
        last_sent = Some(Instant::now());
    }
    if let Some(s) = subscriber.take() {
        state.detach(s);
    }
    Service::set(&service.out_active, false);
}
