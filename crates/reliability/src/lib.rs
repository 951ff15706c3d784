//! shmlane's reliability suite lives in `tests/` of this package: real processes killed with
//! SIGKILL at named crash points (see `shmlane_segment::crash`) and at random instants,
//! hostile bytes written into live segments, permissions and limits, and a bounded soak.
//! Every test has a watchdog (the testkit's bounded waits), so a hang fails instead of
//! blocking CI. This library holds what the tests share.
#![deny(missing_docs)]

pub use shmlane_segment::crash::CRASH_AT_ENV;
