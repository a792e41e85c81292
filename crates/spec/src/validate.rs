//! Validation: turns the parsed [`Wire`] form into a [`Spec`], collecting every problem.
//!
//! Each field is checked on its own, and a bad field does not stop the others from
//! being checked: the user gets the whole list at once. Checks that need another
//! field (a unit's prefix needs `name`, a store path needs `store-dir`) are skipped
//! when that field is itself bad, so that one mistake is reported once.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::Problem;
use crate::rules;
use crate::wire::{
    ContentTable, Entry, Format, Lines, List, Located, SymlinkTable, Table, UnitTable, Wire,
};
use crate::{Content, Spec, Symlink, Unit};
use crate::{DEFAULT_BLOCK_SIZE, DEFAULT_COMPRESSION, DEFAULT_STORE_DIR};

/// Checks `wire` (parsed from `text`), resolving relative host paths against `origin`
/// (an absolute folder). Returns every problem, in file order, if there is any.
pub(crate) fn validate<F: Format>(
    wire: Wire<F>,
    text: &str,
    origin: &Path,
) -> Result<Spec, Vec<Problem>> {
    let mut check = Checker {
        lines: Lines::new(text),
        origin,
        problems: Vec::new(),
    };
    let spec = check.spec::<F>(wire);
    let mut problems = check.problems;
    if problems.is_empty() {
        // `spec` is `None` only if a problem was reported.
        return Ok(spec.expect("no problems were reported, so every required field is valid"));
    }
    // Stable: problems on the same line keep the order the checks found them in.
    problems.sort_by_key(|problem| problem.line);
    Err(problems)
}

/// The state of one validation: where we are, and what we found so far.
struct Checker<'a> {
    lines: Lines<'a>,
    origin: &'a Path,
    problems: Vec<Problem>,
}

/// A path the spec places in the image, remembered to find collisions.
struct Placed {
    path: String,
    field: String,
}

