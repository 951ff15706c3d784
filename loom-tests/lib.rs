//! Workspace root of shmlane: how the loom models in this folder are checked (`model`, with
//! its default preemption bound) and the fixtures they share.
//!
//! The models themselves are integration tests of this package, built only with
//! `cargo test --features loom` (each `[[test]]` requires the `loom` feature). The feature
//! forwards to every member crate, which then builds its hidden `model` module: its protocol
//! files compiled a second time over loom's atomics, which the models drive.

#[cfg(feature = "loom")]
pub mod model;
#[cfg(feature = "loom")]
pub mod pool;
