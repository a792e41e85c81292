//! The block store: one checksummed file per entry, written atomically,
//! evicted least-recently-used first.
//!
//! # Format
//!
//! The cache folder `DIR` holds `CACHEDIR.TAG` (so backup tools skip it) and
//! `blocks-v1/<first two hex digits>/<64 hex digits of the key>`, one file per
//! entry. An entry file is, little-endian:
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 8     | magic `MKPCACHE`                                             |
//! | 4     | format version, `1`                                          |
//! | 4     | flags: bit 0 set when the payload is the uncompressed block  |
//! | 4     | payload length                                               |
//! | 32    | the key                                                      |
//! | 32    | blake3 of flags, length, key and payload (as stored above)   |
//! | n     | payload: the bytes the image holds for the block             |
//!
//! An entry is used only if every field checks out and the file is exactly
//! header plus payload long; anything else is reported as [`Lookup::Bad`] and
//! removed. Writers write a `.tmp-<pid>-<counter>-<key>` file next to the entry
//! and rename it over the entry, so readers see an old entry or a whole new
//! one. Nothing is synced: a torn entry after a crash fails its checksum. A hit
//! sets the entry's mtime to now, and [`Store::trim`] evicts the oldest mtimes
//! first.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::Key;

/// What a cache folder holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Block entries.
    pub entries: u64,
    /// Bytes of block entries (file sizes).
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
    /// An entry exists but is damaged, truncated or from another format version.
    Bad,
}

/// The block entries of one cache folder. Shared by threads and processes:
/// every method takes `&self` and only ever renames whole files into place.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    /// False for [`Store::unusable`].
    usable: bool,
}

const BLOCKS_DIR: &str = "blocks-v1";
const TAG_FILE: &str = "CACHEDIR.TAG";
const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
                   # This file is a cache directory tag created by mkportable.\n";

const MAGIC: &[u8; 8] = b"MKPCACHE";
const VERSION: u32 = 1;
const FLAG_RAW: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 4 + 32 + 32;
const TMP_PREFIX: &str = ".tmp-";

/// A hit younger than this keeps its mtime: warm rebuilds then cost no extra
/// syscall per block, and an hour is fine-grained enough for eviction.
const REFRESH_AFTER: Duration = Duration::from_secs(60 * 60);
/// Temp files older than this were left by a killed build.
const STALE_TMP_AFTER: Duration = Duration::from_secs(60 * 60);

