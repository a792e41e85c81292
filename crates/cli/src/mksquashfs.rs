//! The mksquashfs-compatible personality: `mkportable mksquashfs ARGS…`, or
//! the binary invoked under the name `mksquashfs`.
//!
//! The syntax is mksquashfs 4.5.1's: `SOURCE... DEST [OPTIONS]`, the paths
//! first (up to the first argument starting with `-`), then single-dash
//! options. clap cannot express that, so this module parses by hand. It
//! accepts mksquashfs's spellings of what mkportable supports, with
//! mksquashfs's defaults (gzip, NFS export table on), and rejects any other
//! option by name, so a build script never gets an image it did not ask for.
//!
//! Where it differs from mksquashfs on purpose:
//! - no appending: without `-noappend` an existing DEST is an error, and it
//!   is never modified;
//! - no clock: without `SOURCE_DATE_EPOCH`, `-mkfs-time` or `-all-time` the
//!   creation time (and the time of a synthesized root) is 0, not "now";
//! - `-mkfs-time` and `-all-time` override `SOURCE_DATE_EPOCH` instead of
//!   conflicting with it, and times past 2106 are clamped, not refused;
//! - `-force-uid` and `-force-gid` take numbers, not user or group names.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use mkportable_squash::{parse_block_size, Compression, Options};

use crate::exit::ArgError;
use crate::job::{self, parse_id, parse_mode, parse_time, Job, Reporting, Syntax, TimeArgs};

/// What `-comp` takes.
const COMPRESSORS: &str = "a compressor: gzip, xz or zstd";

/// mksquashfs's default compressor.
const DEFAULT_COMP: &str = "gzip";

const USAGE: &str = "usage: mksquashfs SOURCE... DEST [OPTIONS], see -help";

const HELP: &str = "\
mkportable's mksquashfs-compatible personality (mksquashfs 4.5.1 syntax).

Usage: mksquashfs SOURCE... DEST [OPTIONS]
       mkportable mksquashfs SOURCE... DEST [OPTIONS]

One directory SOURCE becomes the image's root; several sources (or
-keep-as-directory) become entries of a new root, as with mksquashfs.

Options:
  -comp <comp>           compressor: gzip (default), xz, zstd
  -b <block_size>        data block size, 4K to 1M (default 128K)
  -Xdict-size <size>     xz: dictionary size, bytes or percent of the block
  -Xbcj <filters>        xz: also try x86, arm, armthumb, powerpc, sparc, ia64
  -Xcompression-level <n> gzip 1-9 (default 9), zstd 1-22 (default 15)
  -noappend              replace DEST if it exists (appending is not supported:
                         without -noappend an existing DEST is an error)
  -keep-as-directory     one directory SOURCE becomes an entry of the root
  -all-root, -root-owned make every file owned by root
  -force-uid <uid>       give every file this numeric uid
  -force-gid <gid>       give every file this numeric gid
  -root-mode <mode>      permission bits of the root directory, in octal
  -mkfs-time <time>      creation time, seconds since the epoch (also -fstime)
  -all-time <time>       give every file this time
  -no-fragments          do not use fragment blocks
  -no-duplicates         store identical files again
  -no-xattrs, -xattrs    leave out / store extended attributes (default: store)
  -no-exports, -exports  leave out / write the NFS export table (default: write)
  -processors <n>        compression threads (default: one per core)
  -quiet                 print nothing on success
  -reproducible, -exit-on-error, -no-progress, -progress, -no-recovery
                         accepted: mkportable always behaves that way
  -version, -help

Any other option is an error that names it.

Times: nothing comes from the clock. SOURCE_DATE_EPOCH, if set, is the creation
time and clamps newer file times; -mkfs-time and -all-time override it. With
none of them the creation time is 0 (1970-01-01).

