//! Compressors: the settings users choose ([`Compression`]) and the per-image
//! engine ([`Compressor`]) that turns blocks into the streams the kernel accepts.
//!
//! STUB: filled in by the compressor work item (see the task description).

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
        Compression::Xz { dict_size: DictSize::Percent(100), filters: Vec::new() }
    }
}

impl Compression {
    /// Parses the seed's string syntax, a compressor name followed by its
    /// mksquashfs `-X` options: `"xz -Xdict-size 100%"`, `"xz -Xbcj x86,arm"`,
    /// `"zstd -Xcompression-level 19"`, `"gzip -Xcompression-level 6"`, `"zstd"`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the unknown compressor, option or bad value.
    pub fn parse(s: &str) -> Result<Compression, Error> {
        let _ = s;
        unimplemented!()
    }

    /// Builds the settings from mksquashfs's `-comp NAME` and the `-X…` options
    /// that followed it, in order, each as (option as spelled, e.g. `-Xdict-size`, value).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the unknown compressor, option or bad value.
    pub fn from_mksquashfs(name: &str, x_options: &[(String, String)]) -> Result<Compression, Error> {
        let _ = (name, x_options);
        unimplemented!()
    }

    /// The `-X` options of `name` that take a value (so an argument parser knows
    /// to consume one), e.g. `["-Xdict-size", "-Xbcj"]` for `"xz"`.
    pub fn mksquashfs_x_options(name: &str) -> &'static [&'static str] {
        let _ = name;
        unimplemented!()
    }
}

/// The compressor of one image: settings resolved against the block size.
#[derive(Debug, Clone)]
pub(crate) struct Compressor {}

impl Compressor {
    pub(crate) fn new(_compression: &Compression, _block_size: u32) -> Result<Compressor, Error> {
        unimplemented!()
    }
    pub(crate) fn id(&self) -> u16 {
        unimplemented!()
    }
    pub(crate) fn options_block(&self) -> Option<Vec<u8>> {
        unimplemented!()
    }
    pub(crate) fn compress_data(&self, _input: &[u8]) -> Option<Vec<u8>> {
        unimplemented!()
    }
    pub(crate) fn compress_meta(&self, _input: &[u8]) -> Option<Vec<u8>> {
        unimplemented!()
    }
}
