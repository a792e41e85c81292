//! File hashes under stat fingerprints, so an unchanged file need not be read.
//!
//! One file, `DIR/stat-v1`, holds a record per (fingerprint, block size): the
//! blake3 hash of each of the file's blocks (one hash, of the whole content,
//! for a file smaller than a block). It is loaded when the cache opens and
//! rewritten (temporary file, then rename) after a build that learned
//! something, merged with what other builds wrote meanwhile.
//!
//! Format, little-endian: magic `MKPSTAT1`, u64 record count, the records
//! (16 bytes of blake3 of the fingerprint and block size, last use in Unix
//! seconds u32, hash count u32, the hashes), then blake3 of everything before
//! it. A file that fails any check is ignored as a whole. A record takes 24
//! bytes plus 32 per block; records are kept only when the user trusts stat.
//!
//! A file changed less than [`RACY_SECONDS`] before the build started is not
//! recorded: file times come from a coarse clock, so a second write within
//! the same tick could leave the fingerprint unchanged.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Fingerprint;

const MAGIC: &[u8; 8] = b"MKPSTAT1";
const FILE_NAME: &str = "stat-v1";
/// Files changed this recently (before the build started) are not recorded.
pub(crate) const RACY_SECONDS: i128 = 2;
/// Records unused for this long are dropped when the file is rewritten.
const KEEP_SECONDS: u32 = 30 * 24 * 3600;
/// At most this many records are kept (the most recently used).
const MAX_RECORDS: usize = 4_000_000;
/// A record's last use is refreshed when older than this (saves rewrites).
const REFRESH_SECONDS: u32 = 24 * 3600;

/// The blake3 hash of each block of a file.
pub(crate) type BlockHashes = Arc<[[u8; 32]]>;

/// 16 bytes of blake3 of the fingerprint and the block size.
type RecordKey = [u8; 16];

fn record_key(fp: &Fingerprint, block_size: u32) -> RecordKey {
    let mut h = blake3::Hasher::new_derive_key("mkportable stat record v1");
    h.update(&fp.dev.to_le_bytes());
    h.update(&fp.ino.to_le_bytes());
    h.update(&fp.size.to_le_bytes());
    h.update(&fp.mtime_ns().to_le_bytes());
    h.update(&fp.ctime_ns().to_le_bytes());
    h.update(&block_size.to_le_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&h.finalize().as_bytes()[..16]);
    key
}

#[derive(Debug, Clone)]
struct Record {
    hashes: BlockHashes,
    used: u32,
}

/// The records of earlier builds, and those of this one.
#[derive(Debug, Default)]
pub(crate) struct StatDb {
    path: Option<PathBuf>,
    records: HashMap<RecordKey, Record>,
    /// Records added or refreshed by this build.
    changed: HashMap<RecordKey, Record>,
    /// When the build started, in nanoseconds since the epoch.
    now_ns: i128,
}

