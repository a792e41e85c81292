//! The corpora: trees every machine of this kind has (the Rust toolchain
//! under `~/.rustup/toolchains/`) and the large Nix fixture, with the files
//! the Nix comparison needs (a spec for `mkportable build`, the scaffold and
//! the script of the seed's pipeline).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Size of the large Nix fixture, MiB (`make-nix-fixture -s`).
pub const NIX_FIXTURE_MIB: u32 = 1024;

/// A Rust toolchain installed by rustup.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// Its folder, symlinks resolved.
    pub dir: PathBuf,
    /// Its name under `toolchains/`.
    pub name: String,
    /// `rustc -V` of that toolchain: the corpus revision.
    pub rustc: String,
}

impl Toolchain {
    /// The toolchain cargo runs with (`RUSTUP_TOOLCHAIN`), else rustup's
    /// default, else the first `stable-*` one.
    pub fn find() -> Result<Toolchain> {
        let home = env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".rustup")
            });
        let dir = home.join("toolchains");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let wanted = env::var("RUSTUP_TOOLCHAIN").ok();
        let default = fs::read_to_string(home.join("settings.toml"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("default_toolchain = "))
                    .map(|v| v.trim().trim_matches('"').to_string())
            });
        let name = [wanted, default]
            .into_iter()
            .flatten()
            .find_map(|w| {
                names
                    .iter()
                    .find(|n| **n == w || n.starts_with(&format!("{w}-")))
                    .cloned()
            })
            .or_else(|| names.iter().find(|n| n.starts_with("stable-")).cloned())
            .or_else(|| names.first().cloned())
            .with_context(|| format!("no toolchain in {}", dir.display()))?;
        let path = fs::canonicalize(dir.join(&name))
            .with_context(|| format!("resolving {}", dir.join(&name).display()))?;
        let rustc = Command::new(path.join("bin").join("rustc"))
            .arg("-V")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "rustc: unknown".into());
        Ok(Toolchain {
            dir: path,
            name,
            rustc,
        })
    }
}

/// What a corpus is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// One folder, given to each tool as its single source.
    Tree(PathBuf),
    /// The large Nix fixture: `mkportable build` against the seed's pipeline.
    Nix(Nix),
}

/// A corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Its short name, the first part of cell ids.
    pub name: &'static str,
    /// One line saying what it is.
    pub about: String,
    /// Its content.
    pub kind: Kind,
    /// What pins its content (toolchain version, fixture size).
    pub revision: String,
    /// For a tree made of copies: the folder copied, and how many times
    /// (see [`Corpus::ensure_copies`]).
    pub copies: Option<(PathBuf, usize)>,
}

