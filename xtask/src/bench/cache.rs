//! The cache cells: rebuilds with mkportable's persistent block cache
//! (issue 5), interleaved with a cold mksquashfs as the reference.
//!
//! A cache cell runs seven rows, A B C D E F G A B C …:
//!
//! | row | what | before each timed run (untimed) |
//! |---|---|---|
//! | cold, `--no-cache` | the baseline of the cold+cache ratio | |
//! | mksquashfs, cold | the reference of every other ratio | |
//! | cold, empty cache | a cold build that fills the cache | its cache folder emptied (moved aside, see [`measure::Invocation::empty`]) |
//! | warm, nothing changed | a rebuild of the same files | |
//! | the same, `--trust-stat` | unchanged files are not read | |
//! | warm, one file changed | a rebuild after an edit | a small file replaced by a new version |
//! | the same, `--trust-stat` | | the same |
//!
//! Each row with a cache has its own folder, so no row warms another's. The
//! warm rows are primed before the first round (untimed): the first one by
//! a cold build, the others from a copy of its folder and one run of their
//! own, which records what `--trust-stat` needs. The "changed" rows read a
//! copy of the corpus (hard-linked, `cp -al`), in which one small file is
//! replaced before each run by a version no earlier run saw (its original
//! bytes and a numbered line), so every run misses on that file's blocks and
//! nowhere else. For the Nix corpus, whose store is read-only and whose
//! paths are fixed, that file is the unit: the rows build a spec whose unit
//! file lives in the bench's folder, and the reference is mksquashfs alone on
//! a staged copy of the closure (the seed's pipeline without its copy).
//!
//! After the rounds: `mkportable cache stats --json` of each cache folder
//! (and the bytes it takes on disk), and whether the images of the cold and
//! warm rows are byte-identical, as the cache promises; then the cell's
//! folder and images are removed.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::corpus::{self, Corpus, Kind};
use super::measure::{self, Edit, Invocation};
use super::{Cell, Paths, COMMON};
use crate::harness::which;

/// A row of a cache cell, in the order the rows run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// `--no-cache`, cold.
    Cold,
    /// mksquashfs, cold: the reference.
    Reference,
    /// The cache on, its folder emptied before each run.
    ColdCache,
    /// A rebuild of unchanged files with a primed cache.
    Warm,
    /// The same with `--trust-stat`.
    WarmTrust,
    /// A rebuild after one small file changed.
    Changed,
    /// The same with `--trust-stat`.
    ChangedTrust,
}

/// What a row's median wall is held against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Against {
    /// The cold `--no-cache` row.
    Cold,
    /// The reference, mksquashfs cold.
    Reference,
}

/// An issue-5 target of a row.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The target, as the results state it.
    pub text: &'static str,
    /// The ratio it allows.
    pub limit: f64,
    /// What the ratio is against.
    pub against: Against,
}

/// The target on the cache's size: its bytes on disk ÷ the image's, met when
/// both `cache stats` bytes and the allocated size (`du`) are within it.
pub const SIZE_TARGET: (&str, f64) = ("cache: size on disk ≤ 1.05 × the image", 1.05);

/// The row whose cache folder the size target is checked on: one build's
/// blocks and its `--trust-stat` file records.
pub const SIZE_ROW: Row = Row::WarmTrust;

impl Row {
    /// Every row, in the order they run.
    pub const ALL: [Row; 7] = [
        Row::Cold,
        Row::Reference,
        Row::ColdCache,
        Row::Warm,
        Row::WarmTrust,
        Row::Changed,
        Row::ChangedTrust,
    ];

