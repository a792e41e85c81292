//! [`Options`]: how a [`Tree`](crate::Tree) becomes an image (compressor, block
//! size, ownership and time policy, which tables to write, threads).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::{Cache, Compression};

/// Knobs of the writer, with mksquashfs's defaults where it has one.
///
/// The library never reads the environment: the CLI turns `SOURCE_DATE_EPOCH`
/// into [`Options::mkfs_time`] and [`Options::clamp_mtime`], as mksquashfs does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Compressor and its settings (default: xz, dictionary 100 % of the block).
    pub compression: Compression,
    /// Data block size: a power of two from 4 KiB to 1 MiB (default 128 KiB).
    pub block_size: u32,
    /// Make every file owned by uid 0 and gid 0 (`-all-root`).
    pub all_root: bool,
    /// Give every file this uid (`-force-uid`); wins over `all_root`.
    pub force_uid: Option<u32>,
    /// Give every file this gid (`-force-gid`); wins over `all_root`.
    pub force_gid: Option<u32>,
    /// Permission bits of the root directory (`-root-mode`).
    pub root_mode: Option<u16>,
    /// The superblock's creation time (`-mkfs-time`, or `SOURCE_DATE_EPOCH`); default 0.
    pub mkfs_time: u32,
    /// Give every inode this mtime (`-all-time`); wins over `clamp_mtime`.
    pub all_time: Option<u32>,
    /// Clamp every mtime newer than this (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<u32>,
    /// Pack small files into fragment blocks (default on; `-no-fragments` turns it off).
    pub fragments: bool,
    /// Pack small files at content-defined boundaries so that changing one
    /// moves few fragment blocks, which keeps a [`Cache`] effective (default
    /// on; about 0.3 % larger images than mksquashfs's plain tail packing,
    /// which `false` selects).
    pub stable_fragments: bool,
    /// Store identical files once (default on; `-no-duplicates`).
    pub dedup: bool,
    /// Store extended attributes (default on; `-no-xattrs`).
    pub xattrs: bool,
    /// Write the NFS export table (default off here; mksquashfs's personality turns it on).
    pub exports: bool,
    /// Worker threads for compression; 0 means one per core.
    pub threads: usize,
    /// Replace an existing output file (`-noappend`); otherwise an existing output is an error.
    pub overwrite: bool,
    /// Set to `true` from elsewhere (a signal handler) to stop the writer; it
    /// then returns [`Error::Interrupted`](crate::Error::Interrupted) and leaves nothing behind.
    pub cancel: Option<Arc<AtomicBool>>,
    /// The persistent cache of compressed blocks, if any. It never changes the
    /// image's bytes, only how much work they take.
    pub cache: Option<Arc<Cache>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compression: Compression::default(),
            block_size: 128 * 1024,
            all_root: false,
            force_uid: None,
            force_gid: None,
            root_mode: None,
            mkfs_time: 0,
            all_time: None,
            clamp_mtime: None,
            fragments: true,
            stable_fragments: true,
            dedup: true,
            xattrs: true,
            exports: false,
            threads: 0,
            overwrite: false,
            cancel: None,
            cache: None,
        }
    }
}

/// Parses a block size as mksquashfs does: bytes (`131072`), or with a `K`/`M`
/// suffix (`128K`, `1M`, case-insensitive); it must be a power of two from 4 KiB to 1 MiB.
///
/// # Errors
///
/// [`Error::InvalidOption`](crate::Error::InvalidOption) saying what is wrong with `s`.
pub fn parse_block_size(s: &str) -> Result<u32, crate::Error> {
    let invalid = |reason: &str| crate::Error::InvalidOption {
        option: format!("block size `{s}`"),
        reason: reason.to_string(),
    };
    let t = s.trim();
    let (digits, mult) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1024u64),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| invalid("expected a number with an optional K or M suffix"))?;
    let bytes = n.checked_mul(mult).ok_or_else(|| invalid("too large"))?;
    if !(4096..=1024 * 1024).contains(&bytes) || !bytes.is_power_of_two() {
        return Err(invalid("must be a power of two from 4K to 1M"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::parse_block_size;

    #[test]
    fn block_sizes() {
        for (s, want) in [
            ("4K", Some(4096)),
            ("4096", Some(4096)),
            ("128k", Some(131072)),
            ("1M", Some(1 << 20)),
            ("1048576", Some(1 << 20)),
            ("2M", None),
            ("3K", None),
            ("2K", None),
            ("", None),
            ("M", None),
            ("1G", None),
        ] {
            assert_eq!(parse_block_size(s).ok(), want, "{s}");
        }
    }
}
