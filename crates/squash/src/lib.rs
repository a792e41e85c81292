//! `mkportable-squash`: a reproducible SquashFS 4.0 writer.
//!
//! Build a [`Tree`] (by hand, or from host directories with [`Tree::from_sources`]
//! and [`Tree::graft`]), pick [`Options`], and call [`write_image`]:
//!
//! ```no_run
//! use mkportable_squash::{write_image, Options, Tree};
//! // No cache in these options, so no stat fingerprints are kept.
//! let tree = Tree::from_sources(&["some/dir"], false, 0, false).unwrap();
//! let report = write_image(&tree, &Options::default(), "out.sqfs".as_ref()).unwrap();
//! println!("{} bytes", report.bytes_written);
//! ```
//!
//! The crate knows nothing of Nix, specs or portable services. It never lists
//! directories or reads the clock while writing: the [`Tree`] says what goes in,
//! [`Options`] says how, and the same inputs give the same bytes at any thread count.
//!
//! What it does not do: append to an existing image, read images, LZO/LZ4/LZMA1.
#![deny(missing_docs)]

mod cache;
mod compress;
mod cpu;
mod data;
mod error;
mod fragments;
mod host;
mod inodes;
mod meta;
mod options;
#[cfg(test)]
mod testutil;
mod tree;
mod trim;
mod writer;

pub use cache::{Cache, CacheConfig, CacheReport, CacheStats, DEFAULT_MAX_BYTES};
pub use compress::{BcjFilter, BlockCompressor, Compression, DictSize};
pub use cpu::ThreadCpu;
pub use error::Error;
pub use options::{parse_block_size, Options};
pub use tree::{FileSource, Fingerprint, HostPath, InodeId, Kind, Metadata, Tree, Xattrs};
pub use writer::{write_image, write_to, Report};
