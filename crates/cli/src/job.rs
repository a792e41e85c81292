//! One image build, whichever syntax asked for it: the time policy shared by
//! both front ends, the interrupt handler, the call into `mkportable-squash`,
//! and the report (a summary on stderr, or `--json` on stdout, and the cache's
//! warning if it has one).

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use mkportable_squash::{self as squash, write_image, CacheConfig, Options, Report, Tree};

use crate::cache;
use crate::exit::{ArgError, Interrupted, OutputExists};

/// Everything one build needs, parsed and validated.
#[derive(Debug)]
pub struct Job {
    /// Host files and directories to pack, in order.
    pub sources: Vec<PathBuf>,
    /// The image to write.
    pub output: PathBuf,
    /// Make a single directory source an entry of the root instead of the root.
    pub keep_as_directory: bool,
    /// The writer's settings, times already resolved.
    pub options: Options,
    /// The block cache to open for the write, if any (never for the mksquashfs syntax).
    pub cache: Option<CacheConfig>,
    /// What to print after a successful build.
    pub reporting: Reporting,
    /// Which command line it came from, so errors use its spellings.
    pub syntax: Syntax,
}

/// The two command-line syntaxes, which spell the same options differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `mkportable squash --long-options`.
    Squash,
    /// `mksquashfs SOURCE... DEST -options`.
    Mksquashfs,
}

/// What to print after a successful build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    /// Nothing.
    Quiet,
    /// One line on stderr, and one more about the cache if one was used.
    Summary,
    /// One JSON object on stdout (see [`json_report`]).
    Json,
}

/// Times given on the command line; [`TimeArgs::apply`] combines them with `SOURCE_DATE_EPOCH`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeArgs {
    /// `-mkfs-time` / `--mkfs-time`.
    pub mkfs_time: Option<u32>,
    /// `-all-time` / `--all-time`.
    pub all_time: Option<u32>,
}

impl TimeArgs {
    /// Sets the time fields of `options` as mksquashfs 4.5.1 does, except that
    /// flags win over the variable instead of conflicting with it:
    /// `SOURCE_DATE_EPOCH` is the creation time and clamps newer mtimes;
    /// `mkfs_time` replaces the creation time, `all_time` every mtime. With
    /// none of them the creation time is 0, never the clock.
    ///
    /// # Errors
    ///
    /// `SOURCE_DATE_EPOCH` that is not a non-negative integer.
    pub fn apply(
        self,
        options: &mut Options,
        source_date_epoch: Option<&OsStr>,
    ) -> Result<(), ArgError> {
        let epoch = source_date_epoch
            .map(|v| parse_time("SOURCE_DATE_EPOCH", &v.to_string_lossy()))
            .transpose()?;
        options.mkfs_time = self.mkfs_time.or(epoch).unwrap_or(0);
        options.clamp_mtime = epoch;
        options.all_time = self.all_time;
        Ok(())
    }
}

/// Parses seconds since the epoch; values past SquashFS's 32 bits become the largest it stores.
pub fn parse_time(option: &str, value: &str) -> Result<u32, ArgError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ArgError::invalid(
            option,
            value,
            "expected seconds since 1970-01-01 (a non-negative integer)",
        ));
    }
    // All digits, so the only possible failure is overflow.
    Ok(value.parse::<u32>().unwrap_or(u32::MAX))
}

/// Parses permission bits in octal, `755` or `0755`, up to `7777`.
pub fn parse_mode(option: &str, value: &str) -> Result<u16, ArgError> {
    let invalid = || ArgError::invalid(option, value, "expected an octal mode from 0 to 7777");
    if value.is_empty() || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(invalid());
    }
    u16::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(invalid)
}

/// Parses a numeric uid or gid.
pub fn parse_id(option: &str, value: &str) -> Result<u32, ArgError> {
    value
        .parse()
        .map_err(|_| ArgError::invalid(option, value, "expected a number from 0 to 4294967295"))
}

