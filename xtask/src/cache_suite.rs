//! The block cache (issue 5), through the real `mkportable squash`: every
//! image built with a cache, warm or cold, damaged or shared, must be
//! byte-identical to a cold `--no-cache` build of the same tree.
//!
//! Cases, each on a seeded tree (big files over the block size, many small
//! files, duplicates, a zero file, an empty file):
//! - `warm-equals-cold/*`: cold `--no-cache` = cold into an empty cache =
//!   warm at 1, 2 and 8 threads; warm builds compress nothing (xz 128K, zstd 1M);
//! - `one-small-file/*`: change, add or remove one small file: the warm
//!   rebuild equals a cold one and misses at most 4 of the ≥ 40 fragment blocks;
//! - `trust-stat`: unchanged files are not read; a touched one is;
//! - `corrupted-entries`: in a cache of at least 5 packs, flipped payload
//!   bytes, a truncated pack and a foreign-version footer are counted, never
//!   used, and rebuilt;
//! - `concurrent-builds`: two processes on one cache, empty then warm;
//! - `read-only-cache`, `full-cache-disk`: the build goes on without the
//!   cache, with exactly one warning line;
//! - `stats-and-clear`: `mkportable cache stats` and `clear`, and the cache's
//!   size, in bytes and in allocated blocks, against the image's (xz 1M,
//!   text-heavy);
//! - `cache-size-64K`: `--cache-size` caps what stays on disk.
//!
//! Needs root (tmpfs mounts).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::harness::{clean_dir, run_ok, show, Ours, Runner};
use crate::oracle::Mount;
use crate::tree_gen::Rng;

/// Every build's `SOURCE_DATE_EPOCH`: file times newer than it are clamped,
/// so rewriting or touching a file changes only its content in the image.
const SOURCE_DATE_EPOCH: &str = "1000000000";

/// The folder of the cache's pack files (`crates/squash/src/cache/store.rs`).
/// A pack is, little-endian: a header, entries one after another, an index of
/// (key, entry offset) rows and a footer.
const PACKS_DIR: &str = "packs-v1";

/// A pack's header: magic `MKPPACK\0`, version, zero.
const PACK_HEADER_LEN: u64 = 8 + 4 + 4;

/// An entry's header, before its payload: key, checksum, flags, payload length.
const ENTRY_HEADER_LEN: u64 = 32 + 32 + 4 + 4;

/// Where an entry's payload length is, from the entry's start.
const ENTRY_LEN_AT: u64 = 32 + 32 + 4;

/// An index row: key, offset of the entry from the start of the pack.
const INDEX_ROW_LEN: u64 = 32 + 8;

/// A pack's footer, its last bytes: index offset (u64), entry count (u32),
/// version (u32), checksum (32), magic `MKPINDEX`.
const PACK_FOOTER_LEN: u64 = 8 + 4 + 4 + 32 + 8;

/// Where the footer's version is, from the footer's start.
const FOOTER_VERSION_AT: u64 = 8 + 4;

/// Longer than the library waits before it records a changed file's hashes
/// (`RACY_SECONDS` in `crates/squash/src/cache/stat.rs`).
const RACY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// How many fragment blocks a one-file change may recompress.
const MAX_FRAGMENT_MISSES: u64 = 4;

/// Runs every cache case.
pub fn run_suite(runner: &mut Runner, ours: &Ours, work: &Path) {
    if !ours.needs_subcommand() {
        println!(
            "cache: skipped, {} is not mkportable (the cache is `mkportable squash`'s)",
            ours.program().display()
        );
        return;
    }
    let dir = work.join("cache");
    if let Err(e) = clean_dir(&dir) {
        runner.fail("cache", &format!("{e:#}"));
        return;
    }
    let ctx = Ctx {
        program: ours.program().to_path_buf(),
    };
    let cases: [(&str, CaseFn); 12] = [
        ("warm-equals-cold/xz-128K", |c, d| {
            warm_equals_cold(c, d, XZ_128K)
        }),
        ("warm-equals-cold/zstd-1M", |c, d| {
            warm_equals_cold(c, d, ZSTD_1M)
        }),
        ("one-small-file/changed", |c, d| {
            one_small_file(c, d, Edit::Change)
        }),
        ("one-small-file/added", |c, d| {
            one_small_file(c, d, Edit::Add)
        }),
        ("one-small-file/removed", |c, d| {
            one_small_file(c, d, Edit::Remove)
        }),
        ("trust-stat", trust_stat),
        ("corrupted-entries", corrupted_entries),
        ("concurrent-builds", concurrent_builds),
        ("read-only-cache", read_only_cache),
        ("full-cache-disk", full_cache_disk),
        ("stats-and-clear/xz-1M", stats_and_clear),
        ("cache-size-64K", cache_size),
    ];
    for (name, f) in cases {
        let case_dir = dir.join(name.replace('/', "-"));
        runner.case(&format!("cache/{name}"), || {
            clean_dir(&case_dir)?;
            f(&ctx, &case_dir)?;
            fs::remove_dir_all(&case_dir).context("cleaning up")
        });
    }
}

