//! The oracle suite: build each source tree with ours and with mksquashfs,
//! using the same options, and check what independent readers see.
//!
//! Per case: (1) `unsquashfs -s` superblock summaries agree (and the mkfs time,
//! where the options fix it); (2) `sqfsdiff -T` finds no difference between
//! mksquashfs's image and ours (contents, owners, permissions, timestamps,
//! symlink targets, device numbers; it does not read xattrs); (3) the kernel
//! mount of ours matches the source tree as the options say it should look,
//! and matches the kernel mount of mksquashfs's image (the latter also checks
//! our model of the options); (4) `unsquashfs -d` of ours matches the source.
//! [`selfcheck`] first proves that these checks do catch differences.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::compare::{diff, summarize, Entry, Kind, View};
use crate::harness::{clean_dir, run, run_ok, show, Ours, Runner};
use crate::tree_gen::{edge_tree, random_tree, Builder, Meta, Scale, SOURCE_DATE_EPOCH};

/// Compressors, block sizes and the switches of the full matrix.
pub const COMPRESSORS: [&str; 3] = ["xz", "zstd", "gzip"];
/// Block sizes of the full matrix, as mksquashfs spells them.
pub const BLOCK_SIZES: [&str; 3] = ["4K", "128K", "1M"];

/// The options of one build, as mksquashfs spells them; the same list goes to
/// ours and to mksquashfs.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `-comp`.
    pub comp: &'static str,
    /// Compressor options (`-Xdict-size 100%` …).
    pub comp_args: Vec<&'static str>,
    /// `-b`.
    pub block: &'static str,
    /// `-all-root`.
    pub all_root: bool,
    /// Off: `-no-fragments`.
    pub fragments: bool,
    /// Off: `-no-duplicates`.
    pub dedup: bool,
    /// Off: `-no-xattrs`.
    pub xattrs: bool,
    /// `-no-exports`.
    pub no_exports: bool,
    /// `-root-mode` (octal).
    pub root_mode: Option<u32>,
    /// `-force-uid`.
    pub force_uid: Option<u32>,
    /// `-force-gid`.
    pub force_gid: Option<u32>,
    /// `-all-time`.
    pub all_time: Option<u32>,
    /// `-mkfs-time`.
    pub mkfs_time: Option<u32>,
    /// `-keep-as-directory`.
    pub keep_as_directory: bool,
    /// `-processors`.
    pub processors: Option<usize>,
    /// `SOURCE_DATE_EPOCH` in the environment (mksquashfs refuses it together with `-all-time`/`-mkfs-time`).
    pub source_date_epoch: Option<u32>,
}

impl Opts {
    /// `comp` at `block` with mksquashfs's defaults and [`SOURCE_DATE_EPOCH`] set.
    pub fn new(comp: &'static str, block: &'static str) -> Opts {
        Opts {
            comp,
            comp_args: Vec::new(),
            block,
            all_root: false,
            fragments: true,
            dedup: true,
            xattrs: true,
            no_exports: false,
            root_mode: None,
            force_uid: None,
            force_gid: None,
            all_time: None,
            mkfs_time: None,
            keep_as_directory: false,
            processors: None,
            source_date_epoch: Some(SOURCE_DATE_EPOCH),
        }
    }

