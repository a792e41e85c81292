//! What went wrong, as one line on stderr and an exit code.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success, or stdout closed early (a broken pipe) |
//! | 1    | the input is at fault: a bad spec, a missing or unreadable source or store path, a closure source that lacks a path, an existing output, a file that changed while read, a bad option value, a `--cache` folder that is not one or cannot be read |
//! | 2    | a usage error (unknown option, missing value or path) or an unexpected failure |
//! | 130  | interrupted by SIGINT or SIGTERM; nothing was written |

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use mkportable_closure as closure;
use mkportable_squash as squash;

use crate::cache::CacheError;

/// The input is at fault.
const INPUT: u8 = 1;
/// The command line is malformed, or something failed that should not have.
const USAGE: u8 = 2;
/// 128 + SIGINT, as shells report a process stopped by Ctrl-C.
const INTERRUPTED: u8 = 130;

/// A problem with the command line that clap did not catch (the mksquashfs
/// personality parses its own arguments, and the environment is read by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// An option the mksquashfs personality does not know or support.
    Unsupported {
        /// The option as given.
        option: String,
        /// Why, when there is more to say than "unsupported".
        note: Option<String>,
    },
    /// An option given last, without its value.
    MissingValue {
        /// The option as given.
        option: String,
        /// What the value is, e.g. "a block size".
        what: &'static str,
    },
    /// An option value (or `SOURCE_DATE_EPOCH`) that cannot be used.
    InvalidValue {
        /// The option or variable.
        option: String,
        /// The value as given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// Anything else wrong with the shape of the command line.
    Usage(String),
}

/// The output exists and the command line did not allow replacing it.
#[derive(Debug)]
pub struct OutputExists {
    /// The image path.
    pub path: PathBuf,
    /// The flag that would allow it: `-noappend` or `--overwrite`.
    pub flag: &'static str,
}

/// A spec that breaks rules, shown as a heading and one indented line per
/// problem (the spec crate's own lines, `file:line: field: message`).
#[derive(Debug)]
pub struct InvalidSpec(pub mkportable_spec::Error);

/// The writer stopped on SIGINT or SIGTERM and removed its temporary file.
#[derive(Debug)]
pub struct Interrupted {
    /// The image that was not written.
    pub output: PathBuf,
}

impl ArgError {
    /// An invalid value of `option`.
    pub fn invalid(option: &str, value: &str, reason: impl Into<String>) -> ArgError {
        ArgError::InvalidValue {
            option: option.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            ArgError::InvalidValue { .. } => INPUT,
            ArgError::Unsupported { .. } | ArgError::MissingValue { .. } | ArgError::Usage(_) => {
                USAGE
            }
        }
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unsupported { option, note: None } => {
                write!(f, "unsupported mksquashfs option `{option}`")
            }
            ArgError::Unsupported {
                option,
                note: Some(note),
            } => {
                write!(f, "unsupported mksquashfs option `{option}` ({note})")
            }
            ArgError::MissingValue { option, what } => {
                write!(f, "`{option}` needs a value: {what}")
            }
            ArgError::InvalidValue {
                option,
                value,
                reason,
            } => {
                write!(f, "invalid value `{value}` for `{option}`: {reason}")
            }
            ArgError::Usage(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ArgError {}

impl fmt::Display for OutputExists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        write!(
            f,
            "`{path}` already exists (appending is not supported; {} replaces it)",
            self.flag
        )
    }
}

impl std::error::Error for OutputExists {}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.problems().len();
        match &self.0 {
            mkportable_spec::Error::Invalid { file, .. } if n > 0 => {
                let s = if n == 1 { "" } else { "s" };
                write!(f, "spec `{file}` is invalid ({n} problem{s}):")?;
                for line in self.0.to_string().lines() {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
            e => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InvalidSpec {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            // The problems are all in the message already.
            mkportable_spec::Error::Invalid { .. } => None,
            e => std::error::Error::source(e),
        }
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interrupted, nothing written to `{}`",
            self.output.display()
        )
    }
}

impl std::error::Error for Interrupted {}

/// Prints `res`'s error, if any, as one line and returns the exit code.
pub fn finish(res: anyhow::Result<()>) -> ExitCode {
    match res {
        Ok(()) => ExitCode::SUCCESS,
        // Output piped into `head` is not a failure (as in ripgrep's main).
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code_for(&e))
        }
    }
}

