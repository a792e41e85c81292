//! Building a [`Tree`] from host directories: [`Tree::graft`] and
//! [`Tree::from_sources`] (mksquashfs's rules for one or several sources).
//!
//! Only metadata is read here (lstat, readlink, xattr names and values); file
//! bodies stay on the host as [`FileSource::Host`] until the writer reads them.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::tree::Xattrs;
use crate::tree::{components, tree_error};
use crate::{Error, FileSource, Fingerprint, HostPath, InodeId, Kind, Metadata, Tree};

/// The xattr namespaces SquashFS can store.
const XATTR_PREFIXES: [&[u8]; 3] = [b"user.", b"trusted.", b"security."];

impl Tree {
    /// Builds a tree the way mksquashfs does from `SOURCE... DEST`.
    ///
    /// One directory source without `keep_as_directory`: its contents become the
    /// root, and the root takes that directory's metadata. Several sources, a
    /// non-directory source, or `keep_as_directory`: each source becomes an entry
    /// of a new root named after its last component (a repeated name gets `_1`,
    /// `_2`, … as in mksquashfs); that root has mode 0777, owner 0:0 and mtime
    /// `root_time` (mksquashfs gives it the build time).
    ///
    /// With `fingerprints`, every host file keeps its stat [`Fingerprint`],
    /// which only a [`Cache`](crate::Cache) trusting stat uses ([`Tree::keep_fingerprints`]).
    ///
    /// # Errors
    ///
    /// [`Error::Read`] naming the first source or file that cannot be inspected.
    pub fn from_sources<P: AsRef<Path>>(
        sources: &[P],
        keep_as_directory: bool,
        root_time: u32,
        fingerprints: bool,
    ) -> Result<Tree, Error> {
        let sources: Vec<&Path> = sources.iter().map(AsRef::as_ref).collect();
        if let [single] = sources[..] {
            let meta = lstat(single)?;
            if meta.is_dir() && !keep_as_directory {
                let Scanned { meta, what, .. } = scan(single, &meta);
                let mut tree = Tree::new(meta?);
                tree.keep_fingerprints(fingerprints);
                if let What::Dir(children) = what {
                    let root = tree.root();
                    tree.graft_children(root, children?, Arc::from(single))?;
                }
                tree.shrink_to_fit();
                return Ok(tree);
            }
        }
        let mut tree = Tree::new(Metadata {
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: root_time,
            xattrs: Vec::new(),
        });
        tree.keep_fingerprints(fingerprints);
        let root = tree.root();
        for source in sources {
            let base = source_name(source)?;
            let mut name = base.clone();
            let mut n = 0;
            while tree.entries(root).is_some_and(|e| e.contains_key(&name)) {
                n += 1;
                name = [&base[..], format!("_{n}").as_bytes()].concat();
            }
            tree.graft_entry(root, &name, source)?;
        }
        tree.shrink_to_fit();
        Ok(tree)
    }

    /// Adds the host file or directory tree at `host` to the image at `image_path`,
    /// creating missing parents with `dir_meta`. Hard links inside everything
    /// grafted into this tree stay hard links.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] for a host path that cannot be inspected; [`Error::Tree`]
    /// if `image_path` is the root, exists, or has a non-directory parent.
    pub fn graft(
        &mut self,
        image_path: impl AsRef<Path>,
        host: impl AsRef<Path>,
        dir_meta: &Metadata,
    ) -> Result<InodeId, Error> {
        let image_path = image_path.as_ref();
        let comps: Vec<&[u8]> = components(image_path).collect();
        let Some((name, parents)) = comps.split_last() else {
            return Err(tree_error(b"/", "cannot graft over the root"));
        };
        let mut parent = self.root();
        for comp in parents {
            parent = match self.entries(parent).and_then(|e| e.get(*comp)).copied() {
                Some(id) if self.entries(id).is_some() => id,
                Some(_) => return Err(tree_error(comp, "exists and is not a directory")),
                None => self.insert(parent, comp, Kind::Dir(BTreeMap::new()), dir_meta.clone())?,
            };
        }
        self.graft_entry(parent, name, host.as_ref())
    }

