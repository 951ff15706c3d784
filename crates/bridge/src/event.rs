//! Events across: out, a thread per local event service that holds a listener (while a
//! remote peer listens) and puts the ids it takes; in, a zenoh callback that notifies them
//! locally, creating the service with the sender's `max_event_id` if it does not exist.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmlane::notify::Blocking;
use shmlane::{Event, Listener, Notifier, ReceiveError};
use zenoh::Wait;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample};

use crate::bridge::Context;
use crate::echo::EventEcho;
use crate::keys::Kind;
use crate::stats::Service;
use crate::topic::lock;
use crate::wire::{self, Message};

/// How often an out carrier checks whether a remote peer listens.
const MATCH_CHECK: Duration = Duration::from_millis(100);
/// How long a failure to open the local service is trusted before trying again.
const RETRY_OPEN: Duration = Duration::from_secs(1);

/// The event services this bridge has seen, by (namespace, service).
#[derive(Debug, Default)]
pub(crate) struct Events {
    states: Mutex<HashMap<(String, String), Arc<EventState>>>,
}

impl Events {
    /// The state of an event service, made on first use.
    pub(crate) fn state(&self, ctx: &Context, namespace: &str, name: &str) -> Arc<EventState> {
        let mut states = lock(&self.states);
        let key = (namespace.to_owned(), name.to_owned());
        Arc::clone(states.entry(key).or_insert_with(|| {
            Arc::new(EventState {
                service: ctx.registry.service(namespace, Kind::Event, name),
                key: ctx.keys.key(namespace, name, Kind::Event),
                echo: Mutex::new(EventEcho::default()),
                inside: Mutex::new(InSide::default()),
            })
        }))
    }

    /// Drops every local notifier (at shutdown).
    pub(crate) fn clear(&self) {
        lock(&self.states).clear();
    }
}

/// One event service, both ways.
#[derive(Debug)]
pub(crate) struct EventState {
    service: Arc<Service>,
    key: String,
    echo: Mutex<EventEcho>,
    inside: Mutex<InSide>,
}

#[derive(Debug, Default)]
struct InSide {
    local: Option<(Event, Notifier)>,
    /// When opening the local service last failed.
    failed_at: Option<Instant>,
    next_seq: HashMap<u64, u64>,
}

impl EventState {
    /// Notifies the ids of an event message from zenoh locally. Never panics.
    pub(crate) fn deliver(&self, ctx: &Context, sample: &Sample) {
        let service = &*self.service;
        let malformed = |why: &str| {
            Service::add(&service.malformed, 1);
            if service.may_warn() {
                tracing::warn!(service = %service.name, "dropped a malformed event message from zenoh: {why}");
            }
        };
        let payload = sample.payload();
        if payload.len() > ctx.max_payload {
            return malformed("oversized");
        }
        let Some(attachment) = sample.attachment() else {
            return malformed("no attachment");
        };
        let attachment = attachment.to_bytes();
        let (prefix, max_event_id) = match wire::split(&attachment, Message::Event)
            .and_then(|(prefix, decl)| Ok((prefix, wire::read_event_decl(decl)?)))
        {
            Ok(read) => read,
            Err(e) => return malformed(&e.to_string()),
        };
        let ids = match wire::read_event_ids(&payload.to_bytes()) {
            Ok(ids) => ids,
            Err(e) => return malformed(&e.to_string()),
        };
        let mut inside = lock(&self.inside);
        if inside.local.is_none() {
            if inside.failed_at.is_some_and(|at| at.elapsed() < RETRY_OPEN) {
                Service::add(&service.drops, 1);
                return;
            }
            match self.open(ctx, max_event_id) {
                Ok(local) => {
                    Service::set(&service.in_active, true);
                    inside.local = Some(local);
                }
                Err(why) => {
                    inside.failed_at = Some(Instant::now());
                    Service::add(&service.drops, 1);
                    tracing::warn!(service = %service.name, "cannot deliver events from zenoh: {why}");
                    return;
                }
            }
        }
        let expected = inside.next_seq.entry(prefix.source).or_insert(prefix.seq);
        if prefix.seq > *expected {
            Service::add(&service.drops, prefix.seq - *expected);
        }
        *expected = prefix.seq.wrapping_add(1);
        let Some((event, notifier)) = &inside.local else { return };
        for id in ids {
            if id >= event.max_event_id() {
                Service::add(&service.type_mismatches, 1);
                if service.may_warn() {
                    tracing::warn!(
                        service = %service.name,
                        "refused event id {id}: the sending host allows ids below \
                         {max_event_id}, this host below {}; create the service with the same \
                         max_event_id on both hosts",
                        event.max_event_id()
                    );
                }
                continue;
            }
            // Recorded before it is set: the out side finds it whenever it takes the id.
            lock(&self.echo).record(id);
            match notifier.notify(id) {
                Ok(_) => {
                    Service::add(&service.samples_in, 1);
                    Service::add(&service.bytes_in, 4);
                }
                Err(e) => {
                    Service::add(&service.drops, 1);
                    if service.may_warn() {
                        tracing::warn!(service = %service.name, "cannot notify event {id}: {e}");
                    }
                }
            }
        }
    }

