//! File hashes under stat fingerprints, so an unchanged file need not be read.

use std::path::Path;

/// The records of earlier builds (being written).
#[derive(Debug, Default)]
pub(crate) struct StatDb {}

impl StatDb {
    pub(crate) fn load(dir: &Path) -> StatDb {
        let _ = dir;
        StatDb::default()
    }
}
