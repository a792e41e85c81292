//! `mkportable build`: a spec becomes the portable service image
//! `DIR/NAME_VERSION.raw`, through `mkportable-spec`, `-closure`, `-scaffold`
//! and `-squash`; and the report of that build (a summary on stderr, or
//! `--json` on stdout).

use std::ffi::OsStr;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use mkportable_closure::{self as closure, Closure, Source, StoreDir};
use mkportable_scaffold as scaffold;
use mkportable_spec::Spec;
use mkportable_squash::Report;

use crate::cache::{self, CacheArgs, CacheEnv};
use crate::exit::{InvalidSpec, OutputExists};
use crate::job::{self, human, json_string, Syntax};

const AFTER_HELP: &str = "\
Examples:
  Build the image a spec describes into the current folder:
    mkportable build demo.toml

  Into out/, replacing an earlier build, with the closure from a closureInfo folder:
    mkportable build app.json -o out --overwrite --closure-info /nix/store/...-closure-info

Closure: the store paths of the spec's `contents`, those its unit files name and the
store objects its symlinks point into are the roots; their closure comes from
--closure-info if given, else the spec's `closure-info`, else `nix-store`. A spec
with no store paths needs no Nix at all.

Times: nothing comes from the clock. The image's creation time is SOURCE_DATE_EPOCH
(0 when unset), and every file time is clamped to it, so the same spec and inputs
always give the same image.

Cache: compressed blocks are kept in $XDG_CACHE_HOME/mkportable (else
$HOME/.cache/mkportable) and reused by later builds, so a rebuild compresses only
what changed. The image is the same with or without it; `mkportable cache` shows
or clears it. Store paths never change once built, so --trust-stat suits them.

Exit status: 0 on success; 1 when the input is at fault (an invalid spec, with every
problem listed; a missing unit file or store path; a closure source that lacks a
store path; an existing image without --overwrite); 2 for usage errors and
unexpected failures; 130 when interrupted. On any failure no image is written.";

/// Arguments of `mkportable build`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The spec: TOML, or JSON if its name ends in `.json`.
    #[arg(value_name = "SPEC")]
    spec: PathBuf,
    /// The folder to write NAME_VERSION.raw into; created if missing.
    #[arg(short = 'o', long = "out-dir", value_name = "DIR", default_value = ".")]
    out_dir: PathBuf,
    /// A closureInfo folder, or exportReferencesGraph files (repeat the flag),
    /// to take the closure from; replaces the spec's `closure-info`.
    #[arg(long, value_name = "PATH")]
    closure_info: Vec<PathBuf>,
    /// Compression threads; 0 means one per core. The image is the same for any number.
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Replace the image if it exists (it is replaced only once the new one is complete).
    #[arg(long)]
    overwrite: bool,
    /// Print nothing on success, and no progress.
    #[arg(long, short)]
    quiet: bool,
    /// Print a JSON report on stdout: one line, `"type":"build-report"`.
    #[arg(long)]
    json: bool,

    /// The block cache.
    #[command(flatten)]
    cache: CacheArgs,
}

/// What a build did, for the summary and the JSON report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// The image written.
    pub output: PathBuf,
    /// The spec's `name`.
    pub name: String,
    /// The spec's `version`.
    pub version: String,
    /// Store paths in the image (the closure).
    pub store_paths: usize,
    /// What the writer reported.
    pub squash: Report,
    /// Wall-clock time of the whole build, spec to renamed image.
    pub elapsed: Duration,
}

