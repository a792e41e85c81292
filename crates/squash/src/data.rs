//! The data area: file contents cut into blocks, all-zero blocks turned into
//! holes, small files packed into fragment blocks, identical files stored once,
//! compression on a thread pool and writing strictly in tree order.
//!
//! Every block is hashed (blake3) as it is read, unless no other file of
//! the tree has its file's size and neither the cache nor content-defined
//! fragment cuts need the hash; a file's identity is its
//! length and the hash of its content (a small file) or of its block hashes (a
//! large one); an all-zero block or small file is never hashed and counts as
//! the hash `ZERO`. A file that may be a duplicate (one of the same size was stored
//! before) is hashed before any of it is compressed, so a duplicate is never
//! compressed; every other file is read once. Blocks go through a bounded
//! window: at most `window` blocks are held in memory, compressed in parallel,
//! then written in submission order, so the bytes do not depend on the thread
//! count. Compression overlaps with reading: a block goes to the pool as soon
//! as it is read, and the writer waits only for the oldest block once the
//! window is full. A block is read straight into a recycled block-sized
//! buffer (at most as many as can be in flight), which returns once the block
//! is compressed or written. Small files are read ahead in parallel batches on
//! a second pool, and copied into one block buffer when their fragment block
//! is closed.
//!
//! With a [`Cache`], a pool job first looks its block up by content and
//! settings, and stores what it compressed. When the cache trusts stat
//! fingerprints and knows a file's block hashes, the file is not read here at
//! all: its blocks go to the pool as *deferred* pieces, read (and checked
//! against their hashes) only if the cache misses. Small files are packed into
//! fragment blocks at content-defined cuts, whose boundaries move little when one file
//! changes, so a rebuild misses on few fragment blocks (see [`fragments`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::cache::stat::{self, BlockHashes, Known};
use crate::cache::{BlockKind, Cache, Ident, Key};
use crate::compress::Compressor;
use crate::fragments;
use crate::{Error, FileSource, Fingerprint};

/// Size word bit: the block is stored uncompressed.
pub(crate) const RAW_BIT: u32 = 1 << 24;
/// The hash that stands for an all-zero block (or small file) of any length,
/// which is never hashed: such blocks are holes.
const ZERO: [u8; 32] = [0; 32];
/// `fragment` value of a file without a tail in a fragment block.
pub(crate) const NO_FRAGMENT: u32 = u32::MAX;

/// Where one stored file's contents are in the image.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileData {
    /// Absolute position of the first data block.
    pub(crate) start: u64,
    /// One size word per data block (0 = hole).
    pub(crate) sizes: Vec<u32>,
    /// (fragment index, offset in it), or `NO_FRAGMENT`.
    pub(crate) fragment: (u32, u32),
    /// Bytes stored as holes.
    pub(crate) sparse_bytes: u64,
}

/// The data area once written.
#[derive(Debug)]
pub(crate) struct DataArea {
    /// Absolute position just past the data area.
    pub(crate) end: u64,
    /// Where each stored file's contents are.
    pub(crate) files: Vec<FileData>,
    /// The fragment table.
    pub(crate) fragments: Vec<Fragment>,
    /// Bytes of file contents packed (read, or known from the cache).
    pub(crate) bytes_in: u64,
    /// Bytes of file contents stored once for several files.
    pub(crate) dedup_saved: u64,
    /// On-CPU time of the reading pool.
    pub(crate) read_cpu: Option<std::time::Duration>,
}

/// A fragment-table entry.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fragment {
    pub(crate) start: u64,
    pub(crate) size: u32,
}

#[derive(Debug, Clone, Copy)]
enum Dest {
    Block { data: usize, block: usize },
    Fragment(usize),
}

/// Part of a block's uncompressed content.
#[derive(Debug)]
enum Piece {
    /// Read already.
    Bytes(Vec<u8>),
    /// Not read: `len` bytes at `offset` of a host file, checked by `check` once read.
    Deferred {
        path: PathBuf,
        offset: u64,
        len: usize,
        check: Check,
    },
}

/// What a deferred piece's content must hash to.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// This blake3 hash.
    Hash([u8; 32]),
    /// A hash with this [`fragments::tag`] (all a record keeps of most small files).
    Tag(u64),
}

/// A small file waiting in the open fragment block.
#[derive(Debug)]
struct Member {
    piece: Piece,
    size: u64,
    /// Its [`fragments::tag`].
    tag: u64,
    /// Its content hash, unless it was not read.
    hash: Option<[u8; 32]>,
    /// How a fragment recipe names it, when the user trusts stat.
    ident: Option<Ident>,
    /// Its [`FileData`], whose fragment position is set when the block closes.
    data: usize,
}

/// A small file stored (not a duplicate), for finding its duplicates.
#[derive(Debug)]
struct Seen {
    /// Its [`FileData`] (a `u32`: one of these is kept per distinct small file).
    data: u32,
    /// Its content hash; `None` until needed when it was not read.
    hash: Option<[u8; 32]>,
    /// Where to read it when its hash is needed.
    path: Option<Box<Path>>,
    /// Whether another file of the same size and tag came after it.
    shared: bool,
}

/// A small file to record once the build knows which ones need their whole hash.
#[derive(Debug)]
struct SmallRecord {
    fp: Fingerprint,
    size: u64,
    tag: u64,
    hash: Option<[u8; 32]>,
    data: usize,
    /// Whether it was known from a record, and whether that kept its hash.
    recorded: Option<bool>,
}

/// How a pool job finds its block's cache key.
#[derive(Debug)]
enum KeyPlan {
    /// Known before the block is read.
    Known(Key),
    /// A fragment block of files not all read: hash its members (these
    /// sizes, in order) once it is read, and record the key under `recipe`.
    Derive {
        settings: [u8; 32],
        sizes: Vec<u64>,
        recipe: Option<stat::RecipeKey>,
    },
}

