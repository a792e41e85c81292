//! The top level of `mkportable`'s clap interface: one subcommand per job.
//!
//! Each subcommand keeps its arguments and their translation in its own module
//! (`build.rs`, `cache.rs`, `closure.rs`, `squash.rs`, `mksquashfs.rs`).

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::{build, cache, closure, mksquashfs, squash};

const AFTER_HELP: &str = "\
Examples:
  mkportable build examples/demo/demo.toml -o out
  mkportable closure ./result
  mkportable squash --comp xz --block-size 1M rootfs/ image.raw
  mkportable cache stats
  mkportable mksquashfs nix ROOT/* OUT.raw -quiet -noappend -exit-on-error \\
      -keep-as-directory -all-root -root-mode 755 -b 1M -comp xz -Xdict-size 100%

Invoked under the name `mksquashfs` (a symlink), mkportable behaves like
`mkportable mksquashfs`.

Exit status: 0 on success; 1 when the input is at fault (an invalid spec, a missing
or unreadable source or store path, an existing output, a file that changed while
read, a bad option value);
2 for usage errors and unexpected failures; 130 when interrupted (nothing is
written then).";

/// Builds systemd portable service images, and SquashFS images in general,
/// reproducibly and fast.
#[derive(Debug, Parser)]
#[command(name = "mkportable", version, after_help = AFTER_HELP, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the portable service image a spec describes: DIR/NAME_VERSION.raw.
    Build(build::Args),
    /// Print the closure of store paths, one a line, sorted.
    Closure(closure::Args),
    /// Pack host files and directories into a SquashFS image.
    Squash(squash::Args),
    /// Show or clear the cache of compressed blocks that `build` and `squash` reuse.
    Cache(cache::Args),
    /// Pack files with mksquashfs's syntax: SOURCE... DEST, then its options.
    ///
    /// Accepts mksquashfs 4.5.1's spellings (single-dash options after the
    /// paths) for the options mkportable supports, and rejects any other by
    /// name. `mkportable mksquashfs -help` lists them.
    #[command(disable_help_flag = true)]
    Mksquashfs(MksquashfsArgs),
}

/// Arguments of `mkportable mksquashfs`, passed untouched to mksquashfs's parser.
#[derive(Debug, clap::Args)]
pub struct MksquashfsArgs {
    /// SOURCE... DEST, then options, as for mksquashfs.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

/// Runs the subcommand `cli` asks for.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => build::run(args),
        Command::Closure(args) => closure::run(args),
        Command::Squash(args) => squash::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Mksquashfs(args) => mksquashfs::run(&args.args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mksquashfs_subcommand_passes_everything_through() {
        let argv = [
            "mkportable",
            "mksquashfs",
            "a",
            "b",
            "-noappend",
            "-h",
            "--help",
            "-b",
            "1M",
        ];
        let Command::Mksquashfs(m) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not the mksquashfs subcommand");
        };
        assert_eq!(
            m.args,
            argv[2..].iter().map(OsString::from).collect::<Vec<_>>()
        );
    }
}
