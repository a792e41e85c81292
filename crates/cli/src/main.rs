//! The `mkportable` command line.
fn main() {}
