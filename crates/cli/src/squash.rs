//! `mkportable squash`: pack host files into a SquashFS image, with
//! conventional `--long` options. The writer's defaults apply unless a flag
//! says otherwise (xz with a full-block dictionary, 128 KiB blocks, no NFS
//! export table).

use std::path::PathBuf;

use clap::ValueEnum;
use mkportable_squash::{self as squash, parse_block_size, Compression, Options};

use crate::cache::{CacheArgs, CacheEnv};
use crate::job::{self, Job, Reporting, Syntax, TimeArgs};

const AFTER_HELP: &str = "\
Examples:
  Pack the contents of rootfs/ (it becomes the image's root), xz, 1 MiB blocks:
    mkportable squash --comp xz --block-size 1M rootfs/ image.raw

  nixpkgs' portableService call, in this syntax and in mksquashfs's:
    mkportable squash --overwrite --keep-as-directory --all-root --root-mode 755 \\
        --block-size 1M --comp xz --dict-size 100% nix ROOT/* OUT.raw
    mkportable mksquashfs nix ROOT/* OUT.raw -quiet -noappend -exit-on-error \\
        -keep-as-directory -all-root -root-mode 755 -b 1M -comp xz -Xdict-size 100%

  zstd at level 19, every file owned by root, times pinned for a reproducible image:
    SOURCE_DATE_EPOCH=1700000000 mkportable squash --comp zstd --level 19 --all-root dir/ out.img

  Rebuild from a Nix store tree, reading only files whose stat changed:
    mkportable squash --overwrite --trust-stat --cache-size 20G rootfs/ image.raw

Sources: one directory becomes the image's root (it keeps that directory's owner,
mode and time). Several sources, a file, or --keep-as-directory: each source becomes
an entry of a new root (mode 777, owned by root); repeated names get _1, _2, ...

Times: nothing comes from the clock. If SOURCE_DATE_EPOCH is set it is the image's
creation time, and file times newer than it are clamped to it; --mkfs-time and
--all-time override it. With neither, the creation time is 0 (1970-01-01), so the
same files always give the same image.

Cache: compressed blocks are kept in $XDG_CACHE_HOME/mkportable (else
$HOME/.cache/mkportable) and reused by later builds, so a rebuild compresses only
what changed. The image is the same with or without it; `mkportable cache` shows
or clears it.";

/// Arguments of `mkportable squash`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Host files and directories to pack.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// The image to write.
    #[arg(value_name = "OUTPUT")]
    output: PathBuf,

    /// Compressor.
    #[arg(long, value_enum, default_value_t = Comp::Xz, help_heading = "Compression")]
    comp: Comp,
    /// Data block size: a power of two from 4K to 1M.
    #[arg(long, value_name = "SIZE", default_value = "128K", value_parser = block_size, help_heading = "Compression")]
    block_size: u32,
    /// xz dictionary size, in bytes (32K) or percent of the block size (100%) [default: 100%].
    #[arg(long, value_name = "SIZE", help_heading = "Compression")]
    dict_size: Option<String>,
    /// xz: also try these BCJ filters and keep the smallest result
    /// (x86, arm, armthumb, powerpc, sparc, ia64; comma-separated).
    #[arg(long, value_name = "FILTERS", help_heading = "Compression")]
    bcj: Option<String>,
    /// Compression level: zstd 1-22 (default 15), gzip 1-9 (default 9).
    #[arg(long, value_name = "N", help_heading = "Compression")]
    level: Option<String>,

    /// Make every file owned by uid 0 and gid 0.
    #[arg(long, help_heading = "Ownership and times")]
    all_root: bool,
    /// Give every file this uid (wins over --all-root).
    #[arg(long, value_name = "UID", help_heading = "Ownership and times")]
    force_uid: Option<u32>,
    /// Give every file this gid (wins over --all-root).
    #[arg(long, value_name = "GID", help_heading = "Ownership and times")]
    force_gid: Option<u32>,
    /// Permission bits of the root directory, in octal (755).
    #[arg(long, value_name = "MODE", value_parser = root_mode, help_heading = "Ownership and times")]
    root_mode: Option<u16>,
    /// The image's creation time, in seconds since 1970-01-01 [default: SOURCE_DATE_EPOCH, else 0].
    #[arg(long, value_name = "SECS", value_parser = time, help_heading = "Ownership and times")]
    mkfs_time: Option<u32>,
    /// Give every file this modification time, in seconds since 1970-01-01.
    #[arg(long, value_name = "SECS", value_parser = time, help_heading = "Ownership and times")]
    all_time: Option<u32>,

    /// Do not pack small files and tails into shared fragment blocks.
    #[arg(long, help_heading = "Layout")]
    no_fragments: bool,
    /// Store identical files again instead of once.
    #[arg(long, help_heading = "Layout")]
    no_dedup: bool,
    /// Leave out extended attributes.
    #[arg(long, help_heading = "Layout")]
    no_xattrs: bool,
    /// Write the NFS export table (mksquashfs writes it by default).
    #[arg(long, help_heading = "Layout")]
    exports: bool,
    /// Make a single directory source an entry of the root instead of the root.
    #[arg(long, help_heading = "Layout")]
    keep_as_directory: bool,

    /// Compression threads; 0 means one per core. The image is the same for any number.
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Replace OUTPUT if it exists (it is replaced only once the new image is complete).
    #[arg(long)]
    overwrite: bool,
    /// Print nothing on success.
    #[arg(long, short)]
    quiet: bool,
    /// Print a JSON report on stdout: one line, `"type":"squash-report"`.
    #[arg(long)]
    json: bool,

    /// The block cache.
    #[command(flatten)]
    cache: CacheArgs,
}

/// Compressors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Comp {
    /// xz (LZMA2): the smallest images.
    Xz,
    /// zstd: fast to unpack.
    Zstd,
    /// gzip (zlib): readable by every kernel.
    Gzip,
}

/// Runs `mkportable squash`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let source_date_epoch = std::env::var_os("SOURCE_DATE_EPOCH");
    job::run(args.into_job(source_date_epoch.as_deref(), &CacheEnv::from_process())?)
}

impl Args {
    fn into_job(
        self,
        source_date_epoch: Option<&std::ffi::OsStr>,
        cache_env: &CacheEnv,
    ) -> anyhow::Result<Job> {
        let mut options = Options {
            compression: compression(self.comp, self.dict_size, self.bcj, self.level)?,
            block_size: self.block_size,
            all_root: self.all_root,
            force_uid: self.force_uid,
            force_gid: self.force_gid,
            root_mode: self.root_mode,
            fragments: !self.no_fragments,
            dedup: !self.no_dedup,
            xattrs: !self.no_xattrs,
            exports: self.exports,
            threads: self.threads,
            overwrite: self.overwrite,
            ..Options::default()
        };
        let times = TimeArgs {
            mkfs_time: self.mkfs_time,
            all_time: self.all_time,
        };
        times.apply(&mut options, source_date_epoch)?;
        let reporting = match (self.json, self.quiet) {
            (true, _) => Reporting::Json,
            (false, true) => Reporting::Quiet,
            (false, false) => Reporting::Summary,
        };
        Ok(Job {
            sources: self.sources,
            output: self.output,
            keep_as_directory: self.keep_as_directory,
            options,
            cache: self.cache.config(cache_env),
            reporting,
            syntax: Syntax::Squash,
        })
    }
}

/// Asks the library for the settings, so both syntaxes share one validation;
/// its errors then name our flags rather than mksquashfs's.
fn compression(
    comp: Comp,
    dict_size: Option<String>,
    bcj: Option<String>,
    level: Option<String>,
) -> Result<Compression, squash::Error> {
    let name = comp
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string();
    let x_options: Vec<(String, String)> = [dict_size, bcj, level]
        .into_iter()
        .zip(job::X_OPTIONS)
        .filter_map(|(value, (_, x))| Some((x.to_string(), value?)))
        .collect();
    Compression::from_mksquashfs(&name, &x_options).map_err(|e| Syntax::Squash.respell(e))
}

fn block_size(s: &str) -> Result<u32, String> {
    parse_block_size(s).map_err(|e| e.to_string())
}

fn root_mode(s: &str) -> Result<u16, String> {
    job::parse_mode("--root-mode", s)
        .map_err(|_| "expected an octal mode from 0 to 7777".to_string())
}

fn time(s: &str) -> Result<u32, String> {
    job::parse_time("", s)
        .map_err(|_| "expected seconds since 1970-01-01 (a non-negative integer)".to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use mkportable_squash::DictSize;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(args: &str, epoch: Option<&str>) -> anyhow::Result<Job> {
        let argv = ["mkportable", "squash"]
            .into_iter()
            .chain(args.split_whitespace());
        let Command::Squash(args) = Cli::try_parse_from(argv)?.command else {
            panic!("not the squash subcommand");
        };
        args.into_job(epoch.map(std::ffi::OsStr::new), &CacheEnv::default())
    }

    /// `args` → the options they set, starting from the writer's defaults.
    fn check(args: &str, edit: fn(&mut Options)) {
        let job = parse(args, None).unwrap_or_else(|e| panic!("{args}: {e:#}"));
        let mut want = Options::default();
        edit(&mut want);
        assert_eq!(format!("{:?}", job.options), format!("{want:?}"), "{args}");
    }

    /// Arguments, and how they change the default options.
    type Case = (&'static str, fn(&mut Options));

    #[test]
    fn flags_set_options() {
        let cases: &[Case] = &[
            ("a out", |_| {}),
            ("--block-size 1M a out", |o| o.block_size = 1 << 20),
            ("--block-size 4096 a out", |o| o.block_size = 4096),
            ("--all-root a out", |o| o.all_root = true),
            ("--force-uid 1000 --force-gid 100 a out", |o| {
                (o.force_uid, o.force_gid) = (Some(1000), Some(100))
            }),
            ("--root-mode 755 a out", |o| o.root_mode = Some(0o755)),
            ("--root-mode 01777 a out", |o| o.root_mode = Some(0o1777)),
            ("--mkfs-time 7 a out", |o| o.mkfs_time = 7),
            ("--all-time 99999999999 a out", |o| {
                o.all_time = Some(u32::MAX)
            }),
            ("--no-fragments a out", |o| o.fragments = false),
            ("--no-dedup a out", |o| o.dedup = false),
            ("--no-xattrs a out", |o| o.xattrs = false),
            ("--exports a out", |o| o.exports = true),
            ("--threads 3 a out", |o| o.threads = 3),
            ("--overwrite a out", |o| o.overwrite = true),
            ("--comp gzip a out", |o| {
                o.compression = Compression::Gzip { level: 9 }
            }),
            ("--comp zstd --level 19 a out", |o| {
                o.compression = Compression::Zstd { level: 19 }
            }),
            ("--comp xz --dict-size 50% a out", |o| {
                o.compression = Compression::Xz {
                    dict_size: DictSize::Percent(50),
                    filters: vec![],
                }
            }),
        ];
        for (args, edit) in cases {
            check(args, *edit);
        }
    }

    #[test]
    fn paths_and_reporting() {
        let job = parse("--keep-as-directory a b/ c.img", None).unwrap();
        assert_eq!(job.sources, [PathBuf::from("a"), PathBuf::from("b/")]);
        assert_eq!(job.output, PathBuf::from("c.img"));
        assert!(job.keep_as_directory);
        assert_eq!(job.reporting, Reporting::Summary);
        assert_eq!(parse("-q a b", None).unwrap().reporting, Reporting::Quiet);
        assert_eq!(
            parse("--quiet --json a b", None).unwrap().reporting,
            Reporting::Json
        );
    }

    #[test]
    fn cache_flags_reach_the_job() {
        assert_eq!(parse("a out", None).unwrap().cache, None, "no folder found");
        let job = parse("--cache c --cache-size 1M --trust-stat a out", None).unwrap();
        assert_eq!(
            job.cache,
            Some(mkportable_squash::CacheConfig {
                dir: "c".into(),
                max_bytes: 1 << 20,
                trust_stat: true,
            })
        );
        assert!(job.options.cache.is_none(), "opened only when run");
        assert_eq!(parse("--no-cache a out", None).unwrap().cache, None);
    }

    #[test]
    fn source_date_epoch() {
        let job = parse("a out", Some("1700000000")).unwrap();
        assert_eq!(
            (job.options.mkfs_time, job.options.clamp_mtime),
            (1_700_000_000, Some(1_700_000_000))
        );
        let job = parse("--mkfs-time 5 a out", Some("1700000000")).unwrap();
        assert_eq!(
            (job.options.mkfs_time, job.options.clamp_mtime),
            (5, Some(1_700_000_000))
        );
        let err = parse("a out", Some("soon")).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), 1);
    }

    #[test]
    fn errors() {
        // (args, start of the message, exit code)
        let cases = [
            (
                "out",
                "error: the following required arguments were not provided",
                2,
            ),
            (
                "--frobnicate a out",
                "error: unexpected argument '--frobnicate' found",
                2,
            ),
            (
                "--root-mode 999 a out",
                "error: invalid value '999' for '--root-mode <MODE>': expected an octal",
                1,
            ),
            (
                "--block-size 3K a out",
                "error: invalid value '3K' for '--block-size <SIZE>': invalid option block size",
                1,
            ),
            (
                "--mkfs-time yesterday a out",
                "error: invalid value 'yesterday' for '--mkfs-time <SECS>'",
                1,
            ),
            (
                "--comp lz4 a out",
                "error: invalid value 'lz4' for '--comp <COMP>'",
                1,
            ),
        ];
        for (args, want, code) in cases {
            let argv = ["mkportable", "squash"]
                .into_iter()
                .chain(args.split_whitespace());
            let err = Cli::try_parse_from(argv).unwrap_err();
            let line = crate::exit::clap_message(&err);
            assert!(line.starts_with(want), "{args}: {line}");
            assert_eq!(crate::exit::clap_code(&err), code, "{args}");
        }
    }

    #[test]
    fn compressor_errors_name_our_flags() {
        let err = parse("--comp zstd --level 99 a out", None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("--level") && !msg.contains("-Xcompression-level"),
            "{msg}"
        );
        assert_eq!(crate::exit::code_for(&err), 1);
        let err = parse("--comp gzip --dict-size 50% a out", None).unwrap_err();
        assert!(format!("{err:#}").contains("--dict-size"), "{err:#}");
    }
}
