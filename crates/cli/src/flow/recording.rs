//! `recording.json`: what a recording directory holds besides its journal, so that a replay
//! recreates the topic exactly: the service, the full payload type (the journal's header keeps
//! at most 64 bytes of its name) and the topic's settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shmlane::{Overflow, TopicConfig, TypeSpec};
use shmlane_journal::RecordType;

use super::FlowError;

/// The file's name in a recording directory.
pub const FILE: &str = "recording.json";

/// A recording's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// The service recorded.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// The payload type.
    pub type_name: String,
    /// Bytes of one element.
    pub type_size: u64,
    /// Its alignment.
    pub type_align: u64,
    /// Its version.
    pub type_version: u64,
    /// The topic's settings.
    pub config: Config,
}

/// [`TopicConfig`], as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    max_publishers: u32,
    max_subscribers: u32,
    subscriber_capacity: u32,
    max_held: u32,
    max_loans: u32,
    max_slice_len: u32,
    history: u32,
    /// `drop-oldest`, `block` or `reject`.
    overflow: String,
}

impl Recording {
    /// The description of `service` (of `namespace`), carrying `spec` with `config`.
    pub fn new(service: &str, namespace: &str, spec: &TypeSpec, config: TopicConfig) -> Self {
        let overflow = match config.overflow {
            Overflow::Block => "block",
            Overflow::Reject => "reject",
            _ => "drop-oldest",
        };
        Recording {
            service: service.to_owned(),
            namespace: namespace.to_owned(),
            type_name: spec.name.clone(),
            type_size: spec.size,
            type_align: spec.align,
            type_version: spec.version,
            config: Config {
                max_publishers: config.max_publishers,
                max_subscribers: config.max_subscribers,
                subscriber_capacity: config.subscriber_capacity,
                max_held: config.max_held,
                max_loans: config.max_loans,
                max_slice_len: config.max_slice_len,
                history: config.history,
                overflow: overflow.to_owned(),
            },
        }
    }

    /// The payload type.
    pub fn type_spec(&self) -> TypeSpec {
        TypeSpec::new(&self.type_name, self.type_size, self.type_align, self.type_version)
    }

    /// The topic's settings (checked again when the topic is created).
    pub fn topic_config(&self) -> TopicConfig {
        let c = &self.config;
        TopicConfig {
            max_publishers: c.max_publishers,
            max_subscribers: c.max_subscribers,
            subscriber_capacity: c.subscriber_capacity,
            max_held: c.max_held,
            max_loans: c.max_loans,
            max_slice_len: c.max_slice_len,
            history: c.history,
            overflow: match c.overflow.as_str() {
                "block" => Overflow::Block,
                "reject" => Overflow::Reject,
                _ => Overflow::DropOldest,
            },
        }
    }

    /// The journal's record type: the payload type with its name cut to the 64 bytes a
    /// journal header keeps (at a character boundary); the full name is in this file.
    pub fn record_type(&self) -> Result<RecordType, FlowError> {
        let mut end = self.type_name.len().min(64);
        while !self.type_name.is_char_boundary(end) {
            end -= 1;
        }
        let too_large =
            |what| FlowError::Usage(format!("the type's {what} does not fit a journal"));
        Ok(RecordType {
            name: self.type_name[..end].to_owned(),
            size: u32::try_from(self.type_size).map_err(|_| too_large("size"))?,
            align: u32::try_from(self.type_align).map_err(|_| too_large("alignment"))?,
            version: u32::try_from(self.type_version).map_err(|_| too_large("version"))?,
        })
    }

    /// Writes it into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), FlowError> {
        let path = dir.join(FILE);
        let error = |reason: String| FlowError::Recording { path: path.clone(), reason };
        let text = serde_json::to_string_pretty(self).map_err(|e| error(e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|e| error(e.to_string()))
    }

    /// Reads the one in `dir`; `None` if there is none (a journal written by other means).
    pub fn read(dir: &Path) -> Result<Option<Recording>, FlowError> {
        let path: PathBuf = dir.join(FILE);
        let error = |reason: String| FlowError::Recording { path: path.clone(), reason };
        match std::fs::read(&path) {
            // A description is a few hundred bytes: a larger file is not one of ours.
            Ok(bytes) if bytes.len() > 64 << 10 => Err(error("larger than 64 KiB".into())),
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error(e.to_string())),
        }
    }
}