    fn graft_entry(&mut self, parent: InodeId, name: &[u8], host: &Path) -> Result<InodeId, Error> {
        let stat = lstat(host)?;
        let scanned = scan(host, &stat);
        self.graft_scanned(parent, name, scanned, Place::Top(host))
    }

    /// Adds what [`scan`] found at `place` as `name` in `parent`, and what
    /// is below it, in order; the first error in that order is returned.
    fn graft_scanned(
        &mut self,
        parent: InodeId,
        name: &[u8],
        scanned: Scanned,
        place: Place<'_>,
    ) -> Result<InodeId, Error> {
        let Scanned { meta, link, what } = scanned;
        let meta = meta?;
        if let What::Dir(children) = what {
            let id = self.insert(parent, name, Kind::Dir(BTreeMap::new()), meta)?;
            self.graft_children(id, children?, Arc::from(place.path()))?;
            return Ok(id);
        }
        if let Some(existing) = link.and_then(|key| self.host_inodes.get(&key).copied()) {
            self.hard_link(parent, name, existing)?;
            return Ok(existing);
        }
        let kind = match what {
            What::Dir(_) => unreachable!("handled above"),
            What::File { sparse, stat } => Kind::File {
                source: FileSource::Host {
                    path: place.host_path(),
                    sparse,
                    stat: self.fingerprints.then(|| Box::new(stat)),
                },
                size: stat.size,
            },
            What::Symlink(target) => Kind::Symlink(target?),
            What::Special(kind) => kind,
        };
        let id = self.insert(parent, name, kind, meta)?;
        if let Some(key) = link {
            self.host_inodes.insert(key, id);
        }
        Ok(id)
    }

    /// Grafts the scanned entries of the host folder `host` into `dir`.
    fn graft_children(
        &mut self,
        dir: InodeId,
        children: Vec<(OsString, Scanned)>,
        host: Arc<Path>,
    ) -> Result<(), Error> {
        for (name, child) in children {
            self.graft_scanned(dir, name.as_bytes(), child, Place::In(&host, &name))?;
        }
        Ok(())
    }
}

/// Where a scanned entry is on the host.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// At this path, which was grafted itself.
    Top(&'a Path),
    /// In this folder, under this name.
    In(&'a Arc<Path>, &'a OsStr),
}

impl Place<'_> {
    fn path(self) -> PathBuf {
        match self {
            Place::Top(path) => path.to_path_buf(),
            Place::In(dir, name) => dir.join(name),
        }
    }

    fn host_path(self) -> HostPath {
        match self {
            Place::Top(path) => HostPath::from(path),
            Place::In(dir, name) => HostPath::in_dir(Arc::clone(dir), name),
        }
    }
}

/// A host entry as [`scan`] found it: all a graft needs, read in parallel
/// and grafted in order afterwards. Errors wait here for their turn.
struct Scanned {
    meta: Result<Metadata, Error>,
    /// (st_dev, st_ino) of a non-directory with more than one link.
    link: Option<(u64, u64)>,
    what: What,
}

enum What {
    /// A folder's entries and their names, sorted by name.
    Dir(Result<Vec<(OsString, Scanned)>, Error>),
    File {
        sparse: bool,
        stat: Fingerprint,
    },
    Symlink(Result<Vec<u8>, Error>),
    /// A device, fifo or socket.
    Special(Kind),
}

/// Inspects the host entry at `path` (`stat` is its `lstat`) and, for a
/// folder, everything below it, in parallel on rayon's pool: listing, `lstat`,
/// xattrs and link targets of 100k files take a core for about 0.4 s, which
/// would otherwise be the only work running before packing starts.
fn scan(path: &Path, stat: &fs::Metadata) -> Scanned {
    let file_type = stat.file_type();
    let meta = metadata_of(path, stat);
    let what = if file_type.is_dir() {
        What::Dir(scan_children(path))
    } else if file_type.is_file() {
        What::File {
            sparse: stat.blocks().saturating_mul(512) < stat.size(),
            stat: Fingerprint::of(stat),
        }
    } else if file_type.is_symlink() {
        What::Symlink(
            fs::read_link(path)
                .map(|target| target.into_os_string().into_vec())
                .map_err(|source| read_error(path, source)),
        )
    } else if file_type.is_char_device() {
        What::Special(Kind::CharDev(stat.rdev()))
    } else if file_type.is_block_device() {
        What::Special(Kind::BlockDev(stat.rdev()))
    } else if file_type.is_fifo() {
        What::Special(Kind::Fifo)
    } else {
        What::Special(Kind::Socket)
    };
    let link = (!file_type.is_dir() && stat.nlink() > 1).then(|| (stat.dev(), stat.ino()));
    Scanned { meta, link, what }
}

