//! Request/response across, over a zenoh queryable per service.
//!
//! Out (the host of the server): the bridge becomes a client of the local server and declares
//! a queryable on the service's key; each query's payload is a request, checked against the
//! local types, called, and its response is the reply. A `?decl` query is answered with the
//! service's types, so bridges on the clients' hosts can create the service before any local
//! client does.
//!
//! In (the hosts of the clients): the bridge becomes the local server; each request is a
//! zenoh `get` on the service's key whose reply is sent back to the calling client alone (the
//! facade tags every request with its client). Calls are carried one at a time per service.
//! Timeouts are as locally: a client waits as long as it chose to; the bridge gives up on a
//! call after the `rpc_timeout`, and answers nothing (the client's own wait then times out).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shmlane::notify::Blocking;
use shmlane::{CallError, RawRpc, ReceiveError};
use zenoh::Wait;
use zenoh::bytes::ZBytes;
use zenoh::handlers::FifoChannel;
use zenoh::sample::Locality;

use crate::bridge::Context;
use crate::stats::Service;
use crate::wire::{self, Message, Refusal};

/// How long a carrier waits before looking at its stop flag again.
const POLL: Duration = Duration::from_millis(100);
/// The selector parameter of a declaration query.
pub(crate) const DECL_PARAMETER: &str = "decl";

fn running(ctx: &Context, stop: &AtomicBool) -> bool {
    // Acquire: pairs with the Release store of whoever stops us.
    !stop.load(Ordering::Acquire) && !ctx.stopping()
}

/// Serves remote clients from the local server: runs until `stop` or the bridge stops.
pub(crate) fn carry_out(
    ctx: &Context,
    service: &Service,
    key: &str,
    rpc: &RawRpc,
    stop: &AtomicBool,
) {
    let client = match rpc.client() {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(service = %service.name, "cannot become a client of the local server: {e}");
            return;
        }
    };
    let queryable = match ctx
        .session
        .declare_queryable(key)
        .allowed_origin(Locality::Remote)
        .with(FifoChannel::new(256))
        .wait()
    {
        Ok(queryable) => queryable,
        Err(e) => {
            tracing::error!(service = %service.name, key, "cannot declare the zenoh queryable: {e}");
            return;
        }
    };
    let (request_type, response_type) = (rpc.request_type().clone(), rpc.response_type().clone());
    tracing::info!(service = %service.name, key, "carrying out rpc: {request_type} -> {response_type}");
    Service::set(&service.out_active, true);
    let decl =
        wire::message(Message::RpcDecl, ctx.id, 0, &wire::rpc_decl(&request_type, &response_type));
    let mut strategy = Blocking::new();
    while running(ctx, stop) {
        let query = match queryable.recv_timeout(POLL) {
            Ok(Some(query)) => query,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(service = %service.name, "the zenoh queryable closed: {e}");
                break;
            }
        };
        if query.parameters().contains_key(DECL_PARAMETER) {
            if let Err(e) = query.reply(key, decl.clone()).wait() {
                tracing::debug!(service = %service.name, "cannot answer a declaration query: {e}");
            }
            continue;
        }
        let refuse = |code: Refusal, why: String| {
            if let Err(e) = query.reply_err(wire::refusal(code, &why)).wait() {
                tracing::debug!(service = %service.name, "cannot send a refusal: {e}");
            }
            why
        };
        let Some(attachment) = query.attachment().map(|a| a.to_bytes()) else {
            Service::add(&service.malformed, 1);
            refuse(Refusal::Malformed, "a request without the bridge's attachment".into());
            continue;
        };
        let types =
            wire::split(&attachment, Message::RpcRequest).and_then(|(_, d)| wire::read_rpc_decl(d));
        let (their_request, their_response) = match types {
            Ok(types) => types,
            Err(e) => {
                Service::add(&service.malformed, 1);
                let why = refuse(Refusal::Malformed, format!("malformed request: {e}"));
                if service.may_warn() {
                    tracing::warn!(service = %service.name, "{why}");
                }
                continue;
            }
        };
        if their_request != request_type || their_response != response_type {
            Service::add(&service.type_mismatches, 1);
            let why = refuse(
                Refusal::TypeMismatch,
                format!(
                    "type mismatch on rpc {:?}: the calling host sends {their_request} and \
                     expects {their_response}; the serving host takes {request_type} and \
                     answers {response_type}; use the same types on both hosts",
                    service.name
                ),
            );
            if service.may_warn() {
                tracing::warn!(service = %service.name, "refused a request: {why}");
            }
            continue;
        }
        let request = query.payload().map(|p| p.to_bytes()).unwrap_or_default();
        let size = request_type.size as usize;
        if request.is_empty()
            || !request.len().is_multiple_of(size)
            || request.len() > ctx.max_payload
        {
            Service::add(&service.malformed, 1);
            refuse(
                Refusal::Malformed,
                format!(
                    "a request of {} bytes is not whole {size}-byte elements (or is oversized)",
                    request.len()
                ),
            );
            continue;
        }
        Service::add(&service.samples_in, 1);
        Service::add(&service.bytes_in, request.len() as u64);
        match client.call(&request, &mut strategy, Some(ctx.rpc_timeout)) {
            Ok(response) => {
                let len = response.len() as u64 * response_type.size;
                let reply = ZBytes::from(&response[..]);
                drop(response);
                match query.reply(key, reply).wait() {
                    Ok(()) => {
                        Service::add(&service.samples_out, 1);
                        Service::add(&service.bytes_out, len);
                    }
                    Err(e) => {
                        Service::add(&service.errors, 1);
                        tracing::debug!(service = %service.name, "cannot send a reply: {e}");
                    }
                }
            }
            Err(CallError::Receive(ReceiveError::TimedOut(_))) => {
                Service::add(&service.errors, 1);
                let timeout = ctx.rpc_timeout;
                refuse(
                    Refusal::Unanswered,
                    format!("the server did not answer within {timeout:?}"),
                );
            }
            Err(e) => {
                Service::add(&service.errors, 1);
                let why =
                    refuse(Refusal::Failed, format!("the call failed on the serving host: {e}"));
                if service.may_warn() {
                    tracing::warn!(service = %service.name, "{why}");
                }
            }
        }
    }
    Service::set(&service.out_active, false);
}

