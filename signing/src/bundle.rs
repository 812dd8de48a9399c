//! The signature on an air-gap bundle's manifest.
//!
//! One Ed25519 signature, by the exporting mirror's own key (`mirror.key`), covers the bytes
//! `airlock-bundle-v1\n` followed by the manifest file exactly as written. The manifest names every
//! part and artifact by sha256 and size, so this one signature covers the whole bundle through
//! the checksum chain. The signature file is `<key id> <128 hex digits>\n`.

use crate::error::SigningError;
use crate::keys::{KeyId, KeyPair, PublicKey};
use ed25519_dalek::Signature;

const DOMAIN: &[u8] = b"airlock-bundle-v1\n";

fn message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + manifest.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(manifest);
    m
}

/// Signs a bundle manifest; returns the signature file's content.
pub fn sign_bundle(manifest: &[u8], key: &KeyPair) -> String {
    let sig = key.sign(&message(manifest));
    format!("{} {}\n", key.public().id(), hex::encode(sig.to_bytes()))
}

/// Checks a bundle manifest's signature file against the trusted exporter keys; returns the
/// signer's key id.
pub fn verify_bundle(
    manifest: &[u8],
    signature: &[u8],
    trusted: &[PublicKey],
) -> Result<KeyId, SigningError> {
    let bad = SigningError::Invalid {
        field: "bundle signature",
        why: "expected `<key id> <128 hex digits>`",
    };
    let text = std::str::from_utf8(signature).map_err(|_| bad)?;
    let (id, sig_hex) = text.trim().split_once(' ').ok_or(SigningError::Invalid {
        field: "bundle signature",
        why: "expected `<key id> <128 hex digits>`",
    })?;
    let bytes: [u8; 64] = hex::decode(sig_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SigningError::Invalid {
            field: "bundle signature",
            why: "expected 128 hex digits",
        })?;
    let sig = Signature::from_bytes(&bytes);
    let id: KeyId = id.parse()?;
    let Some(key) = trusted.iter().find(|k| k.id() == id) else {
        return Err(SigningError::UnknownSigner { key: id });
    };
    if key.verifies(&message(manifest), &sig) {
        Ok(key.id())
    } else {
        Err(SigningError::BadSignature { key: key.id() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flipped_byte_or_another_key_fails() {
        let k = KeyPair::from_seed(&[1; 32]);
        let other = KeyPair::from_seed(&[2; 32]);
        let sig = sign_bundle(b"{\"parts\":[]}", &k);
        assert_eq!(
            verify_bundle(b"{\"parts\":[]}", sig.as_bytes(), &[k.public()]).unwrap(),
            k.public().id()
        );
        assert!(matches!(
            verify_bundle(b"{\"parts\":[1]}", sig.as_bytes(), &[k.public()]),
            Err(SigningError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_bundle(b"{\"parts\":[]}", sig.as_bytes(), &[other.public()]),
            Err(SigningError::UnknownSigner { .. })
        ));
    }
}
