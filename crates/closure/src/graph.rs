//! `Graph`: the store paths and references that closure info folders and references graph
//! files describe, and the walk that computes a closure from them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::closure::Closure;
use crate::format::{self, Format, Node, Parsed};
use crate::store_path::{StoreDir, StorePath};
use crate::Error;

/// Store paths with their references (and NAR sizes where known), read from a closure info
/// folder or from references graph files.
///
/// A graph read from a path list (`store-paths`) knows no references. Its "closure" of any
/// roots is then all of its paths: the list was a closure when Nix wrote it.
///
/// # Formats
///
/// All text formats are sequences of `\n`-terminated lines; a non-empty file must end in `\n`
/// (Nix's own reader fails on a missing final newline, and a file cut inside its last store
/// path could otherwise still parse).
///
/// - **Registration** (`nix-store --load-db`, `closureInfo`'s `registration`,
///   `nix-store --dump-db`), one record per store path:
///   the path, the NAR hash (`sha256:<nix32>`, `sha256:<hex>`, bare hex, bare nix32,
///   `sha256-<base64>` …), the NAR size, the deriver (empty, or the `.drv` path), the number of
///   references `N`, then `N` references.
/// - **Graph** (plain `exportReferencesGraph`, `nix-store --register-validity` without
///   `--hash-given`): the same without the hash and size lines.
/// - **Path list** (`closureInfo`'s `store-paths`): one store path a line. It carries no
///   references.
/// - **JSON** (structured attrs `exportReferencesGraph`, e.g. `.attrs.json` or
///   `closureInfo`'s raw `closure.json`): an array of objects with `path` and `references`
///   (and optionally `narSize`, `narHash`), or an object whose array values are such arrays.
///
/// Duplicate records are fine when they agree: several graph files, or their concatenation,
/// repeat shared paths.
///
/// A file's format is told from its start: JSON starts with `[` or `{`; otherwise the second
/// line is a hash in a registration, empty or a deriver followed by a count in a graph, and
/// another store path in a path list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    nodes: BTreeMap<StorePath, Node>,
    references_known: bool,
    /// What the graph was read from, for messages: ``closure info `/x` ``.
    origin: String,
}

impl Graph {
    /// Reads a `closureInfo` folder: its `registration` if there is one, else its
    /// `store-paths`. When both are there they must list the same store paths, and a
    /// `total-nar-size` file must match the registration's NAR sizes.
    ///
    /// # Errors
    ///
    /// [`Error::Read`], [`Error::NotClosureInfo`] when neither file exists, [`Error::Parse`],
    /// [`Error::InconsistentClosureInfo`].
    pub fn read_closure_info(dir: &Path, store_dir: &StoreDir) -> Result<Graph, Error> {
        let origin = format!("closure info `{}`", dir.display());
        let registration = read_optional(&dir.join("registration"))?;
        let store_paths = read_optional(&dir.join("store-paths"))?;
        let (registration, store_paths) = match (registration, store_paths) {
            (None, None) => {
                // Tell a missing folder from one that is not closure info.
                fs::read_dir(dir).map_err(|source| Error::Read {
                    path: dir.to_path_buf(),
                    source,
                })?;
                return Err(Error::NotClosureInfo {
                    dir: dir.to_path_buf(),
                });
            }
            pair => pair,
        };
        let inconsistent = |reason| Error::InconsistentClosureInfo {
            dir: dir.to_path_buf(),
            reason,
        };
        let listed = match store_paths {
            Some(text) => {
                let file = dir.join("store-paths");
                Some(format::parse(&text, Format::PathList, store_dir, &file)?)
            }
            None => None,
        };
        let Some(text) = registration else {
            let listed = listed.expect("one of the two files is there");
            return Ok(Graph {
                nodes: listed.nodes,
                references_known: false,
                origin,
            });
        };
        let file = dir.join("registration");
        let parsed = format::parse(&text, Format::Registration, store_dir, &file)?;
        if let Some(listed) = listed {
            let only_listed = listed
                .nodes
                .keys()
                .find(|path| !parsed.nodes.contains_key(*path));
            if let Some(path) = only_listed {
                return Err(inconsistent(format!(
                    "`store-paths` lists `{path}` but `registration` does not"
                )));
            }
            let only_registered = parsed
                .nodes
                .keys()
                .find(|path| !listed.nodes.contains_key(*path));
            if let Some(path) = only_registered {
                return Err(inconsistent(format!(
                    "`registration` lists `{path}` but `store-paths` does not"
                )));
            }
        }
        if let Some(text) = read_optional(&dir.join("total-nar-size"))? {
            let sum: u64 = parsed.nodes.values().filter_map(|node| node.nar_size).sum();
            let total = std::str::from_utf8(&text).ok().map(str::trim);
            if total != Some(sum.to_string().as_str()) {
                return Err(inconsistent(format!(
                    "`total-nar-size` says `{}` but the NAR sizes in `registration` add up to {sum}",
                    String::from_utf8_lossy(&text).trim()
                )));
            }
        }
        Ok(Graph {
            nodes: parsed.nodes,
            references_known: true,
            origin,
        })
    }

