//! The lower bound: one core compressing every block a SquashFS writer must
//! compress, with the same settings and the same code as `mkportable-squash`
//! ([`BlockCompressor`]: its streams and reused encoders, without the probe
//! that skips incompressible blocks).
//!
//! The walk lays the corpus out as mksquashfs does by default: a file smaller
//! than the block size goes into a fragment block (filled in walk order, then
//! compressed whole); a larger file is cut into blocks, its short last block
//! compressed alone (no tail packing); an all-zero block is a hole and costs
//! nothing; a file whose content (blake3) or inode was seen before is not
//! compressed again. Metadata blocks count too: a writer must compress its
//! inode, directory, fragment, export and id tables, which take 7 MB and most
//! of a second of xz on a corpus of 100 k small files. The bound takes them from
//! the reference's image of the same corpus and settings (mksquashfs's, or the
//! seed pipeline's), decompressed untimed, and compresses each block again
//! ([`metadata_blocks`]); without that image it counts data blocks only.
//! Xattr tables are not counted: none of the bench's corpora has xattrs.
//!
//! Reading and hashing are not timed: blocks are gathered into batches of
//! [`BATCH`] bytes, and only the loop compressing a batch is timed, by the
//! wall clock and by this thread's on-CPU time (`/proc/thread-self/schedstat`,
//! which a busy machine does not inflate). The bound for T threads is the CPU
//! time divided by T.
//!
//! This machine's speed drifts by several percent within an hour, and by more
//! than 10 % within a cell now and then, so the bench measures the bound in
//! every round of a cell, interleaved with the tools it judges, and keeps
//! every measurement ([`Bound::again`]): a tool's efficiency in a round is the
//! bound of that round ÷ its wall time.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mkportable_squash::{BlockCompressor, Compression, DictSize};

use super::{Codec, Setting};

/// Bytes of blocks gathered before a timed compression pass.
const BATCH: usize = 64 << 20;

/// What compressing a corpus on one core took.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// On-CPU time of the compressing thread, summed over the timed passes.
    pub cpu: Duration,
    /// Wall-clock time of the same passes.
    pub wall: Duration,
    /// Blocks compressed (data blocks and fragment blocks).
    pub blocks: u64,
    /// Bytes fed to the compressor.
    pub bytes_in: u64,
    /// Bytes out, a block counted raw when compressing did not shrink it.
    pub bytes_out: u64,
    /// Regular files seen (hard links once per link).
    pub files: u64,
    /// Bytes of all regular files (hard links once per link).
    pub file_bytes: u64,
    /// Bytes not compressed because an identical file (or the same inode) came before.
    pub dup_bytes: u64,
    /// Bytes in all-zero blocks (holes).
    pub hole_bytes: u64,
    /// Metadata blocks compressed (already counted in `blocks`, `cpu`, `wall`).
    pub meta_blocks: u64,
    /// Their bytes before compression (already counted in `bytes_in`).
    pub meta_bytes_in: u64,
    /// The on-CPU time (or wall time) of compressing them.
    pub meta_time: Duration,
    /// Whether `cpu` came from schedstat (false: it is the wall time).
    pub cpu_measured: bool,
    /// The one-core times of the measurements after the first, in round
    /// order ([`Bound::again`]).
    pub later: Vec<Duration>,
}

impl Bound {
    /// The one-core time of every measurement, in round order: CPU time when
    /// measured, else wall time.
    pub fn rounds(&self) -> Vec<Duration> {
        let first = if self.cpu_measured {
            self.cpu
        } else {
            self.wall
        };
        std::iter::once(first)
            .chain(self.later.iter().copied())
            .collect()
    }

    /// The time one core needs: the median of the measurements (the mean of
    /// the middle two when their number is even).
    pub fn one_core(&self) -> Duration {
        let mut all = self.rounds();
        all.sort();
        let n = all.len();
        if n % 2 == 1 {
            all[n / 2]
        } else {
            (all[n / 2 - 1] + all[n / 2]) / 2
        }
    }

    /// The lowest and highest one-core time measured.
    pub fn spread(&self) -> (Duration, Duration) {
        let all = self.rounds();
        let min = all.iter().copied().min().unwrap_or_default();
        let max = all.iter().copied().max().unwrap_or_default();
        (min, max)
    }

    /// Records `later`, the same bound measured again in a later round.
    pub fn again(&mut self, later: &Bound) {
        self.later.extend(later.rounds());
    }

    /// The bound for `threads` compressing threads.
    pub fn for_threads(&self, threads: usize) -> f64 {
        self.one_core().as_secs_f64() / threads.max(1) as f64
    }

    /// The bound of round `round` (0-based) for `threads` threads, if measured.
    pub fn round_for_threads(&self, round: usize, threads: usize) -> Option<f64> {
        let t = *self.rounds().get(round)?;
        Some(t.as_secs_f64() / threads.max(1) as f64)
    }
}