/// [`scan`] of every entry of the folder `dir`, sorted by name.
fn scan_children(dir: &Path) -> Result<Vec<(OsString, Scanned)>, Error> {
    use rayon::prelude::*;
    // `DirEntry::metadata` is an `lstat` relative to the open directory
    // (statx on its fd), which spares the kernel a walk of the full path
    // per entry: a tenth of a warm rebuild's time on 52k small files.
    let mut listed = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| read_error(dir, source))? {
        let entry = entry.map_err(|source| read_error(dir, source))?;
        let stat = entry
            .metadata()
            .map_err(|source| read_error(&entry.path(), source))?;
        listed.push((entry.file_name(), stat));
    }
    listed.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(listed
        .into_par_iter()
        .map(|(name, stat)| {
            let scanned = scan(&dir.join(&name), &stat);
            (name, scanned)
        })
        .collect())
}

fn source_name(source: &Path) -> Result<Vec<u8>, Error> {
    if let Some(name) = source.file_name() {
        return Ok(name.as_bytes().to_vec());
    }
    // `.`, `..` or `/`: name it after what it resolves to, as mksquashfs does.
    let resolved = fs::canonicalize(source).map_err(|source_err| read_error(source, source_err))?;
    Ok(resolved
        .file_name()
        .unwrap_or(OsStr::new("root"))
        .as_bytes()
        .to_vec())
}

fn lstat(path: &Path) -> Result<fs::Metadata, Error> {
    fs::symlink_metadata(path).map_err(|source| read_error(path, source))
}

fn read_error(path: &Path, source: std::io::Error) -> Error {
    Error::Read {
        path: PathBuf::from(path),
        source,
    }
}

fn metadata_of(path: &Path, stat: &fs::Metadata) -> Result<Metadata, Error> {
    Ok(Metadata {
        mode: (stat.mode() & 0o7777) as u16,
        uid: stat.uid(),
        gid: stat.gid(),
        mtime: clamp_time(stat.mtime()),
        xattrs: read_xattrs(path)?,
    })
}

/// SquashFS stores unsigned 32-bit seconds: earlier times become 0, later ones the maximum.
pub(crate) fn clamp_time(secs: i64) -> u32 {
    secs.clamp(0, i64::from(u32::MAX)) as u32
}

