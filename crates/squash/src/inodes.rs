//! The inode and directory tables (§7–§9 of the format notes), laid out in one
//! post-order pass: a directory's children first, then its listing, then its
//! inode. So every reference points back, into a block laid out before (or
//! being laid out), and [`meta::encode_linked`] can compress both tables in
//! parallel and fill in the block starts the references need afterwards.

use std::collections::BTreeMap;

use crate::data::{FileData, NO_FRAGMENT};
use crate::meta::{self, put_link, Link, MetaCompress, MetaPos, MetaWriter, METADATA_SIZE};
use crate::{InodeId, Kind, Tree};

/// `xattr_idx` of an inode without xattrs.
const NO_XATTR: u32 = u32::MAX;

/// Everything the pass needs to know about an inode besides the tree.
#[derive(Debug, Clone)]
pub(crate) struct InodeInfo {
    /// Inode number, 1-based.
    pub(crate) number: u32,
    pub(crate) nlink: u32,
    pub(crate) mode: u16,
    pub(crate) uid_idx: u16,
    pub(crate) gid_idx: u16,
    pub(crate) mtime: u32,
    pub(crate) xattr: u32,
    /// Index into the data area's files, for regular files.
    pub(crate) data: Option<usize>,
    /// Whether the source file has holes on disk (mksquashfs's rule for extended inodes).
    pub(crate) sparse_source: bool,
}

impl InodeInfo {
    pub(crate) fn xattr_or_none(idx: Option<u32>) -> u32 {
        idx.unwrap_or(NO_XATTR)
    }
}

/// Output of the pass.
#[derive(Debug)]
pub(crate) struct Tables {
    pub(crate) inode_table: Vec<u8>,
    pub(crate) dir_table: Vec<u8>,
    pub(crate) root_ref: u64,
    /// Inode reference of each inode number (index = number − 1).
    pub(crate) refs_by_number: Vec<u64>,
}

struct Pass<'a> {
    tree: &'a Tree,
    info: &'a [InodeInfo],
    files: &'a [FileData],
    block_size: u64,
    /// Links point into `dirs`.
    inodes: MetaWriter,
    /// Links point into `inodes`.
    dirs: MetaWriter,
    written: Vec<Option<MetaPos>>,
    pos_by_number: Vec<MetaPos>,
}

/// Writes the inode and directory tables of `tree`, compressing their blocks
/// on `pool`.
pub(crate) fn write_tables(
    tree: &Tree,
    info: &[InodeInfo],
    files: &[FileData],
    block_size: u32,
    comp: &dyn MetaCompress,
    pool: &rayon::ThreadPool,
) -> Tables {
    let start = MetaPos {
        block: 0,
        offset: 0,
    };
    let mut pass = Pass {
        tree,
        info,
        files,
        block_size: u64::from(block_size),
        inodes: MetaWriter::new(),
        dirs: MetaWriter::new(),
        written: vec![None; tree.len()],
        pos_by_number: vec![start; tree.len()],
    };
    let root = tree.root();
    let root_parent = tree.len() as u32 + 1;
    let root_pos = pass.write_dir(root, root_parent);
    let [inode_table, dir_table] = meta::encode_linked(comp, pool, [pass.inodes, pass.dirs]);
    Tables {
        root_ref: inode_table.to_ref(root_pos),
        refs_by_number: pass
            .pos_by_number
            .iter()
            .map(|pos| inode_table.to_ref(*pos))
            .collect(),
        inode_table: inode_table.into_bytes(),
        dir_table: dir_table.into_bytes(),
    }
}

/// One directory entry as the listing needs it.
struct Entry<'t> {
    name: &'t [u8],
    inode: MetaPos,
    number: u32,
    basic_type: u16,
}

/// A directory index entry (§8.5).
struct IndexEntry {
    index: u32,
    /// The directory block holding the header.
    block: u32,
    name: Vec<u8>,
}

