//! `cargo xtask e2e`: `mkportable build` end to end, against real readers and a real systemd.
//!
//! Cases, all under `e2e/`:
//! - `demo/*`: the demo image (`examples/demo`, see `demo.rs`) builds with a
//!   `--json` report and a summary; the kernel mounts it with the expected
//!   layout, contents, modes, owners, times and os-release; `systemd-dissect`
//!   calls it a portable service; a second build (other thread count, other
//!   `TMPDIR`) is byte-identical; an existing image is refused without
//!   `--overwrite`; `portable-attach-test` attaches it in a real systemd and
//!   `demo.service` (heartbeat, state directory) and `demo.socket` (a TCP
//!   greeting) work.
//! - `bad-prefix/*`: a spec whose unit does not carry the image's prefix is
//!   refused by mkportable before it builds anything, and systemd refuses the
//!   same layout packed by hand (`mkportable squash`).
//! - `fixture/*`: an image of the small Nix fixture (real store paths with
//!   real references) holds exactly the fixture's closure under `/nix/store`,
//!   each store path identical to the host's; the closure from Nix and from
//!   closureInfo give the same bytes; `mkportable closure` prints the expected
//!   closure; systemd attaches and runs the image.
//! - `bad-spec/*`: malformed TOML and JSON, a wrong type, an unknown key,
//!   every invalid field at once, a missing unit file, missing store paths, a
//!   closure source that lacks a root: exit 1, every problem named on stderr,
//!   no image and no folder written.
//!
//! Needs root (mount, systemd-nspawn), `../shared/e2e/portable-attach-test`,
//! `../shared/fixtures/make-nix-fixture` (or `MKPORTABLE_NIX_FIXTURE`), and
//! `systemd-dissect` (Debian: systemd-container, installed if missing).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::compare::{Kind, View};
use crate::demo;
use crate::harness::{clean_dir, project_root, run, run_ok, show, which, Output, Runner};
use crate::oracle::Mount;

/// What `portable-attach-test` prints when portabled finds no unit with the image's prefix.
const NO_MATCHING_UNITS: &str = "Couldn't find any matching unit files";

/// The service check: the heartbeat in its runtime directory, and a start
/// counted in its state directory.
const DEMO_SERVICE_CHECK: &str =
    "grep -q 'demo alive' /run/demo/heartbeat && test -s /var/lib/demo/starts";

/// The socket check: connect, read the greeting `demo@.service` writes.
const DEMO_SOCKET_CHECK: &str =
    "bash -c 'exec 3<>/dev/tcp/127.0.0.1/7777; timeout 5 cat <&3' | grep 'hello from demo 1.0'";

/// Runs every e2e case.
pub fn run_suite(runner: &mut Runner, work: &Path) {
    let dir = work.join("e2e");
    if let Err(e) = clean_dir(&dir) {
        runner.fail("e2e", &format!("{e:#}"));
        return;
    }
    let mut ctx = Ctx {
        root: project_root(),
        dir,
        mkportable: None,
        payload: None,
        demo: None,
        fixture: None,
    };
    let cases: [(&str, Case); 24] = [
        ("demo/build", Ctx::demo_build),
        ("demo/layout", Ctx::demo_layout),
        ("demo/systemd-dissect", Ctx::demo_dissect),
        ("demo/reproducible", Ctx::demo_reproducible),
        ("demo/existing-image-refused", Ctx::demo_existing),
        ("demo/attach-service", |c| {
            c.demo_attach("demo.service", DEMO_SERVICE_CHECK)
        }),
        ("demo/attach-socket", |c| {
            c.demo_attach("demo.socket", DEMO_SOCKET_CHECK)
        }),
        ("bad-prefix/refused-by-mkportable", Ctx::bad_prefix_spec),
        ("bad-prefix/refused-by-systemd", Ctx::bad_prefix_image),
        ("fixture/closure-command", Ctx::fixture_closure_command),
        ("fixture/layout", Ctx::fixture_layout),
        ("fixture/nix-source-same-bytes", Ctx::fixture_nix_source),
        ("fixture/attach-service", Ctx::fixture_attach),
        ("bad-spec/malformed-toml", |c| c.bad_spec("malformed-toml")),
        ("bad-spec/malformed-json", |c| c.bad_spec("malformed-json")),
        ("bad-spec/wrong-type", |c| c.bad_spec("wrong-type")),
        ("bad-spec/unknown-key", |c| c.bad_spec("unknown-key")),
        ("bad-spec/every-invalid-field", |c| {
            c.bad_spec("every-invalid-field")
        }),
        ("bad-spec/every-invalid-field-json", |c| {
            c.bad_spec("every-invalid-field-json")
        }),
        ("bad-spec/missing-unit-file", |c| {
            c.bad_spec("missing-unit-file")
        }),
        ("bad-spec/missing-store-path", |c| {
            c.bad_spec("missing-store-path")
        }),
        ("bad-spec/store-path-not-in-closure-info", |c| {
            c.bad_spec("store-path-not-in-closure-info")
        }),
        ("bad-spec/closure-path-missing-on-disk", |c| {
            c.bad_spec("closure-path-missing-on-disk")
        }),
        ("bad-spec/missing-spec-file-and-usage", Ctx::bad_invocations),
    ];
    for (name, f) in cases {
        runner.case(&format!("e2e/{name}"), || f(&mut ctx));
    }
}