/// The storable xattrs of `path` (not following symlinks), sorted by name.
fn read_xattrs(path: &Path) -> Result<Xattrs, Error> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        // Filesystems without xattr support simply have none.
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()),
        Err(source) => return Err(read_error(path, source)),
    };
    let mut out = Vec::new();
    for name in names {
        let bytes = name.as_bytes();
        if !XATTR_PREFIXES
            .iter()
            .any(|p| bytes.starts_with(p) && bytes.len() > p.len())
        {
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push((bytes.to_vec(), value)),
            Ok(None) => {}
            Err(source) => return Err(read_error(path, source)),
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn sources_follow_mksquashfs_rules() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("f"), b"hello").unwrap();
        fs::hard_link(a.join("f"), a.join("sub/g")).unwrap();
        symlink("f", a.join("l")).unwrap();
        let b = dir.path().join("b/a");
        fs::create_dir_all(&b).unwrap();

        let single = Tree::from_sources(&[&a], false, 7, true).unwrap();
        let f = single.lookup("f").unwrap();
        assert_eq!(single.lookup("sub/g"), Some(f), "hard link kept");
        assert_eq!(
            single.kind(single.lookup("l").unwrap()),
            &Kind::Symlink(b"f".to_vec())
        );
        assert_ne!(single.metadata(single.root()).mtime, 7);

        let kept = Tree::from_sources(&[&a], true, 7, true).unwrap();
        assert!(kept.lookup("a/sub/g").is_some());
        assert_eq!(
            kept.metadata(kept.root()),
            &Metadata {
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: 7,
                xattrs: vec![]
            }
        );

        let merged = Tree::from_sources(&[&a, &b], false, 0, true).unwrap();
        assert!(merged.lookup("a/f").is_some());
        assert!(merged.lookup("a_1").is_some());

        let missing = Tree::from_sources(&[dir.path().join("nope")], false, 0, true).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn fingerprints_are_kept_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("f"), b"hello").unwrap();
        fs::write(a.join("sub/g"), b"world!").unwrap();
        let fingerprint = |tree: &Tree, path: &str| match tree.kind(tree.lookup(path).unwrap()) {
            Kind::File {
                source: FileSource::Host { stat, .. },
                size,
            } => {
                if let Some(fp) = stat {
                    assert_eq!(fp.size, *size, "{path}");
                }
                stat.is_some()
            }
            other => panic!("{path}: {other:?}"),
        };
        for keep in [true, false] {
            // One folder source, several sources, and a graft.
            let single = Tree::from_sources(&[&a], false, 0, keep).unwrap();
            assert_eq!(fingerprint(&single, "f"), keep);
            assert_eq!(fingerprint(&single, "sub/g"), keep);
            let several =
                Tree::from_sources(&[a.join("f"), a.join("sub")], false, 0, keep).unwrap();
            assert_eq!(fingerprint(&several, "f"), keep);
            assert_eq!(fingerprint(&several, "sub/g"), keep);
            let mut grafted = Tree::default();
            grafted.keep_fingerprints(keep);
            grafted
                .graft("x/y", &a, &Metadata::with_mode(0o755))
                .unwrap();
            assert_eq!(fingerprint(&grafted, "x/y/sub/g"), keep);
        }
        let mut default = Tree::default();
        default.graft("a", &a, &Metadata::with_mode(0o755)).unwrap();
        assert!(fingerprint(&default, "a/f"), "kept by default");
    }

    #[test]
    fn a_parallel_walk_numbers_inodes_in_tree_order_at_any_pool_size() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in 0..12 {
            let sub = root.join(format!("d{d:02}/inner"));
            fs::create_dir_all(&sub).unwrap();
            for f in 0..25 {
                fs::write(sub.join(format!("f{f:02}")), format!("{d} {f}")).unwrap();
            }
            // A hard link to a file listed in another folder, and a symlink.
            fs::hard_link(root.join("d00/inner/f00"), sub.join("link")).unwrap();
            symlink("inner/f01", root.join(format!("d{d:02}/sym"))).unwrap();
        }
        let walk = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let tree = pool.install(|| Tree::from_sources(&[root], false, 0, true).unwrap());
            (0..tree.len())
                .map(|i| {
                    let id = InodeId(i as u32);
                    format!("{:?} {:?}", tree.kind(id), tree.metadata(id))
                })
                .collect::<Vec<_>>()
        };
        let one = walk(1);
        assert_eq!(one.len(), 1 + 12 * (2 + 25 + 1), "links are one inode");
        assert_eq!(walk(8), one);
        let tree = Tree::from_sources(&[root], false, 0, true).unwrap();
        let first = tree.lookup("d00/inner/f00").unwrap();
        assert_eq!(tree.lookup("d11/inner/link"), Some(first));
        assert_eq!(tree.lookup("d00/inner/link"), Some(first));
        let names: Vec<&Vec<u8>> = tree.entries(tree.root()).unwrap().keys().collect();
        assert_eq!(names.len(), 12);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn graft_creates_parents_and_refuses_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), b"x").unwrap();
        let mut tree = Tree::default();
        let d = Metadata::with_mode(0o755);
        tree.graft("/nix/store/abc-x", dir.path().join("x"), &d)
            .unwrap();
        assert!(tree.lookup("/nix/store/abc-x").is_some());
        assert!(tree
            .graft("/nix/store/abc-x", dir.path().join("x"), &d)
            .is_err());
        assert!(tree
            .graft("/nix/store/abc-x/y", dir.path().join("x"), &d)
            .is_err());
    }
}
