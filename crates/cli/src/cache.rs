//! The persistent block cache at the command line: the flags `build` and
//! `squash` share ([`CacheArgs`]), what a build says about the cache (a
//! summary line, a JSON object, one warning), and `mkportable cache stats` and
//! `mkportable cache clear`.
//!
//! The `mksquashfs` personality has no cache: it stays a drop-in for mksquashfs.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use mkportable_squash::{Cache, CacheConfig, CacheReport, CacheStats, DEFAULT_MAX_BYTES};

use crate::job::{human, json_string};

const AFTER_HELP: &str = "\
Examples:
  mkportable cache stats
  mkportable cache stats --cache /var/cache/mkportable --json
  mkportable cache clear

The cache holds the compressed blocks of earlier builds, so a rebuild compresses
only what changed; it never changes an image's bytes. Its folder is
$XDG_CACHE_HOME/mkportable, else $HOME/.cache/mkportable, unless --cache names one.

Exit status: 0 on success; 1 when the folder cannot be used (not a folder, no
permission); 2 for usage errors and unexpected failures.";

/// The cache flags of `mkportable build` and `mkportable squash`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct CacheArgs {
    /// The cache of compressed blocks, reused by later builds; created if missing
    /// [default: $XDG_CACHE_HOME/mkportable, else $HOME/.cache/mkportable].
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    cache: Option<PathBuf>,
    /// Build without the cache: compress everything, store nothing.
    #[arg(long, conflicts_with_all = ["cache", "cache_size", "trust_stat"], help_heading = "Cache")]
    no_cache: bool,
    /// Evict the least recently used blocks once the cache holds more than this:
    /// bytes, or with a K, M, G or T suffix (binary units) [default: 5G]. Blocks
    /// are evicted by pack, a sixteenth of this at most.
    #[arg(long, value_name = "SIZE", value_parser = cache_size, help_heading = "Cache")]
    cache_size: Option<u64>,
    /// Do not read a file whose device, inode, size, mtime and ctime (in
    /// nanoseconds) all match an earlier build with --trust-stat (which records
    /// them): reuse what was learnt of it from the cache. Files changed in the last two
    /// seconds before a build are not recorded (file times are coarse).
    /// Safe for the Nix store and for normal writes, which always change ctime.
    /// Do not use it where something can rewrite files and restore their ctime
    /// (restoring a filesystem snapshot, for example).
    #[arg(long, help_heading = "Cache")]
    trust_stat: bool,
}

/// The environment variables that choose the default cache folder.
#[derive(Debug, Clone, Default)]
pub struct CacheEnv {
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
}

/// Arguments of `mkportable cache`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// What to do with the cache.
    #[command(subcommand)]
    command: Command,
}

/// The `cache` subcommands.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the folder, its block entries and their bytes, and the bytes of file records.
    Stats {
        /// The cache folder.
        #[command(flatten)]
        folder: FolderArg,
        /// Print one JSON object on stdout: `"type":"cache-stats"`.
        #[arg(long)]
        json: bool,
    },
    /// Remove every entry and file record from the cache, and say what was removed.
    Clear {
        /// The cache folder.
        #[command(flatten)]
        folder: FolderArg,
    },
}

/// `--cache DIR` of the `cache` subcommands.
#[derive(Debug, clap::Args)]
struct FolderArg {
    /// The cache folder [default: $XDG_CACHE_HOME/mkportable, else $HOME/.cache/mkportable].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
}

/// The cache folder cannot be listed or emptied.
#[derive(Debug)]
pub struct CacheError {
    /// What was being done: "reading", "clearing".
    pub action: &'static str,
    /// The cache folder.
    pub path: PathBuf,
    /// What went wrong.
    pub source: io::Error,
}

/// Neither `--cache` nor a variable that names the default folder.
#[derive(Debug)]
pub struct NoCacheFolder;

impl CacheArgs {
    /// The cache a build uses, or `None` for `--no-cache` or when no folder can
    /// be found (neither `--cache`, `XDG_CACHE_HOME` nor `HOME`).
    pub fn config(&self, env: &CacheEnv) -> Option<CacheConfig> {
        if self.no_cache {
            return None;
        }
        Some(CacheConfig {
            dir: self.cache.clone().or_else(|| default_dir(env))?,
            max_bytes: self.cache_size.unwrap_or(DEFAULT_MAX_BYTES),
            trust_stat: self.trust_stat,
        })
    }
}

