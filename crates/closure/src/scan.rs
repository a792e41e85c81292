//! Finding the store paths a text names, such as the `ExecStart=/nix/store/…-foo/bin/foo` of a
//! unit file.

use std::collections::BTreeSet;

use crate::store_path::{is_base32, is_name_char, StoreDir, StorePath, HASH_LEN, MAX_NAME_LEN};

/// The store paths named in `text`: every `<store dir>/` followed by a 32-character Nix base-32
/// hash part, `-`, and the longest run of name characters after it.
///
/// A path inside a store object counts as its store path (`/nix/store/<hash>-foo/bin/foo`
/// gives `/nix/store/<hash>-foo`). Nothing before the store directory is looked at, so
/// `ExecStart=-/nix/store/…` and `PATH=/a:/nix/store/…/bin` are found too. An occurrence
/// whose hash part or name is not valid (a 33rd hash character, a name longer than 211
/// characters, `.`) is skipped.
///
/// Unlike Nix's reference scanner this needs the store directory in front of the hash: a unit
/// file names paths, it does not embed bare hashes. The file system is not read; whether the
/// paths exist is for [`resolve`](crate::resolve) to check.
///
/// # Examples
///
/// ```
/// use mkportable_closure::{scan_store_paths, StoreDir};
///
/// let unit = b"[Service]\nExecStart=/nix/store/jskhbyg5484ajp1wjkdfpk9j513mcgb1-fx-app/bin/app\n";
/// let found = scan_store_paths(unit, &StoreDir::default());
/// let found: Vec<&str> = found.iter().map(|p| p.as_str()).collect();
/// assert_eq!(found, ["/nix/store/jskhbyg5484ajp1wjkdfpk9j513mcgb1-fx-app"]);
/// ```
pub fn scan_store_paths(text: &[u8], store_dir: &StoreDir) -> BTreeSet<StorePath> {
    let prefix = format!("{}/", store_dir.as_str());
    let finder = memchr::memmem::Finder::new(prefix.as_bytes());
    let mut found = BTreeSet::new();
    let mut offset = 0;
    while let Some(hit) = finder.find(&text[offset..]) {
        let start = offset + hit;
        // Advance by one byte, not past the prefix: a store dir such as `/a/a` can overlap
        // itself (`/a/a/a/<hash>-x`).
        offset = start + 1;
        if let Some(path) = store_path_at(text, start + prefix.len(), store_dir) {
            found.insert(path);
        }
    }
    found
}

