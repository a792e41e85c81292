//! Store directories and store paths: their syntax, and mapping any path inside a store object to
//! the store path of that object.
//!
//! A store path is `<store dir>/<hash>-<name>`:
//! the hash part is 32 characters of Nix base-32 (`0-9a-z` without `e`, `o`, `u`, `t`),
//! the name 1 to 211 characters of `A-Za-z0-9+-._?=`, and not `.` or `..`
//! (Nix `src/libstore/path.cc`).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::Error;

/// The length of the hash part of a store path's base name.
pub const HASH_LEN: usize = 32;

/// The longest name a store path can have (`StorePath::MaxPathLen` in Nix).
pub const MAX_NAME_LEN: usize = 211;

/// The Nix base-32 alphabet. It is not RFC 4648 base32: `e`, `o`, `u` and `t` are left out.
pub const NIX_BASE32_CHARS: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// The store directory Nix uses unless configured otherwise.
pub const DEFAULT_STORE_DIR: &str = "/nix/store";

/// Linux gives up after 40 symlinks; so do we.
const MAX_SYMLINK_HOPS: usize = 40;

/// A Nix store directory, such as `/nix/store`: absolute, UTF-8, without `.`, `..`, empty
/// components or a trailing slash.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreDir {
    dir: String,
}

/// A validated store path, `<store dir>/<hash>-<name>`.
///
/// Store paths order by their full text, which for paths of one store directory is the order
/// of their base names: the order of `closureInfo`'s `store-paths`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    path: String,
    /// Byte offset of the base name in `path`.
    base: usize,
}

/// Why a string is not a store path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalid {
    /// The path does not start with the store directory.
    OutsideStoreDir,
    /// The path is the store directory itself.
    StoreDirItself,
    /// The hash part does not have 32 characters.
    HashLength(usize),
    /// The hash part has a character outside the Nix base-32 alphabet.
    HashChar(char),
    /// The hash part is not followed by `-`.
    MissingDash,
    /// The name after the `-` is empty.
    NameEmpty,
    /// The name has more than 211 characters.
    NameTooLong(usize),
    /// The name has a character Nix does not allow.
    NameChar(char),
    /// The name is `.` or `..`.
    DotName,
    /// The text goes on after the store object's name (`/nix/store/<hash>-x/bin`).
    InnerPath,
    /// The path has a `..` component.
    ParentDir,
    /// The base name is not UTF-8.
    NotUtf8,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::OutsideStoreDir => f.write_str("not inside the store directory"),
            Invalid::StoreDirItself => f.write_str("is the store directory itself"),
            Invalid::HashLength(1) => f.write_str("the hash part has 1 character, not 32"),
            Invalid::HashLength(n) => write!(f, "the hash part has {n} characters, not 32"),
            Invalid::HashChar(c) => write!(
                f,
                "{c:?} is not a Nix base-32 character (0-9 and a-z without e, o, u, t)"
            ),
            Invalid::MissingDash => f.write_str("expected `-` after the 32-character hash part"),
            Invalid::NameEmpty => f.write_str("the name after the hash part is empty"),
            Invalid::NameTooLong(n) => {
                write!(f, "the name has {n} characters, more than {MAX_NAME_LEN}")
            }
            Invalid::NameChar(c) => write!(
                f,
                "{c:?} is not allowed in a store path name (A-Z a-z 0-9 + - . _ ? =)"
            ),
            Invalid::DotName => f.write_str("the name must not be `.` or `..`"),
            Invalid::InnerPath => f.write_str("goes on after the store object's name"),
            Invalid::ParentDir => f.write_str("has a `..` component"),
            Invalid::NotUtf8 => f.write_str("not valid UTF-8"),
        }
    }
}

impl Default for StoreDir {
    fn default() -> Self {
        StoreDir {
            dir: DEFAULT_STORE_DIR.to_owned(),
        }
    }
}

impl StoreDir {
    /// Validates a store directory. A trailing slash and repeated slashes are removed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStoreDir`] if the path is relative, not UTF-8, has a `.` or `..`
    /// component, or is `/`.
    pub fn new(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::new_inner(path.as_ref())
    }