    /// The command-line options after `SOURCE... OUTPUT`.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-noappend", "-quiet", "-no-progress", "-comp", self.comp]
            .map(String::from)
            .to_vec();
        a.extend(self.comp_args.iter().map(|s| s.to_string()));
        a.extend(["-b".to_string(), self.block.to_string()]);
        let flags = [
            (self.all_root, "-all-root"),
            (!self.fragments, "-no-fragments"),
            (!self.dedup, "-no-duplicates"),
            (!self.xattrs, "-no-xattrs"),
            (self.no_exports, "-no-exports"),
            (self.keep_as_directory, "-keep-as-directory"),
        ];
        a.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| f.to_string()),
        );
        let valued = [
            ("-root-mode", self.root_mode.map(|m| format!("{m:o}"))),
            ("-force-uid", self.force_uid.map(|v| v.to_string())),
            ("-force-gid", self.force_gid.map(|v| v.to_string())),
            ("-all-time", self.all_time.map(|v| v.to_string())),
            ("-mkfs-time", self.mkfs_time.map(|v| v.to_string())),
            ("-processors", self.processors.map(|v| v.to_string())),
        ];
        for (flag, value) in valued {
            if let Some(v) = value {
                a.extend([flag.to_string(), v]);
            }
        }
        a
    }

    /// A short name: `xz-128K`, then the switches that differ from the defaults.
    pub fn label(&self) -> String {
        let mut s = format!("{}-{}", self.comp, self.block);
        for (on, name) in [
            (self.all_root, "all-root"),
            (!self.fragments, "no-fragments"),
            (!self.dedup, "no-duplicates"),
        ] {
            if on {
                s.push('-');
                s.push_str(name);
            }
        }
        s
    }

    /// The superblock time the options fix, if they fix one.
    fn expected_mkfs_time(&self) -> Option<u32> {
        self.mkfs_time.or(self.source_date_epoch)
    }
}