impl StatDb {
    /// Loads `DIR/stat-v1`; a missing or damaged file gives an empty database.
    pub(crate) fn load(dir: &Path) -> StatDb {
        let path = dir.join(FILE_NAME);
        let records = std::fs::read(&path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        StatDb {
            path: Some(path),
            records,
            changed: HashMap::new(),
            now_ns: now_ns(),
        }
    }

    /// The block hashes recorded for `fp` at `block_size`, refreshing the record's use.
    pub(crate) fn get(&mut self, fp: &Fingerprint, block_size: u32) -> Option<BlockHashes> {
        let key = record_key(fp, block_size);
        let record = self.records.get(&key)?;
        let hashes = Arc::clone(&record.hashes);
        let now = self.now_s();
        if record.used + REFRESH_SECONDS < now {
            let fresh = Record {
                hashes: Arc::clone(&hashes),
                used: now,
            };
            self.changed.insert(key, fresh);
        }
        Some(hashes)
    }

    /// Records the block hashes of a file read in full, unless it changed too recently.
    pub(crate) fn record(&mut self, fp: &Fingerprint, block_size: u32, hashes: BlockHashes) {
        let racy = fp.ctime_ns().max(fp.mtime_ns()) > self.now_ns - RACY_SECONDS * 1_000_000_000;
        if racy {
            return;
        }
        let key = record_key(fp, block_size);
        if self.records.get(&key).is_some_and(|r| r.hashes == hashes) {
            return;
        }
        let record = Record {
            hashes,
            used: self.now_s(),
        };
        self.records.insert(key, record.clone());
        self.changed.insert(key, record);
    }

    /// Writes the records back if this build changed any, merged with the file
    /// as it is now (another build may have written it meanwhile).
    pub(crate) fn save(&mut self) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if self.changed.is_empty() {
            return Ok(());
        }
        let mut merged = std::fs::read(&path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        for (key, record) in self.changed.drain() {
            merged.insert(key, record);
        }
        let now = self.now_s();
        let mut list: Vec<(RecordKey, Record)> = merged
            .into_iter()
            .filter(|(_, r)| r.used + KEEP_SECONDS >= now)
            .collect();
        // Most recently used first; the key breaks ties so the file is deterministic.
        list.sort_by(|a, b| b.1.used.cmp(&a.1.used).then(a.0.cmp(&b.0)));
        list.truncate(MAX_RECORDS);
        let bytes = encode(&list);
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new()
            .prefix(".stat-v1.")
            .tempfile_in(dir)?;
        temp.write_all(&bytes)?;
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

impl StatDb {
    fn now_s(&self) -> u32 {
        u32::try_from(self.now_ns / 1_000_000_000).unwrap_or(u32::MAX)
    }
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn encode(list: &[(RecordKey, Record)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + list.len() * 56);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(list.len() as u64).to_le_bytes());
    for (key, record) in list {
        out.extend_from_slice(key);
        out.extend_from_slice(&record.used.to_le_bytes());
        out.extend_from_slice(&(record.hashes.len() as u32).to_le_bytes());
        for hash in record.hashes.iter() {
            out.extend_from_slice(hash);
        }
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

fn decode(bytes: &[u8]) -> Option<HashMap<RecordKey, Record>> {
    let (body, sum) = bytes.split_last_chunk::<32>()?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(body);
    if &r.take::<8>()? != MAGIC {
        return None;
    }
    let count = u64::from_le_bytes(r.take()?);
    let mut records = HashMap::with_capacity(count.min(MAX_RECORDS as u64) as usize);
    for _ in 0..count {
        let key: RecordKey = r.take()?;
        let used = u32::from_le_bytes(r.take()?);
        let n = u32::from_le_bytes(r.take()?) as usize;
        if n > r.0.len() / 32 {
            return None;
        }
        let hashes: Vec<[u8; 32]> = (0..n).map(|_| r.take::<32>()).collect::<Option<_>>()?;
        records.insert(
            key,
            Record {
                hashes: hashes.into(),
                used,
            },
        );
    }
    r.0.is_empty().then_some(records)
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

    fn hashes(n: u8) -> BlockHashes {
        vec![[n; 32], [n + 1; 32]].into()
    }

    #[test]
    fn records_survive_a_save_and_merge_with_other_builds() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = StatDb::load(dir.path());
        let mut b = StatDb::load(dir.path());
        a.record(&fp(1, 100), 4096, hashes(1));
        b.record(&fp(2, 100), 4096, hashes(2));
        a.save().unwrap();
        b.save().unwrap();
        let mut c = StatDb::load(dir.path());
        assert_eq!(c.get(&fp(1, 100), 4096), Some(hashes(1)));
        assert_eq!(c.get(&fp(2, 100), 4096), Some(hashes(2)));
        assert_eq!(c.get(&fp(1, 100), 8192), None);
        assert_eq!(c.get(&fp(1, 101), 4096), None);
    }

    #[test]
    fn racy_files_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatDb::load(dir.path());
        let now_s = (db.now_ns / 1_000_000_000) as i64;
        db.record(&fp(1, now_s), 4096, hashes(1));
        db.record(&fp(2, now_s - 10), 4096, hashes(2));
        assert_eq!(db.get(&fp(1, now_s), 4096), None);
        assert_eq!(db.get(&fp(2, now_s - 10), 4096), Some(hashes(2)));
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatDb::load(dir.path());
        db.record(&fp(1, 100), 4096, hashes(1));
        db.save().unwrap();
        let path = dir.path().join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();
        for damage in [0usize, 20, good.len() - 1] {
            let mut bad = good.clone();
            bad[damage] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                StatDb::load(dir.path()).get(&fp(1, 100), 4096).is_none(),
                "byte {damage}"
            );
        }
        std::fs::write(&path, &good[..good.len() - 5]).unwrap();
        assert!(StatDb::load(dir.path()).get(&fp(1, 100), 4096).is_none());
    }
}
