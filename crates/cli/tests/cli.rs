//! End-to-end tests of the `mkportable` binary: exit codes, one-line error
//! messages, what is (not) left on disk, the `mksquashfs` personality
//! reached through a symlink, and the block cache's flags and subcommand.
//!
//! Every run gets `XDG_CACHE_HOME` in a temporary folder of its own, so no
//! test touches the real cache in `~/.cache`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mkportable");

/// nixpkgs' `portableService` call, minus its sources and output.
const NIXPKGS_OPTIONS: &str =
    "-quiet -noappend -exit-on-error -keep-as-directory -all-root -root-mode 755 -b 1M -comp xz -Xdict-size 100%";

/// A scratch directory with a small source tree in `src/`, and a folder
/// outside it for `XDG_CACHE_HOME`.
struct Dir {
    tmp: tempfile::TempDir,
    xdg_cache_home: tempfile::TempDir,
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
            xdg_cache_home: tempfile::tempdir().unwrap(),
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

    /// The default cache folder of every run: `$XDG_CACHE_HOME/mkportable`.
    fn default_cache(&self) -> PathBuf {
        self.xdg_cache_home.path().join("mkportable")
    }

    /// Runs `program` with whitespace-separated `args` in this directory, without `SOURCE_DATE_EPOCH`.
    fn run_program(&self, program: &Path, args: &str) -> Run {
        self.run_with(program, args, None)
    }

    fn run_with(&self, program: &Path, args: &str, source_date_epoch: Option<&str>) -> Run {
        let mut cmd = self.command(program, args);
        if let Some(epoch) = source_date_epoch {
            cmd.env("SOURCE_DATE_EPOCH", epoch);
        }
        finished(cmd.output().unwrap())
    }

