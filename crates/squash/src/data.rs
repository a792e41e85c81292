//! The data area: file contents cut into blocks, all-zero blocks turned into
//! holes, small files packed into fragment blocks, identical files stored once,
//! compression on a thread pool and writing strictly in tree order.
//!
//! Every block is hashed (blake3) as it is read; a file's identity is its
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
//! is compressed or written.
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

use crate::cache::stat::BlockHashes;
use crate::cache::{BlockKind, Cache, Key};
use crate::compress::Compressor;
use crate::fragments;
use crate::{Error, FileSource};

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
    /// Not read: `len` bytes at `offset` of a host file, whose blake3 hash is `hash`.
    Deferred {
        path: PathBuf,
        offset: u64,
        len: usize,
        hash: [u8; 32],
    },
}

/// A small file waiting in the open fragment block.
#[derive(Debug)]
struct Member {
    piece: Piece,
    /// Size and content hash.
    key: (u64, [u8; 32]),
    /// Its [`FileData`], whose fragment position is set when the block closes.
    data: usize,
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
    window: usize,
    pending: VecDeque<(Dest, Pending)>,
    pub(crate) files: Vec<FileData>,
    pub(crate) fragments: Vec<Fragment>,
    /// The files waiting in the open fragment block, in order.
    open_fragment: Vec<Member>,
    /// Their total size.
    open_fill: u64,
    seen: HashMap<(u64, [u8; 32]), usize>,
    /// Sizes of the large files stored so far: only these can have a duplicate.
    sizes_seen: HashSet<u64>,
    cache: Option<(Arc<Cache>, [u8; 32])>,
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
    ) -> Self {
        let window = (pool.current_num_threads() * 4).max(8);
        // Every buffer alive at once: the window, one per pool thread, and
        // the one being read.
        let buffers = Buffers::new(opts.block_size, window + pool.current_num_threads() + 1);
        let settings = Cache::settings(&comp.cache_tag(), opts.block_size as u32);
        DataWriter {
            sink,
            pos,
            comp: Arc::new(comp.clone()),
            opts,
            pool,
            window,
            pending: VecDeque::new(),
            files: Vec::new(),
            fragments: Vec::new(),
            open_fragment: Vec::new(),
            open_fill: 0,
            seen: HashMap::new(),
            sizes_seen: HashSet::new(),
            cache: cache.map(|c| (c, settings)),
            buffers: Arc::new(buffers),
            bytes_in: 0,
            dedup_saved: 0,
            out_path,
        }
    }

    /// Reads and hashes, in parallel on the pool, the small files among
    /// `files` that [`DataWriter::add_file`] would read, and looks up those
    /// the cache knows by fingerprint. Hand each result to `add_file` with
    /// its file, in order.
    pub(crate) fn read_ahead(&self, files: &[(&FileSource, u64)]) -> Vec<Ahead> {
        use rayon::prelude::*;
        let bs = self.opts.block_size;
        let cache = self.cache.as_ref().map(|(c, _)| &**c);
        self.pool.install(|| {
            files
                .par_iter()
                .map(|&(source, size)| {
                    if size == 0 || size >= bs as u64 {
                        return Ahead::Nothing;
                    }
                    match trusted_hashes(cache, bs, source, size) {
                        Some(hashes) => Ahead::Trusted(hashes),
                        None => Ahead::Read(read_small(source, size)),
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
            FileSource::Host { stat: Some(fp), .. } if fp.size == size => Some(*fp),
            _ => None,
        };
        let (known, read) = match ahead {
            Ahead::Trusted(hashes) => (Some(hashes), None),
            Ahead::Read(read) => (None, Some(read)),
            Ahead::Nothing => (
                trusted_hashes(
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
        let stored = if size < u64::from(bs) {
            self.add_small(source, size, known, read)
        } else {
            self.add_large(source, size, known)
        }?;
        if let (Some(fp), Some(hashes), Some((cache, _))) = (fingerprint, stored.1, &self.cache) {
            cache.record(&fp, bs, hashes);
        }
        Ok(stored.0)
    }

    /// A file smaller than a block: a fragment member (or one short block).
    /// Returns its data index and, if it was read, its hash to record.
    fn add_small(
        &mut self,
        source: &FileSource,
        size: u64,
        known: Option<BlockHashes>,
        read: Option<Result<SmallFile, Error>>,
    ) -> Result<(usize, Option<BlockHashes>), Error> {
        let (piece, hash, read) = match known {
            Some(hashes) => {
                let hash = hashes[0];
                let piece = Piece::Deferred {
                    path: source_path(source),
                    offset: 0,
                    len: size as usize,
                    hash,
                };
                (piece, hash, None)
            }
            None => {
                let (content, hash) = match read {
                    Some(done) => done?,
                    None => read_small(source, size)?,
                };
                (
                    Piece::Bytes(content),
                    hash,
                    Some(BlockHashes::from(vec![hash])),
                )
            }
        };
        let key = (size, hash);
        if let Some(idx) = self.lookup(key, size) {
            return Ok((idx, read));
        }
        let data = self.files.len();
        self.files.push(FileData {
            fragment: (NO_FRAGMENT, 0),
            ..FileData::default()
        });
        if hash == ZERO {
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
                let members: Vec<(u64, [u8; 32])> =
                    self.open_fragment.iter().map(|m| m.key).collect();
                let n = if self.opts.stable_fragments {
                    fragments::cut(&members, bs)
                } else {
                    members.len()
                };
                self.close_fragment(n)?;
            }
            self.open_fragment.push(Member { piece, key, data });
            self.open_fill += size;
            if self.opts.stable_fragments && fragments::ends_run(size, bs, &hash) {
                self.close_fragment(self.open_fragment.len())?;
            }
        } else {
            self.files[data].sizes.push(0);
            let cache_key = self.block_key(&hash);
            self.submit(
                Dest::Block { data, block: 0 },
                vec![piece],
                size as usize,
                cache_key,
            )?;
        }
        self.remember(key, data);
        Ok((data, read))
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
                        hash: *hash,
                    };
                    let cache_key = self.block_key(hash);
                    self.submit(dest, vec![piece], len, cache_key)?;
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
        let mut hashes = Vec::with_capacity(n_blocks);
        let mut block = 0;
        let buffers = Arc::clone(&self.buffers);
        read_blocks(source, size, bs, &buffers, |content| {
            let len = content.len();
            let dest = Dest::Block { data, block };
            block += 1;
            if is_zero(&content) {
                hashes.push(ZERO);
                self.files[data].sparse_bytes += len as u64;
                self.buffers.give(content);
                self.pending
                    .push_back((dest, Pending::Ready(Vec::new(), false)));
                return self.drain_window();
            }
            let hash = *blake3::hash(&content).as_bytes();
            hashes.push(hash);
            let cache_key = self.block_key(&hash);
            self.submit(dest, vec![Piece::Bytes(content)], len, cache_key)
        })?;
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
            offset += member.key.0;
            pieces.push(member.piece);
            members.push(member.key);
        }
        self.open_fill -= offset;
        let cache_key = self
            .cache
            .as_ref()
            .map(|(_, settings)| Cache::fragment_key(settings, &members));
        self.submit(Dest::Fragment(index), pieces, offset as usize, cache_key)
    }

    /// Hands a block of `len` bytes to the pool at once (reading goes on
    /// meanwhile) and writes the oldest blocks, in submission order, once more
    /// than `window` are in flight.
    fn submit(
        &mut self,
        dest: Dest,
        pieces: Vec<Piece>,
        len: usize,
        key: Option<Key>,
    ) -> Result<(), Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let comp = Arc::clone(&self.comp);
        let cache = key.and(self.cache.as_ref().map(|(c, _)| Arc::clone(c)));
        let buffers = Arc::clone(&self.buffers);
        let fragment = matches!(dest, Dest::Fragment(_));
        self.pool.spawn(move || {
            let result = pack_block(
                &comp,
                cache.as_deref().zip(key.as_ref()),
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
        Ok(DataArea {
            end: self.pos,
            files: self.files,
            fragments: self.fragments,
            bytes_in: self.bytes_in,
            dedup_saved: self.dedup_saved,
        })
    }
}

/// A small file's content and its hash (`ZERO` when all zero).
type SmallFile = (Vec<u8>, [u8; 32]);

/// The block hashes `cache` trusts for `source` of `size` bytes by its
/// fingerprint, at block size `bs`, if any.
fn trusted_hashes(
    cache: Option<&Cache>,
    bs: usize,
    source: &FileSource,
    size: u64,
) -> Option<BlockHashes> {
    match source {
        FileSource::Host { stat: Some(fp), .. } if fp.size == size => {
            cache?.trusted_hashes(fp, bs as u32)
        }
        _ => None,
    }
}

/// What [`DataWriter::read_ahead`] learnt of a file before its turn.
#[derive(Debug)]
pub(crate) enum Ahead {
    /// Nothing: a large or empty file, or one not handed to `read_ahead`.
    Nothing,
    /// The cache trusts these block hashes for its fingerprint: do not read it.
    Trusted(BlockHashes),
    /// A small file read and hashed (`ZERO` when all zero), or why it could not be.
    Read(Result<SmallFile, Error>),
}

/// Reads a file smaller than a block and hashes it (`ZERO` when all zero).
fn read_small(source: &FileSource, size: u64) -> Result<SmallFile, Error> {
    let mut reader = SourceReader::open(source, size)?;
    let mut content = vec![0; size as usize];
    reader.fill(&mut content)?;
    reader.finish()?;
    let hash = if is_zero(&content) {
        ZERO
    } else {
        *blake3::hash(&content).as_bytes()
    };
    Ok((content, hash))
}

/// A pool job: the block's bytes in the image and whether they are raw, from
/// the cache or by compressing (then stored in the cache).
fn pack_block(
    comp: &Compressor,
    cache: Option<(&Cache, &Key)>,
    buffers: &Buffers,
    fragment: bool,
    pieces: Vec<Piece>,
    len: usize,
) -> Result<(Vec<u8>, bool), Error> {
    if let Some((cache, key)) = cache {
        let kind = if fragment {
            BlockKind::Fragment
        } else {
            BlockKind::Data
        };
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
    let (bytes, raw) = match comp.compress_data(&content) {
        Some(packed) => {
            buffers.give(content);
            (packed, false)
        }
        None => (content, true),
    };
    if let Some((cache, key)) = cache {
        cache.put(key, raw, &bytes);
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
                hash,
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
                if blake3::hash(&content[at..]).as_bytes() != &hash {
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
        assert_eq!(read_small(&host(&path), 10).unwrap().0, b"0123456789");
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
        assert_eq!(found(read_small(&host(&path), 11).map(drop)), (11, 10));
        // Listed as shorter: a byte is left after the listed size.
        assert_eq!(found(blocks_of(&host(&path), 8).map(drop)), (8, 9));
        assert_eq!(found(read_small(&host(&path), 9).map(drop)), (9, 10));
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
