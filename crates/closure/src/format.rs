//! Parsers for the files that describe a closure: registrations (`closureInfo`'s
//! `registration`, `nix-store --dump-db`), plain `exportReferencesGraph` files, path lists
//! (`store-paths`) and structured-attrs JSON, with detection of which one a file is.
//!
//! The formats are described on [`Graph`](crate::Graph).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::error::{Location, Syntax};
use crate::store_path::{StoreDir, StorePath};
use crate::Error;

/// What a file holds; see the formats on [`Graph`](crate::Graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Nothing but whitespace: no store paths at all.
    Empty,
    /// Records with hash and size lines.
    Registration,
    /// Records without hash and size lines.
    Graph,
    /// One store path a line.
    PathList,
    /// Structured-attrs JSON.
    Json,
}

/// What is known about one store path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// Its references, possibly including itself; empty when the format has none.
    pub(crate) references: BTreeSet<StorePath>,
    /// Its NAR size, when the format has it.
    pub(crate) nar_size: Option<u64>,
}

/// The store paths of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) nodes: BTreeMap<StorePath, Node>,
    /// False for path lists, which name store paths but not their references.
    pub(crate) references_known: bool,
}

/// Guesses the format from the first few lines.
///
/// The second line tells records apart: a hash in a registration, empty or a `.drv` path (then
/// followed by a count) in a graph, another store path in a path list.
pub(crate) fn detect(text: &[u8], store_dir: &StoreDir) -> Format {
    let Some(first) = text.iter().position(|byte| !byte.is_ascii_whitespace()) else {
        return Format::Empty;
    };
    if matches!(text[first], b'[' | b'{') {
        return Format::Json;
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut lines = body.split(|&byte| byte == b'\n').skip(1);
    let (second, third) = (lines.next(), lines.next());
    let store_prefix = format!("{}/", store_dir.as_str());
    match second {
        None => Format::PathList,
        Some(b"") => Format::Graph,
        Some(second) if second.starts_with(store_prefix.as_bytes()) => {
            let is_count =
                third.is_some_and(|line| !line.is_empty() && line.iter().all(u8::is_ascii_digit));
            if is_count {
                Format::Graph
            } else {
                Format::PathList
            }
        }
        Some(_) => Format::Registration,
    }
}

/// Parses a file of the given format.
pub(crate) fn parse(
    text: &[u8],
    format: Format,
    store_dir: &StoreDir,
    file: &Path,
) -> Result<Parsed, Error> {
    let parse_error = |(line, reason)| Error::Parse {
        file: file.to_path_buf(),
        at: Location::Line(line),
        reason,
    };
    match format {
        Format::Empty => Ok(Parsed {
            nodes: BTreeMap::new(),
            references_known: true,
        }),
        Format::Registration => parse_records(text, store_dir, true).map_err(parse_error),
        Format::Graph => parse_records(text, store_dir, false).map_err(parse_error),
        Format::PathList => parse_path_list(text, store_dir).map_err(parse_error),
        Format::Json => parse_json(text, store_dir, file),
    }
}

/// A line error: the line number (from 1) and what is wrong.
type LineError = (usize, Syntax);

/// The lines of a text, numbered from 1.
struct Lines<'a> {
    lines: std::str::Split<'a, char>,
    /// The number of the line last returned.
    line: usize,
}

impl<'a> Lines<'a> {
    /// Splits a text into lines, checking it is UTF-8 and ends with a newline.
    fn new(text: &'a [u8]) -> Result<Self, LineError> {
        let text = std::str::from_utf8(text).map_err(|err| {
            let line = text[..err.valid_up_to()]
                .iter()
                .filter(|&&byte| byte == b'\n')
                .count()
                + 1;
            (line, Syntax::NotUtf8)
        })?;
        let body = match text.strip_suffix('\n') {
            Some(body) => body,
            None if text.is_empty() => "",
            None => return Err((text.lines().count(), Syntax::MissingFinalNewline)),
        };
        let mut lines = body.split('\n');
        if text.is_empty() {
            lines.next(); // `"".split` yields one empty line; an empty file has none.
        }
        Ok(Lines { lines, line: 0 })
    }

