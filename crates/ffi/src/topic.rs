//! Topics: a service name and a payload type described by name, size, alignment and version.

use std::ffi::{CString, c_char};

use shmlane::{DEFAULT_MAX_POOL_BYTES, Overflow, RawTopic, TopicConfig, TypeSpec};

use crate::error::{Failure, guard, shmlane_error};
use crate::handle::{self, Handle, clear_out, hand_out, optional, string};
use crate::node::shmlane_node;

/// A payload type as every process sharing a topic describes it. Two descriptions agree when
/// all four fields are equal; a Rust `Topic<T>` describes `T` by `std::any::type_name::<T>()`
/// (for example "my_app::Tick"), `size_of`, `align_of` and its version (0 unless the topic's
/// builder sets one), so a C struct with the same layout joins it under that name.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmlane_type {
    /// The type's name, NUL-terminated UTF-8 (at most 255 bytes are recorded).
    pub name: *const c_char,
    /// Bytes of one element (`sizeof`): 1 to 2^32 - 1, a multiple of `align`.
    pub size: u64,
    /// Its alignment (`_Alignof`): a power of two up to 4096.
    pub align: u64,
    /// The user's layout version: bump it when the layout changes without a change of name or
    /// size.
    pub version: u64,
}

/// What a publisher does when a subscriber's queue is full (`shmlane_topic_config.overflow`).
pub type shmlane_overflow = u32;
/// Evict the subscriber's oldest queued sample and count it as dropped: never wait.
pub const SHMLANE_OVERFLOW_DROP_OLDEST: shmlane_overflow = 1;
/// Wait until every subscriber has room, up to the publisher's block timeout
/// (`shmlane_publisher_set_block_timeout`), then fail with `SHMLANE_ERROR_TIMEOUT`.
pub const SHMLANE_OVERFLOW_BLOCK: shmlane_overflow = 2;
/// Refuse the send with `SHMLANE_ERROR_SUBSCRIBER_FULL`; nothing is delivered.
pub const SHMLANE_OVERFLOW_REJECT: shmlane_overflow = 3;

/// A topic's settings, fixed by its creator (an open takes the creator's, except
/// `max_pool_bytes`). Start from `shmlane_topic_config_default` and change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmlane_topic_config {
    /// Publishers at once (1 to 63; default 2).
    pub max_publishers: u32,
    /// Subscribers at once (1 to 63; default 8).
    pub max_subscribers: u32,
    /// Samples queued per subscriber (a power of two, 1 to 65536; default 64).
    pub subscriber_capacity: u32,
    /// Samples one subscriber may hold at once (1 to 65536; default 8).
    pub max_held: u32,
    /// Loans one publisher may have out at once (1 to 65536; default 4).
    pub max_loans: u32,
    /// Elements each base payload block holds; larger loans get payload segments added on
    /// demand (at least 1; default 1).
    pub max_slice_len: u32,
    /// Samples each publisher keeps for subscribers that join later (at most
    /// `subscriber_capacity`; default 0).
    pub history: u32,
    /// A `SHMLANE_OVERFLOW_*` policy (default `SHMLANE_OVERFLOW_DROP_OLDEST`).
    pub overflow: shmlane_overflow,
    /// This process's limit on one publisher's base payload segment, in bytes, checked at
    /// create and open (default 1 GiB).
    pub max_pool_bytes: u64,
}

impl shmlane_topic_config {
    fn from_rust(config: TopicConfig, max_pool_bytes: u64) -> Self {
        shmlane_topic_config {
            max_publishers: config.max_publishers,
            max_subscribers: config.max_subscribers,
            subscriber_capacity: config.subscriber_capacity,
            max_held: config.max_held,
            max_loans: config.max_loans,
            max_slice_len: config.max_slice_len,
            history: config.history,
            overflow: config.overflow as u32,
            max_pool_bytes,
        }
    }

