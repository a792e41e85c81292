//! Compressors: the settings users choose ([`Compression`]) and the per-image
//! engine ([`Compressor`]) that turns blocks into the streams the kernel accepts.
//!
//! # Format
//!
//! Each compressed block, data or metadata, is one self-contained stream
//! (format reference §3.2):
//!
//! - gzip (superblock id 1): a zlib stream (RFC 1950), not raw deflate or gzip.
//! - xz (id 4): a complete `.xz` container with LZMA2, an optional BCJ filter
//!   in front of it, and a CRC32 check (the kernel rejects CRC64 and SHA-256).
//!   The LZMA2 dictionary is the resolved `-Xdict-size` for data blocks and
//!   8192 bytes for metadata blocks, never more than the kernel allocated.
//! - zstd (id 6): one frame with the content size in its header, so its
//!   window never exceeds the block (the kernel caps it at
//!   `max(block_size, 8192)`).
//!
//! The options block after the superblock is written only when the settings
//! differ from mksquashfs's defaults, with the layouts of §3.1 (see
//! [`Compressor::options_block`]).
//!
//! A block is kept compressed only when that is strictly smaller than the
//! input; otherwise the caller stores it raw, as mksquashfs does.

mod huge;
mod xz;
mod zstd;

use crate::Error;

/// Which compressor, with its settings, as mksquashfs spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compression {
    /// zlib streams (superblock id 1); `level` 1–9, default 9.
    Gzip {
        /// Compression level, 1–9.
        level: u32,
    },
    /// `.xz` containers with LZMA2 and CRC32 (id 4).
    Xz {
        /// Dictionary size; default 100 % of the block size.
        dict_size: DictSize,
        /// BCJ filters to try in addition to plain LZMA2; the smallest result wins.
        filters: Vec<BcjFilter>,
    },
    /// One-shot zstd frames with the content size (id 6); `level` 1–22, default 15.
    Zstd {
        /// Compression level, 1–22.
        level: i32,
    },
}

/// An xz dictionary size as given by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictSize {
    /// A size in bytes.
    Bytes(u32),
    /// A percentage of the block size.
    Percent(u32),
}

/// The BCJ filters mksquashfs offers (`-Xbcj`).
///
/// The order of the variants is the order of their option bits, which is
/// also the order in which [`Compression::Xz`] tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BcjFilter {
    /// x86 (options bit 0x01).
    X86,
    /// PowerPC (0x02).
    PowerPc,
    /// IA-64 (0x04).
    Ia64,
    /// ARM (0x08).
    Arm,
    /// ARM Thumb (0x10).
    ArmThumb,
    /// SPARC (0x20).
    Sparc,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Xz {
            dict_size: DictSize::Percent(100),
            filters: Vec::new(),
        }
    }
}

impl Compression {
    /// Parses the seed's string syntax, a compressor name followed by its
    /// mksquashfs `-X` options: `"xz -Xdict-size 100%"`, `"xz -Xbcj x86,arm"`,
    /// `"zstd -Xcompression-level 19"`, `"gzip -Xcompression-level 6"`, `"zstd"`.
    ///
    /// Words are separated by whitespace. A word starting with `-X` is never
    /// taken as the value of the option before it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the unknown compressor, option or bad value.
    pub fn parse(s: &str) -> Result<Compression, Error> {
        let mut words = s.split_whitespace().peekable();
        let Some(name) = words.next() else {
            return Err(invalid(
                "compression",
                "empty (expected xz, zstd or gzip, then its -X options)",
            ));
        };
        let mut x_options = Vec::new();
        while let Some(option) = words.next() {
            let value = words.next_if(|word| !word.starts_with("-X"));
            x_options.push((option, value));
        }
        Compression::build(name, x_options)
    }

    /// Builds the settings from mksquashfs's `-comp NAME` and the `-X…` options
    /// that followed it, in order, each as (option as spelled, e.g. `-Xdict-size`, value).
    ///
    /// As in mksquashfs, a repeated option overrides the earlier one, except
    /// `-Xbcj`, whose filters add up.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the unknown compressor, option or bad value.
    pub fn from_mksquashfs(
        name: &str,
        x_options: &[(String, String)],
    ) -> Result<Compression, Error> {
        let x_options = x_options
            .iter()
            .map(|(option, value)| (option.as_str(), Some(value.as_str())));
        Compression::build(name, x_options)
    }

    /// The `-X` options of `name` that take a value (so an argument parser knows
    /// to consume one), e.g. `["-Xdict-size", "-Xbcj"]` for `"xz"`.
    ///
    /// This lists what mksquashfs accepts, including gzip's `-Xwindow-size`
    /// and `-Xstrategy`, which [`Compression::from_mksquashfs`] then rejects
    /// as not supported.
    pub fn mksquashfs_x_options(name: &str) -> &'static [&'static str] {
        match name {
            "xz" => &["-Xdict-size", "-Xbcj"],
            "zstd" => &["-Xcompression-level"],
            "gzip" => &["-Xcompression-level", "-Xwindow-size", "-Xstrategy"],
            _ => &[],
        }
    }

    /// The default settings of compressor `name`, then each option applied in order.
    fn build<'a>(
        name: &str,
        x_options: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Compression, Error> {
        let mut compression = match name {
            "xz" => Compression::default(),
            "zstd" => Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
            "gzip" => Compression::Gzip {
                level: GZIP_DEFAULT_LEVEL,
            },
            "lzo" | "lz4" | "lzma" => {
                return Err(invalid(
                    format!("compressor `{name}`"),
                    "not supported (use xz, zstd or gzip)",
                ))
            }
            _ => {
                return Err(invalid(
                    format!("compressor `{name}`"),
                    "unknown compressor (expected xz, zstd or gzip)",
                ))
            }
        };
        for (option, value) in x_options {
            compression.apply(option, value)?;
        }
        Ok(compression)
    }

    /// Applies one `-X` option; `value` is `None` when the user gave none.
    fn apply(&mut self, option: &str, value: Option<&str>) -> Result<(), Error> {
        let value = || value.ok_or_else(|| invalid(option, "missing value"));
        let name = self.name();
        match (self, option) {
            (Compression::Xz { dict_size, .. }, "-Xdict-size") => {
                *dict_size = parse_dict_size(value()?).map_err(|reason| invalid(option, reason))?;
            }
            (Compression::Xz { filters, .. }, "-Xbcj") => {
                let more = parse_bcj_list(value()?).map_err(|reason| invalid(option, reason))?;
                filters.extend(more);
                filters.sort();
                filters.dedup();
            }
            (Compression::Zstd { level }, "-Xcompression-level") => {
                let n = parse_level(value()?).map_err(|reason| invalid(option, reason))?;
                check_level("zstd", n, ZSTD_LEVELS)?;
                *level = n as i32;
            }
            (Compression::Gzip { level }, "-Xcompression-level") => {
                let n = parse_level(value()?).map_err(|reason| invalid(option, reason))?;
                check_level("gzip", n, GZIP_LEVELS)?;
                *level = n as u32;
            }
            (Compression::Gzip { .. }, "-Xwindow-size" | "-Xstrategy") => {
                return Err(invalid(
                    option,
                    "not supported for gzip (only -Xcompression-level is)",
                ));
            }
            (Compression::Xz { .. }, _) => {
                return Err(invalid(
                    option,
                    "not an option of xz (it takes -Xdict-size and -Xbcj)",
                ));
            }
            (Compression::Zstd { .. } | Compression::Gzip { .. }, _) => {
                return Err(invalid(
                    option,
                    format!("not an option of {name} (it takes -Xcompression-level)"),
                ));
            }
        }
        Ok(())
    }

    /// The compressor's name as mksquashfs's `-comp` spells it.
    fn name(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "gzip",
            Compression::Xz { .. } => "xz",
            Compression::Zstd { .. } => "zstd",
        }
    }
}

