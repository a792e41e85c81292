//! Timing one process: wall clock from here, user and system CPU time and
//! peak RSS from GNU time (the child's `wait4` rusage, which covers its whole
//! process tree: CPU summed, RSS the largest single process), and the image
//! size; then medians and ranges over runs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

/// GNU time; `apt-get install time` provides it.
pub const GNU_TIME: &str = "/usr/bin/time";

/// A command to time, and what to clear before each run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Files or folders removed (untimed) before each run.
    pub clear: Vec<PathBuf>,
    /// Folders emptied before each run, untimed: moved aside (to a sibling
    /// `NAME.old-N`, removed with the cell's folder) and made again. Not
    /// deleted: on ext4 without a journal (as here) a file created within
    /// 30 s of many deletions makes the inode allocator skip every inode freed
    /// meanwhile, which would charge the bench's own deletions to the run.
    pub empty: Vec<PathBuf>,
    /// A file replaced by a new version (untimed) before each run.
    pub edit: Option<Edit>,
    /// The image the run writes, measured after it.
    pub output: PathBuf,
}

impl Invocation {
    /// A run of `program` that writes `output`, removed before each run.
    pub fn new(program: PathBuf, args: Vec<OsString>, output: PathBuf) -> Invocation {
        Invocation {
            program,
            args,
            clear: vec![output.clone()],
            empty: Vec::new(),
            edit: None,
            output,
        }
    }
}

/// A small file that a run must find changed: before each run it is replaced
/// by a new file (written next to it, then renamed over it, as an editor
/// saves) holding its original bytes and one line that no earlier run saw.
///
/// Never written in place: the folder may be a hard-linked copy of a corpus
/// that must not change.
#[derive(Debug, Clone)]
pub struct Edit {
    /// The file.
    pub file: PathBuf,
    /// Its original content.
    pub original: Vec<u8>,
}

/// Numbers the edits of this process, so that no two are the same.
static EDITS: AtomicU64 = AtomicU64::new(0);

impl Edit {
    /// Writes the next version of the file.
    pub fn apply(&self) -> Result<()> {
        let n = EDITS.fetch_add(1, Ordering::Relaxed) + 1;
        let mut bytes = self.original.clone();
        bytes.extend_from_slice(format!("\n# cargo xtask bench: edit {n}\n").as_bytes());
        let name = self
            .file
            .file_name()
            .context("the edited file has no name")?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".bench-edit");
        let tmp = self.file.with_file_name(tmp_name);
        fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &self.file)
            .with_context(|| format!("renaming {} to {}", tmp.display(), self.file.display()))
    }
}

impl Invocation {
    /// The command line, for logs and BENCHMARKS.md.
    pub fn show(&self) -> String {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        crate::harness::show(&cmd)
    }
}

/// One timed run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Wall-clock seconds.
    pub wall: f64,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak resident set size of the largest process, KiB.
    pub rss_kib: u64,
    /// Size of the image written, bytes.
    pub size: u64,
    /// Share of the machine's CPU time (all cores) that other processes, or
    /// the hypervisor (steal), took during the run: the noise gauge.
    pub others: f64,
    /// Bytes the process read from storage rather than the page cache
    /// (GNU time's `%I`, file system inputs of 512 bytes): the cache gauge.
    pub disk_read: u64,
    /// On-CPU seconds of mkportable's compressing and reading threads, from
    /// the report it writes where `MKPORTABLE_CPU_REPORT` says (other tools
    /// write none).
    pub threads: Option<ThreadCpu>,
}

/// mkportable's own account of where its CPU went (`MKPORTABLE_CPU_REPORT`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreadCpu {
    /// Seconds on a CPU of the compressing pool's threads.
    pub compress: f64,
    /// Seconds on a CPU of the reading pool's threads.
    pub read: f64,
}

impl ThreadCpu {
    /// Parses `{"compress_s":61.2,"read_s":0.8}`; `None` if a figure is
    /// `null` (the kernel did not say) or the text is not that object.
    pub fn parse(text: &str) -> Option<ThreadCpu> {
        let field = |name: &str| -> Option<f64> {
            let key = format!("\"{name}\":");
            let rest = &text[text.find(&key)? + key.len()..];
            let end = rest.find([',', '}'])?;
            rest[..end].trim().parse().ok()
        };
        Some(ThreadCpu {
            compress: field("compress_s")?,
            read: field("read_s")?,
        })
    }
}

