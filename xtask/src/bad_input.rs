//! Bad input: every failure must end with a non-zero exit, one clear line on
//! stderr naming the offending path, no panic, no file at the output path
//! (an existing one untouched) and no temporary file left beside it.
//!
//! Cases: a missing source, a missing output directory, an existing output
//! without `-noappend` (an image and a non-image), a file and a directory the
//! tool cannot read (run as `nobody` with `setpriv`, since root reads mode 000),
//! a file that vanishes before it is read, a file that grows while it is read,
//! a full disk (a small tmpfs), and SIGINT in the middle of a write.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::harness::{clean_dir, run, run_ok, show, Ours, Runner};
use crate::oracle::{Mount, Opts};
use crate::tree_gen::{Builder, Meta, Rng};

/// Runs every bad-input case.
pub fn run_suite(runner: &mut Runner, ours: &Ours, work: &Path) {
    let dir = work.join("bad-input");
    if let Err(e) = clean_dir(&dir) {
        runner.fail("bad-input", &format!("{e:#}"));
        return;
    }
    let ctx = Ctx { ours, dir };
    let cases: [(&str, CaseFn); 11] = [
        ("missing-source", missing_source),
        ("output-directory-missing", output_dir_missing),
        ("output-exists-image-without-noappend", |c, d| {
            output_exists(c, d, true)
        }),
        ("output-exists-other-file-without-noappend", |c, d| {
            output_exists(c, d, false)
        }),
        ("unreadable-file-as-nobody", |c, d| unreadable(c, d, false)),
        ("unreadable-directory-as-nobody", |c, d| {
            unreadable(c, d, true)
        }),
        ("file-vanishes-before-read", vanishing_file),
        ("file-grows-while-read", growing_file),
        ("disk-full", disk_full),
        ("sigint-mid-write", sigint),
        ("output-is-a-directory", output_is_directory),
    ];
    for (name, f) in cases {
        let case_dir = ctx.dir.join(name);
        runner.case(&format!("bad-input/{name}"), || {
            clean_dir(&case_dir)?;
            f(&ctx, &case_dir)?;
            fs::remove_dir_all(&case_dir).context("cleaning up")
        });
    }
}

/// One bad-input case: builds its input under the given directory and checks the run.
type CaseFn = fn(&Ctx, &Path) -> Result<()>;

struct Ctx<'a> {
    ours: &'a Ours,
    dir: PathBuf,
}

/// What a failed run must leave behind.
struct Expect<'a> {
    /// Some line of stderr must contain one of these.
    names: Vec<String>,
    /// The output path.
    output: &'a Path,
    /// Its previous contents, if it existed: must be unchanged.
    existing: Option<Vec<u8>>,
}

/// The options every case passes (a fast compressor; mksquashfs's defaults otherwise).
fn opts() -> Vec<String> {
    Opts::new("gzip", "128K").args()
}

fn ours_cmd(ctx: &Ctx, sources: &[&Path], output: &Path, args: &[String]) -> Command {
    let mut cmd = ctx.ours.command();
    cmd.args(sources).arg(output).args(args).env("LC_ALL", "C");
    cmd
}

/// A small valid source tree.
fn small_source(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("src");
    let mut b = Builder::create(&src, Meta::new(0o755, 0, 0, 1_000_000_000))?;
    b.file(b"hello", b"hello\n", Meta::new(0o644, 0, 0, 1_000_000_000))?;
    b.dir(b"sub", Meta::new(0o755, 0, 0, 1_000_000_000))?;
    b.file(
        b"sub/data",
        &Rng::new(7).text(50_000),
        Meta::new(0o644, 0, 0, 1_000_000_000),
    )?;
    b.finish()?;
    Ok(src)
}