/// Runs ours or mksquashfs on `sources` into `out` with `opts`.
pub fn build(
    mut cmd: Command,
    sources: &[&Path],
    out: &Path,
    opts: &Opts,
) -> Result<std::process::Output> {
    cmd.args(sources)
        .arg(out)
        .args(opts.args())
        .env("LC_ALL", "C");
    match opts.source_date_epoch {
        Some(t) => cmd.env("SOURCE_DATE_EPOCH", t.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let started = Instant::now();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", show(&cmd)))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{} failed ({}) after {secs:.1}s:\n{}{}",
            show(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A generated source tree and its snapshot.
#[derive(Debug)]
pub struct Source {
    /// Where it is.
    pub path: PathBuf,
    /// What it holds.
    pub view: View,
}

/// Source trees, generated on first use and kept for the whole run.
#[derive(Debug)]
pub struct Trees {
    dir: PathBuf,
    built: Vec<(String, std::result::Result<Source, String>)>,
}

impl Trees {
    /// Trees under `dir`; each is rebuilt from scratch the first time it is asked for.
    pub fn new(dir: PathBuf) -> Trees {
        Trees {
            dir,
            built: Vec::new(),
        }
    }

    /// Generates the tree `name` (`edge`, `big`, `random-SEED`) unless that was tried before.
    pub fn ensure(&mut self, name: &str) -> Result<()> {
        if !self.built.iter().any(|(n, _)| n == name) {
            let res = self.generate(name).map_err(|e| format!("{e:#}"));
            self.built.push((name.to_string(), res));
        }
        self.get(name).map(drop)
    }

    /// The tree `name`, if [`Trees::ensure`] built it.
    pub fn get(&self, name: &str) -> Result<&Source> {
        match self
            .built
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, res)| res)
        {
            Some(Ok(source)) => Ok(source),
            Some(Err(e)) => bail!("the source tree `{name}` could not be built: {e}"),
            None => bail!("the source tree `{name}` was not generated"),
        }
    }

    fn generate(&self, name: &str) -> Result<Source> {
        let path = self.dir.join(name);
        clean_dir(&path)?;
        fs::remove_dir(&path)?;
        let started = Instant::now();
        match name {
            "edge" => edge_tree(&path, Scale::Small)?,
            "big" => edge_tree(&path, Scale::Big)?,
            _ => {
                let seed: u64 = name
                    .strip_prefix("random-")
                    .and_then(|s| s.parse().ok())
                    .context("unknown tree")?;
                random_tree(&path, seed, 400)?;
            }
        }
        let view = View::snapshot(&path)?;
        println!(
            "  tree {name}: {} paths, built and hashed in {:.1}s",
            view.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(Source { path, view })
    }
}

/// A loop mount (or tmpfs) that is unmounted when dropped, even on panic.
#[derive(Debug)]
pub struct Mount {
    dir: PathBuf,
}

impl Mount {
    /// Mounts the SquashFS image `image` read-only at `dir` (created if needed).
    pub fn squashfs(image: &Path, dir: &Path) -> Result<Mount> {
        fs::create_dir_all(dir)?;
        run_ok(
            Command::new("mount")
                .args(["-t", "squashfs", "-o", "loop,ro"])
                .arg(image)
                .arg(dir),
        )
        .with_context(|| format!("the kernel refused to mount {}", image.display()))?;
        Ok(Mount {
            dir: dir.to_path_buf(),
        })
    }

    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) at `dir`.
    pub fn tmpfs(dir: &Path, size: &str) -> Result<Mount> {
        fs::create_dir_all(dir)?;
        run_ok(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0777"),
                    "tmpfs",
                ])
                .arg(dir),
        )?;
        Ok(Mount {
            dir: dir.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = run(Command::new("umount").arg(&self.dir)).is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!(
                "warning: umount {} failed; detaching it lazily",
                self.dir.display()
            );
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
        }
    }
}

/// What the source tree(s) should look like through a reader of an image
/// built with `opts`: mksquashfs's rules for sources, then the options' policy.
pub fn expected_view(sources: &[(&[u8], &View)], opts: &Opts) -> View {
    let mut view = if let ([(_, single)], false) = (sources, opts.keep_as_directory) {
        (*single).clone()
    } else {
        // Several sources or -keep-as-directory: a new root (0777, root-owned, time
        // SOURCE_DATE_EPOCH) holds each source under its name.
        let mut view = View::default();
        let subdirs = sources
            .iter()
            .filter(|(_, v)| v.entries[&Vec::new()].kind == Kind::Dir)
            .count();
        let root = Entry {
            kind: Kind::Dir,
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: i64::from(
                opts.source_date_epoch
                    .expect("cases with a synthesized root set SOURCE_DATE_EPOCH"),
            ),
            nlink: 2 + subdirs as u64,
            xattrs: Vec::new(),
            links: Vec::new(),
        };
        view.entries.insert(Vec::new(), root);
        for (name, source) in sources {
            source.nested_under(name, &mut view);
        }
        view
    };
    for (path, e) in view.entries.iter_mut() {
        if opts.all_root {
            (e.uid, e.gid) = (0, 0);
        }
        e.uid = opts.force_uid.unwrap_or(e.uid);
        e.gid = opts.force_gid.unwrap_or(e.gid);
        if path.is_empty() {
            e.mode = opts.root_mode.unwrap_or(e.mode);
        }
        if let Some(t) = opts.all_time {
            e.mtime = i64::from(t);
        } else if let Some(t) = opts.source_date_epoch {
            e.mtime = e.mtime.min(i64::from(t));
        }
        if !opts.xattrs {
            e.xattrs.clear();
        }
    }
    view
}

/// The lines of `unsquashfs -s` that any two correct images of the same tree
/// and options share (not the size, the fragment count or the time).
fn superblock_summary(image: &Path) -> Result<Vec<String>> {
    let out = run_ok(Command::new("unsquashfs").arg("-s").arg(image))?;
    let skip = [
        "Found a valid",
        "Creation or last append time",
        "Filesystem size",
        "Number of fragments",
    ];
    Ok(out
        .stdout
        .lines()
        .filter(|l| !skip.iter().any(|s| l.starts_with(s)))
        .map(str::to_string)
        .collect())
}

fn mkfs_time(image: &Path) -> Result<u64> {
    let out = run_ok(Command::new("unsquashfs").arg("-mkfs-time").arg(image))?;
    out.stdout
        .trim()
        .parse()
        .with_context(|| format!("unsquashfs -mkfs-time printed {:?}", out.stdout))
}

/// Superblock checks: the summaries agree and the mkfs time is the one the options fix.
fn check_superblock(reference: &Path, ours: &Path, opts: &Opts) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let (want, got) = (superblock_summary(reference)?, superblock_summary(ours)?);
    if want != got {
        let mut s = "superblock (unsquashfs -s) differs from mksquashfs's:".to_string();
        for line in want.iter().filter(|l| !got.contains(l)) {
            s.push_str(&format!("\n  mksquashfs: {line}"));
        }
        for line in got.iter().filter(|l| !want.contains(l)) {
            s.push_str(&format!("\n  ours:       {line}"));
        }
        problems.push(s);
    }
    if let Some(t) = opts.expected_mkfs_time() {
        for (who, image) in [("ours", ours), ("mksquashfs's", reference)] {
            let got = mkfs_time(image)?;
            if got != u64::from(t) {
                problems.push(format!("mkfs time of {who} image: expected {t}, got {got}"));
            }
        }
    }
    Ok(problems)
}

