//! The [`Tree`]: the in-memory filesystem an image is written from.
//!
//! One inode per file; directories map names (bytes, sorted) to inodes, and a
//! hard link is simply a second name for the same [`InodeId`]. A regular
//! file's body is a [`FileSource`]: a host path read once by the writer, or
//! inline bytes. Policy (all-root, root mode, time clamping) is applied by the
//! writer, never baked in here.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;

/// Identifies one inode of a [`Tree`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeId(pub(crate) u32);

impl InodeId {
    /// The position of this inode in [`Tree::inodes`] order.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Extended attributes as (full name such as `user.comment`, value), sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Owner, permissions, time and extended attributes of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits, including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in seconds since the epoch.
    pub mtime: u32,
    /// Extended attributes as (full name, value), sorted by name.
    pub xattrs: Xattrs,
}

impl Metadata {
    /// Root-owned, time 0, no xattrs, with the given permission bits.
    pub fn with_mode(mode: u16) -> Metadata {
        Metadata {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Where a regular file's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A host file, read once while the image is written.
    Host {
        /// The host path.
        path: HostPath,
        /// Whether the file occupies fewer blocks on disk than its size (it has holes).
        sparse: bool,
        /// The file's stat fingerprint when it was listed, which lets a
        /// [`Cache`](crate::Cache) reuse its hashes without reading it;
        /// `None` when no cache will use it ([`Tree::keep_fingerprints`]).
        /// Boxed: a fingerprint is 48 bytes, and a tree of 100 k files
        /// without a cache would hold 5 MB of `None`s inline.
        stat: Option<Box<Fingerprint>>,
    },
    /// Bytes held in memory (generated files).
    Bytes(Arc<[u8]>),
}

/// A host file's path, kept as its folder's path, shared by every file listed
/// from that folder, and its name: a tree of many small files holds each
/// folder's path once rather than once per file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPath {
    dir: Arc<Path>,
    /// Empty when the path has no last component to split off (`/`, `..`).
    name: Box<OsStr>,
}

impl HostPath {
    /// The entry `name` of the folder `dir`.
    pub fn in_dir(dir: Arc<Path>, name: &OsStr) -> HostPath {
        HostPath {
            dir,
            name: name.into(),
        }
    }

    /// The whole path.
    pub fn to_path_buf(&self) -> PathBuf {
        if self.name.is_empty() {
            self.dir.to_path_buf()
        } else {
            self.dir.join(&*self.name)
        }
    }
}

impl From<&Path> for HostPath {
    fn from(path: &Path) -> HostPath {
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => HostPath::in_dir(Arc::from(dir), name),
            _ => HostPath::in_dir(Arc::from(path), OsStr::new("")),
        }
    }
}

impl From<PathBuf> for HostPath {
    fn from(path: PathBuf) -> HostPath {
        HostPath::from(path.as_path())
    }
}

/// A host file's identity as `lstat` saw it: device, inode, size, and mtime
/// and ctime to the nanosecond. Any write to a file changes its ctime, so an
/// unchanged fingerprint means unchanged contents unless something restored
/// the ctime (a filesystem snapshot rollback, a changed clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime`: whole seconds since the epoch…
    pub mtime_sec: i64,
    /// `st_ctime`: whole seconds since the epoch…
    pub ctime_sec: i64,
    /// …and `st_mtime_nsec`, nanoseconds (0 to 999,999,999).
    pub mtime_nsec: u32,
    /// …and `st_ctime_nsec`.
    pub ctime_nsec: u32,
}

