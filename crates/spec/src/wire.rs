//! The spec as written: serde structs that mirror the file, before any rule is checked.
//!
//! Every field is optional here, so that a missing field becomes one problem among
//! others instead of stopping the parse. The structs are generic over the [`Format`]:
//! TOML wraps each value in [`toml::Spanned`] to learn its line, JSON (whose parser
//! has no spans) keeps the bare value. Validation (`validate.rs`) turns a
//! [`Wire`] into a [`crate::Spec`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::Error;

/// A value together with the line it was written on, when the format tells.
#[derive(Debug)]
pub(crate) struct Located<T> {
    pub value: T,
    pub line: Option<u32>,
}

/// A spec syntax: how a value is wrapped while parsing, and how to find its line.
pub(crate) trait Format {
    /// The wrapper around each parsed value.
    type Loc<T: DeserializeOwned>: DeserializeOwned;

    /// Unwraps a value, finding its line in `lines`.
    fn locate<T: DeserializeOwned>(loc: Self::Loc<T>, lines: &Lines<'_>) -> Located<T>;
}

/// TOML: every value knows its byte span, hence its line.
#[derive(Debug)]
pub(crate) enum Toml {}

/// JSON: `serde_json` gives no spans, so values have no line.
#[derive(Debug)]
pub(crate) enum Json {}

impl Format for Toml {
    type Loc<T: DeserializeOwned> = toml::Spanned<T>;

    fn locate<T: DeserializeOwned>(loc: toml::Spanned<T>, lines: &Lines<'_>) -> Located<T> {
        let line = lines.line_column(loc.span().start).0;
        Located {
            value: loc.into_inner(),
            line: Some(line),
        }
    }
}

impl Format for Json {
    type Loc<T: DeserializeOwned> = T;

    fn locate<T: DeserializeOwned>(loc: T, _lines: &Lines<'_>) -> Located<T> {
        Located {
            value: loc,
            line: None,
        }
    }
}

/// The top level of a spec file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", bound = "")]
#[serde(expecting = "a spec: a table of fields such as `name`, `version` and `units`")]
pub(crate) struct Wire<F: Format> {
    pub name: Option<F::Loc<String>>,
    pub version: Option<F::Loc<String>>,
    pub description: Option<F::Loc<String>>,
    pub homepage: Option<F::Loc<String>>,
    pub units: Option<List<F, Entry<UnitTable<F>>>>,
    pub contents: Option<List<F, Entry<ContentTable<F>>>>,
    pub symlinks: Option<List<F, SymlinkTable<F>>>,
    pub compression: Option<F::Loc<String>>,
    pub block_size: Option<F::Loc<String>>,
    pub store_dir: Option<F::Loc<String>>,
    pub closure_info: Option<F::Loc<String>>,
    pub os_release: Option<Table<F>>,
}

/// A list, each item and the list itself with its location.
pub(crate) type List<F, T> = <F as Format>::Loc<Vec<<F as Format>::Loc<T>>>;

/// A table of strings (`[os-release]`), each value and the table with its location.
pub(crate) type Table<F> = <F as Format>::Loc<BTreeMap<String, <F as Format>::Loc<String>>>;

/// A `units` entry in table form: `{ source = "units/demo-at.service", name = "demo@.service" }`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    bound = "",
    expecting = "a table { source, name }"
)]
pub(crate) struct UnitTable<F: Format> {
    pub source: Option<F::Loc<String>>,
    pub name: Option<F::Loc<String>>,
}

/// A `contents` entry in table form: `{ source = "payload", target = "/opt/demo" }`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    bound = "",
    expecting = "a table { source, target }"
)]
pub(crate) struct ContentTable<F: Format> {
    pub source: Option<F::Loc<String>>,
    pub target: Option<F::Loc<String>>,
}

/// A `symlinks` entry: `{ object = "/nix/store/...-demo/bin/demo", symlink = "/bin/demo" }`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    bound = "",
    expecting = "a table { object, symlink }"
)]
pub(crate) struct SymlinkTable<F: Format> {
    pub object: Option<F::Loc<String>>,
    pub symlink: Option<F::Loc<String>>,
}

/// A list entry written either as a plain string or as a table.
///
/// Hand-written rather than `#[serde(untagged)]`: an untagged enum buffers the value
/// (losing TOML spans) and answers every mistake with "data did not match any
/// variant", hiding, for example, which field of the table is unknown.
pub(crate) enum Entry<T> {
    Path(String),
    Table(T),
}

/// What a list entry should look like, for the parser's "expected ..." message.
pub(crate) trait Expecting {
    const EXPECTING: &'static str;
}

impl<F: Format> Expecting for UnitTable<F> {
    const EXPECTING: &'static str = "a unit file path or a table { source, name }";
}

impl<F: Format> Expecting for ContentTable<F> {
    const EXPECTING: &'static str = "a store path or a table { source, target }";
}

impl<'de, T: Deserialize<'de> + Expecting> Deserialize<'de> for Entry<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de> + Expecting> Visitor<'de> for EntryVisitor<T> {
            type Value = Entry<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Entry<T>, E> {
                Ok(Entry::Path(value.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Entry::Table)
            }
        }

        deserializer.deserialize_any(EntryVisitor(PhantomData))
    }
}

/// Parses TOML text into the wire form; `file` names the spec in errors.
pub(crate) fn parse_toml(text: &str, file: &str) -> Result<Wire<Toml>, Error> {
    toml::from_str(text).map_err(|err| {
        let (line, column) = match err.span() {
            Some(span) => {
                let (line, column) = Lines::new(text).line_column(span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        Error::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: err.message().to_owned(),
        }
    })
}

/// Parses JSON text into the wire form; `file` names the spec in errors.
pub(crate) fn parse_json(text: &str, file: &str) -> Result<Wire<Json>, Error> {
    serde_json::from_str(text).map_err(|err| {
        // serde_json appends " at line L column C" to its message; we print the
        // position in front instead, like the TOML errors.
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        let known = err.line() > 0;
        Error::Syntax {
            file: file.to_owned(),
            line: known.then(|| saturate(err.line())),
            column: known.then(|| saturate(err.column())),
            message,
        }
    })
}

/// Turns byte offsets in a spec into lines and columns.
pub(crate) struct Lines<'a> {
    text: &'a str,
    /// The byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str) -> Lines<'a> {
        let breaks = text.match_indices('\n').map(|(idx, _)| idx + 1);
        Lines {
            text,
            starts: std::iter::once(0).chain(breaks).collect(),
        }
    }

    /// The 1-based line and column (in characters) of byte `offset`.
    pub(crate) fn line_column(&self, offset: usize) -> (u32, u32) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // `starts[0] == 0 <= offset`, so at least one line starts at or before it.
        let line_idx = self.starts.partition_point(|&start| start <= offset) - 1;
        let line_start = self.starts[line_idx];
        let column = self.text[line_start..offset].chars().count() + 1;
        (saturate(line_idx + 1), saturate(column))
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let lines = Lines::new("ab\nçd\n\nx");
        let check = |offset: usize, expect: (u32, u32)| {
            assert_eq!(lines.line_column(offset), expect, "offset {offset}");
        };
        check(0, (1, 1));
        check(2, (1, 3)); // the line break belongs to its line
        check(3, (2, 1));
        check(4, (2, 1)); // inside `ç`: its first byte
        check(5, (2, 2)); // columns count characters, not bytes
        check(7, (3, 1));
        check(8, (4, 1));
        check(9, (4, 2)); // the end of the text
        check(99, (4, 2));
    }
}
