//! `mkportable-spec`: the spec of a portable service image, loaded and validated.
//!
//! A spec names what goes into a systemd portable service image: the unit files,
//! the Nix store paths (whose closure comes along) and host directories, a few
//! symlinks, and how to compress the SquashFS. [`Spec::load`] reads one from a TOML
//! or JSON file and checks it against the rules `portablectl attach` applies, so a
//! spec that loads builds an image that attaches. [`os_release`] renders the image's
//! `/etc/os-release` from it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # std::fs::create_dir(dir.path().join("units"))?;
//! # std::fs::write(dir.path().join("units/demo.service"), "[Service]\nExecStart=/bin/true\n")?;
//! # let path = dir.path().join("spec.toml");
//! std::fs::write(&path, r#"
//! name = "demo"
//! version = "1.0"
//! units = ["units/demo.service"]
//! "#)?;
//! let spec = mkportable_spec::Spec::load(&path)?;
//! assert_eq!(spec.image_file_name(), "demo_1.0.raw");
//! assert_eq!(spec.units[0].name, "demo.service");
//! assert!(mkportable_spec::os_release::render(&spec).contains("PORTABLE_PREFIXES=\"demo\"\n"));
//! # Ok(())
//! # }
//! ```
//!
//! What it does not do: it does not resolve closures (`mkportable-closure`), lay out
//! the image tree (`mkportable-scaffold`), or parse the compression options beyond
//! their first word (`mkportable-squash`). It reads no files but the spec and checks
//! no paths but those the spec names, and it depends on no other mkportable crate.
//!
//! # The spec format
//!
//! A TOML file, or a JSON file with the same keys (what a Nix expression writes with
//! `builtins.toJSON`; a file whose name ends in `.json` is read as JSON). Unknown keys
//! are errors. Relative host paths resolve against the folder of the spec file.
//!
//! ```toml
//! name = "demo"
//! version = "1.0"
//! description = "Demo portable service"
//! homepage = "https://example.org/demo"
//! units = [
//!   "units/demo.service",
//!   "units/demo.socket",
//!   { source = "units/demo-at.service", name = "demo@.service" },
//! ]
//! contents = [
//!   "/nix/store/0c6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg-demo-1.0",   # a store path: its whole closure goes in
//!   { source = "payload", target = "/opt/demo" },  # a host directory grafted at an image path
//! ]
//! symlinks = [
//!   { object = "/nix/store/0c6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg-demo-1.0/bin/demo", symlink = "/bin/demo" },
//! ]
//! compression = "xz -Xdict-size 100%"   # the default
//! block-size = "1M"                     # the default
//! store-dir = "/nix/store"              # the default
//! closure-info = "closure-info"         # optional
//!
//! [os-release]
//! VERSION_ID = "1"
//! ```
//!
//! The same spec in JSON, as `builtins.toJSON` writes it (where `null` means the same
//! as leaving the key out):
//!
//! ```json
//! {
//!   "name": "demo",
//!   "version": "1.0",
//!   "units": ["/nix/store/0c6g2hmn1mc5x2nzsvr9a3vbfa7ij3fg-demo.service"],
//!   "contents": [{ "source": "/srv/payload", "target": "/opt/demo" }],
//!   "block-size": "1M",
//!   "os-release": { "VERSION_ID": "1" }
//! }
//! ```
//!
//! | key | required | meaning and rules |
//! |---|---|---|
//! | `name` | yes | The image name: ASCII letters, digits, `-` and `.`. No `_`: systemd cuts the image file name `NAME_VERSION.raw` at the first `_` to find the unit prefix. |
//! | `version` | yes | ASCII letters, digits, `.`, `-`, `~` and `^` (again no `_`). |
//! | `description` | no | One line, not empty. Becomes `PORTABLE_PRETTY_NAME`. |
//! | `homepage` | no | One line, not empty. Becomes `HOME_URL`. |
//! | `units` | yes | At least one unit file, installed as `/etc/systemd/system/<name>`. See below. |
//! | `contents` | no | Store paths and host directories. See below. |
//! | `symlinks` | no | `{ object, symlink }`: a symlink at `symlink` (in the image) pointing to `object`. See below. |
//! | `compression` | no | The compressor and its mksquashfs options, as nixpkgs' `portableService` spells them: `"xz -Xdict-size 100%"` (default), `"zstd -Xcompression-level 19"`, `"gzip"`. The first word must be `xz`, `zstd` or `gzip`. |
//! | `block-size` | no | `N`, `NK` or `NM`, a power of two from 4K to 1M. Default `"1M"`. |
//! | `store-dir` | no | The Nix store directory, absolute and normalised. Default `"/nix/store"`. |
//! | `closure-info` | no | A host path to a `closureInfo` folder or an `exportReferencesGraph` file, used instead of asking Nix for the closure. It must exist. |
//! | `os-release` | no | A table of extra `/etc/os-release` fields, which override the generated ones (see [`os_release`]). Keys are `[A-Z][A-Z0-9_]*`, values one line. |
//!
//! ## Units
//!
//! An entry is a path to a unit file, installed under its file name, or a table
//! `{ source, name }` installing `source` as `name` (for example a file
//! `demo-at.service` installed as the template `demo@.service`). The file must be a
//! regular, non-empty file. No two entries may install the same name. A unit file
//! that is itself a store path, `<store-dir>/<hash>-demo.service` (as
//! `pkgs.writeText "demo.service"` makes), installs under its name without the hash.
//!
//! The name must be one `portablectl attach` takes from this image:
//! - a valid systemd unit name (`unit_name_is_valid`): at most 255 bytes,
//!   `prefix[@instance].suffix` with a non-empty prefix, made of ASCII letters, digits
//!   and `:-_.\@` (templates `demo@.service` and instances `demo@x.service` are fine);
//! - of a type portablectl attaches: `.service`, `.socket`, `.target`, `.timer` or `.path`;
//! - matching the image's portable prefix: the name is the prefix followed by `.`,
//!   `-` or `@`. For `name = "demo"`, `demo.service`, `demo-web.service`,
//!   `demo@.service` and `demo.web.service` pass, `demoweb.service` does not. The
//!   prefix is `name`, or the words of `PORTABLE_PREFIXES` if `[os-release]` sets it.
//!
//! ## Contents
//!
//! A plain string is a store path, `<store-dir>/<hash>-<name>` with a 32-digit Nix
//! base-32 hash; it must exist, and it goes into the image with its closure. A table
//! `{ source, target }` grafts the host directory `source` (which must exist) at the
//! image path `target`. A store path may be grafted this way too, but then only its
//! files go in, not its closure.
//!
//! ## Paths in the image
//!
//! `symlinks[].symlink` and `contents[].target` are absolute and normalised (no `.` or
//! `..` components, no `//`, no trailing `/`), not `/`, and clear of what the image
//! scaffold owns:
//! - the files `/etc/os-release`, `/etc/resolv.conf`, `/etc/machine-id` and
//!   `/etc/systemd/system/<unit>` for each unit;
//! - the directories `/proc /sys /dev /run /tmp /var/tmp /var/lib /var/cache /var/log
//!   /etc /etc/systemd /etc/systemd/system /nix /nix/store`, the store directory, and
//!   their parents (such as `/var`);
//! - anything inside `/proc /sys /dev /run /tmp /nix/store` or the store directory.
//!
//! No two of these paths may be equal, and none may lie inside another. A symlink's
//! `object` is any non-empty string, absolute or relative.
//!
//! # Errors
//!
//! Validation reports every problem at once, one line each, naming the field and,
//! in TOML, the line:
//!
//! ```text
//! spec.toml:1: name: `demo_x` contains '_': use only ASCII letters, digits, `-` and `.` (systemd cuts the image file name at the first `_`)
//! spec.toml:7: units[2].name: `demoweb.service` does not start with `demo` followed by `.`, `-` or `@`, so portablectl would not attach it
//! spec.toml:12: symlinks[0].symlink: `/etc/os-release` is a file the image scaffold writes
//! ```
//!
//! A file that does not parse (bad syntax, an unknown key, a value of the wrong type)
//! gives one [`Error::Syntax`] with its line and column instead. See [`Error`].
#![deny(missing_docs)]

