//! The writer: [`write_image`] turns a [`Tree`] into a SquashFS 4.0 image,
//! atomically, and [`write_to`] does the same into any seekable sink.
//!
//! Order of work (§16 of the format notes): number the inodes (pre-order, root
//! last, as mksquashfs), gather ids and xattr sets, write the data area in tree
//! order, then the inode and directory tables (laid out in one post-order pass),
//! then the fragment, export, id and xattr tables, pad to 4 KiB, and finally the
//! superblock. The metadata blocks of every table are compressed on the pool too
//! (see `meta`), and written in order.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::compress::Compressor;
use crate::data::{DataArea, DataOptions, DataWriter};
use crate::inodes::{put16, put32, put64, write_tables, InodeInfo};
use crate::meta::{encode, lookup_table, CachedMeta, MetaCompress, MetaWriter};
use crate::tree::Xattrs;
use crate::{Error, InodeId, Kind, Options, Tree};

const INVALID: u64 = u64::MAX;
const SUPERBLOCK_SIZE: usize = 96;
/// Small files read ahead in parallel hold at most this many bytes at once…
const READ_AHEAD_BYTES: u64 = 1 << 20;
/// …and number at most this many.
const READ_AHEAD_FILES: usize = 256;

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inodes written.
    pub inodes: u64,
    /// Regular files (hard links count once).
    pub files: u64,
    /// Bytes of file contents packed (read, or known from the cache without reading).
    pub bytes_in: u64,
    /// Bytes of the image, padding included.
    pub bytes_written: u64,
    /// Bytes of file contents not stored again because an identical file was.
    pub dedup_saved: u64,
    /// What the cache did, when [`Options::cache`] was set.
    pub cache: Option<crate::CacheReport>,
    /// On-CPU time of the compressing and reading threads.
    pub cpu: crate::ThreadCpu,
}

/// Writes `tree` to the image file `out`.
///
/// The image is written to a temporary file beside `out` and renamed over it
/// only when complete, so a failed or interrupted write leaves nothing behind
/// and never touches an existing `out`.
///
/// # Errors
///
/// [`Error::OutputExists`] if `out` exists and [`Options::overwrite`] is off;
/// [`Error::Read`] or [`Error::FileChanged`] for a source file; [`Error::Write`]
/// for the output (missing directory, full disk); [`Error::InvalidOption`];
/// [`Error::Interrupted`] when [`Options::cancel`] was set.
pub fn write_image(tree: &Tree, options: &Options, out: &Path) -> Result<Report, Error> {
    let write_err = |source: io::Error| Error::Write {
        path: out.to_path_buf(),
        source,
    };
    if !options.overwrite && out.symlink_metadata().is_ok() {
        return Err(Error::OutputExists {
            path: out.to_path_buf(),
        });
    }
    // Check the settings before creating anything.
    options.validate()?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::metadata(&dir).map_err(write_err)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(&dir)
        // tempfile names its temporary file in errors; the user knows only `out`.
        .map_err(|e| write_err(io::Error::from(e.kind())))?;
    let (file, temp_path) = temp.into_parts();
    let mut sink = BufWriter::with_capacity(1 << 20, file);
    let report = write_inner(tree, options, &mut sink, out)?;
    let file = sink.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    if options.overwrite {
        temp_path.persist(out).map_err(|e| write_err(e.error))?;
    } else {
        temp_path.persist_noclobber(out).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                Error::OutputExists {
                    path: out.to_path_buf(),
                }
            } else {
                write_err(e.error)
            }
        })?;
    }
    Ok(report)
}

/// Writes `tree` as an image to `sink`, which must be positioned at its start.
///
/// # Errors
///
/// As [`write_image`], with [`Error::Write`] naming `<sink>`.
pub fn write_to<W: Write + Seek>(
    tree: &Tree,
    options: &Options,
    sink: &mut W,
) -> Result<Report, Error> {
    write_inner(tree, options, sink, Path::new("<sink>"))
}

impl Options {
    /// Checks the block size and the compressor settings against each other
    /// without writing anything, so a caller can fail before walking its sources.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] saying what is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        Compressor::new(&self.compression, check_block_size(self.block_size)?).map(drop)
    }
}

/// `block_size` if it is one SquashFS allows: a power of two from 4 KiB to 1 MiB.
pub(crate) fn check_block_size(block_size: u32) -> Result<u32, Error> {
    if !(4096..=1 << 20).contains(&block_size) || !block_size.is_power_of_two() {
        return Err(Error::InvalidOption {
            option: format!("block size {block_size}"),
            reason: "must be a power of two from 4K to 1M".to_string(),
        });
    }
    Ok(block_size)
}

/// Per-inode facts gathered before writing.
struct Prepared {
    info: Vec<InodeInfo>,
    /// Inodes in pre-order (the order file data is written in).
    preorder: Vec<InodeId>,
    ids: Vec<u32>,
    xattr_sets: Vec<Xattrs>,
}

