//! `NixCli`: asking Nix itself for a closure with `nix-store --query --requisites`.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::closure::Closure;
use crate::error::NixStderr;
use crate::store_path::{StoreDir, StorePath};
use crate::Error;

/// How many roots go on one command line; more are split over several runs, so that a long
/// list never hits the kernel's argument size limit.
const ROOTS_PER_RUN: usize = 512;

/// How to run `nix-store`. The environment is inherited (`NIX_CONFIG`, `NIX_REMOTE`, … reach
/// Nix untouched); [`NixCli::with_env`] adds to it.
#[derive(Debug, Clone)]
pub struct NixCli {
    program: PathBuf,
    envs: Vec<(OsString, OsString)>,
}

impl Default for NixCli {
    fn default() -> Self {
        NixCli {
            program: PathBuf::from("nix-store"),
            envs: Vec::new(),
        }
    }
}

impl NixCli {
    /// Runs `nix-store` from `PATH`.
    pub fn new() -> Self {
        NixCli::default()
    }

    /// Runs this program instead of `nix-store` from `PATH`.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Sets an environment variable for `nix-store`, on top of the inherited environment.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The program that is run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The closure of `roots` as Nix's database knows it: the union of
    /// `nix-store --query --requisites ROOTS…`. No roots give an empty closure without
    /// running Nix. The disk is not checked.
    ///
    /// # Errors
    ///
    /// [`Error::NixNotFound`] if the program is not installed, [`Error::NixSpawn`] if it cannot
    /// be started, [`Error::NixFailed`] if it fails (for instance for a root that is not valid
    /// in the Nix database), [`Error::NixOutput`] if it prints something other than store
    /// paths of `store_dir`.
    pub fn requisites(&self, roots: &[StorePath], store_dir: &StoreDir) -> Result<Closure, Error> {
        let mut closure = Closure::new();
        for chunk in roots.chunks(ROOTS_PER_RUN) {
            closure.extend(self.run(chunk, store_dir)?);
        }
        Ok(closure)
    }

    fn run(&self, roots: &[StorePath], store_dir: &StoreDir) -> Result<Vec<StorePath>, Error> {
        let output = Command::new(&self.program)
            .args(["--query", "--requisites"])
            .args(roots.iter().map(StorePath::as_path))
            .envs(self.envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .output()
            .map_err(|source| {
                let program = self.program.clone();
                if source.kind() == io::ErrorKind::NotFound {
                    Error::NixNotFound { program, source }
                } else {
                    Error::NixSpawn { program, source }
                }
            })?;
        if !output.status.success() {
            return Err(Error::NixFailed {
                program: self.program.clone(),
                status: output.status,
                stderr: NixStderr(String::from_utf8_lossy(&output.stderr).into_owned()),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                store_dir
                    .parse_inner(line)
                    .map_err(|reason| Error::NixOutput {
                        program: self.program.clone(),
                        line: line.to_owned(),
                        reason,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/0nsmdy54iqf64dgak3gpnj2fivp0l8bg-a";
    const B: &str = "/nix/store/28i8hbli7jg1jl3j9ygssgs2sj575yxd-b";

    /// A fake `nix-store`: a shell script, written by a child `sh` rather
    /// than through a descriptor of this process. A test on another thread
    /// that spawns a process while this one has the script open for writing
    /// hands that descriptor to its child until the child's `exec`, and
    /// running the script in that window fails with "Text file busy"
    /// (ETXTBSY), as it once did in CI.
    fn fake(dir: &Path, script: &str) -> NixCli {
        let program = dir.join("nix-store");
        let status = Command::new("/bin/sh")
            .args(["-c", r#"printf '%s\n' "$2" > "$1" && chmod 755 "$1""#, "sh"])
            .arg(&program)
            .arg(format!("#!/bin/sh\n{script}"))
            .status()
            .unwrap();
        assert!(status.success(), "writing {}", program.display());
        NixCli::new().with_program(program)
    }

    fn run(cli: &NixCli, roots: &[&str]) -> Result<Vec<String>, String> {
        let roots: Vec<StorePath> = roots.iter().map(|r| r.parse().unwrap()).collect();
        cli.requisites(&roots, &StoreDir::default())
            .map(|closure| closure.iter().map(ToString::to_string).collect())
            .map_err(|err| {
                let mut text = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                text
            })
    }

    #[test]
    fn fake_nix() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("nix-store").display().to_string();
        let echo = fake(
            tmp.path(),
            &format!("[ \"$1 $2\" = '--query --requisites' ] || exit 9\nshift 2\necho {B}\nfor r; do echo $r; done\necho \"$MARK\" >&2"),
        );
        assert_eq!(run(&echo, &[A]), Ok(vec![A.to_owned(), B.to_owned()]));
        assert_eq!(run(&echo, &[]), Ok(vec![]));
        let failing = fake(
            tmp.path(),
            "echo 'warning: x' >&2; echo \"error: path '$3' is not valid\" >&2; exit 1",
        );
        assert_eq!(
            run(&failing, &[A]),
            Err(format!("`{p} --query --requisites` failed (exit status: 1): warning: x\nerror: path '{A}' is not valid"))
        );
        let junk = fake(tmp.path(), "echo /usr/bin");
        assert_eq!(
            run(&junk, &[A]),
            Err(format!("`{p} --query --requisites` printed `/usr/bin`, which is not a store path: not inside the store directory"))
        );
        let env = fake(tmp.path(), &format!("[ \"$MARK\" = yes ] && echo {A}"));
        assert_eq!(
            run(&env.clone().with_env("MARK", "yes"), &[B]),
            Ok(vec![A.to_owned()])
        );
        assert!(run(&env, &[B])
            .unwrap_err()
            .contains("failed (exit status: 1): nothing on stderr"));
    }

    #[test]
    fn missing_nix() {
        let cli = NixCli::new().with_program("/nonexistent/nix-store");
        let err = run(&cli, &[A]).unwrap_err();
        assert!(
            err.starts_with("cannot run `/nonexistent/nix-store`: it was not found (install Nix, or pass a closure info folder or an exportReferencesGraph file): "),
            "{err}"
        );
    }
}