/// A block on its way to the image: its bytes in the image and whether they
/// are stored uncompressed, ready or still on the pool.
#[derive(Debug)]
enum Pending {
    Ready(Vec<u8>, bool),
    Running(mpsc::Receiver<Result<(Vec<u8>, bool), Error>>),
}

/// Settings of the data area.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataOptions<'a> {
    pub(crate) block_size: usize,
    pub(crate) fragments: bool,
    pub(crate) stable_fragments: bool,
    pub(crate) dedup: bool,
    pub(crate) cancel: Option<&'a AtomicBool>,
}

/// Writes the data area to `sink`, starting at absolute position `pos`.
#[derive(Debug)]
pub(crate) struct DataWriter<'a, W: Write> {
    sink: W,
    pos: u64,
    comp: Arc<Compressor>,
    opts: DataOptions<'a>,
    pool: &'a rayon::ThreadPool,
    /// Where small files are read ahead ([`DataWriter::read_ahead`]): a pool
    /// of its own, so that reads never queue behind compression jobs.
    readers: rayon::ThreadPool,
    window: usize,
    pending: VecDeque<(Dest, Pending)>,
    pub(crate) files: Vec<FileData>,
    pub(crate) fragments: Vec<Fragment>,
    /// The files waiting in the open fragment block, in order.
    open_fragment: Vec<Member>,
    /// Their total size.
    open_fill: u64,
    /// Large files stored, by size and file hash.
    seen: HashMap<(u64, [u8; 32]), usize>,
    /// Small files stored, by size and tag (the first of each)…
    seen_small: HashMap<(u64, u64), Seen>,
    /// …and any later ones of the same size and tag but other content.
    seen_small_more: HashMap<(u64, u64), Vec<Seen>>,
    /// Sizes of the large files stored so far: only these can have a duplicate.
    sizes_seen: HashSet<u64>,
    /// The sizes that more than one file of the tree has, when known
    /// ([`DataWriter::hash_only_shared_sizes`]): a file of any other size
    /// cannot be a duplicate, so it needs no hash unless the cache or the
    /// stable fragment cuts use it. `None`: every file is hashed.
    shared_sizes: Option<HashSet<u64>>,
    cache: Option<(Arc<Cache>, [u8; 32])>,
    /// Whether the cache records files (the user trusts stat).
    trust: bool,
    small_records: Vec<SmallRecord>,
    buffers: Arc<Buffers>,
    pub(crate) bytes_in: u64,
    pub(crate) dedup_saved: u64,
    out_path: &'a Path,
}

impl<'a, W: Write> DataWriter<'a, W> {
    pub(crate) fn new(
        sink: W,
        pos: u64,
        comp: &'a Compressor,
        opts: DataOptions<'a>,
        pool: &'a rayon::ThreadPool,
        cache: Option<Arc<Cache>>,
        out_path: &'a Path,
    ) -> Result<Self, Error> {
        // Six blocks at two threads: four queued behind the two being
        // compressed keep both busy (on share/doc, xz, the idle CPU was the
        // same as with eight), and each block more costs a block of peak
        // memory.
        let window = (pool.current_num_threads() * 3).max(6);
        // Every buffer alive at once: the window, one per pool thread, and
        // the one being read.
        let buffers = Buffers::new(opts.block_size, window + pool.current_num_threads() + 1);
        let settings = Cache::settings(&comp.cache_tag(), opts.block_size as u32);
        // As many readers as compressing threads, asleep while there is
        // nothing to read.
        let readers = rayon::ThreadPoolBuilder::new()
            .num_threads(pool.current_num_threads())
            .thread_name(|i| format!("mkp-read-{i}"))
            .build()
            .map_err(|e| Error::Write {
                path: out_path.to_path_buf(),
                source: io::Error::other(e),
            })?;
        Ok(DataWriter {
            sink,
            pos,
            comp: Arc::new(comp.clone()),
            opts,
            pool,
            readers,
            window,
            pending: VecDeque::new(),
            files: Vec::new(),
            fragments: Vec::new(),
            open_fragment: Vec::new(),
            open_fill: 0,
            seen: HashMap::new(),
            seen_small: HashMap::new(),
            seen_small_more: HashMap::new(),
            sizes_seen: HashSet::new(),
            shared_sizes: None,
            trust: cache.as_ref().is_some_and(|c| c.config().trust_stat),
            cache: cache.map(|c| (c, settings)),
            small_records: Vec::new(),
            buffers: Arc::new(buffers),
            bytes_in: 0,
            dedup_saved: 0,
            out_path,
        })
    }

    /// Tells the writer which file sizes more than one file of the tree has
    /// (`sizes`), so that it hashes only what can have a duplicate, as
    /// mksquashfs checksums only files whose size it met before. Without a
    /// cache and with plain tail packing, a file of a size no other file has
    /// is then read and compressed unhashed: on share/doc that is 448 of its
    /// 636 MiB, and about 0.1 % of the build's CPU (blake3 is fast).
    pub(crate) fn hash_only_shared_sizes(&mut self, sizes: HashSet<u64>) {
        self.shared_sizes = Some(sizes);
    }

    /// Whether a file of `size` bytes (`small`: smaller than a block) must be
    /// hashed: for the cache's keys, for a small file's tag when fragments
    /// are cut by content, or to find its duplicates.
    fn needs_hash(&self, size: u64, small: bool) -> bool {
        if self.cache.is_some() || (small && self.opts.stable_fragments) {
            return true;
        }
        self.opts.dedup
            && self
                .shared_sizes
                .as_ref()
                .is_none_or(|shared| shared.contains(&size))
    }