impl BcjFilter {
    /// Every filter, in the order of the option bits.
    const ALL: [BcjFilter; 6] = [
        BcjFilter::X86,
        BcjFilter::PowerPc,
        BcjFilter::Ia64,
        BcjFilter::Arm,
        BcjFilter::ArmThumb,
        BcjFilter::Sparc,
    ];

    /// The name `-Xbcj` takes.
    fn name(self) -> &'static str {
        match self {
            BcjFilter::X86 => "x86",
            BcjFilter::PowerPc => "powerpc",
            BcjFilter::Ia64 => "ia64",
            BcjFilter::Arm => "arm",
            BcjFilter::ArmThumb => "armthumb",
            BcjFilter::Sparc => "sparc",
        }
    }

    /// The bit in the xz options block's `filters` field.
    fn option_bit(self) -> u32 {
        match self {
            BcjFilter::X86 => 0x01,
            BcjFilter::PowerPc => 0x02,
            BcjFilter::Ia64 => 0x04,
            BcjFilter::Arm => 0x08,
            BcjFilter::ArmThumb => 0x10,
            BcjFilter::Sparc => 0x20,
        }
    }

    /// liblzma's id of this filter (it goes before LZMA2 in the chain).
    fn lzma_id(self) -> u64 {
        match self {
            BcjFilter::X86 => liblzma_sys::LZMA_FILTER_X86,
            BcjFilter::PowerPc => liblzma_sys::LZMA_FILTER_POWERPC,
            BcjFilter::Ia64 => liblzma_sys::LZMA_FILTER_IA64,
            BcjFilter::Arm => liblzma_sys::LZMA_FILTER_ARM,
            BcjFilter::ArmThumb => liblzma_sys::LZMA_FILTER_ARMTHUMB,
            BcjFilter::Sparc => liblzma_sys::LZMA_FILTER_SPARC,
        }
    }
}

/// The compressor of one image: settings resolved against the block size.
///
/// It holds only plain values, so it is `Send + Sync` and every block is
/// compressed with fresh encoder state: the output of a block depends on
/// that block alone, whatever thread compresses it.
#[derive(Debug, Clone)]
pub(crate) struct Compressor {
    engine: Engine,
}

/// [`Compression`] after validation against the block size.
#[derive(Debug, Clone)]
enum Engine {
    Gzip {
        level: u32,
    },
    Xz {
        /// The LZMA2 dictionary of data blocks, in bytes.
        dict_size: u32,
        /// The LZMA2 dictionary of metadata blocks, in bytes.
        meta_dict_size: u32,
        block_size: u32,
        /// Sorted (option bit order) and without duplicates.
        filters: Vec<BcjFilter>,
    },
    Zstd {
        level: i32,
    },
}

const GZIP_LEVELS: (i64, i64) = (1, 9);
const GZIP_DEFAULT_LEVEL: u32 = 9;
/// mksquashfs writes zlib streams with a 32 KiB window and names no strategy.
const GZIP_WINDOW_BITS: u16 = 15;
const ZSTD_LEVELS: (i64, i64) = (1, 22);
const ZSTD_DEFAULT_LEVEL: i32 = 15;
/// mksquashfs's xz preset; only the dictionary size is overridden.
const XZ_PRESET: u32 = 6;
/// The uncompressed size of a metadata block, and the dictionary of its xz streams.
const METADATA_SIZE: u32 = 8192;

impl Compressor {
    /// Resolves `compression` against `block_size` (a power of two).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when a level is out of range or the xz
    /// dictionary is not one the kernel accepts: 2^n or 3·2^n bytes, from
    /// 8192 bytes (or exactly the block size) to the block size.
    pub(crate) fn new(compression: &Compression, block_size: u32) -> Result<Compressor, Error> {
        debug_assert!(block_size.is_power_of_two(), "block size {block_size}");
        let engine = match compression {
            Compression::Gzip { level } => {
                check_level("gzip", i64::from(*level), GZIP_LEVELS)?;
                Engine::Gzip { level: *level }
            }
            Compression::Zstd { level } => {
                check_level("zstd", i64::from(*level), ZSTD_LEVELS)?;
                Engine::Zstd { level: *level }
            }
            Compression::Xz { dict_size, filters } => {
                let mut filters = filters.clone();
                filters.sort();
                filters.dedup();
                let dict_size = resolve_dict_size(*dict_size, block_size)?;
                // The kernel allocates the dictionary the options block names,
                // or max(block size, 8192) without one, and a stream must not
                // declare more. Only 4 KiB blocks with BCJ filters name less
                // than 8192 (mksquashfs still uses 8192 for metadata there, and
                // the kernel cannot read it).
                let meta_dict_size = if xz_writes_options(dict_size, block_size, &filters) {
                    dict_size.min(METADATA_SIZE)
                } else {
                    METADATA_SIZE
                };
                Engine::Xz {
                    dict_size,
                    meta_dict_size,
                    block_size,
                    filters,
                }
            }
        };
        Ok(Compressor { engine })
    }

    /// Names the resolved settings, for cache keys: equal tags give equal
    /// compressed bytes for equal input (with the same library versions).
    pub(crate) fn cache_tag(&self) -> String {
        format!("{:?}", self.engine)
    }

    /// The superblock's compression id.
    pub(crate) fn id(&self) -> u16 {
        match self.engine {
            Engine::Gzip { .. } => 1,
            Engine::Xz { .. } => 4,
            Engine::Zstd { .. } => 6,
        }
    }

    /// The payload of the compressor options block, or `None` when every
    /// setting is mksquashfs's default (then the block and flag 0x0400 are left out).
    ///
    /// Layouts, little-endian:
    /// - gzip (level ≠ 9): u32 level, u16 window bits (15), u16 strategies (0);
    /// - xz (dictionary ≠ block size, or any BCJ filter): u32 dictionary size,
    ///   u32 filter bits (x86 0x01, powerpc 0x02, ia64 0x04, arm 0x08,
    ///   armthumb 0x10, sparc 0x20);
    /// - zstd (level ≠ 15): u32 level.
    pub(crate) fn options_block(&self) -> Option<Vec<u8>> {
        match &self.engine {
            Engine::Gzip { level } if *level != GZIP_DEFAULT_LEVEL => {
                let mut payload = level.to_le_bytes().to_vec();
                payload.extend(GZIP_WINDOW_BITS.to_le_bytes());
                payload.extend(0u16.to_le_bytes());
                Some(payload)
            }
            Engine::Xz {
                dict_size,
                block_size,
                filters,
                ..
            } if xz_writes_options(*dict_size, *block_size, filters) => {
                let bits = filters
                    .iter()
                    .fold(0u32, |bits, filter| bits | filter.option_bit());
                let mut payload = dict_size.to_le_bytes().to_vec();
                payload.extend(bits.to_le_bytes());
                Some(payload)
            }
            Engine::Zstd { level } if *level != ZSTD_DEFAULT_LEVEL => {
                Some(level.to_le_bytes().to_vec())
            }
            Engine::Gzip { .. } | Engine::Xz { .. } | Engine::Zstd { .. } => None,
        }
    }