impl Fingerprint {
    /// The fingerprint of `meta` (from `lstat` or `fstat`).
    pub fn of(meta: &std::fs::Metadata) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        // The kernel keeps nanoseconds below 10^9; clamping only guards the cast.
        let nsec = |n: i64| n.clamp(0, 999_999_999) as u32;
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_sec: meta.mtime(),
            ctime_sec: meta.ctime(),
            mtime_nsec: nsec(meta.mtime_nsec()),
            ctime_nsec: nsec(meta.ctime_nsec()),
        }
    }

    /// `st_mtime` in nanoseconds since the epoch.
    pub fn mtime_ns(&self) -> i128 {
        i128::from(self.mtime_sec) * 1_000_000_000 + i128::from(self.mtime_nsec)
    }

    /// `st_ctime` in nanoseconds since the epoch.
    pub fn ctime_ns(&self) -> i128 {
        i128::from(self.ctime_sec) * 1_000_000_000 + i128::from(self.ctime_nsec)
    }
}

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory: entry names (no `/`, no NUL, not `.` or `..`) to inodes, sorted bytewise.
    Dir(BTreeMap<Vec<u8>, InodeId>),
    /// A regular file of `size` bytes.
    File {
        /// The contents.
        source: FileSource,
        /// The size in bytes; the writer fails if the source turns out to differ.
        size: u64,
    },
    /// A symbolic link and its target (1 to 4095 bytes).
    Symlink(Vec<u8>),
    /// A character device; `rdev` as `st_rdev` (major and minor in glibc's encoding).
    CharDev(u64),
    /// A block device; `rdev` as `st_rdev`.
    BlockDev(u64),
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

#[derive(Debug, Clone)]
struct Inode {
    kind: Kind,
    meta: Metadata,
}

/// An in-memory directory tree, rooted at a directory.
#[derive(Debug, Clone)]
pub struct Tree {
    inodes: Vec<Inode>,
    /// (st_dev, st_ino) of grafted host files, to keep hard links together.
    pub(crate) host_inodes: HashMap<(u64, u64), InodeId>,
    /// Whether host files grafted from now on keep their stat
    /// [`Fingerprint`] ([`Tree::keep_fingerprints`]).
    pub(crate) fingerprints: bool,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new(Metadata::with_mode(0o755))
    }
}

impl Tree {
    /// A tree holding only an empty root directory with `root` metadata.
    pub fn new(root: Metadata) -> Tree {
        Tree {
            inodes: vec![Inode {
                kind: Kind::Dir(BTreeMap::new()),
                meta: root,
            }],
            host_inodes: HashMap::new(),
            fingerprints: true,
        }
    }

    /// The root directory.
    pub fn root(&self) -> InodeId {
        InodeId(0)
    }

    /// Number of inodes (hard links count once).
    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    /// Always false: a tree has at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// What `id` is.
    pub fn kind(&self, id: InodeId) -> &Kind {
        &self.inodes[id.index()].kind
    }

    /// The metadata of `id`.
    pub fn metadata(&self, id: InodeId) -> &Metadata {
        &self.inodes[id.index()].meta
    }

    /// Replaces the metadata of `id`.
    pub fn set_metadata(&mut self, id: InodeId, meta: Metadata) {
        self.inodes[id.index()].meta = meta;
    }

    /// The entries of directory `id`, or `None` if it is not a directory.
    pub fn entries(&self, id: InodeId) -> Option<&BTreeMap<Vec<u8>, InodeId>> {
        match &self.inodes[id.index()].kind {
            Kind::Dir(entries) => Some(entries),
            _ => None,
        }
    }

    /// Finds the inode at `path` (absolute or relative to the root; `/` is the root).
    pub fn lookup(&self, path: impl AsRef<Path>) -> Option<InodeId> {
        let mut cur = self.root();
        for comp in components(path.as_ref()) {
            cur = *self.entries(cur)?.get(comp)?;
        }
        Some(cur)
    }

    /// Adds `name` with `kind` to directory `parent`.
    ///
    /// # Errors
    ///
    /// If `parent` is not a directory, `name` is not a valid file name, or `name` exists.
    pub fn insert(
        &mut self,
        parent: InodeId,
        name: &[u8],
        kind: Kind,
        meta: Metadata,
    ) -> Result<InodeId, Error> {
        check_kind(name, &kind)?;
        let id = InodeId(
            u32::try_from(self.inodes.len())
                .map_err(|_| Error::Limit("more than 4294967295 inodes".to_string()))?,
        );
        self.add_entry(parent, name, id)?;
        self.inodes.push(Inode { kind, meta });
        Ok(id)
    }

