//! Snapshots of a directory tree as a reader presents it, and their comparison.
//!
//! A [`View`] records, per path (lstat, never following symlinks): type,
//! permission bits, owner, mtime, link count, size and blake3 of contents,
//! symlink target, device number, every xattr (`llistxattr`; as root the
//! kernel shows `trusted.*` too) and the hard-link group (the paths sharing
//! the inode number). Taken of the source tree it becomes, after applying the
//! options' policy, the expectation for every reader.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{Context, Result};

use crate::harness::show_bytes;

/// What a path is, with the data that matters for its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory (its size is filesystem-specific and not compared).
    Dir,
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
        /// blake3 of the contents.
        hash: blake3::Hash,
    },
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A character device (`st_rdev`).
    CharDev(u64),
    /// A block device (`st_rdev`).
    BlockDev(u64),
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

/// One path of a [`View`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Type and type-specific data.
    pub kind: Kind,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds).
    pub mtime: i64,
    /// Link count.
    pub nlink: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a non-directory with more than one name: all its names, sorted; else empty.
    pub links: Vec<Vec<u8>>,
}

/// A tree as a reader shows it: relative path (bytes; the root is empty) to entry.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Every path, sorted.
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

impl View {
    /// Walks the tree at `root` (the root itself included).
    pub fn snapshot(root: &Path) -> Result<View> {
        let mut entries = BTreeMap::new();
        let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(rel) = stack.pop() {
            let path = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(OsStr::from_bytes(&rel))
            };
            let meta =
                fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                for child in fs::read_dir(&path)
                    .with_context(|| format!("reading directory {}", path.display()))?
                {
                    let name = child?.file_name();
                    let child_rel = if rel.is_empty() {
                        name.as_bytes().to_vec()
                    } else {
                        [rel.as_slice(), b"/", name.as_bytes()].concat()
                    };
                    stack.push(child_rel);
                }
                Kind::Dir
            } else if ft.is_file() {
                let mut hasher = blake3::Hasher::new();
                let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                hasher
                    .update_reader(f)
                    .with_context(|| format!("reading {}", path.display()))?;
                Kind::File {
                    size: meta.len(),
                    hash: hasher.finalize(),
                }
            } else if ft.is_symlink() {
                let target =
                    fs::read_link(&path).with_context(|| format!("readlink {}", path.display()))?;
                Kind::Symlink(target.into_os_string().into_vec())
            } else if ft.is_char_device() {
                Kind::CharDev(meta.rdev())
            } else if ft.is_block_device() {
                Kind::BlockDev(meta.rdev())
            } else if ft.is_fifo() {
                Kind::Fifo
            } else if ft.is_socket() {
                Kind::Socket
            } else {
                anyhow::bail!("{}: unknown file type", path.display());
            };
            if !ft.is_dir() {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            let mut xattrs = Vec::new();
            let names = match xattr::list(&path) {
                Ok(names) => names.collect(),
                // A SquashFS image without an xattr table answers "not supported".
                Err(e) if e.raw_os_error() == Some(95) => Vec::new(),
                Err(e) => {
                    return Err(e).with_context(|| format!("listing xattrs of {}", path.display()))
                }
            };
            for name in names {
                let value = xattr::get(&path, &name)
                    .with_context(|| {
                        format!(
                            "reading xattr {} of {}",
                            name.to_string_lossy(),
                            path.display()
                        )
                    })?
                    .unwrap_or_default();
                xattrs.push((name.as_bytes().to_vec(), value));
            }
            xattrs.sort();
            let entry = Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                nlink: meta.nlink(),
                xattrs,
                links: Vec::new(),
            };
            entries.insert(rel, entry);
        }
        for mut names in inodes.into_values().filter(|names| names.len() > 1) {
            names.sort();
            for name in &names {
                entries.get_mut(name).expect("walked above").links = names.clone();
            }
        }
        Ok(View { entries })
    }

    /// The same tree one level down, at `name` inside a new root directory `root`.
    pub fn nested_under(&self, name: &[u8], into: &mut View) {
        let prefixed = |p: &[u8]| {
            if p.is_empty() {
                name.to_vec()
            } else {
                [name, b"/", p].concat()
            }
        };
        for (path, entry) in &self.entries {
            let mut entry = entry.clone();
            entry.links = entry.links.iter().map(|l| prefixed(l)).collect();
            into.entries.insert(prefixed(path), entry);
        }
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Every difference between `expected` and `actual`, one line each, naming
/// the path (escaped) and the field.
pub fn diff(expected: &View, actual: &View) -> Vec<String> {
    let mut out = Vec::new();
    for (path, want) in &expected.entries {
        let shown = display_path(path);
        let Some(got) = actual.entries.get(path) else {
            out.push(format!("{shown}: missing"));
            continue;
        };
        if want.kind != got.kind {
            out.push(format!(
                "{shown}: {}",
                kind_difference(&want.kind, &got.kind)
            ));
        }
        if want.mode != got.mode {
            out.push(format!(
                "{shown}: mode: expected {:04o}, got {:04o}",
                want.mode, got.mode
            ));
        }
        if (want.uid, want.gid) != (got.uid, got.gid) {
            out.push(format!(
                "{shown}: owner: expected {}:{}, got {}:{}",
                want.uid, want.gid, got.uid, got.gid
            ));
        }
        if want.mtime != got.mtime {
            out.push(format!(
                "{shown}: mtime: expected {}, got {}",
                want.mtime, got.mtime
            ));
        }
        if want.nlink != got.nlink {
            out.push(format!(
                "{shown}: link count: expected {}, got {}",
                want.nlink, got.nlink
            ));
        }
        if want.xattrs != got.xattrs {
            out.push(format!(
                "{shown}: xattrs: expected {}, got {}",
                show_xattrs(&want.xattrs),
                show_xattrs(&got.xattrs)
            ));
        }
        if want.links != got.links {
            out.push(format!(
                "{shown}: hard links: expected {}, got {}",
                show_links(&want.links),
                show_links(&got.links)
            ));
        }
    }
    for path in actual
        .entries
        .keys()
        .filter(|p| !expected.entries.contains_key(*p))
    {
        out.push(format!("{}: unexpected", display_path(path)));
    }
    out
}

/// A path for messages: `/` for the root, otherwise escaped bytes.
pub fn display_path(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        format!("/{}", show_bytes(path))
    }
}

