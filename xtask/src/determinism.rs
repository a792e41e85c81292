//! Determinism: the same tree and options give byte-identical images at 1, 2
//! and 8 threads, from two working directories (absolute paths, then relative
//! paths with another `TMPDIR`), so each thread count runs twice.
//!
//! Then the same options through `mkportable squash`, the syntax with a block
//! cache (issue 5): a cold build with `--no-cache`, a cold one into an empty
//! cache, and warm ones at each thread count must give the same bytes, and the
//! warm builds must find every block in the cache. (Not the bytes of the
//! mksquashfs syntax: it keeps mksquashfs's tail packing, `squash` packs
//! fragments so that the cache stays effective.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::cache_suite::number;
use crate::harness::{clean_dir, run_ok, Ours, Runner};
use crate::oracle::{build, Opts, Trees};

/// Runs one case per (tree, options) pair.
pub fn run_suite(runner: &mut Runner, ours: &Ours, trees: &mut Trees, work: &Path) {
    let dir = work.join("determinism");
    if let Err(e) = clean_dir(&dir) {
        runner.fail("determinism", &format!("{e:#}"));
        return;
    }
    let mut configs = vec![("edge", Opts::new("xz", "128K"))];
    let mut o = Opts::new("zstd", "4K");
    (o.all_root, o.fragments) = (true, false);
    configs.push(("random-1", o));
    if !runner.quick {
        let mut o = Opts::new("gzip", "1M");
        o.comp_args = vec!["-Xcompression-level", "6"];
        configs.push(("random-2", o));
        let mut o = Opts::new("xz", "1M");
        o.comp_args = vec!["-Xdict-size", "100%"];
        configs.push(("big", o));
    }
    for (tree, opts) in configs {
        let threads: &[usize] = if runner.quick { &[1, 8] } else { &[1, 2, 8] };
        // (threads, absolute paths?) per build. The big tree reads 4 GiB per
        // build: one thread with absolute paths and eight with relative ones.
        let runs: Vec<(usize, bool)> = if tree == "big" {
            vec![(1, true), (8, false)]
        } else {
            [true, false]
                .iter()
                .flat_map(|abs| threads.iter().map(move |n| (*n, *abs)))
                .collect()
        };
        // Then `mkportable squash`: --no-cache, an empty cache, warm at each
        // thread count; for the big tree, warm at one thread only.
        let cache_runs: Vec<CacheRun> = if tree == "big" {
            vec![CacheRun::NoCache(8), CacheRun::Empty(8), CacheRun::Warm(1)]
        } else {
            [CacheRun::NoCache(1), CacheRun::Empty(8)]
                .into_iter()
                .chain(threads.iter().map(|n| CacheRun::Warm(*n)))
                .collect()
        };
        let name = format!("determinism/{tree}/{}", opts.label());
        let case_dir = dir.join(format!("{tree}-{}", opts.label()));
        runner.case(&name, || {
            trees.ensure(tree)?;
            let source = trees.get(tree)?;
            same_bytes(ours, &source.path, work, &case_dir, &opts, &runs)?;
            if ours.needs_subcommand() {
                cold_and_warm(ours, &source.path, &case_dir, &opts, &cache_runs)?;
            }
            fs::remove_dir_all(&case_dir).context("cleaning up")
        });
    }
}

/// Builds `source` once per run (threads, absolute paths or relative ones
/// from another working directory and `TMPDIR`) and requires every image to
/// have the same blake3.
fn same_bytes(
    ours: &Ours,
    source: &Path,
    work: &Path,
    case_dir: &Path,
    opts: &Opts,
    runs: &[(usize, bool)],
) -> Result<()> {
    clean_dir(case_dir)?;
    let relative_source = source
        .strip_prefix(work)
        .context("trees live under the work directory")?;
    let mut images: Vec<(String, PathBuf, blake3::Hash)> = Vec::new();
    for &(n, absolute) in runs {
        let place = if absolute { "abs" } else { "rel" };
        let tmp = case_dir.join(format!("tmp-{place}"));
        fs::create_dir_all(&tmp)?;
        let image = case_dir.join(format!("{place}-{n}-threads.sqfs"));
        let mut o = opts.clone();
        o.processors = Some(n);
        let mut cmd = ours.command();
        cmd.env("TMPDIR", &tmp);
        if absolute {
            cmd.current_dir(case_dir);
            build(cmd, &[source], &image, &o)?;
        } else {
            cmd.current_dir(work);
            let rel_image = image
                .strip_prefix(work)
                .context("case dir under the work directory")?;
            build(cmd, &[relative_source], rel_image, &o)?;
        }
        let hash = blake3::hash(
            &fs::read(&image).with_context(|| format!("reading {}", image.display()))?,
        );
        let how = if absolute {
            "absolute paths"
        } else {
            "relative paths, other cwd and TMPDIR"
        };
        images.push((format!("{n} thread(s), {how}"), image, hash));
    }
    let first = images[0].2;
    let size = fs::metadata(&images[0].1)?.len();
    let all_same = images.iter().all(|(_, _, h)| *h == first);
    ensure!(
        all_same,
        "images differ:\n  {}\n(kept in {})",
        images
            .iter()
            .map(|(what, _, h)| format!("{} {what}", &h.to_hex()[..16]))
            .collect::<Vec<_>>()
            .join("\n  "),
        case_dir.display()
    );
    println!(
        "  {} images, all blake3 {} ({size} bytes)",
        images.len(),
        &first.to_hex()[..16]
    );
    Ok(())
}

