//! Metadata blocks (§4 of the format notes) and the two-level lookup tables
//! built from them (§5): fragment, export, id and xattr-id tables.
//!
//! A table is laid out uncompressed first, in a [`MetaWriter`], and only then
//! cut into 8 KiB blocks that are compressed in parallel on the pool, results
//! kept in order ([`encode`]). A reference into a table is taken while it is
//! laid out, as a [`MetaPos`] (block number, offset), and turned into the
//! on-disk form (compressed block start, offset) afterwards by
//! [`Encoded::to_ref`]. The bytes are those of compressing each block as soon
//! as it fills (mksquashfs's way, §16): the uncompressed layout never depends
//! on compressed sizes, because every reference has a fixed width.
//!
//! The inode and directory tables point into each other: directory entries
//! hold the start of an inode block, directory inodes the start of a directory
//! block. Those fields are [`Link`]s, left empty while laying out, and
//! [`encode_linked`] compresses the two tables together, each block as soon as
//! the starts its links need are known, several at a time. Links only point
//! back in time (a directory's listing follows its children's inodes, its
//! inode follows its listing), so every block is reached. The dependencies
//! still chain (hundreds of blocks in a tree of 170k inodes), which bounds
//! how much of this work runs in parallel.
//!
//! A table of a single block is compressed on the calling thread. Blocks go
//! through a [`MetaCompress`]: the compressor itself, or [`CachedMeta`], which
//! keeps compressed metadata blocks in the block cache (a rebuild of an
//! unchanged tree then compresses no metadata either).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, PoisonError};

use rayon::prelude::*;

use crate::cache::{BlockKind, Cache};
use crate::compress::Compressor;

/// Compresses one metadata block (at most [`METADATA_SIZE`] bytes); `None`
/// when the result would not be strictly smaller (store it raw).
pub(crate) trait MetaCompress: Sync {
    fn compress_meta(&self, payload: &[u8]) -> Option<Vec<u8>>;
}

impl MetaCompress for Compressor {
    fn compress_meta(&self, payload: &[u8]) -> Option<Vec<u8>> {
        Compressor::compress_meta(self, payload)
    }
}

/// A [`Compressor`] behind the block cache: a metadata block is looked up by
/// the hash of its payload and the settings, and compressed (and stored) on a
/// miss; a block that does not compress is stored raw (tiny tables: one id, a
/// few fragments). Same bytes as the compressor alone.
#[derive(Debug)]
pub(crate) struct CachedMeta<'a> {
    pub(crate) comp: &'a Compressor,
    pub(crate) cache: &'a Cache,
    /// [`Cache::settings`] of `comp` and the image's block size.
    pub(crate) settings: [u8; 32],
}

impl MetaCompress for CachedMeta<'_> {
    fn compress_meta(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let key = Cache::meta_key(&self.settings, blake3::hash(payload).as_bytes());
        if let Some(entry) = self.cache.get(&key, BlockKind::Meta, payload.len()) {
            // `get` checked the length: a raw entry is the payload itself.
            return (!entry.raw).then_some(entry.bytes);
        }
        let packed = self.comp.compress_meta(payload);
        match &packed {
            Some(packed) => self.cache.put(&key, false, packed),
            None => self.cache.put(&key, true, payload),
        }
        packed
    }
}

/// Uncompressed size of every metadata block but a table's last.
pub(crate) const METADATA_SIZE: usize = 8192;

/// An uncompressed metadata stream, to be compressed by [`encode`] or
/// [`encode_linked`].
#[derive(Debug, Default)]
pub(crate) struct MetaWriter {
    bytes: Vec<u8>,
    /// Sorted by position, as written.
    links: Vec<Link>,
}

/// A position in a metadata stream: the block number and the offset inside
/// its uncompressed payload. [`Encoded::to_ref`] gives the on-disk reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetaPos {
    pub(crate) block: u32,
    pub(crate) offset: u16,
}

/// A u32 field of one stream of a linked pair that holds the compressed start
/// (relative to its table) of block `block` of the other stream, filled in by
/// [`encode_linked`]. `at` counts from the start of the bytes it was recorded
/// for: the record given to [`put_link`], then the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    at: usize,
    block: u32,
}