/// One case: builds its trees and caches under the given directory.
type CaseFn = fn(&Ctx, &Path) -> Result<()>;

struct Ctx {
    /// `mkportable`.
    program: PathBuf,
}

/// Compressor and block size of a case.
#[derive(Debug, Clone, Copy)]
struct Settings {
    comp: &'static str,
    block: &'static str,
    block_bytes: usize,
}

const XZ_4K: Settings = Settings {
    comp: "xz",
    block: "4K",
    block_bytes: 4 << 10,
};
const XZ_128K: Settings = Settings {
    comp: "xz",
    block: "128K",
    block_bytes: 128 << 10,
};
const XZ_1M: Settings = Settings {
    comp: "xz",
    block: "1M",
    block_bytes: 1 << 20,
};
const ZSTD_1M: Settings = Settings {
    comp: "zstd",
    block: "1M",
    block_bytes: 1 << 20,
};

/// A successful `mkportable squash --json` run.
#[derive(Debug)]
struct Built {
    /// The one-line JSON report.
    json: String,
    stderr: String,
    image: Vec<u8>,
}

impl Ctx {
    /// `mkportable ARGS` with the suite's environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
            .env("LC_ALL", "C");
        cmd
    }

    /// `mkportable squash --json` of `src` into `out`, with `cache` (or
    /// `--no-cache`), the settings and `extra` flags.
    fn squash_command(
        &self,
        src: &Path,
        out: &Path,
        cache: Option<&Path>,
        s: Settings,
        extra: &[&str],
    ) -> Command {
        let mut cmd = self.command();
        cmd.args(["squash", "--overwrite", "--json", "--all-root"])
            .args(["--comp", s.comp, "--block-size", s.block]);
        match cache {
            Some(dir) => cmd.arg("--cache").arg(dir),
            None => cmd.arg("--no-cache"),
        };
        cmd.args(extra).arg(src).arg(out);
        cmd
    }

    fn squash(
        &self,
        src: &Path,
        out: &Path,
        cache: Option<&Path>,
        s: Settings,
        extra: &[&str],
    ) -> Result<Built> {
        let out_run = run_ok(&mut self.squash_command(src, out, cache, s, extra))?;
        finished(out_run.stdout, out_run.stderr, out)
    }

    /// A cold `--no-cache` build: the reference every other image must equal.
    fn cold(&self, src: &Path, out: &Path, s: Settings) -> Result<Vec<u8>> {
        let built = self.squash(src, out, None, s, &[])?;
        ensure!(
            built.json.ends_with(r#","cache":null}"#),
            "--no-cache, yet the report has a cache part: {}",
            built.json
        );
        Ok(built.image)
    }

    /// `mkportable cache stats --cache DIR --json`: (entries, bytes, record bytes).
    fn stats(&self, cache: &Path) -> Result<(u64, u64, u64)> {
        let out = run_ok(
            self.command()
                .args(["cache", "stats", "--json", "--cache"])
                .arg(cache),
        )?;
        let line = out.stdout.trim_end();
        Ok((
            number(line, "entries")?,
            number(line, "bytes")?,
            number(line, "record_bytes")?,
        ))
    }
}