    /// Reads references graph files, detecting the format of each (registration,
    /// `nix-store --dump-db`, plain `exportReferencesGraph`, path list or structured-attrs
    /// JSON), and merges them. Store paths they share must have the same references.
    ///
    /// # Errors
    ///
    /// [`Error::Read`], [`Error::Parse`], [`Error::Json`], [`Error::NoGraphInJson`],
    /// [`Error::Conflict`].
    pub fn read_files(files: &[PathBuf], store_dir: &StoreDir) -> Result<Graph, Error> {
        let mut graph = Graph {
            nodes: BTreeMap::new(),
            references_known: true,
            origin: files_origin(files),
        };
        for file in files {
            let text = fs::read(file).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            let parsed = Self::parse_parts(&text, store_dir, file)?;
            graph.merge(parsed, file)?;
        }
        Ok(graph)
    }

    /// Parses the text of one references graph file; `file` names it in messages.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`], [`Error::Json`], [`Error::NoGraphInJson`].
    pub fn parse(text: &[u8], store_dir: &StoreDir, file: &Path) -> Result<Graph, Error> {
        let parsed = Self::parse_parts(text, store_dir, file)?;
        Ok(Graph {
            nodes: parsed.nodes,
            references_known: parsed.references_known,
            origin: files_origin(std::slice::from_ref(&file.to_path_buf())),
        })
    }

    fn parse_parts(text: &[u8], store_dir: &StoreDir, file: &Path) -> Result<Parsed, Error> {
        format::parse(text, format::detect(text, store_dir), store_dir, file)
    }