    fn next_line(&mut self) -> Option<&'a str> {
        let line = self.lines.next()?;
        self.line += 1;
        Some(line)
    }

    /// The next line of the record of `record`, which must be there.
    fn expect(&mut self, record: &StorePath, expected: &'static str) -> Result<&'a str, LineError> {
        self.next_line().ok_or_else(|| {
            (
                self.line + 1,
                Syntax::Truncated {
                    record: record.clone(),
                    expected,
                },
            )
        })
    }

    /// The current line's store path.
    fn store_path(&self, store_dir: &StoreDir, text: &str) -> Result<StorePath, LineError> {
        parse_store_path(store_dir, text).map_err(|reason| (self.line, reason))
    }

    /// The current line's decimal number.
    fn number(&self, what: &'static str, text: &str) -> Result<u64, LineError> {
        parse_number(text).ok_or_else(|| {
            (
                self.line,
                Syntax::Number {
                    what,
                    text: text.to_owned(),
                },
            )
        })
    }
}

fn parse_store_path(store_dir: &StoreDir, text: &str) -> Result<StorePath, Syntax> {
    if text.is_empty() {
        return Err(Syntax::BlankLine);
    }
    store_dir
        .parse_inner(text)
        .map_err(|reason| Syntax::StorePath {
            text: text.to_owned(),
            reason,
        })
}

/// A decimal number as Nix writes it: digits only, no sign.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses registration records, with or without the hash and size lines.
fn parse_records(text: &[u8], store_dir: &StoreDir, with_hash: bool) -> Result<Parsed, LineError> {
    let mut lines = Lines::new(text)?;
    let mut nodes = BTreeMap::new();
    while let Some(line) = lines.next_line() {
        let record_line = lines.line;
        let path = lines.store_path(store_dir, line)?;
        let mut nar_size = None;
        if with_hash {
            let hash = lines.expect(&path, "the NAR hash")?;
            if !is_nar_hash(hash) {
                return Err((lines.line, Syntax::NarHash(hash.to_owned())));
            }
            let size = lines.expect(&path, "the NAR size")?;
            nar_size = Some(lines.number("NAR size", size)?);
        }
        let deriver = lines.expect(&path, "the deriver line")?;
        if !deriver.is_empty() {
            lines.store_path(store_dir, deriver)?;
        }
        let count = lines.expect(&path, "the number of references")?;
        let count = lines.number("number of references", count)?;
        let mut references = BTreeSet::new();
        for _ in 0..count {
            let reference = lines.expect(&path, "a reference")?;
            references.insert(lines.store_path(store_dir, reference)?);
        }
        insert(
            &mut nodes,
            path,
            Node {
                references,
                nar_size,
            },
        )
        .map_err(|reason| (record_line, reason))?;
    }
    Ok(Parsed {
        nodes,
        references_known: true,
    })
}

/// Parses a list of store paths, one a line.
fn parse_path_list(text: &[u8], store_dir: &StoreDir) -> Result<Parsed, LineError> {
    let mut lines = Lines::new(text)?;
    let mut nodes = BTreeMap::new();
    while let Some(line) = lines.next_line() {
        let path = lines.store_path(store_dir, line)?;
        nodes.insert(path, Node::default());
    }
    Ok(Parsed {
        nodes,
        references_known: false,
    })
}