/// A compressed table: its metadata blocks back to back, and where each starts.
#[derive(Debug)]
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    /// Start of each block relative to the table, then the table's length.
    starts: Vec<u64>,
}

impl MetaWriter {
    pub(crate) fn new() -> MetaWriter {
        MetaWriter::default()
    }

    /// Where the next byte written will be.
    pub(crate) fn pos(&self) -> MetaPos {
        MetaPos {
            block: (self.bytes.len() / METADATA_SIZE) as u32,
            offset: (self.bytes.len() % METADATA_SIZE) as u16,
        }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Writes `bytes`, whose `links` (built by [`put_link`]) count from its start.
    pub(crate) fn write_linked(&mut self, bytes: &[u8], links: &[Link]) {
        let base = self.bytes.len();
        self.links.extend(links.iter().map(|link| Link {
            at: base + link.at,
            block: link.block,
        }));
        self.bytes.extend_from_slice(bytes);
    }

    /// Compresses a stream that has no links.
    pub(crate) fn finish(self, comp: &dyn MetaCompress, pool: &rayon::ThreadPool) -> Encoded {
        debug_assert!(self.links.is_empty(), "linked streams go to encode_linked");
        encode(comp, pool, &self.bytes)
    }

    fn n_blocks(&self) -> usize {
        self.bytes.len().div_ceil(METADATA_SIZE)
    }

    fn block(&self, block_idx: usize) -> &[u8] {
        let end = ((block_idx + 1) * METADATA_SIZE).min(self.bytes.len());
        &self.bytes[block_idx * METADATA_SIZE..end]
    }

    /// The links that touch block `block_idx` (a field can straddle two blocks).
    fn links_of(&self, block_idx: usize) -> &[Link] {
        &self.links[link_range(&self.links, block_idx)]
    }

    /// Fills in the links of block `block_idx`, whose bytes `payload` is a copy
    /// of, from the block starts of `other`.
    fn fill_links(&self, block_idx: usize, payload: &mut [u8], other: &Encoded) {
        let begin = block_idx * METADATA_SIZE;
        for link in self.links_of(block_idx) {
            let start = other.starts[link.block as usize] as u32;
            for (at, byte) in (link.at..).zip(start.to_le_bytes()) {
                if let Some(slot) = at.checked_sub(begin).and_then(|i| payload.get_mut(i)) {
                    *slot = byte;
                }
            }
        }
    }
}

/// Which of `links` (sorted by position) touch block `block_idx`.
fn link_range(links: &[Link], block_idx: usize) -> std::ops::Range<usize> {
    let begin = block_idx * METADATA_SIZE;
    let first = links.partition_point(|link| link.at + 4 <= begin);
    let last = links.partition_point(|link| link.at < begin + METADATA_SIZE);
    first..last
}

/// Appends an empty u32 to `buf` that [`encode_linked`] fills with the start of
/// block `block` of the other stream, and records it in `links`.
pub(crate) fn put_link(buf: &mut Vec<u8>, links: &mut Vec<Link>, block: u32) {
    links.push(Link {
        at: buf.len(),
        block,
    });
    buf.extend_from_slice(&[0; 4]);
}

impl Encoded {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// `(block start << 16) | offset`, the reference format of inodes and xattrs.
    pub(crate) fn to_ref(&self, pos: MetaPos) -> u64 {
        (self.starts[pos.block as usize] << 16) | u64::from(pos.offset)
    }