fn prepare(tree: &Tree, options: &Options) -> Result<Prepared, Error> {
    let n = tree.len();
    let mut numbers = vec![0u32; n];
    let mut preorder = Vec::with_capacity(n);
    let mut nlink = vec![0u32; n];
    // Pre-order numbering, root last, iteratively to survive deep trees.
    let mut next = 1u32;
    let mut stack: Vec<std::collections::btree_map::Iter<'_, Vec<u8>, InodeId>> = vec![tree
        .entries(tree.root())
        .expect("the root is a directory")
        .iter()];
    while let Some(iter) = stack.last_mut() {
        let Some((_, &child)) = iter.next() else {
            stack.pop();
            continue;
        };
        nlink[child.index()] += 1;
        if numbers[child.index()] != 0 {
            continue;
        }
        numbers[child.index()] = next;
        next += 1;
        preorder.push(child);
        if let Some(entries) = tree.entries(child) {
            stack.push(entries.iter());
        }
    }
    numbers[0] = next;
    preorder.push(tree.root());
    debug_assert_eq!(next as usize, n);

    let mut id_index: HashMap<u32, u16> = HashMap::new();
    let mut ids = Vec::new();
    let mut intern = |id: u32| -> Result<u16, Error> {
        if let Some(&i) = id_index.get(&id) {
            return Ok(i);
        }
        let i = u16::try_from(ids.len())
            .map_err(|_| Error::Limit("more than 65536 distinct uids and gids".into()))?;
        id_index.insert(id, i);
        ids.push(id);
        Ok(i)
    };
    let mut set_index: HashMap<&Xattrs, u32> = HashMap::new();
    let mut xattr_sets = Vec::new();
    let mut by_number: Vec<InodeId> = (0..n as u32).map(InodeId).collect();
    by_number.sort_by_key(|id| numbers[id.index()]);
    let mut info: Vec<Option<InodeInfo>> = vec![None; n];
    for id in by_number {
        let meta = tree.metadata(id);
        let kind = tree.kind(id);
        let uid = options
            .force_uid
            .unwrap_or(if options.all_root { 0 } else { meta.uid });
        let gid = options
            .force_gid
            .unwrap_or(if options.all_root { 0 } else { meta.gid });
        let mode = match options.root_mode {
            Some(mode) if id == tree.root() => mode & 0o7777,
            _ => meta.mode & 0o7777,
        };
        let mtime = match (options.all_time, options.clamp_mtime) {
            (Some(t), _) => t,
            (None, Some(limit)) => meta.mtime.min(limit),
            (None, None) => meta.mtime,
        };
        if let Some((name, _)) = meta
            .xattrs
            .iter()
            .find(|(name, _)| split_xattr_name(name).is_none())
        {
            return Err(Error::Tree {
                path: String::from_utf8_lossy(name).into_owned(),
                reason: "only user., trusted. and security. xattrs can be stored".to_string(),
            });
        }
        let xattr = if options.xattrs && !meta.xattrs.is_empty() {
            let next = xattr_sets.len() as u32;
            let idx = *set_index.entry(&meta.xattrs).or_insert(next);
            if idx == next {
                xattr_sets.push(meta.xattrs.clone());
            }
            Some(idx)
        } else {
            None
        };
        let links = match kind {
            Kind::Dir(entries) => {
                2 + entries
                    .values()
                    .filter(|c| matches!(tree.kind(**c), Kind::Dir(_)))
                    .count() as u32
            }
            _ => nlink[id.index()],
        };
        let sparse_source = matches!(
            kind,
            Kind::File {
                source: crate::FileSource::Host { sparse: true, .. },
                ..
            }
        );
        info[id.index()] = Some(InodeInfo {
            number: numbers[id.index()],
            nlink: links,
            mode,
            uid_idx: intern(uid)?,
            gid_idx: intern(gid)?,
            mtime,
            xattr: InodeInfo::xattr_or_none(xattr),
            data: None,
            sparse_source,
        });
    }
    let info = info
        .into_iter()
        .map(|i| i.expect("every inode is reachable from the root"))
        .collect();
    Ok(Prepared {
        info,
        preorder,
        ids,
        xattr_sets,
    })
}

/// The sizes that more than one regular file of `tree` has (a file with
/// several links counted once): only files of these sizes can be duplicates.
fn shared_sizes(tree: &Tree, preorder: &[InodeId]) -> HashSet<u64> {
    let mut sizes: Vec<u64> = preorder
        .iter()
        .filter_map(|&id| match tree.kind(id) {
            Kind::File { size, .. } if *size > 0 => Some(*size),
            _ => None,
        })
        .collect();
    sizes.sort_unstable();
    sizes
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect()
}

