//! The block store: entries packed into immutable, checksummed pack files,
//! written atomically, evicted least-recently-used first, pack by pack.
//!
//! # Format
//!
//! The cache folder `DIR` holds `CACHEDIR.TAG` (so backup tools skip it) and
//! `packs-v1/<16 hex digits>.pack`, the packs. A build appends the entries it
//! stores to its own pack in `packs-v1/tmp/` and renames it into `packs-v1`
//! when the build ends, or earlier once it holds [`Store::open`]'s
//! `pack_limit` bytes, so readers see whole packs only. A pack never changes
//! after that. One file per build rather than one per entry means no 4 KiB
//! of rounding and no inode per entry: the folder takes what the image takes.
//!
//! A pack is, little-endian:
//!
//! | bytes       | field                                                          |
//! |-------------|----------------------------------------------------------------|
//! | 8           | magic `MKPPACK\0`                                              |
//! | 4           | format version, `1`                                            |
//! | 4           | zero                                                           |
//! | per entry   | 32 key, 32 blake3 of key + flags + length + payload, 4 flags (bit 0: the payload is the uncompressed block), 4 payload length, the payload: the bytes the image holds for the block |
//! | 40 × count  | the index: each entry's key and its offset from the pack's start (u64) |
//! | 8           | offset of the index                                            |
//! | 4           | count                                                          |
//! | 4           | format version, `1`                                            |
//! | 32          | blake3 of the index and the three fields above                 |
//! | 8           | magic `MKPINDEX`                                               |
//!
//! [`Store::open`] reads every pack's index (40 bytes an entry) into a map
//! from 128 bits of the key to its place; a lookup then reads the entry and
//! checks all of it, whole key included. A pack whose header, footer or index
//! fails a check is ignored; an entry that fails its checksum is reported as
//! [`Lookup::Bad`]. Either way the pack is damaged: [`Store::flush`] copies
//! its good entries into the build's own pack and removes it. Nothing is
//! synced: a torn pack after a crash fails its checks.
//!
//! A hit sets its pack's mtime to now (once an hour at most), and
//! [`Store::trim`] evicts the packs with the oldest mtimes first. An entry
//! therefore lives as long as the most recently used entry of its pack; a
//! pack holds at most a sixteenth of the size cap, so that costs little.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Key;

/// What a cache folder holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Block entries.
    pub entries: u64,
    /// Bytes of the packs holding them (file sizes).
    pub bytes: u64,
    /// Bytes of the file-hash records.
    pub record_bytes: u64,
}

/// One entry's value: the bytes the image holds for a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The bytes are the uncompressed block (its size word gets the raw bit).
    pub(crate) raw: bool,
    pub(crate) bytes: Vec<u8>,
}

/// The result of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup {
    Hit(Entry),
    Miss,
    /// An entry exists but is damaged.
    Bad,
}

/// The block entries of one cache folder. Shared by threads and processes:
/// every method takes `&self`, and packs only ever appear whole, by rename.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    /// False for [`Store::unusable`].
    usable: bool,
    /// Publish the pack being written once its entries take this many bytes.
    pack_limit: u64,
    /// The packs found by [`Store::open`], and where each key is in them.
    packs: Vec<Pack>,
    index: HashMap<u128, Place>,
    /// Packs whose header, footer or index failed a check at open.
    bad_packs: Vec<PathBuf>,
    pending: Mutex<Pending>,
    /// Entries in the packs this store published.
    published: AtomicU64,
}

/// A pack found at open.
#[derive(Debug)]
struct Pack {
    path: PathBuf,
    modified: SystemTime,
    /// Where the index starts: entries end there.
    index_at: u64,
    /// Opened on the first lookup; `None` if that failed (the pack was evicted).
    file: OnceLock<Option<File>>,
    /// Its mtime was considered for a refresh in this build.
    touched: AtomicBool,
    /// An entry failed its checks in this build.
    damaged: AtomicBool,
}

/// Where an entry is.
#[derive(Debug, Clone, Copy)]
struct Place {
    pack: u32,
    offset: u64,
}

/// The pack this build is writing.
#[derive(Debug, Default)]
struct Pending {
    /// The temp file and its path, once an entry was stored.
    file: Option<(PathBuf, File)>,
    /// Bytes written to the temp file.
    len: u64,
    /// Key and offset of each entry in it.
    index: Vec<(Key, u64)>,
    /// Every key stored by this build, so none is stored twice.
    stored: HashSet<Key>,
}

const PACKS_DIR: &str = "packs-v1";
const TMP_DIR: &str = "tmp";
/// The folder of the format before packs: one file per entry.
const LEGACY_DIR: &str = "blocks-v1";
const TAG_FILE: &str = "CACHEDIR.TAG";
const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
                   # This file is a cache directory tag created by mkportable.\n";

const PACK_MAGIC: &[u8; 8] = b"MKPPACK\0";
const INDEX_MAGIC: &[u8; 8] = b"MKPINDEX";
const VERSION: u32 = 1;
const FLAG_RAW: u32 = 1;
const HEADER_LEN: u64 = 16;
const ENTRY_HEADER_LEN: u64 = 32 + 32 + 4 + 4;
const INDEX_ENTRY_LEN: u64 = 32 + 8;
const FOOTER_LEN: u64 = 8 + 4 + 4 + 32 + 8;
const PACK_SUFFIX: &str = ".pack";
const TMP_PREFIX: &str = ".pack-";

/// The largest pack: 64 MiB, whatever the size cap.
pub(crate) const MAX_PACK_BYTES: u64 = 64 << 20;

