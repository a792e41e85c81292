//! The error type of `mkportable-squash`: what failed, on which path, and why.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building a tree or writing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or inspecting a host file failed.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A host file changed size while it was being packed.
    #[error("`{}` changed while it was read (it had {expected} bytes when listed)", path.display())]
    FileChanged {
        /// The host path.
        path: PathBuf,
        /// The size seen when the tree was built.
        expected: u64,
        /// The bytes found while reading (at least this many; equal to `expected` when the contents changed).
        found: u64,
    },
    /// Writing the image failed.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The image path (or its temporary sibling).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The output exists and overwriting was not allowed.
    #[error("`{}` already exists (appending is not supported; remove it or allow overwriting)", path.display())]
    OutputExists {
        /// The image path.
        path: PathBuf,
    },
    /// An option has a value the format or the compressor cannot take.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option, as the user spelled it where known.
        option: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The tree cannot be represented, or an edit of it is invalid.
    #[error("invalid tree path `{path}`: {reason}")]
    Tree {
        /// The path inside the image.
        path: String,
        /// Why.
        reason: String,
    },
    /// The tree exceeds a limit of the SquashFS format.
    #[error("too large for SquashFS: {0}")]
    Limit(String),
    /// The caller asked the writer to stop (for example on SIGINT).
    #[error("interrupted")]
    Interrupted,
}