/// Builds the image `job` describes and prints its report.
///
/// # Errors
///
/// An existing output without overwrite, an unreadable source, anything the
/// writer reports, and [`Interrupted`] after SIGINT or SIGTERM.
pub fn run(mut job: Job) -> anyhow::Result<()> {
    let syntax = job.syntax;
    let exists = |output: PathBuf| OutputExists {
        path: output,
        flag: syntax.overwrite_flag(),
    };
    // Fail before walking the sources; the writer checks again when it renames.
    if !job.options.overwrite && job.output.symlink_metadata().is_ok() {
        return Err(exists(job.output).into());
    }
    job.options.cache = cache::open(job.cache);
    // Only a cache that trusts stat uses the files' stat fingerprints.
    let fingerprints = (job.options.cache.as_ref()).is_some_and(|c| c.config().trust_stat);
    let tree = Tree::from_sources(
        &job.sources,
        job.keep_as_directory,
        job.options.mkfs_time,
        fingerprints,
    )?;
    let report = write(&tree, &mut job.options, &job.output, syntax)?;
    cache::print_warning(report.cache.as_ref());
    match job.reporting {
        Reporting::Quiet => {}
        Reporting::Summary => eprintln!("{}", summary(&job.output, &report)),
        Reporting::Json => {
            let mut out = io::stdout().lock();
            writeln!(out, "{}", json_report(&job.output, &report))
                .and_then(|()| out.flush())
                .context("writing the report to stdout")?;
        }
    }
    Ok(())
}

/// Writes `tree` to `output` with `options`, stopping cleanly on SIGINT or
/// SIGTERM; errors use the spellings of `syntax`.
///
/// # Errors
///
/// [`OutputExists`], [`Interrupted`], and the writer's other errors.
pub fn write(
    tree: &Tree,
    options: &mut Options,
    output: &Path,
    syntax: Syntax,
) -> anyhow::Result<Report> {
    // Installed only now: until the writer runs there is nothing to clean up,
    // so Ctrl-C may stop the process at once.
    options.cancel = Some(cancel_on_signal()?);
    match write_image(tree, options, output) {
        Ok(report) => {
            // The image is complete: a report that cannot be written is
            // worth a warning, not a failed build.
            if let Some(path) = std::env::var_os(CPU_REPORT_ENV) {
                if let Err(e) = std::fs::write(&path, cpu_json(&report.cpu) + "\n") {
                    eprintln!(
                        "{}",
                        crate::cache::warning_line(&format!(
                            "cannot write the CPU report to `{}` ({CPU_REPORT_ENV}): {e}",
                            Path::new(&path).display()
                        ))
                    );
                }
            }
            Ok(report)
        }
        Err(squash::Error::Interrupted) => Err(Interrupted {
            output: output.to_path_buf(),
        }
        .into()),
        Err(squash::Error::OutputExists { path }) => Err(OutputExists {
            path,
            flag: syntax.overwrite_flag(),
        }
        .into()),
        Err(e) => Err(syntax.respell(e).into()),
    }
}

/// Names a file to which a successful build writes its threads' on-CPU
/// time ([`cpu_json`]), for `cargo xtask bench`: set by the bench, read by
/// no one else.
pub const CPU_REPORT_ENV: &str = "MKPORTABLE_CPU_REPORT";

/// The CPU report: one JSON object, seconds, `null` where the kernel did
/// not say.
///
/// ```json
/// {"compress_s":61.234567,"read_s":0.812345}
/// ```
fn cpu_json(cpu: &squash::ThreadCpu) -> String {
    let secs = |d: Option<std::time::Duration>| {
        d.map_or("null".to_string(), |d| format!("{:.6}", d.as_secs_f64()))
    };
    format!(
        r#"{{"compress_s":{},"read_s":{}}}"#,
        secs(cpu.compress),
        secs(cpu.read)
    )
}

impl Syntax {
    /// The flag that allows replacing an existing output.
    pub fn overwrite_flag(self) -> &'static str {
        match self {
            Syntax::Squash => "--overwrite",
            Syntax::Mksquashfs => "-noappend",
        }
    }

    /// `e` with the library's mksquashfs spellings of compressor options
    /// replaced by this syntax's.
    pub fn respell(self, e: squash::Error) -> squash::Error {
        match (self, e) {
            (Syntax::Squash, squash::Error::InvalidOption { option, reason }) => {
                squash::Error::InvalidOption {
                    option: respell(&option),
                    reason: respell(&reason),
                }
            }
            (_, e) => e,
        }
    }
}

