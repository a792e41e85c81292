//! `Source` and `resolve`: where a closure comes from, and computing it from there.

use std::fs;
use std::path::{Path, PathBuf};

use crate::closure::Closure;
use crate::graph::Graph;
use crate::nix::NixCli;
use crate::store_path::{StoreDir, StorePath};
use crate::Error;

/// Where closures come from, and the store directory their store paths are in.
#[derive(Debug, Clone)]
pub struct Source {
    kind: SourceKind,
    store_dir: StoreDir,
}

/// The kinds of [`Source`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceKind {
    /// A `closureInfo` folder: `registration` (with references) or `store-paths` (without).
    ClosureInfo(PathBuf),
    /// References graph files, read together: plain `exportReferencesGraph` files,
    /// registrations, `nix-store --dump-db` output, path lists or structured-attrs JSON.
    Graphs(Vec<PathBuf>),
    /// Nix itself, through `nix-store --query --requisites`.
    Nix(NixCli),
}

impl Source {
    /// A `closureInfo` folder.
    pub fn closure_info(dir: impl Into<PathBuf>) -> Self {
        Source::of(SourceKind::ClosureInfo(dir.into()))
    }

    /// References graph files, read together.
    pub fn graph_files<I, P>(files: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        Source::of(SourceKind::Graphs(
            files.into_iter().map(Into::into).collect(),
        ))
    }

    /// Nix itself, run as `cli` says.
    pub fn nix(cli: NixCli) -> Self {
        Source::of(SourceKind::Nix(cli))
    }

    fn of(kind: SourceKind) -> Self {
        Source {
            kind,
            store_dir: StoreDir::default(),
        }
    }

    /// The best source present: `explicit` if given (a folder is closure info, a file a
    /// references graph file, symlinks followed), else Nix (`nix-store` from `PATH`).
    ///
    /// # Errors
    ///
    /// [`Error::Read`] if `explicit` cannot be inspected (it does not exist, say),
    /// [`Error::NotASource`] if it is neither a file nor a folder.
    pub fn auto(explicit: Option<&Path>) -> Result<Self, Error> {
        Source::from_paths(explicit.as_slice())
    }

    /// Like [`Source::auto`] for any number of paths: none gives Nix, one folder closure info,
    /// files references graph files read together.
    ///
    /// # Errors
    ///
    /// Those of [`Source::auto`], and [`Error::MixedSources`] for a folder among other paths.
    pub fn from_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self, Error> {
        if paths.is_empty() {
            return Ok(Source::nix(NixCli::new()));
        }
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref();
            let metadata = fs::metadata(path).map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if metadata.is_dir() {
                if paths.len() > 1 {
                    return Err(Error::MixedSources {
                        dir: path.to_path_buf(),
                    });
                }
                return Ok(Source::closure_info(path));
            }
            if !metadata.is_file() {
                return Err(Error::NotASource {
                    path: path.to_path_buf(),
                });
            }
            files.push(path.to_path_buf());
        }
        Ok(Source::graph_files(files))
    }

    /// Uses another store directory than `/nix/store`.
    pub fn with_store_dir(mut self, store_dir: StoreDir) -> Self {
        self.store_dir = store_dir;
        self
    }

    /// What kind of source this is.
    pub fn kind(&self) -> &SourceKind {
        &self.kind
    }

    /// The store directory.
    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// Reads the graph of a closure info or references graph source; `None` for Nix.
    ///
    /// # Errors
    ///
    /// Those of [`Graph::read_closure_info`] and [`Graph::read_files`].
    pub fn load_graph(&self) -> Result<Option<Graph>, Error> {
        match &self.kind {
            SourceKind::ClosureInfo(dir) => {
                Graph::read_closure_info(dir, &self.store_dir).map(Some)
            }
            SourceKind::Graphs(files) => Graph::read_files(files, &self.store_dir).map(Some),
            SourceKind::Nix(_) => Ok(None),
        }
    }

    fn check_store_dir(&self, roots: &[StorePath]) -> Result<(), Error> {
        match roots
            .iter()
            .find(|root| root.store_dir() != self.store_dir.as_path())
        {
            Some(root) => Err(Error::OutsideStore {
                path: root.as_path().to_path_buf(),
                store_dir: self.store_dir.as_path().to_path_buf(),
            }),
            None => Ok(()),
        }
    }
}

/// The runtime closure of `roots`: the roots and every store path they refer to, directly or
/// not, each checked to exist on disk.
///
/// From closure info or references graph files the references are walked from the roots.
/// From Nix, `nix-store --query --requisites` is asked (after checking the roots exist, so
/// that a missing one gets a clear message rather than Nix's "not valid").
///
/// # Errors
///
/// - [`Error::OutsideStore`] for a root of another store directory than the source's;
/// - [`Error::NotInSource`] naming the roots a closure info or graph lacks
///   (``store path `…` is not in closure info `…` ``), [`Error::Dangling`];
/// - [`Error::Missing`] naming the store paths that do not exist on disk;
/// - the errors of reading the source ([`Graph::read_closure_info`], [`Graph::read_files`],
///   [`NixCli::requisites`]).
pub fn resolve(roots: &[StorePath], source: &Source) -> Result<Closure, Error> {
    source.check_store_dir(roots)?;
    let closure = match &source.kind {
        SourceKind::Nix(cli) => {
            roots.iter().cloned().collect::<Closure>().check_exists()?;
            cli.requisites(roots, &source.store_dir)?
        }
        SourceKind::ClosureInfo(_) | SourceKind::Graphs(_) => {
            let graph = source.load_graph()?.expect("graph sources have a graph");
            graph.closure(roots)?
        }
    };
    closure.check_exists()?;
    Ok(closure)
}