/// Measures the bound for the trees (or files) under `roots` with `setting`,
/// with the metadata blocks of `reference`, an image of the same corpus and
/// settings, when it is there.
pub fn measure(roots: &[PathBuf], setting: &Setting, reference: Option<&Path>) -> Result<Bound> {
    let mut state = State {
        setting: *setting,
        codec: compressor(setting),
        bound: Bound {
            cpu_measured: thread_cpu().is_some(),
            ..Bound::default()
        },
        batch: Vec::new(),
        batch_bytes: 0,
        fragment: Vec::new(),
        seen_content: HashSet::new(),
        seen_inode: HashSet::new(),
    };
    for root in roots {
        state.visit(root)?;
    }
    state.close_fragment();
    state.flush();
    if let Some(image) = reference.filter(|p| p.is_file()) {
        let blocks = metadata_blocks(image, setting.codec)?;
        let (cpu, wall) = (state.bound.cpu, state.bound.wall);
        state.bound.meta_blocks = blocks.len() as u64;
        state.bound.meta_bytes_in = blocks.iter().map(|b| b.len() as u64).sum();
        state.batch_bytes = state.bound.meta_bytes_in as usize;
        state.batch = blocks;
        state.flush();
        state.bound.meta_time = if state.bound.cpu_measured {
            state.bound.cpu - cpu
        } else {
            state.bound.wall - wall
        };
    }
    Ok(state.bound)
}

struct State {
    setting: Setting,
    codec: BlockCompressor,
    bound: Bound,
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    fragment: Vec<u8>,
    seen_content: HashSet<[u8; 32]>,
    seen_inode: HashSet<(u64, u64)>,
}

impl State {
    /// Walks `root` without following symlinks, directory entries sorted by name.
    fn visit(&mut self, root: &Path) -> Result<()> {
        super::corpus::for_each_file(root, &mut |path, meta| self.regular(path, meta))
    }

    /// Takes in one regular file.
    fn regular(&mut self, path: &Path, meta: &fs::Metadata) -> Result<()> {
        self.bound.files += 1;
        self.bound.file_bytes += meta.len();
        if meta.len() == 0 {
            return Ok(());
        }
        if meta.nlink() > 1 && !self.seen_inode.insert((meta.dev(), meta.ino())) {
            self.bound.dup_bytes += meta.len();
            return Ok(());
        }
        let content = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if !self.seen_content.insert(*blake3::hash(&content).as_bytes()) {
            self.bound.dup_bytes += content.len() as u64;
            return Ok(());
        }
        self.file(&content);
        Ok(())
    }

    /// Queues the blocks of one new file's content.
    fn file(&mut self, content: &[u8]) {
        let block_size = self.setting.block_size as usize;
        if content.len() < block_size {
            if all_zero(content) {
                self.bound.hole_bytes += content.len() as u64;
                return;
            }
            if self.fragment.len() + content.len() > block_size {
                self.close_fragment();
            }
            self.fragment.extend_from_slice(content);
            return;
        }
        for block in content.chunks(block_size) {
            if all_zero(block) {
                self.bound.hole_bytes += block.len() as u64;
            } else {
                self.queue(block.to_vec());
            }
        }
    }

    fn close_fragment(&mut self) {
        if !self.fragment.is_empty() {
            let block = std::mem::take(&mut self.fragment);
            self.queue(block);
        }
    }

    fn queue(&mut self, block: Vec<u8>) {
        self.batch_bytes += block.len();
        self.batch.push(block);
        if self.batch_bytes >= BATCH {
            self.flush();
        }
    }

    /// Compresses the batch: the only timed part.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let mut out = 0u64;
        for block in &self.batch {
            out += stored_size(&self.codec, block) as u64;
        }
        let wall = t0.elapsed();
        let cpu = match (cpu0, thread_cpu()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => wall,
        };
        self.bound.wall += wall;
        self.bound.cpu += cpu;
        self.bound.blocks += self.batch.len() as u64;
        self.bound.bytes_in += self.batch_bytes as u64;
        self.bound.bytes_out += out;
        self.batch.clear();
        self.batch_bytes = 0;
    }
}

/// Size of an uncompressed metadata block.
const META_BLOCK: usize = 8192;
/// Header bit of a metadata block stored uncompressed.
const META_RAW: u16 = 0x8000;
/// A table position that is not there.
const NO_TABLE: u64 = u64::MAX;

/// The metadata blocks of the SquashFS image at `path`, decompressed: its
/// inode and directory tables and the blocks of its fragment, export and id
/// tables (not their indexes, which are stored raw).
pub fn metadata_blocks(path: &Path, codec: Codec) -> Result<Vec<Vec<u8>>> {
    Ok(metadata_runs(path, codec)?.into_iter().flatten().collect())
}