    /// The row's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Row::Cold => "cold, --no-cache",
            Row::Reference => "mksquashfs, cold",
            Row::ColdCache => "cold, empty cache",
            Row::Warm => "warm, nothing changed",
            Row::WarmTrust => "warm, nothing changed, --trust-stat",
            Row::Changed => "warm, 1 file changed",
            Row::ChangedTrust => "warm, 1 file changed, --trust-stat",
        }
    }

    /// A short name for files and JSON.
    pub fn slug(self) -> &'static str {
        match self {
            Row::Cold => "cold",
            Row::Reference => "mksquashfs",
            Row::ColdCache => "cold-cache",
            Row::Warm => "warm",
            Row::WarmTrust => "warm-trust-stat",
            Row::Changed => "changed",
            Row::ChangedTrust => "changed-trust-stat",
        }
    }

    /// Whether the row builds with a cache folder of its own.
    pub fn has_cache(self) -> bool {
        !matches!(self, Row::Cold | Row::Reference)
    }

    fn trust_stat(self) -> bool {
        matches!(self, Row::WarmTrust | Row::ChangedTrust)
    }

    fn changed(self) -> bool {
        matches!(self, Row::Changed | Row::ChangedTrust)
    }

    /// Whether the cache is primed before the first round.
    pub fn primed(self) -> bool {
        matches!(
            self,
            Row::Warm | Row::WarmTrust | Row::Changed | Row::ChangedTrust
        )
    }

    /// Whether the row's image must equal the cold `--no-cache` image.
    pub fn same_input(self) -> bool {
        matches!(
            self,
            Row::Cold | Row::ColdCache | Row::Warm | Row::WarmTrust
        )
    }

    /// The issue's target for this row, if it has one.
    pub fn target(self) -> Option<Target> {
        let (text, limit, against) = match self {
            Row::Cold | Row::Reference => return None,
            Row::ColdCache => (
                "cache: cold build with the cache ≤ 1.03 × `--no-cache`",
                1.03,
                Against::Cold,
            ),
            Row::Warm => (
                "cache: rebuild, nothing changed ≤ 0.03 × mksquashfs cold",
                0.03,
                Against::Reference,
            ),
            Row::WarmTrust => (
                "cache: rebuild, nothing changed, `--trust-stat` ≤ 0.03 × mksquashfs cold",
                0.03,
                Against::Reference,
            ),
            Row::Changed => (
                "cache: rebuild, one small file changed ≤ 0.05 × mksquashfs cold",
                0.05,
                Against::Reference,
            ),
            Row::ChangedTrust => (
                "cache: rebuild, one small file changed, `--trust-stat` ≤ 0.05 × mksquashfs cold",
                0.05,
                Against::Reference,
            ),
        };
        Some(Target {
            text,
            limit,
            against,
        })
    }
}

/// What the cache did in one run: the `cache` object of mkportable's
/// `--json` report, and its `bytes_in`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Data blocks found in the cache.
    pub block_hits: u64,
    /// Data blocks compressed.
    pub block_misses: u64,
    /// Fragment blocks found in the cache.
    pub fragment_hits: u64,
    /// Fragment blocks compressed.
    pub fragment_misses: u64,
    /// Files not read (`--trust-stat`).
    pub files_not_read: u64,
    /// Their bytes.
    pub bytes_not_read: u64,
    /// Bad entries ignored and rebuilt.
    pub bad_entries: u64,
    /// Entries stored.
    pub entries_written: u64,
    /// Entries evicted.
    pub entries_evicted: u64,
    /// Why the cache turned itself off, if it did.
    pub warning: Option<String>,
    /// Bytes of file contents read (the report's `bytes_in`).
    pub bytes_in: Option<u64>,
}

/// What a cache folder holds after a cell.
#[derive(Debug, Clone)]
pub struct Size {
    /// The row that used it.
    pub row: Row,
    /// Block entries (`cache stats`).
    pub entries: u64,
    /// Their bytes (`cache stats`: file sizes).
    pub bytes: u64,
    /// Bytes of the file records (`cache stats`).
    pub record_bytes: u64,
    /// What the folder takes on disk (allocated blocks, `du`).
    pub on_disk: u64,
    /// The median size of the row's image.
    pub image: u64,
}

impl Size {
    /// `cache stats` bytes and record bytes ÷ the image.
    pub fn ratio(&self) -> f64 {
        (self.bytes + self.record_bytes) as f64 / self.image as f64
    }