    /// Compresses one data or fragment block; `None` when the result would
    /// not be strictly smaller than `input` (store it raw).
    ///
    /// For xz with BCJ filters this compresses once without a filter and once
    /// per filter and keeps the smallest; a tie keeps the earlier candidate.
    pub(crate) fn compress_data(&self, input: &[u8]) -> Option<Vec<u8>> {
        if looks_incompressible(input) {
            return None;
        }
        self.compress_block(input)
    }

    /// [`Compressor::compress_data`] without the probe: always runs the compressor.
    fn compress_block(&self, input: &[u8]) -> Option<Vec<u8>> {
        match &self.engine {
            Engine::Gzip { level } => gzip(input, *level),
            Engine::Zstd { level } => zstd(input, *level),
            Engine::Xz {
                dict_size, filters, ..
            } => {
                let mut best = xz(input, *dict_size, None, input.len());
                for filter in filters {
                    let limit = best.as_ref().map_or(input.len(), Vec::len);
                    if let Some(smaller) = xz(input, *dict_size, Some(*filter), limit) {
                        best = Some(smaller);
                    }
                }
                best
            }
        }
    }

    /// Compresses one metadata block (at most 8192 bytes); `None` when the
    /// result would not be strictly smaller than `input`. xz uses an 8192-byte
    /// dictionary (4096 with 4 KiB blocks and BCJ filters) and never a BCJ filter here.
    pub(crate) fn compress_meta(&self, input: &[u8]) -> Option<Vec<u8>> {
        debug_assert!(
            input.len() <= METADATA_SIZE as usize,
            "metadata block of {} bytes",
            input.len()
        );
        match &self.engine {
            Engine::Gzip { level } => gzip(input, *level),
            Engine::Zstd { level } => zstd(input, *level),
            Engine::Xz { meta_dict_size, .. } => xz(input, *meta_dict_size, None, input.len()),
        }
    }
}

/// Compresses one block at a time exactly as the writer compresses data and
/// fragment blocks (the same streams, from the same per-thread encoders), but
/// without the probe that stores blocks which look incompressible raw.
///
/// For measuring: `cargo xtask bench` times one core running this over a
/// corpus as the lower bound of any writer's wall time with these settings.
#[derive(Debug)]
pub struct BlockCompressor(Compressor);

impl BlockCompressor {
    /// The compressor for `compression` with blocks of `block_size` bytes (a
    /// power of two from 4 KiB to 1 MiB).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] as for [`write_image`](crate::write_image).
    pub fn new(compression: &Compression, block_size: u32) -> Result<BlockCompressor, Error> {
        let block_size = crate::writer::check_block_size(block_size)?;
        Compressor::new(compression, block_size).map(BlockCompressor)
    }

    /// `input` compressed, or `None` when that is not strictly smaller (the
    /// writer then stores the block raw).
    pub fn compress(&self, input: &[u8]) -> Option<Vec<u8>> {
        self.0.compress_block(input)
    }
}

/// Bytes per probe sample.
const PROBE_SAMPLE: usize = 4096;
/// Number of samples a block is probed at.
const PROBE_SAMPLES: usize = 4;

/// A cheap test for data that no compressor will shrink (already compressed
/// files: archives, images, `.xz`/`.gz`/`.zst` in a store path): four 4 KiB
/// samples spread over the block, each given to zstd at its fastest level. Only
/// if none of them shrinks by 2 % is the block stored raw without running the
/// real compressor, which on such data spends its full effort for nothing
/// (xz most of all: about 30× the probe's cost). A block with any compressible
/// sample is compressed as usual, so the probe can only lose the rare block
/// whose redundancy lies entirely between the samples.
fn looks_incompressible(input: &[u8]) -> bool {
    if input.len() < PROBE_SAMPLE * PROBE_SAMPLES * 2 {
        return false;
    }
    let step = (input.len() - PROBE_SAMPLE) / (PROBE_SAMPLES - 1);
    let mut output = [0u8; PROBE_SAMPLE * 98 / 100];
    (0..PROBE_SAMPLES).all(|i| {
        let sample = &input[i * step..i * step + PROBE_SAMPLE];
        // An error means the frame did not fit: the sample did not shrink by 2 %.
        ::zstd::bulk::compress_to_buffer(sample, &mut output, 1).is_err()
    })
}

/// A zlib stream of `input`, if shorter than `input`.
fn gzip(input: &[u8], level: u32) -> Option<Vec<u8>> {
    use flate2::{Compress, FlushCompress};

    let mut encoder = Compress::new(flate2::Compression::new(level), true);
    // Room for one byte less than the input: a stream that does not fit is
    // abandoned, as it would be stored raw anyway.
    let mut output = Vec::with_capacity(input.len().saturating_sub(1));
    loop {
        let consumed = encoder.total_in() as usize;
        let status = encoder
            .compress_vec(&input[consumed..], &mut output, FlushCompress::Finish)
            .expect("deflate cannot fail: the input is complete and the level valid");
        match status {
            flate2::Status::StreamEnd => break,
            flate2::Status::Ok if output.len() < output.capacity() => continue,
            // Out of room, or no progress possible.
            flate2::Status::Ok | flate2::Status::BufError => return None,
        }
    }
    (output.len() < input.len()).then_some(output)
}

/// A zstd frame of `input` with its content size, if shorter than `input`.
fn zstd(input: &[u8], level: i32) -> Option<Vec<u8>> {
    zstd::compress(input, level, input.len())
}

/// An `.xz` stream of `input` (CRC32 check, preset 6 with an LZMA2 dictionary
/// of `dict_size` bytes, `bcj` in front), if shorter than `limit` bytes.
///
/// The single-threaded stream encoder (the multithreaded one lays out the
/// container differently), reused per thread (see [`xz`]). The kernel decodes
/// only CRC32 or no check (liblzma's default is CRC64).
fn xz(input: &[u8], dict_size: u32, bcj: Option<BcjFilter>, limit: usize) -> Option<Vec<u8>> {
    xz::compress(
        input,
        XZ_PRESET,
        dict_size,
        bcj.map(BcjFilter::lzma_id),
        limit,
    )
}

/// Whether xz settings differ from mksquashfs's defaults, so the image needs
/// an options block (and the kernel then sizes its dictionary from it).
fn xz_writes_options(dict_size: u32, block_size: u32, filters: &[BcjFilter]) -> bool {
    dict_size != block_size || !filters.is_empty()
}

/// An [`Error::InvalidOption`].
fn invalid(option: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        option: option.into(),
        reason: reason.into(),
    }
}

/// Parses `-Xcompression-level`'s value; the range is checked by [`check_level`].
fn parse_level(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .map_err(|_| format!("`{value}` is not a number"))
}

/// Checks a compression level against the compressor's inclusive range.
fn check_level(compressor: &str, level: i64, (min, max): (i64, i64)) -> Result<(), Error> {
    if (min..=max).contains(&level) {
        Ok(())
    } else {
        Err(invalid(
            "-Xcompression-level",
            format!("{level} is out of range for {compressor} ({min} to {max})"),
        ))
    }
}

/// Parses `-Xdict-size`'s value as mksquashfs does: bytes (`N`, `NK`, `NM`)
/// or a percentage of the block size (`N%`).
fn parse_dict_size(value: &str) -> Result<DictSize, String> {
    let not_a_size = || format!("`{value}` is not a size (expected N, NK, NM or N%)");
    if let Some(digits) = value.strip_suffix('%') {
        if digits.contains('.') {
            // mksquashfs takes `37.5%`; `DictSize::Percent` holds whole percents.
            return Err(format!(
                "`{value}`: fractional percentages are not supported (give the size in bytes, e.g. 48K)"
            ));
        }
        let percent: u32 = digits.parse().map_err(|_| not_a_size())?;
        check_percent(percent)?;
        return Ok(DictSize::Percent(percent));
    }
    let (digits, unit) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 1024),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 1024 * 1024),
        _ => (value, 1),
    };
    let n: u32 = digits.parse().map_err(|_| not_a_size())?;
    let bytes = n
        .checked_mul(unit)
        .ok_or_else(|| format!("`{value}` is too large"))?;
    Ok(DictSize::Bytes(bytes))
}

