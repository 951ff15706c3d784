//! The REST endpoints: `GET /api/services`, `GET /api/services/{name}`, `GET /api/nodes`,
//! each read afresh through the facade's discovery (the same facts as `shmlane list` and
//! `shmlane inspect`), and `GET /metrics`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shmlane::discovery::{self, InspectError, SegmentEntry};
use shmlane_segment::SegmentStatus;

use crate::error::ApiError;
use crate::model::{InspectionJson, NodeJson, ServiceJson};
use crate::names::{self, ServiceRef};
use crate::server::App;

/// The query every REST endpoint takes: `?namespace=NAME` keeps that namespace's only.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Scope {
    namespace: Option<String>,
}

impl Scope {
    /// The namespace asked for, validated.
    fn from_query(query: Result<Query<Scope>, QueryRejection>) -> Result<Scope, ApiError> {
        let Query(scope) = query.map_err(|e| {
            ApiError::BadName(format!("{}: the query takes only ?namespace=NAME", e.body_text()))
        })?;
        if let Some(namespace) = &scope.namespace {
            names::check_name("namespace", namespace)?;
        }
        Ok(scope)
    }

    fn selects(&self, namespace: Option<&str>) -> bool {
        self.namespace.as_deref().is_none_or(|wanted| namespace == Some(wanted))
    }
}

/// `GET /api/services`.
#[derive(Debug, Serialize)]
pub(crate) struct ServicesJson {
    /// The directory looked in.
    dir: String,
    services: Vec<ServiceJson>,
}

/// `GET /api/nodes`.
#[derive(Debug, Serialize)]
pub(crate) struct NodesJson {
    dir: String,
    nodes: Vec<NodeJson>,
}

/// `GET /api/services[?namespace=NAME]`: every service with its slot holders and counters.
pub(crate) async fn services(
    State(app): State<App>,
    query: Result<Query<Scope>, QueryRejection>,
) -> Result<Json<ServicesJson>, ApiError> {
    let scope = Scope::from_query(query)?;
    let entries = segments(&app).await?;
    let services = entries
        .iter()
        .filter(|entry| scope.selects(entry.namespace.as_deref()))
        .filter_map(ServiceJson::of)
        .collect();
    Ok(Json(ServicesJson { dir: app.dir(), services }))
}

/// `GET /api/nodes[?namespace=NAME]`: the registered nodes of live processes.
pub(crate) async fn nodes(
    State(app): State<App>,
    query: Result<Query<Scope>, QueryRejection>,
) -> Result<Json<NodesJson>, ApiError> {
    let scope = Scope::from_query(query)?;
    let entries = segments(&app).await?;
    let nodes = entries
        .iter()
        .filter(|entry| entry.segment.status == SegmentStatus::Alive)
        .filter(|entry| scope.selects(entry.namespace.as_deref()))
        .filter_map(|entry| Some(NodeJson::of(entry.segment.name.as_str(), entry.node.as_ref()?)))
        .collect();
    Ok(Json(NodesJson { dir: app.dir(), nodes }))
}

/// `GET /api/services/{name}[?namespace=NAME]`: one service in detail, by id or by a name
/// that only one service answers to (see [`names`]).
pub(crate) async fn service(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Scope>, QueryRejection>,
) -> Result<Json<InspectionJson>, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::BadName(e.body_text()))?;
    let scope = Scope::from_query(query)?;
    let wanted = names::parse(&name)?;
    let dir = app.dir();
    let not_found = || ApiError::NotFound { name: name.clone(), dir: dir.clone() };
    let segment = match wanted {
        ServiceRef::Id(segment) => {
            let namespace = segment.as_str().split('.').next();
            if !scope.selects(namespace) {
                return Err(not_found());
            }
            segment
        }
        ServiceRef::Bare(bare) => {
            let entries = segments(&app).await?;
            let namespace = scope.namespace.as_deref();
            let found: Vec<&SegmentEntry> = entries
                .iter()
                .filter(|entry| names::bare_matches(entry, &bare, namespace))
                .collect();
            match found.as_slice() {
                [] => return Err(not_found()),
                [one] => one.segment.name.clone(),
                _ => {
                    let candidates =
                        found.iter().map(|entry| entry.segment.name.to_string()).collect();
                    return Err(ApiError::Ambiguous { name, candidates });
                }
            }
        }
    };
    match app.discover(move |root| discovery::inspect(root, &segment)).await? {
        Ok(inspection) if inspection.entry.service.is_some() => {
            Ok(Json(InspectionJson::from(&inspection)))
        }
        // Gone since it was resolved, or not a service's segment.
        Ok(_) | Err(InspectError::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(ApiError::Discovery(e.to_string())),
    }
}

/// Every segment, read on the blocking pool.
async fn segments(app: &App) -> Result<Vec<SegmentEntry>, ApiError> {
    app.discover(discovery::segments).await?.map_err(|e| ApiError::Discovery(e.to_string()))
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): State<App>) -> Response {
    match crate::metrics::encode(&app.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => ApiError::Discovery("the metrics could not be encoded".into()).into_response(),
    }
}

/// Any other path.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}