    fn to_rust(self) -> Result<TopicConfig, Failure> {
        let overflow = match self.overflow {
            SHMLANE_OVERFLOW_DROP_OLDEST => Overflow::DropOldest,
            SHMLANE_OVERFLOW_BLOCK => Overflow::Block,
            SHMLANE_OVERFLOW_REJECT => Overflow::Reject,
            other => {
                return Err(Failure::new(
                    shmlane_error::SHMLANE_ERROR_INVALID_CONFIG,
                    format!("overflow is {other}: use a SHMLANE_OVERFLOW_* value (1 to 3)"),
                ));
            }
        };
        Ok(TopicConfig {
            max_publishers: self.max_publishers,
            max_subscribers: self.max_subscribers,
            subscriber_capacity: self.subscriber_capacity,
            max_held: self.max_held,
            max_loans: self.max_loans,
            max_slice_len: self.max_slice_len,
            history: self.history,
            overflow,
        })
    }
}

/// A publish/subscribe service opened by name. Make publishers and subscribers from it; they
/// outlive it. Usable from any thread (`Send` and `Sync`).
#[derive(Debug)]
pub struct shmlane_topic {
    magic: u64,
    pub(crate) topic: RawTopic,
    service: CString,
    type_name: CString,
    max_pool_bytes: u64,
}

handle::handle!(shmlane_topic, "topic", 0x5348_4c4e_544f_5043);

/// Writes the default settings to `*out`.
///
/// # Safety
///
/// `out` is valid for a write of a `shmlane_topic_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_config_default(
    out: *mut shmlane_topic_config,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        let config =
            shmlane_topic_config::from_rust(TopicConfig::default(), DEFAULT_MAX_POOL_BYTES);
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(config) };
        Ok(())
    })
}

/// How a topic is opened.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Create,
    Open,
    OpenOrCreate,
}

/// The common body of the three opening functions.
///
/// # Safety
///
/// As theirs.
unsafe fn open_topic(
    mode: Mode,
    node: *const shmlane_node,
    service: *const c_char,
    payload: *const shmlane_type,
    config: *const shmlane_topic_config,
    out: *mut *mut shmlane_topic,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live node by the caller's promise.
        let node = unsafe { handle::get(node, "node")? };
        // SAFETY: a string by the caller's promise.
        let service = unsafe { string(service, "service")? };
        // SAFETY: NULL or readable by the caller's promise.
        let spec = match unsafe { optional(payload) } {
            // SAFETY: the type's name is a string by the caller's promise.
            Some(payload) => Some(unsafe { type_spec(&payload)? }),
            None => None,
        };
        // SAFETY: NULL or readable by the caller's promise.
        let config = unsafe { optional(config) }.unwrap_or_else(|| {
            shmlane_topic_config::from_rust(TopicConfig::default(), DEFAULT_MAX_POOL_BYTES)
        });
        let mut builder = node
            .node
            .raw_topic(service)
            .config(config.to_rust()?)
            .max_pool_bytes(config.max_pool_bytes);
        if let Some(spec) = spec {
            builder = builder.type_spec(spec);
        }
        let topic = match mode {
            Mode::Create => builder.create()?,
            Mode::Open => builder.open()?,
            Mode::OpenOrCreate => builder.open_or_create()?,
        };
        let nul = |text: &str| CString::new(text).unwrap_or_default();
        let handle = shmlane_topic {
            magic: shmlane_topic::MAGIC,
            service: nul(topic.service()),
            type_name: nul(&topic.type_spec().name),
            max_pool_bytes: config.max_pool_bytes,
            topic,
        };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(handle, out.as_ptr()) };
        Ok(())
    })
}

/// A `shmlane_type` as a `TypeSpec`.
///
/// # Safety
///
/// `payload.name` is NULL or a NUL-terminated string.
unsafe fn type_spec(payload: &shmlane_type) -> Result<TypeSpec, Failure> {
    // SAFETY: the caller's promise.
    let name = unsafe { string(payload.name, "type->name")? };
    Ok(TypeSpec::new(name, payload.size, payload.align, payload.version))
}