    fn new_inner(path: &Path) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidStoreDir {
            path: path.to_path_buf(),
            reason,
        };
        let text = path.to_str().ok_or_else(|| invalid("not valid UTF-8"))?;
        if !text.starts_with('/') {
            return Err(invalid("not an absolute path"));
        }
        if text.split('/').any(|part| part == "." || part == "..") {
            return Err(invalid("has a `.` or `..` component"));
        }
        let mut dir = String::with_capacity(text.len());
        for part in text.split('/').filter(|part| !part.is_empty()) {
            dir.push('/');
            dir.push_str(part);
        }
        if dir.is_empty() {
            return Err(invalid("is the root directory"));
        }
        Ok(StoreDir { dir })
    }

    /// The directory as text, e.g. `/nix/store`.
    pub fn as_str(&self) -> &str {
        &self.dir
    }

    /// The directory as a path.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.dir)
    }

    /// Parses the text of a store path, exactly: `<store dir>/<hash>-<name>`, nothing after it.
    ///
    /// # Errors
    ///
    /// [`Error::OutsideStore`] if the text does not start with this store directory,
    /// [`Error::InvalidStorePath`] if the base name is not valid or the text goes on after it.
    pub fn parse(&self, text: &str) -> Result<StorePath, Error> {
        self.parse_inner(text).map_err(|reason| match reason {
            Invalid::OutsideStoreDir => Error::OutsideStore {
                path: PathBuf::from(text),
                store_dir: self.as_path().to_path_buf(),
            },
            reason => Error::InvalidStorePath {
                path: text.to_owned(),
                reason,
            },
        })
    }

    pub(crate) fn parse_inner(&self, text: &str) -> Result<StorePath, Invalid> {
        let base = text
            .strip_prefix(self.dir.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or(Invalid::OutsideStoreDir)?;
        if base.is_empty() {
            return Err(Invalid::StoreDirItself);
        }
        if let Some(slash) = base.find('/') {
            check_base_name(&base[..slash])?;
            return Err(Invalid::InnerPath);
        }
        check_base_name(base)?;
        Ok(self.join_checked(base))
    }

    /// The store path with this base name (`<hash>-<name>`) in this store directory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStorePath`] if the base name is not valid.
    pub fn join(&self, base_name: &str) -> Result<StorePath, Error> {
        check_base_name(base_name).map_err(|reason| Error::InvalidStorePath {
            path: format!("{}/{base_name}", self.dir),
            reason,
        })?;
        Ok(self.join_checked(base_name))
    }

    /// Joins a base name that [`check_base_name`] accepted.
    pub(crate) fn join_checked(&self, base_name: &str) -> StorePath {
        debug_assert_eq!(check_base_name(base_name), Ok(()));
        StorePath {
            path: format!("{}/{base_name}", self.dir),
            base: self.dir.len() + 1,
        }
    }

    /// Maps a path to the store object it is in: `/nix/store/<hash>-x/bin/y` and
    /// `/nix/store/<hash>-x` both give `/nix/store/<hash>-x`. The mapping is lexical; the
    /// file system is not read.
    ///
    /// # Errors
    ///
    /// [`Error::OutsideStore`] for a path that is not inside this store directory (relative
    /// paths included), [`Error::InvalidStorePath`] if the first component under the store
    /// directory is not a valid store path base name, the path is the store directory itself,
    /// or a later component is `..`.
    pub fn to_store_path(&self, path: &Path) -> Result<StorePath, Error> {
        let outside = || Error::OutsideStore {
            path: path.to_path_buf(),
            store_dir: self.as_path().to_path_buf(),
        };
        let invalid = |reason| Error::InvalidStorePath {
            path: path.to_string_lossy().into_owned(),
            reason,
        };
        let rest = path.strip_prefix(self.as_path()).map_err(|_| outside())?;
        let mut components = rest.components();
        let base = match components.next() {
            None => return Err(invalid(Invalid::StoreDirItself)),
            Some(Component::Normal(base)) => base,
            Some(_) => return Err(outside()),
        };
        if components.any(|component| component == Component::ParentDir) {
            return Err(invalid(Invalid::ParentDir));
        }
        let base = base.to_str().ok_or_else(|| invalid(Invalid::NotUtf8))?;
        check_base_name(base).map_err(invalid)?;
        Ok(self.join_checked(base))
    }

    /// Whether `path` is, lexically, inside a store object of this store directory.
    pub fn is_in_store(&self, path: &Path) -> bool {
        match path.strip_prefix(self.as_path()) {
            Ok(rest) => matches!(rest.components().next(), Some(Component::Normal(_))),
            Err(_) => false,
        }
    }

    /// Like [`StoreDir::to_store_path`], but first follows symlinks outside the store, one at
    /// a time, until the path is inside it: `./result` or `/run/current-system` give the store
    /// path they point to. Once inside the store nothing more is followed, so a store object
    /// that is itself a symlink stays what it is. This is Nix's `followLinksToStorePath`.
    ///
    /// # Errors
    ///
    /// [`Error::OutsideStore`] if the path (after following symlinks) is not in the store,
    /// [`Error::Read`] if a symlink cannot be read, [`Error::SymlinkLoop`] after 40 links,
    /// and the errors of [`StoreDir::to_store_path`].
    pub fn follow_links_to_store_path(&self, path: &Path) -> Result<StorePath, Error> {
        let absolute = std::path::absolute(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut current = normalize(&absolute);
        for _ in 0..MAX_SYMLINK_HOPS {
            if self.is_in_store(&current) {
                return self.to_store_path(&current);
            }
            let target = match fs::read_link(&current) {
                Ok(target) => target,
                Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
                    return Err(Error::OutsideStore {
                        path: path.to_path_buf(),
                        store_dir: self.as_path().to_path_buf(),
                    })
                }
                Err(source) => {
                    return Err(Error::Read {
                        path: current,
                        source,
                    })
                }
            };
            let parent = current.parent().unwrap_or(Path::new("/"));
            current = normalize(&parent.join(target));
        }
        Err(Error::SymlinkLoop {
            path: path.to_path_buf(),
        })
    }
}