    /// Reads and hashes, in parallel on the reader pool, the small files
    /// among `files` that [`DataWriter::add_file`] would read, and looks up
    /// those the cache knows by fingerprint. Hand each result to `add_file`
    /// with its file, in order.
    ///
    /// The reads do not go to the compression pool: there they waited behind
    /// every block already queued, and this thread with them, queueing no new
    /// block meanwhile, so the pool ran dry about once a block on 52k small
    /// files (share/doc, xz: 0.8-1.1 s of idle CPU against 0.6 s now).
    pub(crate) fn read_ahead(&self, files: &[(&FileSource, u64)]) -> Vec<Ahead> {
        use rayon::prelude::*;
        let bs = self.opts.block_size;
        let is_small = |size: u64| size != 0 && size < bs as u64;
        if !files.iter().any(|&(_, size)| is_small(size)) {
            return files.iter().map(|_| Ahead::Nothing).collect();
        }
        let cache = self.cache.as_ref().map(|(c, _)| &**c);
        // The files' buffers come from this thread's heap: allocated by the
        // readers, they would stay in those threads' malloc arenas once
        // freed and add megabytes to the peak.
        let buffers: Vec<(Vec<u8>, bool)> = files
            .iter()
            .map(|&(_, size)| match is_small(size) {
                true => (
                    Vec::with_capacity(size as usize),
                    self.needs_hash(size, true),
                ),
                false => (Vec::new(), false),
            })
            .collect();
        self.readers.install(|| {
            files
                .par_iter()
                .zip(buffers)
                .map(|(&(source, size), (buffer, hash))| {
                    if !is_small(size) {
                        return Ahead::Nothing;
                    }
                    match trusted(cache, bs, source, size) {
                        Some(known) => Ahead::Trusted(known),
                        None => Ahead::Read(read_small_into(source, size, buffer, hash)),
                    }
                })
                .collect()
        })
    }

    /// Stores one file's contents; returns the index of its [`FileData`]
    /// (shared with an earlier identical file when deduplicating). `ahead`
    /// is what [`DataWriter::read_ahead`] learnt of it, or [`Ahead::Nothing`].
    pub(crate) fn add_file(
        &mut self,
        source: &FileSource,
        size: u64,
        ahead: Ahead,
    ) -> Result<usize, Error> {
        self.check_cancel()?;
        if size == 0 {
            self.files.push(FileData {
                fragment: (NO_FRAGMENT, 0),
                ..FileData::default()
            });
            return Ok(self.files.len() - 1);
        }
        self.bytes_in += size;
        let bs = self.opts.block_size as u32;
        let fingerprint = match source {
            FileSource::Host { stat: Some(fp), .. } if fp.size == size => Some(**fp),
            _ => None,
        };
        let (known, read) = match ahead {
            Ahead::Trusted(known) => (Some(known), None),
            Ahead::Read(read) => (None, Some(read)),
            Ahead::Nothing => (
                trusted(
                    self.cache.as_ref().map(|(c, _)| &**c),
                    bs as usize,
                    source,
                    size,
                ),
                None,
            ),
        };
        if let Some(cache) = known.as_ref().and(self.cache.as_ref()) {
            cache.0.not_read(size);
        }
        if size < u64::from(bs) {
            return self.add_small(source, size, fingerprint, known, read);
        }
        let known = known.and_then(|known| match known {
            Known::Blocks(hashes) => Some(hashes),
            Known::Small { .. } => None,
        });
        let (data, hashes) = self.add_large(source, size, known)?;
        if let (Some(fp), Some(hashes), Some((cache, _))) = (fingerprint, hashes, &self.cache) {
            cache.record(&fp, bs, Known::Blocks(hashes));
        }
        Ok(data)
    }

    /// A file smaller than a block: a fragment member (or one short block).
    /// Returns its data index.
    fn add_small(
        &mut self,
        source: &FileSource,
        size: u64,
        fp: Option<Fingerprint>,
        known: Option<Known>,
        read: Option<Result<SmallFile, Error>>,
    ) -> Result<usize, Error> {
        let recorded = match &known {
            Some(Known::Small { hash, .. }) => Some(hash.is_some()),
            _ => None,
        };
        let (piece, tag, mut hash) = match known {
            Some(Known::Small { tag, hash }) => {
                let piece = Piece::Deferred {
                    path: source_path(source),
                    offset: 0,
                    len: size as usize,
                    check: hash.map_or(Check::Tag(tag), Check::Hash),
                };
                (piece, tag, hash)
            }
            _ => {
                let (content, hash) = match read {
                    Some(done) => done?,
                    None => read_small(source, size, self.needs_hash(size, true))?,
                };
                // An unhashed file has no tag: nothing cuts fragments by
                // tag, and no other file has its size.
                (
                    Piece::Bytes(content),
                    hash.map_or(0, |h| fragments::tag(&h)),
                    hash,
                )
            }
        };
        let unhashed = hash.is_none() && matches!(piece, Piece::Bytes(_));
        if !unhashed {
            if let Some(idx) = self.find_small(size, tag, &mut hash, &piece)? {
                self.note_small(fp, (size, tag, hash), idx, recorded);
                return Ok(idx);
            }
        }
        let data = self.files.len();
        self.files.push(FileData {
            fragment: (NO_FRAGMENT, 0),
            ..FileData::default()
        });
        let unread = match &piece {
            Piece::Deferred { path, .. } if hash.is_none() => Some(path.clone()),
            _ => None,
        };
        if hash == Some(ZERO) {
            // As mksquashfs: an all-zero small file is one hole, no fragment.
            self.files[data].sizes.push(0);
            self.pending.push_back((
                Dest::Block { data, block: 0 },
                Pending::Ready(Vec::new(), false),
            ));
            self.drain_window()?;
        } else if self.opts.fragments {
            let bs = self.opts.block_size as u64;
            while !self.open_fragment.is_empty() && self.open_fill + size > bs {
                let members: Vec<(u64, u64)> =
                    self.open_fragment.iter().map(|m| (m.size, m.tag)).collect();
                let n = if self.opts.stable_fragments {
                    fragments::cut(&members, bs)
                } else {
                    members.len()
                };
                self.close_fragment(n)?;
            }
            let ident = match (fp, hash) {
                (Some(fp), _) if self.cache_records(&fp) => {
                    Some(Ident::File(stat::record_key(&fp, bs as u32)))
                }
                (_, Some(hash)) => Some(Ident::Content(hash)),
                (_, None) => None,
            };
            self.open_fragment.push(Member {
                piece,
                size,
                tag,
                hash,
                ident,
                data,
            });
            self.open_fill += size;
            if self.opts.stable_fragments && fragments::ends_run(size, bs, tag) {
                self.close_fragment(self.open_fragment.len())?;
            }
        } else {
            self.files[data].sizes.push(0);
            let cache_key = match hash {
                Some(hash) => self.block_key(&hash),
                None if unhashed => None,
                None => {
                    let found = hash_unread(&source_path(source), size, tag)?;
                    self.block_key(hash.insert(found))
                }
            };
            self.submit(
                Dest::Block { data, block: 0 },
                vec![piece],
                size as usize,
                cache_key.map(KeyPlan::Known),
            )?;
        }
        if !unhashed {
            self.remember_small(size, tag, hash, unread, data);
        }
        self.note_small(fp, (size, tag, hash), data, recorded);
        Ok(data)
    }

