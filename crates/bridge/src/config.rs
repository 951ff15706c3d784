//! What a bridge carries and how it reaches its peers: rules (namespace, glob, direction), the
//! key-expression template, the zenoh session's configuration, and the timing settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;
use crate::keys::KeyTemplate;

/// Which way a rule carries a service.
///
/// "Out" is what this host produces: samples of local publishers, answers of a local server,
/// notifications of local notifiers. "In" is what other hosts produce, delivered here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local → remote: local publishers, a local rpc server, local notifiers.
    Out,
    /// Remote → local: remote publishers, a remote rpc server, remote notifiers.
    In,
    /// Both ways (for rpc: out while a local server holds the service, in otherwise).
    Both,
}

impl Direction {
    /// Whether the rule carries local services out.
    pub fn out(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }

    /// Whether the rule carries remote services in.
    pub fn into_host(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    /// `out`, `in` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
            Direction::Both => "both",
        }
    }
}

/// One rule: the services of `namespace` whose names match `pattern`, carried `direction`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The shmlane namespace the services live in on this host.
    pub namespace: String,
    /// A glob over service names (`*`, `?`, `[...]`); a plain name matches itself.
    pub pattern: glob::Pattern,
    /// Which way.
    pub direction: Direction,
}

impl Rule {
    /// Parses `[NAMESPACE/]GLOB`; without a namespace, the rule is in `default_namespace`.
    pub fn parse(
        spec: &str,
        direction: Direction,
        default_namespace: &str,
    ) -> Result<Rule, ConfigError> {
        let (namespace, glob) = match spec.split_once('/') {
            Some((namespace, glob)) => (namespace, glob),
            None => (default_namespace, spec),
        };
        if !valid_name(namespace) {
            return Err(ConfigError::Namespace {
                rule: spec.to_owned(),
                namespace: namespace.into(),
            });
        }
        if glob.is_empty() || glob.contains('/') {
            return Err(ConfigError::Pattern {
                rule: spec.to_owned(),
                reason: "give one glob over service names after the optional `NAMESPACE/`".into(),
            });
        }
        let pattern = glob::Pattern::new(glob)
            .map_err(|e| ConfigError::Pattern { rule: spec.to_owned(), reason: e.to_string() })?;
        Ok(Rule { namespace: namespace.to_owned(), pattern, direction })
    }

    /// Whether the rule covers `service` of `namespace`.
    pub fn matches(&self, namespace: &str, service: &str) -> bool {
        self.namespace == namespace && self.pattern.matches(service)
    }
}

/// Whether `name` is a valid shmlane namespace or service name (1 to 64 ASCII letters,
/// digits, `-` or `_`), as the facade checks them.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Everything a [`Bridge`](crate::Bridge) needs.
#[derive(Debug)]
pub struct BridgeConfig {
    /// What to carry (at least one rule).
    pub rules: Vec<Rule>,
    /// Where segments live (`/dev/shm` when `None`).
    pub root: Option<PathBuf>,
    /// How service names become zenoh key expressions.
    pub keys: KeyTemplate,
    /// The zenoh session's configuration ([`zenoh_config`] builds it with the bridge's
    /// defaults).
    pub zenoh: zenoh::Config,
    /// How often local services are looked for (default 200 ms).
    pub scan_interval: Duration,
    /// How long a bridge waits for a remote rpc answer, and a local server's (default 5 s).
    pub rpc_timeout: Duration,
    /// The block timeout of the bridge's local publishers on topics with the Block policy
    /// (default 1 s): how long a sample from the network may wait for a full local subscriber.
    pub block_timeout: Duration,
    /// Largest zenoh payload accepted (default 64 MiB); larger ones are counted and dropped.
    pub max_payload: usize,
    /// The name of the bridge's shmlane nodes (default `bridge`).
    pub node_name: String,
    /// Whether each topic's out carrier polls its local topic without ever sleeping (default
    /// `false`: it spins briefly, yields, then sleeps on the topic's futex). Busy polling saves
    /// the futex wake-up of the bridge per sample after a quiet spell, at the cost of a whole
    /// core per carried topic: for hosts with a core to spare for it, never one shared with
    /// the publisher.
    pub busy_poll: bool,
}

impl BridgeConfig {
    /// A configuration with `rules`, the default key template and zenoh settings
    /// ([`zenoh_config`] with no file and no endpoints), and the default timings.
    pub fn new(rules: Vec<Rule>) -> Result<BridgeConfig, ConfigError> {
        Ok(BridgeConfig {
            rules,
            root: None,
            keys: KeyTemplate::default(),
            zenoh: zenoh_config(None, &[], &[])?,
            scan_interval: Duration::from_millis(200),
            rpc_timeout: Duration::from_secs(5),
            block_timeout: Duration::from_secs(1),
            max_payload: 64 << 20,
            node_name: "bridge".into(),
            busy_poll: false,
        })
    }

    /// Checks what the bridge cannot run with.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.rules.is_empty() {
            return Err(ConfigError::NoRules);
        }
        if !valid_name(&self.node_name) {
            return Err(ConfigError::NodeName(self.node_name.clone()));
        }
        if self.scan_interval.is_zero() {
            return Err(ConfigError::ZeroInterval("scan interval"));
        }
        Ok(())
    }

    /// The namespaces the rules name, each once.
    pub(crate) fn namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self.rules.iter().map(|r| r.namespace.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }
}

