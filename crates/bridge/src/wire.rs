//! What crosses the wire besides payloads: the zenoh attachment of every sample, event and rpc
//! request, and the payload of an rpc declaration or refusal. Little-endian, fixed widths:
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `SL` |
//! | 1 | format version (1) |
//! | 1 | message: 1 topic sample, 2 event ids, 3 rpc request, 4 rpc declaration |
//! | 8 | the sending bridge's id (random per process) |
//! | 8 | sequence number, per sending bridge and service, from 0 |
//! | … | the declaration, per message (below) |
//!
//! - topic samples: the declaration's length (u16), the declaration: the payload type
//!   (`size`, `align`, `version` as u64, the name as a u16 length and UTF-8 bytes, at most
//!   1024), then the topic's settings (`max_publishers`, `max_subscribers`,
//!   `subscriber_capacity`, `max_held`, `max_loans`, `max_slice_len`, `history` as u32, the
//!   overflow policy as u32: 1 drop-oldest, 2 block, 3 reject); then the number of samples
//!   (u32, at least 1) and, if more than one, each one's length in bytes (u32 each). The
//!   payload is the samples' bytes one after the other (each `len × size`); the sequence
//!   number is the first one's, the others follow it. A bridge puts in one message the
//!   samples it found already queued (up to 64 KiB), so a stream of small samples costs zenoh
//!   fewer messages, and a lone sample waits for nothing.
//! - event ids: `max_event_id` (u32). The payload is one or more event ids (u32 each).
//! - rpc request and declaration: the request type, then the response type. A request's
//!   payload is the request's bytes; a declaration (the answer to a `?decl` query) has no
//!   other payload.
//!
//! An rpc refusal (zenoh `reply_err`) is a one-byte [`Refusal`] code and a UTF-8 message.
//! Everything is validated before use: a bad field is a [`WireError`], never a panic.

use shmlane::{Overflow, TopicConfig, TypeSpec};

/// The first two bytes.
const MAGIC: [u8; 2] = *b"SL";
/// The format version this bridge writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the declaration: magic, version, message, source, sequence.
pub const PREFIX_LEN: usize = 20;
/// Longest type name on the wire.
pub const MAX_NAME_LEN: usize = 1024;

/// The message a prefix announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Message {
    /// A topic sample's attachment.
    Topic = 1,
    /// An event message's attachment.
    Event = 2,
    /// An rpc request's attachment.
    RpcRequest = 3,
    /// An rpc declaration (a reply's payload).
    RpcDecl = 4,
}

/// A byte string that is not a valid message of this format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// It ends before a field does.
    #[error("truncated: {what} missing")]
    Truncated {
        /// The field.
        what: &'static str,
    },
    /// It does not start with `SL`.
    #[error(
        "not a shmlane bridge message (bad magic): is something else publishing on the bridge's keys?"
    )]
    Magic,
    /// Another format version.
    #[error(
        "format version {0}, this bridge reads version {VERSION}: run the same bridge version on both hosts"
    )]
    Version(u8),
    /// Another message than expected.
    #[error("message kind {found} where {expected:?} was expected")]
    Message {
        /// The kind byte found.
        found: u8,
        /// What the key says it should be.
        expected: Message,
    },
    /// A type name that is too long or not UTF-8.
    #[error("bad type name: {0}")]
    Name(&'static str),
    /// An overflow policy this bridge does not know.
    #[error("unknown overflow policy {0}")]
    Overflow(u32),
    /// Bytes after the last field.
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    /// A sample count of 0 or above [`MAX_BATCH`].
    #[error("{0} samples in one message (1 to 4096 are valid)")]
    Count(u32),
    /// Sample lengths that do not add up to the payload, or an empty sample.
    #[error("the sample lengths do not add up to the payload")]
    Length,
}

/// The fixed start of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The sending bridge.
    pub source: u64,
    /// Its sequence number for this service.
    pub seq: u64,
}