    fn merge(&mut self, parsed: Parsed, file: &Path) -> Result<(), Error> {
        self.references_known &= parsed.references_known;
        for (path, node) in parsed.nodes {
            match self.nodes.get_mut(&path) {
                None => {
                    self.nodes.insert(path, node);
                }
                // A path list knows no references, so it cannot disagree about them.
                Some(old) if !self.references_known => {
                    if old.references.is_empty() {
                        old.references = node.references;
                    }
                    old.nar_size = old.nar_size.or(node.nar_size);
                }
                Some(old) => {
                    if format::merge_node(old, node).is_err() {
                        return Err(Error::Conflict {
                            path,
                            file: file.to_path_buf(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// What the graph was read from, as messages name it: ``closure info `/x` `` or
    /// ``references graph `/y` ``.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of store paths.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no store paths.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `path` is in the graph.
    pub fn contains(&self, path: &StorePath) -> bool {
        self.nodes.contains_key(path)
    }

    /// All store paths, in order.
    pub fn paths(&self) -> impl Iterator<Item = &StorePath> {
        self.nodes.keys()
    }

    /// Whether the graph knows references (false when it was read from a path list).
    pub fn has_references(&self) -> bool {
        self.references_known
    }

    /// The references of `path` (including itself if it refers to itself), or `None` if the
    /// path is not in the graph or the graph knows no references.
    pub fn references(&self, path: &StorePath) -> Option<&BTreeSet<StorePath>> {
        let node = self.nodes.get(path)?;
        self.references_known.then_some(&node.references)
    }

    /// The NAR size of `path`, if the source gave it (registrations and JSON do).
    pub fn nar_size(&self, path: &StorePath) -> Option<u64> {
        self.nodes.get(path)?.nar_size
    }

    /// All store paths as a closure.
    pub fn all(&self) -> Closure {
        self.nodes.keys().cloned().collect()
    }

    /// The roots and every store path they refer to, directly or not. Self-references are
    /// not edges. Does not look at the disk.
    ///
    /// # Errors
    ///
    /// [`Error::NotInSource`] naming every root the graph lacks, [`Error::Dangling`] for a
    /// reference the graph has no entry for.
    pub fn closure(&self, roots: &[StorePath]) -> Result<Closure, Error> {
        let mut missing: Vec<StorePath> = roots
            .iter()
            .filter(|root| !self.contains(root))
            .cloned()
            .collect();
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(Error::NotInSource {
                paths: missing,
                origin: self.origin.clone(),
            });
        }
        if roots.is_empty() {
            return Ok(Closure::new());
        }
        if !self.references_known {
            return Ok(self.all());
        }
        let mut seen: BTreeSet<&StorePath> = roots.iter().collect();
        let mut todo: Vec<&StorePath> = seen.iter().copied().collect();
        while let Some(path) = todo.pop() {
            let node = &self.nodes[path];
            for reference in &node.references {
                if reference == path || seen.contains(reference) {
                    continue;
                }
                let Some((reference, _)) = self.nodes.get_key_value(reference) else {
                    return Err(Error::Dangling {
                        path: reference.clone(),
                        referrer: path.clone(),
                        origin: self.origin.clone(),
                    });
                };
                seen.insert(reference);
                todo.push(reference);
            }
        }
        Ok(seen.into_iter().cloned().collect())
    }
}

/// The contents of a file, or `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// ``references graph `a` `` or ``references graphs `a`, `b` ``.
fn files_origin(files: &[PathBuf]) -> String {
    let list: Vec<String> = files
        .iter()
        .map(|file| format!("`{}`", file.display()))
        .collect();
    match files {
        [_] => format!("references graph {}", list[0]),
        _ => format!("references graphs {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0nsmdy54iqf64dgak3gpnj2fivp0l8bg-a";
    const B: &str = "/nix/store/28i8hbli7jg1jl3j9ygssgs2sj575yxd-b";
    const C: &str = "/nix/store/3bv99gnzi8lc0j4w3b4ps3vf7md97vax-c";
    const D: &str = "/nix/store/4gvdp75yvm6za1a4rk0didc2w6rwsp4y-d";
    const NIX32: &str = "sha256:0vzgr1j2b4yavhclsg2qcf8xad3dwrrf9wxwmcgbvp03yf7pbw50";

    /// A diamond, `a -> b, c -> d`, with self-references on `a` and `d`.
    fn diamond() -> String {
        format!("{A}\n\n3\n{A}\n{B}\n{C}\n{B}\n\n1\n{D}\n{C}\n\n1\n{D}\n{D}\n\n1\n{D}\n")
    }

    fn graph(text: &str) -> Graph {
        Graph::parse(text.as_bytes(), &StoreDir::default(), Path::new("g")).unwrap()
    }

    fn check(text: &str, roots: &[&str], expect: Result<&[&str], &str>) {
        let roots: Vec<StorePath> = roots.iter().map(|r| r.parse().unwrap()).collect();
        let got = graph(text)
            .closure(&roots)
            .map(|closure| {
                closure
                    .iter()
                    .map(|p| p.name().to_owned())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string());
        let expect = expect
            .map(|names| names.iter().map(|n| n.to_string()).collect())
            .map_err(str::to_owned);
        assert_eq!(got, expect, "closure of {roots:?}");
    }

    #[test]
    fn walks() {
        let diamond = diamond();
        type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], &'a str>);
        let cases: &[Case] = &[
            (&[A], Ok(&["a", "b", "c", "d"])),
            (&[B], Ok(&["b", "d"])),
            (&[B, C], Ok(&["b", "c", "d"])),
            (&[D], Ok(&["d"])),
            (&[D, D], Ok(&["d"])),
            (&[], Ok(&[])),
        ];
        for (roots, expect) in cases {
            check(&diamond, roots, *expect);
        }
    }

    #[test]
    fn closure_is_idempotent() {
        let graph = graph(&diamond());
        for root in [A, B, C, D] {
            let once = graph.closure(&[root.parse().unwrap()]).unwrap();
            let roots: Vec<StorePath> = once.iter().cloned().collect();
            assert_eq!(graph.closure(&roots).unwrap(), once);
        }
    }

    #[test]
    fn errors() {
        let x = "/nix/store/wjnncqw7nfpg8rkh4xk3bk5k76c5cnv4-x";
        check(
            &diamond(),
            &[x],
            Err(&format!("store path `{x}` is not in references graph `g`")),
        );
        check(
            &diamond(),
            &[x, A, x, "/nix/store/ra726mvqkhxcrqcbpcrpysgvn4jgd67r-y"],
            Err(&format!(
                "store paths `/nix/store/ra726mvqkhxcrqcbpcrpysgvn4jgd67r-y`, `{x}` are not in references graph `g`"
            )),
        );
        check(
            &format!("{A}\n\n1\n{B}\n"),
            &[A],
            Err(&format!(
                "store path `{B}` (a reference of `{A}`) is not in references graph `g`"
            )),
        );
    }

    #[test]
    fn path_lists_are_whole_closures() {
        let list = format!("{A}\n{B}\n{C}\n");
        check(&list, &[B], Ok(&["a", "b", "c"]));
        check(&list, &[], Ok(&[]));
        check(
            &list,
            &[D],
            Err(&format!("store path `{D}` is not in references graph `g`")),
        );
        let graph = graph(&list);
        assert!(!graph.has_references());
        assert_eq!(graph.references(&A.parse().unwrap()), None);
    }

    #[test]
    fn accessors() {
        let graph = graph(&format!(
            "{A}\n{NIX32}\n120\n\n2\n{A}\n{B}\n{B}\n{NIX32}\n8\n\n0\n"
        ));
        let (a, b, c): (StorePath, StorePath, StorePath) =
            (A.parse().unwrap(), B.parse().unwrap(), C.parse().unwrap());
        assert_eq!(graph.len(), 2);
        assert!(graph.has_references());
        assert_eq!(graph.nar_size(&a), Some(120));
        assert_eq!(graph.nar_size(&c), None);
        assert_eq!(graph.references(&a), Some(&[a.clone(), b.clone()].into()));
        assert_eq!(graph.references(&c), None);
        assert_eq!(graph.paths().collect::<Vec<_>>(), [&a, &b]);
        assert_eq!(graph.origin(), "references graph `g`");
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn several_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store_dir = StoreDir::default();
        let one = write(tmp.path(), "one", &format!("{A}\n\n1\n{B}\n{B}\n\n0\n"));
        let two = write(tmp.path(), "two", &format!("{C}\n\n1\n{B}\n{B}\n\n0\n"));
        let bad = write(tmp.path(), "bad", &format!("{B}\n\n1\n{D}\n{D}\n\n0\n"));
        let list = write(tmp.path(), "list", &format!("{A}\n{B}\n{D}\n"));
        let graph = Graph::read_files(&[one.clone(), two.clone()], &store_dir).unwrap();
        assert_eq!(graph.len(), 3);
        assert_eq!(
            graph.origin(),
            format!("references graphs `{}`, `{}`", one.display(), two.display())
        );
        let err = Graph::read_files(&[one.clone(), bad.clone()], &store_dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` gives other references for `{B}` than an earlier file",
                bad.display()
            )
        );
        // A path list makes the whole set a list.
        let graph = Graph::read_files(&[one.clone(), list], &store_dir).unwrap();
        assert!(!graph.has_references());
        assert_eq!(graph.len(), 3);
        let err = Graph::read_files(&[tmp.path().join("absent")], &store_dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read `{}`", tmp.path().join("absent").display())
        );
    }

    #[test]
    fn closure_info_folders() {
        let store_dir = StoreDir::default();
        let registration = format!("{A}\n{NIX32}\n120\n\n1\n{B}\n{B}\n{NIX32}\n8\n\n0\n");
        let store_paths = format!("{A}\n{B}\n");
        let (only_a, a_b_c) = (format!("{A}\n"), format!("{A}\n{B}\n{C}\n"));
        let read = |files: &[(&str, &str)]| {
            let tmp = tempfile::tempdir().unwrap();
            for (name, text) in files {
                write(tmp.path(), name, text);
            }
            let dir = tmp.path().display().to_string();
            Graph::read_closure_info(tmp.path(), &store_dir)
                .map(|graph| (graph.len(), graph.has_references()))
                .map_err(|err| err.to_string().replace(&dir, "DIR"))
        };
        type Case<'a> = (Vec<(&'a str, &'a str)>, Result<(usize, bool), String>);
        let cases: Vec<Case> = vec![
            (
                vec![("registration", &registration), ("store-paths", &store_paths), ("total-nar-size", "128\n")],
                Ok((2, true)),
            ),
            (vec![("registration", &registration)], Ok((2, true))),
            (vec![("store-paths", &store_paths)], Ok((2, false))),
            (
                vec![("registration", ""), ("store-paths", ""), ("total-nar-size", "0\n")],
                Ok((0, true)),
            ),
            (
                vec![],
                Err("`DIR` is not a closure info folder: it has neither `registration` nor `store-paths`".to_owned()),
            ),
            (
                vec![("registration", &registration), ("total-nar-size", "127\n")],
                Err("closure info `DIR` is inconsistent: `total-nar-size` says `127` but the NAR sizes in `registration` add up to 128".to_owned()),
            ),
            (
                vec![("registration", &registration), ("store-paths", &only_a)],
                Err(format!("closure info `DIR` is inconsistent: `registration` lists `{B}` but `store-paths` does not")),
            ),
            (
                vec![("registration", &registration), ("store-paths", &a_b_c)],
                Err(format!("closure info `DIR` is inconsistent: `store-paths` lists `{C}` but `registration` does not")),
            ),
            (
                vec![("registration", &registration[..registration.len() - 1])],
                Err("`DIR/registration`, line 11: the file does not end with a newline (cut short?)".to_owned()),
            ),
        ];
        for (files, expect) in cases {
            assert_eq!(read(&files), expect, "closure info with {files:?}");
        }
        let err = Graph::read_closure_info(Path::new("/nonexistent/ci"), &store_dir).unwrap_err();
        assert_eq!(err.to_string(), "cannot read `/nonexistent/ci`");
    }
}
