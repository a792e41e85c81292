//! `mkportable-scaffold`: a validated [`Spec`] and its [`Closure`] become the
//! root filesystem [`Tree`] of a portable service image.
//!
//! The layout is nixpkgs' `portableService` exactly: the units as regular files
//! in `/etc/systemd/system/`, the empty mount points `/proc /sys /dev /run /tmp
//! /var/tmp /var/lib /var/cache /var/log`, empty `/etc/resolv.conf` and
//! `/etc/machine-id`, `/etc/os-release`, the spec's symlinks, and every path of
//! the closure under the store directory, grafted from the host (never copied to
//! a staging folder). Two things differ on purpose: the scaffold itself is not put
//! into the store (the seed's closure included it), and `/var/lib/X`,
//! `/var/cache/X` and `/var/log/X` are created for every `StateDirectory=`,
//! `CacheDirectory=` and `LogsDirectory=` of the units, because the image is
//! read-only and systemd needs the mount points there.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = mkportable_spec::Spec::load("demo.toml")?;
//! let roots = mkportable_scaffold::roots(&spec)?;
//! let source = mkportable_closure::Source::auto(spec.closure_info.as_deref())?;
//! let closure = mkportable_closure::resolve(&roots, &source)?;
//! let tree = mkportable_scaffold::rootfs(&spec, &closure)?;
//! let options = mkportable_scaffold::squash_options(&spec, None)?;
//! mkportable_squash::write_image(&tree, &options, spec.image_file_name().as_ref())?;
//! # Ok(())
//! # }
//! ```
//!
//! Ownership and time are policy of the writer ([`squash_options`]): every file
//! root-owned, the root directory mode 755, every mtime clamped to
//! `SOURCE_DATE_EPOCH` (0 when unset, as the seed), so the image is reproducible.
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use mkportable_closure::{scan_store_paths, Closure, StoreDir, StorePath};
use mkportable_spec::{Content, Spec, MOUNT_POINTS};
use mkportable_squash::{Compression, FileSource, Kind, Metadata, Options, Tree};

/// What can go wrong while laying out the rootfs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A unit file could not be read.
    #[error("cannot read unit file `{}`", path.display())]
    ReadUnit {
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A store path named by the spec is not valid.
    #[error("invalid store path in the spec")]
    StorePath(#[source] mkportable_closure::Error),
    /// A unit asks for a state, cache or logs directory that is not a relative path.
    #[error("unit `{unit}`: {key}={value} must be a relative path without `..`")]
    BadDirectory {
        /// The unit's name.
        unit: String,
        /// `StateDirectory`, `CacheDirectory` or `LogsDirectory`.
        key: &'static str,
        /// The offending value.
        value: String,
    },
    /// Something could not be placed in the image tree.
    #[error("cannot place `{}` in the image", path.display())]
    Place {
        /// The path in the image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: mkportable_squash::Error,
    },
    /// The spec's compression or block size is not valid.
    #[error("invalid {field} in the spec")]
    Squash {
        /// `compression` or `block-size`.
        field: &'static str,
        /// The cause.
        #[source]
        source: mkportable_squash::Error,
    },
}

/// Unit settings whose directories must exist in the read-only image.
const UNIT_DIRECTORIES: [(&str, &str); 3] = [
    ("StateDirectory", "/var/lib"),
    ("CacheDirectory", "/var/cache"),
    ("LogsDirectory", "/var/log"),
];

/// The store paths whose closure goes into the image: the spec's store-path
/// contents, the store paths its unit files mention (`ExecStart=/nix/store/…`),
/// and symlink objects inside the store. Sorted, without duplicates.
///
/// # Errors
///
/// [`Error::ReadUnit`] for a unit file that cannot be read, [`Error::StorePath`]
/// for a store-path content that is not a store path.
pub fn roots(spec: &Spec) -> Result<Vec<StorePath>, Error> {
    let store_dir = StoreDir::new(&spec.store_dir).map_err(Error::StorePath)?;
    let mut roots = BTreeSet::new();
    for content in &spec.contents {
        if let Content::StorePath(path) = content {
            roots.insert(store_dir.to_store_path(path).map_err(Error::StorePath)?);
        }
    }
    for unit in &spec.units {
        let text = fs::read(&unit.source).map_err(|source| Error::ReadUnit {
            path: unit.source.clone(),
            source,
        })?;
        roots.extend(scan_store_paths(&text, &store_dir));
    }
    for link in &spec.symlinks {
        let object = Path::new(&link.object);
        if store_dir.is_in_store(object) {
            roots.insert(store_dir.to_store_path(object).map_err(Error::StorePath)?);
        }
    }
    Ok(roots.into_iter().collect())
}

/// The rootfs of the image: the scaffold, the spec's host directories and
/// symlinks, and every path of `closure` grafted at its own store path.
///
/// # Errors
///
/// [`Error::ReadUnit`], [`Error::BadDirectory`] for a unit's directory setting,
/// [`Error::Place`] when a host path cannot be inspected or two things claim
/// the same image path.
pub fn rootfs(spec: &Spec, closure: &Closure) -> Result<Tree, Error> {
    let dir = Metadata::with_mode(0o755);
    let file = Metadata::with_mode(0o644);
    let mut tree = Tree::new(dir.clone());
    let place = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Place { path, source }
    };

    for mount_point in MOUNT_POINTS {
        tree.create_dirs(mount_point, &dir)
            .map_err(place(Path::new(mount_point)))?;
    }
    let units_dir = Path::new("/etc/systemd/system");
    tree.create_dirs(units_dir, &dir)
        .map_err(place(units_dir))?;
    for (path, body) in [
        ("/etc/resolv.conf", Vec::new()),
        ("/etc/machine-id", Vec::new()),
        (
            "/etc/os-release",
            mkportable_spec::os_release::render(spec).into_bytes(),
        ),
    ] {
        tree.insert_path(path, inline(body), file.clone(), &dir)
            .map_err(place(Path::new(path)))?;
    }

    let mut unit_dirs = BTreeSet::new();
    for unit in &spec.units {
        let text = fs::read(&unit.source).map_err(|source| Error::ReadUnit {
            path: unit.source.clone(),
            source,
        })?;
        unit_dirs.extend(unit_directories(
            &unit.name,
            &String::from_utf8_lossy(&text),
        )?);
        let path = units_dir.join(&unit.name);
        let size = text.len() as u64;
        let body = Kind::File {
            source: FileSource::Host {
                path: unit.source.clone().into(),
                sparse: false,
                stat: None,
            },
            size,
        };
        tree.insert_path(&path, body, file.clone(), &dir)
            .map_err(place(&path))?;
    }
    for path in &unit_dirs {
        tree.create_dirs(path, &dir).map_err(place(path))?;
    }

    let store_dir = &spec.store_dir;
    tree.create_dirs(store_dir, &dir)
        .map_err(place(store_dir))?;
    for store_path in closure.iter() {
        let path = store_path.as_path();
        tree.graft(path, path, &dir).map_err(place(path))?;
    }
    for content in &spec.contents {
        if let Content::HostDir { source, target } = content {
            tree.graft(target, source, &dir).map_err(place(target))?;
        }
    }
    for link in &spec.symlinks {
        let target = Kind::Symlink(link.object.clone().into_bytes());
        tree.insert_path(&link.symlink, target, Metadata::with_mode(0o777), &dir)
            .map_err(place(&link.symlink))?;
    }
    tree.shrink_to_fit();
    Ok(tree)
}