impl fmt::Debug for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreDir").field(&self.dir).finish()
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir)
    }
}

impl StorePath {
    /// The full path as text.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The full path.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.path)
    }

    /// The base name, `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        &self.path[self.base..]
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> &str {
        &self.path[self.base..self.base + HASH_LEN]
    }

    /// The name after the hash part and its `-`.
    pub fn name(&self) -> &str {
        &self.path[self.base + HASH_LEN + 1..]
    }

    /// The store directory this path is in.
    pub fn store_dir(&self) -> &Path {
        Path::new(&self.path[..self.base - 1])
    }
}

impl FromStr for StorePath {
    type Err = Error;

    /// Parses a store path of the default store directory, `/nix/store`.
    fn from_str(text: &str) -> Result<Self, Error> {
        StoreDir::default().parse(text)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StorePath").field(&self.path).finish()
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl AsRef<Path> for StorePath {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl AsRef<str> for StorePath {
    fn as_ref(&self) -> &str {
        &self.path
    }
}

impl From<StorePath> for PathBuf {
    fn from(path: StorePath) -> Self {
        PathBuf::from(path.path)
    }
}

impl From<StorePath> for String {
    fn from(path: StorePath) -> Self {
        path.path
    }
}

/// Whether `byte` is in the Nix base-32 alphabet.
pub(crate) fn is_base32(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'a'..=b'z') && !matches!(byte, b'e' | b'o' | b'u' | b't')
}

/// Whether `byte` may appear in a store path name.
pub(crate) fn is_name_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.' | b'_' | b'?' | b'=')
}

/// Checks a base name, `<hash>-<name>`.
pub(crate) fn check_base_name(base: &str) -> Result<(), Invalid> {
    let bytes = base.as_bytes();
    let run = bytes.iter().take_while(|&&byte| is_base32(byte)).count();
    if run != HASH_LEN {
        if run < HASH_LEN && run < bytes.len() && bytes[run] != b'-' {
            let bad = base[run..]
                .chars()
                .next()
                .expect("run < len, so a char follows");
            return Err(Invalid::HashChar(bad));
        }
        return Err(Invalid::HashLength(run));
    }
    if bytes.get(HASH_LEN) != Some(&b'-') {
        return Err(Invalid::MissingDash);
    }
    let name = &base[HASH_LEN + 1..];
    if name.is_empty() {
        return Err(Invalid::NameEmpty);
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !c.is_ascii() || !is_name_char(c as u8))
    {
        return Err(Invalid::NameChar(bad));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Invalid::NameTooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(Invalid::DotName);
    }
    Ok(())
}

/// Removes `.` components and resolves `..` lexically in an absolute path.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "jskhbyg5484ajp1wjkdfpk9j513mcgb1";

