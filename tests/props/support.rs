//! What the properties share: the case count, a runner for the black-box
//! properties, and a spawned app to run them against.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRunner};
use tokio::runtime::Runtime;

use crate::helpers::{spawn_app_with, TestApp};

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 64;

/// `PROPTEST_CASES`, or a small default; `divisor` > 1 for properties whose
/// cases are HTTP round trips.
pub fn config(divisor: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases: (cases / divisor).max(1),
        // A failure is kept as a plain regression test next to its fix,
        // not in a file proptest writes beside the sources.
        failure_persistence: None,
        max_shrink_iters: 1024,
        ..Config::default()
    }
}

/// A runtime with an app on it: no per-caller rate limit in the way, since
/// properties send many requests from one caller.
pub struct Fixture {
    pub app: TestApp,
    pub rt: Runtime,
}

impl Fixture {
    pub fn new() -> Self {
        let rt = Runtime::new().expect("a tokio runtime");
        let app = rt.block_on(spawn_app_with(|s| {
            s.tokens.rate_limit_per_second = 1_000_000;
            s.tokens.rate_limit_burst = 1_000_000;
        }));
        Self { app, rt }
    }

    /// Runs `property` on `strategy`'s cases; panics with the smallest
    /// failing case.
    pub fn check<S: Strategy>(
        &self,
        strategy: S,
        property: impl Fn(&Self, S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
    ) {
        let mut runner = TestRunner::new(config(4));
        if let Err(e) = runner.run(&strategy, |value| property(self, value)) {
            panic!("{e}");
        }
    }
}