fn kind_difference(want: &Kind, got: &Kind) -> String {
    match (want, got) {
        (Kind::File { size: a, .. }, Kind::File { size: b, .. }) if a == b => {
            format!("contents differ (both {a} bytes)")
        }
        (Kind::File { size: a, .. }, Kind::File { size: b, .. }) => {
            format!("size: expected {a}, got {b}")
        }
        (Kind::Symlink(a), Kind::Symlink(b)) => {
            format!(
                "symlink target: expected {:?}, got {:?}",
                show_bytes(a),
                show_bytes(b)
            )
        }
        (Kind::CharDev(a), Kind::CharDev(b)) | (Kind::BlockDev(a), Kind::BlockDev(b)) => {
            format!("device number: expected {a:#x}, got {b:#x}")
        }
        _ => format!("type: expected {}, got {}", kind_name(want), kind_name(got)),
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Dir => "directory",
        Kind::File { .. } => "regular file",
        Kind::Symlink(_) => "symlink",
        Kind::CharDev(_) => "character device",
        Kind::BlockDev(_) => "block device",
        Kind::Fifo => "fifo",
        Kind::Socket => "socket",
    }
}

fn show_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> String {
    let items: Vec<String> = xattrs
        .iter()
        .map(|(n, v)| {
            let v = if v.len() > 24 {
                format!("{}… ({} bytes)", show_bytes(&v[..24]), v.len())
            } else {
                show_bytes(v)
            };
            format!("{}={:?}", show_bytes(n), v)
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn show_links(links: &[Vec<u8>]) -> String {
    if links.is_empty() {
        return "none".into();
    }
    let items: Vec<String> = links.iter().map(|l| display_path(l)).collect();
    format!("[{}]", items.join(", "))
}

/// Joins differences into one message, at most `max` lines plus a count of the rest.
pub fn summarize(title: &str, diffs: &[String], max: usize) -> String {
    let mut s = format!("{title}: {} difference(s)", diffs.len());
    for d in diffs.iter().take(max) {
        s.push_str("\n  ");
        s.push_str(d);
    }
    if diffs.len() > max {
        s.push_str(&format!("\n  … and {} more", diffs.len() - max));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind) -> Entry {
        Entry {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 5,
            nlink: 1,
            xattrs: Vec::new(),
            links: Vec::new(),
        }
    }

    fn view(items: &[(&[u8], Entry)]) -> View {
        View {
            entries: items.iter().map(|(p, e)| (p.to_vec(), e.clone())).collect(),
        }
    }

    #[test]
    fn every_field_is_compared() {
        let hash = blake3::hash(b"x");
        let base = entry(Kind::File { size: 1, hash });
        let mutations: Vec<(Entry, &str)> = vec![
            (
                Entry {
                    mode: 0o755,
                    ..base.clone()
                },
                "mode",
            ),
            (
                Entry {
                    uid: 1,
                    ..base.clone()
                },
                "owner",
            ),
            (
                Entry {
                    gid: 1,
                    ..base.clone()
                },
                "owner",
            ),
            (
                Entry {
                    mtime: 6,
                    ..base.clone()
                },
                "mtime",
            ),
            (
                Entry {
                    nlink: 2,
                    ..base.clone()
                },
                "link count",
            ),
            (
                Entry {
                    xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())],
                    ..base.clone()
                },
                "xattrs",
            ),
            (
                Entry {
                    links: vec![b"a".to_vec(), b"b".to_vec()],
                    ..base.clone()
                },
                "hard links",
            ),
            (
                Entry {
                    kind: Kind::File {
                        size: 1,
                        hash: blake3::hash(b"y"),
                    },
                    ..base.clone()
                },
                "contents differ",
            ),
            (
                Entry {
                    kind: Kind::File { size: 2, hash },
                    ..base.clone()
                },
                "size",
            ),
            (entry(Kind::Symlink(b"t".to_vec())), "type"),
            (entry(Kind::Fifo), "type"),
        ];
        for (mutated, field) in mutations {
            let d = diff(&view(&[(b"a", base.clone())]), &view(&[(b"a", mutated)]));
            assert_eq!(d.len(), 1, "{d:?}");
            assert!(d[0].contains(field), "{d:?} should mention {field}");
        }
        let d = diff(
            &view(&[(b"a", entry(Kind::CharDev(1)))]),
            &view(&[(b"a", entry(Kind::CharDev(2)))]),
        );
        assert!(d[0].contains("device number"), "{d:?}");
        let d = diff(
            &view(&[(b"a", entry(Kind::Symlink(b"x".to_vec())))]),
            &view(&[(b"a", entry(Kind::Symlink(b"y".to_vec())))]),
        );
        assert!(d[0].contains("symlink target"), "{d:?}");
        let d = diff(
            &view(&[(b"a", base.clone())]),
            &view(&[(b"b", base.clone())]),
        );
        assert_eq!(
            d,
            vec!["/a: missing".to_string(), "/b: unexpected".to_string()]
        );
        assert!(diff(&view(&[(b"a", base.clone())]), &view(&[(b"a", base)])).is_empty());
    }

    #[test]
    fn paths_are_escaped() {
        assert_eq!(display_path(b""), "/");
        assert_eq!(display_path(b"a b/new\nline/\xff"), "/a b/new\\nline/\\xff");
    }
}