/// Lists a directory (empty if it does not exist).
fn listing(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Checks a finished run against `expect`; `before` is the output directory's listing before the run.
fn check_failure(
    cmd: &Command,
    status: ExitStatus,
    stderr: &str,
    expect: &Expect,
    before: &[OsString],
) -> Result<()> {
    let mut problems = Vec::new();
    match (status.code(), status.signal()) {
        (Some(0), _) => problems.push("exited 0: the failure went unreported".to_string()),
        (Some(_), _) => {}
        (None, Some(2)) => {} // re-raised SIGINT after cleaning up, as shells expect
        (None, sig) => problems.push(format!("killed by signal {sig:?}")),
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        problems.push("panicked".to_string());
    }
    // "Ends with one clear line naming the path": the last line names it; a
    // `caused by:` or `hint:` line or two before it are fine, a flood is not.
    match lines.last() {
        None => problems.push("printed nothing on stderr".to_string()),
        Some(last) if !expect.names.iter().any(|n| last.contains(n.as_str())) => {
            problems.push(format!(
                "the last stderr line does not name {}",
                expect.names.join(" or ")
            ))
        }
        Some(_) => {}
    }
    if lines.len() > 3 {
        problems.push(format!(
            "wanted one clear line on stderr, got {}",
            lines.len()
        ));
    }
    match (
        &expect.existing,
        fs::symlink_metadata(expect.output).is_ok(),
    ) {
        (None, true) => problems.push(format!(
            "left a file at the output path {}",
            expect.output.display()
        )),
        (Some(_), false) => problems.push(format!(
            "removed the existing output {}",
            expect.output.display()
        )),
        (Some(old), true) => {
            if fs::read(expect.output).ok().as_ref() != Some(old) {
                problems.push(format!(
                    "modified the existing output {}",
                    expect.output.display()
                ));
            }
        }
        (None, false) => {}
    }
    let out_dir = expect
        .output
        .parent()
        .expect("outputs are files in a directory");
    let after = listing(out_dir);
    if after != before {
        problems.push(format!(
            "the output directory changed: before {before:?}, after {after:?}"
        ));
    }
    ensure!(
        problems.is_empty(),
        "{}\ncommand: {}\nexit: {status}\nstderr:\n{}",
        problems.join("\n"),
        show(cmd),
        stderr.trim_end()
    );
    Ok(())
}

/// Runs `cmd` to completion and checks the failure.
fn expect_failure(mut cmd: Command, expect: &Expect) -> Result<()> {
    let before = listing(
        expect
            .output
            .parent()
            .expect("outputs are files in a directory"),
    );
    let out = run(&mut cmd)?;
    check_failure(&cmd, out.status, &out.stderr, expect, &before)
}

fn name_of(p: &Path) -> String {
    p.file_name().expect("named").to_string_lossy().into_owned()
}

fn missing_source(ctx: &Ctx, dir: &Path) -> Result<()> {
    let (src, out_dir) = (dir.join("does-not-exist-source"), dir.join("out"));
    fs::create_dir(&out_dir)?;
    let output = out_dir.join("img.sqfs");
    let cmd = ours_cmd(ctx, &[&src], &output, &opts());
    expect_failure(
        cmd,
        &Expect {
            names: vec![name_of(&src)],
            output: &output,
            existing: None,
        },
    )
}

fn output_dir_missing(ctx: &Ctx, dir: &Path) -> Result<()> {
    let src = small_source(dir)?;
    let missing = dir.join("no-such-output-dir");
    let output = missing.join("img.sqfs");
    let cmd = ours_cmd(ctx, &[&src], &output, &opts());
    expect_failure(
        cmd,
        &Expect {
            names: vec![name_of(&missing)],
            output: &output,
            existing: None,
        },
    )?;
    ensure!(
        !missing.exists(),
        "created the missing output directory {}",
        missing.display()
    );
    Ok(())
}

fn output_exists(ctx: &Ctx, dir: &Path, image: bool) -> Result<()> {
    let src = small_source(dir)?;
    let out_dir = dir.join("out");
    fs::create_dir(&out_dir)?;
    let output = out_dir.join("existing-output.sqfs");
    if image {
        // A valid image: mksquashfs would append to it; we must refuse.
        run_ok(
            Command::new("mksquashfs")
                .arg(&src)
                .arg(&output)
                .args(opts()),
        )?;
    } else {
        fs::write(&output, b"precious data, not an image\n")?;
    }
    let existing = fs::read(&output)?;
    let args: Vec<String> = opts().into_iter().filter(|a| a != "-noappend").collect();
    let cmd = ours_cmd(ctx, &[&src], &output, &args);
    expect_failure(
        cmd,
        &Expect {
            names: vec![name_of(&output)],
            output: &output,
            existing: Some(existing),
        },
    )
}

/// Wraps `cmd` to run as nobody:nogroup with no supplementary groups.
fn as_nobody(ctx: &Ctx, sources: &[&Path], output: &Path, cwd: &Path) -> Result<Command> {
    let setpriv = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let probe = run(Command::new("setpriv")
        .args(setpriv)
        .arg("test")
        .arg("-x")
        .arg(ctx.ours.program()))?;
    ensure!(
        probe.status.success(),
        "user nobody cannot execute {} (a parent directory is not world-searchable?); this case needs it",
        ctx.ours.program().display()
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(setpriv).arg(ctx.ours.program());
    if ctx.ours.needs_subcommand() {
        cmd.arg("mksquashfs");
    }
    cmd.args(sources)
        .arg(output)
        .args(opts())
        .env("LC_ALL", "C")
        .current_dir(cwd);
    Ok(cmd)
}

fn unreadable(ctx: &Ctx, dir: &Path, directory: bool) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    let src = small_source(dir)?;
    let secret = src.join(if directory {
        "unreadable-secret-dir"
    } else {
        "unreadable-secret-file"
    });
    if directory {
        fs::create_dir(&secret)?;
        fs::write(secret.join("inside"), b"hidden\n")?;
    } else {
        fs::write(&secret, b"root only\n")?;
    }
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000))?;
    let out_dir = dir.join("out");
    fs::create_dir(&out_dir)?;
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777))?;
    let output = out_dir.join("img.sqfs");
    let cmd = as_nobody(ctx, &[&src], &output, &out_dir)?;
    expect_failure(
        cmd,
        &Expect {
            names: vec![name_of(&secret)],
            output: &output,
            existing: None,
        },
    )
}