impl CacheEnv {
    /// The variables of this process.
    pub fn from_process() -> CacheEnv {
        CacheEnv {
            xdg_cache_home: std::env::var_os("XDG_CACHE_HOME"),
            home: std::env::var_os("HOME"),
        }
    }
}

/// `$XDG_CACHE_HOME/mkportable`, else `$HOME/.cache/mkportable`. As the XDG
/// base directory specification says, an empty or relative `XDG_CACHE_HOME`
/// is ignored.
pub fn default_dir(env: &CacheEnv) -> Option<PathBuf> {
    let set = |v: &Option<OsString>| v.as_deref().filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = set(&env.xdg_cache_home).filter(|p| p.is_absolute()) {
        return Some(xdg.join("mkportable"));
    }
    set(&env.home).map(|home| home.join(".cache").join("mkportable"))
}

/// Parses `--cache-size`: bytes, or a number with a K, M, G or T suffix in
/// binary units (`64K`, `5G`; `KiB`, `k` and `5GB` too). At least 1 byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let invalid = || {
        "expected bytes, or a number with a K, M, G or T suffix (binary units), e.g. 5G".to_string()
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = s.split_at(digits);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let suffix = suffix.to_ascii_uppercase();
    let unit = suffix
        .strip_suffix("IB")
        .or_else(|| suffix.strip_suffix('B').filter(|u| !u.is_empty()))
        .unwrap_or(&suffix);
    let shift = match unit {
        "" if suffix.is_empty() => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(invalid()),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is more than {} bytes", u64::MAX))?;
    if bytes == 0 {
        return Err("the cache needs at least 1 byte (--no-cache turns it off)".to_string());
    }
    Ok(bytes)
}