/// A hit in a pack younger than this keeps its mtime: warm rebuilds then cost
/// no extra syscall, and an hour is fine-grained enough for eviction.
const REFRESH_AFTER: Duration = Duration::from_secs(60 * 60);
/// Temp files older than this were left by a killed build.
const STALE_TMP_AFTER: Duration = Duration::from_secs(60 * 60);

/// Makes temp and pack names unique within the process (the pid does across processes).
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens the cache folder `dir`, creating it, its `CACHEDIR.TAG` and
    /// `packs-v1` if missing, removes the folder of the earlier format, and
    /// reads the packs' indexes. The pack this build writes is published once
    /// it holds `pack_limit` bytes of entries.
    ///
    /// # Errors
    ///
    /// `dir` cannot be created, no file can be created in `packs-v1`
    /// (checked with a probe file), or `packs-v1` cannot be listed. The error
    /// is the bare I/O error. Packs that cannot be read are left out.
    pub(crate) fn open(dir: &Path, pack_limit: u64) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        write_tag(&dir.join(TAG_FILE))?;
        let root = dir.join(PACKS_DIR);
        fs::create_dir_all(&root)?;
        let probe = root.join(unique_name(".probe-"));
        File::options().write(true).create_new(true).open(&probe)?;
        fs::remove_file(&probe)?;
        // Best effort: another build of an older version may still use it.
        let _ = fs::remove_dir_all(dir.join(LEGACY_DIR));

        let mut store = Store {
            root,
            usable: true,
            pack_limit: pack_limit.max(1),
            packs: Vec::new(),
            index: HashMap::new(),
            bad_packs: Vec::new(),
            pending: Mutex::default(),
            published: AtomicU64::new(0),
        };
        for listed in list_packs(&store.root)? {
            match File::open(&listed.path).and_then(|file| read_index(&file)) {
                Ok(Some((index_at, keys))) => store.add_pack(listed, index_at, keys),
                Ok(None) => store.bad_packs.push(listed.path),
                // Evicted meanwhile, or unreadable: as if it were not there.
                Err(_) => {}
            }
        }
        Ok(store)
    }

    fn add_pack(&mut self, listed: Listed, index_at: u64, keys: Vec<(Key, u64)>) {
        let Ok(pack) = u32::try_from(self.packs.len()) else {
            return;
        };
        self.packs.push(Pack {
            path: listed.path,
            modified: listed.modified,
            index_at,
            file: OnceLock::new(),
            touched: AtomicBool::new(false),
            damaged: AtomicBool::new(false),
        });
        for (key, offset) in keys {
            // Packs are listed by name: the first copy of a key wins.
            self.index
                .entry(key.short())
                .or_insert(Place { pack, offset });
        }
    }

    /// A store that finds nothing (used when the folder cannot be opened).
    pub(crate) fn unusable(dir: &Path) -> Store {
        Store {
            root: dir.join(PACKS_DIR),
            usable: false,
            pack_limit: MAX_PACK_BYTES,
            packs: Vec::new(),
            index: HashMap::new(),
            bad_packs: Vec::new(),
            pending: Mutex::default(),
            published: AtomicU64::new(0),
        }
    }

    /// Entries in the packs published so far: stored for later builds.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Packs found damaged at open (each counts as one bad entry).
    pub(crate) fn bad_at_open(&self) -> u64 {
        self.bad_packs.len() as u64
    }

    /// Looks `key` up in the packs found at open (not in what this build
    /// stored). A damaged entry marks its pack for [`Store::flush`] and is
    /// reported as [`Lookup::Bad`]; an entry that cannot be read is a
    /// [`Lookup::Miss`]. A hit marks its pack as recently used.
    pub(crate) fn get(&self, key: &Key) -> Lookup {
        let Some(place) = self.index.get(&key.short()) else {
            return Lookup::Miss;
        };
        let pack = &self.packs[place.pack as usize];
        let Some(file) = pack.file.get_or_init(|| File::open(&pack.path).ok()) else {
            return Lookup::Miss;
        };
        match read_entry(file, place.offset, pack.index_at, key) {
            Ok(Some(entry)) => {
                if !pack.touched.swap(true, Ordering::Relaxed) {
                    refresh(file, pack.modified);
                }
                Lookup::Hit(entry)
            }
            Ok(None) => {
                pack.damaged.store(true, Ordering::Relaxed);
                Lookup::Bad
            }
            Err(_) => Lookup::Miss,
        }
    }

    /// Stores `bytes` under `key` (`raw`: they are the uncompressed block) in
    /// this build's pack, unless this build stored the key already.
    ///
    /// # Errors
    ///
    /// The bare I/O error (`ENOSPC`, `EROFS`, `EACCES`…) of creating or
    /// writing the pack, or of publishing it once full. The entries written
    /// before are then published if they can be, else removed.
    /// `InvalidInput` for a payload of 4 GiB or more; `Other` for an
    /// [`Store::unusable`] store.
    pub(crate) fn put(&self, key: &Key, raw: bool, bytes: &[u8]) -> io::Result<()> {
        if !self.usable {
            return Err(io::Error::other("the cache is not usable"));
        }
        let header = entry_header(key, raw, bytes)?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.stored.contains(key) {
            return Ok(());
        }
        if let Err(e) = self.append(&mut pending, key, &header, bytes) {
            // Keep what fitted (the disk may be full): cut the partial entry
            // and publish the entries before it.
            let cut = pending
                .file
                .as_ref()
                .is_some_and(|(_, file)| file.set_len(pending.len).is_ok());
            if !(cut && !pending.index.is_empty() && self.publish(&mut pending).is_ok()) {
                discard(&mut pending);
            }
            return Err(e);
        }
        if pending.len >= self.pack_limit {
            if let Err(e) = self.publish(&mut pending) {
                discard(&mut pending);
                return Err(e);
            }
        }
        Ok(())
    }

    fn append(
        &self,
        pending: &mut Pending,
        key: &Key,
        header: &[u8],
        bytes: &[u8],
    ) -> io::Result<()> {
        if pending.file.is_none() {
            let (path, mut file) = create_tmp(&self.root.join(TMP_DIR))?;
            // Recorded first, so a failed header write still removes the file.
            let header = pack_header();
            pending.len = 0;
            let res = file.write_all(&header);
            pending.file = Some((path, file));
            res?;
            pending.len = HEADER_LEN;
        }
        let Some((_, file)) = &mut pending.file else {
            unreachable!("created above");
        };
        file.write_all(header)?;
        file.write_all(bytes)?;
        pending.index.push((*key, pending.len));
        pending.len += header.len() as u64 + bytes.len() as u64;
        pending.stored.insert(*key);
        Ok(())
    }

    /// Writes the index and footer of the pending pack and renames it into place.
    fn publish(&self, pending: &mut Pending) -> io::Result<()> {
        let Some((tmp, file)) = pending.file.take() else {
            return Ok(());
        };
        let index = std::mem::take(&mut pending.index);
        let tail = index_and_footer(pending.len, &index);
        let name = unique_name("") + PACK_SUFFIX;
        // At the end of the entries, wherever a failed write left the cursor.
        let res = file
            .write_all_at(&tail, pending.len)
            .and_then(|()| fs::rename(&tmp, self.root.join(&name)));
        drop(file);
        match &res {
            Ok(()) => {
                self.published
                    .fetch_add(index.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                let _ = fs::remove_file(&tmp);
                for (key, _) in &index {
                    pending.stored.remove(key);
                }
            }
        }
        pending.len = 0;
        res
    }

    /// Ends the build's writes: copies the good entries of every damaged pack
    /// into this build's pack, publishes it, and removes the damaged packs.
    /// Returns the number of entries copied.
    ///
    /// # Errors
    ///
    /// As [`Store::put`]; or a damaged pack cannot be removed.
    pub(crate) fn flush(&self) -> io::Result<u64> {
        if !self.usable {
            return Ok(0);
        }
        let mut copied = 0;
        let damaged: Vec<&Pack> = self
            .packs
            .iter()
            .filter(|p| p.damaged.load(Ordering::Relaxed))
            .collect();
        for pack in &damaged {
            for (key, raw, bytes) in good_entries(pack) {
                let new = !self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .stored
                    .contains(&key);
                self.put(&key, raw, &bytes)?;
                copied += u64::from(new);
            }
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.publish(&mut pending) {
                discard(&mut pending);
                return Err(e);
            }
        }
        for path in damaged.iter().map(|p| &p.path).chain(&self.bad_packs) {
            remove_if_present(path)?;
        }
        Ok(copied)
    }

    /// Evicts least recently used packs (oldest mtime first, then by name)
    /// until they take at most 90 % of `max_bytes`, if they take more than
    /// `max_bytes`; also removes temp files older than an hour. Returns the
    /// number of entries evicted. Files another process removes meanwhile are
    /// skipped.
    ///
    /// # Errors
    ///
    /// A folder cannot be listed or a pack cannot be removed.
    pub(crate) fn trim(&self, max_bytes: u64) -> io::Result<u64> {
        if !self.usable {
            return Ok(0);
        }
        // Not `SystemTime::now` in the image: the clock only orders evictions.
        let now = SystemTime::now();
        for tmp in list_files(&self.root.join(TMP_DIR), |_| true)? {
            if now
                .duration_since(tmp.modified)
                .is_ok_and(|age| age > STALE_TMP_AFTER)
            {
                remove_if_present(&tmp.path)?;
            }
        }
        let mut packs = list_packs(&self.root)?;
        let mut total: u64 = packs.iter().map(|p| p.len).sum();
        if total <= max_bytes {
            return Ok(0);
        }
        let target = max_bytes - max_bytes.div_ceil(10);
        packs.sort_by(|a, b| (a.modified, &a.path).cmp(&(b.modified, &b.path)));
        let mut evicted = 0;
        for pack in &packs {
            if total <= target {
                break;
            }
            let count = entry_count(&pack.path);
            if remove_if_present(&pack.path)? {
                evicted += count;
            }
            total -= pack.len;
        }
        Ok(evicted)
    }
}

