//! Request/response: one server answering clients, requests and responses as bytes of the
//! types the service records.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::{CString, c_char, c_void};
use std::ptr::NonNull;

use shmlane::rpc::Pending;
use shmlane::{RawClient, RawRequest, RawRpc, RawSample, RawServer, TypeSpec};

use crate::error::{Failure, guard, shmlane_error};
use crate::handle::{self, Handle, clear_out, hand_out, optional, string};
use crate::node::shmlane_node;
use crate::slots::{Refused, Slots};
use crate::subscriber::{
    lend, release_sample, shmlane_sample, shmlane_wait_strategy, strategy_of, timeout,
    too_many_held,
};
use crate::topic::shmlane_type;
use crate::waitset::not_attached;

/// Requests (or responses) one server (or client) handle may hold at once, at most; the
/// service's own limit (8 by default) applies first.
const HELD: u32 = 64;
/// Requests a client remembers awaiting their responses; an older one is forgotten.
const PENDING: usize = 64;

/// A request/response service's settings, fixed by its creator. Start from
/// `shmlane_rpc_config_default`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmlane_rpc_config {
    /// Clients at once (1 to 63; default 8).
    pub max_clients: u32,
    /// Requests queued per client at the server, and responses per client (a power of two,
    /// 1 to 65536; default 64).
    pub capacity: u32,
}

/// A request/response service opened by name: make its server and clients from it; they
/// outlive it. Usable from any thread (`Send` and `Sync`).
#[derive(Debug)]
pub struct shmlane_rpc {
    magic: u64,
    rpc: RawRpc,
    request_name: CString,
    response_name: CString,
}

handle::handle!(shmlane_rpc, "rpc", 0x5348_4c4e_5250_4353);

/// Answers requests. Used by one thread at a time (it may move between threads, with its
/// requests).
#[derive(Debug)]
pub struct shmlane_server {
    magic: u64,
    /// Requests held, each borrowing `*inner`: emptied before `inner` is freed.
    requests: Slots<RawRequest<'static>>,
    /// Bytes of one request element.
    request_size: usize,
    /// Wait sets it is attached to (it is not destroyed while any is).
    pub(crate) attached: Cell<u32>,
    /// From `Box::into_raw`, freed in `Drop`.
    inner: NonNull<RawServer>,
}

handle::handle!(shmlane_server, "server", 0x5348_4c4e_5345_5256);

/// Sends requests and receives their responses. Used by one thread at a time (it may move
/// between threads, with its responses).
#[derive(Debug)]
pub struct shmlane_client {
    magic: u64,
    /// Responses held, each borrowing `*inner`: emptied before `inner` is freed.
    responses: Slots<RawSample<'static>>,
    /// Requests awaiting their responses, by the id C holds (newest last).
    pending: VecDeque<(u64, Pending)>,
    next_pending: u64,
    /// Wait sets it is attached to (it is not destroyed while any is).
    pub(crate) attached: Cell<u32>,
    /// From `Box::into_raw`, freed in `Drop`.
    inner: NonNull<RawClient>,
}

handle::handle!(shmlane_client, "client", 0x5348_4c4e_434c_4e54);

impl shmlane_server {
    pub(crate) fn inner(&self) -> &'static RawServer {
        // SAFETY: `inner` lives until `Drop`, which first drops every request.
        unsafe { self.inner.as_ref() }
    }
}

impl Drop for shmlane_server {
    fn drop(&mut self) {
        self.requests.clear();
        // SAFETY: from `Box::into_raw`; nothing borrows it any more (requests cleared above).
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

impl shmlane_client {
    pub(crate) fn inner(&self) -> &'static RawClient {
        // SAFETY: `inner` lives until `Drop`, which first drops every response.
        unsafe { self.inner.as_ref() }
    }

    /// The request `id` names.
    fn pending(&self, id: u64) -> Result<(usize, Pending), Failure> {
        let at = self.pending.iter().position(|(known, _)| *known == id);
        at.map(|at| (at, self.pending[at].1)).ok_or_else(|| {
            Failure::new(
                shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
                format!(
                    "request {id} is not awaited by this client: answered already, never sent, \
                     or older than its last {PENDING} requests"
                ),
            )
        })
    }
}

impl Drop for shmlane_client {
    fn drop(&mut self) {
        self.responses.clear();
        // SAFETY: from `Box::into_raw`; nothing borrows it any more (responses cleared above).
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

/// Writes the default rpc settings to `*out`.
///
/// # Safety
///
/// `out` is valid for a write of a `shmlane_rpc_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_rpc_config_default(out: *mut shmlane_rpc_config) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_rpc_config { max_clients: 8, capacity: 64 }) };
        Ok(())
    })
}