fn cache_size(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// Opens the cache `config` names. Never fails: a cache that cannot be used
/// is off, and its warning reaches the build's report.
pub fn open(config: Option<CacheConfig>) -> Option<Arc<Cache>> {
    config.map(|config| Arc::new(Cache::open(config)))
}

/// The summary's cache line: `cache: 812 of 820 blocks reused, 3 files not read`.
pub fn summary_line(r: &CacheReport) -> String {
    let hits = r.block_hits + r.fragment_hits;
    let total = hits + r.block_misses + r.fragment_misses;
    let mut line = format!("cache: {hits} of {total} blocks reused");
    if r.files_not_read > 0 {
        line += &format!(
            ", {} files not read ({})",
            r.files_not_read,
            human(r.bytes_not_read)
        );
    }
    if r.bad_entries > 0 {
        line += &format!(", {} bad entries replaced", r.bad_entries);
    }
    if r.entries_evicted > 0 {
        line += &format!(", {} entries evicted", r.entries_evicted);
    }
    line
}

/// The `"cache"` member of the `--json` reports: an object with every field
/// of [`CacheReport`], or `null` when the build used no cache.
///
/// # Format
///
/// ```json
/// {"block_hits":812,"block_misses":8,"fragment_hits":40,"fragment_misses":1,"meta_hits":450,"meta_misses":0,"files_not_read":3,"bytes_not_read":40960,"bad_entries":0,"entries_written":9,"entries_evicted":0,"warning":null}
/// ```
///
/// - `block_hits`, `block_misses`: data blocks found in the cache, and compressed;
/// - `fragment_hits`, `fragment_misses`: the same for fragment blocks;
/// - `meta_hits`, `meta_misses`: the same for metadata blocks (inode, directory and lookup tables);
/// - `files_not_read`, `bytes_not_read`: files skipped by `--trust-stat`, and their size;
/// - `bad_entries`: damaged, truncated or foreign entries, ignored and rebuilt
///   (a pack whose index is damaged counts once);
/// - `entries_written`, `entries_evicted`: entries stored (good entries copied
///   out of a damaged pack included), and removed to stay under `--cache-size`;
/// - `warning`: why the cache was turned off part-way (a string), else `null`.
pub fn json_object(r: Option<&CacheReport>) -> String {
    let Some(r) = r else {
        return "null".to_string();
    };
    format!(
        "{{\"block_hits\":{},\"block_misses\":{},\"fragment_hits\":{},\"fragment_misses\":{},\"meta_hits\":{},\"meta_misses\":{},\"files_not_read\":{},\"bytes_not_read\":{},\"bad_entries\":{},\"entries_written\":{},\"entries_evicted\":{},\"warning\":{}}}",
        r.block_hits,
        r.block_misses,
        r.fragment_hits,
        r.fragment_misses,
        r.meta_hits,
        r.meta_misses,
        r.files_not_read,
        r.bytes_not_read,
        r.bad_entries,
        r.entries_written,
        r.entries_evicted,
        r.warning.as_deref().map_or("null".to_string(), json_string),
    )
}

/// Prints the cache's warning, if it has one, as one line on stderr. Called
/// once per build, whatever the reporting (`--quiet` and `--json` included).
pub fn print_warning(r: Option<&CacheReport>) {
    if let Some(warning) = r.and_then(|r| r.warning.as_deref()) {
        eprintln!("{}", warning_line(warning));
    }
}

/// `mkportable: warning: …`, on one line whatever the warning holds.
pub(crate) fn warning_line(warning: &str) -> String {
    let one_line: Vec<&str> = warning.lines().map(str::trim).collect();
    format!("mkportable: warning: {}", one_line.join(" "))
}

/// Runs `mkportable cache`.
pub fn run(args: Args) -> anyhow::Result<()> {
    run_with(args, &CacheEnv::from_process())
}

fn run_with(args: Args, env: &CacheEnv) -> anyhow::Result<()> {
    match args.command {
        Command::Stats { folder, json } => {
            let dir = folder.resolve(env)?;
            let stats = stats(&dir)?;
            let text = if json {
                stats_json(&dir, &stats)
            } else {
                stats_text(&dir, &stats)
            };
            let mut out = io::stdout().lock();
            writeln!(out, "{text}")
                .and_then(|()| out.flush())
                .context("writing to stdout")?;
        }
        Command::Clear { folder } => {
            let dir = folder.resolve(env)?;
            let removed = clear(&dir)?;
            eprintln!("{}", cleared_line(&dir, &removed));
        }
    }
    Ok(())
}

impl FolderArg {
    fn resolve(self, env: &CacheEnv) -> Result<PathBuf, NoCacheFolder> {
        self.cache.or_else(|| default_dir(env)).ok_or(NoCacheFolder)
    }
}

/// What `dir` holds; nothing if it does not exist yet.
fn stats(dir: &Path) -> Result<CacheStats, CacheError> {
    if !exists(dir, "reading")? {
        return Ok(CacheStats::default());
    }
    Cache::stats(dir).map_err(|source| CacheError {
        action: "reading",
        path: dir.to_path_buf(),
        source,
    })
}

/// Empties `dir`; nothing to do if it does not exist.
fn clear(dir: &Path) -> Result<CacheStats, CacheError> {
    if !exists(dir, "clearing")? {
        return Ok(CacheStats::default());
    }
    Cache::clear(dir).map_err(|source| CacheError {
        action: "clearing",
        path: dir.to_path_buf(),
        source,
    })
}

/// Whether `dir` exists; an error if it is something else than a folder.
fn exists(dir: &Path, action: &'static str) -> Result<bool, CacheError> {
    let error = |source| CacheError {
        action,
        path: dir.to_path_buf(),
        source,
    };
    match dir.metadata() {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(_) => Err(error(io::Error::from(io::ErrorKind::NotADirectory))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(error(e)),
    }
}

/// `mkportable cache stats`, for people.
fn stats_text(dir: &Path, s: &CacheStats) -> String {
    format!(
        "folder:       {}\nentries:      {}\nbytes:        {} ({})\nrecord bytes: {} ({})",
        dir.display(),
        s.entries,
        s.bytes,
        human(s.bytes),
        s.record_bytes,
        human(s.record_bytes),
    )
}

/// `mkportable cache stats --json`: one line holding one object.
///
/// # Format
///
/// ```json
/// {"type":"cache-stats","version":1,"folder":"/root/.cache/mkportable","entries":812,"bytes":43200000,"record_bytes":1200}
/// ```
///
/// - `type`: always `"cache-stats"`; `version`: the schema version, 1.
/// - `folder`: the cache folder (lossily converted if it is not UTF-8).
/// - `entries`, `bytes`: block entries and the bytes of their files;
///   `record_bytes`: the bytes of the file records (`--trust-stat`).
fn stats_json(dir: &Path, s: &CacheStats) -> String {
    format!(
        "{{\"type\":\"cache-stats\",\"version\":1,\"folder\":{},\"entries\":{},\"bytes\":{},\"record_bytes\":{}}}",
        json_string(&dir.to_string_lossy()),
        s.entries,
        s.bytes,
        s.record_bytes,
    )
}

/// What `mkportable cache clear` says on stderr.
fn cleared_line(dir: &Path, s: &CacheStats) -> String {
    format!(
        "cleared `{}`: removed {} entries ({}) and {} of file records",
        dir.display(),
        s.entries,
        human(s.bytes),
        human(s.record_bytes),
    )
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} the cache `{}`", self.action, self.path.display())
    }
}