/// Runs `mkportable build`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let epoch = source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())?;
    let progress = Progress::new(!args.quiet && io::stderr().is_terminal());

    progress.phase(&format!("reading `{}`", args.spec.display()));
    let spec = Spec::load(&args.spec).map_err(InvalidSpec)?;
    let output = args.out_dir.join(spec.image_file_name());
    // Fail before resolving anything; the writer checks again when it renames.
    if !args.overwrite && output.symlink_metadata().is_ok() {
        return Err(OutputExists {
            path: output,
            flag: Syntax::Squash.overwrite_flag(),
        }
        .into());
    }

    progress.phase("resolving the closure");
    let closure =
        closure_of(&spec, &args.closure_info).context("resolving the store paths of the image")?;

    progress.phase(&format!(
        "laying out the image ({} store paths)",
        closure.len()
    ));
    let tree = scaffold::rootfs(&spec, &closure).context("laying out the image")?;
    let mut options = scaffold::squash_options(&spec, epoch)?;
    options.threads = args.threads;
    options.overwrite = args.overwrite;
    options.cache = cache::open(args.cache.config(&CacheEnv::from_process()));

    progress.phase(&format!("writing `{}`", output.display()));
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating the folder `{}`", args.out_dir.display()))?;
    let squash = job::write(&tree, &mut options, &output, Syntax::Squash)?;
    drop(progress);
    cache::print_warning(squash.cache.as_ref());

    let report = BuildReport {
        output,
        name: spec.name,
        version: spec.version,
        store_paths: closure.len(),
        squash,
        elapsed: started.elapsed(),
    };
    if args.json {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", json_report(&report))
            .and_then(|()| out.flush())
            .context("writing the report to stdout")?;
    } else if !args.quiet {
        eprintln!("{}", summary(&report));
    }
    Ok(())
}

/// The closure of the spec's roots. Sources, first present wins: `cli_sources`,
/// the spec's `closure-info`, Nix. No roots need no source at all.
fn closure_of(spec: &Spec, cli_sources: &[PathBuf]) -> anyhow::Result<Closure> {
    let roots = scaffold::roots(spec)?;
    if roots.is_empty() {
        return Ok(Closure::new());
    }
    let store_dir = StoreDir::new(&spec.store_dir)?;
    let source = if cli_sources.is_empty() {
        Source::auto(spec.closure_info.as_deref())?
    } else {
        Source::from_paths(cli_sources)?
    };
    Ok(closure::resolve(&roots, &source.with_store_dir(store_dir))?)
}

/// `SOURCE_DATE_EPOCH`, if set; as for `squash`, a bad value is the input's fault.
fn source_date_epoch(value: Option<&OsStr>) -> anyhow::Result<Option<u32>> {
    Ok(value
        .map(|v| job::parse_time("SOURCE_DATE_EPOCH", &v.to_string_lossy()))
        .transpose()?)
}

/// The summary printed on stderr after a build: one line, and a second about
/// the cache if one was used.
pub fn summary(r: &BuildReport) -> String {
    let s = &r.squash;
    let mut text = format!(
        "wrote `{}`: {} files ({} store paths), {} in, image {}, duplicates saved {}, {:.2}s",
        r.output.display(),
        s.files,
        r.store_paths,
        human(s.bytes_in),
        human(s.bytes_written),
        human(s.dedup_saved),
        r.elapsed.as_secs_f64(),
    );
    if let Some(cache) = &s.cache {
        text += "\n";
        text += &cache::summary_line(cache);
    }
    text
}

/// The `--json` report: one line holding one object.
///
/// # Format
///
/// ```json
/// {"type":"build-report","version":1,"output":"out/demo_1.0.raw","name":"demo","image_version":"1.0","store_paths":0,"inodes":23,"files":6,"bytes_in":1048576,"bytes_written":471040,"dedup_saved":0,"seconds":0.412,"cache":null}
/// ```
///
/// - `type`: always `"build-report"`; `version`: the schema version, 1. A
///   version bump means a field changed meaning or went away; new fields may
///   appear without one.
/// - `output`: the image path, `DIR/NAME_VERSION.raw` (lossily converted if it is not UTF-8).
/// - `name`, `image_version`: the spec's `name` and `version`.
/// - `store_paths`: store paths in the image (the closure of its roots).
/// - `inodes`, `files`: inodes and regular files written.
/// - `bytes_in`: bytes of file contents read; `bytes_written`: size of the
///   image, padding included; `dedup_saved`: bytes of contents not stored
///   again because an identical file was.
/// - `seconds`: wall-clock time of the whole build.
/// - `cache`: what the block cache did (see [`cache::json_object`]), or
///   `null` with `--no-cache` or when no cache folder was found.
pub fn json_report(r: &BuildReport) -> String {
    let s = &r.squash;
    format!(
        "{{\"type\":\"build-report\",\"version\":1,\"output\":{},\"name\":{},\"image_version\":{},\"store_paths\":{},\"inodes\":{},\"files\":{},\"bytes_in\":{},\"bytes_written\":{},\"dedup_saved\":{},\"seconds\":{:.3},\"cache\":{}}}",
        json_string(&r.output.to_string_lossy()),
        json_string(&r.name),
        json_string(&r.version),
        r.store_paths,
        s.inodes,
        s.files,
        s.bytes_in,
        s.bytes_written,
        s.dedup_saved,
        r.elapsed.as_secs_f64(),
        cache::json_object(s.cache.as_ref()),
    )
}