/// Creates the topic `service` of the type `*type` with the settings `*config` (NULL: the
/// defaults); fails with `SHMLANE_ERROR_ALREADY_EXISTS` if it exists. On success `*out` is
/// the topic; on failure NULL.
///
/// # Safety
///
/// `node` is a live node; `service` a NUL-terminated string; `type` NULL or a readable
/// `shmlane_type` whose `name` is a NUL-terminated string; `config` NULL or a readable
/// `shmlane_topic_config`; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_create(
    node: *const shmlane_node,
    service: *const c_char,
    r#type: *const shmlane_type,
    config: *const shmlane_topic_config,
    out: *mut *mut shmlane_topic,
) -> shmlane_error {
    // SAFETY: the caller's promise, passed on.
    unsafe { open_topic(Mode::Create, node, service, r#type, config, out) }
}

/// Opens the existing topic `service`. With a `type`, it must be the topic's
/// (`SHMLANE_ERROR_TYPE_MISMATCH` names both otherwise); with NULL, the topic's recorded type
/// is taken (`shmlane_topic_type` tells it). Of `config` (NULL: the defaults) only
/// `max_pool_bytes` is used. On success `*out` is the topic; on failure NULL.
///
/// # Safety
///
/// As `shmlane_topic_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_open(
    node: *const shmlane_node,
    service: *const c_char,
    r#type: *const shmlane_type,
    config: *const shmlane_topic_config,
    out: *mut *mut shmlane_topic,
) -> shmlane_error {
    // SAFETY: the caller's promise, passed on.
    unsafe { open_topic(Mode::Open, node, service, r#type, config, out) }
}

/// Opens the topic `service`, creating it with `*type` and `*config` (NULL: the defaults) if
/// it does not exist. Without a `type` only an existing topic opens
/// (`SHMLANE_ERROR_TYPE_REQUIRED`). On success `*out` is the topic; on failure NULL.
///
/// # Safety
///
/// As `shmlane_topic_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_open_or_create(
    node: *const shmlane_node,
    service: *const c_char,
    r#type: *const shmlane_type,
    config: *const shmlane_topic_config,
    out: *mut *mut shmlane_topic,
) -> shmlane_error {
    // SAFETY: the caller's promise, passed on.
    unsafe { open_topic(Mode::OpenOrCreate, node, service, r#type, config, out) }
}

/// Destroys a topic handle (NULL: nothing). Its publishers and subscribers live on.
///
/// # Safety
///
/// `topic` is NULL or a topic not yet destroyed, not in use by another thread, and not used
/// after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_destroy(topic: *mut shmlane_topic) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::destroy(topic, "topic", |_| Ok(())) })
}

/// Writes the topic's payload type to `*out` (as given, or as recorded if opened without
/// one). `out->name` stays valid until the topic handle is destroyed.
///
/// # Safety
///
/// `topic` is a live topic; `out` valid for a write of a `shmlane_type`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_type(
    topic: *const shmlane_topic,
    out: *mut shmlane_type,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live topic by the caller's promise.
        let topic = unsafe { handle::get(topic, "topic")? };
        let spec = topic.topic.type_spec();
        let payload = shmlane_type {
            name: topic.type_name.as_ptr(),
            size: spec.size,
            align: spec.align,
            version: spec.version,
        };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(payload) };
        Ok(())
    })
}

/// Writes the topic's settings (its creator's) to `*out`, with this process's
/// `max_pool_bytes`.
///
/// # Safety
///
/// `topic` is a live topic; `out` valid for a write of a `shmlane_topic_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_get_config(
    topic: *const shmlane_topic,
    out: *mut shmlane_topic_config,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live topic by the caller's promise.
        let topic = unsafe { handle::get(topic, "topic")? };
        let config = shmlane_topic_config::from_rust(topic.topic.config(), topic.max_pool_bytes);
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(config) };
        Ok(())
    })
}

/// Writes the topic's service name to `*out`, valid until the topic handle is destroyed.
///
/// # Safety
///
/// `topic` is a live topic; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_topic_service(
    topic: *const shmlane_topic,
    out: *mut *const c_char,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live topic by the caller's promise.
        let topic = unsafe { handle::get(topic, "topic")? };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(topic.service.as_ptr()) };
        Ok(())
    })
}