impl std::error::Error for CacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl fmt::Display for NoCacheFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no cache folder: neither XDG_CACHE_HOME nor HOME is set (--cache DIR names one)",
        )
    }
}

impl std::error::Error for NoCacheFolder {}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command as Top};

    fn env(xdg: Option<&str>, home: Option<&str>) -> CacheEnv {
        CacheEnv {
            xdg_cache_home: xdg.map(OsString::from),
            home: home.map(OsString::from),
        }
    }

    #[test]
    fn default_folder() {
        let cases = [
            (Some("/xdg"), Some("/home/u"), Some("/xdg/mkportable")),
            (None, Some("/home/u"), Some("/home/u/.cache/mkportable")),
            (Some(""), Some("/home/u"), Some("/home/u/.cache/mkportable")),
            (
                Some("rel"),
                Some("/home/u"),
                Some("/home/u/.cache/mkportable"),
            ),
            (Some("/xdg"), None, Some("/xdg/mkportable")),
            (None, Some(""), None),
            (None, None, None),
        ];
        for (xdg, home, want) in cases {
            assert_eq!(
                default_dir(&env(xdg, home)),
                want.map(PathBuf::from),
                "{xdg:?} {home:?}"
            );
        }
    }

    #[test]
    fn sizes() {
        let good = [
            ("1", 1),
            ("4096", 4096),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64KiB", 64 << 10),
            ("3M", 3 << 20),
            ("5G", 5 << 30),
            ("5GB", 5 << 30),
            ("2T", 2 << 40),
            ("16777215T", 16_777_215 << 40),
        ];
        for (s, want) in good {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        assert_eq!(
            parse_size("5G"),
            Ok(DEFAULT_MAX_BYTES),
            "--cache-size's help says [default: 5G]"
        );
        for s in [
            "",
            "G",
            "5X",
            "5 G",
            "-1",
            "1.5G",
            "5GiBs",
            "5B",
            "0",
            "0K",
            "16777216T",
        ] {
            assert!(parse_size(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_size("5X").unwrap_err(),
            "expected bytes, or a number with a K, M, G or T suffix (binary units), e.g. 5G"
        );
    }

    /// A command with nothing but the cache flags.
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        cache: CacheArgs,
    }

    fn flags(args: &str) -> Result<CacheArgs, clap::Error> {
        let argv = ["t"].into_iter().chain(args.split_whitespace());
        Ok(Flags::try_parse_from(argv)?.cache)
    }

    #[test]
    fn flags_give_the_config() {
        let home = &env(None, Some("/home/u"));
        let none = &env(None, None);
        let config = |dir: &str, max_bytes, trust_stat| {
            Some(CacheConfig {
                dir: dir.into(),
                max_bytes,
                trust_stat,
            })
        };
        let cases = [
            (
                "",
                home,
                config("/home/u/.cache/mkportable", DEFAULT_MAX_BYTES, false),
            ),
            ("", none, None),
            ("--no-cache", home, None),
            ("--cache c", none, config("c", DEFAULT_MAX_BYTES, false)),
            (
                "--cache /c --cache-size 64K --trust-stat",
                home,
                config("/c", 64 << 10, true),
            ),
            (
                "--trust-stat",
                home,
                config("/home/u/.cache/mkportable", DEFAULT_MAX_BYTES, true),
            ),
        ];
        for (args, env, want) in cases {
            assert_eq!(flags(args).unwrap().config(env), want, "{args}");
        }
    }

    #[test]
    fn flag_errors() {
        // (args, start of the message, exit code)
        let cases = [
            ("--no-cache --cache c", "error: the argument '--no-cache' cannot be used with '--cache <DIR>'", 2),
            ("--no-cache --trust-stat", "error: the argument '--no-cache' cannot be used with '--trust-stat'", 2),
            ("--cache-size 5X", "error: invalid value '5X' for '--cache-size <SIZE>': expected bytes", 1),
            ("--cache-size 0", "error: invalid value '0' for '--cache-size <SIZE>': the cache needs at least 1 byte", 1),
            ("--cache-size", "error: a value is required for '--cache-size <SIZE>'", 2),
        ];
        for (args, want, code) in cases {
            let err = flags(args).unwrap_err();
            let line = crate::exit::clap_message(&err);
            assert!(line.starts_with(want), "{args}: {line}");
            assert_eq!(crate::exit::clap_code(&err), code, "{args}");
        }
    }

    #[test]
    fn reports() {
        let r = CacheReport {
            block_hits: 800,
            block_misses: 8,
            fragment_hits: 12,
            fragment_misses: 0,
            meta_hits: 30,
            meta_misses: 2,
            files_not_read: 3,
            bytes_not_read: 1536,
            bad_entries: 0,
            entries_written: 8,
            entries_evicted: 0,
            warning: Some("cache `/c` is full; \"building\" without it".into()),
        };
        assert_eq!(
            summary_line(&r),
            "cache: 812 of 820 blocks reused, 3 files not read (1.5 KiB)"
        );
        let cold = CacheReport {
            block_misses: 5,
            bad_entries: 2,
            entries_evicted: 1,
            ..CacheReport::default()
        };
        assert_eq!(
            summary_line(&cold),
            "cache: 0 of 5 blocks reused, 2 bad entries replaced, 1 entries evicted"
        );
        assert_eq!(
            json_object(Some(&r)),
            r#"{"block_hits":800,"block_misses":8,"fragment_hits":12,"fragment_misses":0,"meta_hits":30,"meta_misses":2,"files_not_read":3,"bytes_not_read":1536,"bad_entries":0,"entries_written":8,"entries_evicted":0,"warning":"cache `/c` is full; \"building\" without it"}"#
        );
        assert!(json_object(Some(&cold)).ends_with(r#","warning":null}"#));
        assert_eq!(json_object(None), "null");
        assert_eq!(
            warning_line("no space\nleft "),
            "mkportable: warning: no space left"
        );
    }

    #[test]
    fn stats_output() {
        let s = CacheStats {
            entries: 812,
            bytes: 43_200_000,
            record_bytes: 1200,
        };
        assert_eq!(
            stats_json("/c\"".as_ref(), &s),
            r#"{"type":"cache-stats","version":1,"folder":"/c\"","entries":812,"bytes":43200000,"record_bytes":1200}"#
        );
        assert_eq!(
            stats_text("/c".as_ref(), &s),
            "folder:       /c\nentries:      812\nbytes:        43200000 (41.2 MiB)\nrecord bytes: 1200 (1.2 KiB)"
        );
        assert_eq!(
            cleared_line("/c".as_ref(), &s),
            "cleared `/c`: removed 812 entries (41.2 MiB) and 1.2 KiB of file records"
        );
    }

    #[test]
    fn missing_folder_is_empty_and_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        assert_eq!(stats(&missing).unwrap(), CacheStats::default());
        assert_eq!(clear(&missing).unwrap(), CacheStats::default());
        assert!(!missing.exists());
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = anyhow::Error::from(stats(&file).unwrap_err());
        assert_eq!(
            format!("{err:#}"),
            format!("reading the cache `{}`: not a directory", file.display())
        );
        assert_eq!(crate::exit::code_for(&err), 1);
    }

    #[test]
    fn subcommand_arguments() {
        let parse = |args: &str| {
            let argv = ["mkportable", "cache"]
                .into_iter()
                .chain(args.split_whitespace());
            match Cli::try_parse_from(argv)?.command {
                Top::Cache(args) => Ok(args.command),
                other => panic!("not the cache subcommand: {other:?}"),
            }
        };
        let Command::Stats { folder, json } = parse("stats --cache c --json").unwrap() else {
            panic!("not stats");
        };
        assert_eq!((folder.cache, json), (Some(PathBuf::from("c")), true));
        let Command::Clear { folder } = parse("clear").unwrap() else {
            panic!("not clear");
        };
        assert_eq!(folder.cache, None);
        for bad in ["", "frob", "clear --json", "stats --cache"] {
            let err: clap::Error = parse(bad).unwrap_err();
            assert_eq!(crate::exit::clap_code(&err), 2, "{bad}");
        }
        let err = run_with(
            Args {
                command: Command::Stats {
                    folder: FolderArg { cache: None },
                    json: false,
                },
            },
            &env(None, None),
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "no cache folder: neither XDG_CACHE_HOME nor HOME is set (--cache DIR names one)"
        );
        assert_eq!(crate::exit::code_for(&err), 2);
    }
}
