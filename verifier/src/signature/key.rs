//! Public keys: ECDSA P-256/384/521 (model signing keys, certificate keys) and RSA (only as a
//! certificate issuer's key). Parsed from DER SubjectPublicKeyInfo.

use crate::VerifyError;
use sha2::Digest as _;
use x509_cert::der::{pem::LineEnding, Decode as _};
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// The hash a signature was computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(message).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(message).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(message).to_vec(),
        }
    }
}

#[derive(Clone)]
enum Inner {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

/// A trusted public key (ECDSA P-256/384/521 for signatures; RSA only as a certificate
/// issuer's key), kept with the DER SubjectPublicKeyInfo it was parsed from.
#[derive(Clone)]
pub struct PublicKey {
    inner: Inner,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    // p521's key type has no Debug; the algorithm and the SPKI hash identify the key anyway.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PublicKey({}, spki sha256 {})",
            self.algorithm_name(),
            self.spki_sha256()
        )
    }
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| e.to_string())?;
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or("public key bit string has unused bits")?;
        let inner = if spki.algorithm.oid == EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|e| format!("EC key without a named curve: {e}"))?;
            if curve == SECP256R1 {
                Inner::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|e| e.to_string())?,
                )
            } else if curve == SECP384R1 {
                Inner::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|e| e.to_string())?,
                )
            } else if curve == SECP521R1 {
                Inner::P521(
                    p521::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|e| e.to_string())?,
                )
            } else {
                return Err(format!("unsupported EC curve {curve}"));
            }
        } else if spki.algorithm.oid == RSA_ENCRYPTION {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            Inner::Rsa(rsa::RsaPublicKey::from_pkcs1_der(point).map_err(|e| e.to_string())?)
        } else {
            return Err(format!("unsupported key algorithm {}", spki.algorithm.oid));
        };
        Ok(PublicKey {
            inner,
            spki_der: der.to_vec(),
        })
    }

    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) file.
    pub fn from_pem(pem: &[u8]) -> Result<Self, VerifyError> {
        let bad = |detail: String| VerifyError::TrustMaterial {
            what: "public key PEM",
            detail,
        };
        let (label, der) = x509_cert::der::pem::decode_vec(pem).map_err(|e| bad(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(bad(format!("expected a PUBLIC KEY block, found {label}")));
        }
        Self::from_spki_der(&der).map_err(bad)
    }

    /// The name of the curve (or `RSA`).
    pub(crate) fn algorithm_name(&self) -> &'static str {
        match self.inner {
            Inner::P256(_) => "P-256",
            Inner::P384(_) => "P-384",
            Inner::P521(_) => "P-521",
            Inner::Rsa(_) => "RSA",
        }
    }

    pub(crate) fn is_ecdsa(&self) -> bool {
        !matches!(self.inner, Inner::Rsa(_))
    }

    /// sha256 of the DER SubjectPublicKeyInfo, lowercase hex: a stable name for the key.
    pub(crate) fn spki_sha256(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.spki_der))
    }

    pub(crate) fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The `publicKey.hint` model_signing writes: sha256 of the key as OpenSSL writes a PEM
    /// SubjectPublicKeyInfo (LF line endings, 64 columns). Recomputed from the DER so a PEM
    /// file with CRLF endings still matches.
    pub(crate) fn model_signing_hint(&self) -> String {
        match x509_cert::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.spki_der) {
            Ok(pem) => hex::encode(sha2::Sha256::digest(pem.as_bytes())),
            // Encoding a DER we already parsed cannot fail; an empty hint then matches nothing.
            Err(_) => String::new(),
        }
    }

    /// The hash model_signing pairs with the curve for DSSE signatures.
    pub(crate) fn curve_hash(&self) -> Hash {
        match self.inner {
            Inner::P256(_) | Inner::Rsa(_) => Hash::Sha256,
            Inner::P384(_) => Hash::Sha384,
            Inner::P521(_) => Hash::Sha512,
        }
    }

    /// Verifies a DER ECDSA signature (or RSA PKCS#1 v1.5 signature) over `message` hashed
    /// with `hash`.
    pub(crate) fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        let digest = hash.digest(message);
        match &self.inner {
            Inner::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok()),
            Inner::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok()),
            Inner::P521(key) => p521::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok()),
            Inner::Rsa(key) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                key.verify(scheme, &digest, signature).is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256_PEM: &[u8] = include_bytes!("../../tests/fixtures/signing/keys/signer_p256.pub.pem");

    #[test]
    fn hint_is_sha256_of_openssl_pem() {
        let key = PublicKey::from_pem(P256_PEM).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.algorithm_name(), "P-256");
        assert_eq!(
            key.model_signing_hint(),
            hex::encode(sha2::Sha256::digest(P256_PEM))
        );
        let crlf = String::from_utf8_lossy(P256_PEM).replace('\n', "\r\n");
        let key2 = PublicKey::from_pem(crlf.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key2.model_signing_hint(), key.model_signing_hint());
    }

    #[test]
    fn rejects_garbage() {
        assert!(PublicKey::from_pem(b"not a pem").is_err());
        assert!(PublicKey::from_spki_der(&[0x30, 0x00]).is_err());
    }
}