/// A dictionary percentage must be from 1 to 100, as in mksquashfs.
fn check_percent(percent: u32) -> Result<(), String> {
    if (1..=100).contains(&percent) {
        Ok(())
    } else {
        Err(format!("{percent}% is out of range (1% to 100%)"))
    }
}

/// Parses `-Xbcj`'s comma-separated list of filter names.
fn parse_bcj_list(value: &str) -> Result<Vec<BcjFilter>, String> {
    value
        .split(',')
        .map(|name| {
            if name.is_empty() {
                return Err(format!("empty filter name in `{value}`"));
            }
            BcjFilter::ALL.into_iter().find(|filter| filter.name() == name).ok_or_else(|| {
                format!("unknown filter `{name}` (expected x86, powerpc, ia64, arm, armthumb or sparc)")
            })
        })
        .collect()
}

/// The dictionary size of data blocks in bytes, checked as mksquashfs checks it.
fn resolve_dict_size(dict_size: DictSize, block_size: u32) -> Result<u32, Error> {
    let fail = |reason: String| invalid("-Xdict-size", reason);
    let (bytes, described) = match dict_size {
        DictSize::Bytes(bytes) => (bytes, format!("{bytes} bytes")),
        DictSize::Percent(percent) => {
            check_percent(percent).map_err(fail)?;
            let bytes = (u64::from(block_size) * u64::from(percent) / 100) as u32;
            (
                bytes,
                format!("{percent}% of the block size ({bytes} bytes)"),
            )
        }
    };
    if bytes > block_size {
        return Err(fail(format!(
            "{described} is larger than the block size ({block_size} bytes)"
        )));
    }
    // A dictionary equal to the block size is the default, which mksquashfs
    // accepts below 8192 bytes too (4 KiB blocks): then no options block is
    // written and the kernel allocates max(block size, 8192).
    if bytes < METADATA_SIZE && bytes != block_size {
        return Err(fail(format!(
            "{described} is less than the minimum of {METADATA_SIZE} bytes"
        )));
    }
    if !is_xz_header_size(bytes) {
        return Err(fail(format!(
            "{described} cannot be stored in the xz header: it must be 2^n or 3*2^n bytes \
             (e.g. 100%, 75%, 50%, 25%, 32K, 16K or 8K)"
        )));
    }
    Ok(bytes)
}

/// Whether an LZMA2 dictionary size is exactly representable in the xz header
/// (2^n or 3·2^n), the only sizes the kernel accepts in the options block.
fn is_xz_header_size(bytes: u32) -> bool {
    if bytes == 0 {
        return false;
    }
    let odd_part = bytes >> bytes.trailing_zeros();
    odd_part == 1 || odd_part == 3
}

