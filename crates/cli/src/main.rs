//! The `mkportable` command line; invoked as `mksquashfs`, it speaks mksquashfs's syntax.
//!
//! Glue only: the work lives in the library crates. This binary parses
//! arguments ([`args`], [`build`], [`cache`], [`closure`], [`squash`], [`mksquashfs`]),
//! runs one build ([`job`]), and turns any error into a message on stderr and
//! an exit code ([`exit`]).

mod args;
mod build;
mod cache;
mod closure;
mod exit;
mod job;
mod mksquashfs;
mod squash;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let res = match argv.split_first() {
        Some((argv0, rest)) if mksquashfs::is_invoked_as(argv0) => mksquashfs::run(rest),
        _ => match args::Cli::try_parse_from(&argv) {
            Ok(cli) => args::run(cli),
            Err(e) => return exit::clap_error(&e),
        },
    };
    exit::finish(res)
}