/// Makes temp file names unique within the process (the pid does across processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens the cache folder `dir`, creating it, its `CACHEDIR.TAG` and
    /// `blocks-v1` if missing.
    ///
    /// # Errors
    ///
    /// `dir` cannot be created, or no file can be created in `blocks-v1`
    /// (checked with a probe file). The error is the bare I/O error.
    pub(crate) fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        write_tag(&dir.join(TAG_FILE))?;
        let root = dir.join(BLOCKS_DIR);
        fs::create_dir_all(&root)?;
        let probe = root.join(tmp_name("probe"));
        File::options().write(true).create_new(true).open(&probe)?;
        fs::remove_file(&probe)?;
        Ok(Store { root, usable: true })
    }

    /// A store that finds nothing (used when the folder cannot be opened).
    pub(crate) fn unusable(dir: &Path) -> Store {
        Store {
            root: dir.join(BLOCKS_DIR),
            usable: false,
        }
    }

    /// Looks `key` up. A damaged entry is removed (errors ignored) and reported
    /// as [`Lookup::Bad`]; an entry that cannot be read is a [`Lookup::Miss`].
    /// A hit marks the entry as recently used.
    pub(crate) fn get(&self, key: &Key) -> Lookup {
        if !self.usable {
            return Lookup::Miss;
        }
        let path = self.entry_path(key);
        match read_entry(&path, key) {
            Ok(Some(entry)) => Lookup::Hit(entry),
            Ok(None) => {
                // Another process may have just renamed a good entry over this
                // one; removing it then costs only a recompression.
                let _ = fs::remove_file(&path);
                Lookup::Bad
            }
            Err(_) => Lookup::Miss,
        }
    }

    /// Stores `bytes` under `key` (`raw`: they are the uncompressed block),
    /// replacing any entry there.
    ///
    /// # Errors
    ///
    /// The bare I/O error (`ENOSPC`, `EROFS`, `EACCES`…) of creating, writing
    /// or renaming the temp file, which is removed; `InvalidInput` for a
    /// payload of 4 GiB or more; `Other` for an [`Store::unusable`] store.
    pub(crate) fn put(&self, key: &Key, raw: bool, bytes: &[u8]) -> io::Result<()> {
        if !self.usable {
            return Err(io::Error::other("the cache is not usable"));
        }
        let header = encode_header(key, raw, bytes)?;
        let path = self.entry_path(key);
        let (tmp, mut file) = create_tmp(&path, &key.to_hex())?;
        let res = file.write_all(&header).and_then(|()| file.write_all(bytes));
        drop(file);
        match res.and_then(|()| fs::rename(&tmp, &path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Evicts least recently used entries (oldest mtime first, then by name)
    /// until they take at most 90 % of `max_bytes`, if they take more than
    /// `max_bytes`; also removes temp files older than an hour. Returns the
    /// number of entries evicted. Files another process removes meanwhile are
    /// skipped.
    ///
    /// # Errors
    ///
    /// A folder cannot be listed or an entry cannot be removed.
    pub(crate) fn trim(&self, max_bytes: u64) -> io::Result<u64> {
        if !self.usable {
            return Ok(0);
        }
        let mut listing = list(&self.root)?;
        // Not `SystemTime::now` in the image: the clock only orders evictions.
        let now = SystemTime::now();
        for tmp in &listing.temps {
            if now
                .duration_since(tmp.modified)
                .is_ok_and(|age| age > STALE_TMP_AFTER)
            {
                remove_if_present(&tmp.path)?;
            }
        }
        let mut total: u64 = listing.entries.iter().map(|e| e.len).sum();
        if total <= max_bytes {
            return Ok(0);
        }
        let target = max_bytes - max_bytes.div_ceil(10);
        listing
            .entries
            .sort_by(|a, b| (a.modified, &a.path).cmp(&(b.modified, &b.path)));
        let mut evicted = 0;
        for entry in &listing.entries {
            if total <= target {
                break;
            }
            if remove_if_present(&entry.path)? {
                evicted += 1;
            }
            total -= entry.len;
        }
        Ok(evicted)
    }

    /// `blocks-v1/<first two hex digits>/<key in hex>`.
    fn entry_path(&self, key: &Key) -> PathBuf {
        let hex = key.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }
}

/// Counts the entries of the cache folder `dir` (temp files aside) and the
/// size of its file-hash records. A missing folder holds nothing.
///
/// # Errors
///
/// A folder or file cannot be listed or inspected.
pub(crate) fn stats(dir: &Path) -> io::Result<CacheStats> {
    let listing = list(&dir.join(BLOCKS_DIR))?;
    let mut record_bytes = 0;
    for name in records_files() {
        record_bytes += match fs::metadata(dir.join(name)) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
    }
    Ok(CacheStats {
        entries: listing.entries.len() as u64,
        bytes: listing.entries.iter().map(|e| e.len).sum(),
        record_bytes,
    })
}

/// Removes `blocks-v1` and the file-hash records from the cache folder `dir`;
/// returns its [`stats`] from before. A missing folder holds nothing.
///
/// # Errors
///
/// A folder cannot be listed or a file cannot be removed.
pub(crate) fn clear(dir: &Path) -> io::Result<CacheStats> {
    let before = stats(dir)?;
    match fs::remove_dir_all(dir.join(BLOCKS_DIR)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
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

/// A temp file name unique among processes and threads: `.tmp-<pid>-<counter>-<tag>`.
fn tmp_name(tag: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TMP_PREFIX}{}-{n}-{tag}", std::process::id())
}

/// Creates a fresh temp file beside `path`, creating the folder if missing.
fn create_tmp(path: &Path, tag: &str) -> io::Result<(PathBuf, File)> {
    let Some(folder) = path.parent() else {
        return Err(io::Error::other("an entry path has no folder"));
    };
    let mut created_folder = false;
    loop {
        let tmp = folder.join(tmp_name(tag));
        match File::options().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !created_folder => {
                fs::create_dir_all(folder)?;
                created_folder = true;
            }
            // Only a process with our pid in another pid namespace can get here;
            // the counter has moved on, so the next name differs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

/// Removes the file at `path`; `false` if it was already gone.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The header of an entry holding `payload` (see the module docs).
fn encode_header(key: &Key, raw: bool, payload: &[u8]) -> io::Result<[u8; HEADER_LEN]> {
    let Ok(len) = u32::try_from(payload.len()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a cache entry must be smaller than 4 GiB",
        ));
    };
    let flags = if raw { FLAG_RAW } else { 0 };
    let mut header = [0; HEADER_LEN];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&flags.to_le_bytes());
    header[16..20].copy_from_slice(&len.to_le_bytes());
    header[20..52].copy_from_slice(&key.0);
    let sum = checksum(&header[12..52], payload);
    header[52..84].copy_from_slice(&sum);
    Ok(header)
}

/// blake3 of the flags, length and key fields followed by the payload.
fn checksum(fields: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(fields);
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// Reads the entry at `path`: `Ok(None)` if it fails a check, `Err` if it
/// cannot be read (missing included). Refreshes the mtime of a good entry.
fn read_entry(path: &Path, key: &Key) -> io::Result<Option<Entry>> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("a cache entry is not a regular file"));
    }
    if meta.len() < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0; HEADER_LEN];
    file.read_exact(&mut header)?;
    let le_u32 = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let flags = le_u32(12);
    let len = le_u32(16);
    if &header[0..8] != MAGIC
        || le_u32(8) != VERSION
        || flags & !FLAG_RAW != 0
        || header[20..52] != key.0
        || meta.len() != HEADER_LEN as u64 + u64::from(len)
    {
        return Ok(None);
    }
    // The length matches the file's, so this allocates no more than is there.
    let mut bytes = vec![0; len as usize];
    match file.read_exact(&mut bytes) {
        Ok(()) => {}
        // Writers never change a file in place, but someone else might.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if checksum(&header[12..52], &bytes) != header[52..84] {
        return Ok(None);
    }
    refresh(&file, &meta);
    Ok(Some(Entry {
        raw: flags & FLAG_RAW != 0,
        bytes,
    }))
}