    /// Allocated bytes ÷ the image.
    pub fn disk_ratio(&self) -> f64 {
        self.on_disk as f64 / self.image as f64
    }
}

/// Where a cache cell keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `target/bench/cache/CORPUS`: caches, the corpus copy, the Nix specs.
    pub dir: PathBuf,
    /// Where the rows' images go.
    pub out: PathBuf,
}

impl Layout {
    /// The layout of `corpus`'s cache cell.
    pub fn new(corpus: &Corpus, paths: &Paths) -> Layout {
        Layout {
            dir: paths.work.join("cache").join(corpus.name),
            out: paths.out.join("cache"),
        }
    }

    /// The cache folder of `row`.
    pub fn cache(&self, row: Row) -> PathBuf {
        self.dir.join("caches").join(row.slug())
    }

    /// The copy of a tree corpus that the "changed" rows read.
    fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// The staged closure (Nix): `stage/nix/store/…`.
    fn stage(&self) -> PathBuf {
        self.dir.join("stage")
    }

    /// The folder of the Nix spec that nothing changes.
    fn same_spec(&self) -> PathBuf {
        self.dir.join("same")
    }

    /// The folder of the Nix spec whose unit the "changed" rows edit.
    fn edited_spec(&self) -> PathBuf {
        self.dir.join("edited")
    }
}

/// The small file that the "changed" rows see change.
#[derive(Debug, Clone)]
pub struct Changed {
    /// Where it is in the corpus (or, for Nix, in the image).
    pub label: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// The edit that replaces it, in the copy.
    pub edit: Edit,
}

/// Picks the changed file: for a tree, the middle one (in path order) of the
/// files of 1–16 KiB, else of all files smaller than a block; for Nix, the
/// unit. Reads the original; writes nothing.
pub fn changed_file(corpus: &Corpus, layout: &Layout, block_size: u32) -> Result<Changed> {
    match &corpus.kind {
        Kind::Tree(src) => {
            let mut files = Vec::new();
            list_files(src, Path::new(""), &mut files)?;
            files.sort();
            let pick = |lo: u64, hi: u64| {
                let fit: Vec<&(PathBuf, u64)> = files
                    .iter()
                    .filter(|(_, len)| (lo..=hi).contains(len))
                    .collect();
                fit.get(fit.len() / 2).map(|f| (*f).clone())
            };
            let (rel, bytes) = pick(1 << 10, 16 << 10)
                .or_else(|| pick(1, u64::from(block_size) - 1))
                .with_context(|| format!("no file smaller than a block in {}", src.display()))?;
            let original = src.join(&rel);
            let original =
                fs::read(&original).with_context(|| format!("reading {}", original.display()))?;
            Ok(Changed {
                label: rel.display().to_string(),
                bytes,
                edit: Edit {
                    file: layout.tree().join(&rel),
                    original,
                },
            })
        }
        Kind::Nix(nix) => {
            let unit = nix.unit()?;
            Ok(Changed {
                label: "/etc/systemd/system/bigfx.service, the unit".into(),
                bytes: unit.len() as u64,
                edit: Edit {
                    file: layout.edited_spec().join("bigfx.service"),
                    original: unit.into_bytes(),
                },
            })
        }
    }
}

/// Regular files under `dir` (paths relative to the walk's root) and their sizes.
fn list_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let path = rel.join(entry.file_name());
        if meta.is_dir() {
            list_files(root, &path, out)?;
        } else if meta.is_file() {
            out.push((path, meta.len()));
        }
    }
    Ok(())
}

