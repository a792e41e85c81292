//! The error type of `mkportable-closure`: what failed, on which path, and why.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::store_path::{Invalid, StorePath};

/// Everything that can go wrong while naming store paths or resolving a closure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store directory is not an absolute, normalized UTF-8 path.
    #[error("invalid store directory `{}`: {reason}", path.display())]
    InvalidStoreDir {
        /// The directory as given.
        path: PathBuf,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A string or path is not a valid store path.
    #[error("invalid store path `{path}`: {reason}")]
    InvalidStorePath {
        /// The text as given.
        path: String,
        /// Why it is invalid.
        reason: Invalid,
    },
    /// A path is not inside the store directory.
    #[error("`{}` is not inside the store directory `{}`", path.display(), store_dir.display())]
    OutsideStore {
        /// The path as given.
        path: PathBuf,
        /// The store directory it should be in.
        store_dir: PathBuf,
    },
    /// Following symlinks to the store went around in circles.
    #[error("too many levels of symbolic links resolving `{}`", path.display())]
    SymlinkLoop {
        /// The path as given.
        path: PathBuf,
    },
    /// A file, folder or symlink could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A closure info or references graph file is malformed.
    #[error("`{}`, {at}: {reason}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// Where in the file.
        at: Location,
        /// What is wrong.
        reason: Syntax,
    },
    /// A JSON references graph is not valid JSON, or an entry has the wrong shape.
    #[error("cannot parse `{}` as exportReferencesGraph JSON", file.display())]
    Json {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON object has no exportReferencesGraph data in it.
    #[error(
        "`{}` has no exportReferencesGraph data (an array of objects with `path` and `references`)",
        file.display()
    )]
    NoGraphInJson {
        /// The file.
        file: PathBuf,
    },
    /// A folder given as closure info has neither a `registration` nor a `store-paths` file.
    #[error(
        "`{}` is not a closure info folder: it has neither `registration` nor `store-paths`",
        dir.display()
    )]
    NotClosureInfo {
        /// The folder.
        dir: PathBuf,
    },
    /// The files of a closure info folder contradict each other.
    #[error("closure info `{}` is inconsistent: {reason}", dir.display())]
    InconsistentClosureInfo {
        /// The folder.
        dir: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// Two references graph files give different references for one store path.
    #[error("`{}` gives other references for `{path}` than an earlier file", file.display())]
    Conflict {
        /// The store path.
        path: StorePath,
        /// The later of the two files.
        file: PathBuf,
    },
    /// A path given as a closure source is neither a file nor a directory.
    #[error("`{}` is neither a file nor a directory", path.display())]
    NotASource {
        /// The path.
        path: PathBuf,
    },
    /// A closure info folder was given together with other closure sources.
    #[error("closure info folder `{}` must be the only closure source", dir.display())]
    MixedSources {
        /// The folder.
        dir: PathBuf,
    },
    /// Roots are missing from a closure info or references graph.
    #[error("{} not in {origin}", paths_phrase(paths, "is", "are"))]
    NotInSource {
        /// The missing roots.
        paths: Vec<StorePath>,
        /// The source, e.g. ``closure info `/tmp/x` ``.
        origin: String,
    },
    /// A references graph names a reference it has no entry for.
    #[error("store path `{path}` (a reference of `{referrer}`) is not in {origin}")]
    Dangling {
        /// The missing reference.
        path: StorePath,
        /// The store path that refers to it.
        referrer: StorePath,
        /// The source, e.g. ``references graph `/tmp/x` ``.
        origin: String,
    },
    /// Store paths of the closure do not exist on disk.
    #[error("{} not exist", paths_phrase(paths, "does", "do"))]
    Missing {
        /// The missing store paths.
        paths: Vec<StorePath>,
    },
    /// A store path could not be inspected (other than by not existing).
    #[error("cannot inspect store path `{path}`")]
    Stat {
        /// The store path.
        path: StorePath,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `nix-store` is not installed.
    #[error(
        "cannot run `{}`: it was not found (install Nix, or pass a closure info folder or an \
         exportReferencesGraph file)",
        program.display()
    )]
    NixNotFound {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `nix-store` could not be started.
    #[error("cannot run `{}`", program.display())]
    NixSpawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `nix-store --query --requisites` failed.
    #[error("`{} --query --requisites` failed ({status})", program.display())]
    NixFailed {
        /// The program.
        program: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        #[source]
        stderr: NixStderr,
    },
    /// `nix-store` printed something that is not a store path.
    #[error(
        "`{} --query --requisites` printed `{line}`, which is not a store path: {reason}",
        program.display()
    )]
    NixOutput {
        /// The program.
        program: PathBuf,
        /// The line it printed.
        line: String,
        /// Why that is not a store path.
        reason: Invalid,
    },
    /// A whole closure was asked of the Nix CLI, which only computes closures of roots.
    #[error("the Nix CLI computes closures of roots and cannot list a whole closure without them")]
    NeedsRoots,
}