/// [`metadata_blocks`], one list per table (or per run of blocks an index
/// points to).
fn metadata_runs(path: &Path, codec: Codec) -> Result<Vec<Vec<Vec<u8>>>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let what = || format!("the metadata of {}", path.display());
    let mut file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut superblock = [0u8; 96];
    file.read_exact(&mut superblock)
        .with_context(|| format!("{}: short superblock", what()))?;
    let word = |at: usize, n: usize| {
        superblock[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b))
    };
    anyhow::ensure!(
        word(0, 4) == 0x7371_7368,
        "{}: not a SquashFS image",
        what()
    );
    let (inodes, fragments, ids) = (word(4, 4), word(16, 4), word(26, 2));
    let (bytes_used, id_table) = (word(40, 8), word(48, 8));
    let (inode_table, dir_table) = (word(64, 8), word(72, 8));
    let (fragment_table, export_table) = (word(80, 8), word(88, 8));
    // Everything from the inode table on: the data area before it is not read.
    file.seek(SeekFrom::Start(inode_table))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut tables = Vec::new();
    file.read_to_end(&mut tables)
        .with_context(|| format!("reading {}", path.display()))?;
    let bytes = |pos: u64, n: usize| {
        let at = usize::try_from(pos.checked_sub(inode_table)?).ok()?;
        tables.get(at..at.checked_add(n)?)
    };
    let u16_at = |pos: u64| bytes(pos, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at =
        |pos: u64| bytes(pos, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    // Where each run of metadata blocks starts, and the raw indexes (of
    // `entries` × `width` bytes) that end runs.
    let mut starts = vec![inode_table, dir_table];
    let mut indexes: Vec<u64> = Vec::new();
    // The lookup tables' runs and how many bytes they hold.
    let mut sized: Vec<(u64, u64)> = Vec::new();
    for (table, entries, width) in [
        (fragment_table, fragments, 16),
        (export_table, inodes, 8),
        (id_table, ids, 4),
    ] {
        if table == NO_TABLE || entries == 0 {
            continue;
        }
        indexes.push(table);
        // The table's blocks follow one another from the first one the
        // index names, and hold `entries × width` bytes.
        let first = u64_at(table).with_context(|| format!("{}: short index", what()))?;
        starts.push(first);
        sized.push((first, entries * width));
    }
    starts.sort_unstable();
    starts.dedup();
    let mut ends: Vec<u64> = starts.iter().chain(&indexes).copied().collect();
    ends.push(bytes_used);
    ends.sort_unstable();
    let mut runs = Vec::new();
    for &start in &starts {
        let end = ends
            .iter()
            .copied()
            .find(|&e| e > start)
            .unwrap_or(bytes_used);
        let mut blocks = Vec::new();
        let mut pos = start;
        while pos < end {
            let header = u16_at(pos).with_context(|| format!("{}: truncated at {pos}", what()))?;
            let len = usize::from(header & !META_RAW);
            let stored =
                bytes(pos + 2, len).with_context(|| format!("{}: truncated at {pos}", what()))?;
            blocks.push(if header & META_RAW != 0 {
                stored.to_vec()
            } else {
                decompress(codec, stored)
                    .with_context(|| format!("{}: the block at {pos}", what()))?
            });
            pos += 2 + len as u64;
        }
        anyhow::ensure!(
            pos == end,
            "{}: the blocks from {start} run to {pos}, past the next table at {end}",
            what()
        );
        if let Some(&(_, bytes)) = sized.iter().find(|(first, _)| *first == start) {
            let held: u64 = blocks.iter().map(|b| b.len() as u64).sum();
            anyhow::ensure!(
                held == bytes,
                "{}: the table at {start} holds {held} bytes, not {bytes}",
                what()
            );
        }
        runs.push(blocks);
    }
    Ok(runs)
}

/// One compressed metadata block, decompressed.
fn decompress(codec: Codec, stored: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(META_BLOCK);
    match codec {
        Codec::Xz => {
            liblzma::read::XzDecoder::new(stored).read_to_end(&mut out)?;
        }
        Codec::Zstd => {
            zstd::stream::read::Decoder::new(stored)?.read_to_end(&mut out)?;
        }
        Codec::Gzip => {
            flate2::read::ZlibDecoder::new(stored).read_to_end(&mut out)?;
        }
    }
    anyhow::ensure!(
        out.len() <= META_BLOCK,
        "{} bytes, more than a metadata block",
        out.len()
    );
    Ok(out)
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// This thread's on-CPU time, from `/proc/thread-self/schedstat` (nanoseconds).
fn thread_cpu() -> Option<Duration> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace();
    let ns: u64 = fields.next()?.parse().ok()?;
    // "0 0 0": schedstats are off.
    let delay: u64 = fields.next()?.parse().ok()?;
    (ns != 0 || delay != 0).then(|| Duration::from_nanos(ns))
}

/// The writer's own block compressor for `setting` (its streams, its
/// per-thread encoders, huge pages for xz's tables), without its probe for
/// incompressible blocks: every block is compressed, as mksquashfs does.
fn compressor(setting: &Setting) -> BlockCompressor {
    let compression = match setting.codec {
        // The writer's xz preset is mksquashfs's, 6, as the setting's level.
        Codec::Xz => Compression::Xz {
            dict_size: DictSize::Percent(100),
            filters: Vec::new(),
        },
        Codec::Zstd => Compression::Zstd {
            level: setting.level as i32,
        },
        Codec::Gzip => Compression::Gzip {
            level: setting.level,
        },
    };
    BlockCompressor::new(&compression, setting.block_size).expect("the bench's settings are valid")
}

/// The stored size of `input`: compressed, or raw if that is not smaller.
fn stored_size(codec: &BlockCompressor, input: &[u8]) -> usize {
    codec.compress(input).map_or(input.len(), |out| out.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// mksquashfs's images of a tree of 3,000 files, in each codec: every
    /// table is a run of full 8 KiB blocks and a shorter last one, as the
    /// format lays them out, and the walk ends each run on the next table.
    #[test]
    fn metadata_blocks_of_mksquashfs_images() {
        let Some(mksquashfs) = crate::harness::which("mksquashfs") else {
            panic!("mksquashfs is missing: apt-get install squashfs-tools");
        };
        let dir = std::env::temp_dir().join(format!("bound-meta-{}", std::process::id()));
        let tree = dir.join("tree");
        for i in 0..3000 {
            let sub = tree.join(format!("d{}", i % 30));
            fs::create_dir_all(&sub).unwrap();
            fs::write(
                sub.join(format!("file-{i}.txt")),
                format!("{i}").repeat(i % 97),
            )
            .unwrap();
        }
        for (codec, comp) in [
            (Codec::Xz, "xz"),
            (Codec::Gzip, "gzip"),
            (Codec::Zstd, "zstd"),
        ] {
            let image = dir.join(format!("{comp}.sqfs"));
            let status = std::process::Command::new(&mksquashfs)
                .arg(&tree)
                .arg(&image)
                .args([
                    "-noappend",
                    "-quiet",
                    "-no-progress",
                    "-all-root",
                    "-comp",
                    comp,
                ])
                .status()
                .unwrap();
            assert!(status.success(), "mksquashfs -comp {comp}");
            let runs = metadata_runs(&image, codec).unwrap();
            // Inodes, directories, fragments, export, ids.
            assert_eq!(runs.len(), 5, "{comp}");
            assert!(
                runs[0].len() > 1,
                "{comp}: 3,000 inodes take several blocks"
            );
            for run in &runs {
                let (last, full) = run.split_last().unwrap();
                assert!(full.iter().all(|b| b.len() == META_BLOCK), "{comp}");
                assert!(!last.is_empty() && last.len() <= META_BLOCK, "{comp}");
            }
            // The export table: one 8-byte inode reference per inode.
            let export: usize = runs[3].iter().map(Vec::len).sum();
            assert_eq!(export, 8 * (3000 + 30 + 1), "{comp}");
            assert_eq!(
                metadata_blocks(&image, codec).unwrap().len(),
                runs.iter().map(Vec::len).sum::<usize>()
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn measured_in_every_round_the_bound_is_the_median() {
        let at = |cpu: f64| Bound {
            cpu: secs(cpu),
            wall: secs(cpu + 1.0),
            cpu_measured: true,
            ..Bound::default()
        };
        let mut b = at(70.0);
        assert_eq!(b.one_core(), secs(70.0));
        b.again(&at(80.0));
        assert_eq!(b.rounds(), vec![secs(70.0), secs(80.0)]);
        assert_eq!(b.one_core(), secs(75.0));
        assert_eq!(b.for_threads(2), 37.5);
        b.again(&at(60.0));
        assert_eq!(b.one_core(), secs(70.0));
        assert_eq!(b.spread(), (secs(60.0), secs(80.0)));
        assert_eq!(b.round_for_threads(1, 2), Some(40.0));
        assert_eq!(b.round_for_threads(3, 2), None);

        // Without schedstat, wall times stand in for CPU times.
        let mut w = Bound {
            cpu: secs(1.0),
            wall: secs(10.0),
            ..Bound::default()
        };
        w.again(&Bound {
            wall: secs(12.0),
            ..Bound::default()
        });
        assert_eq!(w.one_core(), secs(11.0));
    }
}