impl Checker<'_> {
    fn report(&mut self, line: Option<u32>, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    /// Reports a failed rule's message; returns whether the rule passed.
    fn rule(&mut self, line: Option<u32>, field: &str, verdict: Result<(), String>) -> bool {
        match verdict {
            Ok(()) => true,
            Err(message) => {
                self.report(line, field, message);
                false
            }
        }
    }

    fn locate<F: Format, T: DeserializeOwned>(&self, loc: F::Loc<T>) -> Located<T> {
        F::locate(loc, &self.lines)
    }

    /// A string field that must be present; `line` is where its table starts, if known.
    fn required<F: Format>(
        &mut self,
        value: Option<F::Loc<String>>,
        line: Option<u32>,
        field: &str,
    ) -> Option<Located<String>> {
        match value {
            Some(value) => Some(self.locate::<F, _>(value)),
            None => {
                self.report(line, field, "required field is missing");
                None
            }
        }
    }

    /// The whole spec; `None` if a required part is missing or invalid.
    fn spec<F: Format>(&mut self, wire: Wire<F>) -> Option<Spec> {
        let name = self.required::<F>(wire.name, None, "name");
        let name = name.filter(|name| self.rule(name.line, "name", rules::image_name(&name.value)));
        let version = self.required::<F>(wire.version, None, "version");
        let version = version
            .filter(|version| self.rule(version.line, "version", rules::version(&version.value)));
        let description = self.optional_text::<F>(wire.description, "description");
        let homepage = self.optional_text::<F>(wire.homepage, "homepage");

        let store_dir = match wire.store_dir {
            Some(dir) => {
                let dir = self.locate::<F, _>(dir);
                self.rule(dir.line, "store-dir", rules::image_path(&dir.value))
                    .then_some(dir.value)
            }
            None => Some(DEFAULT_STORE_DIR.to_owned()),
        };
        let compression = self.setting::<F>(
            wire.compression,
            "compression",
            DEFAULT_COMPRESSION,
            rules::compression,
        );
        let block_size = self.setting::<F>(
            wire.block_size,
            "block-size",
            DEFAULT_BLOCK_SIZE,
            rules::block_size,
        );
        let closure_info = wire.closure_info.map(|path| {
            let path = self.locate::<F, _>(path);
            self.host_path(path.line, "closure-info", &path.value, HostKind::Any)
        });
        let os_release = self.os_release::<F>(wire.os_release);

        // Units match the portable prefixes: PORTABLE_PREFIXES if the spec sets it, as
        // systemd reads it from the image's os-release, or else the image name.
        let prefixes: Option<Vec<&str>> = match os_release.get("PORTABLE_PREFIXES") {
            Some(list) if !list.trim().is_empty() => Some(list.split_whitespace().collect()),
            _ => name.as_ref().map(|name| vec![name.value.as_str()]),
        };
        let units = self.units::<F>(wire.units, prefixes.as_deref(), store_dir.as_deref());

        let unit_names: Vec<&str> = units
            .iter()
            .flatten()
            .map(|unit| unit.name.as_str())
            .collect();
        let mut placed = Vec::new();
        let contents = self.contents::<F>(
            wire.contents,
            store_dir.as_deref(),
            &unit_names,
            &mut placed,
        );
        let symlinks = self.symlinks::<F>(
            wire.symlinks,
            store_dir.as_deref(),
            &unit_names,
            &mut placed,
        );

        Some(Spec {
            name: name?.value,
            version: version?.value,
            description,
            homepage,
            units: units.into_iter().collect::<Option<_>>()?,
            contents: contents?,
            symlinks: symlinks?,
            compression: compression?,
            block_size: block_size?,
            store_dir: PathBuf::from(store_dir?),
            closure_info: match closure_info {
                Some(path) => Some(path?),
                None => None,
            },
            os_release,
        })
    }

    /// `description` or `homepage`: optional, but not empty and on one line.
    fn optional_text<F: Format>(
        &mut self,
        value: Option<F::Loc<String>>,
        field: &str,
    ) -> Option<String> {
        let value = self.locate::<F, _>(value?);
        let verdict = if value.value.is_empty() {
            Err("must not be empty (leave it out instead)".to_owned())
        } else {
            rules::single_line(&value.value)
        };
        self.rule(value.line, field, verdict);
        Some(value.value)
    }

    /// A string with a default and one rule, such as `compression`.
    fn setting<F: Format>(
        &mut self,
        value: Option<F::Loc<String>>,
        field: &str,
        default: &str,
        rule: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let Some(value) = value else {
            return Some(default.to_owned());
        };
        let value = self.locate::<F, _>(value);
        self.rule(value.line, field, rule(&value.value))
            .then_some(value.value)
    }

    fn os_release<F: Format>(&mut self, table: Option<Table<F>>) -> BTreeMap<String, String> {
        let Some(table) = table else {
            return BTreeMap::new();
        };
        let table = self.locate::<F, _>(table);
        let mut fields = BTreeMap::new();
        for (key, value) in table.value {
            let value = self.locate::<F, _>(value);
            let field = format!("os-release.{key}");
            let key_ok = self.rule(value.line, &field, rules::os_release_key(&key));
            let value_ok = self.rule(value.line, &field, rules::single_line(&value.value));
            if key_ok && value_ok {
                fields.insert(key, value.value);
            }
        }
        fields
    }

    /// Every unit, `None` for each invalid one; a missing or empty list is a problem.
    fn units<F: Format>(
        &mut self,
        units: Option<List<F, Entry<UnitTable<F>>>>,
        prefixes: Option<&[&str]>,
        store_dir: Option<&str>,
    ) -> Vec<Option<Unit>> {
        let units = units.map(|units| self.locate::<F, _>(units));
        let entries = match units {
            Some(Located { value, .. }) if !value.is_empty() => value,
            other => {
                let line = other.and_then(|units| units.line);
                self.report(line, "units", "at least one unit is required");
                return Vec::new();
            }
        };
        let mut installed: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(entries.len());
        for (idx, entry) in entries.into_iter().enumerate() {
            let entry = self.locate::<F, _>(entry);
            let unit = self.unit::<F>(idx, entry, prefixes, store_dir, &mut installed);
            out.push(unit);
        }
        out
    }

    fn unit<F: Format>(
        &mut self,
        idx: usize,
        entry: Located<Entry<UnitTable<F>>>,
        prefixes: Option<&[&str]>,
        store_dir: Option<&str>,
        installed: &mut HashMap<String, usize>,
    ) -> Option<Unit> {
        let at = format!("units[{idx}]");
        // The source and the explicit name, each as (value, line, field).
        let (source, name) = match entry.value {
            Entry::Path(source) => (Some((source, entry.line, at.clone())), None),
            Entry::Table(table) => {
                if table.source.is_none() {
                    self.report(
                        entry.line,
                        format!("{at}.source"),
                        "required field is missing",
                    );
                }
                let source = table.source.map(|source| {
                    let source = self.locate::<F, _>(source);
                    (source.value, source.line, format!("{at}.source"))
                });
                let name = table.name.map(|name| {
                    let name = self.locate::<F, _>(name);
                    (name.value, name.line, format!("{at}.name"))
                });
                (source, name)
            }
        };
        // An explicit name, or else the source's file name, less the hash if the source
        // is a store path (`<hash>-demo.service`, as `pkgs.writeText "demo.service"`
        // makes). An empty source has no name, but `host_path` reports that already.
        let name = match (name, &source) {
            (Some(name), _) => Some(name),
            (None, Some((written, line, field))) if !written.is_empty() => {
                let in_store = store_dir.and_then(|dir| rules::store_path_name(written, dir));
                match in_store
                    .map(OsStr::new)
                    .or_else(|| Path::new(written).file_name())
                {
                    Some(file_name) => Some((
                        file_name.to_string_lossy().into_owned(),
                        *line,
                        field.clone(),
                    )),
                    None => {
                        self.report(
                            *line,
                            field.as_str(),
                            format!("`{written}` does not name a file"),
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let source = source.and_then(|(source, line, field)| {
            self.host_path(line, &field, &source, HostKind::UnitFile)
        });
        let name = name.and_then(|(name, line, field)| {
            if !self.rule(
                line,
                &field,
                rules::unit_name(&name, prefixes.unwrap_or_default()),
            ) {
                return None;
            }
            if let Some(first) = installed.get(&name) {
                self.report(
                    line,
                    field,
                    format!("`{name}` is already installed by units[{first}]"),
                );
                return None;
            }
            installed.insert(name.clone(), idx);
            Some(name)
        });
        Some(Unit {
            source: source?,
            name: name?,
        })
    }

    fn contents<F: Format>(
        &mut self,
        contents: Option<List<F, Entry<ContentTable<F>>>>,
        store_dir: Option<&str>,
        units: &[&str],
        placed: &mut Vec<Placed>,
    ) -> Option<Vec<Content>> {
        let Some(contents) = contents else {
            return Some(Vec::new());
        };
        let contents = self.locate::<F, _>(contents).value;
        let mut out = Some(Vec::with_capacity(contents.len()));
        for (idx, entry) in contents.into_iter().enumerate() {
            let entry = self.locate::<F, _>(entry);
            let content = self.content::<F>(idx, entry, store_dir, units, placed);
            match (&mut out, content) {
                (Some(out), Some(content)) => out.push(content),
                _ => out = None,
            }
        }
        out
    }

    fn content<F: Format>(
        &mut self,
        idx: usize,
        entry: Located<Entry<ContentTable<F>>>,
        store_dir: Option<&str>,
        units: &[&str],
        placed: &mut Vec<Placed>,
    ) -> Option<Content> {
        let at = format!("contents[{idx}]");
        match entry.value {
            Entry::Path(path) => {
                // Without a valid store directory we cannot tell what a store path is.
                let store_dir = store_dir?;
                if !self.rule(entry.line, &at, rules::store_path(&path, store_dir)) {
                    return None;
                }
                let path = self.host_path(entry.line, &at, &path, HostKind::StorePath)?;
                Some(Content::StorePath(path))
            }
            Entry::Table(table) => {
                let source = self.required::<F>(table.source, entry.line, &format!("{at}.source"));
                let source = source.and_then(|source| {
                    self.host_path(
                        source.line,
                        &format!("{at}.source"),
                        &source.value,
                        HostKind::Dir,
                    )
                });
                let target = self.required::<F>(table.target, entry.line, &format!("{at}.target"));
                let target = target.and_then(|target| {
                    self.image_target(target, &format!("{at}.target"), store_dir, units, placed)
                });
                Some(Content::HostDir {
                    source: source?,
                    target: PathBuf::from(target?),
                })
            }
        }
    }

    fn symlinks<F: Format>(
        &mut self,
        symlinks: Option<List<F, SymlinkTable<F>>>,
        store_dir: Option<&str>,
        units: &[&str],
        placed: &mut Vec<Placed>,
    ) -> Option<Vec<Symlink>> {
        let Some(symlinks) = symlinks else {
            return Some(Vec::new());
        };
        let symlinks = self.locate::<F, _>(symlinks).value;
        let mut out = Some(Vec::with_capacity(symlinks.len()));
        for (idx, entry) in symlinks.into_iter().enumerate() {
            let at = format!("symlinks[{idx}]");
            let Located { value: entry, line } = self.locate::<F, _>(entry);
            let object = self.required::<F>(entry.object, line, &format!("{at}.object"));
            let object = object.filter(|object| {
                let verdict = match object.value.as_str() {
                    "" => Err("must not be empty".to_owned()),
                    value if value.contains('\0') => Err("contains a NUL byte".to_owned()),
                    _ => Ok(()),
                };
                self.rule(object.line, &format!("{at}.object"), verdict)
            });
            let symlink = self.required::<F>(entry.symlink, line, &format!("{at}.symlink"));
            let symlink = symlink.and_then(|symlink| {
                self.image_target(symlink, &format!("{at}.symlink"), store_dir, units, placed)
            });
            match (&mut out, object, symlink) {
                (Some(out), Some(object), Some(symlink)) => {
                    out.push(Symlink {
                        object: object.value,
                        symlink: PathBuf::from(symlink),
                    });
                }
                _ => out = None,
            }
        }
        out
    }

    /// A path the spec places in the image (a graft target or a symlink): valid, clear
    /// of the scaffold, and clear of every path placed before it.
    fn image_target(
        &mut self,
        path: Located<String>,
        field: &str,
        store_dir: Option<&str>,
        units: &[&str],
        placed: &mut Vec<Placed>,
    ) -> Option<String> {
        let Located { value: path, line } = path;
        if !self.rule(line, field, rules::image_path(&path)) {
            return None;
        }
        let store_dir = store_dir.unwrap_or(DEFAULT_STORE_DIR);
        if let Some(message) = rules::scaffold_conflict(&path, store_dir, units) {
            self.report(line, field, message);
            return None;
        }
        let clash = placed.iter().find_map(|other| {
            let (p, q) = (path.as_str(), other.path.as_str());
            let at = &other.field;
            if p == q {
                Some(format!("`{p}` is already used by {at}"))
            } else if rules::is_under(p, q) {
                Some(format!("`{p}` is inside `{q}`, placed by {at}"))
            } else if rules::is_under(q, p) {
                Some(format!("`{p}` contains `{q}`, placed by {at}"))
            } else {
                None
            }
        });
        if let Some(message) = clash {
            self.report(line, field, message);
            return None;
        }
        placed.push(Placed {
            path: path.clone(),
            field: field.to_owned(),
        });
        Some(path)
    }

    /// Resolves a host path against the spec's folder and checks what is there.
    fn host_path(
        &mut self,
        line: Option<u32>,
        field: &str,
        written: &str,
        kind: HostKind,
    ) -> Option<PathBuf> {
        if written.is_empty() {
            self.report(line, field, "must not be empty");
            return None;
        }
        // `components` drops `.` components and doubled slashes; `..` stays, since
        // removing it without looking at the disk would be wrong across symlinks.
        let path: PathBuf = self.origin.join(written).components().collect();
        let shown = path.display();
        // A store path may itself be a symlink; it is copied as one, so it need not resolve.
        let meta = match kind {
            HostKind::StorePath => std::fs::symlink_metadata(&path),
            _ => std::fs::metadata(&path),
        };
        let verdict = match meta {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(format!("`{shown}` does not exist"))
            }
            Err(err) => Err(format!("cannot read `{shown}`: {err}")),
            Ok(meta) => match kind {
                HostKind::Any | HostKind::StorePath => Ok(()),
                HostKind::Dir if meta.is_dir() => Ok(()),
                HostKind::Dir => Err(format!("`{shown}` is not a directory")),
                HostKind::UnitFile if !meta.is_file() => {
                    Err(format!("`{shown}` is not a regular file"))
                }
                HostKind::UnitFile if meta.len() == 0 => Err(format!("`{shown}` is empty")),
                HostKind::UnitFile => Ok(()),
            },
        };
        self.rule(line, field, verdict).then_some(path)
    }
}

/// What a host path must be.
#[derive(Clone, Copy)]
enum HostKind {
    /// Anything that exists (a closure-info file or folder).
    Any,
    /// Anything that exists, symlinks not followed.
    StorePath,
    /// A directory (a graft source).
    Dir,
    /// A regular, non-empty file (a unit).
    UnitFile,
}