fn write_inner<W: Write + Seek>(
    tree: &Tree,
    options: &Options,
    sink: &mut W,
    out: &Path,
) -> Result<Report, Error> {
    let write_err = |source: io::Error| Error::Write {
        path: out.to_path_buf(),
        source,
    };
    let block_size = check_block_size(options.block_size)?;
    let comp = Compressor::new(&options.compression, block_size)?;
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("mkp-compress-{i}"))
        .build()
        .map_err(|e| write_err(io::Error::other(e)))?;
    let mut prepared = prepare(tree, options)?;
    // What building the tree freed on other threads would otherwise stay
    // resident through the write (see `trim`).
    crate::trim::release_free_memory();

    // Superblock placeholder and compressor options.
    let mut head = vec![0u8; SUPERBLOCK_SIZE];
    let comp_options = comp.options_block();
    if let Some(payload) = &comp_options {
        head.extend_from_slice(&(payload.len() as u16 | 0x8000).to_le_bytes());
        head.extend_from_slice(payload);
    }
    sink.write_all(&head).map_err(write_err)?;

    // Data area, files in pre-order.
    let data_opts = DataOptions {
        block_size: block_size as usize,
        fragments: options.fragments,
        stable_fragments: options.stable_fragments,
        dedup: options.dedup,
        cancel: options.cancel.as_deref(),
    };
    let mut data = DataWriter::new(
        &mut *sink,
        head.len() as u64,
        &comp,
        data_opts,
        &pool,
        options.cache.clone(),
        out,
    )?;
    // With a cache every file is hashed for its keys, and without
    // deduplication only the cache or the fragment cuts hash: the sizes
    // matter to neither, so they are not gathered then.
    if options.cache.is_none() && options.dedup {
        data.hash_only_shared_sizes(shared_sizes(tree, &prepared.preorder));
    }
    // Files in pre-order, in batches whose small files are read and hashed
    // ahead in parallel (at most READ_AHEAD_BYTES of them held at once). The
    // list of files is never built whole: it would grow with the tree.
    // Reading the next batch while this thread adds the one before was
    // tried: on the doubled share/doc it idled the cores no less (the
    // readers then wait on storage, not on this thread) and raised the peak
    // by 8 MB (BENCHMARKS.md, session 27).
    let mut files = prepared
        .preorder
        .iter()
        .filter_map(|&id| match tree.kind(id) {
            Kind::File { source, size } => Some((id, source, *size)),
            _ => None,
        })
        .peekable();
    let mut n_files = 0u64;
    let mut batch: Vec<(InodeId, &crate::FileSource, u64)> = Vec::new();
    while files.peek().is_some() {
        // A batch is a run of small files, or one large file: a large file is
        // read before any file after it, as in tree order.
        batch.clear();
        let mut held = 0u64;
        while let Some(&(_, _, size)) = files.peek() {
            let small = size < u64::from(block_size);
            if !batch.is_empty()
                && (!small || held + size > READ_AHEAD_BYTES || batch.len() == READ_AHEAD_FILES)
            {
                break;
            }
            batch.extend(files.next());
            held += size;
            if !small {
                break;
            }
        }
        n_files += batch.len() as u64;
        let sources: Vec<(&crate::FileSource, u64)> = batch
            .iter()
            .map(|&(_, source, size)| (source, size))
            .collect();
        let ahead = data.read_ahead(&sources);
        for (&(id, source, size), ahead) in batch.iter().zip(ahead) {
            prepared.info[id.index()].data = Some(data.add_file(source, size, ahead)?);
        }
    }
    let DataArea {
        end: mut pos,
        files,
        fragments,
        bytes_in,
        dedup_saved,
        read_cpu,
    } = data.finish()?;
    if let Some(flag) = options.cancel.as_deref() {
        if flag.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
    }

    // Metadata blocks go through the cache too, when there is one.
    let cached_meta = options.cache.as_deref().map(|cache| CachedMeta {
        comp: &comp,
        cache,
        settings: Cache::settings(&comp.cache_tag(), block_size),
    });
    let meta_comp: &dyn MetaCompress = match &cached_meta {
        Some(cached) => cached,
        None => &comp,
    };

    // Inode and directory tables.
    let tables = write_tables(tree, &prepared.info, &files, block_size, meta_comp, &pool);
    let mut emit = |bytes: &[u8], pos: &mut u64| -> Result<(), Error> {
        sink.write_all(bytes).map_err(write_err)?;
        *pos += bytes.len() as u64;
        Ok(())
    };
    let inode_table_start = pos;
    emit(&tables.inode_table, &mut pos)?;
    let directory_table_start = pos;
    emit(&tables.dir_table, &mut pos)?;

    // Fragment table.
    let fragment_table_start = if fragments.is_empty() {
        pos
    } else {
        let mut records = Vec::with_capacity(fragments.len() * 16);
        for f in &fragments {
            put64(&mut records, f.start);
            put32(&mut records, f.size);
            put32(&mut records, 0);
        }
        let (bytes, index) = lookup_table(meta_comp, &pool, &records, pos);
        emit(&bytes, &mut pos)?;
        index
    };

    // Export table.
    let lookup_table_start = if options.exports {
        let mut records = Vec::with_capacity(tables.refs_by_number.len() * 8);
        for r in &tables.refs_by_number {
            put64(&mut records, *r);
        }
        let (bytes, index) = lookup_table(meta_comp, &pool, &records, pos);
        emit(&bytes, &mut pos)?;
        index
    } else {
        INVALID
    };

    // Id table.
    let mut records = Vec::with_capacity(prepared.ids.len() * 4);
    for id in &prepared.ids {
        put32(&mut records, *id);
    }
    let (bytes, id_table_start) = lookup_table(meta_comp, &pool, &records, pos);
    emit(&bytes, &mut pos)?;

    // Xattrs: key/value stream, id-table blocks, header, index.
    let xattr_id_table_start = if prepared.xattr_sets.is_empty() {
        INVALID
    } else {
        let kv_start = pos;
        let mut kv = MetaWriter::new();
        let mut sets = Vec::with_capacity(prepared.xattr_sets.len());
        for set in &prepared.xattr_sets {
            let at = kv.pos();
            let mut size = 0u32;
            for (name, value) in set {
                let (ty, suffix) = split_xattr_name(name).expect("checked in prepare");
                let mut buf = Vec::with_capacity(8 + name.len() + value.len());
                put16(&mut buf, ty);
                put16(&mut buf, suffix.len() as u16);
                buf.extend_from_slice(suffix);
                put32(&mut buf, value.len() as u32);
                buf.extend_from_slice(value);
                kv.write(&buf);
                size += (name.len() + 1 + value.len()) as u32;
            }
            sets.push((at, set.len() as u32, size));
        }
        let kv = kv.finish(meta_comp, &pool);
        emit(kv.bytes(), &mut pos)?;
        let mut records = Vec::with_capacity(sets.len() * 16);
        for (at, count, size) in sets {
            put64(&mut records, kv.to_ref(at));
            put32(&mut records, count);
            put32(&mut records, size);
        }
        let blocks_start = pos;
        let blocks = encode(meta_comp, &pool, &records);
        emit(blocks.bytes(), &mut pos)?;
        let header_pos = pos;
        let mut header = Vec::with_capacity(16 + blocks.block_starts().len() * 8);
        put64(&mut header, kv_start);
        put32(&mut header, prepared.xattr_sets.len() as u32);
        put32(&mut header, 0);
        for p in blocks.block_starts() {
            put64(&mut header, blocks_start + p);
        }
        emit(&header, &mut pos)?;
        header_pos
    };

    let bytes_used = pos;
    let padded = bytes_used.div_ceil(4096) * 4096;
    emit(&vec![0u8; (padded - bytes_used) as usize], &mut pos)?;

    let mut flags = 0u16;
    if !options.fragments {
        flags |= 0x0010;
    }
    if options.dedup {
        flags |= 0x0040;
    }
    if options.exports {
        flags |= 0x0080;
    }
    if !options.xattrs {
        flags |= 0x0200;
    }
    if comp_options.is_some() {
        flags |= 0x0400;
    }
    let mut sb = Vec::with_capacity(SUPERBLOCK_SIZE);
    put32(&mut sb, 0x7371_7368);
    put32(&mut sb, tree.len() as u32);
    put32(&mut sb, options.mkfs_time);
    put32(&mut sb, block_size);
    put32(&mut sb, fragments.len() as u32);
    put16(&mut sb, comp.id());
    put16(&mut sb, block_size.trailing_zeros() as u16);
    put16(&mut sb, flags);
    put16(&mut sb, prepared.ids.len() as u16);
    put16(&mut sb, 4);
    put16(&mut sb, 0);
    put64(&mut sb, tables.root_ref);
    put64(&mut sb, bytes_used);
    put64(&mut sb, id_table_start);
    put64(&mut sb, xattr_id_table_start);
    put64(&mut sb, inode_table_start);
    put64(&mut sb, directory_table_start);
    put64(&mut sb, fragment_table_start);
    put64(&mut sb, lookup_table_start);
    debug_assert_eq!(sb.len(), SUPERBLOCK_SIZE);
    sink.seek(SeekFrom::Start(0)).map_err(write_err)?;
    sink.write_all(&sb).map_err(write_err)?;
    sink.seek(SeekFrom::Start(padded)).map_err(write_err)?;
    sink.flush().map_err(write_err)?;

    Ok(Report {
        inodes: tree.len() as u64,
        files: n_files,
        bytes_in,
        bytes_written: padded,
        dedup_saved,
        cache: options.cache.as_deref().map(crate::Cache::finish),
        cpu: crate::ThreadCpu {
            compress: crate::cpu::pool_time(&pool),
            read: read_cpu,
        },
    })
}

