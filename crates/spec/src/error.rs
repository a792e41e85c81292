//! The error type of `mkportable-spec`: which file, where in it, and what is wrong.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading a spec.
///
/// Reading and parsing stop at the first error ([`Error::Io`], [`Error::Syntax`]);
/// validation does not: [`Error::Invalid`] carries every problem found, in file order.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec file, or the folder its relative paths resolve against, cannot be read.
    #[error("cannot read `{}`", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not well-formed TOML or JSON, or does not have the shape of a spec
    /// (an unknown field, a number where a string belongs, ...).
    #[error("{file}:{}{message}", Position(*line, *column))]
    Syntax {
        /// The spec file, as the caller named it.
        file: String,
        /// The line (1-based), when the parser knows it.
        line: Option<u32>,
        /// The column (1-based, in characters), when the parser knows it.
        column: Option<u32>,
        /// The parser's message.
        message: String,
    },
    /// The spec parsed but breaks one or more rules; one line per problem.
    #[error("{}", Problems { file, problems })]
    Invalid {
        /// The spec file, as the caller named it.
        file: String,
        /// Every problem found, sorted by line (problems without a line first).
        problems: Vec<Problem>,
    },
}

impl Error {
    /// The validation problems, if this is [`Error::Invalid`]; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// One broken rule in a spec: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line (1-based) in a TOML spec; `None` in JSON, or for a missing field.
    pub line: Option<u32>,
    /// The field as written in the spec, such as `units[2]` or `symlinks[0].symlink`.
    pub field: String,
    /// What is wrong, as a short lowercase phrase.
    pub message: String,
}

/// Prints `7: units[2]: message`, or `units[2]: message` without a line.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Formats `line:column: ` (or as much of it as is known) after a file name.
struct Position(Option<u32>, Option<u32>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: "),
            (Some(line), None) => write!(f, "{line}: "),
            _ => f.write_str(" "),
        }
    }
}

/// Formats one `file:line: field: message` line per problem.
struct Problems<'a> {
    file: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, problem) in self.problems.iter().enumerate() {
            if idx > 0 {
                f.write_str("\n")?;
            }
            // `spec.toml:7: units[2]: ...` but `spec.json: units[2]: ...`, as compilers do.
            let sep = if problem.line.is_some() { ":" } else { ": " };
            write!(f, "{}{sep}{problem}", self.file)?;
        }
        Ok(())
    }
}
