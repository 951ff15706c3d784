//! `GET /api/live`: the WebSocket. A client gets a snapshot, then a delta every interval, and
//! may ask for a peek at one topic at a time:
//!
//! - client → monitor: `{"type": "peek", "service": "app.topic.ticks"}`, `{"type": "unpeek"}`;
//! - monitor → client: `snapshot`, `delta`, `peek` (see [`ServerMessage`]), and `error` for a
//!   request it could not act on.
//!
//! A client that falls more than [`lag_limit`] deltas behind (5 s worth) is closed with code
//! 1013 (try again later) if its socket still takes a close frame, and cut off if not (its
//! socket full: it stopped reading); one whose socket takes longer than [`SEND_TIMEOUT`] to
//! accept its snapshot or a reply is cut off too. Either way the sampler and the other
//! clients never wait for it. Clients are counted against the monitor's
//! `max_clients`; one more is refused with 503 before the upgrade, as is (with 403) a page of
//! another origin.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::hub::{Frame, ServerMessage, lag_limit};
use crate::peek::{Lease, PeekState};
use crate::server::App;

/// The largest message a client may send (requests are a few dozen bytes).
const MAX_REQUEST: usize = 4096;
/// How long a client's socket may take to accept one message.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close frame may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Close code: the client fell behind (1013, "try again later").
const CLOSE_BEHIND: u16 = 1013;
/// Close code: the monitor is stopping (1001, "going away").
const CLOSE_AWAY: u16 = 1001;

/// A message from a client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    /// Show the latest samples of this topic (replacing any other peek of this client).
    Peek { service: String },
    /// Stop peeking.
    Unpeek,
}

/// Upgrades the connection, or answers why not (as JSON: a bad upgrade, or too many clients).
pub(crate) async fn live(
    State(app): State<App>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::BadUpgrade(rejection.body_text(), rejection.status()).into_response();
        }
    };
    if let Err(origin) = same_origin(&headers) {
        return ApiError::CrossOrigin(origin).into_response();
    }
    let Ok(permit) = Arc::clone(&app.clients).try_acquire_owned() else {
        return ApiError::TooManyClients(app.max_clients).into_response();
    };
    // Small buffers: a client sends a few dozen bytes, and each message to it is written out
    // at once (the kernel's socket buffer is its buffer), so a connection costs little.
    upgrade
        .read_buffer_size(MAX_REQUEST)
        .write_buffer_size(0)
        .max_message_size(MAX_REQUEST)
        .max_frame_size(MAX_REQUEST)
        .on_failed_upgrade(|error| tracing::debug!("WebSocket upgrade failed: {error}"))
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            serve(app, socket).await;
        })
}

/// Browsers let any page open a WebSocket to any host, and send its origin: a page of
/// another origin (say, a web site the operator visits) must not read what this host runs.
/// Clients that send no `Origin` (scripts, `websocat`) are not browsers' pages and may connect.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok());
    let authority = origin.split_once("://").map(|(_, authority)| authority);
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(origin),
    }
}