    /// `program ARGS` in this directory, with its own `XDG_CACHE_HOME`, without `SOURCE_DATE_EPOCH`.
    fn command(&self, program: &Path, args: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args.split_whitespace())
            .current_dir(self.tmp.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .env("XDG_CACHE_HOME", self.xdg_cache_home.path());
        cmd
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
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("wrote `out.img`: 3 files,")
            && lines[1].starts_with("cache: 0 of "),
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
fn cpu_report_for_the_bench() {
    let dir = Dir::new();
    let report = dir.path("threads.json");
    let run = finished(
        dir.command(&dir.mksquashfs(), "src out.img -quiet -no-progress")
            .env("MKPORTABLE_CPU_REPORT", &report)
            .output()
            .unwrap(),
    );
    run.succeeds();
    let text = fs::read_to_string(&report).unwrap();
    // Both pools ran: the compressing one for the fragment and the tables,
    // the reading one for the three small files.
    assert!(json_number::<f64>(&text, "compress_s") > 0.0, "{text}");
    assert!(json_number::<f64>(&text, "read_s") > 0.0, "{text}");

    // A report that cannot be written is a warning; the image stands.
    let run = finished(
        dir.command(&dir.mksquashfs(), "src out2.img -quiet -no-progress")
            .env(
                "MKPORTABLE_CPU_REPORT",
                dir.path("no/such/folder/threads.json"),
            )
            .output()
            .unwrap(),
    );
    run.succeeds();
    assert!(
        run.stderr
            .starts_with("mkportable: warning: cannot write the CPU report to `")
            && run.stderr.lines().count() == 1,
        "{run:?}"
    );
    assert!(dir.path("out2.img").exists());
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
        let mut child = dir
            .command(Path::new(BIN), "squash --threads 1 big out/big.img")
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
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("wrote `out/demo_1.0.raw`: 8 files (0 store paths), ")
            && lines[0].contains(", duplicates saved 4.9 KiB, ")
            && lines[1].starts_with("cache: 0 of "),
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

/// The integer after `"key":` in a one-line JSON report.
fn json_u64(line: &str, key: &str) -> u64 {
    json_number(line, key)
}

/// The number after `"key":` in a one-line JSON report.
fn json_number<T: std::str::FromStr>(line: &str, key: &str) -> T {
    let pat = format!("\"{key}\":");
    let at = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no `{key}` in {line}"))
        + pat.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("`{key}` is not a number in {line}"))
}

#[test]
fn cache_is_on_by_default_and_changes_no_byte() {
    let dir = Dir::new();
    dir.write("src/big", &[3; 300_000]);
    let run = dir.mkportable("squash --json src cold.img");
    let cold = run.succeeds().stdout.trim_end().to_string();
    assert!(run.stderr.is_empty(), "{run:?}");
    assert!(dir.default_cache().is_dir(), "no cache in $XDG_CACHE_HOME");
    assert!(json_u64(&cold, "entries_written") > 0, "{cold}");

    let run = dir.mkportable("squash --json --threads 1 src warm.img");
    let warm = run.succeeds().stdout.trim_end().to_string();
    assert_eq!(
        (
            json_u64(&warm, "block_misses"),
            json_u64(&warm, "fragment_misses")
        ),
        (0, 0),
        "{warm}"
    );
    assert!(json_u64(&warm, "block_hits") > 0, "{warm}");
    assert!(warm.ends_with(r#","warning":null}}"#), "{warm}");

    let run = dir.mkportable("squash --json --no-cache src none.img");
    assert!(
        run.succeeds()
            .stdout
            .trim_end()
            .ends_with(r#","cache":null}"#),
        "{run:?}"
    );
    let image = fs::read(dir.path("none.img")).unwrap();
    assert_eq!(fs::read(dir.path("cold.img")).unwrap(), image);
    assert_eq!(fs::read(dir.path("warm.img")).unwrap(), image);

    // The summary's second line says what was reused.
    let run = dir.mkportable("squash src summary.img");
    let lines: Vec<&str> = run.succeeds().stderr.lines().collect();
    let hits = json_u64(&warm, "block_hits") + json_u64(&warm, "fragment_hits");
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(
        lines[1].starts_with(&format!("cache: {hits} of {hits} blocks reused")),
        "{run:?}"
    );
}

#[test]
fn cache_flag_stats_and_clear() {
    let dir = Dir::new();
    dir.mkportable("squash -q --cache my-cache --cache-size 10M src a.img")
        .succeeds();
    assert!(!dir.default_cache().exists(), "--cache names the folder");
    assert!(dir.path("my-cache").is_dir());

    let run = dir.mkportable("cache stats --cache my-cache --json");
    let line = run.succeeds().stdout.trim_end().to_string();
    assert!(
        line.starts_with(r#"{"type":"cache-stats","version":1,"folder":"my-cache","entries":"#),
        "{line}"
    );
    let entries = json_u64(&line, "entries");
    assert!(entries > 0 && json_u64(&line, "bytes") > 0, "{line}");
    let run = dir.mkportable("cache stats --cache my-cache");
    let text = &run.succeeds().stdout;
    assert!(
        text.starts_with("folder:       my-cache\nentries:      ")
            && text.contains("\nbytes:        ")
            && text.contains("\nrecord bytes: "),
        "{run:?}"
    );

    let run = dir.mkportable("cache clear --cache my-cache");
    assert!(
        run.succeeds()
            .stderr
            .starts_with(&format!("cleared `my-cache`: removed {entries} entries (")),
        "{run:?}"
    );
    let run = dir.mkportable("cache stats --cache my-cache --json");
    assert_eq!(json_u64(&run.succeeds().stdout, "entries"), 0, "{run:?}");
    assert_eq!(json_u64(&run.stdout, "bytes"), 0, "{run:?}");

    // A folder that does not exist yet is an empty cache; nothing is created.
    let run = dir.mkportable("cache stats --json");
    let want = format!(
        r#"{{"type":"cache-stats","version":1,"folder":"{}","entries":0,"bytes":0,"record_bytes":0}}"#,
        dir.default_cache().display()
    );
    assert_eq!(run.succeeds().stdout.trim_end(), want);
    assert!(dir
        .mkportable("cache clear")
        .succeeds()
        .stderr
        .starts_with("cleared `"));
    assert!(!dir.default_cache().exists());
}

#[test]
fn cache_errors() {
    let dir = Dir::new();
    dir.write("a-file", b"x");
    let cases = [
        ("squash --cache-size 5X src out.img", 1, "error: invalid value '5X' for '--cache-size <SIZE>': expected bytes, or a number with a K, M, G or T suffix (binary units), e.g. 5G"),
        ("build --cache-size 1.5G demo.toml", 1, "error: invalid value '1.5G' for '--cache-size <SIZE>': expected bytes"),
        ("squash --cache-size 0 src out.img", 1, "error: invalid value '0' for '--cache-size <SIZE>': the cache needs at least 1 byte (--no-cache turns it off)"),
        ("squash --cache-size 99999999T src out.img", 1, "error: invalid value '99999999T' for '--cache-size <SIZE>': `99999999T` is more than"),
        ("squash src out.img --cache-size", 2, "error: a value is required for '--cache-size <SIZE>'"),
        ("squash --no-cache --cache c src out.img", 2, "error: the argument '--no-cache' cannot be used with '--cache <DIR>'"),
        ("build --no-cache --trust-stat demo.toml", 2, "error: the argument '--no-cache' cannot be used with '--trust-stat'"),
        ("mksquashfs src out.img -noappend --cache c", 2, "error: unsupported mksquashfs option `--cache`"),
        ("cache", 2, "error: "),
        ("cache stats --frob", 2, "error: unexpected argument '--frob' found"),
        ("cache stats --cache a-file", 1, "error: reading the cache `a-file`: not a directory"),
        ("cache clear --cache a-file", 1, "error: clearing the cache `a-file`: not a directory"),
    ];
    for (args, code, want) in cases {
        let run = dir.mkportable(args);
        if args == "cache" {
            // clap prints the subcommand's help, on stdout or stderr.
            assert_eq!(run.code, Some(code), "{run:?}");
            continue;
        }
        assert!(run.fails(code).starts_with(want), "{args}: {run:?}");
    }
    assert_eq!(dir.ls("."), ["a-file", "src"]);

    // Without XDG_CACHE_HOME and HOME there is no default folder.
    let mut cmd = dir.command(Path::new(BIN), "cache stats");
    cmd.env_remove("XDG_CACHE_HOME").env_remove("HOME");
    assert_eq!(
        finished(cmd.output().unwrap()).fails(2),
        "error: no cache folder: neither XDG_CACHE_HOME nor HOME is set (--cache DIR names one)"
    );
    // ... and a build goes without a cache.
    let mut cmd = dir.command(Path::new(BIN), "squash --json src out.img");
    cmd.env_remove("XDG_CACHE_HOME").env_remove("HOME");
    let run = finished(cmd.output().unwrap());
    assert!(
        run.succeeds()
            .stdout
            .trim_end()
            .ends_with(r#","cache":null}"#),
        "{run:?}"
    );
    // $HOME/.cache/mkportable without XDG_CACHE_HOME.
    let mut cmd = dir.command(Path::new(BIN), "squash -q src home.img");
    cmd.env_remove("XDG_CACHE_HOME")
        .env("HOME", dir.path("home"));
    finished(cmd.output().unwrap()).succeeds();
    assert!(dir.path("home/.cache/mkportable").is_dir());
}

#[test]
fn mksquashfs_personality_has_no_cache() {
    let dir = Dir::new();
    let run = dir.run_program(&dir.mksquashfs(), "src out.img -noappend -quiet");
    assert!(run.succeeds().stderr.is_empty(), "{run:?}");
    dir.mkportable("mksquashfs src out2.img -noappend -quiet")
        .succeeds();
    assert!(
        !dir.default_cache().exists(),
        "the personality used a cache"
    );
}

#[test]
fn unusable_cache_warns_once_and_builds_the_same_image() {
    let dir = Dir::new();
    dir.write("not-a-folder", b"x");
    dir.mkportable("squash -q --no-cache src cold.img")
        .succeeds();
    let cold = fs::read(dir.path("cold.img")).unwrap();
    for (args, image) in [
        ("squash -q --cache not-a-folder src q.img", "q.img"),
        ("squash --cache not-a-folder src s.img", "s.img"),
        ("squash --json --cache not-a-folder src j.img", "j.img"),
    ] {
        let run = dir.mkportable(args);
        run.succeeds();
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("warning"))
            .collect();
        assert!(
            warnings.len() == 1 && warnings[0].starts_with("mkportable: warning: "),
            "{args}: {run:?}"
        );
        if args.contains("--json") {
            assert!(run.stderr.lines().count() == 1, "{args}: {run:?}");
            assert!(
                run.stdout.contains(r#","warning":""#),
                "the JSON lacks the warning: {run:?}"
            );
        }
        if args.contains("-q ") {
            assert!(run.stderr.lines().count() == 1, "{args}: {run:?}");
        }
        assert_eq!(fs::read(dir.path(image)).unwrap(), cold, "{args}");
    }
    assert_eq!(fs::read(dir.path("not-a-folder")).unwrap(), b"x");
}

#[test]
fn build_takes_the_cache_flags() {
    let dir = Dir::new();
    write_demo_spec(&dir);
    // Files changed in the last 2 s before a build are read, not recorded.
    std::thread::sleep(Duration::from_secs(3));
    let run = dir.mkportable("build demo.toml -o a --json --cache c --trust-stat");
    assert!(
        json_u64(&run.succeeds().stdout, "entries_written") > 0,
        "{run:?}"
    );
    let run = dir.mkportable("build demo.toml -o b --json --cache c --trust-stat");
    let line = run.succeeds().stdout.trim_end().to_string();
    assert!(json_u64(&line, "files_not_read") > 0, "{line}");
    assert_eq!(json_u64(&line, "block_misses"), 0, "{line}");
    assert!(line.contains(r#""seconds":"#) && line.ends_with(r#","warning":null}}"#));
    let run = dir.mkportable("build demo.toml -o c --json --no-cache");
    assert!(run
        .succeeds()
        .stdout
        .trim_end()
        .ends_with(r#","cache":null}"#));
    let image = fs::read(dir.path("c/demo_1.0.raw")).unwrap();
    assert_eq!(fs::read(dir.path("a/demo_1.0.raw")).unwrap(), image);
    assert_eq!(fs::read(dir.path("b/demo_1.0.raw")).unwrap(), image);
    assert!(!dir.default_cache().exists());
}

#[test]
fn help_says_what_trust_stat_trusts() {
    let run = Dir::new().mkportable("squash --help");
    let help = run
        .succeeds()
        .stdout
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for part in [
        "--cache <DIR>",
        "--no-cache",
        "--cache-size <SIZE>",
        "device, inode, size, mtime and ctime (in nanoseconds)",
        "restoring a filesystem snapshot",
    ] {
        assert!(help.contains(part), "squash --help lacks `{part}`");
    }
    let run = Dir::new().mkportable("build --help");
    assert!(run.succeeds().stdout.contains("--trust-stat"), "{run:?}");
}
