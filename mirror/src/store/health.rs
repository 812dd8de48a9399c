//! Readiness probes of the store (`/readyz`): can it still take a blob, and does its index answer.
//! They run on every probe, so each is one small operation that leaves nothing behind.

use std::io::Write;

use super::Store;

impl Store {
    /// Whether `quarantine/` (where every fetched byte lands first) takes a new file: one is
    /// created, written, synced and removed. A read-only or full disk fails here. Blocking.
    pub fn check_writable(&self) -> Result<(), String> {
        let probe = self
            .quarantine
            .join(format!(".readyz-{}", std::process::id()));
        let outcome = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .and_then(|mut f| {
                f.write_all(b"ok")?;
                f.sync_all()
            });
        // Removed whatever happened, so a failed write leaves no probe behind either.
        let _ = std::fs::remove_file(&probe);
        outcome.map_err(|e| format!("{} is not writable: {e}", self.quarantine.display()))
    }

    /// Whether the index answers a read. Blocking.
    pub fn check_index(&self) -> Result<(), String> {
        self.refs
            .get(b"\0readyz")
            .map(drop)
            .map_err(|e| format!("the index does not answer: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_healthy_store_passes_and_leaves_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open(dir.path()).unwrap();
        store.check_writable().unwrap();
        store.check_index().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join("quarantine"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "probe left behind: {left:?}");
    }
}
