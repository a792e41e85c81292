//! The harness: named cases with timing and a tally, running commands, and
//! finding the tools (ours, the reference and the oracles) before anything runs.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

/// Runs cases, prints one `PASS`/`FAIL` line each with its time, and keeps the tally.
#[derive(Debug)]
pub struct Runner {
    filters: Vec<String>,
    /// Run the reduced matrix (`--quick`).
    pub quick: bool,
    passed: usize,
    failed: Vec<String>,
    started: Instant,
}

impl Runner {
    /// A runner that only runs cases whose name contains one of `filters` (all if empty).
    pub fn new(filters: Vec<String>, quick: bool) -> Runner {
        Runner {
            filters,
            quick,
            passed: 0,
            failed: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Whether the filter selects the case `name`.
    pub fn selected(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// Runs the case `name` if selected: `Ok` passes; an error or a panic fails it.
    pub fn case(&mut self, name: &str, f: impl FnOnce() -> Result<()>) {
        if !self.selected(name) {
            return;
        }
        println!("---- {name}");
        flush();
        let start = Instant::now();
        let res = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(res) => res,
            Err(panic) => Err(anyhow!("harness panicked: {}", panic_message(&panic))),
        };
        let secs = start.elapsed().as_secs_f64();
        match res {
            Ok(()) => {
                println!("PASS {name} ({secs:.1}s)");
                self.passed += 1;
            }
            Err(e) => {
                println!("FAIL {name} ({secs:.1}s)");
                for line in format!("{e:#}").lines() {
                    println!("    {line}");
                }
                self.failed.push(name.to_string());
            }
        }
        flush();
    }

    /// Records a failure that is not a case of its own (a stage that could not start).
    pub fn fail(&mut self, name: &str, why: &str) {
        println!("FAIL {name}: {why}");
        self.failed.push(name.to_string());
    }

    /// Prints the failures and the summary line; true if everything passed.
    pub fn finish(self) -> bool {
        println!();
        println!("total time {:.1}s", self.started.elapsed().as_secs_f64());
        for name in &self.failed {
            println!("failed: {name}");
        }
        let ran_nothing = self.passed + self.failed.len() == 0;
        if ran_nothing {
            println!("no case matched the filter {:?}", self.filters);
        }
        println!("{} passed, {} failed", self.passed, self.failed.len());
        flush();
        self.failed.is_empty() && !ran_nothing
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

/// Flushes stdout so case lines interleave sensibly with child output.
pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// The captured result of a command.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `cmd` with no stdin, capturing its output, whatever its exit status.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", show(cmd)))?;
    Ok(Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `cmd` and fails, with its stderr, unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = run(cmd)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            show(cmd),
            out.status,
            out.stdout,
            out.stderr
        );
    }
    Ok(out)
}

/// A command line for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
            let _ = write!(s, " '{}'", arg.replace('\'', "'\\''"));
        } else {
            let _ = write!(s, " {arg}");
        }
    }
    s
}

/// The repository root (the parent of `xtask/`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository root")
        .to_path_buf()
}

/// Where the suites put trees, images and mount points.
pub fn work_dir() -> PathBuf {
    project_root().join("target").join("xtask")
}

/// Takes the lock on [`work_dir`], waiting (and saying so) while another run holds it.
/// The lock lasts as long as the returned file is open.
pub fn lock_work_dir() -> Result<fs::File> {
    let dir = work_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(".lock");
    let file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    if file.try_lock().is_err() {
        println!(
            "waiting for another `cargo xtask` run to finish (it holds {})",
            path.display()
        );
        flush();
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// Points `XDG_CACHE_HOME` of this process, and so of every command it runs,
/// at an empty `target/xtask/xdg-cache`: `mkportable build` and `squash` use
/// a block cache there by default, and no test may read or fill the real one
/// in `~/.cache`. Call it while holding [`lock_work_dir`], before any thread starts.
pub fn isolate_cache_home() -> Result<PathBuf> {
    let dir = work_dir().join("xdg-cache");
    clean_dir(&dir)?;
    env::set_var("XDG_CACHE_HOME", &dir);
    Ok(dir)
}

/// The cargo that started us (`$CARGO`), or `cargo` from `PATH`.
pub fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// How to run the tool under test with mksquashfs's arguments.
#[derive(Debug, Clone)]
pub struct Ours {
    program: PathBuf,
    /// Whether the program needs the `mksquashfs` subcommand word first.
    subcommand: bool,
}

impl Ours {
    /// `MKPORTABLE_BIN` if set (run as is; a program named `mkportable*` still
    /// gets the `mksquashfs` subcommand), otherwise `target/debug/mkportable`
    /// built with `$CARGO build -p mkportable`.
    pub fn locate() -> Result<Ours> {
        if let Some(bin) = env::var_os("MKPORTABLE_BIN") {
            let program = PathBuf::from(bin);
            let program = if program.components().count() == 1 {
                which(&program.to_string_lossy())
                    .ok_or_else(|| anyhow!("MKPORTABLE_BIN={} is not on PATH", program.display()))?
            } else {
                program
            };
            let subcommand = program
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("mkportable"));
            return Ok(Ours {
                program,
                subcommand,
            });
        }
        let root = project_root();
        println!(
            "building mkportable: {} build -p mkportable",
            cargo().to_string_lossy()
        );
        flush();
        let status = Command::new(cargo())
            .args(["build", "-p", "mkportable"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("`cargo build -p mkportable` failed ({status})");
        }
        let target =
            env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let program = target.join("debug").join("mkportable");
        if !program.is_file() {
            bail!("{} does not exist after the build", program.display());
        }
        Ok(Ours {
            program,
            subcommand: true,
        })
    }

    /// A command that runs the tool; append `SOURCE... OUTPUT [options]`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if self.subcommand {
            cmd.arg("mksquashfs");
        }
        cmd
    }

    /// The program, for messages and for running it as another user.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Whether the program needs the `mksquashfs` subcommand word.
    pub fn needs_subcommand(&self) -> bool {
        self.subcommand
    }

    /// One line saying what runs.
    pub fn describe(&self) -> String {
        if self.subcommand {
            format!("{} mksquashfs", self.program.display())
        } else {
            self.program.display().to_string()
        }
    }
}

