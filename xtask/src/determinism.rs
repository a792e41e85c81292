//! Determinism: the same tree and options give byte-identical images at 1, 2
//! and 8 threads, from two working directories (absolute paths, then relative
//! paths with another `TMPDIR`), so each thread count runs twice.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::harness::{clean_dir, Ours, Runner};
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
        // (threads, absolute paths?) per build. The big tree reads 4 GiB per
        // build: one thread with absolute paths and eight with relative ones.
        let runs: Vec<(usize, bool)> = if tree == "big" {
            vec![(1, true), (8, false)]
        } else {
            let threads: &[usize] = if runner.quick { &[1, 8] } else { &[1, 2, 8] };
            [true, false]
                .iter()
                .flat_map(|abs| threads.iter().map(move |n| (*n, *abs)))
                .collect()
        };
        let name = format!("determinism/{tree}/{}", opts.label());
        let case_dir = dir.join(format!("{tree}-{}", opts.label()));
        runner.case(&name, || {
            trees.ensure(tree)?;
            let source = trees.get(tree)?;
            same_bytes(ours, &source.path, work, &case_dir, &opts, &runs)?;
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
