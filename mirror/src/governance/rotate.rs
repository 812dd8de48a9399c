//! Rotating the mirror's own key (`airlock rotate-key`): the key that signs the audit log and the
//! air-gap bundles this mirror exports.
//!
//! The hand-over is a line of the audit log signed by the old key and endorsed by the new one
//! (`signing::AuditLog::hand_over`), so `airlock audit verify` needs only the first key to check
//! the whole log. The steps are ordered so a crash at any point is finished by running the command
//! again: the new key is written to `mirror.key.new` first (start-up refuses while it exists),
//! then the hand-over is appended (skipped on a rerun if the log already names that key), the old
//! public key is kept as `mirror-keys/<id>.pub`, and only then are `mirror.key` and `mirror.pub`
//! replaced, each by a rename.

use std::path::Path;

use signing::{AuditEvent, AuditLog, KeyId, KeyPair, PublicKey};

use super::{now, signing_err};
use crate::error::MirrorError;

/// The key being rotated to, until the rotation finished.
pub(crate) const PENDING: &str = "mirror.key.new";
/// Retired mirror public keys, kept so old lines and old bundles can still be checked.
pub const RETIRED_DIR: &str = "mirror-keys";

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The key handed over from.
    pub old: KeyId,
    /// The key now in `mirror.key`.
    pub new: KeyId,
    /// The audit line of the hand-over (None: a rerun found it already written).
    pub line: Option<u64>,
}

/// Rotates the mirror key under `data_dir`. The caller holds the data-dir lock (server stopped).
pub fn rotate_mirror_key(data_dir: &Path) -> Result<Rotated, MirrorError> {
    let key_path = data_dir.join("mirror.key");
    let pending_path = data_dir.join(PENDING);
    let log_path = data_dir.join("audit.log");
    let old = KeyPair::read_private(&key_path).map_err(signing_err)?;
    let new = if pending_path.exists() {
        KeyPair::read_private(&pending_path).map_err(signing_err)?
    } else {
        let k = KeyPair::generate().map_err(signing_err)?;
        k.write_private(&pending_path).map_err(signing_err)?;
        sync_dir(data_dir)?;
        k
    };
    let (old_id, new_id) = (old.public().id(), new.public().id());
    let line = if last_hand_over(&log_path)? == Some(new_id.clone()) {
        None
    } else {
        let log = AuditLog::open(&log_path, old).map_err(signing_err)?;
        Some(log.hand_over(&new, now()).map_err(signing_err)?)
    };
    let retired = data_dir.join(RETIRED_DIR);
    std::fs::create_dir_all(&retired).map_err(MirrorError::io(&retired))?;
    let old_pub = retired.join(format!("{old_id}.pub"));
    if !old_pub.exists() {
        let public = KeyPair::read_private(&key_path)
            .map_err(signing_err)?
            .public();
        replace_public(&public, &old_pub)?;
    }
    std::fs::rename(&pending_path, &key_path).map_err(MirrorError::io(&key_path))?;
    replace_public(&new.public(), &data_dir.join("mirror.pub"))?;
    sync_dir(data_dir)?;
    tracing::info!(old = %old_id, new = %new_id, "mirror key rotated");
    Ok(Rotated {
        old: old_id,
        new: new_id,
        line,
    })
}

/// The new key of the log's last hand-over, if any.
fn last_hand_over(log: &Path) -> Result<Option<KeyId>, MirrorError> {
    if !log.exists() {
        return Ok(None);
    }
    let mut last = None;
    for entry in signing::log_entries(log).map_err(signing_err)? {
        if let AuditEvent::KeyHandover { new_key, .. } = entry.map_err(signing_err)?.event {
            last = PublicKey::from_pem(&new_key).ok().map(|k| k.id());
        }
    }
    Ok(last)
}

/// Writes a public key file whole (temporary file, rename), replacing what was there.
pub(crate) fn replace_public(key: &PublicKey, path: &Path) -> Result<(), MirrorError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    key.write(&tmp).map_err(signing_err)?;
    std::fs::rename(&tmp, path).map_err(MirrorError::io(path))
}

fn sync_dir(dir: &Path) -> Result<(), MirrorError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(MirrorError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_hands_over_in_the_log_and_a_rerun_finishes_an_interrupted_one() {
        let d = tempfile::tempdir().unwrap();
        let first = super::super::mirror_key(d.path()).unwrap().public();
        {
            let log = AuditLog::open(
                &d.path().join("audit.log"),
                KeyPair::read_private(&d.path().join("mirror.key")).unwrap(),
            )
            .unwrap();
            log.append(
                &AuditEvent::ConfigReload {
                    sha256: verifier::Digest::of(b""),
                },
                now(),
            )
            .unwrap();
        }
        let r = rotate_mirror_key(d.path()).unwrap();
        assert_eq!(r.old, first.id());
        assert_eq!(r.line, Some(2));
        assert_eq!(
            PublicKey::read(&d.path().join("mirror.pub")).unwrap().id(),
            r.new
        );
        assert!(d
            .path()
            .join(RETIRED_DIR)
            .join(format!("{}.pub", r.old))
            .exists());
        assert!(
            signing::verify_log(&d.path().join("audit.log"), &[first.clone()])
                .unwrap()
                .ok
        );
        // A crash after the hand-over but before the rename: the rerun does not hand over twice.
        let pending = KeyPair::generate().unwrap();
        pending.write_private(&d.path().join(PENDING)).unwrap();
        {
            let log = AuditLog::open(
                &d.path().join("audit.log"),
                KeyPair::read_private(&d.path().join("mirror.key")).unwrap(),
            )
            .unwrap();
            log.hand_over(&pending, now()).unwrap();
        }
        assert!(
            super::super::mirror_key(d.path()).is_err(),
            "start-up refuses mid-rotation"
        );
        let again = rotate_mirror_key(d.path()).unwrap();
        assert_eq!((again.new, again.line), (pending.public().id(), None));
        assert!(
            signing::verify_log(&d.path().join("audit.log"), &[first])
                .unwrap()
                .ok
        );
    }
}
