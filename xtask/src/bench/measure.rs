//! Timing one process: wall clock from here, user and system CPU time and
//! peak RSS from GNU time (the child's `wait4` rusage, which covers its whole
//! process tree: CPU summed, RSS the largest single process), and the image
//! size; then medians and ranges over runs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    /// The image the run writes, measured after it.
    pub output: PathBuf,
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
}

impl Sample {
    /// User plus system CPU seconds.
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// Removes what `inv` clears and flushes dirty pages (`sync`), untimed, so a
/// run does not pay for the previous run's writeback.
pub fn prepare(inv: &Invocation) -> Result<()> {
    for path in &inv.clear {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => Ok(()),
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }
    let status = Command::new("sync").status().context("running sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}

/// Runs `inv` once under GNU time; fails, with its output, unless it exits 0.
pub fn run(inv: &Invocation, scratch: &Path) -> Result<Sample> {
    prepare(inv)?;
    let report = scratch.join("time.txt");
    let _ = fs::remove_file(&report);
    let mut cmd = Command::new(GNU_TIME);
    cmd.arg("-o").arg(&report).args(["-f", "%U %S %M"]);
    cmd.arg(&inv.program).args(&inv.args).stdin(Stdio::null());
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
    let (user, sys, rss_kib) = parse_time(&text)?;
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
    Ok(Sample {
        wall,
        user,
        sys,
        rss_kib,
        size,
        others,
    })
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

/// Parses the last line of GNU time's `%U %S %M`.
fn parse_time(text: &str) -> Result<(f64, f64, u64)> {
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
    Ok((user, sys, rss))
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
    fn gnu_time() {
        assert_eq!(parse_time("1.50 0.25 1234\n").unwrap(), (1.5, 0.25, 1234));
        assert_eq!(
            parse_time("Command exited with non-zero status 1\n0.00 0.00 980\n").unwrap(),
            (0.0, 0.0, 980)
        );
        assert!(parse_time("").is_err());
    }
}
