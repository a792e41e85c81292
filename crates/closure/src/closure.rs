//! `Closure`: the sorted set of store paths an image needs, and the check that they exist.

use std::collections::{btree_set, BTreeSet};
use std::fs;
use std::io;

use crate::store_path::StorePath;
use crate::Error;

/// A set of store paths, closed under references when it comes from [`resolve`](crate::resolve):
/// the roots and everything they refer to, directly or not. Sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    paths: BTreeSet<StorePath>,
}

impl Closure {
    /// An empty closure.
    pub fn new() -> Self {
        Closure::default()
    }

    /// The store paths, in order.
    pub fn iter(&self) -> btree_set::Iter<'_, StorePath> {
        self.paths.iter()
    }

    /// The number of store paths.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there are no store paths.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether `path` is in the closure.
    pub fn contains(&self, path: &StorePath) -> bool {
        self.paths.contains(path)
    }

    /// The store paths as a set.
    pub fn as_set(&self) -> &BTreeSet<StorePath> {
        &self.paths
    }

    /// The store paths as a set, by value.
    pub fn into_set(self) -> BTreeSet<StorePath> {
        self.paths
    }

    /// Checks that every store path exists on disk, without following symlinks: a store
    /// object may itself be a symlink, even a dangling one.
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] naming every path that does not exist, or [`Error::Stat`] for the
    /// first path that cannot be inspected for another reason.
    pub fn check_exists(&self) -> Result<(), Error> {
        let mut missing = Vec::new();
        for path in &self.paths {
            match fs::symlink_metadata(path.as_path()) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => missing.push(path.clone()),
                Err(source) => {
                    return Err(Error::Stat {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Missing { paths: missing })
        }
    }
}

impl From<BTreeSet<StorePath>> for Closure {
    fn from(paths: BTreeSet<StorePath>) -> Self {
        Closure { paths }
    }
}

impl FromIterator<StorePath> for Closure {
    fn from_iter<I: IntoIterator<Item = StorePath>>(iter: I) -> Self {
        Closure {
            paths: iter.into_iter().collect(),
        }
    }
}

impl Extend<StorePath> for Closure {
    fn extend<I: IntoIterator<Item = StorePath>>(&mut self, iter: I) {
        self.paths.extend(iter);
    }
}

impl IntoIterator for Closure {
    type Item = StorePath;
    type IntoIter = btree_set::IntoIter<StorePath>;

    fn into_iter(self) -> Self::IntoIter {
        self.paths.into_iter()
    }
}

impl<'a> IntoIterator for &'a Closure {
    type Item = &'a StorePath;
    type IntoIter = btree_set::Iter<'a, StorePath>;

    fn into_iter(self) -> Self::IntoIter {
        self.paths.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreDir;

    #[test]
    fn check_exists_names_every_missing_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StoreDir::new(tmp.path()).unwrap();
        let present = dir
            .join("00000000000000000000000000000000-present")
            .unwrap();
        std::fs::write(present.as_path(), "").unwrap();
        let dangling = dir
            .join("11111111111111111111111111111111-dangling")
            .unwrap();
        std::os::unix::fs::symlink("/nonexistent", dangling.as_path()).unwrap();
        let gone = dir.join("22222222222222222222222222222222-gone").unwrap();
        let gone2 = dir.join("33333333333333333333333333333333-gone").unwrap();

        let ok: Closure = [present.clone(), dangling.clone()].into_iter().collect();
        ok.check_exists().unwrap();
        let one: Closure = [present.clone(), gone.clone()].into_iter().collect();
        assert_eq!(
            one.check_exists().unwrap_err().to_string(),
            format!("store path `{gone}` does not exist")
        );
        let two: Closure = [gone2.clone(), present, gone.clone()].into_iter().collect();
        assert_eq!(
            two.check_exists().unwrap_err().to_string(),
            format!("store paths `{gone}`, `{gone2}` do not exist")
        );
    }
}