/// The rows of a cache cell and their commands. `changed` is the file the
/// "changed" rows see change.
pub fn contenders(
    corpus: &Corpus,
    cell: &Cell,
    paths: &Paths,
    changed: &Changed,
) -> Result<Vec<(Row, Invocation)>> {
    let layout = Layout::new(corpus, paths);
    let mut rows = Vec::new();
    for row in Row::ALL {
        let inv = match (&corpus.kind, row) {
            (Kind::Tree(src), Row::Reference) => {
                let out = layout.out.join("mksquashfs.sqfs");
                let mut args: Vec<OsString> = vec![src.into(), out.clone().into()];
                args.extend(COMMON.iter().map(OsString::from));
                args.extend(cell.setting.mksquashfs.iter().map(OsString::from));
                args.push("-processors".into());
                args.push(cell.threads.to_string().into());
                Invocation::new(mksquashfs(), args, out)
            }
            (Kind::Tree(src), _) => {
                let source = if row.changed() {
                    layout.tree()
                } else {
                    src.clone()
                };
                let out = layout.out.join(format!("{}.sqfs", row.slug()));
                // The personality's `-noappend -quiet -no-progress -all-root`
                // and its defaults (NFS export table, xattrs, fragments, dedup).
                let mut args: Vec<OsString> =
                    vec!["squash".into(), source.into(), out.clone().into()];
                for a in [
                    "--overwrite",
                    "--quiet",
                    "--json",
                    "--all-root",
                    "--exports",
                ] {
                    args.push(a.into());
                }
                args.extend(cell.setting.squash.iter().map(OsString::from));
                args.push("--threads".into());
                args.push(cell.threads.to_string().into());
                args.extend(cache_flags(&layout, row));
                let mut inv = Invocation::new(paths.bin.clone(), args, out);
                set_steps(&mut inv, &layout, row, changed);
                inv
            }
            (Kind::Nix(nix), Row::Reference) => {
                // The seed's mksquashfs call on the staged closure.
                let out = layout.out.join("mksquashfs.raw");
                let mut args: Vec<OsString> = vec![layout.stage().join("nix").into()];
                args.extend(nix.scaffold_entries().into_iter().map(OsString::from));
                args.push(out.clone().into());
                for a in [
                    "-keep-as-directory",
                    "-all-root",
                    "-root-mode",
                    "755",
                    "-b",
                    "1M",
                    "-comp",
                    "xz",
                    "-Xdict-size",
                    "100%",
                    "-quiet",
                    "-noappend",
                ] {
                    args.push(a.into());
                }
                Invocation::new(mksquashfs(), args, out)
            }
            (Kind::Nix(_), _) => {
                let spec_dir = if row.changed() {
                    layout.edited_spec()
                } else {
                    layout.same_spec()
                };
                let out_dir = layout.out.join(row.slug());
                let out = out_dir.join("bigfx_1.raw");
                let mut args: Vec<OsString> = vec![
                    "build".into(),
                    spec_dir.join("bigfx.toml").into(),
                    "-o".into(),
                    out_dir.into(),
                ];
                for a in ["--overwrite", "--quiet", "--json"] {
                    args.push(a.into());
                }
                args.extend(cache_flags(&layout, row));
                let mut inv = Invocation::new(paths.bin.clone(), args, out);
                set_steps(&mut inv, &layout, row, changed);
                inv
            }
        };
        rows.push((row, inv));
    }
    Ok(rows)
}

fn mksquashfs() -> PathBuf {
    which("mksquashfs").unwrap_or_else(|| "mksquashfs".into())
}

/// `--no-cache`, or `--cache DIR` and maybe `--trust-stat`.
fn cache_flags(layout: &Layout, row: Row) -> Vec<OsString> {
    if !row.has_cache() {
        return vec!["--no-cache".into()];
    }
    let mut flags: Vec<OsString> = vec!["--cache".into(), layout.cache(row).into()];
    if row.trust_stat() {
        flags.push("--trust-stat".into());
    }
    flags
}

/// What happens before each timed run of `row`.
fn set_steps(inv: &mut Invocation, layout: &Layout, row: Row, changed: &Changed) {
    if row == Row::ColdCache {
        inv.empty.push(layout.cache(row));
    }
    if row.changed() {
        inv.edit = Some(changed.edit.clone());
    }
}

