//! The image's `/etc/os-release`: its fields, their rendering, and a small parser.
//!
//! `portablectl` reads this file to identify the image, and takes its
//! `PORTABLE_PREFIXES` to decide which unit files belong to it. The fields are those
//! nixpkgs' `portableService` writes, plus the prefixes and the image identity:
//!
//! | key | value |
//! |---|---|
//! | `PORTABLE_ID` | `name` |
//! | `PORTABLE_PRETTY_NAME` | `description`, or `"<name> <version>"` without one |
//! | `PORTABLE_PREFIXES` | `name` |
//! | `HOME_URL` | `homepage` (only if given) |
//! | `ID`, `PRETTY_NAME`, `BUILD_ID` | `nixos`, `NixOS`, `rolling` |
//! | `IMAGE_ID`, `IMAGE_VERSION` | `name`, `version` |
//!
//! Fields from the spec's `[os-release]` table override these or add to them.
//!
//! # Format
//!
//! One `KEY="value"` line per field, keys sorted, so the same spec always gives the
//! same bytes. Every value is double-quoted, with `\`, `"`, `` ` `` and `$` escaped by a
//! backslash (os-release(5): "shell-compatible variable assignments"):
//!
//! ```text
//! BUILD_ID="rolling"
//! ID="nixos"
//! IMAGE_ID="demo"
//! IMAGE_VERSION="1.0"
//! PORTABLE_ID="demo"
//! PORTABLE_PREFIXES="demo"
//! PORTABLE_PRETTY_NAME="Demo \"portable\" service"
//! PRETTY_NAME="NixOS"
//! ```

use std::collections::BTreeMap;

use crate::{rules, Spec};

/// The fields of the image's os-release: the defaults above, then the spec's own.
pub fn fields(spec: &Spec) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut set = |key: &str, value: &str| fields.insert(key.to_owned(), value.to_owned());
    set("PORTABLE_ID", &spec.name);
    match &spec.description {
        Some(description) => set("PORTABLE_PRETTY_NAME", description),
        None => set(
            "PORTABLE_PRETTY_NAME",
            &format!("{} {}", spec.name, spec.version),
        ),
    };
    if let Some(homepage) = &spec.homepage {
        set("HOME_URL", homepage);
    }
    set("ID", "nixos");
    set("PRETTY_NAME", "NixOS");
    set("BUILD_ID", "rolling");
    set("PORTABLE_PREFIXES", &spec.name);
    set("IMAGE_ID", &spec.name);
    set("IMAGE_VERSION", &spec.version);
    fields.extend(
        spec.os_release
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    fields
}

/// The text of the image's `/etc/os-release`: [`render_fields`] of [`fields`].
pub fn render(spec: &Spec) -> String {
    render_fields(&fields(spec))
}

/// Renders fields as os-release lines, in key order, each value quoted by [`quote`].
///
/// Keys and values are written as given: a validated [`Spec`] only holds valid keys
/// and single-line values.
pub fn render_fields(fields: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        out.push_str(key);
        out.push('=');
        out.push_str(&quote(value));
        out.push('\n');
    }
    out
}

/// Quotes a value for os-release: double quotes, and a backslash before each `\`, `"`,
/// `` ` `` and `$`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A line of os-release text that [`parse`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The line (1-based).
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

/// Reads os-release text: `KEY=value` lines, blank lines, `#` comments.
///
/// Values follow systemd's environment-file rules (`parse_env_file`): unquoted text
/// where a backslash escapes any character, `'single'` quotes taken literally, and
/// `"double"` quotes where a backslash escapes `\`, `"`, `` ` `` and `$` (and is kept
/// before anything else). Quoted parts may follow each other and end in unquoted
/// text, inside which quotes are ordinary characters. A later key
/// replaces an earlier one. Stricter than systemd where it helps tests: a line without
/// `=`, an invalid key, an unterminated quote and a line continuation are errors.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut fields = BTreeMap::new();
    for (idx, line) in text.lines().enumerate() {
        let error = |message: String| ParseError {
            line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
            message,
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(error("expected `KEY=value`".to_owned()));
        };
        let key = key.trim_end();
        rules::os_release_key(key).map_err(error)?;
        let value = parse_value(value).map_err(|message| error(message.to_owned()))?;
        fields.insert(key.to_owned(), value);
    }
    Ok(fields)
}