mod error;
pub mod os_release;
mod rules;
mod validate;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{Error, Problem};

/// The empty mount points of every portable image, as nixpkgs' `portableService`
/// lays it out: the image scaffold creates them (mode 755), and a spec may put
/// nothing over them.
pub const MOUNT_POINTS: [&str; 9] = [
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/var/lib",
    "/var/cache",
    "/var/log",
];

/// The default `compression`, as nixpkgs' `portableService` sets it.
pub const DEFAULT_COMPRESSION: &str = "xz -Xdict-size 100%";

/// The default `block-size`, as nixpkgs' `portableService` sets it.
pub const DEFAULT_BLOCK_SIZE: &str = "1M";

/// The default `store-dir`.
pub const DEFAULT_STORE_DIR: &str = "/nix/store";

/// A validated spec: every rule in the [crate documentation](crate) holds.
///
/// Built by [`Spec::load`], [`Spec::from_toml_str`] or [`Spec::from_json_str`]. A
/// `Spec` written by hand (in tests, say) skips validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The image name.
    pub name: String,
    /// The image version.
    pub version: String,
    /// A one-line description.
    pub description: Option<String>,
    /// The project's homepage.
    pub homepage: Option<String>,
    /// The unit files, in spec order; at least one.
    pub units: Vec<Unit>,
    /// The store paths and host directories, in spec order.
    pub contents: Vec<Content>,
    /// The symlinks, in spec order.
    pub symlinks: Vec<Symlink>,
    /// The compression, as written (`xz -Xdict-size 100%`); only its first word is checked.
    pub compression: String,
    /// The block size, as written (`1M`).
    pub block_size: String,
    /// The Nix store directory: absolute, normalised.
    pub store_dir: PathBuf,
    /// A `closureInfo` folder or `exportReferencesGraph` file on the host: absolute.
    pub closure_info: Option<PathBuf>,
    /// Extra `/etc/os-release` fields (see [`os_release::fields`]).
    pub os_release: BTreeMap<String, String>,
}