/// One phase line on stderr, rewritten in place, and erased when dropped
/// (before any summary or error is printed). Off unless stderr is a terminal.
#[derive(Debug)]
struct Progress {
    enabled: bool,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress { enabled }
    }

    fn phase(&self, what: &str) {
        if self.enabled {
            // `\r` and "erase line": no colors, so NO_COLOR has nothing to turn off.
            eprint!("\r\x1b[2Kmkportable: {what}...");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(args: &str) -> Result<Args, clap::Error> {
        let argv = ["mkportable", "build"]
            .into_iter()
            .chain(args.split_whitespace());
        match Cli::try_parse_from(argv)?.command {
            Command::Build(args) => Ok(args),
            other => panic!("not the build subcommand: {other:?}"),
        }
    }

    #[test]
    fn arguments() {
        let args = parse("demo.toml").unwrap();
        assert_eq!(args.spec, PathBuf::from("demo.toml"));
        assert_eq!(args.out_dir, PathBuf::from("."));
        assert!(args.closure_info.is_empty() && !args.overwrite && !args.json && !args.quiet);
        assert_eq!(args.cache, CacheArgs::default());
        let args = parse(
            "-o out --closure-info a --closure-info b --threads 2 --overwrite -q --json s.json",
        )
        .unwrap();
        assert_eq!(args.out_dir, PathBuf::from("out"));
        assert_eq!(args.closure_info, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args.threads, 2);
        assert!(args.overwrite && args.quiet && args.json);
        assert!(parse("--no-cache s.toml")
            .unwrap()
            .cache
            .config(&CacheEnv::default())
            .is_none());
        let args = parse("--cache c --cache-size 5G --trust-stat s.toml").unwrap();
        let config = args.cache.config(&CacheEnv::default()).unwrap();
        assert_eq!(
            (config.dir, config.max_bytes, config.trust_stat),
            (PathBuf::from("c"), 5 << 30, true)
        );
        assert!(parse("").is_err());
        assert!(parse("a.toml b.toml").is_err());
    }

    #[test]
    fn epoch() {
        assert_eq!(source_date_epoch(None).unwrap(), None);
        assert_eq!(
            source_date_epoch(Some(OsStr::new("1700000000"))).unwrap(),
            Some(1_700_000_000)
        );
        let err = source_date_epoch(Some(OsStr::new("soon"))).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), 1);
    }

    #[test]
    fn reports() {
        let r = BuildReport {
            output: "out/demo_1.0.raw".into(),
            name: "demo".into(),
            version: "1.0".into(),
            store_paths: 3,
            squash: Report {
                inodes: 23,
                files: 6,
                bytes_in: 3 << 20,
                bytes_written: 1 << 20,
                dedup_saved: 1536,
                cache: None,
                cpu: Default::default(),
            },
            elapsed: Duration::from_millis(412),
        };
        assert_eq!(
            json_report(&r),
            r#"{"type":"build-report","version":1,"output":"out/demo_1.0.raw","name":"demo","image_version":"1.0","store_paths":3,"inodes":23,"files":6,"bytes_in":3145728,"bytes_written":1048576,"dedup_saved":1536,"seconds":0.412,"cache":null}"#
        );
        assert_eq!(
            summary(&r),
            "wrote `out/demo_1.0.raw`: 6 files (3 store paths), 3.0 MiB in, image 1.0 MiB, duplicates saved 1.5 KiB, 0.41s"
        );
        let mut warm = r.clone();
        warm.squash.cache = Some(mkportable_squash::CacheReport {
            block_hits: 5,
            block_misses: 1,
            files_not_read: 2,
            bytes_not_read: 4096,
            ..Default::default()
        });
        assert_eq!(
            summary(&warm).lines().nth(1),
            Some("cache: 5 of 6 blocks reused, 2 files not read (4.0 KiB)")
        );
        assert!(json_report(&warm)
            .contains(r#","seconds":0.412,"cache":{"block_hits":5,"block_misses":1,"#));
    }
}
