//! Discovery: the services in a directory, as a list the caller frees.

use std::ffi::{CString, c_char};
use std::path::Path;
use std::ptr;

use shmlane::discovery::{self, ServiceKind};

use crate::error::{Failure, guard, shmlane_error};
use crate::handle::{self, Handle, clear_out, hand_out, optional_string};

/// What a service is (a `SHMLANE_SERVICE_*` value).
pub type shmlane_service_kind = u32;
/// Publish/subscribe.
pub const SHMLANE_SERVICE_TOPIC: shmlane_service_kind = 0;
/// One of the two topics of a request/response service (`NAME.req`, `NAME.resp`).
pub const SHMLANE_SERVICE_RPC: shmlane_service_kind = 1;
/// Events.
pub const SHMLANE_SERVICE_EVENT: shmlane_service_kind = 2;

/// One service found. Its strings stay valid until its list is destroyed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmlane_service_info {
    /// Its namespace.
    pub namespace_name: *const c_char,
    /// Its name (for request/response, with ".req" or ".resp").
    pub name: *const c_char,
    /// A `SHMLANE_SERVICE_*` value.
    pub kind: shmlane_service_kind,
    /// The payload type's recorded name (topics), or NULL.
    pub type_name: *const c_char,
    /// The payload type's size in bytes (0 if unknown).
    pub type_size: u64,
    /// The payload type's version (0 if unknown).
    pub type_version: u64,
    /// Publisher slots held (topics).
    pub publishers: usize,
    /// Subscriber slots held (topics), or listener slots (events).
    pub subscribers: usize,
    /// Why the service's header could not be read, or NULL.
    pub problem: *const c_char,
}

/// One service's strings, owned by its list.
#[derive(Debug)]
struct Found {
    namespace: CString,
    name: CString,
    kind: shmlane_service_kind,
    type_name: Option<CString>,
    type_size: u64,
    type_version: u64,
    publishers: usize,
    subscribers: usize,
    problem: Option<CString>,
}

/// The services found by `shmlane_discovery_list`: read with `shmlane_service_list_len` and
/// `shmlane_service_list_get`, free with `shmlane_service_list_destroy`. A snapshot: it does
/// not change. Usable from any thread.
#[derive(Debug)]
pub struct shmlane_service_list {
    magic: u64,
    services: Vec<Found>,
}

handle::handle!(shmlane_service_list, "service list", 0x5348_4c4e_5345_5256);

/// A string as a C string (a NUL inside is escaped).
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

/// Lists the services in /dev/shm, or in the directory `root_dir` if not NULL (every
/// namespace; a node's `root_dir` is where its services are). On success `*out` is the list;
/// on failure NULL.
///
/// # Safety
///
/// `root_dir` is NULL or a NUL-terminated string; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_discovery_list(
    root_dir: *const c_char,
    out: *mut *mut shmlane_service_list,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: NULL or a string by the caller's promise.
        let root = unsafe { optional_string(root_dir, "root_dir")? };
        let services = discovery::list(root.map(Path::new))?
            .into_iter()
            .map(|info| Found {
                namespace: c_string(&info.namespace),
                name: c_string(&info.name),
                kind: match info.kind {
                    ServiceKind::Topic => SHMLANE_SERVICE_TOPIC,
                    ServiceKind::Rpc => SHMLANE_SERVICE_RPC,
                    ServiceKind::Event => SHMLANE_SERVICE_EVENT,
                },
                type_name: info.payload.as_ref().map(|(name, _, _)| c_string(name)),
                type_size: info.payload.as_ref().map_or(0, |(_, size, _)| *size),
                type_version: info.payload.as_ref().map_or(0, |(_, _, version)| *version),
                publishers: info.publishers.len(),
                subscribers: info.subscribers.len(),
                problem: info.problem.as_deref().map(c_string),
            })
            .collect();
        let list = shmlane_service_list { magic: shmlane_service_list::MAGIC, services };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(list, out.as_ptr()) };
        Ok(())
    })
}

/// Writes the number of services in `list` to `*out`.
///
/// # Safety
///
/// `list` is a live service list; `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_service_list_len(
    list: *const shmlane_service_list,
    out: *mut usize,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live list by the caller's promise.
        let list = unsafe { handle::get(list, "list")? };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(list.services.len()) };
        Ok(())
    })
}

/// Writes service `index` (below `shmlane_service_list_len`, else
/// `SHMLANE_ERROR_INVALID_ARGUMENT`) to `*out`.
///
/// # Safety
///
/// `list` is a live service list; `out` valid for a write of a `shmlane_service_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_service_list_get(
    list: *const shmlane_service_list,
    index: usize,
    out: *mut shmlane_service_info,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live list by the caller's promise.
        let list = unsafe { handle::get(list, "list")? };
        let found = list.services.get(index).ok_or_else(|| {
            Failure::new(
                shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
                format!("index {index} is beyond the list's {} services", list.services.len()),
            )
        })?;
        let info = shmlane_service_info {
            namespace_name: found.namespace.as_ptr(),
            name: found.name.as_ptr(),
            kind: found.kind,
            type_name: found.type_name.as_ref().map_or(ptr::null(), |name| name.as_ptr()),
            type_size: found.type_size,
            type_version: found.type_version,
            publishers: found.publishers,
            subscribers: found.subscribers,
            problem: found.problem.as_ref().map_or(ptr::null(), |problem| problem.as_ptr()),
        };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// Destroys a service list (NULL: nothing); the strings it gave become invalid.
///
/// # Safety
///
/// `list` is NULL or a list not yet destroyed, not in use by another thread, and not used
/// after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_service_list_destroy(
    list: *mut shmlane_service_list,
) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::destroy(list, "service list", |_| Ok(())) })
}
