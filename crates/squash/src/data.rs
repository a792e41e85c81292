//! The data area: file contents cut into blocks, all-zero blocks turned into
//! holes, small files packed into fragment blocks, identical files stored once,
//! compression on a thread pool and writing strictly in tree order.
//!
//! Files are deduplicated on blake3 of the whole content plus the length. A file
//! that may be a duplicate (one of the same size was stored before) is hashed
//! before any of it is compressed, so a duplicate is never compressed; every
//! other file is read once and hashed while it is compressed. Blocks
//! go through a bounded window: at most `window` blocks are held in memory,
//! compressed in parallel, then written in submission order, so the bytes do
//! not depend on the thread count. Compression overlaps with reading: a block
//! goes to the pool as soon as it is read, and the writer waits only for the
//! oldest block once the window is full.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::compress::Compressor;
use crate::{Error, FileSource};

/// Size word bit: the block is stored uncompressed.
pub(crate) const RAW_BIT: u32 = 1 << 24;
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
    /// Bytes of file contents read.
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

#[derive(Debug)]
enum Dest {
    Block { data: usize, block: usize },
    Fragment(usize),
}

/// A block on its way to the image: compressed already, or still on the pool.
#[derive(Debug)]
enum Pending {
    Ready {
        raw: Vec<u8>,
        packed: Option<Vec<u8>>,
    },
    Running(mpsc::Receiver<(Vec<u8>, Option<Vec<u8>>)>),
}

#[derive(Debug)]
struct Job {
    dest: Dest,
    raw: Vec<u8>,
    hole: bool,
}