/// The store path whose base name starts at `text[start..]`, if one does.
fn store_path_at(text: &[u8], start: usize, store_dir: &StoreDir) -> Option<StorePath> {
    let rest = &text[start..];
    let hash = rest.get(..HASH_LEN)?;
    if !hash.iter().all(|&byte| is_base32(byte)) || rest.get(HASH_LEN) != Some(&b'-') {
        return None;
    }
    let name_len = rest[HASH_LEN + 1..]
        .iter()
        .take_while(|&&byte| is_name_char(byte))
        .count();
    let name = &rest[HASH_LEN + 1..HASH_LEN + 1 + name_len];
    if name.is_empty() || name.len() > MAX_NAME_LEN || name == b"." || name == b".." {
        return None;
    }
    let base = std::str::from_utf8(&rest[..HASH_LEN + 1 + name_len])
        .expect("hash and name characters are ASCII");
    Some(store_dir.join_checked(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "jskhbyg5484ajp1wjkdfpk9j513mcgb1";
    const H2: &str = "wkl768mrqagj22msk604k2irs0snanvh";

    fn check(store_dir: &str, text: &str, expect: &[&str]) {
        let dir = StoreDir::new(store_dir).unwrap();
        let found = scan_store_paths(text.as_bytes(), &dir);
        let found: Vec<&str> = found.iter().map(StorePath::as_str).collect();
        assert_eq!(found, expect, "scanning {text:?}");
    }

    #[test]
    fn hits() {
        let app = format!("/nix/store/{H1}-fx-app");
        let root = format!("/nix/store/{H2}-fx-symlink-root");
        let cases: Vec<(String, Vec<&str>)> = vec![
            (format!("ExecStart={app}/bin/app --flag\n"), vec![&app]),
            (format!("ExecStart=-{app}/bin/app"), vec![&app]),
            (format!("ExecStart=+{app}/bin/app"), vec![&app]),
            (format!("ExecStart=!!{app}/bin/app"), vec![&app]),
            (format!("ExecStart=@{app}/bin/app app"), vec![&app]),
            (
                format!("Environment=PATH=/bin:{app}/bin:{root}/bin"),
                vec![&app, &root],
            ),
            (format!("Environment=\"X={app}\""), vec![&app]),
            (format!("ExecStart={app}"), vec![&app]),
            (app.clone(), vec![&app]),
            (format!("{root} {app} {app}/x {root}"), vec![&app, &root]),
            (format!("x={app};y"), vec![&app]),
            (format!("file://{app}/etc"), vec![&app]),
            (format!("/opt{app}"), vec![&app]),
        ];
        for (text, expect) in &cases {
            check("/nix/store", text, expect);
        }
    }

    #[test]
    fn name_boundaries() {
        let long = "n".repeat(211);
        let cases: Vec<(String, Vec<String>)> = Vec::from([
            // The name runs as far as name characters go.
            (
                format!("/nix/store/{H1}-odd+name=1?x_y.z/bin"),
                vec![format!("/nix/store/{H1}-odd+name=1?x_y.z")],
            ),
            (
                format!("/nix/store/{H1}-foo.\n"),
                vec![format!("/nix/store/{H1}-foo.")],
            ),
            (
                format!("'/nix/store/{H1}-foo'"),
                vec![format!("/nix/store/{H1}-foo")],
            ),
            (
                format!("/nix/store/{H1}-foo:"),
                vec![format!("/nix/store/{H1}-foo")],
            ),
            (
                format!("/nix/store/{H1}-foo\0"),
                vec![format!("/nix/store/{H1}-foo")],
            ),
            (
                format!("/nix/store/{H1}-foo é"),
                vec![format!("/nix/store/{H1}-foo")],
            ),
            (
                format!("/nix/store/{H1}-{long}"),
                vec![format!("/nix/store/{H1}-{long}")],
            ),
            (
                format!("/nix/store/{H1}-{long}/x"),
                vec![format!("/nix/store/{H1}-{long}")],
            ),
            // A repeated store dir: only the last one is followed by a base name.
            (
                format!("/nix/store//nix/store/{H1}-x"),
                vec![format!("/nix/store/{H1}-x")],
            ),
        ]);
        for (text, expect) in &cases {
            let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
            check("/nix/store", text, &expect);
        }
    }

    #[test]
    fn near_misses() {
        let too_long = "n".repeat(212);
        let cases: Vec<String> = Vec::from([
            String::new(),
            "/nix/store/".to_owned(),
            "/nix/store".to_owned(),
            format!("{H1}-fx-app"),
            format!("nix/store/{H1}-fx-app"),
            format!("/nix/store/{}-fx-app", &H1[..31]),
            format!("/nix/store/{H1}x-fx-app"),
            format!("/nix/store/{H1}_fx-app"),
            format!("/nix/store/{H1}"),
            format!("/nix/store/{H1}-"),
            format!("/nix/store/{H1}-/bin"),
            format!("/nix/store/{H1}-."),
            format!("/nix/store/{H1}-../x"),
            format!("/nix/store/{H1}-{too_long}"),
            format!("/nix/store/e{}-x", &H1[1..]),
            format!("/nix/store/o{}-x", &H1[1..]),
            format!("/nix/store/u{}-x", &H1[1..]),
            format!("/nix/store/t{}-x", &H1[1..]),
            format!("/nix/store/{}-x", H1.to_uppercase()),
            format!("/nix/storex/{H1}-x"),
            format!("/nix/sto re/{H1}-x"),
            format!("/gnu/store/{H1}-x"),
            // Cut short at the end of the text.
            format!("/nix/store/{}", &H1[..20]),
        ]);
        for text in &cases {
            check("/nix/store", text, &[]);
        }
    }

    #[test]
    fn other_store_dirs() {
        check(
            "/gnu/store",
            &format!("/gnu/store/{H1}-x /nix/store/{H2}-y"),
            &[&format!("/gnu/store/{H1}-x")],
        );
        // A store dir that overlaps itself.
        check(
            "/a/a",
            &format!("/a/a/a/a/{H1}-x"),
            &[&format!("/a/a/{H1}-x")],
        );
    }

    #[test]
    fn binary_text() {
        let mut text = vec![0xff, 0x00, 0x80];
        text.extend_from_slice(format!("/nix/store/{H1}-lib").as_bytes());
        text.extend_from_slice(&[0xc3, 0x28, b'/', b'n']);
        let found = scan_store_paths(&text, &StoreDir::default());
        let found: Vec<&str> = found.iter().map(StorePath::as_str).collect();
        assert_eq!(found, [format!("/nix/store/{H1}-lib")]);
    }
}