/// The writer's options for `spec`: its compression and block size, all files
/// root-owned, root mode 755, creation time and mtime clamp `source_date_epoch`
/// (0 when `None`, as the seed), no export table.
///
/// # Errors
///
/// [`Error::Squash`] naming `compression` or `block-size`.
pub fn squash_options(spec: &Spec, source_date_epoch: Option<u32>) -> Result<Options, Error> {
    let compression = Compression::parse(&spec.compression).map_err(|source| Error::Squash {
        field: "compression",
        source,
    })?;
    let block_size =
        mkportable_squash::parse_block_size(&spec.block_size).map_err(|source| Error::Squash {
            field: "block-size",
            source,
        })?;
    let epoch = source_date_epoch.unwrap_or(0);
    let options = Options {
        compression,
        block_size,
        all_root: true,
        root_mode: Some(0o755),
        mkfs_time: epoch,
        clamp_mtime: Some(epoch),
        exports: false,
        ..Options::default()
    };
    options.validate().map_err(|source| Error::Squash {
        field: "compression",
        source,
    })?;
    Ok(options)
}

fn inline(body: Vec<u8>) -> Kind {
    let size = body.len() as u64;
    Kind::File {
        source: FileSource::Bytes(body.into()),
        size,
    }
}

/// The directories under `/var` that `unit`'s `StateDirectory=`,
/// `CacheDirectory=` and `LogsDirectory=` settings ask systemd to mount.
fn unit_directories(unit: &str, text: &str) -> Result<BTreeSet<PathBuf>, Error> {
    let mut dirs = BTreeSet::new();
    let settings: BTreeMap<&str, &str> = UNIT_DIRECTORIES.into_iter().collect();
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let Some((&key, &base)) = settings.get_key_value(key) else {
            continue;
        };
        for word in value.split_whitespace() {
            // `StateDirectory=foo:bar` (systemd 254+) makes `bar` a symlink to `foo`.
            let name = word.split(':').next().unwrap_or(word);
            let bad = name.is_empty()
                || name.starts_with('/')
                || name
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..");
            if bad {
                return Err(Error::BadDirectory {
                    unit: unit.to_string(),
                    key,
                    value: word.to_string(),
                });
            }
            dirs.insert(Path::new(base).join(name));
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_directory_settings() {
        let check = |text: &str, want: &[&str]| {
            let got: Vec<String> = unit_directories("demo.service", text)
                .unwrap()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            assert_eq!(got, want, "{text}");
        };
        check("[Service]\nExecStart=/bin/true\n", &[]);
        check("StateDirectory=demo\n", &["/var/lib/demo"]);
        check(
            "StateDirectory=a b/c\nCacheDirectory=x\nLogsDirectory=y:z\n",
            &["/var/cache/x", "/var/lib/a", "/var/lib/b/c", "/var/log/y"],
        );
        check(
            "  StateDirectory = s \nRuntimeDirectory=r\n",
            &["/var/lib/s"],
        );
        for bad in [
            "StateDirectory=/abs",
            "CacheDirectory=../up",
            "LogsDirectory=a//b",
        ] {
            let err = unit_directories("demo.service", bad)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("unit `demo.service`: "), "{err}");
        }
    }
}
