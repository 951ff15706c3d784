//! The monitor's errors: starting it ([`MonitorError`]), and the JSON errors its REST endpoints
//! answer with ([`ApiError`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the monitor could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The sampling interval is outside what the monitor accepts.
    #[error(
        "interval {interval:?} is out of range: give one from {min:?} to {max:?} (e.g. \
         --interval 250ms)"
    )]
    Interval {
        /// The interval given.
        interval: Duration,
        /// The shortest accepted.
        min: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// No WebSocket client would be accepted.
    #[error("max_clients is 0: allow at least one WebSocket client")]
    NoClients,
    /// The listening socket could not be opened.
    #[error(
        "cannot listen on {addr}: {source} (is another `shmlane monitor` running there? pick \
         another port with --listen 127.0.0.1:PORT)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0} (out of threads or memory?)")]
    Runtime(std::io::Error),
    /// The server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// An error a REST endpoint answers with: a status code and a JSON body
/// `{"error": CODE, "message": TEXT, "status": N}` (plus `"candidates"` for an ambiguous name).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A service name that is not one the facade could make.
    #[error("{0}")]
    BadName(String),
    /// No service of that name.
    #[error(
        "no service {name:?} in {dir}: GET /api/services lists the services there (and their \
         ids)"
    )]
    NotFound {
        /// The name asked for.
        name: String,
        /// The directory looked in.
        dir: String,
    },
    /// A bare service name that several services answer to.
    #[error("{name:?} names several services: ask for one of their ids ({})", candidates.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The ids of the services it could mean.
        candidates: Vec<String>,
    },
    /// No route for the path.
    #[error(
        "no such endpoint {0}: the monitor serves /, /api/services, /api/nodes, /api/live and /metrics"
    )]
    NoRoute(String),
    /// A WebSocket upgrade that was not one.
    #[error("{0}: /api/live takes a WebSocket upgrade (GET with Upgrade: websocket)")]
    BadUpgrade(String, StatusCode),
    /// A WebSocket upgrade from a page of another origin.
    #[error(
        "WebSocket from origin {0:?} refused: only pages served by this monitor may connect \
         (clients that send no Origin header, such as scripts, may)"
    )]
    CrossOrigin(String),
    /// Too many WebSocket clients at once.
    #[error("{0} WebSocket clients are connected, the most this monitor takes: retry later")]
    TooManyClients(usize),
    /// Discovery failed: the directory could not be listed, or the work could not be run.
    #[error("{0}")]
    Discovery(String),
}

impl ApiError {
    /// The status code it answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadName(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::Ambiguous { .. } => StatusCode::CONFLICT,
            ApiError::BadUpgrade(_, status) => *status,
            ApiError::CrossOrigin(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyClients(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Discovery(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Its machine-readable code.
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadName(_) => "bad_name",
            ApiError::NotFound { .. } => "not_found",
            ApiError::Ambiguous { .. } => "ambiguous",
            ApiError::NoRoute(_) => "no_route",
            ApiError::BadUpgrade(..) => "bad_upgrade",
            ApiError::CrossOrigin(_) => "cross_origin",
            ApiError::TooManyClients(_) => "too_many_clients",
            ApiError::Discovery(_) => "discovery_failed",
        }
    }
}

/// The JSON body of an [`ApiError`].
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: String,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<&'a [String]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let candidates = match &self {
            ApiError::Ambiguous { candidates, .. } => Some(candidates.as_slice()),
            _ => None,
        };
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            status: status.as_u16(),
            candidates,
        };
        (status, Json(body)).into_response()
    }
}
