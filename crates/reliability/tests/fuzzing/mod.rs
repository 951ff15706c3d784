//! How the hostile-input suites (`hostile_queue`, `hostile_topic`) run a property: in
//! proptest's fork mode, so a crash or a hang fails the exact case, with the case count and the
//! seed from the environment ([`FUZZ_CASES_ENV`], [`FUZZ_SEED_ENV`]), and a failure printed
//! with the settings that replay it.

use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use shmlane_reliability::{FUZZ_CASES_ENV, FUZZ_SEED_ENV, RunDir, Tally, fuzz_cases};
use shmlane_segment::RoleOwner;

/// A case running longer than this (milliseconds) fails as a hang.
const CASE_TIMEOUT_MS: u32 = 10_000;

/// A failed case, saying why.
pub fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// Runs the property `name` (the test's own name: the fork-mode child runs it again) on the
/// cases of `strategy`, `ci_cases` of them unless [`FUZZ_CASES_ENV`] says otherwise; `test`
/// checks one case and saves what it counted in `dir`. Fails with the settings that replay the
/// run; otherwise prints and returns what the cases counted (`counts`, see [`Tally`]).
pub fn run_property<S: Strategy>(
    name: &'static str,
    dir: &RunDir,
    counts: &'static [&'static str],
    ci_cases: u32,
    max_shrink_iters: u32,
    strategy: &S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Tally {
    let cases = fuzz_cases(ci_cases);
    let seed = shmlane_testkit::seed(FUZZ_SEED_ENV);
    let config = Config {
        cases,
        fork: true,
        timeout: CASE_TIMEOUT_MS,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        test_name: Some(name),
        max_shrink_iters,
        ..Config::default()
    };
    let started = Instant::now();
    let result = TestRunner::new(config).run(strategy, test);
    let elapsed = started.elapsed();
    if let Err(e) = result {
        panic!("{e}\nrepeat with {FUZZ_SEED_ENV}={seed} {FUZZ_CASES_ENV}={cases}");
    }
    let tally = Tally::load(counts, dir.path());
    eprintln!(
        "{name}: {cases} cases in {elapsed:.2?} ({:.0?} per case, seed {seed}): {tally}",
        elapsed / cases.max(1)
    );
    tally
}

/// A hostile write: where in the structure (`S`), and what (`W`).
#[derive(Debug, Clone)]
pub struct Mutation<S, W> {
    pub spot: S,
    pub write: W,
}

/// A step of a case: a hostile write, or an operation of the structure under test (`O`).
#[derive(Debug, Clone)]
pub enum Step<S, W, O> {
    Mutate(Mutation<S, W>),
    Op(O),
}

/// A word a hostile peer writes over another: one any structure may get, or one of the
/// structure's own vocabulary (`W`: positions near its live ones, values it queues).
#[derive(Debug, Clone)]
pub enum Word<W> {
    Zero,
    One,
    Max,
    Any(u64),
    /// The current value plus this.
    Near(i64),
    /// The current value with this bit flipped.
    Flip(u8),
    /// Our own process as a role owner (alive).
    LiveOwner,
    /// A role owner proven dead.
    DeadOwner,
    /// One of the structure's own.
    Own(W),
}

impl<W> Word<W> {
    /// The value this word makes of `current`, with `owners` the live and the dead role owner
    /// and `own` making the structure's own words.
    pub fn value(
        &self,
        current: u64,
        (live, dead): (RoleOwner, RoleOwner),
        own: impl FnOnce(&W) -> u64,
    ) -> u64 {
        match self {
            Word::Zero => 0,
            Word::One => 1,
            Word::Max => u64::MAX,
            Word::Any(value) => *value,
            Word::Near(delta) => current.wrapping_add_signed(*delta),
            Word::Flip(bit) => current ^ 1 << bit,
            Word::LiveOwner => live.to_raw(),
            Word::DeadOwner => dead.to_raw(),
            Word::Own(word) => own(word),
        }
    }
}

/// [`Word`]s: `Near` within `near`, and the structure's own (`own`, weighted `own_weight`
/// against 9 for the others together).
pub fn word<W: std::fmt::Debug + Clone>(
    near: std::ops::RangeInclusive<i64>,
    own_weight: u32,
    own: impl Strategy<Value = W> + 'static,
) -> impl Strategy<Value = Word<W>> {
    use proptest::prelude::*;
    prop_oneof![
        1 => Just(Word::Zero),
        1 => Just(Word::One),
        1 => Just(Word::Max),
        1 => any::<u64>().prop_map(Word::Any),
        2 => near.prop_map(Word::Near),
        1 => (0u8..64).prop_map(Word::Flip),
        1 => Just(Word::LiveOwner),
        1 => Just(Word::DeadOwner),
        own_weight => own.prop_map(Word::Own),
    ]
}
