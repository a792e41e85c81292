//! The persistent cache of compressed blocks, so a rebuild after a small change
//! compresses only what changed.
//!
//! Two stores live in one folder (by default `$XDG_CACHE_HOME/mkportable`):
//!
//! - **blocks** ([`store`]): content-addressed entries, packed into one
//!   immutable pack file per build (no 4 KiB of rounding per entry). The key
//!   is blake3 of the block's content identity (the uncompressed data block, or
//!   the sizes and hashes of a fragment block's members) together with
//!   everything that changes the compressed bytes: compressor and its settings,
//!   block size, this crate's version and the cache format version. The value
//!   is exactly the bytes the image holds for that block, and whether they are
//!   stored uncompressed. Entries are checksummed and packs appear whole, by
//!   rename; a bad entry is ignored and rebuilt, never copied into an image.
//!   Least recently used packs are evicted above a size cap.
//! - **file records** ([`stat`]): what was learnt of each file read (its
//!   block hashes, or for a small file the bits packing needs), under its stat
//!   fingerprint (device, inode, size, mtime and ctime in nanoseconds), and
//!   the key of each fragment block by its members, kept only with
//!   [`CacheConfig::trust_stat`]: then a file whose fingerprint is unchanged
//!   is not read at all unless its block misses.
//!
//! The cache never changes the image: a hit returns the bytes the compressor
//! would produce. Any failure to use it (read-only folder, full disk) turns it
//! off for the rest of the build with one warning in the [`CacheReport`].

pub(crate) mod stat;
pub(crate) mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::Fingerprint;

pub use store::CacheStats;

/// Where the cache is and how it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The cache folder; created if missing.
    pub dir: PathBuf,
    /// Evict least recently used packs of block entries once they take more
    /// than this. A pack holds at most a sixteenth of it (and 64 MiB).
    pub max_bytes: u64,
    /// Reuse what an earlier build learnt of a file, without reading the file,
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
    /// Metadata blocks (inode, directory and lookup tables) found in the cache.
    pub meta_hits: u64,
    /// Metadata blocks compressed (and stored).
    pub meta_misses: u64,
    /// Files packed from their record because their stat fingerprint matched
    /// (one is still read if its block misses or to tell it from a likely duplicate).
    pub files_not_read: u64,
    /// Bytes of those files.
    pub bytes_not_read: u64,
    /// Entries found damaged, truncated or from another format version (ignored
    /// and rebuilt); a pack whose index is damaged counts once.
    pub bad_entries: u64,
    /// Entries stored for later builds (in packs published), good entries
    /// copied out of a damaged pack included.
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
    meta_hits: AtomicU64,
    meta_misses: AtomicU64,
    files_not_read: AtomicU64,
    bytes_not_read: AtomicU64,
    bad_entries: AtomicU64,
}

/// What kind of block an entry holds, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    /// A data block of a file.
    Data,
    /// A fragment block.
    Fragment,
    /// A metadata block (8 KiB uncompressed).
    Meta,
}

/// How a fragment block's recipe names a member: by its stat record (a file
/// the user trusts stat for, which a rebuild may not read), else by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ident {
    /// The key of the file's stat record.
    File(stat::RecordKey),
    /// The blake3 hash of the file's content.
    Content([u8; 32]),
}

/// A cache key: blake3 of a block's content identity and the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key(pub(crate) [u8; 32]);

