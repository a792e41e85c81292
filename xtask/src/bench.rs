//! `cargo xtask bench`: whole-process benchmarks of `mkportable` against
//! mksquashfs 4.5.1 and gensquashfs, with the compression lower bound, and
//! of rebuilds with mkportable's block cache.
//!
//! ```text
//! cargo xtask bench [--quick] [--dry-run] [--write] [--runs N] [--filter PAT]... [--no-bound]
//! ```
//!
//! - `--quick`: one small corpus (std's HTML docs from the Rust toolchain,
//!   ~120 MB), every setting at 1 and 2 threads and one cache cell, 3 runs:
//!   a few minutes. Without it, the full run: the toolchain's `lib/`, its
//!   `share/doc`, the whole toolchain and the large Nix fixture (see
//!   [`full_plan`]; about 3 hours on 2 cores).
//! - `--dry-run`: print the plan and every command, run nothing.
//! - `--write`: afterwards, regenerate the results section of `BENCHMARKS.md`
//!   (between its `bench:results` markers; the text above is hand-written).
//! - `--runs N`: N timed runs per tool and cell instead of the plan's count.
//! - `--filter PAT`: only the cells whose id contains PAT. Ids are
//!   `corpus/setting/Nt` (`rust-doc/xz/1t`, `nix-1024/xz/2t`) and, for the
//!   cache cells, `corpus/cache/setting/Nt` (`rust-doc/cache/xz/2t`), so
//!   `/cache/` selects every cache cell. The run is then a "partial" one, and
//!   its headings say so.
//! - `--no-bound`: skip the lower bound.
//!
//! Each comparison cell (corpus, setting, threads) runs its tools
//! interleaved (A B C, B C A, C A B, …: each round starts one tool later), after one untimed warm-up run per tool and
//! corpus. Before every timed run the corpus is read once more, untimed
//! ([`measure::warm`]): machines of this kind page out file cache left
//! unread for a few seconds, so the cache a run found would otherwise depend
//! on how long the turn before it took; what a run still reads from storage
//! is reported beside it. The lower bound (see [`bound`]) takes a
//! turn in every round, so a tool's efficiency is judged against the bound
//! measured beside it, not an hour earlier. Each process is timed whole: wall
//! clock, user+system CPU, peak RSS and reads from storage (GNU time), and the image size. A
//! cache cell runs cold, warm and changed rebuilds with the cache against a
//! cold mksquashfs the same way (see [`cache`]). Tables go to stdout,
//! everything to `target/bench/results.json`. Benchmarks are not tests: the
//! exit status says only whether every run completed, never whether a target
//! was met.

mod bound;
mod cache;
mod corpus;
mod measure;
mod report;

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::harness::{cargo, flush, project_root, version_line, which};
use cache::Row;
use corpus::{Corpus, Kind, Toolchain};
use measure::{Invocation, Stat};
use report::{CacheCellResult, CellResult, CorpusResult, Meta, Run, ToolResult};

/// A compressor family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// xz (LZMA2), CRC32.
    Xz,
    /// zstd.
    Zstd,
    /// zlib streams.
    Gzip,
}

/// Compression settings, as each tool spells them.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Short name, the middle part of cell ids.
    pub name: &'static str,
    /// The compressor.
    pub codec: Codec,
    /// Its level (xz preset, zstd level, zlib level).
    pub level: u32,
    /// Block size, bytes.
    pub block_size: u32,
    /// mksquashfs's options (also those of `mkportable mksquashfs`).
    pub mksquashfs: &'static [&'static str],
    /// gensquashfs's options for the same.
    pub gensquashfs: &'static [&'static str],
    /// `mkportable squash`'s options for the same.
    pub squash: &'static [&'static str],
}

/// The seed's settings (nixpkgs `portableService`'s default).
pub const XZ: Setting = Setting {
    name: "xz",
    codec: Codec::Xz,
    level: 6,
    block_size: 1 << 20,
    mksquashfs: &["-comp", "xz", "-Xdict-size", "100%", "-b", "1M"],
    gensquashfs: &[
        "-c",
        "xz",
        "-X",
        "dictsize=1048576,level=6",
        "-b",
        "1048576",
    ],
    squash: &["--comp", "xz", "--dict-size", "100%", "--block-size", "1M"],
};

/// zstd at mksquashfs's default level with 1 MiB blocks.
pub const ZSTD: Setting = Setting {
    name: "zstd",
    codec: Codec::Zstd,
    level: 15,
    block_size: 1 << 20,
    mksquashfs: &["-comp", "zstd", "-Xcompression-level", "15", "-b", "1M"],
    gensquashfs: &["-c", "zstd", "-X", "level=15", "-b", "1048576"],
    squash: &["--comp", "zstd", "--level", "15", "--block-size", "1M"],
};

