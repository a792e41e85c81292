//! `mkportable closure`: print the runtime closure of store paths, one path a
//! line, sorted; the closure a `build` would put into an image for these roots.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use mkportable_closure::{resolve, Source, StoreDir, StorePath, DEFAULT_STORE_DIR};

const AFTER_HELP: &str = "\
Examples:
  mkportable closure ./result
  mkportable closure /nix/store/...-app --closure-info /nix/store/...-closure-info
  mkportable closure /nix/store/...-app --closure-info graph-1 --closure-info graph-2

A PATH may be a store path, a path inside a store object, or a symlink leading into
the store (such as `./result`). The closure comes from --closure-info (a closureInfo
folder, or exportReferencesGraph files) if given, else from `nix-store`. Every path
of the closure is checked to exist.

Exit status: 0 on success; 1 when a path is not in the store, not in the closure
source or missing on disk, or the source is malformed; 2 for usage errors and
unexpected failures.";

/// Arguments of `mkportable closure`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Store paths, paths inside store objects, or symlinks into the store.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// A closureInfo folder, or exportReferencesGraph files (repeat the flag),
    /// to read the closure from instead of asking Nix.
    #[arg(long, value_name = "PATH")]
    closure_info: Vec<PathBuf>,
    /// The Nix store directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STORE_DIR)]
    store_dir: PathBuf,
}

/// Runs `mkportable closure`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let store_dir = StoreDir::new(&args.store_dir)?;
    let roots = args
        .paths
        .iter()
        .map(|path| store_dir.follow_links_to_store_path(path))
        .collect::<Result<Vec<StorePath>, _>>()?;
    let source = Source::from_paths(&args.closure_info)?.with_store_dir(store_dir);
    let closure = resolve(&roots, &source)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for path in &closure {
        writeln!(out, "{path}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    #[test]
    fn arguments() {
        let parse = |args: &str| {
            let argv = ["mkportable", "closure"]
                .into_iter()
                .chain(args.split_whitespace());
            match Cli::try_parse_from(argv)?.command {
                Command::Closure(args) => Ok(args),
                other => panic!("not the closure subcommand: {other:?}"),
            }
        };
        let args = parse("a b").unwrap();
        assert_eq!(args.paths, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args.store_dir, PathBuf::from("/nix/store"));
        let args = parse("--closure-info ci --store-dir /gnu/store a").unwrap();
        assert_eq!(args.closure_info, [PathBuf::from("ci")]);
        assert_eq!(args.store_dir, PathBuf::from("/gnu/store"));
        let err: clap::Error = parse("--closure-info ci").unwrap_err();
        assert_eq!(crate::exit::clap_code(&err), 2);
    }
}