    /// Whether the cache will record the file with fingerprint `fp`.
    fn cache_records(&self, fp: &Fingerprint) -> bool {
        self.trust && self.cache.as_ref().is_some_and(|(c, _)| c.recordable(fp))
    }

    /// An earlier small file with the same content, if deduplicating. A tag
    /// is not an identity: when one is found with the same size and tag,
    /// whichever of the two was not read is read now for its whole hash.
    fn find_small(
        &mut self,
        size: u64,
        tag: u64,
        hash: &mut Option<[u8; 32]>,
        piece: &Piece,
    ) -> Result<Option<usize>, Error> {
        if !self.opts.dedup {
            return Ok(None);
        }
        let key = (size, tag);
        let Some(first) = self.seen_small.get_mut(&key) else {
            return Ok(None);
        };
        first.shared = true;
        let mine = match (*hash, piece) {
            (Some(hash), _) => hash,
            (None, Piece::Deferred { path, .. }) => *hash.insert(hash_unread(path, size, tag)?),
            (None, Piece::Bytes(bytes)) => *hash.insert(content_hash(bytes)),
        };
        let more = self.seen_small_more.get_mut(&key);
        let more = more.map_or(&mut [][..], |v| v.as_mut_slice());
        for seen in std::iter::once(first).chain(more.iter_mut()) {
            let theirs = match (seen.hash, &seen.path) {
                (Some(hash), _) => hash,
                (None, Some(path)) => *seen.hash.insert(hash_unread(path, size, tag)?),
                (None, None) => unreachable!("a small file stored unread keeps its path"),
            };
            if theirs == mine {
                self.dedup_saved += size;
                return Ok(Some(seen.data as usize));
            }
        }
        Ok(None)
    }