    /// Where each block starts, relative to the table.
    pub(crate) fn block_starts(&self) -> &[u64] {
        &self.starts[..self.starts.len() - 1]
    }
}

/// Compresses a stream that has no links: all its blocks at once.
pub(crate) fn encode(comp: &dyn MetaCompress, pool: &rayon::ThreadPool, bytes: &[u8]) -> Encoded {
    let blocks: Vec<&[u8]> = bytes.chunks(METADATA_SIZE).collect();
    let mut out = Encoded {
        bytes: Vec::new(),
        starts: vec![0],
    };
    for block in encode_blocks(comp, pool, &blocks) {
        out.bytes.extend_from_slice(&block);
        out.starts.push(out.bytes.len() as u64);
    }
    out
}

/// Compresses two streams whose [`Link`]s point into each other (the inode and
/// directory tables), filling the links in.
///
/// A block can be compressed once the blocks of the other stream before every
/// block its links point at are: then those starts are known. Every thread of
/// `pool` takes blocks that can go, those laid out earliest first (a block's
/// place in its stream stands for when it was laid out), since the rest waits
/// on them, and releases the blocks its result makes ready. Threads wait only
/// when no block can go, on a chain of dependencies.
///
/// # Panics
///
/// If a link points past the end of the other stream, or the links form a
/// cycle (a block waiting for itself), neither of which the post-order pass of
/// `inodes` can produce.
pub(crate) fn encode_linked(
    comp: &dyn MetaCompress,
    pool: &rayon::ThreadPool,
    streams: [MetaWriter; 2],
) -> [Encoded; 2] {
    let n_blocks = [streams[0].n_blocks(), streams[1].n_blocks()];
    // For each block, how many leading blocks of the other stream must be
    // compressed before it can be: enough to know the start of every block its
    // links point at.
    let needs: [Vec<usize>; 2] = [0, 1].map(|s| {
        (0..n_blocks[s])
            .map(|block_idx| {
                let links = streams[s].links_of(block_idx).iter();
                links.map(|link| link.block as usize).max().unwrap_or(0)
            })
            .collect()
    });
    let by_need: [Vec<usize>; 2] = [0, 1].map(|s| {
        let mut order: Vec<usize> = (0..n_blocks[s]).collect();
        order.sort_by_key(|&block_idx| needs[s][block_idx]);
        order
    });
    let mut schedule = Schedule {
        needs,
        by_need,
        released: [0, 0],
        queue: BinaryHeap::new(),
        in_flight: 0,
        failed: false,
        done: n_blocks.map(|n| vec![None; n]),
        out: [0, 1].map(|_| Encoded {
            bytes: Vec::new(),
            starts: vec![0],
        }),
    };
    schedule.release();
    let state = Mutex::new(schedule);
    let wake = Condvar::new();
    let work = || {
        let _wake_on_panic = WakeOnPanic {
            state: &state,
            wake: &wake,
        };
        let lock = || state.lock().expect("no thread panics holding the lock");
        let mut schedule = lock();
        loop {
            let Some(Reverse((_, s, block_idx))) = schedule.queue.pop() else {
                if schedule.in_flight == 0 || schedule.failed {
                    // Done, or stuck (checked below), or another thread panicked.
                    return;
                }
                schedule = wake
                    .wait(schedule)
                    .expect("no thread panics holding the lock");
                continue;
            };
            let mut payload = streams[s].block(block_idx).to_vec();
            streams[s].fill_links(block_idx, &mut payload, &schedule.out[1 - s]);
            schedule.in_flight += 1;
            drop(schedule);
            let mut block = Vec::with_capacity(payload.len() + 2);
            encode_block(comp, &payload, &mut block);
            schedule = lock();
            schedule.in_flight -= 1;
            schedule.done[s][block_idx] = Some(block);
            schedule.advance(s);
            wake.notify_all();
        }
    };
    if pool.current_num_threads() == 1 || n_blocks[0] + n_blocks[1] <= 1 {
        work();
    } else {
        pool.broadcast(|_| work());
    }
    let schedule = state
        .into_inner()
        .expect("no thread panics holding the lock");
    for (out, n) in schedule.out.iter().zip(n_blocks) {
        assert_eq!(
            out.starts.len() - 1,
            n,
            "links point back in time, so every block is reached"
        );
    }
    schedule.out
}

/// The shared state of [`encode_linked`].
#[derive(Debug)]
struct Schedule {
    needs: [Vec<usize>; 2],
    /// Each stream's blocks by what they need; the first `released[s]` are queued or done.
    by_need: [Vec<usize>; 2],
    released: [usize; 2],
    /// Blocks that can go, earliest laid out first: by the fraction of its
    /// stream before the block, in millionths, then stream and block number.
    queue: BinaryHeap<Reverse<(u64, usize, usize)>>,
    /// Blocks being compressed.
    in_flight: usize,
    /// Whether a thread panicked.
    failed: bool,
    /// Compressed blocks not yet moved to `out`.
    done: [Vec<Option<Vec<u8>>>; 2],
    /// The leading blocks of each stream compressed so far.
    out: [Encoded; 2],
}

impl Schedule {
    /// Moves the blocks of stream `s` that now follow its leading ones to
    /// `out[s]`, and queues the blocks this makes ready.
    fn advance(&mut self, s: usize) {
        let out = &mut self.out[s];
        while let Some(block) = self.done[s]
            .get_mut(out.starts.len() - 1)
            .and_then(Option::take)
        {
            out.bytes.extend_from_slice(&block);
            out.starts.push(out.bytes.len() as u64);
        }
        self.release();
    }

