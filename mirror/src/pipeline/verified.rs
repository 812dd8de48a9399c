//! [`Verified`]: the only input promotion takes. Only the pipeline's verify steps make one, after
//! a quarantined file's size and digests matched what the upstream declared and the scanners
//! passed it (or, for a manifest, after its digest matched the name's reference and it parsed).
//! So the byte path is a type, not a convention: nothing else in the crate can promote.

use verifier::Digest;

use crate::error::MirrorError;
use crate::quarantine::{Quarantined, WriteError};
use crate::store::Store;

/// A quarantined file that passed every check.
pub(crate) struct Verified(Quarantined);

impl Verified {
    /// The verify step's verdict. Private to the pipeline.
    pub(super) fn new(file: Quarantined) -> Verified {
        Verified(file)
    }

    /// The checked file (for the store's promotion).
    pub(crate) fn quarantined(&self) -> &Quarantined {
        &self.0
    }
}

/// Writes small bytes that were checked in memory (a manifest whose digest matched and that
/// parsed) through quarantine into the blob store, as `digest`. Blocking.
pub(super) fn promote_small(
    store: &Store,
    bytes: &[u8],
    digest: Digest,
) -> Result<(), MirrorError> {
    let inner = |e: WriteError| match e {
        WriteError::Mirror(m) => m,
        other => MirrorError::Task(other.to_string()),
    };
    let mut w = store.quarantine_writer(bytes.len() as u64, None)?;
    w.write(bytes).map_err(inner)?;
    let q = w.finish().map_err(inner)?;
    // The writer hashed what reached the disk: it must be what was checked in memory.
    if q.outcome().sha256 != digest {
        return Err(MirrorError::Task(format!(
            "quarantined manifest hashes to {}, checked {digest}",
            q.outcome().sha256
        )));
    }
    store.promote(Verified::new(q))?;
    Ok(())
}
