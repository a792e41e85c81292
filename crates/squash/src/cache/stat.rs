//! What earlier builds learnt of each file, under its stat fingerprint, so an
//! unchanged file need not be read.
//!
//! One file, `DIR/stat-v2`, holds a record per (fingerprint, block size) and
//! a *recipe* per fragment block. A record of a file of at least one block
//! keeps the blake3 hash of each block. A record of a smaller file keeps only
//! its [`tag`](crate::fragments::tag), the 64 bits of its content hash that
//! packing uses, and the whole hash only when another file of the last build
//! had the same size and tag (a likely duplicate): that is what makes a
//! record small enough for a cache of a tree of small files to stay near the
//! image's size. A tag is never taken as a file's identity: when two files
//! meet on size and tag, the writer reads whichever whole hash it lacks. A
//! recipe maps the fragment block made of given files (by fingerprint, or by
//! content hash for a file without a record) to the block's cache key, so a
//! fragment block of unread files is found without their whole hashes.
//!
//! The file is loaded when the cache opens and rewritten (temporary file,
//! then rename) after a build that learned something, merged with what other
//! builds wrote meanwhile.
//!
//! Format, little-endian: magic `MKPSTAT2`; u64 record count and the records
//! (12 bytes of blake3 of the fingerprint and block size, last use in days
//! since the epoch u16, a kind byte, then for a small file its tag u64 and,
//! with kind 2, its hash; for a large one u32 block count and the hashes);
//! u64 recipe count and the recipes (16-byte recipe key, last use u16, the
//! 32-byte cache key); then blake3 of everything before it. A file that fails
//! any check is ignored as a whole. A small file's record takes 23 bytes (55
//! with its hash); records are kept only when the user trusts stat.
//!
//! A file changed less than [`RACY_SECONDS`] before the build started is not
//! recorded: file times come from a coarse clock, so a second write within
//! the same tick could leave the fingerprint unchanged.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Fingerprint;

const MAGIC: &[u8; 8] = b"MKPSTAT2";
pub(crate) const FILE_NAME: &str = "stat-v2";
/// The files of earlier formats, removed when the current one is written.
pub(crate) const OLD_FILE_NAMES: &[&str] = &["stat-v1"];
/// Files changed this recently (before the build started) are not recorded.
pub(crate) const RACY_SECONDS: i128 = 2;
/// Records unused for this many days are dropped when the file is rewritten.
const KEEP_DAYS: u16 = 30;
/// At most this many records (and as many recipes) are kept, the most recently used.
const MAX_RECORDS: usize = 4_000_000;

/// The blake3 hash of each block of a file.
pub(crate) type BlockHashes = Arc<[[u8; 32]]>;

/// What a record says of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Known {
    /// A file of at least one block: the hash of each block.
    Blocks(BlockHashes),
    /// A smaller file: its tag, and its whole content hash if it was kept.
    Small { tag: u64, hash: Option<[u8; 32]> },
}

/// 12 bytes of blake3 of the fingerprint and the block size.
pub(crate) type RecordKey = [u8; 12];
/// 16 bytes of blake3 of a fragment block's settings and members.
pub(crate) type RecipeKey = [u8; 16];

/// The key of a record, which also names the file in a recipe.
pub(crate) fn record_key(fp: &Fingerprint, block_size: u32) -> RecordKey {
    let mut h = blake3::Hasher::new_derive_key("mkportable stat record v2");
    h.update(&fp.dev.to_le_bytes());
    h.update(&fp.ino.to_le_bytes());
    h.update(&fp.size.to_le_bytes());
    h.update(&fp.mtime_ns().to_le_bytes());
    h.update(&fp.ctime_ns().to_le_bytes());
    h.update(&block_size.to_le_bytes());
    let mut key = [0u8; 12];
    key.copy_from_slice(&h.finalize().as_bytes()[..12]);
    key
}

#[derive(Debug, Clone)]
struct Record {
    known: Known,
    /// Last use, in days since the epoch.
    used: u16,
}

#[derive(Debug, Clone, Copy)]
struct Recipe {
    key: [u8; 32],
    used: u16,
}