/// One `mkportable squash` build of [`cold_and_warm`], with its thread count.
#[derive(Debug, Clone, Copy)]
enum CacheRun {
    /// `--no-cache`.
    NoCache(usize),
    /// Into the case's cache, emptied first.
    Empty(usize),
    /// With the case's cache, filled by the builds before: nothing to compress.
    Warm(usize),
}

/// Builds `source` with `mkportable squash` and `opts` once per run, each
/// with the cache it says, and requires every image to have the blake3 of the
/// first, which must be a `--no-cache` run.
fn cold_and_warm(
    ours: &Ours,
    source: &Path,
    case_dir: &Path,
    opts: &Opts,
    runs: &[CacheRun],
) -> Result<()> {
    ensure!(
        matches!(runs.first(), Some(CacheRun::NoCache(_))),
        "the first run must be the --no-cache reference"
    );
    let cache = case_dir.join("cache");
    clean_dir(&cache)?;
    let mut want = None;
    let mut shown = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let image = case_dir.join(format!("squash-{i}.sqfs"));
        let mut cmd = Command::new(ours.program());
        cmd.args(["squash", "--json"]).args(squash_args(opts));
        let (threads, label) = match *run {
            CacheRun::NoCache(n) => {
                cmd.arg("--no-cache");
                (n, "--no-cache")
            }
            CacheRun::Empty(n) => {
                clean_dir(&cache)?;
                cmd.arg("--cache").arg(&cache);
                (n, "empty cache")
            }
            CacheRun::Warm(n) => {
                cmd.arg("--cache").arg(&cache);
                (n, "warm cache")
            }
        };
        cmd.args(["--threads", &threads.to_string()])
            .arg(source)
            .arg(&image)
            .env("LC_ALL", "C");
        match opts.source_date_epoch {
            Some(t) => cmd.env("SOURCE_DATE_EPOCH", t.to_string()),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        let out = run_ok(&mut cmd)?;
        let what = format!("mkportable squash, {label}, {threads} thread(s)");
        let hash = blake3::hash(
            &fs::read(&image).with_context(|| format!("reading {}", image.display()))?,
        );
        let want = *want.get_or_insert(hash);
        ensure!(
            hash == want,
            "{what}: blake3 {} differs from the --no-cache image's {} (kept in {})",
            &hash.to_hex()[..16],
            &want.to_hex()[..16],
            case_dir.display()
        );
        if let CacheRun::Warm(_) = run {
            let misses = ["block_misses", "fragment_misses", "meta_misses"]
                .map(|k| number(&out.stdout, k).ok());
            ensure!(
                misses.iter().all(|m| *m == Some(0)),
                "{what}: the warm build compressed blocks: {}",
                out.stdout.trim_end()
            );
        }
        if i > 0 {
            fs::remove_file(&image)?;
        }
        shown.push(format!("{label} at {threads}"));
    }
    let want = want.expect("at least the --no-cache run");
    println!(
        "  mkportable squash, {} thread(s): all blake3 {}",
        shown.join(", "),
        &want.to_hex()[..16]
    );
    fs::remove_dir_all(&cache).context("removing the cache")
}

/// `opts` in `mkportable squash`'s syntax, with mksquashfs's defaults made
/// explicit (gzip, NFS export table), so both syntaxes ask for the same options.
fn squash_args(opts: &Opts) -> Vec<String> {
    let mut a: Vec<String> = [
        "--overwrite",
        "--comp",
        opts.comp,
        "--block-size",
        opts.block,
    ]
    .map(String::from)
    .to_vec();
    for pair in opts.comp_args.chunks(2) {
        let flag = match pair[0] {
            "-Xdict-size" => "--dict-size",
            "-Xbcj" => "--bcj",
            "-Xcompression-level" => "--level",
            other => unreachable!("no squash spelling for {other}: add it here"),
        };
        a.extend([flag.to_string(), pair[1].to_string()]);
    }
    let flags = [
        (opts.all_root, "--all-root"),
        (!opts.fragments, "--no-fragments"),
        (!opts.dedup, "--no-dedup"),
        (!opts.xattrs, "--no-xattrs"),
        (!opts.no_exports, "--exports"),
        (opts.keep_as_directory, "--keep-as-directory"),
    ];
    a.extend(
        flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, f)| f.to_string()),
    );
    let valued = [
        ("--root-mode", opts.root_mode.map(|m| format!("{m:o}"))),
        ("--force-uid", opts.force_uid.map(|v| v.to_string())),
        ("--force-gid", opts.force_gid.map(|v| v.to_string())),
        ("--all-time", opts.all_time.map(|v| v.to_string())),
        ("--mkfs-time", opts.mkfs_time.map(|v| v.to_string())),
    ];
    for (flag, value) in valued {
        if let Some(v) = value {
            a.extend([flag.to_string(), v]);
        }
    }
    a
}
