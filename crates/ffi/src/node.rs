//! Nodes.

use std::ffi::c_char;

use shmlane::Node;

use crate::error::{guard, shmlane_error};
use crate::handle::{self, Handle, clear_out, hand_out, optional_string, string};

/// A participant: its name, its namespace and where its shared memory lives. Services are
/// opened through it; what they make outlives it. Usable from any thread (`Send` and `Sync`).
#[derive(Debug)]
pub struct shmlane_node {
    magic: u64,
    pub(crate) node: Node,
}

handle::handle!(shmlane_node, "node", 0x5348_4c4e_4e4f_4445);

/// Creates a node called `name` in the namespace `namespace_name` (NULL: the environment's
/// `SHMLANE_NAMESPACE`, else "default"), keeping its shared memory in the directory
/// `root_dir` (NULL: /dev/shm). Names are 1 to 64 ASCII letters, digits, '-' or '_'. On
/// success `*out` is the node; on failure NULL.
///
/// # Safety
///
/// `name` is a NUL-terminated string; `namespace_name` and `root_dir` are NULL or
/// NUL-terminated strings; `out` is valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_node_create(
    name: *const c_char,
    namespace_name: *const c_char,
    root_dir: *const c_char,
    out: *mut *mut shmlane_node,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: strings by the caller's promise.
        let name = unsafe { string(name, "name")? };
        // SAFETY: as above.
        let namespace = unsafe { optional_string(namespace_name, "namespace_name")? };
        // SAFETY: as above.
        let root = unsafe { optional_string(root_dir, "root_dir")? };
        let mut builder = Node::builder(name);
        if let Some(namespace) = namespace {
            builder = builder.namespace(namespace);
        }
        if let Some(root) = root {
            builder = builder.root(root);
        }
        let node = builder.create()?;
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(shmlane_node { magic: shmlane_node::MAGIC, node }, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a node (NULL: nothing). The topics, events and rpc services opened through it, and
/// what they made, live on (they hold their own share of the node).
///
/// # Safety
///
/// `node` is NULL or a node not yet destroyed, not in use by another thread, and not used
/// after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_node_destroy(node: *mut shmlane_node) -> shmlane_error {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::destroy(node, "node", |_| Ok(())) })
}
