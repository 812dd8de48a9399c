//! Which governance keys count, and for which records: the keys of `[governance] keys`, and the
//! keys of `[[governance.revoked_keys]]`, which count only for records signed before their
//! `since` (the record's own signed time: `approved_at`, `revoked_at`).
//!
//! A record signed by a key in neither list covers nothing, and neither does one signed by a
//! revoked key at or after `since`. Both are rejected loudly at load (listed by the admin API)
//! and the refusal a client gets for the name says which record and why ([`Refusal::Untrusted`]).
//! A record's time is what its signer wrote: a thief of the key can backdate; see the README's
//! rotation section for when to drop a key altogether instead.
//!
//! [`Refusal::Untrusted`]: crate::Refusal::Untrusted

use signing::{KeyId, PublicKey, Timestamp};

use super::signing_err;
use crate::config::RevokedKeyConfig;
use crate::error::MirrorError;

/// A key revoked from a point in time.
#[derive(Debug, Clone)]
struct Revoked {
    key: PublicKey,
    since: Timestamp,
    reason: Option<String>,
}

/// The governance keys and their validity.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keyring {
    /// Keys valid for any record (`[governance] keys`, less the revoked ones).
    current: Vec<PublicKey>,
    revoked: Vec<Revoked>,
}

impl Keyring {
    /// Reads the key files.
    pub(crate) fn load(
        keys: &[std::path::PathBuf],
        revoked: &[RevokedKeyConfig],
    ) -> Result<Keyring, MirrorError> {
        let mut ring = Keyring::default();
        for r in revoked {
            ring.revoked.push(Revoked {
                key: PublicKey::read(&r.key).map_err(signing_err)?,
                since: r.since,
                reason: r.reason.clone(),
            });
        }
        for path in keys {
            let key = PublicKey::read(path).map_err(signing_err)?;
            // Listed in both: the revocation wins.
            if !ring.revoked.iter().any(|r| r.key.id() == key.id()) {
                ring.current.push(key);
            }
        }
        Ok(ring)
    }

    /// Keys a new record sent now may be signed by.
    pub(crate) fn current(&self) -> &[PublicKey] {
        &self.current
    }

    /// Keys whose signatures are checked when records are loaded (current and revoked); a
    /// signature by a revoked key is then subject to [`Keyring::check`].
    pub(crate) fn for_loading(&self) -> Vec<PublicKey> {
        self.current
            .iter()
            .cloned()
            .chain(self.revoked.iter().map(|r| r.key.clone()))
            .collect()
    }

    /// Whether a record whose signature verified under `key`, signed at `at`, counts; if not,
    /// why (for the log, the admin API and the client's refusal).
    pub(crate) fn check(&self, key: &KeyId, at: Timestamp) -> Result<(), String> {
        match self.revoked.iter().find(|r| r.key.id() == *key) {
            Some(r) if at >= r.since => Err(format!(
                "signed by governance key {key} at {at}, after that key was revoked (since {}{})",
                r.since,
                r.reason
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signing::KeyPair;

    fn ring(since: &str) -> (Keyring, KeyId, KeyId) {
        let (old, new) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
        let ring = Keyring {
            current: vec![new.public()],
            revoked: vec![Revoked {
                key: old.public(),
                since: since.parse().unwrap(),
                reason: Some("laptop stolen".into()),
            }],
        };
        (ring, old.public().id(), new.public().id())
    }

    #[test]
    fn a_revoked_key_counts_only_before_its_time() {
        let (ring, old, new) = ring("2026-03-01T00:00:00Z");
        assert!(ring
            .check(&old, "2026-02-28T23:59:59Z".parse().unwrap())
            .is_ok());
        let why = ring
            .check(&old, "2026-03-01T00:00:00Z".parse().unwrap())
            .unwrap_err();
        assert!(
            why.contains("revoked") && why.contains("laptop stolen"),
            "{why}"
        );
        assert!(ring
            .check(&new, "2030-01-01T00:00:00Z".parse().unwrap())
            .is_ok());
        assert_eq!(ring.for_loading().len(), 2);
        assert_eq!(ring.current().len(), 1);
    }
}
