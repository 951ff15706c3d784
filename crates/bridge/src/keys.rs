//! The key-expression scheme: a template such as `shmlane/{namespace}/{service}` names each
//! service on the wire, and a last chunk says what it is: `KEY/topic`, `KEY/rpc`,
//! `KEY/event`. With the default template, topic `ticks` of namespace `default` travels on
//! `shmlane/default/ticks/topic`.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// The default template.
pub const DEFAULT_TEMPLATE: &str = "shmlane/{namespace}/{service}";

/// What a key carries: its last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Publish/subscribe samples.
    Topic,
    /// Request/response (a zenoh queryable per service).
    Rpc,
    /// Event ids.
    Event,
}

impl Kind {
    /// The key's last chunk, and the kind's name in statistics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Rpc => "rpc",
            Kind::Event => "event",
        }
    }
}

/// One chunk of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Literal(String),
    Namespace,
    Service,
}

/// A parsed key template: chunks separated by `/`, among them `{service}` exactly once and
/// `{namespace}` at most once, each a whole chunk; the others literal, without wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    chunks: Vec<Chunk>,
    text: String,
}

impl Default for KeyTemplate {
    fn default() -> Self {
        DEFAULT_TEMPLATE.parse().expect("the default template is valid")
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for KeyTemplate {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<KeyTemplate, ConfigError> {
        let bad = |reason: &str| ConfigError::KeyTemplate {
            template: text.into(),
            reason: reason.into(),
        };
        let mut chunks = Vec::new();
        for chunk in text.split('/') {
            chunks.push(match chunk {
                "{service}" => Chunk::Service,
                "{namespace}" => Chunk::Namespace,
                "" => {
                    return Err(bad("it has an empty chunk (`//`, or a leading or trailing `/`)"));
                }
                _ if chunk.contains(['{', '}']) => {
                    return Err(bad("`{service}` and `{namespace}` must each be a whole chunk"));
                }
                _ if chunk.contains(['*', '$', '?', '#', '@']) => {
                    return Err(bad("literal chunks cannot hold `*`, `$`, `?`, `#` or `@`"));
                }
                _ => Chunk::Literal(chunk.to_owned()),
            });
        }
        let count = |c: &Chunk| chunks.iter().filter(|x| *x == c).count();
        if count(&Chunk::Service) != 1 {
            return Err(bad("it must hold `{service}` exactly once"));
        }
        if count(&Chunk::Namespace) > 1 {
            return Err(bad("it may hold `{namespace}` at most once"));
        }
        let template = KeyTemplate { chunks, text: text.to_owned() };
        let example = template.key("ns", "service", Kind::Topic);
        zenoh::key_expr::KeyExpr::try_from(example.as_str())
            .map_err(|e| bad(&format!("it does not make a valid zenoh key ({e})")))?;
        Ok(template)
    }
}

impl KeyTemplate {
    fn render(&self, namespace: &str, service: &str, kind: Kind) -> String {
        let mut key = String::new();
        for chunk in &self.chunks {
            key.push_str(match chunk {
                Chunk::Literal(text) => text,
                Chunk::Namespace => namespace,
                Chunk::Service => service,
            });
            key.push('/');
        }
        key.push_str(kind.as_str());
        key
    }

    /// The key of `service` of `namespace` (a valid name: no wildcard can appear).
    pub fn key(&self, namespace: &str, service: &str, kind: Kind) -> String {
        self.render(namespace, service, kind)
    }

    /// The key expression of every service of `namespace` of `kind` (`{service}` → `*`).
    pub fn wildcard(&self, namespace: &str, kind: Kind) -> String {
        self.render(namespace, "*", kind)
    }

    /// The service a key of `namespace` and `kind` names, if the key has this template's
    /// shape and the service chunk is a valid service name.
    pub fn service_of<'k>(&self, key: &'k str, namespace: &str, kind: Kind) -> Option<&'k str> {
        let mut parts = key.split('/');
        let mut service = None;
        for chunk in &self.chunks {
            let part = parts.next()?;
            match chunk {
                Chunk::Literal(text) if part == text => {}
                Chunk::Namespace if part == namespace => {}
                Chunk::Service if crate::config::valid_name(part) => service = Some(part),
                _ => return None,
            }
        }
        let last = parts.next()?;
        (last == kind.as_str() && parts.next().is_none()).then_some(service).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys() {
        let t = KeyTemplate::default();
        assert_eq!(t.key("default", "ticks", Kind::Topic), "shmlane/default/ticks/topic");
        assert_eq!(t.wildcard("prod", Kind::Rpc), "shmlane/prod/*/rpc");
        assert_eq!(t.service_of("shmlane/prod/orders/rpc", "prod", Kind::Rpc), Some("orders"));
        assert_eq!(t.service_of("shmlane/prod/orders/rpc", "prod", Kind::Topic), None);
        assert_eq!(t.service_of("shmlane/other/orders/rpc", "prod", Kind::Rpc), None);
        assert_eq!(t.service_of("shmlane/prod/a.b/rpc", "prod", Kind::Rpc), None);
        assert_eq!(t.service_of("shmlane/prod/orders/rpc/x", "prod", Kind::Rpc), None);
        assert_eq!(t.service_of("shmlane/prod", "prod", Kind::Rpc), None);
    }

    #[test]
    fn templates_without_namespace_and_bad_ones() {
        let t: KeyTemplate = "site-a/{service}".parse().expect("valid");
        assert_eq!(t.key("any", "x", Kind::Event), "site-a/x/event");
        assert_eq!(t.service_of("site-a/x/event", "whatever", Kind::Event), Some("x"));
        for bad in [
            "",
            "a//{service}",
            "a/{service}/",
            "a/{service}x",
            "a/b",
            "*/{service}",
            "{service}/{service}",
            "{namespace}/{namespace}/{service}",
            "a/@b/{service}",
        ] {
            assert!(bad.parse::<KeyTemplate>().is_err(), "{bad:?} should be refused");
        }
    }
}