/// Marks a hit entry as recently used, unless it was within the hour.
/// Failures (a read-only folder) are ignored: the entry is still good.
fn refresh(file: &File, meta: &fs::Metadata) {
    // Not `SystemTime::now` in the image: the clock only orders evictions.
    let now = SystemTime::now();
    let recent = meta.modified().is_ok_and(|mtime| {
        now.duration_since(mtime)
            .is_ok_and(|age| age < REFRESH_AFTER)
    });
    if !recent {
        // Setting explicit times needs ownership, not a writable descriptor.
        let _ = file.set_modified(now);
    }
}

/// The files under `blocks-v1`, sorted into entries and temp files.
#[derive(Debug, Default)]
struct Listing {
    entries: Vec<Listed>,
    temps: Vec<Listed>,
}

#[derive(Debug)]
struct Listed {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// Lists the regular files in the subfolders of `root`: names of 64 hex
/// digits are entries, `.tmp-*` temp files, anything else is left alone.
/// Folders and files that vanish meanwhile are skipped; a missing `root` is empty.
fn list(root: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for sub in read_dir_if_present(root)? {
        let sub = sub?;
        if !sub.file_type()?.is_dir() {
            continue;
        }
        for file in read_dir_if_present(&sub.path())? {
            let file = file?;
            let name = file.file_name();
            let list = if is_entry_name(&name) {
                &mut listing.entries
            } else if name.as_encoded_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                &mut listing.temps
            } else {
                continue;
            };
            let meta = match file.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_file() {
                list.push(Listed {
                    path: file.path(),
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    Ok(listing)
}

/// `fs::read_dir`, with a missing folder read as empty.
fn read_dir_if_present(dir: &Path) -> io::Result<impl Iterator<Item = io::Result<fs::DirEntry>>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(entries
        .into_iter()
        .flatten()
        .filter(|res| !matches!(res, Err(e) if e.kind() == io::ErrorKind::NotFound)))
}

/// 64 lowercase hex digits, as [`Key::to_hex`] writes.
fn is_entry_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.len() == 64 && bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

    /// The files in `dir`'s subfolders, as names relative to `dir`.
    fn files(dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for sub in fs::read_dir(dir).unwrap() {
            let sub = sub.unwrap();
            for file in fs::read_dir(sub.path()).unwrap() {
                let file = file.unwrap();
                names.push(format!(
                    "{}/{}",
                    sub.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                ));
            }
        }
        names.sort();
        names
    }

    #[test]
    fn store_is_sync() {
        fn assert_sync<T: Sync + Send>() {}
        assert_sync::<Store>();
    }

    #[test]
    fn put_then_get_returns_the_bytes() {
        let cases: &[(bool, Vec<u8>)] = &[
            (true, Vec::new()),
            (false, b"abc".to_vec()),
            (true, noise(4096, 1)),
            (false, noise(1 << 20, 2)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (n, (raw, bytes)) in cases.iter().enumerate() {
            let key = key(n as u8);
            store.put(&key, *raw, bytes).unwrap();
            let entry = hit(store.get(&key));
            assert_eq!((entry.raw, &entry.bytes), (*raw, bytes), "case {n}");
            let len = fs::metadata(store.entry_path(&key)).unwrap().len();
            assert_eq!(len, (HEADER_LEN + bytes.len()) as u64, "case {n}");
        }
        // A second put replaces the entry.
        store.put(&key(0), false, b"new").unwrap();
        assert_eq!(
            hit(store.get(&key(0))),
            Entry {
                raw: false,
                bytes: b"new".to_vec()
            }
        );
    }

    #[test]
    fn an_absent_key_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(store.get(&key(1)), Lookup::Miss));
        store.put(&key(1), false, b"x").unwrap();
        // Same subfolder or not, another key is still a miss.
        assert!(matches!(store.get(&key(2)), Lookup::Miss));
    }

    /// Puts an entry under key 1, lets `damage` edit its file (the store and
    /// the path are given), then expects `Bad`, the file gone, and a miss after.
    fn check_bad(what: &str, damage: impl FnOnce(&Store, &Path)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put(&key(1), true, &noise(1000, 7)).unwrap();
        let path = store.entry_path(&key(1));
        damage(&store, &path);
        assert!(matches!(store.get(&key(1)), Lookup::Bad), "{what}");
        assert!(!path.exists(), "{what}: the bad entry is removed");
        assert!(matches!(store.get(&key(1)), Lookup::Miss), "{what}");
    }

    /// Rewrites the file at `path` with `edit` applied to its bytes.
    fn edit(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = fs::read(path).unwrap();
        edit(&mut bytes);
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_damaged_entry_is_bad_and_removed() {
        check_bad("payload byte flipped", |_, p| {
            edit(p, |b| b[HEADER_LEN + 500] ^= 1)
        });
        check_bad("checksum byte flipped", |_, p| edit(p, |b| b[60] ^= 0x80));
        check_bad("raw flag cleared", |_, p| edit(p, |b| b[12] = 0));
        check_bad("unknown flag", |_, p| edit(p, |b| b[13] = 1));
        check_bad("bad magic", |_, p| edit(p, |b| b[0] = b'X'));
        check_bad("foreign version", |_, p| {
            edit(p, |b| b[8..12].copy_from_slice(&2u32.to_le_bytes()))
        });
        check_bad("length too big", |_, p| edit(p, |b| b[17] += 1));
        check_bad("truncated by one", |_, p| {
            edit(p, |b| b.truncate(b.len() - 1))
        });
        check_bad("truncated into the header", |_, p| {
            edit(p, |b| b.truncate(40))
        });
        check_bad("empty", |_, p| edit(p, Vec::clear));
        check_bad("trailing byte", |_, p| edit(p, |b| b.push(0)));
        check_bad("another key's entry", |store, p| {
            store.put(&key(2), true, &noise(1000, 7)).unwrap();
            fs::copy(store.entry_path(&key(2)), p).unwrap();
        });
    }

    #[test]
    fn a_hit_refreshes_an_old_mtime_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put(&key(1), false, b"x").unwrap();
        let path = store.entry_path(&key(1));
        let now = SystemTime::now();

        let recent = now - Duration::from_secs(30 * 60);
        set_mtime(&path, recent);
        hit(store.get(&key(1)));
        assert_eq!(mtime(&path), recent);

        set_mtime(&path, now - Duration::from_secs(2 * 60 * 60));
        hit(store.get(&key(1)));
        assert!(mtime(&path) >= now - Duration::from_secs(60));
    }

    #[test]
    fn trim_evicts_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = SystemTime::now() - Duration::from_secs(10 * 24 * 60 * 60);
        // (key, mtime in seconds after base); keys 5 and 6 tie on mtime.
        let ages: [(u8, u64); 8] = [
            (0, 70),
            (1, 10),
            (2, 50),
            (3, 40),
            (4, 80),
            (5, 30),
            (6, 30),
            (7, 60),
        ];
        for (n, secs) in ages {
            store.put(&key(n), false, &[n; 100]).unwrap();
            set_mtime(&store.entry_path(&key(n)), base + Duration::from_secs(secs));
        }
        let entry_len = (HEADER_LEN + 100) as u64;
        assert_eq!(
            store.trim(8 * entry_len).unwrap(),
            0,
            "at the cap, nothing goes"
        );

        // Over a cap of 5.5 entries, trimming goes down to 90 % of it: 4 entries.
        let cap = 5 * entry_len + entry_len / 2;
        assert_eq!(store.trim(cap).unwrap(), 4);
        for (n, _) in ages {
            let kept = store.entry_path(&key(n)).exists();
            assert_eq!(kept, ![1, 5, 6, 3].contains(&n), "key {n}");
        }
        let left = stats(dir.path()).unwrap().bytes;
        assert!(left <= cap * 9 / 10, "{left} bytes left");
    }

    #[test]
    fn trim_evicts_ties_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let at = SystemTime::now() - Duration::from_secs(60);
        for n in [5, 6] {
            store.put(&key(n), false, b"x").unwrap();
            set_mtime(&store.entry_path(&key(n)), at);
        }
        let first = if key(5).to_hex() < key(6).to_hex() {
            5
        } else {
            6
        };
        assert_eq!(store.trim(2 * (HEADER_LEN as u64 + 1) - 1).unwrap(), 1);
        assert!(!store.entry_path(&key(first)).exists());
        assert!(store.entry_path(&key(11 - first)).exists());
    }

    #[test]
    fn trim_removes_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put(&key(1), false, b"x").unwrap();
        let folder = store.entry_path(&key(1)).parent().unwrap().to_path_buf();
        let stale = folder.join(".tmp-1-0-stale");
        let fresh = folder.join(".tmp-1-1-fresh");
        let other = folder.join("README");
        for path in [&stale, &fresh, &other] {
            fs::write(path, b"partial").unwrap();
            set_mtime(path, SystemTime::now() - Duration::from_secs(2 * 60 * 60));
        }
        set_mtime(&fresh, SystemTime::now() - Duration::from_secs(60));
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
    fn stats_and_clear_count_entries_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(stats(&missing).unwrap(), CacheStats::default());
        assert_eq!(clear(&missing).unwrap(), CacheStats::default());
        assert!(!missing.exists());

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(stats(dir.path()).unwrap(), CacheStats::default());
        for (n, len) in [(1, 10), (2, 20), (3, 30)] {
            store.put(&key(n), true, &vec![0; len]).unwrap();
        }
        let folder = store.entry_path(&key(1)).parent().unwrap().to_path_buf();
        fs::write(folder.join(".tmp-1-0-x"), b"not counted").unwrap();
        fs::write(dir.path().join(crate::cache::stat::FILE_NAME), b"records").unwrap();
        fs::write(dir.path().join("stat-v1"), b"old").unwrap();
        let expect = CacheStats {
            entries: 3,
            bytes: 3 * HEADER_LEN as u64 + 60,
            record_bytes: 10,
        };
        assert_eq!(stats(dir.path()).unwrap(), expect);
        assert_eq!(clear(dir.path()).unwrap(), expect);
        assert_eq!(stats(dir.path()).unwrap(), CacheStats::default());
        assert!(!dir.path().join(BLOCKS_DIR).exists());
        assert!(!dir.path().join(crate::cache::stat::FILE_NAME).exists());
        assert!(!dir.path().join("stat-v1").exists());
        assert!(dir.path().join(TAG_FILE).exists());
        // The open store recreates its subfolders.
        store.put(&key(1), true, b"again").unwrap();
        hit(store.get(&key(1)));
    }