/// `sqfsdiff -T`: contents, owners, permissions and timestamps. Exit 0 means
/// equal, 1 different, 2 error; it prints a differing symlink target without
/// changing its status, so any output line counts. Lines that only say one side
/// uses the extended form of an inode are layout, not content: reported as notes.
pub fn check_sqfsdiff(reference: &Path, ours: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let out = run(Command::new("sqfsdiff")
        .arg("-T")
        .arg("-a")
        .arg(reference)
        .arg("-b")
        .arg(ours))?;
    let code = out.status.code();
    if code == Some(2) || code.is_none() {
        bail!(
            "sqfsdiff could not compare the images ({}):\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
    let layout = |l: &str| l.ends_with(" has an extended type") || l.ends_with(" has a basic type");
    let (notes, diffs): (Vec<&str>, Vec<&str>) = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| layout(l));
    let mut problems = Vec::new();
    if !diffs.is_empty() {
        let lines: Vec<String> = diffs.iter().map(|s| s.to_string()).collect();
        problems.push(summarize(
            "sqfsdiff -T (mksquashfs's image vs ours)",
            &lines,
            30,
        ));
    } else if code != Some(0) && notes.is_empty() {
        problems.push(format!(
            "sqfsdiff exited {} without saying why:\n{}",
            out.status, out.stderr
        ));
    }
    Ok((problems, notes.into_iter().map(str::to_string).collect()))
}

/// One oracle case: everything the module doc lists, for `sources` built with `opts`.
pub fn check_case(
    ours: &Ours,
    case_dir: &Path,
    sources: &[(&[u8], &Source)],
    opts: &Opts,
) -> Result<()> {
    clean_dir(case_dir)?;
    let (ours_img, ref_img) = (case_dir.join("ours.sqfs"), case_dir.join("mksquashfs.sqfs"));
    let paths: Vec<&Path> = sources.iter().map(|(_, s)| s.path.as_path()).collect();
    let t = Instant::now();
    build(ours.command(), &paths, &ours_img, opts).context("building our image")?;
    let t_ours = t.elapsed().as_secs_f64();
    let t = Instant::now();
    build(Command::new("mksquashfs"), &paths, &ref_img, opts)
        .context("building the reference image with mksquashfs")?;
    let t_ref = t.elapsed().as_secs_f64();
    let t = Instant::now();

    // Each check adds what it finds; one that cannot run (the kernel refuses
    // the image, unsquashfs fails) is a problem too, and the others still run.
    let mut problems = Vec::new();
    let mut check = |res: Result<Vec<String>>| match res {
        Ok(found) => problems.extend(found),
        Err(e) => problems.push(format!("{e:#}")),
    };
    check(check_superblock(&ref_img, &ours_img, opts));
    check(check_sqfsdiff(&ref_img, &ours_img).map(|(found, notes)| {
        if let Some(first) = notes.first() {
            println!(
                "  note: sqfsdiff: {} inode(s) differ from mksquashfs's only in basic/extended form, e.g. {first}",
                notes.len()
            );
        }
        found
    }));
    let views: Vec<(&[u8], &View)> = sources.iter().map(|(n, s)| (*n, &s.view)).collect();
    let expected = expected_view(&views, opts);
    check(check_mounts(&ours_img, &ref_img, case_dir, &expected));
    check(check_unsquashfs(
        &ours_img,
        &case_dir.join("unsquashfs"),
        &expected,
    ));
    println!(
        "  ours {t_ours:.1}s, mksquashfs {t_ref:.1}s, checks {:.1}s",
        t.elapsed().as_secs_f64()
    );
    ensure!(
        problems.is_empty(),
        "{}\n(images and extraction kept in {})",
        problems.join("\n"),
        case_dir.display()
    );
    Ok(())
}

/// The kernel mounts of both images against the expectation and each other.
fn check_mounts(
    ours_img: &Path,
    ref_img: &Path,
    case_dir: &Path,
    expected: &View,
) -> Result<Vec<String>> {
    let m_ours = Mount::squashfs(ours_img, &case_dir.join("mnt-ours"))?;
    let m_ref = Mount::squashfs(ref_img, &case_dir.join("mnt-mksquashfs"))?;
    let v_ours = View::snapshot(m_ours.dir()).context("reading the kernel mount of our image")?;
    let v_ref =
        View::snapshot(m_ref.dir()).context("reading the kernel mount of mksquashfs's image")?;
    let checks = [
        (
            "kernel mount of our image vs the source tree",
            expected,
            &v_ours,
        ),
        (
            "kernel mount of our image vs kernel mount of mksquashfs's",
            &v_ref,
            &v_ours,
        ),
        (
            "harness model: kernel mount of mksquashfs's image vs the source tree",
            expected,
            &v_ref,
        ),
    ];
    Ok(checks
        .into_iter()
        .filter_map(|(title, want, got)| {
            let d = diff(want, got);
            (!d.is_empty()).then(|| summarize(title, &d, 30))
        })
        .collect())
}

/// `unsquashfs -d` of our image against the expectation (as root it restores
/// owners, xattrs, devices, fifos, sockets and hard links).
fn check_unsquashfs(ours_img: &Path, dest: &Path, expected: &View) -> Result<Vec<String>> {
    let out = run(Command::new("unsquashfs")
        .args(["-no-progress", "-quiet", "-d"])
        .arg(dest)
        .arg(ours_img))?;
    if !out.status.success() {
        bail!(
            "unsquashfs -d failed on our image ({}):\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
    let d = diff(expected, &View::snapshot(dest)?);
    Ok(if d.is_empty() {
        Vec::new()
    } else {
        vec![summarize(
            "unsquashfs -d of our image vs the source tree",
            &d,
            30,
        )]
    })
}

/// The whole-matrix option sets: every compressor × block size × all-root ×
/// fragments × duplicates (72), or with `quick` four that still touch each value.
pub fn matrix(quick: bool) -> Vec<Opts> {
    let mut out = Vec::new();
    for comp in COMPRESSORS {
        for block in BLOCK_SIZES {
            for bits in 0..8u8 {
                let mut o = Opts::new(comp, block);
                (o.all_root, o.fragments, o.dedup) = (bits & 1 != 0, bits & 2 == 0, bits & 4 == 0);
                out.push(o);
            }
        }
    }
    if quick {
        let keep = [
            "xz-128K",
            "zstd-4K-all-root-no-fragments",
            "gzip-1M-no-duplicates",
            "xz-1M-all-root-no-fragments-no-duplicates",
        ];
        out.retain(|o| keep.contains(&o.label().as_str()));
    }
    out
}

/// A case beyond the matrix: (name, the trees with the name each gets in the image, options).
type ExtraCase = (String, Vec<(&'static str, &'static [u8])>, Opts);

/// Cases beyond the matrix: other options, other sources, random and big trees.
fn extra_cases(quick: bool) -> Vec<ExtraCase> {
    let edge: Vec<(&str, &[u8])> = vec![("edge", b"edge")];
    let mut cases = Vec::new();
    let mut o = Opts::new("zstd", "128K");
    (o.comp_args, o.root_mode, o.force_uid, o.force_gid) = (
        vec!["-Xcompression-level", "19"],
        Some(0o700),
        Some(4242),
        Some(3_000_000_001),
    );
    cases.push((
        "edge/zstd-128K-level-19-root-mode-700-force-uid-gid".to_string(),
        edge.clone(),
        o,
    ));
    let mut o = Opts::new("gzip", "128K");
    (o.comp_args, o.all_time, o.mkfs_time, o.source_date_epoch) = (
        vec!["-Xcompression-level", "1"],
        Some(1_234_567_890),
        Some(1000),
        None,
    );
    cases.push((
        "edge/gzip-128K-level-1-all-time-mkfs-time".to_string(),
        edge.clone(),
        o,
    ));
    let mut o = Opts::new("xz", "4K");
    (o.xattrs, o.no_exports) = (false, true);
    cases.push((
        "edge/xz-4K-no-xattrs-no-exports".to_string(),
        edge.clone(),
        o,
    ));
    let mut o = Opts::new("xz", "1M");
    (o.comp_args, o.source_date_epoch) = (vec!["-Xdict-size", "100%", "-Xbcj", "x86"], None);
    cases.push((
        "edge/xz-1M-dict-100-bcj-x86-no-source-date-epoch".to_string(),
        edge.clone(),
        o,
    ));
    let mut o = Opts::new("zstd", "1M");
    o.keep_as_directory = true;
    cases.push(("edge/zstd-1M-keep-as-directory".to_string(), edge, o));
    cases.push((
        "random-1/zstd-4K".to_string(),
        vec![("random-1", b"random-1")],
        Opts::new("zstd", "4K"),
    ));
    if quick {
        return cases;
    }
    cases.push((
        "multi/gzip-128K-several-sources".to_string(),
        vec![("random-2", b"random-2"), ("edge", b"edge")],
        Opts::new("gzip", "128K"),
    ));
    let mut o = Opts::new("xz", "128K");
    (o.all_root, o.fragments) = (true, false);
    cases.push((
        "random-2/xz-128K-all-root-no-fragments".to_string(),
        vec![("random-2", b"random-2")],
        o,
    ));
    let mut o = Opts::new("gzip", "1M");
    (o.dedup, o.source_date_epoch) = (false, None);
    cases.push((
        "random-3/gzip-1M-no-duplicates-no-source-date-epoch".to_string(),
        vec![("random-3", b"random-3")],
        o,
    ));
    let mut o = Opts::new("xz", "1M");
    o.comp_args = vec!["-Xdict-size", "100%"];
    cases.push(("big/xz-1M-dict-100".to_string(), vec![("big", b"big")], o));
    let mut o = Opts::new("zstd", "128K");
    (o.all_root, o.dedup) = (true, false);
    cases.push((
        "big/zstd-128K-all-root-no-duplicates".to_string(),
        vec![("big", b"big")],
        o,
    ));
    cases
}

/// Runs the self-check, the matrix on the edge tree, and the extra cases.
pub fn run_suite(runner: &mut Runner, ours: &Ours, trees: &mut Trees, work: &Path) {
    let dir = work.join("oracle");
    if let Err(e) = clean_dir(&dir) {
        runner.fail("oracle", &format!("{e:#}"));
        return;
    }
    runner.case("oracle/selfcheck", || selfcheck(&dir.join("selfcheck")));
    for opts in matrix(runner.quick) {
        let name = format!("oracle/edge/{}", opts.label());
        let case_dir = dir.join(name.trim_start_matches("oracle/").replace('/', "-"));
        runner.case(&name, || {
            trees.ensure("edge")?;
            let edge = trees.get("edge")?;
            check_case(ours, &case_dir, &[(b"edge", edge)], &opts)?;
            fs::remove_dir_all(&case_dir).context("cleaning up")
        });
    }
    for (name, tree_names, opts) in extra_cases(runner.quick) {
        let name = format!("oracle/{name}");
        let case_dir = dir.join(name.trim_start_matches("oracle/").replace('/', "-"));
        runner.case(&name, || {
            for (tree, _) in &tree_names {
                trees.ensure(tree)?;
            }
            let sources = tree_names
                .iter()
                .map(|(tree, as_name)| Ok((*as_name, trees.get(tree)?)))
                .collect::<Result<Vec<_>>>()?;
            check_case(ours, &case_dir, &sources, &opts)?;
            fs::remove_dir_all(&case_dir).context("cleaning up")
        });
    }
}

/// Proves the checks can fail: for each kind of difference, two tiny trees
/// that differ only in it are built with mksquashfs, and the kernel-mount
/// comparison (and sqfsdiff, where it looks at that field) must report it.
fn selfcheck(dir: &Path) -> Result<()> {
    // (what differs, word the comparison must print, whether sqfsdiff sees it)
    const MUTATIONS: [(&str, &str, bool); 10] = [
        ("last byte of a file", "contents differ", true),
        ("size of a file", "size", true),
        ("mtime", "mtime", true),
        ("owner", "owner", true),
        ("permissions", "mode", true),
        ("xattr value", "xattrs", false),
        ("symlink target", "symlink target", true),
        ("device number", "device number", true),
        ("hard link becomes a copy", "hard links", false),
        ("an extra file", "unexpected", true),
    ];
    clean_dir(dir)?;
    let image = |i: Option<usize>| -> Result<PathBuf> {
        let name = i.map_or("base".to_string(), |i| format!("m{i}"));
        let tree = dir.join(&name);
        tiny_tree(&tree, i)?;
        let img = dir.join(format!("{name}.sqfs"));
        let mut opts = Opts::new("gzip", "4K");
        opts.source_date_epoch = None;
        build(Command::new("mksquashfs"), &[&tree], &img, &opts)?;
        Ok(img)
    };
    let base = image(None)?;
    let m_base = Mount::squashfs(&base, &dir.join("mnt-base"))?;
    let v_base = View::snapshot(m_base.dir())?;
    let (same, _) = check_sqfsdiff(&base, &base)?;
    ensure!(
        same.is_empty(),
        "sqfsdiff finds differences between an image and itself: {same:?}"
    );
    let mut failures = Vec::new();
    for (i, (what, word, sqfsdiff_sees)) in MUTATIONS.iter().enumerate() {
        let img = image(Some(i))?;
        let m = Mount::squashfs(&img, &dir.join(format!("mnt-m{i}")))?;
        let d = diff(&v_base, &View::snapshot(m.dir())?);
        if !d.iter().any(|l| l.contains(word)) {
            failures.push(format!(
                "{what}: the comparison did not report `{word}` (it said {d:?})"
            ));
        }
        let (found, _) = check_sqfsdiff(&base, &img)?;
        if *sqfsdiff_sees && found.is_empty() {
            failures.push(format!("{what}: sqfsdiff check found no difference"));
        }
    }
    ensure!(
        failures.is_empty(),
        "the oracles miss differences:\n  {}",
        failures.join("\n  ")
    );
    drop(m_base);
    fs::remove_dir_all(dir).context("cleaning up")
}

/// The self-check's tiny tree, with mutation `m` (an index into its table) applied.
fn tiny_tree(root: &Path, m: Option<usize>) -> Result<()> {
    let is = |i| m == Some(i);
    let mut b = Builder::create(root, Meta::new(0o755, 0, 0, 1_000_000_000))?;
    let content: &[u8] = if is(0) {
        b"hello worle"
    } else if is(1) {
        b"hello world!"
    } else {
        b"hello world"
    };
    let mtime = if is(2) { 1_000_000_001 } else { 1_000_000_000 };
    let owner = if is(3) { 1001 } else { 1000 };
    let mode = if is(4) { 0o640 } else { 0o644 };
    b.file(b"file", content, Meta::new(mode, owner, owner, mtime))?;
    b.xattr(b"file", "user.v", if is(5) { b"2" } else { b"1" })?;
    b.symlink(
        b"link",
        if is(6) { b"tarGet" } else { b"target" },
        Meta::new(0o777, 0, 0, 1_000_000_000),
    )?;
    b.device(
        b"dev",
        'c',
        1,
        if is(7) { 4 } else { 3 },
        Meta::new(0o600, 0, 0, 1_000_000_000),
    )?;
    b.file(b"a", b"linked", Meta::new(0o644, 0, 0, 1_000_000_000))?;
    if is(8) {
        b.file(b"b", b"linked", Meta::new(0o644, 0, 0, 1_000_000_000))?;
    } else {
        b.hard_link(b"a", b"b")?;
    }
    if is(9) {
        b.file(b"extra", b"", Meta::new(0o644, 0, 0, 1_000_000_000))?;
    }
    b.finish()
}
