//! The writer: [`write_image`] turns a [`Tree`] into a SquashFS 4.0 image.

use std::path::Path;

use crate::{Error, Options, Tree};

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inodes written.
    pub inodes: u64,
    /// Regular files.
    pub files: u64,
    /// Bytes of file contents read.
    pub bytes_in: u64,
    /// Bytes of the image, padding included.
    pub bytes_written: u64,
    /// Bytes of file contents not stored again because an identical file was.
    pub dedup_saved: u64,
}

/// Writes `tree` to the image file `out`, atomically.
pub fn write_image(tree: &Tree, options: &Options, out: &Path) -> Result<Report, Error> {
    let _ = (tree, options, out);
    unimplemented!()
}

/// Writes `tree` as an image to `sink` (which must be empty and seekable).
pub fn write_to<W: std::io::Write + std::io::Seek>(
    tree: &Tree,
    options: &Options,
    sink: &mut W,
) -> Result<Report, Error> {
    let _ = (tree, options, sink);
    unimplemented!()
}
