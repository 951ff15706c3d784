//! The `crash_point!` macro, defined in every build so that call sites
//! need no `cfg` of their own; the points do something only with the `crash-points` feature
//! (see the `crash` module).

/// Marks a crash point named by a string literal (see the `crash` module, built with the `crash-points` feature).
/// Expands to nothing unless the calling crate's `crash-points` feature is on.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "crash-points")]
        $crate::crash::reached($name);
    };
}