/// Parses structured-attrs JSON.
fn parse_json(text: &[u8], store_dir: &StoreDir, file: &Path) -> Result<Parsed, Error> {
    let json_error = |source| Error::Json {
        file: file.to_path_buf(),
        source,
    };
    let value: Value = serde_json::from_slice(text).map_err(json_error)?;
    let arrays: Vec<&Vec<Value>> = match &value {
        Value::Array(entries) => vec![entries],
        Value::Object(map) => map
            .values()
            .filter_map(|value| match value {
                Value::Array(entries)
                    if !entries.is_empty() && entries.iter().all(is_graph_entry) =>
                {
                    Some(entries)
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if arrays.is_empty() && !matches!(value, Value::Array(_)) {
        return Err(Error::NoGraphInJson {
            file: file.to_path_buf(),
        });
    }
    let mut nodes = BTreeMap::new();
    for entries in arrays {
        for (index, entry) in entries.iter().enumerate() {
            let at = Location::Entry(index + 1);
            let parse_error = |reason| Error::Parse {
                file: file.to_path_buf(),
                at,
                reason,
            };
            let (path, node) = parse_json_entry(entry, store_dir).map_err(parse_error)?;
            insert(&mut nodes, path, node).map_err(parse_error)?;
        }
    }
    Ok(Parsed {
        nodes,
        references_known: true,
    })
}

fn is_graph_entry(value: &Value) -> bool {
    value.get("path").is_some() && value.get("references").is_some()
}

fn parse_json_entry(entry: &Value, store_dir: &StoreDir) -> Result<(StorePath, Node), Syntax> {
    let path = entry
        .get("path")
        .and_then(Value::as_str)
        .ok_or(Syntax::Field("path"))?;
    let path = parse_store_path(store_dir, path)?;
    let references = entry
        .get("references")
        .and_then(Value::as_array)
        .ok_or(Syntax::Field("references"))?
        .iter()
        .map(|reference| {
            let reference = reference.as_str().ok_or(Syntax::Field("references"))?;
            parse_store_path(store_dir, reference)
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let nar_size = match entry.get("narSize") {
        None => None,
        Some(size) => Some(size.as_u64().ok_or(Syntax::Field("narSize"))?),
    };
    if let Some(hash) = entry.get("narHash") {
        let hash = hash.as_str().ok_or(Syntax::Field("narHash"))?;
        if !is_nar_hash(hash) {
            return Err(Syntax::NarHash(hash.to_owned()));
        }
    }
    Ok((
        path,
        Node {
            references,
            nar_size,
        },
    ))
}

/// Adds a node, accepting a repeat that agrees with the first.
pub(crate) fn insert(
    nodes: &mut BTreeMap<StorePath, Node>,
    path: StorePath,
    node: Node,
) -> Result<(), Syntax> {
    match nodes.entry(path) {
        Entry::Vacant(vacant) => {
            vacant.insert(node);
            Ok(())
        }
        Entry::Occupied(mut occupied) => {
            let old = occupied.get_mut();
            merge_node(old, node).map_err(|()| Syntax::Conflict(occupied.key().clone()))
        }
    }
}

/// Merges what two sources say about one store path: their references must agree, and so
/// must their NAR sizes where both know them.
pub(crate) fn merge_node(old: &mut Node, new: Node) -> Result<(), ()> {
    if old.references != new.references {
        return Err(());
    }
    match (old.nar_size, new.nar_size) {
        (Some(a), Some(b)) if a != b => Err(()),
        (None, Some(size)) => {
            old.nar_size = Some(size);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether `text` is a sha256 hash in a form Nix's `Hash::parseAny(text, sha256)` accepts:
/// `sha256:` followed by base-16, Nix base-32 or base-64, SRI `sha256-<base64>`, or the same
/// encodings bare.
pub(crate) fn is_nar_hash(text: &str) -> bool {
    if let Some(sri) = text.strip_prefix("sha256-") {
        return is_base64_sha256(sri);
    }
    let digest = text.strip_prefix("sha256:").unwrap_or(text);
    is_base16_sha256(digest) || is_nix32_sha256(digest) || is_base64_sha256(digest)
}

fn is_base16_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// 52 Nix base-32 characters. They hold 260 bits, so the 4 spare high bits of the first
/// character must be zero (Nix rejects the hash otherwise).
fn is_nix32_sha256(text: &str) -> bool {
    text.len() == 52
        && text.bytes().all(crate::store_path::is_base32)
        && matches!(text.as_bytes()[0], b'0' | b'1')
}

/// 43 base-64 characters and one `=` of padding.
fn is_base64_sha256(text: &str) -> bool {
    let Some(digits) = text.strip_suffix('=') else {
        return false;
    };
    digits.len() == 43
        && digits
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0nsmdy54iqf64dgak3gpnj2fivp0l8bg-a";
    const B: &str = "/nix/store/28i8hbli7jg1jl3j9ygssgs2sj575yxd-b";
    const C: &str = "/nix/store/3bv99gnzi8lc0j4w3b4ps3vf7md97vax-c";
    const DRV: &str = "/nix/store/lnwdkr9psb2rh0gpi4hdp10pn68piab0-a.drv";
    const NIX32: &str = "sha256:0vzgr1j2b4yavhclsg2qcf8xad3dwrrf9wxwmcgbvp03yf7pbw50";
    const HEX: &str = "a0f0758ff303dcbd1eabbcf3e472e66d34d59163583c4d19dcca932564c8ef6f";
    const B64: &str = "oPB1j/MD3L0eq7zz5HLmbTTVkWNYPE0Z3MqTJWTI728=";

    /// Detects the format, parses, and renders the result as `path: refs (size)` lines, or the
    /// error message.
    fn render(text: &str) -> (Format, String) {
        let store_dir = StoreDir::default();
        let format = detect(text.as_bytes(), &store_dir);
        let rendered = match parse(text.as_bytes(), format, &store_dir, Path::new("f")) {
            Ok(parsed) => {
                let mut out = String::new();
                if !parsed.references_known {
                    out.push_str("(no references)\n");
                }
                for (path, node) in &parsed.nodes {
                    let name = &path.name();
                    let refs: Vec<&str> = node.references.iter().map(|r| r.name()).collect();
                    out.push_str(&format!("{name}: {}", refs.join(" ")));
                    if let Some(size) = node.nar_size {
                        out.push_str(&format!(" ({size})"));
                    }
                    out.push('\n');
                }
                out
            }
            Err(err) => format!("error: {err}"),
        };
        (format, rendered)
    }

    fn check(text: &str, format: Format, expect: &str) {
        let (got_format, got) = render(text);
        assert_eq!(got_format, format, "format of {text:?}");
        assert_eq!(got, expect, "parsing {text:?}");
    }

    #[test]
    fn registrations() {
        use Format::Registration as R;
        let cases: Vec<(String, &str)> = Vec::from([
            // closureInfo: sha256:<nix32>, empty deriver.
            (
                format!("{A}\n{NIX32}\n120\n\n1\n{B}\n{B}\n{NIX32}\n7\n\n0\n"),
                "a: b (120)\nb:  (7)\n",
            ),
            // dump-db: bare hex, deriver.
            (
                format!("{A}\n{HEX}\n120\n{DRV}\n2\n{A}\n{B}\n{B}\n{HEX}\n8\n\n0\n"),
                "a: a b (120)\nb:  (8)\n",
            ),
            // The other hash forms.
            (format!("{A}\nsha256:{HEX}\n1\n\n0\n"), "a:  (1)\n"),
            (format!("{A}\nsha256-{B64}\n1\n\n0\n"), "a:  (1)\n"),
            (format!("{A}\nsha256:{B64}\n1\n\n0\n"), "a:  (1)\n"),
            (format!("{A}\n{B64}\n1\n\n0\n"), "a:  (1)\n"),
            (format!("{A}\n{}\n1\n\n0\n", &NIX32[7..]), "a:  (1)\n"),
            (
                format!("{A}\n{}\n1\n\n0\n", HEX.to_uppercase()),
                "a:  (1)\n",
            ),
            // Repeats that agree are fine.
            (
                format!("{A}\n{HEX}\n1\n\n0\n{A}\n{NIX32}\n1\n\n0\n"),
                "a:  (1)\n",
            ),
        ]);
        for (text, expect) in &cases {
            check(text, R, expect);
        }
    }

    #[test]
    fn bad_registrations() {
        use Format::Registration as R;
        let cases: Vec<(String, String)> = Vec::from([
            (
                format!("{A}\n{NIX32}\n120\n\n1\n"),
                format!("error: `f`, line 6: the record of `{A}` ends early: expected a reference"),
            ),
            (
                format!("{A}\n{NIX32}\n120\n\n2\n{B}\n"),
                format!("error: `f`, line 7: the record of `{A}` ends early: expected a reference"),
            ),
            (
                format!("{A}\n{NIX32}\n120\n\n"),
                format!("error: `f`, line 5: the record of `{A}` ends early: expected the number of references"),
            ),
            (
                format!("{A}\n{NIX32}\n120\n"),
                format!("error: `f`, line 4: the record of `{A}` ends early: expected the deriver line"),
            ),
            (
                format!("{A}\n{NIX32}\n"),
                format!("error: `f`, line 3: the record of `{A}` ends early: expected the NAR size"),
            ),
            // Cut inside the last line: the reference would still parse, but the newline is gone.
            (
                format!("{A}\n{NIX32}\n120\n\n1\n{}", &B[..B.len() - 1]),
                "error: `f`, line 6: the file does not end with a newline (cut short?)".to_owned(),
            ),
            (
                format!("{A}\n{NIX32}\n120\n\n0"),
                "error: `f`, line 5: the file does not end with a newline (cut short?)".to_owned(),
            ),
            (
                format!("{A}\nsha256:{}\n1\n\n0\n", &HEX[1..]),
                format!("error: `f`, line 2: invalid NAR hash `sha256:{}` (expected sha256 in base-16, Nix base-32 or base-64)", &HEX[1..]),
            ),
            (
                format!("{A}\nsha256:2{}\n1\n\n0\n", &NIX32[8..]),
                format!("error: `f`, line 2: invalid NAR hash `sha256:2{}` (expected sha256 in base-16, Nix base-32 or base-64)", &NIX32[8..]),
            ),
            (
                format!("{A}\nsha512:{HEX}\n1\n\n0\n"),
                format!("error: `f`, line 2: invalid NAR hash `sha512:{HEX}` (expected sha256 in base-16, Nix base-32 or base-64)"),
            ),
            (
                format!("{A}\nsha256-{HEX}\n1\n\n0\n"),
                format!("error: `f`, line 2: invalid NAR hash `sha256-{HEX}` (expected sha256 in base-16, Nix base-32 or base-64)"),
            ),
            (
                format!("{A}\n{HEX}\n-1\n\n0\n"),
                "error: `f`, line 3: invalid NAR size `-1`".to_owned(),
            ),
            (
                format!("{A}\n{HEX}\n1\n\n+1\n{B}\n"),
                "error: `f`, line 5: invalid number of references `+1`".to_owned(),
            ),
            (
                format!("{A}\n{HEX}\n1\n\nx\n"),
                "error: `f`, line 5: invalid number of references `x`".to_owned(),
            ),
            (
                format!("{A}\n{HEX}\n1\n/usr/x.drv\n0\n"),
                "error: `f`, line 4: invalid store path `/usr/x.drv`: not inside the store directory".to_owned(),
            ),
            (
                format!("{A}\n{HEX}\n1\n\n1\n/nix/store/x\n"),
                "error: `f`, line 6: invalid store path `/nix/store/x`: the hash part has 1 character, not 32".to_owned(),
            ),
            (
                format!("{A}\n{HEX}\n1\n\n0\n\n"),
                "error: `f`, line 6: unexpected empty line".to_owned(),
            ),
            (
                format!("{A}\n{HEX}\n1\n\n0\n{A}\n{HEX}\n2\n\n0\n"),
                format!("error: `f`, line 6: `{A}` appears again with other references or size"),
            ),
            (
                format!("{A}\n{HEX}\n1\n\n0\n{A}\n{HEX}\n1\n\n1\n{B}\n"),
                format!("error: `f`, line 6: `{A}` appears again with other references or size"),
            ),
            (
                format!("{A}\n{HEX}\n1\n\n0\nx\n"),
                "error: `f`, line 6: invalid store path `x`: not inside the store directory".to_owned(),
            ),
        ]);
        for (text, expect) in &cases {
            check(text, R, expect);
        }
    }

    #[test]
    fn graphs() {
        use Format::Graph as G;
        let cases: Vec<(String, String)> = Vec::from([
            (format!("{A}\n\n2\n{A}\n{B}\n{B}\n\n0\n"), "a: a b\nb: \n".to_owned()),
            (format!("{A}\n\n0\n"), "a: \n".to_owned()),
            // Deriver lines, as `--register-validity` reads them.
            (format!("{A}\n{DRV}\n1\n{B}\n{B}\n\n0\n"), "a: b\nb: \n".to_owned()),
            // Concatenated files repeat shared paths.
            (
                format!("{A}\n\n1\n{B}\n{B}\n\n0\n{C}\n\n1\n{B}\n{B}\n\n0\n"),
                "a: b\nb: \nc: b\n".to_owned(),
            ),
            (
                format!("{A}\n\n1\n"),
                format!("error: `f`, line 4: the record of `{A}` ends early: expected a reference"),
            ),
            (
                format!("{A}\n\n1\n{B}"),
                "error: `f`, line 4: the file does not end with a newline (cut short?)".to_owned(),
            ),
            (
                format!("{A}\n\n"),
                format!("error: `f`, line 3: the record of `{A}` ends early: expected the number of references"),
            ),
            (
                format!("{A}\n\n0\n{A}\n\n1\n{B}\n{B}\n\n0\n"),
                format!("error: `f`, line 4: `{A}` appears again with other references or size"),
            ),
            (
                format!("{A}\n\n1 \n{B}\n"),
                "error: `f`, line 3: invalid number of references `1 `".to_owned(),
            ),
        ]);
        for (text, expect) in &cases {
            check(text, G, expect);
        }
    }

    #[test]
    fn path_lists() {
        use Format::PathList as P;
        let cases: Vec<(String, String)> = Vec::from([
            (format!("{A}\n"), "(no references)\na: \n".to_owned()),
            (format!("{A}\n{B}\n{C}\n"), "(no references)\na: \nb: \nc: \n".to_owned()),
            (format!("{B}\n{A}\n{B}\n"), "(no references)\na: \nb: \n".to_owned()),
            (
                format!("{A}\n{B}"),
                "error: `f`, line 2: the file does not end with a newline (cut short?)".to_owned(),
            ),
            (format!("{A}\n{B}\n\n{C}\n"), "error: `f`, line 3: unexpected empty line".to_owned()),
            (
                format!("{A}\n{B}/bin\n"),
                format!("error: `f`, line 2: invalid store path `{B}/bin`: goes on after the store object's name"),
            ),
            (
                format!("{A}\r\n{B}\r\n"),
                format!("error: `f`, line 1: invalid store path `{A}\\r`: '\\r' is not allowed in a store path name (A-Z a-z 0-9 + - . _ ? =)"),
            ),
        ]);
        for (text, expect) in &cases {
            check(text, P, expect);
        }
    }

    #[test]
    fn json() {
        use Format::Json as J;
        let cases: Vec<(String, String)> = Vec::from([
            ("[]".to_owned(), String::new()),
            (
                format!(r#"[{{"path":"{A}","references":["{A}","{B}"],"narSize":5,"narHash":"{NIX32}","closureSize":9}},{{"path":"{B}","references":[]}}]"#),
                "a: a b (5)\nb: \n".to_owned(),
            ),
            (
                format!(r#" {{"closure":[{{"path":"{A}","references":[]}}],"name":"x","outputs":{{"out":"{B}"}},"list":["{C}"]}}"#),
                "a: \n".to_owned(),
            ),
            (
                format!(r#"{{"x":[{{"path":"{A}","references":[]}}],"y":[{{"path":"{B}","references":["{A}"]}}]}}"#),
                "a: \nb: a\n".to_owned(),
            ),
            (
                r#"{"name":"x"}"#.to_owned(),
                "error: `f` has no exportReferencesGraph data (an array of objects with `path` and `references`)".to_owned(),
            ),
            (
                r#"[{"path":1,"references":[]}]"#.to_owned(),
                "error: `f`, entry 1: no `path` field of the right type".to_owned(),
            ),
            (
                format!(r#"[{{"path":"{A}","references":[]}},{{"path":"{B}"}}]"#),
                "error: `f`, entry 2: no `references` field of the right type".to_owned(),
            ),
            (
                format!(r#"[{{"path":"{A}","references":["/usr"]}}]"#),
                "error: `f`, entry 1: invalid store path `/usr`: not inside the store directory".to_owned(),
            ),
            (
                format!(r#"[{{"path":"{A}","references":[],"narHash":"md5:x"}}]"#),
                "error: `f`, entry 1: invalid NAR hash `md5:x` (expected sha256 in base-16, Nix base-32 or base-64)".to_owned(),
            ),
            (
                format!(r#"[{{"path":"{A}","references":[],"narSize":-1}}]"#),
                "error: `f`, entry 1: no `narSize` field of the right type".to_owned(),
            ),
            (
                format!(r#"[{{"path":"{A}","references":[]}},{{"path":"{A}","references":["{B}"]}}]"#),
                format!("error: `f`, entry 2: `{A}` appears again with other references or size"),
            ),
            (
                format!(r#"[{{"path":"{A}","references":[]"#),
                "error: cannot parse `f` as exportReferencesGraph JSON".to_owned(),
            ),
        ]);
        for (text, expect) in &cases {
            check(text, J, expect);
        }
    }

    #[test]
    fn detection() {
        let cases: Vec<(String, Format)> = Vec::from([
            (String::new(), Format::Empty),
            ("\n \n".to_owned(), Format::Empty),
            (A.to_owned(), Format::PathList),
            (format!("{A}\n"), Format::PathList),
            (format!("{A}\n{B}\n"), Format::PathList),
            (format!("{A}\n{DRV}\n{B}\n"), Format::PathList),
            (format!("{A}\n\n0\n"), Format::Graph),
            (format!("{A}\n{DRV}\n0\n"), Format::Graph),
            (format!("{A}\n{NIX32}\n1\n\n0\n"), Format::Registration),
            (format!("{A}\n{HEX}\n1\n{DRV}\n0\n"), Format::Registration),
            (format!("{A}\ngarbage\n"), Format::Registration),
            ("[]".to_owned(), Format::Json),
            ("\n {}".to_owned(), Format::Json),
        ]);
        for (text, expect) in &cases {
            assert_eq!(
                detect(text.as_bytes(), &StoreDir::default()),
                *expect,
                "{text:?}"
            );
        }
    }

    #[test]
    fn nar_hashes() {
        let good = [
            NIX32.to_owned(),
            NIX32[7..].to_owned(),
            HEX.to_owned(),
            format!("sha256:{HEX}"),
            format!("sha256:{B64}"),
            format!("sha256-{B64}"),
            B64.to_owned(),
            "sha256:1j5syi87fga49y4lw6hqmd1jap6d9g1j6cbxckjzawj7x859cfhh".to_owned(),
        ];
        let bad = [
            String::new(),
            "sha256:".to_owned(),
            format!("sha256:{}", &HEX[..63]),
            format!("sha256:{HEX}0"),
            format!("sha256:{}g", &HEX[..63]),
            // Spare bits set, and letters outside the Nix alphabet.
            format!("sha256:2{}", &NIX32[8..]),
            format!("sha256:0{}e", &NIX32[8..58]),
            format!("sha256-{HEX}"),
            format!("sha256-{}", &B64[..43]),
            format!("sha1:{HEX}"),
            format!("SHA256:{HEX}"),
        ];
        for hash in &good {
            assert!(is_nar_hash(hash), "{hash:?} should be accepted");
        }
        for hash in &bad {
            assert!(!is_nar_hash(hash), "{hash:?} should be rejected");
        }
    }
}
