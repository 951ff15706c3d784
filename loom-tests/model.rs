//! How every model in this folder is checked: loom's checker with a preemption bound, so a
//! plain `cargo test --features loom` finishes in minutes. `LOOM_MAX_PREEMPTIONS` replaces the
//! bound of every model; the other `LOOM_*` variables (`LOOM_MAX_BRANCHES`,
//! `LOOM_MAX_DURATION`, `LOOM_CHECKPOINT_FILE`, `LOOM_LOG`, ...) keep their loom meaning.
//!
//! A preemption is a switch away from a thread that could have gone on. Bounding them keeps
//! the interleavings explored polynomial in the model's length; at loom's largest bound (255),
//! the three-thread block-pool model and several others had not finished after 90 s each, in
//! release. Every bug the models' comments and `docs/architecture.md` say they catch is caught
//! at the default bound; the subscriber hand-off one needs all three preemptions.

use loom::model::Builder;

/// The bound of every model that does not set its own.
pub const DEFAULT_PREEMPTIONS: usize = 3;

/// loom's checker, exploring every interleaving with at most `preemptions` preemptions, or at
/// most `LOOM_MAX_PREEMPTIONS` if that is set.
pub fn bounded(preemptions: usize) -> Builder {
    // Reads every `LOOM_*` variable, `LOOM_MAX_PREEMPTIONS` included.
    let mut builder = Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder
}

/// Checks `model` as `loom::model` does, with at most [`DEFAULT_PREEMPTIONS`] preemptions
/// unless `LOOM_MAX_PREEMPTIONS` is set.
pub fn check<F>(model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    bounded(DEFAULT_PREEMPTIONS).check(model);
}