/// One case: runs against the suite's state.
type Case = fn(&mut Ctx) -> Result<()>;

/// The suite's state: tools and images built once, on first use.
struct Ctx {
    root: PathBuf,
    dir: PathBuf,
    mkportable: Option<Result<PathBuf, String>>,
    payload: Option<Result<PathBuf, String>>,
    /// The demo image the `demo/*` cases look at.
    demo: Option<Result<PathBuf, String>>,
    fixture: Option<Result<Fixture, String>>,
}

/// The small Nix fixture: roots, their closure (from Nix), and its closureInfo.
#[derive(Debug, Clone)]
struct Fixture {
    roots: Vec<String>,
    closure: Vec<String>,
    closure_info: PathBuf,
}

/// Caches the outcome of `build` in `slot`: a failure is reported once per case that needs it.
fn once<T: Clone>(
    slot: &mut Option<Result<T, String>>,
    build: impl FnOnce() -> Result<T>,
) -> Result<T> {
    slot.get_or_insert_with(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

impl Ctx {
    fn mkportable(&mut self) -> Result<PathBuf> {
        let root = self.root.clone();
        once(&mut self.mkportable, || demo::build_mkportable(&root))
    }

    fn payload(&mut self) -> Result<PathBuf> {
        let root = self.root.clone();
        once(&mut self.payload, || demo::build_payload(&root))
    }

    /// `mkportable ARGS` in the repository root, without `SOURCE_DATE_EPOCH`.
    fn mkportable_cmd(&mut self) -> Result<Command> {
        let mut cmd = Command::new(self.mkportable()?);
        cmd.current_dir(&self.root).env_remove("SOURCE_DATE_EPOCH");
        Ok(cmd)
    }

    /// `mkportable build SPEC -o OUT ARGS`, which must succeed.
    fn build(&mut self, spec: &Path, out: &Path, args: &[&str]) -> Result<Output> {
        let mut cmd = self.mkportable_cmd()?;
        cmd.arg("build").arg(spec).arg("-o").arg(out).args(args);
        run_ok(&mut cmd)
    }

    /// The demo image, built on first use into `e2e/demo-a`.
    fn demo_image(&mut self) -> Result<PathBuf> {
        if self.demo.is_none() {
            let res = self.build_demo_image().map_err(|e| format!("{e:#}"));
            self.demo = Some(res);
        }
        self.demo
            .clone()
            .expect("set above")
            .map_err(|e| anyhow!(e))
    }

    fn build_demo_image(&mut self) -> Result<PathBuf> {
        self.payload()?;
        let out = self.dir.join("demo-a");
        let spec = self.root.join(demo::SPEC);
        let built = self.build(&spec, &out, &["--json"])?;
        let image = out.join("demo_1.0.raw");
        let report = built.stdout.trim_end();
        ensure!(
            !report.contains('\n'),
            "--json printed more than one line:\n{report}"
        );
        for field in [
            "{\"type\":\"build-report\",\"version\":1,".to_string(),
            format!("\"output\":\"{}\"", image.display()),
            "\"name\":\"demo\",\"image_version\":\"1.0\",\"store_paths\":0,".to_string(),
            "\"files\":7,".to_string(),
            "\"dedup_saved\":0,".to_string(),
            "\"seconds\":".to_string(),
        ] {
            ensure!(
                report.contains(&field),
                "the --json report lacks `{field}`:\n{report}"
            );
        }
        // Not a terminal, and --json: nothing on stderr, not even progress.
        ensure!(
            built.stderr.is_empty(),
            "unexpected output on stderr:\n{}",
            built.stderr
        );
        ensure!(
            ls(&out)? == ["demo_1.0.raw"],
            "{} holds {:?}, not just the image",
            out.display(),
            ls(&out)?
        );
        Ok(image)
    }

    fn demo_build(&mut self) -> Result<()> {
        let image = self.demo_image()?;
        println!(
            "built {} ({} bytes)",
            image.display(),
            fs::metadata(&image)?.len()
        );
        // Without --json: one summary line on stderr, and one about the
        // cache (xtask points XDG_CACHE_HOME into target/), nothing on stdout.
        let out = self.dir.join("demo-summary");
        let built = self.build(&self.root.join(demo::SPEC), &out, &[])?;
        let (summary, cache_line) = built
            .stderr
            .trim_end()
            .split_once('\n')
            .unwrap_or((built.stderr.trim_end(), ""));
        println!("summary: {summary}");
        println!("{cache_line}");
        ensure!(
            cache_line.starts_with("cache: ") && !cache_line.contains('\n'),
            "the second line of stderr is not the cache line:\n{}",
            built.stderr
        );
        ensure!(
            built.stdout.is_empty(),
            "unexpected output on stdout:\n{}",
            built.stdout
        );
        let want = format!(
            "wrote `{}`: 7 files (0 store paths), ",
            out.join("demo_1.0.raw").display()
        );
        ensure!(
            summary.starts_with(&want) && !summary.contains('\n'),
            "summary `{summary}` does not start with `{want}`"
        );
        for part in [" in, image ", ", duplicates saved "] {
            ensure!(summary.contains(part), "summary `{summary}` lacks `{part}`");
        }
        ensure!(
            summary.ends_with('s'),
            "summary `{summary}` does not end with the time"
        );
        fs::remove_dir_all(&out)?;
        Ok(())
    }

    fn demo_layout(&mut self) -> Result<()> {
        let image = self.demo_image()?;
        let payload = self.payload()?;
        let units = self.root.join("examples/demo/units");
        let mut want = scaffold(&[
            ("demo.service", units.join("demo.service")),
            ("demo.socket", units.join("demo.socket")),
            ("demo@.service", units.join("demo-at.service")),
        ])?;
        for d in [
            "var/lib/demo",
            "var/log/demo",
            "opt",
            "opt/demo",
            "opt/demo/bin",
            "usr",
            "usr/bin",
        ] {
            want.insert(d.into(), (Want::Dir, 0o755));
        }
        want.insert(
            "opt/demo/bin/demo-server".into(),
            (host_file(&payload.join("bin/demo-server"))?, 0o755),
        );
        want.insert(
            "usr/bin/demo-server".into(),
            (Want::Symlink("/opt/demo/bin/demo-server".into()), 0o777),
        );

        let mount = Mount::squashfs(&image, &self.dir.join("mnt-demo"))?;
        let view = View::snapshot(mount.dir())?;
        check_layout(&view, &want)?;
        check_os_release(
            mount.dir(),
            &[
                ("BUILD_ID", "rolling"),
                ("HOME_URL", "https://example.invalid/mkportable/demo"),
                ("ID", "nixos"),
                ("IMAGE_ID", "demo"),
                ("IMAGE_VERSION", "1.0"),
                ("PORTABLE_ID", "demo"),
                ("PORTABLE_PREFIXES", "demo"),
                ("PORTABLE_PRETTY_NAME", "mkportable demo portable service"),
                ("PRETTY_NAME", "NixOS"),
                ("VERSION_ID", "1"),
            ],
        )?;
        println!("{} paths as expected, all 0:0, mtime 0", view.len());
        Ok(())
    }

    fn demo_dissect(&mut self) -> Result<()> {
        let image = self.demo_image()?;
        dissect_says_portable(&image)
    }

    fn demo_reproducible(&mut self) -> Result<()> {
        let first = self.demo_image()?;
        let out = self.dir.join("demo-b");
        let tmp = self.dir.join("tmp-b");
        fs::create_dir_all(&tmp)?;
        let mut cmd = self.mkportable_cmd()?;
        cmd.arg("build")
            .arg(self.root.join(demo::SPEC))
            .arg("-o")
            .arg(&out)
            .args(["--threads", "1", "--quiet"]);
        run_ok(cmd.env("TMPDIR", &tmp))?;
        same_bytes(&first, &out.join("demo_1.0.raw"))?;
        fs::remove_dir_all(&out)?;
        Ok(())
    }

    fn demo_existing(&mut self) -> Result<()> {
        let image = self.demo_image()?;
        let before = blake3_of(&image)?;
        let out_dir = image.parent().expect("an image has a folder").to_path_buf();
        let mut cmd = self.mkportable_cmd()?;
        cmd.arg("build")
            .arg(self.root.join(demo::SPEC))
            .arg("-o")
            .arg(&out_dir);
        let out = run(&mut cmd)?;
        let stderr = expect_failure(&out, 1)?;
        for part in ["already exists", "--overwrite", "demo_1.0.raw"] {
            ensure!(
                stderr.contains(part),
                "the error does not say `{part}`: {stderr}"
            );
        }
        ensure!(
            blake3_of(&image)? == before,
            "the existing image was changed"
        );
        ensure!(
            ls(&out_dir)? == ["demo_1.0.raw"],
            "something was left beside the image: {:?}",
            ls(&out_dir)?
        );
        Ok(())
    }

    fn demo_attach(&mut self, unit: &str, check: &str) -> Result<()> {
        let image = self.demo_image()?;
        self.attach(&image, unit, check, None)
    }

    /// `portable-attach-test IMAGE UNIT CHECK`, or with
    /// `PORTABLE_E2E_EXPECT_ATTACH_FAILURE=expect_failure`.
    fn attach(
        &self,
        image: &Path,
        unit: &str,
        check: &str,
        expect_failure: Option<&str>,
    ) -> Result<()> {
        let script = self.shared("e2e/portable-attach-test")?;
        let mut cmd = Command::new(&script);
        cmd.arg(image).arg(unit).arg(check).current_dir(&self.root);
        match expect_failure {
            Some(regex) => cmd.env("PORTABLE_E2E_EXPECT_ATTACH_FAILURE", regex),
            None => cmd.env_remove("PORTABLE_E2E_EXPECT_ATTACH_FAILURE"),
        };
        let out = run(&mut cmd)?;
        let text = format!("{}{}", out.stdout, out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{} failed ({}); its last lines:\n{}",
                show(&cmd),
                out.status,
                tail.join("\n")
            );
        }
        for line in text.lines().filter(|l| {
            l.starts_with("RESULT:") || l.starts_with("timings") || l.contains("as expected")
        }) {
            println!("{line}");
        }
        Ok(())
    }

    /// A file of `../shared` (next to the repository).
    fn shared(&self, rel: &str) -> Result<PathBuf> {
        let path = self.root.join("..").join("shared").join(rel);
        ensure!(
            path.is_file(),
            "{} is missing (the shared test tools live next to the repository)",
            path.display()
        );
        Ok(path)
    }

    fn bad_prefix_spec(&mut self) -> Result<()> {
        let case = self.dir.join("bad-prefix-spec");
        fs::create_dir_all(&case)?;
        let spec = case.join("spec.toml");
        let unit = self.root.join("examples/demo/units/demo.service");
        fs::write(
            &spec,
            format!(
                "name = \"demo\"\nversion = \"1.0\"\nunits = [ {{ source = '{}', name = \"other.service\" }} ]\n",
                unit.display()
            ),
        )?;
        let out_dir = case.join("out");
        let mut cmd = self.mkportable_cmd()?;
        cmd.arg("build").arg(&spec).arg("-o").arg(&out_dir);
        let out = run(&mut cmd)?;
        let stderr = expect_failure_lines(&out, 1)?;
        let want = format!(
            "{}:3: units[0].name: `other.service` does not start with `demo` followed by `.`, `-` or `@`",
            spec.display()
        );
        ensure!(
            stderr.contains(&want),
            "the error does not say `{want}`:\n{stderr}"
        );
        ensure!(!out_dir.exists(), "{} was created", out_dir.display());
        Ok(())
    }

    fn bad_prefix_image(&mut self) -> Result<()> {
        let good = self.demo_image()?;
        let case = self.dir.join("bad-prefix-image");
        let tree = case.join("tree");
        fs::create_dir_all(&case)?;
        run_ok(
            Command::new("unsquashfs")
                .arg("-quiet")
                .arg("-no-progress")
                .arg("-d")
                .arg(&tree)
                .arg(&good),
        )?;
        let units = tree.join("etc/systemd/system");
        for (from, to) in [
            ("demo.service", "other.service"),
            ("demo.socket", "other.socket"),
            ("demo@.service", "other@.service"),
        ] {
            fs::rename(units.join(from), units.join(to))?;
        }
        let image = case.join("img").join("demo_1.0.raw");
        fs::create_dir_all(image.parent().expect("has a folder"))?;
        let mut cmd = self.mkportable_cmd()?;
        cmd.args([
            "squash",
            "--all-root",
            "--root-mode",
            "755",
            "--block-size",
            "1M",
            "--quiet",
        ])
        .arg(&tree)
        .arg(&image);
        run_ok(&mut cmd)?;
        self.attach(&image, "other.service", "true", Some(NO_MATCHING_UNITS))
    }

    fn fixture(&mut self) -> Result<Fixture> {
        let root = self.root.clone();
        let script = self.shared("fixtures/make-nix-fixture");
        once(&mut self.fixture, || load_fixture(&root, script?))
    }

    fn fixture_closure_command(&mut self) -> Result<()> {
        let fixture = self.fixture()?;
        for source in [Some(&fixture.closure_info), None] {
            let mut cmd = self.mkportable_cmd()?;
            cmd.arg("closure").args(&fixture.roots);
            if let Some(ci) = source {
                cmd.arg("--closure-info").arg(ci);
            }
            let out = run_ok(&mut cmd)?;
            let got: Vec<&str> = out.stdout.lines().collect();
            ensure!(
                got == fixture.closure,
                "{} printed\n{}\nexpected\n{}",
                show(&cmd),
                out.stdout,
                fixture.closure.join("\n")
            );
        }
        println!(
            "{} store paths, from closureInfo and from Nix",
            fixture.closure.len()
        );
        Ok(())
    }

    /// Writes the fixture spec (with or without `closure-info`) and its unit into `case`.
    fn fixture_spec(&mut self, case: &Path, with_closure_info: bool) -> Result<PathBuf> {
        let fixture = self.fixture()?;
        let payload = self.payload()?;
        let app = fixture
            .roots
            .iter()
            .find(|r| r.ends_with("-fx-app"))
            .context("no fx-app root in the fixture")?;
        fs::create_dir_all(case)?;
        fs::write(
            case.join("fixture.service"),
            format!(
                "[Unit]\nDescription=mkportable e2e: the small Nix fixture\n\n[Service]\n\
                 Environment=FX_APP={app}/bin/app\nExecStart=/opt/fx/bin/demo-server serve\n\
                 RuntimeDirectory=fixture\nStateDirectory=fixture\n"
            ),
        )?;
        let mut spec = String::from(
            "name = \"fixture\"\nversion = \"1\"\nunits = [\"fixture.service\"]\ncontents = [\n",
        );
        for root in &fixture.roots {
            spec += &format!("  '{root}',\n");
        }
        spec += &format!(
            "  {{ source = '{}', target = \"/opt/fx\" }},\n]\n",
            payload.display()
        );
        spec += &format!(
            "symlinks = [ {{ object = '{app}/bin/app', symlink = \"/usr/bin/fx-app\" }} ]\n"
        );
        if with_closure_info {
            spec += &format!("closure-info = '{}'\n", fixture.closure_info.display());
        }
        let path = case.join("spec.toml");
        fs::write(&path, spec)?;
        Ok(path)
    }

    /// The fixture image from its closureInfo, built on first use.
    fn fixture_image(&mut self) -> Result<PathBuf> {
        let case = self.dir.join("fixture-ci");
        let image = case.join("out").join("fixture_1.raw");
        if !image.exists() {
            let spec = self.fixture_spec(&case, true)?;
            let built = self.build(&spec, &case.join("out"), &["--json"])?;
            let n = self.fixture()?.closure.len();
            ensure!(
                built.stdout.contains(&format!("\"store_paths\":{n},")),
                "the report does not count {n} store paths: {}",
                built.stdout
            );
        }
        Ok(image)
    }

    fn fixture_layout(&mut self) -> Result<()> {
        let fixture = self.fixture()?;
        let payload = self.payload()?;
        let image = self.fixture_image()?;
        let case = self.dir.join("fixture-ci");
        let mut want = scaffold(&[("fixture.service", case.join("fixture.service"))])?;
        for d in ["var/lib/fixture", "opt", "usr", "usr/bin", "nix/store"] {
            want.insert(d.into(), (Want::Dir, 0o755));
        }
        want.extend(host_tree(&payload, "opt/fx")?);
        let app = fixture
            .roots
            .iter()
            .find(|r| r.ends_with("-fx-app"))
            .expect("checked by fixture_spec");
        want.insert(
            "usr/bin/fx-app".into(),
            (Want::Symlink(format!("{app}/bin/app")), 0o777),
        );
        for path in &fixture.closure {
            // The store path as the host has it, mode for mode, byte for byte.
            want.extend(host_tree(Path::new(path), &path[1..])?);
        }
        let mount = Mount::squashfs(&image, &self.dir.join("mnt-fixture"))?;
        let view = View::snapshot(mount.dir())?;
        check_layout(&view, &want)?;
        check_os_release(
            mount.dir(),
            &[
                ("BUILD_ID", "rolling"),
                ("ID", "nixos"),
                ("IMAGE_ID", "fixture"),
                ("IMAGE_VERSION", "1"),
                ("PORTABLE_ID", "fixture"),
                ("PORTABLE_PREFIXES", "fixture"),
                ("PORTABLE_PRETTY_NAME", "fixture 1"),
                ("PRETTY_NAME", "NixOS"),
            ],
        )?;
        drop(mount);
        println!(
            "{} paths as expected: the {} store paths of the closure and nothing else",
            view.len(),
            fixture.closure.len()
        );
        dissect_says_portable(&image)
    }

    fn fixture_nix_source(&mut self) -> Result<()> {
        let with_ci = self.fixture_image()?;
        ensure!(
            which("nix-store").is_some(),
            "nix-store is not installed (the fixture script installs nix-bin)"
        );
        let case = self.dir.join("fixture-nix");
        let spec = self.fixture_spec(&case, false)?;
        let out = case.join("out");
        self.build(&spec, &out, &["--quiet", "--threads", "1"])?;
        same_bytes(&with_ci, &out.join("fixture_1.raw"))
    }

    fn fixture_attach(&mut self) -> Result<()> {
        let image = self.fixture_image()?;
        self.attach(
            &image,
            "fixture.service",
            "grep -q 'demo alive' /run/fixture/heartbeat && test -s /var/lib/fixture/starts",
            None,
        )
    }

    /// Runs the bad spec case `name`: exit 1, every expected part on stderr, nothing written.
    fn bad_spec(&mut self, name: &str) -> Result<()> {
        let case = self.dir.join("bad-spec").join(name);
        fs::create_dir_all(case.join("units"))?;
        fs::write(
            case.join("units/demo.service"),
            "[Service]\nExecStart=/bin/true\n",
        )?;
        fs::write(case.join("units/empty.service"), "")?;
        let needs_fixture = name.contains("closure");
        let fixture = if needs_fixture {
            Some(self.fixture()?)
        } else {
            None
        };
        let (file, text, want) = bad_spec_case(name, &case, fixture.as_ref())?;
        let spec = case.join(file);
        fs::write(&spec, text)?;
        let out_dir = case.join("out");
        let mut cmd = self.mkportable_cmd()?;
        cmd.arg("build").arg(&spec).arg("-o").arg(&out_dir);
        let out = run(&mut cmd)?;
        let stderr = expect_failure_lines(&out, 1)?;
        let shown = spec.display().to_string();
        let mut missing = Vec::new();
        for part in want {
            let part = part.replace("SPEC", &shown);
            if !stderr.contains(&part) {
                missing.push(part);
            }
        }
        ensure!(
            missing.is_empty(),
            "stderr does not name:\n  {}\nstderr:\n{stderr}",
            missing.join("\n  ")
        );
        ensure!(!out_dir.exists(), "{} was created", out_dir.display());
        println!("{}", stderr.lines().next().unwrap_or_default());
        Ok(())
    }

    fn bad_invocations(&mut self) -> Result<()> {
        let out_dir = self.dir.join("bad-invocation-out");
        let mut cmd = self.mkportable_cmd()?;
        cmd.args(["build", "no-such-spec.toml", "-o"]).arg(&out_dir);
        let stderr = expect_failure(&run(&mut cmd)?, 1)?;
        ensure!(
            stderr.contains("cannot read `no-such-spec.toml`"),
            "{stderr}"
        );
        let mut cmd = self.mkportable_cmd()?;
        cmd.args(["build", "--frobnicate", "x.toml"]);
        expect_failure(&run(&mut cmd)?, 2)?;
        let mut cmd = self.mkportable_cmd()?;
        cmd.arg("build");
        let out = run(&mut cmd)?;
        ensure!(
            out.status.code() == Some(2),
            "`mkportable build` without a spec: {}",
            out.status
        );
        ensure!(!out_dir.exists(), "{} was created", out_dir.display());
        Ok(())
    }
}

/// The spec file name, its text, and what stderr must name (`SPEC` stands for the spec's path).
fn bad_spec_case(
    name: &str,
    case: &Path,
    fixture: Option<&Fixture>,
) -> Result<(&'static str, String, Vec<String>)> {
    let s = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let head = "name = \"demo\"\nversion = \"1.0\"\nunits = [\"units/demo.service\"]\n";
    Ok(match name {
        "malformed-toml" => ("spec.toml", "name = \"demo\nversion = \"1.0\"\n".into(), s(&["SPEC:1:"])),
        "malformed-json" => (
            "spec.json",
            "{\n  \"name\": \"demo\",\n  \"version\": \"1.0\",\n  \"units\": [\"units/demo.service\"],\n}\n".into(),
            s(&["SPEC:5:"]),
        ),
        "wrong-type" => ("spec.toml", "name = \"demo\"\nversion = 1.0\nunits = [\"units/demo.service\"]\n".into(), s(&["SPEC:2:", "expected a string"])),
        "unknown-key" => ("spec.toml", format!("{head}frobnicate = true\n"), s(&["SPEC:4:", "`frobnicate`"])),
        "every-invalid-field" => (
            "spec.toml",
            EVERY_INVALID_FIELD.into(),
            s(&[
                "spec `SPEC` is invalid (19 problems):",
                "SPEC:1: name: `demo_x`",
                "SPEC:2: version: `1_0`",
                "SPEC:3: description: ",
                "SPEC:4: homepage: ",
                "SPEC:6: units[0]: ",
                "missing.service` does not exist",
                "SPEC:7: units[1]: ",
                "empty.service` is empty",
                "SPEC:8: units[2].name: `demo.conf`",
                "SPEC:11: contents[0].source: ",
                "SPEC:12: contents[1].target: `relative/target`",
                "SPEC:13: contents[2].target: `/etc/os-release`",
                "SPEC:16: symlinks[0].object: ",
                "SPEC:17: symlinks[1].symlink: `/proc/x`",
                "SPEC:18: symlinks[2].symlink: `/opt/x/../y`",
                "SPEC:20: compression: `lz4`",
                "SPEC:21: block-size: `3K`",
                "SPEC:22: store-dir: `nix/store`",
                "SPEC:23: closure-info: ",
                "SPEC:26: os-release.lower: ",
                "SPEC:27: os-release.VERSION_ID: ",
            ]),
        ),
        "every-invalid-field-json" => (
            "spec.json",
            "{\"name\": \"demo\", \"version\": \"1.0\", \"units\": [{\"source\": \"units/demo.service\", \"name\": \"other.service\"}],\n \
             \"contents\": [\"/nix/store/00000000000000000000000000000000-missing\", \"/nix/store/not-a-store-path\"],\n \
             \"symlinks\": [{\"object\": \"/a\", \"symlink\": \"/etc/machine-id\"}], \"compression\": \"lzo\", \"block-size\": null}\n"
                .into(),
            s(&[
                "spec `SPEC` is invalid (5 problems):",
                "SPEC: units[0].name: `other.service` does not start with `demo`",
                "SPEC: contents[0]: `/nix/store/00000000000000000000000000000000-missing` does not exist",
                "SPEC: contents[1]: `/nix/store/not-a-store-path` is not a store path",
                "SPEC: symlinks[0].symlink: `/etc/machine-id`",
                "SPEC: compression: `lzo`",
            ]),
        ),
        "missing-unit-file" => (
            "spec.toml",
            "name = \"demo\"\nversion = \"1.0\"\nunits = [\"units/demo.service\", \"units/demo-missing.socket\"]\n".into(),
            vec![format!("SPEC:3: units[1]: `{}` does not exist", case.join("units/demo-missing.socket").display())],
        ),
        "missing-store-path" => (
            "spec.toml",
            format!("{head}contents = [\"/nix/store/00000000000000000000000000000000-missing\"]\n"),
            s(&["SPEC:4: contents[0]: `/nix/store/00000000000000000000000000000000-missing` does not exist"]),
        ),
        "store-path-not-in-closure-info" => {
            let fixture = fixture.expect("closure cases load the fixture");
            // A real store path (it exists on disk) that the fixture's closure does not hold.
            let outside = "/nix/store/r525micv1vqnm1bdll9s4qp9cgbi7axh-fx-unrelated";
            ensure!(Path::new(outside).exists() && !fixture.closure.iter().any(|p| p == outside), "the fixture changed: {outside}");
            (
                "spec.toml",
                format!("{head}contents = ['{outside}']\nclosure-info = '{}'\n", fixture.closure_info.display()),
                vec![format!(
                    "error: resolving the store paths of the image: store path `{outside}` is not in closure info `{}`",
                    fixture.closure_info.display()
                )],
            )
        }
        "closure-path-missing-on-disk" => {
            let fixture = fixture.expect("closure cases load the fixture");
            let root = &fixture.roots[0];
            let gone = "/nix/store/11111111111111111111111111111111-gone";
            fs::write(case.join("graph"), format!("{root}\n\n1\n{gone}\n{gone}\n\n0\n"))?;
            (
                "spec.toml",
                format!("{head}contents = ['{root}']\nclosure-info = \"graph\"\n"),
                vec![format!("error: resolving the store paths of the image: store path `{gone}` does not exist")],
            )
        }
        other => bail!("no bad spec case `{other}`"),
    })
}

/// Every field of a spec wrong at once; `every-invalid-field` expects one problem per field.
const EVERY_INVALID_FIELD: &str = r#"name = "demo_x"
version = "1_0"
description = "two\nlines"
homepage = ""
units = [
  "units/missing.service",
  "units/empty.service",
  { source = "units/demo.service", name = "demo.conf" },
]
contents = [
  { source = "no-such-dir", target = "/opt/x" },
  { source = ".", target = "relative/target" },
  { source = ".", target = "/etc/os-release" },
]
symlinks = [
  { object = "", symlink = "/usr/bin/x" },
  { object = "/a", symlink = "/proc/x" },
  { object = "/a", symlink = "/opt/x/../y" },
]
compression = "lz4"
block-size = "3K"
store-dir = "nix/store"
closure-info = "no-such-closure-info"

[os-release]
lower = "x"
VERSION_ID = "a\nb"
"#;

/// Finds the fixture (`MKPORTABLE_NIX_FIXTURE`, else `target/nix-fixture`,
/// built with `make-nix-fixture` if missing) and reads its small part.
fn load_fixture(root: &Path, script: PathBuf) -> Result<Fixture> {
    let dir = match std::env::var_os("MKPORTABLE_NIX_FIXTURE") {
        Some(dir) => PathBuf::from(dir),
        None => root.join("target").join("nix-fixture"),
    };
    let small = dir.join("small");
    if !small.join("roots.txt").is_file() {
        println!(
            "building the Nix fixture: {} -o {} -s 16",
            script.display(),
            dir.display()
        );
        run_ok(
            Command::new(&script)
                .arg("-o")
                .arg(&dir)
                .args(["-s", "16"])
                .current_dir(root),
        )?;
    }
    let lines = |name: &str| -> Result<Vec<String>> {
        let path = small.join(name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    };
    let fixture = Fixture {
        roots: lines("roots.txt")?,
        closure: lines("expected-closure.txt")?,
        closure_info: small.join("closure-info"),
    };
    ensure!(
        !fixture.roots.is_empty() && fixture.closure.len() > fixture.roots.len(),
        "the fixture in {} looks empty",
        small.display()
    );
    Ok(fixture)
}

/// What a path of the image must be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Dir,
    /// A regular file with these contents.
    File {
        size: u64,
        hash: blake3::Hash,
    },
    /// A regular file whose contents another check looks at.
    AnyFile,
    Symlink(String),
}

/// The image's expected paths (relative, `""` is the root) with kind and mode.
type Layout = BTreeMap<String, (Want, u32)>;

/// The scaffold of every portable image, with `units` (name, host file).
fn scaffold(units: &[(&str, PathBuf)]) -> Result<Layout> {
    let mut want = Layout::new();
    for d in [
        "",
        "dev",
        "etc",
        "etc/systemd",
        "etc/systemd/system",
        "nix",
        "nix/store",
        "proc",
        "run",
        "sys",
        "tmp",
        "var",
        "var/cache",
        "var/lib",
        "var/log",
        "var/tmp",
    ] {
        want.insert(d.into(), (Want::Dir, 0o755));
    }
    let empty = Want::File {
        size: 0,
        hash: blake3::hash(b""),
    };
    want.insert("etc/machine-id".into(), (empty.clone(), 0o644));
    want.insert("etc/resolv.conf".into(), (empty, 0o644));
    want.insert("etc/os-release".into(), (Want::AnyFile, 0o644));
    for (name, host) in units {
        want.insert(
            format!("etc/systemd/system/{name}"),
            (host_file(host)?, 0o644),
        );
    }
    Ok(want)
}

fn host_file(path: &Path) -> Result<Want> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Want::File {
        size: bytes.len() as u64,
        hash: blake3::hash(&bytes),
    })
}