impl<'a> Pass<'a> {
    /// Writes the subtree of `dir` and returns where its inode is.
    fn write_dir(&mut self, dir: InodeId, parent_number: u32) -> MetaPos {
        let tree = self.tree;
        let entries: &BTreeMap<Vec<u8>, InodeId> = tree
            .entries(dir)
            .expect("write_dir is only called on directories");
        let own_number = self.info[dir.index()].number;
        let mut listing = Vec::with_capacity(entries.len());
        for (name, &child) in entries {
            let inode = match tree.kind(child) {
                Kind::Dir(_) => self.write_dir(child, own_number),
                _ => match self.written[child.index()] {
                    Some(r) => r,
                    None => self.write_leaf(child),
                },
            };
            listing.push(Entry {
                name,
                inode,
                number: self.info[child.index()].number,
                basic_type: basic_type(tree.kind(child)),
            });
        }

        let start = self.dirs.pos();
        let (listing_len, index) = self.write_listing(&listing, start);
        let file_size = listing_len + 3;
        let info = &self.info[dir.index()];
        let r = self.inodes.pos();
        let mut buf = Vec::with_capacity(64);
        let mut links = Vec::with_capacity(1 + index.len());
        let extended =
            info.xattr != NO_XATTR || file_size > u32::from(u16::MAX) || !index.is_empty();
        if extended {
            header(&mut buf, 8, info);
            put32(&mut buf, info.nlink);
            put32(&mut buf, file_size);
            put_link(&mut buf, &mut links, start.block);
            put32(&mut buf, parent_number);
            put16(&mut buf, index.len() as u16);
            put16(&mut buf, start.offset);
            put32(&mut buf, info.xattr);
            for entry in &index {
                put32(&mut buf, entry.index);
                put_link(&mut buf, &mut links, entry.block);
                put32(&mut buf, entry.name.len() as u32 - 1);
                buf.extend_from_slice(&entry.name);
            }
        } else {
            header(&mut buf, 1, info);
            put_link(&mut buf, &mut links, start.block);
            put32(&mut buf, info.nlink);
            put16(&mut buf, file_size as u16);
            put16(&mut buf, start.offset);
            put32(&mut buf, parent_number);
        }
        self.emit_inode(dir, r, &buf, &links)
    }

