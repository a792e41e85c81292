//! Loading specs end to end, TOML and JSON: every rule, good and bad, with exact messages.
//!
//! Each case runs in a fresh folder holding the fixtures of [`Fixture::new`]. In the
//! spec text, `$DIR` is that folder, `$STORE` a fake store in it (holding
//! `$HASH-demo-1.0`) and `$HASH` a valid store hash; in the expected text the folder
//! appears as `$DIR` again.

use std::fs;
use std::path::Path;

use mkportable_spec::{os_release, Content, Error, Problem, Spec, Symlink, Unit};
use tempfile::TempDir;

const HASH: &str = "0c6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg";

/// The first three lines of every TOML case: the required fields. A case that sets
/// one of these keys, or says `#no <key>`, blanks the line, so case lines always
/// start at line 4.
const BASE: [(&str, &str); 3] = [
    ("name", r#"name = "demo""#),
    ("version", r#"version = "1.0""#),
    ("units", r#"units = ["units/demo.service"]"#),
];

struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path();
        let unit = "[Service]\nExecStart=/bin/true\n";
        let files = [
            ("units/demo.service", unit),
            ("units/demo.socket", "[Socket]\nListenStream=1234\n"),
            ("units/demo-at.service", unit),
            ("units/demoweb.service", unit),
            ("units/demo-empty.service", ""),
            ("payload/share/demo.txt", "payload\n"),
            ("payload.txt", "not a folder\n"),
            ("closure-info/store-paths", ""),
        ];
        for (path, text) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        fs::create_dir_all(root.join("units/demo-dir.service")).unwrap();
        let object = root.join(format!("store/{HASH}-demo-1.0/bin/demo"));
        fs::create_dir_all(object.parent().unwrap()).unwrap();
        fs::write(object, "#!/bin/sh\n").unwrap();
        fs::write(root.join(format!("store/{HASH}-demo.service")), unit).unwrap();
        // A store path may be a symlink, even a dangling one.
        std::os::unix::fs::symlink("nowhere", root.join(format!("store/{HASH}-link"))).unwrap();
        Fixture { dir }
    }

    fn root(&self) -> &str {
        self.dir.path().to_str().expect("a UTF-8 temporary folder")
    }

    /// Fills in `$STORE`, `$DIR` and `$HASH`.
    fn expand(&self, text: &str) -> String {
        text.replace("$STORE", "$DIR/store")
            .replace("$DIR", self.root())
            .replace("$HASH", HASH)
    }

    /// `ok`, or the error as the user sees it, with the folder shown as `$DIR`.
    fn outcome(&self, result: Result<Spec, Error>) -> String {
        match result {
            Ok(_) => "ok".to_owned(),
            Err(err) => err.to_string().replace(self.root(), "$DIR"),
        }
    }

    fn toml(&self, case: &str) -> Result<Spec, Error> {
        let text = self.expand(&toml_spec(case));
        Spec::from_toml_str(&text, self.dir.path(), "spec.toml")
    }

    fn json(&self, text: &str) -> Result<Spec, Error> {
        Spec::from_json_str(&self.expand(text), self.dir.path(), "spec.json")
    }
}

/// [`BASE`] (less the keys the case sets), then the case.
fn toml_spec(case: &str) -> String {
    let mut text = String::new();
    // Top-level keys come before the first table header.
    let top_level = case.lines().take_while(|line| !line.starts_with('['));
    for (key, line) in BASE {
        let header = format!("[[{key}]]");
        let set = case.lines().any(|case_line| case_line == header)
            || top_level.clone().any(|case_line| {
                let case_line = case_line.trim();
                case_line == format!("#no {key}")
                    || case_line
                        .strip_prefix(key)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
        text.push_str(if set { "#" } else { line });
        text.push('\n');
    }
    text.push_str(case);
    text.push('\n');
    text
}

/// Checks a TOML case (after [`BASE`], from line 4): `ok` or the exact error.
#[track_caller]
fn check(case: &str, expect: &str) {
    let fixture = Fixture::new();
    let got = fixture.outcome(fixture.toml(case));
    assert_eq!(
        got,
        fixture.expand(expect).replace(fixture.root(), "$DIR"),
        "\n{case}"
    );
}

/// Checks a whole JSON spec: `ok` or the exact error.
#[track_caller]
fn check_json(text: &str, expect: &str) {
    let fixture = Fixture::new();
    let got = fixture.outcome(fixture.json(text));
    assert_eq!(
        got,
        fixture.expand(expect).replace(fixture.root(), "$DIR"),
        "\n{text}"
    );
}

const EXAMPLE_TOML: &str = r#"
description = "Demo portable service"
homepage = "https://example.org/demo"
units = [
  "units/demo.service",
  "units/demo.socket",
  { source = "units/demo-at.service", name = "demo@.service" },
]
contents = [
  "$STORE/$HASH-demo-1.0",
  { source = "payload", target = "/opt/demo" },
]
symlinks = [ { object = "$STORE/$HASH-demo-1.0/bin/demo", symlink = "/bin/demo" } ]
compression = "zstd -Xcompression-level 19"
block-size = "128K"
store-dir = "$STORE"
closure-info = "closure-info"
[os-release]
VERSION_ID = "1"
"#;

const EXAMPLE_JSON: &str = r#"{
  "name": "demo",
  "version": "1.0",
  "description": "Demo portable service",
  "homepage": "https://example.org/demo",
  "units": [
    "units/demo.service",
    "$DIR/units/demo.socket",
    { "source": "units/demo-at.service", "name": "demo@.service" }
  ],
  "contents": [
    "$STORE/$HASH-demo-1.0",
    { "source": "payload", "target": "/opt/demo" }
  ],
  "symlinks": [ { "object": "$STORE/$HASH-demo-1.0/bin/demo", "symlink": "/bin/demo" } ],
  "compression": "zstd -Xcompression-level 19",
  "block-size": "128K",
  "store-dir": "$STORE",
  "closure-info": "./closure-info",
  "os-release": { "VERSION_ID": "1" }
}"#;

/// What both examples load to.
fn example_spec(root: &Path) -> Spec {
    let store = root.join("store");
    Spec {
        name: "demo".to_owned(),
        version: "1.0".to_owned(),
        description: Some("Demo portable service".to_owned()),
        homepage: Some("https://example.org/demo".to_owned()),
        units: vec![
            Unit {
                source: root.join("units/demo.service"),
                name: "demo.service".to_owned(),
            },
            Unit {
                source: root.join("units/demo.socket"),
                name: "demo.socket".to_owned(),
            },
            Unit {
                source: root.join("units/demo-at.service"),
                name: "demo@.service".to_owned(),
            },
        ],
        contents: vec![
            Content::StorePath(store.join(format!("{HASH}-demo-1.0"))),
            Content::HostDir {
                source: root.join("payload"),
                target: "/opt/demo".into(),
            },
        ],
        symlinks: vec![Symlink {
            object: format!("{}/{HASH}-demo-1.0/bin/demo", store.display()),
            symlink: "/bin/demo".into(),
        }],
        compression: "zstd -Xcompression-level 19".to_owned(),
        block_size: "128K".to_owned(),
        store_dir: store,
        closure_info: Some(root.join("closure-info")),
        os_release: [("VERSION_ID".to_owned(), "1".to_owned())].into(),
    }
}

#[test]
fn the_example_loads_from_toml_and_json_alike() {
    let fixture = Fixture::new();
    let expect = example_spec(fixture.dir.path());
    assert_eq!(fixture.toml(EXAMPLE_TOML).unwrap(), expect);
    assert_eq!(fixture.json(EXAMPLE_JSON).unwrap(), expect);
}

#[test]
fn defaults() {
    let fixture = Fixture::new();
    let spec = fixture.toml("").unwrap();
    assert_eq!(spec.description, None);
    assert_eq!(spec.homepage, None);
    assert_eq!(spec.contents, []);
    assert_eq!(spec.symlinks, []);
    assert_eq!(spec.compression, "xz -Xdict-size 100%");
    assert_eq!(spec.block_size, "1M");
    assert_eq!(spec.store_dir, Path::new("/nix/store"));
    assert_eq!(spec.closure_info, None);
    assert!(spec.os_release.is_empty());
    assert_eq!(spec.image_file_name(), "demo_1.0.raw");
}

#[test]
fn load_picks_the_syntax_by_extension_and_resolves_against_the_spec_folder() {
    let fixture = Fixture::new();
    let root = fixture.dir.path();
    fs::create_dir(root.join("specs")).unwrap();
    let toml = root.join("specs/spec.toml");
    let json = root.join("specs/spec.JSON");
    fs::write(
        &toml,
        fixture.expand(&toml_spec(r#"units = ["../units/demo.service"]"#)),
    )
    .unwrap();
    fs::write(
        &json,
        r#"{"name": "demo", "version": "1.0", "units": ["../units/demo.service"]}"#,
    )
    .unwrap();
    let from_toml = Spec::load(&toml).unwrap();
    let from_json = Spec::load(&json).unwrap();
    assert_eq!(
        from_toml.units[0].source,
        root.join("specs/../units/demo.service")
    );
    assert_eq!(from_toml, from_json);

    // Errors name the file as the caller wrote its path.
    fs::write(&toml, "name = 1\n").unwrap();
    fs::write(&json, "{\"name\": 1}").unwrap();
    assert_eq!(
        fixture.outcome(Spec::load(&toml)),
        "$DIR/specs/spec.toml:1:8: invalid type: integer `1`, expected a string"
    );
    assert_eq!(
        fixture.outcome(Spec::load(&json)),
        "$DIR/specs/spec.JSON:1:10: invalid type: integer `1`, expected a string"
    );
}

#[test]
fn load_names_an_unreadable_file() {
    let fixture = Fixture::new();
    let err = Spec::load(fixture.dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("nope.toml")));
    assert_eq!(fixture.outcome(Err(err)), "cannot read `$DIR/nope.toml`");
    let err = Spec::load(fixture.dir.path().join("units")).unwrap_err();
    // The cause stays in `source`, for the CLI to print as `caused by:`.
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
#[rustfmt::skip] // one case per line
fn name() {
    check(r#"name = "Demo.2-x""#, "spec.toml:3: units[0]: `demo.service` does not start with `Demo.2-x` followed by `.`, `-` or `@`, so portablectl would not attach it");
    check("#no name", "spec.toml: name: required field is missing");
    check(r#"name = """#, "spec.toml:4: name: must not be empty");
    check(r#"name = "demo_x""#, "spec.toml:4: name: `demo_x` contains '_': use only ASCII letters, digits, `-` and `.` (systemd cuts the image file name at the first `_`)");
    check(r#"name = "de/mo""#, "spec.toml:4: name: `de/mo` contains '/': use only ASCII letters, digits, `-` and `.`");
    // The prefix match is case-sensitive, as systemd's.
    check(r#"name = "Demo""#, "spec.toml:3: units[0]: `demo.service` does not start with `Demo` followed by `.`, `-` or `@`, so portablectl would not attach it");
}

#[test]
#[rustfmt::skip] // one case per line
fn version() {
    check(r#"version = "1.0~rc1^git-2""#, "ok");
    check("#no version", "spec.toml: version: required field is missing");
    check(r#"version = """#, "spec.toml:4: version: must not be empty");
    check(r#"version = "1_0""#, "spec.toml:4: version: `1_0` contains '_': use only ASCII letters, digits, `.`, `-`, `~` and `^` (systemd cuts the image file name at the first `_`)");
    check(r#"version = "1 0""#, "spec.toml:4: version: `1 0` contains ' ': use only ASCII letters, digits, `.`, `-`, `~` and `^`");
}

#[test]
#[rustfmt::skip] // one case per line
fn description_and_homepage() {
    check(r#"description = "Demo \"quoted\" $VAR""#, "ok");
    check(r#"homepage = "https://example.org/demo""#, "ok");
    check(r#"description = """#, "spec.toml:4: description: must not be empty (leave it out instead)");
    check(r#"homepage = """#, "spec.toml:4: homepage: must not be empty (leave it out instead)");
    check(r#"description = "two\nlines""#, "spec.toml:4: description: contains a line break");
    check(r#"homepage = "nul\u0000""#, "spec.toml:4: homepage: contains a NUL byte");
}

#[test]
#[rustfmt::skip] // one case per line
fn units() {
    check(r#"units = ["units/demo.service", "units/demo.socket"]"#, "ok");
    check(r#"units = ["$DIR/units/demo.service"]"#, "ok");
    check(r#"units = ["./units//demo.service"]"#, "ok");
    check(r#"units = [{ source = "units/demo-at.service", name = "demo@.service" }]"#, "ok");
    check(r#"units = [{ source = "units/demo-at.service" }]"#, "ok");
    check("[[units]]\nsource = \"units/demo-at.service\"\nname = \"demo@.service\"", "ok");
    check("store-dir = \"$STORE\"\nunits = [\"$STORE/$HASH-demo.service\"]", "ok");
    check("units = [\"$STORE/$HASH-demo.service\"]", "spec.toml:4: units[0]: `$HASH-demo.service` does not start with `demo` followed by `.`, `-` or `@`, so portablectl would not attach it");
    check("#no units", "spec.toml: units: at least one unit is required");
    check("units = []", "spec.toml:4: units: at least one unit is required");
    check(r#"units = ["units/demoweb.service"]"#, "spec.toml:4: units[0]: `demoweb.service` does not start with `demo` followed by `.`, `-` or `@`, so portablectl would not attach it");
    check(r#"units = ["units/demo-missing.service"]"#, "spec.toml:4: units[0]: `$DIR/units/demo-missing.service` does not exist");
    check(r#"units = ["units/demo-empty.service"]"#, "spec.toml:4: units[0]: `$DIR/units/demo-empty.service` is empty");
    check(r#"units = ["units/demo-dir.service"]"#, "spec.toml:4: units[0]: `$DIR/units/demo-dir.service` is not a regular file");
    check(r#"units = [""]"#, "spec.toml:4: units[0]: must not be empty");
    check(
        r#"units = ["units/.."]"#,
        "spec.toml:4: units[0]: `units/..` does not name a file\n\
         spec.toml:4: units[0]: `$DIR/units/..` is not a regular file",
    );
    check(
        r#"units = ["units/missing.mount"]"#,
        "spec.toml:4: units[0]: `$DIR/units/missing.mount` does not exist\n\
         spec.toml:4: units[0]: `missing.mount` does not end in `.service`, `.socket`, `.target`, `.timer` or `.path`",
    );
    check(r#"units = [{ source = "units/demo.service", name = "demo.mount" }]"#, "spec.toml:4: units[0].name: `demo.mount` does not end in `.service`, `.socket`, `.target`, `.timer` or `.path`");
    check(r#"units = [{ source = "units/demo.service", name = "" }]"#, "spec.toml:4: units[0].name: must not be empty");
    check(r#"units = [{ source = "units/demo.service", name = "demo x.service" }]"#, "spec.toml:4: units[0].name: `demo x.service` contains ' ', which a unit name cannot contain");
    check(r#"units = [{ name = "demo.service" }]"#, "spec.toml:4: units[0].source: required field is missing");
    check(r#"units = ["units/demo.service", "units/demo.service"]"#, "spec.toml:4: units[1]: `demo.service` is already installed by units[0]");
    check("units = [\n  \"units/demo.service\",\n  { source = \"units/demo-at.service\", name = \"demo.service\" },\n]", "spec.toml:6: units[1].name: `demo.service` is already installed by units[0]");
    // Field-level lines in an array of tables.
    check("[[units]]\nsource = \"units/demo-at.service\"\nname = \"demox@.service\"", "spec.toml:6: units[0].name: `demox@.service` does not start with `demo` followed by `.`, `-` or `@`, so portablectl would not attach it");
    // PORTABLE_PREFIXES, when set, is what portablectl matches against.
    check(
        "units = [\"units/demo.service\", { source = \"units/demo.socket\", name = \"other.socket\" }]\n\
         [os-release]\nPORTABLE_PREFIXES = \"demo other\"",
        "ok",
    );
    check("[os-release]\nPORTABLE_PREFIXES = \"other\"", "spec.toml:3: units[0]: `demo.service` does not start with `other` followed by `.`, `-` or `@`, so portablectl would not attach it");
}

#[test]
#[rustfmt::skip] // one case per line
fn contents() {
    let store = r#"store-dir = "$STORE""#;
    check(&format!("{store}\ncontents = [\"$STORE/$HASH-demo-1.0\"]"), "ok");
    check(&format!("{store}\ncontents = [\"$STORE/$HASH-demo-1.0\", \"$STORE/$HASH-demo-1.0\"]"), "ok");
    check(&format!("{store}\ncontents = [\"$STORE/$HASH-link\"]"), "ok");
    check(r#"contents = [{ source = "payload", target = "/opt/demo" }]"#, "ok");
    check(r#"contents = [{ source = "$DIR/payload", target = "/var/lib/demo" }]"#, "ok");
    check(r#"contents = [{ source = "payload", target = "/opt/a" }, { source = "payload", target = "/opt/b" }]"#, "ok");
    check(&format!("{store}\ncontents = [\"$STORE/$HASH-missing\"]"), "spec.toml:5: contents[0]: `$DIR/store/$HASH-missing` does not exist");
    check(&format!("{store}\ncontents = [\"/nix/store/$HASH-demo-1.0\"]"), "spec.toml:5: contents[0]: `/nix/store/$HASH-demo-1.0` is not in the store `$DIR/store`; graft a host directory with { source = \"...\", target = \"/...\" }");
    check(r#"contents = ["payload"]"#, "spec.toml:4: contents[0]: `payload` is not in the store `/nix/store`; graft a host directory with { source = \"...\", target = \"/...\" }");
    check(&format!("{store}\ncontents = [\"$STORE/$HASH-demo-1.0/bin/demo\"]"), "spec.toml:5: contents[0]: `$DIR/store/$HASH-demo-1.0/bin/demo` is inside the store path `$DIR/store/$HASH-demo-1.0`; list the store path itself");
    check(&format!("{store}\ncontents = [\"$STORE/demo-1.0\"]"), "spec.toml:5: contents[0]: `$DIR/store/demo-1.0` is not a store path: expected a 32-character hash, `-` and a name");
    check(r#"contents = [{ source = "payload.txt", target = "/opt/demo" }]"#, "spec.toml:4: contents[0].source: `$DIR/payload.txt` is not a directory");
    check(r#"contents = [{ source = "nope", target = "/opt/demo" }]"#, "spec.toml:4: contents[0].source: `$DIR/nope` does not exist");
    check(r#"contents = [{ source = "payload" }]"#, "spec.toml:4: contents[0].target: required field is missing");
    check(r#"contents = [{ target = "/opt/demo" }]"#, "spec.toml:4: contents[0].source: required field is missing");
    check(r#"contents = [{ source = "payload", target = "opt/demo" }]"#, "spec.toml:4: contents[0].target: `opt/demo` is not an absolute path");
    check(r#"contents = [{ source = "payload", target = "/" }]"#, "spec.toml:4: contents[0].target: must not be `/`");
    check(r#"contents = [{ source = "payload", target = "/opt/demo/" }]"#, "spec.toml:4: contents[0].target: `/opt/demo/` is not normalised: it ends with `/`");
    check(r#"contents = [{ source = "payload", target = "/opt/../demo" }]"#, "spec.toml:4: contents[0].target: `/opt/../demo` is not normalised: it has a `..` component");
    check(r#"contents = [{ source = "payload", target = "/nix/store/x" }]"#, "spec.toml:4: contents[0].target: `/nix/store/x` is inside the store directory `/nix/store`, which holds only the closure");
    check(r#"contents = [{ source = "payload", target = "/etc" }]"#, "spec.toml:4: contents[0].target: `/etc` is a directory the image scaffold creates");
    check(r#"contents = [{ source = "payload", target = "/var" }]"#, "spec.toml:4: contents[0].target: `/var` is a directory the image scaffold creates");
    check(r#"contents = [{ source = "payload", target = "/etc/os-release" }]"#, "spec.toml:4: contents[0].target: `/etc/os-release` is a file the image scaffold writes");
    check(r#"contents = [{ source = "payload", target = "/tmp/demo" }]"#, "spec.toml:4: contents[0].target: `/tmp/demo` is inside `/tmp`, which the image scaffold owns");
    check(r#"contents = [{ source = "payload", target = "/opt/demo" }, { source = "payload", target = "/opt/demo" }]"#, "spec.toml:4: contents[1].target: `/opt/demo` is already used by contents[0].target");
    check(r#"contents = [{ source = "payload", target = "/opt/demo" }, { source = "payload", target = "/opt/demo/sub" }]"#, "spec.toml:4: contents[1].target: `/opt/demo/sub` is inside `/opt/demo`, placed by contents[0].target");
    check(r#"contents = [{ source = "payload", target = "/opt/demo" }, { source = "payload", target = "/opt" }]"#, "spec.toml:4: contents[1].target: `/opt` contains `/opt/demo`, placed by contents[0].target");
    // A store path needs a valid store directory to be judged; the bad `store-dir`
    // is reported once, not once more per store path.
    check("store-dir = \"nix/store\"\ncontents = [\"/nix/store/$HASH-demo-1.0\"]", "spec.toml:4: store-dir: `nix/store` is not an absolute path");
}

#[test]
#[rustfmt::skip] // one case per line
fn symlinks() {
    check(r#"symlinks = [{ object = "/nix/store/x/bin/demo", symlink = "/bin/demo" }]"#, "ok");
    check(r#"symlinks = [{ object = "../lib/demo", symlink = "/usr/bin/demo" }]"#, "ok");
    check(r#"symlinks = [{ object = "x", symlink = "/etc/demo.conf" }, { object = "y", symlink = "/var/lib/demo" }]"#, "ok");
    check(r#"symlinks = [{ object = "x", symlink = "/etc/systemd/system/other.service" }]"#, "ok");
    check(r#"symlinks = [{ object = "", symlink = "/bin/demo" }]"#, "spec.toml:4: symlinks[0].object: must not be empty");
    check(r#"symlinks = [{ symlink = "/bin/demo" }]"#, "spec.toml:4: symlinks[0].object: required field is missing");
    check(r#"symlinks = [{ object = "x" }]"#, "spec.toml:4: symlinks[0].symlink: required field is missing");
    check(r#"symlinks = [{ object = "x", symlink = "bin/demo" }]"#, "spec.toml:4: symlinks[0].symlink: `bin/demo` is not an absolute path");
    check(r#"symlinks = [{ object = "x", symlink = "/" }]"#, "spec.toml:4: symlinks[0].symlink: must not be `/`");
    check(r#"symlinks = [{ object = "x", symlink = "/bin//demo" }]"#, "spec.toml:4: symlinks[0].symlink: `/bin//demo` is not normalised: it contains `//`");
    check(r#"symlinks = [{ object = "x", symlink = "/bin/./demo" }]"#, "spec.toml:4: symlinks[0].symlink: `/bin/./demo` is not normalised: it has a `.` component");
    check(r#"symlinks = [{ object = "x", symlink = "/etc/os-release" }]"#, "spec.toml:4: symlinks[0].symlink: `/etc/os-release` is a file the image scaffold writes");
    check(r#"symlinks = [{ object = "x", symlink = "/etc/machine-id" }]"#, "spec.toml:4: symlinks[0].symlink: `/etc/machine-id` is a file the image scaffold writes");
    check(r#"symlinks = [{ object = "x", symlink = "/etc/systemd/system/demo.service" }]"#, "spec.toml:4: symlinks[0].symlink: `/etc/systemd/system/demo.service` is a file the image scaffold writes");
    check(r#"symlinks = [{ object = "x", symlink = "/etc/systemd" }]"#, "spec.toml:4: symlinks[0].symlink: `/etc/systemd` is a directory the image scaffold creates");
    check(r#"symlinks = [{ object = "x", symlink = "/nix" }]"#, "spec.toml:4: symlinks[0].symlink: `/nix` is a directory the image scaffold creates");
    check(r#"symlinks = [{ object = "x", symlink = "/run/demo" }]"#, "spec.toml:4: symlinks[0].symlink: `/run/demo` is inside `/run`, which the image scaffold owns");
    check(r#"symlinks = [{ object = "x", symlink = "/dev/demo" }]"#, "spec.toml:4: symlinks[0].symlink: `/dev/demo` is inside `/dev`, which the image scaffold owns");
    check(r#"symlinks = [{ object = "x", symlink = "/nix/store/demo" }]"#, "spec.toml:4: symlinks[0].symlink: `/nix/store/demo` is inside the store directory `/nix/store`, which holds only the closure");
    check("store-dir = \"$STORE\"\nsymlinks = [{ object = \"x\", symlink = \"$STORE/demo\" }]", "spec.toml:5: symlinks[0].symlink: `$DIR/store/demo` is inside the store directory `$DIR/store`, which holds only the closure");
    check("symlinks = [\n  { object = \"x\", symlink = \"/bin/demo\" },\n  { object = \"y\", symlink = \"/bin/demo\" },\n]", "spec.toml:6: symlinks[1].symlink: `/bin/demo` is already used by symlinks[0].symlink");
    check("contents = [{ source = \"payload\", target = \"/opt/demo\" }]\nsymlinks = [{ object = \"x\", symlink = \"/opt/demo/bin\" }]", "spec.toml:5: symlinks[0].symlink: `/opt/demo/bin` is inside `/opt/demo`, placed by contents[0].target");
    // Contents are placed first, whatever the order in the file.
    check("symlinks = [{ object = \"x\", symlink = \"/opt\" }]\ncontents = [{ source = \"payload\", target = \"/opt/demo\" }]", "spec.toml:4: symlinks[0].symlink: `/opt` contains `/opt/demo`, placed by contents[0].target");
}

#[test]
#[rustfmt::skip] // one case per line
fn settings() {
    check(r#"compression = "xz -Xdict-size 100%""#, "ok");
    check(r#"compression = "zstd -Xcompression-level 19""#, "ok");
    check(r#"compression = "gzip""#, "ok");
    check(r#"compression = "lzo""#, "spec.toml:4: compression: `lzo` is not a supported compressor: use `xz`, `zstd` or `gzip`");
    check(r#"compression = """#, "spec.toml:4: compression: must not be empty");
    check(r#"block-size = "4K""#, "ok");
    check(r#"block-size = "131072""#, "ok");
    check(r#"block-size = "2M""#, "spec.toml:4: block-size: `2M` is not a power of two from 4K to 1M");
    check(r#"block-size = "1 MiB""#, "spec.toml:4: block-size: `1 MiB` is not a block size such as `128K` or `1M`");
    check("block-size = 1048576", "spec.toml:4:14: invalid type: integer `1048576`, expected a string");
    check(r#"store-dir = "/gnu/store""#, "ok");
    check(r#"store-dir = "/""#, "spec.toml:4: store-dir: must not be `/`");
    check(r#"store-dir = "/nix/store/""#, "spec.toml:4: store-dir: `/nix/store/` is not normalised: it ends with `/`");
    check(r#"closure-info = "closure-info""#, "ok");
    check(r#"closure-info = "closure-info/store-paths""#, "ok");
    check(r#"closure-info = "nope""#, "spec.toml:4: closure-info: `$DIR/nope` does not exist");
}

#[test]
#[rustfmt::skip] // one case per line
fn os_release_fields() {
    check("[os-release]\nVERSION_ID = \"1\"\nANSI_COLOR = \"0;31\"\nID = \"demo-os\"", "ok");
    check("[os-release]\nversion = \"1\"", "spec.toml:5: os-release.version: `version` is not an os-release key: use `A`-`Z`, `0`-`9` and `_`, starting with a letter");
    check("[os-release]\n1ID = \"1\"", "spec.toml:5: os-release.1ID: `1ID` is not an os-release key: use `A`-`Z`, `0`-`9` and `_`, starting with a letter");
    check("[os-release]\nX = \"a\\nb\"", "spec.toml:5: os-release.X: contains a line break");
    check("[os-release]\nX = 1", "spec.toml:5:5: invalid type: integer `1`, expected a string");
    check("os-release = { X = \"\" }", "ok");
}

#[test]
#[rustfmt::skip] // one case per line
fn malformed_toml() {
    check(r#"name = "demo"#, "spec.toml:4:13: invalid basic string, expected `\"`");
    check("name = \"a\"\nname = \"b\"", "spec.toml:5:1: duplicate key");
    check(r#"nmae = "demo""#, "spec.toml:4:1: unknown field `nmae`, expected one of `name`, `version`, `description`, `homepage`, `units`, `contents`, `symlinks`, `compression`, `block-size`, `store-dir`, `closure-info`, `os-release`");
    check(r#"block_size = "1M""#, "spec.toml:4:1: unknown field `block_size`, expected one of `name`, `version`, `description`, `homepage`, `units`, `contents`, `symlinks`, `compression`, `block-size`, `store-dir`, `closure-info`, `os-release`");
    check(r#"units = [{ source = "units/demo.service", nmae = "x" }]"#, "spec.toml:4:43: unknown field `nmae`, expected `source` or `name`");
    check(r#"contents = [{ source = "payload", target = "/opt", mode = "0755" }]"#, "spec.toml:4:52: unknown field `mode`, expected `source` or `target`");
    check(r#"symlinks = [{ object = "x", symlink = "/bin/x", force = true }]"#, "spec.toml:4:49: unknown field `force`, expected `object` or `symlink`");
    check("units = [42]", "spec.toml:4:10: invalid type: integer `42`, expected a unit file path or a table { source, name }");
    check("contents = [true]", "spec.toml:4:13: invalid type: boolean `true`, expected a store path or a table { source, target }");
    check(r#"units = "units/demo.service""#, "spec.toml:4:9: invalid type: string \"units/demo.service\", expected a sequence");
    check("symlinks = [\"/bin/demo\"]", "spec.toml:4:13: invalid type: string \"/bin/demo\", expected a table { object, symlink }");
}

#[test]
fn every_problem_at_once() {
    let case = r#"name = "demo_x"
version = ""
units = ["units/missing.service", "units/demo-empty.service"]
block-size = "3K"
symlinks = [{ object = "", symlink = "/etc/os-release" }]
[os-release]
lower = "x""#;
    check(
        case,
        "spec.toml:4: name: `demo_x` contains '_': use only ASCII letters, digits, `-` and `.` (systemd cuts the image file name at the first `_`)\n\
         spec.toml:5: version: must not be empty\n\
         spec.toml:6: units[0]: `$DIR/units/missing.service` does not exist\n\
         spec.toml:6: units[1]: `$DIR/units/demo-empty.service` is empty\n\
         spec.toml:7: block-size: `3K` is not a power of two from 4K to 1M\n\
         spec.toml:8: symlinks[0].object: must not be empty\n\
         spec.toml:8: symlinks[0].symlink: `/etc/os-release` is a file the image scaffold writes\n\
         spec.toml:10: os-release.lower: `lower` is not an os-release key: use `A`-`Z`, `0`-`9` and `_`, starting with a letter",
    );

    // The same problems, as data: line, field and message.
    let fixture = Fixture::new();
    let err = fixture.toml("#no name\nversion = \"1_0\"").unwrap_err();
    assert_eq!(
        err.problems(),
        [
            Problem {
                line: None,
                field: "name".to_owned(),
                message: "required field is missing".to_owned()
            },
            Problem {
                line: Some(5),
                field: "version".to_owned(),
                message:
                    "`1_0` contains '_': use only ASCII letters, digits, `.`, `-`, `~` and `^` \
                          (systemd cuts the image file name at the first `_`)"
                        .to_owned(),
            },
        ]
    );
}

#[test]
#[rustfmt::skip] // one case per line
fn json() {
    let base = r#""name": "demo", "version": "1.0", "units": ["units/demo.service"]"#;
    check_json(&format!("{{{base}}}"), "ok");
    check_json(&format!(r#"{{{base}, "description": null, "homepage": null, "contents": null}}"#), "ok");
    check_json(&format!(r#"{{{base}, "os-release": {{"VERSION_ID": "1"}}}}"#), "ok");
    check_json(
        r#"{"name": "demo_x", "version": "", "units": [{"source": "units/demo-at.service", "name": "demo@x@.socket"}, "units/nope.service"], "compression": "lz4"}"#,
        "spec.json: name: `demo_x` contains '_': use only ASCII letters, digits, `-` and `.` (systemd cuts the image file name at the first `_`)\n\
         spec.json: version: must not be empty\n\
         spec.json: compression: `lz4` is not a supported compressor: use `xz`, `zstd` or `gzip`\n\
         spec.json: units[1]: `$DIR/units/nope.service` does not exist",
    );
    check_json(r#"{"version": "1.0", "units": []}"#, "spec.json: name: required field is missing\nspec.json: units: at least one unit is required");
    check_json(
        &format!(
            r#"{{{base}, "symlinks": [{{"object": "x", "symlink": "/bin/x"}}, {{"object": "y", "symlink": "/bin/x"}}]}}"#
        ),
        "spec.json: symlinks[1].symlink: `/bin/x` is already used by symlinks[0].symlink",
    );
}

#[test]
#[rustfmt::skip] // one case per line
fn malformed_json() {
    check_json(r#"{"name": "demo""#, "spec.json:1:15: EOF while parsing an object");
    check_json("{\n  \"name\": \"demo\",\n  \"version\": 1\n}", "spec.json:3:14: invalid type: integer `1`, expected a string");
    check_json("{\n  \"name\": \"demo\",\n}", "spec.json:3:1: trailing comma");
    check_json(r#"{"nmae": "demo"}"#, "spec.json:1:7: unknown field `nmae`, expected one of `name`, `version`, `description`, `homepage`, `units`, `contents`, `symlinks`, `compression`, `block-size`, `store-dir`, `closure-info`, `os-release`");
    check_json(r#"{"block_size": "1M"}"#, "spec.json:1:13: unknown field `block_size`, expected one of `name`, `version`, `description`, `homepage`, `units`, `contents`, `symlinks`, `compression`, `block-size`, `store-dir`, `closure-info`, `os-release`");
    check_json(r#"{"units": [{"source": "x", "nmae": "y"}]}"#, "spec.json:1:33: unknown field `nmae`, expected `source` or `name`");
    check_json(r#"{"units": [1]}"#, "spec.json:1:12: invalid type: integer `1`, expected a unit file path or a table { source, name }");
    check_json(r#"{"name": "a", "name": "b"}"#, "spec.json:1:20: duplicate field `name`");
    check_json("42", "spec.json:1:2: invalid type: integer `42`, expected a spec: a table of fields such as `name`, `version` and `units`");
    check_json("", "spec.json:1:0: EOF while parsing a value");
}

#[test]
fn os_release_of_a_loaded_spec() {
    let fixture = Fixture::new();
    let spec = fixture
        .toml("description = 'A \"quoted\" $HOME `cmd` \\ service'\nhomepage = \"https://example.org\"\n[os-release]\nID = \"demo-os\"\nVERSION_ID = \"1\"")
        .unwrap();
    let text = os_release::render(&spec);
    assert_eq!(
        text,
        r#"BUILD_ID="rolling"
HOME_URL="https://example.org"
ID="demo-os"
IMAGE_ID="demo"
IMAGE_VERSION="1.0"
PORTABLE_ID="demo"
PORTABLE_PREFIXES="demo"
PORTABLE_PRETTY_NAME="A \"quoted\" \$HOME \`cmd\` \\ service"
PRETTY_NAME="NixOS"
VERSION_ID="1"
"#
    );
    assert_eq!(os_release::parse(&text), Ok(os_release::fields(&spec)));
}
