//! `cargo xtask`: the test entry point and the oracle suites.
//!
//! ```text
//! cargo xtask test [--quick] [--filter PAT]... [--skip-unit]
//!                                  everything: unit, oracle, determinism, bad-input, cache, e2e
//! cargo xtask unit                 Nix fixture, then `cargo test --workspace`
//! cargo xtask oracle [--quick] [--filter PAT]...
//! cargo xtask determinism [--quick] [--filter PAT]...
//! cargo xtask bad-input [--filter PAT]...
//! cargo xtask cache [--filter PAT]...   the block cache: warm = cold bytes, faults, sharing
//! cargo xtask e2e [--filter PAT]...  mkportable build: demo and Nix-fixture images, real systemd, bad specs
//! cargo xtask demo                 build out/demo_1.0.raw from examples/demo (no Nix needed)
//! ```
//!
//! `--filter` keeps the cases whose name contains PAT (e.g. `xz-128K`,
//! `oracle/big`, `bad-input/sigint`); `--quick` runs a reduced matrix.
//! `MKPORTABLE_BIN=/usr/bin/mksquashfs` tests another mksquashfs-compatible
//! program instead of `target/debug/mkportable mksquashfs`. The last line of
//! output is always `N passed, M failed`; the exit status is non-zero on any
//! failure, and when nothing ran. Every command the tests run gets
//! `XDG_CACHE_HOME=target/xtask/xdg-cache`, emptied first, so the default
//! block cache of `mkportable build` and `squash` never touches `~/.cache`.

mod bad_input;
mod bench;
mod cache_suite;
mod compare;
mod demo;
mod determinism;
mod e2e;
mod harness;
mod oracle;
mod tree_gen;

use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Result};

use harness::{cargo, project_root, Ours, Runner};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Test,
    Unit,
    Oracle,
    Determinism,
    BadInput,
    Cache,
    E2e,
    Demo,
}

#[derive(Debug)]
struct Args {
    task: Task,
    quick: bool,
    skip_unit: bool,
    filters: Vec<String>,
}

const USAGE: &str = "usage: cargo xtask <test|unit|oracle|determinism|bad-input|cache|e2e|demo> [--quick] [--filter PAT]... [--skip-unit]";

fn parse_args() -> Result<Option<Args>> {
    let mut args = std::env::args().skip(1);
    let task = match args.next().as_deref() {
        Some("test") => Task::Test,
        Some("unit") => Task::Unit,
        Some("oracle") => Task::Oracle,
        Some("determinism") => Task::Determinism,
        Some("bad-input") => Task::BadInput,
        Some("cache") => Task::Cache,
        Some("e2e") => Task::E2e,
        Some("demo") => Task::Demo,
        Some("help" | "-h" | "--help") | None => return Ok(None),
        Some(other) => bail!("unknown task `{other}`\n{USAGE}"),
    };
    let mut parsed = Args {
        task,
        quick: false,
        skip_unit: false,
        filters: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--skip-unit" => parsed.skip_unit = true,
            "--filter" => match args.next() {
                Some(pat) => parsed.filters.push(pat),
                None => bail!("--filter needs a pattern\n{USAGE}"),
            },
            other => match other.strip_prefix("--filter=") {
                Some(pat) => parsed.filters.push(pat.to_string()),
                None => bail!("unknown option `{other}`\n{USAGE}"),
            },
        }
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("bench") {
        return bench::main(std::env::args().skip(2));
    }
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.task == Task::Demo {
        return match demo::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mut runner = Runner::new(args.filters.clone(), args.quick);
    // Runs share target/xtask (trees, mount points): a second run waits for the first.
    let _lock = match harness::lock_work_dir() {
        Ok(lock) => lock,
        Err(e) => {
            runner.fail("lock target/xtask", &format!("{e:#}"));
            runner.finish();
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = harness::isolate_cache_home() {
        runner.fail("isolate XDG_CACHE_HOME", &format!("{e:#}"));
        runner.finish();
        return ExitCode::FAILURE;
    }
    if matches!(args.task, Task::Test | Task::Unit) && !args.skip_unit {
        unit(&mut runner);
    }
    if args.task != Task::Unit {
        suites(&mut runner, args.task);
    }
    if runner.finish() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Builds the Nix fixture (idempotent), then runs `cargo test --workspace` with it.
fn unit(runner: &mut Runner) {
    let root = project_root();
    let fixture = root.join("target").join("nix-fixture");
    runner.case("unit/nix-fixture", || {
        let script = root
            .join("..")
            .join("shared")
            .join("fixtures")
            .join("make-nix-fixture");
        let status = Command::new(&script)
            .arg("-o")
            .arg(&fixture)
            .args(["-s", "16"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        Ok(())
    });
    runner.case("unit/cargo-test-workspace", || {
        let status = Command::new(cargo())
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("MKPORTABLE_NIX_FIXTURE", &fixture)
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("cargo test --workspace failed ({status})");
        }
        Ok(())
    });
}

/// The suites that need root, the oracles and the tool under test.
fn suites(runner: &mut Runner, task: Task) {
    let wanted = |t: Task| task == Task::Test || task == t;
    if let Err(e) = harness::preflight() {
        runner.fail("preflight", &format!("{e:#}"));
        return;
    }
    println!(
        "oracles: {}; {}; {}; kernel {}",
        harness::version_line("mksquashfs", "-version"),
        harness::version_line("unsquashfs", "-version"),
        harness::version_line("sqfsdiff", "--version"),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let ours = match Ours::locate() {
        Ok(ours) => ours,
        Err(e) => {
            runner.fail("build mkportable", &format!("{e:#}"));
            return;
        }
    };
    println!("under test: {}", ours.describe());
    let work = harness::work_dir();
    let mut trees = oracle::Trees::new(work.join("trees"));
    if wanted(Task::Oracle) {
        oracle::run_suite(runner, &ours, &mut trees, &work);
    }
    if wanted(Task::Determinism) {
        determinism::run_suite(runner, &ours, &mut trees, &work);
    }
    if wanted(Task::BadInput) {
        bad_input::run_suite(runner, &ours, &work);
    }
    if wanted(Task::Cache) {
        cache_suite::run_suite(runner, &ours, &work);
    }
    if wanted(Task::E2e) {
        e2e::run_suite(runner, &work);
    }
}