fn finished(stdout: String, stderr: String, out: &Path) -> Result<Built> {
    let json = stdout.trim_end().to_string();
    ensure!(
        json.starts_with(r#"{"type":"squash-report","#) && !json.contains('\n'),
        "not one JSON report on stdout:\n{stdout}"
    );
    let image = fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    Ok(Built {
        json,
        stderr,
        image,
    })
}

impl Built {
    /// A number of the report (`block_hits`, `entries_written`, …).
    fn n(&self, key: &str) -> Result<u64> {
        number(&self.json, key)
    }

    /// Blocks and fragment blocks the build compressed.
    fn misses(&self) -> Result<(u64, u64)> {
        Ok((self.n("block_misses")?, self.n("fragment_misses")?))
    }

    /// A warm build: everything found in the cache, nothing compressed.
    fn check_warm(&self, what: &str) -> Result<()> {
        ensure!(
            self.misses()? == (0, 0) && self.n("meta_misses")? == 0,
            "{what}: block_misses, fragment_misses and meta_misses should be 0: {}",
            self.json
        );
        ensure!(
            self.n("block_hits")? + self.n("fragment_hits")? > 0,
            "{what}: nothing was found in the cache: {}",
            self.json
        );
        Ok(())
    }

    /// The counts, for the log.
    fn counts(&self) -> String {
        let keys = [
            "block_hits",
            "block_misses",
            "fragment_hits",
            "fragment_misses",
            "meta_hits",
            "meta_misses",
            "files_not_read",
            "bad_entries",
            "entries_written",
            "entries_evicted",
        ];
        keys.iter()
            .map(|k| match self.n(k) {
                Ok(n) => format!("{k} {n}"),
                Err(_) => format!("{k} ?"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Exactly one line on stderr, and it is `mkportable: warning: …`.
    fn check_one_warning(&self, what: &str) -> Result<String> {
        let lines: Vec<&str> = self.stderr.lines().collect();
        ensure!(
            lines.len() == 1 && lines[0].starts_with("mkportable: warning: "),
            "{what}: stderr should be one `mkportable: warning: ` line, got:\n{}",
            self.stderr
        );
        ensure!(
            self.json.contains(r#","warning":""#),
            "{what}: the JSON report lacks the warning: {}",
            self.json
        );
        Ok(lines[0].to_string())
    }
}

/// The number after `"key":` in a one-line JSON object.
pub fn number(json: &str, key: &str) -> Result<u64> {
    let pat = format!("\"{key}\":");
    let Some(at) = json.find(&pat) else {
        bail!("no `{key}` in {json}");
    };
    let digits: String = json[at + pat.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .with_context(|| format!("`{key}` is not a number in {json}"))
}

/// Requires `got` to be the cold image `want`.
fn same(want: &[u8], got: &[u8], what: &str) -> Result<()> {
    if want == got {
        return Ok(());
    }
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    bail!(
        "{what}: the image differs from the cold --no-cache one ({} bytes vs {}; first difference at byte {at})",
        got.len(),
        want.len()
    )
}

/// What a generated tree holds.
#[derive(Debug, Clone, Copy)]
struct TreeSpec {
    seed: u64,
    /// Text files of one to three blocks and a tail.
    big_text: usize,
    /// Text files of 100 to 3000 bytes, spread over eight folders.
    small: usize,
    block_bytes: usize,
}

/// The small file a one-file change edits (in the middle of the tree's order).
fn middle_small_file(spec: &TreeSpec) -> String {
    small_name(spec.small / 2)
}

fn small_name(i: usize) -> String {
    format!("small/d{}/f{i:04}.txt", i % 8)
}

/// Writes the tree `spec` describes at `root` (which must not exist): big
/// text files, an incompressible one, a zero file, a duplicate of a big and
/// of a small file, many small files and an empty one.
fn make_tree(root: &Path, spec: &TreeSpec) -> Result<()> {
    ensure!(!root.exists(), "{} already exists", root.display());
    let mut rng = Rng::new(spec.seed);
    let block = spec.block_bytes;
    let write = |rel: &str, data: &[u8]| -> Result<()> {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("below the root"))?;
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
    };
    let mut first_big = Vec::new();
    for i in 0..spec.big_text {
        let len = block * (1 + i % 3) + 1 + rng.below(block as u64 - 1) as usize;
        let data = rng.text(len);
        write(&format!("big/text-{i:02}"), &data)?;
        if i == 0 {
            first_big = data;
        }
    }
    write("big/text-00-copy", &first_big)?;
    write("big/random", &rng.bytes(2 * block + 1234))?;
    write("big/zeros", &vec![0; 3 * block])?;
    let mut first_small = Vec::new();
    for i in 0..spec.small {
        let len = 100 + rng.below(2900) as usize;
        let data = rng.text(len);
        write(&small_name(i), &data)?;
        if i == 0 {
            first_small = data;
        }
    }
    for i in 0..3 {
        write(&format!("small/copies/dup-{i}"), &first_small)?;
    }
    write("empty", b"")
}

/// Regular files with content below `root`, and their bytes.
fn content_files(root: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && meta.len() > 0 {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

/// The pack files of the cache `cache` (`packs-v1/*.pack`), sorted.
fn pack_files(cache: &Path) -> Result<Vec<PathBuf>> {
    let packs = cache.join(PACKS_DIR);
    let mut files = Vec::new();
    for entry in fs::read_dir(&packs).with_context(|| format!("listing {}", packs.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_file() && path.extension().is_some_and(|e| e == "pack") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Files left in the cache's `packs-v1/tmp`, where builds write the packs
/// they have not published yet (none should be left once builds end).
fn temp_files(cache: &Path) -> Result<usize> {
    let tmp = cache.join(PACKS_DIR).join("tmp");
    if !tmp.is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    for entry in fs::read_dir(&tmp).with_context(|| format!("listing {}", tmp.display()))? {
        entry?;
        n += 1;
    }
    Ok(n)
}

/// One entry of a pack.
#[derive(Debug, Clone, Copy)]
struct PackEntry {
    /// Where the entry starts, from the start of the pack.
    offset: u64,
    /// Its payload's length.
    len: u64,
}

impl PackEntry {
    /// Where the payload starts, from the start of the pack.
    fn payload_at(&self) -> u64 {
        self.offset + ENTRY_HEADER_LEN
    }
}

/// The bytes of a pack, with the fields the suite damages.
struct Pack {
    path: PathBuf,
    data: Vec<u8>,
}

impl Pack {
    fn read(path: &Path) -> Result<Pack> {
        let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let len = data.len() as u64;
        ensure!(
            len >= PACK_HEADER_LEN + PACK_FOOTER_LEN
                && data.starts_with(b"MKPPACK\0")
                && data.ends_with(b"MKPINDEX"),
            "{} is not a pack ({len} bytes)",
            path.display()
        );
        Ok(Pack {
            path: path.to_path_buf(),
            data,
        })
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    /// Where the footer starts.
    fn footer_at(&self) -> u64 {
        self.len() - PACK_FOOTER_LEN
    }

    fn u32_at(&self, at: u64) -> u32 {
        let at = at as usize;
        u32::from_le_bytes(self.data[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64_at(&self, at: u64) -> u64 {
        let at = at as usize;
        u64::from_le_bytes(self.data[at..at + 8].try_into().expect("8 bytes"))
    }

    /// The footer's format version.
    fn version(&self) -> u32 {
        self.u32_at(self.footer_at() + FOOTER_VERSION_AT)
    }

    /// The entries the index lists, checked to lie between the header and
    /// the index.
    fn entries(&self) -> Result<Vec<PackEntry>> {
        let index_at = self.u64_at(self.footer_at());
        let count = u64::from(self.u32_at(self.footer_at() + 8));
        let name = self.path.display();
        ensure!(
            index_at.checked_add(count * INDEX_ROW_LEN) == Some(self.footer_at()),
            "{name}: an index of {count} rows at {index_at} does not end at the footer ({})",
            self.footer_at()
        );
        (0..count)
            .map(|i| {
                let offset = self.u64_at(index_at + i * INDEX_ROW_LEN + 32);
                ensure!(
                    offset >= PACK_HEADER_LEN && offset + ENTRY_HEADER_LEN <= index_at,
                    "{name}: entry {i} at {offset} is outside the entries"
                );
                let entry = PackEntry {
                    offset,
                    len: u64::from(self.u32_at(offset + ENTRY_LEN_AT)),
                };
                ensure!(
                    entry.payload_at() + entry.len <= index_at,
                    "{name}: entry {i} at {offset} ({} bytes) runs into the index",
                    entry.len
                );
                Ok(entry)
            })
            .collect()
    }

    fn write(&self) -> Result<()> {
        fs::write(&self.path, &self.data)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A file's name, for the log.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Bytes the files take on disk (`st_blocks`), rather than their lengths.
fn allocated_bytes(files: &[PathBuf]) -> Result<u64> {
    files
        .iter()
        .map(|path| {
            let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
            Ok(meta.blocks() * 512)
        })
        .sum()
}

/// The number of fragment blocks of `image`, from `unsquashfs -s`.
fn fragment_blocks(image: &Path) -> Result<u64> {
    let out = run_ok(Command::new("unsquashfs").arg("-s").arg(image))?;
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Number of fragments "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no fragment count in `unsquashfs -s`:\n{}", out.stdout))
}

fn warm_equals_cold(ctx: &Ctx, dir: &Path, s: Settings) -> Result<()> {
    let src = dir.join("src");
    make_tree(
        &src,
        &TreeSpec {
            seed: 1,
            big_text: 6,
            small: 120,
            block_bytes: s.block_bytes,
        },
    )?;
    let cache = dir.join("cache");
    let out = dir.join("img.sqfs");
    let cold = ctx.cold(&src, &out, s)?;

    let first = ctx.squash(&src, &out, Some(&cache), s, &[])?;
    same(&cold, &first.image, "cold, empty cache")?;
    ensure!(
        first.n("entries_written")? > 0,
        "a cold build wrote no cache entry: {}",
        first.json
    );
    println!("  cold, empty cache: {}", first.counts());

    let warm = ctx.squash(&src, &out, Some(&cache), s, &[])?;
    same(&cold, &warm.image, "warm")?;
    warm.check_warm("warm")?;
    for threads in ["1", "2", "8"] {
        let built = ctx.squash(&src, &out, Some(&cache), s, &["--threads", threads])?;
        let what = format!("warm, {threads} thread(s)");
        same(&cold, &built.image, &what)?;
        built.check_warm(&what)?;
    }
    println!("  warm: {}", warm.counts());
    println!(
        "  cold --no-cache = cold into an empty cache = warm at default, 1, 2, 8 threads: {} bytes",
        cold.len()
    );
    Ok(())
}

/// The one-file edits of `one-small-file/*`.
#[derive(Debug, Clone, Copy)]
enum Edit {
    /// New content, a few bytes longer.
    Change,
    /// A new small file in the middle of the tree.
    Add,
    /// One small file gone from the middle of the tree.
    Remove,
}

fn one_small_file(ctx: &Ctx, dir: &Path, edit: Edit) -> Result<()> {
    let s = XZ_4K;
    let spec = TreeSpec {
        seed: 2,
        big_text: 4,
        small: 200,
        block_bytes: s.block_bytes,
    };
    let src = dir.join("src");
    make_tree(&src, &spec)?;
    let cache = dir.join("cache");
    let out = dir.join("img.sqfs");
    ctx.squash(&src, &out, Some(&cache), s, &[])?;

    let middle = src.join(middle_small_file(&spec));
    let what = match edit {
        Edit::Change => {
            let mut data = fs::read(&middle)?;
            data[0] ^= 0x20;
            data.extend_from_slice(b" +3");
            fs::write(&middle, data)?;
            format!("changed {}", middle_small_file(&spec))
        }
        Edit::Add => {
            let added = middle.with_extension("new.txt");
            fs::write(&added, Rng::new(99).text(1500))?;
            format!("added {}", added.strip_prefix(&src)?.display())
        }
        Edit::Remove => {
            fs::remove_file(&middle)?;
            format!("removed {}", middle_small_file(&spec))
        }
    };
    let warm = ctx.squash(&src, &out, Some(&cache), s, &[])?;
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;
    same(&cold, &warm.image, &format!("warm after: {what}"))?;

    let (block_misses, fragment_misses) = warm.misses()?;
    let reported = warm.n("fragment_hits")? + fragment_misses;
    let in_image = fragment_blocks(&out)?;
    println!(
        "  {what}: {fragment_misses} of {reported} fragment blocks recompressed \
         ({in_image} in the image), {block_misses} data blocks"
    );
    ensure!(
        in_image >= 40,
        "the tree has only {in_image} fragment blocks; the case needs at least 40"
    );
    ensure!(
        fragment_misses <= MAX_FRAGMENT_MISSES,
        "{what}: {fragment_misses} of {reported} fragment blocks recompressed, \
         expected at most {MAX_FRAGMENT_MISSES}: {}",
        warm.json
    );
    ensure!(
        block_misses == 0,
        "{what}: {block_misses} data blocks recompressed, though only a small file changed: {}",
        warm.json
    );
    Ok(())
}

fn trust_stat(ctx: &Ctx, dir: &Path) -> Result<()> {
    let s = XZ_128K;
    let spec = TreeSpec {
        seed: 3,
        big_text: 4,
        small: 60,
        block_bytes: s.block_bytes,
    };
    let src = dir.join("src");
    make_tree(&src, &spec)?;
    let (files, bytes) = content_files(&src)?;
    // A file changed in the last 2 s before a build is read but not recorded
    // (its mtime could still change within the same tick, as git's "racy"
    // files): let the new tree age first.
    std::thread::sleep(RACY_WAIT);
    let cache = dir.join("cache");
    let out = dir.join("img.sqfs");
    let trust = ["--trust-stat"];
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;

    let first = ctx.squash(&src, &out, Some(&cache), s, &trust)?;
    same(&cold, &first.image, "first --trust-stat build")?;
    ensure!(
        first.n("files_not_read")? == 0,
        "a first build skipped files: {}",
        first.json
    );

    let second = ctx.squash(&src, &out, Some(&cache), s, &trust)?;
    same(&cold, &second.image, "second --trust-stat build")?;
    second.check_warm("second --trust-stat build")?;
    let (not_read, bytes_not_read) = (second.n("files_not_read")?, second.n("bytes_not_read")?);
    println!("  nothing changed: {not_read} of {files} files not read ({bytes_not_read} of {bytes} bytes)");
    ensure!(
        (not_read, bytes_not_read) == (files, bytes),
        "nothing changed, so all {files} files ({bytes} bytes) should go unread: {}",
        second.json
    );

    let touched = src.join(middle_small_file(&spec));
    run_ok(Command::new("touch").arg(&touched))?;
    let third = ctx.squash(&src, &out, Some(&cache), s, &trust)?;
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;
    same(&cold, &third.image, "after touch")?;
    let not_read = third.n("files_not_read")?;
    println!("  one file touched: {not_read} of {files} files not read");
    ensure!(
        not_read == files - 1,
        "after touching {}, {} files should go unread: {}",
        touched.display(),
        files - 1,
        third.json
    );
    Ok(())
}

fn corrupted_entries(ctx: &Ctx, dir: &Path) -> Result<()> {
    let s = XZ_128K;
    let src = dir.join("src");
    make_tree(
        &src,
        &TreeSpec {
            seed: 4,
            big_text: 6,
            small: 80,
            block_bytes: s.block_bytes,
        },
    )?;
    let out = dir.join("img.sqfs");
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;

    // A build publishes a pack once it holds --cache-size / 16 bytes: twice
    // the tree's cache size gives packs of about an eighth of it.
    let scratch = dir.join("scratch-cache");
    ctx.squash(&src, &out, Some(&scratch), s, &[])?;
    let (_, tree_bytes, _) = ctx.stats(&scratch)?;
    ensure!(tree_bytes > 0, "the scratch cache holds no bytes");
    let cache_size = (2 * tree_bytes).to_string();
    let cache = dir.join("cache");
    let size_flag = ["--cache-size", cache_size.as_str()];
    let filled = ctx.squash(&src, &out, Some(&cache), s, &size_flag)?;
    same(&cold, &filled.image, "cold, empty cache")?;

    let packs = pack_files(&cache)?;
    println!(
        "  {} packs with --cache-size {cache_size} (a scratch cache of the tree holds {tree_bytes} bytes)",
        packs.len()
    );
    ensure!(
        packs.len() >= 5,
        "only {} packs in {}/{PACKS_DIR} with --cache-size {cache_size}; the case needs at least 5",
        packs.len(),
        cache.display()
    );
    // Spread the damage over the sorted packs, one kind per pack.
    let pick = |k: usize| &packs[k * packs.len() / 5];
    let mut damaged = Vec::new();
    for k in 0..3 {
        let mut pack = Pack::read(pick(k))?;
        let entries = pack.entries()?;
        let Some((i, entry)) = entries
            .iter()
            .enumerate()
            .skip(entries.len() / 2)
            .chain(entries.iter().enumerate())
            .find(|(_, e)| e.len > 0)
        else {
            bail!("{}: no entry has a payload", pack.path.display());
        };
        let at = entry.payload_at() + entry.len / 2;
        pack.data[at as usize] ^= 0x01;
        pack.write()?;
        damaged.push(format!(
            "{}: flipped byte {at} (payload of entry {i} of {})",
            file_name(&pack.path),
            entries.len()
        ));
    }
    let truncated = Pack::read(pick(3))?;
    truncated.entries()?;
    OpenOptions::new()
        .write(true)
        .open(&truncated.path)?
        .set_len(truncated.len() / 2)?;
    damaged.push(format!(
        "{}: truncated from {} to {} bytes",
        file_name(&truncated.path),
        truncated.len(),
        truncated.len() / 2
    ));
    let mut foreign = Pack::read(pick(4))?;
    foreign.entries()?;
    let version = foreign.version();
    let at = (foreign.footer_at() + FOOTER_VERSION_AT) as usize;
    foreign.data[at..at + 4].copy_from_slice(&(version + 1).to_le_bytes());
    foreign.write()?;
    damaged.push(format!(
        "{}: footer version {version} -> {}",
        file_name(&foreign.path),
        version + 1
    ));
    println!("  damaged 5 of {} packs:", packs.len());
    for line in &damaged {
        println!("    {line}");
    }

    let rebuilt = ctx.squash(&src, &out, Some(&cache), s, &size_flag)?;
    same(&cold, &rebuilt.image, "with damaged packs")?;
    let bad = rebuilt.n("bad_entries")?;
    println!("  rebuild: {}", rebuilt.counts());
    ensure!(
        bad >= 3,
        "5 packs were damaged, bad_entries is {bad}: {}",
        rebuilt.json
    );
    let again = ctx.squash(&src, &out, Some(&cache), s, &size_flag)?;
    same(&cold, &again.image, "after the rebuild")?;
    println!(
        "  after the rebuild ({} packs): {}",
        pack_files(&cache)?.len(),
        again.counts()
    );
    again.check_warm("after the rebuild")?;
    ensure!(
        again.n("bad_entries")? == 0,
        "damaged entries are still there after the rebuild: {}",
        again.json
    );
    let temp = temp_files(&cache)?;
    ensure!(
        temp == 0,
        "{temp} temporary files left in {}/{PACKS_DIR}/tmp",
        cache.display()
    );
    Ok(())
}

fn concurrent_builds(ctx: &Ctx, dir: &Path) -> Result<()> {
    let s = XZ_128K;
    let src = dir.join("src");
    make_tree(
        &src,
        &TreeSpec {
            seed: 5,
            big_text: 9,
            small: 150,
            block_bytes: s.block_bytes,
        },
    )?;
    let cache = dir.join("cache");
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;
    for round in ["empty cache", "warm cache"] {
        let outs = [dir.join("a.sqfs"), dir.join("b.sqfs")];
        let mut cmds: Vec<Command> = outs
            .iter()
            .map(|out| ctx.squash_command(&src, out, Some(&cache), s, &[]))
            .collect();
        let children = cmds
            .iter_mut()
            .map(|cmd| {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("cannot run {}", show(cmd)))
            })
            .collect::<Result<Vec<_>>>()?;
        for ((child, out), cmd) in children.into_iter().zip(&outs).zip(&cmds) {
            let o = child.wait_with_output()?;
            let (stdout, stderr) = (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            );
            ensure!(
                o.status.success(),
                "{round}: {} failed ({}):\n{stderr}",
                show(cmd),
                o.status
            );
            let built = finished(stdout, stderr, out)?;
            same(&cold, &built.image, &format!("{round}, {}", out.display()))?;
            ensure!(
                built.stderr.is_empty(),
                "{round}: unexpected stderr:\n{}",
                built.stderr
            );
            println!("  {round}, {}: {}", out.display(), built.counts());
        }
    }
    let temp = temp_files(&cache)?;
    ensure!(
        temp == 0,
        "{temp} temporary files left in {}/{PACKS_DIR}/tmp",
        cache.display()
    );
    Ok(())
}

fn read_only_cache(ctx: &Ctx, dir: &Path) -> Result<()> {
    let s = XZ_128K;
    let src = dir.join("src");
    make_tree(
        &src,
        &TreeSpec {
            seed: 6,
            big_text: 4,
            small: 40,
            block_bytes: s.block_bytes,
        },
    )?;
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;
    // An empty read-only folder, and one that holds the entries of this tree.
    let empty = Mount::tmpfs(&dir.join("ro-empty"), "1m")?;
    let filled = Mount::tmpfs(&dir.join("ro-filled"), "64m")?;
    ctx.squash(&src, &dir.join("fill.sqfs"), Some(filled.dir()), s, &[])?;
    for mount in [&empty, &filled] {
        run_ok(
            Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(mount.dir()),
        )?;
        let what = format!("read-only {}", mount.dir().display());
        let built = ctx.squash(&src, &dir.join("img.sqfs"), Some(mount.dir()), s, &[])?;
        same(&cold, &built.image, &what)?;
        let warning = built.check_one_warning(&what)?;
        println!("  {what}: {warning}");
    }
    Ok(())
}

fn full_cache_disk(ctx: &Ctx, dir: &Path) -> Result<()> {
    let s = XZ_128K;
    let src = dir.join("src");
    make_tree(
        &src,
        &TreeSpec {
            seed: 7,
            big_text: 6,
            small: 80,
            block_bytes: s.block_bytes,
        },
    )?;
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;
    let mount = Mount::tmpfs(&dir.join("small-tmpfs"), "256k")?;
    let out = dir.join("img.sqfs");
    let built = ctx.squash(&src, &out, Some(mount.dir()), s, &[])?;
    same(&cold, &built.image, "cache on a full tmpfs")?;
    let warning = built.check_one_warning("cache on a full tmpfs")?;
    println!("  {warning}");
    println!("  {}", built.counts());
    // The entries written before the disk filled are published and used by
    // a second build, which ends the same way.
    ensure!(
        built.n("entries_written")? > 0,
        "nothing was kept of what fitted on the full tmpfs: {}",
        built.json
    );
    let again = ctx.squash(&src, &out, Some(mount.dir()), s, &[])?;
    same(&cold, &again.image, "second build, cache on a full tmpfs")?;
    ensure!(
        again.n("block_hits")? + again.n("fragment_hits")? > 0,
        "the second build found nothing of what fitted: {}",
        again.json
    );
    ensure!(
        again.stderr.lines().count() <= 1,
        "second build: more than one line on stderr:\n{}",
        again.stderr
    );
    println!("  second build: {}", again.counts());
    let temp = temp_files(mount.dir())?;
    ensure!(
        temp == 0,
        "{temp} temporary files left in the full cache's {PACKS_DIR}/tmp"
    );
    Ok(())
}

fn stats_and_clear(ctx: &Ctx, dir: &Path) -> Result<()> {
    let s = XZ_1M;
    let src = dir.join("src");
    make_tree(
        &src,
        &TreeSpec {
            seed: 8,
            big_text: 4,
            small: 300,
            block_bytes: s.block_bytes,
        },
    )?;
    let cache = dir.join("cache");
    let out = dir.join("img.sqfs");
    let built = ctx.squash(&src, &out, Some(&cache), s, &[])?;
    let image = built.image.len() as u64;
    let (entries, bytes, records) = ctx.stats(&cache)?;
    let ratio = bytes as f64 / image as f64;
    println!(
        "  {entries} entries, {bytes} bytes (+ {records} of records) for a {image}-byte image: \
         cache/image = {ratio:.3} ({:.3} with records)",
        (bytes + records) as f64 / image as f64
    );
    ensure!(entries > 0, "`cache stats` shows no entry after a build");
    ensure!(
        ratio <= 1.05,
        "the cache takes {ratio:.3}× the image's size, more than 1.05×"
    );
    // What the disk gives the packs: a pack rounds up to the file system's
    // block once, not once per entry.
    let packs = pack_files(&cache)?;
    let allocated = allocated_bytes(&packs)?;
    let allocated_ratio = allocated as f64 / image as f64;
    println!(
        "  {} packs take {allocated} bytes on disk (st_blocks × 512): allocated/image = {allocated_ratio:.3}",
        packs.len()
    );
    ensure!(
        allocated_ratio <= 1.05,
        "the packs take {allocated} bytes on disk, {allocated_ratio:.3}× the image's size, more than 1.05×"
    );
    let text = run_ok(
        ctx.command()
            .args(["cache", "stats", "--cache"])
            .arg(&cache),
    )?;
    ensure!(
        text.stdout.contains(&format!("entries:      {entries}\n")),
        "`cache stats` does not say {entries} entries:\n{}",
        text.stdout
    );

    let cleared = run_ok(
        ctx.command()
            .args(["cache", "clear", "--cache"])
            .arg(&cache),
    )?;
    println!("  {}", cleared.stderr.trim_end());
    ensure!(
        cleared
            .stderr
            .contains(&format!("removed {entries} entries")),
        "`cache clear` does not say it removed {entries} entries:\n{}",
        cleared.stderr
    );
    let after = ctx.stats(&cache)?;
    ensure!(
        after == (0, 0, 0),
        "after `cache clear`: {after:?} (entries, bytes, record bytes)"
    );
    let rebuilt = ctx.squash(&src, &out, Some(&cache), s, &[])?;
    same(&built.image, &rebuilt.image, "after `cache clear`")?;
    ensure!(
        rebuilt.n("block_hits")? + rebuilt.n("fragment_hits")? == 0,
        "hits after `cache clear`: {}",
        rebuilt.json
    );
    Ok(())
}

fn cache_size(ctx: &Ctx, dir: &Path) -> Result<()> {
    let s = XZ_128K;
    let src = dir.join("src");
    make_tree(
        &src,
        &TreeSpec {
            seed: 9,
            big_text: 6,
            small: 80,
            block_bytes: s.block_bytes,
        },
    )?;
    let cold = ctx.cold(&src, &dir.join("cold.sqfs"), s)?;
    let cache = dir.join("cache");
    let out = dir.join("img.sqfs");
    for round in ["first", "second"] {
        let built = ctx.squash(&src, &out, Some(&cache), s, &["--cache-size", "64K"])?;
        same(
            &cold,
            &built.image,
            &format!("{round} build, --cache-size 64K"),
        )?;
        let (entries, bytes, _) = ctx.stats(&cache)?;
        println!(
            "  {round} build: {entries} entries, {bytes} bytes kept; {}",
            built.counts()
        );
        ensure!(
            bytes <= 64 << 10,
            "{round} build: the cache holds {bytes} bytes, more than --cache-size 64K"
        );
        ensure!(
            built.stderr.is_empty(),
            "{round} build: unexpected stderr:\n{}",
            built.stderr
        );
    }
    Ok(())
}