    /// Whether host files grafted from now on keep their stat [`Fingerprint`]
    /// (the default). Only a [`Cache`](crate::Cache) with
    /// [`trust_stat`](crate::CacheConfig::trust_stat) uses them, to trust an
    /// unchanged file without reading it: any other build can do without,
    /// and each costs a 64-byte allocation.
    pub fn keep_fingerprints(&mut self, keep: bool) {
        self.fingerprints = keep;
    }

    /// Gives back the spare capacity of the inode list. Call it once the tree
    /// is complete (after the last [`Tree::graft`]; [`Tree::from_sources`]
    /// does): the inode list is the largest thing a big tree holds, and
    /// growing it by doubling leaves up to half of it unused for the whole write.
    pub fn shrink_to_fit(&mut self) {
        self.inodes.shrink_to_fit();
    }

    /// Adds `name` to directory `parent` as another hard link to `target`.
    ///
    /// # Errors
    ///
    /// If `target` is a directory (directories cannot be hard-linked), or as [`Tree::insert`].
    pub fn hard_link(
        &mut self,
        parent: InodeId,
        name: &[u8],
        target: InodeId,
    ) -> Result<(), Error> {
        if matches!(self.kind(target), Kind::Dir(_)) {
            return Err(tree_error(name, "directories cannot be hard-linked"));
        }
        self.add_entry(parent, name, target)
    }

    /// Inserts `kind` at `path`, creating missing parent directories with `dir_meta`.
    ///
    /// # Errors
    ///
    /// If a parent exists and is not a directory, or `path` exists.
    pub fn insert_path(
        &mut self,
        path: impl AsRef<Path>,
        kind: Kind,
        meta: Metadata,
        dir_meta: &Metadata,
    ) -> Result<InodeId, Error> {
        let path = path.as_ref();
        let comps: Vec<&[u8]> = components(path).collect();
        let Some((last, parents)) = comps.split_last() else {
            return Err(tree_error(path.as_os_str().as_bytes(), "is the root"));
        };
        let parent = self.create_dirs_inner(parents, dir_meta)?;
        self.insert(parent, last, kind, meta)
    }

    /// Creates the directory `path` and its missing parents with `meta` (like `mkdir -p`);
    /// returns it. Existing directories are kept as they are.
    ///
    /// # Errors
    ///
    /// If a component exists and is not a directory.
    pub fn create_dirs(
        &mut self,
        path: impl AsRef<Path>,
        meta: &Metadata,
    ) -> Result<InodeId, Error> {
        let comps: Vec<&[u8]> = components(path.as_ref()).collect();
        self.create_dirs_inner(&comps, meta)
    }

    fn create_dirs_inner(&mut self, comps: &[&[u8]], meta: &Metadata) -> Result<InodeId, Error> {
        let mut cur = self.root();
        for comp in comps {
            let existing = self.entries(cur).and_then(|e| e.get(*comp)).copied();
            cur = match existing {
                Some(id) if matches!(self.kind(id), Kind::Dir(_)) => id,
                Some(_) => return Err(tree_error(comp, "exists and is not a directory")),
                None => self.insert(cur, comp, Kind::Dir(BTreeMap::new()), meta.clone())?,
            };
        }
        Ok(cur)
    }

    fn add_entry(&mut self, parent: InodeId, name: &[u8], id: InodeId) -> Result<(), Error> {
        check_name(name)?;
        let Kind::Dir(entries) = &mut self.inodes[parent.index()].kind else {
            return Err(tree_error(name, "parent is not a directory"));
        };
        if entries.contains_key(name) {
            return Err(tree_error(name, "already exists"));
        }
        entries.insert(name.to_vec(), id);
        Ok(())
    }
}