impl Sample {
    /// User plus system CPU seconds.
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// Removes `path`, a file or a folder, if it is there.
pub fn remove(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// Renames `dir`, if it exists, to the first free `NAME.old-N` beside it.
fn move_aside(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let name = dir
        .file_name()
        .with_context(|| format!("{} has no name", dir.display()))?;
    for n in 1.. {
        let mut aside = name.to_os_string();
        aside.push(format!(".old-{n}"));
        let aside = dir.with_file_name(aside);
        if fs::symlink_metadata(&aside).is_err() {
            return fs::rename(dir, &aside)
                .with_context(|| format!("moving {} aside to {}", dir.display(), aside.display()));
        }
    }
    unreachable!("some NAME.old-N is free")
}

/// Removes what `inv` clears, empties its folders, applies its edit and
/// flushes dirty pages (`sync`), untimed, so a run does not pay for the
/// previous run's writeback.
pub fn prepare(inv: &Invocation) -> Result<()> {
    for path in &inv.clear {
        remove(path)?;
    }
    for dir in &inv.empty {
        move_aside(dir)?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Some(edit) = &inv.edit {
        edit.apply()?;
    }
    let status = Command::new("sync").status().context("running sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}

/// Reads every regular file under `roots` (symlinks not followed) and
/// returns how many bytes that fetched from storage, untimed, before a timed
/// run.
///
/// Machines of this kind reclaim page cache that sits unread for a few
/// seconds (DAMON's `pageout`, about 1 MB/s): a corpus read by one turn is
/// partly gone from memory by the next, and more so after a long turn. Without
/// this pass each run would start from a cache left by whatever ran before
/// it. What a run itself still reads from storage is in [`Sample::disk_read`].
pub fn warm(roots: &[PathBuf]) -> Result<u64> {
    use std::io::Read as _;
    let before = storage_reads();
    let mut buf = vec![0u8; 1 << 20];
    for root in roots {
        super::corpus::for_each_file(root, &mut |path, _| {
            let mut file =
                fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            while file
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?
                > 0
            {}
            Ok(())
        })?;
    }
    Ok(storage_reads().saturating_sub(before))
}

/// Bytes this process has read from storage (`read_bytes` in
/// `/proc/self/io`); 0 where that is not there.
fn storage_reads() -> u64 {
    fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("read_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `inv` once under GNU time; fails, with its output, unless it exits 0.
pub fn run(inv: &Invocation, scratch: &Path) -> Result<Sample> {
    run_capturing(inv, scratch).map(|(sample, _)| sample)
}

/// [`run`], also returning what the process printed on stdout.
pub fn run_capturing(inv: &Invocation, scratch: &Path) -> Result<(Sample, String)> {
    prepare(inv)?;
    let report = scratch.join("time.txt");
    let _ = fs::remove_file(&report);
    let cpu_report = scratch.join("threads.json");
    let _ = fs::remove_file(&cpu_report);
    let mut cmd = Command::new(GNU_TIME);
    cmd.arg("-o").arg(&report).args(["-f", "%U %S %M %I"]);
    cmd.arg(&inv.program).args(&inv.args).stdin(Stdio::null());
    cmd.env("MKPORTABLE_CPU_REPORT", &cpu_report);
    let cpu0 = machine_cpu();
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", inv.show()))?;
    let wall = start.elapsed().as_secs_f64();
    let cpu1 = machine_cpu();
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            inv.show(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = fs::read_to_string(&report).context("reading GNU time's report")?;
    let (user, sys, rss_kib, inputs) = parse_time(&text)?;
    let size = fs::metadata(&inv.output)
        .with_context(|| format!("{} wrote no {}", inv.show(), inv.output.display()))?
        .len();
    let others = match (cpu0, cpu1) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            let busy = (b1 - b0) as f64 / USER_HZ;
            let total = (t1 - t0) as f64 / USER_HZ;
            ((busy - user - sys) / total).clamp(0.0, 1.0)
        }
        _ => f64::NAN,
    };
    let sample = Sample {
        wall,
        user,
        sys,
        rss_kib,
        size,
        others,
        disk_read: inputs * 512,
        threads: fs::read_to_string(&cpu_report)
            .ok()
            .and_then(|text| ThreadCpu::parse(&text)),
    };
    Ok((sample, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Ticks per second in `/proc/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Busy and total CPU ticks of the whole machine, from `/proc/stat`'s `cpu`
/// line; busy counts steal, idle and iowait do not.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    if v.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let idle = v[3] + v[4];
    let total: u64 = v.iter().sum();
    Some((total - idle, total))
}

/// Parses the last line of GNU time's `%U %S %M %I`.
fn parse_time(text: &str) -> Result<(f64, f64, u64, u64)> {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let bad = || anyhow!("unexpected GNU time output {text:?}");
    let mut f = line.split_whitespace();
    let user = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let sys = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let rss = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let inputs = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((user, sys, rss, inputs))
}

/// Median, minimum and maximum.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stat {
    /// The statistics of `values`; all zero when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return Stat::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let s = Stat::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Stat::of([4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(Stat::of([]).median, 0.0);
    }

    #[test]
    fn emptied_folders_are_moved_aside_not_deleted() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-empty-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cache = dir.join("cache");
        let inv = Invocation {
            empty: vec![cache.clone()],
            clear: Vec::new(),
            ..Invocation::new("true".into(), Vec::new(), dir.join("out"))
        };
        // A missing folder is just made.
        prepare(&inv).unwrap();
        assert!(cache.is_dir());
        for round in 1..=2 {
            fs::write(cache.join("entry"), format!("{round}")).unwrap();
            prepare(&inv).unwrap();
            assert_eq!(fs::read_dir(&cache).unwrap().count(), 0, "emptied");
            let aside = dir.join(format!("cache.old-{round}"));
            assert_eq!(
                fs::read(aside.join("entry")).unwrap(),
                format!("{round}").as_bytes()
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn edits_replace_the_file_and_leave_its_hard_links_alone() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-edit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (original, copy) = (dir.join("original"), dir.join("copy"));
        fs::write(&original, b"page").unwrap();
        fs::hard_link(&original, &copy).unwrap();
        let edit = Edit {
            file: copy.clone(),
            original: b"page".to_vec(),
        };
        edit.apply().unwrap();
        let first = fs::read(&copy).unwrap();
        edit.apply().unwrap();
        let second = fs::read(&copy).unwrap();
        assert_eq!(fs::read(&original).unwrap(), b"page");
        assert!(first.starts_with(b"page\n# cargo xtask bench: edit "));
        assert_ne!(first, second);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            2,
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn warming_reads_files_and_follows_no_symlink() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-warm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/file"), vec![7u8; 3 << 20]).unwrap();
        // Neither a dangling link nor a loop stops the pass.
        std::os::unix::fs::symlink("/nonexistent", dir.join("dangling")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
        warm(std::slice::from_ref(&dir)).unwrap();
        assert!(
            warm(&[dir.join("missing")]).is_err(),
            "a missing root is an error"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn thread_cpu_reports() {
        assert_eq!(
            ThreadCpu::parse("{\"compress_s\":61.234567,\"read_s\":0.812346}\n"),
            Some(ThreadCpu {
                compress: 61.234567,
                read: 0.812346
            })
        );
        assert_eq!(
            ThreadCpu::parse(r#"{"compress_s":null,"read_s":0.5}"#),
            None
        );
        assert_eq!(ThreadCpu::parse(""), None);
    }

    #[test]
    fn gnu_time() {
        assert_eq!(
            parse_time("1.50 0.25 1234 56\n").unwrap(),
            (1.5, 0.25, 1234, 56)
        );
        assert_eq!(
            parse_time("Command exited with non-zero status 1\n0.00 0.00 980 0\n").unwrap(),
            (0.0, 0.0, 980, 0)
        );
        assert!(parse_time("").is_err());
        assert!(parse_time("1.50 0.25 1234\n").is_err(), "no %I");
    }
}