/// `squash`'s flag for each mksquashfs compressor option, as the library spells them.
pub const X_OPTIONS: [(&str, &str); 3] = [
    ("--dict-size", "-Xdict-size"),
    ("--bcj", "-Xbcj"),
    ("--level", "-Xcompression-level"),
];

fn respell(text: &str) -> String {
    let mut text = text.to_string();
    for (ours, x) in X_OPTIONS {
        text = text.replace(x, ours);
    }
    text
}

/// A flag that SIGINT and SIGTERM set.
fn cancel_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    ctrlc::set_handler(move || set.store(true, Ordering::SeqCst))
        .context("installing the SIGINT handler")?;
    Ok(flag)
}

/// The summary printed on stderr after a build: one line, and a second about
/// the cache if one was used.
fn summary(output: &std::path::Path, r: &Report) -> String {
    let mut line = format!(
        "wrote `{}`: {} files, {} inodes, {} in, image {}",
        output.display(),
        r.files,
        r.inodes,
        human(r.bytes_in),
        human(r.bytes_written),
    );
    if r.dedup_saved > 0 {
        line += &format!(", duplicates saved {}", human(r.dedup_saved));
    }
    if let Some(cache) = &r.cache {
        line += "\n";
        line += &cache::summary_line(cache);
    }
    line
}

