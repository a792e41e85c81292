//! Fixture tests: closures of real Nix store paths, resolved through every source, must equal
//! what `nix-store -qR` said when `shared/fixtures/make-nix-fixture` built them.
//!
//! The fixture directory comes from `MKPORTABLE_NIX_FIXTURE` (`make-nix-fixture -o DIR`, which
//! `cargo xtask test` runs). Without it these tests fail rather than pass silently.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use mkportable_closure::{
    resolve, resolve_all, scan_store_paths, Closure, Error, NixCli, Source, StoreDir, StorePath,
};

const FIXTURE_ENV: &str = "MKPORTABLE_NIX_FIXTURE";

/// The fixture directory; fails the test when it is not set.
fn fixture_root() -> PathBuf {
    match std::env::var_os(FIXTURE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "{FIXTURE_ENV} is not set: run `cargo xtask test`, or build the fixture with \
             `shared/fixtures/make-nix-fixture -o DIR` (as root) and set {FIXTURE_ENV}=DIR"
        ),
    }
}

/// One fixture, `small` or `large`.
struct Fixture {
    name: &'static str,
    dir: PathBuf,
    roots: Vec<StorePath>,
    expected: Vec<String>,
}

/// `small`, which must be there, and `large` if it was built.
fn fixtures() -> Vec<Fixture> {
    let root = fixture_root();
    let mut fixtures = Vec::new();
    for name in ["small", "large"] {
        let dir = root.join(name);
        if name == "large" && !dir.exists() {
            continue;
        }
        let roots = read_lines(&dir.join("roots.txt"))
            .iter()
            .map(|line| {
                line.parse()
                    .unwrap_or_else(|err| panic!("roots.txt: {err}"))
            })
            .collect();
        let expected = read_lines(&dir.join("expected-closure.txt"));
        assert!(
            !expected.is_empty(),
            "{name}: expected-closure.txt is empty"
        );
        fixtures.push(Fixture {
            name,
            dir,
            roots,
            expected,
        });
    }
    fixtures
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read fixture file `{}`: {err}", path.display()));
    text.lines().map(str::to_owned).collect()
}

/// `nix-store` with the setting a single-user root store without `nixbld` needs, unless the
/// environment already configures Nix.
fn nix_cli() -> NixCli {
    match std::env::var_os("NIX_CONFIG") {
        Some(_) => NixCli::new(),
        None => NixCli::new().with_env("NIX_CONFIG", "build-users-group ="),
    }
}

/// A named source; `exact` is false for path lists, whose closure of anything is the whole list.
struct Named {
    name: String,
    source: Source,
    exact: bool,
}

fn sources(fixture: &Fixture) -> Vec<Named> {
    let dir = &fixture.dir;
    let mut graph_files: Vec<PathBuf> = fs::read_dir(dir.join("references-graph"))
        .expect("references-graph/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("root-")
        })
        .collect();
    graph_files.sort();
    assert_eq!(
        graph_files.len(),
        fixture.roots.len(),
        "one references graph per root"
    );
    let named = |name: &str, source: Source| Named {
        name: name.to_owned(),
        source,
        exact: true,
    };
    vec![
        named(
            "closure-info/",
            Source::closure_info(dir.join("closure-info")),
        ),
        named(
            "auto closure-info/",
            Source::auto(Some(&dir.join("closure-info"))).unwrap(),
        ),
        named("references-graph/root-*", Source::graph_files(&graph_files)),
        named(
            "references-graph.all",
            Source::graph_files([dir.join("references-graph.all")]),
        ),
        named(
            "references-graph.all + root-*",
            Source::from_paths(
                &[vec![dir.join("references-graph.all")], graph_files.clone()].concat(),
            )
            .unwrap(),
        ),
        named(
            "registration.dump-db",
            Source::auto(Some(&dir.join("registration.dump-db"))).unwrap(),
        ),
        named(
            "closure-info/registration",
            Source::graph_files([dir.join("closure-info/registration")]),
        ),
        named(
            "closure-info/closure.json",
            Source::graph_files([dir.join("closure-info/closure.json")]),
        ),
        Named {
            name: "closure-info/store-paths".to_owned(),
            source: Source::graph_files([dir.join("closure-info/store-paths")]),
            exact: false,
        },
        named("nix-store", Source::nix(nix_cli())),
    ]
}

fn strings(closure: &Closure) -> Vec<String> {
    closure.iter().map(ToString::to_string).collect()
}