/// Finds `name` on `PATH` (an executable file).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Tools the oracle, determinism and bad-input suites need, with the Debian
/// package that provides each.
const TOOLS: [(&str, &str); 13] = [
    ("mksquashfs", "squashfs-tools"),
    ("unsquashfs", "squashfs-tools"),
    ("sqfsdiff", "squashfs-tools-ng"),
    ("setfattr", "attr"),
    ("getfattr", "attr"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("losetup", "mount"),
    ("setpriv", "util-linux"),
    ("kill", "procps"),
    ("mknod", "coreutils"),
    ("mkfifo", "coreutils"),
    ("touch", "coreutils"),
];

/// Checks that we are root, that every oracle is installed and that the kernel
/// can loop-mount SquashFS; says what to install otherwise.
pub fn preflight() -> Result<()> {
    let mut problems = Vec::new();
    if !is_root() {
        problems.push(
            "the suites must run as root (mount, mknod, chown, trusted.* xattrs)".to_string(),
        );
    }
    let mut packages: Vec<&str> = Vec::new();
    for (tool, package) in TOOLS {
        if which(tool).is_none() {
            problems.push(format!("`{tool}` is missing: apt-get install {package}"));
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
    }
    if !packages.is_empty() {
        problems.push(format!(
            "install them all with: apt-get install -y {}",
            packages.join(" ")
        ));
    }
    if !kernel_has_squashfs() {
        problems.push("the kernel cannot mount squashfs (no `squashfs` in /proc/filesystems, modprobe squashfs failed)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        let _ = run(Command::new("modprobe").arg("loop"));
        if !Path::new("/dev/loop-control").exists() {
            problems.push(
                "no loop device support (/dev/loop-control is missing; modprobe loop)".into(),
            );
        }
    }
    if !problems.is_empty() {
        bail!("the oracles are not ready:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

fn kernel_has_squashfs() -> bool {
    let has = || {
        fs::read_to_string("/proc/filesystems")
            .is_ok_and(|s| s.lines().any(|l| l.trim_end().ends_with("squashfs")))
    };
    has()
        || (run(Command::new("modprobe").arg("squashfs")).is_ok_and(|o| o.status.success())
            && has())
}

/// The first line of `prog --version`-style output, for the log.
pub fn version_line(prog: &str, arg: &str) -> String {
    match run(Command::new(prog).arg(arg)) {
        Ok(out) => format!("{}{}", out.stdout, out.stderr)
            .lines()
            .next()
            .unwrap_or("?")
            .to_string(),
        Err(_) => format!("{prog}: not found"),
    }
}

/// Removes `dir` and everything in it, unmounting anything still mounted below
/// it first (left over by an interrupted run).
pub fn clean_dir(dir: &Path) -> Result<()> {
    unmount_below(dir)?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) -> Result<()> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        println!("unmounting stale {}", p.display());
        run_ok(Command::new("umount").arg(&p))
            .or_else(|_| run_ok(Command::new("umount").arg("-l").arg(&p)))?;
    }
    Ok(())
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Formats bytes of a path for messages: printable ASCII as is, the rest as `\xNN`.
pub fn show_bytes(bytes: &[u8]) -> String {
    let mut s = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(s, "\\x{:02x}", c as u32);
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}