    /// Appends a directory listing to the directory stream, cutting it into runs
    /// (§8.2) and recording an index entry whenever the listing bytes since the
    /// last indexed header would pass 8 KiB (mksquashfs's rule).
    fn write_listing(&mut self, entries: &[Entry<'_>], start: MetaPos) -> (u32, Vec<IndexEntry>) {
        const LIMIT: u32 = METADATA_SIZE as u32;
        let mut index = Vec::new();
        let mut len: u32 = 0;
        let mut indexed_at: u32 = 0;
        let mut index_next = false;
        let mut i = 0;
        while i < entries.len() {
            let first = &entries[i];
            if index_next {
                let pos = self.dirs.pos();
                debug_assert_eq!(
                    (usize::from(start.offset) + len as usize) % METADATA_SIZE,
                    usize::from(pos.offset)
                );
                index.push(IndexEntry {
                    index: len,
                    block: pos.block,
                    name: first.name.to_vec(),
                });
                indexed_at = len;
                index_next = false;
            }
            let block = first.inode.block;
            let base = first.number;
            let mut n = 0;
            let mut run_len = 12u32;
            while i + n < entries.len() && n < 256 {
                let e = &entries[i + n];
                let delta = i64::from(e.number) - i64::from(base);
                if e.inode.block != block || !(-32768..=32767).contains(&delta) {
                    break;
                }
                let entry_len = 8 + e.name.len() as u32;
                if n > 0 && len + run_len + entry_len - indexed_at > LIMIT {
                    index_next = true;
                    break;
                }
                run_len += entry_len;
                n += 1;
            }
            let mut buf = Vec::with_capacity(run_len as usize);
            let mut links = Vec::with_capacity(1);
            put32(&mut buf, n as u32 - 1);
            put_link(&mut buf, &mut links, block);
            put32(&mut buf, base);
            for e in &entries[i..i + n] {
                put16(&mut buf, e.inode.offset);
                put16(
                    &mut buf,
                    (i64::from(e.number) - i64::from(base)) as i16 as u16,
                );
                put16(&mut buf, e.basic_type);
                put16(&mut buf, e.name.len() as u16 - 1);
                buf.extend_from_slice(e.name);
            }
            self.dirs.write_linked(&buf, &links);
            len += buf.len() as u32;
            i += n;
        }
        (len, index)
    }

    fn write_leaf(&mut self, id: InodeId) -> MetaPos {
        let info = &self.info[id.index()];
        let r = self.inodes.pos();
        let mut buf = Vec::with_capacity(64);
        let has_xattr = info.xattr != NO_XATTR;
        match self.tree.kind(id) {
            Kind::Dir(_) => unreachable!("directories are written by write_dir"),
            Kind::File { size, .. } => {
                let data = &self.files[info.data.expect("every file has data")];
                let size = *size;
                let (fragment, offset) = data.fragment;
                let has_fragment = fragment != NO_FRAGMENT;
                debug_assert!(!has_fragment || size % self.block_size != 0);
                let start = data.start;
                let extended = info.nlink > 1
                    || size > u64::from(u32::MAX)
                    || start > u64::from(u32::MAX)
                    || has_xattr
                    || (info.sparse_source && data.sparse_bytes > 0);
                if extended {
                    header(&mut buf, 9, info);
                    put64(&mut buf, start);
                    put64(&mut buf, size);
                    put64(&mut buf, data.sparse_bytes.min(size.saturating_sub(1)));
                    put32(&mut buf, info.nlink);
                    put32(&mut buf, fragment);
                    put32(&mut buf, if has_fragment { offset } else { 0 });
                    put32(&mut buf, info.xattr);
                } else {
                    header(&mut buf, 2, info);
                    put32(&mut buf, start as u32);
                    put32(&mut buf, fragment);
                    put32(&mut buf, if has_fragment { offset } else { 0 });
                    put32(&mut buf, size as u32);
                }
                for word in &data.sizes {
                    put32(&mut buf, *word);
                }
            }
            Kind::Symlink(target) => {
                header(&mut buf, if has_xattr { 10 } else { 3 }, info);
                put32(&mut buf, info.nlink);
                put32(&mut buf, target.len() as u32);
                buf.extend_from_slice(target);
                if has_xattr {
                    put32(&mut buf, info.xattr);
                }
            }
            Kind::BlockDev(rdev) | Kind::CharDev(rdev) => {
                let block = matches!(self.tree.kind(id), Kind::BlockDev(_));
                let ty = match (block, has_xattr) {
                    (true, false) => 4,
                    (false, false) => 5,
                    (true, true) => 11,
                    (false, true) => 12,
                };
                header(&mut buf, ty, info);
                put32(&mut buf, info.nlink);
                put32(&mut buf, encode_rdev(*rdev));
                if has_xattr {
                    put32(&mut buf, info.xattr);
                }
            }
            Kind::Fifo | Kind::Socket => {
                let fifo = matches!(self.tree.kind(id), Kind::Fifo);
                let ty = match (fifo, has_xattr) {
                    (true, false) => 6,
                    (false, false) => 7,
                    (true, true) => 13,
                    (false, true) => 14,
                };
                header(&mut buf, ty, info);
                put32(&mut buf, info.nlink);
                if has_xattr {
                    put32(&mut buf, info.xattr);
                }
            }
        }
        self.emit_inode(id, r, &buf, &[])
    }

    fn emit_inode(&mut self, id: InodeId, at: MetaPos, bytes: &[u8], links: &[Link]) -> MetaPos {
        self.inodes.write_linked(bytes, links);
        self.written[id.index()] = Some(at);
        self.pos_by_number[self.info[id.index()].number as usize - 1] = at;
        at
    }
}

fn basic_type(kind: &Kind) -> u16 {
    match kind {
        Kind::Dir(_) => 1,
        Kind::File { .. } => 2,
        Kind::Symlink(_) => 3,
        Kind::BlockDev(_) => 4,
        Kind::CharDev(_) => 5,
        Kind::Fifo => 6,
        Kind::Socket => 7,
    }
}

fn header(buf: &mut Vec<u8>, ty: u16, info: &InodeInfo) {
    put16(buf, ty);
    put16(buf, info.mode);
    put16(buf, info.uid_idx);
    put16(buf, info.gid_idx);
    put32(buf, info.mtime);
    put32(buf, info.number);
}

/// `st_rdev` (glibc's encoding) to the kernel's `new_encode_dev` form.
pub(crate) fn encode_rdev(rdev: u64) -> u32 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u32
}

pub(crate) fn put16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdev_encoding() {
        // glibc makedev(major, minor)
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfffff000) << 32)
                | ((major & 0xfff) << 8)
                | ((minor & 0xffffff00) << 12)
                | (minor & 0xff)
        };
        for (major, minor, want) in [
            (1, 3, 0x103),
            (300, 70000, 0x1111_2C70),
            (0, 0, 0),
            (8, 1, 0x801),
        ] {
            assert_eq!(encode_rdev(makedev(major, minor)), want, "{major}:{minor}");
        }
    }
}