/// The exit code for `e`, from the first error in its chain that says whose fault it is.
pub fn code_for(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(arg) = cause.downcast_ref::<ArgError>() {
            return arg.exit_code();
        }
        if cause.is::<OutputExists>() {
            return INPUT;
        }
        if cause.is::<Interrupted>() {
            return INTERRUPTED;
        }
        if let Some(err) = cause.downcast_ref::<squash::Error>() {
            return squash_code(err);
        }
        if cause.is::<InvalidSpec>()
            || cause.is::<mkportable_spec::Error>()
            || cause.is::<mkportable_scaffold::Error>()
        {
            return INPUT;
        }
        if let Some(err) = cause.downcast_ref::<closure::Error>() {
            return closure_code(err);
        }
        if let Some(err) = cause.downcast_ref::<CacheError>() {
            return path_code(&err.source);
        }
    }
    USAGE
}

/// Input at fault, except when Nix misbehaves or a store path cannot be inspected.
fn closure_code(e: &closure::Error) -> u8 {
    match e {
        closure::Error::NixSpawn { .. }
        | closure::Error::NixOutput { .. }
        | closure::Error::Stat { .. } => USAGE,
        _ => INPUT,
    }
}

fn squash_code(e: &squash::Error) -> u8 {
    match e {
        squash::Error::Read { .. }
        | squash::Error::FileChanged { .. }
        | squash::Error::OutputExists { .. }
        | squash::Error::InvalidOption { .. }
        | squash::Error::Tree { .. }
        | squash::Error::Limit(_) => INPUT,
        squash::Error::Write { source, .. } => path_code(source),
        squash::Error::Interrupted => INTERRUPTED,
        _ => USAGE,
    }
}

/// The user named a path we cannot use; a full disk or an I/O error is not their fault.
fn path_code(e: &io::Error) -> u8 {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound
        | K::PermissionDenied
        | K::ReadOnlyFilesystem
        | K::IsADirectory
        | K::NotADirectory => INPUT,
        _ => USAGE,
    }
}

/// Whether writing to stdout failed because the reader went away. Only stdout
/// writes are attached as a bare [`io::Error`]; the library's I/O errors are
/// inside its own [`squash::Error`] and never match.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

/// Reports a clap error: help and version go to stdout with exit 0; an error
/// is cut to its first paragraph, so it is one line like ours, with exit 1
/// for a bad value and 2 for anything else.
pub fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            return match e.print() {
                Err(err) if err.kind() != io::ErrorKind::BrokenPipe => ExitCode::from(USAGE),
                _ => ExitCode::SUCCESS,
            };
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(USAGE);
        }
        _ => {}
    }
    eprintln!("{}", clap_message(e));
    ExitCode::from(clap_code(e))
}

/// A clap error as one line: its first paragraph.
pub fn clap_message(e: &clap::Error) -> String {
    first_paragraph(&e.render().to_string())
}

/// 1 for a bad value, 2 for anything else (a missing value included).
pub fn clap_code(e: &clap::Error) -> u8 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let bad_value = match e.kind() {
        ErrorKind::ValueValidation => true,
        // clap reports a missing value as the empty value.
        ErrorKind::InvalidValue => {
            !matches!(e.get(ContextKind::InvalidValue), Some(ContextValue::String(v)) if v.is_empty())
        }
        _ => false,
    };
    if bad_value {
        INPUT
    } else {
        USAGE
    }
}