/// The non-empty components of `path`, ignoring a leading `/`, `.` components and repeated slashes.
pub(crate) fn components(path: &Path) -> impl Iterator<Item = &[u8]> {
    path.as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

fn check_name(name: &[u8]) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "empty file name"
    } else if name == b"." || name == b".." {
        "`.` and `..` cannot be stored"
    } else if name.contains(&b'/') || name.contains(&0) {
        "file name contains `/` or NUL"
    } else if name.len() > 256 {
        "file name longer than 256 bytes"
    } else {
        return Ok(());
    };
    Err(tree_error(name, reason))
}

fn check_kind(name: &[u8], kind: &Kind) -> Result<(), Error> {
    match kind {
        Kind::Symlink(target) if target.is_empty() || target.len() > 4095 => {
            Err(tree_error(name, "symlink target must be 1 to 4095 bytes"))
        }
        _ => Ok(()),
    }
}

pub(crate) fn tree_error(name: &[u8], reason: &str) -> Error {
    Error::Tree {
        path: OsStr::from_bytes(name).to_string_lossy().into_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_path_is_split_and_joined_back_to_the_same_file() {
        for path in [
            "/a/b/c.html",
            "rel/f",
            "f",
            "/",
            "/a",
            "..",
            "a/..",
            ".",
            "./f",
            "a/b/",
        ] {
            let host = HostPath::from(Path::new(path));
            assert_eq!(
                host.to_path_buf().components().collect::<Vec<_>>(),
                Path::new(path).components().collect::<Vec<_>>(),
                "{path}"
            );
        }
        let dir: Arc<Path> = Arc::from(Path::new("/nix/store/x-foo/share"));
        let a = HostPath::in_dir(Arc::clone(&dir), OsStr::new("a.txt"));
        let b = HostPath::in_dir(Arc::clone(&dir), OsStr::new("b.txt"));
        assert_eq!(a.to_path_buf(), Path::new("/nix/store/x-foo/share/a.txt"));
        assert_ne!(a, b);
        assert_eq!(
            Arc::strong_count(&dir),
            3,
            "the folder's path is shared, not copied"
        );
    }

    fn file(bytes: &[u8]) -> Kind {
        Kind::File {
            source: FileSource::Bytes(bytes.into()),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn insert_lookup_and_links() {
        let mut t = Tree::default();
        let m = Metadata::with_mode(0o644);
        let d = Metadata::with_mode(0o755);
        let f = t.insert_path("/a/b/c", file(b"x"), m.clone(), &d).unwrap();
        assert_eq!(t.lookup("a/b/c"), Some(f));
        assert_eq!(t.lookup("/a//b/./c"), Some(f));
        let b = t.lookup("/a/b").unwrap();
        t.hard_link(b, b"d", f).unwrap();
        assert_eq!(t.lookup("/a/b/d"), Some(f));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn rejects_bad_edits() {
        let mut t = Tree::default();
        let m = Metadata::with_mode(0o644);
        let d = Metadata::with_mode(0o755);
        let root = t.root();
        for (name, want) in [
            (&b""[..], "empty file name"),
            (b"..", "`.` and `..` cannot be stored"),
            (b"a/b", "file name contains `/` or NUL"),
            (&[b'x'; 257][..], "file name longer than 256 bytes"),
        ] {
            let err = t.insert(root, name, file(b""), m.clone()).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        t.insert(root, b"f", file(b""), m.clone()).unwrap();
        assert!(t
            .insert(root, b"f", file(b""), m.clone())
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        assert!(t
            .insert_path("/f/g", file(b""), m.clone(), &d)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        let dir = t.create_dirs("/dir", &d).unwrap();
        assert!(t.hard_link(root, b"dl", dir).is_err());
        assert!(t
            .insert(root, b"l", Kind::Symlink(vec![b'a'; 4096]), m)
            .is_err());
    }
}