/// A `shmlane_type` as a `TypeSpec`.
///
/// # Safety
///
/// `payload.name` is NULL or a NUL-terminated string.
unsafe fn type_spec(payload: &shmlane_type, what: &str) -> Result<TypeSpec, Failure> {
    // SAFETY: the caller's promise.
    let name = unsafe { string(payload.name, what)? };
    Ok(TypeSpec::new(name, payload.size, payload.align, payload.version))
}

/// Opens the request/response service `service`, creating it with the types
/// `*request_type` and `*response_type` and the settings `*config` (NULL: the defaults) if it
/// does not exist. Give both types or neither (NULL, NULL: open an existing service as the
/// types it records). On success `*out` is the service; on failure NULL.
///
/// # Safety
///
/// `node` is a live node; `service` a NUL-terminated string; each type NULL or a readable
/// `shmlane_type` whose `name` is a NUL-terminated string; `config` NULL or readable; `out`
/// valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_rpc_open_or_create(
    node: *const shmlane_node,
    service: *const c_char,
    request_type: *const shmlane_type,
    response_type: *const shmlane_type,
    config: *const shmlane_rpc_config,
    out: *mut *mut shmlane_rpc,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live node by the caller's promise.
        let node = unsafe { handle::get(node, "node")? };
        // SAFETY: a string by the caller's promise.
        let service = unsafe { string(service, "service")? };
        let mut builder = node.node.raw_rpc(service);
        // SAFETY: NULL or readable by the caller's promise.
        match unsafe { (optional(request_type), optional(response_type)) } {
            (Some(request), Some(response)) => {
                // SAFETY: the names are strings by the caller's promise.
                let request = unsafe { type_spec(&request, "request_type->name")? };
                // SAFETY: as above.
                let response = unsafe { type_spec(&response, "response_type->name")? };
                builder = builder.types(request, response);
            }
            (None, None) => {}
            _ => {
                return Err(Failure::new(
                    shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT,
                    "give both request_type and response_type, or neither",
                ));
            }
        }
        // SAFETY: NULL or readable by the caller's promise.
        if let Some(config) = unsafe { optional(config) } {
            builder = builder.max_clients(config.max_clients).capacity(config.capacity);
        }
        let rpc = builder.open_or_create()?;
        let nul = |text: &str| CString::new(text).unwrap_or_default();
        let handle = shmlane_rpc {
            magic: shmlane_rpc::MAGIC,
            request_name: nul(&rpc.request_type().name),
            response_name: nul(&rpc.response_type().name),
            rpc,
        };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(handle, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys an rpc service handle (NULL: nothing). Its server and clients live on.
///
/// # Safety
///
/// `rpc` is NULL or a service not yet destroyed, not in use by another thread, and not used
/// after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_rpc_destroy(rpc: *mut shmlane_rpc) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::destroy(rpc, "rpc", |_| Ok(())) })
}

/// Writes the service's request and response types to `*request_type` and `*response_type`
/// (either may be NULL); their names stay valid until the rpc handle is destroyed.
///
/// # Safety
///
/// `rpc` is a live service; each out-pointer NULL or valid for a write of a `shmlane_type`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_rpc_types(
    rpc: *const shmlane_rpc,
    request_type: *mut shmlane_type,
    response_type: *mut shmlane_type,
) -> shmlane_error {
    guard(|| {
        // SAFETY: a live service by the caller's promise.
        let rpc = unsafe { handle::get(rpc, "rpc")? };
        let describe = |spec: &TypeSpec, name: &CString| shmlane_type {
            name: name.as_ptr(),
            size: spec.size,
            align: spec.align,
            version: spec.version,
        };
        if !request_type.is_null() {
            // SAFETY: non-NULL, valid by the caller's promise.
            unsafe { request_type.write(describe(rpc.rpc.request_type(), &rpc.request_name)) };
        }
        if !response_type.is_null() {
            // SAFETY: as above.
            unsafe { response_type.write(describe(rpc.rpc.response_type(), &rpc.response_name)) };
        }
        Ok(())
    })
}

