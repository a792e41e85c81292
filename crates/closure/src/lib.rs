//! Nix store paths and their runtime closures: which store paths a portable service image needs.
//!
//! A portable image built from Nix holds the runtime closure of everything it uses: the store
//! paths in the spec's `contents`, the store paths its unit files name
//! (`ExecStart=/nix/store/…-foo/bin/foo`), and the store objects its symlinks point into. This
//! crate turns those into a [`Closure`], a sorted set of [`StorePath`]s, from the best source
//! at hand:
//!
//! - a **`closureInfo` folder** (nixpkgs' `closureInfo`: `registration`, `store-paths`,
//!   `total-nar-size`), or **`exportReferencesGraph` files**, which a Nix build passes in;
//!   see [`Graph`] for the formats read (plain graphs, registrations, `nix-store --dump-db`
//!   output, path lists, structured-attrs JSON);
//! - **Nix itself**, `nix-store --query --requisites` ([`NixCli`]).
//!
//! [`Source::auto`] picks one, [`resolve`] computes the closure of the roots and checks that
//! every path of it exists on disk.
//!
//! # Main types
//!
//! - [`StoreDir`] and [`StorePath`]: validated store paths (`<store dir>/<32 hash chars>-<name>`);
//!   [`StoreDir::to_store_path`] maps a path inside a store object to that object.
//! - [`scan_store_paths`]: the store paths a text, such as a unit file, names.
//! - [`Source`], [`resolve`], [`resolve_all`], [`Closure`], [`Graph`], [`NixCli`].
//! - [`Error`]: one enum for everything; messages name the path at fault.
//!
//! # Examples
//!
//! ```no_run
//! use std::path::Path;
//! use mkportable_closure::{resolve, scan_store_paths, Source, StoreDir};
//!
//! # fn main() -> Result<(), mkportable_closure::Error> {
//! let store_dir = StoreDir::default();
//! let unit = std::fs::read("app.service").unwrap();
//! let mut roots: Vec<_> = scan_store_paths(&unit, &store_dir).into_iter().collect();
//! // A symlink object of the spec, pointing inside a store object.
//! roots.push(store_dir.to_store_path(Path::new(
//!     "/nix/store/wkl768mrqagj22msk604k2irs0snanvh-cacert/etc/ssl",
//! ))?);
//! // `--closure-info DIR` if the build passed one, else Nix.
//! let source = Source::auto(Some(Path::new("closure-info")))?;
//! for path in &resolve(&roots, &source)? {
//!     println!("{path}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What it does not do
//!
//! It does not copy store paths or build images, does not read the Nix database directly, and
//! does not scan file contents for references (Nix's own reference scanner); a closure is only
//! as good as its source. Nothing here writes to the disk.

#![deny(missing_docs)]

mod closure;
mod error;
mod format;
mod graph;
mod nix;
mod scan;
mod source;
mod store_path;

pub use closure::Closure;
pub use error::{Error, Location, NixStderr, Syntax};
pub use graph::Graph;
pub use nix::NixCli;
pub use scan::scan_store_paths;
pub use source::{resolve, resolve_all, Source, SourceKind};
pub use store_path::{
    Invalid, StoreDir, StorePath, DEFAULT_STORE_DIR, HASH_LEN, MAX_NAME_LEN, NIX_BASE32_CHARS,
};