    /// Queues the blocks whose links can now be filled in.
    fn release(&mut self) {
        for s in 0..2 {
            let known = self.out[1 - s].starts.len() - 1;
            let n_blocks = self.needs[s].len() as u64;
            while let Some(&block_idx) = self.by_need[s].get(self.released[s]) {
                if self.needs[s][block_idx] > known {
                    break;
                }
                let progress = block_idx as u64 * 1_000_000 / n_blocks;
                self.queue.push(Reverse((progress, s, block_idx)));
                self.released[s] += 1;
            }
        }
    }
}

/// Wakes the other threads of [`encode_linked`] when one panics, so that they
/// stop instead of waiting for its block (rayon then passes the panic on).
struct WakeOnPanic<'a> {
    state: &'a Mutex<Schedule>,
    wake: &'a Condvar,
}

impl Drop for WakeOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut schedule = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            schedule.failed = true;
            self.wake.notify_all();
        }
    }
}

/// Compresses metadata blocks, in parallel on `pool` when there are several.
fn encode_blocks(
    comp: &dyn MetaCompress,
    pool: &rayon::ThreadPool,
    blocks: &[&[u8]],
) -> Vec<Vec<u8>> {
    let one = |payload: &&[u8]| {
        let mut out = Vec::with_capacity(payload.len() + 2);
        encode_block(comp, payload, &mut out);
        out
    };
    if blocks.len() == 1 {
        // Not worth a trip to the pool.
        return blocks.iter().map(one).collect();
    }
    pool.install(|| blocks.par_iter().map(one).collect())
}

/// Appends one metadata block: a u16 header (bit 15 = stored raw, low bits =
/// length) and the payload, compressed only when that is strictly smaller.
fn encode_block(comp: &dyn MetaCompress, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && payload.len() <= METADATA_SIZE);
    match comp.compress_meta(payload) {
        Some(packed) => {
            out.extend_from_slice(&(packed.len() as u16).to_le_bytes());
            out.extend_from_slice(&packed);
        }
        None => {
            out.extend_from_slice(&(payload.len() as u16 | 0x8000).to_le_bytes());
            out.extend_from_slice(payload);
        }
    }
}

