//! Source trees for the suites: the hand-written edge-case tree and seeded random trees.
//!
//! Every byte, name, owner and time comes from fixed seeds, so a failing case
//! reproduces. Trees are built with std plus the coreutils/attr commands the
//! brief allows (`mknod`, `mkfifo`, `setfattr`, `touch`); sockets come from
//! `UnixListener::bind`. Building needs root (owners, devices, `trusted.*`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, Permissions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};

use crate::harness::run_ok;

/// `SOURCE_DATE_EPOCH` for the suites: newer mtimes of the trees below are clamped to it.
pub const SOURCE_DATE_EPOCH: u32 = 1_400_000_000;

/// Mtimes the trees use: both sides of [`SOURCE_DATE_EPOCH`], and the extremes of a u32.
pub const MTIMES: [u32; 9] = [
    0,
    1,
    1_000_000_000,
    SOURCE_DATE_EPOCH - 1,
    SOURCE_DATE_EPOCH,
    SOURCE_DATE_EPOCH + 1,
    1_700_000_000,
    2_147_483_648,
    u32::MAX,
];

/// How much the edge-case tree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Every edge case except the expensive ones; used by the whole option matrix.
    Small,
    /// Adds a sparse file larger than 4 GiB, a directory of thousands of entries
    /// and a larger incompressible file.
    Big,
}

/// A small, fast, seeded PRNG (splitmix64); good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` %.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `len` incompressible bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// `len` bytes of text-like data: compresses, but not to nothing.
    pub fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&[u8]; 16] = [
            b"squash",
            b"block",
            b"fragment",
            b"inode",
            b"the",
            b"of",
            b"portable",
            b"service",
            b"kernel",
            b"mount",
            b"xattr",
            b"0123456789",
            b"zstd",
            b"gzip",
            b"xz",
            b"nix",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            let word = *self.pick(&WORDS);
            out.extend_from_slice(word);
            out.push(if self.chance(10) { b'\n' } else { b' ' });
            if self.chance(20) {
                out.extend_from_slice(format!("{}", self.below(100_000)).as_bytes());
            }
        }
        out.truncate(len);
        out
    }
}

/// Owner, permissions and mtime of a node being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`& 0o7777`); ignored for symlinks.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
}

impl Meta {
    /// Shorthand constructor.
    pub const fn new(mode: u32, uid: u32, gid: u32, mtime: u32) -> Meta {
        Meta {
            mode,
            uid,
            gid,
            mtime,
        }
    }
}

/// Builds a tree on disk; [`Builder::finish`] sets the mtimes last, once
/// nothing will be created inside the directories any more.
#[derive(Debug)]
pub struct Builder {
    root: PathBuf,
    /// (path, mtime, set with `touch -h` rather than through a file handle).
    times: Vec<(PathBuf, u32, bool)>,
}

impl Builder {
    /// Starts a tree at `root` (which must not exist yet), with `meta` for the root directory.
    pub fn create(root: &Path, meta: Meta) -> Result<Builder> {
        ensure!(!root.exists(), "{} already exists", root.display());
        if let Some(parent) = root.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::create_dir(root).with_context(|| format!("creating {}", root.display()))?;
        let mut b = Builder {
            root: root.to_path_buf(),
            times: Vec::new(),
        };
        b.apply(root.to_path_buf(), meta, true, false)?;
        Ok(b)
    }

    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    fn apply(&mut self, path: PathBuf, meta: Meta, chmod: bool, special: bool) -> Result<()> {
        lchown(&path, Some(meta.uid), Some(meta.gid))
            .with_context(|| format!("chown {}", path.display()))?;
        // After chown: chown clears setuid and setgid.
        if chmod {
            fs::set_permissions(&path, Permissions::from_mode(meta.mode))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        self.times.push((path, meta.mtime, special));
        Ok(())
    }

    /// A directory.
    pub fn dir(&mut self, rel: &[u8], meta: Meta) -> Result<()> {
        let p = self.path(rel);
        fs::create_dir(&p).with_context(|| format!("mkdir {}", p.display()))?;
        self.apply(p, meta, true, false)
    }

    /// A regular file holding `data`.
    pub fn file(&mut self, rel: &[u8], data: &[u8], meta: Meta) -> Result<()> {
        let p = self.path(rel);
        fs::write(&p, data).with_context(|| format!("writing {}", p.display()))?;
        self.apply(p, meta, true, false)
    }

    /// A sparse file of `len` bytes: holes except for `chunks` (offset, bytes).
    pub fn sparse(
        &mut self,
        rel: &[u8],
        len: u64,
        chunks: &[(u64, &[u8])],
        meta: Meta,
    ) -> Result<()> {
        let p = self.path(rel);
        let mut f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
        f.set_len(len)?;
        for (offset, bytes) in chunks {
            f.seek(SeekFrom::Start(*offset))?;
            f.write_all(bytes)?;
        }
        ensure!(
            f.metadata()?.len() == len,
            "{}: chunks reach past its length",
            p.display()
        );
        drop(f);
        self.apply(p, meta, true, false)
    }

    /// A symlink to `target` (mode bits do not apply).
    pub fn symlink(&mut self, rel: &[u8], target: &[u8], meta: Meta) -> Result<()> {
        let p = self.path(rel);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &p)
            .with_context(|| format!("symlink {}", p.display()))?;
        self.apply(p, meta, false, true)
    }