impl Drop for Store {
    /// Publishes what a build stored but did not [`Store::flush`] (it failed
    /// or panicked part-way): the entries are good whatever became of the image.
    fn drop(&mut self) {
        let pending = self.pending.get_mut().unwrap_or_else(|e| e.into_inner());
        if pending.file.is_some() {
            let mut pending = std::mem::take(pending);
            if self.publish(&mut pending).is_err() {
                discard(&mut pending);
            }
        }
    }
}

impl Key {
    /// The key's first 128 bits, for the in-memory index.
    fn short(&self) -> u128 {
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&self.0[..16]);
        u128::from_le_bytes(bytes)
    }
}

/// Counts the entries of the cache folder `dir` (temp files aside) and the
/// size of its file-hash records. A missing folder holds nothing; a damaged
/// pack counts its bytes and no entry.
///
/// # Errors
///
/// A folder or file cannot be listed or inspected.
pub(crate) fn stats(dir: &Path) -> io::Result<CacheStats> {
    let packs = list_packs(&dir.join(PACKS_DIR))?;
    let mut record_bytes = 0;
    for name in records_files() {
        record_bytes += match fs::metadata(dir.join(name)) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
    }
    Ok(CacheStats {
        entries: packs.iter().map(|p| entry_count(&p.path)).sum(),
        bytes: packs.iter().map(|p| p.len).sum(),
        record_bytes,
    })
}