/// The host tree at `host` as it must appear at `at` in the image: same kinds, contents and modes.
fn host_tree(host: &Path, at: &str) -> Result<Layout> {
    let view = View::snapshot(host)?;
    let mut want = Layout::new();
    for (rel, entry) in &view.entries {
        let path = if rel.is_empty() {
            at.to_string()
        } else {
            format!("{at}/{}", String::from_utf8_lossy(rel))
        };
        let kind = match &entry.kind {
            Kind::Dir => Want::Dir,
            Kind::File { size, hash } => Want::File {
                size: *size,
                hash: *hash,
            },
            Kind::Symlink(target) => Want::Symlink(String::from_utf8_lossy(target).into_owned()),
            other => bail!(
                "{}/{}: unexpected file type {other:?}",
                host.display(),
                String::from_utf8_lossy(rel)
            ),
        };
        want.insert(path, (kind, entry.mode));
    }
    Ok(want)
}

/// Compares the mounted image with `want`: the same paths, kinds, contents
/// and modes; every path owned by 0:0 with mtime 0 (no `SOURCE_DATE_EPOCH`).
fn check_layout(view: &View, want: &Layout) -> Result<()> {
    let mut problems = Vec::new();
    let mut got = BTreeMap::new();
    for (rel, entry) in &view.entries {
        let path = String::from_utf8_lossy(rel).into_owned();
        if (entry.uid, entry.gid) != (0, 0) {
            problems.push(format!(
                "/{path}: owner {}:{}, not 0:0",
                entry.uid, entry.gid
            ));
        }
        if entry.mtime != 0 {
            problems.push(format!("/{path}: mtime {}, not 0", entry.mtime));
        }
        got.insert(path, entry);
    }
    for (path, (kind, mode)) in want {
        let Some(entry) = got.get(path) else {
            problems.push(format!("/{path}: missing"));
            continue;
        };
        let same = match (kind, &entry.kind) {
            (Want::Dir, Kind::Dir) | (Want::AnyFile, Kind::File { .. }) => true,
            (Want::File { size, hash }, Kind::File { size: s, hash: h }) => size == s && hash == h,
            (Want::Symlink(target), Kind::Symlink(t)) => target.as_bytes() == t.as_slice(),
            _ => false,
        };
        if !same {
            problems.push(format!("/{path}: expected {kind:?}, got {:?}", entry.kind));
        }
        if entry.mode != *mode {
            problems.push(format!(
                "/{path}: mode {:04o}, expected {mode:04o}",
                entry.mode
            ));
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("/{path}: unexpected"));
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(40);
        bail!(
            "{n} differences from the expected layout:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Checks `/etc/os-release` in the mounted image: exactly these fields.
fn check_os_release(mount: &Path, want: &[(&str, &str)]) -> Result<()> {
    let text = fs::read_to_string(mount.join("etc/os-release"))?;
    let mut got = BTreeMap::new();
    for line in text.lines() {
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("os-release line `{line}` is not KEY=value"))?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        got.insert(
            key.to_string(),
            value.replace("\\\"", "\"").replace("\\\\", "\\"),
        );
    }
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ensure!(got == want, "os-release is\n{text}expected {want:#?}");
    Ok(())
}

/// `systemd-dissect IMAGE` must say `✓ portable service` (the text output: the
/// JSON of systemd 252 reports `usePortableService` false for every image).
fn dissect_says_portable(image: &Path) -> Result<()> {
    let program = match which("systemd-dissect") {
        Some(program) => program,
        None => {
            println!("systemd-dissect is missing: apt-get install systemd-container");
            run_ok(
                Command::new("apt-get")
                    .args([
                        "install",
                        "-y",
                        "-q",
                        "--no-install-recommends",
                        "--no-remove",
                        "systemd-container",
                    ])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            which("systemd-dissect")
                .context("systemd-dissect is still missing after installing systemd-container")?
        }
    };
    let out = run_ok(
        Command::new(program)
            .arg("--no-pager")
            .arg(image)
            .env("SYSTEMD_COLORS", "0")
            .env("LANG", "C.UTF-8"),
    )?;
    let line = out
        .stdout
        .lines()
        .map(|l| l.trim().trim_start_matches("Use As:").trim())
        .find(|l| {
            l.split_once(' ')
                .is_some_and(|(_, what)| what == "portable service")
        })
        .with_context(|| format!("no `portable service` line in:\n{}", out.stdout))?;
    ensure!(
        line.starts_with('✓') || line.starts_with('+'),
        "systemd-dissect says `{line}`:\n{}",
        out.stdout
    );
    let name = image
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    println!("systemd-dissect {}: {line}", String::from_utf8_lossy(&name));
    Ok(())
}

/// Asserts exit status `code` and a one-line `error: ` message; returns it.
fn expect_failure(out: &Output, code: i32) -> Result<String> {
    let stderr = expect_failure_lines(out, code)?;
    ensure!(
        stderr.lines().count() == 1,
        "expected one line on stderr, got:\n{stderr}"
    );
    Ok(stderr)
}

/// Asserts exit status `code`, an `error: ` report on stderr, nothing on stdout and no panic.
fn expect_failure_lines(out: &Output, code: i32) -> Result<String> {
    let stderr = out.stderr.trim_end().to_string();
    ensure!(
        out.status.code() == Some(code),
        "exit status {}, expected {code}; stderr:\n{stderr}",
        out.status
    );
    ensure!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "stderr is not an error report:\n{stderr}"
    );
    ensure!(
        out.stdout.is_empty(),
        "unexpected output on stdout:\n{}",
        out.stdout
    );
    Ok(stderr)
}

fn same_bytes(a: &Path, b: &Path) -> Result<()> {
    let (ha, hb) = (blake3_of(a)?, blake3_of(b)?);
    ensure!(
        ha == hb,
        "{} ({ha}) and {} ({hb}) differ",
        a.display(),
        b.display()
    );
    println!("identical: blake3 {ha}");
    Ok(())
}

fn blake3_of(path: &Path) -> Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(
        fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    )?;
    Ok(hasher.finalize())
}

/// The names in `dir`, sorted.
fn ls(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
