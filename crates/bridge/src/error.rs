//! The bridge's errors: one enum for its configuration, one for starting it.

use std::path::PathBuf;

/// A configuration the bridge cannot run with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No service to carry.
    #[error("nothing to carry: give at least one --out, --in or --both pattern")]
    NoRules,
    /// A rule's namespace is not a valid name.
    #[error(
        "rule {rule:?}: namespace {namespace:?} is not valid: use 1 to 64 ASCII letters, \
         digits, '-' or '_'"
    )]
    Namespace {
        /// The rule as written.
        rule: String,
        /// Its namespace.
        namespace: String,
    },
    /// A rule's glob is not valid.
    #[error("rule {rule:?}: bad pattern: {reason}")]
    Pattern {
        /// The rule as written.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// The bridge's node name is not valid.
    #[error("node name {0:?} is not valid: use 1 to 64 ASCII letters, digits, '-' or '_'")]
    NodeName(String),
    /// An interval of zero.
    #[error("the {0} must be more than zero")]
    ZeroInterval(&'static str),
    /// A bad key template.
    #[error("key template {template:?}: {reason}")]
    KeyTemplate {
        /// The template as written.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad `--listen` or `--connect` endpoint.
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// The zenoh configuration file could not be read or parsed.
    #[error("zenoh configuration {path:?}: {reason}: fix the file (JSON5, as zenohd reads)")]
    ZenohFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A zenoh setting the bridge sets was refused.
    #[error("zenoh setting {key} = {value}: {reason}")]
    ZenohSetting {
        /// The setting's path.
        key: String,
        /// The value.
        value: String,
        /// Why zenoh refused it.
        reason: String,
    },
}

/// Starting a bridge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A shmlane node could not be created.
    #[error("cannot create the bridge's node in namespace {namespace:?}: {source}")]
    Node {
        /// The namespace.
        namespace: String,
        /// Why.
        #[source]
        source: shmlane::NodeError,
    },
    /// The zenoh session could not be opened.
    #[error(
        "cannot open the zenoh session: {0}: check the listen and connect endpoints (is the \
         port taken?) and the zenoh configuration file"
    )]
    Zenoh(String),
    /// A zenoh declaration (subscriber, queryable) was refused.
    #[error("cannot declare {what} on {key}: {reason}")]
    Declare {
        /// What.
        what: &'static str,
        /// Its key expression.
        key: String,
        /// Why.
        reason: String,
    },
    /// The bridge's thread could not be started.
    #[error("cannot start the bridge's thread: {0}: free threads or memory")]
    Thread(#[source] std::io::Error),
}