#[derive(Debug, Default)]
struct Tables {
    records: HashMap<RecordKey, Record>,
    recipes: HashMap<RecipeKey, Recipe>,
}

/// The records of earlier builds, and those of this one.
#[derive(Debug, Default)]
pub(crate) struct StatDb {
    path: Option<PathBuf>,
    known: Tables,
    /// Records and recipes added or refreshed by this build.
    changed: Tables,
    /// When the build started, in nanoseconds since the epoch.
    now_ns: i128,
}

impl StatDb {
    /// Loads `DIR/stat-v2`; a missing or damaged file gives an empty database.
    pub(crate) fn load(dir: &Path) -> StatDb {
        let path = dir.join(FILE_NAME);
        let known = std::fs::read(&path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        StatDb {
            path: Some(path),
            known,
            changed: Tables::default(),
            now_ns: now_ns(),
        }
    }

    /// What is recorded for `fp` at `block_size`, refreshing the record's use.
    pub(crate) fn get(&mut self, fp: &Fingerprint, block_size: u32) -> Option<Known> {
        let key = record_key(fp, block_size);
        let record = self.known.records.get(&key)?;
        let today = self.today();
        if record.used < today {
            let fresh = Record {
                used: today,
                ..record.clone()
            };
            self.changed.records.insert(key, fresh);
        }
        Some(record.known.clone())
    }

    /// Whether a file with fingerprint `fp` may be recorded: it did not
    /// change too recently.
    pub(crate) fn recordable(&self, fp: &Fingerprint) -> bool {
        fp.ctime_ns().max(fp.mtime_ns()) <= self.now_ns - RACY_SECONDS * 1_000_000_000
    }

    /// Records what was learnt of a file, unless it changed too recently. A
    /// small file's kept hash is not dropped by a build that did not need it.
    pub(crate) fn record(&mut self, fp: &Fingerprint, block_size: u32, known: Known) {
        if !self.recordable(fp) {
            return;
        }
        let key = record_key(fp, block_size);
        let known = match (self.known.records.get(&key), known) {
            (
                Some(Record {
                    known: Known::Small { tag, hash: Some(h) },
                    ..
                }),
                Known::Small { tag: t, hash: None },
            ) if *tag == t => Known::Small {
                tag: t,
                hash: Some(*h),
            },
            (_, new) => new,
        };
        if self
            .known
            .records
            .get(&key)
            .is_some_and(|r| r.known == known)
        {
            return;
        }
        let record = Record {
            known,
            used: self.today(),
        };
        self.known.records.insert(key, record.clone());
        self.changed.records.insert(key, record);
    }

    /// The cache key of the fragment block with recipe `recipe`, refreshing its use.
    pub(crate) fn recipe(&mut self, recipe: &RecipeKey) -> Option<[u8; 32]> {
        let found = *self.known.recipes.get(recipe)?;
        let today = self.today();
        if found.used < today {
            let fresh = Recipe {
                used: today,
                ..found
            };
            self.changed.recipes.insert(*recipe, fresh);
        }
        Some(found.key)
    }

    /// Records the cache key of the fragment block with recipe `recipe`.
    pub(crate) fn record_recipe(&mut self, recipe: RecipeKey, key: [u8; 32]) {
        if self
            .known
            .recipes
            .get(&recipe)
            .is_some_and(|r| r.key == key)
        {
            return;
        }
        let fresh = Recipe {
            key,
            used: self.today(),
        };
        self.known.recipes.insert(recipe, fresh);
        self.changed.recipes.insert(recipe, fresh);
    }

    /// Writes the records back if this build changed any, merged with the file
    /// as it is now (another build may have written it meanwhile).
    pub(crate) fn save(&mut self) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if self.changed.records.is_empty() && self.changed.recipes.is_empty() {
            return Ok(());
        }
        let mut merged = std::fs::read(&path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        merged.records.extend(self.changed.records.drain());
        merged.recipes.extend(self.changed.recipes.drain());
        let today = self.today();
        let fresh = |used: u16| used.saturating_add(KEEP_DAYS) >= today;
        let mut records: Vec<(RecordKey, Record)> = merged
            .records
            .into_iter()
            .filter(|(_, r)| fresh(r.used))
            .collect();
        let mut recipes: Vec<(RecipeKey, Recipe)> = merged
            .recipes
            .into_iter()
            .filter(|(_, r)| fresh(r.used))
            .collect();
        // Most recently used first; the key breaks ties so the file is deterministic.
        records.sort_by(|a, b| b.1.used.cmp(&a.1.used).then(a.0.cmp(&b.0)));
        recipes.sort_by(|a, b| b.1.used.cmp(&a.1.used).then(a.0.cmp(&b.0)));
        records.truncate(MAX_RECORDS);
        recipes.truncate(MAX_RECORDS);
        let bytes = encode(&records, &recipes);
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new()
            .prefix(".stat-v2.")
            .tempfile_in(dir)?;
        temp.write_all(&bytes)?;
        temp.persist(&path).map_err(|e| e.error)?;
        for old in OLD_FILE_NAMES {
            // Best effort: a leftover is only counted by `cache stats`.
            let _ = std::fs::remove_file(dir.join(old));
        }
        Ok(())
    }

    /// Days since the epoch when the build started.
    fn today(&self) -> u16 {
        u16::try_from(self.now_ns / (86_400 * 1_000_000_000)).unwrap_or(u16::MAX)
    }
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Record kinds.
const LARGE: u8 = 0;
const SMALL: u8 = 1;
const SMALL_WITH_HASH: u8 = 2;

fn encode(records: &[(RecordKey, Record)], recipes: &[(RecipeKey, Recipe)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.len() * 24 + recipes.len() * 50);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for (key, record) in records {
        out.extend_from_slice(key);
        out.extend_from_slice(&record.used.to_le_bytes());
        match &record.known {
            Known::Blocks(hashes) => {
                out.push(LARGE);
                out.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
                for hash in hashes.iter() {
                    out.extend_from_slice(hash);
                }
            }
            Known::Small { tag, hash: None } => {
                out.push(SMALL);
                out.extend_from_slice(&tag.to_le_bytes());
            }
            Known::Small {
                tag,
                hash: Some(hash),
            } => {
                out.push(SMALL_WITH_HASH);
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(hash);
            }
        }
    }
    out.extend_from_slice(&(recipes.len() as u64).to_le_bytes());
    for (key, recipe) in recipes {
        out.extend_from_slice(key);
        out.extend_from_slice(&recipe.used.to_le_bytes());
        out.extend_from_slice(&recipe.key);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// A cursor over a byte slice; every read fails past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

fn decode(bytes: &[u8]) -> Option<Tables> {
    let (body, sum) = bytes.split_last_chunk::<32>()?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(body);
    if &r.take::<8>()? != MAGIC {
        return None;
    }
    let count = u64::from_le_bytes(r.take()?);
    if count > (r.0.len() / 23) as u64 {
        return None;
    }
    let mut tables = Tables::default();
    tables.records.reserve(count as usize);
    for _ in 0..count {
        let key: RecordKey = r.take()?;
        let used = u16::from_le_bytes(r.take()?);
        let known = match r.take::<1>()?[0] {
            LARGE => {
                let n = u32::from_le_bytes(r.take()?) as usize;
                if n > r.0.len() / 32 {
                    return None;
                }
                let hashes: Vec<[u8; 32]> =
                    (0..n).map(|_| r.take::<32>()).collect::<Option<_>>()?;
                Known::Blocks(hashes.into())
            }
            SMALL => Known::Small {
                tag: u64::from_le_bytes(r.take()?),
                hash: None,
            },
            SMALL_WITH_HASH => Known::Small {
                tag: u64::from_le_bytes(r.take()?),
                hash: Some(r.take()?),
            },
            _ => return None,
        };
        tables.records.insert(key, Record { known, used });
    }
    let count = u64::from_le_bytes(r.take()?);
    if count > (r.0.len() / 50) as u64 {
        return None;
    }
    tables.recipes.reserve(count as usize);
    for _ in 0..count {
        let key: RecipeKey = r.take()?;
        let used = u16::from_le_bytes(r.take()?);
        let recipe = Recipe {
            key: r.take()?,
            used,
        };
        tables.recipes.insert(key, recipe);
    }
    r.0.is_empty().then_some(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(ino: u64, ctime_s: i64) -> Fingerprint {
        Fingerprint {
            dev: 1,
            ino,
            size: 10,
            mtime_sec: 1,
            ctime_sec: ctime_s,
            mtime_nsec: 0,
            ctime_nsec: 0,
        }
    }

    fn blocks(n: u8) -> Known {
        Known::Blocks(vec![[n; 32], [n + 1; 32]].into())
    }

    fn small(tag: u64, hash: Option<u8>) -> Known {
        Known::Small {
            tag,
            hash: hash.map(|n| [n; 32]),
        }
    }

    #[test]
    fn records_and_recipes_survive_a_save_and_merge_with_other_builds() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = StatDb::load(dir.path());
        let mut b = StatDb::load(dir.path());
        a.record(&fp(1, 100), 4096, blocks(1));
        b.record(&fp(2, 100), 4096, small(7, None));
        b.record(&fp(3, 100), 4096, small(8, Some(9)));
        a.record_recipe([5; 16], [6; 32]);
        a.save().unwrap();
        b.save().unwrap();
        let mut c = StatDb::load(dir.path());
        assert_eq!(c.get(&fp(1, 100), 4096), Some(blocks(1)));
        assert_eq!(c.get(&fp(2, 100), 4096), Some(small(7, None)));
        assert_eq!(c.get(&fp(3, 100), 4096), Some(small(8, Some(9))));
        assert_eq!(c.get(&fp(1, 100), 8192), None);
        assert_eq!(c.get(&fp(1, 101), 4096), None);
        assert_eq!(c.recipe(&[5; 16]), Some([6; 32]));
        assert_eq!(c.recipe(&[6; 16]), None);
    }

    #[test]
    fn a_kept_hash_is_not_dropped_by_a_build_that_did_not_need_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatDb::load(dir.path());
        db.record(&fp(1, 100), 4096, small(7, Some(9)));
        db.record(&fp(1, 100), 4096, small(7, None));
        assert_eq!(db.get(&fp(1, 100), 4096), Some(small(7, Some(9))));
        // Another tag is another content: the record is replaced.
        db.record(&fp(1, 100), 4096, small(8, None));
        assert_eq!(db.get(&fp(1, 100), 4096), Some(small(8, None)));
    }

    #[test]
    fn a_small_file_record_takes_23_bytes_and_55_with_its_hash() {
        let record = |known| (record_key(&fp(1, 100), 4096), Record { known, used: 1 });
        let empty = encode(&[], &[]).len();
        assert_eq!(encode(&[record(small(7, None))], &[]).len() - empty, 23);
        assert_eq!(encode(&[record(small(7, Some(1)))], &[]).len() - empty, 55);
        assert_eq!(encode(&[record(blocks(1))], &[]).len() - empty, 19 + 64);
    }

    #[test]
    fn racy_files_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatDb::load(dir.path());
        let now_s = (db.now_ns / 1_000_000_000) as i64;
        db.record(&fp(1, now_s), 4096, blocks(1));
        db.record(&fp(2, now_s - 10), 4096, blocks(2));
        assert!(!db.recordable(&fp(1, now_s)));
        assert_eq!(db.get(&fp(1, now_s), 4096), None);
        assert_eq!(db.get(&fp(2, now_s - 10), 4096), Some(blocks(2)));
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatDb::load(dir.path());
        db.record(&fp(1, 100), 4096, blocks(1));
        db.record(&fp(2, 100), 4096, small(3, None));
        db.record_recipe([5; 16], [6; 32]);
        db.save().unwrap();
        let path = dir.path().join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();
        assert!(decode(&good).is_some());
        for damage in [0usize, 20, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[damage] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let mut db = StatDb::load(dir.path());
            assert!(db.get(&fp(1, 100), 4096).is_none(), "byte {damage}");
            assert!(db.recipe(&[5; 16]).is_none(), "byte {damage}");
        }
        std::fs::write(&path, &good[..good.len() - 5]).unwrap();
        assert!(StatDb::load(dir.path()).get(&fp(1, 100), 4096).is_none());
    }
}