/// Where in a file a [`Syntax`] error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A line, counted from 1.
    Line(usize),
    /// An entry of a JSON array, counted from 1.
    Entry(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Entry(entry) => write!(f, "entry {entry}"),
        }
    }
}

/// What is wrong in a closure info, registration or references graph file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Syntax {
    /// A non-empty file does not end with a newline: it may have been cut short.
    MissingFinalNewline,
    /// The file is not UTF-8.
    NotUtf8,
    /// An empty line where a store path should be.
    BlankLine,
    /// The file ends in the middle of a record.
    Truncated {
        /// The store path the record is about.
        record: StorePath,
        /// The line that is missing.
        expected: &'static str,
    },
    /// A line that should be a store path is not one.
    StorePath {
        /// The line.
        text: String,
        /// Why it is not a store path.
        reason: Invalid,
    },
    /// A NAR hash is not a sha256 hash in a form Nix reads.
    NarHash(String),
    /// A count or size is not a decimal number.
    Number {
        /// What the number is.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// A store path appears twice with different references or sizes.
    Conflict(StorePath),
    /// A JSON entry lacks a field, or the field has the wrong type.
    Field(&'static str),
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Syntax::MissingFinalNewline => {
                f.write_str("the file does not end with a newline (cut short?)")
            }
            Syntax::NotUtf8 => f.write_str("not valid UTF-8"),
            Syntax::BlankLine => f.write_str("unexpected empty line"),
            Syntax::Truncated { record, expected } => {
                write!(
                    f,
                    "the record of `{record}` ends early: expected {expected}"
                )
            }
            Syntax::StorePath { text, reason } => {
                write!(f, "invalid store path `{}`: {reason}", text.escape_debug())
            }
            Syntax::NarHash(text) => write!(
                f,
                "invalid NAR hash `{}` (expected sha256 in base-16, Nix base-32 or base-64)",
                text.escape_debug()
            ),
            Syntax::Number { what, text } => write!(f, "invalid {what} `{}`", text.escape_debug()),
            Syntax::Conflict(path) => {
                write!(f, "`{path}` appears again with other references or size")
            }
            Syntax::Field(field) => write!(f, "no `{field}` field of the right type"),
        }
    }
}

/// What `nix-store` printed on stderr when it failed; the cause of [`Error::NixFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixStderr(pub String);

impl fmt::Display for NixStderr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.trim();
        if text.is_empty() {
            f.write_str("nothing on stderr")
        } else {
            f.write_str(text)
        }
    }
}

impl std::error::Error for NixStderr {}

/// ``store path `a` is`` or ``store paths `a`, `b` are``.
fn paths_phrase(paths: &[StorePath], one: &str, many: &str) -> String {
    match paths {
        [path] => format!("store path `{path}` {one}"),
        paths => {
            let list: Vec<String> = paths.iter().map(|path| format!("`{path}`")).collect();
            format!("store paths {} {many}", list.join(", "))
        }
    }
}