    /// A named pipe.
    pub fn fifo(&mut self, rel: &[u8], meta: Meta) -> Result<()> {
        let p = self.path(rel);
        run_ok(Command::new("mkfifo").arg("--").arg(&p))?;
        self.apply(p, meta, true, true)
    }

    /// A Unix socket (the listener is closed at once; the inode stays).
    pub fn socket(&mut self, rel: &[u8], meta: Meta) -> Result<()> {
        let p = self.path(rel);
        drop(
            UnixListener::bind(&p)
                .with_context(|| format!("binding a socket at {}", p.display()))?,
        );
        self.apply(p, meta, true, true)
    }

    /// A character (`'c'`) or block (`'b'`) device.
    pub fn device(
        &mut self,
        rel: &[u8],
        kind: char,
        major: u32,
        minor: u32,
        meta: Meta,
    ) -> Result<()> {
        let p = self.path(rel);
        run_ok(
            Command::new("mknod")
                .arg("--")
                .arg(&p)
                .arg(kind.to_string())
                .arg(major.to_string())
                .arg(minor.to_string()),
        )?;
        self.apply(p, meta, true, true)
    }

    /// Another name `new` for the existing non-directory `existing`.
    pub fn hard_link(&mut self, existing: &[u8], new: &[u8]) -> Result<()> {
        let (from, to) = (self.path(existing), self.path(new));
        fs::hard_link(&from, &to).with_context(|| format!("ln {} {}", from.display(), to.display()))
    }

    /// Sets the extended attribute `name` (with its namespace prefix) without following symlinks.
    pub fn xattr(&mut self, rel: &[u8], name: &str, value: &[u8]) -> Result<()> {
        let p = self.path(rel);
        let mut cmd = Command::new("setfattr");
        cmd.args(["-h", "-n", name]);
        if !value.is_empty() {
            cmd.arg("-v").arg(format!("0x{}", hex(value)));
        }
        run_ok(cmd.arg("--").arg(&p)).map(drop)
    }

