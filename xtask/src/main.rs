//! `cargo xtask`: test suites against real oracles, benchmarks.
fn main() {}