/// A unit file and the name it is installed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The file on the host: absolute, an existing non-empty regular file.
    pub source: PathBuf,
    /// The name in `/etc/systemd/system/`, such as `demo@.service`.
    pub name: String,
}

/// Something to put into the image besides the units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A store path, such as `/nix/store/<hash>-demo-1.0`; its closure comes along.
    StorePath(PathBuf),
    /// A host directory grafted at a path in the image.
    HostDir {
        /// The directory on the host: absolute, existing.
        source: PathBuf,
        /// Where its content appears in the image: absolute, normalised.
        target: PathBuf,
    },
}

/// A symlink in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symlink {
    /// What the symlink points to, as written: absolute or relative.
    pub object: String,
    /// Where the symlink is in the image: absolute, normalised.
    pub symlink: PathBuf,
}

impl Spec {
    /// Loads and validates the spec at `path`: JSON if its name ends in `.json`,
    /// TOML otherwise. Relative paths in it resolve against its folder.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read, [`Error::Syntax`] if it does not parse
    /// as a spec, [`Error::Invalid`] with every broken rule otherwise. Errors name the
    /// file as `path` is written.
    pub fn load(path: impl AsRef<Path>) -> Result<Spec, Error> {
        Self::load_inner(path.as_ref())
    }

    fn load_inner(path: &Path) -> Result<Spec, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let file = path.display().to_string();
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        if is_json {
            Self::from_json_str(&text, folder, &file)
        } else {
            Self::from_toml_str(&text, folder, &file)
        }
    }

    /// Parses and validates TOML `text`. Relative paths resolve against `origin_dir`
    /// (made absolute from the current directory if it is relative); `file_name` names
    /// the spec in errors.
    ///
    /// # Errors
    ///
    /// As [`Spec::load`], [`Error::Io`] only if `origin_dir` cannot be made absolute.
    pub fn from_toml_str(text: &str, origin_dir: &Path, file_name: &str) -> Result<Spec, Error> {
        let wire = wire::parse_toml(text, file_name)?;
        let origin = absolute(origin_dir)?;
        validate::validate(wire, text, &origin).map_err(|problems| Error::Invalid {
            file: file_name.to_owned(),
            problems,
        })
    }

    /// Parses and validates JSON `text`, with the keys of the TOML form. Otherwise as
    /// [`Spec::from_toml_str`]; problems carry no line, as the JSON parser gives none.
    ///
    /// # Errors
    ///
    /// As [`Spec::from_toml_str`].
    pub fn from_json_str(text: &str, origin_dir: &Path, file_name: &str) -> Result<Spec, Error> {
        let wire = wire::parse_json(text, file_name)?;
        let origin = absolute(origin_dir)?;
        validate::validate(wire, text, &origin).map_err(|problems| Error::Invalid {
            file: file_name.to_owned(),
            problems,
        })
    }

    /// The image's file name, `NAME_VERSION.raw`: systemd takes the part before the
    /// first `_` as the image's unit prefix.
    pub fn image_file_name(&self) -> String {
        format!("{}_{}.raw", self.name, self.version)
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // `components` drops `.` components, so `./specs` and `specs` resolve alike.
    std::path::absolute(dir)
        .map(|dir| dir.components().collect())
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })
}
