//! The rules a spec must follow, as small pure functions that return the problem's message.
//!
//! Nothing here touches the disk; `validate.rs` applies these to the parsed spec and
//! checks the host files it names.

use std::path::Path;

/// The unit types `portablectl attach` copies out of an image (systemd `portable.c`,
/// `unit_match`).
pub(crate) const UNIT_SUFFIXES: [&str; 5] = ["service", "socket", "target", "timer", "path"];

/// The compressors the spec accepts (the first word of `compression`).
pub(crate) const COMPRESSORS: [&str; 3] = ["xz", "zstd", "gzip"];

/// Files the image scaffold writes, besides `/etc/systemd/system/<unit>`.
const SCAFFOLD_FILES: [&str; 3] = ["/etc/os-release", "/etc/resolv.conf", "/etc/machine-id"];

/// Directories the image scaffold creates: the mount points, the unit folder and
/// the store's parents (besides the store directory itself and the parents of
/// everything it creates, such as `/var`).
fn scaffold_dirs<'a>() -> impl Iterator<Item = &'a str> {
    crate::MOUNT_POINTS.into_iter().chain([
        "/etc/systemd/system",
        "/etc/systemd",
        "/etc",
        "/nix/store",
        "/nix",
    ])
}

/// Directories whose whole content belongs to the scaffold (or to systemd, which mounts
/// over them when the service runs), besides the store directory.
const SCAFFOLD_TREES: [&str; 6] = ["/proc", "/sys", "/dev", "/run", "/tmp", "/nix/store"];

/// The digits of Nix's base-32 encoding, as used in store path hashes.
const NIX_BASE32: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// The image name, which becomes `NAME_VERSION.raw` and the units' portable prefix.
pub(crate) fn image_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(format!(
            "`{name}` contains {c:?}: use only ASCII letters, digits, `-` and `.`{}",
            underscore_note(c)
        ));
    }
    Ok(())
}

/// The image version, the part of `NAME_VERSION.raw` after the `_`.
pub(crate) fn version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '~' | '^');
    if let Some(c) = version.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "`{version}` contains {c:?}: use only ASCII letters, digits, `.`, `-`, `~` and `^`{}",
            underscore_note(c)
        ));
    }
    Ok(())
}

fn underscore_note(c: char) -> &'static str {
    if c == '_' {
        " (systemd cuts the image file name at the first `_`)"
    } else {
        ""
    }
}

/// A unit name `portablectl attach` accepts from an image whose portable prefixes are
/// `prefixes` (empty: do not check the prefix).
///
/// This is systemd's `unit_name_is_valid(name, UNIT_NAME_ANY)` (`src/basic/unit-name.c`):
/// `prefix[@instance].suffix`, shorter than 256 bytes, the part before the suffix made
/// of `[A-Za-z0-9:_.\-@]`, a non-empty prefix before the first `@` (further `@` belong to
/// the instance), plus the portable rules: a suffix `portablectl` attaches, and a name
/// that is a prefix followed by `-`, `.` or `@` (`prefix_match` in `portable.c`).
pub(crate) fn unit_name(unit: &str, prefixes: &[&str]) -> Result<(), String> {
    if unit.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if unit.len() > 255 {
        return Err(format!(
            "unit name is {} bytes long; the limit is 255",
            unit.len()
        ));
    }
    let suffixes = "`.service`, `.socket`, `.target`, `.timer` or `.path`";
    let Some((stem, suffix)) = unit.rsplit_once('.') else {
        return Err(format!("`{unit}` does not end in {suffixes}"));
    };
    if !UNIT_SUFFIXES.contains(&suffix) {
        return Err(format!("`{unit}` does not end in {suffixes}"));
    }
    if let Some(c) = stem
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(c)))
    {
        return Err(format!(
            "`{unit}` contains {c:?}, which a unit name cannot contain"
        ));
    }
    if stem.is_empty() || stem.starts_with('@') {
        return Err(format!("`{unit}` has an empty prefix"));
    }
    if !prefixes.is_empty() && !prefixes.iter().any(|prefix| prefix_match(unit, prefix)) {
        let names: Vec<String> = prefixes
            .iter()
            .map(|prefix| format!("`{prefix}`"))
            .collect();
        return Err(format!(
            "`{unit}` does not start with {} followed by `.`, `-` or `@`, \
             so portablectl would not attach it",
            names.join(" or ")
        ));
    }
    Ok(())
}