/// Encodes a lookup table whose blocks start at absolute position `start`:
/// the records cut into metadata blocks, followed by the index of their
/// absolute positions. Returns the bytes and the absolute position of the index.
pub(crate) fn lookup_table(
    comp: &dyn MetaCompress,
    pool: &rayon::ThreadPool,
    records: &[u8],
    start: u64,
) -> (Vec<u8>, u64) {
    let table = encode(comp, pool, records);
    let index_pos = start + table.bytes.len() as u64;
    let mut out = Vec::with_capacity(table.bytes.len() + 8 * table.block_starts().len());
    out.extend_from_slice(&table.bytes);
    for pos in table.block_starts() {
        out.extend_from_slice(&(start + pos).to_le_bytes());
    }
    (out, index_pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;
    use crate::Compression;

    fn gzip() -> Compressor {
        Compressor::new(&Compression::Gzip { level: 9 }, 4096).unwrap()
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// Splits the encoded stream back into (raw?, payload length) per block.
    fn headers(bytes: &[u8]) -> Vec<(bool, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let h = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            let len = usize::from(h & 0x7fff);
            out.push((h & 0x8000 != 0, len));
            at += 2 + len;
        }
        out
    }

    /// Compresses `stream` one block after the other, as mksquashfs does.
    fn sequential(comp: &dyn MetaCompress, stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for block in stream.chunks(METADATA_SIZE) {
            encode_block(comp, block, &mut out);
        }
        out
    }

    /// Metadata that compresses to a different length in every block.
    fn text(n: usize, seed: u64) -> Vec<u8> {
        let words = noise(n / 8 + 1, seed);
        let mut out = Vec::with_capacity(n + 16);
        for w in words {
            out.extend_from_slice(&b"inodedirentryxattr"[usize::from(w % 12)..][..6]);
            out.extend_from_slice(&[w, w / 3]);
        }
        out.truncate(n);
        out
    }

    #[test]
    fn metadata_blocks_hold_exactly_8k_but_the_last() {
        let comp = gzip();
        let pool = pool(2);
        for (n, want) in [
            (1, vec![(true, 1)]),
            (8192, vec![(true, 8192)]),
            (8193, vec![(true, 8192), (true, 1)]),
            (20000, vec![(true, 8192), (true, 8192), (true, 3616)]),
        ] {
            let mut w = MetaWriter::new();
            // Written in odd pieces: blocks are cut by size, not by write.
            for chunk in noise(n, n as u64).chunks(1000) {
                w.write(chunk);
            }
            assert_eq!(headers(w.finish(&comp, &pool).bytes()), want, "{n} bytes");
        }
        // Compressible payloads are stored compressed (bit 15 clear).
        let mut w = MetaWriter::new();
        w.write(&[0u8; 8192]);
        let (raw, len) = headers(w.finish(&comp, &pool).bytes())[0];
        assert!(!raw && len < 100);
    }

    #[test]
    fn positions_become_references_once_compressed() {
        let comp = gzip();
        let mut w = MetaWriter::new();
        let pos = |block, offset| MetaPos { block, offset };
        assert_eq!(w.pos(), pos(0, 0));
        w.write(&noise(8000, 1));
        assert_eq!(w.pos(), pos(0, 8000));
        w.write(&noise(200, 2));
        assert_eq!(w.pos(), pos(1, 8));
        let table = w.finish(&comp, &pool(1));
        // The first block was stored raw: 2 + 8192 bytes.
        assert_eq!(table.to_ref(pos(1, 8)), (8194 << 16) | 8);
        assert_eq!(table.to_ref(pos(0, 5)), 5);
        // The end of a table is a position too (an empty directory's listing).
        assert_eq!(table.to_ref(pos(2, 0)), (8194 + 2 + 8) << 16);
    }

    #[test]
    fn lookup_tables_end_with_their_index() {
        let comp = gzip();
        let pool = pool(2);
        for (records, want_blocks) in [(4usize, 1usize), (8192, 1), (8196, 2), (20000, 3)] {
            let data = noise(records, 7);
            let (bytes, index_pos) = lookup_table(&comp, &pool, &data, 1000);
            let blocks = headers(&bytes[..(index_pos - 1000) as usize]);
            assert_eq!(blocks.len(), want_blocks, "{records}");
            let index: Vec<u64> = bytes[(index_pos - 1000) as usize..]
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let mut at = 1000;
            let want: Vec<u64> = blocks
                .iter()
                .map(|(_, len)| {
                    let here = at;
                    at += 2 + *len as u64;
                    here
                })
                .collect();
            assert_eq!(index, want, "{records}");
            assert_eq!(at, index_pos, "the index follows the blocks directly");
        }
    }

    /// Compressing on the pool gives the bytes of compressing block after block,
    /// at any thread count.
    #[test]
    fn parallel_blocks_match_sequential() {
        for comp in [
            gzip(),
            Compressor::new(&Compression::default(), 1 << 17).unwrap(),
        ] {
            for n in [1, 8192, 5 * 8192 + 77] {
                let stream = text(n, n as u64);
                let want = sequential(&comp, &stream);
                for threads in [1, 2, 5] {
                    let pool = pool(threads);
                    let mut w = MetaWriter::new();
                    w.write(&stream);
                    let table = w.finish(&comp, &pool);
                    assert!(table.bytes() == want, "{n} bytes, {threads} threads");
                    let (bytes, _) = lookup_table(&comp, &pool, &stream, 0);
                    assert!(bytes.starts_with(&want), "{n} bytes, {threads} threads");
                }
            }
        }
    }

    /// Two streams pointing into each other the way the inode and directory
    /// tables do: each record links to a block of the other stream that was
    /// already begun, mostly the open one, sometimes an older one (a parent's
    /// listing names children written long before), and some records are long
    /// (a big directory's run), so a block may hold few links.
    fn linked_pair(n_records: usize) -> [MetaWriter; 2] {
        let mut streams = [MetaWriter::new(), MetaWriter::new()];
        let choices = noise(n_records, 3);
        for (i, choice) in choices.into_iter().enumerate() {
            let s = usize::from(choice % 3 == 0);
            let open = streams[1 - s].pos().block;
            let target = open - open.min(u32::from(choice >> 5) % 4);
            let head = usize::from(choice % 61);
            let tail = usize::from(choice / 7) * if choice % 5 == 0 { 97 } else { 1 };
            let mut buf = text(head, i as u64);
            let mut links = Vec::new();
            put_link(&mut buf, &mut links, target);
            buf.extend_from_slice(&text(tail, !(i as u64)));
            streams[s].write_linked(&buf, &links);
        }
        streams
    }

    /// The oracle for [`encode_linked`]: guess every block start, fill in the
    /// links, compress block after block, and repeat with the starts found
    /// until they no longer change. The links have a single consistent
    /// solution, so the fixed point is it.
    fn fixed_point(comp: &dyn MetaCompress, streams: &[MetaWriter; 2]) -> [Vec<u8>; 2] {
        let mut starts: Vec<Vec<u64>> = streams.iter().map(|s| vec![0; s.n_blocks() + 1]).collect();
        loop {
            let mut out = [Vec::new(), Vec::new()];
            let mut found = vec![vec![0], vec![0]];
            for s in 0..2 {
                let mut bytes = streams[s].bytes.clone();
                for link in &streams[s].links {
                    let start = starts[1 - s][link.block as usize] as u32;
                    bytes[link.at..link.at + 4].copy_from_slice(&start.to_le_bytes());
                }
                for block in bytes.chunks(METADATA_SIZE) {
                    encode_block(comp, block, &mut out[s]);
                    found[s].push(out[s].len() as u64);
                }
            }
            if found == starts {
                return out;
            }
            starts = found;
        }
    }

    #[test]
    fn linked_tables_match_sequential() {
        const N_RECORDS: usize = 3000;
        let comp = gzip();
        let streams = linked_pair(N_RECORDS);
        assert!(streams[0].n_blocks() > 4 && streams[1].n_blocks() > 4);
        let want = fixed_point(&comp, &streams);
        for threads in [1, 2, 5] {
            let streams = linked_pair(N_RECORDS);
            let got = encode_linked(&comp, &pool(threads), streams);
            assert!(
                got[0].bytes() == want[0] && got[1].bytes() == want[1],
                "{threads} threads"
            );
        }
    }

    /// A link across two blocks holds back the second block too, even when
    /// that block's own links could be filled in at once.
    #[test]
    fn links_across_blocks_hold_back_both() {
        let comp = gzip();
        let build = || {
            let mut inodes = MetaWriter::new();
            inodes.write(&text(6 * METADATA_SIZE, 1));
            let mut dirs = MetaWriter::new();
            // The first link's last three bytes fall in the second block, whose
            // own link could be filled in at once.
            dirs.write(&text(METADATA_SIZE - 1, 2));
            for (block, len) in [(5, 100), (0, 3000)] {
                let mut buf = Vec::new();
                let mut links = Vec::new();
                put_link(&mut buf, &mut links, block);
                buf.extend_from_slice(&text(len, u64::from(block)));
                dirs.write_linked(&buf, &links);
            }
            [inodes, dirs]
        };
        let want = fixed_point(&comp, &build());
        for threads in [1, 2, 5] {
            let got = encode_linked(&comp, &pool(threads), build());
            assert!(
                got[0].bytes() == want[0] && got[1].bytes() == want[1],
                "{threads} threads"
            );
        }
    }
}