/// gzip (zlib level 9, mksquashfs's default) with 128 KiB blocks.
pub const GZIP: Setting = Setting {
    name: "gzip",
    codec: Codec::Gzip,
    level: 9,
    block_size: 128 << 10,
    mksquashfs: &["-comp", "gzip", "-b", "128K"],
    gensquashfs: &["-c", "gzip", "-X", "level=9", "-b", "131072"],
    squash: &["--comp", "gzip", "--level", "9", "--block-size", "128K"],
};

/// Options every mksquashfs-compatible run gets.
const COMMON: [&str; 4] = ["-noappend", "-quiet", "-no-progress", "-all-root"];

const USAGE: &str = "usage: cargo xtask bench [--quick] [--dry-run] [--write] [--runs N] [--filter PAT]... [--no-bound]";

#[derive(Debug, Default)]
struct Args {
    quick: bool,
    dry_run: bool,
    write: bool,
    runs: Option<usize>,
    filters: Vec<String>,
    no_bound: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--quick" => parsed.quick = true,
            "--dry-run" => parsed.dry_run = true,
            "--write" => parsed.write = true,
            "--no-bound" => parsed.no_bound = true,
            "--runs" => {
                let v = value("--runs")?;
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => parsed.runs = Some(n),
                    _ => bail!("--runs wants a positive number, not `{v}`\n{USAGE}"),
                }
            }
            "--filter" => parsed.filters.push(value("--filter")?),
            "-h" | "--help" | "help" => return Ok(None),
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    Ok(Some(parsed))
}