/// Serves local clients from a remote server: runs until `stop` or the bridge stops.
pub(crate) fn carry_in(
    ctx: &Context,
    service: &Service,
    key: &str,
    rpc: &RawRpc,
    stop: &AtomicBool,
) {
    let server = match rpc.server() {
        Ok(server) => server,
        Err(e) => {
            if service.may_warn() {
                tracing::warn!(service = %service.name, "cannot serve local clients (is a local server running? then carry this service out): {e}");
            }
            return;
        }
    };
    let (request_type, response_type) = (rpc.request_type().clone(), rpc.response_type().clone());
    tracing::info!(service = %service.name, key, "carrying in rpc: {request_type} -> {response_type}");
    Service::set(&service.in_active, true);
    let decl = wire::rpc_decl(&request_type, &response_type);
    let mut seq = 0u64;
    let mut strategy = Blocking::new();
    while running(ctx, stop) {
        let request = match server.receive_with(&mut strategy, Some(POLL)) {
            Ok(request) => request,
            Err(ReceiveError::TimedOut(_)) => continue,
            Err(e) => {
                tracing::warn!(service = %service.name, "cannot receive local requests: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let payload = ZBytes::from(&request[..]);
        let len = payload.len() as u64;
        let attachment = wire::message(Message::RpcRequest, ctx.id, seq, &decl);
        seq = seq.wrapping_add(1);
        let replies = ctx
            .session
            .get(key)
            .payload(payload)
            .attachment(attachment)
            .allowed_destination(Locality::Remote)
            .timeout(ctx.rpc_timeout)
            .with(FifoChannel::new(4))
            .wait();
        let replies = match replies {
            Ok(replies) => replies,
            Err(e) => {
                Service::add(&service.errors, 1);
                tracing::warn!(service = %service.name, "cannot send a request to zenoh: {e}");
                continue;
            }
        };
        Service::add(&service.samples_out, 1);
        Service::add(&service.bytes_out, len);
        // The first reply, or none once the query's timeout ends it.
        let Ok(reply) = replies.recv() else {
            Service::add(&service.errors, 1);
            tracing::debug!(service = %service.name, "no remote server answered");
            continue;
        };
        match reply.result() {
            Ok(sample) => {
                let response = sample.payload().to_bytes();
                let size = response_type.size as usize;
                if response.is_empty()
                    || !response.len().is_multiple_of(size)
                    || response.len() > ctx.max_payload
                {
                    Service::add(&service.malformed, 1);
                    if service.may_warn() {
                        tracing::warn!(service = %service.name, "dropped a malformed response of {} bytes", response.len());
                    }
                    continue;
                }
                match server.respond(&request, &response) {
                    Ok(()) => {
                        Service::add(&service.samples_in, 1);
                        Service::add(&service.bytes_in, response.len() as u64);
                    }
                    Err(e) => {
                        Service::add(&service.drops, 1);
                        if service.may_warn() {
                            tracing::warn!(service = %service.name, "cannot answer a local client: {e}");
                        }
                    }
                }
            }
            Err(error) => {
                let (code, why) = wire::read_refusal(&error.payload().to_bytes());
                let counter = match code {
                    Some(Refusal::TypeMismatch) => &service.type_mismatches,
                    _ => &service.errors,
                };
                Service::add(counter, 1);
                if service.may_warn() || code == Some(Refusal::TypeMismatch) {
                    tracing::warn!(service = %service.name, "the remote bridge refused a request: {why}");
                }
            }
        }
    }
    Service::set(&service.in_active, false);
}

/// What a `?decl` query brought back: a remote service's types.
#[derive(Debug)]
pub(crate) struct Declared {
    pub(crate) namespace: String,
    pub(crate) service: String,
    pub(crate) request: shmlane::TypeSpec,
    pub(crate) response: shmlane::TypeSpec,
}

/// Sends a declaration query on `selector` (a wildcard key of one namespace); each valid
/// answer goes to `found`.
pub(crate) fn query_declarations(
    ctx: &Context,
    namespace: &str,
    key: &str,
    found: std::sync::mpsc::Sender<Declared>,
) {
    let keys = ctx.keys.clone();
    let namespace = namespace.to_owned();
    let selector = format!("{key}?{DECL_PARAMETER}");
    let sent = ctx
        .session
        .get(selector.as_str())
        .allowed_destination(Locality::Remote)
        .timeout(Duration::from_secs(1))
        .callback(move |reply| {
            let Ok(sample) = reply.result() else { return };
            let Some(service) =
                keys.service_of(sample.key_expr().as_str(), &namespace, crate::keys::Kind::Rpc)
            else {
                return;
            };
            let bytes = sample.payload().to_bytes();
            let types =
                wire::split(&bytes, Message::RpcDecl).and_then(|(_, d)| wire::read_rpc_decl(d));
            match types {
                Ok((request, response)) => {
                    let namespace = namespace.clone();
                    let service = service.to_owned();
                    let _ = found.send(Declared { namespace, service, request, response });
                }
                Err(e) => tracing::debug!(service, "ignored a malformed rpc declaration: {e}"),
            }
        })
        .wait();
    if let Err(e) = sent {
        tracing::debug!(selector, "cannot query rpc declarations: {e}");
    }
}