/// Splits a full xattr name into its prefix id (0 user, 1 trusted, 2 security) and the rest.
fn split_xattr_name(name: &[u8]) -> Option<(u16, &[u8])> {
    [(0, &b"user."[..]), (1, b"trusted."), (2, b"security.")]
        .into_iter()
        .find_map(|(ty, prefix)| {
            name.strip_prefix(prefix)
                .filter(|rest| !rest.is_empty())
                .map(|rest| (ty, rest))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;
    use crate::{Compression, FileSource, Metadata};
    use std::io::{Cursor, Read};

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Decodes the gzip metadata blocks of a table from `start` to `end`.
    fn decode_meta(image: &[u8], start: usize, end: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let header = u16_at(image, at);
            let len = usize::from(header & 0x7fff);
            let payload = &image[at + 2..at + 2 + len];
            if header & 0x8000 != 0 {
                out.extend_from_slice(payload);
            } else {
                flate2::read::ZlibDecoder::new(payload)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            at += 2 + len;
        }
        out
    }

    fn hex(s: &str) -> Vec<u8> {
        let digits: String = s.split_whitespace().collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The worked example of §17 of the format notes (mksquashfs 4.5.1 output):
    /// the same superblock fields, the same uncompressed inode and directory tables.
    #[test]
    fn worked_example_matches_mksquashfs() {
        let mut tree = Tree::new(Metadata::with_mode(0o755));
        let root = tree.root();
        tree.insert(
            root,
            b"dir",
            Kind::Dir(Default::default()),
            Metadata::with_mode(0o755),
        )
        .unwrap();
        let hello = b"Hello, SquashFS!\n";
        let body = Kind::File {
            source: FileSource::Bytes(hello[..].into()),
            size: 17,
        };
        tree.insert(root, b"hello.txt", body, Metadata::with_mode(0o644))
            .unwrap();
        tree.insert(
            root,
            b"link",
            Kind::Symlink(b"hello.txt".to_vec()),
            Metadata::with_mode(0o777),
        )
        .unwrap();
        let options = Options {
            compression: Compression::Gzip { level: 9 },
            block_size: 4096,
            xattrs: false,
            exports: true,
            all_time: Some(0),
            ..Options::default()
        };
        for threads in [1, 2, 8] {
            let mut cursor = Cursor::new(Vec::new());
            let report = write_to(
                &tree,
                &Options {
                    threads,
                    ..options.clone()
                },
                &mut cursor,
            )
            .unwrap();
            let image = cursor.into_inner();
            assert_eq!(report.bytes_written, 4096);
            assert_eq!(image.len(), 4096);
            assert_eq!(&image[..4], b"hsqs");
            assert_eq!(u32_at(&image, 4), 4, "inode_count");
            assert_eq!(u32_at(&image, 12), 4096);
            assert_eq!(u32_at(&image, 16), 1, "fragment_count");
            assert_eq!(u16_at(&image, 20), 1, "gzip");
            assert_eq!(u16_at(&image, 22), 12);
            assert_eq!(u16_at(&image, 24), 0x02c0, "flags");
            assert_eq!(u16_at(&image, 26), 1, "id_count");
            assert_eq!(u64_at(&image, 32), 0x61, "root_inode");
            assert_eq!(u64_at(&image, 56), u64::MAX, "no xattrs");
            // The fragment block holds the 17 bytes raw at 0x60.
            assert_eq!(&image[0x60..0x71], hello);
            let inode_start = u64_at(&image, 64) as usize;
            let dir_start = u64_at(&image, 72) as usize;
            let frag_index = u64_at(&image, 80) as usize;
            assert_eq!(inode_start, 0x71);
            let inodes = decode_meta(&image, inode_start, dir_start);
            assert_eq!(
                inodes,
                hex("01 00 ed 01 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 03 00 00 00 04 00 00 00
                     02 00 a4 01 00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 11 00 00 00
                     03 00 ff 01 00 00 00 00 00 00 00 00 03 00 00 00 01 00 00 00 09 00 00 00 68 65 6c 6c 6f 2e 74 78
                     74 01 00 ed 01 00 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 03 00 00 00 37 00 00 00 05 00 00
                     00")
            );
            let frag_block = u64_at(&image, frag_index) as usize;
            let dirs = decode_meta(&image, dir_start, frag_block);
            assert_eq!(
                dirs,
                hex(
                    "02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01 00 02 00 64 69 72
                     20 00 01 00 02 00 08 00 68 65 6c 6c 6f 2e 74 78 74
                     40 00 02 00 03 00 03 00 6c 69 6e 6b"
                )
            );
            let frags = decode_meta(&image, frag_block, frag_index);
            assert_eq!(
                frags,
                hex("60 00 00 00 00 00 00 00 11 00 00 01 00 00 00 00")
            );
            let bytes_used = u64_at(&image, 40) as usize;
            let id_index = u64_at(&image, 48) as usize;
            assert_eq!(id_index + 8, bytes_used, "the id index ends the image");
            assert!(image[bytes_used..].iter().all(|b| *b == 0));
        }
    }

    /// Writes `tree` with gzip and 4 KiB blocks (all times 0) and returns the
    /// uncompressed inode and directory tables.
    fn tables(tree: &Tree, options: Options) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let options = Options {
            compression: Compression::Gzip { level: 9 },
            block_size: 4096,
            all_time: Some(0),
            ..options
        };
        let mut cursor = Cursor::new(Vec::new());
        write_to(tree, &options, &mut cursor).unwrap();
        let image = cursor.into_inner();
        let inode_start = u64_at(&image, 64) as usize;
        let dir_start = u64_at(&image, 72) as usize;
        let frag_index = u64_at(&image, 80) as usize;
        let fragments = u32_at(&image, 16) as usize;
        let dir_end = if fragments > 0 {
            u64_at(&image, frag_index) as usize
        } else {
            frag_index
        };
        let inodes = decode_meta(&image, inode_start, dir_start);
        let dirs = decode_meta(&image, dir_start, dir_end);
        (image, inodes, dirs)
    }

    /// One entry `x` in the root: its inode is the first of the table (inode 1).
    #[test]
    fn inode_layouts() {
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8) | ((minor & 0xffffff00) << 12) | (minor & 0xff)
        };
        let m = |mode: u16| Metadata::with_mode(mode);
        let xm = |mode: u16| Metadata {
            xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
            ..Metadata::with_mode(mode)
        };
        let file = |bytes: &[u8]| Kind::File {
            source: FileSource::Bytes(bytes.into()),
            size: bytes.len() as u64,
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Kind, Metadata, &str)> = vec![
            ("char 1:3", Kind::CharDev(makedev(1, 3)), m(0o620), "05 00 90 01 00 00 00 00 00000000 01000000 01000000 03010000"),
            ("block 300:70000", Kind::BlockDev(makedev(300, 70000)), m(0o660), "04 00 b0 01 00 00 00 00 00000000 01000000 01000000 702c1111"),
            ("fifo", Kind::Fifo, m(0o644), "06 00 a4 01 00 00 00 00 00000000 01000000 01000000"),
            ("socket", Kind::Socket, m(0o755), "07 00 ed 01 00 00 00 00 00000000 01000000 01000000"),
            ("setuid file", file(b""), m(0o4755), "02 00 ed 09 00 00 00 00 00000000 01000000 00000000 ffffffff 00000000 00000000"),
            ("sticky dir", Kind::Dir(Default::default()), m(0o1777), "01 00 ff 03 00 00 00 00 00000000 01000000 00000000 02000000 0300 0000 02000000"),
            ("symlink", Kind::Symlink(b"t".to_vec()), m(0o777), "03 00 ff 01 00 00 00 00 00000000 01000000 01000000 01000000 74"),
            ("symlink+xattr", Kind::Symlink(b"t".to_vec()), xm(0o777), "0a 00 ff 01 00 00 00 00 00000000 01000000 01000000 01000000 74 00000000"),
            ("char+xattr", Kind::CharDev(makedev(1, 3)), xm(0o600), "0c 00 80 01 00 00 00 00 00000000 01000000 01000000 03010000 00000000"),
            ("block+xattr", Kind::BlockDev(makedev(1, 3)), xm(0o600), "0b 00 80 01 00 00 00 00 00000000 01000000 01000000 03010000 00000000"),
            ("fifo+xattr", Kind::Fifo, xm(0o600), "0d 00 80 01 00 00 00 00 00000000 01000000 01000000 00000000"),
            ("socket+xattr", Kind::Socket, xm(0o600), "0e 00 80 01 00 00 00 00 00000000 01000000 01000000 00000000"),
            ("file+xattr", file(b"x"), xm(0o644), "09 00 a4 01 00 00 00 00 00000000 01000000 0000000000000000 0100000000000000 0000000000000000 01000000 00000000 00000000 00000000"),
            ("dir+xattr", Kind::Dir(Default::default()), xm(0o755), "08 00 ed 01 00 00 00 00 00000000 01000000 02000000 03000000 00000000 02000000 0000 0000 00000000"),
        ];
        for (what, kind, meta, want) in cases {
            let mut tree = Tree::default();
            tree.insert(tree.root(), b"x", kind, meta).unwrap();
            let (_, inodes, _) = tables(&tree, Options::default());
            let want = hex(want);
            assert_eq!(&inodes[..want.len()], &want[..], "{what}");
        }
    }

    #[test]
    fn owners_and_hard_links() {
        let mut tree = Tree::default();
        let meta = Metadata {
            uid: 1000,
            gid: 100,
            ..Metadata::with_mode(0o644)
        };
        let body = Kind::File {
            source: FileSource::Bytes(b"x"[..].into()),
            size: 1,
        };
        let a = tree.insert(tree.root(), b"a", body, meta).unwrap();
        tree.hard_link(tree.root(), b"b", a).unwrap();
        let (image, inodes, dirs) = tables(&tree, Options::default());
        // Extended file: uid index 0 (1000), gid index 1 (100), nlink 2, fragment 0 at offset 0.
        let want = hex("09 00 a4 01 00 00 01 00 00000000 01000000 0000000000000000 0100000000000000 0000000000000000
                        02000000 00000000 00000000 ffffffff");
        assert_eq!(&inodes[..want.len()], &want[..]);
        // Both names carry the same inode reference and number.
        let want_dirs =
            hex("01000000 00000000 01000000  0000 0000 0200 0000 61  0000 0000 0200 0000 62");
        assert_eq!(dirs, want_dirs);
        assert_eq!(u32_at(&image, 4), 2, "a hard-linked inode counts once");
        assert_eq!(u16_at(&image, 26), 3, "ids 1000, 100, 0");
        // all-root folds every owner into id 0.
        let (image, inodes, _) = tables(
            &tree,
            Options {
                all_root: true,
                ..Options::default()
            },
        );
        assert_eq!(&inodes[4..8], &[0, 0, 0, 0]);
        assert_eq!(u16_at(&image, 26), 1);
    }

    /// A directory whose listing passes 8 KiB gets an extended inode with index
    /// entries, each pointing at a header whose first name it repeats.
    #[test]
    fn large_directories_get_an_index() {
        let mut tree = Tree::default();
        for i in 0..700u32 {
            let name = format!("{i:04}-{}", "n".repeat(60));
            let body = Kind::File {
                source: FileSource::Bytes(Vec::new().into()),
                size: 0,
            };
            tree.insert(
                tree.root(),
                name.as_bytes(),
                body,
                Metadata::with_mode(0o644),
            )
            .unwrap();
        }
        let (image, inodes, dirs) = tables(&tree, Options::default());
        // Positions of the directory table's blocks, relative to its start.
        let dir_start = u64_at(&image, 72) as usize;
        let mut block_pos = vec![0usize];
        let mut at = dir_start;
        while block_pos.len() * 8192 < dirs.len() {
            at += 2 + usize::from(u16_at(&image, at) & 0x7fff);
            block_pos.push(at - dir_start);
        }
        // The root inode is the last one: find it after the 700 file inodes of 32 bytes.
        let root = &inodes[700 * 32..];
        assert_eq!(u16_at(root, 0), 8, "extended directory");
        let file_size = u32_at(root, 20) as usize;
        assert_eq!(file_size, dirs.len() + 3);
        let start_offset = usize::from(u16_at(root, 34));
        let index_count = usize::from(u16_at(root, 32));
        assert!(index_count >= 4, "{index_count} index entries");
        let mut at = 40;
        let mut last = 0;
        for _ in 0..index_count {
            let index = u32_at(root, at) as usize;
            let start_block = u32_at(root, at + 4);
            let name_len = u32_at(root, at + 8) as usize + 1;
            let name = &root[at + 12..at + 12 + name_len];
            at += 12 + name_len;
            assert!(
                index > last && index - last <= 8192,
                "index entries at most 8 KiB apart"
            );
            last = index;
            // The header at `index` of the listing: its first entry's name.
            assert_eq!(
                start_block as usize,
                block_pos[(start_offset + index) / 8192],
                "block holding the header"
            );
            let first_len = usize::from(u16_at(&dirs, index + 12 + 6)) + 1;
            assert_eq!(
                &dirs[index + 20..index + 20 + first_len],
                name,
                "first name after the header"
            );
        }
        assert_eq!(at, root.len());
    }

    /// (blocks_start, fragment, offset, size words) of the basic file inode at `at`.
    fn file_inode(inodes: &[u8], at: usize, block_size: u64) -> (u32, u32, u32, Vec<u32>) {
        assert_eq!(u16_at(inodes, at), 2, "basic file");
        let fragment = u32_at(inodes, at + 20);
        let size = u64::from(u32_at(inodes, at + 28));
        let n = if fragment == u32::MAX {
            size.div_ceil(block_size)
        } else {
            size / block_size
        } as usize;
        let words = (0..n).map(|i| u32_at(inodes, at + 32 + 4 * i)).collect();
        (
            u32_at(inodes, at + 16),
            fragment,
            u32_at(inodes, at + 24),
            words,
        )
    }

    #[test]
    fn size_words_holes_and_fragments() {
        let cat = |parts: &[Vec<u8>]| parts.concat();
        let text = b"portable service images, reproducibly. ".repeat(300);
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>, bool, Option<u32>, Vec<u32>)> = vec![
            // (what, contents, fragments on, fragment, size words)
            ("incompressible blocks and a short tail", noise(8292, 1), true, None, vec![0x0100_1000, 0x0100_1000, 0x0100_0064]),
            ("a zero block is a hole", cat(&[vec![0; 4096], noise(4096, 2)]), true, None, vec![0, 0x0100_1000]),
            ("a zero tail is a hole too", cat(&[noise(4096, 3), vec![0; 10]]), true, None, vec![0x0100_1000, 0]),
            ("small and all zero: one hole, no fragment", vec![0; 100], true, None, vec![0]),
            ("small: a fragment", noise(100, 4), true, Some(0), vec![]),
            ("small without fragments: one raw block", noise(100, 4), false, None, vec![0x0100_0064]),
            ("exactly one block: no fragment", noise(4096, 5), true, None, vec![0x0100_1000]),
        ];
        for (what, bytes, fragments, want_fragment, want_words) in cases {
            let mut tree = Tree::default();
            let size = bytes.len() as u64;
            tree.insert(
                tree.root(),
                b"x",
                Kind::File {
                    source: FileSource::Bytes(bytes.into()),
                    size,
                },
                Metadata::with_mode(0o644),
            )
            .unwrap();
            let (_, inodes, _) = tables(
                &tree,
                Options {
                    fragments,
                    ..Options::default()
                },
            );
            let (_, fragment, offset, words) = file_inode(&inodes, 0, 4096);
            assert_eq!(words, want_words, "{what}");
            assert_eq!(fragment, want_fragment.unwrap_or(u32::MAX), "{what}");
            assert_eq!(offset, 0, "{what}");
        }
        // Compressible blocks are stored compressed: bit 24 clear, shorter than the block.
        let mut tree = Tree::default();
        let size = text.len() as u64;
        tree.insert(
            tree.root(),
            b"x",
            Kind::File {
                source: FileSource::Bytes(text.into()),
                size,
            },
            Metadata::with_mode(0o644),
        )
        .unwrap();
        let (_, inodes, _) = tables(&tree, Options::default());
        let (_, _, _, words) = file_inode(&inodes, 0, 4096);
        assert!(
            words.iter().all(|w| *w & 0x0100_0000 == 0 && *w < 4096),
            "{words:x?}"
        );
    }

    /// Identical files share their blocks; a file sharing only a prefix, or
    /// differing in its last byte, keeps its own.
    #[test]
    fn dedup_is_whole_file() {
        let a = noise(3 * 4096, 9);
        let mut prefix = a[..8192].to_vec();
        prefix.extend(noise(4096, 10));
        let mut last = a.clone();
        *last.last_mut().unwrap() ^= 1;
        let small = noise(300, 11);
        // Files of sizes no other file has, which go unhashed with plain
        // tail packing: one of blocks and a tail, one small.
        let odd_large = noise(2 * 4096 + 5, 12);
        let odd_small = noise(301, 13);
        let mut tree = Tree::default();
        for (name, bytes) in [
            ("a", &a),
            ("b-same", &a),
            ("c-prefix", &prefix),
            ("d-last", &last),
            ("e", &small),
            ("f", &small),
            ("g-odd", &odd_large),
            ("h-odd", &odd_small),
        ] {
            let size = bytes.len() as u64;
            let kind = Kind::File {
                source: FileSource::Bytes(bytes.clone().into()),
                size,
            };
            tree.insert(
                tree.root(),
                name.as_bytes(),
                kind,
                Metadata::with_mode(0o644),
            )
            .unwrap();
        }
        for (dedup, stable_fragments) in
            [(true, true), (false, true), (true, false), (false, false)]
        {
            let (_, inodes, _) = tables(
                &tree,
                Options {
                    dedup,
                    stable_fragments,
                    ..Options::default()
                },
            );
            let big = 32 + 3 * 4;
            let files: Vec<_> = (0..4).map(|i| file_inode(&inodes, i * big, 4096)).collect();
            let e = file_inode(&inodes, 4 * big, 4096);
            let f = file_inode(&inodes, 4 * big + 32, 4096);
            assert_eq!(files[0] == files[1], dedup, "identical files");
            assert_ne!(files[0].0, files[2].0, "shared prefix only");
            assert_ne!(files[0].0, files[3].0, "last byte differs");
            assert_eq!(
                (e.1, e.2) == (f.1, f.2),
                dedup,
                "identical small files share the fragment"
            );
        }
    }

    #[test]
    fn shared_sizes_are_those_of_several_files() {
        let mut tree = Tree::default();
        let root = tree.root();
        for (name, size) in [
            ("a", 10),
            ("b", 10),
            ("c", 11),
            ("d", 0),
            ("e", 0),
            ("f", 4096),
        ] {
            let bytes = vec![1u8; size];
            let kind = Kind::File {
                source: FileSource::Bytes(bytes.into()),
                size: size as u64,
            };
            tree.insert(root, name.as_bytes(), kind, Metadata::with_mode(0o644))
                .unwrap();
        }
        let sub = tree
            .insert(
                root,
                b"sub",
                Kind::Dir(Default::default()),
                Metadata::with_mode(0o755),
            )
            .unwrap();
        let kind = Kind::File {
            source: FileSource::Bytes(vec![2u8; 4096].into()),
            size: 4096,
        };
        tree.insert(sub, b"g", kind, Metadata::with_mode(0o644))
            .unwrap();
        // A second link to `c` is the same file, not a second one of 11 bytes.
        let c = tree.lookup("c").unwrap();
        tree.hard_link(sub, b"c-link", c).unwrap();
        let prepared = prepare(&tree, &Options::default()).unwrap();
        let mut shared: Vec<u64> = shared_sizes(&tree, &prepared.preorder)
            .into_iter()
            .collect();
        shared.sort_unstable();
        // Empty files are never hashed; 11 bytes is one file's size only,
        // however many links it has.
        assert_eq!(shared, [10, 4096]);
    }
}