/// A source whose first file takes a while to pack (compressible, so no
/// incompressible fast path skips the work), so a later file can be removed
/// after the tree was listed but before it is read. The moment is when some
/// process has the first file open (reading has begun); the victim's atime
/// shows whether it was read before that.
fn vanishing_file(ctx: &Ctx, dir: &Path) -> Result<()> {
    let src = dir.join("src");
    fs::create_dir(&src)?;
    let first = src.join("a-big-first");
    fs::write(&first, Rng::new(11).text(64 << 20))?;
    let victim = src.join("z-vanishing-file");
    fs::write(&victim, b"soon gone\n")?;
    let atime_before = fs::metadata(&victim)?.accessed()?;
    let out_dir = dir.join("out");
    fs::create_dir(&out_dir)?;
    let output = out_dir.join("img.sqfs");
    let mut cmd = ours_cmd(ctx, &[&src], &output, &opts());
    let before = listing(&out_dir);
    let mut child = spawn(&mut cmd)?;
    let started = Instant::now();
    while !open_by_any_process(&first) {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the tool finished ({status}) before anything had {} open; cannot time the removal",
                first.display()
            );
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("no process opened {} within 30s", first.display());
        }
        thread::sleep(Duration::from_millis(5));
    }
    // Reading has begun, so the tree was listed; give a scan that opens files a moment to finish.
    thread::sleep(Duration::from_millis(20));
    let read_early =
        fs::metadata(&victim)?.accessed()? != atime_before || open_by_any_process(&victim);
    fs::remove_file(&victim)?;
    let (status, stderr) = wait(child, Duration::from_secs(120))?;
    ensure!(
        !read_early,
        "inconclusive: the tool read {} before it finished {} (read order?), so the removal came too late",
        victim.display(),
        first.display()
    );
    println!(
        "  removed the file {:.1}s after the start",
        started.elapsed().as_secs_f64()
    );
    check_failure(
        &cmd,
        status,
        &stderr,
        &Expect {
            names: vec![name_of(&victim)],
            output: &output,
            existing: None,
        },
        &before,
    )
}

/// Whether any process has `path` open (scans `/proc/*/fd`, so a wrapper's child counts too).
fn open_by_any_process(path: &Path) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    procs
        .filter_map(|p| p.ok())
        .filter(|p| {
            p.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|p| {
            fs::read_dir(p.path().join("fd"))
                .map(|fds| {
                    fds.filter_map(|fd| fd.ok())
                        .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == path))
                })
                .unwrap_or(false)
        })
}

fn growing_file(ctx: &Ctx, dir: &Path) -> Result<()> {
    let src = dir.join("src");
    fs::create_dir(&src)?;
    let growing = src.join("a-growing-file");
    fs::write(&growing, Rng::new(12).text(48 << 20))?;
    fs::write(src.join("b-other"), b"other\n")?;
    let out_dir = dir.join("out");
    fs::create_dir(&out_dir)?;
    let output = out_dir.join("img.sqfs");
    let stop = Arc::new(AtomicBool::new(false));
    let grower = {
        let (stop, growing) = (Arc::clone(&stop), growing.clone());
        thread::spawn(move || -> std::io::Result<u64> {
            let mut f = OpenOptions::new().append(true).open(&growing)?;
            let chunk = vec![b'g'; 64 << 10];
            let mut grown = 0u64;
            while !stop.load(Ordering::Relaxed) && grown < (128 << 20) {
                f.write_all(&chunk)?;
                grown += chunk.len() as u64;
                thread::sleep(Duration::from_millis(2));
            }
            Ok(grown)
        })
    };
    let mut cmd = ours_cmd(ctx, &[&src], &output, &opts());
    let before = listing(&out_dir);
    let res = spawn(&mut cmd).and_then(|child| wait(child, Duration::from_secs(120)));
    stop.store(true, Ordering::Relaxed);
    let grown = grower
        .join()
        .expect("the grower does not panic")
        .context("appending to the growing file")?;
    let (status, stderr) = res?;
    ensure!(grown > 0, "the file did not grow while the tool ran");
    check_failure(
        &cmd,
        status,
        &stderr,
        &Expect {
            names: vec![name_of(&growing)],
            output: &output,
            existing: None,
        },
        &before,
    )
}