    fn check_parse(text: &str, expect: Result<(), Invalid>) {
        let got = StoreDir::default().parse_inner(text).map(|path| {
            assert_eq!(path.as_str(), text);
            assert_eq!(path.base_name().len() + "/nix/store/".len(), text.len());
        });
        assert_eq!(got, expect, "parsing {text:?}");
    }

    #[test]
    fn parse_store_paths() {
        use Invalid::*;
        let long_name = "x".repeat(211);
        let too_long_name = "x".repeat(212);
        let cases: &[(String, Result<(), Invalid>)] = &[
            (format!("/nix/store/{HASH}-fx-app"), Ok(())),
            (format!("/nix/store/{HASH}-a"), Ok(())),
            (format!("/nix/store/{HASH}-fx-odd+name=1?x_y.z"), Ok(())),
            (format!("/nix/store/{HASH}-.-x"), Ok(())),
            (format!("/nix/store/{HASH}-..."), Ok(())),
            (format!("/nix/store/{HASH}-{long_name}"), Ok(())),
            (
                format!("/nix/store/{HASH}-{too_long_name}"),
                Err(NameTooLong(212)),
            ),
            (format!("/nix/store/{HASH}-."), Err(DotName)),
            (format!("/nix/store/{HASH}-.."), Err(DotName)),
            (format!("/nix/store/{HASH}-"), Err(NameEmpty)),
            (format!("/nix/store/{HASH}"), Err(MissingDash)),
            (format!("/nix/store/{HASH}_foo"), Err(MissingDash)),
            (format!("/nix/store/{HASH}x-foo"), Err(HashLength(33))),
            (
                format!("/nix/store/{}-foo", &HASH[1..]),
                Err(HashLength(31)),
            ),
            ("/nix/store/abc".to_owned(), Err(HashLength(3))),
            ("/nix/store/-foo".to_owned(), Err(HashLength(0))),
            (
                format!("/nix/store/e{}-foo", &HASH[1..]),
                Err(HashChar('e')),
            ),
            (
                format!("/nix/store/o{}-foo", &HASH[1..]),
                Err(HashChar('o')),
            ),
            (
                format!("/nix/store/u{}-foo", &HASH[1..]),
                Err(HashChar('u')),
            ),
            (
                format!("/nix/store/t{}-foo", &HASH[1..]),
                Err(HashChar('t')),
            ),
            (
                format!("/nix/store/{}T-foo", &HASH[..31]),
                Err(HashChar('T')),
            ),
            (
                format!("/nix/store/{}é-foo", &HASH[..31]),
                Err(HashChar('é')),
            ),
            (format!("/nix/store/{HASH}-foo bar"), Err(NameChar(' '))),
            (format!("/nix/store/{HASH}-foo:bar"), Err(NameChar(':'))),
            (format!("/nix/store/{HASH}-foo@1"), Err(NameChar('@'))),
            (format!("/nix/store/{HASH}-föö"), Err(NameChar('ö'))),
            (format!("/nix/store/{HASH}-foo\n"), Err(NameChar('\n'))),
            (format!("/nix/store/{HASH}-foo/bin/foo"), Err(InnerPath)),
            (format!("/nix/store/{HASH}-foo/"), Err(InnerPath)),
            (format!("/nix/store/x/{HASH}-foo"), Err(HashLength(1))),
            ("/nix/store/".to_owned(), Err(StoreDirItself)),
            ("/nix/store".to_owned(), Err(OutsideStoreDir)),
            (format!("/nix/storex/{HASH}-foo"), Err(OutsideStoreDir)),
            (format!("/nix//store/{HASH}-foo"), Err(OutsideStoreDir)),
            (format!("nix/store/{HASH}-foo"), Err(OutsideStoreDir)),
            (format!("/usr/{HASH}-foo"), Err(OutsideStoreDir)),
            (String::new(), Err(OutsideStoreDir)),
        ];
        for (text, expect) in cases {
            check_parse(text, *expect);
        }
    }