/// The `--json` report: one line holding one object.
///
/// # Format
///
/// ```json
/// {"type":"squash-report","version":1,"output":"out.raw","inodes":12,"files":9,"bytes_in":40960,"bytes_written":8192,"dedup_saved":4096,"cache":null}
/// ```
///
/// - `type`: always `"squash-report"`; `version`: the schema version, 1. A
///   version bump means a field changed meaning or went away; new fields may
///   appear without one.
/// - `output`: the image path (lossily converted if it is not UTF-8).
/// - `inodes`, `files`: inodes and regular files written.
/// - `bytes_in`: bytes of file contents read; `bytes_written`: size of the
///   image, padding included; `dedup_saved`: bytes of contents not stored
///   again because an identical file was.
/// - `cache`: what the block cache did (see [`cache::json_object`]), or
///   `null` with `--no-cache` or when no cache folder was found.
pub fn json_report(output: &std::path::Path, r: &Report) -> String {
    format!(
        "{{\"type\":\"squash-report\",\"version\":1,\"output\":{},\"inodes\":{},\"files\":{},\"bytes_in\":{},\"bytes_written\":{},\"dedup_saved\":{},\"cache\":{}}}",
        json_string(&output.to_string_lossy()),
        r.inodes,
        r.files,
        r.bytes_in,
        r.bytes_written,
        r.dedup_saved,
        cache::json_object(r.cache.as_ref()),
    )
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        // (flags, SOURCE_DATE_EPOCH) -> (mkfs_time, all_time, clamp_mtime)
        let none = TimeArgs::default();
        let flags = TimeArgs {
            mkfs_time: Some(5),
            all_time: Some(6),
        };
        let cases = [
            (none, None, (0, None, None)),
            (
                none,
                Some("1700000000"),
                (1_700_000_000, None, Some(1_700_000_000)),
            ),
            (none, Some("99999999999"), (u32::MAX, None, Some(u32::MAX))),
            (flags, None, (5, Some(6), None)),
            (flags, Some("100"), (5, Some(6), Some(100))),
            (
                TimeArgs {
                    mkfs_time: None,
                    all_time: Some(6),
                },
                Some("100"),
                (100, Some(6), Some(100)),
            ),
        ];
        for (args, epoch, want) in cases {
            let mut options = Options::default();
            args.apply(&mut options, epoch.map(OsStr::new)).unwrap();
            assert_eq!(
                (options.mkfs_time, options.all_time, options.clamp_mtime),
                want,
                "{args:?} {epoch:?}"
            );
        }
    }

    #[test]
    fn bad_source_date_epoch_is_named() {
        for bad in ["", "abc", "-5", "1.5", " 1"] {
            let err = TimeArgs::default()
                .apply(&mut Options::default(), Some(OsStr::new(bad)))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid value `{bad}` for `SOURCE_DATE_EPOCH`: expected seconds since 1970-01-01 (a non-negative integer)")
            );
        }
    }

    #[test]
    fn values() {
        assert_eq!(parse_time("-t", "0"), Ok(0));
        assert_eq!(parse_time("-t", "4294967296"), Ok(u32::MAX));
        assert_eq!(
            parse_time("-t", "123456789012345678901234567890"),
            Ok(u32::MAX)
        );
        assert!(parse_time("-t", "+1").is_err());
        for (s, want) in [
            ("755", Some(0o755)),
            ("0755", Some(0o755)),
            ("7777", Some(0o7777)),
            ("0", Some(0)),
        ] {
            assert_eq!(parse_mode("-m", s).ok(), want, "{s}");
        }
        for s in ["", "999", "17777", "+755", "0x1ff", "rwx"] {
            assert_eq!(
                parse_mode("-root-mode", s).unwrap_err().to_string(),
                format!(
                    "invalid value `{s}` for `-root-mode`: expected an octal mode from 0 to 7777"
                )
            );
        }
        assert_eq!(parse_id("-u", "4294967295"), Ok(u32::MAX));
        assert!(parse_id("-u", "4294967296").is_err());
        assert!(parse_id("-u", "root").is_err());
    }

    #[test]
    fn reports() {
        let r = Report {
            inodes: 12,
            files: 9,
            bytes_in: 3 << 20,
            bytes_written: 1 << 20,
            dedup_saved: 1536,
            cache: None,
            cpu: squash::ThreadCpu::default(),
        };
        assert_eq!(
            json_report("dir/o\"ut\n.raw".as_ref(), &r),
            r#"{"type":"squash-report","version":1,"output":"dir/o\"ut\n.raw","inodes":12,"files":9,"bytes_in":3145728,"bytes_written":1048576,"dedup_saved":1536,"cache":null}"#
        );
        assert_eq!(
            summary("o.raw".as_ref(), &r),
            "wrote `o.raw`: 9 files, 12 inodes, 3.0 MiB in, image 1.0 MiB, duplicates saved 1.5 KiB"
        );
        assert_eq!(cpu_json(&r.cpu), r#"{"compress_s":null,"read_s":null}"#);
        let timed = squash::ThreadCpu {
            compress: Some(std::time::Duration::from_micros(61_234_567)),
            read: Some(std::time::Duration::from_nanos(812_345_678)),
        };
        assert_eq!(
            cpu_json(&timed),
            r#"{"compress_s":61.234567,"read_s":0.812346}"#
        );
        let empty = Report {
            inodes: 1,
            bytes_written: 4096,
            ..Report::default()
        };
        assert_eq!(
            summary("o".as_ref(), &empty),
            "wrote `o`: 0 files, 1 inodes, 0 B in, image 4.0 KiB"
        );
        let warm = Report {
            cache: Some(squash::CacheReport {
                block_hits: 3,
                fragment_hits: 1,
                ..Default::default()
            }),
            ..empty
        };
        assert_eq!(
            summary("o".as_ref(), &warm),
            "wrote `o`: 0 files, 1 inodes, 0 B in, image 4.0 KiB\ncache: 4 of 4 blocks reused"
        );
        assert!(json_report("o".as_ref(), &warm).ends_with(
            r#","dedup_saved":0,"cache":{"block_hits":3,"block_misses":0,"fragment_hits":1,"fragment_misses":0,"meta_hits":0,"meta_misses":0,"files_not_read":0,"bytes_not_read":0,"bad_entries":0,"entries_written":0,"entries_evicted":0,"warning":null}}"#
        ));
        assert_eq!(json_string("\u{1}\\"), r#""\u0001\\""#);
    }

    #[test]
    fn respelling() {
        let e = || squash::Error::InvalidOption {
            option: "-Xcompression-level".into(),
            reason: "not an option of xz (it takes -Xdict-size and -Xbcj)".into(),
        };
        assert_eq!(
            Syntax::Squash.respell(e()).to_string(),
            "invalid option --level: not an option of xz (it takes --dict-size and --bcj)"
        );
        assert_eq!(Syntax::Mksquashfs.respell(e()).to_string(), e().to_string());
    }
}