    fn remember_small(
        &mut self,
        size: u64,
        tag: u64,
        hash: Option<[u8; 32]>,
        path: Option<PathBuf>,
        data: usize,
    ) {
        if !self.opts.dedup {
            return;
        }
        let seen = Seen {
            data: data as u32,
            hash,
            path: path
                .filter(|_| hash.is_none())
                .map(PathBuf::into_boxed_path),
            shared: false,
        };
        match self.seen_small.entry((size, tag)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(seen);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.seen_small_more
                    .entry((size, tag))
                    .or_default()
                    .push(seen);
            }
        }
    }

    /// Keeps what is to be recorded of a small file, when the cache records files.
    fn note_small(
        &mut self,
        fp: Option<Fingerprint>,
        (size, tag, hash): (u64, u64, Option<[u8; 32]>),
        data: usize,
        recorded: Option<bool>,
    ) {
        // A record that kept the hash has nothing more to learn.
        if recorded == Some(true) {
            return;
        }
        if let Some(fp) = fp.filter(|_| self.trust) {
            self.small_records.push(SmallRecord {
                fp,
                size,
                tag,
                hash,
                data,
                recorded,
            });
        }
    }

    /// Records the small files: with their whole hash when another file of
    /// this build had the same size and tag (so the next build need not read
    /// them to tell duplicates apart), or when all zero; else only the tag.
    fn record_small_files(&mut self) {
        let Some((cache, _)) = &self.cache else {
            return;
        };
        let bs = self.opts.block_size as u32;
        for record in self.small_records.drain(..) {
            let key = (record.size, record.tag);
            let first = self.seen_small.get(&key);
            let shared = first.is_some_and(|s| s.shared) || self.seen_small_more.contains_key(&key);
            let hash = record.hash.or_else(|| {
                std::iter::once(first?)
                    .chain(self.seen_small_more.get(&key).into_iter().flatten())
                    .find(|s| s.data as usize == record.data)?
                    .hash
            });
            let keep = hash.filter(|h| shared || *h == ZERO);
            if record.recorded.is_some() && keep.is_none() {
                // Its record says as much already.
                continue;
            }
            cache.record(
                &record.fp,
                bs,
                Known::Small {
                    tag: record.tag,
                    hash: keep,
                },
            );
        }
    }

    /// A file of at least one block: its blocks go to the pool one by one.
    fn add_large(
        &mut self,
        source: &FileSource,
        size: u64,
        known: Option<BlockHashes>,
    ) -> Result<(usize, Option<BlockHashes>), Error> {
        let bs = self.opts.block_size;
        let n_blocks = size.div_ceil(bs as u64) as usize;
        let block_len = |block: usize| (size - (block * bs) as u64).min(bs as u64) as usize;
        if let Some(hashes) = known {
            let key = (size, file_hash(&hashes));
            if let Some(idx) = self.lookup(key, size) {
                return Ok((idx, None));
            }
            self.sizes_seen.insert(size);
            let data = self.new_large(n_blocks);
            let path = source_path(source);
            for (block, hash) in hashes.iter().enumerate() {
                let len = block_len(block);
                let dest = Dest::Block { data, block };
                if *hash == ZERO {
                    self.files[data].sparse_bytes += len as u64;
                    self.pending
                        .push_back((dest, Pending::Ready(Vec::new(), false)));
                    self.drain_window()?;
                } else {
                    let piece = Piece::Deferred {
                        path: path.clone(),
                        offset: (block * bs) as u64,
                        len,
                        check: Check::Hash(*hash),
                    };
                    let cache_key = self.block_key(hash);
                    self.submit(dest, vec![piece], len, cache_key.map(KeyPlan::Known))?;
                }
            }
            self.remember(key, data);
            return Ok((data, None));
        }

        // Only a file whose size was seen before can be a duplicate: hash it
        // first, so that a duplicate is never compressed. Any other file is
        // read once, hashed while it is compressed.
        let expected = if self.opts.dedup && self.sizes_seen.contains(&size) {
            let mut hashes = Vec::with_capacity(n_blocks);
            read_blocks(source, size, bs, &self.buffers, |block| {
                hashes.push(if is_zero(&block) {
                    ZERO
                } else {
                    *blake3::hash(&block).as_bytes()
                });
                self.buffers.give(block);
                Ok(())
            })?;
            let key = (size, file_hash(&hashes));
            if let Some(idx) = self.lookup(key, size) {
                return Ok((idx, Some(hashes.into())));
            }
            Some(key.1)
        } else {
            None
        };
        self.sizes_seen.insert(size);
        let data = self.new_large(n_blocks);
        let hashing = self.needs_hash(size, false);
        let mut hashes = Vec::with_capacity(if hashing { n_blocks } else { 0 });
        let mut block = 0;
        let buffers = Arc::clone(&self.buffers);
        read_blocks(source, size, bs, &buffers, |content| {
            let len = content.len();
            let dest = Dest::Block { data, block };
            block += 1;
            if is_zero(&content) {
                if hashing {
                    hashes.push(ZERO);
                }
                self.files[data].sparse_bytes += len as u64;
                self.buffers.give(content);
                self.pending
                    .push_back((dest, Pending::Ready(Vec::new(), false)));
                return self.drain_window();
            }
            let cache_key = if hashing {
                let hash = *blake3::hash(&content).as_bytes();
                hashes.push(hash);
                self.block_key(&hash)
            } else {
                None
            };
            self.submit(
                dest,
                vec![Piece::Bytes(content)],
                len,
                cache_key.map(KeyPlan::Known),
            )
        })?;
        if !hashing {
            // No other file has its size: nothing can be its duplicate.
            return Ok((data, None));
        }
        let hash = file_hash(&hashes);
        if expected.is_some_and(|expected| expected != hash) {
            return Err(Error::FileChanged {
                path: source_path(source),
                expected: size,
                found: size,
            });
        }
        self.remember((size, hash), data);
        Ok((data, Some(hashes.into())))
    }

    fn new_large(&mut self, n_blocks: usize) -> usize {
        self.files.push(FileData {
            sizes: vec![0; n_blocks],
            fragment: (NO_FRAGMENT, 0),
            ..FileData::default()
        });
        self.files.len() - 1
    }

    fn lookup(&mut self, key: (u64, [u8; 32]), size: u64) -> Option<usize> {
        if !self.opts.dedup {
            return None;
        }
        let idx = *self.seen.get(&key)?;
        self.dedup_saved += size;
        Some(idx)
    }

    fn remember(&mut self, key: (u64, [u8; 32]), data: usize) {
        if self.opts.dedup {
            self.seen.insert(key, data);
        }
    }

    /// The cache key of a data block with content hash `hash`, when caching.
    fn block_key(&self, hash: &[u8; 32]) -> Option<Key> {
        let (_, settings) = self.cache.as_ref()?;
        Some(Cache::block_key(settings, hash))
    }

    /// Closes a fragment block holding the first `n` files waiting in the
    /// open one; the others stay for the next.
    fn close_fragment(&mut self, n: usize) -> Result<(), Error> {
        if n == 0 {
            return Ok(());
        }
        let index = self.fragments.len();
        self.fragments.push(Fragment::default());
        let mut pieces = Vec::with_capacity(n);
        let mut members = Vec::with_capacity(n);
        let mut offset = 0u64;
        for member in self.open_fragment.drain(..n) {
            self.files[member.data].fragment = (index as u32, offset as u32);
            offset += member.size;
            pieces.push(member.piece);
            members.push(MemberKey {
                size: member.size,
                hash: member.hash,
                ident: member.ident,
            });
        }
        self.open_fill -= offset;
        // Members read already are copied into one block buffer here (what
        // the pool job would do), so that their own buffers go back to this
        // thread's heap at once, for the next files, instead of waiting in
        // the queue as hundreds of small allocations per block (megabytes of
        // peak memory). Deferred members are left to the pool job.
        if pieces.iter().all(|p| matches!(p, Piece::Bytes(_))) {
            let block = materialize(pieces, offset as usize, &self.buffers)?;
            pieces = vec![Piece::Bytes(block)];
        }
        let plan = self
            .cache
            .as_ref()
            .map(|(cache, settings)| fragment_plan(cache, settings, self.trust, &members));
        self.submit(Dest::Fragment(index), pieces, offset as usize, plan)
    }

    /// Hands a block of `len` bytes to the pool at once (reading goes on
    /// meanwhile) and writes the oldest blocks, in submission order, once more
    /// than `window` are in flight.
    fn submit(
        &mut self,
        dest: Dest,
        pieces: Vec<Piece>,
        len: usize,
        plan: Option<KeyPlan>,
    ) -> Result<(), Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let comp = Arc::clone(&self.comp);
        let cache = plan
            .as_ref()
            .and(self.cache.as_ref())
            .map(|(c, _)| Arc::clone(c));
        let buffers = Arc::clone(&self.buffers);
        let fragment = matches!(dest, Dest::Fragment(_));
        self.pool.spawn(move || {
            let result = pack_block(
                &comp,
                cache.as_deref().zip(plan),
                &buffers,
                fragment,
                pieces,
                len,
            );
            // The receiver is gone only when the write was abandoned.
            let _ = tx.send(result);
        });
        self.pending.push_back((dest, Pending::Running(rx)));
        self.drain_window()
    }

    fn drain_window(&mut self) -> Result<(), Error> {
        while self.pending.len() > self.window {
            self.write_oldest()?;
        }
        Ok(())
    }

    /// Waits for every block in flight and writes them in order.
    fn flush(&mut self) -> Result<(), Error> {
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> Result<(), Error> {
        self.check_cancel()?;
        let Some((dest, result)) = self.pending.pop_front() else {
            return Ok(());
        };
        let (bytes, raw) = match result {
            Pending::Ready(bytes, raw) => (bytes, raw),
            Pending::Running(rx) => rx.recv().expect("a compression job panicked")?,
        };
        let word = match (bytes.is_empty(), raw) {
            (true, _) => 0,
            (false, true) => bytes.len() as u32 | RAW_BIT,
            (false, false) => bytes.len() as u32,
        };
        match dest {
            Dest::Block { data, block } => {
                if block == 0 {
                    self.files[data].start = self.pos;
                }
                self.files[data].sizes[block] = word;
            }
            Dest::Fragment(index) => {
                self.fragments[index] = Fragment {
                    start: self.pos,
                    size: word,
                }
            }
        }
        self.sink.write_all(&bytes).map_err(|source| Error::Write {
            path: self.out_path.to_path_buf(),
            source,
        })?;
        self.pos += bytes.len() as u64;
        // A block stored raw is its read buffer.
        self.buffers.give(bytes);
        Ok(())
    }

    fn check_cancel(&self) -> Result<(), Error> {
        match self.opts.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    /// Writes what is still pending and says where everything went.
    pub(crate) fn finish(mut self) -> Result<DataArea, Error> {
        self.close_fragment(self.open_fragment.len())?;
        self.flush()?;
        self.record_small_files();
        Ok(DataArea {
            end: self.pos,
            files: self.files,
            fragments: self.fragments,
            bytes_in: self.bytes_in,
            dedup_saved: self.dedup_saved,
            read_cpu: crate::cpu::pool_time(&self.readers),
        })
    }
}

/// A small file's content and its hash (`ZERO` when all zero), `None` when
/// it was not to be hashed and is not all zero.
type SmallFile = (Vec<u8>, Option<[u8; 32]>);

/// What `cache` trusts of `source` of `size` bytes by its fingerprint, at
/// block size `bs`, if anything.
fn trusted(cache: Option<&Cache>, bs: usize, source: &FileSource, size: u64) -> Option<Known> {
    match source {
        FileSource::Host { stat: Some(fp), .. } if fp.size == size => cache?.trusted(fp, bs as u32),
        _ => None,
    }
}

/// What a fragment block's cache key is made of, for one member.
#[derive(Debug, Clone, Copy)]
struct MemberKey {
    size: u64,
    /// Its content hash, unless it was not read.
    hash: Option<[u8; 32]>,
    /// How a recipe names it, when the user trusts stat.
    ident: Option<Ident>,
}

/// How the pool job for a fragment block of `members` finds its cache key:
/// from the members' hashes when all were read (recording the recipe), else
/// from a recipe an earlier build recorded, else from the members' hashes
/// once the block is read.
fn fragment_plan(
    cache: &Cache,
    settings: &[u8; 32],
    trust: bool,
    members: &[MemberKey],
) -> KeyPlan {
    let recipe = if trust {
        let idents: Option<Vec<(u64, Ident)>> =
            members.iter().map(|m| Some((m.size, m.ident?))).collect();
        idents.map(|idents| Cache::recipe_key(settings, &idents))
    } else {
        None
    };
    let hashes: Option<Vec<(u64, [u8; 32])>> =
        members.iter().map(|m| Some((m.size, m.hash?))).collect();
    if let Some(hashes) = hashes {
        let key = Cache::fragment_key(settings, &hashes);
        if let Some(recipe) = recipe {
            cache.record_recipe(recipe, &key);
        }
        return KeyPlan::Known(key);
    }
    if let Some(key) = recipe.as_ref().and_then(|r| cache.recipe(r)) {
        return KeyPlan::Known(key);
    }
    KeyPlan::Derive {
        settings: *settings,
        sizes: members.iter().map(|m| m.size).collect(),
        recipe,
    }
}

/// What [`DataWriter::read_ahead`] learnt of a file before its turn.
#[derive(Debug)]
pub(crate) enum Ahead {
    /// Nothing: a large or empty file, or one not handed to `read_ahead`.
    Nothing,
    /// The cache knows it by its fingerprint: do not read it.
    Trusted(Known),
    /// A small file read and hashed (`ZERO` when all zero), or why it could not be.
    Read(Result<SmallFile, Error>),
}

/// Reads a file smaller than a block and, with `hash`, hashes it (`ZERO`
/// when all zero, whether hashed or not).
fn read_small(source: &FileSource, size: u64, hash: bool) -> Result<SmallFile, Error> {
    read_small_into(source, size, Vec::new(), hash)
}

/// [`read_small`] into `content`, an empty buffer.
fn read_small_into(
    source: &FileSource,
    size: u64,
    mut content: Vec<u8>,
    hash: bool,
) -> Result<SmallFile, Error> {
    let mut reader = SourceReader::open(source, size)?;
    content.resize(size as usize, 0);
    reader.fill(&mut content)?;
    reader.finish()?;
    let hash = match hash {
        true => Some(content_hash(&content)),
        false => is_zero(&content).then_some(ZERO),
    };
    Ok((content, hash))
}

/// A small file's content hash: `ZERO` when all zero, else its blake3 hash.
fn content_hash(content: &[u8]) -> [u8; 32] {
    if is_zero(content) {
        ZERO
    } else {
        *blake3::hash(content).as_bytes()
    }
}

/// Reads a small file that was to go unread, for its whole hash, checking
/// that it still has `size` bytes and the recorded `tag`.
fn hash_unread(path: &Path, size: u64, tag: u64) -> Result<[u8; 32], Error> {
    let content = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let hash = content_hash(&content);
    if content.len() as u64 != size || fragments::tag(&hash) != tag {
        return Err(Error::FileChanged {
            path: path.to_path_buf(),
            expected: size,
            found: content.len() as u64,
        });
    }
    Ok(hash)
}

/// A pool job: the block's bytes in the image and whether they are raw, from
/// the cache or by compressing (then stored in the cache).
fn pack_block(
    comp: &Compressor,
    cache: Option<(&Cache, KeyPlan)>,
    buffers: &Buffers,
    fragment: bool,
    pieces: Vec<Piece>,
    len: usize,
) -> Result<(Vec<u8>, bool), Error> {
    let kind = if fragment {
        BlockKind::Fragment
    } else {
        BlockKind::Data
    };
    if let Some((cache, KeyPlan::Known(key))) = &cache {
        if let Some(entry) = cache.get(key, kind, len) {
            for piece in pieces {
                if let Piece::Bytes(bytes) = piece {
                    buffers.give(bytes);
                }
            }
            return Ok((entry.bytes, entry.raw));
        }
    }
    let content = materialize(pieces, len, buffers)?;
    let cache = match cache {
        Some((cache, KeyPlan::Known(key))) => Some((cache, key)),
        Some((
            cache,
            KeyPlan::Derive {
                settings,
                sizes,
                recipe,
            },
        )) => {
            let mut at = 0;
            let members: Vec<(u64, [u8; 32])> = sizes
                .iter()
                .map(|&size| {
                    let end = at + size as usize;
                    let hash = *blake3::hash(&content[at..end]).as_bytes();
                    at = end;
                    (size, hash)
                })
                .collect();
            let key = Cache::fragment_key(&settings, &members);
            if let Some(recipe) = recipe {
                cache.record_recipe(recipe, &key);
            }
            if let Some(entry) = cache.get(&key, kind, len) {
                buffers.give(content);
                return Ok((entry.bytes, entry.raw));
            }
            Some((cache, key))
        }
        None => None,
    };
    let (bytes, raw) = match comp.compress_data(&content) {
        Some(packed) => {
            buffers.give(content);
            (packed, false)
        }
        None => (content, true),
    };
    if let Some((cache, key)) = cache {
        cache.put(&key, raw, &bytes);
    }
    Ok((bytes, raw))
}

/// A block's uncompressed content: its pieces, deferred ones read now and
/// checked against their hashes.
fn materialize(mut pieces: Vec<Piece>, len: usize, buffers: &Buffers) -> Result<Vec<u8>, Error> {
    if let [Piece::Bytes(_)] = pieces.as_slice() {
        let Some(Piece::Bytes(bytes)) = pieces.pop() else {
            unreachable!("matched above")
        };
        return Ok(bytes);
    }
    let mut content = buffers.take();
    content.reserve(len);
    for piece in pieces {
        match piece {
            Piece::Bytes(bytes) => content.extend_from_slice(&bytes),
            Piece::Deferred {
                path,
                offset,
                len,
                check,
            } => {
                let at = content.len();
                content.resize(at + len, 0);
                let read =
                    File::open(&path).and_then(|f| f.read_exact_at(&mut content[at..], offset));
                if let Err(source) = read {
                    return Err(if source.kind() == io::ErrorKind::UnexpectedEof {
                        Error::FileChanged {
                            path,
                            expected: offset + len as u64,
                            found: offset,
                        }
                    } else {
                        Error::Read { path, source }
                    });
                }
                let hash = *blake3::hash(&content[at..]).as_bytes();
                let good = match check {
                    Check::Hash(want) => hash == want,
                    Check::Tag(tag) => fragments::tag(&hash) == tag,
                };
                if !good {
                    return Err(Error::FileChanged {
                        path,
                        expected: offset + len as u64,
                        found: offset + len as u64,
                    });
                }
            }
        }
    }
    Ok(content)
}

/// A file's identity besides its length: the hash of its content when it is
/// smaller than a block (one hash), else the hash of its block hashes.
fn file_hash(block_hashes: &[[u8; 32]]) -> [u8; 32] {
    if let [only] = block_hashes {
        return *only;
    }
    let mut h = blake3::Hasher::new_derive_key("mkportable file v1");
    for hash in block_hashes {
        h.update(hash);
    }
    *h.finalize().as_bytes()
}

/// Reads `source` (exactly `size` bytes) in blocks of `bs` bytes (the last one
/// shorter), each straight into a buffer from `buffers` handed to `each`.
fn read_blocks(
    source: &FileSource,
    size: u64,
    bs: usize,
    buffers: &Buffers,
    mut each: impl FnMut(Vec<u8>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut reader = SourceReader::open(source, size)?;
    let mut done = 0u64;
    while done < size {
        let len = (size - done).min(bs as u64) as usize;
        let mut block = buffers.take();
        block.resize(len, 0);
        reader.fill(&mut block)?;
        done += len as u64;
        each(block)?;
    }
    reader.finish()
}

fn is_zero(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.as_chunks::<16>();
    words.iter().all(|w| u128::from_ne_bytes(*w) == 0) && rest.iter().all(|b| *b == 0)
}

fn source_path(source: &FileSource) -> std::path::PathBuf {
    match source {
        FileSource::Host { path, .. } => path.to_path_buf(),
        FileSource::Bytes(_) => "<generated>".into(),
    }
}

/// Reads exactly `size` bytes of a file's source, front to back, failing if
/// it is shorter or longer than that (the file changed since the tree was built).
enum SourceReader<'a> {
    Bytes(&'a [u8]),
    Host {
        file: File,
        path: PathBuf,
        size: u64,
        done: u64,
    },
}

impl<'a> SourceReader<'a> {
    fn open(source: &'a FileSource, size: u64) -> Result<SourceReader<'a>, Error> {
        match source {
            FileSource::Bytes(bytes) if bytes.len() as u64 == size => {
                Ok(SourceReader::Bytes(bytes))
            }
            FileSource::Bytes(bytes) => Err(Error::FileChanged {
                path: source_path(source),
                expected: size,
                found: bytes.len() as u64,
            }),
            FileSource::Host { path, .. } => {
                let path = path.to_path_buf();
                Ok(SourceReader::Host {
                    file: File::open(&path).map_err(|source| Error::Read {
                        path: path.clone(),
                        source,
                    })?,
                    path,
                    size,
                    done: 0,
                })
            }
        }
    }

    /// Fills `buf` with the next `buf.len()` bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        match self {
            SourceReader::Bytes(rest) => {
                let (head, tail) = rest.split_at(buf.len());
                buf.copy_from_slice(head);
                *rest = tail;
                Ok(())
            }
            SourceReader::Host {
                file,
                path,
                size,
                done,
            } => {
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => {
                            return Err(Error::FileChanged {
                                path: path.to_path_buf(),
                                expected: *size,
                                found: *done + filled as u64,
                            });
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            return Err(Error::Read {
                                path: path.to_path_buf(),
                                source,
                            })
                        }
                    }
                }
                *done += filled as u64;
                Ok(())
            }
        }
    }

    /// Checks that the file ends where it should.
    fn finish(self) -> Result<(), Error> {
        let SourceReader::Host {
            mut file,
            path,
            size,
            ..
        } = self
        else {
            return Ok(());
        };
        let mut probe = [0u8; 1];
        loop {
            return match file.read(&mut probe) {
                Ok(0) => Ok(()),
                Ok(_) => Err(Error::FileChanged {
                    path: path.to_path_buf(),
                    expected: size,
                    found: size + 1,
                }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => Err(Error::Read {
                    path: path.to_path_buf(),
                    source,
                }),
            };
        }
    }
}