/// Becomes the service's server (one at a time). On success `*out` is the server; on failure
/// NULL.
///
/// # Safety
///
/// `rpc` is a live service; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_server_create(
    rpc: *const shmlane_rpc,
    out: *mut *mut shmlane_server,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live service by the caller's promise.
        let rpc = unsafe { handle::get(rpc, "rpc")? };
        let inner = NonNull::from(Box::leak(Box::new(rpc.rpc.server()?)));
        let server = shmlane_server {
            magic: shmlane_server::MAGIC,
            requests: Slots::new(HELD),
            request_size: usize::try_from(rpc.rpc.request_type().size).unwrap_or(usize::MAX),
            attached: Cell::new(0),
            inner,
        };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(server, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a server (NULL: nothing). Refused with `SHMLANE_ERROR_BUSY` while requests are
/// held (release them first) or while it is attached to a wait set (detach it first).
///
/// # Safety
///
/// `server` is NULL or a server not yet destroyed, not in use by another thread, and not used
/// after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_server_destroy(server: *mut shmlane_server) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe {
            handle::destroy(server, "server", |server| match server.requests.out() {
                0 => not_attached(&server.attached, "server"),
                n => Err(Failure::new(
                    shmlane_error::SHMLANE_ERROR_BUSY,
                    format!("the server holds {n} requests: release them first"),
                )),
            })
        }
    })
}

/// Takes the next request if one is queued, without blocking: `*request` is the request (a
/// sample of the request type), or has `data` NULL if none was queued.
///
/// # Safety
///
/// `server` is a live server used by this thread alone; `request` valid for a write of a
/// `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_server_receive(
    server: *mut shmlane_server,
    request: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(request, "request")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_sample::NONE) };
        // SAFETY: a live server, this thread's alone, by the caller's promise.
        let server = unsafe { handle::get_mut(server, "server")? };
        if !server.requests.has_room() {
            return Err(too_many_held(server.requests.out()));
        }
        if let Some(received) = server.inner().receive()? {
            // SAFETY: as above.
            unsafe { out.write(lend_request(server, received)) };
        }
        Ok(())
    })
}

/// Waits with `strategy` for the next request, up to `timeout_ns` nanoseconds
/// (`SHMLANE_TIMEOUT_INFINITE`: no limit), and writes it to `*request`. Fails with
/// `SHMLANE_ERROR_TIMEOUT` if none came in time.
///
/// # Safety
///
/// As `shmlane_server_receive`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_server_receive_wait(
    server: *mut shmlane_server,
    strategy: shmlane_wait_strategy,
    timeout_ns: u64,
    request: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(request, "request")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_sample::NONE) };
        let mut strategy = strategy_of(strategy)?;
        // SAFETY: a live server, this thread's alone, by the caller's promise.
        let server = unsafe { handle::get_mut(server, "server")? };
        if !server.requests.has_room() {
            return Err(too_many_held(server.requests.out()));
        }
        let received = server.inner().receive_with(&mut strategy, timeout(timeout_ns))?;
        // SAFETY: as above.
        unsafe { out.write(lend_request(server, received)) };
        Ok(())
    })
}

/// Stores a request in the server's table and describes it.
fn lend_request(server: &mut shmlane_server, request: RawRequest<'static>) -> shmlane_sample {
    let owner = server.requests.owner();
    let size = server.request_size.max(1);
    match server.requests.insert(request) {
        Ok((token, request)) => {
            let bytes: &[u8] = request;
            let len = bytes.len() / size;
            shmlane_sample { data: bytes.as_ptr().cast(), bytes: bytes.len(), len, token, owner }
        }
        // Checked for room before the receive.
        Err(_) => shmlane_sample::NONE,
    }
}