/// Sets a cache cell up, untimed: removes what an earlier cell left, copies
/// the corpus (a tree) or stages the closure and writes the two specs (Nix),
/// and replaces the changed file of the copy by a file of its own, so that
/// editing it never touches the original's inode.
pub fn set_up(corpus: &Corpus, layout: &Layout, changed: &Changed) -> Result<()> {
    measure::remove(&layout.dir)?;
    measure::remove(&layout.out)?;
    fs::create_dir_all(&layout.dir)?;
    fs::create_dir_all(&layout.out)?;
    match &corpus.kind {
        Kind::Tree(src) => {
            corpus::copy_tree(src, &layout.tree())?;
            // A copy of the file's own (new inode, same mode and times).
            let file = &changed.edit.file;
            let mut own_name = OsString::from(".");
            own_name.push(file.file_name().context("the changed file has no name")?);
            own_name.push(".bench-own");
            let own = file.with_file_name(own_name);
            let status = Command::new("cp")
                .arg("-a")
                .arg(file)
                .arg(&own)
                .stdin(Stdio::null())
                .status()
                .context("running cp -a")?;
            if !status.success() {
                bail!(
                    "cp -a {} {} failed ({status})",
                    file.display(),
                    own.display()
                );
            }
            fs::rename(&own, file)
                .with_context(|| format!("renaming {} to {}", own.display(), file.display()))?;
        }
        Kind::Nix(nix) => {
            nix.stage(&layout.stage())?;
            nix.write_spec(&layout.same_spec())?;
            nix.write_spec(&layout.edited_spec())?;
        }
    }
    Ok(())
}

/// Fills the warm rows' caches before the first round, untimed: the first
/// by a cold build, the others from a copy of its folder and one run each
/// (which records their own files for `--trust-stat`). Prints what it does.
pub fn prime(rows: &[(Row, Invocation)], scratch: &Path, layout: &Layout) -> Result<()> {
    let mut first: Option<PathBuf> = None;
    for (row, inv) in rows.iter().filter(|(row, _)| row.primed()) {
        let inv = Invocation {
            edit: None,
            empty: Vec::new(),
            ..inv.clone()
        };
        let dir = layout.cache(*row);
        if let Some(from) = &first {
            copy_folder(from, &dir)?;
        }
        print!("   priming {} … ", row.name());
        crate::harness::flush();
        let sample = measure::run(&inv, scratch)?;
        println!("{:.2}s", sample.wall);
        first.get_or_insert(dir);
    }
    Ok(())
}

/// `cp -a FROM TO`.
fn copy_folder(from: &Path, to: &Path) -> Result<()> {
    measure::remove(to)?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .status()
        .context("running cp -a")?;
    if !status.success() {
        bail!(
            "cp -a {} {} failed ({status})",
            from.display(),
            to.display()
        );
    }
    Ok(())
}

/// `mkportable cache stats --cache DIR --json` and the folder's allocated
/// bytes, for every row with a cache; `images` are the rows' median image sizes.
pub fn sizes(bin: &Path, layout: &Layout, images: &[(Row, u64)]) -> Result<Vec<Size>> {
    let mut out = Vec::new();
    for &(row, image) in images.iter().filter(|(row, _)| row.has_cache()) {
        let dir = layout.cache(row);
        let res = Command::new(bin)
            .args(["cache", "stats", "--json", "--cache"])
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .context("running mkportable cache stats")?;
        let text = String::from_utf8_lossy(&res.stdout);
        if !res.status.success() {
            bail!(
                "mkportable cache stats --cache {} failed ({}): {}",
                dir.display(),
                res.status,
                String::from_utf8_lossy(&res.stderr).trim()
            );
        }
        let field = |key: &str| {
            number(&text, key).with_context(|| format!("no `{key}` in `cache stats`: {text}"))
        };
        out.push(Size {
            row,
            entries: field("entries")?,
            bytes: field("bytes")?,
            record_bytes: field("record_bytes")?,
            on_disk: allocated(&dir)?,
            image,
        });
    }
    Ok(out)
}

