//! `cargo xtask demo`: the demo portable service image, from a fresh clone, without Nix.
//!
//! Builds `demo-server` (package `mkportable-demo`) as a static binary for the
//! host, installs it as `target/demo/payload/bin/demo-server` (the folder
//! `examples/demo/demo.toml` grafts at `/opt/demo`), builds `mkportable`, and
//! runs `mkportable build examples/demo/demo.toml -o out --overwrite`, which
//! writes `out/demo_1.0.raw`. The e2e suite (`e2e.rs`) reuses the first steps.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::harness::{cargo, flush, project_root, run_ok, show};

/// The demo's spec, relative to the repository root.
pub const SPEC: &str = "examples/demo/demo.toml";

/// Where the spec expects the payload, relative to the repository root.
pub const PAYLOAD: &str = "target/demo/payload";

/// The image `cargo xtask demo` writes, relative to the repository root.
pub const IMAGE: &str = "out/demo_1.0.raw";

/// Runs `cargo xtask demo`: builds the image and prints its path on stdout.
pub fn main() -> Result<()> {
    let root = project_root();
    let mkportable = build_mkportable(&root)?;
    build_payload(&root)?;
    let out_dir = Path::new(IMAGE).parent().expect("IMAGE has a folder");
    let mut cmd = Command::new(&mkportable);
    cmd.args(["build", SPEC, "-o"])
        .arg(out_dir)
        .arg("--overwrite")
        .current_dir(&root);
    eprintln!(
        "$ {}",
        shown(&cmd).replace(&root.display().to_string(), ".")
    );
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", mkportable.display()))?;
    ensure!(
        status.success(),
        "`mkportable build {SPEC}` failed ({status})"
    );
    ensure!(root.join(IMAGE).is_file(), "{IMAGE} was not written");
    println!("{IMAGE}");
    Ok(())
}

/// The target directory: `CARGO_TARGET_DIR`, or `target/` in the repository.
pub fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Builds `mkportable` (the dev profile, as the other suites) and returns its path.
pub fn build_mkportable(root: &Path) -> Result<PathBuf> {
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--quiet", "-p", "mkportable"])
        .current_dir(root);
    eprintln!("$ {}", shown(&cmd));
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .context("running cargo build")?;
    ensure!(
        status.success(),
        "`cargo build -p mkportable` failed ({status})"
    );
    let program = target_dir(root).join("debug").join("mkportable");
    ensure!(
        program.is_file(),
        "{} does not exist after the build",
        program.display()
    );
    Ok(program)
}

/// Builds `demo-server` as a static binary for the host and installs it, mode
/// 0755, as the only file of a fresh [`PAYLOAD`] (folders 0755 too, whatever
/// the umask, so the image does not depend on it). Returns the payload folder.
pub fn build_payload(root: &Path) -> Result<PathBuf> {
    let triple = host_triple()?;
    let mut cmd = Command::new(cargo());
    // `--target` keeps RUSTFLAGS away from build scripts and from the host
    // build of the workspace, so nothing else is rebuilt.
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "mkportable-demo",
        "--target",
        &triple,
    ])
    .env("RUSTFLAGS", "-C target-feature=+crt-static")
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
    .current_dir(root);
    eprintln!(
        "$ RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=symbols {}",
        shown(&cmd)
    );
    flush();
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .context("running cargo build")?;
    ensure!(
        status.success(),
        "the static build of demo-server failed ({status})"
    );
    let binary = target_dir(root)
        .join(&triple)
        .join("release")
        .join("demo-server");
    let bytes = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    check_static(&bytes)
        .with_context(|| format!("{} cannot run in a portable image", binary.display()))?;

    let payload = root.join(PAYLOAD);
    if payload.exists() {
        fs::remove_dir_all(&payload).with_context(|| format!("removing {}", payload.display()))?;
    }
    let bin = payload.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let installed = bin.join("demo-server");
    fs::write(&installed, &bytes).with_context(|| format!("writing {}", installed.display()))?;
    for (path, mode) in [(&payload, 0o755), (&bin, 0o755), (&installed, 0o755)] {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(payload)
}

/// A command line for the log, with `cargo` for `$CARGO`'s full path.
fn shown(cmd: &Command) -> String {
    let line = show(cmd);
    match line.strip_prefix(&*cargo().to_string_lossy()) {
        Some(rest) => format!("cargo{rest}"),
        None => line,
    }
}

/// The host's target triple, from `rustc -vV` (`RUSTC` if set).
fn host_triple() -> Result<String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = run_ok(Command::new(rustc).arg("-vV"))?;
    match out.stdout.lines().find_map(|l| l.strip_prefix("host: ")) {
        Some(triple) => Ok(triple.trim().to_string()),
        None => bail!("`rustc -vV` printed no `host:` line:\n{}", out.stdout),
    }
}

/// Checks that an ELF file asks for no program interpreter (no `PT_INTERP`):
/// the image has no dynamic loader and no libc for it to load.
fn check_static(elf: &[u8]) -> Result<()> {
    ensure!(
        elf.len() >= 64 && elf.starts_with(b"\x7fELF"),
        "not an ELF file"
    );
    ensure!(
        elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |i: usize| u16::from_le_bytes([elf[i], elf[i + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for idx in 0..phnum {
        let at = phoff + idx * phentsize;
        let p_type = elf
            .get(at..at + 4)
            .context("program header out of bounds")?;
        // PT_INTERP = 3
        ensure!(
            p_type != 3u32.to_le_bytes(),
            "it is dynamically linked (it has a PT_INTERP program header)"
        );
    }
    Ok(())
}