/// Writes a message: its prefix, then its declaration (`decl`, already encoded).
pub fn message(kind: Message, source: u64, seq: u64, decl: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + decl.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&source.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(decl);
    out
}

/// Most samples in one topic message.
pub const MAX_BATCH: usize = 4096;

/// Writes a topic message's attachment: `lens` are the samples' byte lengths (at least one).
pub fn topic_message(source: u64, seq: u64, decl: &[u8], lens: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + 2 + decl.len() + 4 + 4 * lens.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(Message::Topic as u8);
    out.extend_from_slice(&source.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    // A declaration is far shorter than 64 KiB (a name of at most 1024 bytes).
    out.extend_from_slice(&(decl.len() as u16).to_le_bytes());
    out.extend_from_slice(decl);
    out.extend_from_slice(&(lens.len() as u32).to_le_bytes());
    if lens.len() > 1 {
        out.extend(lens.iter().flat_map(|len| len.to_le_bytes()));
    }
    out
}

/// A topic message's attachment, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage<'a> {
    /// Sender and first sequence number.
    pub prefix: Prefix,
    /// The declaration's bytes ([`read_topic_decl`] reads them).
    pub decl: &'a [u8],
    /// The samples' byte lengths; `None` for one sample (the whole payload).
    lens: Option<&'a [u8]>,
    count: u32,
}

impl TopicMessage<'_> {
    /// Samples in the message.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Splits `payload` into the samples; `Err` if the lengths do not add up to it, or one is
    /// empty.
    pub fn samples<'p>(&self, payload: &'p [u8]) -> Result<Vec<&'p [u8]>, WireError> {
        let Some(lens) = self.lens else {
            return if payload.is_empty() { Err(WireError::Length) } else { Ok(vec![payload]) };
        };
        let mut samples = Vec::with_capacity(self.count as usize);
        let mut rest = payload;
        for len in lens.chunks_exact(4) {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if len == 0 || len > rest.len() {
                return Err(WireError::Length);
            }
            let (sample, tail) = rest.split_at(len);
            samples.push(sample);
            rest = tail;
        }
        if rest.is_empty() { Ok(samples) } else { Err(WireError::Length) }
    }
}

/// Reads a topic message's attachment.
pub fn split_topic(bytes: &[u8]) -> Result<TopicMessage<'_>, WireError> {
    let (prefix, rest) = split(bytes, Message::Topic)?;
    let mut r = Reader(rest);
    let decl_len = usize::from(r.u16("declaration length")?);
    let decl = r.take(decl_len, "declaration")?;
    let count = r.u32("sample count")?;
    if count == 0 || count as usize > MAX_BATCH {
        return Err(WireError::Count(count));
    }
    let lens = if count > 1 { Some(r.take(4 * count as usize, "sample lengths")?) } else { None };
    r.end()?;
    Ok(TopicMessage { prefix, decl, lens, count })
}

