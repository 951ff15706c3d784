//! The names a client may give for a service, validated as the facade validates them.
//!
//! | form | example | means |
//! |---|---|---|
//! | `{namespace}.{topic\|event}.{service}` | `app.topic.ticks` | the service's id: its control segment |
//! | `{namespace}.rpc.{service}.{req\|resp}` | `app.rpc.adder.req` | one topic of a request/response service |
//! | `{service}` | `ticks` | the one service of that name (in `?namespace=` if given) |
//! | `{service}.{req\|resp}` | `adder.req` | the one rpc topic of that name |
//!
//! Namespaces and service names are what the facade accepts (`Node::builder(..).namespace`,
//! `node.topic(..)`): 1 to 64 ASCII letters, digits, `-` and `_`.

use shmlane::discovery::SegmentEntry;
use shmlane_segment::SegmentName;

use crate::error::ApiError;

/// Longest namespace or service name, in bytes (the facade's `MAX_NAME_LEN`).
const MAX_NAME_LEN: usize = 64;

/// A service as a client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceRef {
    /// By id: the name of its control segment.
    Id(SegmentName),
    /// By its name alone (with `.req` or `.resp` for an rpc topic), in any namespace.
    Bare(String),
}

/// Checks a namespace or service name as the facade does (`node::check_name`).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadName(format!(
            "invalid {what} {name:?}: use 1 to {MAX_NAME_LEN} ASCII letters, digits, '-' or '_'"
        )))
    }
}

/// Parses and validates a service name of one of the forms in the module documentation.
pub(crate) fn parse(name: &str) -> Result<ServiceRef, ApiError> {
    let parts: Vec<&str> = name.split('.').collect();
    let half = |part: &str| matches!(part, "req" | "resp");
    let id = |name: &str| {
        SegmentName::new(name)
            .map(ServiceRef::Id)
            .map_err(|e| ApiError::BadName(format!("invalid service id {name:?}: {e}")))
    };
    match parts.as_slice() {
        [service] => check_name("service name", service).map(|()| ServiceRef::Bare(name.into())),
        [service, suffix] if half(suffix) => {
            check_name("service name", service).map(|()| ServiceRef::Bare(name.into()))
        }
        [namespace, kind @ ("topic" | "event"), service] => {
            check_name("namespace", namespace)?;
            check_name(&format!("{kind} name"), service)?;
            id(name)
        }
        [_, "rpc", service] => Err(ApiError::BadName(format!(
            "{name:?} is a request/response service, which has two topics: ask for \
             {name}.req or {name}.resp (service {service:?})"
        ))),
        [namespace, "rpc", service, suffix] if half(suffix) => {
            check_name("namespace", namespace)?;
            check_name("rpc service name", service)?;
            id(name)
        }
        _ => Err(ApiError::BadName(format!(
            "invalid service name {name:?}: give an id such as `app.topic.ticks` or \
             `app.rpc.adder.req` (GET /api/services lists them), or a bare service name such as \
             `ticks`"
        ))),
    }
}

/// Whether `entry` is the service a bare name (`ticks`, `adder`, `adder.req`) means, in
/// `namespace` if one is given (as `shmlane inspect NAME` resolves a service name).
pub(crate) fn bare_matches(entry: &SegmentEntry, bare: &str, namespace: Option<&str>) -> bool {
    let Some(service) = &entry.service else { return false };
    if namespace.is_some_and(|namespace| service.namespace != namespace) {
        return false;
    }
    let base = service.name.strip_suffix(".req").or(service.name.strip_suffix(".resp"));
    service.name == bare || base == Some(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ServiceRef {
        ServiceRef::Id(SegmentName::new(name).expect("a valid segment name"))
    }

    #[test]
    fn ids_and_bare_names_are_told_apart() {
        assert_eq!(parse("app.topic.ticks").ok(), Some(id("app.topic.ticks")));
        assert_eq!(parse("app.event.bell").ok(), Some(id("app.event.bell")));
        assert_eq!(parse("app.rpc.adder.resp").ok(), Some(id("app.rpc.adder.resp")));
        assert_eq!(parse("ticks").ok(), Some(ServiceRef::Bare("ticks".into())));
        assert_eq!(parse("adder.req").ok(), Some(ServiceRef::Bare("adder.req".into())));
    }

    #[test]
    fn names_the_facade_refuses_are_bad_requests() {
        let long = "x".repeat(65);
        for name in [
            "",
            "tick s",
            "ticks!",
            "../etc/passwd",
            "app.topic.",
            ".topic.ticks",
            "app.queue.ticks",
            "app.rpc.adder",
            "app.rpc.adder.other",
            "app.topic.ticks.p0.g1",
            "a.b",
            long.as_str(),
            "app.topic.tïcks",
        ] {
            let error = parse(name).expect_err(name);
            assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST, "{name}");
        }
        assert!(parse(&"x".repeat(64)).is_ok(), "64 bytes is the limit, inclusive");
    }
}