Example (nixpkgs' portableService):
  mksquashfs nix ROOT/* OUT.raw -quiet -noappend -exit-on-error \\
      -keep-as-directory -all-root -root-mode 755 -b 1M -comp xz -Xdict-size 100%
";

/// What a command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Build an image (boxed: a `Job` is large beside the other variants).
    Build(Box<Job>),
    /// Print the options (`-help`, `-h`).
    Help,
    /// Print the version (`-version`).
    Version,
}

/// Whether the binary was started as `mksquashfs` (through a symlink or a copy).
pub fn is_invoked_as(argv0: &OsStr) -> bool {
    Path::new(argv0).file_name() == Some(OsStr::new("mksquashfs"))
}

/// Runs the personality on `args` (without the program name).
pub fn run(args: &[OsString]) -> anyhow::Result<()> {
    let source_date_epoch = std::env::var_os("SOURCE_DATE_EPOCH");
    let text = match parse(args, source_date_epoch.as_deref())? {
        Parsed::Build(job) => return job::run(*job),
        Parsed::Help => HELP.to_string(),
        Parsed::Version => format!(
            "mkportable {}: mksquashfs 4.5.1-compatible personality (SquashFS 4.0; gzip, xz, zstd)\n",
            env!("CARGO_PKG_VERSION")
        ),
    };
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

/// Parses mksquashfs's arguments; `source_date_epoch` is the variable's value, if set.
///
/// # Errors
///
/// [`ArgError`] for a malformed command line or option value; the library's
/// [`mkportable_squash::Error::InvalidOption`] for a compressor or block size it refuses.
pub fn parse(args: &[OsString], source_date_epoch: Option<&OsStr>) -> anyhow::Result<Parsed> {
    // Like mksquashfs, help and version win wherever they appear.
    if args
        .iter()
        .any(|a| matches!(a.to_str(), Some("-help" | "-h" | "--help")))
    {
        return Ok(Parsed::Help);
    }
    if args
        .iter()
        .any(|a| matches!(a.to_str(), Some("-version" | "--version")))
    {
        return Ok(Parsed::Version);
    }
    let first_option = args
        .iter()
        .position(|a| a.as_bytes().starts_with(b"-"))
        .unwrap_or(args.len());
    let (paths, opts) = args.split_at(first_option);
    let (output, sources) = match paths.split_last() {
        None => return Err(ArgError::Usage(format!("missing SOURCE and DEST ({USAGE})")).into()),
        Some((only, [])) => {
            let only = only.to_string_lossy();
            return Err(
                ArgError::Usage(format!("missing DEST after SOURCE `{only}` ({USAGE})")).into(),
            );
        }
        Some((output, sources)) => (
            PathBuf::from(output),
            sources.iter().map(PathBuf::from).collect(),
        ),
    };
    // No option or value we accept is valid with a replacement character in
    // it, so lossy conversion cannot turn a bad argument into a good one.
    let opts: Vec<String> = opts
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();

    // As mksquashfs does, find the compressor first: its -X options may come before -comp.
    let comp = find_comp(&opts)?;
    let comp_name = comp.unwrap_or(DEFAULT_COMP);
    Compression::from_mksquashfs(comp_name, &[])?;
    let x_takes_value = Compression::mksquashfs_x_options(comp_name);

    // mksquashfs's layout: plain tail packing (stable packing serves the cache, which this personality does not use).
    let mut options = Options {
        exports: true,
        stable_fragments: false,
        ..Options::default()
    };
    let mut x_options = Vec::new();
    let mut times = TimeArgs::default();
    let mut keep_as_directory = false;
    let mut quiet = false;
    let mut it = opts.iter();
    while let Some(opt) = it.next() {
        let opt = opt.as_str();
        match opt {
            "-noappend" => options.overwrite = true,
            "-quiet" => quiet = true,
            "-keep-as-directory" => keep_as_directory = true,
            "-all-root" | "-root-owned" => options.all_root = true,
            "-no-fragments" => options.fragments = false,
            "-no-duplicates" => options.dedup = false,
            "-no-xattrs" => options.xattrs = false,
            "-xattrs" => options.xattrs = true,
            "-no-exports" => options.exports = false,
            "-exports" => options.exports = true,
            // Always so here: images are reproducible, every error is fatal,
            // there is no progress bar and no recovery file.
            "-reproducible" | "-exit-on-error" | "-no-progress" | "-progress" | "-no-recovery" => {}
            "-comp" => {
                value(&mut it, opt, COMPRESSORS)?; // Already read by find_comp.
            }
            "-b" => {
                options.block_size =
                    parse_block_size(value(&mut it, opt, "a block size such as 128K or 1M")?)?
            }
            "-processors" => {
                options.threads = parse_processors(value(&mut it, opt, "a number of threads")?)?
            }
            "-mkfs-time" | "-fstime" => {
                times.mkfs_time = Some(parse_time(
                    opt,
                    value(&mut it, opt, "seconds since the epoch")?,
                )?);
            }
            "-all-time" => {
                times.all_time = Some(parse_time(
                    opt,
                    value(&mut it, opt, "seconds since the epoch")?,
                )?)
            }
            "-root-mode" => {
                options.root_mode = Some(parse_mode(opt, value(&mut it, opt, "an octal mode")?)?)
            }
            "-force-uid" => {
                options.force_uid = Some(parse_id(opt, value(&mut it, opt, "a numeric uid")?)?)
            }
            "-force-gid" => {
                options.force_gid = Some(parse_id(opt, value(&mut it, opt, "a numeric gid")?)?)
            }
            x if x.starts_with("-X") && x_takes_value.contains(&x) => {
                let v = value(&mut it, opt, "a value for the compressor")?;
                x_options.push((x.to_string(), v.to_string()));
            }
            x if x.starts_with("-X") => {
                let note = match (comp, x_takes_value) {
                    (None, _) => {
                        format!("the default compressor is {DEFAULT_COMP}; did you forget `-comp`?")
                    }
                    (Some(name), []) => format!("compressor {name} takes no -X options"),
                    (Some(name), takes) => format!("compressor {name} takes {}", takes.join(", ")),
                };
                return Err(ArgError::Unsupported {
                    option: x.to_string(),
                    note: Some(note),
                }
                .into());
            }
            x if x.starts_with('-') => {
                return Err(ArgError::Unsupported {
                    option: x.to_string(),
                    note: None,
                }
                .into())
            }
            stray => {
                let msg = format!("unexpected argument `{stray}` after the options ({USAGE})");
                return Err(ArgError::Usage(msg).into());
            }
        }
    }
    options.compression = Compression::from_mksquashfs(comp_name, &x_options)?;
    times.apply(&mut options, source_date_epoch)?;
    let reporting = if quiet {
        Reporting::Quiet
    } else {
        Reporting::Summary
    };
    let syntax = Syntax::Mksquashfs;
    Ok(Parsed::Build(Box::new(Job {
        sources,
        output,
        keep_as_directory,
        options,
        // A drop-in for mksquashfs: no cache, no files written beside the image.
        cache: None,
        reporting,
        syntax,
    })))
}

/// The compressor named by `-comp`, if any; naming two different ones is an error, as in mksquashfs.
fn find_comp(opts: &[String]) -> Result<Option<&str>, ArgError> {
    let mut comp: Option<&str> = None;
    for (idx, opt) in opts.iter().enumerate() {
        if opt != "-comp" {
            continue;
        }
        let Some(name) = opts.get(idx + 1) else {
            return Err(ArgError::MissingValue {
                option: opt.clone(),
                what: COMPRESSORS,
            });
        };
        match comp {
            Some(prev) if prev != name => {
                return Err(ArgError::Usage(format!(
                    "conflicting `-comp` options: `{prev}`, then `{name}`"
                )));
            }
            _ => comp = Some(name),
        }
    }
    Ok(comp)
}

/// The value after `option`.
fn value<'a>(
    it: &mut impl Iterator<Item = &'a String>,
    option: &str,
    what: &'static str,
) -> Result<&'a str, ArgError> {
    it.next()
        .map(String::as_str)
        .ok_or_else(|| ArgError::MissingValue {
            option: option.to_string(),
            what,
        })
}

fn parse_processors(value: &str) -> Result<usize, ArgError> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ArgError::invalid(
            "-processors",
            value,
            "expected a number, 1 or larger",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use mkportable_squash::{BcjFilter, DictSize};

    use super::*;
    use crate::exit::code_for;

    fn parse_str(args: &str, epoch: Option<&str>) -> anyhow::Result<Parsed> {
        let args: Vec<OsString> = args.split_whitespace().map(OsString::from).collect();
        parse(&args, epoch.map(OsStr::new))
    }

    fn build(args: &str, epoch: Option<&str>) -> Job {
        match parse_str(args, epoch) {
            Ok(Parsed::Build(job)) => *job,
            other => panic!("{args}: {other:?}"),
        }
    }

    /// mksquashfs's defaults, as this personality sets them.
    fn defaults() -> Options {
        Options {
            compression: Compression::Gzip { level: 9 },
            exports: true,
            stable_fragments: false,
            ..Options::default()
        }
    }

    fn xz(dict_size: DictSize, filters: Vec<BcjFilter>) -> Compression {
        Compression::Xz { dict_size, filters }
    }

    /// `args` (after `src out`) → the options they set, starting from mksquashfs's defaults.
    fn check(args: &str, edit: fn(&mut Options)) {
        let job = build(&format!("src out {args}"), None);
        let mut want = defaults();
        edit(&mut want);
        assert_eq!(format!("{:?}", job.options), format!("{want:?}"), "{args}");
    }

    /// Arguments, and how they change the default options.
    type Case = (&'static str, fn(&mut Options));

    #[test]
    fn options() {
        let cases: &[Case] = &[
            ("", |_| {}),
            ("-noappend", |o| o.overwrite = true),
            (
                "-reproducible -exit-on-error -no-progress -progress -no-recovery",
                |_| {},
            ),
            ("-all-root", |o| o.all_root = true),
            ("-root-owned", |o| o.all_root = true),
            ("-force-uid 1000 -force-gid 0", |o| {
                (o.force_uid, o.force_gid) = (Some(1000), Some(0))
            }),
            ("-root-mode 755", |o| o.root_mode = Some(0o755)),
            ("-root-mode 0700", |o| o.root_mode = Some(0o700)),
            ("-mkfs-time 1000", |o| o.mkfs_time = 1000),
            ("-fstime 1000", |o| o.mkfs_time = 1000),
            ("-all-time 5", |o| o.all_time = Some(5)),
            ("-all-time 5000000000", |o| o.all_time = Some(u32::MAX)),
            ("-no-fragments", |o| o.fragments = false),
            ("-no-duplicates", |o| o.dedup = false),
            ("-no-xattrs", |o| o.xattrs = false),
            ("-no-xattrs -xattrs", |_| {}),
            ("-no-exports", |o| o.exports = false),
            ("-no-exports -exports", |_| {}),
            ("-processors 2", |o| o.threads = 2),
            ("-b 1M", |o| o.block_size = 1 << 20),
            ("-b 4096", |o| o.block_size = 4096),
            ("-b 64k -b 256K", |o| o.block_size = 256 << 10),
            ("-comp gzip -comp gzip", |_| {}),
            ("-comp gzip -Xcompression-level 6", |o| {
                o.compression = Compression::Gzip { level: 6 }
            }),
            ("-comp zstd", |o| {
                o.compression = Compression::Zstd { level: 15 }
            }),
            ("-comp zstd -Xcompression-level 19", |o| {
                o.compression = Compression::Zstd { level: 19 }
            }),
            ("-comp xz", |o| {
                o.compression = xz(DictSize::Percent(100), vec![])
            }),
            ("-Xdict-size 50% -comp xz", |o| {
                o.compression = xz(DictSize::Percent(50), vec![])
            }),
            ("-comp xz -Xdict-size 32K", |o| {
                o.compression = xz(DictSize::Bytes(32 << 10), vec![])
            }),
            ("-comp xz -Xbcj x86,arm", |o| {
                o.compression = xz(DictSize::Percent(100), vec![BcjFilter::X86, BcjFilter::Arm])
            }),
        ];
        for (args, edit) in cases {
            check(args, *edit);
        }
    }

    #[test]
    fn nixpkgs_portable_service_call() {
        let args =
            "nix root/etc root/usr OUT.raw -quiet -noappend -exit-on-error -keep-as-directory \
                    -all-root -root-mode 755 -b 1M -comp xz -Xdict-size 100%";
        let job = build(args, Some("315532800"));
        assert_eq!(
            job.sources,
            ["nix", "root/etc", "root/usr"].map(PathBuf::from)
        );
        assert_eq!(job.output, PathBuf::from("OUT.raw"));
        assert!(job.keep_as_directory);
        assert_eq!(job.reporting, Reporting::Quiet);
        let want = Options {
            compression: xz(DictSize::Percent(100), vec![]),
            block_size: 1 << 20,
            all_root: true,
            root_mode: Some(0o755),
            mkfs_time: 315_532_800,
            clamp_mtime: Some(315_532_800),
            overwrite: true,
            ..defaults()
        };
        assert_eq!(format!("{:?}", job.options), format!("{want:?}"));
    }

    #[test]
    fn paths() {
        let job = build("a b/ ../c d.img", None);
        assert_eq!(job.sources, ["a", "b/", "../c"].map(PathBuf::from));
        assert_eq!(job.output, PathBuf::from("d.img"));
        assert!(!job.keep_as_directory);
        assert_eq!(job.reporting, Reporting::Summary);

        let odd = OsString::from_vec(b"caf\xe9".to_vec());
        let args = [
            odd.clone(),
            OsString::from("out"),
            OsString::from("-noappend"),
        ];
        let Ok(Parsed::Build(job)) = parse(&args, None) else {
            panic!("non-UTF-8 source refused")
        };
        assert_eq!(job.sources, [PathBuf::from(odd)]);
    }

    #[test]
    fn times() {
        let job = build("src out", Some("1700000000"));
        assert_eq!(
            (job.options.mkfs_time, job.options.clamp_mtime),
            (1_700_000_000, Some(1_700_000_000))
        );
        let job = build("src out -mkfs-time 7 -all-time 8", Some("1700000000"));
        let o = &job.options;
        assert_eq!(
            (o.mkfs_time, o.all_time, o.clamp_mtime),
            (7, Some(8), Some(1_700_000_000))
        );
        assert_eq!(build("src out", None).options.mkfs_time, 0);
    }

    #[test]
    fn help_and_version() {
        for args in [
            "-help",
            "-h",
            "src out -quiet -help",
            "src out -foo -h",
            "--help",
        ] {
            assert!(matches!(parse_str(args, None), Ok(Parsed::Help)), "{args}");
        }
        for args in ["-version", "src out -version"] {
            assert!(
                matches!(parse_str(args, None), Ok(Parsed::Version)),
                "{args}"
            );
        }
    }

    #[test]
    fn invoked_as() {
        for (argv0, want) in [
            ("mksquashfs", true),
            ("/usr/bin/mksquashfs", true),
            ("./bin/mksquashfs", true),
            ("mkportable", false),
            ("/usr/bin/mksquashfs-4.5", false),
            ("mksquashfs/", true), // file_name ignores a trailing slash; never a real argv[0]
        ] {
            assert_eq!(is_invoked_as(OsStr::new(argv0)), want, "{argv0}");
        }
    }

    #[test]
    fn errors() {
        // (args, SOURCE_DATE_EPOCH, message, exit code)
        let cases = [
            ("", None, "missing SOURCE and DEST (usage: mksquashfs SOURCE... DEST [OPTIONS], see -help)", 2),
            ("-noappend", None, "missing SOURCE and DEST (usage: mksquashfs SOURCE... DEST [OPTIONS], see -help)", 2),
            ("src -quiet", None, "missing DEST after SOURCE `src` (usage: mksquashfs SOURCE... DEST [OPTIONS], see -help)", 2),
            ("src out -foo", None, "unsupported mksquashfs option `-foo`", 2),
            ("src out -quiet -nopad", None, "unsupported mksquashfs option `-nopad`", 2),
            ("src out -e excluded", None, "unsupported mksquashfs option `-e`", 2),
            ("src out -tar", None, "unsupported mksquashfs option `-tar`", 2),
            ("src out -not-reproducible", None, "unsupported mksquashfs option `-not-reproducible`", 2),
            ("src out --noappend", None, "unsupported mksquashfs option `--noappend`", 2),
            (
                "src out -Xdict-size 100%",
                None,
                "unsupported mksquashfs option `-Xdict-size` (the default compressor is gzip; did you forget `-comp`?)",
                2,
            ),
            (
                "src out -comp xz -Xwindow-size 15",
                None,
                "unsupported mksquashfs option `-Xwindow-size` (compressor xz takes -Xdict-size, -Xbcj)",
                2,
            ),
            ("src out -quiet stray", None, "unexpected argument `stray` after the options (usage: mksquashfs SOURCE... DEST [OPTIONS], see -help)", 2),
            ("src out -b", None, "`-b` needs a value: a block size such as 128K or 1M", 2),
            ("src out -root-mode", None, "`-root-mode` needs a value: an octal mode", 2),
            ("src out -comp", None, "`-comp` needs a value: a compressor: gzip, xz or zstd", 2),
            ("src out -comp xz -Xdict-size", None, "`-Xdict-size` needs a value: a value for the compressor", 2),
            ("src out -comp xz -comp gzip", None, "conflicting `-comp` options: `xz`, then `gzip`", 2),
            ("src out -b 3M", None, "invalid option block size `3M`: must be a power of two from 4K to 1M", 1),
            ("src out -root-mode 999", None, "invalid value `999` for `-root-mode`: expected an octal mode from 0 to 7777", 1),
            ("src out -root-mode u+rwx", None, "invalid value `u+rwx` for `-root-mode`: expected an octal mode from 0 to 7777", 1),
            ("src out -processors 0", None, "invalid value `0` for `-processors`: expected a number, 1 or larger", 1),
            ("src out -force-uid root", None, "invalid value `root` for `-force-uid`: expected a number from 0 to 4294967295", 1),
            ("src out -force-gid -1", None, "invalid value `-1` for `-force-gid`: expected a number from 0 to 4294967295", 1),
            ("src out -mkfs-time now", None, "invalid value `now` for `-mkfs-time`: expected seconds since 1970-01-01 (a non-negative integer)", 1),
            ("src out", Some("yesterday"), "invalid value `yesterday` for `SOURCE_DATE_EPOCH`: expected seconds since 1970-01-01 (a non-negative integer)", 1),
        ];
        for (args, epoch, want, code) in cases {
            let err = parse_str(args, epoch).expect_err(args);
            assert_eq!(format!("{err:#}"), want, "{args}");
            assert_eq!(code_for(&err), code, "{args}");
        }
    }

    /// Values the library refuses: its message, naming the value, and exit 1.
    /// (A dictionary size is checked against the block size by the writer.)
    #[test]
    fn library_errors() {
        for (args, named) in [
            ("src out -comp lz4", "lz4"),
            ("src out -comp gzip -Xwindow-size 15", "-Xwindow-size"),
            ("src out -comp xz -Xbcj mips", "mips"),
            ("src out -comp zstd -Xcompression-level 23", "23"),
        ] {
            let err = parse_str(args, None).expect_err(args);
            let msg = format!("{err:#}");
            assert!(msg.contains(named) && !msg.contains('\n'), "{args}: {msg}");
            assert_eq!(code_for(&err), 1, "{args}: {msg}");
        }
    }
}
