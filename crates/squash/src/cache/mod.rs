//! The persistent cache of compressed blocks, so a rebuild after a small change
//! compresses only what changed.
//!
//! Two stores live in one folder (by default `$XDG_CACHE_HOME/mkportable`):
//!
//! - **blocks** ([`store`]): content-addressed entries, one file each. The key
//!   is blake3 of the block's content identity (the uncompressed data block, or
//!   the sizes and hashes of a fragment block's members) together with
//!   everything that changes the compressed bytes: compressor and its settings,
//!   block size, this crate's version and the cache format version. The value
//!   is exactly the bytes the image holds for that block, and whether they are
//!   stored uncompressed. Entries are checksummed and written atomically; a bad
//!   entry is ignored and rebuilt, never copied into an image. Least recently
//!   used entries are evicted above a size cap.
//! - **file hashes** ([`stat`]): the content and block hashes of each file read,
//!   under its stat fingerprint (device, inode, size, mtime and ctime in
//!   nanoseconds). With [`CacheConfig::trust_stat`], a file whose fingerprint
//!   is unchanged is not read at all unless one of its blocks misses.
//!
//! The cache never changes the image: a hit returns the bytes the compressor
//! would produce. Any failure to use it (read-only folder, full disk) turns it
//! off for the rest of the build with one warning in the [`CacheReport`].

pub(crate) mod stat;
pub(crate) mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

pub use store::CacheStats;

/// Where the cache is and how it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The cache folder; created if missing.
    pub dir: PathBuf,
    /// Evict least recently used block entries once the blocks take more than this.
    pub max_bytes: u64,
    /// Reuse a file's hashes from an earlier build, without reading the file,
    /// when its device, inode, size, mtime and ctime (nanoseconds) are unchanged.
    /// This trusts that nothing rewrote the file while keeping all five (true of
    /// the Nix store and of ordinary writes, which always update ctime).
    pub trust_stat: bool,
}

/// The default size cap: 5 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 5 << 30;

/// What the cache did during one write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheReport {
    /// Data blocks found in the cache.
    pub block_hits: u64,
    /// Data blocks compressed (and stored).
    pub block_misses: u64,
    /// Fragment blocks found in the cache.
    pub fragment_hits: u64,
    /// Fragment blocks compressed (and stored).
    pub fragment_misses: u64,
    /// Files not read because their stat fingerprint matched.
    pub files_not_read: u64,
    /// Bytes of those files.
    pub bytes_not_read: u64,
    /// Entries found damaged, truncated or from another format version (ignored and rebuilt).
    pub bad_entries: u64,
    /// Entries written.
    pub entries_written: u64,
    /// Entries evicted after the write to stay under the cap.
    pub entries_evicted: u64,
    /// Why the cache was turned off part-way, if it was (the build went on without it).
    pub warning: Option<String>,
}

/// An open cache, shared by the writer's threads.
#[derive(Debug)]
pub struct Cache {
    config: CacheConfig,
    store: store::Store,
    stats: Mutex<stat::StatDb>,
    /// Set on the first failure to write; the cache is then read-only for this build.
    disabled: AtomicBool,
    warning: Mutex<Option<String>>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    block_hits: AtomicU64,
    block_misses: AtomicU64,
    fragment_hits: AtomicU64,
    fragment_misses: AtomicU64,
    files_not_read: AtomicU64,
    bytes_not_read: AtomicU64,
    bad_entries: AtomicU64,
    entries_written: AtomicU64,
}

/// A cache key: blake3 of a block's content identity and the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key(pub(crate) [u8; 32]);

impl Key {
    /// The key's file name: 64 lowercase hex digits.
    pub(crate) fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Cache {
    /// Opens (creating if needed) the cache folder. Never fails: a cache that
    /// cannot be used is off, and says why in [`Cache::warning`] and in the
    /// [`CacheReport`] of the write.
    pub fn open(config: CacheConfig) -> Cache {
        let (store, warning) = match store::Store::open(&config.dir) {
            Ok(store) => (store, None),
            Err(e) => (
                store::Store::unusable(&config.dir),
                Some(format!(
                    "cache `{}` is not usable ({e}); building without it",
                    config.dir.display()
                )),
            ),
        };
        let stats = if warning.is_none() {
            stat::StatDb::load(&config.dir)
        } else {
            stat::StatDb::default()
        };
        Cache {
            disabled: AtomicBool::new(warning.is_some()),
            warning: Mutex::new(warning),
            config,
            store,
            stats: Mutex::new(stats),
            counters: Counters::default(),
        }
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Why the cache is off, if it is.
    pub fn warning(&self) -> Option<String> {
        self.warning.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts the entries and bytes in the cache folder `dir`.
    ///
    /// # Errors
    ///
    /// The folder cannot be listed.
    pub fn stats(dir: &Path) -> std::io::Result<CacheStats> {
        store::stats(dir)
    }

    /// Removes every entry from the cache folder `dir`; returns what was removed.
    ///
    /// # Errors
    ///
    /// The folder cannot be listed or an entry cannot be removed.
    pub fn clear(dir: &Path) -> std::io::Result<CacheStats> {
        store::clear(dir)
    }
}
