//! Cursors: where each source's last successful pass ended, one JSON file in
//! the role's state directory (`<state_dir>/reconcile-cursors.json`).
//!
//! A file rather than a Kafka topic: one reconcile process owns it, it is a
//! few lines, and losing it costs only a longer first window (the first pass
//! reaches back `lookback`; what it lists is compared with the raw log, so
//! nothing is injected twice). It is replaced atomically (written beside,
//! then renamed), so a crash leaves the old or the new file, never half of one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Error, Result};

/// The cursors of every `<tenant>/<provider>`, kept in memory and in a file.
#[derive(Debug, Default)]
pub struct CursorFile {
    path: Option<PathBuf>,
    cursors: BTreeMap<String, String>,
}

impl CursorFile {
    /// Cursors kept in memory only (`--once` without a state directory, tests).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Loads `path` (absent: no cursors yet).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let cursors = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Cursor(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::Cursor(format!("{}: {e}", path.display()))),
        };
        Ok(Self {
            path: Some(path),
            cursors,
        })
    }

    /// Where the last pass of `tenant`'s `provider` ended.
    pub fn get(&self, tenant: &str, provider: &str) -> Option<OffsetDateTime> {
        self.cursors
            .get(&format!("{tenant}/{provider}"))
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    }

    /// Records (and persists) the end of a successful pass.
    pub fn set(&mut self, tenant: &str, provider: &str, at: OffsetDateTime) -> Result<()> {
        let v = at
            .format(&Rfc3339)
            .map_err(|e| Error::Cursor(e.to_string()))?;
        self.cursors.insert(format!("{tenant}/{provider}"), v);
        let Some(path) = &self.path else {
            return Ok(());
        };
        let tmp = path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(&self.cursors).map_err(|e| Error::Cursor(e.to_string()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::Cursor(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cursors_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reconcile-cursors.json");
        let mut c = CursorFile::open(&path).unwrap();
        assert_eq!(c.get("acme", "stripe"), None);
        c.set("acme", "stripe", datetime!(2026-01-02 11:50 UTC))
            .unwrap();
        let c = CursorFile::open(&path).unwrap();
        assert_eq!(
            c.get("acme", "stripe"),
            Some(datetime!(2026-01-02 11:50 UTC))
        );
        assert_eq!(c.get("acme", "shopify"), None);
    }
}