/// `cargo xtask bench ARGS…` (the arguments after `bench`).
pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse_args(args) {
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
    if cfg!(debug_assertions) && !args.dry_run {
        return rerun_in_release();
    }
    match bench(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What a cell measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// Cold builds: mkportable against mksquashfs and gensquashfs, or
    /// `mkportable build` against the seed's pipeline.
    Compare,
    /// Builds with the block cache, cold, warm and after a change, against
    /// mksquashfs cold (see [`cache`]).
    Cache,
}

/// One cell of the plan: a corpus, what is measured, a setting, a thread
/// count, a run count.
#[derive(Debug, Clone)]
pub struct Cell {
    corpus: usize,
    kind: CellKind,
    setting: Setting,
    threads: usize,
    runs: usize,
}

impl Cell {
    fn compare(corpus: usize, setting: Setting, threads: usize, runs: usize) -> Cell {
        Cell {
            corpus,
            kind: CellKind::Compare,
            setting,
            threads,
            runs,
        }
    }

    /// A cache cell with the seed's settings at every core, 3 runs.
    fn cache(corpus: usize, cores: usize) -> Cell {
        Cell {
            corpus,
            kind: CellKind::Cache,
            setting: XZ,
            threads: cores,
            runs: 3,
        }
    }
}

/// The corpora and the cells to run.
#[derive(Debug)]
struct Plan {
    mode: &'static str,
    corpora: Vec<Corpus>,
    cells: Vec<Cell>,
}

impl Plan {
    fn id(&self, cell: &Cell) -> String {
        let kind = match cell.kind {
            CellKind::Compare => "",
            CellKind::Cache => "cache/",
        };
        format!(
            "{}/{kind}{}/{}t",
            self.corpora[cell.corpus].name, cell.setting.name, cell.threads
        )
    }
}

/// Thread counts to measure: 1, 2 and every core, each once.
fn thread_counts(cores: usize) -> Vec<usize> {
    let mut t = vec![1, 2, cores];
    t.retain(|&n| n <= cores.max(2));
    t.sort_unstable();
    t.dedup();
    t.reverse();
    t
}

/// The quick plan: std's HTML docs, every setting at every thread count,
/// and a cache cell, 3 runs.
fn quick_plan(tc: &Toolchain, cores: usize) -> Plan {
    let mut cells = Vec::new();
    for setting in [XZ, ZSTD, GZIP] {
        for threads in thread_counts(cores) {
            cells.push(Cell::compare(0, setting, threads, 3));
        }
    }
    cells.push(Cell::cache(0, cores));
    Plan {
        mode: "quick",
        corpora: vec![corpus::quick(tc)],
        cells,
    }
}

/// The full plan. On 2 cores, xz compresses binaries at ~4 MB/s per core,
/// so five runs of everything at 1 and 2 threads would take some nine hours;
/// the plan spends its time where the targets are:
///
/// | corpus | size | cells | runs |
/// |---|---|---|---|
/// | rust-doc (`share/doc`) | ~800 MB | xz, zstd, gzip at 1 and 2 threads | 3 |
/// | rust-lib (`lib/`) | ~520 MB | xz, zstd, gzip at 2 threads | 3 |
/// | rust-toolchain (all) | ~1.3 GB | xz at 2 threads | 3 |
/// | nix-1024 | ~1 GiB | `mkportable build` vs the seed's pipeline, all cores | 3 |
/// | rust-doc-x2 (`share/doc` twice) | ~1.6 GB | xz at 2 threads (the memory bound) | 3 |
///
/// and a cache cell (xz, all cores, 3 runs) on rust-doc, rust-lib and
/// nix-1024, the corpora of issue 5's targets: about 45 more minutes.
fn full_plan(tc: &Toolchain, root: &Path, work: &Path, cores: usize) -> Plan {
    let corpora = vec![
        corpus::doc(tc),
        corpus::lib(tc),
        corpus::toolchain(tc),
        corpus::nix(root, work),
        corpus::doc_twice(tc, work),
    ];
    let mut cells = Vec::new();
    for setting in [XZ, ZSTD, GZIP] {
        for threads in thread_counts(cores) {
            cells.push(Cell::compare(0, setting, threads, 3));
        }
    }
    cells.push(Cell::cache(0, cores));
    for setting in [XZ, ZSTD, GZIP] {
        cells.push(Cell::compare(1, setting, cores, 3));
    }
    cells.push(Cell::cache(1, cores));
    cells.push(Cell::compare(2, XZ, cores, 3));
    cells.push(Cell::compare(3, XZ, cores, 3));
    cells.push(Cell::cache(3, cores));
    cells.push(Cell::compare(4, XZ, cores, 3));
    Plan {
        mode: "full",
        corpora,
        cells,
    }
}

/// Where the images go, and the name each tool's is known by.
#[derive(Debug)]
pub struct Paths {
    work: PathBuf,
    out: PathBuf,
    bin: PathBuf,
}

/// The tools a comparison cell compares, ours first, the reference second.
fn contenders(corpus: &Corpus, cell: &Cell, paths: &Paths) -> Result<Vec<(String, Invocation)>> {
    let threads = cell.threads.to_string();
    match &corpus.kind {
        Kind::Tree(src) => {
            let mut squash_args: Vec<OsString> = Vec::new();
            squash_args.extend(COMMON.iter().map(OsString::from));
            squash_args.extend(cell.setting.mksquashfs.iter().map(OsString::from));
            squash_args.push("-processors".into());
            squash_args.push(threads.clone().into());
            let image = |name: &str| paths.out.join(format!("{name}.sqfs"));
            let ours_out = image("mkportable");
            let mut ours: Vec<OsString> =
                vec!["mksquashfs".into(), src.into(), ours_out.clone().into()];
            ours.extend(squash_args.iter().cloned());
            let ref_out = image("mksquashfs");
            let mut reference: Vec<OsString> = vec![src.into(), ref_out.clone().into()];
            reference.extend(squash_args.iter().cloned());
            let gen_out = image("gensquashfs");
            let mut gen: Vec<OsString> = vec!["--pack-dir".into(), src.into()];
            // -e: an NFS export table as mksquashfs writes by default;
            // -T: no tail packing, as mksquashfs's default.
            for a in ["--all-root", "-e", "-T", "-q", "-f", "-j", &threads] {
                gen.push(a.into());
            }
            gen.extend(cell.setting.gensquashfs.iter().map(OsString::from));
            gen.push(gen_out.clone().into());
            Ok(vec![
                (
                    "mkportable".into(),
                    Invocation::new(paths.bin.clone(), ours, ours_out),
                ),
                (
                    "mksquashfs".into(),
                    Invocation::new(
                        which("mksquashfs").unwrap_or_else(|| "mksquashfs".into()),
                        reference,
                        ref_out,
                    ),
                ),
                (
                    "gensquashfs".into(),
                    Invocation::new(
                        which("gensquashfs").unwrap_or_else(|| "gensquashfs".into()),
                        gen,
                        gen_out,
                    ),
                ),
            ])
        }
        Kind::Nix(nix) => {
            let build_dir = paths.out.join("build");
            let build_out = build_dir.join("bigfx_1.raw");
            let seed_out = paths.out.join("seed.raw");
            let seed_work = paths.work.join("seed-work");
            let seed_args: Vec<OsString> = vec![
                nix.seed_script().into(),
                seed_work.clone().into(),
                nix.closure_info().join("store-paths").into(),
                nix.scaffold().into(),
                seed_out.clone().into(),
            ];
            let mut seed = Invocation::new(
                which("bash").unwrap_or_else(|| "bash".into()),
                seed_args,
                seed_out,
            );
            seed.clear.push(seed_work);
            Ok(vec![
                (
                    "mkportable build".into(),
                    Invocation::new(
                        paths.bin.clone(),
                        vec![
                            "build".into(),
                            nix.spec().into(),
                            "-o".into(),
                            build_dir.into(),
                            "--overwrite".into(),
                            "--quiet".into(),
                            // A cold build, as the seed's pipeline is: the
                            // cache cells measure the cache.
                            "--no-cache".into(),
                        ],
                        build_out,
                    ),
                ),
                ("seed pipeline".into(), seed),
            ])
        }
    }
}

/// The untimed warm-up run of each tool: the cheapest setting (gzip at every
/// core) for a tree, whatever the cell is otherwise; it loads the corpus and
/// the programs into the page cache.
fn warm_up_cell(corpus: &Corpus, first: &Cell, cores: usize) -> Cell {
    match corpus.kind {
        Kind::Tree(_) => Cell {
            setting: GZIP,
            threads: cores,
            runs: 1,
            ..first.clone()
        },
        Kind::Nix(_) => first.clone(),
    }
}

/// What the bound compresses for a corpus.
fn bound_roots(corpus: &Corpus) -> Result<Vec<PathBuf>> {
    match &corpus.kind {
        Kind::Tree(p) => Ok(vec![p.clone()]),
        Kind::Nix(nix) => nix.store_paths(),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn bench(args: &Args) -> Result<bool> {
    let root = project_root();
    let work = root.join("target").join("bench");
    let target = env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let paths = Paths {
        out: work.join("out"),
        bin: target.join("release").join("mkportable"),
        work: work.clone(),
    };
    let cores = cores();
    let tc = Toolchain::find()?;
    let mut plan = if args.quick {
        quick_plan(&tc, cores)
    } else {
        full_plan(&tc, &root, &work, cores)
    };
    let ids: Vec<String> = plan.cells.iter().map(|c| plan.id(c)).collect();
    let keep: Vec<bool> = ids
        .iter()
        .map(|id| args.filters.is_empty() || args.filters.iter().any(|f| id.contains(f.as_str())))
        .collect();
    let mut k = keep.iter();
    plan.cells.retain(|_| *k.next().expect("one flag per cell"));
    if plan.cells.len() < ids.len() {
        // Say so in every heading: a filtered run is not the plan's.
        plan.mode = if args.quick {
            "partial quick"
        } else {
            "partial"
        };
    }
    if plan.cells.is_empty() {
        bail!(
            "no cell matches the filter {:?}; cells: {}",
            args.filters,
            ids.join(", ")
        );
    }
    if let Some(n) = args.runs {
        for cell in &mut plan.cells {
            cell.runs = n;
        }
    }
    if args.dry_run {
        return dry_run(&plan, &paths, &tc, args).map(|()| true);
    }

    preflight(&plan)?;
    build_ours()?;
    fs::create_dir_all(&paths.out)?;
    let started = Instant::now();
    let mut run = Run {
        meta: Meta::collect(plan.mode, command_line(), &paths.bin, &tc, cores),
        corpora: Vec::new(),
        cells: Vec::new(),
    };
    let json_path = work.join("results.json");
    let mut all_ok = true;
    for (ci, corpus) in plan.corpora.iter().enumerate() {
        let cells: Vec<&Cell> = plan.cells.iter().filter(|c| c.corpus == ci).collect();
        if cells.is_empty() {
            continue;
        }
        if let Kind::Nix(nix) = &corpus.kind {
            nix.ensure()?;
            nix.set_up()?;
        }
        corpus.ensure_copies()?;
        let roots = bound_roots(corpus)?;
        let census = corpus::census(&roots)?;
        println!();
        println!("== {}: {}", corpus.name, corpus.about);
        println!(
            "   {} ({}): {} files, {:.1} MiB, {} folders",
            roots_label(corpus),
            corpus.revision,
            census.files,
            census.bytes as f64 / 1048576.0,
            census.dirs
        );
        flush();
        run.corpora.push(CorpusResult {
            name: corpus.name.to_string(),
            about: corpus.about.clone(),
            path: roots_label(corpus),
            revision: corpus.revision.clone(),
            census,
        });
        let compare: Vec<&Cell> = cells
            .iter()
            .copied()
            .filter(|c| c.kind == CellKind::Compare)
            .collect();

        // One untimed warm-up run per tool: the cheapest comparison cell of
        // the corpus. The cache cells prime their own rows.
        let mut broken: Vec<String> = Vec::new();
        if let Some(first) = compare.first() {
            let warm = &warm_up_cell(corpus, first, cores);
            for (name, inv) in contenders(corpus, warm, &paths)? {
                print!("   warm-up {name} ({}) … ", plan.id(warm));
                flush();
                match measure::run(&inv, &work) {
                    Ok(s) => println!("{:.2}s", s.wall),
                    Err(e) => {
                        println!("FAILED\n{e:#}");
                        broken.push(name);
                        all_ok = false;
                    }
                }
            }
        }

        for cell in cells {
            let id = plan.id(cell);
            println!();
            let cell_result = match cell.kind {
                CellKind::Compare => {
                    println!("-- {id}: {} runs each, interleaved", cell.runs);
                    flush();
                    let tools: Vec<(String, Invocation, Option<Row>)> =
                        contenders(corpus, cell, &paths)?
                            .into_iter()
                            .map(|(name, inv)| (name, inv, None))
                            .collect();
                    let load_before = loadavg();
                    // The bound takes its turn in every round, so that the
                    // machine's drift moves it with the tools it judges.
                    // The cache cells need none: nothing compares them with it.
                    // Its metadata blocks are the reference's (the second
                    // tool's) image's, there from the first round on: the
                    // bound's first turn comes after every tool's.
                    let reference = tools.get(1).map(|(_, inv, _)| inv.output.clone());
                    let measure_bound =
                        || bound::measure(&roots, &cell.setting, reference.as_deref());
                    let bound_turn: Option<&dyn Fn() -> Result<bound::Bound>> =
                        (!args.no_bound).then_some(&measure_bound);
                    let (results, bound, ok) =
                        rounds(&tools, bound_turn, cell.runs, &broken, &roots, &work);
                    all_ok &= ok;
                    CellResult {
                        id,
                        corpus: corpus.name.to_string(),
                        kind: cell.kind,
                        setting: cell.setting,
                        threads: cell.threads,
                        runs: cell.runs,
                        tools: results,
                        load_before,
                        load_after: loadavg(),
                        cache: None,
                        bound,
                    }
                }
                CellKind::Cache => match cache_cell(corpus, cell, id.clone(), &paths) {
                    Ok((result, ok)) => {
                        all_ok &= ok;
                        result
                    }
                    Err(e) => {
                        println!("-- {id} FAILED: {e:#}");
                        all_ok = false;
                        continue;
                    }
                },
            };
            println!("{}", report::text_table(&cell_result));
            flush();
            run.cells.push(cell_result);
            save_json(&mut run, started, &json_path)?;
        }
        if let Kind::Nix(_) = &corpus.kind {
            let _ = fs::remove_dir_all(paths.work.join("seed-work"));
        }
    }
    save_json(&mut run, started, &json_path)?;
    println!();
    println!("{}", report::targets_text(&run));
    println!("results: {}", json_path.display());
    if args.write {
        let md = root.join("BENCHMARKS.md");
        report::write_markdown(&md, &run)?;
        println!("rewrote the results section of {}", md.display());
    }
    Ok(all_ok)
}

/// Writes what `run` has measured so far to `path` (`results.json`), with
/// the time taken since `started`.
fn save_json(run: &mut Run, started: Instant, path: &Path) -> Result<()> {
    run.meta.finish(started.elapsed());
    fs::write(path, report::json(run)).with_context(|| format!("writing {}", path.display()))
}

/// Runs `tools` interleaved, `runs` rounds, skipping those in `broken`;
/// false if a run failed. Each round starts one tool later (A B C, B C A,
/// C A B, …), so no tool always runs right after the same other one (a tool
/// that leaves the page cache or the CPU's clocks in some state would
/// otherwise always hand it to the same successor). A tool with a cache row reports its cache counters
/// on stdout (`--json`), kept per run. With `bound`, the lower bound takes
/// a turn of its own in every round, after the tools in the first round, and
/// comes back measured every round, or `None` if a measurement failed.
/// Before each tool's turn the files under `corpus` are read again, untimed
/// ([`measure::warm`]), so every run starts from a warm page cache.
fn rounds(
    tools: &[(String, Invocation, Option<Row>)],
    bound: Option<&dyn Fn() -> Result<bound::Bound>>,
    runs: usize,
    broken: &[String],
    corpus: &[PathBuf],
    work: &Path,
) -> (Vec<ToolResult>, Option<bound::Bound>, bool) {
    let mut all_ok = true;
    let mut results: Vec<ToolResult> = tools
        .iter()
        .map(|(name, inv, row)| ToolResult {
            name: name.clone(),
            command: inv.show(),
            row: *row,
            samples: Vec::new(),
            cache: Vec::new(),
            error: broken
                .contains(name)
                .then(|| "the warm-up run failed".to_string()),
        })
        .collect();
    let mut measured: Option<bound::Bound> = None;
    let mut bound = bound;
    let turns = tools.len() + usize::from(bound.is_some());
    for round in 0..runs {
        let mut line = format!("   round {}/{}:", round + 1, runs);
        let mut fetched = 0u64;
        for k in 0..turns {
            let i = (round + k) % turns;
            if i == tools.len() {
                let Some(measure) = bound else { continue };
                match measure() {
                    Ok(b) => {
                        line.push_str(&format!("  bound {:.2}s", b.one_core().as_secs_f64()));
                        match &mut measured {
                            Some(first) => first.again(&b),
                            None => measured = Some(b),
                        }
                    }
                    Err(e) => {
                        println!("   the bound FAILED: {e:#}");
                        measured = None;
                        bound = None;
                        all_ok = false;
                    }
                }
                continue;
            }
            let (name, inv, row) = &tools[i];
            let res = &mut results[i];
            if res.error.is_some() {
                continue;
            }
            let short: &str = match row {
                Some(row) => row.slug(),
                None => name,
            };
            match measure::warm(corpus) {
                Ok(bytes) => fetched += bytes,
                Err(e) => {
                    println!("   warming the page cache FAILED: {e:#}");
                    all_ok = false;
                }
            }
            match measure::run_capturing(inv, work) {
                Ok((s, stdout)) => {
                    line.push_str(&format!("  {short} {:.2}s", s.wall));
                    res.samples.push(s);
                    if let Some(c) = cache::counters(&stdout) {
                        if let Some(w) = &c.warning {
                            println!("   {name}: the cache warned: {w}");
                        }
                        res.cache.push(c);
                    }
                }
                Err(e) => {
                    println!("   {name} FAILED: {e:#}");
                    res.error = Some(format!("{e:#}"));
                    all_ok = false;
                }
            }
        }
        println!(
            "{line}  (warming fetched {:.1} MiB from storage)",
            fetched as f64 / 1048576.0
        );
        flush();
    }
    (results, measured, all_ok)
}

/// Runs a cache cell: set-up and priming (untimed), the rounds, then the
/// cache folders' sizes and the check that warm images equal cold ones.
fn cache_cell(
    corpus: &Corpus,
    cell: &Cell,
    id: String,
    paths: &Paths,
) -> Result<(CellResult, bool)> {
    let layout = cache::Layout::new(corpus, paths);
    let changed = cache::changed_file(corpus, &layout, cell.setting.block_size)?;
    let rows = cache::contenders(corpus, cell, paths, &changed)?;
    let tools: Vec<(String, Invocation, Option<Row>)> = rows
        .iter()
        .map(|(row, inv)| (row.name().to_string(), inv.clone(), Some(*row)))
        .collect();
    println!(
        "-- {id}: {} runs each, interleaved; the file changed: {} ({} bytes)",
        cell.runs, changed.label, changed.bytes
    );
    flush();
    let mut ok = true;
    let prepared = cache::set_up(corpus, &layout, &changed)
        .and_then(|()| cache::prime(&rows, &paths.work, &layout));
    let broken: Vec<String> = match &prepared {
        Ok(()) => Vec::new(),
        Err(e) => {
            println!("   set-up FAILED: {e:#}");
            ok = false;
            tools.iter().map(|(name, _, _)| name.clone()).collect()
        }
    };
    let load_before = loadavg();
    let roots = bound_roots(corpus)?;
    let (mut results, _, rounds_ok) = rounds(&tools, None, cell.runs, &broken, &roots, &paths.work);
    ok &= rounds_ok;
    if let Err(e) = &prepared {
        for t in &mut results {
            t.error = Some(format!("set-up failed: {e:#}"));
        }
    }
    let load_after = loadavg();
    let mut result = CacheCellResult {
        changed_file: changed.label.clone(),
        changed_bytes: changed.bytes,
        sizes: Vec::new(),
        same_bytes: None,
    };
    if prepared.is_ok() {
        let images: Vec<(Row, u64)> = results
            .iter()
            .filter(|t| !t.samples.is_empty())
            .filter_map(|t| {
                Some((
                    t.row?,
                    Stat::of(t.samples.iter().map(|s| s.size as f64)).median as u64,
                ))
            })
            .collect();
        match cache::sizes(&paths.bin, &layout, &images) {
            Ok(sizes) => result.sizes = sizes,
            Err(e) => {
                println!("   cache sizes FAILED: {e:#}");
                ok = false;
            }
        }
        if results.iter().all(|t| t.error.is_none()) {
            match cache::same_bytes(&rows) {
                Ok(same) => result.same_bytes = Some(same),
                Err(e) => println!("   comparing the images FAILED: {e:#}"),
            }
        }
    }
    if let Err(e) = cache::clean_up(&layout) {
        println!("   clean-up FAILED: {e:#}");
    }
    Ok((
        CellResult {
            id,
            corpus: corpus.name.to_string(),
            kind: cell.kind,
            setting: cell.setting,
            threads: cell.threads,
            runs: cell.runs,
            tools: results,
            load_before,
            load_after,
            cache: Some(result),
            bound: None,
        },
        ok,
    ))
}

/// `cargo xtask bench …` as typed.
fn command_line() -> String {
    let mut words = vec!["cargo".to_string(), "xtask".to_string()];
    words.extend(env::args().skip(1));
    words.join(" ")
}

/// Where a corpus's files are, in one line.
fn roots_label(corpus: &Corpus) -> String {
    match &corpus.kind {
        Kind::Tree(p) => p.display().to_string(),
        Kind::Nix(nix) => {
            let list = nix.closure_info().join("store-paths");
            match nix.store_paths() {
                Ok(p) => format!("{} ({} store paths)", list.display(), p.len()),
                Err(_) => list.display().to_string(),
            }
        }
    }
}

/// The 1, 5 and 15-minute load averages.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Checks that the tools the plan runs are installed.
fn preflight(plan: &Plan) -> Result<()> {
    let mut missing = Vec::new();
    if !Path::new(measure::GNU_TIME).is_file() {
        missing.push(format!("{} (apt-get install time)", measure::GNU_TIME));
    }
    let any = |kind: CellKind, tree: bool| {
        plan.cells
            .iter()
            .any(|c| c.kind == kind && matches!(plan.corpora[c.corpus].kind, Kind::Tree(_)) == tree)
    };
    let mut tools = vec![("mksquashfs", "squashfs-tools"), ("sync", "coreutils")];
    if any(CellKind::Compare, true) {
        tools.push(("gensquashfs", "squashfs-tools-ng"));
    }
    if any(CellKind::Compare, false) {
        tools.push(("bash", "bash"));
    }
    if any(CellKind::Cache, true) || any(CellKind::Cache, false) {
        tools.push(("cp", "coreutils"));
    }
    for (tool, package) in tools {
        if which(tool).is_none() {
            missing.push(format!("{tool} (apt-get install {package})"));
        }
    }
    if !missing.is_empty() {
        bail!("missing: {}", missing.join(", "));
    }
    let v = version_line("mksquashfs", "-version");
    if !v.contains("4.5.1") {
        println!("note: the targets are against mksquashfs 4.5.1; this is `{v}`");
    }
    Ok(())
}

/// `$CARGO build --release -p mkportable`.
fn build_ours() -> Result<()> {
    println!(
        "building: {} build --release -p mkportable",
        cargo().to_string_lossy()
    );
    flush();
    let status = Command::new(cargo())
        .args(["build", "--release", "-p", "mkportable"])
        .current_dir(project_root())
        .stdin(Stdio::null())
        .status()
        .context("running cargo build --release")?;
    if !status.success() {
        bail!("`cargo build --release -p mkportable` failed ({status})");
    }
    Ok(())
}

/// Prints the plan and every command without running anything.
fn dry_run(plan: &Plan, paths: &Paths, tc: &Toolchain, args: &Args) -> Result<()> {
    println!(
        "cargo xtask bench ({}): dry run, nothing is run or built",
        plan.mode
    );
    println!(
        "machine: {} cores; corpus toolchain {} at {} ({})",
        cores(),
        tc.name,
        tc.dir.display(),
        tc.rustc
    );
    println!(
        "ours: {} (from `{} build --release -p mkportable`)",
        paths.bin.display(),
        cargo().to_string_lossy()
    );
    println!(
        "each timed run: remove its previous output, `sync` (untimed), then\n  \
         {} -o {} -f '%U %S %M %I' COMMAND   (wall from the xtask's clock)",
        measure::GNU_TIME,
        paths.work.join("time.txt").display()
    );
    if let Err(e) = preflight(plan) {
        println!("warning: {e:#}");
    }
    let (mut timed, mut warm) = (0, 0);
    for (ci, corpus) in plan.corpora.iter().enumerate() {
        let cells: Vec<&Cell> = plan.cells.iter().filter(|c| c.corpus == ci).collect();
        if cells.is_empty() {
            continue;
        }
        println!();
        println!("== {}: {}", corpus.name, corpus.about);
        println!("   {} ({})", roots_label(corpus), corpus.revision);
        if let Some((src, n)) = &corpus.copies {
            println!(
                "   set-up: {n} copies of {} (cp -a --reflink=auto, own inodes) unless made",
                src.display()
            );
        }
        if let Kind::Nix(nix) = &corpus.kind {
            println!(
                "   set-up: {} -o {} -s {} unless built; spec {}, scaffold {}, script {}",
                nix.script.display(),
                nix.fixture.display(),
                corpus::NIX_FIXTURE_MIB,
                nix.spec().display(),
                nix.scaffold().display(),
                nix.seed_script().display()
            );
        }
        let compare: Vec<&Cell> = cells
            .iter()
            .copied()
            .filter(|c| c.kind == CellKind::Compare)
            .collect();
        if !args.no_bound && !compare.is_empty() {
            let mut names: Vec<&str> = Vec::new();
            for c in &compare {
                if !names.contains(&c.setting.name) {
                    names.push(c.setting.name);
                }
            }
            println!(
                "   bound: {} — one core, in-process, every block compressed by mkportable-squash's own block compressor (no probe); measured in every round of a cell, between the tools, the median used",
                names.join(", ")
            );
        }
        if let Some(first) = compare.first() {
            let warm_cell = &warm_up_cell(corpus, first, cores());
            let n_tools = contenders(corpus, warm_cell, paths)?.len();
            println!(
                "   warm-up: one untimed run per tool of {}",
                plan.id(warm_cell)
            );
            warm += n_tools;
        }
        for cell in cells {
            println!(
                "   -- {}: {} runs each, interleaved, each round starting one tool later (A B C, B C A, …), the corpus read again (untimed) before each run",
                plan.id(cell),
                cell.runs
            );
            match cell.kind {
                CellKind::Compare => {
                    for (name, inv) in contenders(corpus, cell, paths)? {
                        println!("      {name}: {}", inv.show());
                        timed += cell.runs;
                    }
                }
                CellKind::Cache => {
                    let (t, w) = dry_run_cache(corpus, cell, paths)?;
                    timed += t;
                    warm += w;
                }
            }
        }
    }
    println!();
    println!("{timed} timed runs and {warm} warm-up and priming runs");
    Ok(())
}

/// Prints a cache cell's set-up, priming, rows and what follows them;
/// returns its timed and untimed runs.
fn dry_run_cache(corpus: &Corpus, cell: &Cell, paths: &Paths) -> Result<(usize, usize)> {
    let layout = cache::Layout::new(corpus, paths);
    let changed = match cache::changed_file(corpus, &layout, cell.setting.block_size) {
        Ok(c) => c,
        Err(e) => {
            println!("      (cannot pick the changed file yet: {e:#})");
            cache::Changed {
                label: "?".into(),
                bytes: 0,
                edit: measure::Edit {
                    file: layout.dir.join("?"),
                    original: Vec::new(),
                },
            }
        }
    };
    match &corpus.kind {
        Kind::Tree(src) => println!(
            "      set-up (untimed): cp -al {} {} (else cp -a --reflink=auto), read by the \"changed\" rows",
            src.display(),
            layout.dir.join("tree").display()
        ),
        Kind::Nix(_) => println!(
            "      set-up (untimed): each store path cp -al (else cp -a --reflink=auto) into {}, the reference's input; \
             specs {} (unchanged) and {} (its unit is the changed file)",
            layout.dir.join("stage/nix/store").display(),
            layout.dir.join("same/bigfx.toml").display(),
            layout.dir.join("edited/bigfx.toml").display()
        ),
    }
    println!(
        "      the file changed: {} ({} bytes), replaced by a new version (original + one numbered line) before each run of the \"changed\" rows",
        changed.label, changed.bytes
    );
    println!(
        "      priming (untimed): `{}` once (cold) into {}; each other warm row: cp -a of that folder, then one run",
        Row::Warm.name(),
        layout.cache(Row::Warm).display()
    );
    let rows = cache::contenders(corpus, cell, paths, &changed)?;
    for (row, inv) in &rows {
        println!("      {}: {}", row.name(), inv.show());
        for dir in &inv.empty {
            println!("        before each run: empty {}", dir.display());
        }
        if let Some(edit) = &inv.edit {
            println!("        before each run: replace {}", edit.file.display());
        }
    }
    println!(
        "      afterwards: {} cache stats --json --cache DIR and the allocated bytes of each cache folder; \
         blake3 of the images of the rows packing unchanged input, which must be equal",
        paths.bin.display()
    );
    let primed = rows.iter().filter(|(row, _)| row.primed()).count();
    Ok((rows.len() * cell.runs, primed))
}

/// Runs this same command from a release build of xtask: the bound must
/// compress with the C libraries (and miniz_oxide) built as they are in
/// `target/release/mkportable` (`-O3`), not as in a dev build (`-O2`).
fn rerun_in_release() -> ExitCode {
    println!("rerunning from a release build of xtask, so that the bound's compressors are built as mkportable's");
    flush();
    let status = Command::new(cargo())
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "bench",
        ])
        .args(env::args_os().skip(2))
        .current_dir(project_root())
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().map_or(2, |c| c.clamp(1, 255) as u8)),
        Err(e) => {
            eprintln!("error: cannot run cargo run --release: {e}");
            ExitCode::from(2)
        }
    }
}