#[cfg(test)]
mod tests {
    use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};

    use super::*;

    /// The `Debug` form of a value, or the error's user-facing text.
    fn error_text(res: Result<impl std::fmt::Debug, Error>) -> Result<String, String> {
        res.map(|ok| format!("{ok:?}")).map_err(|e| e.to_string())
    }

    // ---------------------------------------------------------------- parsing

    #[test]
    fn parse() {
        fn check(input: &str, expect: Result<&str, &str>) {
            let res = error_text(Compression::parse(input));
            assert_eq!(res.as_deref().map_err(String::as_str), expect, "{input:?}");
        }
        check("xz", Ok("Xz { dict_size: Percent(100), filters: [] }"));
        check(
            "  xz   -Xdict-size  50% ",
            Ok("Xz { dict_size: Percent(50), filters: [] }"),
        );
        check(
            "xz -Xdict-size 8192",
            Ok("Xz { dict_size: Bytes(8192), filters: [] }"),
        );
        check(
            "xz -Xdict-size 32K",
            Ok("Xz { dict_size: Bytes(32768), filters: [] }"),
        );
        check(
            "xz -Xdict-size 1m",
            Ok("Xz { dict_size: Bytes(1048576), filters: [] }"),
        );
        // mksquashfs checks the form only against the block size, later.
        check(
            "xz -Xdict-size 12345",
            Ok("Xz { dict_size: Bytes(12345), filters: [] }"),
        );
        check(
            "xz -Xbcj arm,x86",
            Ok("Xz { dict_size: Percent(100), filters: [X86, Arm] }"),
        );
        check(
            "xz -Xbcj sparc -Xbcj x86,sparc -Xdict-size 25%",
            Ok("Xz { dict_size: Percent(25), filters: [X86, Sparc] }"),
        );
        check(
            "xz -Xbcj x86,powerpc,ia64,arm,armthumb,sparc",
            Ok("Xz { dict_size: Percent(100), filters: [X86, PowerPc, Ia64, Arm, ArmThumb, Sparc] }"),
        );
        check(
            "xz -Xdict-size 50% -Xdict-size 1M",
            Ok("Xz { dict_size: Bytes(1048576), filters: [] }"),
        );
        check("zstd", Ok("Zstd { level: 15 }"));
        check("zstd -Xcompression-level 22", Ok("Zstd { level: 22 }"));
        check("gzip", Ok("Gzip { level: 9 }"));
        check("gzip -Xcompression-level 1", Ok("Gzip { level: 1 }"));

        check("", Err("invalid option compression: empty (expected xz, zstd or gzip, then its -X options)"));
        check(
            "lzo",
            Err("invalid option compressor `lzo`: not supported (use xz, zstd or gzip)"),
        );
        check(
            "lz4 -Xhc",
            Err("invalid option compressor `lz4`: not supported (use xz, zstd or gzip)"),
        );
        check(
            "lzma",
            Err("invalid option compressor `lzma`: not supported (use xz, zstd or gzip)"),
        );
        check(
            "XZ",
            Err("invalid option compressor `XZ`: unknown compressor (expected xz, zstd or gzip)"),
        );
        check(
            "xz -Xfoo 1",
            Err("invalid option -Xfoo: not an option of xz (it takes -Xdict-size and -Xbcj)"),
        );
        check(
            "xz -Xfoo",
            Err("invalid option -Xfoo: not an option of xz (it takes -Xdict-size and -Xbcj)"),
        );
        check(
            "xz 50%",
            Err("invalid option 50%: not an option of xz (it takes -Xdict-size and -Xbcj)"),
        );
        check(
            "xz -Xcompression-level 6",
            Err("invalid option -Xcompression-level: not an option of xz (it takes -Xdict-size and -Xbcj)"),
        );
        check(
            "zstd -Xdict-size 50%",
            Err("invalid option -Xdict-size: not an option of zstd (it takes -Xcompression-level)"),
        );
        check(
            "xz -Xdict-size",
            Err("invalid option -Xdict-size: missing value"),
        );
        check(
            "xz -Xdict-size -Xbcj x86",
            Err("invalid option -Xdict-size: missing value"),
        );
        check(
            "zstd -Xcompression-level",
            Err("invalid option -Xcompression-level: missing value"),
        );
        check(
            "xz -Xdict-size 12X",
            Err("invalid option -Xdict-size: `12X` is not a size (expected N, NK, NM or N%)"),
        );
        check(
            "xz -Xdict-size K",
            Err("invalid option -Xdict-size: `K` is not a size (expected N, NK, NM or N%)"),
        );
        check(
            "xz -Xdict-size -1",
            Err("invalid option -Xdict-size: `-1` is not a size (expected N, NK, NM or N%)"),
        );
        check(
            "xz -Xdict-size 5000M",
            Err("invalid option -Xdict-size: `5000M` is too large"),
        );
        check(
            "xz -Xdict-size 0%",
            Err("invalid option -Xdict-size: 0% is out of range (1% to 100%)"),
        );
        check(
            "xz -Xdict-size 101%",
            Err("invalid option -Xdict-size: 101% is out of range (1% to 100%)"),
        );
        check(
            "xz -Xdict-size 37.5%",
            Err(
                "invalid option -Xdict-size: `37.5%`: fractional percentages are not supported \
                 (give the size in bytes, e.g. 48K)",
            ),
        );
        check(
            "xz -Xbcj x86,arm64",
            Err("invalid option -Xbcj: unknown filter `arm64` \
                 (expected x86, powerpc, ia64, arm, armthumb or sparc)"),
        );
        check(
            "xz -Xbcj x86,",
            Err("invalid option -Xbcj: empty filter name in `x86,`"),
        );
        check(
            "zstd -Xcompression-level abc",
            Err("invalid option -Xcompression-level: `abc` is not a number"),
        );
        check(
            "zstd -Xcompression-level 0",
            Err("invalid option -Xcompression-level: 0 is out of range for zstd (1 to 22)"),
        );
        check(
            "zstd -Xcompression-level 23",
            Err("invalid option -Xcompression-level: 23 is out of range for zstd (1 to 22)"),
        );
        check(
            "zstd -Xcompression-level -5",
            Err("invalid option -Xcompression-level: -5 is out of range for zstd (1 to 22)"),
        );
        check(
            "gzip -Xcompression-level 10",
            Err("invalid option -Xcompression-level: 10 is out of range for gzip (1 to 9)"),
        );
        check(
            "gzip -Xwindow-size 12",
            Err("invalid option -Xwindow-size: not supported for gzip (only -Xcompression-level is)"),
        );
        check(
            "gzip -Xstrategy rle",
            Err("invalid option -Xstrategy: not supported for gzip (only -Xcompression-level is)"),
        );
        check(
            "gzip -Xbcj x86",
            Err("invalid option -Xbcj: not an option of gzip (it takes -Xcompression-level)"),
        );
    }

    #[test]
    fn from_mksquashfs() {
        fn check(name: &str, x_options: &[(&str, &str)], expect: Result<&str, &str>) {
            let x_options: Vec<(String, String)> = x_options
                .iter()
                .map(|(option, value)| (option.to_string(), value.to_string()))
                .collect();
            let res = error_text(Compression::from_mksquashfs(name, &x_options));
            assert_eq!(
                res.as_deref().map_err(String::as_str),
                expect,
                "{name} {x_options:?}"
            );
        }
        check("xz", &[], Ok("Xz { dict_size: Percent(100), filters: [] }"));
        check(
            "xz",
            &[("-Xbcj", "x86,arm"), ("-Xdict-size", "50%")],
            Ok("Xz { dict_size: Percent(50), filters: [X86, Arm] }"),
        );
        check(
            "zstd",
            &[("-Xcompression-level", "19")],
            Ok("Zstd { level: 19 }"),
        );
        check(
            "gzip",
            &[("-Xcompression-level", "6")],
            Ok("Gzip { level: 6 }"),
        );
        // Given explicitly, a value starting with `-X` is a value.
        check(
            "xz",
            &[("-Xdict-size", "-Xbcj")],
            Err("invalid option -Xdict-size: `-Xbcj` is not a size (expected N, NK, NM or N%)"),
        );
        check(
            "gzip",
            &[("-Xstrategy", "default")],
            Err("invalid option -Xstrategy: not supported for gzip (only -Xcompression-level is)"),
        );
        check(
            "lz4",
            &[],
            Err("invalid option compressor `lz4`: not supported (use xz, zstd or gzip)"),
        );
    }

    #[test]
    fn mksquashfs_x_options() {
        fn check(name: &str, expect: &[&str]) {
            assert_eq!(Compression::mksquashfs_x_options(name), expect, "{name}");
        }
        check("xz", &["-Xdict-size", "-Xbcj"]);
        check("zstd", &["-Xcompression-level"]);
        check(
            "gzip",
            &["-Xcompression-level", "-Xwindow-size", "-Xstrategy"],
        );
        check("lzo", &[]);
        check("lz4", &[]);
        check("", &[]);
    }

    // ------------------------------------------------- settings and options block

    /// `Compressor::new` from the string syntax, or the error text.
    fn compressor(compression: &str, block_size: u32) -> Result<Compressor, String> {
        let compression = Compression::parse(compression).expect("test settings parse");
        Compressor::new(&compression, block_size).map_err(|e| e.to_string())
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn options_block() {
        fn check(compression: &str, block_size: u32, id: u16, expect: Option<&str>) {
            let compressor = compressor(compression, block_size).unwrap();
            assert_eq!(compressor.id(), id, "{compression}");
            assert_eq!(
                compressor.options_block().as_deref().map(hex).as_deref(),
                expect,
                "{compression} at {block_size}"
            );
        }
        // Seen in an mksquashfs 4.5.1 image (format reference §3.1).
        check(
            "xz -Xdict-size 50% -Xbcj x86,arm",
            65536,
            4,
            Some("00 80 00 00 09 00 00 00"),
        );
        check("xz", 131072, 4, None);
        check("xz -Xdict-size 100%", 4096, 4, None);
        // 4 KiB blocks with a filter: the only dictionary under 8192 written.
        check("xz -Xbcj x86", 4096, 4, Some("00 10 00 00 01 00 00 00"));
        check("xz -Xdict-size 128K", 131072, 4, None);
        check(
            "xz -Xdict-size 64K",
            131072,
            4,
            Some("00 00 01 00 00 00 00 00"),
        );
        check(
            "xz -Xdict-size 75%",
            131072,
            4,
            Some("00 80 01 00 00 00 00 00"),
        );
        check(
            "xz -Xbcj sparc,powerpc,ia64,armthumb",
            1 << 20,
            4,
            Some("00 00 10 00 36 00 00 00"),
        );
        check("zstd", 131072, 6, None);
        check("zstd -Xcompression-level 15", 131072, 6, None);
        check(
            "zstd -Xcompression-level 19",
            131072,
            6,
            Some("13 00 00 00"),
        );
        check("gzip", 131072, 1, None);
        check(
            "gzip -Xcompression-level 6",
            131072,
            1,
            Some("06 00 00 00 0f 00 00 00"),
        );
    }

    #[test]
    fn invalid_for_block_size() {
        fn check(compression: &str, block_size: u32, expect: &str) {
            let res = compressor(compression, block_size).map(|_| ());
            assert_eq!(
                res,
                Err(expect.to_string()),
                "{compression} at {block_size}"
            );
        }
        check(
            "xz -Xdict-size 256K",
            131072,
            "invalid option -Xdict-size: 262144 bytes is larger than the block size (131072 bytes)",
        );
        check(
            "xz -Xdict-size 4K",
            131072,
            "invalid option -Xdict-size: 4096 bytes is less than the minimum of 8192 bytes",
        );
        check(
            "xz -Xdict-size 50%",
            8192,
            "invalid option -Xdict-size: 50% of the block size (4096 bytes) is less than the minimum of 8192 bytes",
        );
        check(
            "xz -Xdict-size 40K",
            131072,
            "invalid option -Xdict-size: 40960 bytes cannot be stored in the xz header: \
             it must be 2^n or 3*2^n bytes (e.g. 100%, 75%, 50%, 25%, 32K, 16K or 8K)",
        );
        check(
            "xz -Xdict-size 60%",
            131072,
            "invalid option -Xdict-size: 60% of the block size (78643 bytes) cannot be stored in the xz header: \
             it must be 2^n or 3*2^n bytes (e.g. 100%, 75%, 50%, 25%, 32K, 16K or 8K)",
        );
        // Settings built by hand skip the parser's checks.
        let check_built = |compression: Compression, expect: &str| {
            let res = Compressor::new(&compression, 131072)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(res, Err(expect.to_string()), "{compression:?}");
        };
        check_built(
            Compression::Gzip { level: 0 },
            "invalid option -Xcompression-level: 0 is out of range for gzip (1 to 9)",
        );
        check_built(
            Compression::Zstd { level: 23 },
            "invalid option -Xcompression-level: 23 is out of range for zstd (1 to 22)",
        );
        check_built(
            Compression::Xz {
                dict_size: DictSize::Percent(150),
                filters: vec![],
            },
            "invalid option -Xdict-size: 150% is out of range (1% to 100%)",
        );
        check_built(
            Compression::Xz {
                dict_size: DictSize::Bytes(0),
                filters: vec![],
            },
            "invalid option -Xdict-size: 0 bytes is less than the minimum of 8192 bytes",
        );
    }

    #[test]
    fn xz_header_sizes() {
        let valid: Vec<u32> = (1..=1 << 20)
            .filter(|&n| is_xz_header_size(n))
            .take(12)
            .collect();
        assert_eq!(valid, [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]);
        assert!(!is_xz_header_size(0));
        assert!(is_xz_header_size(3 << 30));
        assert!(!is_xz_header_size(5 << 20));
    }

    // ------------------------------------------------------------ round trips

    /// Bytes that look random to every compressor (xorshift64, fixed seed).
    fn random(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    /// Text-like bytes: repetitive, but not one repeated period.
    fn compressible(len: usize) -> Vec<u8> {
        let mut text = Vec::with_capacity(len + 64);
        let mut line = 0u64;
        while text.len() < len {
            let word = ["alpha", "beta", "gamma", "delta"][(line * 7 % 4) as usize];
            text.extend(
                format!("{line:08} {word} /nix/store/{:016x}-thing\n", line * line).as_bytes(),
            );
            line += 1;
        }
        text.truncate(len);
        text
    }

    /// The largest zstd window or xz dictionary the kernel accepts for an
    /// image, computed as the kernel does (`squashfs_xz_comp_opts` and
    /// `zstd_init` in `fs/squashfs/`), from the options block for xz.
    fn kernel_window(compressor: &Compressor, block_size: u32) -> u32 {
        match (&compressor.engine, compressor.options_block()) {
            (Engine::Xz { .. }, Some(options)) => {
                u32::from_le_bytes(options[..4].try_into().unwrap())
            }
            _ => block_size.max(METADATA_SIZE),
        }
    }

    /// Decodes with decoders independent of the encoders' settings, checking
    /// the limits the kernel imposes: the zstd window and xz dictionary must fit
    /// `max_window` bytes, and xz must use CRC32.
    fn decode(compressor: &Compressor, stream: &[u8], max_window: u32) -> Vec<u8> {
        match compressor.engine {
            Engine::Gzip { .. } => {
                use std::io::Read;
                let mut output = Vec::new();
                flate2::read::ZlibDecoder::new(stream)
                    .read_to_end(&mut output)
                    .expect("zlib stream");
                output
            }
            Engine::Zstd { .. } => {
                // The streaming decoder, as in the kernel: the one-shot
                // decoders do not check the window against `window_log_max`.
                use std::io::Read;
                let mut decoder = ::zstd::stream::read::Decoder::new(stream).unwrap();
                decoder.window_log_max(max_window.trailing_zeros()).unwrap();
                let mut output = Vec::new();
                decoder
                    .read_to_end(&mut output)
                    .expect("zstd frame within the window");
                let content_size = ::zstd::zstd_safe::get_frame_content_size(stream).unwrap();
                assert_eq!(
                    content_size,
                    Some(output.len() as u64),
                    "frame content size"
                );
                output
            }
            Engine::Xz { .. } => {
                assert_eq!(stream[..6], [0xfd, b'7', b'z', b'X', b'Z', 0], "xz magic");
                assert_eq!(stream[6..8], [0x00, 0x01], "stream flags: CRC32 check");
                let (_, dict_size) = xz_block_filters(stream);
                assert!(
                    dict_size <= max_window,
                    "dictionary {dict_size} > {max_window}"
                );
                let mut decoder = Stream::new_stream_decoder(u64::MAX, 0).unwrap();
                let mut output = Vec::with_capacity(1 << 20);
                let status = decoder
                    .process_vec(stream, &mut output, Action::Finish)
                    .unwrap();
                assert_eq!(status, Status::StreamEnd);
                assert_eq!(decoder.total_in(), stream.len() as u64, "trailing bytes");
                output
            }
        }
    }

    /// The filter ids of the first block of an xz stream (0x21 LZMA2, 0x04 x86,
    /// 0x07 ARM, …) and its LZMA2 dictionary size.
    fn xz_block_filters(stream: &[u8]) -> (Vec<u64>, u32) {
        fn vli(bytes: &[u8], pos: &mut usize) -> u64 {
            let mut value = 0;
            for shift in (0..63).step_by(7) {
                let byte = bytes[*pos];
                *pos += 1;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            value
        }
        let header = &stream[12..];
        let flags = header[1];
        let mut pos = 2;
        if flags & 0x40 != 0 {
            vli(header, &mut pos); // compressed size
        }
        if flags & 0x80 != 0 {
            vli(header, &mut pos); // uncompressed size
        }
        let mut ids = Vec::new();
        let mut dict_size = 0;
        for _ in 0..=(flags & 0x03) {
            let id = vli(header, &mut pos);
            let props_len = vli(header, &mut pos) as usize;
            if id == 0x21 {
                let bits = u32::from(header[pos] & 0x3f);
                dict_size = (2 | (bits & 1)) << (bits / 2 + 11);
            }
            pos += props_len;
            ids.push(id);
        }
        (ids, dict_size)
    }

    #[test]
    fn round_trips() {
        const MIB: usize = 1 << 20;
        /// Compresses `input` as a data block (if it fits the block) and as a
        /// metadata block (if it fits one), decodes, and compares.
        fn check(compression: &str, block_size: u32, input: &[u8], expect_compressed: bool) {
            let what = format!("{compression} at {block_size}, {} bytes", input.len());
            let compressor = compressor(compression, block_size).unwrap();
            let max_window = kernel_window(&compressor, block_size);
            let mut streams = Vec::new();
            if input.len() <= block_size as usize {
                streams.push(("data", compressor.compress_data(input)));
            }
            if input.len() <= METADATA_SIZE as usize {
                let stream = compressor.compress_meta(input);
                if let (Engine::Xz { .. }, Some(stream)) = (&compressor.engine, &stream) {
                    let (filter_ids, dict_size) = xz_block_filters(stream);
                    assert_eq!(filter_ids, [0x21], "{what}: metadata with BCJ");
                    assert_eq!(dict_size, METADATA_SIZE.min(max_window), "{what}");
                }
                streams.push(("metadata", stream));
            }
            assert!(!streams.is_empty(), "{what}: test fits no block");
            for (kind, stream) in streams {
                assert_eq!(
                    stream.is_some(),
                    expect_compressed,
                    "{what}: {kind} compressed?"
                );
                if let Some(stream) = stream {
                    assert!(stream.len() < input.len(), "{what}: {kind} not smaller");
                    let decoded = decode(&compressor, &stream, max_window);
                    assert!(decoded == input, "{what}: {kind} differs");
                }
            }
        }
        let settings = [
            ("gzip", 1 << 20),
            ("gzip -Xcompression-level 1", 4096),
            ("zstd", 1 << 20),
            ("zstd -Xcompression-level 22", 4096),
            ("zstd -Xcompression-level 1", 1 << 20),
            ("xz", 1 << 20),
            ("xz", 4096),
            ("xz -Xbcj x86,arm", 4096),
            ("xz -Xdict-size 25%", 1 << 20),
        ];
        for (compression, block_size) in settings {
            for len in [1, 4096, 8192, MIB] {
                if len > (block_size as usize).max(METADATA_SIZE as usize) {
                    continue;
                }
                check(compression, block_size, &compressible(len), len > 1);
                check(compression, block_size, &random(len), false);
            }
            // Nothing to gain from nothing.
            check(compression, block_size, &[], false);
        }
        // High levels on smaller blocks: the window must still fit the block.
        check(
            "zstd -Xcompression-level 22",
            131072,
            &compressible(131072),
            true,
        );
        check(
            "zstd -Xcompression-level 19",
            8192,
            &compressible(8192),
            true,
        );
        check("xz -Xdict-size 8K", 131072, &compressible(131072), true);
    }

    #[test]
    fn xz_dictionary_is_the_resolved_size() {
        fn check(compression: &str, block_size: u32, expect: u32) {
            let compressor = compressor(compression, block_size).unwrap();
            let stream = compressor
                .compress_data(&compressible(block_size as usize))
                .unwrap();
            assert_eq!(
                xz_block_filters(&stream),
                (vec![0x21], expect),
                "{compression} at {block_size}"
            );
        }
        check("xz", 131072, 131072);
        check("xz", 4096, 4096);
        check("xz -Xdict-size 75%", 131072, 98304);
        check("xz -Xdict-size 8K", 1 << 20, 8192);
    }

    // -------------------------------------------------------------------- BCJ

    /// x86-like code: `call rel32` instructions to a few functions, so the
    /// relative targets differ everywhere while the absolute ones (what the x86
    /// BCJ filter stores) repeat.
    fn x86_calls(len: usize) -> Vec<u8> {
        let targets = [0x1000i64, 0x2340, 0x8800, 0x10_0000];
        let mut code = Vec::with_capacity(len + 8);
        let mut call = 0usize;
        while code.len() < len {
            code.extend([0x48, 0x89, 0xc7]); // mov rdi, rax
            let next = code.len() as i64 + 5;
            let target = targets[call * 5 % targets.len()];
            code.push(0xe8);
            code.extend(((target - next) as i32).to_le_bytes());
            call += 1;
        }
        code.truncate(len);
        code
    }

    #[test]
    fn bcj_smallest_wins() {
        // `expect_ids`: the filter chain that must win, when known.
        fn check(compression: &str, input: &[u8], expect_ids: Option<&[u64]>) {
            let block_size = 131072;
            let compressor = compressor(compression, block_size).unwrap();
            let Engine::Xz {
                dict_size,
                ref filters,
                ..
            } = compressor.engine
            else {
                unreachable!("xz settings")
            };
            let chosen = compressor.compress_data(input).expect("compressible");
            // Room for any xz stream of `input`.
            let unlimited = 2 * input.len() + 1024;
            let plain = xz(input, dict_size, None, unlimited).unwrap();
            let mut smallest = plain.len();
            for filter in filters {
                let candidate = xz(input, dict_size, Some(*filter), unlimited).unwrap();
                smallest = smallest.min(candidate.len());
            }
            assert_eq!(chosen.len(), smallest, "{compression}");
            assert!(chosen.len() <= plain.len());
            assert!(
                decode(&compressor, &chosen, block_size) == input,
                "{compression}"
            );
            if let Some(expect_ids) = expect_ids {
                assert_eq!(xz_block_filters(&chosen).0, expect_ids, "{compression}");
            }
        }
        let code = x86_calls(65536);
        check("xz -Xbcj x86", &code, Some(&[0x04, 0x21]));
        check("xz -Xbcj arm,x86", &code, Some(&[0x04, 0x21]));
        // No `call` bytes: x86 leaves the input alone, so its chain is the same
        // size plus a longer block header, and plain LZMA2 wins.
        check("xz -Xbcj x86", &compressible(65536), Some(&[0x21]));
        // Real machine code, whichever wins.
        let exe = std::fs::read("/proc/self/exe").expect("read the test binary");
        let start = exe.len() / 4;
        check("xz -Xbcj x86", &exe[start..start + 131072], None);
        check(
            "xz -Xbcj x86,arm,armthumb",
            &exe[start..start + 131072],
            None,
        );
    }

    /// The safe crate's way: a fresh encoder per stream.
    fn fresh_xz(input: &[u8], dict_size: u32, bcj: Option<BcjFilter>) -> Vec<u8> {
        let mut lzma2 = LzmaOptions::new_preset(XZ_PRESET).unwrap();
        lzma2.dict_size(dict_size);
        let mut chain = Filters::new();
        match bcj {
            None => {}
            Some(BcjFilter::X86) => drop(chain.x86()),
            Some(BcjFilter::PowerPc) => drop(chain.powerpc()),
            Some(BcjFilter::Ia64) => drop(chain.ia64()),
            Some(BcjFilter::Arm) => drop(chain.arm()),
            Some(BcjFilter::ArmThumb) => drop(chain.arm_thumb()),
            Some(BcjFilter::Sparc) => drop(chain.sparc()),
        }
        chain.lzma2(&lzma2);
        let mut encoder = Stream::new_stream_encoder(&chain, Check::Crc32).unwrap();
        let mut output = Vec::with_capacity(2 * input.len() + 1024);
        let status = encoder
            .process_vec(input, &mut output, Action::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd);
        output
    }

    #[test]
    fn block_compressor_compresses_as_the_writer() {
        let input = compressible(300_000);
        for compression in [
            Compression::default(),
            Compression::Zstd { level: 15 },
            Compression::Gzip { level: 9 },
        ] {
            let writer = Compressor::new(&compression, 1 << 20).unwrap();
            let block = BlockCompressor::new(&compression, 1 << 20).unwrap();
            let expect = writer.compress_data(&input).expect("compressible");
            assert_eq!(block.compress(&input), Some(expect), "{compression:?}");
        }
        for bad in [0, 1000, 2048, 2 << 20] {
            let err = BlockCompressor::new(&Compression::default(), bad).unwrap_err();
            assert!(err.to_string().contains("block size"), "{bad}: {err}");
        }
    }

    /// Text, machine code (from the test binary), random bytes and one byte:
    /// inputs on which a reused encoder must match a fresh one.
    fn encoder_inputs() -> [(&'static str, Vec<u8>); 4] {
        let exe = std::fs::read("/proc/self/exe").expect("read the test binary");
        let code = &exe[exe.len() / 3..exe.len() / 3 + 200_000];
        [
            ("text", compressible(300_000)),
            ("code", code.to_vec()),
            ("random", random(70_000)),
            ("short", b"x".to_vec()),
        ]
    }

    #[test]
    fn reused_zstd_contexts_give_the_frames_of_the_safe_crate() {
        let inputs = encoder_inputs();
        // What `zstd::bulk` makes of `input` with room for `limit - 1` bytes.
        let safe = |input: &[u8], level: i32, limit: usize| {
            let mut out = vec![0; limit - 1];
            let mut compressor = ::zstd::bulk::Compressor::new(level).unwrap();
            let written = compressor.compress_to_buffer(input, &mut out[..]).ok()?;
            out.truncate(written);
            Some(out)
        };
        // Levels interleaved on one thread, with failed frames (a limit too
        // small) in between: every frame must start from a clean session.
        for round in 0..2 {
            for level in [15, 1, 22, 15] {
                for (name, input) in &inputs {
                    let expect = ::zstd::bulk::compress(input, level).unwrap();
                    let unlimited = 2 * input.len() + 1024;
                    for limit in [10, expect.len(), expect.len() + 1, unlimited] {
                        let what = format!("{name}, level {level}, limit {limit}, round {round}");
                        let ours = zstd::compress(input, level, limit);
                        assert_eq!(ours, safe(input, level, limit), "{what}");
                        if let Some(frame) = ours {
                            assert_eq!(frame, expect, "{what}");
                        }
                    }
                    assert_eq!(zstd::compress(input, level, 10), None, "{name}");
                    assert_eq!(
                        zstd::compress(input, level, unlimited).as_deref(),
                        Some(&expect[..]),
                        "{name}, level {level}, round {round}"
                    );
                }
            }
        }
    }

    #[test]
    fn reused_xz_encoders_give_the_bytes_of_fresh_ones() {
        let inputs = encoder_inputs();
        // Settings interleaved on one thread, with abandoned streams (a limit
        // too small) in between: every stream must start from a full reset.
        let settings = [
            (1 << 20, None),
            (8192, None),
            (1 << 20, Some(BcjFilter::X86)),
            (65536, Some(BcjFilter::Arm)),
            (1 << 20, None),
        ];
        for round in 0..2 {
            for &(dict_size, bcj) in &settings {
                for (name, input) in &inputs {
                    let expect = fresh_xz(input, dict_size, bcj);
                    let what = format!("{name}, dict {dict_size}, {bcj:?}, round {round}");
                    // Abandoned half-way: no room.
                    assert_eq!(xz(input, dict_size, bcj, 40), None, "{what}");
                    let unlimited = 2 * input.len() + 1024;
                    assert_eq!(
                        xz(input, dict_size, bcj, unlimited).as_deref(),
                        Some(&expect[..]),
                        "{what}"
                    );
                    // The limit is exclusive.
                    assert_eq!(xz(input, dict_size, bcj, expect.len()), None, "{what}");
                    assert_eq!(
                        xz(input, dict_size, bcj, expect.len() + 1).as_deref(),
                        Some(&expect[..]),
                        "{what}"
                    );
                }
            }
        }
    }

    /// The raw LZMA2 data the `xz` command (Debian's own liblzma build, not
    /// ours) makes of `input` with our preset, dictionary and BCJ filter.
    fn xz_command_raw(input: &[u8], dict_size: u32, bcj: Option<&str>) -> Vec<u8> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut args = vec!["--format=raw".to_string()];
        args.extend(bcj.map(|filter| format!("--{filter}")));
        args.push(format!("--lzma2=preset={XZ_PRESET},dict={dict_size}"));
        args.push("--stdout".to_string());
        let mut child = Command::new("xz")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `xz` ({e}): install xz-utils"));
        let mut stdin = child.stdin.take().unwrap();
        // Fed from another thread: xz writes while it reads, and a full pipe
        // either way would stop both.
        let (written, output) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || stdin.write_all(input));
            let output = child.wait_with_output().expect("xz runs");
            (writer.join().unwrap(), output)
        });
        written.expect("write to xz");
        assert!(output.status.success(), "xz {args:?}: {}", output.status);
        output.stdout
    }

    /// Our liblzma is vendored with a prefetch added to its match finder
    /// (`vendor/liblzma-sys/MKPORTABLE.md`): it must encode exactly as an
    /// unmodified liblzma. The oracle is the system's `xz`: the LZMA2 data in
    /// our streams must be its raw output byte for byte, with 1 MiB
    /// dictionaries (data blocks, the match finder the patch touches) and 8 KiB
    /// ones (metadata), with and without the x86 filter.
    #[test]
    fn xz_blocks_are_the_xz_commands_bytes() {
        let exe = std::fs::read("/proc/self/exe").expect("read the test binary");
        let binary = exe[exe.len() / 4..][..1 << 20].to_vec();
        let mut inputs = encoder_inputs().to_vec();
        inputs.push(("1 MiB of the test binary", binary));
        inputs.push(("1 MiB of text", compressible(1 << 20)));
        for (dict_size, bcj) in [
            (1 << 20, None),
            (8192, None),
            (1 << 20, Some((BcjFilter::X86, "x86"))),
        ] {
            for (name, input) in &inputs {
                let what = format!("{name}, dict {dict_size}, {bcj:?}");
                let unlimited = 2 * input.len() + 1024;
                let ours = xz(input, dict_size, bcj.map(|b| b.0), unlimited).unwrap();
                let header = 12 + (usize::from(ours[12]) + 1) * 4;
                let expect = xz_command_raw(input, dict_size, bcj.map(|b| b.1));
                let payload = ours.get(header..header + expect.len());
                assert!(payload == Some(&expect[..]), "{what}: LZMA2 data differs");
                // Then only the block padding and the CRC32 of the input.
                let rest = &ours[header + expect.len()..];
                let padding = (4 - expect.len() % 4) % 4;
                assert!(rest[..padding].iter().all(|&b| b == 0), "{what}");
                // flate2's CRC-32 (gzip's), independent of liblzma's.
                let mut crc = flate2::Crc::new();
                crc.update(input);
                assert_eq!(rest[padding..][..4], crc.sum().to_le_bytes(), "{what}");
            }
        }
    }

    // ------------------------------------------------------------ concurrency

    #[test]
    fn same_output_from_many_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Compressor>();

        for compression in ["gzip", "zstd -Xcompression-level 19", "xz -Xbcj x86"] {
            let compressor = compressor(compression, 65536).unwrap();
            let blocks: Vec<Vec<u8>> = (0..8).map(|n| compressible(4096 * (n + 1))).collect();
            let alone: Vec<_> = blocks
                .iter()
                .map(|block| compressor.compress_data(block))
                .collect();
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            blocks
                                .iter()
                                .rev()
                                .map(|block| compressor.compress_data(block))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                for handle in handles {
                    let mut together = handle.join().unwrap();
                    together.reverse();
                    assert!(together == alone, "{compression}");
                }
            });
        }
    }

    #[test]
    fn the_probe_skips_only_incompressible_blocks() {
        let random = crate::testutil::noise(1 << 20, 0x9e37_79b9_7f4a_7c15);
        assert!(looks_incompressible(&random));
        assert!(
            !looks_incompressible(&random[..16 << 10]),
            "too small to probe"
        );
        let text = b"portable service images built reproducibly ".repeat(30_000);
        assert!(!looks_incompressible(&text[..1 << 20]));
        // Compressible data anywhere under a sample is enough to compress the block.
        let mut mixed = random.clone();
        mixed[..8192].fill(b'a');
        assert!(!looks_incompressible(&mixed));
    }
}