/// Reads one value (the text after `=`), with the states of systemd's parser.
fn parse_value(text: &str) -> Result<String, &'static str> {
    enum State {
        /// Before a value part: whitespace is skipped, a quote opens.
        Pre,
        /// Unquoted text: quotes are ordinary characters here.
        Bare,
        Single,
        Double,
    }
    let continuation = "line continuations are not supported";
    let mut out = String::new();
    // Bytes of unquoted whitespace at the end of `out`, which systemd drops.
    let mut trailing_space = 0;
    let mut state = State::Pre;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match state {
            State::Pre | State::Bare if c == '\\' => {
                out.push(chars.next().ok_or(continuation)?);
                trailing_space = 0;
                state = State::Bare;
            }
            State::Pre => match c {
                '\'' => state = State::Single,
                '"' => state = State::Double,
                c if c.is_whitespace() => {}
                c => {
                    out.push(c);
                    state = State::Bare;
                }
            },
            State::Bare => {
                out.push(c);
                trailing_space = if c.is_whitespace() {
                    trailing_space + c.len_utf8()
                } else {
                    0
                };
            }
            State::Single => match c {
                '\'' => state = State::Pre,
                c => out.push(c),
            },
            State::Double => match c {
                '"' => state = State::Pre,
                '\\' => {
                    let next = chars.next().ok_or(continuation)?;
                    if !matches!(next, '\\' | '"' | '`' | '$') {
                        out.push('\\');
                    }
                    out.push(next);
                }
                c => out.push(c),
            },
        }
    }
    match state {
        State::Pre | State::Bare => {
            out.truncate(out.len() - trailing_space);
            Ok(out)
        }
        State::Single | State::Double => Err("unterminated quote"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    fn spec(description: Option<&str>, homepage: Option<&str>, extra: &[(&str, &str)]) -> Spec {
        Spec {
            name: "demo".to_owned(),
            version: "1.0".to_owned(),
            description: description.map(str::to_owned),
            homepage: homepage.map(str::to_owned),
            units: Vec::new(),
            contents: Vec::new(),
            symlinks: Vec::new(),
            compression: crate::DEFAULT_COMPRESSION.to_owned(),
            block_size: crate::DEFAULT_BLOCK_SIZE.to_owned(),
            store_dir: PathBuf::from(crate::DEFAULT_STORE_DIR),
            closure_info: None,
            os_release: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn renders_the_seed_fields() {
        let text = render(&spec(
            Some("Demo portable service"),
            Some("https://example.org/demo"),
            &[],
        ));
        assert_eq!(
            text,
            r#"BUILD_ID="rolling"
HOME_URL="https://example.org/demo"
ID="nixos"
IMAGE_ID="demo"
IMAGE_VERSION="1.0"
PORTABLE_ID="demo"
PORTABLE_PREFIXES="demo"
PORTABLE_PRETTY_NAME="Demo portable service"
PRETTY_NAME="NixOS"
"#
        );
    }

    #[test]
    fn renders_without_description_or_homepage() {
        let text = render(&spec(None, None, &[]));
        assert_eq!(
            text,
            r#"BUILD_ID="rolling"
ID="nixos"
IMAGE_ID="demo"
IMAGE_VERSION="1.0"
PORTABLE_ID="demo"
PORTABLE_PREFIXES="demo"
PORTABLE_PRETTY_NAME="demo 1.0"
PRETTY_NAME="NixOS"
"#
        );
    }

    #[test]
    fn spec_fields_override_and_add() {
        let fields = fields(&spec(
            None,
            None,
            &[
                ("ID", "demo-os"),
                ("VERSION_ID", "1"),
                ("ANSI_COLOR", "0;31"),
            ],
        ));
        let got: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "ANSI_COLOR=0;31",
                "BUILD_ID=rolling",
                "ID=demo-os",
                "IMAGE_ID=demo",
                "IMAGE_VERSION=1.0",
                "PORTABLE_ID=demo",
                "PORTABLE_PREFIXES=demo",
                "PORTABLE_PRETTY_NAME=demo 1.0",
                "PRETTY_NAME=NixOS",
                "VERSION_ID=1",
            ]
        );
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn quoting() {
        let check = |value: &str, expect: &str| assert_eq!(quote(value), expect, "{value}");
        check("", r#""""#);
        check("plain text", r#""plain text""#);
        check(r#"say "hi""#, r#""say \"hi\"""#);
        check(r"back\slash", r#""back\\slash""#);
        check("$HOME and `cmd`", r#""\$HOME and \`cmd\`""#);
        check("it's; #not a comment", r#""it's; #not a comment""#);
        check("ünïcødé", r#""ünïcødé""#);
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn parsing() {
        let check = |text: &str, expect: &str| {
            let got = match parse(text) {
                Ok(fields) => fields
                    .iter()
                    .map(|(k, v)| format!("{k}=[{v}]"))
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(err) => format!("error: {err}"),
            };
            assert_eq!(got, expect, "{text:?}");
        };
        check("", "");
        check("# comment\n\n; also a comment\nA=1\n", "A=[1]");
        check("A=plain", "A=[plain]");
        check("A=\"double\"", "A=[double]");
        check("A='single $x \\n'", "A=[single $x \\n]");
        check(r#"A="\\ \" \` \$ \n""#, r#"A=[\ " ` $ \n]"#);
        check(r"A=bare\ esc\aped", "A=[bare escaped]");
        check("A=\"joined\"'parts'bare", "A=[joinedpartsbare]");
        check("A=\"spaces\" 'between' parts", "A=[spacesbetweenparts]");
        check("A=bare\"quotes\"", "A=[bare\"quotes\"]");
        check("  A  =  spaced  ", "A=[spaced]");
        check("A=\"  kept  \"", "A=[  kept  ]");
        check("A=", "A=[]");
        check("A=1\nA=2", "A=[2]");
        check("A=1\r\nB=2\r\n", "A=[1] B=[2]");
        check("A", "error: line 1: expected `KEY=value`");
        check("\nlower=1", "error: line 2: `lower` is not an os-release key: use `A`-`Z`, `0`-`9` and `_`, starting with a letter");
        check("A=\"open", "error: line 1: unterminated quote");
        check("A='open", "error: line 1: unterminated quote");
        check("A=cont\\", "error: line 1: line continuations are not supported");
    }

    /// `parse(render(fields)) == fields` for values made of every awkward character,
    /// drawn with a fixed seed so a failure reproduces.
    #[test]
    fn round_trip() {
        let alphabet: Vec<char> = "aZ0 _-.'\"\\`$#;=\t{}()*?!~^ü€😀".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            // xorshift64*: enough randomness for test data, and no dependency.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
        };
        for _ in 0..512 {
            let mut fields = BTreeMap::new();
            for key_idx in 0..next(6) {
                let len = next(12);
                let value: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
                fields.insert(format!("KEY_{key_idx}"), value);
            }
            let text = render_fields(&fields);
            assert_eq!(parse(&text), Ok(fields), "{text}");
        }
    }

    #[test]
    fn round_trip_of_a_spec() {
        let spec = spec(
            Some("A \"quoted\" $VAR `cmd` \\ service"),
            Some("https://example.org/?a=1&b='2'"),
            &[("X", "  ")],
        );
        assert_eq!(parse(&render(&spec)), Ok(fields(&spec)));
    }
}