/// systemd's `prefix_match`: the unit is the prefix, or continues with `-`, `.` or `@`.
fn prefix_match(unit: &str, prefix: &str) -> bool {
    match unit.strip_prefix(prefix) {
        Some(rest) => matches!(rest.bytes().next(), None | Some(b'-' | b'.' | b'@')),
        None => false,
    }
}

/// An absolute, normalised path other than `/`: no `.` or `..` components, no `//`, no
/// trailing `/`. Used for paths inside the image and for `store-dir`.
pub(crate) fn image_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if path.contains('\0') {
        return Err("contains a NUL byte".to_owned());
    }
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not an absolute path"));
    }
    if path == "/" {
        return Err("must not be `/`".to_owned());
    }
    normalised(path)
}

/// The part of [`image_path`] after the absolute check: no `//`, `.`, `..`, trailing `/`.
fn normalised(path: &str) -> Result<(), String> {
    if path.ends_with('/') {
        return Err(format!("`{path}` is not normalised: it ends with `/`"));
    }
    for component in path.split('/').skip(1) {
        match component {
            "" => return Err(format!("`{path}` is not normalised: it contains `//`")),
            "." | ".." => {
                return Err(format!(
                    "`{path}` is not normalised: it has a `{component}` component"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a path in the image (already checked by [`image_path`]) collides with what
/// the image scaffold puts there: its files, its directories (and their parents), or
/// anything inside `/proc /sys /dev /run /tmp` and the store directory.
pub(crate) fn scaffold_conflict(path: &str, store_dir: &str, units: &[&str]) -> Option<String> {
    let is_unit_file = path
        .strip_prefix("/etc/systemd/system/")
        .is_some_and(|name| units.contains(&name));
    if SCAFFOLD_FILES.contains(&path) || is_unit_file {
        return Some(format!("`{path}` is a file the image scaffold writes"));
    }
    let owned = SCAFFOLD_FILES
        .iter()
        .map(|file| -> &str { file })
        .chain(scaffold_dirs())
        .chain([store_dir]);
    if owned
        .flat_map(|owned| Path::new(owned).ancestors())
        .any(|dir| dir == Path::new(path))
    {
        return Some(format!(
            "`{path}` is a directory the image scaffold creates"
        ));
    }
    if is_under(path, store_dir) {
        return Some(format!(
            "`{path}` is inside the store directory `{store_dir}`, which holds only the closure"
        ));
    }
    SCAFFOLD_TREES
        .iter()
        .find(|tree| is_under(path, tree))
        .map(|tree| format!("`{path}` is inside `{tree}`, which the image scaffold owns"))
}

/// Whether `path` lies strictly inside `dir` (both normalised).
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// A store path: `<store-dir>/<32-digit base-32 hash>-<name>`, nothing below it.
pub(crate) fn store_path(path: &str, store_dir: &str) -> Result<(), String> {
    let Some(rest) = path
        .strip_prefix(store_dir)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Err(format!(
            "`{path}` is not in the store `{store_dir}`; \
             graft a host directory with {{ source = \"...\", target = \"/...\" }}"
        ));
    };
    normalised(&format!("/{rest}")).map_err(|_| format!("`{path}` is not normalised"))?;
    let (object, below) = match rest.split_once('/') {
        Some((object, _)) => (object, true),
        None => (rest, false),
    };
    store_object(object).map_err(|why| format!("`{path}` is not a store path: {why}"))?;
    if below {
        return Err(format!(
            "`{path}` is inside the store path `{store_dir}/{object}`; list the store path itself"
        ));
    }
    Ok(())
}

/// The name part of a store path (`demo.service` for `/nix/store/<hash>-demo.service`),
/// if `path` is one.
pub(crate) fn store_path_name<'a>(path: &'a str, store_dir: &str) -> Option<&'a str> {
    store_path(path, store_dir).ok()?;
    let object = path.rsplit('/').next()?;
    Some(&object[33..])
}

/// The last component of a store path: `<hash>-<name>` (Nix `StorePath` and `checkName`).
fn store_object(object: &str) -> Result<(), String> {
    let bytes = object.as_bytes();
    if bytes.len() < 34 || bytes[32] != b'-' {
        return Err("expected a 32-character hash, `-` and a name".to_owned());
    }
    if let Some(c) = object[..32].chars().find(|&c| !NIX_BASE32.contains(c)) {
        return Err(format!("{c:?} is not a Nix base-32 digit"));
    }
    let name = &object[33..];
    if name.len() > 211 {
        return Err("the name is longer than 211 bytes".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+-._?=".contains(c);
    if let Some(c) = name.chars().find(|&c| !allowed(c)) {
        return Err(format!("the name contains {c:?}"));
    }
    if matches!(name, "." | "..") || name.starts_with(".-") || name.starts_with("..-") {
        return Err(format!("`{name}` is not a valid name"));
    }
    Ok(())
}

/// The seed's compression syntax: a compressor, then its mksquashfs options
/// (`xz -Xdict-size 100%`). Only the compressor is checked here; the squash crate
/// parses the options when it builds the image.
pub(crate) fn compression(compression: &str) -> Result<(), String> {
    match compression.split_whitespace().next() {
        None => Err("must not be empty".to_owned()),
        Some(word) if COMPRESSORS.contains(&word) => Ok(()),
        Some(word) => Err(format!(
            "`{word}` is not a supported compressor: use `xz`, `zstd` or `gzip`"
        )),
    }
}

/// A block size as mksquashfs takes it: `N`, `NK` or `NM`, a power of two from 4K to 1M.
pub(crate) fn block_size(size: &str) -> Result<(), String> {
    let digits_end = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let (digits, unit) = size.split_at(digits_end);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        _ => {
            return Err(format!(
                "`{size}` is not a block size such as `128K` or `1M`"
            ))
        }
    };
    let Ok(number) = digits.parse::<u64>() else {
        return Err(format!(
            "`{size}` is not a block size such as `128K` or `1M`"
        ));
    };
    let bytes = number.saturating_mul(1 << shift);
    if !bytes.is_power_of_two() || !(4096..=1 << 20).contains(&bytes) {
        return Err(format!("`{size}` is not a power of two from 4K to 1M"));
    }
    Ok(())
}

/// An os-release key: `[A-Z][A-Z0-9_]*` (os-release(5)).
pub(crate) fn os_release_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    if !first_ok || !chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!(
            "`{key}` is not an os-release key: use `A`-`Z`, `0`-`9` and `_`, starting with a letter"
        ));
    }
    Ok(())
}

/// A value that fits on one os-release line.
pub(crate) fn single_line(value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("contains a NUL byte".to_owned());
    }
    if value.contains(['\n', '\r']) {
        return Err("contains a line break".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one rule and renders its verdict: `ok` or the message.
    fn check(result: Result<(), String>, expect: &str) {
        let got = result.err().unwrap_or_else(|| "ok".to_owned());
        assert_eq!(got, expect);
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn image_names() {
        check(image_name("demo"), "ok");
        check(image_name("Demo-2.x"), "ok");
        check(image_name(""), "must not be empty");
        check(
            image_name("demo_x"),
            "`demo_x` contains '_': use only ASCII letters, digits, `-` and `.` \
             (systemd cuts the image file name at the first `_`)",
        );
        check(image_name("de mo"), "`de mo` contains ' ': use only ASCII letters, digits, `-` and `.`");
        check(image_name("démo"), "`démo` contains 'é': use only ASCII letters, digits, `-` and `.`");
        check(image_name("a@b"), "`a@b` contains '@': use only ASCII letters, digits, `-` and `.`");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn versions() {
        check(version("1.0"), "ok");
        check(version("1.0~rc1^git2-3"), "ok");
        check(version(""), "must not be empty");
        check(
            version("1_0"),
            "`1_0` contains '_': use only ASCII letters, digits, `.`, `-`, `~` and `^` \
             (systemd cuts the image file name at the first `_`)",
        );
        check(version("1+2"), "`1+2` contains '+': use only ASCII letters, digits, `.`, `-`, `~` and `^`");
        check(version("1/2"), "`1/2` contains '/': use only ASCII letters, digits, `.`, `-`, `~` and `^`");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn unit_names() {
        let foo = &["foo"][..];
        let suffixes = "`.service`, `.socket`, `.target`, `.timer` or `.path`";
        // The prefix match of systemd's portable.c.
        check(unit_name("foo.service", foo), "ok");
        check(unit_name("foo-bar.service", foo), "ok");
        check(unit_name("foo@.service", foo), "ok");
        check(unit_name("foo@bar.service", foo), "ok");
        check(unit_name("foo.bar.service", foo), "ok");
        check(
            unit_name("foobar.service", foo),
            "`foobar.service` does not start with `foo` followed by `.`, `-` or `@`, \
             so portablectl would not attach it",
        );
        check(
            unit_name("bar.service", &["foo", "bar-"]),
            "`bar.service` does not start with `foo` or `bar-` followed by `.`, `-` or `@`, \
             so portablectl would not attach it",
        );
        check(unit_name("bar-x.service", &["foo", "bar"]), "ok");
        check(unit_name("bar.service", &[]), "ok");
        // Suffixes: only what portablectl attaches.
        check(unit_name("foo.socket", foo), "ok");
        check(unit_name("foo.target", foo), "ok");
        check(unit_name("foo.timer", foo), "ok");
        check(unit_name("foo.path", foo), "ok");
        check(unit_name("foo.mount", foo), &format!("`foo.mount` does not end in {suffixes}"));
        check(unit_name("foo", foo), &format!("`foo` does not end in {suffixes}"));
        check(unit_name("foo.Service", foo), &format!("`foo.Service` does not end in {suffixes}"));
        check(unit_name("foo.service.d", foo), &format!("`foo.service.d` does not end in {suffixes}"));
        // systemd's unit_name_is_valid.
        check(unit_name("", foo), "must not be empty");
        check(unit_name(".service", &[]), "`.service` has an empty prefix");
        check(unit_name("@bar.service", &[]), "`@bar.service` has an empty prefix");
        check(unit_name("@.service", &[]), "`@.service` has an empty prefix");
        check(unit_name("foo@bar@baz.service", foo), "ok"); // `@` may repeat in the instance
        check(unit_name("foo-a:b_c\\d.service", foo), "ok");
        check(unit_name("foo bar.service", foo), "`foo bar.service` contains ' ', which a unit name cannot contain");
        check(unit_name("foo/bar.service", foo), "`foo/bar.service` contains '/', which a unit name cannot contain");
        check(unit_name("foo-é.service", foo), "`foo-é.service` contains 'é', which a unit name cannot contain");
        let long = format!("foo-{}.service", "x".repeat(243));
        check(unit_name(&long, foo), "ok");
        let too_long = format!("foo-{}.service", "x".repeat(244));
        check(unit_name(&too_long, foo), "unit name is 256 bytes long; the limit is 255");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn image_paths() {
        check(image_path("/bin/demo"), "ok");
        check(image_path("/opt/.hidden/x..y"), "ok");
        check(image_path(""), "must not be empty");
        check(image_path("/"), "must not be `/`");
        check(image_path("bin/demo"), "`bin/demo` is not an absolute path");
        check(image_path("/bin/"), "`/bin/` is not normalised: it ends with `/`");
        check(image_path("/bin//demo"), "`/bin//demo` is not normalised: it contains `//`");
        check(image_path("//bin"), "`//bin` is not normalised: it contains `//`");
        check(image_path("/bin/./demo"), "`/bin/./demo` is not normalised: it has a `.` component");
        check(image_path("/bin/.."), "`/bin/..` is not normalised: it has a `..` component");
        check(image_path("/bin/\0"), "contains a NUL byte");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn scaffold_conflicts() {
        let check = |path: &str, expect: &str| {
            let got = scaffold_conflict(path, "/nix/store", &["demo.service"]);
            assert_eq!(got.as_deref().unwrap_or("ok"), expect, "{path}");
        };
        check("/bin/demo", "ok");
        check("/etc/demo.conf", "ok");
        check("/var/lib/demo", "ok");
        check("/etc/systemd/system/other.service", "ok");
        check("/etc/systemd/system/demo.service.d", "ok");
        check("/nix/var", "ok");
        check("/procfs", "ok");
        check("/etc/os-release", "`/etc/os-release` is a file the image scaffold writes");
        check("/etc/resolv.conf", "`/etc/resolv.conf` is a file the image scaffold writes");
        check("/etc/machine-id", "`/etc/machine-id` is a file the image scaffold writes");
        check("/etc/systemd/system/demo.service", "`/etc/systemd/system/demo.service` is a file the image scaffold writes");
        for dir in scaffold_dirs().chain(["/var"]) {
            check(dir, &format!("`{dir}` is a directory the image scaffold creates"));
        }
        check("/run/demo", "`/run/demo` is inside `/run`, which the image scaffold owns");
        check("/dev/null", "`/dev/null` is inside `/dev`, which the image scaffold owns");
        check("/proc/1", "`/proc/1` is inside `/proc`, which the image scaffold owns");
        check("/sys/x", "`/sys/x` is inside `/sys`, which the image scaffold owns");
        check("/tmp/x", "`/tmp/x` is inside `/tmp`, which the image scaffold owns");
        check("/nix/store/x", "`/nix/store/x` is inside the store directory `/nix/store`, which holds only the closure");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn scaffold_conflicts_with_another_store() {
        let check = |path: &str, expect: &str| {
            let got = scaffold_conflict(path, "/gnu/store", &[]);
            assert_eq!(got.as_deref().unwrap_or("ok"), expect, "{path}");
        };
        check("/gnu", "`/gnu` is a directory the image scaffold creates");
        check("/gnu/store", "`/gnu/store` is a directory the image scaffold creates");
        check("/gnu/store/x", "`/gnu/store/x` is inside the store directory `/gnu/store`, which holds only the closure");
        check("/nix/store/x", "`/nix/store/x` is inside `/nix/store`, which the image scaffold owns");
        check("/gnu/var", "ok");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn store_paths() {
        let hash = "0c6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg";
        let check = |path: &str, expect: &str| {
            let path = path.replace("HASH", hash);
            let got = store_path(&path, "/nix/store")
                .err()
                .unwrap_or_else(|| "ok".to_owned());
            assert_eq!(got, expect.replace("HASH", hash), "{path}");
        };
        check("/nix/store/HASH-demo-1.0", "ok");
        check("/nix/store/HASH-a+b_c?d=e", "ok");
        check("/nix/store/HASH-.cfg", "ok");
        check("payload", "`payload` is not in the store `/nix/store`; graft a host directory with { source = \"...\", target = \"/...\" }");
        check("/nix/storeHASH-demo", "`/nix/storeHASH-demo` is not in the store `/nix/store`; graft a host directory with { source = \"...\", target = \"/...\" }");
        check("/nix/store/HASH-demo/", "`/nix/store/HASH-demo/` is not normalised");
        check("/nix/store/HASH-demo/../x", "`/nix/store/HASH-demo/../x` is not normalised");
        check("/nix/store//HASH-demo", "`/nix/store//HASH-demo` is not normalised");
        check("/nix/store/HASH-demo/bin/demo", "`/nix/store/HASH-demo/bin/demo` is inside the store path `/nix/store/HASH-demo`; list the store path itself");
        check("/nix/store/HASH", "`/nix/store/HASH` is not a store path: expected a 32-character hash, `-` and a name");
        check("/nix/store/HASH-", "`/nix/store/HASH-` is not a store path: expected a 32-character hash, `-` and a name");
        check("/nix/store/demo-1.0", "`/nix/store/demo-1.0` is not a store path: expected a 32-character hash, `-` and a name");
        check("/nix/store/ec6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg-demo", "`/nix/store/ec6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg-demo` is not a store path: 'e' is not a Nix base-32 digit");
        check("/nix/store/HASH-de mo", "`/nix/store/HASH-de mo` is not a store path: the name contains ' '");
        check("/nix/store/HASH-..", "`/nix/store/HASH-..` is not a store path: `..` is not a valid name");
        check("/nix/store/HASH-.-x", "`/nix/store/HASH-.-x` is not a store path: `.-x` is not a valid name");
        let long = format!("/nix/store/HASH-{}", "x".repeat(212));
        check(&long, &format!("`{long}` is not a store path: the name is longer than 211 bytes"));
    }

    #[test]
    fn store_path_names() {
        let path = "/nix/store/0c6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg-demo.service";
        assert_eq!(store_path_name(path, "/nix/store"), Some("demo.service"));
        assert_eq!(store_path_name(path, "/gnu/store"), None);
        assert_eq!(
            store_path_name("/nix/store/demo.service", "/nix/store"),
            None
        );
        assert_eq!(
            store_path_name(&format!("{path}/x.service"), "/nix/store"),
            None
        );
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn compressions() {
        check(compression("xz -Xdict-size 100%"), "ok");
        check(compression("zstd -Xcompression-level 19"), "ok");
        check(compression("gzip"), "ok");
        check(compression(" xz "), "ok");
        check(compression(""), "must not be empty");
        check(compression("   "), "must not be empty");
        check(compression("lz4 -Xhc"), "`lz4` is not a supported compressor: use `xz`, `zstd` or `gzip`");
        check(compression("-comp xz"), "`-comp` is not a supported compressor: use `xz`, `zstd` or `gzip`");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn block_sizes() {
        for good in [
            "4K", "4k", "8K", "128K", "1M", "1m", "4096", "1048576", "512K",
        ] {
            check(block_size(good), "ok");
        }
        check(block_size("2M"), "`2M` is not a power of two from 4K to 1M");
        check(block_size("2K"), "`2K` is not a power of two from 4K to 1M");
        check(block_size("100K"), "`100K` is not a power of two from 4K to 1M");
        check(block_size("0"), "`0` is not a power of two from 4K to 1M");
        check(block_size("99999999999999999999"), "`99999999999999999999` is not a block size such as `128K` or `1M`");
        check(block_size("18446744073709551615M"), "`18446744073709551615M` is not a power of two from 4K to 1M");
        check(block_size(""), "`` is not a block size such as `128K` or `1M`");
        check(block_size("M"), "`M` is not a block size such as `128K` or `1M`");
        check(block_size("1 M"), "`1 M` is not a block size such as `128K` or `1M`");
        check(block_size("1MB"), "`1MB` is not a block size such as `128K` or `1M`");
        check(block_size("1G"), "`1G` is not a block size such as `128K` or `1M`");
        check(block_size("-1M"), "`-1M` is not a block size such as `128K` or `1M`");
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn os_release_keys_and_values() {
        let bad = |key: &str| {
            format!("`{key}` is not an os-release key: use `A`-`Z`, `0`-`9` and `_`, starting with a letter")
        };
        check(os_release_key("VERSION_ID"), "ok");
        check(os_release_key("X1"), "ok");
        check(os_release_key(""), &bad(""));
        check(os_release_key("1X"), &bad("1X"));
        check(os_release_key("_X"), &bad("_X"));
        check(os_release_key("version_id"), &bad("version_id"));
        check(os_release_key("A-B"), &bad("A-B"));
        check(single_line("any \"thing\" $`\\ 'ü'"), "ok");
        check(single_line("a\nb"), "contains a line break");
        check(single_line("a\rb"), "contains a line break");
        check(single_line("a\0b"), "contains a NUL byte");
    }
}