impl Corpus {
    /// Makes a tree of copies unless it is complete: copy `a`, `b`, … of the
    /// folder, each with its own inodes (`cp -a --reflink=auto`, never hard
    /// links, which both tools would pack once).
    pub fn ensure_copies(&self) -> Result<()> {
        let (Some((src, n)), Kind::Tree(dest)) = (&self.copies, &self.kind) else {
            return Ok(());
        };
        let done = dest.with_extension("complete");
        if done.exists() && dest.exists() {
            return Ok(());
        }
        if dest.exists() {
            fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
        }
        fs::create_dir_all(dest)?;
        for i in 0..*n {
            let copy = dest.join(((b'a' + i as u8) as char).to_string());
            println!("copying {} to {}", src.display(), copy.display());
            let out = Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(src)
                .arg(&copy)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running cp -a {} {}", src.display(), copy.display()))?;
            if !out.status.success() {
                bail!(
                    "cp -a {} {} failed ({}): {}",
                    src.display(),
                    copy.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        fs::write(&done, "")?;
        Ok(())
    }
}

/// The corpus of `--quick`: std's HTML docs, ~120 MB in ~2,600 files.
pub fn quick(tc: &Toolchain) -> Corpus {
    Corpus {
        name: "rust-std-html",
        about: "share/doc/rust/html/std of the Rust toolchain (HTML and JS, many small files)"
            .into(),
        kind: Kind::Tree(tc.dir.join("share/doc/rust/html/std")),
        revision: format!("{} ({})", tc.name, tc.rustc),
        copies: None,
    }
}

/// The toolchain's `lib/` (binaries: LLVM, rustc_driver, rlibs).
pub fn lib(tc: &Toolchain) -> Corpus {
    Corpus {
        name: "rust-lib",
        about: "lib/ of the Rust toolchain (shared libraries and rlibs)".into(),
        kind: Kind::Tree(tc.dir.join("lib")),
        revision: format!("{} ({})", tc.name, tc.rustc),
        copies: None,
    }
}

/// The toolchain's `share/doc` (HTML, JS, Markdown).
pub fn doc(tc: &Toolchain) -> Corpus {
    Corpus {
        name: "rust-doc",
        about: "share/doc of the Rust toolchain (HTML, JS, search indexes)".into(),
        kind: Kind::Tree(tc.dir.join("share/doc")),
        revision: format!("{} ({})", tc.name, tc.rustc),
        copies: None,
    }
}

/// The whole toolchain.
pub fn toolchain(tc: &Toolchain) -> Corpus {
    Corpus {
        name: "rust-toolchain",
        about: "the whole Rust toolchain folder".into(),
        kind: Kind::Tree(tc.dir.clone()),
        revision: format!("{} ({})", tc.name, tc.rustc),
        copies: None,
    }
}

/// The toolchain's `share/doc` twice (two copies with their own inodes, the
/// same content): the memory bound on a corpus twice as large, in files and
/// in bytes. Duplicate files make it cheaper to compress for every tool.
pub fn doc_twice(tc: &Toolchain, work: &Path) -> Corpus {
    Corpus {
        name: "rust-doc-x2",
        about: "share/doc of the Rust toolchain, twice (two copies side by side)".into(),
        kind: Kind::Tree(work.join("rust-doc-x2")),
        revision: format!("{} ({})", tc.name, tc.rustc),
        copies: Some((tc.dir.join("share/doc"), 2)),
    }
}

/// The large Nix fixture.
pub fn nix(root: &Path, work: &Path) -> Corpus {
    Corpus {
        name: "nix-1024",
        about: format!(
            "closure of the large fixture of `make-nix-fixture -s {NIX_FIXTURE_MIB}`, packed by \
             `mkportable build` and by the seed's pipeline"
        ),
        kind: Kind::Nix(Nix {
            fixture: root
                .join("target")
                .join(format!("nix-fixture-{NIX_FIXTURE_MIB}")),
            script: root
                .join("..")
                .join("shared")
                .join("fixtures")
                .join("make-nix-fixture"),
            dir: work.join("nix"),
        }),
        revision: format!("make-nix-fixture -s {NIX_FIXTURE_MIB}"),
        copies: None,
    }
}

/// The Nix fixture and the files its comparison needs.
#[derive(Debug, Clone)]
pub struct Nix {
    /// `target/nix-fixture-1024`.
    pub fixture: PathBuf,
    /// `../shared/fixtures/make-nix-fixture`.
    pub script: PathBuf,
    /// Where the spec, scaffold, seed script and outputs go.
    pub dir: PathBuf,
}

impl Nix {
    /// The closureInfo folder of the large fixture.
    pub fn closure_info(&self) -> PathBuf {
        self.fixture.join("large").join("closure-info")
    }

    /// The store paths of the closure.
    pub fn store_paths(&self) -> Result<Vec<PathBuf>> {
        let list = self.closure_info().join("store-paths");
        let text =
            fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect())
    }

    /// The fixture's root store path.
    pub fn root(&self) -> Result<String> {
        let list = self.fixture.join("large").join("roots.txt");
        let text =
            fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
        text.lines()
            .next()
            .map(str::to_string)
            .context("roots.txt is empty")
    }

    /// The spec `mkportable build` reads.
    pub fn spec(&self) -> PathBuf {
        self.dir.join("bigfx.toml")
    }

    /// The seed's rootfs scaffold.
    pub fn scaffold(&self) -> PathBuf {
        self.dir.join("scaffold")
    }

    /// The script of the seed's pipeline.
    pub fn seed_script(&self) -> PathBuf {
        self.dir.join("seed-pipeline.sh")
    }

    /// Builds the fixture unless it is there with every store path present.
    pub fn ensure(&self) -> Result<()> {
        if let Ok(paths) = self.store_paths() {
            if !paths.is_empty() && paths.iter().all(|p| p.exists()) {
                return Ok(());
            }
        }
        println!(
            "building the Nix fixture: {} -o {} -s {NIX_FIXTURE_MIB}",
            self.script.display(),
            self.fixture.display()
        );
        let status = Command::new(&self.script)
            .arg("-o")
            .arg(&self.fixture)
            .args(["-s", &NIX_FIXTURE_MIB.to_string()])
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", self.script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", self.script.display());
        }
        Ok(())
    }

    /// The top-level entries of the scaffold, sorted as the shell sorts
    /// `scaffold/*` in the seed's script.
    pub fn scaffold_entries(&self) -> Vec<PathBuf> {
        ["dev", "etc", "proc", "run", "sys", "tmp", "var"]
            .iter()
            .map(|name| self.scaffold().join(name))
            .collect()
    }

    /// The unit file: its `ExecStart` names the root store path.
    pub fn unit(&self) -> Result<String> {
        Ok(format!(
            "[Service]\nExecStart={}/nix-support/deps\n",
            self.root()?
        ))
    }