    #[test]
    fn open_writes_the_tag_once_and_leaves_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("a/b");
        Store::open(&cache).unwrap();
        let tag = fs::read_to_string(cache.join(TAG_FILE)).unwrap();
        assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
        assert!(tag.contains("# This file is a cache directory tag created by mkportable."));
        assert_eq!(fs::read_dir(cache.join(BLOCKS_DIR)).unwrap().count(), 0);

        fs::write(cache.join(TAG_FILE), "kept").unwrap();
        Store::open(&cache).unwrap();
        assert_eq!(fs::read_to_string(cache.join(TAG_FILE)).unwrap(), "kept");
    }

    #[test]
    fn open_fails_where_no_folder_can_be() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        for path in [file.clone(), file.join("sub")] {
            assert!(Store::open(&path).is_err(), "{}", path.display());
        }
    }

    #[test]
    fn an_unusable_store_finds_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .unwrap()
            .put(&key(1), false, b"x")
            .unwrap();
        let store = Store::unusable(dir.path());
        assert!(matches!(store.get(&key(1)), Lookup::Miss));
        assert!(store.put(&key(2), false, b"y").is_err());
        assert!(!store.entry_path(&key(2)).exists());
        assert_eq!(store.trim(0).unwrap(), 0);
        assert!(Store::open(dir.path())
            .unwrap()
            .entry_path(&key(1))
            .exists());
    }

    #[test]
    fn concurrent_puts_of_one_key_leave_one_good_entry() {
        let dir = tempfile::tempdir().unwrap();
        // Two stores on one folder stand in for two processes.
        let stores = [
            Store::open(dir.path()).unwrap(),
            Store::open(dir.path()).unwrap(),
        ];
        let bytes = noise(64 << 10, 3);
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let (store, bytes) = (&stores[thread % 2], &bytes);
                scope.spawn(move || {
                    for _ in 0..20 {
                        store.put(&key(1), false, bytes).unwrap();
                        // Never `Bad`: readers see a whole old or new entry.
                        assert_eq!(&hit(store.get(&key(1))).bytes, bytes);
                    }
                });
            }
        });
        assert_eq!(hit(stores[0].get(&key(1))).bytes, bytes);
        assert_eq!(
            files(&dir.path().join(BLOCKS_DIR)),
            [format!("{}/{}", &key(1).to_hex()[..2], key(1).to_hex())]
        );
    }
}