/// `error`, then each cause, `: `-separated, as the CLI prints it.
fn chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[test]
fn every_source_gives_the_closure_nix_gives() {
    let mut failures = Vec::new();
    for fixture in fixtures() {
        for named in sources(&fixture) {
            match resolve(&fixture.roots, &named.source) {
                Ok(closure) if strings(&closure) == fixture.expected => {}
                Ok(closure) => failures.push(format!(
                    "{} via {}: got {:#?}\nexpected {:#?}",
                    fixture.name,
                    named.name,
                    strings(&closure),
                    fixture.expected
                )),
                Err(err) => failures.push(format!(
                    "{} via {}: {}",
                    fixture.name,
                    named.name,
                    chain(&err)
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn resolve_all_of_closure_info_is_the_closure() {
    for fixture in fixtures() {
        let source = Source::closure_info(fixture.dir.join("closure-info"));
        let closure = resolve_all(&source).unwrap_or_else(|err| panic!("{}", chain(&err)));
        assert_eq!(strings(&closure), fixture.expected, "{}", fixture.name);
        let graph = source.load_graph().unwrap().unwrap();
        let total: u64 = graph
            .paths()
            .map(|path| graph.nar_size(path).unwrap())
            .sum();
        let expected_total = read_lines(&fixture.dir.join("closure-info/total-nar-size"));
        assert_eq!(vec![total.to_string()], expected_total, "{}", fixture.name);
    }
}

#[test]
fn each_root_alone_gives_the_same_closure_from_every_exact_source() {
    for fixture in fixtures() {
        let sources = sources(&fixture);
        for root in &fixture.roots {
            let mut answers: Vec<(String, Vec<String>)> = Vec::new();
            for named in sources.iter().filter(|named| named.exact) {
                let closure = resolve(std::slice::from_ref(root), &named.source)
                    .unwrap_or_else(|err| panic!("{} via {}: {}", root, named.name, chain(&err)));
                assert!(
                    closure.contains(root),
                    "{root} via {}: the root is in its closure",
                    named.name
                );
                answers.push((named.name.clone(), strings(&closure)));
            }
            let (first_name, first) = &answers[0];
            for (name, answer) in &answers[1..] {
                assert_eq!(
                    answer, first,
                    "closure of {root}: {name} disagrees with {first_name}"
                );
            }
        }
    }
}

#[test]
fn cases_land_where_nix_put_them() {
    let fixture = fixtures().into_iter().find(|f| f.name == "small").unwrap();
    let text = fs::read_to_string(fixture.dir.join("cases.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = cases.as_array().expect("cases.json is an array");
    assert!(
        cases.iter().any(|case| case["inClosure"] == false),
        "cases.json has negative cases"
    );
    for named in sources(&fixture) {
        let closure = resolve(&fixture.roots, &named.source).unwrap();
        for case in cases {
            let path: StorePath = case["path"].as_str().unwrap().parse().unwrap();
            let in_closure = case["inClosure"].as_bool().unwrap();
            assert_eq!(
                closure.contains(&path),
                in_closure,
                "case `{}` ({}) via {}: {}",
                case["id"],
                path,
                named.name,
                case["why"]
            );
        }
    }
}

#[test]
fn closure_of_a_closure_is_itself() {
    for fixture in fixtures() {
        for named in sources(&fixture) {
            let once = resolve(&fixture.roots, &named.source).unwrap();
            let roots: Vec<StorePath> = once.iter().cloned().collect();
            let twice = resolve(&roots, &named.source).unwrap();
            assert_eq!(twice, once, "{} via {}", fixture.name, named.name);
        }
    }
}

#[test]
fn unit_files_and_symlink_objects_name_roots() {
    let fixture = fixtures().into_iter().find(|f| f.name == "small").unwrap();
    let store_dir = StoreDir::default();
    let app = &fixture.roots[0];
    assert_eq!(app.name(), "fx-app");
    let unit = format!(
        "[Service]\nExecStart={app}/bin/app --config {app}/etc/more\nExecStartPre=-/bin/true\n"
    );
    let mut roots: BTreeSet<StorePath> = scan_store_paths(unit.as_bytes(), &store_dir);
    assert_eq!(roots.iter().collect::<Vec<_>>(), [app]);
    // A symlink object of the spec, into the store object `fx-symlink-root` points into.
    let link_root = &fixture.roots[1];
    let target = fs::read_link(link_root.as_path()).unwrap();
    let object = store_dir.to_store_path(&target).unwrap();
    assert_eq!(object.name(), "fx-lib");
    roots.insert(object);
    // A GC root symlink, as `./result` would be.
    let gcroot = store_dir
        .follow_links_to_store_path(&fixture_root().join("gcroots/small"))
        .unwrap();
    assert_eq!(&gcroot, app);
    let roots: Vec<StorePath> = roots.into_iter().collect();
    let from_nix = resolve(&roots, &Source::nix(nix_cli())).unwrap();
    let from_info = resolve(
        &roots,
        &Source::closure_info(fixture.dir.join("closure-info")),
    )
    .unwrap();
    assert_eq!(from_info, from_nix);
    assert!(
        from_nix.len() < fixture.expected.len(),
        "self-only and symlink-root are left out"
    );
}

#[test]
fn a_missing_store_path_is_an_error_naming_it() {
    let fixture = fixtures().into_iter().find(|f| f.name == "small").unwrap();
    let gone: StorePath = "/nix/store/00000000000000000000000000000000-fx-gone"
        .parse()
        .unwrap();
    assert!(!gone.as_path().exists());
    let roots = [fixture.roots.clone(), vec![gone.clone()]].concat();

    let info = fixture.dir.join("closure-info");
    let err = resolve(&roots, &Source::closure_info(&info)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "store path `{gone}` is not in closure info `{}`",
            info.display()
        )
    );
    let all = fixture.dir.join("references-graph.all");
    let err = resolve(&roots, &Source::graph_files([&all])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "store path `{gone}` is not in references graph `{}`",
            all.display()
        )
    );
    let err = resolve(&roots, &Source::nix(nix_cli())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("store path `{gone}` does not exist")
    );

    // A graph that lists the missing path, as a stale closure info would.
    let tmp = tempfile::tempdir().unwrap();
    let stale = tmp.path().join("stale");
    let app = &fixture.roots[0];
    fs::write(&stale, format!("{app}\n\n1\n{gone}\n{gone}\n\n0\n")).unwrap();
    let err = resolve(std::slice::from_ref(app), &Source::graph_files([&stale])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("store path `{gone}` does not exist")
    );
}

#[test]
fn a_path_outside_the_store_is_an_error() {
    let fixture = fixtures().into_iter().find(|f| f.name == "small").unwrap();
    let store_dir = StoreDir::default();
    assert_eq!(
        store_dir
            .to_store_path(Path::new("/usr/bin/env"))
            .unwrap_err()
            .to_string(),
        "`/usr/bin/env` is not inside the store directory `/nix/store`"
    );
    assert_eq!(
        store_dir
            .follow_links_to_store_path(&fixture.dir.join("roots.txt"))
            .unwrap_err()
            .to_string(),
        format!(
            "`{}` is not inside the store directory `/nix/store`",
            fixture.dir.join("roots.txt").display()
        )
    );
    // A root of another store directory.
    let gnu = StoreDir::new("/gnu/store")
        .unwrap()
        .join(fixture.roots[0].base_name())
        .unwrap();
    let err = resolve(std::slice::from_ref(&gnu), &Source::nix(nix_cli())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("`{gnu}` is not inside the store directory `/nix/store`")
    );
    // A graph file naming a path outside the store.
    let tmp = tempfile::tempdir().unwrap();
    let graph = tmp.path().join("graph");
    let app = &fixture.roots[0];
    fs::write(&graph, format!("{app}\n\n1\n/usr/lib/libc.so.6\n")).unwrap();
    let err = resolve(std::slice::from_ref(app), &Source::graph_files([&graph])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "`{}`, line 4: invalid store path `/usr/lib/libc.so.6`: not inside the store directory",
            graph.display()
        )
    );
}

#[test]
fn a_truncated_registration_is_an_error() {
    let fixture = fixtures().into_iter().find(|f| f.name == "small").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for name in ["registration", "store-paths"] {
        let text = fs::read(fixture.dir.join("closure-info").join(name)).unwrap();
        // Cut off the final newline, then more: inside the last line (for `store-paths` the
        // last store path loses characters but stays valid), or whole lines.
        for cut in [1, 2, 3, 40] {
            let info = tmp.path().join(format!("{name}-{cut}"));
            fs::create_dir(&info).unwrap();
            fs::write(info.join(name), &text[..text.len() - cut]).unwrap();
            let err = resolve(&fixture.roots, &Source::closure_info(&info)).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("`{}`, line ", info.join(name).display()))
                    && (message.ends_with("the file does not end with a newline (cut short?)")
                        || message.contains("ends early")),
                "{name} cut by {cut}: {message}"
            );
        }
    }
    // Cut between records (the first has no references, so it is five lines):
    // `total-nar-size` no longer adds up.
    let text = fs::read_to_string(fixture.dir.join("closure-info/registration")).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines[4], "0\n");
    let info = tmp.path().join("short");
    fs::create_dir(&info).unwrap();
    fs::write(info.join("registration"), lines[5..].concat()).unwrap();
    fs::copy(
        fixture.dir.join("closure-info/total-nar-size"),
        info.join("total-nar-size"),
    )
    .unwrap();
    let err = resolve(&fixture.roots, &Source::closure_info(&info)).unwrap_err();
    assert!(err.to_string().contains("is inconsistent"), "{err}");
}