/// Sends the response `data` (`bytes` bytes: whole elements of the response type) to the
/// client that sent `*request`. The request stays held: release it after.
///
/// # Safety
///
/// `server` is a live server used by this thread alone; `request` a readable
/// `shmlane_sample`; `data` valid for reads of `bytes` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_server_respond(
    server: *mut shmlane_server,
    request: *const shmlane_sample,
    data: *const c_void,
    bytes: usize,
) -> shmlane_error {
    guard(|| {
        let request = handle::out(request.cast_mut(), "request")?;
        if data.is_null() {
            return Err(Failure::null("data"));
        }
        // SAFETY: a live server, this thread's alone, by the caller's promise.
        let server = unsafe { handle::get_mut(server, "server")? };
        // SAFETY: readable by the caller's promise.
        let given = unsafe { request.read() };
        let held =
            server.requests.get(given.owner, given.token).map_err(|refused| match refused {
                Refused::Foreign => Failure::new(
                    shmlane_error::SHMLANE_ERROR_FOREIGN,
                    "the request came from another server",
                ),
                Refused::Released => Failure::new(
                    shmlane_error::SHMLANE_ERROR_RELEASED,
                    "the request was released already (or is no request: data NULL, token 0)",
                ),
            })?;
        // SAFETY: non-NULL and readable for `bytes` bytes by the caller's promise.
        let response = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), bytes) };
        server.inner().respond(held, response)?;
        Ok(())
    })
}

/// Gives a request back and zeroes `*request`; as `shmlane_subscriber_release`.
///
/// # Safety
///
/// `server` is a live server used by this thread alone; `request` valid for reads and writes
/// of a `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_server_release(
    server: *mut shmlane_server,
    request: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let request = handle::out(request, "request")?;
        // SAFETY: a live server, this thread's alone, by the caller's promise.
        let server = unsafe { handle::get_mut(server, "server")? };
        // SAFETY: `request` is readable and writable by the caller's promise.
        unsafe { release_sample(&mut server.requests, request, "request")? };
        Ok(())
    })
}

/// Becomes a client of the service. On success `*out` is the client; on failure NULL.
///
/// # Safety
///
/// `rpc` is a live service; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_client_create(
    rpc: *const shmlane_rpc,
    out: *mut *mut shmlane_client,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live service by the caller's promise.
        let rpc = unsafe { handle::get(rpc, "rpc")? };
        let inner = NonNull::from(Box::leak(Box::new(rpc.rpc.client()?)));
        let client = shmlane_client {
            magic: shmlane_client::MAGIC,
            responses: Slots::new(HELD),
            pending: VecDeque::with_capacity(PENDING),
            next_pending: 1,
            attached: Cell::new(0),
            inner,
        };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(client, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a client (NULL: nothing). Refused with `SHMLANE_ERROR_BUSY` while responses are
/// held (release them first) or while it is attached to a wait set (detach it first).
///
/// # Safety
///
/// `client` is NULL or a client not yet destroyed, not in use by another thread, and not used
/// after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_client_destroy(client: *mut shmlane_client) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe {
            handle::destroy(client, "client", |client| match client.responses.out() {
                0 => not_attached(&client.attached, "client"),
                n => Err(Failure::new(
                    shmlane_error::SHMLANE_ERROR_BUSY,
                    format!("the client holds {n} responses: release them first"),
                )),
            })
        }
    })
}

/// Sends the request `data` (`bytes` bytes: whole elements of the request type), waiting up
/// to 1 s if the server's queue for this client is full, and writes its id to `*pending`:
/// pass it to `shmlane_client_receive` or `shmlane_client_receive_wait`. A client awaits one
/// response at a time: a response that comes while another request is awaited is discarded.
///
/// # Safety
///
/// `client` is a live client used by this thread alone; `data` valid for reads of `bytes`
/// bytes; `pending` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_client_send(
    client: *mut shmlane_client,
    data: *const c_void,
    bytes: usize,
    pending: *mut u64,
) -> shmlane_error {
    guard(|| {
        let pending = handle::out(pending, "pending")?;
        if data.is_null() {
            return Err(Failure::null("data"));
        }
        // SAFETY: a live client, this thread's alone, by the caller's promise.
        let client = unsafe { handle::get_mut(client, "client")? };
        // SAFETY: non-NULL and readable for `bytes` bytes by the caller's promise.
        let request = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), bytes) };
        let sent = client.inner().send(request)?;
        let id = client.next_pending;
        client.next_pending += 1;
        if client.pending.len() == PENDING {
            client.pending.pop_front();
        }
        client.pending.push_back((id, sent));
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { pending.write(id) };
        Ok(())
    })
}

