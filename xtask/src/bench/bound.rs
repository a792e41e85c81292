//! The lower bound: one core compressing every block a SquashFS writer must
//! compress, with the same settings and libraries as `mkportable-squash`.
//!
//! The walk lays the corpus out as mksquashfs does by default: a file smaller
//! than the block size goes into a fragment block (filled in walk order, then
//! compressed whole); a larger file is cut into blocks, its short last block
//! compressed alone (no tail packing); an all-zero block is a hole and costs
//! nothing; a file whose content (blake3) or inode was seen before is not
//! compressed again. Metadata blocks are left out (a few KiB).
//!
//! Reading and hashing are not timed: blocks are gathered into batches of
//! [`BATCH`] bytes, and only the loop compressing a batch is timed, by the
//! wall clock and by this thread's on-CPU time (`/proc/thread-self/schedstat`,
//! which a busy machine does not inflate). The bound for T threads is the CPU
//! time divided by T.
//!
//! This machine's speed drifts by several percent within an hour, so the bench
//! measures each bound twice, before and after the corpus's cells, and uses the
//! mean ([`Bound::again`]); the two figures show how far the machine moved.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};

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
    /// Whether `cpu` came from schedstat (false: it is the wall time).
    pub cpu_measured: bool,
    /// The one-core time of a second measurement, after the cells: then
    /// [`Bound::one_core`] is the mean of the two.
    pub after: Option<Duration>,
}

impl Bound {
    /// The time one core needs; CPU time when measured, else wall time; the
    /// mean of both measurements once measured [`again`](Bound::again).
    pub fn one_core(&self) -> Duration {
        let before = self.before();
        match self.after {
            Some(after) => (before + after) / 2,
            None => before,
        }
    }

    /// The one-core time of the first measurement.
    pub fn before(&self) -> Duration {
        if self.cpu_measured {
            self.cpu
        } else {
            self.wall
        }
    }

    /// Records `later`, the same bound measured again after the cells.
    pub fn again(&mut self, later: &Bound) {
        self.after = Some(later.before());
    }

    /// The bound for `threads` compressing threads.
    pub fn for_threads(&self, threads: usize) -> f64 {
        self.one_core().as_secs_f64() / threads.max(1) as f64
    }
}

/// Measures the bound for the trees (or files) under `roots` with `setting`.
pub fn measure(roots: &[PathBuf], setting: &Setting) -> Result<Bound> {
    let mut state = State {
        setting: *setting,
        codec: Compressor::new(setting),
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
    Ok(state.bound)
}

struct State {
    setting: Setting,
    codec: Compressor,
    bound: Bound,
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    fragment: Vec<u8>,
    seen_content: HashSet<[u8; 32]>,
    seen_inode: HashSet<(u64, u64)>,
}

impl State {
    /// Walks `path` without following symlinks, directory entries sorted by name.
    fn visit(&mut self, path: &Path) -> Result<()> {
        let meta =
            fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            let mut entries = fs::read_dir(path)
                .with_context(|| format!("listing {}", path.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("listing {}", path.display()))?;
            entries.sort();
            for entry in entries {
                self.visit(&entry)?;
            }
        } else if meta.is_file() {
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
        }
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
            out += self.codec.compress(block) as u64;
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

/// One compressor, reused across blocks where the library allows it (zstd's
/// context, deflate's state); xz sets up a new encoder per block, as
/// `mkportable-squash` and mksquashfs's `lzma_stream_buffer_encode` do.
enum Compressor {
    Xz { dict_size: u32, level: u32 },
    Zstd(zstd::bulk::Compressor<'static>),
    Gzip(flate2::Compress),
}

impl Compressor {
    fn new(setting: &Setting) -> Compressor {
        match setting.codec {
            Codec::Xz => Compressor::Xz {
                dict_size: setting.block_size,
                level: setting.level,
            },
            Codec::Zstd => Compressor::Zstd(
                zstd::bulk::Compressor::new(setting.level as i32).expect("a valid zstd level"),
            ),
            Codec::Gzip => Compressor::Gzip(flate2::Compress::new(
                flate2::Compression::new(setting.level),
                true,
            )),
        }
    }

    /// The stored size of `input`: compressed, or raw if that is not smaller.
    fn compress(&mut self, input: &[u8]) -> usize {
        // Room for one byte less than the input, as the writers: a block that
        // does not shrink is stored raw and its compression abandoned.
        let mut out = Vec::with_capacity(input.len().saturating_sub(1));
        let done = match self {
            Compressor::Xz { dict_size, level } => xz(input, *dict_size, *level, &mut out),
            Compressor::Zstd(c) => c.compress_to_buffer(input, &mut out).is_ok(),
            Compressor::Gzip(c) => {
                c.reset();
                deflate(c, input, &mut out)
            }
        };
        if done && out.len() < input.len() {
            out.len()
        } else {
            input.len()
        }
    }
}

/// An `.xz` stream with CRC32, LZMA2 at `level` with a `dict_size` dictionary.
fn xz(input: &[u8], dict_size: u32, level: u32, out: &mut Vec<u8>) -> bool {
    let mut lzma2 = LzmaOptions::new_preset(level).expect("a valid xz preset");
    lzma2.dict_size(dict_size);
    let mut chain = Filters::new();
    chain.lzma2(&lzma2);
    let mut encoder = Stream::new_stream_encoder(&chain, Check::Crc32).expect("valid xz filters");
    loop {
        let consumed = encoder.total_in() as usize;
        match encoder.process_vec(&input[consumed..], out, Action::Finish) {
            Ok(Status::StreamEnd) => return true,
            Ok(Status::Ok | Status::GetCheck) if out.len() < out.capacity() => continue,
            _ => return false,
        }
    }
}

/// A zlib stream (what SquashFS's gzip means).
fn deflate(c: &mut flate2::Compress, input: &[u8], out: &mut Vec<u8>) -> bool {
    loop {
        let consumed = c.total_in() as usize;
        match c.compress_vec(&input[consumed..], out, flate2::FlushCompress::Finish) {
            Ok(flate2::Status::StreamEnd) => return true,
            Ok(flate2::Status::Ok) if out.len() < out.capacity() => continue,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn measured_again_the_bound_is_the_mean() {
        let mut b = Bound {
            cpu: secs(70.0),
            wall: secs(71.0),
            cpu_measured: true,
            ..Bound::default()
        };
        assert_eq!(b.one_core(), secs(70.0));
        let later = Bound {
            cpu: secs(80.0),
            wall: secs(81.0),
            cpu_measured: true,
            ..Bound::default()
        };
        b.again(&later);
        assert_eq!(b.before(), secs(70.0));
        assert_eq!(b.after, Some(secs(80.0)));
        assert_eq!(b.one_core(), secs(75.0));
        assert_eq!(b.for_threads(2), 37.5);

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