/// Every store path a closure info folder or references graph lists, checked to exist on
/// disk: what `portableService` copies when it has `closureInfo` and nothing else.
///
/// # Errors
///
/// [`Error::NeedsRoots`] for the Nix source, [`Error::Missing`], and the errors of reading
/// the source.
pub fn resolve_all(source: &Source) -> Result<Closure, Error> {
    let graph = source.load_graph()?.ok_or(Error::NeedsRoots)?;
    let closure = graph.all();
    closure.check_exists()?;
    Ok(closure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(source: &Result<Source, Error>) -> String {
        match source {
            Ok(source) => match source.kind() {
                SourceKind::ClosureInfo(dir) => format!("closure info {}", dir.display()),
                SourceKind::Graphs(files) => format!("graphs {files:?}"),
                SourceKind::Nix(cli) => format!("nix {}", cli.program().display()),
            },
            Err(err) => format!("error: {err}"),
        }
    }

    #[test]
    fn auto_picks_by_file_type() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ci");
        fs::create_dir(&dir).unwrap();
        let file = tmp.path().join("graph");
        fs::write(&file, "").unwrap();
        let link = tmp.path().join("result");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let absent = tmp.path().join("absent");
        let t = |p: &Path| p.display().to_string();

        assert_eq!(kind(&Source::auto(None)), "nix nix-store");
        assert_eq!(
            kind(&Source::auto(Some(&dir))),
            format!("closure info {}", t(&dir))
        );
        assert_eq!(
            kind(&Source::auto(Some(&link))),
            format!("closure info {}", t(&link))
        );
        assert_eq!(
            kind(&Source::auto(Some(&file))),
            format!("graphs [{:?}]", file)
        );
        assert_eq!(
            kind(&Source::auto(Some(&absent))),
            format!("error: cannot read `{}`", t(&absent))
        );
        assert_eq!(
            kind(&Source::auto(Some(Path::new("/dev/null")))),
            "error: `/dev/null` is neither a file nor a directory"
        );
        assert_eq!(
            kind(&Source::from_paths(&[&file, &file])),
            format!("graphs [{file:?}, {file:?}]")
        );
        assert_eq!(
            kind(&Source::from_paths(&[&file, &dir])),
            format!(
                "error: closure info folder `{}` must be the only closure source",
                t(&dir)
            )
        );
    }

    #[test]
    fn roots_must_be_in_the_store_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let store_dir = StoreDir::new(tmp.path()).unwrap();
        let root: StorePath = "/nix/store/0nsmdy54iqf64dgak3gpnj2fivp0l8bg-a"
            .parse()
            .unwrap();
        let graph = tmp.path().join("graph");
        fs::write(&graph, format!("{root}\n\n0\n")).unwrap();
        let source = Source::graph_files([&graph]).with_store_dir(store_dir);
        assert_eq!(
            resolve(std::slice::from_ref(&root), &source)
                .unwrap_err()
                .to_string(),
            format!(
                "`{root}` is not inside the store directory `{}`",
                tmp.path().display()
            )
        );
    }

    #[test]
    fn resolve_checks_the_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        fs::create_dir(&store).unwrap();
        let store_dir = StoreDir::new(&store).unwrap();
        let a = store_dir
            .join("0nsmdy54iqf64dgak3gpnj2fivp0l8bg-a")
            .unwrap();
        let b = store_dir
            .join("28i8hbli7jg1jl3j9ygssgs2sj575yxd-b")
            .unwrap();
        fs::create_dir(a.as_path()).unwrap();
        let graph = tmp.path().join("graph");
        fs::write(&graph, format!("{a}\n\n1\n{b}\n{b}\n\n0\n")).unwrap();
        let source = Source::graph_files([&graph]).with_store_dir(store_dir.clone());
        let missing = format!("store path `{b}` does not exist");
        assert_eq!(
            resolve(std::slice::from_ref(&a), &source)
                .unwrap_err()
                .to_string(),
            missing
        );
        assert_eq!(resolve_all(&source).unwrap_err().to_string(), missing);
        fs::write(b.as_path(), "").unwrap();
        let closure = resolve(std::slice::from_ref(&a), &source).unwrap();
        assert_eq!(closure.iter().collect::<Vec<_>>(), [&a, &b]);
        assert_eq!(resolve_all(&source).unwrap(), closure);
        assert_eq!(resolve(&[], &source).unwrap(), Closure::new());
        let nix = Source::nix(NixCli::new()).with_store_dir(store_dir);
        assert_eq!(
            resolve_all(&nix).unwrap_err().to_string(),
            "the Nix CLI computes closures of roots and cannot list a whole closure without them"
        );
    }
}