impl Cache {
    /// Opens (creating if needed) the cache folder. Never fails: a cache that
    /// cannot be used is off, and says why in [`Cache::warning`] and in the
    /// [`CacheReport`] of the write.
    pub fn open(config: CacheConfig) -> Cache {
        let pack_limit = (config.max_bytes / 16).min(store::MAX_PACK_BYTES);
        let (store, warning) = match store::Store::open(&config.dir, pack_limit) {
            Ok(store) => (store, None),
            Err(e) => (
                store::Store::unusable(&config.dir),
                Some(format!(
                    "cache `{}` is not usable ({e}); building without it",
                    config.dir.display()
                )),
            ),
        };
        let stats = if warning.is_none() && config.trust_stat {
            stat::StatDb::load(&config.dir)
        } else {
            stat::StatDb::default()
        };
        let counters = Counters::default();
        counters
            .bad_entries
            .store(store.bad_at_open(), Ordering::Relaxed);
        Cache {
            disabled: AtomicBool::new(warning.is_some()),
            warning: Mutex::new(warning),
            config,
            store,
            stats: Mutex::new(stats),
            counters,
        }
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Why the cache is off, if it is.
    pub fn warning(&self) -> Option<String> {
        self.warning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

/// What the writer needs of the cache while writing one image: keys under
/// one set of settings, lookups and stores that count and never fail.
impl Cache {
    /// The digest of everything besides a block's content that changes its
    /// compressed bytes: the compressor's resolved settings (`tag`), the block
    /// size, this crate's version (which pins the compressor libraries) and
    /// the cache format.
    pub(crate) fn settings(tag: &str, block_size: u32) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("mkportable cache v1 settings");
        h.update(tag.as_bytes());
        h.update(&block_size.to_le_bytes());
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(&zstd::zstd_safe::version_number().to_le_bytes());
        *h.finalize().as_bytes()
    }

    /// The key of a data block whose content hashes to `hash`.
    pub(crate) fn block_key(settings: &[u8; 32], hash: &[u8; 32]) -> Key {
        let mut h = blake3::Hasher::new_derive_key("mkportable cache v1 data block");
        h.update(settings);
        h.update(hash);
        Key(*h.finalize().as_bytes())
    }

    /// The key of a fragment block holding files of these sizes and content hashes, in order.
    pub(crate) fn fragment_key(settings: &[u8; 32], members: &[(u64, [u8; 32])]) -> Key {
        let mut h = blake3::Hasher::new_derive_key("mkportable cache v1 fragment block");
        h.update(settings);
        for (size, hash) in members {
            h.update(&size.to_le_bytes());
            h.update(hash);
        }
        Key(*h.finalize().as_bytes())
    }

    /// The key of a metadata block whose payload hashes to `hash`.
    pub(crate) fn meta_key(settings: &[u8; 32], hash: &[u8; 32]) -> Key {
        let mut h = blake3::Hasher::new_derive_key("mkportable cache v1 metadata block");
        h.update(settings);
        h.update(hash);
        Key(*h.finalize().as_bytes())
    }

    fn is_off(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Looks `key` up for a block of `len` uncompressed bytes; counts a hit or a miss.
    pub(crate) fn get(&self, key: &Key, kind: BlockKind, len: usize) -> Option<store::Entry> {
        // Reading goes on after storing failed: a read-only cache still serves hits.
        let entry = match self.store.get(key) {
            // A raw entry is the block itself; a compressed one is strictly smaller.
            store::Lookup::Hit(e)
                if (e.raw && e.bytes.len() == len) || (!e.raw && e.bytes.len() < len) =>
            {
                Some(e)
            }
            store::Lookup::Hit(_) | store::Lookup::Bad => {
                self.counters.bad_entries.fetch_add(1, Ordering::Relaxed);
                None
            }
            store::Lookup::Miss => None,
        };
        let counter = match (kind, entry.is_some()) {
            (BlockKind::Data, true) => &self.counters.block_hits,
            (BlockKind::Data, false) => &self.counters.block_misses,
            (BlockKind::Fragment, true) => &self.counters.fragment_hits,
            (BlockKind::Fragment, false) => &self.counters.fragment_misses,
            (BlockKind::Meta, true) => &self.counters.meta_hits,
            (BlockKind::Meta, false) => &self.counters.meta_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        entry
    }

    /// Stores a block's image bytes; the first failure turns storing off with a warning.
    pub(crate) fn put(&self, key: &Key, raw: bool, bytes: &[u8]) {
        if self.is_off() {
            return;
        }
        if let Err(e) = self.store.put(key, raw, bytes) {
            self.turn_off(format!(
                "cannot write to cache `{}` ({e}); going on without storing",
                self.config.dir.display()
            ));
        }
    }

    fn turn_off(&self, why: String) {
        if !self.disabled.swap(true, Ordering::Relaxed) {
            let mut warning = self.warning.lock().unwrap_or_else(|e| e.into_inner());
            warning.get_or_insert(why);
        }
    }

    /// What earlier builds recorded of a file with fingerprint `fp`, if
    /// [`CacheConfig::trust_stat`] allows using it and it fits the file's size.
    pub(crate) fn trusted(&self, fp: &Fingerprint, block_size: u32) -> Option<stat::Known> {
        if !self.config.trust_stat {
            return None;
        }
        let known = self.stats.lock().ok()?.get(fp, block_size)?;
        let bs = u64::from(block_size);
        let fits = match &known {
            stat::Known::Blocks(hashes) => {
                fp.size >= bs && hashes.len() as u64 == fp.size.div_ceil(bs)
            }
            stat::Known::Small { .. } => fp.size < bs,
        };
        fits.then_some(known)
    }

    /// Counts a file packed without being read.
    pub(crate) fn not_read(&self, bytes: u64) {
        self.counters.files_not_read.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_not_read
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether what is learnt of a file with fingerprint `fp` will be
    /// recorded: the user trusts stat and the file did not change too recently.
    pub(crate) fn recordable(&self, fp: &Fingerprint) -> bool {
        self.config.trust_stat && self.stats.lock().is_ok_and(|db| db.recordable(fp))
    }

    /// Remembers what was learnt of a file (read in full, or found a duplicate).
    pub(crate) fn record(&self, fp: &Fingerprint, block_size: u32, known: stat::Known) {
        if !self.config.trust_stat {
            return;
        }
        if let Ok(mut db) = self.stats.lock() {
            db.record(fp, block_size, known);
        }
    }

    /// The recipe key of a fragment block under `settings` holding these
    /// members (size and identity), in order.
    pub(crate) fn recipe_key(settings: &[u8; 32], members: &[(u64, Ident)]) -> stat::RecipeKey {
        let mut h = blake3::Hasher::new_derive_key("mkportable cache v1 fragment recipe");
        h.update(settings);
        for (size, ident) in members {
            h.update(&size.to_le_bytes());
            match ident {
                Ident::File(key) => h.update(&[0]).update(key),
                Ident::Content(hash) => h.update(&[1]).update(hash),
            };
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&h.finalize().as_bytes()[..16]);
        key
    }

    /// The cache key recorded for the fragment block with recipe `recipe`.
    pub(crate) fn recipe(&self, recipe: &stat::RecipeKey) -> Option<Key> {
        if !self.config.trust_stat {
            return None;
        }
        self.stats.lock().ok()?.recipe(recipe).map(Key)
    }

    /// Records that the fragment block with recipe `recipe` has cache key `key`.
    pub(crate) fn record_recipe(&self, recipe: stat::RecipeKey, key: &Key) {
        if !self.config.trust_stat {
            return;
        }
        if let Ok(mut db) = self.stats.lock() {
            db.record_recipe(recipe, key.0);
        }
    }

    /// Publishes the entries stored (and those saved from damaged packs),
    /// saves the file records, evicts packs above the cap, and says what happened.
    pub(crate) fn finish(&self) -> CacheReport {
        if !self.is_off() {
            if let Err(e) = self.store.flush() {
                self.turn_off(format!(
                    "cannot write to cache `{}` ({e}); going on without storing",
                    self.config.dir.display()
                ));
            }
        }
        if !self.is_off() {
            let saved = self
                .stats
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))
                .and_then(|mut db| db.save());
            if let Err(e) = saved {
                self.turn_off(format!(
                    "cannot write to cache `{}` ({e}); going on without storing",
                    self.config.dir.display()
                ));
            }
        }
        let mut evicted = 0;
        let written = self.store.published();
        if !self.is_off() && written > 0 {
            match self.store.trim(self.config.max_bytes) {
                Ok(n) => evicted = n,
                Err(e) => self.turn_off(format!(
                    "cannot trim cache `{}` ({e})",
                    self.config.dir.display()
                )),
            }
        }
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheReport {
            block_hits: load(&c.block_hits),
            block_misses: load(&c.block_misses),
            fragment_hits: load(&c.fragment_hits),
            fragment_misses: load(&c.fragment_misses),
            meta_hits: load(&c.meta_hits),
            meta_misses: load(&c.meta_misses),
            files_not_read: load(&c.files_not_read),
            bytes_not_read: load(&c.bytes_not_read),
            bad_entries: load(&c.bad_entries),
            entries_written: written,
            entries_evicted: evicted,
            warning: self.warning(),
        }
    }
}
