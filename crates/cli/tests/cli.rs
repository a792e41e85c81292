//! End-to-end tests of the `mkportable` binary: exit codes, one-line error
//! messages, what is (not) left on disk, and the `mksquashfs` personality
//! reached through a symlink.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mkportable");

/// nixpkgs' `portableService` call, minus its sources and output.
const NIXPKGS_OPTIONS: &str =
    "-quiet -noappend -exit-on-error -keep-as-directory -all-root -root-mode 755 -b 1M -comp xz -Xdict-size 100%";

/// A scratch directory with a small source tree in `src/`.
struct Dir {
    tmp: tempfile::TempDir,
}

/// What a run printed and how it ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Dir {
    fn new() -> Dir {
        let dir = Dir {
            tmp: tempfile::tempdir().unwrap(),
        };
        dir.write("src/hello.txt", b"hello\n");
        dir.write("src/sub/same-a", &[7; 5000]);
        dir.write("src/sub/same-b", &[7; 5000]);
        dir
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn write(&self, rel: &str, contents: &[u8]) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// Runs `program` with whitespace-separated `args` in this directory, without `SOURCE_DATE_EPOCH`.
    fn run_program(&self, program: &Path, args: &str) -> Run {
        self.run_with(program, args, None)
    }

    fn run_with(&self, program: &Path, args: &str, source_date_epoch: Option<&str>) -> Run {
        let mut cmd = Command::new(program);
        cmd.args(args.split_whitespace())
            .current_dir(self.tmp.path())
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(epoch) = source_date_epoch {
            cmd.env("SOURCE_DATE_EPOCH", epoch);
        }
        finished(cmd.output().unwrap())
    }

    /// `mkportable ARGS`.
    fn mkportable(&self, args: &str) -> Run {
        self.run_program(Path::new(BIN), args)
    }

    /// A `mksquashfs` symlink to the binary, in its own directory.
    fn mksquashfs(&self) -> PathBuf {
        let link = self.path("bin/mksquashfs");
        if !link.exists() {
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(BIN, &link).unwrap();
        }
        link
    }

    /// The names in `rel`, sorted.
    fn ls(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn finished(out: Output) -> Run {
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Run {
    /// Asserts a failure with `code` and exactly one line on stderr, which it returns.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:?}");
        assert!(
            self.stderr.starts_with("error: ") && self.stderr.lines().count() == 1,
            "{self:?}"
        );
        self.stderr.trim_end()
    }

    fn succeeds(&self) -> &Run {
        assert_eq!(self.code, Some(0), "{self:?}");
        self
    }
}

/// The superblock fields these tests look at.
#[derive(Debug, PartialEq, Eq)]
struct Superblock {
    mkfs_time: u32,
    block_size: u32,
    /// 1 gzip, 4 xz, 6 zstd.
    compression: u16,
    exportable: bool,
}

fn superblock(image: &Path) -> Superblock {
    let bytes = fs::read(image).unwrap();
    assert_eq!(
        &bytes[..4],
        b"hsqs",
        "{} is not a SquashFS image",
        image.display()
    );
    assert_eq!(bytes.len() % 4096, 0, "padded to 4 KiB");
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let u16_at = |i: usize| u16::from_le_bytes(bytes[i..i + 2].try_into().unwrap());
    Superblock {
        mkfs_time: u32_at(8),
        block_size: u32_at(12),
        compression: u16_at(20),
        exportable: u16_at(24) & 0x0080 != 0,
    }
}

#[test]
fn squash_writes_an_image_and_a_summary() {
    let dir = Dir::new();
    let run = dir.mkportable("squash src out.img");
    run.succeeds();
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.starts_with("wrote `out.img`: 3 files,") && run.stderr.lines().count() == 1,
        "{run:?}"
    );
    let want = Superblock {
        mkfs_time: 0,
        block_size: 128 << 10,
        compression: 4,
        exportable: false,
    };
    assert_eq!(superblock(&dir.path("out.img")), want);
    assert_eq!(dir.ls("."), ["out.img", "src"]);
}

#[test]
fn squash_flags_reach_the_image() {
    let dir = Dir::new();
    dir.mkportable("squash -q --comp zstd --block-size 1M --mkfs-time 77 --exports src out.img")
        .succeeds();
    let want = Superblock {
        mkfs_time: 77,
        block_size: 1 << 20,
        compression: 6,
        exportable: true,
    };
    assert_eq!(superblock(&dir.path("out.img")), want);
    let run = dir.run_with(
        Path::new(BIN),
        "squash -q --comp gzip src gz.img",
        Some("1700000000"),
    );
    assert!(run.succeeds().stderr.is_empty(), "{run:?}");
    assert_eq!(superblock(&dir.path("gz.img")).mkfs_time, 1_700_000_000);
    assert_eq!(superblock(&dir.path("gz.img")).compression, 1);
}

#[test]
fn squash_json_report() {
    let dir = Dir::new();
    let run = dir.mkportable("squash --json src out.img");
    run.succeeds();
    assert!(run.stderr.is_empty(), "{run:?}");
    let line = run.stdout.strip_suffix('\n').unwrap();
    assert!(!line.contains('\n'));
    assert!(
        line.starts_with(
            r#"{"type":"squash-report","version":1,"output":"out.img","inodes":5,"files":3,"#
        ),
        "{line}"
    );
    let size = fs::metadata(dir.path("out.img")).unwrap().len();
    assert!(
        line.contains(&format!(r#""bytes_written":{size},"#)),
        "{line}"
    );
}

#[test]
fn missing_source_names_it() {
    let dir = Dir::new();
    let msg = "error: cannot read `nope`: No such file or directory (os error 2)";
    assert_eq!(dir.mkportable("squash nope out.img").fails(1), msg);
    assert_eq!(
        dir.mkportable("mksquashfs src nope out.img -noappend")
            .fails(1),
        msg
    );
    assert_eq!(dir.ls("."), ["src"]);
}

#[test]
fn existing_output_is_an_error_and_untouched() {
    let dir = Dir::new();
    dir.write("out.img", b"precious");
    assert_eq!(
        dir.mkportable("mksquashfs src out.img -quiet").fails(1),
        "error: `out.img` already exists (appending is not supported; -noappend replaces it)"
    );
    assert_eq!(
        dir.mkportable("squash src out.img").fails(1),
        "error: `out.img` already exists (appending is not supported; --overwrite replaces it)"
    );
    assert_eq!(fs::read(dir.path("out.img")).unwrap(), b"precious");
    assert_eq!(dir.ls("."), ["out.img", "src"]);

    dir.mkportable("mksquashfs src out.img -noappend -quiet")
        .succeeds();
    assert_eq!(superblock(&dir.path("out.img")).compression, 1);
    dir.mkportable("squash -q --overwrite src out.img")
        .succeeds();
    assert_eq!(superblock(&dir.path("out.img")).compression, 4);
}

#[test]
fn usage_errors_exit_2() {
    let dir = Dir::new();
    let cases = [
        ("mksquashfs src out.img -foo", "error: unsupported mksquashfs option `-foo`"),
        ("mksquashfs src out.img -noappend -nopad", "error: unsupported mksquashfs option `-nopad`"),
        ("mksquashfs src out.img -b", "error: `-b` needs a value: a block size such as 128K or 1M"),
        ("mksquashfs src", "error: missing DEST after SOURCE `src` (usage: mksquashfs SOURCE... DEST [OPTIONS], see -help)"),
        ("squash --foo src out.img", "error: unexpected argument '--foo' found"),
        ("squash out.img", "error: the following required arguments were not provided: <SOURCE>..."),
        ("frobnicate", "error: unrecognized subcommand 'frobnicate'"),
    ];
    for (args, want) in cases {
        assert_eq!(dir.mkportable(args).fails(2), want, "{args}");
    }
    assert_eq!(dir.ls("."), ["src"]);
}

#[test]
fn bad_values_exit_1() {
    let dir = Dir::new();
    let cases = [
        ("mksquashfs src out.img -root-mode 999", "error: invalid value `999` for `-root-mode`: expected an octal mode from 0 to 7777"),
        ("mksquashfs src out.img -comp lz4", "error: invalid option compressor `lz4`: not supported (use xz, zstd or gzip)"),
        ("mksquashfs src out.img -b 3M", "error: invalid option block size `3M`: must be a power of two from 4K to 1M"),
        ("squash --root-mode 9 src out.img", "error: invalid value '9' for '--root-mode <MODE>': expected an octal mode from 0 to 7777"),
        ("squash --comp lz4 src out.img", "error: invalid value 'lz4' for '--comp <COMP>' [possible values: xz, zstd, gzip]"),
    ];
    for (args, want) in cases {
        assert_eq!(dir.mkportable(args).fails(1), want, "{args}");
    }
    // Checked against the block size by the writer, still before anything is written.
    let run = dir.mkportable("mksquashfs src out.img -comp xz -b 64K -Xdict-size 1M");
    assert!(run.fails(1).contains("-Xdict-size"), "{run:?}");
    let run = dir.run_with(Path::new(BIN), "squash src out.img", Some("tomorrow"));
    assert_eq!(
        run.fails(1),
        "error: invalid value `tomorrow` for `SOURCE_DATE_EPOCH`: expected seconds since 1970-01-01 (a non-negative integer)"
    );
    assert_eq!(dir.ls("."), ["src"]);
}

#[test]
fn invoked_as_mksquashfs_runs_nixpkgs_call_unchanged() {
    let dir = Dir::new();
    dir.write("root/etc/os-release", b"ID=test\n");
    dir.write("root/usr/bin/tool", b"#!/bin/sh\n");
    dir.write("nix/store/abc-pkg/file", b"data");
    let mksquashfs = dir.mksquashfs();
    // The shell would expand ROOT/* to root/etc root/usr.
    let args = format!("nix root/etc root/usr OUT.raw {NIXPKGS_OPTIONS}");
    let run = dir.run_with(&mksquashfs, &args, Some("315532800"));
    run.succeeds();
    assert!(
        run.stdout.is_empty() && run.stderr.is_empty(),
        "-quiet: {run:?}"
    );
    let want = Superblock {
        mkfs_time: 315_532_800,
        block_size: 1 << 20,
        compression: 4,
        exportable: true,
    };
    assert_eq!(superblock(&dir.path("OUT.raw")), want);

    // mksquashfs's default compressor, and its output when not quiet.
    let run = dir.run_program(&mksquashfs, "src gz.img");
    assert!(
        run.succeeds().stderr.starts_with("wrote `gz.img`"),
        "{run:?}"
    );
    assert_eq!(superblock(&dir.path("gz.img")).compression, 1);

    assert_eq!(
        dir.run_program(&mksquashfs, "src x.img -foo").fails(2),
        "error: unsupported mksquashfs option `-foo`"
    );
    let run = dir.run_program(&mksquashfs, "-version");
    assert!(run.succeeds().stdout.contains("mksquashfs"), "{run:?}");
    let run = dir.run_program(&mksquashfs, "-help");
    assert!(
        run.succeeds()
            .stdout
            .contains("Usage: mksquashfs SOURCE... DEST [OPTIONS]"),
        "{run:?}"
    );
}

#[test]
fn help_shows_examples() {
    let run = Dir::new().mkportable("squash --help");
    assert!(run
        .succeeds()
        .stdout
        .contains("-keep-as-directory -all-root -root-mode 755 -b 1M -comp xz -Xdict-size 100%"));
    assert!(run.stdout.contains("SOURCE_DATE_EPOCH"));
}

#[test]
fn broken_pipe_is_success() {
    let mut child = Command::new(BIN)
        .args(["mksquashfs", "-help"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn interrupt_or_termination_leaves_nothing_behind() {
    let dir = Dir::new();
    // Incompressible data, so xz on one thread takes seconds.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let data: Vec<u8> = (0..32 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    dir.write("big/data", &data);
    fs::create_dir(dir.path("out")).unwrap();
    for signal in ["-INT", "-TERM"] {
        let mut child = Command::new(BIN)
            .args(["squash", "--threads", "1", "big", "out/big.img"])
            .current_dir(dir.path("."))
            .env_remove("SOURCE_DATE_EPOCH")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The writer's temporary file appears once the signal handler is installed.
        let deadline = Instant::now() + Duration::from_secs(60);
        while dir.ls("out").is_empty() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before it could be interrupted"
            );
            assert!(Instant::now() < deadline, "no temporary file after 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        let run = finished(child.wait_with_output().unwrap());
        assert_eq!(
            run.fails(130),
            "error: interrupted, nothing written to `out/big.img`",
            "{signal}"
        );
        assert!(
            dir.ls("out").is_empty(),
            "{signal} left behind: {:?}",
            dir.ls("out")
        );
    }
}

/// A spec for `mkportable build` in `dir`: two units, a host folder, a symlink.
fn write_demo_spec(dir: &Dir) {
    dir.write(
        "units/demo.service",
        b"[Service]\nExecStart=/opt/demo/hello\n",
    );
    dir.write(
        "units/demo.socket",
        b"[Socket]\nListenStream=7777\nAccept=yes\n",
    );
    dir.write(
        "demo.toml",
        br#"name = "demo"
version = "1.0"
units = ["units/demo.service", "units/demo.socket"]
contents = [{ source = "src", target = "/opt/demo" }]
symlinks = [{ object = "/opt/demo/hello.txt", symlink = "/usr/bin/hello" }]
"#,
    );
}

#[test]
fn build_writes_name_version_raw_and_a_summary() {
    let dir = Dir::new();
    write_demo_spec(&dir);
    let run = dir.mkportable("build demo.toml -o out");
    run.succeeds();
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr
            .starts_with("wrote `out/demo_1.0.raw`: 8 files (0 store paths), ")
            && run.stderr.contains(", duplicates saved 4.9 KiB, ")
            && run.stderr.lines().count() == 1,
        "{run:?}"
    );
    let want = Superblock {
        mkfs_time: 0,
        block_size: 1 << 20,
        compression: 4,
        exportable: false,
    };
    assert_eq!(superblock(&dir.path("out/demo_1.0.raw")), want);
    assert_eq!(dir.ls("out"), ["demo_1.0.raw"]);

    // An existing image is refused, and left alone.
    let before = fs::read(dir.path("out/demo_1.0.raw")).unwrap();
    assert_eq!(
        dir.mkportable("build demo.toml -o out").fails(1),
        "error: `out/demo_1.0.raw` already exists (appending is not supported; --overwrite replaces it)"
    );
    assert_eq!(fs::read(dir.path("out/demo_1.0.raw")).unwrap(), before);

    // The same inputs give the same bytes, at any thread count.
    dir.mkportable("build demo.toml -o again --threads 1 -q")
        .succeeds();
    assert_eq!(fs::read(dir.path("again/demo_1.0.raw")).unwrap(), before);

    let run = dir.run_with(
        Path::new(BIN),
        "build demo.toml -o out --overwrite --json",
        Some("1700000000"),
    );
    assert!(run.succeeds().stderr.is_empty(), "{run:?}");
    let line = run.stdout.strip_suffix('\n').unwrap();
    assert!(
        line.starts_with(r#"{"type":"build-report","version":1,"output":"out/demo_1.0.raw","name":"demo","image_version":"1.0","store_paths":0,"#)
            && line.contains(r#""files":8,"#)
            && !line.contains('\n'),
        "{line}"
    );
    assert_eq!(
        superblock(&dir.path("out/demo_1.0.raw")).mkfs_time,
        1_700_000_000
    );
}

#[test]
fn build_reports_every_spec_problem_and_writes_nothing() {
    let dir = Dir::new();
    write_demo_spec(&dir);
    dir.write(
        "bad.toml",
        br#"name = "demo"
version = "1_0"
units = ["units/demo.service", { source = "units/demo.socket", name = "other.socket" }]
block-size = "3K"
"#,
    );
    let run = dir.mkportable("build bad.toml -o out");
    assert_eq!(run.code, Some(1), "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0], "error: spec `bad.toml` is invalid (3 problems):",
        "{run:?}"
    );
    assert!(lines[1].starts_with("  bad.toml:2: version: `1_0` contains '_'"));
    assert!(lines[2]
        .starts_with("  bad.toml:3: units[1].name: `other.socket` does not start with `demo`"));
    assert!(lines[3].starts_with("  bad.toml:4: block-size: `3K`"));
    assert_eq!(lines.len(), 4, "{run:?}");
    assert!(!dir.path("out").exists());

    dir.write("syntax.json", b"{\"name\": \"demo\",}");
    assert_eq!(
        dir.mkportable("build syntax.json -o out").fails(1),
        "error: syntax.json:1:17: trailing comma"
    );
    assert!(dir
        .mkportable("build nope.toml")
        .fails(1)
        .starts_with("error: cannot read `nope.toml`: "));
    assert_eq!(dir.mkportable("build").code, Some(2));
    assert!(!dir.path("out").exists());
}

/// A store in `dir/store` with objects `a` -> `b` (and `c`, unreferenced), and
/// a references graph of it in `graph`; returns the store paths a, b, c.
fn fake_store(dir: &Dir) -> [String; 3] {
    let store = dir.path("store");
    let [a, b, c] = [
        "0nsmdy54iqf64dgak3gpnj2fivp0l8bg-a",
        "28i8hbli7jg1jl3j9ygssgs2sj575yxd-b",
        "3bv99gnzi8lc0j4w3b4ps3vf7md97vax-c",
    ]
    .map(|base| format!("{}/{base}", store.display()));
    dir.write(&format!("store/{}/bin/a", &a[a.len() - 34..]), b"a\n");
    dir.write(&format!("store/{}/lib/b", &b[b.len() - 34..]), b"b\n");
    dir.write(&format!("store/{}/c", &c[c.len() - 34..]), b"c\n");
    dir.write(
        "graph",
        format!("{a}\n\n1\n{b}\n{b}\n\n0\n{c}\n\n0\n").as_bytes(),
    );
    [a, b, c]
}

#[test]
fn build_takes_the_closure_from_closure_info() {
    let dir = Dir::new();
    let [a, b, _] = fake_store(&dir);
    dir.write(
        "units/app.service",
        format!("[Service]\nExecStart={a}/bin/a\n").as_bytes(),
    );
    let store = dir.path("store");
    dir.write(
        "app.json",
        format!(
            r#"{{"name": "app", "version": "2", "units": ["units/app.service"], "contents": ["{a}"],
               "store-dir": "{}", "closure-info": "graph"}}"#,
            store.display()
        )
        .as_bytes(),
    );
    let run = dir.mkportable("build app.json --json -q");
    assert!(
        run.succeeds().stdout.contains(r#""store_paths":2,"#),
        "{run:?}"
    );
    assert_eq!(
        dir.ls("."),
        ["app.json", "app_2.raw", "graph", "src", "store", "units"]
    );

    // --closure-info replaces the spec's, here with a graph whose reference is missing.
    dir.write(
        "other-graph",
        format!("{a}\n\n1\n{b}-gone\n{b}-gone\n\n0\n").as_bytes(),
    );
    assert_eq!(
        dir.mkportable("build app.json -o out --closure-info other-graph")
            .fails(1),
        format!(
            "error: resolving the store paths of the image: store path `{b}-gone` does not exist"
        )
    );
    assert!(!dir.path("out").exists());
}

#[test]
fn closure_prints_sorted_store_paths() {
    let dir = Dir::new();
    let [a, b, c] = fake_store(&dir);
    let store = dir.path("store");
    let run = dir.mkportable(&format!(
        "closure {a}/bin/a --closure-info graph --store-dir {}",
        store.display()
    ));
    assert_eq!(run.succeeds().stdout, format!("{a}\n{b}\n"));
    let run = dir.mkportable(&format!(
        "closure {c} {a} --closure-info graph --store-dir {}",
        store.display()
    ));
    assert_eq!(run.succeeds().stdout, format!("{a}\n{b}\n{c}\n"));
    assert_eq!(
        dir.mkportable(&format!(
            "closure src --closure-info graph --store-dir {}",
            store.display()
        ))
        .fails(1),
        format!(
            "error: `src` is not inside the store directory `{}`",
            store.display()
        )
    );
    assert_eq!(dir.mkportable("closure").code, Some(2));
}