/// Removes `packs-v1`, the folder of the earlier format and the file-hash
/// records from the cache folder `dir`; returns its [`stats`] from before. A
/// missing folder holds nothing.
///
/// # Errors
///
/// A folder cannot be listed or a file cannot be removed.
pub(crate) fn clear(dir: &Path) -> io::Result<CacheStats> {
    let before = stats(dir)?;
    for folder in [PACKS_DIR, LEGACY_DIR] {
        match fs::remove_dir_all(dir.join(folder)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    for name in records_files() {
        remove_if_present(&dir.join(name))?;
    }
    Ok(before)
}

/// The `--trust-stat` records file, and those of earlier formats.
fn records_files() -> impl Iterator<Item = &'static str> {
    std::iter::once(super::stat::FILE_NAME).chain(super::stat::OLD_FILE_NAMES.iter().copied())
}

/// Writes the cache directory tag unless a file is already there.
fn write_tag(path: &Path) -> io::Result<()> {
    // `create_new`, so two processes opening a new folder do not clobber each other.
    match File::options().write(true).create_new(true).open(path) {
        Ok(mut file) => file.write_all(TAG.as_bytes()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `prefix` and 16 hex digits unique among processes, threads and builds:
/// a hash of the pid, a counter and the clock.
fn unique_name(prefix: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(&nanos.to_le_bytes());
    let hex: String = h.finalize().as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}{hex}")
}

/// Creates a fresh temp pack in `folder`, creating the folder if missing.
fn create_tmp(folder: &Path) -> io::Result<(PathBuf, File)> {
    let mut created_folder = false;
    loop {
        let tmp = folder.join(unique_name(TMP_PREFIX));
        match File::options().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !created_folder => {
                fs::create_dir_all(folder)?;
                created_folder = true;
            }
            // The counter has moved on, so the next name differs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

/// Removes the pending pack's temp file and forgets what it held.
fn discard(pending: &mut Pending) {
    if let Some((tmp, file)) = pending.file.take() {
        drop(file);
        let _ = fs::remove_file(tmp);
    }
    for (key, _) in pending.index.drain(..) {
        pending.stored.remove(&key);
    }
    pending.len = 0;
}

/// Removes the file at `path`; `false` if it was already gone.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A pack's first 16 bytes.
fn pack_header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..8].copy_from_slice(PACK_MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// The header of an entry holding `payload` (see the module docs).
fn entry_header(
    key: &Key,
    raw: bool,
    payload: &[u8],
) -> io::Result<[u8; ENTRY_HEADER_LEN as usize]> {
    let Ok(len) = u32::try_from(payload.len()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a cache entry must be smaller than 4 GiB",
        ));
    };
    let flags = if raw { FLAG_RAW } else { 0 };
    let mut header = [0; ENTRY_HEADER_LEN as usize];
    header[0..32].copy_from_slice(&key.0);
    header[64..68].copy_from_slice(&flags.to_le_bytes());
    header[68..72].copy_from_slice(&len.to_le_bytes());
    let sum = entry_checksum(&header, payload);
    header[32..64].copy_from_slice(&sum);
    Ok(header)
}

/// blake3 of an entry's key, flags and length fields followed by its payload.
fn entry_checksum(header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&header[0..32]);
    hasher.update(&header[64..72]);
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// The index of entries at `index` and the footer of a pack whose index starts at `index_at`.
fn index_and_footer(index_at: u64, index: &[(Key, u64)]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(index.len() * INDEX_ENTRY_LEN as usize + FOOTER_LEN as usize);
    for (key, offset) in index {
        tail.extend_from_slice(&key.0);
        tail.extend_from_slice(&offset.to_le_bytes());
    }
    let count = u32::try_from(index.len()).expect("fewer than 2^32 entries in a pack");
    tail.extend_from_slice(&index_at.to_le_bytes());
    tail.extend_from_slice(&count.to_le_bytes());
    tail.extend_from_slice(&VERSION.to_le_bytes());
    let sum = blake3::hash(&tail);
    tail.extend_from_slice(sum.as_bytes());
    tail.extend_from_slice(INDEX_MAGIC);
    tail
}

/// Where a pack's index starts, and each entry's key and offset.
type PackIndex = (u64, Vec<(Key, u64)>);

/// Reads a pack's index: where it starts and each entry's key and offset;
/// `Ok(None)` if the header, footer or index fails a check, `Err` if the pack
/// cannot be read.
fn read_index(file: &File) -> io::Result<Option<PackIndex>> {
    let len = file.metadata()?.len();
    if len < HEADER_LEN + FOOTER_LEN {
        return Ok(None);
    }
    let mut header = [0; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    let mut footer = [0; FOOTER_LEN as usize];
    file.read_exact_at(&mut footer, len - FOOTER_LEN)?;
    let (index_at, count) = (le_u64(&footer, 0), u64::from(le_u32(&footer, 8)));
    if header != pack_header()
        || &footer[48..56] != INDEX_MAGIC
        || le_u32(&footer, 12) != VERSION
        || index_at < HEADER_LEN
        || index_at.checked_add(count * INDEX_ENTRY_LEN + FOOTER_LEN) != Some(len)
    {
        return Ok(None);
    }
    // The length matches the file's, so this allocates no more than is there.
    let mut tail = vec![0; (count * INDEX_ENTRY_LEN + 16) as usize];
    file.read_exact_at(&mut tail, index_at)?;
    if blake3::hash(&tail).as_bytes() != &footer[16..48] {
        return Ok(None);
    }
    let mut keys = Vec::with_capacity(count as usize);
    for raw in tail.chunks_exact(INDEX_ENTRY_LEN as usize) {
        let offset = le_u64(raw, 32);
        if offset < HEADER_LEN || offset.saturating_add(ENTRY_HEADER_LEN) > index_at {
            return Ok(None);
        }
        keys.push((Key(raw[..32].try_into().expect("32 bytes")), offset));
    }
    Ok(Some((index_at, keys)))
}

/// The number of entries a pack's footer gives (0 if it cannot be read).
fn entry_count(path: &Path) -> u64 {
    File::open(path)
        .and_then(|file| read_index(&file))
        .ok()
        .flatten()
        .map_or(0, |(_, keys)| keys.len() as u64)
}

/// Reads the entry at `offset` of a pack whose entries end at `end`, which
/// the index says is `key`'s: `Ok(None)` if it fails a check.
fn read_entry(file: &File, offset: u64, end: u64, key: &Key) -> io::Result<Option<Entry>> {
    let mut header = [0; ENTRY_HEADER_LEN as usize];
    file.read_exact_at(&mut header, offset)?;
    let (flags, len) = (le_u32(&header, 64), le_u32(&header, 68));
    if header[..32] != key.0
        || flags & !FLAG_RAW != 0
        || offset + ENTRY_HEADER_LEN + u64::from(len) > end
    {
        return Ok(None);
    }
    // The length is within the file, so this allocates no more than is there.
    let mut bytes = vec![0; len as usize];
    file.read_exact_at(&mut bytes, offset + ENTRY_HEADER_LEN)?;
    if entry_checksum(&header, &bytes) != header[32..64] {
        return Ok(None);
    }
    Ok(Some(Entry {
        raw: flags & FLAG_RAW != 0,
        bytes,
    }))
}

/// The entries of a damaged pack that pass their checks (none if its index fails).
fn good_entries(pack: &Pack) -> Vec<(Key, bool, Vec<u8>)> {
    let Some(Some(file)) = pack.file.get() else {
        return Vec::new();
    };
    let Ok(Some((index_at, keys))) = read_index(file) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|(key, offset)| {
            let entry = read_entry(file, *offset, index_at, key).ok()??;
            Some((*key, entry.raw, entry.bytes))
        })
        .collect()
}

/// Marks a pack with a hit as recently used, unless it was within the hour.
/// Failures (a read-only folder) are ignored: the pack is still good.
fn refresh(file: &File, modified: SystemTime) {
    // Not `SystemTime::now` in the image: the clock only orders evictions.
    let now = SystemTime::now();
    let recent = now
        .duration_since(modified)
        .is_ok_and(|age| age < REFRESH_AFTER);
    if !recent {
        // Setting explicit times needs ownership, not a writable descriptor.
        let _ = file.set_modified(now);
    }
}

/// A file found by [`list_files`].
#[derive(Debug)]
struct Listed {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// The packs in `root`, sorted by name; a missing `root` holds none.
fn list_packs(root: &Path) -> io::Result<Vec<Listed>> {
    let mut packs = list_files(root, is_pack_name)?;
    packs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(packs)
}

/// The regular files in `folder` whose names pass `keep`. Files that vanish
/// meanwhile are skipped; a missing folder is empty.
fn list_files(folder: &Path, keep: impl Fn(&OsStr) -> bool) -> io::Result<Vec<Listed>> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !keep(&entry.file_name()) {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            files.push(Listed {
                path: entry.path(),
                len: meta.len(),
                modified: meta.modified().unwrap_or(UNIX_EPOCH),
            });
        }
    }
    Ok(files)
}

/// 16 lowercase hex digits and `.pack`, as [`Store::flush`] names packs.
fn is_pack_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.len() == 16 + PACK_SUFFIX.len()
        && bytes.ends_with(PACK_SUFFIX.as_bytes())
        && bytes[..16]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;

    fn key(n: u8) -> Key {
        Key(*blake3::hash(&[n]).as_bytes())
    }

    fn hit(lookup: Lookup) -> Entry {
        match lookup {
            Lookup::Hit(entry) => entry,
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    fn open(dir: &Path) -> Store {
        Store::open(dir, MAX_PACK_BYTES).unwrap()
    }

    /// Stores `entries` (key number, raw, bytes) as one build and flushes.
    fn build(dir: &Path, entries: &[(u8, bool, Vec<u8>)]) {
        let store = open(dir);
        for (n, raw, bytes) in entries {
            store.put(&key(*n), *raw, bytes).unwrap();
        }
        store.flush().unwrap();
    }

    fn packs(dir: &Path) -> Vec<PathBuf> {
        list_packs(&dir.join(PACKS_DIR))
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    fn set_mtime(path: &Path, mtime: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    fn mtime(path: &Path) -> SystemTime {
        fs::metadata(path).unwrap().modified().unwrap()
    }

    /// Rewrites the file at `path` with `edit` applied to its bytes.
    fn edit(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = fs::read(path).unwrap();
        edit(&mut bytes);
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn store_is_sync() {
        fn assert_sync<T: Sync + Send>() {}
        assert_sync::<Store>();
    }

    #[test]
    fn a_flushed_build_is_one_pack_that_the_next_build_reads() {
        let cases: Vec<(u8, bool, Vec<u8>)> = vec![
            (0, true, Vec::new()),
            (1, false, b"abc".to_vec()),
            (2, true, noise(4096, 1)),
            (3, false, noise(1 << 20, 2)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for (n, raw, bytes) in &cases {
            store.put(&key(*n), *raw, bytes).unwrap();
        }
        // What this build stored is not looked up before it is published.
        assert!(matches!(store.get(&key(1)), Lookup::Miss));
        // A second put of a key in one build is not stored twice.
        store.put(&key(1), false, b"abc").unwrap();
        assert_eq!(store.published(), 0);
        assert_eq!(store.flush().unwrap(), 0);
        assert_eq!(store.published(), 4);
        assert!(!dir
            .path()
            .join(PACKS_DIR)
            .join(TMP_DIR)
            .read_dir()
            .unwrap()
            .any(|_| true));

        let packs = packs(dir.path());
        assert_eq!(packs.len(), 1);
        let payload: u64 = cases.iter().map(|(_, _, b)| b.len() as u64).sum();
        let expect = HEADER_LEN + 4 * (ENTRY_HEADER_LEN + INDEX_ENTRY_LEN) + payload + FOOTER_LEN;
        assert_eq!(fs::metadata(&packs[0]).unwrap().len(), expect);
        assert_eq!(
            stats(dir.path()).unwrap(),
            CacheStats {
                entries: 4,
                bytes: expect,
                record_bytes: 0
            }
        );

        let store = open(dir.path());
        for (n, raw, bytes) in &cases {
            let entry = hit(store.get(&key(*n)));
            assert_eq!((entry.raw, &entry.bytes), (*raw, bytes), "key {n}");
        }
        assert!(matches!(store.get(&key(9)), Lookup::Miss));
        assert_eq!(store.bad_at_open(), 0);
    }

    #[test]
    fn a_full_pack_is_published_and_the_next_one_begun() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 3000).unwrap();
        for n in 0..7 {
            store.put(&key(n), false, &noise(1000, n.into())).unwrap();
            // Published as soon as it holds 3000 bytes: after the third entry.
            assert_eq!(packs(dir.path()).len(), usize::from(n + 1) / 3, "after {n}");
        }
        store.flush().unwrap();
        assert_eq!(packs(dir.path()).len(), 3);
        let store = open(dir.path());
        for n in 0..7 {
            assert_eq!(hit(store.get(&key(n))).bytes, noise(1000, n.into()));
        }
    }

    #[test]
    fn an_unflushed_store_publishes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store.put(&key(1), true, b"kept").unwrap();
        }
        assert_eq!(hit(open(dir.path()).get(&key(1))).bytes, b"kept");
    }

    /// Builds a pack of keys 1..=3, damages it with `damage`, and returns the
    /// lookups of a new store, what its flush copied, and the folder.
    fn damaged(damage: impl FnOnce(&Path)) -> (Vec<Lookup>, u64, u64, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        build(
            dir.path(),
            &[
                (1, true, noise(1000, 1)),
                (2, false, noise(1000, 4)),
                (3, true, noise(1000, 6)),
            ],
        );
        damage(&packs(dir.path())[0]);
        let store = open(dir.path());
        let lookups = (1..=3).map(|n| store.get(&key(n))).collect();
        let copied = store.flush().unwrap();
        (lookups, copied, store.bad_at_open(), dir)
    }

    /// An edit of a pack's bytes.
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;

    /// The offset of the second entry's payload.
    const SECOND_PAYLOAD: u64 = HEADER_LEN + ENTRY_HEADER_LEN + 1000 + ENTRY_HEADER_LEN;

    #[test]
    fn a_damaged_entry_is_bad_and_its_pack_replaced_by_the_good_entries() {
        fn at(n: u64) -> usize {
            usize::try_from(n).unwrap()
        }
        let cases: [(&str, Damage); 5] = [
            (
                "payload byte flipped",
                Box::new(|b| b[at(SECOND_PAYLOAD + 500)] ^= 1),
            ),
            (
                "checksum byte flipped",
                Box::new(|b| b[at(SECOND_PAYLOAD) - 20] ^= 0x80),
            ),
            (
                "key byte flipped",
                Box::new(|b| b[at(SECOND_PAYLOAD - ENTRY_HEADER_LEN) + 3] ^= 1),
            ),
            ("raw flag set", Box::new(|b| b[at(SECOND_PAYLOAD) - 8] = 1)),
            (
                "length too big",
                Box::new(|b| b[at(SECOND_PAYLOAD) - 3] += 1),
            ),
        ];
        for (what, damage) in cases {
            let (lookups, copied, bad_at_open, dir) = damaged(|p| edit(p, damage));
            assert!(matches!(lookups[0], Lookup::Hit(_)), "{what}");
            assert!(
                matches!(lookups[1], Lookup::Bad),
                "{what}: {:?}",
                lookups[1]
            );
            assert!(matches!(lookups[2], Lookup::Hit(_)), "{what}");
            assert_eq!((copied, bad_at_open), (2, 0), "{what}");
            // The damaged pack is gone; its good entries are in a new one.
            let store = open(dir.path());
            assert_eq!(packs(dir.path()).len(), 1, "{what}");
            assert_eq!(hit(store.get(&key(1))).bytes, noise(1000, 1), "{what}");
            assert!(matches!(store.get(&key(2)), Lookup::Miss), "{what}");
            assert_eq!(hit(store.get(&key(3))).bytes, noise(1000, 6), "{what}");
        }
    }

    #[test]
    fn a_pack_with_a_damaged_index_is_ignored_and_removed() {
        let cases: [(&str, Damage); 9] = [
            (
                "index byte flipped",
                Box::new(|b| {
                    let n = b.len();
                    b[n - 70] ^= 1
                }),
            ),
            (
                "footer checksum flipped",
                Box::new(|b| {
                    let n = b.len();
                    b[n - 20] ^= 1
                }),
            ),
            (
                "foreign version",
                Box::new(|b| {
                    let n = b.len();
                    b[n - 44] += 1
                }),
            ),
            (
                "bad index magic",
                Box::new(|b| {
                    let n = b.len();
                    b[n - 1] = b'Y'
                }),
            ),
            ("bad pack magic", Box::new(|b| b[0] = b'X')),
            ("foreign pack version", Box::new(|b| b[8] += 1)),
            ("truncated by one", Box::new(|b| b.truncate(b.len() - 1))),
            ("truncated to half", Box::new(|b| b.truncate(b.len() / 2))),
            ("trailing byte", Box::new(|b| b.push(0))),
        ];
        for (what, damage) in cases {
            let (lookups, copied, bad_at_open, dir) = damaged(|p| edit(p, damage));
            let missed = lookups.iter().filter(|l| matches!(l, Lookup::Miss));
            assert_eq!(missed.count(), 3, "{what}");
            assert_eq!((copied, bad_at_open), (0, 1), "{what}");
            assert!(packs(dir.path()).is_empty(), "{what}: the pack is removed");
        }
        let (lookups, _, bad_at_open, _) = damaged(|p| fs::write(p, b"").unwrap());
        assert!(lookups.iter().all(|l| matches!(l, Lookup::Miss)));
        assert_eq!(bad_at_open, 1, "an empty pack");
    }

    #[test]
    fn a_hit_refreshes_an_old_pack_mtime_only() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &[(1, false, b"x".to_vec())]);
        let path = packs(dir.path()).remove(0);
        let now = SystemTime::now();

        let recent = now - Duration::from_secs(30 * 60);
        set_mtime(&path, recent);
        hit(open(dir.path()).get(&key(1)));
        assert_eq!(mtime(&path), recent);

        set_mtime(&path, now - Duration::from_secs(2 * 60 * 60));
        hit(open(dir.path()).get(&key(1)));
        assert!(mtime(&path) >= now - Duration::from_secs(60));
    }

    /// One pack per key `n` with 100 bytes, aged as given; returns each pack's path.
    fn aged_packs(dir: &Path, ages: &[(u8, u64)]) -> HashMap<u8, PathBuf> {
        let base = SystemTime::now() - Duration::from_secs(10 * 24 * 60 * 60);
        let mut paths = HashMap::new();
        for &(n, secs) in ages {
            let before = packs(dir);
            build(dir, &[(n, false, vec![n; 100])]);
            let path = packs(dir)
                .into_iter()
                .find(|p| !before.contains(p))
                .unwrap();
            set_mtime(&path, base + Duration::from_secs(secs));
            paths.insert(n, path);
        }
        paths
    }

    const ONE_ENTRY_PACK: u64 = HEADER_LEN + ENTRY_HEADER_LEN + 100 + INDEX_ENTRY_LEN + FOOTER_LEN;

    #[test]
    fn trim_evicts_least_recently_used_packs_first() {
        let dir = tempfile::tempdir().unwrap();
        // (key, mtime in seconds after base); keys 5 and 6 tie on mtime.
        let ages = [
            (0, 70),
            (1, 10),
            (2, 50),
            (3, 40),
            (4, 80),
            (5, 30),
            (6, 30),
            (7, 60),
        ];
        let paths = aged_packs(dir.path(), &ages);
        let store = open(dir.path());
        assert_eq!(
            store.trim(8 * ONE_ENTRY_PACK).unwrap(),
            0,
            "at the cap, nothing goes"
        );

        // Over a cap of 5.5 packs, trimming goes down to 90 % of it: 4 packs.
        let cap = 5 * ONE_ENTRY_PACK + ONE_ENTRY_PACK / 2;
        assert_eq!(store.trim(cap).unwrap(), 4);
        for (n, _) in ages {
            assert_eq!(paths[&n].exists(), ![1, 5, 6, 3].contains(&n), "key {n}");
        }
        let left = stats(dir.path()).unwrap().bytes;
        assert!(left <= cap * 9 / 10, "{left} bytes left");
    }

    #[test]
    fn trim_evicts_ties_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let paths = aged_packs(dir.path(), &[(5, 0), (6, 0)]);
        let first = if paths[&5] < paths[&6] { 5 } else { 6 };
        assert_eq!(open(dir.path()).trim(2 * ONE_ENTRY_PACK - 1).unwrap(), 1);
        assert!(!paths[&first].exists());
        assert!(paths[&(11 - first)].exists());
    }

    #[test]
    fn trim_removes_stale_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &[(1, false, b"x".to_vec())]);
        let tmp = dir.path().join(PACKS_DIR).join(TMP_DIR);
        let stale = tmp.join(".pack-stale");
        let fresh = tmp.join(".pack-fresh");
        let other = dir.path().join(PACKS_DIR).join("README");
        for path in [&stale, &fresh, &other] {
            fs::write(path, b"partial").unwrap();
            set_mtime(path, SystemTime::now() - Duration::from_secs(2 * 60 * 60));
        }
        set_mtime(&fresh, SystemTime::now() - Duration::from_secs(60));
        let store = open(dir.path());
        assert_eq!(store.trim(u64::MAX).unwrap(), 0);
        assert!(!stale.exists());
        assert!(fresh.exists());
        assert!(
            other.exists(),
            "files the store did not write are left alone"
        );
        hit(store.get(&key(1)));
    }

    #[test]
    fn stats_and_clear_count_packs_and_records_and_remove_the_old_format() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(stats(&missing).unwrap(), CacheStats::default());
        assert_eq!(clear(&missing).unwrap(), CacheStats::default());
        assert!(!missing.exists());

        let legacy = dir.path().join(LEGACY_DIR).join("ab");
        fs::create_dir_all(&legacy).unwrap();
        fs::write(legacy.join("entry"), b"old").unwrap();
        let store = open(dir.path());
        assert!(
            !dir.path().join(LEGACY_DIR).exists(),
            "open removes the old format"
        );
        assert_eq!(stats(dir.path()).unwrap(), CacheStats::default());
        for (n, len) in [(1, 10), (2, 20), (3, 30)] {
            store.put(&key(n), true, &vec![0; len]).unwrap();
        }
        store.flush().unwrap();
        fs::write(
            dir.path().join(PACKS_DIR).join(TMP_DIR).join(".pack-x"),
            b"not counted",
        )
        .unwrap();
        fs::write(dir.path().join(crate::cache::stat::FILE_NAME), b"records").unwrap();
        fs::write(dir.path().join("stat-v1"), b"old").unwrap();
        fs::create_dir_all(dir.path().join(LEGACY_DIR)).unwrap();
        let expect = CacheStats {
            entries: 3,
            bytes: HEADER_LEN + 3 * (ENTRY_HEADER_LEN + INDEX_ENTRY_LEN) + 60 + FOOTER_LEN,
            record_bytes: 10,
        };
        assert_eq!(stats(dir.path()).unwrap(), expect);
        assert_eq!(clear(dir.path()).unwrap(), expect);
        assert_eq!(stats(dir.path()).unwrap(), CacheStats::default());
        for gone in [
            PACKS_DIR,
            LEGACY_DIR,
            crate::cache::stat::FILE_NAME,
            "stat-v1",
        ] {
            assert!(!dir.path().join(gone).exists(), "{gone}");
        }
        assert!(dir.path().join(TAG_FILE).exists());
        // A store opened before recreates its folders.
        store.put(&key(4), true, b"again").unwrap();
        store.flush().unwrap();
        hit(open(dir.path()).get(&key(4)));
    }

    #[test]
    fn open_writes_the_tag_once_and_leaves_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("a/b");
        open(&cache);
        let tag = fs::read_to_string(cache.join(TAG_FILE)).unwrap();
        assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
        assert!(tag.contains("# This file is a cache directory tag created by mkportable."));
        assert_eq!(fs::read_dir(cache.join(PACKS_DIR)).unwrap().count(), 0);

        fs::write(cache.join(TAG_FILE), "kept").unwrap();
        open(&cache);
        assert_eq!(fs::read_to_string(cache.join(TAG_FILE)).unwrap(), "kept");
    }

    #[test]
    fn open_fails_where_no_folder_can_be() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        for path in [file.clone(), file.join("sub")] {
            assert!(
                Store::open(&path, MAX_PACK_BYTES).is_err(),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn an_unusable_store_finds_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &[(1, false, b"x".to_vec())]);
        let store = Store::unusable(dir.path());
        assert!(matches!(store.get(&key(1)), Lookup::Miss));
        assert!(store.put(&key(2), false, b"y").is_err());
        assert_eq!(store.flush().unwrap(), 0);
        assert_eq!(store.trim(0).unwrap(), 0);
        drop(store);
        assert_eq!(packs(dir.path()).len(), 1);
        hit(open(dir.path()).get(&key(1)));
    }

    #[test]
    fn a_failed_write_removes_the_pack_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.put(&key(1), false, b"x").unwrap();
        // Publishing fails: a folder stands where the pack's tmp folder is read.
        let tmp = dir.path().join(PACKS_DIR).join(TMP_DIR);
        let before: Vec<_> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(before.len(), 1);
        fs::remove_dir_all(dir.path().join(PACKS_DIR)).unwrap();
        assert!(store.flush().is_err());
        assert_eq!(store.published(), 0);
        // Nothing left behind, and the next build starts a new pack.
        drop(store);
        assert!(!dir.path().join(PACKS_DIR).exists());
        let store = open(dir.path());
        store.put(&key(1), false, b"x").unwrap();
        store.flush().unwrap();
        hit(open(dir.path()).get(&key(1)));
    }

    #[test]
    fn concurrent_builds_of_one_folder_leave_good_packs() {
        let dir = tempfile::tempdir().unwrap();
        // Two stores on one folder stand in for two processes.
        let stores = [open(dir.path()), open(dir.path())];
        std::thread::scope(|scope| {
            for thread in 0..8u8 {
                let store = &stores[usize::from(thread % 2)];
                scope.spawn(move || {
                    // Both stores write the same 80 keys.
                    for n in 0..20u8 {
                        let n = n * 4 + thread / 2;
                        store.put(&key(n), false, &noise(4096, n.into())).unwrap();
                    }
                });
            }
        });
        for store in &stores {
            store.flush().unwrap();
        }
        assert_eq!(packs(dir.path()).len(), 2);
        let store = open(dir.path());
        for k in 0..4u8 {
            for n in 0..20u8 {
                let n = n * 4 + k;
                assert_eq!(hit(store.get(&key(n))).bytes, noise(4096, n.into()));
            }
        }
        assert_eq!(stats(dir.path()).unwrap().entries, 160);
    }
}