/// Block-sized buffers, recycled: a block is read into one, which goes back
/// once the block is compressed (or written, when stored raw), so packing
/// does not allocate, and fault in, a fresh buffer per block. Holds at most
/// `keep` buffers, as many as can be in flight at once.
#[derive(Debug)]
struct Buffers {
    size: usize,
    keep: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl Buffers {
    fn new(size: usize, keep: usize) -> Buffers {
        Buffers {
            size,
            keep,
            free: Mutex::new(Vec::new()),
        }
    }

    /// An empty buffer with room for a block.
    fn take(&self) -> Vec<u8> {
        let recycled = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        recycled.unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Takes `buf` back if it is one of ours (any other buffer is dropped).
    fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() != self.size {
            return;
        }
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(path: &Path) -> FileSource {
        FileSource::Host {
            path: path.into(),
            sparse: false,
            stat: None,
        }
    }

    /// Reads `source` as the writer does for a large file, in 4-byte blocks.
    fn blocks_of(source: &FileSource, size: u64) -> Result<Vec<Vec<u8>>, Error> {
        let buffers = Buffers::new(4, 2);
        let mut blocks = Vec::new();
        read_blocks(source, size, 4, &buffers, |b| {
            blocks.push(b);
            Ok(())
        })?;
        Ok(blocks)
    }

    #[test]
    fn a_file_is_read_in_blocks_of_exactly_its_listed_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let blocks = blocks_of(&host(&path), 10).unwrap();
        assert_eq!(blocks, [&b"0123"[..], b"4567", b"89"]);
        let bytes = FileSource::Bytes(Arc::from(&b"0123456789"[..]));
        assert_eq!(blocks_of(&bytes, 10).unwrap(), blocks);
        assert_eq!(read_small(&host(&path), 10, true).unwrap().0, b"0123456789");
    }

    #[test]
    fn a_file_that_shrank_or_grew_since_it_was_listed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let found = |r: Result<(), Error>| match r {
            Err(Error::FileChanged {
                path: p,
                expected,
                found,
            }) => {
                assert_eq!(p, path);
                (expected, found)
            }
            other => panic!("expected FileChanged, got {other:?}"),
        };
        // Listed as longer than it is: it ends early.
        assert_eq!(found(blocks_of(&host(&path), 12).map(drop)), (12, 10));
        assert_eq!(
            found(read_small(&host(&path), 11, true).map(drop)),
            (11, 10)
        );
        // Listed as shorter: a byte is left after the listed size.
        assert_eq!(found(blocks_of(&host(&path), 8).map(drop)), (8, 9));
        assert_eq!(found(read_small(&host(&path), 9, true).map(drop)), (9, 10));
        let bytes = FileSource::Bytes(Arc::from(&b"01"[..]));
        assert!(matches!(
            blocks_of(&bytes, 3),
            Err(Error::FileChanged {
                expected: 3,
                found: 2,
                ..
            })
        ));
    }

    #[test]
    fn buffers_are_recycled_up_to_their_bound_and_only_their_own() {
        let buffers = Buffers::new(8, 2);
        let a = buffers.take();
        let first = a.as_ptr();
        assert!(a.capacity() == 8 && a.is_empty());
        buffers.give(a);
        let mut again = buffers.take();
        assert_eq!(again.as_ptr(), first, "a given buffer is taken again");
        again.extend_from_slice(b"abc");
        buffers.give(again);
        assert!(
            buffers.take().is_empty(),
            "a recycled buffer comes back empty"
        );
        // A buffer of another capacity is dropped, not kept.
        buffers.give(Vec::with_capacity(3));
        assert_eq!(buffers.free.lock().unwrap().len(), 0);
        for _ in 0..3 {
            buffers.give(Vec::with_capacity(8));
        }
        assert_eq!(
            buffers.free.lock().unwrap().len(),
            2,
            "at most `keep` are kept"
        );
    }
}