fn disk_full(ctx: &Ctx, dir: &Path) -> Result<()> {
    let src = dir.join("src");
    fs::create_dir(&src)?;
    fs::write(src.join("incompressible"), Rng::new(13).bytes(8 << 20))?;
    let mount = Mount::tmpfs(&dir.join("small-tmpfs"), "1m")?;
    let output = mount.dir().join("img.sqfs");
    let cmd = ours_cmd(ctx, &[&src], &output, &opts());
    let names = vec![name_of(&output), mount.dir().display().to_string()];
    expect_failure(
        cmd,
        &Expect {
            names,
            output: &output,
            existing: None,
        },
    )
}

fn sigint(ctx: &Ctx, dir: &Path) -> Result<()> {
    let src = dir.join("src");
    fs::create_dir(&src)?;
    // Compressible, so the work cannot be skipped: xz on one thread takes seconds.
    fs::write(src.join("text"), Rng::new(15).text(48 << 20))?;
    fs::write(src.join("incompressible"), Rng::new(14).bytes(8 << 20))?;
    let out_dir = dir.join("out");
    fs::create_dir(&out_dir)?;
    let output = out_dir.join("img.sqfs");
    // xz on one thread: slow enough to be interrupted mid-write.
    let mut o = Opts::new("xz", "128K");
    o.processors = Some(1);
    let args = o.args();
    let mut cmd = ours_cmd(ctx, &[&src], &output, &args);
    let before = listing(&out_dir);
    let mut child = spawn(&mut cmd)?;
    // Wait until the output (or a temporary file beside it) appears, at least
    // half a second and at most three.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3)
        && (started.elapsed() < Duration::from_millis(500) || listing(&out_dir) == before)
    {
        thread::sleep(Duration::from_millis(50));
    }
    if let Some(status) = child.try_wait()? {
        bail!("the tool finished ({status}) before SIGINT could be sent; the case needs a slower input");
    }
    let sent_after = started.elapsed().as_secs_f64();
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
    let (status, stderr) = wait(child, Duration::from_secs(30))?;
    println!("  SIGINT sent after {sent_after:.1}s");
    check_failure(
        &cmd,
        status,
        &stderr,
        &Expect {
            names: vec![name_of(&output)],
            output: &output,
            existing: None,
        },
        &before,
    )
}

/// The output path is an existing directory: must fail naming it and leave it alone.
fn output_is_directory(ctx: &Ctx, dir: &Path) -> Result<()> {
    let src = small_source(dir)?;
    let output = dir.join("out").join("a-directory-as-output");
    fs::create_dir_all(output.join("keep"))?;
    let cmd = ours_cmd(ctx, &[&src], &output, &opts());
    let before = listing(&output);
    let mut c = cmd;
    let out = run(&mut c)?;
    let mut problems = Vec::new();
    if out.status.success() {
        problems.push("exited 0".to_string());
    }
    if out.stderr.contains("panicked") {
        problems.push("panicked".to_string());
    }
    if !out
        .stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .is_some_and(|l| l.contains("a-directory-as-output"))
    {
        problems.push("the last stderr line does not name a-directory-as-output".to_string());
    }
    if !output.is_dir() || listing(&output) != before {
        problems.push("the directory at the output path changed".to_string());
    }
    ensure!(
        problems.is_empty(),
        "{}\ncommand: {}\nstderr:\n{}",
        problems.join("\n"),
        show(&c),
        out.stderr.trim_end()
    );
    Ok(())
}

fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn()
        .with_context(|| format!("cannot run {}", show(cmd)))
}

/// Waits up to `limit` for `child`, killing it after that; returns its status and stderr.
fn wait(mut child: Child, limit: Duration) -> Result<(ExitStatus, String)> {
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr_pipe, &mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the tool did not finish within {}s; killed it",
                limit.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok((status, reader.join().expect("the reader does not panic")))
}
