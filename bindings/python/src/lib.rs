//! `shmlane` for Python: zero-copy shared-memory publish/subscribe, request/response, events
//! and discovery, over the `shmlane` facade's run-time typed API ([`shmlane::RawTopic`],
//! [`shmlane::RawRpc`]). Loans and samples
//! are NumPy arrays over the payload in shared memory; blocking calls release the GIL.
//!
//! What Python holds of a facade handle that is `Send` but not `Sync` (a publisher, a
//! subscriber) and what it lends (loans, samples) is in `lender`; `buffer` exports their bytes.

mod buffer;
mod discovery;
mod dtype;
mod errors;
mod event;
mod lender;
mod node;
mod rpc;
mod subscriber;
mod topic;
mod wait;

use pyo3::prelude::*;

/// Zero-copy shared-memory publish/subscribe between processes on one host.
#[pymodule(name = "shmlane")]
fn shmlane_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<node::Node>()?;
    m.add_class::<topic::Topic>()?;
    m.add_class::<topic::Publisher>()?;
    m.add_class::<topic::Loan>()?;
    m.add_class::<subscriber::Subscriber>()?;
    m.add_class::<subscriber::Sample>()?;
    m.add_class::<rpc::Rpc>()?;
    m.add_class::<rpc::Server>()?;
    m.add_class::<rpc::Request>()?;
    m.add_class::<rpc::Client>()?;
    m.add_class::<rpc::Pending>()?;
    m.add_class::<event::Event>()?;
    m.add_class::<event::Notifier>()?;
    m.add_class::<event::Listener>()?;
    m.add_function(wrap_pyfunction!(discovery::list_services, m)?)?;
    m.add_function(wrap_pyfunction!(discovery::list_nodes, m)?)?;
    Ok(())
}