/// Serves one client until it goes, falls behind, or the monitor stops.
async fn serve(app: App, mut socket: WebSocket) {
    let hub = Arc::clone(&app.hub);
    let _counted = hub.client();
    let mut deltas = hub.subscribe();
    let latest = hub.latest();
    let mut seen = latest.sample.seq;
    if send(&app, &mut socket, hub.snapshot(&latest)).await.is_err() {
        return;
    }
    drop(latest);
    let mut peek: Option<Lease> = None;
    let mut shutdown = app.shutdown.clone();
    loop {
        tokio::select! {
            frame = deltas.recv() => match frame {
                Ok(frame) if frame.seq <= seen => {}
                Ok(frame) => {
                    seen = frame.seq;
                    // A socket that does not take the delta before the client falls behind
                    // (the broadcast keeps what it has not read yet) is cut off there: no
                    // close frame can get through it.
                    tokio::select! {
                        sent = send(&app, &mut socket, frame.text) => {
                            if sent.is_err() {
                                return;
                            }
                        }
                        () = behind(&app, &deltas) => {
                            drop_client(&app);
                            return;
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    drop_client(&app);
                    let reason = format!(
                        "fell behind by {missed} updates: read faster, or reconnect for a new \
                         snapshot"
                    );
                    close(socket, CLOSE_BEHIND, reason).await;
                    return;
                }
                Err(RecvError::Closed) => {
                    close(socket, CLOSE_AWAY, "the monitor is stopping".into()).await;
                    return;
                }
            },
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        let message = "binary messages are not understood: send JSON text";
                        let error = ServerMessage::Error { message: message.into() };
                        if send(&app, &mut socket, error.text()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // Pings are answered by the protocol layer.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let reply = request(&app, &text, &mut peek);
                if send(&app, &mut socket, reply).await.is_err() {
                    return;
                }
            },
            changed = peek_changed(&mut peek) => {
                let Some(lease) = peek.as_mut().filter(|_| changed) else {
                    peek = None;
                    continue;
                };
                let state = Arc::clone(&lease.state.borrow_and_update());
                let message = ServerMessage::Peek { service: Some(lease.id()), state: &state };
                if send(&app, &mut socket, message.text()).await.is_err() {
                    return;
                }
            },
            _ = shutdown.changed() => {
                close(socket, CLOSE_AWAY, "the monitor is stopping".into()).await;
                return;
            },
        }
    }
}

/// Acts on a client's message; returns the reply.
fn request(app: &App, text: &str, peek: &mut Option<Lease>) -> Utf8Bytes {
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(e) => {
            let message = format!(
                "cannot read {text:?}: {e}; send {{\"type\":\"peek\",\"service\":ID}} or \
                 {{\"type\":\"unpeek\"}}"
            );
            return ServerMessage::Error { message }.text();
        }
    };
    // The old lease goes first: its subscriber is released before another is taken.
    let previous = peek.take().map(|lease| lease.id().to_owned());
    match message {
        ClientMessage::Unpeek => {
            let closed = PeekState { status: "closed", ..PeekState::default() };
            ServerMessage::Peek { service: previous.as_deref(), state: &closed }.text()
        }
        ClientMessage::Peek { service } => match app.hub.peeks.lease(&service) {
            Ok(mut lease) => {
                let state = Arc::clone(&lease.state.borrow_and_update());
                let text = ServerMessage::Peek { service: Some(lease.id()), state: &state }.text();
                *peek = Some(lease);
                text
            }
            Err(e) => ServerMessage::Error { message: e.to_string() }.text(),
        },
    }
}

/// Waits until the peek's state changes: `true`, or `false` if its thread ended without a
/// word. Never ready without a peek.
async fn peek_changed(peek: &mut Option<Lease>) -> bool {
    match peek {
        Some(lease) => lease.state.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The client is gone, or was cut off.
struct Gone;

/// Sends one text message; a socket that does not take it within [`SEND_TIMEOUT`] is cut off
/// (and counted as dropped).
async fn send(app: &App, socket: &mut WebSocket, text: Utf8Bytes) -> Result<(), Gone> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Gone),
        Err(_) => {
            drop_client(app);
            Err(Gone)
        }
    }
}

/// Completes once `deltas` holds as many deltas as the hub keeps: the client is about to
/// miss one.
async fn behind(app: &App, deltas: &broadcast::Receiver<Frame>) {
    let limit = lag_limit(app.hub.interval());
    let mut check = tokio::time::interval(app.hub.interval());
    while deltas.len() < limit {
        check.tick().await;
    }
}

/// Sends a close frame (if the socket takes it in time) and drops the connection.
async fn close(mut socket: WebSocket, code: u16, reason: String) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// Counts a client dropped for falling behind.
fn drop_client(app: &App) {
    // Relaxed: a statistic for /metrics.
    app.hub.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [(header::ORIGIN, origin), (header::HOST, host)] {
            if let Some(value) = value {
                headers.insert(name, value.parse().expect("a header value"));
            }
        }
        headers
    }

    #[test]
    fn only_pages_of_this_origin_or_no_page_may_connect() {
        let host = Some("127.0.0.1:7878");
        assert!(same_origin(&headers(None, host)).is_ok(), "a script");
        assert!(same_origin(&headers(Some("http://127.0.0.1:7878"), host)).is_ok());
        for origin in ["http://evil.example", "http://127.0.0.1:7879", "null", "127.0.0.1:7878"] {
            assert!(same_origin(&headers(Some(origin), host)).is_err(), "{origin}");
        }
        assert!(same_origin(&headers(Some("http://127.0.0.1:7878"), None)).is_err(), "no Host");
    }
}