    /// Writes `DIR/bigfx.service` and a spec naming it, `DIR/bigfx.toml`;
    /// returns the spec.
    pub fn write_spec(&self, dir: &Path) -> Result<PathBuf> {
        let root = self.root()?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("bigfx.service"), self.unit()?)?;
        let spec = format!(
            "# Written by `cargo xtask bench`: the large Nix fixture as a portable image.\n\
             name = \"bigfx\"\n\
             version = \"1\"\n\
             units = [\"bigfx.service\"]\n\
             contents = [\"{root}\"]\n\
             closure-info = \"{}\"\n\
             compression = \"xz -Xdict-size 100%\"\n\
             block-size = \"1M\"\n",
            self.closure_info().display()
        );
        let path = dir.join("bigfx.toml");
        fs::write(&path, spec).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Copies every store path of the closure into `DEST/nix/store/`, as the
    /// seed's pipeline does (but hard-linked where it can be): the tree that
    /// mksquashfs packs alone, with no copy timed.
    pub fn stage(&self, dest: &Path) -> Result<()> {
        let store = dest.join("nix").join("store");
        fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
        for path in self.store_paths()? {
            let name = path
                .file_name()
                .with_context(|| format!("store path {} has no name", path.display()))?;
            copy_tree(&path, &store.join(name))?;
        }
        Ok(())
    }

    /// Writes the unit, the spec, the scaffold and the seed script.
    pub fn set_up(&self) -> Result<()> {
        let unit = self.unit()?;
        self.write_spec(&self.dir)?;
        // The seed's rootFsScaffold (nixpkgs portableService), built once like
        // the Nix derivation it is.
        let scaffold = self.scaffold();
        if scaffold.exists() {
            fs::remove_dir_all(&scaffold)?;
        }
        for d in [
            "etc/systemd/system",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "var/tmp",
            "var/lib",
            "var/cache",
            "var/log",
        ] {
            fs::create_dir_all(scaffold.join(d))?;
        }
        fs::write(scaffold.join("etc/resolv.conf"), "")?;
        fs::write(scaffold.join("etc/machine-id"), "")?;
        fs::write(
            scaffold.join("etc/os-release"),
            "NAME=\"bigfx\"\nID=bigfx\nVERSION_ID=\"1\"\nPORTABLE_ID=bigfx\nPORTABLE_PREFIXES=\"bigfx\"\n",
        )?;
        fs::write(scaffold.join("etc/systemd/system/bigfx.service"), &unit)?;
        fs::write(self.seed_script(), SEED_SCRIPT)?;
        Ok(())
    }
}

/// nixpkgs `portableService`'s buildCommand with the seed's flags; mksquashfs
/// uses every core (no `-processors`), as there.
const SEED_SCRIPT: &str = r#"#!/usr/bin/env bash
# The seed's pipeline, as nixpkgs portableService runs it: copy the closure
# into nix/store, then mksquashfs it with the scaffold. Written by
# `cargo xtask bench`. usage: seed-pipeline.sh WORK STORE_PATHS SCAFFOLD OUT
set -euo pipefail
work=$1 paths=$2 scaffold=$3 out=$4
mkdir -p "$work/nix/store"
cd "$work"
for i in $(< "$paths"); do
    cp -a "$i" "${i:1}"
done
mksquashfs nix "$scaffold"/* "$out" -keep-as-directory -all-root -root-mode 755 \
    -b 1M -comp xz -Xdict-size 100% -quiet -noappend
"#;

/// Copies the tree `src` to `dest` (which must not exist) as cheaply as the
/// filesystem allows: hard links (`cp -al`, the same files, so the same page
/// cache), else `cp -a --reflink=auto`. Whoever changes a file of the copy
/// must replace it by a new file, never write into it.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let cp = |flags: &[&str]| {
        Command::new("cp")
            .args(flags)
            .arg(src)
            .arg(dest)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running cp {} {}", src.display(), dest.display()))
    };
    let linked = cp(&["-al"])?;
    if linked.status.success() {
        return Ok(());
    }
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    let copied = cp(&["-a", "--reflink=auto"])?;
    if !copied.status.success() {
        bail!(
            "cp -a {} {} failed ({}): {}",
            src.display(),
            dest.display(),
            copied.status,
            String::from_utf8_lossy(&copied.stderr).trim()
        );
    }
    Ok(())
}

/// Files, bytes and folders under a tree (no symlinks followed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Census {
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Folders, the top one included.
    pub dirs: u64,
    /// Symlinks and special files.
    pub others: u64,
}

/// Calls `f` with every regular file under `root` (or `root` itself) and its
/// metadata, in walk order: folders entered, entries sorted by name,
/// symlinks not followed.
pub fn for_each_file(
    root: &Path,
    f: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<()>,
) -> Result<()> {
    let meta = fs::symlink_metadata(root).with_context(|| format!("reading {}", root.display()))?;
    if meta.is_dir() {
        let mut entries = fs::read_dir(root)
            .with_context(|| format!("listing {}", root.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("listing {}", root.display()))?;
        entries.sort();
        for entry in entries {
            for_each_file(&entry, f)?;
        }
    } else if meta.is_file() {
        f(root, &meta)?;
    }
    Ok(())
}

/// Counts what is under `paths`.
pub fn census(paths: &[PathBuf]) -> Result<Census> {
    let mut c = Census::default();
    let mut todo: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        if m.is_dir() {
            c.dirs += 1;
            for e in fs::read_dir(&p).with_context(|| format!("listing {}", p.display()))? {
                todo.push(e?.path());
            }
        } else if m.is_file() {
            c.files += 1;
            c.bytes += m.len();
        } else {
            c.others += 1;
        }
    }
    Ok(c)
}