/// The first paragraph of clap's rendered error, as one line.
fn first_paragraph(rendered: &str) -> String {
    let para = rendered.split("\n\n").next().unwrap_or(rendered);
    para.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let io = |kind| io::Error::from(kind);
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (
                ArgError::Unsupported {
                    option: "-foo".into(),
                    note: None,
                }
                .into(),
                2,
            ),
            (
                ArgError::MissingValue {
                    option: "-b".into(),
                    what: "a block size",
                }
                .into(),
                2,
            ),
            (ArgError::Usage("missing DEST".into()).into(), 2),
            (
                ArgError::invalid("-root-mode", "999", "expected octal").into(),
                1,
            ),
            (
                squash::Error::Read {
                    path: "x".into(),
                    source: io(io::ErrorKind::NotFound),
                }
                .into(),
                1,
            ),
            (squash::Error::OutputExists { path: "x".into() }.into(), 1),
            (
                squash::Error::FileChanged {
                    path: "x".into(),
                    expected: 1,
                    found: 2,
                }
                .into(),
                1,
            ),
            (
                squash::Error::InvalidOption {
                    option: "-comp".into(),
                    reason: "unknown".into(),
                }
                .into(),
                1,
            ),
            (
                squash::Error::Write {
                    path: "x".into(),
                    source: io(io::ErrorKind::PermissionDenied),
                }
                .into(),
                1,
            ),
            (
                squash::Error::Write {
                    path: "x".into(),
                    source: io(io::ErrorKind::StorageFull),
                }
                .into(),
                2,
            ),
            (squash::Error::Interrupted.into(), 130),
            (Interrupted { output: "x".into() }.into(), 130),
            (
                OutputExists {
                    path: "x".into(),
                    flag: "-noappend",
                }
                .into(),
                1,
            ),
            (anyhow::anyhow!("something unexpected"), 2),
            (
                anyhow::Error::from(squash::Error::OutputExists { path: "x".into() })
                    .context("writing"),
                1,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(code_for(&e), want, "{e:#}");
        }
    }

    #[test]
    fn spec_and_closure_errors() {
        let dir = tempfile::tempdir().unwrap();
        let invalid = mkportable_spec::Spec::from_toml_str(
            "name = \"a_b\"\nversion = \"1\"\nunits = []\n",
            dir.path(),
            "s.toml",
        )
        .unwrap_err();
        let syntax =
            mkportable_spec::Spec::from_toml_str("name = 1\n", dir.path(), "s.toml").unwrap_err();
        let missing = closure::Error::Missing {
            paths: vec!["/nix/store/0nsmdy54iqf64dgak3gpnj2fivp0l8bg-a"
                .parse()
                .unwrap()],
        };
        let spawn = closure::Error::NixSpawn {
            program: "nix-store".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (InvalidSpec(invalid).into(), 1),
            (InvalidSpec(syntax).into(), 1),
            (anyhow::Error::from(missing).context("resolving"), 1),
            (spawn.into(), 2),
        ];
        for (e, want) in cases {
            assert_eq!(code_for(&e), want, "{e:#}");
        }

        let invalid = mkportable_spec::Spec::from_toml_str(
            "name = \"a_b\"\nversion = \"1_0\"\nunits = [\"u.service\"]\n",
            dir.path(),
            "s.toml",
        )
        .unwrap_err();
        let shown = format!("{:#}", anyhow::Error::from(InvalidSpec(invalid)));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines[0], "spec `s.toml` is invalid (3 problems):",
            "{shown}"
        );
        assert!(
            lines[1..].iter().all(|l| l.starts_with("  s.toml:")),
            "{shown}"
        );
        assert_eq!(lines.len(), 4, "{shown}");
    }

    #[test]
    fn messages_are_one_line() {
        let cases: Vec<(anyhow::Error, &str)> = vec![
            (
                ArgError::Unsupported {
                    option: "-foo".into(),
                    note: None,
                }
                .into(),
                "unsupported mksquashfs option `-foo`",
            ),
            (
                ArgError::MissingValue {
                    option: "-b".into(),
                    what: "a block size such as 1M",
                }
                .into(),
                "`-b` needs a value: a block size such as 1M",
            ),
            (
                ArgError::invalid("-root-mode", "999", "expected an octal mode").into(),
                "invalid value `999` for `-root-mode`: expected an octal mode",
            ),
            (
                Interrupted {
                    output: "out.raw".into(),
                }
                .into(),
                "interrupted, nothing written to `out.raw`",
            ),
            (
                OutputExists {
                    path: "out.raw".into(),
                    flag: "--overwrite",
                }
                .into(),
                "`out.raw` already exists (appending is not supported; --overwrite replaces it)",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(format!("{e:#}"), want);
        }
    }

    #[test]
    fn broken_pipe_only_on_stdout() {
        let stdout = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing to stdout");
        assert!(is_broken_pipe(&stdout));
        let library = squash::Error::Write {
            path: "x".into(),
            source: io::Error::from(io::ErrorKind::BrokenPipe),
        };
        assert!(!is_broken_pipe(&library.into()));
    }

    #[test]
    fn clap_errors_become_one_line() {
        let rendered = "error: unexpected argument '--foo' found\n\n  tip: to pass '--foo' as a value, use '-- --foo'\n\nUsage: mkportable squash\n";
        assert_eq!(
            first_paragraph(rendered),
            "error: unexpected argument '--foo' found"
        );
        let rendered = "error: invalid value 'lz4' for '--comp <COMP>'\n  [possible values: xz, zstd, gzip]\n\nFor more";
        assert_eq!(
            first_paragraph(rendered),
            "error: invalid value 'lz4' for '--comp <COMP>' [possible values: xz, zstd, gzip]"
        );
    }
}