/// Bytes allocated on disk under `path` (`st_blocks` × 512, as `du` counts).
fn allocated(path: &Path) -> Result<u64> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            total += allocated(&entry?.path())?;
        }
    }
    Ok(total)
}

/// Whether the last images of the rows that pack the same input are
/// byte-identical (the cache must never change an image).
pub fn same_bytes(rows: &[(Row, Invocation)]) -> Result<bool> {
    let mut hashes = Vec::new();
    for (_, inv) in rows.iter().filter(|(row, _)| row.same_input()) {
        let bytes =
            fs::read(&inv.output).with_context(|| format!("reading {}", inv.output.display()))?;
        hashes.push(blake3::hash(&bytes));
    }
    Ok(hashes.windows(2).all(|w| w[0] == w[1]))
}

/// Removes what the cell wrote: the caches (several times the image), the
/// corpus copy or the staged closure, and the rows' images.
pub fn clean_up(layout: &Layout) -> Result<()> {
    measure::remove(&layout.dir)?;
    measure::remove(&layout.out)
}

/// The cache counters of a `--json` report; `None` when it has no cache
/// object (`--no-cache`) or is not a report.
pub fn counters(report: &str) -> Option<Counters> {
    let start = report.find("\"cache\":")? + "\"cache\":".len();
    let cache = report[start..].trim_start();
    if !cache.starts_with('{') {
        return None;
    }
    let field = |key: &str| number(cache, key);
    Some(Counters {
        block_hits: field("block_hits")?,
        block_misses: field("block_misses")?,
        fragment_hits: field("fragment_hits")?,
        fragment_misses: field("fragment_misses")?,
        files_not_read: field("files_not_read")?,
        bytes_not_read: field("bytes_not_read")?,
        bad_entries: field("bad_entries")?,
        entries_written: field("entries_written")?,
        entries_evicted: field("entries_evicted")?,
        warning: string(cache, "warning"),
        bytes_in: number(report, "bytes_in"),
    })
}

/// The unsigned integer after the first `"key":` in `json`.
fn number(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = json[json.find(&pat)? + pat.len()..].trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// The string after the first `"key":` in `json`; `None` for `null`.
fn string(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let rest = json[json.find(&pat)? + pat.len()..].trim_start();
    let mut chars = rest.strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cache_object() {
        let warm = r#"{"type":"squash-report","version":1,"output":"o","inodes":12,"files":9,"bytes_in":40960,"bytes_written":8192,"dedup_saved":0,"cache":{"block_hits":800,"block_misses":8,"fragment_hits":12,"fragment_misses":1,"files_not_read":3,"bytes_not_read":1536,"bad_entries":0,"entries_written":9,"entries_evicted":0,"warning":"full \"disk\" \u0021"}}"#;
        assert_eq!(
            counters(warm),
            Some(Counters {
                block_hits: 800,
                block_misses: 8,
                fragment_hits: 12,
                fragment_misses: 1,
                files_not_read: 3,
                bytes_not_read: 1536,
                bad_entries: 0,
                entries_written: 9,
                entries_evicted: 0,
                warning: Some("full \"disk\" !".into()),
                bytes_in: Some(40960),
            })
        );
        let cold = r#"{"type":"squash-report","bytes_in":1,"cache":null}"#;
        assert_eq!(counters(cold), None);
        assert_eq!(counters("not json"), None);
        let stats = r#"{"type":"cache-stats","version":1,"folder":"/c","entries":812,"bytes":43200000,"record_bytes":1200}"#;
        assert_eq!(number(stats, "bytes"), Some(43_200_000));
        assert_eq!(number(stats, "record_bytes"), Some(1200));
        assert_eq!(number(stats, "entries"), Some(812));
    }

    #[test]
    fn every_row_but_the_reference_is_ours() {
        assert_eq!(Row::ALL[1], Row::Reference);
        assert_eq!(Row::ALL.iter().filter(|r| r.target().is_some()).count(), 5);
        assert!(SIZE_ROW.has_cache());
    }
}