/// Takes the response to the request `pending` if it has come, without blocking:
/// `*response` is the response, or has `data` NULL if it has not come yet (ask again).
///
/// # Safety
///
/// `client` is a live client used by this thread alone; `response` valid for a write of a
/// `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_client_receive(
    client: *mut shmlane_client,
    pending: u64,
    response: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(response, "response")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_sample::NONE) };
        // SAFETY: a live client, this thread's alone, by the caller's promise.
        let client = unsafe { handle::get_mut(client, "client")? };
        let (at, awaited) = client.pending(pending)?;
        if !client.responses.has_room() {
            return Err(too_many_held(client.responses.out()));
        }
        if let Some(received) = client.inner().receive(awaited)? {
            client.pending.remove(at);
            // SAFETY: as above.
            unsafe { out.write(lend(&mut client.responses, received)) };
        }
        Ok(())
    })
}

/// Waits with `strategy` for the response to the request `pending`, up to `timeout_ns`
/// nanoseconds (`SHMLANE_TIMEOUT_INFINITE`: no limit), and writes it to `*response`. Fails
/// with `SHMLANE_ERROR_TIMEOUT` if it did not come in time (the request stays awaited).
///
/// # Safety
///
/// As `shmlane_client_receive`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_client_receive_wait(
    client: *mut shmlane_client,
    pending: u64,
    strategy: shmlane_wait_strategy,
    timeout_ns: u64,
    response: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(response, "response")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_sample::NONE) };
        let mut strategy = strategy_of(strategy)?;
        // SAFETY: a live client, this thread's alone, by the caller's promise.
        let client = unsafe { handle::get_mut(client, "client")? };
        let (at, awaited) = client.pending(pending)?;
        if !client.responses.has_room() {
            return Err(too_many_held(client.responses.out()));
        }
        let received = client.inner().receive_with(awaited, &mut strategy, timeout(timeout_ns))?;
        client.pending.remove(at);
        // SAFETY: as above.
        unsafe { out.write(lend(&mut client.responses, received)) };
        Ok(())
    })
}

/// Sends a request and waits for its response: `shmlane_client_send`, then
/// `shmlane_client_receive_wait`.
///
/// # Safety
///
/// `client` is a live client used by this thread alone; `data` valid for reads of `bytes`
/// bytes; `response` valid for a write of a `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_client_call(
    client: *mut shmlane_client,
    data: *const c_void,
    bytes: usize,
    strategy: shmlane_wait_strategy,
    timeout_ns: u64,
    response: *mut shmlane_sample,
) -> shmlane_error {
    let mut pending = 0;
    // SAFETY: the caller's promise, passed on; `pending` is a local.
    match unsafe { shmlane_client_send(client, data, bytes, &mut pending) } {
        shmlane_error::SHMLANE_OK => {
            // SAFETY: the caller's promise, passed on.
            unsafe { shmlane_client_receive_wait(client, pending, strategy, timeout_ns, response) }
        }
        error => {
            if !response.is_null() {
                // SAFETY: non-NULL, valid by the caller's promise.
                unsafe { response.write(shmlane_sample::NONE) };
            }
            error
        }
    }
}

/// Gives a response back and zeroes `*response`; as `shmlane_subscriber_release`.
///
/// # Safety
///
/// `client` is a live client used by this thread alone; `response` valid for reads and
/// writes of a `shmlane_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_client_release(
    client: *mut shmlane_client,
    response: *mut shmlane_sample,
) -> shmlane_error {
    guard(|| {
        let response = handle::out(response, "response")?;
        // SAFETY: a live client, this thread's alone, by the caller's promise.
        let client = unsafe { handle::get_mut(client, "client")? };
        // SAFETY: `response` is readable and writable by the caller's promise.
        unsafe { release_sample(&mut client.responses, response, "response")? };
        Ok(())
    })
}