/// Reads a message's prefix, checking that it is a `kind`; returns it and the declaration's
/// bytes.
pub fn split(bytes: &[u8], kind: Message) -> Result<(Prefix, &[u8]), WireError> {
    let mut r = Reader(bytes);
    if r.take(2, "magic")? != MAGIC {
        return Err(WireError::Magic);
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let found = r.u8("message kind")?;
    if found != kind as u8 {
        return Err(WireError::Message { found, expected: kind });
    }
    let source = r.u64("source")?;
    let seq = r.u64("sequence")?;
    Ok((Prefix { source, seq }, r.0))
}

/// The declaration of a topic sample: its type and the topic's settings.
pub fn topic_decl(spec: &TypeSpec, config: &TopicConfig) -> Vec<u8> {
    let mut out = Vec::new();
    put_spec(&mut out, spec);
    for value in [
        config.max_publishers,
        config.max_subscribers,
        config.subscriber_capacity,
        config.max_held,
        config.max_loans,
        config.max_slice_len,
        config.history,
        overflow_code(config.overflow),
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// The wire code of an overflow policy (0 for one this bridge does not know, which a reader
/// refuses).
fn overflow_code(policy: Overflow) -> u32 {
    match policy {
        Overflow::DropOldest => 1,
        Overflow::Block => 2,
        Overflow::Reject => 3,
        _ => 0,
    }
}

/// Reads a topic declaration.
pub fn read_topic_decl(bytes: &[u8]) -> Result<(TypeSpec, TopicConfig), WireError> {
    let mut r = Reader(bytes);
    let spec = r.spec()?;
    let config = TopicConfig {
        max_publishers: r.u32("max_publishers")?,
        max_subscribers: r.u32("max_subscribers")?,
        subscriber_capacity: r.u32("subscriber_capacity")?,
        max_held: r.u32("max_held")?,
        max_loans: r.u32("max_loans")?,
        max_slice_len: r.u32("max_slice_len")?,
        history: r.u32("history")?,
        overflow: match r.u32("overflow")? {
            1 => Overflow::DropOldest,
            2 => Overflow::Block,
            3 => Overflow::Reject,
            other => return Err(WireError::Overflow(other)),
        },
    };
    r.end()?;
    Ok((spec, config))
}

/// The declaration of an event message.
pub fn event_decl(max_event_id: u32) -> Vec<u8> {
    max_event_id.to_le_bytes().to_vec()
}

/// Reads an event declaration: the sender's `max_event_id`.
pub fn read_event_decl(bytes: &[u8]) -> Result<u32, WireError> {
    let mut r = Reader(bytes);
    let max = r.u32("max_event_id")?;
    r.end()?;
    Ok(max)
}

/// The payload of an event message.
pub fn event_ids(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

/// Reads an event message's payload: at least one id.
pub fn read_event_ids(bytes: &[u8]) -> Result<Vec<u32>, WireError> {
    if bytes.is_empty() {
        return Err(WireError::Truncated { what: "event id" });
    }
    if !bytes.len().is_multiple_of(4) {
        return Err(WireError::Trailing(bytes.len() % 4));
    }
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The declaration of an rpc request or service: its request and response types.
pub fn rpc_decl(request: &TypeSpec, response: &TypeSpec) -> Vec<u8> {
    let mut out = Vec::new();
    put_spec(&mut out, request);
    put_spec(&mut out, response);
    out
}

/// Reads an rpc declaration.
pub fn read_rpc_decl(bytes: &[u8]) -> Result<(TypeSpec, TypeSpec), WireError> {
    let mut r = Reader(bytes);
    let request = r.spec()?;
    let response = r.spec()?;
    r.end()?;
    Ok((request, response))
}

/// Why a bridge refused an rpc request (the first byte of a zenoh error reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The two hosts' request or response types differ.
    TypeMismatch = 1,
    /// The request was not a valid message.
    Malformed = 2,
    /// The local server did not answer in time.
    Unanswered = 3,
    /// The call failed otherwise.
    Failed = 4,
}

/// An rpc refusal's payload.
pub fn refusal(code: Refusal, text: &str) -> Vec<u8> {
    let mut out = vec![code as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads a refusal: its code (`None` if unknown) and message.
pub fn read_refusal(bytes: &[u8]) -> (Option<Refusal>, String) {
    let code = bytes.first().and_then(|&c| {
        [Refusal::TypeMismatch, Refusal::Malformed, Refusal::Unanswered, Refusal::Failed]
            .into_iter()
            .find(|r| *r as u8 == c)
    });
    (code, String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned())
}

fn put_spec(out: &mut Vec<u8>, spec: &TypeSpec) {
    for value in [spec.size, spec.align, spec.version] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    // Names longer than the wire allows are cut at a character boundary (the facade keeps
    // 128 bytes of a name: real names are far shorter than this).
    let mut end = spec.name.len().min(MAX_NAME_LEN);
    while !spec.name.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&spec.name.as_bytes()[..end]);
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated { what });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(word))
    }

    fn spec(&mut self) -> Result<TypeSpec, WireError> {
        let size = self.u64("type size")?;
        let align = self.u64("type alignment")?;
        let version = self.u64("type version")?;
        let len = usize::from(self.u16("type name length")?);
        if len > MAX_NAME_LEN {
            return Err(WireError::Name("longer than 1024 bytes"));
        }
        let name = std::str::from_utf8(self.take(len, "type name")?)
            .map_err(|_| WireError::Name("not UTF-8"))?;
        Ok(TypeSpec::new(name, size, align, version))
    }

    fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() { Ok(()) } else { Err(WireError::Trailing(self.0.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_messages_round_trip() {
        let spec = TypeSpec::new("my_app::Tick", 32, 8, 3);
        let config =
            TopicConfig { overflow: Overflow::Block, history: 4, ..TopicConfig::default() };
        let bytes = message(Message::Topic, 7, 42, &topic_decl(&spec, &config));
        let (prefix, decl) = split(&bytes, Message::Topic).expect("valid");
        assert_eq!(prefix, Prefix { source: 7, seq: 42 });
        assert_eq!(read_topic_decl(decl).expect("valid"), (spec, config));
        assert_eq!(
            split(&bytes, Message::Event),
            Err(WireError::Message { found: 1, expected: Message::Event })
        );
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        let spec = TypeSpec::new("u64", 8, 8, 0);
        let bytes = message(Message::Topic, 1, 2, &topic_decl(&spec, &TopicConfig::default()));
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let parsed = split(cut, Message::Topic).and_then(|(_, d)| read_topic_decl(d));
            assert!(parsed.is_err(), "a message cut at {len} bytes parsed");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            split(&long, Message::Topic).and_then(|(_, d)| read_topic_decl(d)),
            Err(WireError::Trailing(1))
        );
        // Every single-byte corruption either parses to something or is an error: no panic.
        for at in 0..bytes.len() {
            for value in [0u8, 0xff, 0x80] {
                let mut bad = bytes.clone();
                bad[at] = value;
                let _ = split(&bad, Message::Topic).and_then(|(_, d)| read_topic_decl(d));
            }
        }
        let mut bad = bytes.clone();
        bad[2] = 9;
        assert_eq!(split(&bad, Message::Topic), Err(WireError::Version(9)));
    }

    #[test]
    fn events_rpc_and_refusals() {
        assert_eq!(read_event_ids(&event_ids(&[1, 70000])).expect("valid"), [1, 70000]);
        assert!(read_event_ids(&[]).is_err());
        assert!(read_event_ids(&[1, 2, 3]).is_err());
        assert_eq!(read_event_decl(&event_decl(64)).expect("valid"), 64);
        let (a, b) = (TypeSpec::new("u32", 4, 4, 0), TypeSpec::new("u64", 8, 8, 1));
        assert_eq!(read_rpc_decl(&rpc_decl(&a, &b)).expect("valid"), (a, b));
        let refused = refusal(Refusal::TypeMismatch, "types differ");
        assert_eq!(read_refusal(&refused), (Some(Refusal::TypeMismatch), "types differ".into()));
        assert_eq!(read_refusal(&[]), (None, String::new()));
    }

    #[test]
    fn names_are_bounded() {
        let spec = TypeSpec::new("é".repeat(600), 8, 8, 0);
        let decl = rpc_decl(&spec, &spec);
        let (request, _) = read_rpc_decl(&decl).expect("cut at a character boundary");
        assert!(request.name.len() <= MAX_NAME_LEN);
        let mut bad = decl.clone();
        bad[24..26].copy_from_slice(&2000u16.to_le_bytes());
        assert_eq!(read_rpc_decl(&bad), Err(WireError::Name("longer than 1024 bytes")));
    }
}