    #[test]
    fn store_path_parts() {
        let path: StorePath = format!("/nix/store/{HASH}-fx-app").parse().unwrap();
        assert_eq!(path.hash_part(), HASH);
        assert_eq!(path.name(), "fx-app");
        assert_eq!(path.base_name(), format!("{HASH}-fx-app"));
        assert_eq!(path.store_dir(), Path::new("/nix/store"));
        assert_eq!(path.to_string(), format!("/nix/store/{HASH}-fx-app"));
        let other = StoreDir::new("/gnu//store/").unwrap();
        assert_eq!(other.as_str(), "/gnu/store");
        let path = other.join(&format!("{HASH}-x")).unwrap();
        assert_eq!(path.as_str(), format!("/gnu/store/{HASH}-x"));
        assert_eq!(path.store_dir(), Path::new("/gnu/store"));
    }

    #[test]
    fn base32_alphabet() {
        let accepted: String = (0u8..=255)
            .filter(|&b| is_base32(b))
            .map(char::from)
            .collect();
        assert_eq!(accepted, NIX_BASE32_CHARS);
    }

    #[test]
    fn store_dirs() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("/nix/store", Ok("/nix/store")),
            ("/nix/store/", Ok("/nix/store")),
            ("//nix///store", Ok("/nix/store")),
            ("/s", Ok("/s")),
            (
                "/",
                Err("invalid store directory `/`: is the root directory"),
            ),
            (
                "nix/store",
                Err("invalid store directory `nix/store`: not an absolute path"),
            ),
            ("", Err("invalid store directory ``: not an absolute path")),
            (
                "/nix/../store",
                Err("invalid store directory `/nix/../store`: has a `.` or `..` component"),
            ),
            (
                "/nix/./store",
                Err("invalid store directory `/nix/./store`: has a `.` or `..` component"),
            ),
        ];
        for (input, expect) in cases {
            let got = StoreDir::new(input)
                .map(|dir| dir.as_str().to_owned())
                .map_err(|e| e.to_string());
            let expect = expect.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(got, expect, "store dir {input:?}");
        }
    }

    fn check_to_store_path(input: &str, expect: Result<&str, &str>) {
        let got = StoreDir::default()
            .to_store_path(Path::new(input))
            .map(|path| path.to_string())
            .map_err(|err| err.to_string());
        let expect = expect.map(str::to_owned).map_err(str::to_owned);
        assert_eq!(got, expect, "to_store_path({input:?})");
    }

    #[test]
    fn inner_paths_map_to_their_store_path() {
        let app = format!("/nix/store/{HASH}-fx-app");
        let cases: Vec<(String, Result<&str, String>)> = vec![
            (app.clone(), Ok(&app)),
            (format!("{app}/"), Ok(&app)),
            (format!("{app}/bin/app"), Ok(&app)),
            (format!("{app}/share/fx/deep/a/b/c"), Ok(&app)),
            (format!("{app}//bin/./app"), Ok(&app)),
            (format!("/nix//store/{HASH}-fx-app/bin"), Ok(&app)),
            (
                "/usr/bin/env".to_owned(),
                Err("`/usr/bin/env` is not inside the store directory `/nix/store`".to_owned()),
            ),
            (
                format!("nix/store/{HASH}-fx-app"),
                Err(format!(
                    "`nix/store/{HASH}-fx-app` is not inside the store directory `/nix/store`"
                )),
            ),
            (
                format!("/nix/storex/{HASH}-fx-app"),
                Err(format!(
                    "`/nix/storex/{HASH}-fx-app` is not inside the store directory `/nix/store`"
                )),
            ),
            (
                "/nix/store/../etc/passwd".to_owned(),
                Err(
                    "`/nix/store/../etc/passwd` is not inside the store directory `/nix/store`"
                        .to_owned(),
                ),
            ),
            (
                "/nix/store".to_owned(),
                Err("invalid store path `/nix/store`: is the store directory itself".to_owned()),
            ),
            (
                "/nix/store/.links/abc".to_owned(),
                Err(
                    "invalid store path `/nix/store/.links/abc`: '.' is not a Nix base-32 \
                     character (0-9 and a-z without e, o, u, t)"
                        .to_owned(),
                ),
            ),
            (
                format!("{app}/../x"),
                Err(format!(
                    "invalid store path `{app}/../x`: has a `..` component"
                )),
            ),
        ];
        for (input, expect) in &cases {
            check_to_store_path(input, expect.as_ref().map(|s| *s).map_err(String::as_str));
        }
    }

    #[test]
    fn error_messages() {
        let dir = StoreDir::default();
        assert_eq!(
            dir.parse("/nix/store/abc-x").unwrap_err().to_string(),
            "invalid store path `/nix/store/abc-x`: the hash part has 3 characters, not 32"
        );
        assert_eq!(
            dir.parse("/opt/x").unwrap_err().to_string(),
            "`/opt/x` is not inside the store directory `/nix/store`"
        );
        assert_eq!(
            dir.join("x").unwrap_err().to_string(),
            "invalid store path `/nix/store/x`: the hash part has 1 character, not 32"
        );
    }

    #[test]
    fn follow_links() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        fs::create_dir(&store).unwrap();
        let dir = StoreDir::new(&store).unwrap();
        let object = store.join(format!("{HASH}-fx-app"));
        fs::create_dir(&object).unwrap();
        let other = store.join(format!("{}-fx-lib", "0".repeat(32)));
        fs::create_dir(&other).unwrap();
        // A store object that is itself a symlink is not followed.
        let link_object = store.join(format!("{}-fx-link", "1".repeat(32)));
        std::os::unix::fs::symlink(&other, &link_object).unwrap();

        let result = tmp.path().join("result");
        std::os::unix::fs::symlink(&object, &result).unwrap();
        let chain = tmp.path().join("chain");
        std::os::unix::fs::symlink("result", &chain).unwrap();
        let to_link = tmp.path().join("to-link");
        std::os::unix::fs::symlink(&link_object, &to_link).unwrap();
        let plain = tmp.path().join("plain");
        fs::write(&plain, "").unwrap();
        let looping = tmp.path().join("loop");
        std::os::unix::fs::symlink("loop", &looping).unwrap();

        let follow = |path: &Path| {
            dir.follow_links_to_store_path(path)
                .map(|p| p.to_string())
                .map_err(|e| e.to_string())
        };
        let want = Ok(object.display().to_string());
        assert_eq!(follow(&result), want);
        assert_eq!(follow(&chain), want);
        assert_eq!(follow(&object.join("bin/x")), want);
        assert_eq!(follow(&to_link), Ok(link_object.display().to_string()));
        assert_eq!(
            follow(&plain),
            Err(format!(
                "`{}` is not inside the store directory `{}`",
                plain.display(),
                store.display()
            ))
        );
        assert_eq!(
            follow(&looping),
            Err(format!(
                "too many levels of symbolic links resolving `{}`",
                looping.display()
            ))
        );
        assert_eq!(
            follow(&tmp.path().join("absent")),
            Err(format!(
                "cannot read `{}`",
                tmp.path().join("absent").display()
            ))
        );
    }
}