    /// Sets every recorded mtime. Creating entries changes their directory's
    /// mtime, so this runs after everything exists.
    pub fn finish(self) -> Result<()> {
        let mut by_time: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
        for (path, mtime, special) in self.times {
            if special {
                by_time.entry(mtime).or_default().push(path);
                continue;
            }
            let time = UNIX_EPOCH + Duration::from_secs(u64::from(mtime));
            let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            f.set_times(FileTimes::new().set_modified(time).set_accessed(time))
                .with_context(|| format!("setting the mtime of {}", path.display()))?;
        }
        for (mtime, paths) in by_time {
            for chunk in paths.chunks(200) {
                run_ok(
                    Command::new("touch")
                        .arg("-h")
                        .arg("-d")
                        .arg(format!("@{mtime}"))
                        .arg("--")
                        .args(chunk),
                )?;
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Owners used across the trees (uid, gid), including ids above 2^31.
const OWNERS: [(u32, u32); 6] = [
    (0, 0),
    (1000, 1000),
    (65534, 65534),
    (12345, 54321),
    (0, 1000),
    (3_000_000_000, 4_000_000_000),
];

/// Builds the edge-case tree of the issue at `root`.
///
/// Names with spaces, newlines, non-UTF-8 bytes and 255 bytes; sizes 0, 1 and
/// around every block boundary; incompressible, all-zero and sparse data;
/// hard links; dangling, absolute and 4000-byte symlinks; fifo, socket, char
/// and block devices; setuid, setgid, sticky, mode 000; several owners;
/// `user.`, `trusted.` and `security.` xattrs; a big directory; identical
/// files, files sharing a prefix, files differing in the last byte.
pub fn edge_tree(root: &Path, scale: Scale) -> Result<()> {
    let mut rng = Rng::new(0x5eed_0001);
    let mut times = MTIMES.iter().copied().cycle();
    let mut t = move || times.next().expect("cycle never ends");
    let d = |mtime| Meta::new(0o755, 0, 0, mtime);
    let f = |mtime| Meta::new(0o644, 0, 0, mtime);

    let mut b = Builder::create(root, Meta::new(0o755, 0, 0, 1_300_000_000))?;
    b.xattr(b"", "user.root-attr", b"on the root")?;

    // Names.
    b.dir(b"names", d(t()))?;
    let long_dir = [b"names/".as_slice(), &[b'd'; 255]].concat();
    let names: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b" leading and trailing ".to_vec(),
        b"new\nline".to_vec(),
        b"tab\there".to_vec(),
        b"non-utf8-\xff\xfe\x80".to_vec(),
        b"latin1-caf\xe9".to_vec(),
        "ünïcödé-名前-😀".as_bytes().to_vec(),
        b"\x01\x1f control".to_vec(),
        b"-starts-with-dash".to_vec(),
        b"*glob?[x]{a,b}".to_vec(),
        b"back\\slash".to_vec(),
        b"quote\"'`$(x)".to_vec(),
        b".hidden".to_vec(),
        b"...".to_vec(),
        b"colon:semicolon;".to_vec(),
        vec![b'n'; 255],
        [vec![b'u'; 251], "é".as_bytes().to_vec(), b"xx".to_vec()].concat(),
    ];
    for name in &names {
        let rel = [b"names/".as_slice(), name].concat();
        let len = rng.below(300) as usize;
        let data = rng.text(len);
        b.file(&rel, &data, f(t()))?;
    }
    b.dir(&long_dir, d(t()))?;
    b.file(
        &[long_dir.as_slice(), b"/", &[b'f'; 255]].concat(),
        b"deep long name\n",
        f(t()),
    )?;

    // Sizes around every block boundary, text-like contents.
    b.dir(b"sizes", d(t()))?;
    b.file(b"sizes/0-empty", b"", f(t()))?;
    b.file(b"sizes/1-byte", b"x", f(t()))?;
    for (block, multiples) in [
        (4096u64, &[1u64, 2, 3][..]),
        (131_072, &[1, 2]),
        (1_048_576, &[1]),
    ] {
        for m in multiples {
            for delta in [-1i64, 0, 1] {
                let size = (block * m)
                    .checked_add_signed(delta)
                    .expect("sizes are positive");
                let name = format!("sizes/b{block}x{m}{delta:+}");
                b.file(name.as_bytes(), &rng.text(size as usize), f(t()))?;
            }
        }
    }

    // Data: incompressible, all-zero, sparse.
    b.dir(b"data", d(t()))?;
    b.file(b"data/random-1M+5", &rng.bytes(1_048_581), f(t()))?;
    b.file(b"data/random-200K", &rng.bytes(200_000), f(t()))?;
    b.file(b"data/random-3", &rng.bytes(3), f(t()))?;
    for (name, len) in [
        ("zeros-1M", 1_048_576),
        ("zeros-128K+1", 131_073),
        ("zeros-4K", 4096),
        ("zeros-3", 3),
    ] {
        b.file(format!("data/{name}").as_bytes(), &vec![0; len], f(t()))?;
    }
    let chunk = rng.bytes(10_000);
    b.sparse(
        b"data/sparse-3M",
        3 << 20,
        &[
            (0, &chunk),
            (1_500_000, &chunk),
            ((3 << 20) - 100, &chunk[..100]),
        ],
        f(t()),
    )?;
    b.sparse(
        b"data/sparse-hole-at-end",
        2_500_000,
        &[(0, &chunk[..5000])],
        f(t()),
    )?;
    b.sparse(b"data/sparse-all-hole", 1_200_000, &[], f(t()))?;
    // 3073 blocks at 4K: a block list longer than one 8 KiB metadata block.
    let offsets = [
        (0, &chunk[..]),
        (5_000_000, &chunk[..]),
        ((12 << 20) - 3, &chunk[..4]),
    ];
    b.sparse(
        b"data/sparse-12M-long-block-list",
        (12 << 20) + 1,
        &offsets,
        f(t()),
    )?;
    let mostly_zero = [vec![0u8; 300_000], b"tail".to_vec()].concat();
    b.file(b"data/zero-blocks-then-tail", &mostly_zero, f(t()))?;

    // Dedup: identical files, shared prefixes, a differing last byte, shared tails.
    b.dir(b"dedup", d(t()))?;
    b.dir(b"dedup/sub", d(t()))?;
    let same = rng.text(150_000);
    for name in ["dedup/same-a", "dedup/same-b", "dedup/sub/same-c"] {
        b.file(name.as_bytes(), &same, f(t()))?;
    }
    let prefix = rng.bytes(131_072);
    let prefix_a = [prefix.as_slice(), &rng.bytes(131_072)].concat();
    let prefix_b = [prefix.as_slice(), &rng.bytes(262_144)].concat();
    b.file(b"dedup/prefix-256K", &prefix_a, f(t()))?;
    b.file(b"dedup/prefix-384K", &prefix_b, f(t()))?;
    b.file(
        b"dedup/prefix-4K-same-size-a",
        &[&prefix[..4096], &rng.bytes(4096)].concat(),
        f(t()),
    )?;
    b.file(
        b"dedup/prefix-4K-same-size-b",
        &[&prefix[..4096], &rng.bytes(4096)].concat(),
        f(t()),
    )?;
    let mut last = rng.text(200_000);
    b.file(b"dedup/last-byte-a", &last, f(t()))?;
    *last.last_mut().expect("not empty") ^= 1;
    b.file(b"dedup/last-byte-b", &last, f(t()))?;
    let mut small = rng.text(100);
    b.file(b"dedup/small-same-1", &small, f(t()))?;
    b.file(b"dedup/small-same-2", &small, f(t()))?;
    *small.last_mut().expect("not empty") ^= 1;
    b.file(b"dedup/small-last-byte", &small, f(t()))?;
    let tail = rng.text(777);
    for name in ["dedup/tail-same-a", "dedup/tail-same-b"] {
        b.file(
            name.as_bytes(),
            &[rng.bytes(131_072).as_slice(), &tail].concat(),
            f(t()),
        )?;
    }
    b.file(b"dedup/empty-a", b"", f(t()))?;
    b.file(b"dedup/empty-b", b"", f(t()))?;
    b.file(
        b"dedup/same-meta-differs",
        &same,
        Meta::new(0o600, 1000, 1000, 1_100_000_000),
    )?;

    // Hard links (regular files, an empty file, a fifo and a device; not symlinks,
    // which mksquashfs 4.5.1 stores as separate inodes).
    b.dir(b"links", d(t()))?;
    b.dir(b"links/sub", d(t()))?;
    b.file(
        b"links/target",
        &rng.text(5000),
        Meta::new(0o640, 1000, 100, t()),
    )?;
    b.hard_link(b"links/target", b"links/link-1")?;
    b.hard_link(b"links/target", b"links/sub/link-2")?;
    b.hard_link(b"links/target", b"hardlink-at-root")?;
    b.file(b"links/big-target", &rng.text(300_000), f(t()))?;
    b.hard_link(b"links/big-target", b"links/sub/big-link")?;
    b.file(b"links/empty", b"", f(t()))?;
    b.hard_link(b"links/empty", b"links/empty-link")?;
    b.fifo(b"links/fifo", Meta::new(0o600, 0, 0, t()))?;
    b.hard_link(b"links/fifo", b"links/fifo-link")?;
    b.device(b"links/null", 'c', 1, 3, Meta::new(0o666, 0, 0, t()))?;
    b.hard_link(b"links/null", b"links/sub/null-link")?;
    b.xattr(b"links/target", "user.linked", b"shared by all names")?;

    // Symlinks.
    b.dir(b"symlinks", d(t()))?;
    let long_target: Vec<u8> = (0..1000)
        .flat_map(|i| format!("{:03}/", i % 1000).into_bytes())
        .take(4000)
        .collect();
    let symlinks: [(&[u8], &[u8]); 11] = [
        (b"relative", b"../links/target"),
        (b"dangling", b"does/not/exist"),
        (b"absolute", b"/etc/passwd"),
        (b"absolute-dangling", b"/nonexistent/path/x"),
        (b"long-4000", &long_target),
        (b"dot", b"."),
        (b"to-dir", b"../data"),
        (b"utf8", "ünï/名前".as_bytes()),
        (b"non-utf8", b"\xff\xfe/x"),
        (b"with space", b"names/with space"),
        (b"loop", b"loop"),
    ];
    for (name, target) in symlinks {
        let rel = [b"symlinks/".as_slice(), name].concat();
        b.symlink(&rel, target, Meta::new(0o777, 0, 0, t()))?;
    }
    b.symlink(
        b"symlinks/owned",
        b"target",
        Meta::new(0o777, 1001, 1002, t()),
    )?;

    // Special files.
    b.dir(b"special", d(t()))?;
    b.fifo(b"special/fifo", Meta::new(0o644, 0, 0, t()))?;
    b.socket(b"special/socket", Meta::new(0o755, 0, 0, t()))?;
    b.device(b"special/null", 'c', 1, 3, Meta::new(0o666, 0, 0, t()))?;
    b.device(
        b"special/big-minor",
        'c',
        240,
        300,
        Meta::new(0o600, 0, 6, t()),
    )?;
    b.device(
        b"special/max-numbers",
        'c',
        4095,
        1_048_575,
        Meta::new(0o600, 0, 0, t()),
    )?;
    b.device(b"special/loop", 'b', 7, 200, Meta::new(0o660, 0, 6, t()))?;
    b.device(
        b"special/blk-big",
        'b',
        259,
        65_537,
        Meta::new(0o640, 0, 0, t()),
    )?;
    b.fifo(b"special/fifo-owned", Meta::new(0o620, 2000, 2001, t()))?;

    // Permission bits.
    b.dir(b"perms", d(t()))?;
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("setuid-setgid", 0o6711),
        ("sticky-file", 0o1644),
        ("all-bits", 0o7777),
        ("mode-000", 0o000),
        ("mode-777", 0o777),
        ("exec-only", 0o111),
        ("write-only", 0o200),
    ] {
        b.file(
            format!("perms/{name}").as_bytes(),
            name.as_bytes(),
            Meta::new(mode, 0, 0, t()),
        )?;
    }
    b.dir(b"perms/sticky-dir", Meta::new(0o1777, 0, 0, t()))?;
    b.dir(b"perms/setgid-dir", Meta::new(0o2775, 0, 50, t()))?;
    b.dir(b"perms/dir-000", Meta::new(0o000, 0, 0, t()))?;
    b.file(b"perms/dir-000/inside", b"can you see me\n", f(t()))?;
    b.dir(b"perms/dir-700-owned", Meta::new(0o700, 1000, 1000, t()))?;
    b.file(
        b"perms/dir-700-owned/inside",
        b"private\n",
        Meta::new(0o600, 1000, 1000, t()),
    )?;

    // Owners.
    b.dir(b"owners", Meta::new(0o755, 1000, 100, t()))?;
    for (uid, gid) in OWNERS {
        let name = format!("owners/u{uid}-g{gid}");
        b.file(
            name.as_bytes(),
            name.as_bytes(),
            Meta::new(0o644, uid, gid, t()),
        )?;
    }

    // Extended attributes.
    b.dir(b"xattrs", d(t()))?;
    b.xattr(b"xattrs", "user.on-a-dir", b"dir value")?;
    b.file(b"xattrs/user", b"u", f(t()))?;
    b.xattr(b"xattrs/user", "user.comment", b"hello world")?;
    b.xattr(b"xattrs/user", "user.empty", b"")?;
    b.xattr(
        b"xattrs/user",
        "user.binary",
        &[0, 1, 2, 0xff, 0xfe, b'\n', 0],
    )?;
    b.xattr(b"xattrs/user", "user.big", &rng.text(3000))?;
    b.file(b"xattrs/trusted", b"t", f(t()))?;
    b.xattr(b"xattrs/trusted", "trusted.mkportable.opaque", b"y")?;
    b.xattr(b"xattrs/trusted", "trusted.shared-value", b"hello world")?;
    b.file(b"xattrs/security", b"s", f(t()))?;
    b.xattr(b"xattrs/security", "security.mkportable-test", b"label")?;
    b.file(b"xattrs/mixed", b"m", Meta::new(0o4755, 1000, 1000, t()))?;
    b.xattr(b"xattrs/mixed", "user.a", b"1")?;
    b.xattr(b"xattrs/mixed", "trusted.b", b"2")?;
    b.xattr(b"xattrs/mixed", "security.c", b"3")?;
    for name in ["xattrs/same-set-a", "xattrs/same-set-b"] {
        b.file(name.as_bytes(), name.as_bytes(), f(t()))?;
        b.xattr(name.as_bytes(), "user.set", b"identical")?;
        b.xattr(name.as_bytes(), "trusted.set", b"identical too")?;
    }
    b.file(b"xattrs/many", b"many", f(t()))?;
    for i in 0..40 {
        b.xattr(
            b"xattrs/many",
            &format!("user.attr-{i:02}"),
            format!("value {i}").as_bytes(),
        )?;
    }
    b.symlink(b"xattrs/symlink", b"user", Meta::new(0o777, 0, 0, t()))?;
    b.xattr(b"xattrs/symlink", "trusted.on-symlink", b"yes")?;
    b.fifo(b"xattrs/fifo", Meta::new(0o644, 0, 0, t()))?;
    b.xattr(b"xattrs/fifo", "trusted.on-fifo", b"yes")?;
    b.file(b"xattrs/big-file-with-xattr", &rng.text(140_000), f(t()))?;
    b.xattr(
        b"xattrs/big-file-with-xattr",
        "user.x",
        b"extended file inode",
    )?;

    // Directories: empty, deep, and one with many entries.
    b.dir(b"empty-dir", Meta::new(0o700, 1000, 1000, t()))?;
    let mut deep = b"deep".to_vec();
    b.dir(&deep, d(t()))?;
    for i in 0..40 {
        deep.extend_from_slice(format!("/level-{i}").as_bytes());
        b.dir(&deep, d(t()))?;
    }
    b.file(&[deep.as_slice(), b"/bottom"].concat(), b"bottom\n", f(t()))?;
    many_entries(&mut b, &mut rng, b"many", 600)?;

    if scale == Scale::Big {
        big_extras(&mut b, &mut rng)?;
    }
    b.finish()
}

/// A directory of `n` entries with names long enough to need several metadata blocks.
fn many_entries(b: &mut Builder, rng: &mut Rng, dir: &[u8], n: usize) -> Result<()> {
    b.dir(dir, Meta::new(0o755, 0, 0, 1_234_567_890))?;
    for i in 0..n {
        let pad = "p".repeat(rng.below(40) as usize);
        let rel = [dir, format!("/entry-{i:05}-{pad}").as_bytes()].concat();
        let mtime = *rng.pick(&MTIMES);
        match i % 50 {
            7 => b.dir(&rel, Meta::new(0o755, 0, 0, mtime))?,
            13 => b.symlink(
                &rel,
                format!("entry-{:05}", i / 2).as_bytes(),
                Meta::new(0o777, 0, 0, mtime),
            )?,
            _ => {
                let data = if i % 3 == 0 {
                    Vec::new()
                } else {
                    format!("entry {i}\n").into_bytes()
                };
                b.file(&rel, &data, Meta::new(0o644, 0, 0, mtime))?;
            }
        }
    }
    Ok(())
}

/// What the big tree adds: a sparse file larger than 4 GiB with data on both
/// sides of the 4 GiB mark, thousands of entries in one directory, and more
/// incompressible data.
fn big_extras(b: &mut Builder, rng: &mut Rng) -> Result<()> {
    b.dir(b"big", Meta::new(0o755, 0, 0, 1_111_111_111))?;
    let head = rng.bytes(65_536);
    let middle = rng.text(8192);
    let four_gib = 4u64 << 30;
    let len = four_gib + (64 << 10) + 123;
    b.sparse(
        b"big/sparse-over-4G",
        len,
        &[
            (0, &head),
            (four_gib - 4096, &middle),
            (len - 10, b"last bytes"),
        ],
        Meta::new(0o644, 1000, 1000, 1_500_000_000),
    )?;
    b.file(
        b"big/random-8M",
        &rng.bytes(8 << 20),
        Meta::new(0o644, 0, 0, 1_000_000_001),
    )?;
    many_entries(b, rng, b"big/thousands", 5000)
}

/// Builds a random tree at `root` from `seed`: nested directories, weird
/// names, all node types, hard links, xattrs, random owners, modes and mtimes,
/// and file sizes skewed towards block boundaries and duplicates.
pub fn random_tree(root: &Path, seed: u64, n_entries: usize) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut b = Builder::create(root, Meta::new(0o755, 0, 0, *rng.pick(&MTIMES)))?;
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut contents: Vec<Vec<u8>> = Vec::new();
    let mut taken: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    for _ in 0..n_entries {
        let parent = rng.pick(&dirs).clone();
        let name = random_name(&mut rng);
        let rel = if parent.is_empty() {
            name
        } else {
            [parent.as_slice(), b"/", &name].concat()
        };
        if !taken.insert(rel.clone()) {
            continue;
        }
        let (uid, gid) = *rng.pick(&OWNERS);
        let mtime = if rng.chance(50) {
            *rng.pick(&MTIMES)
        } else {
            rng.next_u64() as u32
        };
        let mode = *rng.pick(&[
            0o644, 0o755, 0o600, 0o4755, 0o2750, 0o1777, 0o000, 0o444, 0o7777,
        ]);
        let meta = Meta::new(mode, uid, gid, mtime);
        match rng.below(100) {
            0..=69 => {
                let data = random_contents(&mut rng, &contents);
                b.file(&rel, &data, meta)?;
                if contents.len() < 64 {
                    contents.push(data);
                }
                files.push(rel.clone());
            }
            70..=81 if dirs.len() < 30 => {
                b.dir(&rel, meta)?;
                dirs.push(rel.clone());
            }
            70..=89 => {
                let len = if rng.chance(5) {
                    1 + rng.below(4000)
                } else {
                    1 + rng.below(60)
                };
                let target: Vec<u8> = (0..len).map(|_| 1 + rng.below(255) as u8).collect();
                b.symlink(&rel, &target, Meta::new(0o777, uid, gid, mtime))?;
            }
            90 => b.fifo(&rel, meta)?,
            // Socket paths must fit in sun_path (108 bytes): short names at the root.
            91 => b.socket(format!("socket-{}", taken.len()).as_bytes(), meta)?,
            92 => b.device(
                &rel,
                'c',
                rng.below(4096) as u32,
                rng.below(1 << 20) as u32,
                meta,
            )?,
            93 => b.device(
                &rel,
                'b',
                rng.below(4096) as u32,
                rng.below(1 << 20) as u32,
                meta,
            )?,
            _ if !files.is_empty() => {
                let existing = rng.pick(&files).clone();
                b.hard_link(&existing, &rel)?;
            }
            _ => b.file(&rel, b"", meta)?,
        }
        if rng.chance(10) {
            let len = rng.below(64) as usize;
            let value = rng.text(len);
            let name = *rng.pick(&["trusted.r", "security.r", "trusted.other"]);
            b.xattr(&rel, name, &value)?;
        }
    }
    b.finish()
}

/// A file name of 1–255 bytes: any byte but NUL and `/`, never `.` or `..`.
fn random_name(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 255,
        1..=3 => 1 + rng.below(255),
        _ => 1 + rng.below(24),
    } as usize;
    let mut name: Vec<u8> = (0..len)
        .map(|_| {
            if rng.chance(80) {
                *rng.pick(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
            } else {
                let byte = 1 + rng.below(255) as u8;
                if byte == b'/' {
                    b'%'
                } else {
                    byte
                }
            }
        })
        .collect();
    if name == b"." || name == b".." {
        name.push(b'x');
    }
    name
}

/// Random file contents: sizes skewed towards block boundaries, copies and
/// near-copies of earlier files, zeros, text and random bytes.
fn random_contents(rng: &mut Rng, earlier: &[Vec<u8>]) -> Vec<u8> {
    if !earlier.is_empty() && rng.chance(12) {
        let mut copy = rng.pick(earlier).clone();
        if !copy.is_empty() && rng.chance(50) {
            let i = rng.below(copy.len() as u64) as usize;
            copy[i] ^= 0x20;
        }
        return copy;
    }
    let size = match rng.below(10) {
        0 => 0,
        1..=3 => rng.below(200),
        4..=5 => rng.below(10_000),
        6..=7 => {
            let block = *rng.pick(&[4096u64, 131_072, 1 << 20]);
            let k = 1 + rng.below(2);
            (block * k + rng.below(5)).saturating_sub(2)
        }
        _ => rng.below(400_000),
    } as usize;
    match rng.below(4) {
        0 => vec![0; size],
        1 => rng.bytes(size),
        _ => rng.text(size),
    }
}