/// Turns a `--listen`/`--connect` argument into a zenoh endpoint: a bare port becomes
/// `tcp/127.0.0.1:PORT`, `HOST:PORT` becomes `tcp/HOST:PORT`, and anything with a `/`
/// (`tcp/...`, `tls/...`, `quic/...`) is taken as written.
pub fn endpoint(arg: &str) -> Result<String, ConfigError> {
    let bad =
        |reason: &str| ConfigError::Endpoint { endpoint: arg.to_owned(), reason: reason.into() };
    let endpoint = if arg.contains('/') {
        arg.to_owned()
    } else if arg.parse::<u16>().is_ok() {
        format!("tcp/127.0.0.1:{arg}")
    } else if arg.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        format!("tcp/{arg}")
    } else {
        return Err(bad("write PORT, HOST:PORT or a zenoh endpoint such as tcp/127.0.0.1:7447"));
    };
    endpoint.parse::<zenoh::config::EndPoint>().map_err(|e| bad(&e.to_string()))?;
    Ok(endpoint)
}

/// The zenoh session configuration: the JSON5 file at `file` if given (every setting zenoh
/// has: mode, TLS, authentication, routers), then the bridge's defaults for what the file does
/// not set, then `listen` and `connect` endpoints (each as [`endpoint`] reads it), which
/// replace the file's.
///
/// The bridge's defaults differ from zenoh's so that nothing is exposed unless asked for:
/// multicast scouting off (`scouting.multicast.enabled: false`), and no listening endpoint
/// (`listen.endpoints: []`; zenoh's peer default listens on every interface). A bare port
/// given to `--listen` binds 127.0.0.1.
pub fn zenoh_config(
    file: Option<&Path>,
    listen: &[String],
    connect: &[String],
) -> Result<zenoh::Config, ConfigError> {
    let (mut config, set) = match file {
        Some(path) => {
            let read_error =
                |reason: String| ConfigError::ZenohFile { path: path.to_owned(), reason };
            let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
            let tree: serde_json::Value =
                json5::from_str(&text).map_err(|e| read_error(e.to_string()))?;
            let config = zenoh::Config::from_json5(&text).map_err(|e| read_error(e.to_string()))?;
            (config, tree)
        }
        None => (zenoh::Config::default(), serde_json::Value::Null),
    };
    let is_set = |path: &[&str]| {
        path.iter().try_fold(&set, |node, key| node.get(key)).is_some_and(|v| !v.is_null())
    };
    let insert = |config: &mut zenoh::Config, key: &str, value: String| {
        config.insert_json5(key, &value).map_err(|e| ConfigError::ZenohSetting {
            key: key.to_owned(),
            value,
            reason: e.to_string(),
        })
    };
    if !is_set(&["scouting", "multicast", "enabled"]) {
        insert(&mut config, "scouting/multicast/enabled", "false".into())?;
    }
    let list = |args: &[String]| -> Result<String, ConfigError> {
        let endpoints = args.iter().map(|a| endpoint(a)).collect::<Result<Vec<_>, _>>()?;
        Ok(serde_json::Value::from(endpoints).to_string())
    };
    if !listen.is_empty() {
        insert(&mut config, "listen/endpoints", list(listen)?)?;
    } else if !is_set(&["listen", "endpoints"]) {
        insert(&mut config, "listen/endpoints", "[]".into())?;
    }
    if !connect.is_empty() {
        insert(&mut config, "connect/endpoints", list(connect)?)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_namespace_and_glob() {
        let rule = Rule::parse("ticks-*", Direction::Out, "default").expect("a valid rule");
        assert_eq!(rule.namespace, "default");
        assert!(rule.matches("default", "ticks-eu"));
        assert!(!rule.matches("default", "orders"));
        assert!(!rule.matches("other", "ticks-eu"));
        let rule = Rule::parse("prod/orders", Direction::In, "default").expect("a valid rule");
        assert!(rule.matches("prod", "orders"));
        assert!(!rule.matches("prod", "orders2"));
        assert!(Rule::parse("bad ns/x", Direction::In, "d").is_err());
        assert!(Rule::parse("ns/", Direction::In, "d").is_err());
        assert!(Rule::parse("a/b/c", Direction::In, "d").is_err());
        assert!(Rule::parse("[", Direction::In, "d").is_err());
    }

    #[test]
    fn endpoints_default_to_loopback_tcp() {
        assert_eq!(endpoint("7447").expect("a port"), "tcp/127.0.0.1:7447");
        assert_eq!(endpoint("10.0.0.1:7447").expect("host:port"), "tcp/10.0.0.1:7447");
        assert_eq!(endpoint("tcp/[::1]:7447").expect("an endpoint"), "tcp/[::1]:7447");
        assert!(endpoint("nonsense").is_err());
    }

    #[test]
    fn zenoh_defaults_expose_nothing() {
        let config = zenoh_config(None, &[], &[]).expect("defaults");
        assert_eq!(config.get_json("scouting/multicast/enabled").expect("set"), "false");
        assert_eq!(config.get_json("listen/endpoints").expect("set"), "[]");
        let config = zenoh_config(None, &["7000".into()], &["7001".into()]).expect("endpoints");
        assert!(config.get_json("listen/endpoints").expect("set").contains("127.0.0.1:7000"));
        assert!(config.get_json("connect/endpoints").expect("set").contains("127.0.0.1:7001"));
    }

    #[test]
    fn a_config_file_keeps_what_it_sets() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("zenoh.json5");
        let text = "{ mode: 'peer', scouting: { multicast: { enabled: true } },\n\
                    listen: { endpoints: ['tcp/127.0.0.1:7999'] } }";
        std::fs::write(&path, text).expect("write the file");
        let config = zenoh_config(Some(&path), &[], &[]).expect("a valid file");
        assert_eq!(config.get_json("scouting/multicast/enabled").expect("set"), "true");
        assert!(config.get_json("listen/endpoints").expect("set").contains("7999"));
        std::fs::write(&path, "{ not json5").expect("write the file");
        assert!(matches!(zenoh_config(Some(&path), &[], &[]), Err(ConfigError::ZenohFile { .. })));
    }
}