/// Settings of the data area.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataOptions<'a> {
    pub(crate) block_size: usize,
    pub(crate) fragments: bool,
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
    pending: VecDeque<(Dest, bool, Pending)>,
    pub(crate) files: Vec<FileData>,
    pub(crate) fragments: Vec<Fragment>,
    open_fragment: Vec<u8>,
    seen: HashMap<(u64, [u8; 32]), usize>,
    /// Sizes of the large files stored so far: only these can have a duplicate.
    sizes_seen: HashSet<u64>,
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
        out_path: &'a Path,
    ) -> Self {
        let window = (pool.current_num_threads() * 4).max(8);
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
            seen: HashMap::new(),
            sizes_seen: HashSet::new(),
            bytes_in: 0,
            dedup_saved: 0,
            out_path,
        }
    }

    /// Stores one file's contents; returns the index of its [`FileData`]
    /// (shared with an earlier identical file when deduplicating).
    pub(crate) fn add_file(&mut self, source: &FileSource, size: u64) -> Result<usize, Error> {
        self.check_cancel()?;
        let bs = self.opts.block_size as u64;
        if size == 0 {
            self.files.push(FileData {
                fragment: (NO_FRAGMENT, 0),
                ..FileData::default()
            });
            return Ok(self.files.len() - 1);
        }
        if size < bs {
            let mut content = Vec::with_capacity(size as usize);
            read_exact_size(source, size, |chunk| {
                content.extend_from_slice(chunk);
                Ok(())
            })?;
            self.bytes_in += size;
            let key = (size, *blake3::hash(&content).as_bytes());
            if let Some(idx) = self.lookup(key, size) {
                return Ok(idx);
            }
            let data = self.files.len();
            self.files.push(FileData {
                fragment: (NO_FRAGMENT, 0),
                ..FileData::default()
            });
            if is_zero(&content) {
                // As mksquashfs: an all-zero small file is one hole, no fragment.
                self.files[data].sizes.push(0);
                self.submit(Job {
                    dest: Dest::Block { data, block: 0 },
                    raw: Vec::new(),
                    hole: true,
                })?;
            } else if self.opts.fragments {
                if self.open_fragment.len() + content.len() > self.opts.block_size {
                    self.close_fragment()?;
                }
                let index = self.fragments.len() as u32;
                self.files[data].fragment = (index, self.open_fragment.len() as u32);
                self.open_fragment.extend_from_slice(&content);
            } else {
                self.files[data].sizes.push(0);
                self.submit(Job {
                    dest: Dest::Block { data, block: 0 },
                    raw: content,
                    hole: false,
                })?;
            }
            self.remember(key, data);
            return Ok(data);
        }

        // Large file. Only a file whose size was seen before can be a duplicate:
        // hash it first, so that a duplicate is never compressed. Any other file
        // is read once, hashed while it is compressed.
        let expected = if self.opts.dedup && self.sizes_seen.contains(&size) {
            let mut hasher = blake3::Hasher::new();
            read_exact_size(source, size, |chunk| {
                hasher.update(chunk);
                Ok(())
            })?;
            let key = (size, *hasher.finalize().as_bytes());
            if let Some(idx) = self.lookup(key, size) {
                self.bytes_in += size;
                return Ok(idx);
            }
            Some(key.1)
        } else {
            None
        };
        self.sizes_seen.insert(size);
        self.bytes_in += size;
        let data = self.files.len();
        let n_blocks = size.div_ceil(bs) as usize;
        self.files.push(FileData {
            sizes: vec![0; n_blocks],
            fragment: (NO_FRAGMENT, 0),
            ..FileData::default()
        });
        let mut block = 0;
        let mut buf = Vec::with_capacity(self.opts.block_size);
        let mut rehash = blake3::Hasher::new();
        let bs_usize = self.opts.block_size;
        read_exact_size(source, size, |mut chunk| {
            while !chunk.is_empty() {
                let n = (bs_usize - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk[..n]);
                chunk = &chunk[n..];
                if buf.len() == bs_usize || (block as u64 * bs + buf.len() as u64) == size {
                    rehash.update(&buf);
                    let hole = is_zero(&buf);
                    let raw = if hole {
                        // Keep the buffer: zero blocks are common in sparse files.
                        self.files[data].sparse_bytes += buf.len() as u64;
                        buf.clear();
                        Vec::new()
                    } else {
                        std::mem::replace(&mut buf, Vec::with_capacity(bs_usize))
                    };
                    self.submit(Job {
                        dest: Dest::Block { data, block },
                        raw,
                        hole,
                    })?;
                    block += 1;
                }
            }
            Ok(())
        })?;
        let hash = *rehash.finalize().as_bytes();
        if expected.is_some_and(|expected| expected != hash) {
            return Err(Error::FileChanged {
                path: source_path(source),
                expected: size,
                found: size,
            });
        }
        self.remember((size, hash), data);
        Ok(data)
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

    fn close_fragment(&mut self) -> Result<(), Error> {
        if self.open_fragment.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.open_fragment);
        let index = self.fragments.len();
        self.fragments.push(Fragment::default());
        self.submit(Job {
            dest: Dest::Fragment(index),
            raw,
            hole: false,
        })
    }

    /// Hands a block to the pool at once (reading goes on meanwhile) and writes
    /// the oldest blocks, in submission order, once more than `window` are in flight.
    fn submit(&mut self, job: Job) -> Result<(), Error> {
        let result = if job.hole {
            Pending::Ready {
                raw: Vec::new(),
                packed: None,
            }
        } else {
            let (tx, rx) = mpsc::sync_channel(1);
            let comp = Arc::clone(&self.comp);
            let raw = job.raw;
            self.pool.spawn(move || {
                let packed = comp.compress_data(&raw);
                // The receiver is gone only when the write was abandoned.
                let _ = tx.send((raw, packed));
            });
            Pending::Running(rx)
        };
        self.pending.push_back((job.dest, job.hole, result));
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
        let Some((dest, hole, result)) = self.pending.pop_front() else {
            return Ok(());
        };
        let (raw, packed) = match result {
            Pending::Ready { raw, packed } => (raw, packed),
            Pending::Running(rx) => rx.recv().expect("a compression job panicked"),
        };
        let (bytes, word) = match (&packed, hole) {
            (_, true) => (&[][..], 0),
            (Some(p), false) => (&p[..], p.len() as u32),
            (None, false) => (&raw[..], raw.len() as u32 | RAW_BIT),
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
        self.sink.write_all(bytes).map_err(|source| Error::Write {
            path: self.out_path.to_path_buf(),
            source,
        })?;
        self.pos += bytes.len() as u64;
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
        self.close_fragment()?;
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

fn is_zero(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.as_chunks::<16>();
    words.iter().all(|w| u128::from_ne_bytes(*w) == 0) && rest.iter().all(|b| *b == 0)
}

fn source_path(source: &FileSource) -> std::path::PathBuf {
    match source {
        FileSource::Host { path, .. } => path.clone(),
        FileSource::Bytes(_) => "<generated>".into(),
    }
}

/// Reads exactly `size` bytes of `source` in chunks, failing if it is shorter
/// or longer than that (the file changed since the tree was built).
fn read_exact_size(
    source: &FileSource,
    size: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    match source {
        FileSource::Bytes(bytes) => {
            if bytes.len() as u64 != size {
                return Err(Error::FileChanged {
                    path: source_path(source),
                    expected: size,
                    found: bytes.len() as u64,
                });
            }
            for chunk in bytes.chunks(1 << 20) {
                each(chunk)?;
            }
            Ok(())
        }
        FileSource::Host { path, .. } => {
            let read_err = |source: io::Error| Error::Read {
                path: path.clone(),
                source,
            };
            let mut file = File::open(path).map_err(read_err)?;
            let mut buf = vec![0u8; (1 << 20).min(size.max(1) as usize)];
            let mut done = 0u64;
            while done < size {
                let want = buf.len().min((size - done) as usize);
                let n = match file.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(Error::FileChanged {
                            path: path.clone(),
                            expected: size,
                            found: done,
                        });
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                };
                each(&buf[..n])?;
                done += n as u64;
            }
            let mut probe = [0u8; 1];
            loop {
                match file.read(&mut probe) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {
                        let more = size + 1;
                        return Err(Error::FileChanged {
                            path: path.clone(),
                            expected: size,
                            found: more,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                }
            }
        }
    }
}