    fn open(&self, ctx: &Context, max_event_id: u32) -> Result<(Event, Notifier), String> {
        let node = ctx.node(&self.service.namespace).ok_or("no node for the namespace (a bug)")?;
        let event = node
            .event(&self.service.name)
            .max_event_id(max_event_id)
            .open_or_create()
            .map_err(|e| e.to_string())?;
        let notifier = event.notifier().map_err(|e| e.to_string())?;
        Ok((event, notifier))
    }

    fn attach(&self, event: &Event) -> Result<Listener, shmlane::ConnectError> {
        let listener = event.listener()?;
        lock(&self.echo).start();
        Service::set(&self.service.matched, true);
        Ok(listener)
    }

    fn detach(&self, listener: Listener) {
        drop(listener);
        lock(&self.echo).stop();
        Service::set(&self.service.matched, false);
    }
}

/// The out carrier of one local event service: runs until `stop` or the bridge stops.
pub(crate) fn carry_out(ctx: &Context, state: &EventState, event: &Event, stop: &AtomicBool) {
    let service = &*state.service;
    let publisher = match ctx
        .session
        .declare_publisher(state.key.clone())
        .congestion_control(CongestionControl::Block)
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
    tracing::info!(service = %service.name, key = %state.key, "carrying out events");
    Service::set(&service.out_active, true);
    let decl = wire::event_decl(event.max_event_id());
    let mut seq = 0u64;
    let mut listener: Option<Listener> = None;
    let mut strategy = Blocking::new();
    let mut next_check = Instant::now();
    // Acquire: pairs with the Release store of whoever stops us.
    while !stop.load(Ordering::Acquire) && !ctx.stopping() {
        let now = Instant::now();
        if now >= next_check {
            next_check = now + MATCH_CHECK;
            let matched = publisher.matching_status().wait().is_ok_and(|m| m.matching());
            match (matched, listener.take()) {
                (true, None) => match state.attach(event) {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        if service.may_warn() {
                            tracing::warn!(service = %service.name, "cannot listen to the local events: {e}");
                        }
                    }
                },
                (false, Some(l)) => state.detach(l),
                (_, kept) => listener = kept,
            }
        }
        let Some(local) = &listener else {
            std::thread::sleep(next_check.saturating_duration_since(Instant::now()));
            continue;
        };
        let wait = next_check.saturating_duration_since(Instant::now());
        let ids = match local.wait(&mut strategy, Some(wait)) {
            Ok(ids) => ids,
            Err(ReceiveError::TimedOut(_)) => continue,
            Err(e) => {
                tracing::warn!(service = %service.name, "cannot wait for local events: {e}");
                std::thread::sleep(MATCH_CHECK);
                continue;
            }
        };
        let mut echo = lock(&state.echo);
        let before = ids.len();
        let ids: Vec<u32> = ids.into_iter().filter(|&id| !echo.take(id)).collect();
        drop(echo);
        Service::add(&service.echoes, (before - ids.len()) as u64);
        if ids.is_empty() {
            continue;
        }
        let attachment = wire::message(Message::Event, ctx.id, seq, &decl);
        seq = seq.wrapping_add(1);
        let payload = wire::event_ids(&ids);
        let len = payload.len() as u64;
        match publisher.put(payload).attachment(attachment).wait() {
            Ok(()) => {
                Service::add(&service.samples_out, ids.len() as u64);
                Service::add(&service.bytes_out, len);
            }
            Err(e) => {
                Service::add(&service.drops, 1);
                if service.may_warn() {
                    tracing::warn!(service = %service.name, "zenoh refused event ids: {e}");
                }
            }
        }
    }
    if let Some(l) = listener.take() {
        state.detach(l);
    }
    Service::set(&service.out_active, false);
}
